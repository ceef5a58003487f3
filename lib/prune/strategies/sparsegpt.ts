/**
 * SparseGPT (IST-DASLab/sparsegpt, sparsegpt.py `fasterprune`): OBS pruning with weight
 * reconstruction, reimplemented from the reference's behaviour.
 *
 *   H = 2 X^T X / nsamples          (the reference's add_batch: `nsamples` counts calibration
 *                                     windows, not tokens; the scale cancels out of everything
 *                                     below except the absolute damping, which is relative anyway)
 *   dead columns (H_jj = 0): W[:, j] = 0, H_jj = 1
 *   H += percdamp * mean(diag H) * I
 *   U = upper Cholesky factor of H^-1 (H^-1 = U^T U)
 *   columns in blocks of `blocksize`; inside a block, column by column:
 *     q = w with the masked entries set to 0;  err = (w - q) / U_cc
 *     W[:, c:blockEnd] -= err U[c, c:blockEnd]           (exact OBS update inside the block)
 *   and after the block, lazily: W[:, blockEnd:] -= Err U[block, blockEnd:]
 *
 * Mask selection, as the reference:
 *   - unstructured: at the start of each column block, over the block's rows x blocksize entries
 *     FLATTENED, the lowest w^2 / U_cc^2 (the weights as already updated by earlier blocks). So
 *     the exact count holds per column block (floor(rows * width * sparsity) each), not per row
 *     or per matrix, and the comparison group flag is not used. The reference thresholds with
 *     `<=` at sorted index k and so prunes k + 1 entries per block (plus ties); we prune exactly
 *     k, ties by index, so reported sparsity is exact.
 *   - N:M (keep n of m): when the sweep reaches a column c with c % m == 0, each row prunes the
 *     m - n lowest w^2 / U_jj^2 among columns c..c+m-1, from the current (updated) weights.
 *
 * Linear algebra is hand-written in float64 typed arrays (a Cholesky, a triangular inverse):
 * there is no well-kept CommonJS npm package for it, tfjs has no Cholesky, and float32 would
 * lose the conditioning the damping is there to protect. The weights stay float32 as in the
 * reference. Costs: O(in^3 / 3) for the factorisation (shared by q/k/v and by gate/up through a
 * one-entry cache, since they share input statistics) and O(out * in^2 / 2) for the sweep.
 */
import * as tf from '@tensorflow/tfjs';
import { CrepeError } from '../../errors';
import { Structure, selectMask } from '../select';
import { InputStats } from '../stats';
import { LayerContext, Params, Strategy } from '../strategy';

/** H = 2 X^T X / samples with dead columns set to 1, plus percdamp * mean(diag) on the diagonal. */
export function dampedHessian(stats: InputStats, percdamp: number): { h: Float64Array; dead: Uint8Array } {
  const n = stats.inFeatures;
  if (!stats.gram) {
    throw new CrepeError('sparsegpt needs the Gram matrix X^T X of every layer input (statistics were collected without it)');
  }
  const scale = 2 / Math.max(1, stats.samples);
  const h = new Float64Array(n * n);
  for (let k = 0; k < h.length; k++) h[k] = stats.gram[k] * scale;
  const dead = new Uint8Array(n);
  let diagSum = 0;
  for (let j = 0; j < n; j++) {
    if (h[j * n + j] === 0) {
      dead[j] = 1;
      h[j * n + j] = 1;
    }
    diagSum += h[j * n + j];
  }
  const damp = (percdamp * diagSum) / n;
  for (let j = 0; j < n; j++) h[j * n + j] += damp;
  return { h, dead };
}

/**
 * In place: the lower Cholesky factor L of a symmetric positive definite A (A = L L^T), stored
 * row-major in `a`; the strict upper part is zeroed. Row-oriented so every dot product is over
 * contiguous memory.
 */
export function choleskyLower(a: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    for (let j = 0; j <= i; j++) {
      const rj = j * n;
      let s = a[ri + j];
      for (let k = 0; k < j; k++) s -= a[ri + k] * a[rj + k];
      if (i === j) {
        if (!(s > 0) || !Number.isFinite(s)) {
          throw new CrepeError(`Hessian is not positive definite at column ${i} (raise percdamp)`);
        }
        a[ri + i] = Math.sqrt(s);
      } else a[ri + j] = s / a[rj + j];
    }
    for (let j = i + 1; j < n; j++) a[ri + j] = 0;
  }
}

/**
 * In place: the inverse of a lower-triangular L (itself lower triangular). Row i of L^-1 is
 * -(sum over k < i of L_ik * row k of L^-1) / L_ii, accumulated row by row (contiguous).
 */
export function invertLowerTriangular(l: Float64Array, n: number): void {
  const acc = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const ri = i * n;
    acc.fill(0, 0, i);
    for (let k = 0; k < i; k++) {
      const c = l[ri + k];
      if (c === 0) continue;
      const rk = k * n;
      for (let j = 0; j <= k; j++) acc[j] += c * l[rk + j];
    }
    const inv = 1 / l[ri + i];
    for (let j = 0; j < i; j++) l[ri + j] = -acc[j] * inv;
    l[ri + i] = inv;
  }
}

/**
 * The upper Cholesky factor U of H^-1 (H^-1 = U^T U), what the reference gets from
 * cholesky -> cholesky_inverse -> cholesky(upper). With P the order-reversing permutation,
 * P H P = L L^T gives H^-1 = (P L^-1 P)^T (P L^-1 P), and P L^-1 P is upper triangular with a
 * positive diagonal, hence U (the factor is unique). Reversing both indices of a row-major
 * matrix is reversing the flat array, so this is one Cholesky and one triangular inverse
 * instead of the reference's three factorisations. `h` is consumed.
 */
export function inverseCholeskyUpper(h: Float64Array, n: number): Float64Array {
  h.reverse();
  choleskyLower(h, n);
  invertLowerTriangular(h, n);
  return h.reverse();
}

interface Factorisation {
  stats: InputStats;
  tokens: number;
  percdamp: number;
  u: Float64Array;
  dead: Uint8Array;
}
// One entry: q/k/v (and gate/up) share one statistics object and are pruned one after another,
// so their score and pruneLayer calls reuse one factorisation; older ones are dropped.
let lastFactorisation: Factorisation | null = null;

function factorise(stats: InputStats, percdamp: number): Factorisation {
  const f = lastFactorisation;
  if (f && f.stats === stats && f.tokens === stats.tokens && f.percdamp === percdamp) return f;
  const { h, dead } = dampedHessian(stats, percdamp);
  lastFactorisation = { stats, tokens: stats.tokens, percdamp, u: inverseCholeskyUpper(h, stats.inFeatures), dead };
  return lastFactorisation;
}

/**
 * The diagonal of U. Without a Gram matrix (statistics gathered for another method), H is taken
 * as its diagonal 2 sumSq / windows (dead columns and damping as dampedHessian), so U_jj = H_jj^-1/2.
 */
function factorDiagonal(stats: InputStats, percdamp: number): { uDiag: Float64Array; dead: Uint8Array } {
  const n = stats.inFeatures;
  if (stats.gram) {
    const { u, dead } = factorise(stats, percdamp);
    return { uDiag: Float64Array.from({ length: n }, (_, j) => u[j * n + j]), dead };
  }
  const diag = Float64Array.from(stats.sumSq, (v) => (2 * v) / Math.max(1, stats.samples));
  const dead = Uint8Array.from(diag, (v) => (v === 0 ? 1 : 0));
  let diagSum = 0;
  for (let j = 0; j < n; j++) diagSum += dead[j] ? 1 : diag[j];
  const damp = (percdamp * diagSum) / n;
  return { uDiag: Float64Array.from(diag, (v, j) => 1 / Math.sqrt((dead[j] ? 1 : v) + damp)), dead };
}

/** OBS pruning of one [rows, cols] weight; returns the updated weight (pruned entries +0) and the keep mask. */
export function sparseGptPrune(
  weight: Float32Array,
  rows: number,
  cols: number,
  stats: InputStats,
  structure: Structure,
  opts: { percdamp: number; blocksize: number },
): { weight: Float32Array; mask: Uint8Array } {
  if (stats.inFeatures !== cols) throw new Error(`sparsegpt: statistics of width ${stats.inFeatures} for ${cols} columns`);
  const { u, dead } = factorise(stats, opts.percdamp);
  const w = weight.slice();
  for (let j = 0; j < cols; j++) {
    if (dead[j]) for (let r = 0; r < rows; r++) w[r * cols + j] = 0;
  }
  const mask = new Uint8Array(rows * cols).fill(1);
  const bs = opts.blocksize;
  const errors = new Float64Array(rows * bs);
  for (let i1 = 0; i1 < cols; i1 += bs) {
    const i2 = Math.min(i1 + bs, cols);
    const width = i2 - i1;
    // Unstructured: the lowest saliencies over the whole column block, flattened.
    if (structure.kind === 'unstructured') selectColumns(w, rows, cols, i1, width, u, { kind: 'unstructured', group: 'matrix', sparsity: structure.sparsity }, mask);
    errors.fill(0);
    for (let c = i1; c < i2; c++) {
      // N:M: each row keeps n of the next m columns, from the weights updated so far.
      if (structure.kind === 'nm' && c % structure.m === 0) selectColumns(w, rows, cols, c, structure.m, u, structure, mask);
      const uRow = c * cols;
      const d = u[uRow + c];
      for (let r = 0; r < rows; r++) {
        const at = r * cols + c;
        if (mask[at]) continue;
        // Only pruned entries carry an error (q = w for kept ones), so only they update the rest.
        const err = w[at] / d;
        w[at] = 0;
        errors[r * bs + (c - i1)] = err;
        const rowStart = r * cols;
        for (let j = c + 1; j < i2; j++) w[rowStart + j] -= err * u[uRow + j];
      }
    }
    if (i2 === cols) continue;
    for (let r = 0; r < rows; r++) {
      const rowStart = r * cols;
      for (let c = 0; c < width; c++) {
        const err = errors[r * bs + c];
        if (err === 0) continue;
        const uRow = (i1 + c) * cols;
        for (let j = i2; j < cols; j++) w[rowStart + j] -= err * u[uRow + j];
      }
    }
  }
  // +0 in the pruned entries whatever rounding left there.
  for (let k = 0; k < w.length; k++) if (!mask[k]) w[k] = 0;
  return { weight: w, mask };
}

/**
 * Select the mask of columns c0..c0+width-1 from their OBS saliency w^2 / U_cc^2 (current
 * weights), as `structure` says: unstructured over the whole block flattened (group 'matrix'),
 * or N:M within each row (width = m). Ties by index.
 */
function selectColumns(
  w: Float32Array, rows: number, cols: number, c0: number, width: number, u: Float64Array, structure: Structure, mask: Uint8Array,
): void {
  const scores = new Float32Array(rows * width);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < width; c++) {
      const d = u[(c0 + c) * cols + c0 + c];
      const v = w[r * cols + c0 + c];
      scores[r * width + c] = (v * v) / (d * d);
    }
  }
  const selected = selectMask(scores, rows, width, structure);
  for (let r = 0; r < rows; r++) mask.set(selected.subarray(r * width, (r + 1) * width), r * cols + c0);
}

export const sparsegpt: Strategy = {
  name: 'sparsegpt',
  description: 'OBS pruning with weight reconstruction (unstructured: per column block of blocksize)',
  params: {
    percdamp: { default: 0.01, min: 0, max: 10, description: 'diagonal damping, as a fraction of mean(diag H)' },
    blocksize: { default: 128, min: 1, max: 65536, integer: true, description: 'columns per lazy-update block (also the unstructured comparison group)' },
  },
  defaultGroup: 'matrix',
  usesActivations: true,
  statsNeeds: { gram: true },
  /**
   * w^2 / U_jj^2 on the dense weights, the reference's first-block criterion (for reports and
   * proxies; without a Gram matrix, the OBS saliency with a diagonal Hessian).
   */
  score: (ctx: LayerContext, p: Params) => {
    const [rows, cols] = ctx.shape;
    const { uDiag, dead } = factorDiagonal(ctx.stats, p.percdamp);
    const out = new Float32Array(rows * cols);
    for (let j = 0; j < cols; j++) {
      const d = uDiag[j];
      const inv = dead[j] ? 0 : 1 / (d * d);
      for (let r = 0; r < rows; r++) {
        const v = ctx.weightData[r * cols + j];
        out[r * cols + j] = v * v * inv;
      }
    }
    return tf.tensor2d(out, [rows, cols]);
  },
  pruneLayer: (ctx, structure, p) =>
    sparseGptPrune(ctx.weightData, ctx.shape[0], ctx.shape[1], ctx.stats, structure, { percdamp: p.percdamp, blocksize: p.blocksize }),
};
