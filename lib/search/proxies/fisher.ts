import { CrepeError } from '../../errors';
import { LayerSample, ProxyDef, sumOfLayers } from '../proxy';

/** ½ sum over pruned weights of F_ij W_ij^2: OBD's estimate of the loss increase from this layer alone. */
export function fisherLoss(layer: LayerSample): number {
  const f = layer.fisher;
  if (!f) throw new CrepeError("proxy 'fisher' needs the Fisher diagonal: calibrate with fisherWindows > 0");
  let sum = 0;
  for (let k = 0; k < layer.mask.length; k++) if (layer.mask[k] === 0) sum += f[k] * layer.weight[k] * layer.weight[k];
  return sum / 2;
}

/** Per-layer values are already in loss units (nats/token), so the layers add up. */
export const fisherProxy: ProxyDef<number> = {
  name: 'fisher',
  description: 'sum over layers of ½ sum_pruned F_ij W_ij^2, F = token-level Fisher diagonal of the weights: the estimated calibration-loss increase (nats/token)',
  sign: 1,
  needs: { fisher: true },
  accumulate: fisherLoss,
  finish: sumOfLayers,
};
