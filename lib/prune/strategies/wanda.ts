import * as tf from '@tensorflow/tfjs';
import { scalerRow } from '../stats';
import { Strategy } from '../strategy';

/**
 * Wanda (locuslab/wanda): |W_ij| * sqrt(scaler_j), scaler_j = sum over calibration tokens of
 * x_j^2 divided by the number of calibration windows. Compared within each output row.
 */
export const wanda: Strategy = {
  name: 'wanda',
  description: '|W_ij| * ||X_j||_2 (per output row)',
  params: {},
  defaultGroup: 'row',
  usesActivations: true,
  score: (ctx) =>
    tf.tidy(() => {
      const s = scalerRow(ctx.stats);
      const norm = new Float32Array(s.length);
      for (let j = 0; j < s.length; j++) norm[j] = Math.sqrt(s[j]);
      return tf.mul(tf.abs(ctx.weight), tf.tensor2d(norm, [1, norm.length])) as tf.Tensor2D;
    }),
};
