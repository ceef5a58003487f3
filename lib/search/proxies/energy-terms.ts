import { LayerSample } from '../proxy';

/** A layer's energies W_ij^2 ||X_j||^2 and their row sums: they do not depend on the mask. */
export interface LayerEnergy {
  energy: Float32Array;
  rowTotals: Float64Array;
  total: number;
}

/**
 * Cached per weight array (a search evaluates the same layers, with the same statistics, under
 * many masks), so a configuration costs one masked pass instead of recomputing the energies.
 */
const cache = new WeakMap<Float32Array, { stats: LayerSample['stats']; value: LayerEnergy }>();

export function layerEnergy(layer: LayerSample): LayerEnergy {
  const hit = cache.get(layer.weight);
  if (hit && hit.stats === layer.stats) return hit.value;
  const sq = layer.stats.sumSq;
  const energy = new Float32Array(layer.weight.length);
  const rowTotals = new Float64Array(layer.rows);
  let total = 0;
  for (let r = 0, k = 0; r < layer.rows; r++) {
    let row = 0;
    for (let c = 0; c < layer.cols; c++, k++) {
      const e = layer.weight[k] * layer.weight[k] * sq[c];
      energy[k] = e;
      row += e;
    }
    rowTotals[r] = row;
    total += row;
  }
  const value = { energy, rowTotals, total };
  cache.set(layer.weight, { stats: layer.stats, value });
  return value;
}
