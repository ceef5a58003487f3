import * as zlib from 'zlib';
import { assetPath } from '../assets';
import { CrepeError } from '../errors';
import { MAX_TEXT_BYTES, decodeText, readInputFile, readTextFile } from '../io/input';
import { Rng } from '../util/random';
import { Tokenizer } from '../tokenizers/types';

/** Which use a text is for: perplexity evaluation, or drawing calibration windows. */
export type DatasetPart = 'eval' | 'calib';

/**
 * The research role of a text: calibration windows are drawn from 'calibration'; anything that
 * is tuned (searches, proxy studies, picking defaults) is measured on 'validation'; every
 * reported number is on 'test'. The three are disjoint for every dataset crepe tunes on.
 */
export type Split = 'calibration' | 'validation' | 'test';

export interface TextDataset {
  /** The spec as given, e.g. 'tinystories' or 'text:/path/file.txt'. */
  spec: string;
  part: DatasetPart;
  split: Split;
  text: string;
  /** Exactly which slice of which file: recorded with every result. */
  slice: string;
  /** The slice as character offsets [start, end) of `file`, where it is a slice of one file. */
  chars?: { file: string; start: number; end: number };
}

/**
 * The fixed TinyStories split (character offsets in tinystories_val_head.txt, each moved to the
 * next paragraph boundary): test = the head [0, evalEnd), validation = the middle [evalEnd,
 * calibStart), calibration = the tail [calibStart, end). The three tile the file and are
 * disjoint. (The middle and the tail carry some mojibake quotes, e.g. "â€œ", as the
 * source file does; the head has none.)
 */
export const TINYSTORIES_SPLIT = { evalEnd: 200_000, calibStart: 600_000 } as const;

/** The TinyStories test split (every reported TinyStories number). */
export const TINYSTORIES_TEST = 'tinystories';
/** The TinyStories validation split: what searches, proxy studies and default-picking use. */
export const TINYSTORIES_VALIDATION = 'tinystories-val';

export const DATASET_HELP =
  "tinystories (assets; eval = test split, first ~200 KB; calib = calibration split, from ~600 KB), tinystories-val (validation split, the middle ~200-600 KB, for tuning; eval only), wikitext2 (assets, raw test rows joined with '\\n\\n'; test, eval only), text:PATH (any UTF-8 file; evaluated = test), c4:PATH (C4 .json or .json.gz shard, documents joined with '\\n\\n'; evaluated = test)";

/**
 * Which split `spec` read as `part` is. Calibration reads are 'calibration'; evaluation reads
 * are 'test' except the named validation slices: a file given on the command line is taken to
 * be reported on, so tuning on it is refused (see `assertNotTest`).
 */
export function datasetSplit(spec: string, part: DatasetPart): Split {
  if (part === 'calib') return 'calibration';
  return spec === TINYSTORIES_VALIDATION ? 'validation' : 'test';
}

/**
 * Refuse to tune on a test split: `purpose` (e.g. "hill climbing") may only measure on a
 * validation split. Returns the split for the record.
 */
export function assertNotTest(spec: string, purpose: string): Split {
  const split = datasetSplit(spec, 'eval');
  if (split === 'test') {
    throw new CrepeError(`${purpose} may not tune on '${spec}', a test split (use ${TINYSTORIES_VALIDATION}, the validation split)`);
  }
  return split;
}

function readText(file: string): string {
  return readTextFile(file, 'dataset file');
}

/** Index just after the first blank line at or after `from` (a paragraph boundary). */
function nextParagraph(text: string, from: number): number {
  const i = text.indexOf('\n\n', from);
  return i < 0 ? text.length : i + 2;
}

/** HF's wikitext rows: each line keeps its newline; blank lines become empty rows. */
export function wikitextRows(raw: string): string[] {
  const lines = raw.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  return lines.map((l) => (l.trim().length > 0 ? `${l}\n` : ''));
}

/** C4 shards: one JSON object per line with a "text" field; .gz is decompressed. */
export function readC4(file: string): string[] {
  let buf = readInputFile(file, 'dataset file', MAX_TEXT_BYTES);
  if (file.endsWith('.gz')) {
    try {
      buf = zlib.gunzipSync(buf, { maxOutputLength: MAX_TEXT_BYTES });
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') throw new CrepeError(`${file} decompresses to more than ${MAX_TEXT_BYTES >> 20} MiB`);
      throw new CrepeError(`corrupt gzip file: ${file}`);
    }
  }
  const docs: string[] = [];
  const lines = decodeText(buf, file, 'dataset file').split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new CrepeError(`invalid JSON on line ${i + 1} of ${file}`);
    }
    const text = obj !== null && typeof obj === 'object' ? (obj as { text?: unknown }).text : undefined;
    if (typeof text !== 'string') throw new CrepeError(`line ${i + 1} of ${file} has no "text" string`);
    docs.push(text);
  });
  return docs;
}

export function loadDataset(spec: string, part: DatasetPart): TextDataset {
  let text: string;
  let slice: string;
  let chars: TextDataset['chars'];
  if (spec === TINYSTORIES_TEST || spec === TINYSTORIES_VALIDATION) {
    const name = 'tinystories_val_head.txt';
    const all = readText(assetPath('text', 'tinystories', name));
    const evalEnd = nextParagraph(all, TINYSTORIES_SPLIT.evalEnd);
    const calibStart = nextParagraph(all, TINYSTORIES_SPLIT.calibStart);
    let start: number;
    let end: number;
    if (spec === TINYSTORIES_VALIDATION) {
      if (part === 'calib') {
        throw new CrepeError(`${TINYSTORIES_VALIDATION} is the validation split: calibrate on ${TINYSTORIES_TEST} (its calibration split) instead`);
      }
      [start, end] = [evalEnd, calibStart];
    } else {
      [start, end] = part === 'eval' ? [0, evalEnd] : [calibStart, all.length];
    }
    text = all.slice(start, end);
    slice = `${name} chars [${start}, ${end})`;
    chars = { file: name, start, end };
  } else if (spec === 'wikitext2') {
    if (part === 'calib') {
      throw new CrepeError('wikitext2 holds only the test split here: calibrating on it would leak the evaluation text');
    }
    const rows = wikitextRows(readText(assetPath('text', 'wikitext2', 'wiki.test.raw')));
    text = rows.join('\n\n');
    slice = `wiki.test.raw, ${rows.length} rows joined with "\\n\\n"`;
  } else if (spec.startsWith('text:')) {
    const file = spec.slice(5);
    text = readText(file);
    slice = `${file} (whole file)`;
  } else if (spec.startsWith('c4:')) {
    const file = spec.slice(3);
    const docs = readC4(file);
    text = docs.join('\n\n');
    slice = `${file}, ${docs.length} documents joined with "\\n\\n"`;
  } else {
    throw new CrepeError(`unknown dataset '${spec}' (use ${DATASET_HELP})`);
  }
  if (text.trim().length === 0) throw new CrepeError(`dataset '${spec}' is empty`);
  return { spec, part, split: datasetSplit(spec, part), text, slice, ...(chars ? { chars } : {}) };
}

const tokenCache = new Map<string, Int32Array>();

/**
 * Tokenize a dataset once per process (BOS only at the very start, as the PPL protocol says, and
 * only when the tokenizer's own convention adds one: Qwen2's does not).
 */
export function tokenizeDataset(ds: TextDataset, tok: Tokenizer, tokenizerKey: string): Int32Array {
  const key = `${tokenizerKey}\u0000${ds.spec}\u0000${ds.part}`;
  let ids = tokenCache.get(key);
  if (!ids) {
    ids = tok.encode(ds.text, { bos: tok.addBos });
    tokenCache.set(key, ids);
  }
  return ids;
}

/** Non-overlapping evaluation windows of `seqlen` tokens, tail dropped. */
export function evaluationWindows(tokens: Int32Array, seqlen: number, maxWindows?: number): Int32Array[] {
  const n = Math.floor(tokens.length / seqlen);
  if (n === 0) {
    throw new CrepeError(`evaluation text has ${tokens.length} tokens, fewer than one window of ${seqlen}`);
  }
  if (maxWindows !== undefined && !(Number.isInteger(maxWindows) && maxWindows > 0)) throw new CrepeError(`max-windows must be a positive integer, got ${maxWindows}`);
  const count = maxWindows !== undefined ? Math.min(n, maxWindows) : n;
  const out: Int32Array[] = [];
  for (let w = 0; w < count; w++) out.push(tokens.subarray(w * seqlen, (w + 1) * seqlen));
  return out;
}

export interface CalibrationSample {
  windows: Int32Array[];
  starts: number[];
}

/**
 * `nsamples` windows of `seqlen` tokens at seeded uniform random offsets of the calibration
 * token stream (windows may overlap, as in Wanda's sampler).
 */
export function sampleCalibration(tokens: Int32Array, nsamples: number, seqlen: number, seed: number): CalibrationSample {
  if (!(Number.isInteger(nsamples) && nsamples > 0)) throw new CrepeError(`nsamples must be a positive integer, got ${nsamples}`);
  if (tokens.length < seqlen + 1) {
    throw new CrepeError(`calibration text has ${tokens.length} tokens, shorter than one window of ${seqlen}`);
  }
  const rng = new Rng(seed);
  const starts: number[] = [];
  const windows: Int32Array[] = [];
  for (let i = 0; i < nsamples; i++) {
    const s = rng.int(tokens.length - seqlen);
    starts.push(s);
    windows.push(tokens.slice(s, s + seqlen));
  }
  return { windows, starts };
}

export interface CalibrationDraw extends CalibrationSample {
  /** For per-document sampling (c4:PATH): the document each window was cut from. */
  documents?: number[];
  /** Exactly which text the windows come from: recorded with every result. */
  slice: string;
}

const c4Cache = new Map<string, string[]>();

/**
 * Wanda/SparseGPT's C4 rule (locuslab/wanda lib/data.py, get_c4): for each window, draw a
 * document index uniformly, tokenize that document alone (BOS first, as HF's LLaMA tokenizer
 * does) and redraw until it has MORE than `seqlen` tokens; then a uniform offset in [0, tokens -
 * seqlen) inside it. Only sampled documents are tokenized, and no window crosses a document
 * boundary. Refused when every document has been tried and none is long enough.
 */
export function sampleC4Calibration(
  docs: readonly string[],
  tok: Tokenizer,
  nsamples: number,
  seqlen: number,
  seed: number,
): CalibrationSample & { documents: number[] } {
  if (!(Number.isInteger(nsamples) && nsamples > 0)) throw new CrepeError(`nsamples must be a positive integer, got ${nsamples}`);
  if (docs.length === 0) throw new CrepeError('the C4 shard holds no documents');
  const rng = new Rng(seed);
  const encoded = new Map<number, Int32Array>();
  const tooShort = new Set<number>();
  const windows: Int32Array[] = [];
  const starts: number[] = [];
  const documents: number[] = [];
  for (let i = 0; i < nsamples; i++) {
    let d: number;
    let ids: Int32Array;
    for (;;) {
      d = rng.int(docs.length);
      ids = encoded.get(d) ?? tok.encode(docs[d], { bos: tok.addBos });
      encoded.set(d, ids);
      if (ids.length > seqlen) break;
      tooShort.add(d);
      if (tooShort.size === docs.length) {
        throw new CrepeError(`no document of the C4 shard has more than ${seqlen} tokens (calibration windows never cross documents)`);
      }
    }
    const s = rng.int(ids.length - seqlen);
    documents.push(d);
    starts.push(s);
    windows.push(ids.slice(s, s + seqlen));
  }
  return { windows, starts, documents };
}

/**
 * The calibration windows of a dataset spec: per document for `c4:PATH` (sampleC4Calibration),
 * otherwise uniform offsets of the calibration split's token stream (sampleCalibration).
 */
export function drawCalibrationWindows(
  spec: string,
  tok: Tokenizer,
  tokenizerKey: string,
  nsamples: number,
  seqlen: number,
  seed: number,
): CalibrationDraw {
  if (spec.startsWith('c4:')) {
    const file = spec.slice(3);
    let docs = c4Cache.get(file);
    if (!docs) {
      docs = readC4(file);
      c4Cache.set(file, docs);
    }
    const sample = sampleC4Calibration(docs, tok, nsamples, seqlen, seed);
    return { ...sample, slice: `${file}, ${docs.length} documents; windows drawn per document (Wanda's C4 rule)` };
  }
  const ds = loadDataset(spec, 'calib');
  return { ...sampleCalibration(tokenizeDataset(ds, tok, tokenizerKey), nsamples, seqlen, seed), slice: ds.slice };
}
