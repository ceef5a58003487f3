/**
 * Search proxies on a tiny synthetic layer whose values can be checked by hand.
 *
 * W = [[1, -2, 3, -4], [0.5, 1, -1, 2]], per-channel sum of squares s = [1, 4, 1, 0.25]
 * (so ||X_j|| = 1, 2, 1, 0.5), mask keeps [[0, 0, 1, 1], [1, 0, 1, 0]] (1 = keep).
 * Energies W_ij^2 s_j: row 0 = 1, 16, 9, 4 (sum 30), row 1 = 0.25, 4, 1, 1 (sum 6.25).
 * Pruned energy: row 0 = 1 + 16 = 17, row 1 = 4 + 1 = 5.
 */
import { initBackend } from '../lib/backend';
import { CrepeError } from '../lib/errors';
import { InputStats, emptyStats } from '../lib/prune/stats';
import { gini } from '../lib/search/rank';
import {
  LayerSample,
  ProxyAccumulator,
  giniNonNegative,
  giniPrunedScores,
  giniReference,
  parseProxy,
  prunedEnergyShare,
  prunedEnergyShareByRow,
  reconstructionErrors,
} from '../lib/search/proxies';

beforeAll(async () => {
  await initBackend('wasm');
});

const WEIGHT = Float32Array.from([1, -2, 3, -4, 0.5, 1, -1, 2]);
const MASK = Uint8Array.from([0, 0, 1, 1, 1, 0, 1, 0]);
const SCORES = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);

function statsWith(sumSq: number[], inputs?: number[][][]): InputStats {
  const s = emptyStats(sumSq.length, { keepInputs: inputs ? inputs.length : 0 });
  s.sumSq.set(sumSq);
  s.tokens = 1;
  s.samples = 1;
  if (inputs) s.inputs = inputs.map((rows) => Float32Array.from(rows.flat()));
  return s;
}

function layer(stats: InputStats, overrides: Partial<LayerSample> = {}): LayerSample {
  return { weight: WEIGHT, scores: SCORES, mask: MASK, stats, rows: 2, cols: 4, ...overrides };
}

describe('per-layer proxies', () => {
  const stats = statsWith([1, 4, 1, 0.25]);

  test('gini of the pruned scores', () => {
    // pruned scores 1, 2, 6, 8: sum 17, sum (2i - n - 1) x_(i) = -3 - 2 + 6 + 24 = 25 -> 25 / (4 * 17)
    expect(giniPrunedScores(layer(stats))).toBeCloseTo(25 / 68, 12);
    // scale invariant: dividing by the layer's mean score changes nothing
    expect(giniPrunedScores(layer(stats, { scores: SCORES.map((v) => v / 4.5) }))).toBeCloseTo(25 / 68, 6);
    expect(giniPrunedScores(layer(stats, { mask: new Uint8Array(8).fill(1) }))).toBeNaN();
  });

  test('gini of the reference importance |W| ||X_j||', () => {
    // |W| ||X||: row 0 = 1, 4, 3, 2; row 1 = 0.5, 2, 1, 1; pruned 1, 4, 2, 1 -> sorted 1, 1, 2, 4
    // sum 8, weighted -3 - 1 + 2 + 12 = 10 -> 10 / 32; independent of the scores
    expect(giniReference(layer(stats))).toBeCloseTo(10 / 32, 12);
    expect(giniReference(layer(stats, { scores: SCORES.map((v) => -v) }))).toBeCloseTo(10 / 32, 12);
  });

  test('pruned energy share, whole layer and per row', () => {
    expect(prunedEnergyShare(layer(stats))).toBeCloseTo(22 / 36.25, 12);
    expect(prunedEnergyShareByRow(layer(stats))).toBeCloseTo((17 / 30 + 5 / 6.25) / 2, 12);
    expect(prunedEnergyShare(layer(stats, { mask: new Uint8Array(8).fill(1) }))).toBe(0);
  });

  test('reconstruction error equals the energy share for uncorrelated inputs', () => {
    // X = diag(1, 2, 1, 0.5): G = X^T X = diag(s), so ||D X^T||^2 = sum of pruned energies
    const diag = statsWith([1, 4, 1, 0.25], [[[1, 0, 0, 0], [0, 2, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0.5]]]);
    const r = reconstructionErrors(layer(diag));
    expect(r.total).toBeCloseTo(22 / 36.25, 5);
    expect(r.byRow).toBeCloseTo((17 / 30 + 5 / 6.25) / 2, 5);
  });

  test('reconstruction error sees cancellation between correlated channels', () => {
    // one token x = [1, 1, 0, 0], split over two kept windows to check the sum over windows:
    // row 0: dropped [1, -2] -> (1 - 2)^2 = 1, full (1 - 2 + 0 + 0)^2 = 1
    // row 1: dropped [0, 1, 0, 2] -> 1, full (0.5 + 1)^2 = 2.25
    const half = Math.SQRT1_2;
    const s = statsWith([1, 1, 0, 0], [[[half, half, 0, 0]], [[half, half, 0, 0]]]);
    const r = reconstructionErrors(layer(s));
    expect(r.total).toBeCloseTo(2 / 3.25, 5);
    expect(r.byRow).toBeCloseTo((1 + 1 / 2.25) / 2, 5);
  });

  test('recon without kept inputs is a CrepeError', () => {
    expect(() => reconstructionErrors(layer(statsWith([1, 1, 1, 1])))).toThrow(CrepeError);
  });
});

describe('giniNonNegative (radix sort)', () => {
  test('agrees with rank.ts gini, ties, -0 and constants included', () => {
    let seed = 1;
    const next = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
    const values = Float32Array.from({ length: 5000 }, (_, i) => (i % 7 === 0 ? 0 : i % 11 === 0 ? -0 : Math.exp(10 * next() - 5)));
    values[3] = values[4]; // a tie
    expect(giniNonNegative(values)).toBeCloseTo(gini(values), 9);
    expect(giniNonNegative(Float32Array.from([2, 2, 2]))).toBe(0);
    expect(giniNonNegative(Float32Array.from([0, 0, 0, 1]))).toBeCloseTo(0.75, 12);
    expect(() => giniNonNegative(Float32Array.from([1, -1]))).toThrow(CrepeError);
  });
});

describe('ProxyAccumulator', () => {
  test('averages layers with equal weight; gini-pooled divides each layer by its mean score', () => {
    const stats = statsWith([1, 4, 1, 0.25]);
    const acc = new ProxyAccumulator(['energy', 'gini-pruned-scores', 'gini-pooled']);
    acc.add(layer(stats));
    // the second layer prunes everything in row 0 only: energy share 30 / 36.25
    acc.add(layer(stats, { mask: Uint8Array.from([0, 0, 0, 0, 1, 1, 1, 1]), scores: SCORES.map((v) => v * 10) }));
    const v = acc.values();
    expect(v.energy).toBeCloseTo((22 / 36.25 + 30 / 36.25) / 2, 12);
    // per layer: 25/68 and gini(1, 2, 3, 4) = (-3 - 2 + 3 + 12) / (4 * 10) = 0.25
    expect(v['gini-pruned-scores']).toBeCloseTo((25 / 68 + 0.25) / 2, 12);
    // pooled: both layers have mean 4.5 after normalization -> (1, 2, 6, 8, 1, 2, 3, 4) / 4.5
    const pooled = [1, 1, 2, 2, 3, 4, 6, 8];
    const n = pooled.length;
    const weighted = pooled.reduce((a, x, i) => a + (2 * (i + 1) - n - 1) * x, 0);
    expect(v['gini-pooled']).toBeCloseTo(weighted / (n * pooled.reduce((a, x) => a + x, 0)), 6);
    expect(Object.keys(v).sort()).toEqual(['energy', 'gini-pooled', 'gini-pruned-scores']);
  });

  test('unknown proxy names are CrepeErrors', () => {
    expect(parseProxy('recon')).toBe('recon');
    expect(() => parseProxy('gini')).toThrow(CrepeError);
    expect(() => parseProxy('gini')).toThrow(/unknown proxy 'gini'/);
  });
});
