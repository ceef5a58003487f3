/**
 * Hyperparameter search: the search space mapping (log10 coefficients, odd kernels as integer
 * indices), hill climbing on synthetic objectives, reproducibility of both searches on
 * stories260K, and one-line errors for bad input.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../lib/backend';
import { SearchArgs, searchCommand } from '../lib/cli/search';
import { CrepeError } from '../lib/errors';
import { openModel } from '../lib/model/resolve';
import { getStrategy } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { hillClimb, hillClimbSearch } from '../lib/search/hillclimb';
import { SearchSetup, calibrateOnce, evalLogCsv, evaluateConfiguration } from '../lib/search/objective';
import { ProxyAccumulator } from '../lib/search/proxies';
import { selectMask } from '../lib/prune/select';
import { phoSearch } from '../lib/search/pho';
import { Rng } from '../lib/util/random';
import { buildSpace, clampParams, parseBounds, sampleUniform, searchStart, toParams, toVector } from '../lib/search/space';
import { ConfigEvaluator, spreadWindowIndices } from '../lib/search/evaluator';
import { datasetWindows } from '../lib/eval/evaluate';
import { windowNll } from '../lib/eval/perplexity';

const crepe = getStrategy('crepe');

describe('search space', () => {
  const space = buildSpace(crepe);

  test('default CRePE space: log10 coefficients, odd kernels 1..9 as indices 0..4, a fixed', () => {
    expect(space.dims.map((d) => [d.name, d.scale, d.lower, d.upper])).toEqual([
      ['alpha', 'log10', -3, 3],
      ['beta', 'log10', -3, 3],
      ['gamma', 'log10', -3, 3],
      ['kh', 'odd-index', 0, 4],
      ['kw', 'odd-index', 0, 4],
    ]);
    expect(space.fixed).toEqual({ a: 0.5 });
  });

  test('round trip parameters -> vector -> parameters', () => {
    const rng = new Rng(7);
    for (let t = 0; t < 50; t++) {
      const x = sampleUniform(space, rng);
      const p = toParams(space, x);
      expect(p.a).toBe(0.5);
      expect([1, 3, 5, 7, 9]).toContain(p.kh);
      expect([1, 3, 5, 7, 9]).toContain(p.kw);
      const back = toVector(space, p);
      back.forEach((v, i) => expect(v).toBeCloseTo(x[i], 12));
      const again = toParams(space, back);
      for (const k of Object.keys(p)) expect(Math.abs(again[k] - p[k])).toBeLessThanOrEqual(1e-14 * p[k]); // log10 / 10** lose an ulp at most
    }
    expect(toVector(space, { alpha: 1, beta: 1000, gamma: 0.001, kh: 3, kw: 9, a: 0.5 })).toEqual([0, 3, -3, 1, 4]);
  });

  test('integer kernel coordinates round, clamp and map k -> 2k + 1', () => {
    expect(toParams(space, [0, 0, 0, 1.4, 2.6])).toMatchObject({ kh: 3, kw: 7 });
    expect(toParams(space, [0, 0, 0, -0.4, 4.49])).toMatchObject({ kh: 1, kw: 9 });
    expect(toParams(space, [9, -9, 0, -3, 17])).toMatchObject({ alpha: 1000, beta: 0.001, kh: 1, kw: 9 });
    expect(() => toVector(space, { alpha: 1, beta: 1, gamma: 1, kh: 4, kw: 3 })).toThrow(CrepeError);
    expect(() => toVector(space, { alpha: 1, beta: 1, gamma: 1, kh: 11, kw: 3 })).toThrow(/outside the search bounds/);
    // bounds between odd values snap inwards
    const narrow = buildSpace(crepe, { bounds: { kh: [2, 8] } });
    expect(narrow.dims.find((d) => d.name === 'kh')).toMatchObject({ min: 3, max: 7, lower: 1, upper: 3 });
    expect(clampParams(narrow, { kh: 8, kw: 4, alpha: 1, beta: 1, gamma: 1 })).toMatchObject({ kh: 7, kw: 5 });
  });

  test('searching a, custom bounds, fixed values; the start is RIA', () => {
    const s = buildSpace(crepe, { searched: ['alpha', 'beta', 'gamma', 'kh', 'kw', 'a'], bounds: parseBounds(['gamma=1e-4:10']) });
    expect(s.dims.find((d) => d.name === 'a')).toMatchObject({ scale: 'linear', lower: 0, upper: 1 });
    expect(s.dims.find((d) => d.name === 'gamma')).toMatchObject({ lower: -4, upper: 1 });
    expect(searchStart(s)).toEqual({ alpha: 1, beta: 1, gamma: 1e-4, kh: 3, kw: 3, a: 0.5 });
    const fixed = buildSpace(crepe, { searched: ['alpha', 'beta'], fixed: { gamma: '0.1', kh: 5 } });
    expect(fixed.fixed).toEqual({ gamma: 0.1, kh: 5, kw: 3, a: 0.5 });
    expect(toParams(fixed, [1, -1])).toEqual({ alpha: 10, beta: 0.1, gamma: 0.1, kh: 5, kw: 3, a: 0.5 });
  });

  test('other strategies: ria searches a; magnitude has nothing to search', () => {
    const ria = buildSpace(getStrategy('ria'));
    expect(ria.dims.map((d) => [d.name, d.scale, d.min, d.max])).toEqual([['a', 'linear', 0, 1]]);
    expect(searchStart(ria)).toEqual({ a: 0.5 });
    expect(() => buildSpace(getStrategy('magnitude'))).toThrow(/no numeric parameters/);
  });

  test('bad spaces are CrepeErrors', () => {
    expect(() => buildSpace(crepe, { searched: ['delta'] })).toThrow(CrepeError);
    expect(() => buildSpace(crepe, { bounds: { alpha: [10, 1] } })).toThrow(/not <=/);
    expect(() => buildSpace(crepe, { bounds: { alpha: [0, 1] } })).toThrow(/log10 space/);
    expect(() => buildSpace(crepe, { bounds: { kh: [1, 99] } })).toThrow(CrepeError);
    expect(() => buildSpace(crepe, { bounds: { a: [0, 1] } })).toThrow(/not searched/);
    expect(() => buildSpace(crepe, { fixed: { alpha: 2 } })).toThrow(/both searched and fixed/);
    expect(() => parseBounds(['alpha=1'])).toThrow(CrepeError);
  });
});

describe('hill climbing (synthetic objectives)', () => {
  const base = {
    lower: [-10, 0],
    upper: [10, 8],
    integer: [false, true],
    steps: [1, 1],
    minSteps: [1 / 16, 1],
    seed: 1,
  };
  const bowl = (x: number[]): number => (x[0] - 0.3) ** 2 + (x[1] - 5) ** 2;

  test('converges on a bowl, halving the continuous step down to its minimum', () => {
    const steps: number[] = [];
    const r = hillClimb(bowl, { ...base, x0: [3, 1], maxEvals: 200, onEval: (e) => steps.push(e.steps[0]) });
    expect(r.stopReason).toBe('converged');
    expect(r.xBest[1]).toBe(5);
    expect(Math.abs(r.xBest[0] - 0.3)).toBeLessThanOrEqual(1 / 32);
    expect(r.halvings).toBe(4);
    // steps seen by the evaluations: 1, then 1/2, 1/4, 1/8, 1/16 in that order, never below
    expect([...new Set(steps)]).toEqual([1, 0.5, 0.25, 0.125, 0.0625]);
  });

  test('shrinks only when no neighbour improves', () => {
    // a staircase: every unit step to the right improves, so the step stays 1 until x = 6
    const stairs = (x: number[]): number => Math.abs(Math.floor(x[0]) - 6) + x[1];
    const log: { x: number[]; steps: number[] }[] = [];
    hillClimb(stairs, { ...base, x0: [0, 0], maxEvals: 60, onEval: (e) => log.push(e) });
    const firstHalved = log.findIndex((e) => e.steps[0] < 1);
    expect(log.slice(0, firstHalved).some((e) => e.x[0] === 6)).toBe(true);
  });

  test('budget, determinism per seed, and bad budgets', () => {
    const run = (seed: number): number[][] => {
      const xs: number[][] = [];
      hillClimb(bowl, { ...base, seed, x0: [3, 1], maxEvals: 12, onEval: (e) => xs.push(e.x) });
      return xs;
    };
    expect(run(4)).toHaveLength(12);
    expect(run(4)).toEqual(run(4));
    expect(() => hillClimb(bowl, { ...base, x0: [0, 0], maxEvals: 0 })).toThrow(CrepeError);
  });
});

describe('searches on stories260K (tiny budgets, 2 search windows)', () => {
  let setup: SearchSetup;
  const space = buildSpace(crepe);
  beforeAll(async () => {
    await initBackend('wasm');
    const model = openModel('stories260K');
    setup = calibrateOnce(
      model,
      crepe,
      { kind: 'unstructured', group: 'matrix', sparsity: 0.5 },
      { dataset: 'tinystories', nsamples: 8, seqlen: 512, seed: 0 },
      { statsKind: 'dense', keepInputs: 2 },
    );
  });
  afterAll(() => setup?.model.source.close());

  const strip = (csv: string): string =>
    csv
      .trim()
      .split('\n')
      .map((line) => line.split(',').slice(0, -2).join(',')) // drop the two timing columns
      .join('\n');

  test("'pruned' statistics: block 0 sees the dense inputs, later blocks the pruned model's", () => {
    const pruned = calibrateOnce(setup.model, crepe, setup.structure, setup.calibration, { statsKind: 'pruned', keepInputs: 0 });
    expect(pruned.stats.blocks).toHaveLength(5);
    expect([...pruned.stats.blocks[4].keys()].sort()).toEqual(['down', 'gate', 'k', 'o', 'q', 'up', 'v']);
    expect(Array.from(pruned.stats.blocks[0].get('q')!.sumSq)).toEqual(Array.from(setup.stats.blocks[0].get('q')!.sumSq));
    expect(Array.from(pruned.stats.blocks[2].get('q')!.sumSq)).not.toEqual(Array.from(setup.stats.blocks[2].get('q')!.sumSq));
    expect(pruned.stats.calibration.starts).toEqual(setup.stats.calibration.starts);
  });

  test('hill climbing: same seed, same evaluation log', () => {
    const a = hillClimbSearch(setup, space, { budget: 4, windows: 2, seed: 3 });
    const b = hillClimbSearch(setup, space, { budget: 4, windows: 2, seed: 3 });
    expect(a.log).toHaveLength(4);
    expect(a.pplEvals).toBe(4);
    expect(a.log[0].params).toEqual({ alpha: 1, beta: 1, gamma: 0.001, kh: 3, kw: 3, a: 0.5 });
    expect(strip(evalLogCsv(a.log))).toEqual(strip(evalLogCsv(b.log)));
    expect(a.best).toEqual(b.best);
    expect(a.bestValue).toBe(Math.min(...a.log.map((e) => e.value)));
  });

  test('PHO: same seed, same evaluation log; the best is the minimum of sign * proxy', () => {
    const opts = { proxy: 'recon' as const, sign: 1 as const, budget: 6, seed: 5 };
    const a = phoSearch(setup, space, opts);
    const b = phoSearch(setup, space, opts);
    expect(a.proxyEvals).toBe(6);
    expect(a.pplEvals).toBe(0);
    expect(strip(evalLogCsv(a.log))).toEqual(strip(evalLogCsv(b.log)));
    expect(a.bestObjective).toBe(Math.min(...a.log.map((e) => e.objective)));
    const c = phoSearch(setup, space, { ...opts, proxy: 'gini-pruned-scores', sign: -1 });
    expect(c.bestValue).toBe(Math.max(...c.log.map((e) => e.value)));
    expect(() => phoSearch(setup, space, { ...opts, budget: 0 })).toThrow(CrepeError);
  });

  test("PHO with successive halving: the winner's PPL is the evaluator's own PPL on the windows it reached; every window measured once", () => {
    const opts = { proxy: 'energy-row' as const, sign: 1 as const, portfolio: [{ proxy: 'energy' as const, sign: 1 as const }], budget: 4, seed: 2 };
    const r = phoSearch(setup, space, { ...opts, verify: { candidates: 2, windows: [1, 3], eta: 2, start: true } });
    const ppl = r.log.filter((e) => e.kind === 'ppl');
    const rung0 = ppl.filter((e) => e.measure === 'ppl@1');
    const rung1 = ppl.filter((e) => e.measure === 'ppl@3');
    // up to 2 distinct candidates per proxy run plus the start point; ceil(n / 2) go on to 3 windows
    expect(rung0.length).toBeGreaterThanOrEqual(2);
    expect(rung0.length).toBeLessThanOrEqual(5);
    expect(rung0.some((e) => JSON.stringify(e.params) === JSON.stringify(searchStart(space)))).toBe(true);
    expect(rung1).toHaveLength(Math.ceil(rung0.length / 2));
    expect(r.pplEvals).toBe(rung0.length + rung1.length);
    expect(r.windowEvals).toBe(rung0.length + 2 * rung1.length);
    // independent: a fresh pruning and PPL of the winner on the first 3 windows
    const ev = setup.evaluator!;
    expect(r.bestValue).toBeCloseTo(ev.perplexity(ev.prune(r.best), setup.dataset, 3), 10);
    expect(r.bestValue).toBe(Math.min(...rung1.map((e) => e.value)));
    // the rung-0 values are the candidates' PPL on window 1 alone
    for (const e of rung0.slice(0, 2)) expect(e.value).toBeCloseTo(ev.perplexity(ev.prune(e.params), setup.dataset, 1), 10);
  });

  test('PHO proxies on a row sample: all rows equal the pipeline-order proxy; a quarter of the rows is a close estimate', () => {
    const params = { alpha: 3, beta: 0.5, gamma: 0.01, kh: 3, kw: 5, a: 0.5 };
    const sampled = (fraction: number): number => {
      const acc = new ProxyAccumulator(['energy-row', 'energy']);
      setup.evaluator!.pruneSampled(params, fraction, (layer) => acc.add(layer));
      return acc.values()['energy-row'];
    };
    const full = evaluateConfiguration(setup, params, { proxies: ['energy-row'] }).proxies['energy-row']!;
    expect(sampled(1)).toBe(full);
    expect(Math.abs(sampled(0.25) / full - 1)).toBeLessThan(0.1);
    expect(sampled(0.25)).not.toBe(full);
    // independent: score every row, keep the evenly spaced quarter, select within it, compute the proxy
    const ev = setup.evaluator!;
    const byHand = new ProxyAccumulator(['energy-row', 'gini-pruned-scores']);
    ev.prune(params, (layer) => {
      const kept = Math.max(1, Math.round(layer.rows * 0.25));
      const rows = Array.from({ length: kept }, (_, i) => Math.floor(((i + 0.5) * layer.rows) / kept));
      const pick = (a: Float32Array): Float32Array => Float32Array.from(rows.flatMap((r) => Array.from(a.subarray(r * layer.cols, (r + 1) * layer.cols))));
      const scores = pick(layer.scores);
      byHand.add({ ...layer, weight: pick(layer.weight), scores, mask: selectMask(scores, kept, layer.cols, setup.structure), rows: kept });
    });
    const viaSample = new ProxyAccumulator(['energy-row', 'gini-pruned-scores']);
    ev.pruneSampled(params, 0.25, (layer) => viaSample.add(layer));
    ev.pruneSampled(params, 0.25, () => {}); // the cached sample serves a second call unchanged
    const again = new ProxyAccumulator(['energy-row', 'gini-pruned-scores']);
    ev.pruneSampled(params, 0.25, (layer) => again.add(layer));
    expect(viaSample.values()).toEqual(byHand.values());
    expect(again.values()).toEqual(byHand.values());
    const quarter = phoSearch(setup, space, { proxy: 'energy-row', sign: 1, budget: 1, seed: 0, proxyRows: 0.25 });
    expect(quarter.log[0].measure).toBe('energy-row@rows0.25');
    expect(() => phoSearch(setup, space, { proxy: 'energy-row', sign: 1, budget: 1, seed: 0, proxyRows: 0 })).toThrow(CrepeError);
    expect(() => phoSearch(setup, space, { proxy: 'energy-row', sign: 1, budget: 1, seed: 0, verify: { candidates: 1, windows: [2, 2] } })).toThrow(/increasing window counts/);
  });
});

describe('Fisher proxies on a row sample (stories260K)', () => {
  test("each sampled row carries its own Fisher data: the proxies equal a by-hand computation on the whole layer's data", async () => {
    await initBackend('wasm');
    const model = openModel('stories260K');
    try {
      const calibration = { dataset: 'tinystories', nsamples: 2, seqlen: 64, seed: 0 };
      const structure = { kind: 'nm' as const, n: 2, m: 4 };
      const setup = calibrateOnce(model, crepe, structure, calibration, { statsKind: 'dense', keepInputs: 0, fisherWindows: 1 });
      const ev = setup.evaluator!;
      const params = { alpha: 3, beta: 0.5, gamma: 0.01, kh: 3, kw: 5, a: 0.5 };
      const names = ['fisher', 'fisher-row', 'fisher-output'] as const;
      const viaSample = new ProxyAccumulator([...names]);
      ev.pruneSampled(params, 0.25, (layer) => viaSample.add(layer));
      // independent: the whole layer's Fisher arrays from the pass, restricted to the evenly spaced rows by hand
      const byHand = new ProxyAccumulator([...names]);
      const f = setup.fisher!;
      ev.prune(params, (layer) => {
        const kept = Math.max(1, Math.round(layer.rows * 0.25));
        const rows = Array.from({ length: kept }, (_, i) => Math.floor(((i + 0.5) * layer.rows) / kept));
        const pick = (a: Float32Array, width: number): Float32Array => Float32Array.from(rows.flatMap((r) => Array.from(a.subarray(r * width, (r + 1) * width))));
        const scores = pick(layer.scores, layer.cols);
        const { g, x } = f.kept[layer.block].get(layer.name)!;
        const gs = Float32Array.from({ length: f.keptTokens * kept }, (_, k) => g[Math.floor(k / kept) * layer.rows + rows[k % kept]]);
        byHand.add({
          ...layer,
          weight: pick(layer.weight, layer.cols),
          scores,
          mask: selectMask(scores, kept, layer.cols, structure),
          rows: kept,
          fisher: pick(f.blocks[layer.block].get(layer.name)!, layer.cols),
          outputFisher: pick(f.outputs[layer.block].get(layer.name)!, 1),
          fisherTokens: { g: gs, x, count: f.keptTokens },
        });
      });
      const got = viaSample.values();
      const want = byHand.values();
      for (const n of names) {
        expect(got[n]).toBeGreaterThan(0);
        expect(got[n]).toBeCloseTo(want[n], 10);
      }
    } finally {
      model.source.close();
    }
  });
});

describe('search command input checks (before any work)', () => {
  const args = (over: Partial<SearchArgs>): SearchArgs => ({
    backend: 'wasm',
    json: true,
    model: 'stories260K',
    method: 'crepe',
    param: [],
    bound: [],
    sparsity: 0.5,
    structure: 'unstructured',
    calib: 'tinystories',
    nsamples: 8,
    calibSeed: 0,
    stats: 'dense',
    searchWindows: 2,
    searchSeed: 0,
    search: 'pho',
    fullEval: false,
    ...over,
  });

  test.each([
    [{ search: 'random' }, /unknown search 'random'/],
    [{ proxy: 'gini' }, /unknown proxy 'gini'/],
    [{ budget: 0 }, /--budget must be a positive integer/],
    [{ stats: 'sparse' }, /--stats/],
    [{ method: 'magnitude' }, /no numeric parameters/],
    [{ search: 'hillclimb', proxy: 'recon' }, /only applies to --search pho/],
    [{ searchWindows: 0 }, /--search-windows/],
    [{ searchSample: 'random' }, /--search-sample must be first or spread, got 'random'/],
    [{ search: 'hillclimb', searchWindows: 100000 }, /^--search-windows 100000: tinystories-val has only \d+ windows of 512 tokens for this model$/],
    [{ out: '/nonexistent-dir/x.csv' }, /folder .*does not exist/],
  ] as [Partial<SearchArgs>, RegExp][])('%j', async (over, message) => {
    const p = searchCommand(args(over));
    await expect(p).rejects.toThrow(CrepeError);
    await expect(searchCommand(args(over))).rejects.toThrow(message);
  });

  test('a tiny PHO run writes its evaluation log atomically', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-search-'));
    const out = path.join(dir, 'search-log.csv');
    const write = jest.spyOn(process.stdout, 'write').mockImplementation(() => true);
    try {
      await searchCommand(args({ budget: 3, out }));
      const printed = JSON.parse(String(write.mock.calls[0][0]));
      expect(printed).toMatchObject({ search: 'pho', proxy_evals: 3, ppl_evals: 0, full_eval: null });
    } finally {
      write.mockRestore();
    }
    const lines = fs.readFileSync(out, 'utf8').trim().split('\n');
    expect(lines[0]).toBe('index,kind,measure,a,alpha,beta,gamma,kh,kw,value,objective,best_objective,seconds,elapsed_seconds');
    expect(lines).toHaveLength(4);
    expect(fs.readdirSync(dir)).toEqual(['search-log.csv']);
    fs.rmSync(dir, { recursive: true, force: true });
  });
});

describe('search windows spread over the split', () => {
  test('van der Corput positions: prefixes spread over the whole split, distinct, the same for any larger count', () => {
    expect(spreadWindowIndices(16, 8)).toEqual([0, 8, 4, 12, 2, 10, 6, 14]);
    expect(spreadWindowIndices(100, 6)).toEqual([0, 50, 25, 75, 12, 62]);
    expect(spreadWindowIndices(100, 16).slice(0, 6)).toEqual(spreadWindowIndices(100, 6));
    // finer than the split: collisions move to the next unused window
    const all = spreadWindowIndices(5, 5);
    expect([...all].sort()).toEqual([0, 1, 2, 3, 4]);
    expect(() => spreadWindowIndices(5, 6)).toThrow(/cannot spread 6 windows over 5/);
  });

  test("a 'spread' evaluator measures exactly those windows (stories260K, against a by-hand PPL)", async () => {
    await initBackend('wasm');
    const model = openModel('stories260K');
    try {
      const structure = { kind: 'nm' as const, n: 2, m: 4 };
      const calibration = { dataset: 'tinystories', nsamples: 2, seqlen: 64, seed: 0 };
      const setup = calibrateOnce(model, crepe, structure, calibration, { statsKind: 'dense', keepInputs: 0, windowSample: 'spread' });
      const ev = setup.evaluator!;
      const masks = ev.prune({ alpha: 1, beta: 1, gamma: 0.001, kh: 3, kw: 3, a: 0.5 });
      const all = datasetWindows(model, setup.dataset).windows;
      const picked = spreadWindowIndices(all.length, 3);
      expect(picked[1]).toBe(Math.floor(all.length / 2));
      const runtime = ev.prunedRuntime(masks);
      try {
        const nll = picked.map((i) => windowNll(runtime, all[i]));
        const tokens = picked.reduce((a, i) => a + all[i].length - 1, 0);
        expect(ev.perplexity(masks, setup.dataset, 3)).toBeCloseTo(Math.exp(nll.reduce((a, v) => a + v, 0) / tokens), 10);
        // halving extends a candidate window by window: the NLLs of [1, 3) are those of the 2nd and 3rd spread windows
        expect(ev.windowNlls(runtime, setup.dataset, 1, 3)).toEqual(nll.slice(1));
        // and it differs from the first windows
        expect(ev.perplexity(masks, setup.dataset, 3)).not.toBeCloseTo(new ConfigEvaluator(model, crepe, structure, setup.stats).perplexity(masks, setup.dataset, 3), 3);
      } finally {
        runtime.dispose();
      }
    } finally {
      model.source.close();
    }
  });
});
