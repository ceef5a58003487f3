import * as tf from '@tensorflow/tfjs';
import { Strategy } from '../strategy';

/** |W|. The Wanda repository prunes magnitude per matrix (one threshold per weight). */
export const magnitude: Strategy = {
  name: 'magnitude',
  description: '|W_ij|',
  params: {},
  defaultGroup: 'matrix',
  usesActivations: false,
  score: (ctx) => tf.abs(ctx.weight),
};
