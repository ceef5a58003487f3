/**
 * PHO (proxy-based hyperparameter optimization, the CRePE paper's method): minimize
 * `sign * proxy` over the search space with CMA-ES. A proxy evaluation prunes from the stored
 * statistics and reads scores and masks only: no forward pass, no perplexity. The caller then
 * runs ONE full evaluation of the best configuration.
 */
import { CrepeError } from '../errors';
import { cmaes } from './cmaes';
import { EvalLog, SearchOutcome, SearchSetup, cpuSecondsSince, evaluateConfiguration, secondsSince } from './objective';
import { PROXIES, ProxyName } from './proxies';
import { SearchSpace, searchStart, toParams, toVector } from './space';

export interface PhoOptions {
  proxy: ProxyName;
  /** +1 minimizes the proxy, -1 maximizes it. */
  sign: 1 | -1;
  /** Budget of proxy evaluations. */
  budget: number;
  seed: number;
  /** Initial CMA-ES step size in search coordinates; default a quarter of the mean coordinate range. */
  sigma0?: number;
  onEval?: (done: number, proxy: number) => void;
}

/** Default step size: a quarter of the mean range (log10 decades / kernel indices / linear units). */
export function defaultSigma0(space: SearchSpace): number {
  const ranges = space.dims.map((d) => d.upper - d.lower).filter((r) => r > 0);
  return ranges.length ? ranges.reduce((a, r) => a + r, 0) / ranges.length / 4 : 1;
}

export function phoSearch(setup: SearchSetup, space: SearchSpace, opts: PhoOptions): SearchOutcome {
  if (!(Number.isInteger(opts.budget) && opts.budget > 0)) throw new CrepeError(`--budget must be a positive integer, got ${opts.budget}`);
  if (PROXIES[opts.proxy].needsInputs && !setup.stats.blocks[0]?.get('q')?.inputs?.length) {
    throw new CrepeError(`proxy '${opts.proxy}' needs statistics collected with kept calibration inputs`);
  }
  const log = new EvalLog();
  const cpu0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const result = cmaes(
    (x) => {
      const params = toParams(space, x);
      const r = evaluateConfiguration(setup, params, { proxies: [opts.proxy] });
      const value = r.proxies[opts.proxy]!;
      log.add('proxy', params, x, value, opts.sign * value, r.seconds);
      opts.onEval?.(log.entries.length, value);
      return opts.sign * value;
    },
    {
      x0: toVector(space, searchStart(space)),
      sigma0: opts.sigma0 ?? defaultSigma0(space),
      seed: opts.seed,
      maxEvals: opts.budget,
      lower: space.dims.map((d) => d.lower),
      upper: space.dims.map((d) => d.upper),
      integer: space.dims.map((d) => d.integer),
    },
  );
  const best = toParams(space, result.xBest);
  return {
    search: 'pho',
    best,
    bestObjective: result.fBest,
    bestValue: opts.sign * result.fBest,
    pplEvals: 0,
    proxyEvals: result.evals,
    seconds: secondsSince(t0),
    cpuSeconds: cpuSecondsSince(cpu0),
    stopReason: result.stopReason,
    log: log.entries,
  };
}
