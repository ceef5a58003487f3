/**
 * The proxy study: how well does each proxy rank configurations the way perplexity does?
 * Sample configurations uniformly in the search space (seeded), measure every proxy and the PPL
 * of each, and report rank correlations. A positive correlation means "lower proxy, lower PPL",
 * i.e. the proxy should be minimized (sign +1).
 */
import * as vega from 'vega';
import * as vl from 'vega-lite';
import { Params } from '../prune/strategy';
import { csvText } from '../util/csv';
import { SearchSetup, evaluateConfiguration } from './objective';
import { listProxies, ProxyName } from './proxies';
import { Rng } from '../util/random';
import { kendallTau, spearman, spearmanBootstrap } from './rank';
import { SearchSpace, formatParams, sampleUniform, toParams } from './space';

export interface StudySample {
  index: number;
  params: Params;
  proxies: Partial<Record<ProxyName, number>>;
  ppl: number;
  seconds: number;
}

export interface StudyOptions {
  samples: number;
  seed: number;
  /** PPL on the first N evaluation windows, or 'all'. */
  windows: number | 'all';
  proxies?: readonly ProxyName[];
  onSample?: (done: number) => void;
}

export function sampleConfigurations(space: SearchSpace, count: number, seed: number): Params[] {
  const rng = new Rng(seed);
  return Array.from({ length: count }, () => toParams(space, sampleUniform(space, rng)));
}

export function runProxyStudy(setup: SearchSetup, space: SearchSpace, opts: StudyOptions): StudySample[] {
  const proxies = opts.proxies ?? listProxies();
  return sampleConfigurations(space, opts.samples, opts.seed).map((params, index) => {
    const r = evaluateConfiguration(setup, params, { proxies, windows: opts.windows });
    opts.onSample?.(index + 1);
    return { index, params, proxies: r.proxies, ppl: r.ppl!, seconds: r.seconds };
  });
}

export interface ProxyCorrelation {
  proxy: ProxyName;
  /** Samples where both the proxy and the PPL are finite. */
  n: number;
  spearman: number;
  /** Percentile-bootstrap 95% interval of the Spearman rho (2000 resamples, seeded). */
  spearmanCi95: [number, number];
  kendall: number;
  /** The direction the data supports: +1 minimize the proxy, -1 maximize it. */
  sign: 1 | -1;
}

/** `bootstrapSeed` seeds the bootstrap resampling of every proxy's rho interval. */
export function correlations(samples: readonly StudySample[], proxies: readonly ProxyName[] = listProxies(), bootstrapSeed = 0): ProxyCorrelation[] {
  return proxies.map((proxy) => {
    const pairs = samples.filter((s) => Number.isFinite(s.proxies[proxy]) && Number.isFinite(s.ppl));
    const x = pairs.map((s) => s.proxies[proxy]!);
    const y = pairs.map((s) => s.ppl);
    const rho = pairs.length >= 2 ? spearman(x, y) : NaN;
    const tau = pairs.length >= 2 ? kendallTau(x, y) : NaN;
    const spearmanCi95 = spearmanBootstrap(x, y, { seed: bootstrapSeed });
    return { proxy, n: pairs.length, spearman: rho, spearmanCi95, kendall: tau, sign: rho < 0 ? -1 : 1 };
  });
}

export function studyCsv(samples: readonly StudySample[], proxies: readonly ProxyName[] = listProxies()): string {
  const names = samples.length ? Object.keys(samples[0].params) : [];
  return csvText(
    ['index', ...names, ...proxies, 'ppl', 'seconds'],
    samples.map((s) => [s.index, ...names.map((n) => s.params[n]), ...proxies.map((p) => s.proxies[p]), s.ppl, s.seconds.toFixed(4)]),
  );
}

export interface StudyContext {
  model: string;
  method: string;
  structure: string;
  sparsity: number;
  statsKind: string;
  pplOn: string;
  seed: number;
  space: string;
}

export function studyMarkdown(ctx: StudyContext, rows: readonly ProxyCorrelation[], samples: readonly StudySample[]): string {
  const best = samples.reduce<StudySample | null>((b, s) => (b === null || s.ppl < b.ppl ? s : b), null);
  const f = (v: number): string => (Number.isFinite(v) ? v.toFixed(3) : 'n/a');
  return [
    `# Proxy study: ${ctx.model}, ${ctx.method}, ${ctx.structure}${ctx.structure === 'unstructured' ? ` ${ctx.sparsity}` : ''}`,
    '',
    `${samples.length} configurations drawn uniformly in the search space (${ctx.space}), seed ${ctx.seed};`,
    `statistics: ${ctx.statsKind}; PPL on ${ctx.pplOn}. Correlations are between each proxy and the PPL:`,
    'positive means a lower proxy goes with a lower PPL (minimize, sign +1). The rho interval is a',
    `percentile bootstrap over the ${samples.length} configurations (2000 resamples, seed ${ctx.seed}).`,
    '',
    '| proxy | n | Spearman rho | rho 95% CI | Kendall tau | sign |',
    '|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.proxy} | ${r.n} | ${f(r.spearman)} | [${f(r.spearmanCi95[0])}, ${f(r.spearmanCi95[1])}] | ${f(r.kendall)} | ${r.sign > 0 ? '+1' : '-1'} |`),
    '',
    best ? `Lowest PPL sampled: ${best.ppl.toFixed(4)} at ${formatParams(best.params)}.` : '',
    '',
  ].join('\n');
}

/** A scatter plot of PPL (log scale) against one proxy, rendered to SVG with vega-lite + vega. */
export async function scatterSvg(samples: readonly StudySample[], proxy: ProxyName, title: string): Promise<string> {
  const values = samples
    .filter((s) => Number.isFinite(s.proxies[proxy]) && Number.isFinite(s.ppl))
    .map((s) => ({ proxy: s.proxies[proxy]!, ppl: s.ppl }));
  const spec: vl.TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title,
    width: 360,
    height: 260,
    data: { values },
    mark: { type: 'point', filled: true, opacity: 0.7 },
    encoding: {
      x: { field: 'proxy', type: 'quantitative', title: proxy, scale: { zero: false } },
      y: { field: 'ppl', type: 'quantitative', title: 'PPL (log scale)', scale: { type: 'log' } },
    },
  };
  const view = new vega.View(vega.parse(vl.compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
