/**
 * The cost model (lib/plan/cost.ts): FLOP counts and a projection worked out by hand, the
 * window-cost fit against polynomials with known coefficients, and the scale bench's check that
 * peak RSS does not grow with the block count (it must fail with a single block count).
 */
import { LlamaConfig } from '../lib/model/types';
import { blockForwardFlops, fitWindowCost, gpuSeconds, headFlops, polyFit, projectCosts, windowSeconds } from '../lib/plan/cost';
import { rssGrowthCheck } from '../scripts/bench/scale';

const LLAMA2_7B: LlamaConfig = {
  architecture: 'llama', dim: 4096, hiddenDim: 11008, nLayers: 32, nHeads: 32, nKvHeads: 32, headDim: 128,
  vocabSize: 32000, maxSeqLen: 4096, normEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: false,
};
const LINEAR_PARAMS = 4 * 4096 * 4096 + 3 * 4096 * 11008; // 202,375,168

test('FLOPs of a 7B block forward and of the head', () => {
  expect(LINEAR_PARAMS).toBe(202_375_168);
  // one 2048-token window: 2 x 2048 x 202,375,168 + 4 x 2048^2 x 4096
  expect(blockForwardFlops(LLAMA2_7B, 1, 2048)).toBe(828_928_688_128 + 68_719_476_736);
  expect(blockForwardFlops(LLAMA2_7B, 3, 128)).toBe(3 * (2 * 128 * LINEAR_PARAMS + 4 * 128 * 128 * 4096));
  expect(headFlops(LLAMA2_7B, 2, 100)).toBe(2 * 2 * 100 * 4096 * 32000);
});

test('polyFit recovers known polynomials; fitWindowCost drops a negative term and refits', () => {
  const xs = [128, 256, 512, 1024];
  const exact = polyFit(xs, xs.map((x) => 0.4 + 0.02 * x + 3e-6 * x * x), 2);
  expect(exact[0]).toBeCloseTo(0.4, 9);
  expect(exact[1]).toBeCloseTo(0.02, 12);
  expect(exact[2]).toBeCloseTo(3e-6, 15);
  // least squares through noisy points: the residuals are orthogonal to 1 and x
  const ys = [2.1, 4.9, 10.2, 19.8];
  const [a, b] = polyFit(xs, ys, 1);
  const r = xs.map((x, k) => ys[k] - a - b * x);
  expect(Math.abs(r.reduce((s, v) => s + v, 0))).toBeLessThan(1e-9);
  expect(Math.abs(r.reduce((s, v, k) => s + v * xs[k], 0))).toBeLessThan(1e-6);
  // a concave set of timings (noise) would give c < 0: the T^2 term is dropped
  const concave = fitWindowCost(xs.map((x) => ({ tokens: x, seconds: 0.5 + 0.02 * x - 2e-6 * x * x })));
  expect(concave.perTokenSq).toBe(0);
  expect(concave.perToken).toBeGreaterThan(0);
  const quad = fitWindowCost(xs.map((x) => ({ tokens: x, seconds: 0.5 + 0.02 * x + 2e-6 * x * x })));
  expect(windowSeconds(quad, 2048)).toBeCloseTo(0.5 + 0.02 * 2048 + 2e-6 * 2048 * 2048, 6);
  expect(() => polyFit([1, 2], [1, 2], 2)).toThrow(/at least 3 points/);
});

test('projection: fixed per-block costs stay, only the window forwards are extrapolated', () => {
  const block = { perWindow: 0.2, perToken: 0.02, perTokenSq: 1e-6, points: [] };
  const head = { perWindow: 0.1, perToken: 0.015, perTokenSq: 0, points: [] };
  const w = (T: number) => 0.2 + 0.02 * T + 1e-6 * T * T;
  const h = (T: number) => 0.1 + 0.015 * T;
  // 4 blocks, 2 samples, --propagate pruned: 2 x (2 x 4 - 1) / 4 = 3.5 window forwards per block
  const measured = {
    readSeconds: 1.5,
    calibrationSeconds: 6 + 3.5 * w(128),
    scoringSeconds: 5,
    evalSeconds: 2.5 + 2 * w(128),
    evalHeadSeconds: 4 + 2 * h(128),
    nsamples: 2, calibSeqlen: 128, calibForwards: 2, calibWindowForwards: 3.5, evalWindows: 2, evalSeqlen: 128,
  };
  const target = { config: LLAMA2_7B, nsamples: 128, calibSeqlen: 2048, evalWindows: 166, evalSeqlen: 2048 };
  const p = projectCosts(measured, block, head, target);
  expect(p.fixed.read).toBe(1.5);
  expect(p.fixed.calibration).toBeCloseTo(6, 9);
  expect(p.fixed.scoring).toBe(5);
  expect(p.fixed.eval).toBeCloseTo(2.5, 9);
  expect(p.fixed.head).toBeCloseTo(4, 9);
  const forwards = 128 * (2 - 1 / 32);
  expect(p.calibrationSecondsPerBlock).toBeCloseTo(6 + forwards * w(2048), 6);
  expect(p.evalSecondsPerBlock).toBeCloseTo(2.5 + 166 * w(2048), 6);
  expect(p.evalHeadSeconds).toBeCloseTo(4 + 166 * h(2048), 6);
  expect(p.pruneSeconds).toBeCloseTo(32 * (1.5 + 6 + forwards * w(2048) + 5), 4);
  expect(p.totalSeconds).toBeCloseTo(p.pruneSeconds + 32 * (2.5 + 166 * w(2048)) + 4 + 166 * h(2048), 4);
  // the old FLOP-ratio rule would have scaled the whole measured calibration time (fixed part included)
  expect(p.calibrationSecondsPerBlock).toBeLessThan(measured.calibrationSeconds * (forwards * blockForwardFlops(LLAMA2_7B, 1, 2048)) / (3.5 * blockForwardFlops(LLAMA2_7B, 1, 128)));
  const perWindow = (T: number) => 2 * T * LINEAR_PARAMS + 4 * T * T * 4096;
  expect(p.flops.calibration).toBeCloseTo(32 * forwards * perWindow(2048), -3);
  expect(gpuSeconds(p.flops.calibration, 1e14)).toBeCloseTo((32 * forwards * perWindow(2048)) / 1e14, 6);
  // a measured stage faster than its fitted forwards: the fixed part is 0, never negative
  expect(projectCosts({ ...measured, scoringSeconds: 0, calibrationSeconds: 1 }, block, head, target).fixed.calibration).toBe(0);
});

test('the scale bench: peak RSS growth needs two block counts per method, and fails on growth', () => {
  const G = 2 ** 30;
  const one = rssGrowthCheck([{ method: 'wanda', blocks: 4, maxRss: 4 * G }]);
  expect(one.pass).toBe(false);
  expect(one.detail).toMatch(/wanda: only 4 blocks measured, two block counts needed/);
  const two = rssGrowthCheck([
    { method: 'wanda', blocks: 4, maxRss: 4 * G },
    { method: 'wanda', blocks: 8, maxRss: 4.1 * G },
    { method: 'crepe', blocks: 4, maxRss: 4.2 * G },
    { method: 'crepe', blocks: 8, maxRss: 4.2 * G },
  ]);
  expect(two.pass).toBe(true);
  expect(two.detail).toMatch(/wanda: 4 vs 8 blocks, 4\.00 vs 4\.10 GiB/);
  // crepe measured on one count only: the check cannot pass
  expect(rssGrowthCheck([{ method: 'wanda', blocks: 4, maxRss: 4 * G }, { method: 'wanda', blocks: 8, maxRss: 4 * G }, { method: 'crepe', blocks: 8, maxRss: 4 * G }]).pass).toBe(false);
  expect(rssGrowthCheck([{ method: 'wanda', blocks: 4, maxRss: 4 * G }, { method: 'wanda', blocks: 8, maxRss: 5 * G }]).pass).toBe(false);
  expect(rssGrowthCheck([]).pass).toBe(false);
});
