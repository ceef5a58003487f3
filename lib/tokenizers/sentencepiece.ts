import { CrepeError } from '../errors';
import { mergePairs } from './bpe';
import { checkId, readTokenizerConfigBeside, readTokenizerFile } from './files';
import { ProtoError, fieldFloat, fieldInt, fieldMessage, fieldString, readFields } from './protobuf';
import type { Tokenizer } from './types';

/**
 * A sentencepiece `.model` (ModelProto) tokenizer for BPE and CHAR models, following the C++
 * library (normalizer.cc, bpe_model.cc, char_model.cc, sentencepiece_processor.cc).
 *
 * The protobuf is read with the small reader in ./protobuf rather than an npm sentencepiece
 * port: those ship WASM or ESM builds meant for bundlers, while the part crepe needs (the piece
 * table and a few spec flags) is a few dozen lines.
 *
 * Not supported (rejected at load with a CrepeError): UNIGRAM and WORD models, a non-empty
 * precompiled_charsmap (e.g. nmt_nfkc normalization), treat_whitespace_as_suffix, and BPE models
 * with UNUSED pieces (which need sentencepiece's resegmentation).
 */

/** SentencePiece.Type in sentencepiece_model.proto. */
export enum PieceType {
  NORMAL = 1,
  UNKNOWN = 2,
  CONTROL = 3,
  USER_DEFINED = 4,
  UNUSED = 5,
  BYTE = 6,
}

/** TrainerSpec.ModelType. */
export enum ModelType {
  UNIGRAM = 1,
  BPE = 2,
  WORD = 3,
  CHAR = 4,
}

const SPACE = '\u2581'; // "▁", how sentencepiece writes a space inside pieces
/** How BYTE pieces are spelled: <0x00> .. <0xFF>. */
const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
const DEFAULT_UNK_SURFACE = ' \u2047 '; // " ⁇ ", sentencepiece's kDefaultUnknownSymbol

function byteOfPiece(piece: string): number {
  return parseInt(piece.slice(3, 5), 16);
}

export interface SentencePieceModel {
  pieces: string[];
  scores: Float32Array;
  types: Uint8Array;
  modelType: ModelType;
  /** Ids from TrainerSpec (defaults 1 and 2); -1 when that id is not a CONTROL piece. */
  bosId: number;
  eosId: number;
  byteFallback: boolean;
  unkSurface: string;
  addDummyPrefix: boolean;
  removeExtraWhitespaces: boolean;
  escapeWhitespaces: boolean;
}

/** Parse the fields of a ModelProto that encoding and decoding use. */
export function parseSentencePieceModel(buf: Uint8Array): SentencePieceModel {
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  // proto2 defaults, overridden by whatever the file sets.
  let modelType = ModelType.UNIGRAM;
  let bosId = 1;
  let eosId = 2;
  let byteFallback = false;
  let treatWhitespaceAsSuffix = false;
  let unkSurface = DEFAULT_UNK_SURFACE;
  let addDummyPrefix = true;
  let removeExtraWhitespaces = true;
  let escapeWhitespaces = true;
  let charsmapBytes = 0;

  for (const f of readFields(buf)) {
    if (f.field === 1) { // repeated SentencePiece pieces
      let piece: string | undefined;
      let score = 0;
      let type = PieceType.NORMAL;
      for (const g of fieldMessage(f)) {
        if (g.field === 1) piece = fieldString(g);
        else if (g.field === 2) score = fieldFloat(g);
        else if (g.field === 3) type = fieldInt(g);
      }
      if (piece === undefined || piece.length === 0) throw new ProtoError(`piece ${pieces.length} has no text`);
      if (!(type >= PieceType.NORMAL && type <= PieceType.BYTE)) throw new ProtoError(`piece ${pieces.length} has type ${type}`);
      if (type === PieceType.BYTE && !BYTE_PIECE.test(piece)) throw new ProtoError(`byte piece ${pieces.length} is ${JSON.stringify(piece)}`);
      pieces.push(piece);
      scores.push(score);
      types.push(type);
    } else if (f.field === 2) { // TrainerSpec
      for (const g of fieldMessage(f)) {
        if (g.field === 3) modelType = fieldInt(g);
        else if (g.field === 24) treatWhitespaceAsSuffix = fieldInt(g) !== 0;
        else if (g.field === 35) byteFallback = fieldInt(g) !== 0;
        else if (g.field === 41) bosId = fieldInt(g);
        else if (g.field === 42) eosId = fieldInt(g);
        else if (g.field === 44) unkSurface = fieldString(g);
      }
    } else if (f.field === 3) { // NormalizerSpec
      for (const g of fieldMessage(f)) {
        if (g.field === 2) charsmapBytes = g.bytes.length;
        else if (g.field === 3) addDummyPrefix = fieldInt(g) !== 0;
        else if (g.field === 4) removeExtraWhitespaces = fieldInt(g) !== 0;
        else if (g.field === 5) escapeWhitespaces = fieldInt(g) !== 0;
      }
    }
  }

  if (pieces.length === 0) throw new ProtoError('no pieces');
  if (types.filter((t) => t === PieceType.UNKNOWN).length !== 1) throw new ProtoError('needs exactly one UNKNOWN piece');
  const unsupported = (what: string): never => {
    throw new ProtoError(`unsupported: ${what}`);
  };
  if (modelType !== ModelType.BPE && modelType !== ModelType.CHAR) unsupported(`model type ${ModelType[modelType] ?? modelType} (only BPE and CHAR)`);
  if (charsmapBytes > 0) unsupported('a precompiled normalization charsmap');
  if (treatWhitespaceAsSuffix) unsupported('treat_whitespace_as_suffix');
  if (modelType === ModelType.BPE && types.includes(PieceType.UNUSED)) unsupported('UNUSED pieces in a BPE model');

  const controlOrNone = (id: number): number => (types[id] === PieceType.CONTROL ? id : -1);
  return {
    pieces,
    scores: Float32Array.from(scores),
    types: Uint8Array.from(types),
    modelType,
    bosId: controlOrNone(bosId),
    eosId: controlOrNone(eosId),
    byteFallback,
    unkSurface,
    addDummyPrefix,
    removeExtraWhitespaces,
    escapeWhitespaces,
  };
}

export class SentencePieceTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly unkId: number;
  /** tokenizer_config.json's add_bos_token, else transformers' LlamaTokenizer default (true) whenever the model has a BOS piece. */
  readonly addBos: boolean;

  /** Pieces the text can match (NORMAL, USER_DEFINED, UNUSED: sentencepiece's `pieces_`). */
  private readonly idOfPiece = new Map<string, number>();
  /** USER_DEFINED pieces longest first: matched whole, never split or merged. */
  private readonly userDefined: string[];
  /** Byte b -> id of the BYTE piece <0xNN>, when byte fallback is on. */
  private readonly idOfByte = new Int32Array(256).fill(-1);

  /** Whether the text gets sentencepiece's dummy-prefix space (the model's flag unless a tokenizer_config.json says otherwise). */
  readonly addDummyPrefix: boolean;

  constructor(readonly path: string, readonly model: SentencePieceModel, convention: Partial<LlamaTokenizerConvention> = {}) {
    const { pieces, types } = model;
    this.vocabSize = pieces.length;
    this.bosId = model.bosId;
    this.eosId = model.eosId;
    this.unkId = types.indexOf(PieceType.UNKNOWN);
    this.addBos = convention.addBos ?? this.bosId >= 0;
    if (this.addBos && this.bosId < 0) throw new CrepeError(`${path}: add_bos_token is true but the model has no BOS piece`);
    this.addDummyPrefix = convention.addDummyPrefix ?? model.addDummyPrefix;
    pieces.forEach((p, id) => {
      const t = types[id];
      if ((t === PieceType.NORMAL || t === PieceType.USER_DEFINED || t === PieceType.UNUSED) && !this.idOfPiece.has(p)) {
        this.idOfPiece.set(p, id);
      }
      if (t === PieceType.BYTE) this.idOfByte[byteOfPiece(p)] = id;
    });
    this.userDefined = pieces.filter((_, id) => types[id] === PieceType.USER_DEFINED).sort((a, b) => b.length - a.length);
  }

  /** normalizer.cc without a charsmap: trim and squeeze spaces, dummy prefix, spaces to "▁". */
  normalize(text: string): string {
    const { removeExtraWhitespaces, escapeWhitespaces } = this.model;
    const addDummyPrefix = this.addDummyPrefix;
    let s = text;
    if (removeExtraWhitespaces) s = s.replace(/^ +/, '').replace(/ {2,}/g, ' ');
    if (s.length === 0) return '';
    if (addDummyPrefix) s = ' ' + s;
    if (escapeWhitespaces) s = s.replace(/ /g, SPACE);
    if (removeExtraWhitespaces) s = s.replace(escapeWhitespaces ? /\u2581+$/ : / +$/, '');
    return s;
  }

  encode(text: string, opts: { bos?: boolean } = {}): Int32Array {
    const symbols = this.split(this.normalize(text));
    const V = this.vocabSize;
    // Symbols that are not pieces get temporary ids >= V so BPE can still merge them by text.
    const extra: string[] = [];
    const extraId = new Map<string, number>();
    const frozen = new Set<number>();
    const ids = symbols.map((s) => {
      const id = this.idOfPiece.get(s);
      if (id !== undefined) {
        if (this.model.types[id] === PieceType.USER_DEFINED) frozen.add(id);
        return id;
      }
      let tmp = extraId.get(s);
      if (tmp === undefined) {
        tmp = V + extra.push(s) - 1;
        extraId.set(s, tmp);
      }
      return tmp;
    });
    const textOf = (id: number): string => (id < V ? this.model.pieces[id] : extra[id - V]);

    const merged = this.model.modelType === ModelType.BPE
      ? mergePairs(
        ids,
        (a, b) => (frozen.has(a) || frozen.has(b) ? -1 : this.idOfPiece.get(textOf(a) + textOf(b)) ?? -1),
        (id) => this.model.scores[id],
      )
      : ids;

    // sentencepiece_processor.cc: unknown symbols become byte pieces with byte fallback,
    // otherwise a run of consecutive unknowns collapses into one unk id.
    const out: number[] = [];
    if (opts.bos) {
      if (this.bosId < 0) throw new CrepeError(`sentencepiece model ${this.path} has no BOS token`);
      out.push(this.bosId);
    }
    let prevUnk = false;
    for (const id of merged) {
      const unknown = id >= V;
      if (unknown && this.model.byteFallback) {
        for (const b of Buffer.from(textOf(id), 'utf8')) out.push(this.idOfByte[b] >= 0 ? this.idOfByte[b] : this.unkId);
      } else if (!(unknown && prevUnk)) {
        out.push(unknown ? this.unkId : id);
      }
      prevUnk = unknown;
    }
    return Int32Array.from(out);
  }

  /** Initial symbols: USER_DEFINED pieces by longest match, else one code point each. */
  private split(normalized: string): string[] {
    const out: string[] = [];
    for (let i = 0; i < normalized.length;) {
      const user = this.userDefined.find((p) => normalized.startsWith(p, i));
      const len = user ? user.length : (normalized.codePointAt(i)! > 0xffff ? 2 : 1);
      out.push(normalized.slice(i, i + len));
      i += len;
    }
    return out;
  }

  /**
   * As SentencePieceProcessor::Decode: control pieces vanish, unk shows the model's unk_surface,
   * byte pieces are gathered and read as UTF-8, "▁" becomes " ", and the leading space the dummy
   * prefix added is dropped (with remove_extra_whitespaces, all leading "▁" pieces).
   */
  decode(ids: ArrayLike<number>): string {
    const { pieces, types, removeExtraWhitespaces, unkSurface } = this.model;
    const addDummyPrefix = this.addDummyPrefix;
    let text = '';
    let bytes: number[] = [];
    let isBosWs = true; // still at the start, where a leading "▁" is the dummy prefix
    let bosWsSeen = false;
    const flush = (): void => {
      if (bytes.length > 0) text += Buffer.from(bytes).toString('utf8');
      bytes = [];
    };
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      checkId(id, this.vocabSize, this.path);
      const type = types[id];
      if (type === PieceType.BYTE) {
        bytes.push(byteOfPiece(pieces[id]));
        continue;
      }
      flush();
      if (bosWsSeen || text.length > 0) isBosWs = false;
      bosWsSeen = false;
      if (type === PieceType.CONTROL) continue;
      if (type === PieceType.UNKNOWN) {
        text += unkSurface;
        continue;
      }
      let piece = pieces[id];
      if (isBosWs && (addDummyPrefix || removeExtraWhitespaces) && piece.startsWith(SPACE)) {
        piece = piece.slice(SPACE.length);
        bosWsSeen = !removeExtraWhitespaces;
      }
      text += piece.replace(/\u2581/g, ' ');
    }
    flush();
    return text;
  }
}

/**
 * What transformers' LlamaTokenizer does on top of the `.model`, as its tokenizer_config.json
 * sets it: whether `tokenizer(text)` starts with BOS, and whether text gets the leading "▁".
 */
export interface LlamaTokenizerConvention {
  addBos: boolean;
  addDummyPrefix: boolean;
}

/**
 * tokenizer_config.json keys that change nothing crepe computes (padding, length limits, chat
 * templates, decode-only cleanup) or that are checked below (class name, added tokens, sp options).
 */
const INERT_CONFIG_KEYS = new Set([
  'tokenizer_class', 'model_max_length', 'padding_side', 'truncation_side', 'pad_token', 'clean_up_tokenization_spaces',
  'spaces_between_special_tokens', 'chat_template', 'use_default_system_prompt', 'name_or_path', 'model_input_names',
  'added_tokens_decoder', 'special_tokens_map_file', 'sp_model_kwargs',
]);
const LLAMA_TOKENIZER_CLASSES = new Set(['LlamaTokenizer', 'LlamaTokenizerFast', 'CodeLlamaTokenizer', 'CodeLlamaTokenizerFast']);

/**
 * Read a tokenizer_config.json the way transformers' LlamaTokenizer (4.x, slow) applies it to a
 * `.model`: add_bos_token (default true), add_eos_token (crepe never appends EOS, so true is
 * refused), bos/eos/unk_token (must name the model's own pieces), legacy and add_prefix_space
 * (legacy false loads the model without its dummy prefix and adds "▁" itself when
 * add_prefix_space, default true). Any other key that would change encoding is refused.
 */
export function llamaTokenizerConvention(file: string, model: SentencePieceModel, config: Record<string, unknown>): Partial<LlamaTokenizerConvention> {
  const where = `tokenizer_config.json beside ${file}`;
  const refuse = (what: string): never => {
    throw new CrepeError(`${where}: ${what}`);
  };
  const known = new Set([...INERT_CONFIG_KEYS, 'add_bos_token', 'add_eos_token', 'bos_token', 'eos_token', 'unk_token', 'legacy', 'add_prefix_space']);
  const unknown = Object.keys(config).filter((k) => !known.has(k));
  if (unknown.length > 0) refuse(`unknown key${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (not applied by crepe's sentencepiece tokenizer)`);
  const cls = config.tokenizer_class;
  if (cls !== undefined && !(typeof cls === 'string' && LLAMA_TOKENIZER_CLASSES.has(cls))) refuse(`tokenizer_class ${JSON.stringify(cls)} is not a LLaMA sentencepiece tokenizer`);
  const flag = (key: string): boolean | undefined => {
    const v = config[key];
    if (v === undefined || v === null) return undefined;
    if (typeof v !== 'boolean') refuse(`${key} must be true or false, not ${JSON.stringify(v)}`);
    return v as boolean;
  };
  if (config.sp_model_kwargs !== undefined && !(typeof config.sp_model_kwargs === 'object' && config.sp_model_kwargs !== null && Object.keys(config.sp_model_kwargs).length === 0)) {
    refuse('sp_model_kwargs (sampling or other sentencepiece options) is not supported');
  }
  if (flag('add_eos_token')) refuse('add_eos_token is true, but crepe never appends EOS to encoded text');
  // Added tokens that are not the model's own pieces would be matched in the text by transformers.
  const added = config.added_tokens_decoder;
  if (added !== undefined && added !== null) {
    if (typeof added !== 'object') refuse('added_tokens_decoder must be an object');
    for (const [id, entry] of Object.entries(added as Record<string, unknown>)) {
      const content = (entry as { content?: unknown } | null)?.content;
      if (model.pieces[Number(id)] !== content) refuse(`added token ${id} ${JSON.stringify(content)} is not the model's piece ${id} (added tokens are not supported)`);
    }
  }
  const pieceId = (key: string, expected: number, what: string): void => {
    const v = config[key];
    if (v === undefined || v === null) return;
    const content = typeof v === 'string' ? v : (v as { content?: unknown }).content;
    if (typeof content !== 'string') refuse(`${key} must be a string or {content}, not ${JSON.stringify(v)}`);
    const id = model.pieces.indexOf(content as string);
    if (id < 0 || id !== expected) refuse(`${key} ${JSON.stringify(content)} is not the model's ${what} piece (${expected >= 0 ? JSON.stringify(model.pieces[expected]) : 'none'})`);
  };
  pieceId('bos_token', model.bosId, 'BOS');
  pieceId('eos_token', model.eosId, 'EOS');
  pieceId('unk_token', model.types.indexOf(PieceType.UNKNOWN), 'unknown');
  const out: Partial<LlamaTokenizerConvention> = {};
  const addBos = flag('add_bos_token');
  if (addBos !== undefined) out.addBos = addBos;
  if (config.bos_token === null && addBos === undefined) out.addBos = false;
  const legacy = flag('legacy') ?? true; // transformers treats an unset legacy as true (with a warning)
  const addPrefixSpace = flag('add_prefix_space');
  if (!legacy) {
    // Non-legacy encodes "<unk>" + "▁" + text without the model's dummy prefix and drops the unk
    // pieces: the same pieces as legacy unless the model squeezes whitespace, where they differ.
    if (model.removeExtraWhitespaces) refuse('legacy false with a model that removes extra whitespace is not supported');
    out.addDummyPrefix = addPrefixSpace ?? true;
  } // with legacy true transformers ignores add_prefix_space: the model's own dummy prefix applies
  return out;
}

/**
 * Load a sentencepiece `.model`, with transformers' tokenizer_config.json beside it when there is
 * one; a corrupt or unsupported file raises a CrepeError naming it.
 */
export function loadSentencePieceTokenizer(path: string): SentencePieceTokenizer {
  const buf = readTokenizerFile(path);
  let model: SentencePieceModel;
  try {
    model = parseSentencePieceModel(buf);
  } catch (e) {
    if (e instanceof ProtoError) throw new CrepeError(`bad sentencepiece model ${path}: ${e.message}`);
    throw e;
  }
  const config = readTokenizerConfigBeside(path);
  return new SentencePieceTokenizer(path, model, config ? llamaTokenizerConvention(path, model, config) : {});
}
