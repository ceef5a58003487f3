import * as tf from '@tensorflow/tfjs';
import { CrepeError } from '../../errors';
import { InputStats } from '../../prune/stats';
import { LayerSample, ProxyDef, meanOfLayers } from '../proxy';

const gramCache = new WeakMap<InputStats, Float32Array>();

/** X^T X [in, in] over the kept calibration windows, computed once per statistics object. */
export function keptInputGram(stats: InputStats): Float32Array {
  let g = gramCache.get(stats);
  if (g) return g;
  const inputs = stats.inputs;
  if (!inputs || inputs.length === 0) {
    throw new CrepeError("proxy 'recon' needs raw calibration inputs: collect statistics with keepInputs > 0");
  }
  const d = stats.inFeatures;
  const sum = tf.tidy(() =>
    tf.addN(inputs.map((x) => {
      const t = tf.tensor2d(x, [x.length / d, d]);
      return tf.matMul(t, t, true, false); // once per layer group, so the slow transposed path is fine
    })),
  );
  g = sum.dataSync() as Float32Array;
  sum.dispose();
  gramCache.set(stats, g);
  return g;
}

/**
 * Relative output reconstruction error over the kept windows: `total` = ||W X - (W*M) X||^2 /
 * ||W X||^2, `byRow` = the same ratio per output row, averaged over rows with non-zero output.
 * With D = W*(1 - M) and G = X^T X, row i's error is (D G D^T)_ii = sum_j (D G)_ij D_ij, so the
 * cost is one [out, in] x [in, in] product per term, not one per calibration token.
 */
export function reconstructionErrors(layer: LayerSample): { total: number; byRow: number } {
  const g = keptInputGram(layer.stats);
  const dropped = new Float32Array(layer.weight.length);
  for (let k = 0; k < dropped.length; k++) if (layer.mask[k] === 0) dropped[k] = layer.weight[k];
  const [errT, refT] = tf.tidy(() => {
    const gt = tf.tensor2d(g, [layer.cols, layer.cols]);
    const rowQuadratic = (m: Float32Array): tf.Tensor => {
      const t = tf.tensor2d(m, [layer.rows, layer.cols]);
      return tf.sum(tf.mul(tf.matMul(t, gt), t), 1);
    };
    return [rowQuadratic(dropped), rowQuadratic(layer.weight)];
  });
  const err = errT.dataSync();
  const ref = refT.dataSync();
  tf.dispose([errT, refT]);
  let errSum = 0;
  let refSum = 0;
  let ratioSum = 0;
  let rowsCounted = 0;
  for (let r = 0; r < layer.rows; r++) {
    errSum += err[r];
    refSum += ref[r];
    if (ref[r] > 0) {
      ratioSum += err[r] / ref[r];
      rowsCounted++;
    }
  }
  return { total: refSum > 0 ? errSum / refSum : 0, byRow: rowsCounted ? ratioSum / rowsCounted : 0 };
}

/** 'recon' and 'recon-row' come from one computation: the last layer's result is kept for the other. */
let lastRecon: { layer: LayerSample; errors: { total: number; byRow: number } } | null = null;

export function reconstructionErrorsOnce(layer: LayerSample): { total: number; byRow: number } {
  if (lastRecon?.layer !== layer) lastRecon = { layer, errors: reconstructionErrors(layer) };
  return lastRecon.errors;
}

export const reconProxy: ProxyDef<number> = {
  name: 'recon',
  description: 'mean over layers of ||W X - (W*M) X||^2 / ||W X||^2 on the kept calibration windows',
  sign: 1,
  needs: { inputs: true },
  accumulate: (layer) => reconstructionErrorsOnce(layer).total,
  finish: meanOfLayers,
};
