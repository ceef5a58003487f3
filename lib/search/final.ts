/**
 * What a search's final choice measures. The search loop measures configurations one-shot
 * (every layer pruned at once from stored statistics, evaluator.ts), which is cheap but can rank
 * them differently from the sequential pipeline that makes the reported model. The final choice
 * between a few finalists can measure instead:
 *
 * - 'search': the search's own one-shot PPL (what the loop measured);
 * - 'pruned': one-shot PPL from 'pruned' statistics (the block inputs one sequential pass at the
 *   method's default parameters sees: objective.ts StatsKind), collected once per setup
 *   (`withPrunedEvaluator`), so a finalist costs what a one-shot measurement costs;
 * - 'sequential': the configuration pruned by the standard sequential pipeline with the search's
 *   calibration, exactly as `crepe prune` does (a fresh calibration forward per finalist: the
 *   expensive, faithful choice); `calibrationWindows` draws fewer calibration windows with the
 *   same seed (for the built-in datasets the first of the search's draw: cheaper, less faithful).
 *
 * Every measure is a perplexity on the search's own validation windows (never the test split).
 */
import { CrepeError } from '../errors';
import { LlamaModel } from '../model/runtime';
import { pruneModel } from '../prune/pipeline';
import { Params } from '../prune/strategy';
import { secondsSince } from '../util/time';
import { ConfigEvaluator } from './evaluator';
import { EvalLog, SearchSetup, calibrateOnce } from './objective';

export const FINAL_MEASURES = ['search', 'pruned', 'sequential'] as const;
export type FinalMeasure = (typeof FINAL_MEASURES)[number];

export interface FinalMeasureOptions {
  measure: FinalMeasure;
  /** 'sequential' only: calibrate on N windows drawn as the search's (same seed; default: as many as the search's). */
  calibrationWindows?: number;
}

/** The name a final measurement is logged under: 'sequential@W', 'pruned@W', 'ppl@W' for the search's own. */
export function finalMeasureLabel(opts: FinalMeasureOptions, windows: number): string {
  if (opts.measure === 'search') return `ppl@${windows}`;
  const cal = opts.measure === 'sequential' && opts.calibrationWindows !== undefined ? `-cal${opts.calibrationWindows}` : '';
  return `${opts.measure}${cal}@${windows}`;
}

/** Check the options against a setup before a search spends anything. */
export function checkFinalMeasure(setup: SearchSetup, opts: FinalMeasureOptions): void {
  if (!(FINAL_MEASURES as readonly string[]).includes(opts.measure)) throw new CrepeError(`final measurement must be one of ${FINAL_MEASURES.join(', ')}, got '${opts.measure}'`);
  if (!setup.evaluator) throw new CrepeError(`a final measurement needs a strategy the search evaluator supports (score-then-select); ${setup.strategy.name} is not one`);
  if (opts.measure === 'pruned' && !setup.prunedEvaluator) throw new CrepeError("the 'pruned' final measurement needs the setup's 'pruned' statistics (withPrunedEvaluator)");
  const cw = opts.calibrationWindows;
  if (cw !== undefined) {
    if (opts.measure !== 'sequential') throw new CrepeError(`calibrationWindows applies to the 'sequential' final measurement only, not '${opts.measure}'`);
    if (!(Number.isInteger(cw) && cw > 0 && cw <= setup.calibration.nsamples)) {
      throw new CrepeError(`final calibrationWindows must be a whole number from 1 to the calibration's ${setup.calibration.nsamples} windows, got ${cw}`);
    }
  }
}

/**
 * The model `params` gives under the final measurement, ready for forward passes (the caller
 * disposes it).
 */
export function finalRuntime(setup: SearchSetup, params: Params, opts: FinalMeasureOptions): LlamaModel {
  if (opts.measure === 'sequential') {
    const calibration = opts.calibrationWindows === undefined ? setup.calibration : { ...setup.calibration, nsamples: opts.calibrationWindows };
    const outcome = pruneModel(setup.model, { method: setup.strategy.name, params, structure: setup.structure, calibration, propagate: 'pruned' });
    return LlamaModel.fromSource(outcome.source);
  }
  const ev = opts.measure === 'pruned' ? setup.prunedEvaluator : setup.evaluator;
  if (!ev) throw new CrepeError(`no evaluator for the '${opts.measure}' final measurement`);
  return ev.prunedRuntime(ev.prune(params));
}

/**
 * Per-window NLL sums of search windows [from, to) of `runtime` (as the search evaluator draws
 * its windows: first or spread).
 */
export function searchWindowNlls(setup: SearchSetup, runtime: LlamaModel, from: number, to: number): number[] {
  if (!setup.evaluator) throw new CrepeError(`${setup.strategy.name} has no search evaluator`);
  return setup.evaluator.windowNlls(runtime, setup.dataset, from, to);
}

/** The PPL of `params` under the final measurement on the first `windows` search windows. */
export function finalPerplexity(setup: SearchSetup, params: Params, opts: FinalMeasureOptions, windows: number): number {
  const runtime = finalRuntime(setup, params, opts);
  try {
    const nlls = searchWindowNlls(setup, runtime, 0, windows);
    return Math.exp(nlls.reduce((a, v) => a + v, 0) / (windows * (setup.model.source.config.maxSeqLen - 1)));
  } finally {
    runtime.dispose();
  }
}

/** Calibration windows one final measurement's sequential pruning uses (0: it does not prune sequentially). */
export function sequentialWindowsOf(setup: SearchSetup, opts: FinalMeasureOptions): number {
  return opts.measure === 'sequential' ? opts.calibrationWindows ?? setup.calibration.nsamples : 0;
}

export interface FinalChoice {
  /** Index of the chosen candidate (lowest final PPL; ties: the earlier one). */
  index: number;
  ppl: number;
  /** Each candidate's final PPL, in input order. */
  ppls: number[];
  windowEvals: number;
}

/**
 * Measure every candidate with the final measurement on the first `windows` search windows and
 * choose the lowest PPL, logging one entry per candidate (measure from `finalMeasureLabel`).
 */
export function chooseFinal(
  setup: SearchSetup,
  candidates: readonly { x: number[]; params: Params }[],
  opts: FinalMeasureOptions,
  windows: number,
  log: EvalLog,
  onEval?: (done: number, value: number) => void,
): FinalChoice {
  if (candidates.length === 0) throw new Error('chooseFinal: no candidates');
  checkFinalMeasure(setup, opts);
  const label = finalMeasureLabel(opts, windows);
  const ppls = candidates.map((c) => {
    const t = process.hrtime.bigint();
    const ppl = finalPerplexity(setup, c.params, opts, windows);
    log.add('ppl', c.params, c.x, ppl, ppl, secondsSince(t), label);
    onEval?.(log.entries.length, ppl);
    return ppl;
  });
  let index = 0;
  const key = (v: number): number => (Number.isNaN(v) ? Infinity : v);
  ppls.forEach((p, i) => {
    if (key(p) < key(ppls[index])) index = i;
  });
  return { index, ppl: ppls[index], ppls, windowEvals: candidates.length * windows };
}

/**
 * The setup with a second evaluator on 'pruned' statistics (for the 'pruned' final measurement),
 * and the wall seconds the extra sequential pass and caches took (a one-time cost: count it with
 * the calibration, not the search loop).
 */
export function withPrunedEvaluator(setup: SearchSetup): { setup: SearchSetup; seconds: number } {
  const t0 = process.hrtime.bigint();
  const opts = { statsKind: 'pruned' as const, keepInputs: 0, dataset: setup.dataset, windowSample: setup.evaluator?.windowSample };
  const pruned = calibrateOnce(setup.model, setup.strategy, setup.structure, setup.calibration, opts);
  const evaluator: ConfigEvaluator | undefined = pruned.evaluator;
  if (!evaluator) throw new CrepeError(`the 'pruned' final measurement needs a strategy the search evaluator supports; ${setup.strategy.name} is not one`);
  return { setup: { ...setup, prunedEvaluator: evaluator }, seconds: secondsSince(t0) };
}
