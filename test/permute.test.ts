import { CrepeError } from '../lib/errors';
import { maxWeightAssignment, permuteColumns, permuteForNM } from '../lib/prune/permute';
import { selectMask } from '../lib/prune/select';
import { mulberry32 as rng } from './helpers';


/** Scores like |W| * ||X_j||: positive, with per-column scales spread over two decades. */
function layerLikeScores(rows: number, cols: number, seed: number): Float32Array {
  const next = rng(seed);
  const colScale = Array.from({ length: cols }, () => Math.exp(4 * next()));
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) out[r * cols + c] = next() * colScale[c];
  return out;
}

/** Sum of scores kept by plain N:M (no permutation). */
function plainKeptScore(scores: Float32Array, rows: number, cols: number, n: number, m: number): number {
  const mask = selectMask(scores, rows, cols, { kind: 'nm', n, m });
  let kept = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i]) kept += scores[i];
  return kept;
}

/** Checks every property a result must have; returns the kept score recomputed from the mask. */
function checkResult(
  scores: Float32Array, rows: number, cols: number, n: number, m: number,
  result: ReturnType<typeof permuteForNM>, checkKeptScore = true,
): number {
  const { perm, mask, keptScore } = result;
  // Bijection on 0..cols-1.
  expect(perm.length).toBe(cols);
  expect([...perm].sort((a, b) => a - b)).toEqual(Array.from({ length: cols }, (_, i) => i));
  // N:M in permuted order: every group of m permuted positions keeps exactly n in every row.
  const keptPerGroup = new Set<number>();
  let kept = 0;
  for (let r = 0; r < rows; r++) {
    for (let g = 0; g < cols; g += m) {
      let count = 0;
      for (let q = 0; q < m; q++) count += mask[r * cols + perm[g + q]];
      keptPerGroup.add(count);
    }
    for (let c = 0; c < cols; c++) if (mask[r * cols + c]) kept += scores[r * cols + c];
  }
  expect([...keptPerGroup]).toEqual([n]);
  expect(mask.reduce((a, b) => a + b, 0)).toBe((rows * cols * n) / m);
  if (checkKeptScore) expect(keptScore).toBeCloseTo(kept, 6);
  return kept;
}

test('zig-zag dealing on a hand example', () => {
  // One row, importance = column index + 1: descending order is 7, 6, ..., 0. G = 2 groups.
  const scores = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  const { perm, mask } = permuteForNM(scores, 1, 8, 2, 4, { refine: false });
  // Tier 0 = [7, 6] forward, tier 1 = [5, 4] reversed, tier 2 = [3, 2], tier 3 = [1, 0] reversed.
  expect(Array.from(perm)).toEqual([7, 4, 3, 0, 6, 5, 2, 1]);
  // Group 0 = columns 7, 4, 3, 0 keeps 7 and 4; group 1 = 6, 5, 2, 1 keeps 6 and 5.
  expect(Array.from(mask)).toEqual([0, 0, 0, 0, 1, 1, 1, 1]);
});

test('without refinement the mask is plain N:M on the permuted scores, mapped back', () => {
  const rows = 16;
  const cols = 64;
  const scores = layerLikeScores(rows, cols, 1);
  const { perm, mask } = permuteForNM(scores, rows, cols, 2, 4, { refine: false });
  const permutedMask = selectMask(permuteColumns(scores, rows, cols, perm), rows, cols, { kind: 'nm', n: 2, m: 4 });
  for (let r = 0; r < rows; r++) {
    for (let j = 0; j < cols; j++) expect(mask[r * cols + perm[j]]).toBe(permutedMask[r * cols + j]);
  }
});

test('helps where plain N:M loses: important columns clustered in the same blocks', () => {
  // Columns 0..31 matter (scores in [5, 6)), columns 32..63 hardly (in [0, 1)). Plain 2:4 must
  // drop half of the important columns; dealt into tiers, every group has 2 important ones.
  const rows = 32;
  const cols = 64;
  const next = rng(2);
  const scores = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) scores[r * cols + c] = (c < 32 ? 5 : 0) + next();
  const plain = plainKeptScore(scores, rows, cols, 2, 4);
  const zigZag = checkResult(scores, rows, cols, 2, 4, permuteForNM(scores, rows, cols, 2, 4, { refine: false }));
  const refined = checkResult(scores, rows, cols, 2, 4, permuteForNM(scores, rows, cols, 2, 4, { refine: true }));
  expect(zigZag).toBeGreaterThan(plain * 1.5);
  expect(refined).toBeGreaterThanOrEqual(zigZag - 1e-6);
});

describe('refinement never lowers the kept score', () => {
  for (const [n, m, rows, cols] of [[2, 4, 24, 96], [1, 4, 20, 64], [3, 4, 20, 64], [4, 8, 16, 128], [2, 8, 16, 64]]) {
    test(`${n}:${m} on [${rows}, ${cols}]`, () => {
      let strictlyBetter = 0;
      for (let seed = 10; seed < 14; seed++) {
        const scores = layerLikeScores(rows, cols, seed);
        const zigZag = checkResult(scores, rows, cols, n, m, permuteForNM(scores, rows, cols, n, m, { refine: false }));
        const once = checkResult(scores, rows, cols, n, m, permuteForNM(scores, rows, cols, n, m, { refine: true }));
        const more = checkResult(scores, rows, cols, n, m, permuteForNM(scores, rows, cols, n, m, { refine: true, maxIters: 4 }));
        const chunked = checkResult(scores, rows, cols, n, m, permuteForNM(scores, rows, cols, n, m, { refine: true, maxAssignmentSize: 5 }));
        const tol = 1e-9 * zigZag;
        expect(once).toBeGreaterThanOrEqual(zigZag - tol);
        expect(more).toBeGreaterThanOrEqual(once - tol);
        expect(chunked).toBeGreaterThanOrEqual(zigZag - tol);
        if (once > zigZag + tol) strictlyBetter++;
      }
      expect(strictlyBetter).toBeGreaterThan(0);
    });
  }
});

test('deterministic', () => {
  const scores = layerLikeScores(16, 64, 3);
  const a = permuteForNM(scores, 16, 64, 2, 4, { refine: true, maxIters: 3 });
  const b = permuteForNM(scores.slice(), 16, 64, 2, 4, { refine: true, maxIters: 3 });
  expect(Array.from(a.perm)).toEqual(Array.from(b.perm));
  expect(Array.from(a.mask)).toEqual(Array.from(b.mask));
  expect(a.keptScore).toBe(b.keptScore);
});

test('ties and non-finite scores still give a valid N:M mask', () => {
  const rows = 8;
  const cols = 32;
  const next = rng(4);
  const scores = Float32Array.from({ length: rows * cols }, () => Math.floor(next() * 3));
  scores[5] = NaN;
  scores[40] = -Infinity;
  scores[77] = Infinity;
  for (const refine of [false, true]) {
    const result = permuteForNM(scores, rows, cols, 2, 4, { refine });
    checkResult(scores, rows, cols, 2, 4, result, false);
    expect(result.keptScore).toBe(Infinity); // the sum of the original scores it keeps
    expect(result.mask[5]).toBe(0); // NaN is pruned first...
    expect(result.mask[40]).toBe(0); // ...as is -Infinity...
    expect(result.mask[77]).toBe(1); // ...and +Infinity is kept.
  }
});

test('bad N:M is a user error', () => {
  const scores = new Float32Array(2 * 12);
  expect(() => permuteForNM(scores, 2, 12, 4, 4, { refine: false })).toThrow(CrepeError);
  expect(() => permuteForNM(scores, 2, 12, 2, 8, { refine: false })).toThrow(
    new CrepeError('N:M 2:8 needs the input width 12 to be a multiple of 8'),
  );
});

describe('maxWeightAssignment', () => {
  function permutations(k: number): number[][] {
    if (k === 0) return [[]];
    return permutations(k - 1).flatMap((p) => Array.from({ length: k }, (_, i) => [...p.slice(0, i), k - 1, ...p.slice(i)]));
  }

  test('matches brute force on random and tied matrices', () => {
    const next = rng(5);
    for (let trial = 0; trial < 40; trial++) {
      const size = 1 + (trial % 6);
      const tied = trial % 2 === 1;
      const weight = Float64Array.from({ length: size * size }, () => (tied ? Math.floor(next() * 3) : next() * 10 - 3));
      const assign = maxWeightAssignment(weight, size);
      expect([...assign].sort()).toEqual(Array.from({ length: size }, (_, i) => i));
      const total = (p: ArrayLike<number>) => Array.from(p).reduce((s, c, g) => s + weight[g * size + c], 0);
      const best = Math.max(...permutations(size).map(total));
      expect(total(assign)).toBeCloseTo(best, 9);
    }
  });

  test('rejects non-finite weights', () => {
    expect(() => maxWeightAssignment(Float64Array.from([1, NaN, 0, 1]), 2)).toThrow();
  });
});
