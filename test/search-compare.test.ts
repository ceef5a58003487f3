/**
 * The search cost comparison runner (`crepe search-compare`): config validation (one line naming
 * the field, nothing written), the subset flags, the proxy-study summary, and one tiny real run on
 * stories260K (files, runs, hill climbing's full PPL = a separate fullEvaluation bit for bit, same
 * seeds = same evaluation logs).
 */
import * as fs from 'fs';
import * as path from 'path';
import { initBackend } from '../lib/backend';
import { parseCsv } from '../lib/util/csv';
import {
  ComparePlan, ComparisonResult, RESULTS_CSV, RESULTS_MD, evalLogName, planComparison, readProxyStudies, runComparison,
} from '../lib/experiments/search-compare';
import { loadSearchCompareConfig, parseSearchCompareConfig, selectSubset } from '../lib/experiments/search-config';
import { DEFAULT_PROXY } from '../lib/search/defaults';
import { CrepeError } from '../lib/errors';
import { openModel } from '../lib/model/resolve';
import { fullEvaluation } from '../lib/search/objective';
import { ROOT, makeTmp, oneLineCrepeError, rmTmp, runCli } from './helpers';

const SEARCH_JSON = path.join(ROOT, 'experiments', 'search.json');

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-search-compare-');
});
afterAll(() => rmTmp(tmp));

/** A fresh empty folder under the test's temporary folder. */
function folder(name: string): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  return dir;
}

const tiny = {
  models: ['stories260K'],
  structures: [{ name: 'u50', structure: 'unstructured', sparsity: 0.5 }],
  calibration: { dataset: 'tinystories', nsamples: 4, seed: 0, stats: 'dense' },
  hillclimb: { budget: 3, search_windows: 2, seed: 0 },
  pho: { proxy: 'default', budget: 3, seed: 0 },
  baselines: [{ name: 'RIA default', method: 'ria' }],
};

function writeConfig(dir: string, json: object): string {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}

describe('config', () => {
  test('experiments/search.json is valid: both models, u50 and 2of4, the default proxy, transfer and every proxy on u50', () => {
    const cfg = loadSearchCompareConfig(SEARCH_JSON);
    expect(cfg.models).toEqual(['stories260K', 'babyllama-char']);
    expect(cfg.structures.map((s) => [s.name, s.structure, s.sparsity, s.label])).toEqual([
      ['u50', 'unstructured', 0.5, '50% unstructured'],
      ['2of4', '2:4', 0.5, '2:4'],
    ]);
    expect(cfg.pho.proxy).toBe(DEFAULT_PROXY);
    expect(cfg.transfer).toEqual(['u50']);
    expect(cfg.phoEveryProxy).toEqual(['u50']);
    expect(cfg.baselines.map((b) => b.params)).toEqual([{ a: 0.5 }, expect.objectContaining({ alpha: 1, beta: 1, kh: 3, kw: 3 })]);
  });

  test('defaults, transfer: true, space overrides', () => {
    const cfg = parseSearchCompareConfig(
      { models: ['stories260K'], structures: [{ name: 'u60', structure: 'unstructured', sparsity: 0.6 }], transfer: true, space: { bounds: ['gamma=1e-4:10'], fixed: { a: 0.3 } } },
      'x.json',
    );
    expect(cfg.method).toBe('crepe');
    expect(cfg.calibration).toEqual({ dataset: 'tinystories', nsamples: 128, seed: 0, stats: 'dense' });
    expect(cfg.hillclimb).toEqual({ budget: 40, searchWindows: 16, seed: 0 });
    expect(cfg.pho).toMatchObject({ proxy: DEFAULT_PROXY, proxyGiven: 'default', budget: 40, seed: 0 });
    expect(cfg.transfer).toEqual(['u60']);
    expect(cfg.space.dims.find((d) => d.name === 'gamma')).toMatchObject({ min: 1e-4, max: 10 });
    expect(cfg.space.fixed).toEqual({ a: 0.3 });
  });

  test.each<[string, object, RegExp]>([
    ['unknown key', { budgets: 3 }, /^x\.json: unknown key 'budgets'/],
    ['misspelled nested key', { hillclimb: { budget: 3, search_window: 2 } }, /^x\.json: hillclimb: unknown key 'search_window' \(did you mean 'search_windows'\?\)$/],
    ['wrong type', { hillclimb: { budget: '3' } }, /^x\.json: hillclimb\.budget: expected number, got string$/],
    ['unknown proxy', { pho: { proxy: 'gini' } }, /^x\.json: pho\.proxy: unknown proxy 'gini' \(known: /],
    ['bad structure', { structures: [{ name: 'x', structure: '2-4' }] }, /^x\.json: structures\[0\]\.structure: structure must be 'unstructured' or N:M/],
    ['sparsity with N:M', { structures: [{ name: 'x', structure: '2:4', sparsity: 0.5 }] }, /structures\[0\]\.sparsity: sparsity applies to unstructured only/],
    ['sparsity out of range', { structures: [{ name: 'x', structure: 'unstructured', sparsity: 1.5 }] }, /structures\[0\]\.sparsity: sparsity must be in \[0, 1\)/],
    ['structure name unfit for a file name', { structures: [{ name: 'a/b', structure: '2:4' }] }, /structures\[0\]\.name: must be letters, digits/],
    ['unknown model', { models: ['stories260K', 'gpt5'] }, /^x\.json: models\[1\]: unknown model 'gpt5'/],
    ['unknown method', { method: 'foo' }, /^x\.json: method: unknown method 'foo'/],
    ['unknown baseline method', { baselines: [{ name: 'b', method: 'foo' }] }, /baselines\[0\]\.method: unknown method 'foo'/],
    ['baseline named like a search', { baselines: [{ name: 'pho', method: 'ria' }] }, /baselines\[0\]\.name: 'pho' is the name of a search run/],
    ['unknown baseline parameter', { baselines: [{ name: 'b', method: 'ria', params: { delta: 1 } }] }, /baselines\[0\]\.params: unknown parameter 'delta' for method ria/],
    ['transfer names an unknown structure', { transfer: ['2of4'] }, /^x\.json: transfer\[0\]: unknown structure name '2of4' \(structures: u50\)$/],
    ['transfer of a wrong type', { transfer: 'u50' }, /^x\.json: transfer: expected true, false or a list of structure names$/],
    ['every-proxy names an unknown structure', { pho_every_proxy: ['u60'] }, /pho_every_proxy\[0\]: unknown structure name 'u60'/],
    ['bad stats', { calibration: { stats: 'sparse' } }, /calibration\.stats: must be one of 'dense', 'pruned', got 'sparse'/],
    ['bad bound', { space: { bounds: ['gamma=1'] } }, /space\.bounds: bad --bound 'gamma=1'/],
    ['unsearchable space', { space: { searched: ['delta'] } }, /space: cannot search 'delta'/],
    ['missing models', { models: undefined }, /^x\.json: models: missing$/],
  ])('%s', (_name, patch, message) => {
    expect(oneLineCrepeError(() => parseSearchCompareConfig({ ...tiny, ...patch }, 'x.json'))).toMatch(message);
  });

  test('subsets keep the config order; unknown names are rejected', () => {
    const cfg = parseSearchCompareConfig(
      {
        ...tiny,
        models: ['stories260K', 'babyllama-char'],
        structures: [{ name: 'u50', structure: 'unstructured' }, { name: '2of4', structure: '2:4' }],
        transfer: true,
        pho_every_proxy: ['2of4'],
      },
      'x.json',
    );
    const sub = selectSubset(cfg, ['babyllama-char'], ['u50']);
    expect(sub.models).toEqual(['babyllama-char']);
    expect(sub.structures.map((s) => s.name)).toEqual(['u50']);
    expect(sub.transfer).toEqual(['u50']);
    expect(sub.phoEveryProxy).toEqual([]);
    expect(() => selectSubset(cfg, ['stories'])).toThrow(/^--models: 'stories' is not in x\.json \(stories260K, babyllama-char\)$/);
    expect(() => selectSubset(cfg, undefined, ['u60'])).toThrow(/^--structures: 'u60' is not in x\.json/);
  });

  test('planning checks the output folder and the subset, writing nothing', () => {
    const dir = folder('plan');
    const file = writeConfig(dir, tiny);
    expect(() => planComparison(file, { out: path.join(dir, 'missing') })).toThrow(/is not an existing folder/);
    expect(() => planComparison(file, { out: dir, structures: ['2of4'] })).toThrow(CrepeError);
    expect(planComparison(file, { out: dir }).config.models).toEqual(['stories260K']);
    expect(fs.readdirSync(dir)).toEqual(['config.json']);
  });

  test('the CLI: a bad config is one line and exit 2, before any file is written', () => {
    const dir = folder('cli');
    const file = writeConfig(dir, { ...tiny, pho: { proxy: 'gini' } });
    const r = runCli(['search-compare', '--config', file, '--out', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^crepe: .*config\.json: pho\.proxy: unknown proxy 'gini'.*\n$/);
    expect(r.stdout).toBe('');
    expect(fs.readdirSync(dir)).toEqual(['config.json']);
  });
});

describe('proxy-study summary', () => {
  test('Spearman rho per proxy from the proxy-study CSV in the output folder', () => {
    const dir = folder('studies');
    const file = writeConfig(dir, tiny);
    const plan = planComparison(file, { out: dir });
    expect(readProxyStudies(plan)).toEqual([]);
    // energy rises with the PPL (rho +1), gini falls (rho -1)
    fs.writeFileSync(
      path.join(dir, 'proxy-study-stories260K-crepe-u50.csv'),
      'index,a,alpha,gini-pruned-scores,energy,ppl,seconds\n0,0.5,1,0.3,0.01,20,1\n1,0.5,2,0.2,0.02,21,1\n2,0.5,3,0.1,0.05,25,1\n',
    );
    const [study] = readProxyStudies(plan);
    expect(study).toMatchObject({ model: 'stories260K', structure: 'u50', samples: 3 });
    expect(study.spearman).toEqual({ 'gini-pruned-scores': -1, energy: 1 });
  });
});

describe('a tiny real comparison on stories260K (budgets 3, 4 calibration windows, 2 search windows)', () => {
  let plan: ComparePlan;
  let result: ComparisonResult;
  const ctx = { backend: 'wasm', codeVersion: 'test', command: 'crepe search-compare --config config.json --out out' };
  const stripTiming = (csv: string): string =>
    csv
      .trim()
      .split('\n')
      .map((line) => line.split(',').slice(0, -2).join(',')) // the last two columns are timings
      .join('\n');

  beforeAll(async () => {
    await initBackend('wasm');
    const dir = folder('run1');
    plan = planComparison(writeConfig(tmp, tiny), { out: dir });
    result = runComparison(plan, ctx);
  });

  test('writes the logs, the CSV and the Markdown report, and nothing else', () => {
    const names = [evalLogName('stories260K', 'u50', 'hillclimb'), evalLogName('stories260K', 'u50', 'pho'), RESULTS_CSV, RESULTS_MD];
    expect(fs.readdirSync(plan.out).sort()).toEqual([...names].sort());
    expect(result.files.map((f) => path.basename(f)).sort()).toEqual([...names].sort());
    const md = fs.readFileSync(path.join(plan.out, RESULTS_MD), 'utf8');
    expect(md).toMatch(/^# .*\n\nGenerated by `crepe search-compare --config config\.json --out out` from .*config\.json \(code test, backend wasm\)/);
    for (const heading of ['## Runs', '## Cost ratios']) expect(md).toContain(heading);
    expect(md).toContain(`PHO (${DEFAULT_PROXY})`);
    expect(md).not.toContain('## Transfer'); // one model: nothing to transfer
  });

  test('the CSV has one row per run: the baseline, hill climbing, PHO', () => {
    const { rows } = parseCsv(fs.readFileSync(path.join(plan.out, RESULTS_CSV), 'utf8'), RESULTS_CSV);
    expect(rows.map((r) => [r.model, r.structure, r.run, r.kind])).toEqual([
      ['stories260K', 'u50', 'RIA default', 'baseline'],
      ['stories260K', 'u50', 'hillclimb', 'search'],
      ['stories260K', 'u50', 'pho', 'search'],
    ]);
    const [ria, hc, pho] = rows;
    expect(hc).toMatchObject({ ppl_evals: '3', proxy_evals: '0', vs_hillclimb_pct: '0.0000', eval_log: 'search-stories260K-u50-hillclimb.csv' });
    expect(pho).toMatchObject({ ppl_evals: '0', proxy_evals: '3', proxy: DEFAULT_PROXY });
    expect(ria.params).toBe('a=0.5');
    expect(Number(ria.vs_hillclimb_pct)).toBeCloseTo((Number(ria.full_ppl) / Number(hc.full_ppl) - 1) * 100, 3);
    for (const r of [hc, pho]) {
      expect(Number(r.loop_wall_s)).toBeGreaterThan(0);
      expect(Number(r.loop_cpu_s)).toBeGreaterThan(0);
      expect(Number(r.calibration_s)).toBeGreaterThan(0);
    }
    expect(result.costs).toHaveLength(1);
  });

  test("hill climbing's full PPL is exactly a separate fullEvaluation of the CSV's parameters", () => {
    const { rows } = parseCsv(fs.readFileSync(path.join(plan.out, RESULTS_CSV), 'utf8'), RESULTS_CSV);
    const hc = rows.find((r) => r.run === 'hillclimb')!;
    const params = Object.fromEntries(hc.params.split(' ').map((kv) => [kv.split('=')[0], Number(kv.split('=')[1])]));
    expect(params).toEqual(result.rows.find((r) => r.run === 'hillclimb')!.params);
    const model = openModel('stories260K');
    try {
      const full = fullEvaluation(
        model,
        'crepe',
        params,
        { kind: 'unstructured', group: 'matrix', sparsity: 0.5 },
        { dataset: 'tinystories', nsamples: 4, seqlen: model.source.config.maxSeqLen, seed: 0 },
      );
      expect(Number(hc.full_ppl)).toBe(full.ppl);
    } finally {
      model.source.close();
    }
  });

  test('the same seeds give the same evaluation logs (timings apart)', () => {
    // the baselines take no part in the searches; leaving them out keeps the test short
    const second = planComparison(writeConfig(folder('config2'), { ...tiny, baselines: [] }), { out: folder('run2') });
    const again = runComparison(second, ctx);
    for (const search of ['hillclimb', 'pho']) {
      const a = fs.readFileSync(path.join(plan.out, evalLogName('stories260K', 'u50', search)), 'utf8');
      const b = fs.readFileSync(path.join(second.out, evalLogName('stories260K', 'u50', search)), 'utf8');
      expect(a.split('\n')[0]).toMatch(/,seconds,elapsed_seconds$/);
      expect(stripTiming(b)).toEqual(stripTiming(a));
    }
    const ppl = (r: ComparisonResult, run: string): number => r.rows.find((x) => x.run === run)!.fullPpl;
    expect(ppl(again, 'hillclimb')).toBe(ppl(result, 'hillclimb'));
    expect(ppl(again, 'pho')).toBe(ppl(result, 'pho'));
  });
});
