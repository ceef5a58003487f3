/**
 * Sweep configs and the sweep runner: config validation and expansion in-process, then real
 * `crepe sweep` child processes on experiments/smoke.json (end to end, resume after kill -9,
 * --jobs 2 = --jobs 1, bad configs).
 */
import { spawn, spawnSync } from 'child_process';
import * as os from 'os';
import * as fs from 'fs';
import * as path from 'path';
import { Cell, ModelInfo, canonicalJson, cellRecipe, expandCells, resultColumns } from '../lib/experiments/cell';
import { SweepConfig, parseSweepConfig } from '../lib/experiments/config';
import { parseShard, planSweep, shardOf } from '../lib/experiments/sweep';
import { readResults } from '../lib/experiments/report';
import { datasetSplit } from '../lib/data/datasets';
import { csvHeader, csvLine, parseCsv, parseCsvLine } from '../lib/util/csv';
import { CLI, ROOT, lines, makeTmp, rmTmp, runCli } from './helpers';

const SMOKE = path.join(ROOT, 'experiments', 'smoke.json');
const MAIN = path.join(ROOT, 'experiments', 'main.json');
let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-sweep-');
});
afterAll(() => rmTmp(tmp));

function readRows(file: string): Record<string, string>[] {
  return parseCsv(fs.readFileSync(file, 'utf8'), file).rows;
}

// ---------------------------------------------------------------------------------------------
// config and expansion (in-process)

const baseJson = {
  models: ['stories260K'],
  methods: [{ name: 'magnitude' }, { name: 'wanda' }],
  sparsities: [0.5, 0.6],
  structures: ['unstructured', '2:4'],
  eval: [{ dataset: 'tinystories', maxWindows: 4 }],
};
const stories: ModelInfo = {
  name: 'stories260K',
  maxSeqLen: 512,
  shapes: [[64, 64], [32, 64], [32, 64], [64, 64], [172, 64], [172, 64], [64, 172]],
};
const expand = (json: object, models = [stories]) => expandCells(parseSweepConfig(json, 'x.json'), models);

describe('config', () => {
  test('defaults: groups = method default, calibration 128 x context seed 0, propagate pruned', () => {
    const cfg = parseSweepConfig(baseJson, 'x.json');
    expect(cfg.groups).toEqual(['default']);
    expect(cfg.calibration).toEqual({ dataset: 'tinystories', nsamples: 128, seeds: [0] });
    expect(cfg.propagate).toBe('pruned');
    expect(cfg.methods[1]).toEqual({ name: 'wanda', params: {}, label: 'wanda' });
    const crepe = parseSweepConfig({ ...baseJson, methods: [{ name: 'crepe', params: { gamma: 0.1 } }] }, 'x.json').methods[0];
    expect(crepe.label).toBe('crepe(gamma=0.1)');
    expect(crepe.params.gamma).toBe(0.1);
    expect(crepe.params.alpha).toBe(1); // defaults filled in
  });

  test.each<[string, object, RegExp]>([
    ['unknown method', { methods: [{ name: 'wanda' }, { name: 'foo' }] }, /^x\.json: methods\[1\]\.name: unknown method 'foo' \(known: .*wanda/],
    ['misspelled key', { sparsites: [0.5] }, /^x\.json: unknown key 'sparsites' \(did you mean 'sparsities'\?\)$/],
    ['misspelled nested key', { calibration: { nsample: 8 } }, /^x\.json: calibration: unknown key 'nsample' \(did you mean 'nsamples'\?\)/],
    ['sparsity 1.5', { sparsities: [0.5, 1.5] }, /^x\.json: sparsities\[1\]: sparsity must be in \[0, 1\), got 1\.5$/],
    ['unknown parameter', { methods: [{ name: 'crepe', params: { delta: 1 } }] }, /methods\[0\]\.params: unknown parameter 'delta' for method crepe/],
    ['bad structure', { structures: ['2-4'] }, /structures\[0\]: structure must be 'unstructured' or N:M/],
    ['bad group', { groups: ['column'] }, /groups\[0\]: must be one of 'row', 'matrix', 'default', got 'column'/],
    ['missing models', { models: undefined }, /^x\.json: models: missing$/],
    ['no eval', { eval: [] }, /eval: list at least one evaluation dataset/],
    ['duplicate eval dataset', { eval: [{ dataset: 'tinystories' }, { dataset: 'tinystories', seqlen: 64 }] }, /eval\[1\]\.dataset: 'tinystories' is listed twice/],
    ['duplicate label', { methods: [{ name: 'wanda' }, { name: 'wanda' }] }, /methods\[1\]\.label: duplicate label 'wanda'/],
    ['seed and seeds', { calibration: { seed: 1, seeds: [0, 1] } }, /^x\.json: calibration\.seeds: give 'seed' or 'seeds', not both$/],
    ['no seeds', { calibration: { seeds: [] } }, /^x\.json: calibration\.seeds: list at least one seed$/],
    ['negative seed', { calibration: { seeds: [0, -1] } }, /^x\.json: calibration\.seeds\[1\]: /],
  ])('%s', (_name, patch, message) => {
    expect(() => parseSweepConfig({ ...baseJson, ...patch }, 'x.json')).toThrow(message);
  });

  test('expansion: N:M ignores sparsities and groups; default groups per method; dense first', () => {
    const { cells, skipped } = expand(baseJson);
    expect(skipped).toEqual([]);
    const desc = cells.map((c) => (c.prune ? `${c.prune.method} ${c.prune.structure} ${c.prune.group} ${c.prune.sparsity}` : 'dense'));
    expect(desc).toEqual([
      'dense',
      'magnitude unstructured matrix 0.5', 'magnitude unstructured matrix 0.6', 'magnitude 2:4 null 0.5',
      'wanda unstructured row 0.5', 'wanda unstructured row 0.6', 'wanda 2:4 null 0.5',
    ]);
    // Every cell resolves its windows against the model context.
    expect(cells.every((c) => c.eval[0].seqlen === 512 && c.eval[0].maxWindows === 4)).toBe(true);
    expect(cells[1].prune!.calibration).toEqual({ dataset: 'tinystories', nsamples: 128, seqlen: 512, seed: 0 });
    // 'default' and 'row' coincide for Wanda: one cell each, not two.
    const both = expand({ ...baseJson, structures: ['unstructured'], groups: ['default', 'row'] }).cells;
    expect(both.filter((c) => c.prune?.method === 'wanda')).toHaveLength(2);
    expect(both.filter((c) => c.prune?.method === 'magnitude')).toHaveLength(4);
  });

  test('calibration seeds: every pruned cell once per seed (dense once), seeds in config order, repeats dropped', () => {
    const { cells } = expand({ ...baseJson, methods: [{ name: 'wanda' }], calibration: { seeds: [2, 0, 2, 1] } });
    expect(parseSweepConfig({ ...baseJson, calibration: { seeds: [2, 0, 2, 1] } }, 'x.json').calibration.seeds).toEqual([2, 0, 1]);
    expect(cells.filter((c) => !c.prune)).toHaveLength(1);
    const pruned = cells.filter((c) => c.prune);
    expect(pruned).toHaveLength(3 * 3);
    expect(pruned.map((c) => c.prune!.calibration.seed)).toEqual([2, 2, 2, 0, 0, 0, 1, 1, 1]);
    expect(new Set(pruned.map((c) => c.key)).size).toBe(9);
    // One seed is the same cell whether written as seed or as seeds.
    const one = (json: object) => expand(json).cells.map((c) => c.key);
    expect(one({ ...baseJson, calibration: { seeds: [3] } })).toEqual(one({ ...baseJson, calibration: { seed: 3 } }));
  });

  test('keys: stable, independent of key order and label, sensitive to every setting', () => {
    const key = (json: object) => expand(json).cells.map((c) => c.key);
    const k0 = key(baseJson);
    expect(new Set(k0).size).toBe(k0.length);
    expect(k0.every((k) => /^[0-9a-f]{16}$/.test(k))).toBe(true);
    expect(key(JSON.parse(JSON.stringify(baseJson)))).toEqual(k0);
    expect(key({ ...baseJson, methods: [{ name: 'magnitude', label: 'mag' }, { name: 'wanda', label: 'W' }] })).toEqual(k0);
    expect(key({ ...baseJson, calibration: { seed: 1 } }).slice(1)).not.toContain(k0[1]);
    expect(key({ ...baseJson, eval: [{ dataset: 'tinystories', maxWindows: 5 }] })[0]).not.toBe(k0[0]);
    expect(canonicalJson({ b: 1, a: [{ d: 2, c: 3 }] })).toBe(canonicalJson({ a: [{ c: 3, d: 2 }], b: 1 }));
  });

  test('an N:M that fits one model but not another is skipped there; fitting none is an error', () => {
    const baby: ModelInfo = { ...stories, name: 'babyllama-char', maxSeqLen: 256, shapes: [[128, 128], [64, 128], [64, 128], [128, 128], [352, 128], [352, 128], [128, 352]] };
    const { cells, skipped } = expand({ ...baseJson, models: ['stories260K', 'babyllama-char'], structures: ['4:8'] }, [stories, baby]);
    expect(skipped).toEqual([expect.stringMatching(/^stories260K 4:8: .*172.*multiple of 8/)]);
    expect(cells.filter((c) => c.prune).map((c) => c.model)).toEqual(['babyllama-char', 'babyllama-char']);
    expect(() => expand({ ...baseJson, structures: ['unstructured', '4:8'] })).toThrow(/^x\.json: structures\[1\]: N:M 4:8 needs the input width 172/);
  });

  test('add-on rows: a method entry with OWL, DSnoT or permutation on its own sparsities and structures; defaults filled per structure', () => {
    const json = {
      ...baseJson,
      methods: [
        { name: 'wanda' },
        { name: 'ria', permute: {}, structures: ['2:4'] },
        { name: 'ria', allocation: { method: 'owl' }, sparsities: [0.5] },
        { name: 'crepe', refine: { method: 'dsnot', maxCycles: 7 }, sparsities: [0.5], structures: ['unstructured'] },
      ],
    };
    const cfg = parseSweepConfig(json, 'x.json');
    expect(cfg.methods.map((m) => m.label)).toEqual(['wanda', 'ria+permute', 'ria+owl', 'crepe+dsnot']);
    const cells = expandCells(cfg, [stories]).cells.filter((c) => c.prune);
    const desc = cells.map((c) => `${c.label} ${c.prune!.structure} ${c.prune!.sparsity} ${JSON.stringify([c.prune!.allocation ?? null, c.prune!.refine ?? null, c.prune!.permute ?? null])}`);
    expect(desc).toEqual([
      'wanda unstructured 0.5 [null,null,null]',
      'wanda unstructured 0.6 [null,null,null]',
      'wanda 2:4 0.5 [null,null,null]',
      'ria+permute 2:4 0.5 [null,null,{"refine":false}]',
      'ria+owl unstructured 0.5 [{"method":"owl","m":5,"lambda":0.08},null,null]',
      'ria+owl 2:4 0.5 [{"method":"owl","m":5,"lambda":2},null,null]',
      'crepe+dsnot unstructured 0.5 [null,{"method":"dsnot","maxCycles":7,"threshold":0.1,"skip":"mlp"},null]',
    ]);
    // a plain method's cells keep the keys they had without add-on rows beside them
    const plain = expand({ ...baseJson, methods: [{ name: 'wanda' }] }).cells.map((c) => c.key);
    expect(cells.slice(0, 3).map((c) => c.key)).toEqual(plain.slice(1));
    // each cell runs as a recipe with the same settings
    const r = cellRecipe(cells[5]);
    expect([r.method, r.structure, r.allocation, r.permute, r.compareDense, r.calibration.seed]).toEqual(['ria', '2:4', { method: 'owl', m: 5, lambda: 2 }, null, false, 0]);
  });

  test('the committed main job keeps the keys of the cells already in results/main.csv', () => {
    const rows = readRows(path.join(ROOT, 'results', 'main.csv'));
    const keys = new Set(planSweep(path.join(ROOT, 'experiments', 'main.json')).cells.map((c) => c.key));
    expect(rows.length).toBeGreaterThan(0);
    expect(rows.filter((r) => !keys.has(r.key)).map((r) => `${r.model} ${r.label} ${r.structure}`)).toEqual([]);
  });

  test.each<[string, object, RegExp]>([
    ['permutation on an unstructured row', { methods: [{ name: 'ria', permute: {} }] }, /^x\.json: methods\[0\]\.permute: channel permutation applies to N:M structures only/],
    ['DSnoT after permutation', { methods: [{ name: 'ria', permute: {}, refine: { method: 'dsnot' }, structures: ['2:4'] }] }, /methods\[0\]\.refine: dsnot cannot follow permute/],
    ['add-ons on SparseGPT', { methods: [{ name: 'sparsegpt', refine: { method: 'dsnot' } }] }, /methods\[0\]\.refine: sparsegpt updates weights itself/],
    ['unknown allocation', { methods: [{ name: 'ria', allocation: { method: 'owlish' } }] }, /methods\[0\]\.allocation/],
    ['bad method structure', { methods: [{ name: 'ria', structures: ['2-4'] }] }, /methods\[0\]\.structures\[0\]: structure must be/],
  ])('add-on config error: %s', (_name, patch, message) => {
    expect(() => parseSweepConfig({ ...baseJson, ...patch }, 'x.json')).toThrow(message);
  });

  test('empty sweeps and windows longer than the context are errors', () => {
    expect(() => expand({ ...baseJson, methods: [] })).toThrow(/empty sweep.*'methods' is empty/);
    expect(() => expand({ ...baseJson, sparsities: [], structures: ['unstructured'] })).toThrow(/empty sweep.*'sparsities' is empty/);
    expect(() => expand({ ...baseJson, eval: [{ dataset: 'tinystories', seqlen: 1024 }] })).toThrow(/eval\[0\]\.seqlen: seqlen 1024 is larger than the model's context 512/);
  });

  test('the shipped configs are valid; main covers 50-80% and every N:M the widths allow for 4 methods, the combination rows at 50% and 2:4, 3 seeds, on test splits', () => {
    const smoke = planSweep(SMOKE);
    expect(smoke.cells).toHaveLength(5);
    const main = planSweep(MAIN);
    // 4:8 is left out on stories260K only (its 172-wide down projection)
    expect(main.skipped).toEqual([expect.stringMatching(/^stories260K 4:8: /)]);
    const pruned = main.cells.filter((c) => c.prune);
    const count = (label: string, model: string) => pruned.filter((c) => c.label === label && c.model === model).length;
    for (const method of ['magnitude', 'wanda', 'ria', 'crepe']) {
      expect(count(method, 'stories260K')).toBe(3 * (4 + 1)); // 3 seeds x (4 sparsities + 2:4)
      expect(count(method, 'babyllama-char')).toBe(3 * (4 + 2)); // ... + 4:8
    }
    for (const model of ['stories260K', 'babyllama-char']) {
      for (const label of ['sparsegpt', 'ria+owl', 'crepe+owl', 'ria+dsnot', 'crepe+dsnot']) expect(count(label, model)).toBe(3 * 2); // 50% and 2:4
      for (const label of ['ria+permute', 'crepe+permute']) expect(count(label, model)).toBe(3); // 2:4 only
    }
    expect(main.cells.filter((c) => !c.prune)).toHaveLength(2);
    expect(new Set(pruned.map((c) => c.prune!.calibration.seed))).toEqual(new Set([0, 1, 2]));
    expect(new Set(pruned.filter((c) => c.prune!.structure === 'unstructured').map((c) => c.prune!.sparsity))).toEqual(new Set([0.5, 0.6, 0.7, 0.8]));
    // Every reported number is on a test split.
    expect(main.cells.every((c) => c.eval.every((e) => datasetSplit(e.dataset, 'eval') === 'test'))).toBe(true);
  });

  test('CSV lines: quoting round-trips through parseCsvLine', () => {
    const columns = resultColumns(['tinystories', 'text:/a b/c.txt']);
    expect(columns).toContain('text_a_b_c_txt_dense_ppl');
    const row = { key: 'k', model: 'a "quoted", model', params: JSON.stringify({ a: 1, b: 2 }), tinystories_ppl: 1.5 };
    const line = csvLine(columns, row);
    expect(line.endsWith('\n')).toBe(true);
    expect(line.slice(0, -1)).not.toContain('\n');
    const fields = parseCsvLine(line.slice(0, -1));
    expect(fields).toHaveLength(columns.length);
    expect(fields[columns.indexOf('model')]).toBe(row.model);
    expect(fields[columns.indexOf('params')]).toBe(row.params);
    expect(parseCsvLine(csvHeader(columns).trim())).toEqual(columns);
    expect(() => csvLine(columns, { key: 'a\nb' })).toThrow(/line break/);
  });
});

// ---------------------------------------------------------------------------------------------
// real sweeps on the smoke config

describe('crepe sweep (child processes, smoke config)', () => {
  let plannedKeys: string[];
  let cells: Cell[];
  const csv1 = () => path.join(tmp, 'smoke-j1.csv');
  beforeAll(() => {
    cells = planSweep(SMOKE).cells;
    plannedKeys = cells.map((c) => c.key);
  });

  test('end to end: one row per cell, dense PPL reused, rerun skips everything', () => {
    const r = runCli(['sweep', '--config', SMOKE, '--out', csv1(), '--json'], { timeoutMs: 110_000 });
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ total: 5, ran: 5, skipped: 0 });
    const rows = readRows(csv1());
    expect(rows.map((x) => x.key).sort()).toEqual([...plannedKeys].sort());
    const dense = rows.find((x) => x.method === 'dense')!;
    expect(rows[0]).toBe(dense); // dense runs first
    const densePpl = Number(dense.tinystories_ppl);
    expect(densePpl).toBeGreaterThan(1);
    for (const x of rows.filter((y) => y.method !== 'dense')) {
      expect(Number(x.tinystories_dense_ppl)).toBe(densePpl);
      expect(Number(x.tinystories_ppl)).toBeGreaterThan(densePpl);
      expect(Number(x.achieved_sparsity)).toBeCloseTo(0.5, 2);
      expect(x).toMatchObject({ tinystories_seqlen: '128', tinystories_windows: '8', calib_nsamples: '8', calib_seqlen: '128', calib_seed: '0' });
      expect(x.backend).toMatch(/^wasm|tensorflow|cpu/);
      expect(x.code_version).not.toBe('');
      expect(Number.isNaN(Date.parse(x.timestamp))).toBe(false);
    }
    expect(rows.find((x) => x.method === 'wanda' && x.structure === '2:4')!.group).toBe('');
    expect(rows.find((x) => x.method === 'wanda' && x.structure === 'unstructured')!.group).toBe('row');
    const before = fs.readFileSync(csv1(), 'utf8');
    const again = runCli(['sweep', '--config', SMOKE, '--out', csv1(), '--json']);
    expect(again.code).toBe(0);
    expect(JSON.parse(again.stdout)).toMatchObject({ total: 5, ran: 0, skipped: 5 });
    expect(fs.readFileSync(csv1(), 'utf8')).toBe(before);
  });

  test('--jobs 2 gives the same PPL values as --jobs 1', () => {
    const csv2 = path.join(tmp, 'smoke-j2.csv');
    const r = runCli(['sweep', '--config', SMOKE, '--out', csv2, '--jobs', '2'], { timeoutMs: 110_000 });
    expect(r.code).toBe(0);
    const ppl = (file: string) => Object.fromEntries(readRows(file).map((x) => [x.key, [x.tinystories_ppl, x.tinystories_dense_ppl, x.achieved_sparsity]]));
    if (!fs.existsSync(csv1())) runCli(['sweep', '--config', SMOKE, '--out', csv1()], { timeoutMs: 110_000 });
    expect(ppl(csv2)).toEqual(ppl(csv1()));
  });

  test('kill -9 mid-run, then rerun: every cell exactly once, no broken line', async () => {
    const csv = path.join(tmp, 'smoke-killed.csv');
    const child = spawn(process.execPath, [CLI, 'sweep', '--config', SMOKE, '--out', csv], { cwd: ROOT, env: { ...process.env }, stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
    const dataRows = () => (fs.existsSync(csv) ? lines(fs.readFileSync(csv, 'utf8')).length - 1 : 0);
    const deadline = Date.now() + 100_000;
    while (dataRows() < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 5));
    child.kill('SIGKILL');
    await exited;
    const atKill = dataRows();
    expect(atKill).toBeGreaterThanOrEqual(1);
    expect(atKill).toBeLessThan(plannedKeys.length); // really killed mid-run
    // A kill inside write() could leave a torn last line; simulate one (half a real row).
    const text = fs.readFileSync(csv, 'utf8');
    const lastRow = lines(text)[atKill];
    fs.appendFileSync(csv, lastRow.slice(0, Math.floor(lastRow.length / 2)));

    const r = runCli(['sweep', '--config', SMOKE, '--out', csv], { timeoutMs: 110_000 });
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/cut off an interrupted last line/);
    const all = lines(fs.readFileSync(csv, 'utf8'));
    const header = parseCsvLine(all[0]);
    for (const l of all) expect(parseCsvLine(l)).toHaveLength(header.length);
    const keys = readRows(csv).map((x) => x.key);
    expect([...keys].sort()).toEqual([...plannedKeys].sort()); // each exactly once
    expect(fs.readFileSync(csv, 'utf8').startsWith(text)).toBe(true); // earlier rows untouched
  });

  describe('bad input: one line on stderr, exit 2, nothing written', () => {
    const smoke = JSON.parse(fs.readFileSync(SMOKE, 'utf8'));
    const cases: [string, object | null, string | null, RegExp][] = [
      ['unknown method', { methods: [{ name: 'wanda' }, { name: 'foo' }] }, null, /methods\[1\]\.name: unknown method 'foo' \(known: /],
      ['misspelled key', { sparsites: [0.5] }, null, /unknown key 'sparsites' \(did you mean 'sparsities'\?\)/],
      ['empty sweep', { sparsities: [], structures: ['unstructured'] }, null, /empty sweep/],
      ['sparsity 1.5', { sparsities: [1.5] }, null, /sparsities\[0\]: sparsity must be in \[0, 1\), got 1\.5/],
      ['unknown model', { models: ['nope'] }, null, /models\[0\]: unknown model 'nope'/],
      ['unknown dataset', { eval: [{ dataset: 'imagenet' }] }, null, /eval\[0\]\.dataset: unknown dataset 'imagenet'/],
      ['calibration on wikitext2', { calibration: { dataset: 'wikitext2' } }, null, /calibration\.dataset: wikitext2 holds only the test split/],
      ['methods differing only in label', { methods: [{ name: 'wanda', label: 'A' }, { name: 'wanda', label: 'B' }] }, null, /methods\[1\]: runs the same cells as methods\[0\] \('A'\), differing only in its label 'B'/],
      ['output folder missing', null, 'no-such-dir/out.csv', /cannot write .*no-such-dir\/out\.csv: folder .* does not exist/],
      ['output is the folder holding the config', null, '.', /--out .* contains the input .*config\.json: refusing to replace it/],
    ];
    test.each(cases)('%s', (name, patch, outRel, message) => {
      const dir = path.join(tmp, name.replace(/\W+/g, '_'));
      fs.mkdirSync(dir);
      const config = path.join(dir, 'config.json');
      fs.writeFileSync(config, JSON.stringify({ ...smoke, ...patch }));
      const out = path.join(dir, outRel ?? 'out.csv');
      const r = runCli(['sweep', '--config', config, '--out', out]);
      expect(r.code).toBe(2);
      expect(lines(r.stderr)).toHaveLength(1);
      expect(r.stderr).toMatch(/^crepe: /);
      expect(r.stderr).toMatch(message);
      expect(r.stdout).toBe('');
      expect(fs.readdirSync(dir)).toEqual(['config.json']); // no CSV, no temporary files
    });

    test('a CSV written for other evaluation datasets (or by another version) is refused, untouched, by the run and by --dry-run alike', () => {
      const csv = path.join(tmp, 'other-columns.csv');
      const content = csvHeader(resultColumns(['wikitext2']));
      fs.writeFileSync(csv, content);
      const r = runCli(['sweep', '--config', SMOKE, '--out', csv]);
      expect(r.code).toBe(2);
      expect(r.stderr).toMatch(/other columns/);
      expect(fs.readFileSync(csv, 'utf8')).toBe(content);
      const dry = runCli(['sweep', '--config', SMOKE, '--out', csv, '--dry-run']);
      expect(dry.code).toBe(2);
      expect(dry.stdout).toBe('');
      expect(lines(dry.stderr)).toEqual(lines(r.stderr));
    });
  });
});

// ---------------------------------------------------------------------------------------------
// shards and the results lock

describe('crepe sweep --shard K/N', () => {
  test('shards partition the cells by a hash of the key: stable when the config is reordered', () => {
    expect(parseShard('2/3')).toEqual({ k: 2, n: 3 });
    for (const bad of ['0/3', '4/3', '1/0', '1', 'a/b', '1/3/4', '-1/3']) expect(() => parseShard(bad)).toThrow(/--shard must be K\/N/);
    const all = planSweep(MAIN).cells;
    const shards = [1, 2, 3].map((k) => planSweep(MAIN, undefined, { k, n: 3 }));
    // each cell in exactly one shard, every shard non-empty for the main job
    expect(shards.flatMap((p) => p.cells.map((c) => c.key)).sort()).toEqual(all.map((c) => c.key).sort());
    for (const p of shards) expect(p.cells.length).toBeGreaterThan(0);
    expect(shards[1].out).toBe(path.join('results', 'main.2of3.csv'));
    // The rule, computed independently: the first 12 hex digits of the key, modulo N, plus one.
    for (const c of all) expect(shardOf(c.key, 3)).toBe((Number(BigInt(`0x${c.key.slice(0, 12)}`) % 3n)) + 1);
    // Reordered lists (models, methods, seeds): every cell stays in its shard.
    const main = JSON.parse(fs.readFileSync(MAIN, 'utf8'));
    const reordered = path.join(tmp, 'main-reordered.json');
    fs.writeFileSync(reordered, JSON.stringify({ ...main, models: [...main.models].reverse(), methods: [...main.methods].reverse(), calibration: { ...main.calibration, seeds: [...main.calibration.seeds].reverse() } }));
    const membership = (file: string) => Object.fromEntries([1, 2, 3].flatMap((k) => planSweep(file, undefined, { k, n: 3 }).cells.map((c) => [c.key, k])));
    expect(membership(reordered)).toEqual(membership(MAIN));
  });

  test('3 shards run separately and merged equal the unsharded sweep, row for row', () => {
    // The unsharded sweep of the end-to-end test above (run here when that test was skipped).
    const whole = path.join(tmp, 'smoke-j1.csv');
    if (!fs.existsSync(whole)) expect(runCli(['sweep', '--config', SMOKE, '--out', whole], { timeoutMs: 110_000 }).code).toBe(0);
    const parts = [1, 2, 3].map((k) => path.join(tmp, `smoke.${k}of3.csv`));
    parts.forEach((out, i) => {
      const r = runCli(['sweep', '--config', SMOKE, '--shard', `${i + 1}/3`, '--out', out, '--json'], { timeoutMs: 110_000 });
      expect(r.code).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ shard: `${i + 1}/3`, sweepTotal: 5 });
    });
    // Timings and timestamps differ between runs; every other column must match.
    const timing = new Set(['prune_seconds', 'eval_seconds', 'cpu_seconds', 'timestamp']);
    const strip = (r: Record<string, string>) => Object.fromEntries(Object.entries(r).filter(([k]) => !timing.has(k)));
    const merged = readResults(parts);
    const single = readResults(whole);
    expect(merged.rows).toHaveLength(5);
    expect(merged.rows.map(strip)).toEqual(single.rows.map(strip));
    // Each shard wrote only its own cells (the dense row once, in its owner's file).
    const byFile = parts.map((f) => readRows(f).map((x) => x.key));
    expect(byFile.flat().sort()).toEqual(readRows(whole).map((x) => x.key).sort());
    byFile.forEach((keys, i) => keys.forEach((k) => expect(shardOf(k, 3)).toBe(i + 1)));
    // A shard's CSV given as another shard's --out is refused before any work.
    const wrong = runCli(['sweep', '--config', SMOKE, '--shard', '1/3', '--out', parts.find((_, i) => byFile[i].length > 0 && i !== 0)!]);
    expect(wrong.code).toBe(2);
    expect(lines(wrong.stderr)).toEqual([expect.stringMatching(/holds cell \w+ \(.*\) of shard [23]\/3, not of this shard 1\/3: give each shard its own --out/)]);
  });
});

describe('results lock', () => {
  const deadPid = (): number => {
    const r = spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' });
    return Number(r.stdout);
  };

  test('a second sweep on the same --out refuses in one line naming the holder\'s pid (run, --dry-run, --fresh), changing nothing', () => {
    const csv = path.join(tmp, 'locked.csv');
    fs.writeFileSync(csv, csvHeader(resultColumns(['tinystories'])));
    // This test process stands for a sweep that is running: its pid is alive.
    const owner = { pid: process.pid, host: os.hostname(), since: '2026-01-01T00:00:00.000Z', what: 'crepe sweep' };
    fs.writeFileSync(`${csv}.lock`, JSON.stringify(owner));
    for (const extra of [[], ['--dry-run'], ['--fresh'], ['--fresh', '--dry-run']]) {
      const second = runCli(['sweep', '--config', SMOKE, '--out', csv, ...extra]);
      expect(second.code).toBe(2);
      expect(lines(second.stderr)).toEqual([`crepe: ${csv} is being written by crepe sweep (pid ${process.pid}, since ${owner.since}): wait for it to finish, or give another --out`]);
    }
    expect(fs.readFileSync(csv, 'utf8')).toBe(csvHeader(resultColumns(['tinystories'])));
    expect(JSON.parse(fs.readFileSync(`${csv}.lock`, 'utf8'))).toEqual(owner);
    fs.rmSync(`${csv}.lock`);
  });

  test('a lock left by a process that is gone is taken over with a note', () => {
    const csv = path.join(tmp, 'stale.csv');
    const pid = deadPid();
    fs.writeFileSync(`${csv}.lock`, JSON.stringify({ pid, host: os.hostname(), since: '2026-01-01T00:00:00.000Z', what: 'crepe sweep' }));
    const dry = runCli(['sweep', '--config', SMOKE, '--out', csv, '--dry-run']);
    expect(dry.code).toBe(0);
    const r = runCli(['sweep', '--config', SMOKE, '--out', csv], { timeoutMs: 110_000 });
    expect(r.code).toBe(0);
    expect(r.stderr).toContain(`crepe: taking over ${csv}.lock from crepe sweep pid ${pid}, which is no longer running`);
    expect(fs.existsSync(`${csv}.lock`)).toBe(false);
    // A lock from another host is never taken over: its pid cannot be checked from here.
    fs.writeFileSync(`${csv}.lock`, JSON.stringify({ pid, host: 'elsewhere', since: '2026-01-01T00:00:00.000Z', what: 'crepe sweep' }));
    const other = runCli(['sweep', '--config', SMOKE, '--out', csv]);
    expect(other.code).toBe(2);
    expect(lines(other.stderr)).toEqual([expect.stringMatching(/locked by crepe sweep \(pid \d+ on host elsewhere, .*\): .* if that run is gone, remove .*stale\.csv\.lock$/)]);
    fs.rmSync(`${csv}.lock`);
  });
});
