/**
 * The search evaluator (lib/search/evaluator.ts) stands in for the pipeline during searches:
 * a strategy's prepared host scorer equals its tfjs `score` (float32 rounding apart), and a
 * configuration evaluated from the cached layers gives the pipeline's masks, proxies and PPL.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend';
import { openModel } from '../lib/model/resolve';
import { LayerContext, Params, getStrategy, listStrategies } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { emptyStats } from '../lib/prune/stats';
import { calibrateOnce, evaluateConfiguration } from '../lib/search/objective';

beforeAll(async () => {
  await initBackend('wasm');
});

function syntheticContext(rows: number, cols: number, seed: number): LayerContext {
  let s = seed;
  const next = (): number => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  // a few exact zeros and a zero row: the TINY floors must behave the same on both paths
  const data = Float32Array.from({ length: rows * cols }, (_, k) => (k % 13 === 0 || k < cols ? 0 : (next() * 2 - 1) * 10 ** (2 * next() - 1)));
  const stats = emptyStats(cols);
  for (let j = 0; j < cols; j++) stats.sumSq[j] = j === 2 ? 0 : next() * 100;
  stats.samples = 4;
  stats.tokens = 64;
  return { weight: tf.tensor2d(data, [rows, cols]), weightData: data, shape: [rows, cols], stats, name: 'gate', block: 0, kind: 'mlp', key: 'blocks.0.mlp.gate' };
}

const CONFIGS: Params[] = [
  { alpha: 1, beta: 1, gamma: 0, kh: 3, kw: 3, a: 0.5 },
  { alpha: 0.01, beta: 300, gamma: 0.2, kh: 5, kw: 1, a: 0.5 },
  { alpha: 750, beta: 0.001, gamma: 7, kh: 1, kw: 9, a: 0 },
  { alpha: 2, beta: 0.5, gamma: 0.03, kh: 7, kw: 7, a: 1.5 },
  { alpha: 2, beta: 0.5, gamma: 0.03, kh: 5, kw: 1, a: 0.5 }, // a kernel seen before: served from the cache
];

describe('Strategy.prepare equals Strategy.score', () => {
  const withPrepare = listStrategies().filter((n) => getStrategy(n).prepare);
  test('CRePE has a prepared scorer', () => expect(withPrepare).toContain('crepe'));
  for (const name of withPrepare) {
    test(`${name}: host scores within float32 rounding of the tfjs scores`, () => {
      const strategy = getStrategy(name);
      for (const [rows, cols, seed] of [[12, 20, 1], [33, 7, 2]]) {
        const ctx = syntheticContext(rows, cols, seed);
        const prepared = strategy.prepare!(ctx);
        for (const config of CONFIGS) {
          const params = Object.fromEntries(Object.keys(strategy.params).map((k) => [k, config[k] ?? strategy.params[k].default]));
          const t = strategy.score(ctx, params);
          const expected = t.dataSync() as Float32Array;
          t.dispose();
          const got = prepared(params);
          let worst = 0;
          for (let k = 0; k < got.length; k++) worst = Math.max(worst, Math.abs(got[k] - expected[k]) / Math.max(Math.abs(expected[k]), 1e-30));
          expect(worst).toBeLessThan(2e-5);
          // a row subset (first, interior and last rows: kernel windows cut at both edges) is those rows of the whole score
          const only = Int32Array.from([0, 2, Math.floor(rows / 2), rows - 1]);
          const part = prepared(params, only);
          expect(part).toHaveLength(only.length * cols);
          only.forEach((r, i) => expect(Array.from(part.subarray(i * cols, (i + 1) * cols))).toEqual(Array.from(got.subarray(r * cols, (r + 1) * cols))));
        }
        ctx.weight.dispose();
      }
    });
  }
});

describe('evaluating configurations from the cached layers', () => {
  test('the same proxies and search-subset PPL as the pipeline with the same statistics (stories260K, 50% and 2:4)', () => {
    const model = openModel('stories260K');
    try {
      const strategy = getStrategy('crepe');
      const calibration = { dataset: 'tinystories', nsamples: 4, seqlen: 128, seed: 0 };
      const u50 = { kind: 'unstructured' as const, group: 'matrix' as const, sparsity: 0.5 };
      const setup = calibrateOnce(model, strategy, u50, calibration, { statsKind: 'dense', keepInputs: 0 });
      expect(setup.evaluator).toBeDefined();
      for (const structure of [u50, { kind: 'nm' as const, n: 2, m: 4 }]) {
        const fast = { ...setup, structure, evaluator: setup.evaluator!.withStructure(structure) };
        const slow = { ...setup, structure, evaluator: undefined };
        for (const params of CONFIGS.slice(0, 3)) {
          const a = evaluateConfiguration(fast, params, { proxies: ['energy', 'energy-row', 'gini-pruned-scores'], windows: 2 });
          const b = evaluateConfiguration(slow, params, { proxies: ['energy', 'energy-row', 'gini-pruned-scores'], windows: 2 });
          for (const p of ['energy', 'energy-row', 'gini-pruned-scores']) expect(a.proxies[p]).toBeCloseTo(b.proxies[p]!, 5);
          expect(a.ppl! / b.ppl! - 1).toBeLessThan(1e-4);
          expect(b.ppl! / a.ppl! - 1).toBeLessThan(1e-4);
        }
      }
    } finally {
      model.source.close();
    }
  });
});
