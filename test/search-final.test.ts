/**
 * What a search's final choice measures (lib/search/final.ts): the 'sequential' measurement is
 * the standard pipeline's pruning and PPL of the same configuration on the same windows; the
 * 'pruned' one-shot equals it at the parameters its statistics were collected with; PHO's last
 * rung and hill climbing's final choice pick the lowest of those measurements; halving's
 * afresh-measured last rung on a synthetic table; config checks.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../lib/backend';
import { evaluateSource } from '../lib/eval/evaluate';
import { parseSearchCompareConfig } from '../lib/experiments/search-config';
import { openModel } from '../lib/model/resolve';
import { pruneModel } from '../lib/prune/pipeline';
import { Params, getStrategy, resolveParams } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { checkFinalMeasure, finalPerplexity, withPrunedEvaluator } from '../lib/search/final';
import { successiveHalving } from '../lib/search/halving';
import { bestDistinct, hillClimbSearch } from '../lib/search/hillclimb';
import { EvalLog, SearchSetup, calibrateOnce, fullEvaluation } from '../lib/search/objective';
import { phoSearch } from '../lib/search/pho';
import { buildSpace } from '../lib/search/space';
import { CrepeError } from '../lib/errors';

const crepe = getStrategy('crepe');

describe('halving with a last rung measured afresh (synthetic)', () => {
  test('survivors are re-measured from window 0 by the last rung; the winner is the lowest there', () => {
    // rung 0 (windows [0, 2)) ranks 0 < 1 < 2 < 3; the last rung's measurement ranks 1 before 0
    const early = [1, 5, 6, 7];
    const late = [3, 2, 1, 1];
    const calls: [number, number, number, number][] = [];
    const r = successiveHalving([0, 1, 2, 3], { windows: [2, 4], eta: 2, remeasureLast: true }, (c, _i, from, to, rung) => {
      calls.push([c, from, to, rung]);
      return Array(to - from).fill(rung === 0 ? early[c] : late[c]);
    });
    // 4 x 2 windows, then ceil(4 / 2) = 2 survivors (0 and 1) x all 4 windows afresh
    expect(calls).toEqual([[0, 0, 2, 0], [1, 0, 2, 0], [2, 0, 2, 0], [3, 0, 2, 0], [0, 0, 4, 1], [1, 0, 4, 1]]);
    expect(r.windowEvals).toBe(4 * 2 + 2 * 4);
    expect(r.best.candidate).toBe(1);
    expect(r.best.lossSum).toBe(4 * 2);
    expect(r.best.windows).toBe(4);
    // without it the last rung extends the sums: candidate 0 wins (2x1 + 2x3 = 8 < 2x5 + 2x2 = 14)
    const extended = successiveHalving([0, 1, 2, 3], { windows: [2, 4], eta: 2 }, (c, _i, from, to, rung) => Array(to - from).fill(rung === 0 ? early[c] : late[c]));
    expect(extended.best.candidate).toBe(0);
    expect(extended.best.lossSum).toBe(2 * 1 + 2 * 3);
    expect(extended.windowEvals).toBe(4 * 2 + 2 * 2);
  });
});

describe('final measurements on stories260K (2:4, 4 calibration windows)', () => {
  let setup: SearchSetup;
  const space = buildSpace(crepe);
  const structure = { kind: 'nm' as const, n: 2, m: 4, group: 'row' as const };
  const calibration = { dataset: 'tinystories', nsamples: 4, seqlen: 512, seed: 0 };
  const params: Params = { alpha: 10, beta: 0.1, gamma: 0.01, kh: 1, kw: 5, a: 0.5 };
  beforeAll(async () => {
    await initBackend('wasm');
    const model = openModel('stories260K');
    setup = calibrateOnce(model, crepe, structure, calibration, { statsKind: 'dense', keepInputs: 0 });
  });
  afterAll(() => setup?.model.source.close());

  /** Independent: the standard pipeline (as crepe prune) and its PPL on the first `w` validation windows. */
  const sequential = (p: Params, w: number, nsamples = calibration.nsamples): number =>
    fullEvaluation(setup.model, 'crepe', p, structure, { ...calibration, nsamples }, setup.dataset, w).ppl;

  test("'sequential' = a fresh sequential prune and PPL of the same configuration on the same windows; fewer calibration windows differ", () => {
    expect(finalPerplexity(setup, params, { measure: 'sequential' }, 3)).toBeCloseTo(sequential(params, 3), 9);
    const two = finalPerplexity(setup, params, { measure: 'sequential', calibrationWindows: 2 }, 3);
    expect(two).toBeCloseTo(sequential(params, 3, 2), 9);
    expect(two).not.toBeCloseTo(sequential(params, 3), 6);
    // the one-shot measurement from dense statistics is another number
    const ev = setup.evaluator!;
    expect(finalPerplexity(setup, params, { measure: 'search' }, 3)).toBeCloseTo(ev.perplexity(ev.prune(params), setup.dataset, 3), 9);
    expect(finalPerplexity(setup, params, { measure: 'search' }, 3)).not.toBeCloseTo(sequential(params, 3), 4);
  });

  test("'pruned' one-shot equals the sequential pipeline at the default parameters its statistics come from, not elsewhere", () => {
    expect(() => checkFinalMeasure(setup, { measure: 'pruned' })).toThrow(CrepeError);
    const withPruned = withPrunedEvaluator(setup);
    expect(withPruned.seconds).toBeGreaterThan(0);
    const s = withPruned.setup;
    const defaults = resolveParams(crepe);
    // the masks may differ only where float32 scores tie: the PPLs agree to a few digits
    expect(finalPerplexity(s, defaults, { measure: 'pruned' }, 2) / sequential(defaults, 2)).toBeCloseTo(1, 3);
    expect(Math.abs(finalPerplexity(s, params, { measure: 'pruned' }, 2) / sequential(params, 2) - 1)).toBeGreaterThan(1e-3);
  });

  test("PHO's last rung by 'sequential': every candidate on one rung, the winner is the lowest sequential PPL", () => {
    const r = phoSearch(setup, space, { proxy: 'energy-row', sign: 1, portfolio: [{ proxy: 'energy', sign: 1 }], budget: 3, seed: 1, proxyRows: 0.25, verify: { candidates: 1, windows: [2], start: true, final: 'sequential' } });
    const finals = r.log.filter((e) => e.kind === 'ppl');
    expect(finals.every((e) => e.measure === 'sequential@2')).toBe(true);
    expect(finals.length).toBeGreaterThanOrEqual(2);
    for (const e of finals) expect(e.value).toBeCloseTo(sequential(e.params, 2), 9);
    expect(r.bestValue).toBe(Math.min(...finals.map((e) => e.value)));
    expect(r.best).toEqual(finals.find((e) => e.value === r.bestValue)!.params);
    expect(r.windowEvals).toBe(2 * finals.length);
    expect(r.stopReason).toMatch(/last rung: sequential@2/);
  });

  test("PHO with two rungs: one-shot first, the survivors measured afresh by 'sequential' on all of the last rung's windows", () => {
    const r = phoSearch(setup, space, { proxy: 'energy-row', sign: 1, portfolio: [{ proxy: 'energy', sign: 1 }], budget: 3, seed: 1, proxyRows: 0.25, verify: { candidates: 1, windows: [1, 2], eta: 2, start: true, final: 'sequential' } });
    const rung0 = r.log.filter((e) => e.measure === 'ppl@1');
    const last = r.log.filter((e) => e.measure === 'sequential@2');
    expect(rung0.length).toBeGreaterThanOrEqual(2);
    expect(last).toHaveLength(Math.ceil(rung0.length / 2));
    for (const e of last) expect(e.value).toBeCloseTo(sequential(e.params, 2), 9);
    expect(r.bestValue).toBe(Math.min(...last.map((e) => e.value)));
    expect(r.windowEvals).toBe(rung0.length + 2 * last.length);
  });

  test("hill climbing's final choice: its k best distinct configurations re-measured, the lowest wins", () => {
    const plain = hillClimbSearch(setup, space, { budget: 5, windows: 1, seed: 4 });
    const r = hillClimbSearch(setup, space, { budget: 5, windows: 1, seed: 4, final: { measure: 'sequential', candidates: 3, windows: 2 } });
    // the same climb
    expect(r.log.slice(0, 5).map((e) => e.params)).toEqual(plain.log.map((e) => e.params));
    const finalists = bestDistinct(plain.log, 'ppl@1', 3);
    expect(finalists[0].params).toEqual(plain.best);
    expect(finalists.map((e) => e.value)).toEqual([...plain.log.map((e) => e.value)].sort((a, b) => a - b).slice(0, 3));
    const seq = finalists.map((e) => sequential(e.params, 2));
    const i = seq.indexOf(Math.min(...seq));
    expect(r.best).toEqual(finalists[i].params);
    expect(r.bestValue).toBeCloseTo(seq[i], 9);
    expect(r.pplEvals).toBe(5 + 3);
    expect(r.windowEvals).toBe(5 * 1 + 3 * 2);
    expect(() => hillClimbSearch(setup, space, { budget: 2, windows: 1, seed: 4, final: { measure: 'sequential', candidates: 0, windows: 2 } })).toThrow(CrepeError);
    expect(() => hillClimbSearch(setup, space, { budget: 2, windows: 1, seed: 4, final: { measure: 'search', calibrationWindows: 2, candidates: 1, windows: 2 } })).toThrow(CrepeError);
  });
});

test('bestDistinct: lowest objectives first, one entry per configuration, NaN last, ties in evaluation order', () => {
  const log = new EvalLog();
  const p = { a: 0.5 };
  const add = (x: number, v: number, measure = 'ppl@4'): void => void log.add('ppl', p, [x], v, v, 0, measure);
  add(0, 5);
  add(1, NaN);
  add(2, 3);
  add(0, 5);
  add(3, 3);
  add(4, 1, 'sequential@4');
  add(5, 4);
  expect(bestDistinct(log.entries, 'ppl@4', 3).map((e) => e.x[0])).toEqual([2, 3, 5]);
  expect(bestDistinct(log.entries, 'ppl@4', 10).map((e) => e.x[0])).toEqual([2, 3, 5, 0, 1]);
});

describe('config: final measurements', () => {
  const base = {
    models: ['stories260K'],
    structures: [{ name: 'u50', structure: 'unstructured' }],
    calibration: { nsamples: 8 },
    hillclimb: { searchWindows: 8 },
    pho: [{ name: 'v', proxies: ['energy'], verify: { candidates: 1, windows: [2, 6], final: 'sequential', finalCalibrationWindows: 4 } }],
  };
  const file = path.join(os.tmpdir(), 'search-final-config.json');
  const parse = (over: object): ReturnType<typeof parseSearchCompareConfig> => parseSearchCompareConfig({ ...base, ...over }, file);

  test('accepted settings reach the variant and hill climbing; without hillclimb.final the object has no final key', () => {
    const c = parse({ hillclimb: { searchWindows: 8, final: { measure: 'pruned', candidates: 3, windows: 6 } } });
    expect(c.pho[0].verify).toMatchObject({ final: 'sequential', finalCalibrationWindows: 4 });
    expect(c.hillclimb.final).toEqual({ measure: 'pruned', candidates: 3, windows: 6 });
    expect(Object.keys(parse({}).hillclimb).sort()).toEqual(['budget', 'searchWindows']);
  });

  test.each([
    ['an unknown measure', { pho: [{ name: 'v', proxies: ['energy'], verify: { candidates: 1, windows: 2, final: 'oracle' } }] }, /pho\[0\]\.verify\.final/],
    ['calibration windows without sequential', { pho: [{ name: 'v', proxies: ['energy'], verify: { candidates: 1, windows: 2, final: 'pruned', finalCalibrationWindows: 2 } }] }, /finalCalibrationWindows.*sequential/],
    ['more calibration windows than the calibration', { pho: [{ name: 'v', proxies: ['energy'], verify: { candidates: 1, windows: 2, final: 'sequential', finalCalibrationWindows: 9 } }] }, /9 is more than the calibration's 8/],
    ["hill climbing's final windows beyond its search windows", { hillclimb: { searchWindows: 8, final: { measure: 'sequential', candidates: 2, windows: 9 } } }, /hillclimb\.final\.windows.*9 is more/],
  ])('%s is a one-line error naming the field', (_what, over, message) => {
    expect(() => parse(over)).toThrow(CrepeError);
    expect(() => parse(over)).toThrow(message);
  });
  afterAll(() => fs.rmSync(file, { force: true }));
});
