/**
 * The search cost comparison runner (`crepe search-compare`): config validation (one line naming
 * the field, nothing written), the subset flags, the proxy-study summary, the cost arithmetic
 * over seeds, and one tiny real run on stories260K (files, rows, hill climbing's full PPL = a
 * separate fullEvaluation bit for bit, same seeds = same evaluation logs, a killed run resumed
 * without redoing its finished units).
 */
import * as fs from 'fs';
import * as path from 'path';
import { initBackend } from '../lib/backend';
import { parseCsv } from '../lib/util/csv';
import {
  ComparePlan, ComparisonResult, JOURNAL, RESULTS_CSV, RESULTS_MD, RunRow, costRows, projectCosts, evalLogName, planComparison, planUnits, readProxyStudies, runComparison, spread,
} from '../lib/experiments/search-compare';
import { loadSearchCompareConfig, parseSearchCompareConfig, selectSubset } from '../lib/experiments/search-config';
import { DEFAULT_PROXY } from '../lib/search/defaults';
import { PHO_PRESETS } from '../lib/search/presets';
import { proxySign } from '../lib/search/objective';
import { CrepeError } from '../lib/errors';
import { openModel } from '../lib/model/resolve';
import { REPORT_DATASET, fullEvaluation } from '../lib/search/objective';
import { Journal, LEGACY_CODE_PATHS, unitFingerprint, unitSourceFiles, unitSources } from '../lib/experiments/search-compare/journal';
import { unitKey } from '../lib/experiments/search-compare/plan';
import { MODELS, ROOT, makeTmp, oneLineCrepeError, rmTmp, runCli } from './helpers';

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
  hillclimb: { budget: 3, searchWindows: 2 },
  pho: [{ name: 'pho', proxies: ['default'], budget: 3 }],
  baselines: [{ name: 'RIA default', method: 'ria' }],
  reportWindows: 4,
};

function writeConfig(dir: string, json: object): string {
  const file = path.join(dir, 'config.json');
  fs.writeFileSync(file, JSON.stringify(json));
  return file;
}

describe('config', () => {
  test('experiments/search.json parses into what it says, in camelCase, and its PHO variants are the ones crepe search --search NAME runs', () => {
    const raw = JSON.parse(fs.readFileSync(SEARCH_JSON, 'utf8'));
    const cfg = loadSearchCompareConfig(SEARCH_JSON);
    expect(cfg.warnings).toEqual([]);
    expect(cfg.models).toEqual(raw.models);
    expect(cfg.structures.map((s) => s.name)).toEqual(raw.structures.map((s: { name: string }) => s.name));
    expect(cfg.seeds).toEqual(raw.seeds);
    expect(cfg.calibration).toMatchObject(raw.calibration);
    expect(cfg.hillclimb).toEqual(raw.hillclimb);
    expect(cfg.reportWindows).toBe(raw.reportWindows);
    expect(cfg.pho.map((v) => v.name)).toEqual(raw.pho.map((v: { name: string }) => v.name));
    for (const v of cfg.pho) {
      const preset = PHO_PRESETS[v.name];
      expect(preset).toBeDefined();
      expect(v.proxies.map((p) => p.proxy)).toEqual(preset.proxies);
      // each proxy minimized or maximized by its measured direction
      for (const p of v.proxies) expect(p.sign).toBe(proxySign(p.proxy));
      expect([v.budget, v.proxyRows, v.verify]).toEqual([preset.budget, preset.proxyRows, preset.verify]);
    }
    expect(cfg.transfer).toEqual(raw.transfer);
  });

  test('snake_case keys are read as their camelCase spelling, with one deprecation line', () => {
    const camel = parseSearchCompareConfig({ ...tiny, searchSample: 'spread', transferSeeds: [0] }, 'x.json');
    const { reportWindows, ...rest } = tiny;
    const snake = parseSearchCompareConfig({ ...rest, hillclimb: { budget: 3, search_windows: 2 }, report_windows: reportWindows, search_sample: 'spread', transfer_seeds: [0] }, 'x.json');
    expect({ ...snake, warnings: [] }).toEqual(camel);
    expect(camel.warnings).toEqual([]);
    expect(snake.warnings).toHaveLength(1);
    expect(snake.warnings[0]).toMatch(/^x\.json: snake_case keys are deprecated, write camelCase \(search_windows -> searchWindows, .*report_windows -> reportWindows/);
  });

  test('a built-in PHO variant written out must be exactly the built-in one', () => {
    const preset = PHO_PRESETS['pho-pool'];
    const written = { name: 'pho-pool', proxies: preset.proxies, budget: preset.budget, proxyRows: preset.proxyRows, verify: preset.verify };
    const cfg = parseSearchCompareConfig({ ...tiny, hillclimb: { budget: 3, searchWindows: 6 }, pho: [written] }, 'x.json');
    expect(cfg.pho[0]).toEqual(parseSearchCompareConfig({ ...tiny, hillclimb: { budget: 3, searchWindows: 6 }, pho: [{ name: 'pho-pool' }] }, 'x.json').pho[0]);
    expect(oneLineCrepeError(() => parseSearchCompareConfig({ ...tiny, hillclimb: { budget: 3, searchWindows: 6 }, pho: [{ ...written, budget: 13 }] }, 'x.json'))).toMatch(
      /^x\.json: pho\[0\]\.name: 'pho-pool' is a built-in PHO variant .* with other settings/,
    );
  });

  test('experiments/search-variants.json (the validation trials) is valid: each variant changes one thing of pho-pool', () => {
    const base = loadSearchCompareConfig(SEARCH_JSON).pho[0];
    const trials = loadSearchCompareConfig(path.join(ROOT, 'experiments', 'search-variants.json'));
    expect(trials.pho.map((v) => v.name)).toEqual(['pho-c2', 'pho-r1', 'pho-fisher', 'pho-recon']);
    const same = (v: (typeof trials.pho)[number]): string[] =>
      (['proxies', 'budget', 'verify', 'proxyRows'] as const).filter((k) => JSON.stringify(v[k]) !== JSON.stringify(base[k]));
    expect(trials.pho.map(same)).toEqual([['verify'], ['verify'], ['proxies'], ['proxies']]);
  });

  test('defaults, transfer: true, space overrides', () => {
    const cfg = parseSearchCompareConfig(
      {
        models: ['stories260K'],
        structures: [{ name: 'u60', structure: 'unstructured', sparsity: 0.6 }],
        pho: [{ name: 'pho', proxies: ['default'], budget: 3 }],
        transfer: true,
        space: { bounds: ['gamma=1e-4:10'], fixed: { a: 0.3 } },
      },
      'x.json',
    );
    expect(cfg.method).toBe('crepe');
    expect(cfg.calibration).toEqual({ dataset: 'tinystories', nsamples: 128, seed: 0, stats: 'dense' });
    expect(cfg.hillclimb).toEqual({ budget: 40, searchWindows: 16 });
    expect(cfg.searchSample).toBe('first');
    expect(cfg.seeds).toEqual([0]);
    expect(cfg.pho).toEqual([{ name: 'pho', proxies: [{ proxy: DEFAULT_PROXY, sign: 1 }], budget: 3, verify: undefined, proxyRows: 1, seeds: [0] }]);
    expect(cfg.transfer).toEqual(['u60']);
    expect(cfg.space.dims.find((d) => d.name === 'gamma')).toMatchObject({ min: 1e-4, max: 10 });
    expect(cfg.space.fixed).toEqual({ a: 0.3 });
  });

  test.each<[string, object, RegExp]>([
    ['unknown key', { budgets: 3 }, /^x\.json: unknown key 'budgets'/],
    ['misspelled nested key', { hillclimb: { budget: 3, searchWindow: 2 } }, /^x\.json: hillclimb: unknown key 'searchWindow' \(did you mean 'searchWindows'\?\)$/],
    ['wrong type', { hillclimb: { budget: '3' } }, /^x\.json: hillclimb\.budget: expected number, got string$/],
    ['unknown proxy', { pho: [{ name: 'p', proxies: ['gini'] }] }, /^x\.json: pho\[0\]\.proxies\[0\]: unknown proxy 'gini' \(known: /],
    ['no PHO variant', { pho: [] }, /^x\.json: pho: list at least one PHO variant$/],
    ['a proxy twice', { pho: [{ name: 'p', proxies: ['energy', 'energy'] }] }, /pho\[0\]\.proxies: a proxy is listed twice/],
    ['PHO named like hill climbing', { pho: [{ name: 'hillclimb', proxies: ['energy'] }] }, /pho\[0\]\.name: 'hillclimb' is also the name of the hill-climbing run/],
    ['verification on more windows than hill climbing', { pho: [{ name: 'p', proxies: ['energy'], verify: { candidates: 2, windows: 9 } }] }, /pho\[0\]\.verify\.windows: 9 is more than hill climbing's 2 search windows/],
    ['successive-halving rungs that do not increase', { pho: [{ name: 'p', proxies: ['energy'], verify: { candidates: 2, windows: [2, 2] } }] }, /pho\[0\]\.verify\.windows: rungs must increase, got 2, 2/],
    ['a last rung beyond hill climbing\'s windows', { pho: [{ name: 'p', proxies: ['energy'], verify: { candidates: 2, windows: [1, 3] } }] }, /pho\[0\]\.verify\.windows: 3 is more than hill climbing's 2 search windows/],
    ['eta below 2', { pho: [{ name: 'p', proxies: ['energy'], verify: { candidates: 2, windows: [1, 2], eta: 1 } }] }, /pho\[0\]\.verify\.eta/],
    ['a proxy row share above 1', { pho: [{ name: 'p', proxies: ['energy'], proxyRows: 1.5 }] }, /pho\[0\]\.proxyRows/],
    ['a variant seed not in seeds', { pho: [{ name: 'p', proxies: ['energy'], seeds: [4] }] }, /pho\[0\]\.seeds\[0\]: seed 4 is not in seeds \(0\)/],
    ['a seed twice', { seeds: [1, 1] }, /^x\.json: seeds: a seed is listed twice/],
    ['a transfer seed not in seeds', { transferSeeds: [3] }, /transferSeeds\[0\]: seed 3 is not in seeds/],
    ['bad structure', { structures: [{ name: 'x', structure: '2-4' }] }, /^x\.json: structures\[0\]\.structure: structure must be 'unstructured' or N:M/],
    ['sparsity with N:M', { structures: [{ name: 'x', structure: '2:4', sparsity: 0.5 }] }, /structures\[0\]\.sparsity: sparsity applies to unstructured only/],
    ['sparsity out of range', { structures: [{ name: 'x', structure: 'unstructured', sparsity: 1.5 }] }, /structures\[0\]\.sparsity: sparsity must be in \[0, 1\)/],
    ['structure name unfit for a file name', { structures: [{ name: 'a/b', structure: '2:4' }] }, /structures\[0\]\.name: must be letters, digits/],
    ['unknown model', { models: ['stories260K', 'gpt5'] }, /^x\.json: models\[1\]: unknown model 'gpt5'/],
    ['unknown method', { method: 'foo' }, /^x\.json: method: unknown method 'foo'/],
    ['unknown baseline method', { baselines: [{ name: 'b', method: 'foo' }] }, /baselines\[0\]\.method: unknown method 'foo'/],
    ['baseline named like a search', { baselines: [{ name: 'pho', method: 'ria' }] }, /baselines\[0\]\.name: 'pho' is the name of a search run/],
    ['a projection file that does not exist', { projection: '/no/such/file.json' }, /^x\.json: projection: file not found/],
    ['unknown baseline parameter', { baselines: [{ name: 'b', method: 'ria', params: { delta: 1 } }] }, /baselines\[0\]\.params: unknown parameter 'delta' for method ria/],
    ['transfer names an unknown structure', { transfer: ['2of4'] }, /^x\.json: transfer\[0\]: unknown structure name '2of4' \(structures: u50\)$/],
    ['transfer of a wrong type', { transfer: 'u50' }, /^x\.json: transfer: expected true, false or a list of structure names$/],
    ['bad stats', { calibration: { stats: 'sparse' } }, /calibration\.stats: must be one of 'dense', 'pruned', got 'sparse'/],
    ['bad search sample', { searchSample: 'random' }, /^x\.json: searchSample: must be one of 'first', 'spread', got 'random'$/],
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
      },
      'x.json',
    );
    const sub = selectSubset(cfg, ['babyllama-char'], ['u50']);
    expect(sub.models).toEqual(['babyllama-char']);
    expect(sub.structures.map((s) => s.name)).toEqual(['u50']);
    expect(sub.transfer).toEqual(['u50']);
    expect(() => selectSubset(cfg, ['stories'])).toThrow(/^--models: 'stories' is not in x\.json \(stories260K, babyllama-char\)$/);
    expect(() => selectSubset(cfg, undefined, ['u60'])).toThrow(/^--structures: 'u60' is not in x\.json/);
  });

  test('planning checks the output folder and the subset, writing nothing', () => {
    const dir = folder('plan');
    const file = writeConfig(dir, tiny);
    expect(() => planComparison(file, { out: path.join(dir, 'missing') })).toThrow(/is not an existing folder/);
    expect(() => planComparison(file, { out: dir, structures: ['2of4'] })).toThrow(CrepeError);
    expect(planComparison(file, { out: dir }).config.models).toEqual(['stories260K']);
    // more search windows than the validation split has at the model's context: refused, not silently fewer
    const tooMany = writeConfig(folder('plan-windows'), { ...tiny, hillclimb: { budget: 3, searchWindows: 100000 } });
    expect(oneLineCrepeError(() => planComparison(tooMany, { out: dir }))).toMatch(/hillclimb\.searchWindows: stories260K: searchWindows 100000: tinystories-val has only \d+ windows of 512 tokens/);
    expect(fs.readdirSync(dir)).toEqual(['config.json']);
  });

  test('the CLI: a bad config is one line and exit 2, before any file is written', () => {
    const dir = folder('cli');
    const file = writeConfig(dir, { ...tiny, pho: [{ name: 'p', proxies: ['gini'] }] });
    const r = runCli(['search-compare', '--config', file, '--out', dir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^crepe: .*config\.json: pho\[0\]\.proxies\[0\]: unknown proxy 'gini'.*\n$/);
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

describe('cost accounting over seeds', () => {
  const row = (run: string, seed: number, fullPpl: number, loop: number, cpu: number): RunRow => ({
    key: `${run}${seed}`, model: 'stories260K', structure: 'u50', structureLabel: '50% unstructured', kind: 'search', run, seed, method: 'crepe',
    search: run === 'hillclimb' ? 'hillclimb' : 'pho', proxies: run === 'hillclimb' ? null : 'energy', fromModel: null, params: {}, fullPpl,
    pplEvals: run === 'hillclimb' ? 40 : 2, windowEvals: run === 'hillclimb' ? 640 : 8, proxyEvals: run === 'hillclimb' ? 0 : 60, bestSearchValue: 1, stopReason: 'x', calibrationSeconds: 2,
    loopWallSeconds: loop, loopCpuSeconds: cpu, pruneSeconds: 0, evalSeconds: 0, evalDataset: 'tinystories', evalWindows: 4, evalSeqlen: 8, evalLog: null, note: '',
    loadAverage: 1, codeVersion: 'test', fingerprint: 'f',
  });

  test('mean and sample std; PHO against hill climbing on the same seeds; ratios of mean loop times', () => {
    expect(spread([1, 2, 3, 4])).toEqual({ mean: 2.5, std: Math.sqrt(5 / 3), n: 4 });
    expect(spread([7])).toEqual({ mean: 7, std: 0, n: 1 });
    const cfg = parseSearchCompareConfig(
      { ...tiny, seeds: [0, 1, 2], pho: [{ name: 'pho', proxies: ['energy'] }, { name: 'one', proxies: ['energy-row'], seeds: [1] }] },
      'x.json',
    );
    const rows = [
      row('hillclimb', 0, 10, 40, 38), row('hillclimb', 1, 12, 50, 45), row('hillclimb', 2, 11, 60, 57),
      row('pho', 0, 11, 1, 1), row('pho', 1, 11, 2, 1.5), row('pho', 2, 11.1, 3, 2.5),
      row('one', 1, 12.12, 5, 5),
    ];
    const [pho, one] = costRows(cfg, rows);
    expect(pho.hillclimbPpl).toEqual(spread([10, 12, 11]));
    expect(pho.phoVsHillclimbPct).toBeCloseTo(((11 + 11 + 11.1) / 3 / 11 - 1) * 100, 10);
    expect(pho.loopWallRatio).toBeCloseTo(50 / 2, 12);
    expect(pho.loopCpuRatio).toBeCloseTo(140 / 3 / (5 / 3), 12);
    expect(pho.withCalibrationRatio).toBeCloseTo((2 + 50) / (2 + 2), 12);
    expect(pho).toMatchObject({ within1Pct: true, loopAtLeast20x: true });
    // a variant on seed 1 only is compared with hill climbing's seed 1 only
    expect(one.hillclimbPpl).toEqual(spread([12]));
    expect(one.phoVsHillclimbPct).toBeCloseTo(1, 10);
    expect(one).toMatchObject({ within1Pct: false, loopAtLeast20x: false, loopWallRatio: 10 });
  });

  test('projection: hill climbing pays prune + windows per step, PHO its proxies, one prune per PPL evaluation and its window evaluations', () => {
    const cfg = parseSearchCompareConfig({ ...tiny, pho: [{ name: 'pho', proxies: ['energy'] }] }, 'x.json');
    const rows = [row('hillclimb', 0, 10, 40, 38), row('pho', 0, 11, 1, 1)];
    const costs = { description: 'd', command: 'c', model: 'M', linearWeights: 1e6, blocks: 2, seqlen: 100, proxySecondsPerWeight: 2e-9, pruneSecondsPerWeight: 3e-9, forwardSecondsPerWeightToken: 1e-12, backend: 'wasm', load: 'l' };
    const [p] = projectCosts(cfg, costRows(cfg, rows), costs).rows;
    // hill climbing: 40 steps x (prune + 2 search windows x 100 tokens of forward)
    expect(p.hillclimbSeconds).toBeCloseTo(40 * (1e6 * 3e-9 + 1e6 * 1e-12 * 2 * 100), 12);
    // PHO: 60 proxy evaluations + 2 prunes + 8 windows
    expect(p.phoSeconds).toBeCloseTo(60 * 1e6 * 2e-9 + 2 * 1e6 * 3e-9 + 8 * 1e6 * 1e-12 * 100, 12);
    expect(p.ratio).toBeCloseTo(p.hillclimbSeconds / p.phoSeconds, 12);
    // calibration: one dense forward over the calibration windows + one scoring pass, shared by both
    const calibration = 1e6 * (1e-12 * cfg.calibration.nsamples * 100 + 3e-9);
    expect(p.calibrationSeconds).toBeCloseTo(calibration, 12);
    expect(p.withCalibrationRatio).toBeCloseTo((calibration + p.hillclimbSeconds) / (calibration + p.phoSeconds), 12);
  });

  test('projection: a sequential final measurement pays a prune and its calibration forward (two passes per block but the last); hill climbing its extra windows too', () => {
    const cfg = parseSearchCompareConfig(
      { ...tiny, hillclimb: { ...tiny.hillclimb, final: { measure: 'sequential', candidates: 3, windows: 2, calibrationWindows: 4 } }, pho: [{ name: 'pho', proxies: ['energy'], verify: { candidates: 1, windows: 2, final: 'sequential', finalCalibrationWindows: 2 } }] },
      'x.json',
    );
    const hc = { ...row('hillclimb', 0, 10, 40, 38), sequentialPrunes: 3, sequentialCalibrationWindows: 4 };
    const pho = { ...row('pho', 0, 11, 1, 1), sequentialPrunes: 2, sequentialCalibrationWindows: 2 };
    const costs = { description: 'd', command: 'c', model: 'M', linearWeights: 1e6, blocks: 2, seqlen: 100, proxySecondsPerWeight: 2e-9, pruneSecondsPerWeight: 3e-9, forwardSecondsPerWeightToken: 1e-12, backend: 'wasm', load: 'l' };
    const [p] = projectCosts(cfg, costRows(cfg, [hc, pho]), costs).rows;
    // a sequential prune's calibration forward with C windows: C x 100 tokens x (2 x 2 - 1) / 2 block passes
    const forward = (cw: number): number => 1e6 * 1e-12 * cw * 100 * 1.5;
    const pplEval = (w: number): number => 1e6 * (3e-9 + 1e-12 * w * 100);
    // hill climbing: 37 climbing steps on 2 windows, 3 finalists pruned sequentially and measured on 2 windows
    expect(p.hillclimbSeconds).toBeCloseTo(37 * pplEval(2) + 3 * (pplEval(2) + forward(4)), 12);
    // PHO: 60 proxies, 2 prunes and 8 windows as before, 2 calibration forwards of 2 windows
    expect(p.phoSeconds).toBeCloseTo(60 * 1e6 * 2e-9 + 2 * 1e6 * 3e-9 + 8 * 1e6 * 1e-12 * 100 + 2 * forward(2), 12);
    expect(p.phoSequentialPrunes).toBe(2);
  });

  test('units: every seed of hill climbing and of each variant, baselines once, transfer of the chosen seeds both ways', () => {
    const cfg = parseSearchCompareConfig(
      { ...tiny, models: ['stories260K', 'babyllama-char'], seeds: [0, 1], transfer: true, transferSeeds: [1], pho: [{ name: 'p', proxies: ['energy'] }, { name: 'q', proxies: ['energy'], seeds: [0] }] },
      'x.json',
    );
    const units = planUnits(cfg).map((u) => [u.kind, u.model, u.run, u.seed, u.fromModel].join(' '));
    expect(units).toEqual([
      'search stories260K hillclimb 0 ', 'search stories260K p 0 ', 'search stories260K q 0 ', 'search stories260K hillclimb 1 ', 'search stories260K p 1 ', 'baseline stories260K RIA default  ',
      'search babyllama-char hillclimb 0 ', 'search babyllama-char p 0 ', 'search babyllama-char q 0 ', 'search babyllama-char hillclimb 1 ', 'search babyllama-char p 1 ', 'baseline babyllama-char RIA default  ',
      'transfer stories260K hillclimb 1 babyllama-char', 'transfer stories260K p 1 babyllama-char', 'transfer babyllama-char hillclimb 1 stories260K', 'transfer babyllama-char p 1 stories260K',
    ]);
  });
});

describe('a tiny real comparison on stories260K (budgets 3, 4 calibration windows, 2 search windows, 4 report windows)', () => {
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

  test('writes the logs, the journal, the CSV and the Markdown report, and nothing else', () => {
    const names = [evalLogName('stories260K', 'u50', 'hillclimb', 0), evalLogName('stories260K', 'u50', 'pho', 0), JOURNAL, RESULTS_CSV, RESULTS_MD];
    expect(fs.readdirSync(plan.out).sort()).toEqual([...names].sort());
    expect(result.files.map((f) => path.basename(f)).sort()).toEqual([...names].sort());
    const md = fs.readFileSync(path.join(plan.out, RESULTS_MD), 'utf8');
    expect(md).toMatch(/^# .*\n\nGenerated by `crepe search-compare --config config\.json --out out` from .*config\.json \(code test, backend wasm\)/);
    for (const heading of ['## Runs', '## PHO against hill climbing', '## Hill climbing converges']) expect(md).toContain(heading);
    expect(md).toContain(`pho (${DEFAULT_PROXY})`);
    expect(md).not.toContain('## Transfer'); // one model: nothing to transfer
  });

  test('the CSV has one row per unit: hill climbing, PHO, the baseline', () => {
    const { rows } = parseCsv(fs.readFileSync(path.join(plan.out, RESULTS_CSV), 'utf8'), RESULTS_CSV);
    expect(rows.map((r) => [r.model, r.structure, r.run, r.seed, r.kind])).toEqual([
      ['stories260K', 'u50', 'hillclimb', '0', 'search'],
      ['stories260K', 'u50', 'pho', '0', 'search'],
      ['stories260K', 'u50', 'RIA default', '', 'baseline'],
    ]);
    const [hc, pho, ria] = rows;
    expect(hc).toMatchObject({ ppl_evals: '3', proxy_evals: '0', eval_log: evalLogName('stories260K', 'u50', 'hillclimb', 0), eval_windows: '4', eval_dataset: 'tinystories' });
    expect(pho).toMatchObject({ ppl_evals: '0', proxy_evals: '3', proxies: DEFAULT_PROXY });
    expect(ria.params).toBe('a=0.5');
    for (const r of [hc, pho]) {
      expect(Number(r.loop_wall_s)).toBeGreaterThan(0);
      expect(Number(r.loop_cpu_s)).toBeGreaterThan(0);
      expect(Number(r.calibration_s)).toBeGreaterThan(0);
    }
    expect(result.costs).toHaveLength(1);
    expect(result.curves[0].seeds).toEqual([{ seed: 0, evals: 3, stopReason: 'maxEvals' }]);
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
        REPORT_DATASET,
        4,
      );
      expect(Number(hc.full_ppl)).toBe(full.ppl);
    } finally {
      model.source.close();
    }
  });

  test('a killed run continues from its journal: finished units are not redone, the rows are the same', () => {
    // The multi-fidelity PHO with two proxies and PPL verification, two seeds, no baseline.
    const config = writeConfig(folder('config-resume'), {
      ...tiny, baselines: [], seeds: [0, 1], pho: [{ name: 'mf', proxies: ['energy-row', 'energy'], budget: 3, verify: { candidates: 1, windows: 1 } }],
    });
    const whole = runComparison(planComparison(config, { out: folder('resume-whole') }), ctx);
    expect(whole).toMatchObject({ ranUnits: 4, resumedUnits: 0 });
    const mf = whole.rows.find((r) => r.run === 'mf')!;
    expect(mf).toMatchObject({ proxyEvals: 6, pplEvals: 2 });
    // A run killed during its third unit: the journal has the config line, two rows and half a line.
    const dir = folder('resume-killed');
    const lines = fs.readFileSync(path.join(whole.plan.out, JOURNAL), 'utf8').split('\n');
    const rowLines = lines.filter((l) => l.includes('"type":"row"'));
    fs.writeFileSync(path.join(dir, JOURNAL), [lines[0], ...lines.filter((l) => l.includes('"type":"calibration"')), rowLines[0], rowLines[1], rowLines[2].slice(0, 40)].join('\n'));
    const resumed = runComparison(planComparison(config, { out: dir }), ctx);
    expect(resumed).toMatchObject({ ranUnits: 2, resumedUnits: 2 });
    expect(resumed.rows.map((r) => [r.key, r.params, r.fullPpl])).toEqual(whole.rows.map((r) => [r.key, r.params, r.fullPpl]));
    // only the two units run again wrote evaluation logs
    expect(fs.readdirSync(dir).filter((f) => f.startsWith('search-') && f.endsWith('.csv') && f !== RESULTS_CSV)).toHaveLength(2);
    // Another PHO variant under the same name: only its rows are stale and rerun, hill climbing's are kept.
    const other = writeConfig(folder('config-other'), { ...tiny, baselines: [], seeds: [0, 1], pho: [{ name: 'mf', proxies: ['energy'], budget: 3 }] });
    const changed = runComparison(planComparison(other, { out: dir }), ctx);
    expect(changed).toMatchObject({ ranUnits: 2, resumedUnits: 2, staleUnits: 2 });
    expect(changed.rows.filter((r) => r.run === 'hillclimb')).toEqual(resumed.rows.filter((r) => r.run === 'hillclimb'));
    expect(changed.rows.find((r) => r.run === 'mf')).toMatchObject({ proxies: 'energy', pplEvals: 0 });
    // A row whose fingerprint no longer matches (as after a change of the scoring code) is rerun.
    const text = fs.readFileSync(path.join(dir, JOURNAL), 'utf8');
    const hcFingerprint = changed.rows.find((r) => r.run === 'hillclimb' && r.seed === 1)!.fingerprint;
    fs.writeFileSync(path.join(dir, JOURNAL), text.split(hcFingerprint).join('0000000000000000'));
    const again = runComparison(planComparison(other, { out: dir }), ctx);
    expect(again).toMatchObject({ ranUnits: 1, resumedUnits: 3, staleUnits: 1 });
    expect(again.rows.map((r) => [r.key, r.params, r.fullPpl])).toEqual(changed.rows.map((r) => [r.key, r.params, r.fullPpl]));
    // --runs runs only the named runs; an unknown name is refused before any work
    const onlyHc = runComparison(planComparison(config, { out: folder('resume-runs'), runs: ['hillclimb'] }), ctx);
    expect(onlyHc.rows.map((r) => r.run)).toEqual(['hillclimb', 'hillclimb']);
    expect(() => planComparison(config, { out: dir, runs: ['hc'] })).toThrow(/--runs: 'hc' is not a run of .*\(hillclimb, mf\)/);
  });

  test('the same seeds give the same evaluation logs (timings apart)', () => {
    // the baselines take no part in the searches; leaving them out keeps the test short
    const second = planComparison(writeConfig(folder('config2'), { ...tiny, baselines: [] }), { out: folder('run2') });
    const again = runComparison(second, ctx);
    for (const search of ['hillclimb', 'pho']) {
      const a = fs.readFileSync(path.join(plan.out, evalLogName('stories260K', 'u50', search, 0)), 'utf8');
      const b = fs.readFileSync(path.join(second.out, evalLogName('stories260K', 'u50', search, 0)), 'utf8');
      expect(a.split('\n')[0]).toMatch(/,seconds,elapsed_seconds$/);
      expect(stripTiming(b)).toEqual(stripTiming(a));
    }
    const ppl = (r: ComparisonResult, run: string): number => r.rows.find((x) => x.run === run)!.fullPpl;
    expect(ppl(again, 'hillclimb')).toBe(ppl(result, 'hillclimb'));
    expect(ppl(again, 'pho')).toBe(ppl(result, 'pho'));
  });
});

describe('fingerprints and the search sample', () => {
  test("'first' (the default) leaves every fingerprint as before the option; 'spread' changes the searches' rows, not the baselines'", () => {
    const first = parseSearchCompareConfig(tiny, 'x.json');
    const implicit = parseSearchCompareConfig({ ...tiny, searchSample: 'first' }, 'x.json');
    const spreadCfg = parseSearchCompareConfig({ ...tiny, searchSample: 'spread' }, 'x.json');
    for (const u of planUnits(first)) {
      expect(unitFingerprint(implicit, u)).toBe(unitFingerprint(first, u));
      if (u.kind === 'baseline') expect(unitFingerprint(spreadCfg, u)).toBe(unitFingerprint(first, u));
      else expect(unitFingerprint(spreadCfg, u)).not.toBe(unitFingerprint(first, u));
    }
  });
});

describe('the code a row depends on', () => {
  test('is the import closure of the search code: it holds the files the hand-kept list missed', () => {
    const cfg = parseSearchCompareConfig(tiny, 'x.json');
    const units = planUnits(cfg);
    const search = units.find((u) => u.kind === 'search' && u.run !== 'hillclimb')!;
    const files = unitSourceFiles(search)!;
    // CRePE's terms and the seeded generator, which the hand-kept list left out
    expect(files).toEqual(expect.arrayContaining(['lib/prune/strategies/terms.ts', 'lib/util/random.ts', ...LEGACY_CODE_PATHS.common]));
    // every file of the closure exists and none lies outside lib/
    for (const f of files) expect(fs.existsSync(path.join(ROOT, f)) && f.startsWith('lib/')).toBe(true);
    // a baseline depends on less than a search (no search loop)
    const baseline = unitSourceFiles(units.find((u) => u.kind === 'baseline')!)!;
    expect(baseline.length).toBeLessThan(files.length);
    expect(baseline).not.toContain('lib/search/pho.ts');
  });

  test('a row is current while its settings and every file of its code are unchanged, file by file', () => {
    const cfg = parseSearchCompareConfig(tiny, 'x.json');
    const unit = planUnits(cfg).find((u) => u.kind === 'search')!;
    const dir = makeTmp('crepe-journal-');
    try {
      const sources = unitSources(unit)!;
      const open = (row: object) => {
        fs.writeFileSync(path.join(dir, JOURNAL), `${JSON.stringify({ type: 'journal' })}\n${JSON.stringify({ type: 'row', row: { key: unitKey(unit), codeVersion: 'test', ...row } })}\n`);
        return Journal.open(dir, cfg, false);
      };
      expect(open({ fingerprint: unitFingerprint(cfg, unit), sources }).has(unit)).toBe(true);
      // one file changed (its recorded hash differs): stale
      expect(open({ fingerprint: unitFingerprint(cfg, unit), sources: { ...sources, 'lib/prune/strategies/terms.ts': '0'.repeat(16) } }).stale(unit)).toBe(true);
      // a file the code now imports that the row did not depend on: stale
      const { ['lib/util/random.ts']: _gone, ...fewer } = sources;
      expect(open({ fingerprint: unitFingerprint(cfg, unit), sources: fewer }).stale(unit)).toBe(true);
      // other settings: stale
      expect(open({ fingerprint: '0'.repeat(16), sources }).stale(unit)).toBe(true);
      // a row without per-file records and an unknown commit cannot be checked: stale
      expect(open({ fingerprint: unitFingerprint(cfg, unit) }).stale(unit)).toBe(true);
    } finally {
      rmTmp(dir);
    }
  });
});

describe('crepe search runs the comparison\'s PHO variants by name', () => {
  test('--search pho-pool --save: the full PPL is the comparison row\'s, and the saved model gives it again', async () => {
    await initBackend('wasm');
    const dir = folder('pho-pool');
    const config = { ...tiny, hillclimb: { budget: 3, searchWindows: 6 }, pho: [{ name: 'pho-pool' }], baselines: [] };
    const plan = planComparison(writeConfig(dir, config), { out: dir, runs: ['pho-pool'] });
    const result = runComparison(plan, { backend: 'wasm', codeVersion: 'test', command: 'test' });
    const row = result.rows.find((r) => r.run === 'pho-pool' && r.seed === 0)!;
    expect(row).toBeDefined();
    const save = path.join(dir, 'best.bin');
    const r = runCli(
      ['search', '--model', 'stories260K', '--search', 'pho-pool', '--nsamples', '4', '--search-windows', '6', '--report-windows', '4', '--save', save, '--json'],
      { timeoutMs: 300_000 },
    );
    expect(r.stderr).toBe('');
    const out = JSON.parse(r.stdout);
    expect(out.best).toEqual(row.params);
    expect(out.full_eval.ppl).toBe(row.fullPpl);
    const record = JSON.parse(fs.readFileSync(`${save}.recipe.json`, 'utf8'));
    expect(record.recipe.params).toEqual(out.best);
    expect(record.results.eval[0].ppl).toBe(row.fullPpl);
    const e = runCli(['eval', '--model', save, '--tokenizer', MODELS.stories260K.tokenizer(), '--dataset', REPORT_DATASET, '--max-windows', '4', '--json']);
    expect(e.stderr).toBe('');
    expect(JSON.parse(e.stdout).ppl).toBe(row.fullPpl);
  });
});
