/**
 * Writing a llama2.c (`tok*.bin`) or sentencepiece (`.model`) tokenizer as the Hugging Face files
 * a model folder needs: `tokenizer.json` (a BPE model with byte fallback, the shape transformers'
 * LlamaConverter gives Llama tokenizers), `tokenizer_config.json` and `special_tokens_map.json`.
 *
 * The goal is the source tokenizer's ids, exactly, from the HF tokenizers library:
 * - merges are every split (left, right) of a piece into two pieces, ranked by the merged piece's
 *   score (highest first), which is the order run.c and sentencepiece merge in;
 * - llama2.c pieces keep their spaces (run.c never maps U+2581 to a space) and the text gets
 *   run.c's dummy-prefix space; sentencepiece's normalization (dummy prefix, whitespace squeezing
 *   and trimming, spaces as U+2581) is spelled out with Replace/Prepend normalizers.
 * Written by hand: no npm package converts these formats, and transformers' own converter is
 * Python (and has no llama2.c reader).
 */
import { CrepeError } from '../errors';
import { Llama2cTokenizer } from './llama2c';
import { PieceType, SentencePieceTokenizer } from './sentencepiece';
import type { Tokenizer } from './types';

/** The HF names crepe gives the special tokens (Llama's). */
export const HF_SPECIAL_NAMES = { unk: '<unk>', bos: '<s>', eos: '</s>' } as const;

export interface HfTokenizerFiles {
  /** tokenizer.json */
  tokenizer: Record<string, unknown>;
  /** tokenizer_config.json */
  tokenizerConfig: Record<string, unknown>;
  /** special_tokens_map.json */
  specialTokensMap: Record<string, unknown>;
  /** Ids for config.json and generation_config.json (-1: none). */
  bosId: number;
  eosId: number;
  unkId: number;
}

export interface ExportOptions {
  /** tokenizer_config.json model_max_length: the model's context length. */
  modelMaxLength: number;
}

/** A special token as tokenizer.json lists it in added_tokens. */
function addedToken(id: number, content: string): Record<string, unknown> {
  return { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
}

/** run.c / sentencepiece merge order: the merged piece's score, highest first; ties by id. */
function rankedMerges(pieces: readonly string[], scoreOf: (id: number) => number, merges: (id: number) => boolean, idOf: Map<string, number>): [string, string][] {
  const list: { left: string; right: string; id: number; score: number }[] = [];
  pieces.forEach((piece, id) => {
    if (!merges(id)) return;
    const chars = Array.from(piece);
    for (let k = 1; k < chars.length; k++) {
      const left = chars.slice(0, k).join('');
      const right = chars.slice(k).join('');
      if (idOf.has(left) && idOf.has(right)) list.push({ left, right, id, score: scoreOf(id) });
    }
  });
  // Splits of one piece: longer left part first, as transformers' converter orders them.
  list.sort((a, b) => b.score - a.score || a.id - b.id || b.left.length - a.left.length);
  return list.map((m) => [m.left, m.right]);
}

interface Assembled {
  vocab: Map<string, number>;
  merges: [string, string][];
  specials: { unk: number; bos: number; eos: number };
  normalizer: unknown;
  decoder: unknown;
  byteFallback: boolean;
  addBos: boolean;
}

function assemble(a: Assembled, opts: ExportOptions): HfTokenizerFiles {
  const names = HF_SPECIAL_NAMES;
  const added = (['unk', 'bos', 'eos'] as const).filter((k) => a.specials[k] >= 0).map((k) => addedToken(a.specials[k], names[k])).sort((x, y) => (x.id as number) - (y.id as number));
  const bos = a.specials.bos;
  const single: unknown[] = [{ Sequence: { id: 'A', type_id: 0 } }];
  const pair: unknown[] = [{ Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }];
  if (a.addBos) {
    single.unshift({ SpecialToken: { id: names.bos, type_id: 0 } });
    pair.splice(1, 0, { SpecialToken: { id: names.bos, type_id: 1 } });
    pair.unshift({ SpecialToken: { id: names.bos, type_id: 0 } });
  }
  const tokenizer = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: a.normalizer,
    pre_tokenizer: null,
    // LlamaTokenizerFast's template with add_bos_token true, add_eos_token false.
    post_processor: {
      type: 'TemplateProcessing',
      single,
      pair,
      special_tokens: a.addBos ? { [names.bos]: { id: names.bos, ids: [bos], tokens: [names.bos] } } : {},
    },
    decoder: a.decoder,
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: a.specials.unk >= 0 ? names.unk : null,
      continuing_subword_prefix: null,
      end_of_word_suffix: null,
      fuse_unk: true,
      byte_fallback: a.byteFallback,
      ignore_merges: false,
      vocab: Object.fromEntries(a.vocab),
      // "left right" strings, which every tokenizers version reads, unless a piece holds a space
      // (llama2.c's do): then pairs, which tokenizers >= 0.20 (transformers >= 4.45) reads.
      merges: a.merges.some(([l, r]) => l.includes(' ') || r.includes(' ')) ? a.merges : a.merges.map(([l, r]) => `${l} ${r}`),
    },
  };
  const decoderEntries = Object.fromEntries(added.map((t) => [String(t.id), { content: t.content, lstrip: false, normalized: false, rstrip: false, single_word: false, special: true }]));
  const tokenizerConfig: Record<string, unknown> = {
    add_bos_token: a.addBos,
    add_eos_token: false,
    added_tokens_decoder: decoderEntries,
    ...(bos >= 0 ? { bos_token: names.bos } : { bos_token: null }),
    ...(a.specials.eos >= 0 ? { eos_token: names.eos } : {}),
    ...(a.specials.unk >= 0 ? { unk_token: names.unk } : {}),
    clean_up_tokenization_spaces: false,
    model_max_length: opts.modelMaxLength,
    // Not LlamaTokenizerFast: transformers 5 rebuilds that class's normalizer and pre-tokenizer
    // (Metaspace) from its own defaults, which encode llama2.c and whitespace-squeezing
    // sentencepiece text differently; PreTrainedTokenizerFast runs tokenizer.json as written
    // (transformers 4 and 5), as Llama 3's own files do.
    // No `legacy` / `add_prefix_space`: they steer LlamaTokenizer's conversion from a .model,
    // which never happens here (tokenizer.json is complete).
    tokenizer_class: 'PreTrainedTokenizerFast',
  };
  const mapEntry = (content: string) => ({ content, lstrip: false, normalized: false, rstrip: false, single_word: false });
  const specialTokensMap: Record<string, unknown> = {};
  if (bos >= 0) specialTokensMap.bos_token = mapEntry(names.bos);
  if (a.specials.eos >= 0) specialTokensMap.eos_token = mapEntry(names.eos);
  if (a.specials.unk >= 0) specialTokensMap.unk_token = mapEntry(names.unk);
  return { tokenizer, tokenizerConfig, specialTokensMap, bosId: bos, eosId: a.specials.eos, unkId: a.specials.unk };
}

/** Refuse a vocabulary the HF library cannot hold or that would shadow a special token's new name. */
function buildVocab(pieces: readonly string[], specials: { unk: number; bos: number; eos: number }, what: string): Map<string, number> {
  const vocab = new Map<string, number>();
  const rename = new Map<number, string>([
    [specials.unk, HF_SPECIAL_NAMES.unk],
    [specials.bos, HF_SPECIAL_NAMES.bos],
    [specials.eos, HF_SPECIAL_NAMES.eos],
  ]);
  pieces.forEach((p, id) => {
    const name = rename.get(id) ?? p;
    if (vocab.has(name)) throw new CrepeError(`cannot write tokenizer.json for ${what}: piece ${JSON.stringify(name)} appears twice (ids ${vocab.get(name)} and ${id})`);
    vocab.set(name, id);
  });
  return vocab;
}

/**
 * tokenizer.json for a llama2.c tokenizer, reproducing run.c's encode(): a dummy-prefix " ",
 * one vocabulary lookup per code point with <0xNN> byte fallback, then score-ordered merges.
 */
export function llama2cToHf(tok: Llama2cTokenizer, opts: ExportOptions): HfTokenizerFiles {
  const what = tok.path;
  const pieces = tok.pieces.map((p, id) => {
    const bytes = Buffer.from(p, 'latin1');
    const text = bytes.toString('utf8');
    if (!Buffer.from(text, 'utf8').equals(bytes)) throw new CrepeError(`cannot write tokenizer.json for ${what}: piece ${id} is not UTF-8 text`);
    return text;
  });
  for (let b = 0; b < 256; b++) {
    const want = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    if (pieces[b + 3] !== want) throw new CrepeError(`cannot write tokenizer.json for ${what}: id ${b + 3} is ${JSON.stringify(pieces[b + 3])}, not run.c's byte token ${want}`);
  }
  if (!pieces.includes(' ')) throw new CrepeError(`cannot write tokenizer.json for ${what}: no " " piece for the dummy prefix`);
  const specials = { unk: 0, bos: tok.bosId, eos: tok.eosId };
  const original = new Map<string, number>();
  pieces.forEach((p, id) => original.set(p, id));
  // run.c never merges into a piece scoring -1e10 or less.
  const merges = rankedMerges(pieces, (id) => tok.scores[id], (id) => tok.scores[id] > -1e10, original);
  const specialText = new Set([pieces[0], pieces[specials.bos], pieces[specials.eos]]);
  const touchesSpecial = merges.find(([l, r]) => specialText.has(l) || specialText.has(r) || specialText.has(l + r));
  if (touchesSpecial) throw new CrepeError(`cannot write tokenizer.json for ${what}: special piece ${JSON.stringify(touchesSpecial.join(''))} takes part in merges`);
  return assemble(
    {
      vocab: buildVocab(pieces, specials, what),
      merges,
      specials,
      normalizer: { type: 'Prepend', prepend: ' ' },
      // run.c's decode: byte tokens are raw bytes, the first piece loses its leading space.
      decoder: { type: 'Sequence', decoders: [{ type: 'ByteFallback' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }] },
      byteFallback: true,
      addBos: tok.addBos,
    },
    opts,
  );
}

/**
 * tokenizer.json for a sentencepiece BPE model (the CHAR models crepe reads are BPE without
 * merges), with its normalization as crepe's SentencePieceTokenizer applies it (including a
 * tokenizer_config.json convention beside the .model).
 */
export function sentencePieceToHf(tok: SentencePieceTokenizer, opts: ExportOptions): HfTokenizerFiles {
  const what = tok.path;
  const m = tok.model;
  if (m.types.includes(PieceType.USER_DEFINED)) throw new CrepeError(`cannot write tokenizer.json for ${what}: user-defined pieces are not converted`);
  const specials = { unk: tok.unkId, bos: tok.bosId, eos: tok.eosId };
  // The pieces text can match (crepe's idOfPiece), first id wins.
  const matchable = new Map<string, number>();
  m.pieces.forEach((p, id) => {
    const t = m.types[id];
    if ((t === PieceType.NORMAL || t === PieceType.UNUSED) && !matchable.has(p)) matchable.set(p, id);
  });
  const merges = m.modelType === 2 /* BPE */ ? rankedMerges(m.pieces, (id) => m.scores[id], (id) => matchable.get(m.pieces[id]) === id, matchable) : [];
  const space = m.escapeWhitespaces ? '\u2581' : ' ';
  const normalizers: unknown[] = [];
  const replace = (regex: string, content: string) => normalizers.push({ type: 'Replace', pattern: { Regex: regex }, content });
  if (m.removeExtraWhitespaces) {
    replace('\\A +', '');
    replace(' {2,}', ' ');
  }
  if (tok.addDummyPrefix) normalizers.push({ type: 'Prepend', prepend: space });
  if (m.escapeWhitespaces) normalizers.push({ type: 'Replace', pattern: { String: ' ' }, content: '\u2581' });
  if (m.removeExtraWhitespaces) replace(`${space}+\\z`, '');
  const decoders: unknown[] = [];
  if (m.escapeWhitespaces) decoders.push({ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' });
  decoders.push({ type: 'ByteFallback' }, { type: 'Fuse' });
  if (tok.addDummyPrefix) decoders.push({ type: 'Strip', content: ' ', start: 1, stop: 0 });
  return assemble(
    {
      vocab: buildVocab(m.pieces, specials, what),
      merges,
      specials,
      normalizer: normalizers.length === 1 ? normalizers[0] : { type: 'Sequence', normalizers },
      decoder: { type: 'Sequence', decoders },
      byteFallback: m.byteFallback,
      addBos: tok.addBos,
    },
    opts,
  );
}

/** The HF files for a loaded crepe tokenizer, or null when it is not a llama2.c or sentencepiece one. */
export function tokenizerToHf(tok: Tokenizer, opts: ExportOptions): HfTokenizerFiles | null {
  if (tok instanceof Llama2cTokenizer) return llama2cToHf(tok, opts);
  if (tok instanceof SentencePieceTokenizer) return sentencePieceToHf(tok, opts);
  return null;
}
