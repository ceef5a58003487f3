/**
 * Search defaults shared by the `crepe search` command and the search-comparison config
 * (lib/experiments/search-config.ts). They live in the library layer so that configs and
 * commands read one value and nothing below the CLI imports from lib/cli.
 */
import { ProxyName } from './proxies';

export const SEARCHES = ['hillclimb', 'pho'] as const;
export type SearchName = (typeof SEARCHES)[number];

/**
 * The proxy PHO uses unless told otherwise. In our proxy studies (stories260K and
 * babyllama-char, 50% unstructured and 2:4, 40 configurations each; results/proxy-study-*.md)
 * energy-row has the best worst-case Spearman correlation with PPL (0.63); fisher-row has the
 * best mean (0.72 vs 0.68) but a slightly lower worst case (0.62) and needs a backward pass per
 * Fisher window; the paper's Gini of pruned scores has an unstable sign (min 0.15). So the
 * default is energy-row. See results/search-comparison.md for what each proxy finds.
 */
export const DEFAULT_PROXY: ProxyName = 'energy-row';

/** Default budgets: hill climbing in PPL evaluations, PHO in proxy evaluations. */
export const DEFAULT_BUDGET: Record<SearchName, number> = { hillclimb: 40, pho: 40 };
