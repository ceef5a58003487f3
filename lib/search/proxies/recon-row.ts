import { ProxyDef, meanOfLayers } from '../proxy';
import { reconstructionErrorsOnce } from './recon';

export const reconRowProxy: ProxyDef<number> = {
  name: 'recon-row',
  description: 'mean over layers and output rows of the relative reconstruction error of each output (kept windows)',
  sign: 1,
  needs: { inputs: true },
  accumulate: (layer) => reconstructionErrorsOnce(layer).byRow,
  finish: meanOfLayers,
};
