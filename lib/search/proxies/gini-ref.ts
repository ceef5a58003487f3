import { InputStats } from '../../prune/stats';
import { LayerSample, ProxyDef, giniNonNegative, meanOfLayers, prunedValues } from '../proxy';

/** Gini, over the pruned weights, of |W_ij| * ||X_j||, an importance that does not depend on the configuration. */
export function giniReference(layer: LayerSample): number {
  const norms = channelNorms(layer.stats);
  const ref = new Float32Array(layer.weight.length);
  for (let r = 0, k = 0; r < layer.rows; r++) for (let c = 0; c < layer.cols; c++, k++) ref[k] = Math.abs(layer.weight[k]) * norms[c];
  const pruned = prunedValues(ref, layer.mask);
  return pruned.length ? giniNonNegative(pruned) : NaN;
}

function channelNorms(stats: InputStats): Float64Array {
  const out = new Float64Array(stats.inFeatures);
  for (let j = 0; j < out.length; j++) out[j] = Math.sqrt(stats.sumSq[j]);
  return out;
}

export const giniRefProxy: ProxyDef<number> = {
  name: 'gini-ref',
  description: 'mean over layers of the Gini, over the pruned weights, of the fixed importance |W_ij| ||X_j||',
  sign: 1,
  accumulate: giniReference,
  finish: meanOfLayers,
};
