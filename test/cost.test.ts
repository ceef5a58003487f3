/** The cost model (lib/plan/cost.ts) against FLOP counts and extrapolations worked out by hand. */
import { LlamaConfig } from '../lib/model/types';
import { blockForwardFlops, gpuSeconds, headFlops, projectCosts } from '../lib/plan/cost';

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

test('projection: forwards scale by FLOPs, scoring does not, 32 blocks + one head', () => {
  const measured = {
    calibrationSeconds: 10, scoringSeconds: 3, evalSeconds: 4, evalHeadSeconds: 1,
    nsamples: 2, calibSeqlen: 128, calibForwards: 2, evalWindows: 2, evalSeqlen: 128,
  };
  const target = { config: LLAMA2_7B, nsamples: 128, calibSeqlen: 2048, evalWindows: 166, evalSeqlen: 2048 };
  const p = projectCosts(measured, target);
  const perWindow = (T: number) => 2 * T * LINEAR_PARAMS + 4 * T * T * 4096;
  const calibScale = (128 * perWindow(2048)) / (2 * perWindow(128));
  const evalScale = (166 * perWindow(2048)) / (2 * perWindow(128));
  expect(p.calibrationSecondsPerBlock).toBeCloseTo(10 * calibScale, 6);
  expect(p.scoringSecondsPerBlock).toBe(3);
  expect(p.evalSecondsPerBlock).toBeCloseTo(4 * evalScale, 6);
  expect(p.evalHeadSeconds).toBeCloseTo(1 * (166 * 2048) / (2 * 128), 6);
  expect(p.pruneSeconds).toBeCloseTo(32 * (10 * calibScale + 3), 4);
  expect(p.totalSeconds).toBeCloseTo(p.pruneSeconds + 32 * 4 * evalScale + (166 * 2048) / 256, 4);
  expect(p.flops.calibration).toBe(32 * 2 * 128 * perWindow(2048));
  expect(gpuSeconds(p.flops.calibration, 1e14)).toBeCloseTo((32 * 2 * 128 * perWindow(2048)) / 1e14, 9);
});
