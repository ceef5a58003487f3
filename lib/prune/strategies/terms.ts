import * as tf from '@tensorflow/tfjs';
import { InputStats } from '../stats';

/**
 * Building blocks shared by the relative-importance strategies. Reductions avoid the slow wasm
 * paths (DESIGN.md section 5): column sums by a ones-vector matMul, box sums by avgPool.
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

/** Number of in-bounds positions of a centred window of size k at each index of a length-n axis. */
export function inBoundsCounts(n: number, k: number): Float32Array {
  const r = (k - 1) / 2;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.min(n - 1, i + r) - Math.max(0, i - r) + 1;
  return out;
}

/**
 * Exact sums of A over the kh x kw window centred on each element, zero padding outside:
 * avgPool with 'same' padding averages over in-bounds elements only, so multiplying by the
 * per-row and per-column in-bounds counts recovers the sum. kh and kw must be odd.
 * Returns the average and the [out,1], [1,in] count factors so callers can fold them.
 */
export function boxAverage(a: tf.Tensor2D, kh: number, kw: number): tf.Tensor2D {
  const [o, i] = a.shape;
  if (kh === 1 && kw === 1) return a.clone();
  const avg = tf.avgPool(tf.reshape(a, [1, o, i, 1]) as tf.Tensor4D, [kh, kw], 1, 'same');
  return tf.reshape(avg, [o, i]) as tf.Tensor2D;
}

export function boxSums(a: tf.Tensor2D, kh: number, kw: number): tf.Tensor2D {
  const [o, i] = a.shape;
  return tf.tidy(() =>
    tf.mul(
      tf.mul(boxAverage(a, kh, kw), tf.tensor2d(inBoundsCounts(o, kh), [o, 1])),
      tf.tensor2d(inBoundsCounts(i, kw), [1, i]),
    ),
  ) as tf.Tensor2D;
}
