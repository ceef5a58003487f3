/**
 * `crepe report`: paper-style Markdown tables (dense first, best pruned PPL per column in bold)
 * and headless vega SVG plots, from a small hand-made results CSV.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Row, resultColumns } from '../lib/experiments/cell';
import { csvHeader, csvLine } from '../lib/util/csv';
import { buildTables, readResults, tableMarkdown, writeReport } from '../lib/experiments/report';
import { lines, makeTmp, rmTmp, runCli } from './helpers';

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-report-');
});
afterAll(() => rmTmp(tmp));

const columns = resultColumns(['tinystories', 'wikitext2']);

/** A row of the sweep CSV; PPLs for tinystories and wikitext2. */
function row(key: string, model: string, label: string, structure: string, group: string, sparsity: number, ts: number, wt: number, dense: [number, number]): Row {
  return {
    key, model, method: label === 'dense' ? 'dense' : label.split('(')[0], label, params: '{}', structure, group, sparsity,
    achieved_sparsity: sparsity, calib_dataset: label === 'dense' ? '' : 'tinystories', calib_nsamples: 16, calib_seqlen: 128, calib_seed: 0,
    propagate: 'pruned', tinystories_seqlen: 128, tinystories_windows: 8, tinystories_dense_ppl: dense[0], tinystories_ppl: ts,
    wikitext2_seqlen: 128, wikitext2_windows: 4, wikitext2_dense_ppl: dense[1], wikitext2_ppl: wt, prune_seconds: 1, eval_seconds: 2, cpu_seconds: 3,
    backend: 'wasm+simd', code_version: 'abc123', config: 'experiments/hand.json', timestamp: '2026-01-01T00:00:00.000Z',
  };
}

function writeCsv(file: string, rows: Row[], tail = ''): void {
  fs.writeFileSync(file, csvHeader(columns) + rows.map((r) => csvLine(columns, r)).join('') + tail);
}

const d1: [number, number] = [4, 100];
const d2: [number, number] = [2, 20];
const handRows: Row[] = [
  row('d1', 'tiny', 'dense', 'dense', '', 0, 4, 100, d1),
  row('m5', 'tiny', 'magnitude', 'unstructured', 'matrix', 0.5, 12.5, 300, d1),
  row('m7', 'tiny', 'magnitude', 'unstructured', 'matrix', 0.7, 90, 3000, d1),
  row('w5', 'tiny', 'wanda', 'unstructured', 'row', 0.5, 8.25, 200, d1),
  row('w7', 'tiny', 'wanda', 'unstructured', 'row', 0.7, 40, 4000, d1),
  row('m24', 'tiny', 'magnitude', '2:4', '', 0.5, 20, 500, d1),
  row('w24', 'tiny', 'wanda', '2:4', '', 0.5, 20, 400, d1), // a tie: both bold
  row('c5', 'tiny', 'crepe(gamma=0.1)', 'unstructured', 'matrix', 0.5, 7.5, 250, d1), // no 0.7, no 2:4
  row('d2', 'other', 'dense', 'dense', '', 0, 2, 20, d2),
  row('o5', 'other', 'wanda', 'unstructured', 'row', 0.5, 3, 30, d2),
  row('o48', 'other', 'wanda', '4:8', '', 0.5, 5, 50, d2),
];

test('tables: per model and dataset, dense first, sparsities then N:M, best in bold, gaps as dashes', () => {
  const csv = path.join(tmp, 'hand.csv');
  // An unfinished last line (a sweep still running) is ignored.
  writeCsv(csv, handRows, 'zz,tiny,wan');
  const results = readResults(csv);
  expect(results.datasets).toEqual(['tinystories', 'wikitext2']);
  const tables = buildTables(results);
  expect(tables.map((t) => `${t.model}/${t.dataset}`)).toEqual(['tiny/tinystories', 'tiny/wikitext2', 'other/tinystories', 'other/wikitext2']);
  const md = tableMarkdown(tables[0]).split('\n');
  expect(md).toEqual([
    '| Method | Group | 50% | 70% | 2:4 |',
    '|:--|:--|--:|--:|--:|',
    '| Dense | – | 4.00 | 4.00 | 4.00 |',
    '| magnitude | matrix | 12.50 | 90.00 | **20.00** |',
    '| wanda | row | 8.25 | **40.00** | **20.00** |',
    '| crepe(gamma=0.1) | matrix | **7.50** | – | – |',
  ]);
  const wiki = tableMarkdown(tables[1]).split('\n');
  expect(wiki[3]).toBe('| magnitude | matrix | 300.00 | **3000.00** | 500.00 |');
  expect(wiki[4]).toBe('| wanda | row | **200.00** | 4000.00 | **400.00** |');
  expect(tableMarkdown(tables[2]).split('\n')[0]).toBe('| Method | Group | 50% | 4:8 |');
});

test('writeReport: markdown with tables, settings and plots; SVGs with text, written atomically', async () => {
  const csv = path.join(tmp, 'hand.csv');
  writeCsv(csv, handRows);
  const out = path.join(tmp, 'report');
  const files = await writeReport(csv, out);
  expect(files.markdown).toBe(path.join(out, 'hand.md'));
  expect(files.svgs.map((f) => path.basename(f)).sort()).toEqual([
    'hand_tinystories_nm.svg', 'hand_tinystories_unstructured.svg', 'hand_wikitext2_nm.svg', 'hand_wikitext2_unstructured.svg',
  ]);
  const md = fs.readFileSync(files.markdown, 'utf8');
  expect(md).toContain('### tiny on tinystories (8 windows x 128 tokens)');
  expect(md).toContain('| wanda | row | 8.25 | **40.00** | **20.00** |');
  expect(md).toContain('![tinystories unstructured](hand_tinystories_unstructured.svg)');
  expect(md).toContain('crepe sweep --config experiments/hand.json');
  expect(md).toMatch(/tiny: calibration tinystories \(calibration split\), 16 samples x 128 tokens, seed 0/);
  expect(md).toMatch(/eval wikitext2: 4 windows x 128 tokens; dense PPL 100\.00/);
  expect(md).toMatch(/Backend: wasm\+simd; code version: abc123/);
  for (const f of files.svgs) {
    const svg = fs.readFileSync(f, 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    expect(svg).toContain('</svg>');
    expect(svg).toMatch(/<text[^>]*>perplexity<\/text>/);
    expect(svg).toMatch(/<text[^>]*>tiny<\/text>/); // one panel per model
    expect(svg).toMatch(/<text[^>]*>other<\/text>/);
  }
  const line = fs.readFileSync(path.join(out, 'hand_tinystories_unstructured.svg'), 'utf8');
  expect(line).toMatch(/<text[^>]*>wanda<\/text>/); // legend
  expect(line).toMatch(/<text[^>]*>50%<\/text>/); // sparsity axis
  expect(fs.readdirSync(out).filter((f) => f.includes('.tmp'))).toEqual([]);
});

test('several calibration seeds: mean ± sample std (n) per cell, split named, whiskers in the plots', async () => {
  const seeded = (key: string, label: string, structure: string, group: string, seed: number, ts: number): Row => ({
    ...row(key, 'tiny', label, structure, group, 0.5, ts, 100 + seed, d1),
    calib_seed: label === 'dense' ? '' : seed,
    tinystories_split: 'test',
    tinystories_slice: 'tinystories_val_head.txt chars [0, 200291)',
  });
  const rows = [
    seeded('d', 'dense', 'dense', '', 0, 4),
    // 10, 12, 14: mean 12, sample std 2 (n - 1 in the denominator)
    seeded('w0', 'wanda', 'unstructured', 'row', 0, 10), seeded('w1', 'wanda', 'unstructured', 'row', 1, 12), seeded('w2', 'wanda', 'unstructured', 'row', 2, 14),
    // 11, 11.5, 12.5: mean 11.6667, std sqrt(((2/3)^2 + (1/6)^2 + (5/6)^2) / 2) = 0.7638
    seeded('m0', 'magnitude', 'unstructured', 'matrix', 0, 11), seeded('m1', 'magnitude', 'unstructured', 'matrix', 1, 11.5), seeded('m2', 'magnitude', 'unstructured', 'matrix', 2, 12.5),
    // one seed only: shown as a plain value
    seeded('n0', 'wanda', '2:4', '', 0, 30),
  ];
  const csv = path.join(tmp, 'seeds.csv');
  writeCsv(csv, rows);
  const t = buildTables(readResults(csv))[0];
  expect(t.split).toBe('test');
  expect(tableMarkdown(t).split('\n').slice(2)).toEqual([
    '| Dense | – | 4.00 | 4.00 |',
    '| wanda | row | 12.00 ± 2.00 (n=3) | **30.00** |',
    '| magnitude | matrix | **11.67 ± 0.76 (n=3)** | – |',
  ]);
  const files = await writeReport(csv, path.join(tmp, 'seeds'));
  const md = fs.readFileSync(files.markdown, 'utf8');
  expect(md).toContain('### tiny on tinystories, test split (8 windows x 128 tokens)');
  expect(md).toMatch(/tiny: calibration tinystories \(calibration split\), 16 samples x 128 tokens, seeds 0, 1, 2/);
  expect(md).toContain('eval tinystories: test split, tinystories_val_head.txt chars [0, 200291): 8 windows x 128 tokens');
  const svg = fs.readFileSync(files.svgs.find((f) => f.endsWith('_tinystories_unstructured.svg'))!, 'utf8');
  expect(svg).toContain('whiskers = mean ± std over calibration seeds');
  expect(svg).toMatch(/class="mark-rule role-mark/);
});

test('crepe report CLI writes next to the CSV by default; bad input exits 2 with one line', () => {
  const dir = path.join(tmp, 'cli');
  fs.mkdirSync(dir);
  const csv = path.join(dir, 'res.csv');
  writeCsv(csv, handRows.slice(0, 5));
  const r = runCli(['report', csv]);
  expect(r.code).toBe(0);
  expect(fs.readdirSync(dir).sort()).toEqual(['res.csv', 'res.md', 'res_tinystories_unstructured.svg', 'res_wikitext2_unstructured.svg']);
  expect(fs.readFileSync(path.join(dir, 'res.md'), 'utf8')).toContain('| wanda | row | **8.25** | **40.00** |');

  const missing = runCli(['report', path.join(dir, 'nope.csv')]);
  expect(missing.code).toBe(2);
  expect(lines(missing.stderr)).toEqual([expect.stringMatching(/^crepe: results file not found: .*nope\.csv$/)]);
  const empty = path.join(dir, 'empty.csv');
  fs.writeFileSync(empty, csvHeader(columns));
  const e = runCli(['report', empty]);
  expect(e.code).toBe(2);
  expect(lines(e.stderr)).toEqual([expect.stringMatching(/holds no results yet/)]);
});
