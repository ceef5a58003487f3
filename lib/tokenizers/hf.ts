// The package is ESM-first but ships a CommonJS build under its "node"/"require" export
// condition, so a plain require() from crepe's CommonJS output works without network or bundler.
import { Tokenizer as HfTokenizerImpl } from '@huggingface/tokenizers';
import { CrepeError } from '../errors';
import { checkId, readTokenizerConfigBeside, readTokenizerJson } from './files';
import type { Tokenizer } from './types';

/** Names models commonly give their BOS / EOS, tried when tokenizer_config.json does not say. */
const BOS_NAMES = ['<s>', '<|begin_of_text|>', '<bos>', '<|startoftext|>'];
const EOS_NAMES = ['</s>', '<|end_of_text|>', '<|eot_id|>', '<eos>', '<|endoftext|>'];

/** A Hugging Face `tokenizer.json`, run by @huggingface/tokenizers (pure JS). */
export class HfTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId: number;
  readonly eosId: number;
  readonly addBos: boolean;

  constructor(
    readonly path: string,
    private readonly impl: HfTokenizerImpl,
    config: Record<string, unknown>,
    /** tokenizer.json's post_processor: its template says whether BOS is added. */
    postProcessor: unknown = null,
  ) {
    let maxId = -1;
    for (const [token, id] of impl.get_vocab(true)) {
      if (!Number.isSafeInteger(id) || id < 0) throw new CrepeError(`bad tokenizer file ${path}: token ${JSON.stringify(token).slice(0, 40)} has id ${id}, not a whole number >= 0`);
      maxId = Math.max(maxId, id);
    }
    this.vocabSize = maxId + 1;
    // A null bos_token (Qwen2) means no BOS at all, not "guess one".
    this.bosId = config.bos_token === null ? -1 : this.specialId(config.bos_token, BOS_NAMES);
    this.eosId = this.specialId(config.eos_token, EOS_NAMES);
    this.addBos = this.bosConvention(config, postProcessor);
  }

  /**
   * Whether `tokenizer(text)` starts with BOS: tokenizer_config.json's add_bos_token when it
   * says (transformers rebuilds the post-processor from it), no when bos_token is null (Qwen2),
   * else what the tokenizer.json post-processor does with special tokens on.
   */
  private bosConvention(config: Record<string, unknown>, postProcessor: unknown): boolean {
    if (typeof config.add_bos_token === 'boolean') {
      if (config.add_bos_token && this.bosId < 0) throw new CrepeError(`${this.path}: add_bos_token is true but the tokenizer has no BOS token`);
      return config.add_bos_token;
    }
    if (config.bos_token === null || this.bosId < 0) return false;
    // Read from the JSON rather than by encoding with special tokens on, so that a post-processor
    // the JS library does not implement cannot break loading.
    const first = templateStart(postProcessor);
    return first !== undefined && this.impl.token_to_id(first) === this.bosId;
  }

  /** The id of the configured token (a string or {content}), else of the first known name, else -1. */
  private specialId(configured: unknown, names: string[]): number {
    const content = typeof configured === 'string' ? configured : (configured as { content?: unknown } | null)?.content;
    const candidates = typeof content === 'string' ? [content] : names;
    for (const name of candidates) {
      const id = this.impl.token_to_id(name);
      if (id !== undefined) return id;
    }
    return -1;
  }

  /**
   * The tokenizer's own normalizer, pre-tokenizer and model, but no post-processor: its
   * template would add BOS on its own, and crepe decides that with `bos`.
   */
  encode(text: string, opts: { bos?: boolean } = {}): Int32Array {
    const { ids } = this.impl.encode(text, { add_special_tokens: false });
    if (ids.some((id) => id === undefined)) {
      throw new CrepeError(`text has characters that ${this.path} cannot encode (no unk token)`);
    }
    // Every id was checked at load; this holds the embedding's bounds whatever the library returns.
    for (const id of ids) checkId(id, this.vocabSize, this.path);
    if (!opts.bos) return Int32Array.from(ids);
    if (this.bosId < 0) throw new CrepeError(`tokenizer ${this.path} has no BOS token`);
    return Int32Array.from([this.bosId, ...ids]);
  }

  /** Special tokens (BOS, EOS, ...) decode to nothing, as in the other crepe tokenizers. */
  decode(ids: ArrayLike<number>): string {
    const list = Array.from(ids);
    for (const id of list) checkId(id, this.vocabSize, this.path);
    if (list.length === 0) return ''; // the library rejects an empty list
    return this.impl.decode(list, { skip_special_tokens: true });
  }
}

/** The special token a TemplateProcessing (possibly inside a Sequence) puts first for a single text. */
function templateStart(processor: unknown): string | undefined {
  if (typeof processor !== 'object' || processor === null) return undefined;
  const p = processor as { type?: unknown; processors?: unknown; single?: unknown };
  if (p.type === 'Sequence' && Array.isArray(p.processors)) {
    for (const inner of p.processors) {
      const first = templateStart(inner);
      if (first !== undefined) return first;
    }
    return undefined;
  }
  if (p.type !== 'TemplateProcessing' || !Array.isArray(p.single) || p.single.length === 0) return undefined;
  const head = p.single[0] as { SpecialToken?: { id?: unknown } };
  return typeof head.SpecialToken?.id === 'string' ? head.SpecialToken.id : undefined;
}

/** The tokenizer.json model types HF tokenizers defines; the library runs each (WordLevel as below). */
const MODEL_TYPES = ['BPE', 'Unigram', 'WordPiece', 'WordLevel'];
/** HF tokenizers' WordLevel default unk token (WordLevelBuilder). */
const WORD_LEVEL_UNK = '<unk>';

/**
 * The options the library is built with. Its model is chosen from `model.type`, and a type it
 * does not name would be guessed from the fields (an unknown type with merges runs as BPE), so
 * anything but the four HF types is refused. WordLevel has no class of its own there: its
 * fallback maps each pre-token through the vocabulary with the unk token of the options, so the
 * model's own unk_token (default `<unk>`) is passed, which gives HF's WordLevel rule: a pre-token
 * not in the vocabulary becomes the unk token, and with no unk token in the vocabulary it cannot
 * be encoded.
 */
function implConfig(json: Record<string, unknown>, config: Record<string, unknown>, file: string): Record<string, unknown> {
  const model = json.model;
  if (typeof model !== 'object' || model === null || Array.isArray(model)) throw new CrepeError(`bad tokenizer file ${file}: no model object`);
  const type = (model as { type?: unknown }).type;
  checkIds(json, model as Record<string, unknown>, file);
  if (type === undefined) return config; // files older than the type field: the library infers it as HF tokenizers does
  if (typeof type !== 'string' || !MODEL_TYPES.includes(type)) {
    throw new CrepeError(`bad tokenizer file ${file}: model type ${JSON.stringify(type)} is not one crepe runs (${MODEL_TYPES.join(', ')})`);
  }
  if (type !== 'WordLevel') return config;
  const unk = (model as { unk_token?: unknown }).unk_token ?? WORD_LEVEL_UNK;
  if (typeof unk !== 'string') throw new CrepeError(`bad tokenizer file ${file}: WordLevel unk_token ${JSON.stringify(unk)} is not a string`);
  return { ...config, unk_token: unk };
}

/** Token ids in the vocabulary object and the added tokens are whole numbers >= 0 (they index the embedding). */
function checkIds(json: Record<string, unknown>, model: Record<string, unknown>, file: string): void {
  const bad = (token: unknown, id: unknown): CrepeError =>
    new CrepeError(`bad tokenizer file ${file}: token ${JSON.stringify(token)?.slice(0, 40)} has id ${JSON.stringify(id)}, not a whole number >= 0`);
  const vocab = model.vocab;
  if (typeof vocab === 'object' && vocab !== null && !Array.isArray(vocab)) {
    for (const [token, id] of Object.entries(vocab)) if (!(Number.isSafeInteger(id) && (id as number) >= 0)) throw bad(token, id);
  }
  if (Array.isArray(json.added_tokens)) {
    for (const t of json.added_tokens as { id?: unknown; content?: unknown }[]) if (!(Number.isSafeInteger(t?.id) && (t.id as number) >= 0)) throw bad(t?.content, t?.id);
  }
}

/** Load `tokenizer.json`, plus `tokenizer_config.json` beside it when present (BOS/EOS names, cleanup flags). */
export function loadHfTokenizer(file: string): HfTokenizer {
  const json = readTokenizerJson(file);
  const config = readTokenizerConfigBeside(file) ?? {};
  let impl: HfTokenizerImpl;
  const options = implConfig(json, config, file);
  try {
    impl = new HfTokenizerImpl(json, options);
  } catch (e) {
    throw new CrepeError(`bad tokenizer file ${file}: ${(e as Error).message.split('\n')[0]}`);
  }
  return new HfTokenizer(file, impl, config, json.post_processor);
}
