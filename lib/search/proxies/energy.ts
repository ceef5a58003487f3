import { LayerSample, ProxyDef, meanOfLayers } from '../proxy';
import { layerEnergy } from './energy-terms';

/**
 * Share of the layer's "energy" sum_ij W_ij^2 ||X_j||^2 / N that the pruned weights carry: the
 * expected squared output error if input channels were uncorrelated (N = calibration tokens,
 * which cancels in the ratio). In [0, 1]; 0 for an empty layer.
 */
export function prunedEnergyShare(layer: LayerSample): number {
  const { energy, total } = layerEnergy(layer);
  let pruned = 0;
  for (let k = 0; k < energy.length; k++) if (layer.mask[k] === 0) pruned += energy[k];
  return total > 0 ? pruned / total : 0;
}

export const energyProxy: ProxyDef<number> = {
  name: 'energy',
  description: 'mean over layers of the pruned share of sum W_ij^2 ||X_j||^2 (diagonal estimate of the output error)',
  sign: 1,
  accumulate: prunedEnergyShare,
  finish: meanOfLayers,
};
