/**
 * Running the search comparison: per model one calibration (dense statistics are shared by every
 * structure), then per structure and seed hill climbing and every PHO variant, each followed at
 * once by the full evaluation of its best configuration and a journal line; the baselines; then
 * transfer (each model's configurations applied to the other models). Units whose rows are in
 * the journal are skipped, so a killed run continues where it stopped.
 *
 * Everything runs in this process on the library; the loops' CPU seconds also count any child
 * process an evaluation starts (lib/search/cpu.ts).
 */
import * as os from 'os';
import * as path from 'path';
import { writeFileAtomic } from '../../io/atomic';
import { OpenedModel, openModel } from '../../model/resolve';
import { CalibrationSpec } from '../../prune/pipeline';
import { Params, getStrategy } from '../../prune/strategy';
import '../../prune/strategies';
import { hillClimbSearch } from '../../search/hillclimb';
import { REPORT_DATASET, SEARCH_DATASET, SearchOutcome, SearchSetup, calibrateOnce, evalLogCsv, fullEvaluation, setupOptionsFor } from '../../search/objective';
import { phoSearch } from '../../search/pho';
import { withPrunedEvaluator } from '../../search/final';
import { getProxy } from '../../search/proxies';
import { formatParams } from '../../search/space';
import { HILLCLIMB_RUN, PhoVariant, SearchCompareConfig, StructureEntry, modelStem, structureFor } from '../search-config';
import { ComparePlan, Unit, planUnits, unitKey } from './plan';
import { Journal } from './journal';
import { CalibrationRecord, RunRow, paramsText, proxiesText } from './rows';

export interface SearchProgress {
  update(done: number, lastValue: number): void;
  stop(): void;
}

export interface CompareHooks {
  /** A progress display for one search loop of `total` evaluations. */
  progress?: (label: string, unit: string, total: number) => SearchProgress;
  /** One line per finished run or calibration. */
  log?: (line: string) => void;
}

/** File name of a search's evaluation log under the output folder. */
export function evalLogName(model: string, structure: string, run: string, seed: number): string {
  return `search-${modelStem(model)}-${structure}-${run}-seed${seed}.csv`;
}

export function calibrationFor(model: OpenedModel, config: SearchCompareConfig): CalibrationSpec {
  const { dataset, nsamples, seed } = config.calibration;
  return { dataset, nsamples, seqlen: model.source.config.maxSeqLen, seed };
}

/** The same parameters in the strategy's declaration order (alpha beta gamma kh kw a), for reading. */
export function inStrategyOrder(method: string, params: Params): Params {
  const names = Object.keys(getStrategy(method).params);
  const rank = (k: string): number => (names.includes(k) ? names.indexOf(k) : names.length);
  return Object.fromEntries(Object.entries(params).sort(([a], [b]) => rank(a) - rank(b)));
}

function withProgress(hooks: CompareHooks, label: string, unit: string, total: number, body: (onEval: (done: number, v: number) => void) => SearchOutcome): SearchOutcome {
  const bar = hooks.progress?.(label, unit, total);
  try {
    return body((done, v) => bar?.update(done, v));
  } finally {
    bar?.stop();
  }
}

/** Full evaluations are deterministic in (model, method, structure, params, calibration): reuse them. */
function fullKey(model: string, method: string, entry: StructureEntry, params: Params): string {
  return [model, method, JSON.stringify(structureFor(entry, method)), paramsText(inStrategyOrder(method, params))].join('\u0000');
}

type FullColumns = Pick<RunRow, 'params' | 'fullPpl' | 'pruneSeconds' | 'evalSeconds' | 'evalDataset' | 'evalWindows' | 'evalSeqlen' | 'note'>;

class FullEvaluations {
  private readonly known = new Map<string, { columns: FullColumns; firstKey: string }>();

  /** Seeded with the journal's rows, so a resumed run reuses their evaluations too. */
  private readonly reportWindows?: number;

  constructor(rows: Iterable<RunRow>, config: SearchCompareConfig) {
    this.reportWindows = config.reportWindows;
    for (const r of rows) {
      const entry = config.structures.find((s) => s.name === r.structure);
      if (entry) this.remember(fullKey(r.model, r.method, entry, r.params), r.key, r);
    }
  }

  get(model: OpenedModel, modelName: string, method: string, entry: StructureEntry, params: Params, calibration: CalibrationSpec, rowKey: string): FullColumns {
    const key = fullKey(modelName, method, entry, params);
    const hit = this.known.get(key);
    if (hit) return { ...hit.columns, note: hit.firstKey === rowKey ? '' : `same configuration as ${describeKey(hit.firstKey)}: its full evaluation` };
    const full = fullEvaluation(model, method, params, structureFor(entry, method), calibration, REPORT_DATASET, this.reportWindows);
    const columns: FullColumns = {
      params: inStrategyOrder(method, full.params),
      fullPpl: full.ppl,
      pruneSeconds: full.pruneSeconds,
      evalSeconds: full.evalSeconds,
      evalDataset: full.record.dataset,
      evalWindows: full.record.windows,
      evalSeqlen: full.record.seqlen,
      note: '',
    };
    this.remember(key, rowKey, columns);
    return columns;
  }

  private remember(key: string, rowKey: string, columns: FullColumns): void {
    if (!this.known.has(key)) this.known.set(key, { columns: { ...columns, note: '' }, firstKey: rowKey });
  }
}

/** "stories260K u50 pho seed 1" from a unit key. */
function describeKey(key: string): string {
  const [kind, model, structure, run, seed, from] = key.split('\u0000');
  return [model, structure, kind === 'transfer' ? `${run} of ${from}` : run, seed === '' ? '' : `seed ${seed}`].filter((s) => s).join(' ');
}

/** The search columns of a row that is a plain full evaluation (a baseline or a transfer). */
const NO_SEARCH = {
  pplEvals: null,
  windowEvals: null,
  proxyEvals: null,
  bestSearchValue: null,
  stopReason: null,
  calibrationSeconds: null,
  loopWallSeconds: null,
  loopCpuSeconds: null,
  evalLog: null,
} as const;

export interface RunOutcome {
  journal: Journal;
  files: string[];
  /** Units run now (the rest came from the journal). */
  ran: number;
  wallSeconds: number;
}

/** Run every unit of the plan that the journal does not have yet. */
export function runUnits(plan: ComparePlan, journal: Journal, codeVersion: string, hooks: CompareHooks = {}): RunOutcome {
  const t0 = process.hrtime.bigint();
  const { config } = plan;
  const units = planUnits(config).filter((u) => !journal.has(u) && (!plan.runs || plan.runs.includes(u.run)));
  const files: string[] = [];
  const fulls = new FullEvaluations(journal.currentRows(planUnits(plan.fullConfig)), config);
  const record = (u: Unit, row: Omit<RunRow, 'fingerprint' | 'codeVersion' | 'loadAverage'>): RunRow => journal.addRow(u, { ...row, codeVersion, loadAverage: os.loadavg()[0] });
  for (const model of config.models) {
    const mine = units.filter((u) => u.model === model && u.kind !== 'transfer');
    if (mine.length) runModel(plan, model, mine, journal, record, fulls, hooks, files);
  }
  const transfers = units.filter((u) => u.kind === 'transfer');
  for (const model of config.models) {
    const mine = transfers.filter((u) => u.model === model);
    if (mine.length) runTransfer(plan, model, mine, journal, record, fulls, hooks);
  }
  return { journal, files, ran: units.length, wallSeconds: Number(process.hrtime.bigint() - t0) / 1e9 };
}

type Record = (u: Unit, row: Omit<RunRow, 'fingerprint' | 'codeVersion' | 'loadAverage'>) => RunRow;

function runModel(plan: ComparePlan, name: string, units: Unit[], journal: Journal, record: Record, fulls: FullEvaluations, hooks: CompareHooks, files: string[]): void {
  const { config, out } = plan;
  const log = hooks.log ?? (() => {});
  const strategy = getStrategy(config.method);
  const model = openModel(name);
  try {
    const calibration = calibrationFor(model, config);
    const proxies = [...new Set(config.pho.flatMap((v) => v.proxies.map((p) => p.proxy)))];
    const calibrate = (entry: StructureEntry): SearchSetup => {
      const options = { ...setupOptionsFor(config.calibration.stats, proxies), windowSample: config.searchSample };
      const t0 = process.hrtime.bigint();
      const setup = calibrateOnce(model, strategy, structureFor(entry, config.method), calibration, options);
      const shared = config.calibration.stats === 'dense';
      const calibrationRecord: CalibrationRecord = {
        model: name,
        structure: shared ? null : entry.name,
        seconds: setup.calibrationSeconds,
        setupSeconds: Number(process.hrtime.bigint() - t0) / 1e9,
        fisherSeconds: setup.fisherSeconds,
        options,
        nsamples: calibration.nsamples,
        seqlen: calibration.seqlen,
      };
      journal.addCalibration(calibrationRecord);
      log(`${name}${shared ? '' : ` ${entry.name}`}: ${config.calibration.stats} statistics from ${calibration.nsamples} x ${calibration.seqlen} ${calibration.dataset} tokens in ${setup.calibrationSeconds.toFixed(2)} s`);
      return setup;
    };
    // Dense statistics do not depend on the structure: one calibration serves every structure.
    let shared: SearchSetup | null = null;
    for (const entry of config.structures) {
      const todo = units.filter((u) => u.structure === entry.name);
      if (todo.length === 0) continue;
      const structure = structureFor(entry, config.method);
      let setup: SearchSetup;
      if (config.calibration.stats === 'dense') {
        shared ??= calibrate(entry);
        // The evaluator selects masks for one structure: give each structure its own.
        setup = { ...shared, structure, evaluator: shared.evaluator?.withStructure(structure) };
      } else setup = calibrate(entry);
      if (needsPrunedStatistics(config)) {
        // a one-time pass per structure: counted with the calibration, not the search loops
        const extra = withPrunedEvaluator(setup);
        setup = { ...extra.setup, calibrationSeconds: setup.calibrationSeconds + extra.seconds };
        log(`${name} ${entry.name}: 'pruned' statistics for the final measurement in ${extra.seconds.toFixed(2)} s`);
      }
      const base = { model: name, structure: entry.name, structureLabel: entry.label, method: config.method, fromModel: null };
      const say = (r: RunRow): void => {
        const cost = r.loopWallSeconds === null ? '' : `; ${r.pplEvals} PPL + ${r.proxyEvals} proxy evaluations, loop ${r.loopWallSeconds.toFixed(2)} s wall (${r.loopCpuSeconds!.toFixed(2)} s CPU)`;
        log(`${name} ${entry.name} ${r.run}${r.seed === null ? '' : ` seed ${r.seed}`}: full PPL ${r.fullPpl.toFixed(4)} at ${formatParams(r.params)}${cost}`);
      };
      for (const u of todo) {
        const key = unitKey(u);
        let row: Omit<RunRow, 'fingerprint' | 'codeVersion' | 'loadAverage'>;
        if (u.kind === 'baseline') {
          const b = config.baselines.find((x) => x.name === u.run)!;
          row = {
            key,
            ...base,
            kind: 'baseline',
            run: b.name,
            seed: null,
            method: b.method,
            search: null,
            proxies: null,
            ...fulls.get(model, name, b.method, entry, b.params, calibration, key),
            ...NO_SEARCH,
          };
        } else {
          const seed = u.seed!;
          const variant = config.pho.find((v) => v.name === u.run);
          const outcome = variant
            ? withProgress(hooks, `${name} ${entry.name} ${u.run} seed ${seed}`, 'evals', variant.budget * variant.proxies.length, (onEval) => phoRun(setup, config, variant, seed, onEval))
            : withProgress(hooks, `${name} ${entry.name} hillclimb seed ${seed}`, 'PPL evals', config.hillclimb.budget, (onEval) =>
                hillClimbSearch(setup, config.space, { budget: config.hillclimb.budget, windows: config.hillclimb.searchWindows, seed, final: config.hillclimb.final, onEval }),
              );
          const logFile = evalLogName(name, entry.name, u.run, seed);
          writeFileAtomic(path.join(out, logFile), evalLogCsv(outcome.log));
          files.push(path.join(out, logFile));
          const fisher = variant?.proxies.some((p) => getProxy(p.proxy).needs?.fisher) ?? false;
          row = {
            key,
            ...base,
            kind: 'search',
            run: u.run,
            seed,
            search: outcome.search,
            proxies: variant ? proxiesText(variant.proxies) : null,
            ...fulls.get(model, name, config.method, entry, outcome.best, calibration, key),
            pplEvals: outcome.pplEvals,
            windowEvals: outcome.windowEvals,
            ...(outcome.sequentialPrunes ? { sequentialPrunes: outcome.sequentialPrunes, sequentialCalibrationWindows: outcome.sequentialCalibrationWindows } : {}),
            proxyEvals: outcome.proxyEvals,
            bestSearchValue: outcome.bestValue,
            stopReason: outcome.stopReason,
            // a Fisher proxy's backward passes are part of what its search pays up front
            calibrationSeconds: setup.calibrationSeconds + (fisher ? setup.fisherSeconds : 0),
            loopWallSeconds: outcome.seconds,
            loopCpuSeconds: outcome.cpuSeconds,
            evalLog: logFile,
          };
        }
        say(record(u, row));
      }
    }
  } finally {
    model.source.close();
  }
}

/** Whether a search of the config makes its final choice on 'pruned' statistics (a second evaluator per structure). */
export function needsPrunedStatistics(config: SearchCompareConfig): boolean {
  return config.hillclimb.final?.measure === 'pruned' || config.pho.some((v) => v.verify?.final === 'pruned');
}

function phoRun(setup: SearchSetup, config: SearchCompareConfig, variant: PhoVariant, seed: number, onEval: (done: number, v: number) => void): SearchOutcome {
  const [first, ...rest] = variant.proxies;
  return phoSearch(setup, config.space, { ...first, portfolio: rest, budget: variant.budget, seed, verify: variant.verify, proxyRows: variant.proxyRows, onEval });
}

/** Each source model's configurations (per seed) pruned and evaluated on `target`. */
function runTransfer(plan: ComparePlan, target: string, units: Unit[], journal: Journal, record: Record, fulls: FullEvaluations, hooks: CompareHooks): void {
  const { config } = plan;
  const log = hooks.log ?? (() => {});
  const model = openModel(target);
  try {
    const calibration = calibrationFor(model, config);
    for (const u of units) {
      const entry = config.structures.find((s) => s.name === u.structure)!;
      const found = journal.row({ kind: 'search', model: u.fromModel!, structure: u.structure, run: u.run, seed: u.seed, fromModel: null });
      if (!found) continue; // the source's search is not in this run's subset
      const key = unitKey(u);
      const row = record(u, {
        key,
        model: target,
        structure: entry.name,
        structureLabel: entry.label,
        kind: 'transfer',
        run: u.run,
        seed: u.seed,
        method: config.method,
        search: found.search,
        proxies: found.proxies,
        fromModel: u.fromModel,
        ...fulls.get(model, target, config.method, entry, found.params, calibration, key),
        ...NO_SEARCH,
      });
      log(`${target} ${entry.name} ${u.run} seed ${u.seed} of ${u.fromModel}: full PPL ${row.fullPpl.toFixed(4)} at ${formatParams(row.params)}`);
    }
  } finally {
    model.source.close();
  }
}

export { HILLCLIMB_RUN, SEARCH_DATASET };
