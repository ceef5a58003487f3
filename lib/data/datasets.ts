import * as fs from 'fs';
import * as zlib from 'zlib';
import { assetPath } from '../assets';
import { CrepeError } from '../errors';
import { Rng } from '../util/random';
import { Tokenizer } from '../tokenizers/types';

/** Which use a text is for: perplexity evaluation, or drawing calibration windows. */
export type DatasetPart = 'eval' | 'calib';

export interface TextDataset {
  /** The spec as given, e.g. 'tinystories' or 'text:/path/file.txt'. */
  spec: string;
  part: DatasetPart;
  text: string;
  /** Exactly which slice of which file: recorded with every result. */
  slice: string;
}

/**
 * The fixed TinyStories split (byte offsets in tinystories_val_head.txt, each moved to the next
 * paragraph boundary). Evaluation: the head of the file. Calibration: the tail, disjoint from
 * it and clear of the stretch near 400-440 KB whose quote characters are garbled.
 */
export const TINYSTORIES_SPLIT = { evalEnd: 200_000, calibStart: 600_000 } as const;

export const DATASET_HELP =
  "tinystories (assets; eval = first ~200 KB, calib = from ~600 KB), wikitext2 (assets, raw test rows joined with '\\n\\n'; eval only), text:PATH (any UTF-8 file), c4:PATH (C4 .json or .json.gz shard, documents joined with '\\n\\n')";

function readText(file: string): string {
  if (!fs.existsSync(file)) throw new CrepeError(`dataset file not found: ${file}`);
  return fs.readFileSync(file, 'utf8');
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
  if (!fs.existsSync(file)) throw new CrepeError(`dataset file not found: ${file}`);
  let buf = fs.readFileSync(file);
  if (file.endsWith('.gz')) {
    try {
      buf = zlib.gunzipSync(buf);
    } catch {
      throw new CrepeError(`corrupt gzip file: ${file}`);
    }
  }
  const docs: string[] = [];
  const lines = buf.toString('utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    let obj: unknown;
    try {
      obj = JSON.parse(line);
    } catch {
      throw new CrepeError(`invalid JSON on line ${i + 1} of ${file}`);
    }
    const text = (obj as { text?: unknown }).text;
    if (typeof text !== 'string') throw new CrepeError(`line ${i + 1} of ${file} has no "text" string`);
    docs.push(text);
  });
  return docs;
}

export function loadDataset(spec: string, part: DatasetPart): TextDataset {
  let text: string;
  let slice: string;
  if (spec === 'tinystories') {
    const file = assetPath('text', 'tinystories', 'tinystories_val_head.txt');
    const all = readText(file);
    if (part === 'eval') {
      const end = nextParagraph(all, TINYSTORIES_SPLIT.evalEnd);
      text = all.slice(0, end);
      slice = `tinystories_val_head.txt chars [0, ${end})`;
    } else {
      const start = nextParagraph(all, TINYSTORIES_SPLIT.calibStart);
      text = all.slice(start);
      slice = `tinystories_val_head.txt chars [${start}, ${all.length})`;
    }
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
  return { spec, part, text, slice };
}

const tokenCache = new Map<string, Int32Array>();

/** Tokenize a dataset once per process (BOS only at the very start, as the PPL protocol says). */
export function tokenizeDataset(ds: TextDataset, tok: Tokenizer, tokenizerKey: string): Int32Array {
  const key = `${tokenizerKey}\u0000${ds.spec}\u0000${ds.part}`;
  let ids = tokenCache.get(key);
  if (!ids) {
    ids = tok.encode(ds.text, { bos: true });
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
