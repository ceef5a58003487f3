/**
 * PHO (proxy-based hyperparameter optimization, the CRePE paper's method): minimize
 * `sign * proxy` over the search space with CMA-ES. A proxy evaluation prunes from the stored
 * statistics and reads scores and masks only: no forward pass, no perplexity. The caller then
 * runs ONE full evaluation of the best configuration.
 */
import { CrepeError } from '../errors';
import { cmaes } from './cmaes';
import { CpuClock } from './cpu';
import { EvalLog, SearchOutcome, SearchSetup, evaluateConfiguration } from './objective';
import { secondsSince } from '../util/time';
import { getProxy, ProxyName } from './proxies';
import { Params } from '../prune/strategy';
import { SearchSpace, searchStart, toParams, toVector } from './space';

export interface ProxyRun {
  proxy: ProxyName;
  /** +1 minimizes the proxy, -1 maximizes it. */
  sign: 1 | -1;
}

export interface PhoOptions extends ProxyRun {
  /**
   * More proxies, each minimized by its own CMA-ES run from the same start with the same budget
   * and seed. Different proxies favour different coefficient regimes (row- versus
   * matrix-relative), so a portfolio covers models whose PPL prefers either one.
   */
  portfolio?: readonly ProxyRun[];
  /** Budget of proxy evaluations per proxy. */
  budget: number;
  seed: number;
  /** Initial CMA-ES step size in search coordinates; default a quarter of the mean coordinate range. */
  sigma0?: number;
  /**
   * Multi-fidelity: the `candidates` best distinct configurations of each proxy run are measured
   * by their PPL on the first `windows` search windows, and the lowest PPL wins. Without it the
   * best proxy value wins (the paper's PHO).
   */
  verify?: { candidates: number; windows: number };
  onEval?: (done: number, value: number) => void;
}

/** Default step size: a quarter of the mean range (log10 decades / kernel indices / linear units). */
export function defaultSigma0(space: SearchSpace): number {
  const ranges = space.dims.map((d) => d.upper - d.lower).filter((r) => r > 0);
  return ranges.length ? ranges.reduce((a, r) => a + r, 0) / ranges.length / 4 : 1;
}

export function phoSearch(setup: SearchSetup, space: SearchSpace, opts: PhoOptions): SearchOutcome {
  if (!(Number.isInteger(opts.budget) && opts.budget > 0)) throw new CrepeError(`--budget must be a positive integer, got ${opts.budget}`);
  const runs: ProxyRun[] = [{ proxy: opts.proxy, sign: opts.sign }, ...(opts.portfolio ?? [])];
  for (const r of runs) {
    if (getProxy(r.proxy).needs?.inputs && !setup.stats.blocks[0]?.get('q')?.inputs?.length) {
      throw new CrepeError(`proxy '${r.proxy}' needs statistics collected with kept calibration inputs`);
    }
  }
  if (opts.verify && !(Number.isInteger(opts.verify.candidates) && opts.verify.candidates > 0 && Number.isInteger(opts.verify.windows) && opts.verify.windows > 0)) {
    throw new CrepeError(`PHO verification needs positive whole numbers of candidates and windows, got ${opts.verify.candidates} and ${opts.verify.windows}`);
  }
  const log = new EvalLog();
  const cpu = new CpuClock();
  const t0 = process.hrtime.bigint();
  let proxyEvals = 0;
  let best: { x: number[]; objective: number; value: number } | null = null;
  let stopReason = '';
  const candidates: { x: number[]; params: Params }[] = [];
  const seen = new Set<string>();
  for (const run of runs) {
    const entries: { x: number[]; params: Params; objective: number }[] = [];
    const result = cmaes(
      (x) => {
        const params = toParams(space, x);
        const r = evaluateConfiguration(setup, params, { proxies: [run.proxy] });
        const value = r.proxies[run.proxy]!;
        log.add('proxy', params, x, value, run.sign * value, r.seconds, run.proxy);
        entries.push({ x: x.slice(), params, objective: run.sign * value });
        opts.onEval?.(log.entries.length, value);
        return run.sign * value;
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
    proxyEvals += result.evals;
    stopReason = result.stopReason;
    if (!best) best = { x: result.xBest, objective: result.fBest, value: run.sign * result.fBest };
    // NaN objectives sort last; ties keep evaluation order (a stable sort).
    const ranked = entries.slice().sort((a, b) => (Number.isNaN(a.objective) ? 1 : Number.isNaN(b.objective) ? -1 : a.objective - b.objective));
    let taken = 0;
    for (const e of ranked) {
      if (taken >= (opts.verify?.candidates ?? 0)) break;
      const key = JSON.stringify(e.params);
      if (seen.has(key)) continue;
      seen.add(key);
      candidates.push(e);
      taken++;
    }
  }
  let pplEvals = 0;
  if (opts.verify) {
    best = null;
    const measure = `ppl@${opts.verify.windows}`;
    for (const c of candidates) {
      const r = evaluateConfiguration(setup, c.params, { windows: opts.verify.windows });
      pplEvals++;
      log.add('ppl', c.params, c.x, r.ppl!, r.ppl!, r.seconds, measure);
      opts.onEval?.(log.entries.length, r.ppl!);
      if (!best || r.ppl! < best.objective) best = { x: c.x, objective: r.ppl!, value: r.ppl! };
    }
    stopReason = `${stopReason}; best of ${candidates.length} candidates by ${measure}`;
  }
  return {
    search: 'pho',
    best: toParams(space, best!.x),
    bestObjective: best!.objective,
    bestValue: best!.value,
    pplEvals,
    proxyEvals,
    seconds: secondsSince(t0),
    cpuSeconds: cpu.seconds(),
    stopReason,
    log: log.entries,
  };
}
