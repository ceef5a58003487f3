import * as tf from '@tensorflow/tfjs';
import { CrepeError } from '../../errors';
import { LayerSample, ProxyDef, sumOfLayers } from '../proxy';

/** ½ mean over kept tokens of (g_t · D x_t)^2 with D = W*(1 - M): one [S, in] x [in, out] product. */
export function fisherOutputLoss(layer: LayerSample): number {
  const k = layer.fisherTokens;
  if (!k) throw new CrepeError("proxy 'fisher-output' needs the Fisher tokens: calibrate with fisherWindows > 0");
  if (k.count === 0) return 0;
  const dropped = new Float32Array(layer.weight.length);
  for (let e = 0; e < dropped.length; e++) if (layer.mask[e] === 0) dropped[e] = layer.weight[e];
  const total = tf.tidy(() => {
    const dy = tf.matMul(tf.tensor2d(k.x, [k.count, layer.cols]), tf.tensor2d(dropped, [layer.rows, layer.cols]), false, true);
    return tf.sum(tf.square(tf.sum(tf.mul(dy, tf.tensor2d(k.g, [k.count, layer.rows])), 1)));
  });
  const v = total.dataSync()[0];
  total.dispose();
  return v / k.count / 2;
}

/** Per-layer values are already in loss units (nats/token), so the layers add up. */
export const fisherOutputProxy: ProxyDef<number> = {
  name: 'fisher-output',
  description: 'sum over layers of ½ mean_t (g_t · (W - W*M) x_t)^2 on the kept Fisher tokens: the Fisher quadratic form with output correlations',
  sign: 1,
  needs: { fisher: true },
  accumulate: fisherOutputLoss,
  finish: sumOfLayers,
};
