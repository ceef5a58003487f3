import { CrepeError } from '../../errors';
import { LayerSample, ProxyDef, sumOfLayers } from '../proxy';

/** ½ sum over pruned weights of s_i W_ij^2 E[x_j^2], the rank-one factorisation of fisherLoss's F. */
export function fisherRowLoss(layer: LayerSample): number {
  const s = layer.outputFisher;
  if (!s) throw new CrepeError("proxy 'fisher-row' needs the Fisher diagonal: calibrate with fisherWindows > 0");
  const sq = layer.stats.sumSq;
  const tokens = Math.max(layer.stats.tokens, 1);
  let sum = 0;
  for (let r = 0, k = 0; r < layer.rows; r++) {
    let row = 0;
    for (let c = 0; c < layer.cols; c++, k++) if (layer.mask[k] === 0) row += layer.weight[k] * layer.weight[k] * sq[c];
    sum += s[r] * row;
  }
  return sum / tokens / 2;
}

/** Per-layer values are already in loss units (nats/token), so the layers add up. */
export const fisherRowProxy: ProxyDef<number> = {
  name: 'fisher-row',
  description: "sum over layers of ½ sum_pruned s_i W_ij^2 E[x_j^2]: 'fisher' with F_ij factored into output sensitivity s_i = E[g_i^2] times input energy (less noisy)",
  sign: 1,
  needs: { fisher: true },
  accumulate: fisherRowLoss,
  finish: sumOfLayers,
};
