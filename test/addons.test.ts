/**
 * The orthogonal add-ons: OWL allocation, DSnoT re-pruning, SparseGPT, and their CLI wiring
 * (with RIA's channel permutation). Hand-computed cases first, then stories260K end to end.
 */
import { initBackend } from '../lib/backend';
import { CrepeError } from '../lib/errors';
import { openModel } from '../lib/model/resolve';
import { dsnot, dsnotRefiner, expectedRowErrors } from '../lib/prune/addons/dsnot';
import { outlierRatio, owlAllocation, owlKeepCounts, owlSparsities, roundHalfEven } from '../lib/prune/addons/owl';
import { RefineInput } from '../lib/prune/pipeline';
import { Structure, selectMask } from '../lib/prune/select';
import { InputStats, emptyStats } from '../lib/prune/stats';
import { choleskyLower, dampedHessian, inverseCholeskyUpper, sparseGptPrune } from '../lib/prune/strategies/sparsegpt';
import { lines, mulberry32, runCli } from './helpers';

// ---------------------------------------------------------------------------------------------
// OWL

describe('OWL allocation', () => {
  test('outlier ratio: percentage above M x mean', () => {
    // mean 4, M = 2 → cut 8: only the 16 is above.
    expect(outlierRatio([Float32Array.of(1, 1, 1), Float32Array.of(1, 16)], 2)).toBeCloseTo(20, 12);
  });

  test('hand-made ratios: min-max to [0, 2 lambda], centred on 1 - S; outlier-rich blocks pruned less', () => {
    // r = [0, 0.16, 0.08, 0.08], mean 0.08 → density [0.42, 0.58, 0.5, 0.5].
    const s = owlSparsities([1, 3, 2, 2], 0.5, 0.08);
    [0.58, 0.42, 0.5, 0.5].forEach((v, b) => expect(s[b]).toBeCloseTo(v, 12));
    expect(s.reduce((a, b) => a + b, 0) / s.length).toBeCloseTo(0.5, 12);
    // Equal ratios (the reference divides by zero): uniform.
    expect(owlSparsities([2, 2, 2], 0.7, 0.08)).toEqual([0.7, 0.7, 0.7].map((v) => expect.closeTo(v, 12)));
    // A block sparsity <= 0 becomes 0.01 as in the reference; >= 1 is an error.
    expect(owlSparsities([0, 1], 0.05, 0.08)[1]).toBe(0.01);
    expect(() => owlSparsities([0, 1], 0.95, 0.08)).toThrow(CrepeError);
  });

  test('N:M: keep n shifted by the rounded centred ratio (round half to even), within [1, m - 1]', () => {
    expect(owlKeepCounts([1, 3, 2, 2], 2, 4, 2)).toEqual([1, 3, 2, 2]);
    expect(owlKeepCounts([1, 3, 2, 2], 2, 4, 0.08)).toEqual([2, 2, 2, 2]);
    expect(owlKeepCounts([0, 10], 1, 4, 8)).toEqual([1, 4 - 1]); // shifts -4, +4 clamped
    expect([0.5, 1.5, 2.5, -0.5, -1.5, 0.49].map(roundHalfEven)).toEqual([0, 2, 2, 0, -2, 0]);
  });

  test('stories260K: dense-statistics ratios give block sparsities whose mean is S', async () => {
    await initBackend('wasm');
    const model = openModel('stories260K');
    const alloc = owlAllocation(model, { dataset: 'tinystories', nsamples: 8, seqlen: 128, seed: 0 }, { kind: 'unstructured', group: 'row', sparsity: 0.6 });
    model.source.close();
    expect(alloc.outlierRatios).toHaveLength(5);
    expect(alloc.structures).toHaveLength(5);
    const mean = alloc.blockSparsities.reduce((a, b) => a + b, 0) / 5;
    expect(mean).toBeCloseTo(0.6, 12);
    expect(Math.max(...alloc.blockSparsities) - Math.min(...alloc.blockSparsities)).toBeCloseTo(0.16, 12);
    // More outliers → lower sparsity: the two orders are reversed.
    const byRatio = [0, 1, 2, 3, 4].sort((a, b) => alloc.outlierRatios[a] - alloc.outlierRatios[b]);
    for (let k = 1; k < 5; k++) expect(alloc.blockSparsities[byRatio[k]]).toBeLessThanOrEqual(alloc.blockSparsities[byRatio[k - 1]]);
  });
});

// ---------------------------------------------------------------------------------------------
// DSnoT

/** Statistics with per-window sums mu = sum / samples, variance and scaler given per channel. */
function channelStats(mean: number[], variance: number[], tokens: number, samples = 1): InputStats {
  const s = emptyStats(mean.length);
  mean.forEach((m, j) => {
    s.sum[j] = m * tokens;
    s.sumSq[j] = (variance[j] + m * m) * tokens;
  });
  s.tokens = tokens;
  s.samples = samples;
  return s;
}

function refineInput(w: number[], rows: number, mask: number[], stats: InputStats, structure: Structure): RefineInput {
  const weight = Float32Array.from(w);
  return { name: 'q', kind: 'attn', weight, shape: [rows, w.length / rows], stats, scores: weight.map(Math.abs), mask: Uint8Array.from(mask), structure };
}

const UNSTRUCTURED_HALF: Structure = { kind: 'unstructured', group: 'row', sparsity: 0.5 };

function keptPerRow(mask: Uint8Array, rows: number): number[] {
  const cols = mask.length / rows;
  return Array.from({ length: rows }, (_, r) => mask.subarray(r * cols, (r + 1) * cols).reduce((a, b) => a + b, 0));
}

describe('DSnoT', () => {
  // mean 1 over 4 tokens in one window → mu = 4; variance 1.
  const stats = channelStats([1, 1, 1, 1], [1, 1, 1, 1], 4);

  test('hand-checked row: one swap brings the expected error from 6 to 1', () => {
    // W = [3, 1, -0.25, 0.5], pruned {1, 3}: metric W*mu = [12, 4, -1, 2], e = 4 + 2 = 6.
    // e > 0: regrow the highest metric/var among pruned (col 1, 4); prune the lowest-Wanda kept
    // entry with a negative metric (col 2, -1): e = 6 - 1 - 4 = 1. Next, e > 0 again but no
    // negative kept entry is left, so the row stops.
    const layer = refineInput([3, 1, -0.25, 0.5], 1, [1, 0, 1, 0], stats, UNSTRUCTURED_HALF);
    expect(expectedRowErrors(layer, layer.mask)[0]).toBeCloseTo(6, 6);
    const r = dsnot(layer);
    expect(Array.from(r.mask)).toEqual([1, 1, 0, 0]);
    expect(r.stats).toEqual({ swaps: 1, errorBefore: expect.closeTo(6, 6), errorAfter: expect.closeTo(1, 6) });
    expect(dsnot(layer, { sameSign: true }).mask).toEqual(r.mask);
    // Already within the threshold: nothing moves.
    expect(Array.from(dsnot(layer, { threshold: 6.5 }).mask)).toEqual([1, 0, 1, 0]);
  });

  test('the sign check: off by default for unstructured (as the reference), so a swap may overshoot', () => {
    // metric [12, 4, -4, 2], pruned {1, 3}: e = 6. Swap 1 → 6 - 4 - 4 = -2 (sign flips);
    // swap 2 (e < 0: regrow col 3, prune the positive col 0) → -2 + 12 - 2 = 8; then no
    // regrow candidate is left.
    const layer = refineInput([3, 1, -1, 0.5], 1, [1, 0, 1, 0], stats, UNSTRUCTURED_HALF);
    const loose = dsnot(layer);
    expect(Array.from(loose.mask)).toEqual([0, 1, 0, 1]);
    expect(loose.stats.errorAfter).toBeCloseTo(8, 6);
    const strict = dsnot(layer, { sameSign: true });
    expect(Array.from(strict.mask)).toEqual([1, 0, 1, 0]);
    expect(strict.stats.swaps).toBe(0);
  });

  test('random layers: counts per row (and per N:M group) kept, |expected error| reduced, deterministic', () => {
    const rows = 24;
    const cols = 64;
    const next = mulberry32(7);
    const w = Array.from({ length: rows * cols }, () => next() * 2 - 1);
    const mean = Array.from({ length: cols }, () => next() - 0.3);
    const variance = Array.from({ length: cols }, () => 0.1 + next());
    const s = channelStats(mean, variance, 64, 2);
    for (const structure of [UNSTRUCTURED_HALF, { kind: 'nm', n: 2, m: 4 } as Structure]) {
      const scores = Float32Array.from(w, (v, k) => Math.abs(v) * Math.sqrt(variance[k % cols] + mean[k % cols] ** 2));
      const mask = Array.from(selectMask(scores, rows, cols, structure));
      const layer = refineInput(w, rows, mask, s, structure);
      for (const sameSign of [false, true]) {
        const r = dsnot(layer, { sameSign });
        expect(r.stats.swaps).toBeGreaterThan(0);
        expect(keptPerRow(r.mask, rows)).toEqual(keptPerRow(layer.mask, rows));
        if (structure.kind === 'nm') {
          for (let g = 0; g < rows * cols; g += 4) expect(r.mask[g] + r.mask[g + 1] + r.mask[g + 2] + r.mask[g + 3]).toBe(2);
        }
        const after = expectedRowErrors(layer, r.mask).reduce((a, e) => a + Math.abs(e), 0);
        expect(after).toBeCloseTo(r.stats.errorAfter, 6);
        expect(after).toBeLessThan(r.stats.errorBefore);
        expect(dsnot(layer, { sameSign }).mask).toEqual(r.mask);
      }
    }
  });
});

// ---------------------------------------------------------------------------------------------
// SparseGPT

/** Random SPD matrix A = B^T B + n I (float64, row-major). */
function randomSpd(n: number, seed: number): Float64Array {
  const next = mulberry32(seed);
  const b = Float64Array.from({ length: n * n }, () => next() - 0.5);
  const a = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = i === j ? n * 0.1 : 0;
    for (let k = 0; k < n; k++) s += b[k * n + i] * b[k * n + j];
    a[i * n + j] = s;
  }
  return a;
}

function matmul(a: Float64Array, b: Float64Array, n: number, transposeA = false): Float64Array {
  const out = new Float64Array(n * n);
  for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let k = 0; k < n; k++) s += (transposeA ? a[k * n + i] : a[i * n + k]) * b[k * n + j];
    out[i * n + j] = s;
  }
  return out;
}

/** Inputs X [tokens, cols] with correlated channels of different scales, and their statistics. */
function correlatedInputs(tokens: number, cols: number, seed: number): { x: Float64Array; stats: InputStats } {
  const next = mulberry32(seed);
  const scale = Array.from({ length: cols }, () => 0.2 + 3 * next());
  const x = new Float64Array(tokens * cols);
  for (let t = 0; t < tokens; t++) {
    const shared = next() - 0.5;
    for (let j = 0; j < cols; j++) x[t * cols + j] = scale[j] * (next() - 0.5 + 0.8 * shared);
  }
  const stats = emptyStats(cols, { gram: true });
  for (let t = 0; t < tokens; t++) {
    for (let i = 0; i < cols; i++) {
      const xi = x[t * cols + i];
      stats.sum[i] += xi;
      stats.sumSq[i] += xi * xi;
      for (let j = 0; j < cols; j++) stats.gram![i * cols + j] += xi * x[t * cols + j];
    }
  }
  stats.tokens = tokens;
  stats.samples = 4;
  return { x, stats };
}

/** ||X W^T - X W'^T||_F^2. */
function outputError(x: Float64Array, tokens: number, w: ArrayLike<number>, w2: ArrayLike<number>, rows: number, cols: number): number {
  let err = 0;
  for (let t = 0; t < tokens; t++) for (let r = 0; r < rows; r++) {
    let d = 0;
    for (let j = 0; j < cols; j++) d += x[t * cols + j] * (w[r * cols + j] - w2[r * cols + j]);
    err += d * d;
  }
  return err;
}

describe('SparseGPT', () => {
  test('Cholesky: L L^T = A, and U^T U = A^-1 with U upper triangular', () => {
    const n = 23;
    const a = randomSpd(n, 3);
    const l = a.slice();
    choleskyLower(l, n);
    const llt = matmul(l, Float64Array.from({ length: n * n }, (_, k) => l[(k % n) * n + Math.floor(k / n)]), n);
    llt.forEach((v, k) => expect(v).toBeCloseTo(a[k], 9));
    const u = inverseCholeskyUpper(a.slice(), n);
    for (let i = 0; i < n; i++) {
      expect(u[i * n + i]).toBeGreaterThan(0);
      for (let j = 0; j < i; j++) expect(u[i * n + j]).toBe(0);
    }
    const identity = matmul(matmul(u, u, n, true), a, n);
    identity.forEach((v, k) => expect(v).toBeCloseTo(k % (n + 1) === 0 ? 1 : 0, 9));
    expect(() => choleskyLower(Float64Array.of(1, 2, 2, 1), 2)).toThrow(/not positive definite/);
  });

  test('H = 2 X^T X / windows, dead columns set to 1, damped by percdamp * mean(diag)', () => {
    const s = emptyStats(2, { gram: true });
    s.gram!.set([4, 0, 0, 0]);
    s.samples = 2;
    const { h, dead } = dampedHessian(s, 0.5);
    // 2 * 4 / 2 = 4; dead column → 1; damp = 0.5 * (4 + 1) / 2 = 1.25.
    expect(Array.from(h)).toEqual([5.25, 0, 0, 2.25]);
    expect(Array.from(dead)).toEqual([0, 1]);
    expect(() => dampedHessian(emptyStats(2), 0.01)).toThrow(/Gram matrix/);
  });

  const rows = 16;
  const cols = 32;
  const tokens = 256;
  const { x, stats } = correlatedInputs(tokens, cols, 11);
  const next = mulberry32(5);
  const w = Float32Array.from({ length: rows * cols }, () => next() * 2 - 1);

  test('unstructured: exact count per column block, lower reconstruction error than masks without update', () => {
    const r = sparseGptPrune(w, rows, cols, stats, UNSTRUCTURED_HALF, { percdamp: 0.01, blocksize: 8 });
    for (let b = 0; b < cols; b += 8) {
      let kept = 0;
      for (let i = 0; i < rows; i++) for (let c = b; c < b + 8; c++) kept += r.mask[i * cols + c];
      expect(kept).toBe(rows * 4);
    }
    r.mask.forEach((m, k) => m === 0 && expect(Object.is(r.weight[k], 0)).toBe(true));
    const norms = Array.from({ length: cols }, (_, j) => Math.sqrt(stats.sumSq[j]));
    const wandaScores = Float32Array.from(w, (v, k) => Math.abs(v) * norms[k % cols]);
    const wandaMask = selectMask(wandaScores, rows, cols, UNSTRUCTURED_HALF);
    const magnitudeMask = selectMask(w.map(Math.abs), rows, cols, { kind: 'unstructured', group: 'matrix', sparsity: 0.5 });
    const sgpt = outputError(x, tokens, w, r.weight, rows, cols);
    const wanda = outputError(x, tokens, w, w.map((v, k) => v * wandaMask[k]), rows, cols);
    const magnitude = outputError(x, tokens, w, w.map((v, k) => v * magnitudeMask[k]), rows, cols);
    expect(sgpt).toBeLessThan(0.8 * wanda);
    expect(sgpt).toBeLessThan(0.8 * magnitude);
  });

  test('N:M: matches a plain column-by-column OBS sweep, whatever the block size', () => {
    const nm: Structure = { kind: 'nm', n: 2, m: 4 };
    // Plain OBS: every column updates all later columns at once (no lazy blocks).
    const { h } = dampedHessian(stats, 0.01);
    const u = inverseCholeskyUpper(h, cols);
    const ref = Float64Array.from(w);
    const refMask = new Uint8Array(rows * cols).fill(1);
    for (let c = 0; c < cols; c++) {
      for (let i = 0; i < rows; i++) {
        if (c % 4 === 0) {
          const s = [0, 1, 2, 3].map((k) => ref[i * cols + c + k] ** 2 / u[(c + k) * cols + c + k] ** 2);
          const order = [0, 1, 2, 3].sort((a, b) => s[a] - s[b] || a - b);
          refMask[i * cols + c + order[0]] = 0;
          refMask[i * cols + c + order[1]] = 0;
        }
        if (refMask[i * cols + c]) continue;
        const err = ref[i * cols + c] / u[c * cols + c];
        for (let j = c; j < cols; j++) ref[i * cols + j] -= err * u[c * cols + j];
      }
    }
    for (const blocksize of [4, 12, 128]) {
      const r = sparseGptPrune(w, rows, cols, stats, nm, { percdamp: 0.01, blocksize });
      expect(r.mask).toEqual(refMask);
      r.weight.forEach((v, k) => expect(v).toBeCloseTo(refMask[k] ? ref[k] : 0, 4));
    }
  });

  test('dead input channels: their column is zeroed and pruned first', () => {
    const s = correlatedInputs(64, 8, 2).stats;
    for (let j = 0; j < 8; j++) {
      s.gram![3 * 8 + j] = 0;
      s.gram![j * 8 + 3] = 0;
    }
    const r = sparseGptPrune(Float32Array.from({ length: 4 * 8 }, (_, k) => 1 + k), 4, 8, s, { kind: 'unstructured', group: 'matrix', sparsity: 0.25 }, { percdamp: 0.01, blocksize: 128 });
    for (let i = 0; i < 4; i++) expect(r.mask[i * 8 + 3]).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// CLI, end to end on stories260K

const FAST = ['--nsamples', '16', '--calib-seqlen', '128', '--eval', 'tinystories', '--max-windows', '8', '--json'];

describe('prune CLI with add-ons', () => {
  const runs: [string, string[]][] = [
    ['sparsegpt', ['--method', 'sparsegpt']],
    ['wanda + OWL', ['--method', 'wanda', '--allocation', 'owl']],
    ['wanda + DSnoT', ['--method', 'wanda', '--refine', 'dsnot']],
    ['ria 2:4 + permutation', ['--method', 'ria', '--structure', '2:4', '--permute']],
  ];
  test.each(runs)('%s runs and gives a finite PPL', (_name, extra) => {
    const r = runCli(['prune', '--model', 'stories260K', ...extra, ...FAST], { timeoutMs: 90_000 });
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(Number.isFinite(out.eval[0].pruned_ppl)).toBe(true);
    expect(out.eval[0].pruned_ppl).toBeGreaterThan(1);
    if (extra.includes('owl')) {
      expect(out.allocation.block_targets).toHaveLength(5);
      expect(out.block_sparsities).toHaveLength(5);
      expect(out.achieved_sparsity).toBeCloseTo(0.5, 1);
    } else expect(out.achieved_sparsity).toBe(0.5);
    if (extra.includes('dsnot')) expect(out.dsnot.abs_error_after).toBeLessThan(out.dsnot.abs_error_before);
  });

  const bad: [string, string[], RegExp][] = [
    ['--permute with unstructured', ['--method', 'ria', '--permute'], /--permute applies to N:M structures only/],
    ['unknown --allocation', ['--method', 'wanda', '--allocation', 'nonuniform'], /--allocation must be 'uniform' or 'owl', got 'nonuniform'/],
    ['unknown --refine', ['--method', 'wanda', '--refine', 'sparsegpt'], /--refine must be 'none' or 'dsnot'/],
    ['--refine with a weight-updating method', ['--method', 'sparsegpt', '--refine', 'dsnot'], /sparsegpt updates weights itself/],
    ['--refine dsnot after --permute', ['--method', 'ria', '--structure', '2:4', '--permute', '--refine', 'dsnot'], /cannot follow --permute/],
    ['negative --owl-lambda', ['--method', 'wanda', '--allocation', 'owl', '--owl-lambda', '-1'], /--owl-lambda must be a number >= 0/],
  ];
  test.each(bad)('%s: exit 2 with one line', (_name, extra, message) => {
    const r = runCli(['prune', '--model', 'stories260K', '--nsamples', '4', '--calib-seqlen', '64', ...extra]);
    expect(r.code).toBe(2);
    const l = lines(r.stderr);
    expect(l).toHaveLength(1);
    expect(l[0]).toMatch(/^crepe: /);
    expect(l[0]).toMatch(message);
    expect(r.stdout).toBe('');
  });
});

describe('DSnoT layer selection', () => {
  test("skips MLP layers by default (the reference's --skip_layer mlp) and refines them when asked", () => {
    const rng = { s: 7, next() { this.s = (this.s * 1103515245 + 12345) % 2147483648; return this.s / 2147483648 - 0.5; } };
    const rows = 4;
    const cols = 16;
    const w = Array.from({ length: rows * cols }, () => rng.next());
    const stats = emptyStats(cols);
    for (let j = 0; j < cols; j++) {
      stats.sum[j] = 40 * (1 + rng.next());
      stats.sumSq[j] = 100;
    }
    stats.tokens = 100;
    stats.samples = 4;
    const mask = Array.from({ length: rows * cols }, (_, k) => (k % 2 === 0 ? 1 : 0));
    const attn = refineInput(w, rows, mask, stats, UNSTRUCTURED_HALF);
    const mlp: RefineInput = { ...attn, name: 'down', kind: 'mlp' };
    expect(dsnotRefiner()(mlp)).toBe(mlp.mask);
    expect(Array.from(dsnotRefiner({ skip: 'none' })(mlp))).toEqual(Array.from(dsnotRefiner()(attn)));
  });
});
