import { LayerSample, ProxyDef, meanOfLayers } from '../proxy';
import { layerEnergy } from './energy-terms';

/**
 * The same share per output row, averaged over the rows with non-zero energy: every output
 * neuron counts equally, however large its weights.
 */
export function prunedEnergyShareByRow(layer: LayerSample): number {
  const { energy, rowTotals } = layerEnergy(layer);
  let sum = 0;
  let rowsCounted = 0;
  for (let r = 0, k = 0; r < layer.rows; r++) {
    let pruned = 0;
    for (let c = 0; c < layer.cols; c++, k++) if (layer.mask[k] === 0) pruned += energy[k];
    if (rowTotals[r] > 0) {
      sum += pruned / rowTotals[r];
      rowsCounted++;
    }
  }
  return rowsCounted ? sum / rowsCounted : 0;
}

export const energyRowProxy: ProxyDef<number> = {
  name: 'energy-row',
  description: 'mean over layers and output rows of the pruned share of the row energy sum_j W_ij^2 ||X_j||^2',
  sign: 1,
  accumulate: prunedEnergyShareByRow,
  finish: meanOfLayers,
};
