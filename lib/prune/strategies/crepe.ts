import * as tf from '@tensorflow/tfjs';
import { CrepeError } from '../../errors';
import { LayerContext, Params, Strategy } from '../strategy';
import { TINY, activationFactor, boxMean, relativeImportance } from './terms';

/**
 * CRePE (arXiv 2606.01544), as RECONSTRUCTED from the paper's abstract (the full text is not
 * available; see docs/methods.md). With A = |W| and n_j the input-channel norm:
 *
 *   R = A / rowsum(A),  C = A / colsum(A),  N = A / (kh x kw window sum of A, zero padding)
 *   score = (alpha R + beta C + gamma N) * n_j^a
 *
 * Computed as A * (alpha/rowsum + beta/colsum + (gamma/(kh kw)) / windowMean) * n^a, which with
 * gamma = 0 is exactly the expression RIA uses, so CRePE(1, 1, 0, a=0.5) == RIA bit for bit.
 * The default gamma = 0.03 is the best of a coarse grid {0, 0.01, 0.03, 0.1, 0.3} on stories260K
 * (50% unstructured and 2:4, geometric mean of PPL / PPL(gamma = 0)) measured on the VALIDATION
 * split (first 64 tinystories-val windows; experiments/crepe-defaults.json), never on the test
 * split the results report. (It was first picked on the test split; re-picked on validation it
 * is unchanged.) `crepe search` finds better per-model values.
 */
export const crepe: Strategy = {
  name: 'crepe',
  description: '(alpha A/rowsum + beta A/colsum + gamma A/boxsum_k) * ||X_j||^a (reconstructed form)',
  params: {
    // Searches start at RIA (alpha = beta = 1, gamma = 0 -> the lower bound of its log range,
    // kernel 3x3, a = 0.5), so every search begins from the published baseline; coefficients
    // span six decades around 1, kernels 1..9; the exponent stays at RIA's 0.5 unless asked.
    alpha: { default: 1, min: 0, max: 1e6, log: true, description: 'row-relative coefficient', search: { bounds: [1e-3, 1e3], start: 1 } },
    beta: { default: 1, min: 0, max: 1e6, log: true, description: 'column-relative coefficient', search: { bounds: [1e-3, 1e3], start: 1 } },
    gamma: { default: 0.03, min: 0, max: 1e6, log: true, description: 'neighbourhood-relative coefficient', search: { bounds: [1e-3, 1e3], start: 0 } },
    kh: { default: 3, min: 1, max: 15, integer: true, odd: true, description: 'window height (rows)', search: { bounds: [1, 9], start: 3 } },
    kw: { default: 3, min: 1, max: 15, integer: true, odd: true, description: 'window width (columns)', search: { bounds: [1, 9], start: 3 } },
    a: { default: 0.5, min: 0, max: 4, description: 'activation exponent', search: { searched: false, bounds: [0, 1] } },
  },
  paramAliases: {
    kernel: (v) => {
      const m = /^(\d+)(?:x(\d+))?$/.exec(v);
      if (!m) throw new CrepeError(`bad kernel '${v}' (expected K or KHxKW, e.g. 3x3)`);
      return { kh: m[1], kw: m[2] ?? m[1] };
    },
  },
  defaultGroup: 'matrix',
  checkParams: (p) =>
    p.alpha === 0 && p.beta === 0 && p.gamma === 0
      ? 'crepe with alpha = beta = gamma = 0 scores every weight 0 (the mask would follow index order): give one of them a positive value'
      : null,
  usesActivations: true,
  score: (ctx, p) =>
    tf.tidy(() => {
      // Window sums see which rows are neighbours: score in canonical (HF) row order, then put
      // the rows back, so llama2.c and HF files of one model give bit-identical scores.
      const order = p.gamma > 0 && p.kh > 1 ? ctx.canonicalRows : undefined;
      const w = order ? tf.gather(ctx.weight, tf.tensor1d(order, 'int32'), 0) : ctx.weight;
      const s = crepeScore(w as tf.Tensor2D, ctx, p);
      return (order ? tf.gather(s, tf.tensor1d(inverseOrder(order), 'int32'), 0) : s) as tf.Tensor2D;
    }),
  prepare: prepareCrepe,
};

function crepeScore(weight: tf.Tensor2D, ctx: LayerContext, p: Params): tf.Tensor2D {
  const { a, coef } = relativeImportance(tf.abs(weight) as tf.Tensor2D, p.alpha, p.beta);
  let c: tf.Tensor2D = coef;
  if (p.gamma > 0) {
    // an all-zero window has mean 0 but then A = 0 too: TINY keeps the score 0, not NaN
    const inv = tf.div(p.gamma / (p.kh * p.kw), tf.add(boxMean(a, p.kh, p.kw), TINY));
    c = tf.add(c, inv) as tf.Tensor2D;
  }
  const s = tf.mul(a, c) as tf.Tensor2D;
  return (p.a === 0 ? s : tf.mul(s, activationFactor(ctx.stats, p.a))) as tf.Tensor2D;
}

/** order[inverse[r]] = r. */
function inverseOrder(order: Int32Array): Int32Array {
  const inv = new Int32Array(order.length);
  order.forEach((from, to) => (inv[from] = to));
  return inv;
}

/**
 * Window sums cached per layer, at most this many kernel shapes (LRU), to bound memory: every
 * shape of the default search space (odd kh, kw in 1..9), since a search revisits shapes all the
 * time and recomputing them dominated a proxy evaluation (25 float32 copies of each layer).
 */
const MAX_CACHED_KERNELS = 25;

/**
 * The same score on the host with everything that does not depend on the parameters computed
 * once: |W|, row and column sums, and the window sums per kernel shape (separable running sums,
 * O(rows x cols) per new shape). A search then pays one pass over the weights per configuration,
 * or over the `only` rows when a proxy needs a row sample.
 */
function prepareCrepe(ctx: LayerContext): (p: Params, only?: Int32Array) => Float32Array {
  const [rows, cols] = ctx.shape;
  const n = rows * cols;
  const w = ctx.weightData;
  const abs = new Float32Array(n);
  const rowSum = new Float64Array(rows);
  const colSum = new Float64Array(cols);
  for (let r = 0, k = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++, k++) {
      const v = Math.abs(w[k]);
      abs[k] = v;
      rowSum[r] += v;
      colSum[c] += v;
    }
  }
  for (let r = 0; r < rows; r++) rowSum[r] = Math.max(Math.fround(rowSum[r]), TINY);
  for (let c = 0; c < cols; c++) colSum[c] = Math.max(Math.fround(colSum[c]), TINY);
  // Per kernel shape: 1 / (window mean + TINY), the factor gamma / (kh kw) multiplies.
  const windows = new Map<string, Float32Array>();
  const inverseWindowMeans = (kh: number, kw: number): Float32Array => {
    const key = `${kh}x${kw}`;
    let s = windows.get(key);
    if (s) {
      windows.delete(key); // re-insert: most recently used last
      windows.set(key, s);
      return s;
    }
    // Windows that span rows see the rows in canonical order, as `score` does.
    const order = kh > 1 ? ctx.canonicalRows : undefined;
    s = order ? unpermuteRows(boxSums(permuteRows(abs, order, cols), rows, cols, kh, kw), order, cols) : boxSums(abs, rows, cols, kh, kw);
    const area = kh * kw;
    for (let k = 0; k < n; k++) s[k] = 1 / (s[k] / area + TINY);
    windows.set(key, s);
    if (windows.size > MAX_CACHED_KERNELS) windows.delete(windows.keys().next().value!);
    return s;
  };
  const factors = new Map<number, Float64Array>();
  const samples = Math.max(1, ctx.stats.samples);
  const factorOf = (a: number): Float64Array => {
    let f = factors.get(a);
    if (!f) {
      f = new Float64Array(cols);
      for (let j = 0; j < cols; j++) f[j] = Math.fround(Math.pow(Math.sqrt(ctx.stats.sumSq[j] / samples), a));
      factors.set(a, f);
    }
    return f;
  };
  const rowCoef = new Float64Array(rows);
  const colCoef = new Float64Array(cols);
  return (p, only) => {
    for (let r = 0; r < rows; r++) rowCoef[r] = p.alpha / rowSum[r];
    for (let c = 0; c < cols; c++) colCoef[c] = p.beta / colSum[c];
    const f = p.a === 0 ? null : factorOf(p.a);
    const inv = p.gamma > 0 ? inverseWindowMeans(p.kh, p.kw) : null;
    const g = p.gamma / (p.kh * p.kw);
    const count = only ? only.length : rows;
    const out = new Float32Array(count * cols);
    for (let i = 0, o = 0; i < count; i++) {
      const r = only ? only[i] : i;
      const rc = rowCoef[r];
      let k = r * cols;
      if (inv && f) for (let c = 0; c < cols; c++, k++, o++) out[o] = abs[k] * (rc + colCoef[c] + g * inv[k]) * f[c];
      else if (inv) for (let c = 0; c < cols; c++, k++, o++) out[o] = abs[k] * (rc + colCoef[c] + g * inv[k]);
      else if (f) for (let c = 0; c < cols; c++, k++, o++) out[o] = abs[k] * (rc + colCoef[c]) * f[c];
      else for (let c = 0; c < cols; c++, k++, o++) out[o] = abs[k] * (rc + colCoef[c]);
    }
    return out;
  };
}

/** Rows in `order`: row r of the result is row order[r] of `a`. */
function permuteRows(a: Float32Array, order: Int32Array, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  order.forEach((from, to) => out.set(a.subarray(from * cols, (from + 1) * cols), to * cols));
  return out;
}

/** The inverse of permuteRows. */
function unpermuteRows(a: Float32Array, order: Int32Array, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  order.forEach((from, to) => out.set(a.subarray(to * cols, (to + 1) * cols), from * cols));
  return out;
}

/** Sums of A over the kh x kw window centred on each element, zero padding (float64 running sums). */
function boxSums(a: Float32Array, rows: number, cols: number, kh: number, kw: number): Float32Array {
  const ph = (kh - 1) / 2;
  const pw = (kw - 1) / 2;
  const horizontal = new Float64Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let run = 0;
    for (let c = 0; c < Math.min(pw, cols); c++) run += a[base + c];
    for (let c = 0; c < cols; c++) {
      if (c + pw < cols) run += a[base + c + pw];
      if (c - pw - 1 >= 0) run -= a[base + c - pw - 1];
      horizontal[base + c] = run;
    }
  }
  const out = new Float32Array(rows * cols);
  const run = new Float64Array(cols);
  for (let r = 0; r < Math.min(ph, rows); r++) for (let c = 0; c < cols; c++) run[c] += horizontal[r * cols + c];
  for (let r = 0; r < rows; r++) {
    if (r + ph < rows) for (let c = 0, k = (r + ph) * cols; c < cols; c++, k++) run[c] += horizontal[k];
    if (r - ph - 1 >= 0) for (let c = 0, k = (r - ph - 1) * cols; c < cols; c++, k++) run[c] -= horizontal[k];
    for (let c = 0, k = r * cols; c < cols; c++, k++) out[k] = Math.max(run[c], 0); // running sums can dip below 0 by rounding
  }
  return out;
}
