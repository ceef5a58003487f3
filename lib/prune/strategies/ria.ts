import * as tf from '@tensorflow/tfjs';
import { Strategy } from '../strategy';
import { activationFactor, colSums, rowSums } from './terms';

/** RI_ij = |W_ij| / sum_i' |W_i'j| + |W_ij| / sum_j' |W_ij'|, as the RIA repository computes it. */
function relativeImportance(w: tf.Tensor2D): tf.Tensor2D {
  const a = tf.abs(w) as tf.Tensor2D;
  return tf.add(tf.div(a, rowSums(a)), tf.div(a, colSums(a))) as tf.Tensor2D;
}

/** RI without activations ("ri" in the RIA repository). */
export const ri: Strategy = {
  name: 'ri',
  description: '|W|/rowsum + |W|/colsum (RIA without activations)',
  params: {},
  defaultGroup: 'matrix',
  usesActivations: false,
  score: (ctx) => tf.tidy(() => relativeImportance(ctx.weight)),
};

/** RIA (biomedical-cybernetics/Relative-importance-and-activation-pruning): RI * (sqrt(scaler_j))^a. */
export const ria: Strategy = {
  name: 'ria',
  description: 'RI * ||X_j||^a (per matrix by default)',
  params: {
    a: { default: 0.5, min: 0, max: 4, description: 'activation exponent' },
  },
  defaultGroup: 'matrix',
  usesActivations: true,
  score: (ctx, p) =>
    tf.tidy(() => tf.mul(relativeImportance(ctx.weight), activationFactor(ctx.stats, p.a)) as tf.Tensor2D),
};
