import * as tf from '@tensorflow/tfjs';
import { Strategy } from '../strategy';
import { activationFactor, relativeImportance } from './terms';

/** RI_ij = |W_ij| / sum_i' |W_i'j| + |W_ij| / sum_j' |W_ij'|, as the RIA repository defines it. */
function ri(w: tf.Tensor2D): tf.Tensor2D {
  const { a, coef } = relativeImportance(tf.abs(w) as tf.Tensor2D, 1, 1);
  return tf.mul(a, coef) as tf.Tensor2D;
}

/** RI without activations ("ri" in the RIA repository). */
export const riStrategy: Strategy = {
  name: 'ri',
  description: '|W|/rowsum + |W|/colsum (RIA without activations)',
  params: {},
  defaultGroup: 'matrix',
  usesActivations: false,
  score: (ctx) => tf.tidy(() => ri(ctx.weight)),
};

/** RIA (biomedical-cybernetics/Relative-importance-and-activation-pruning): RI * (sqrt(scaler_j))^a. */
export const ria: Strategy = {
  name: 'ria',
  description: 'RI * ||X_j||^a (per matrix by default)',
  params: {
    a: { default: 0.5, min: 0, max: 4, description: 'activation exponent', search: { bounds: [0, 1] } },
  },
  defaultGroup: 'matrix',
  usesActivations: true,
  score: (ctx, p) => tf.tidy(() => tf.mul(ri(ctx.weight), activationFactor(ctx.stats, p.a)) as tf.Tensor2D),
};
