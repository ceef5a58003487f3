import { LayerSample, ProxyDef, giniNonNegative, prunedValues } from '../proxy';

/** One layer's pruned scores divided by the layer's mean score (so layers compare). */
function normalizedPrunedScores(layer: LayerSample): Float32Array {
  let total = 0;
  for (let k = 0; k < layer.scores.length; k++) total += layer.scores[k];
  const mean = total / layer.scores.length;
  const pruned = prunedValues(layer.scores, layer.mask);
  if (mean > 0) for (let k = 0; k < pruned.length; k++) pruned[k] /= mean;
  return pruned;
}

/** One Gini over every layer's normalized pruned scores. */
function pooledGini(parts: readonly Float32Array[]): number {
  const n = parts.reduce((a, p) => a + p.length, 0);
  const all = new Float32Array(n);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return n ? giniNonNegative(all) : NaN;
}

export const giniPooledProxy: ProxyDef<Float32Array> = {
  name: 'gini-pooled',
  description: "one Gini over all layers' pruned scores, each divided by its layer's mean score",
  sign: -1,
  accumulate: normalizedPrunedScores,
  finish: pooledGini,
};
