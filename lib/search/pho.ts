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
import { getProxy, ProxyAccumulator, ProxyName } from './proxies';
import { HalvingResult, checkRungs, successiveHalving } from './halving';
import { LlamaModel } from '../model/runtime';
import { Params } from '../prune/strategy';
import { SearchSpace, searchStart, toParams, toVector } from './space';
import { FinalMeasure, FinalMeasureOptions, checkFinalMeasure, finalMeasureLabel, finalRuntime, searchWindowNlls, sequentialWindowsOf } from './final';

export interface ProxyRun {
  proxy: ProxyName;
  /** +1 minimizes the proxy, -1 maximizes it. */
  sign: 1 | -1;
}

export interface PhoVerify {
  candidates: number;
  /** Cumulative windows per successive-halving rung (one number: one rung). */
  windows: number | readonly number[];
  /** Keep ceil(n / eta) after each rung but the last (default 3). */
  eta?: number;
  /** Also measure the search's start point (the strategy's declared start, e.g. RIA's values for CRePE). */
  start?: boolean;
  /**
   * What the last rung measures (final.ts): 'search' (default) = the search's one-shot PPL,
   * extended from the earlier rungs' windows; 'pruned' or 'sequential' = the survivors measured
   * afresh on all of the last rung's windows by that measurement (with one rung: every candidate).
   */
  final?: FinalMeasure;
  /** 'sequential' only: calibration windows of the final measurement (default: the search's). */
  finalCalibrationWindows?: number;
}

/** The final measurement a verification asks for. */
export function verifyFinal(v: PhoVerify): FinalMeasureOptions {
  return { measure: v.final ?? 'search', ...(v.finalCalibrationWindows !== undefined ? { calibrationWindows: v.finalCalibrationWindows } : {}) };
}

export const DEFAULT_ETA = 3;

/** The rung list of a verification: one number is one rung. */
export function verifyRungs(v: PhoVerify): number[] {
  return typeof v.windows === 'number' ? [v.windows] : [...v.windows];
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
   * Multi-fidelity: the `candidates` best distinct configurations of each proxy run (plus the
   * search's start point when `start` is set) are measured by their PPL on the search windows by
   * successive halving (halving.ts): every candidate on the first `windows[0]` windows, the best
   * 1/eta (default 3) on up to `windows[1]`, and so on; the lowest PPL at the last rung wins.
   * Without it the best proxy value wins (the paper's PHO).
   */
  verify?: PhoVerify;
  /**
   * Proxies computed on an evenly spaced fraction of each layer's rows (evaluator.pruneSampled):
   * a cheaper estimate of the same proxy. Default 1 (every row).
   */
  proxyRows?: number;
  onEval?: (done: number, value: number) => void;
}

/** Default step size: a quarter of the mean range (log10 decades / kernel indices / linear units). */
export function defaultSigma0(space: SearchSpace): number {
  const ranges = space.dims.map((d) => d.upper - d.lower).filter((r) => r > 0);
  return ranges.length ? ranges.reduce((a, r) => a + r, 0) / ranges.length / 4 : 1;
}

export interface PhoOutcome extends SearchOutcome {
  /** Window evaluations of the verification in all (a PPL evaluation on W windows counts W). */
  windowEvals: number;
}

export function phoSearch(setup: SearchSetup, space: SearchSpace, opts: PhoOptions): PhoOutcome {
  if (!(Number.isInteger(opts.budget) && opts.budget > 0)) throw new CrepeError(`--budget must be a positive integer, got ${opts.budget}`);
  const runs: ProxyRun[] = [{ proxy: opts.proxy, sign: opts.sign }, ...(opts.portfolio ?? [])];
  for (const r of runs) {
    if (getProxy(r.proxy).needs?.inputs && !setup.stats.blocks[0]?.get('q')?.inputs?.length) {
      throw new CrepeError(`proxy '${r.proxy}' needs statistics collected with kept calibration inputs`);
    }
  }
  if (opts.verify) {
    const problem = checkRungs(verifyRungs(opts.verify));
    if (!(Number.isInteger(opts.verify.candidates) && opts.verify.candidates > 0) || problem) {
      throw new CrepeError(`PHO verification needs a positive whole number of candidates and increasing window counts, got ${opts.verify.candidates} and ${verifyRungs(opts.verify).join(', ')}`);
    }
    if (!((opts.verify.eta ?? DEFAULT_ETA) >= 2)) throw new CrepeError(`PHO verification: eta must be at least 2, got ${opts.verify.eta}`);
    checkFinalMeasure(setup, verifyFinal(opts.verify));
  }
  const proxyRows = opts.proxyRows ?? 1;
  if (!(proxyRows > 0 && proxyRows <= 1)) throw new CrepeError(`PHO proxy row fraction must be in (0, 1], got ${proxyRows}`);
  const log = new EvalLog();
  const cpu = new CpuClock();
  const proxyOf = (params: Params, proxy: ProxyName): { value: number; seconds: number } => {
    if (proxyRows === 1 || !setup.evaluator) {
      const r = evaluateConfiguration(setup, params, { proxies: [proxy] });
      return { value: r.proxies[proxy]!, seconds: r.seconds };
    }
    const t = process.hrtime.bigint();
    const acc = new ProxyAccumulator([proxy]);
    setup.evaluator.pruneSampled(params, proxyRows, (layer) => acc.add(layer));
    return { value: acc.values()[proxy], seconds: secondsSince(t) };
  };
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
        const r = proxyOf(params, run.proxy);
        const value = r.value;
        log.add('proxy', params, x, value, run.sign * value, r.seconds, proxyRows === 1 ? run.proxy : `${run.proxy}@rows${proxyRows}`);
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
  let windowEvals = 0;
  let sequentialPrunes = 0;
  let sequentialCalibrationWindows = 0;
  if (opts.verify) {
    if (opts.verify.start) {
      const x = toVector(space, searchStart(space));
      const params = toParams(space, x);
      const key = JSON.stringify(params);
      if (!seen.has(key)) candidates.push({ x, params });
    }
    const rungs = verifyRungs(opts.verify);
    const final = verifyFinal(opts.verify);
    const v = verifyCandidates(setup, candidates, rungs, opts.verify.eta ?? DEFAULT_ETA, final, log, opts.onEval);
    best = { x: v.best.x, objective: v.ppl, value: v.ppl };
    pplEvals = v.pplEvals;
    windowEvals = v.windowEvals;
    sequentialCalibrationWindows = sequentialWindowsOf(setup, final);
    sequentialPrunes = sequentialCalibrationWindows ? v.finalModels : 0;
    const last = final.measure === 'search' ? '' : ` (last rung: ${finalMeasureLabel(final, rungs[rungs.length - 1])})`;
    stopReason = `${stopReason}; best of ${candidates.length} candidates by successive halving on ${rungs.join(', ')} windows${last}`;
  }
  return {
    search: 'pho',
    best: toParams(space, best!.x),
    bestObjective: best!.objective,
    bestValue: best!.value,
    pplEvals,
    windowEvals,
    sequentialPrunes,
    sequentialCalibrationWindows,
    proxyEvals,
    seconds: secondsSince(t0),
    cpuSeconds: cpu.seconds(),
    stopReason,
    log: log.entries,
  };
}

/**
 * Successive halving over the candidates on the search windows: each candidate's masks are
 * selected once, each window's NLL computed once per candidate. Logs one 'ppl' entry per
 * candidate and rung: its PPL on the windows measured so far (measure 'ppl@W'). A final
 * measurement other than the search's own measures the last rung's survivors afresh with it
 * (one model per survivor, measure e.g. 'sequential@W').
 */
function verifyCandidates(
  setup: SearchSetup,
  candidates: readonly { x: number[]; params: Params }[],
  rungs: readonly number[],
  eta: number,
  final: FinalMeasureOptions,
  log: EvalLog,
  onEval?: (done: number, value: number) => void,
): { best: { x: number[]; params: Params }; ppl: number; pplEvals: number; windowEvals: number; finalModels: number } {
  const ev = setup.evaluator;
  if (!ev) throw new CrepeError(`PHO verification needs a strategy the search evaluator supports (score-then-select); ${setup.strategy.name} is not one`);
  // each candidate's pruned model is built once and kept while successive halving runs
  const runtimes = new Map<number, LlamaModel>();
  const finalRuntimes = new Map<number, LlamaModel>();
  const sums = new Map<number, number>();
  const other = final.measure !== 'search';
  const lastRung = rungs.length - 1;
  // search windows span the model's whole context (datasetWindows' default)
  const tokensPerWindow = setup.model.source.config.maxSeqLen - 1;
  let pplEvals = 0;
  let finalModels = 0;
  let result: HalvingResult<{ x: number[]; params: Params }>;
  try {
    result = successiveHalving(candidates, { windows: rungs, eta, remeasureLast: other }, (c, index, from, to, rung) => {
      const t = process.hrtime.bigint();
      const isFinal = other && rung === lastRung;
      if (isFinal && from === 0) sums.delete(index);
      const cache = isFinal ? finalRuntimes : runtimes;
      let runtime = cache.get(index);
      if (!runtime) {
        runtime = isFinal ? finalRuntime(setup, c.params, final) : ev.prunedRuntime(ev.prune(c.params));
        cache.set(index, runtime);
        if (isFinal) finalModels++;
        // the one-shot model is not needed again once its candidate reaches the final measurement
        if (isFinal) {
          runtimes.get(index)?.dispose();
          runtimes.delete(index);
        }
      }
      const nlls = isFinal ? searchWindowNlls(setup, runtime, from, to) : ev.windowNlls(runtime, setup.dataset, from, to);
      const sum = (sums.get(index) ?? 0) + nlls.reduce((a, v) => a + v, 0);
      sums.set(index, sum);
      const ppl = Math.exp(sum / (to * tokensPerWindow));
      pplEvals++;
      log.add('ppl', c.params, c.x, ppl, ppl, secondsSince(t), isFinal ? finalMeasureLabel(final, to) : `ppl@${to}`);
      onEval?.(log.entries.length, ppl);
      return nlls;
    });
  } finally {
    for (const r of runtimes.values()) r.dispose();
    for (const r of finalRuntimes.values()) r.dispose();
  }
  const best = result.best;
  return { best: best.candidate, ppl: Math.exp(best.lossSum / (best.windows * tokensPerWindow)), pplEvals, windowEvals: result.windowEvals, finalModels };
}
