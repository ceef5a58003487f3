/**
 * Perplexity hill climbing, the expensive baseline PHO is measured against: coordinate moves of
 * a per-coordinate step, first improvement accepted; after a pass over all coordinates in which
 * no neighbour improved, every step halves (integer steps stop at 1). The coordinate order and
 * the direction tried first are shuffled each pass by a seeded generator, so the path is a pure
 * function of the seed (and of the objective, which is deterministic here).
 */
import { CrepeError } from '../errors';
import { Params } from '../prune/strategy';
import { CpuClock } from './cpu';
import { EvalEntry, EvalLog, SearchOutcome, SearchSetup, evaluateConfiguration } from './objective';
import { secondsSince } from '../util/time';
import { Rng } from '../util/random';
import { SearchSpace, searchStart, toParams, toVector } from './space';
import { FinalMeasureOptions, checkFinalMeasure, chooseFinal, finalMeasureLabel, sequentialWindowsOf } from './final';

export interface HillClimbOptions {
  x0: readonly number[];
  lower: readonly number[];
  upper: readonly number[];
  integer: readonly boolean[];
  /** Initial step per coordinate. */
  steps: readonly number[];
  /** Steps do not halve below these (integer coordinates: at least 1). */
  minSteps: readonly number[];
  /** Budget of objective evaluations (the start point included). */
  maxEvals: number;
  /** Optional wall-clock budget; a run stopped by it is a prefix of the unlimited run. */
  maxSeconds?: number;
  seed: number;
  onEval?: (e: { x: number[]; f: number; evalIndex: number; steps: number[] }) => void;
}

export interface HillClimbResult {
  xBest: number[];
  fBest: number;
  evals: number;
  /** Times the steps were halved. */
  halvings: number;
  stopReason: 'maxEvals' | 'maxSeconds' | 'converged';
}

/** Minimize `f` by coordinate hill climbing with halving steps. NaN counts as +Infinity. */
export function hillClimb(f: (x: number[]) => number, opts: HillClimbOptions): HillClimbResult {
  const n = opts.x0.length;
  if (!(Number.isInteger(opts.maxEvals) && opts.maxEvals > 0)) throw new CrepeError(`hill climbing budget must be a positive integer, got ${opts.maxEvals}`);
  for (const [name, arr] of [['lower', opts.lower], ['upper', opts.upper], ['integer', opts.integer], ['steps', opts.steps], ['minSteps', opts.minSteps]] as const) {
    if (arr.length !== n) throw new Error(`hillClimb: ${name} has length ${arr.length}, x0 has ${n}`);
  }
  const t0 = process.hrtime.bigint();
  const rng = new Rng(opts.seed);
  const steps = opts.steps.slice();
  const minSteps = opts.minSteps.map((m, i) => (opts.integer[i] ? Math.max(1, Math.round(m)) : m));
  const seen = new Map<string, number>();
  let evals = 0;
  let halvings = 0;

  const feasible = (x: number[]): number[] =>
    x.map((v, i) => Math.min(opts.upper[i], Math.max(opts.lower[i], opts.integer[i] ? Math.round(v) : v)));
  const outOfBudget = (): HillClimbResult['stopReason'] | null => {
    if (evals >= opts.maxEvals) return 'maxEvals';
    if (opts.maxSeconds !== undefined && secondsSince(t0) >= opts.maxSeconds) return 'maxSeconds';
    return null;
  };
  /** Value of x, evaluating only points not seen before (repeats cost nothing). */
  const value = (x: number[]): number => {
    const key = x.join(',');
    const known = seen.get(key);
    if (known !== undefined) return known;
    const raw = f(x.slice());
    const fx = Number.isNaN(raw) ? Infinity : raw;
    opts.onEval?.({ x: x.slice(), f: raw, evalIndex: evals, steps: steps.slice() });
    evals++;
    seen.set(key, fx);
    return fx;
  };

  let xBest = feasible([...opts.x0]);
  let fBest = value(xBest);
  for (;;) {
    let improved = false;
    for (const i of rng.shuffle(Array.from({ length: n }, (_, k) => k))) {
      const directions = rng.next() < 0.5 ? [1, -1] : [-1, 1];
      for (const dir of directions) {
        const cand = xBest.slice();
        cand[i] += dir * steps[i];
        const x = feasible(cand);
        if (x[i] === xBest[i] || seen.has(x.join(','))) continue;
        const stop = outOfBudget();
        if (stop) return { xBest, fBest, evals, halvings, stopReason: stop };
        const fx = value(x);
        if (fx < fBest) {
          xBest = x;
          fBest = fx;
          improved = true;
          break; // first improvement: move on to the next coordinate from the new point
        }
      }
    }
    if (improved) continue;
    if (steps.every((s, i) => s <= minSteps[i])) return { xBest, fBest, evals, halvings, stopReason: 'converged' };
    for (let i = 0; i < n; i++) {
      steps[i] = opts.integer[i] ? Math.max(minSteps[i], Math.floor(steps[i] / 2)) : Math.max(minSteps[i], steps[i] / 2);
    }
    halvings++;
  }
}

/**
 * Initial steps in search coordinates: a decade for log10 coordinates, a quarter of the range for
 * linear ones, one unit (one odd kernel size) for integer ones; continuous steps may halve four
 * times (down to 1/16 of a decade, a factor of 1.15).
 */
export function defaultSteps(space: SearchSpace): { steps: number[]; minSteps: number[] } {
  const steps = space.dims.map((d) => (d.integer ? 1 : d.scale === 'log10' ? 1 : (d.upper - d.lower) / 4));
  return { steps, minSteps: steps.map((s, i) => (space.dims[i].integer ? 1 : s / 16)) };
}

export interface HillClimbSearchOptions {
  budget: number;
  seconds?: number;
  /** Search-subset size: the first N windows of the evaluation split. */
  windows: number;
  seed: number;
  /**
   * The final choice: the `candidates` best distinct configurations the climb measured (its best
   * first) measured again by `measure` (final.ts) on the first `windows` search windows; the
   * lowest wins. Without it the climb's best wins.
   */
  final?: HillClimbFinal;
  onEval?: (done: number, ppl: number) => void;
}

export interface HillClimbFinal extends FinalMeasureOptions {
  candidates: number;
  windows: number;
}

/**
 * The `count` best distinct configurations of a log's entries of one measure, best first (ties:
 * the earlier evaluation; NaN last).
 */
export function bestDistinct(entries: readonly EvalEntry[], measure: string, count: number): EvalEntry[] {
  const ranked = entries
    .filter((e) => e.measure === measure)
    .map((e, i) => ({ e, i }))
    .sort((a, b) => (Number.isNaN(a.e.objective) ? 1 : 0) - (Number.isNaN(b.e.objective) ? 1 : 0) || a.e.objective - b.e.objective || a.i - b.i);
  const seen = new Set<string>();
  const out: EvalEntry[] = [];
  for (const { e } of ranked) {
    const key = e.x.join(',');
    if (seen.has(key)) continue;
    seen.add(key);
    out.push(e);
    if (out.length >= count) break;
  }
  return out;
}

/** Hill climbing on the search-subset PPL, from RIA's values (see `searchStart`). */
export function hillClimbSearch(setup: SearchSetup, space: SearchSpace, opts: HillClimbSearchOptions): SearchOutcome {
  if (opts.final) {
    checkFinalMeasure(setup, opts.final);
    if (!(Number.isInteger(opts.final.candidates) && opts.final.candidates > 0 && Number.isInteger(opts.final.windows) && opts.final.windows > 0)) {
      throw new CrepeError(`hill climbing's final choice needs positive whole numbers of candidates and windows, got ${opts.final.candidates} and ${opts.final.windows}`);
    }
  }
  const log = new EvalLog();
  const cpu = new CpuClock();
  const t0 = process.hrtime.bigint();
  const { steps, minSteps } = defaultSteps(space);
  const paramsOf = (x: number[]): Params => toParams(space, x);
  const result = hillClimb(
    (x) => {
      const params = paramsOf(x);
      const r = evaluateConfiguration(setup, params, { windows: opts.windows });
      const ppl = r.ppl!;
      log.add('ppl', params, x, ppl, ppl, r.seconds, `ppl@${opts.windows}`);
      opts.onEval?.(log.entries.length, ppl);
      return ppl;
    },
    {
      x0: toVector(space, searchStart(space)),
      lower: space.dims.map((d) => d.lower),
      upper: space.dims.map((d) => d.upper),
      integer: space.dims.map((d) => d.integer),
      steps,
      minSteps,
      maxEvals: opts.budget,
      maxSeconds: opts.seconds,
      seed: opts.seed,
    },
  );
  let best = paramsOf(result.xBest);
  let bestValue = result.fBest;
  let pplEvals = result.evals;
  let windowEvals = result.evals * opts.windows;
  let stopReason: string = result.stopReason;
  let sequentialPrunes = 0;
  let sequentialCalibrationWindows = 0;
  if (opts.final) {
    const finalists = bestDistinct(log.entries, `ppl@${opts.windows}`, opts.final.candidates);
    const choice = chooseFinal(setup, finalists, opts.final, opts.final.windows, log, opts.onEval);
    best = { ...finalists[choice.index].params };
    bestValue = choice.ppl;
    pplEvals += finalists.length;
    windowEvals += choice.windowEvals;
    sequentialCalibrationWindows = sequentialWindowsOf(setup, opts.final);
    sequentialPrunes = sequentialCalibrationWindows ? finalists.length : 0;
    stopReason = `${stopReason}; best of its ${finalists.length} best configurations by ${finalMeasureLabel(opts.final, opts.final.windows)}`;
  }
  return {
    search: 'hillclimb',
    best,
    bestObjective: bestValue,
    bestValue,
    pplEvals,
    windowEvals,
    sequentialPrunes,
    sequentialCalibrationWindows,
    proxyEvals: 0,
    seconds: secondsSince(t0),
    cpuSeconds: cpu.seconds(),
    stopReason,
    log: log.entries,
  };
}
