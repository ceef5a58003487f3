/**
 * Datasets and the perplexity protocol's token bookkeeping: the fixed TinyStories split,
 * WikiText-2 rows, C4 shards, evaluation windows, calibration sampling, and the user errors.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as zlib from 'zlib';
import { assetPath } from '../lib/assets';
import {
  TINYSTORIES_SPLIT,
  TINYSTORIES_TEST,
  TINYSTORIES_VALIDATION,
  assertNotTest,
  datasetSplit,
  drawCalibrationWindows,
  sampleC4Calibration,
  evaluationWindows,
  loadDataset,
  readC4,
  sampleCalibration,
  tokenizeDataset,
  wikitextRows,
} from '../lib/data/datasets';
import { CrepeError } from '../lib/errors';
import { datasetWindows } from '../lib/eval/evaluate';
import { perplexity } from '../lib/eval/perplexity';
import { openModel } from '../lib/model/resolve';
import { LlamaModel } from '../lib/model/runtime';
import { REPORT_DATASET, SEARCH_DATASET } from '../lib/search/objective';
import { makeTmp, rmTmp } from './helpers';

let tmp: string;
beforeAll(() => (tmp = makeTmp('crepe-datasets-')));
afterAll(() => rmTmp(tmp));
const file = (name: string, content: string | Buffer): string => {
  const p = path.join(tmp, name);
  fs.writeFileSync(p, content);
  return p;
};

/** [start, end) parsed from a slice description like "file chars [a, b)". */
function charRange(slice: string): [number, number] {
  const m = /chars \[(\d+), (\d+)\)/.exec(slice);
  if (!m) throw new Error(`no char range in ${slice}`);
  return [Number(m[1]), Number(m[2])];
}

describe('tinystories split', () => {
  const raw = () => fs.readFileSync(assetPath('text', 'tinystories', 'tinystories_val_head.txt'), 'utf8');

  test('eval and calib are disjoint, fixed slices of the file, cut at paragraph boundaries', () => {
    const all = raw();
    const ev = loadDataset('tinystories', 'eval');
    const ca = loadDataset('tinystories', 'calib');
    const [e0, e1] = charRange(ev.slice);
    const [c0, c1] = charRange(ca.slice);
    // Exactly the recorded slices.
    expect(ev.text).toBe(all.slice(e0, e1));
    expect(ca.text).toBe(all.slice(c0, c1));
    expect(e0).toBe(0);
    expect(c1).toBe(all.length);
    // Disjoint, with the garbled stretch near 400-440 KB in neither.
    expect(e1).toBeLessThanOrEqual(c0);
    expect(e1).toBeLessThan(400_000);
    expect(c0).toBeGreaterThan(440_000);
    // Fixed: the documented offsets, moved forward to the next blank line (not far).
    expect(e1).toBeGreaterThanOrEqual(TINYSTORIES_SPLIT.evalEnd);
    expect(e1 - TINYSTORIES_SPLIT.evalEnd).toBeLessThan(5_000);
    expect(c0).toBeGreaterThanOrEqual(TINYSTORIES_SPLIT.calibStart);
    expect(c0 - TINYSTORIES_SPLIT.calibStart).toBeLessThan(5_000);
    // Paragraph-aligned: the eval text ends with a blank line, calib starts right after one.
    expect(ev.text.endsWith('\n\n')).toBe(true);
    expect(all.slice(c0 - 2, c0)).toBe('\n\n');
    expect(ca.text[0]).not.toMatch(/\s/);
    // The same on every load.
    expect(loadDataset('tinystories', 'eval')).toEqual(ev);
    expect(ev.part).toBe('eval');
    expect(ca.part).toBe('calib');
  });

  test('no evaluation paragraph appears in the calibration text', () => {
    const ev = loadDataset('tinystories', 'eval').text;
    const ca = loadDataset('tinystories', 'calib').text;
    const paragraphs = ev.split('\n\n').filter((p) => p.length > 200);
    expect(paragraphs.length).toBeGreaterThan(100);
    for (const p of paragraphs.slice(0, 300)) expect(ca.includes(p)).toBe(false);
  });
});

describe('three disjoint splits: calibration, validation, test', () => {
  const raw = () => fs.readFileSync(assetPath('text', 'tinystories', 'tinystories_val_head.txt'), 'utf8');

  test('test, validation and calibration tile the TinyStories file at paragraph boundaries, without overlap', () => {
    const all = raw();
    const test_ = loadDataset(TINYSTORIES_TEST, 'eval');
    const val = loadDataset(TINYSTORIES_VALIDATION, 'eval');
    const cal = loadDataset(TINYSTORIES_TEST, 'calib');
    expect([test_.split, val.split, cal.split]).toEqual(['test', 'validation', 'calibration']);
    // The recorded character ranges agree with the human-readable slice and with the text.
    for (const ds of [test_, val, cal]) {
      expect(ds.chars).toBeDefined();
      expect(charRange(ds.slice)).toEqual([ds.chars!.start, ds.chars!.end]);
      expect(ds.text).toBe(all.slice(ds.chars!.start, ds.chars!.end));
    }
    // Tiling: [0, a) [a, b) [b, end): every character in exactly one split.
    expect(test_.chars!.start).toBe(0);
    expect(val.chars!.start).toBe(test_.chars!.end);
    expect(cal.chars!.start).toBe(val.chars!.end);
    expect(cal.chars!.end).toBe(all.length);
    // The validation slice is the unused middle (~200 KB to ~600 KB), cut at blank lines.
    expect(val.chars!.end - val.chars!.start).toBeGreaterThan(390_000);
    expect(val.text.startsWith('\n')).toBe(false);
    expect(val.text.endsWith('\n\n')).toBe(true);
    // No validation paragraph occurs in the test text (content-disjoint, not only by offsets).
    const paragraphs = val.text.split('\n\n').filter((p) => p.length > 200);
    expect(paragraphs.length).toBeGreaterThan(300);
    for (const p of paragraphs.slice(0, 400)) {
      expect(test_.text.includes(p)).toBe(false);
      expect(cal.text.includes(p)).toBe(false);
    }
  });

  test('the search measures on validation, disjoint from the split its final numbers are reported on', () => {
    expect(datasetSplit(SEARCH_DATASET, 'eval')).toBe('validation');
    expect(datasetSplit(REPORT_DATASET, 'eval')).toBe('test');
    const search = loadDataset(SEARCH_DATASET, 'eval').chars!;
    const report = loadDataset(REPORT_DATASET, 'eval').chars!;
    const calib = loadDataset(REPORT_DATASET, 'calib').chars!;
    expect(search.file).toBe(report.file);
    // Disjoint byte ranges: search ends before the report split begins, or begins after it ends.
    expect(search.end <= report.start || search.start >= report.end).toBe(true);
    expect(search.end <= calib.start || search.start >= calib.end).toBe(true);
    // The search's windows (first 16 x 512 tokens of stories260K) decode to text absent from the test split.
    const m = openModel('stories260K');
    m.source.close();
    const ids = tokenizeDataset(loadDataset(SEARCH_DATASET, 'eval'), m.tokenizer, m.tokenizerPath);
    const testText = loadDataset(REPORT_DATASET, 'eval').text;
    for (const w of evaluationWindows(ids, 512, 16)) expect(testText.includes(m.tokenizer.decode(w.subarray(100, 200)))).toBe(false);
  });

  test('tuning on a test split is refused; calibrating on the validation split is refused', () => {
    expect(assertNotTest(TINYSTORIES_VALIDATION, 'hill climbing')).toBe('validation');
    for (const spec of [TINYSTORIES_TEST, 'wikitext2', 'text:/tmp/x.txt', 'c4:/tmp/x.json']) {
      expect(() => assertNotTest(spec, 'hill climbing')).toThrow(CrepeError);
      expect(() => assertNotTest(spec, 'hill climbing')).toThrow(/hill climbing may not tune on .* a test split/);
    }
    expect(() => loadDataset(TINYSTORIES_VALIDATION, 'calib')).toThrow(CrepeError);
    expect(datasetSplit('c4:/x.json', 'calib')).toBe('calibration');
  });
});

describe('wikitext2', () => {
  test('4358 rows as HF gives them (blank lines empty, others keep their newline), joined with "\\n\\n"', () => {
    const rawText = fs.readFileSync(assetPath('text', 'wikitext2', 'wiki.test.raw'), 'utf8');
    const fileLines = rawText.split('\n').slice(0, -1);
    expect(fileLines).toHaveLength(4358);
    const rows = wikitextRows(rawText);
    expect(rows).toHaveLength(4358);
    const blank = fileLines.filter((l) => l.trim() === '').length;
    expect(rows.filter((r) => r === '')).toHaveLength(blank);
    expect(blank).toBeGreaterThan(1000);
    rows.forEach((r, i) => expect(r === '' ? fileLines[i].trim() : r).toBe(r === '' ? '' : `${fileLines[i]}\n`));
    // The HF dataset's first rows: "", " = Robert Boulter = \n", "".
    expect(rows.slice(0, 3)).toEqual(['', ' = Robert Boulter = \n', '']);
    const ds = loadDataset('wikitext2', 'eval');
    expect(ds.text).toBe(rows.join('\n\n'));
    expect(ds.text.length).toBe(rows.reduce((n, r) => n + r.length, 0) + 2 * (rows.length - 1));
    expect(ds.slice).toContain('4358 rows');
  });

  test('row rules on a small text', () => {
    expect(wikitextRows(' \n = A = \n \n b c\n')).toEqual(['', ' = A = \n', '', ' b c\n']);
    expect(wikitextRows('x\ny')).toEqual(['x\n', 'y\n']);
  });

  test('calibrating on wikitext2 is refused (it is the test split)', () => {
    expect(() => loadDataset('wikitext2', 'calib')).toThrow(CrepeError);
  });
});

describe('c4:<path>', () => {
  const docs = ['First document.\nWith two lines.', 'Second "quoted" document \u00e9\u4e2d.', 'Third.'];
  const jsonl = docs.map((t, i) => JSON.stringify({ text: t, timestamp: `2019-04-2${i}`, url: `https://x/${i}` })).join('\n') + '\n';

  test('.json: documents joined with "\\n\\n"', () => {
    const p = file('c4-train.00000-of-01024.json', jsonl);
    expect(readC4(p)).toEqual(docs);
    const ds = loadDataset(`c4:${p}`, 'calib');
    expect(ds.text).toBe(docs.join('\n\n'));
    expect(ds.slice).toContain('3 documents');
    expect(ds.part).toBe('calib');
  });

  test('.json.gz: the same text after decompression', () => {
    const p = file('c4-validation.00000-of-00008.json.gz', zlib.gzipSync(Buffer.from(jsonl, 'utf8')));
    expect(loadDataset(`c4:${p}`, 'eval').text).toBe(docs.join('\n\n'));
  });

  test('corrupt gzip, a bad JSON line, a line without text, a missing file → CrepeError', () => {
    const gz = zlib.gzipSync(Buffer.from(jsonl, 'utf8'));
    const corrupt = file('corrupt.json.gz', Buffer.concat([gz.subarray(0, 10), Buffer.from('garbage'), gz.subarray(30)]));
    expect(() => loadDataset(`c4:${corrupt}`, 'eval')).toThrow(CrepeError);
    const notGz = file('plain-text.json.gz', jsonl);
    expect(() => loadDataset(`c4:${notGz}`, 'eval')).toThrow(CrepeError);
    const badLine = file('bad.json', `${JSON.stringify({ text: 'ok' })}\n{"text": "unterminated\n`);
    expect(() => loadDataset(`c4:${badLine}`, 'eval')).toThrow(/line 2/);
    expect(() => loadDataset(`c4:${badLine}`, 'eval')).toThrow(CrepeError);
    const noText = file('notext.json', `${JSON.stringify({ content: 'x' })}\n`);
    expect(() => loadDataset(`c4:${noText}`, 'eval')).toThrow(CrepeError);
    expect(() => loadDataset(`c4:${path.join(tmp, 'absent.json')}`, 'eval')).toThrow(CrepeError);
    const empty = file('empty.json', '\n\n');
    expect(() => loadDataset(`c4:${empty}`, 'eval')).toThrow(CrepeError);
  });
});

describe('c4 calibration: one document per window, as Wanda samples C4', () => {
  // Paragraphs of the calibration split as "documents" of very different lengths.
  const paragraphs = () => loadDataset('tinystories', 'calib').text.split('\n\n').filter((p) => p.trim().length > 0);

  test('each window lies inside one document longer than seqlen; only sampled documents are tokenized', () => {
    const m = openModel('stories260K');
    m.source.close();
    const docs = paragraphs().slice(0, 400);
    const seqlen = 128;
    const encodedDocs: string[] = [];
    const counting = { ...m.tokenizer, encode: (t: string, o?: { bos?: boolean }) => (encodedDocs.push(t), m.tokenizer.encode(t, o)) };
    const s = sampleC4Calibration(docs, counting, 6, seqlen, 7);
    expect(s.windows).toHaveLength(6);
    // Each tokenization is of a single document, with BOS first (as HF's tokenizer(doc) gives).
    const lengths = docs.map((d) => m.tokenizer.encode(d, { bos: true }).length);
    expect(lengths.filter((n) => n > seqlen).length).toBeGreaterThan(5);
    expect(lengths.filter((n) => n <= seqlen).length).toBeGreaterThan(100);
    for (let i = 0; i < 6; i++) {
      const d = s.documents[i];
      const ids = m.tokenizer.encode(docs[d], { bos: true });
      expect(ids.length).toBeGreaterThan(seqlen);
      expect(s.starts[i]).toBeGreaterThanOrEqual(0);
      expect(s.starts[i] + seqlen).toBeLessThanOrEqual(ids.length);
      expect(Array.from(s.windows[i])).toEqual(Array.from(ids.subarray(s.starts[i], s.starts[i] + seqlen)));
    }
    // Only drawn documents were tokenized (far fewer than the shard), each as a whole document.
    expect(new Set(encodedDocs).size).toBeLessThan(docs.length / 4);
    for (const t of encodedDocs) expect(docs).toContain(t);
    // Seeded: same seed, same windows; another seed, other documents.
    const again = sampleC4Calibration(docs, m.tokenizer, 6, seqlen, 7);
    expect(again.documents).toEqual(s.documents);
    expect(again.starts).toEqual(s.starts);
    expect(sampleC4Calibration(docs, m.tokenizer, 6, seqlen, 8).documents).not.toEqual(s.documents);
  });

  test('c4:PATH calibration goes through the per-document rule and records the documents', () => {
    const m = openModel('stories260K');
    m.source.close();
    const docs = paragraphs().slice(0, 60);
    const p = file('c4-calib.json', docs.map((text) => JSON.stringify({ text })).join('\n') + '\n');
    const d = drawCalibrationWindows(`c4:${p}`, m.tokenizer, m.tokenizerPath, 4, 128, 3);
    const direct = sampleC4Calibration(docs, m.tokenizer, 4, 128, 3);
    expect(d.documents).toEqual(direct.documents);
    expect(d.starts).toEqual(direct.starts);
    expect(d.slice).toContain('60 documents');
    // Every document too short: a one-line refusal, not an endless redraw.
    const short = file('c4-short.json', ['a', 'b c', 'Once.'].map((text) => JSON.stringify({ text })).join('\n'));
    expect(() => drawCalibrationWindows(`c4:${short}`, m.tokenizer, m.tokenizerPath, 2, 64, 0)).toThrow(/no document .* more than 64 tokens/);
    expect(() => sampleC4Calibration([], m.tokenizer, 2, 64, 0)).toThrow(CrepeError);
    expect(() => sampleC4Calibration(docs, m.tokenizer, 0, 64, 0)).toThrow(CrepeError);
  });
});

describe('text:<path> and errors', () => {
  test('a whole file as text', () => {
    const p = file('story.txt', 'Once upon a time.\n\nThe end.\n');
    const ds = loadDataset(`text:${p}`, 'eval');
    expect(ds.text).toBe('Once upon a time.\n\nThe end.\n');
    expect(ds.slice).toContain(p);
  });

  test('an empty or blank dataset → CrepeError', () => {
    expect(() => loadDataset(`text:${file('empty.txt', '')}`, 'eval')).toThrow(CrepeError);
    expect(() => loadDataset(`text:${file('blank.txt', ' \n\n\t\n')}`, 'calib')).toThrow(CrepeError);
  });

  test('a missing file or unknown dataset name → CrepeError', () => {
    expect(() => loadDataset(`text:${path.join(tmp, 'nope.txt')}`, 'eval')).toThrow(CrepeError);
    expect(() => loadDataset('tinystorie', 'eval')).toThrow(CrepeError);
    expect(() => loadDataset('c4', 'eval')).toThrow(CrepeError);
  });

  test('a text too short for one window → CrepeError (eval and calibration)', () => {
    const m = openModel('stories260K');
    m.source.close();
    const p = file('short.txt', 'Tom had a dog.\n');
    expect(() => datasetWindows(m, `text:${p}`, { seqlen: 64 })).toThrow(CrepeError);
    const ids = tokenizeDataset(loadDataset(`text:${p}`, 'calib'), m.tokenizer, m.tokenizerPath);
    expect(ids.length).toBeLessThan(64);
    expect(() => sampleCalibration(ids, 4, 64, 0)).toThrow(CrepeError);
    // And for a long enough text the same call works.
    expect(datasetWindows(m, `text:${p}`, { seqlen: ids.length }).windows).toHaveLength(1);
  });
});

describe('evaluationWindows', () => {
  const tokens = Int32Array.from({ length: 1000 }, (_, i) => i);

  test('non-overlapping windows from the start, tail dropped, maxWindows respected', () => {
    const w = evaluationWindows(tokens, 64);
    expect(w).toHaveLength(15); // floor(1000 / 64); the last 40 tokens are dropped
    w.forEach((win, k) => expect(Array.from(win)).toEqual(Array.from({ length: 64 }, (_, i) => k * 64 + i)));
    expect(evaluationWindows(tokens, 64, 4)).toHaveLength(4);
    expect(evaluationWindows(tokens, 64, 400)).toHaveLength(15);
    expect(evaluationWindows(tokens, 1000)).toHaveLength(1);
    expect(() => evaluationWindows(tokens, 1001)).toThrow(CrepeError);
    for (const bad of [0, -1, 1.5, NaN]) expect(() => evaluationWindows(tokens, 64, bad)).toThrow(CrepeError);
  });

  test('perplexity counts windows x (seqlen - 1) predicted tokens and averages their NLL', () => {
    // A stand-in model: log p = -ln 2 for even targets, -ln 4 for odd ones.
    const fake = {
      windowLogProbs: (w: Int32Array) => Float32Array.from({ length: w.length - 1 }, (_, t) => -Math.log(w[t + 1] % 2 ? 4 : 2)),
    } as unknown as LlamaModel;
    const windows = evaluationWindows(tokens, 64);
    const r = perplexity(fake, windows);
    expect(r.windows).toBe(15);
    expect(r.seqlen).toBe(64);
    expect(r.tokens).toBe(15 * 63);
    // Targets are 1..63 in window 0, 65..127 in window 1, ...: 32 odd, 31 even each.
    const nll = (32 * Math.log(4) + 31 * Math.log(2)) / 63;
    expect(r.nll).toBeCloseTo(nll, 6);
    expect(r.ppl).toBeCloseTo(Math.exp(nll), 6);
    expect(r.tokensPerSecond).toBeGreaterThan(0);
  });
});

describe('sampleCalibration', () => {
  const tokens = Int32Array.from({ length: 5000 }, (_, i) => (i * 7919) % 10007);

  test('deterministic for a seed, different for another, windows inside the token range', () => {
    const a = sampleCalibration(tokens, 32, 128, 0);
    const b = sampleCalibration(tokens, 32, 128, 0);
    const c = sampleCalibration(tokens, 32, 128, 1);
    expect(a.starts).toEqual(b.starts);
    expect(a.windows).toEqual(b.windows);
    expect(c.starts).not.toEqual(a.starts);
    expect(a.windows).toHaveLength(32);
    a.starts.forEach((s, i) => {
      expect(Number.isInteger(s)).toBe(true);
      expect(s).toBeGreaterThanOrEqual(0);
      expect(s + 128).toBeLessThanOrEqual(tokens.length);
      expect(Array.from(a.windows[i])).toEqual(Array.from(tokens.subarray(s, s + 128)));
    });
    // Spread over the stream, not stuck at one place.
    expect(new Set(a.starts).size).toBeGreaterThan(28);
    expect(Math.max(...a.starts) - Math.min(...a.starts)).toBeGreaterThan(2500);
    // Windows are copies: editing one leaves the stream alone.
    a.windows[0][0] = -1;
    expect(tokens[a.starts[0]]).not.toBe(-1);
  });

  test('the smallest stream that fits, and bad arguments', () => {
    const short = tokens.subarray(0, 129);
    const s = sampleCalibration(short, 5, 128, 3);
    expect(s.starts).toEqual([0, 0, 0, 0, 0]);
    expect(() => sampleCalibration(tokens.subarray(0, 128), 1, 128, 0)).toThrow(CrepeError);
    expect(() => sampleCalibration(tokens, 0, 128, 0)).toThrow(CrepeError);
    expect(() => sampleCalibration(tokens, 2.5, 128, 0)).toThrow(CrepeError);
  });

  test('real calibration windows come from the calibration text only', () => {
    const m = openModel('stories260K');
    m.source.close();
    const calib = tokenizeDataset(loadDataset('tinystories', 'calib'), m.tokenizer, m.tokenizerPath);
    const evalIds = tokenizeDataset(loadDataset('tinystories', 'eval'), m.tokenizer, m.tokenizerPath);
    const s = sampleCalibration(calib, 16, 256, 0);
    // Decoded calibration windows lie in the calibration text and not in the evaluation text.
    const calibText = loadDataset('tinystories', 'calib').text;
    const evalText = loadDataset('tinystories', 'eval').text;
    for (const w of s.windows.slice(0, 4)) {
      const mid = m.tokenizer.decode(w.subarray(32, 96));
      expect(calibText.includes(mid)).toBe(true);
      expect(evalText.includes(mid)).toBe(false);
    }
    expect(evalIds.length).toBeGreaterThan(40_000);
  });
});
