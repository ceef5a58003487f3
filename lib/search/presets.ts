/**
 * Named PHO variants: the searches the search comparison (experiments/search.json) runs, by
 * name, so that `crepe search --search pho-pool` runs exactly the comparison's pho-pool.
 */
import { PhoVerify } from './pho';
import { ProxyName } from './proxies';

export interface PhoPreset {
  /** One CMA-ES run per proxy, from the same start with the same budget and seed. */
  proxies: ProxyName[];
  /** Proxy evaluations per proxy. */
  budget: number;
  /** Fraction of each layer's rows the proxies are computed on. */
  proxyRows: number;
  /** Multi-fidelity: the best candidates measured on validation windows by successive halving. */
  verify?: PhoVerify;
  summary: string;
}

export const PHO_PRESETS: Readonly<Record<string, PhoPreset>> = {
  'pho-pool': {
    proxies: ['energy-row', 'energy', 'gini-pruned-scores'],
    budget: 12,
    proxyRows: 0.25,
    verify: { candidates: 1, windows: [2, 6], eta: 3, start: true },
    summary: 'CMA-ES on energy-row, energy and gini-pruned-scores (12 evaluations each, a quarter of the rows), the best of each run and the start point picked by successive halving on 2 then 6 validation windows',
  },
  'pho-sh': {
    proxies: ['energy-row', 'energy'],
    budget: 20,
    proxyRows: 0.25,
    verify: { candidates: 2, windows: [2, 6], eta: 3, start: true },
    summary: 'CMA-ES on energy-row and energy (20 evaluations each, a quarter of the rows), the 2 best of each run and the start point picked by successive halving on 2 then 6 validation windows',
  },
  'pho-seq': {
    proxies: ['energy-row', 'energy', 'gini-pruned-scores'],
    budget: 12,
    proxyRows: 0.25,
    verify: { candidates: 1, windows: 6, start: true, final: 'sequential' },
    summary: "pho-pool's candidates (the best of each proxy run and the start point) each pruned by the sequential pipeline (as crepe prune, the search's calibration) and measured on 6 validation windows: the choice aligned with the reported number, at a calibration forward per candidate",
  },
  'pho-gini': {
    proxies: ['gini-pruned-scores'],
    budget: 40,
    proxyRows: 1,
    summary: "the paper's PHO: CMA-ES on the Gini coefficient of the pruned scores, 40 evaluations",
  },
};

export function isPhoPreset(name: string): boolean {
  return Object.prototype.hasOwnProperty.call(PHO_PRESETS, name);
}
