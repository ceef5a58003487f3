import * as tf from '@tensorflow/tfjs';
import { InputStats } from '../stats';

/**
 * Building blocks shared by the relative-importance strategies. Reductions avoid the slow wasm
 * paths (docs/performance.md): column sums by a ones-vector matMul, box sums by avgPool.
 */

/**
 * Denominators are floored at a tiny positive value: an all-zero row, column or window (e.g. an
 * already pruned model) then scores 0 instead of 0/0 = NaN. Applied to the small sum vectors
 * only, so it costs nothing.
 */
export const TINY = 1e-30;

/** Row sums of A [out, in] → [out, 1]. */
export function rowSums(a: tf.Tensor2D): tf.Tensor2D {
  return tf.maximum(tf.sum(a, 1, true), TINY) as tf.Tensor2D;
}

/** Column sums of A [out, in] → [1, in]. */
export function colSums(a: tf.Tensor2D): tf.Tensor2D {
  return tf.maximum(tf.matMul(tf.ones([1, a.shape[0]]), a), TINY) as tf.Tensor2D;
}

/**
 * Per-input-channel activation factor (sqrt(scaler_j))^a = scaler_j^(a/2), as RIA raises
 * Wanda's column norm to the power a; computed on the host (pow is slow on wasm).
 * Returns [1, in].
 */
export function activationFactor(stats: InputStats, a: number): tf.Tensor2D {
  const n = Math.max(1, stats.samples);
  const f = new Float32Array(stats.inFeatures);
  for (let j = 0; j < f.length; j++) f[j] = Math.pow(Math.sqrt(stats.sumSq[j] / n), a);
  return tf.tensor2d(f, [1, f.length]);
}

/**
 * Exact window sums of A over the kh x kw window centred on each element, zero padding outside,
 * divided by kh*kw: zero-pad then average with 'valid' padding (avgPool with 'same' padding would
 * average over in-bounds elements only). kh and kw must be odd. Returns [out, in].
 */
export function boxMean(a: tf.Tensor2D, kh: number, kw: number): tf.Tensor2D {
  const [o, i] = a.shape;
  if (kh === 1 && kw === 1) return a.clone();
  return tf.tidy(() => {
    const ph = (kh - 1) / 2;
    const pw = (kw - 1) / 2;
    const padded = tf.reshape(tf.pad(a, [[ph, ph], [pw, pw]]), [1, o + 2 * ph, i + 2 * pw, 1]) as tf.Tensor4D;
    return tf.reshape(tf.avgPool(padded, [kh, kw], 1, 'valid'), [o, i]) as tf.Tensor2D;
  });
}

/**
 * Relative importance with coefficients: A * (alpha / rowsum_i + beta / colsum_j), the form RIA's
 * A/rowsum + A/colsum takes with alpha = beta = 1 (one broadcast add and one multiply instead of
 * two full divisions). RI, RIA and CRePE all go through this one function.
 */
export function relativeImportance(a: tf.Tensor2D, alpha: number, beta: number): { a: tf.Tensor2D; coef: tf.Tensor2D } {
  const coef = tf.add(tf.div(alpha, rowSums(a)), tf.div(beta, colSums(a))) as tf.Tensor2D;
  return { a, coef };
}
