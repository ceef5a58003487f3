/**
 * `crepe report`: paper-style Markdown tables (dense first, best pruned PPL per column in bold)
 * and headless vega SVG plots, from a small hand-made results CSV.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Row, resultColumns } from '../lib/experiments/cell';
import { csvHeader, csvLine } from '../lib/util/csv';
import { buildTables, plotPoints, readResults, tableMarkdown, writeReport } from '../lib/experiments/report';
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
  // Models by name, whatever order the rows were written in.
  expect(tables.map((t) => `${t.model}/${t.dataset}`)).toEqual(['other/tinystories', 'other/wikitext2', 'tiny/tinystories', 'tiny/wikitext2']);
  const md = tableMarkdown(tables[2]).split('\n');
  expect(md).toEqual([
    '| Method | Group | 50% | 70% | 2:4 |',
    '|:--|:--|--:|--:|--:|',
    '| Dense | – | 4.00 | 4.00 | 4.00 |',
    '| magnitude | matrix | 12.50 | 90.00 | **20.00** |',
    '| wanda | row | 8.25 | **40.00** | **20.00** |',
    '| crepe(gamma=0.1) | matrix | **7.50** | – | – |',
  ]);
  const wiki = tableMarkdown(tables[3]).split('\n');
  expect(wiki[3]).toBe('| magnitude | matrix | 300.00 | **3000.00** | 500.00 |');
  expect(wiki[4]).toBe('| wanda | row | **200.00** | 4000.00 | **400.00** |');
  expect(tableMarkdown(tables[0]).split('\n')[0]).toBe('| Method | Group | 50% | 4:8 |');
});

test('writeReport: markdown with tables, settings and plots; SVGs with text, written atomically', async () => {
  const csv = path.join(tmp, 'hand.csv');
  writeCsv(csv, handRows);
  const out = path.join(tmp, 'report');
  const files = await writeReport(csv, { out });
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
    '| magnitude | matrix | **11.67 ± 0.76 (n=3)** | – |',
    '| wanda | row | 12.00 ± 2.00 (n=3) | **30.00** |',
  ]);
  const files = await writeReport(csv, { out: path.join(tmp, 'seeds') });
  const md = fs.readFileSync(files.markdown, 'utf8');
  expect(md).toContain('### tiny on tinystories, test split (8 windows x 128 tokens)');
  expect(md).toMatch(/tiny: calibration tinystories \(calibration split\), 16 samples x 128 tokens, seeds 0, 1, 2/);
  expect(md).toContain('eval tinystories: test split, tinystories_val_head.txt chars [0, 200291): 8 windows x 128 tokens');
  const svg = fs.readFileSync(files.svgs.find((f) => f.endsWith('_tinystories_unstructured.svg'))!, 'utf8');
  expect(svg).toContain('whiskers = mean ± std over calibration seeds');
  expect(svg).toMatch(/class="mark-rule role-mark/);
});

test('achieved sparsity off the column: shown past half a point; past two points neither bold nor plotted', () => {
  const at = (key: string, label: string, structure: string, sparsity: number, achieved: number, ts: number): Row => ({
    ...row(key, 'tiny', label, structure, structure === 'unstructured' ? 'matrix' : '', sparsity, ts, 100, d1),
    achieved_sparsity: achieved,
  });
  const rows = [
    row('d', 'tiny', 'dense', 'dense', '', 0, 4, 100, d1),
    // 64-wide rows at 70% keep 20 of 64: 68.75%, 1.25 points off (shown, still compared)
    at('a7', 'wanda', 'unstructured', 0.7, 0.6875, 30),
    at('b7', 'ria', 'unstructured', 0.7, 0.7, 35),
    // one of five blocks moved from 2:4 to 3:4 (OWL): 45%, 5 points off (shown, not compared)
    at('a24', 'ria+owl', '2:4', 0.5, 0.45, 8),
    at('b24', 'ria', '2:4', 0.5, 0.5, 20),
    // 0.3 points off (per-row rounding of a 172-wide row): not shown
    at('c5', 'ria', 'unstructured', 0.5, 0.497, 9),
  ];
  const csv = path.join(tmp, 'achieved.csv');
  writeCsv(csv, rows);
  const t = buildTables(readResults(csv))[0];
  expect(tableMarkdown(t).split('\n').slice(2)).toEqual([
    '| Dense | – | 4.00 | 4.00 | 4.00 |',
    '| wanda | matrix | – | **30.00, 68.8% sparse** | – |',
    '| ria | matrix | **9.00** | 35.00 | **20.00** |',
    '| ria+owl | – | – | – | 8.00, 45% sparse |',
  ]);
  const nm = plotPoints([t], 'tinystories', 'nm').filter((p) => p.kind === 'pruned');
  expect(nm.map((p) => p.method)).toEqual(['ria']);
  expect(plotPoints([t], 'tinystories', 'unstructured').filter((p) => p.kind === 'pruned').map((p) => p.method).sort()).toEqual(['ria', 'ria', 'wanda']);
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

describe('report order, merging and outputs', () => {
  test('the report does not depend on the order the rows were written in (byte for byte)', async () => {
    const dir = path.join(tmp, 'order');
    fs.mkdirSync(dir);
    const csv = path.join(dir, 'r.csv');
    const report = async () => {
      const files = await writeReport(csv);
      return [files.markdown, ...files.svgs].map((f) => [path.basename(f), fs.readFileSync(f, 'utf8')]);
    };
    writeCsv(csv, handRows);
    const fa = await report();
    // Same rows, reversed and rotated: as workers finishing cells in another order write them.
    writeCsv(csv, [...handRows.slice(5).reverse(), ...handRows.slice(0, 5)]);
    const fb = await report();
    expect(fb).toEqual(fa);
    expect(fa).toHaveLength(5);
    // Methods follow the strategy registry (magnitude, wanda, ..., crepe), not the file.
    const tiny = fa[0][1].slice(fa[0][1].indexOf('### tiny on tinystories'));
    expect(tiny.indexOf('| magnitude |')).toBeLessThan(tiny.indexOf('| wanda |'));
    expect(tiny.indexOf('| wanda |')).toBeLessThan(tiny.indexOf('| crepe(gamma=0.1) |'));
  });

  test('several CSVs (shards) merge into the report of their union; duplicates, conflicts and other columns are refused in one line', async () => {
    const dir = path.join(tmp, 'merge');
    fs.mkdirSync(dir);
    const whole = path.join(dir, 'whole.csv');
    writeCsv(whole, handRows);
    const shards = [0, 1, 2].map((k) => path.join(dir, `main.${k + 1}of3.csv`));
    shards.forEach((f, k) => writeCsv(f, handRows.filter((_, i) => i % 3 === k)));
    const one = await writeReport(whole, { out: path.join(dir, 'one') });
    expect(path.basename((await writeReport(shards, { out: path.join(dir, 'prefix') })).markdown)).toBe('main.md'); // the shards' common prefix
    const merged = await writeReport(shards, { out: path.join(dir, 'merged'), name: 'whole' });
    // Identical but for the lines that name the input files.
    const body = (f: string) => fs.readFileSync(f, 'utf8').split('\n').filter((l) => !/^# Results|^- Sweep|^- Report/.test(l));
    expect(body(merged.markdown)).toEqual(body(one.markdown));
    expect(fs.readFileSync(merged.markdown, 'utf8')).toContain('merged from');
    one.svgs.forEach((f, i) => expect(fs.readFileSync(merged.svgs[i], 'utf8')).toBe(fs.readFileSync(f, 'utf8')));

    const refuse = (args: string[]) => {
      const r = runCli(['report', ...args, '--out', path.join(dir, 'refused')]);
      expect(r.code).toBe(2);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(fs.existsSync(path.join(dir, 'refused'))).toBe(false);
      return r.stderr;
    };
    expect(refuse([shards[0], shards[1], shards[0]])).toMatch(/is given twice/);
    expect(refuse([whole, shards[1]])).toMatch(/^crepe: cell \w+ \(.*\) is in both .*whole\.csv and .*main\.2of3\.csv/);
    // Another key at the same table entry: a conflict, named.
    const conflict = path.join(dir, 'conflict.csv');
    writeCsv(conflict, [{ ...handRows[1], key: 'other-key' }]);
    expect(refuse([shards[1], conflict])).toMatch(/both hold tiny magnitude unstructured 0\.5 per matrix seed 0 with different settings/);
    const otherCols = path.join(dir, 'cols.csv');
    fs.writeFileSync(otherCols, csvHeader(resultColumns(['tinystories'])));
    expect(refuse([shards[0], otherCols])).toMatch(/has other columns than/);
  });

  test('a CSV holding only the dense row gives a valid report (no plots)', () => {
    const dir = path.join(tmp, 'dense-only');
    fs.mkdirSync(dir);
    writeCsv(path.join(dir, 'd.csv'), [handRows[0]]);
    const r = runCli(['report', path.join(dir, 'd.csv')]);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(fs.readdirSync(dir).sort()).toEqual(['d.csv', 'd.md']);
    const md = fs.readFileSync(path.join(dir, 'd.md'), 'utf8');
    expect(md).toContain('| Dense | 4.00 |');
    expect(md).toContain('No pruned results yet.');
  });

  test('output policy: never over an input, never over a file crepe did not write (unless --force), checked before any work', () => {
    const dir = path.join(tmp, 'policy');
    fs.mkdirSync(dir);
    // A results CSV named .md: its report would be <name>.md, the input itself.
    const asMd = path.join(dir, 'res.md');
    writeCsv(asMd, handRows);
    const before = fs.readFileSync(asMd, 'utf8');
    const self = runCli(['report', asMd]);
    expect(self.code).toBe(2);
    expect(lines(self.stderr)).toEqual([expect.stringMatching(/^crepe: the report would write .*res\.md over its input .*res\.md: give another --name or --out$/)]);
    expect(fs.readFileSync(asMd, 'utf8')).toBe(before);
    expect(fs.readdirSync(dir)).toEqual(['res.md']);
    expect(runCli(['report', asMd, '--name', 'res-report']).code).toBe(0);

    // A user's file at the second plot's name: refused before anything is written.
    const out = path.join(dir, 'out');
    fs.mkdirSync(out);
    const csv = path.join(dir, 'r.csv');
    writeCsv(csv, handRows);
    fs.writeFileSync(path.join(out, 'r_tinystories_nm.svg'), 'my drawing');
    const user = runCli(['report', csv, '--out', out]);
    expect(user.code).toBe(2);
    expect(lines(user.stderr)).toEqual([expect.stringMatching(/r_tinystories_nm\.svg exists and is not a report crepe wrote; refusing to replace it \(pass --force/)]);
    expect(fs.readdirSync(out)).toEqual(['r_tinystories_nm.svg']);
    // A folder in the way: refused, nothing written.
    fs.rmSync(path.join(out, 'r_tinystories_nm.svg'));
    fs.mkdirSync(path.join(out, 'r_wikitext2_nm.svg'));
    const folder = runCli(['report', csv, '--out', out]);
    expect(folder.code).toBe(2);
    expect(lines(folder.stderr)).toHaveLength(1);
    expect(fs.readdirSync(out)).toEqual(['r_wikitext2_nm.svg']);
    fs.rmdirSync(path.join(out, 'r_wikitext2_nm.svg'));
    // --force replaces a user's file; a rerun replaces the report it wrote, without --force.
    fs.writeFileSync(path.join(out, 'r.md'), 'my notes');
    expect(runCli(['report', csv, '--out', out]).code).toBe(2);
    expect(runCli(['report', csv, '--out', out, '--force']).code).toBe(0);
    const again = runCli(['report', csv, '--out', out]);
    expect(again.stderr).toBe('');
    expect(again.code).toBe(0);
    expect(fs.readdirSync(out).sort()).toEqual(['r.md', 'r_tinystories_nm.svg', 'r_tinystories_unstructured.svg', 'r_wikitext2_nm.svg', 'r_wikitext2_unstructured.svg']);
    // An --out below a file cannot be created: refused, nothing created.
    const under = runCli(['report', csv, '--out', path.join(csv, 'sub')]);
    expect(under.code).toBe(2);
    expect(lines(under.stderr)).toHaveLength(1);
  });
});
