import { LayerSample, ProxyDef, giniNonNegative, meanOfLayers, prunedValues } from '../proxy';

/**
 * Gini of the pruned weights' scores in one layer; NaN when nothing is pruned. Gini is scale
 * invariant, so dividing by the layer's mean score (to compare layers) would not change it.
 */
export function giniPrunedScores(layer: LayerSample): number {
  const pruned = prunedValues(layer.scores, layer.mask);
  return pruned.length ? giniNonNegative(pruned) : NaN;
}

/**
 * The paper's proxy as we read it. Its direction is unstable across our proxy studies (negative
 * in three of four, positive on stories260K 2:4), so it defaults to -1 (maximize).
 */
export const giniPrunedScoresProxy: ProxyDef<number> = {
  name: 'gini-pruned-scores',
  description: "mean over layers of the Gini coefficient of the pruned weights' scores (the paper's proxy as we read it)",
  sign: -1,
  accumulate: giniPrunedScores,
  finish: meanOfLayers,
};
