import * as tf from '@tensorflow/tfjs';
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
 * (50% unstructured and 2:4, first 64 TinyStories evaluation windows); `crepe search` finds
 * better per-model values.
 */
export const crepe: Strategy = {
  name: 'crepe',
  description: '(alpha A/rowsum + beta A/colsum + gamma A/boxsum_k) * ||X_j||^a (reconstructed form)',
  params: {
    alpha: { default: 1, min: 0, max: 1e6, log: true, description: 'row-relative coefficient' },
    beta: { default: 1, min: 0, max: 1e6, log: true, description: 'column-relative coefficient' },
    gamma: { default: 0.03, min: 0, max: 1e6, log: true, description: 'neighbourhood-relative coefficient' },
    kh: { default: 3, min: 1, max: 15, integer: true, odd: true, description: 'window height (rows)' },
    kw: { default: 3, min: 1, max: 15, integer: true, odd: true, description: 'window width (columns)' },
    a: { default: 0.5, min: 0, max: 4, description: 'activation exponent' },
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
