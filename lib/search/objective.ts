/**
 * What a hyperparameter search evaluates: calibrate once, then, per configuration, prune from
 * the stored statistics (no calibration forward) and measure proxies and/or perplexity on a
 * small search subset. Final numbers come from `fullEvaluation`, which prunes with the standard
 * pipeline (exactly what `crepe prune` does) and evaluates every window.
 */
import { TINYSTORIES_TEST, TINYSTORIES_VALIDATION, assertNotTest } from '../data/datasets';
import { EvalRecord, evaluateSource } from '../eval/evaluate';
import { OpenedModel } from '../model/resolve';
import { LinearName, linearShape } from '../model/types';
import { CalibrationSpec, CalibrationStats, collectDenseStats, pruneModel } from '../prune/pipeline';
import { Structure } from '../prune/select';
import { InputStats } from '../prune/stats';
import { Params, Strategy, resolveParams } from '../prune/strategy';
import { csvText } from '../util/csv';
import { secondsSince } from '../util/time';
import { ConfigEvaluator, WindowSample } from './evaluator';
import { WeightFisher, collectWeightFisher } from './fisher';
import { getProxy, ProxyAccumulator, ProxyName } from './proxies';

/** Searches and proxy studies measure on the validation split; never on the test split. */
export const SEARCH_DATASET = TINYSTORIES_VALIDATION;
/** Final ("full PPL") numbers are reported on the test split, disjoint from SEARCH_DATASET. */
export const REPORT_DATASET = TINYSTORIES_TEST;

/**
 * Where the statistics come from: 'dense' = every block's input in the dense model (one pass);
 * 'pruned' = the inputs seen by a sequential pruning pass with the method's default parameters,
 * closer to what the final pipeline sees but one default-specific pass.
 */
export type StatsKind = 'dense' | 'pruned';

export interface SearchSetup {
  model: OpenedModel;
  strategy: Strategy;
  structure: Structure;
  calibration: CalibrationSpec;
  statsKind: StatsKind;
  stats: CalibrationStats;
  /** Wall seconds spent collecting the statistics (paid once per search). */
  calibrationSeconds: number;
  /** The weights' Fisher diagonal, for the 'fisher' proxy (only PHO with that proxy pays for it). */
  fisher?: WeightFisher;
  /** Wall seconds spent on the Fisher pass (0 without it); NOT included in calibrationSeconds. */
  fisherSeconds: number;
  dataset: string;
  /** Cached per-layer scoring for score-then-select strategies (see evaluator.ts). */
  evaluator?: ConfigEvaluator;
  /** The same on 'pruned' statistics, for the 'pruned' final measurement (final.ts withPrunedEvaluator). */
  prunedEvaluator?: ConfigEvaluator;
}

export interface SetupOptions {
  statsKind: StatsKind;
  /** Raw calibration windows kept per layer input, for the 'recon' proxy (0: none). */
  keepInputs: number;
  /** Calibration windows for the Fisher diagonal (0: none). */
  fisherWindows?: number;
  dataset?: string;
  /** How search subsets of windows are drawn from the split (evaluator.ts; default 'first'). */
  windowSample?: WindowSample;
}

/** Raw calibration windows kept per layer input when a proxy needs them ('recon', 'recon-row'). */
export const DEFAULT_KEEP_INPUTS = 4;

/** Calibration windows the Fisher diagonal is measured on (the first of the statistics' windows). */
export const DEFAULT_FISHER_WINDOWS = 8;

/**
 * What calibrateOnce must collect so that every proxy in `proxies` can be computed: raw inputs
 * for the reconstruction proxies, the Fisher diagonal for 'fisher', nothing extra otherwise.
 */
export function setupOptionsFor(
  statsKind: StatsKind,
  proxies: readonly ProxyName[],
  overrides: { keepInputs?: number; fisherWindows?: number } = {},
): SetupOptions {
  const needInputs = proxies.some((p) => !!getProxy(p).needs?.inputs);
  const needFisher = proxies.some((p) => !!getProxy(p).needs?.fisher);
  return {
    statsKind,
    keepInputs: needInputs ? overrides.keepInputs ?? DEFAULT_KEEP_INPUTS : 0,
    fisherWindows: needFisher ? overrides.fisherWindows ?? DEFAULT_FISHER_WINDOWS : 0,
  };
}

/** Collect the statistics every configuration of the search will reuse. */
export function calibrateOnce(
  model: OpenedModel,
  strategy: Strategy,
  structure: Structure,
  calibration: CalibrationSpec,
  opts: SetupOptions,
): SearchSetup {
  assertNotTest(opts.dataset ?? SEARCH_DATASET, 'a search');
  const t0 = process.hrtime.bigint();
  const statsOptions = { keepInputs: opts.keepInputs };
  let stats: CalibrationStats;
  if (opts.statsKind === 'dense') {
    stats = collectDenseStats(model, calibration, statsOptions);
  } else {
    const blocks: Map<LinearName, InputStats>[] = [];
    const outcome = pruneModel(
      model,
      { method: strategy.name, params: resolveParams(strategy), structure, calibration, propagate: 'pruned' },
      {
        statsOptions,
        onLayer: ({ block, name, stats: s }) => {
          blocks[block] ??= new Map();
          blocks[block].set(name, s);
        },
      },
    );
    stats = { blocks, calibration: outcome.calibration! };
  }
  const calibrationSeconds = secondsSince(t0);
  const t1 = process.hrtime.bigint();
  const fisher = opts.fisherWindows ? collectWeightFisher(model, calibration, opts.fisherWindows) : undefined;
  const fisherSeconds = fisher ? secondsSince(t1) : 0;
  // Building the evaluator's caches (weights read once, per-layer sums) is part of calibration.
  const t2 = process.hrtime.bigint();
  const evaluator = ConfigEvaluator.supports(strategy) ? new ConfigEvaluator(model, strategy, structure, stats, fisher, opts.windowSample) : undefined;
  return {
    model,
    strategy,
    structure,
    calibration,
    statsKind: opts.statsKind,
    stats,
    calibrationSeconds: calibrationSeconds + secondsSince(t2),
    fisher,
    fisherSeconds,
    dataset: opts.dataset ?? SEARCH_DATASET,
    evaluator,
  };
}

export interface ConfigurationResult {
  proxies: Partial<Record<ProxyName, number>>;
  /** PPL on the search subset; undefined when not asked for. */
  ppl?: number;
  /** Wall seconds for pruning + proxies + PPL. */
  seconds: number;
}

/**
 * Prune with `params` from the stored statistics, computing the requested proxies from each
 * layer's scores and mask as the pipeline produces them, and (when `windows` is given) the
 * perplexity of the pruned model on the first `windows` evaluation windows ('all' = every one).
 */
export function evaluateConfiguration(
  setup: SearchSetup,
  params: Params,
  opts: { proxies?: readonly ProxyName[]; windows?: number | 'all' },
): ConfigurationResult {
  const t0 = process.hrtime.bigint();
  const names = opts.proxies ?? [];
  const acc = names.length ? new ProxyAccumulator(names) : null;
  if (setup.evaluator) {
    const ev = setup.evaluator;
    const masks = ev.prune(params, acc ? (layer) => acc.add(layer) : undefined);
    const proxies = acc ? acc.values() : {};
    let ppl: number | undefined;
    if (opts.windows !== undefined) {
      ppl = ev.perplexity(masks, setup.dataset, opts.windows);
    }
    return { proxies, ppl, seconds: secondsSince(t0) };
  }
  const cfg = setup.model.source.config;
  const outcome = pruneModel(
    setup.model,
    {
      method: setup.strategy.name,
      params,
      structure: setup.structure,
      calibration: setup.calibration,
      propagate: 'pruned',
      precomputed: setup.stats,
    },
    acc
      ? {
          onLayer: ({ block, name, stats, weight, scores, mask }) => {
            const [rows, cols] = linearShape(cfg, name);
            acc.add({ weight, scores, mask, stats, rows, cols, fisher: setup.fisher?.blocks[block]?.get(name), outputFisher: setup.fisher?.outputs[block]?.get(name),
              fisherTokens: setup.fisher && { ...setup.fisher.kept[block].get(name)!, count: setup.fisher.keptTokens },
            });
          },
        }
      : {},
  );
  const proxies = acc ? acc.values() : {};
  let ppl: number | undefined;
  if (opts.windows !== undefined) {
    const maxWindows = opts.windows === 'all' ? undefined : opts.windows;
    ppl = evaluateSource(setup.model, outcome.source, [setup.dataset], { maxWindows })[0].ppl;
  }
  return { proxies, ppl, seconds: secondsSince(t0) };
}

export interface FullEvaluation {
  params: Params;
  ppl: number;
  record: EvalRecord;
  pruneSeconds: number;
  evalSeconds: number;
}

/**
 * The number to report for a configuration: prune with the standard sequential pipeline (fresh
 * calibration forward, pruned propagation, as `crepe prune` does by default) and evaluate every
 * window of the dataset's evaluation split.
 */
export function fullEvaluation(
  model: OpenedModel,
  method: string,
  params: Params,
  structure: Structure,
  calibration: CalibrationSpec,
  dataset = REPORT_DATASET,
  /** Only the first N windows of the split (default: every window). */
  maxWindows?: number,
): FullEvaluation {
  const pruned = pruneModel(model, { method, params, structure, calibration, propagate: 'pruned' });
  const record = evaluateSource(model, pruned.source, [dataset], { maxWindows })[0];
  return { params, ppl: record.ppl, record, pruneSeconds: pruned.seconds, evalSeconds: record.seconds };
}

// ------------------------------------------------------------------------------------------------
// The evaluation log every search writes.

export type EvalKind = 'ppl' | 'proxy';

export interface EvalEntry {
  index: number;
  kind: EvalKind;
  params: Params;
  /** The search coordinates (see space.ts). */
  x: number[];
  /** What was measured: 'ppl@W' (PPL on the first W search windows) or the proxy's name. */
  measure: string;
  /** Raw measured value: search-subset PPL, or the proxy. */
  value: number;
  /** What the search minimizes: the PPL, or sign * proxy. */
  objective: number;
  /** Best objective so far among entries of the same measure. */
  bestObjective: number;
  seconds: number;
  /** Wall seconds since the search began (calibration excluded). */
  elapsed: number;
}

/** Records evaluations in order, with timings. */
export class EvalLog {
  readonly entries: EvalEntry[] = [];
  private readonly t0 = process.hrtime.bigint();
  private readonly best = new Map<string, number>();

  add(kind: EvalKind, params: Params, x: readonly number[], value: number, objective: number, seconds: number, measure: string): EvalEntry {
    const best = Math.min(this.best.get(measure) ?? Infinity, objective);
    this.best.set(measure, best);
    const e: EvalEntry = {
      index: this.entries.length,
      kind,
      measure,
      params: { ...params },
      x: [...x],
      value,
      objective,
      bestObjective: best,
      seconds,
      elapsed: secondsSince(this.t0),
    };
    this.entries.push(e);
    return e;
  }
}

/** The log as CSV: one row per evaluation, one column per parameter. */
export function evalLogCsv(entries: readonly EvalEntry[]): string {
  const names = entries.length ? Object.keys(entries[0].params) : [];
  const header = ['index', 'kind', 'measure', ...names, 'value', 'objective', 'best_objective', 'seconds', 'elapsed_seconds'];
  const rows = entries.map((e) => [
    e.index,
    e.kind,
    e.measure,
    ...names.map((n) => e.params[n]),
    e.value,
    e.objective,
    e.bestObjective,
    e.seconds.toFixed(4),
    e.elapsed.toFixed(4),
  ]);
  return csvText(header, rows);
}

/** Outcome shared by both searches (before the final full evaluation). */
export interface SearchOutcome {
  search: 'hillclimb' | 'pho';
  best: Params;
  /** Best objective value: search-subset PPL (hillclimb) or sign * proxy (pho). */
  bestObjective: number;
  /** The raw value at the best point (PPL, or the proxy). */
  bestValue: number;
  pplEvals: number;
  proxyEvals: number;
  /** PPL window evaluations in all (a PPL on W windows counts W), final choice included. */
  windowEvals: number;
  /**
   * Configurations pruned by the sequential pipeline inside the loop (final.ts 'sequential'), and
   * the calibration windows each used: each costs a calibration forward besides its windows.
   */
  sequentialPrunes: number;
  sequentialCalibrationWindows: number;
  /** Wall and CPU seconds of the search loop, calibration excluded; CPU includes child processes (cpu.ts). */
  seconds: number;
  cpuSeconds: number;
  stopReason: string;
  log: EvalEntry[];
}

export function proxySign(name: ProxyName, override?: number): 1 | -1 {
  return override === undefined ? getProxy(name).sign : override < 0 ? -1 : 1;
}
