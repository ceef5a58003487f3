import * as tf from '@tensorflow/tfjs';
import { Strategy } from '../strategy';
import { TINY, activationFactor, boxAverage, colSums, inBoundsCounts, rowSums } from './terms';

/**
 * CRePE (arXiv 2606.01544), as RECONSTRUCTED from the paper's abstract (the full text is not
 * available; see DESIGN.md section 1). With A = |W| and n_j the input-channel norm:
 *
 *   R = A / rowsum(A),  C = A / colsum(A),  N = A / (k_h x k_w window sum of A, zero padding)
 *   score = (alpha R + beta C + gamma N) * n_j^a
 *
 * alpha = beta = 1, gamma = 0, a = 0.5 is RIA, bit for bit: the coefficients are folded into the
 * denominators (x / (s/1) == x / s exactly) and the terms are added in RIA's order.
 */
export const crepe: Strategy = {
  name: 'crepe',
  description: '(alpha A/rowsum + beta A/colsum + gamma A/boxsum_k) * ||X_j||^a (reconstructed form)',
  params: {
    alpha: { default: 1, min: 0, max: 1e6, log: true, description: 'row-relative coefficient' },
    beta: { default: 1, min: 0, max: 1e6, log: true, description: 'column-relative coefficient' },
    gamma: { default: 0.05, min: 0, max: 1e6, log: true, description: 'neighbourhood-relative coefficient' },
    kh: { default: 3, min: 1, max: 15, integer: true, odd: true, description: 'window height (rows)' },
    kw: { default: 3, min: 1, max: 15, integer: true, odd: true, description: 'window width (columns)' },
    a: { default: 0.5, min: 0, max: 4, description: 'activation exponent' },
  },
  defaultGroup: 'matrix',
  usesActivations: true,
  score: (ctx, p) =>
    tf.tidy(() => {
      const a = tf.abs(ctx.weight) as tf.Tensor2D;
      const [o, i] = a.shape;
      let s = tf.add(tf.div(a, tf.div(rowSums(a), p.alpha)), tf.div(a, tf.div(colSums(a), p.beta)));
      if (p.gamma > 0) {
        // window sum = avg * rowCount_i * colCount_j; fold gamma into the row factor
        const rowF = inBoundsCounts(o, p.kh).map((c) => c / p.gamma);
        const box = tf.mul(
          tf.mul(tf.maximum(boxAverage(a, p.kh, p.kw), TINY), tf.tensor2d(rowF, [o, 1])),
          tf.tensor2d(inBoundsCounts(i, p.kw), [1, i]),
        );
        s = tf.add(s, tf.div(a, box));
      }
      return (p.a === 0 ? s : tf.mul(s, activationFactor(ctx.stats, p.a))) as tf.Tensor2D;
    }),
};
