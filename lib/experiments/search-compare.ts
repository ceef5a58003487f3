/**
 * The search cost comparison (`crepe search-compare`): for each model and structure of a config,
 * PPL hill climbing against PHO (proxy + CMA-ES), each ending with one full evaluation of its
 * best configuration, beside the baselines' full evaluations; then, where asked, each model's
 * best configurations applied to the other models (transfer) and PHO with every proxy. Writes
 * the evaluation logs, one results CSV and a Markdown report whose every number comes from this
 * run (the findings belong in the README, not here).
 *
 * Everything runs in this process on the library (no child processes), so the search loops'
 * CPU seconds are this process's. Statistics are collected once per model (dense statistics do
 * not depend on the structure) or once per model and structure ('pruned' statistics do).
 */
import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { loadDataset } from '../data/datasets';
import { OpenedModel, openModel } from '../model/resolve';
import { LINEAR_NAMES, linearShape } from '../model/types';
import { CalibrationSpec } from '../prune/pipeline';
import { validateStructureFor } from '../prune/select';
import { Params, getStrategy } from '../prune/strategy';
import '../prune/strategies';
import { hillClimbSearch } from '../search/hillclimb';
import {
  FullEvaluation, REPORT_DATASET, SEARCH_DATASET, SearchOutcome, SearchSetup, SetupOptions, calibrateOnce, evalLogCsv, fullEvaluation, proxySign,
  setupOptionsFor,
} from '../search/objective';
import { phoSearch } from '../search/pho';
import { PROXIES, PROXY_NAMES, ProxyName } from '../search/proxies';
import { mean } from '../search/rank';
import { SearchSpace, formatParams, searchStart } from '../search/space';
import { StudySample, correlations } from '../search/study';
import { csvText, parseCsv } from '../util/csv';
import { fieldError } from './config';
import { SearchCompareConfig, StructureEntry, loadSearchCompareConfig, modelStem, selectSubset, structureFor } from './search-config';

// ---------------------------------------------------------------------------------------------
// planning: everything is validated here, before any work

export interface ComparePlan {
  /** The config restricted to the chosen models and structures. */
  config: SearchCompareConfig;
  /** Existing output folder. */
  out: string;
}

export interface PlanOptions {
  out: string;
  /** Restrict to these models / structure names (default: all in the config). */
  models?: readonly string[];
  structures?: readonly string[];
}

/**
 * Load and validate the config, the subset, the output folder, the datasets, and that every
 * chosen model opens and takes every chosen structure. Throws a one-line CrepeError; writes
 * nothing.
 */
export function planComparison(configFile: string, opts: PlanOptions): ComparePlan {
  const full = loadSearchCompareConfig(configFile);
  const config = selectSubset(full, opts.models, opts.structures);
  checkOutFolder(opts.out);
  try {
    loadDataset(config.calibration.dataset, 'calib');
  } catch (e) {
    if (e instanceof CrepeError) throw fieldError(configFile, ['calibration', 'dataset'], e.message);
    throw e;
  }
  loadDataset(SEARCH_DATASET, 'eval');
  for (const name of config.models) {
    let model: OpenedModel;
    try {
      model = openModel(name);
    } catch (e) {
      if (e instanceof CrepeError) throw fieldError(configFile, ['models', full.models.indexOf(name)], e.message);
      throw e;
    }
    try {
      for (const entry of config.structures) {
        const at = full.structures.findIndex((s) => s.name === entry.name);
        for (const linear of LINEAR_NAMES) {
          const [rows, cols] = linearShape(model.source.config, linear);
          try {
            validateStructureFor(structureFor(entry, config.method), rows, cols);
          } catch (e) {
            if (e instanceof CrepeError) throw fieldError(configFile, ['structures', at, 'structure'], `${name} (${linear}): ${e.message}`);
            throw e;
          }
        }
      }
    } finally {
      model.source.close();
    }
  }
  return { config, out: opts.out };
}

function checkOutFolder(out: string): void {
  if (!fs.existsSync(out) || !fs.statSync(out).isDirectory()) throw new CrepeError(`--out ${out} is not an existing folder`);
  try {
    fs.accessSync(out, fs.constants.W_OK);
  } catch {
    throw new CrepeError(`--out ${out}: permission denied`);
  }
}

// ---------------------------------------------------------------------------------------------
// the runs

export type RunKind = 'baseline' | 'search' | 'transfer' | 'proxy';

/** One full evaluation and, for searches, what the search cost. */
export interface RunRow {
  model: string;
  /** The structure's name in the config (u50, 2of4). */
  structure: string;
  structureLabel: string;
  kind: RunKind;
  /** 'hillclimb', 'pho', a baseline's name, '<search> of <model>' (transfer), 'pho <proxy>'. */
  run: string;
  method: string;
  search: 'hillclimb' | 'pho' | null;
  proxy: ProxyName | null;
  sign: 1 | -1 | null;
  /** Transfer: the model whose search found the configuration. */
  fromModel: string | null;
  params: Params;
  fullPpl: number;
  /** Full PPL against the same model and structure's hill-climbing run, in percent. */
  vsHillclimbPct: number | null;
  pplEvals: number | null;
  proxyEvals: number | null;
  /** Search-subset PPL (hill climbing) or the raw proxy (PHO) at the best point. */
  bestSearchValue: number | null;
  stopReason: string | null;
  calibrationSeconds: number | null;
  loopWallSeconds: number | null;
  loopCpuSeconds: number | null;
  pruneSeconds: number;
  evalSeconds: number;
  evalWindows: number;
  evalSeqlen: number;
  /** The evaluation log written for this search, if any. */
  evalLog: string | null;
  note: string;
}

export interface CalibrationRecord {
  model: string;
  /** null: one calibration shared by every structure (dense statistics). */
  structure: string | null;
  /** The statistics, as calibrateOnce reports them (what every search of the model needs). */
  seconds: number;
  /**
   * Wall seconds of the whole calibrateOnce call: the statistics plus whatever extra some
   * proxies need (calibrateOnce may time such extras separately from the statistics).
   */
  setupSeconds: number;
  options: SetupOptions;
  nsamples: number;
  seqlen: number;
}

export interface CostRow {
  model: string;
  structure: string;
  structureLabel: string;
  hillclimbPpl: number;
  phoPpl: number;
  phoVsHillclimbPct: number;
  loopWallRatio: number;
  loopCpuRatio: number;
  /** (calibration + hill-climbing loop) / (calibration + PHO loop), wall seconds. */
  withCalibrationRatio: number;
  within1Pct: boolean;
  loopAtLeast20x: boolean;
  withCalibrationAtLeast20x: boolean;
}

export interface ProxyStudyColumn {
  model: string;
  structure: string;
  structureLabel: string;
  file: string;
  samples: number;
  spearman: Partial<Record<ProxyName, number>>;
}

export interface ComparisonResult {
  plan: ComparePlan;
  rows: RunRow[];
  costs: CostRow[];
  calibrations: CalibrationRecord[];
  proxyStudies: ProxyStudyColumn[];
  files: string[];
  backend: string;
  codeVersion: string;
  command: string;
  totalWallSeconds: number;
}

/** What the caller knows about the process, recorded in the report. */
export interface CompareContext {
  backend: string;
  codeVersion: string;
  /** The command line as the user would type it again. */
  command: string;
}

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

/** File names under the output folder. */
export function evalLogName(model: string, structure: string, search: string): string {
  return `search-${modelStem(model)}-${structure}-${search}.csv`;
}
export const RESULTS_CSV = 'search-comparison.csv';
export const RESULTS_MD = 'search-comparison.md';

/** The search columns of a row that is a plain full evaluation (a baseline or a transfer). */
const NO_SEARCH = {
  vsHillclimbPct: null,
  pplEvals: null,
  proxyEvals: null,
  bestSearchValue: null,
  stopReason: null,
  calibrationSeconds: null,
  loopWallSeconds: null,
  loopCpuSeconds: null,
} as const;

/** Run every search and evaluation of `plan`, then write the CSV and the Markdown report. */
export function runComparison(plan: ComparePlan, ctx: CompareContext, hooks: CompareHooks = {}): ComparisonResult {
  const t0 = process.hrtime.bigint();
  const { config } = plan;
  const rows: RunRow[] = [];
  const calibrations: CalibrationRecord[] = [];
  const files: string[] = [];
  for (const name of config.models) runModel(plan, name, hooks, rows, calibrations, files);
  if (config.transfer.length > 0 && config.models.length > 1) runTransfer(plan, hooks, rows);
  fillVsHillclimb(rows);
  // Rows in reading order: per model and structure the baselines, then the searches; then
  // transfer; then PHO with every proxy (the execution order differs: see runModel).
  const section = (r: RunRow): number => (r.kind === 'transfer' ? 1 : r.kind === 'proxy' ? 2 : 0);
  const sortKey = (r: RunRow, i: number): number[] => [
    section(r),
    config.models.indexOf(r.model),
    config.structures.findIndex((s) => s.name === r.structure),
    r.kind === 'baseline' ? 0 : 1,
    i,
  ];
  const keyed = rows.map((r, i) => ({ r, key: sortKey(r, i) }));
  keyed.sort((a, b) => {
    const k = a.key.findIndex((v, j) => v !== b.key[j]);
    return k < 0 ? 0 : a.key[k] - b.key[k];
  });
  const sorted = keyed.map((x) => x.r);
  const csvFile = path.join(plan.out, RESULTS_CSV);
  const mdFile = path.join(plan.out, RESULTS_MD);
  files.push(csvFile, mdFile);
  const result: ComparisonResult = {
    plan,
    rows: sorted,
    costs: costRows(config, sorted),
    calibrations,
    proxyStudies: readProxyStudies(plan),
    files,
    backend: ctx.backend,
    codeVersion: ctx.codeVersion,
    command: ctx.command,
    totalWallSeconds: Number(process.hrtime.bigint() - t0) / 1e9,
  };
  writeFileAtomic(csvFile, comparisonCsv(sorted));
  writeFileAtomic(mdFile, comparisonMarkdown(result));
  return result;
}

function calibrationFor(model: OpenedModel, config: SearchCompareConfig): CalibrationSpec {
  const { dataset, nsamples, seed } = config.calibration;
  return { dataset, nsamples, seqlen: model.source.config.maxSeqLen, seed };
}

/** The proxies a model's runs on these structures need from the statistics. */
function proxiesNeeded(config: SearchCompareConfig, structures: readonly StructureEntry[]): ProxyName[] {
  const everyProxy = structures.some((s) => config.phoEveryProxy.includes(s.name));
  return everyProxy ? [...PROXY_NAMES] : [config.pho.proxy];
}

/** Note of the every-proxy row that is the PHO run itself. */
const SAME_AS_PHO = 'the pho run';

/** A full evaluation and the run that asked for it first. */
interface Evaluated {
  full: FullEvaluation;
  firstRun: string;
}

function sharedNote(evaluated: Evaluated, run: string): string {
  return evaluated.firstRun === run ? '' : `same configuration as ${evaluated.firstRun}: its full evaluation`;
}

function withProgress(hooks: CompareHooks, label: string, unit: string, total: number, body: (onEval: (done: number, v: number) => void) => SearchOutcome): SearchOutcome {
  const bar = hooks.progress?.(label, unit, total);
  try {
    return body((done, v) => bar?.update(done, v));
  } finally {
    bar?.stop();
  }
}

/**
 * One model: calibrate, then per structure the two searches (logs written at once), their full
 * evaluations, the baselines, and PHO with every proxy where asked (while the statistics are in
 * memory, so they are collected once).
 */
function runModel(plan: ComparePlan, name: string, hooks: CompareHooks, rows: RunRow[], calibrations: CalibrationRecord[], files: string[]): void {
  const { config, out } = plan;
  const log = hooks.log ?? (() => {});
  const strategy = getStrategy(config.method);
  const model = openModel(name);
  try {
    const calibration = calibrationFor(model, config);
    const calibrate = (entry: StructureEntry, structures: readonly StructureEntry[]): SearchSetup => {
      const options = setupOptionsFor(config.calibration.stats, proxiesNeeded(config, structures));
      const t0 = process.hrtime.bigint();
      const setup = calibrateOnce(model, strategy, structureFor(entry, config.method), calibration, options);
      const setupSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
      const shared = config.calibration.stats === 'dense';
      calibrations.push({
        model: name,
        structure: shared ? null : entry.name,
        seconds: setup.calibrationSeconds,
        setupSeconds,
        options,
        nsamples: calibration.nsamples,
        seqlen: calibration.seqlen,
      });
      log(`${name}${shared ? '' : ` ${entry.name}`}: ${config.calibration.stats} statistics from ${calibration.nsamples} x ${calibration.seqlen} ${calibration.dataset} tokens in ${setup.calibrationSeconds.toFixed(2)} s`);
      return setup;
    };
    // Dense statistics do not depend on the structure: one calibration serves every structure.
    const shared = config.calibration.stats === 'dense' ? calibrate(config.structures[0], config.structures) : null;

    for (const entry of config.structures) {
      const structure = structureFor(entry, config.method);
      const setup: SearchSetup = shared ? { ...shared, structure } : calibrate(entry, [entry]);
      const base = { model: name, structure: entry.name, structureLabel: entry.label };
      const fullRow = (full: FullEvaluation, method: string): Pick<RunRow, 'params' | 'fullPpl' | 'pruneSeconds' | 'evalSeconds' | 'evalWindows' | 'evalSeqlen'> => ({
        params: inStrategyOrder(method, full.params),
        fullPpl: full.ppl,
        pruneSeconds: full.pruneSeconds,
        evalSeconds: full.evalSeconds,
        evalWindows: full.record.windows,
        evalSeqlen: full.record.seqlen,
      });
      const fullEvaluations = new Map<string, Evaluated>();
      /**
       * A full evaluation is a deterministic function of method, structure, parameters and
       * calibration (the tests check it bit for bit), so runs that found the same configuration
       * (proxies often agree) share one instead of pruning and evaluating it again.
       */
      const evaluate = (run: string, method: string, params: Params): Evaluated => {
        const st = structureFor(entry, method);
        const key = `${method}\u0000${JSON.stringify(st)}\u0000${paramsText(inStrategyOrder(method, params))}`;
        const known = fullEvaluations.get(key);
        if (known) return known;
        const evaluated: Evaluated = { full: fullEvaluation(model, method, params, st, calibration), firstRun: run };
        fullEvaluations.set(key, evaluated);
        return evaluated;
      };
      const searchRow = (run: string, kind: RunKind, outcome: SearchOutcome, evaluated: Evaluated, logFile: string, proxy: ProxyName | null, sign: 1 | -1 | null): RunRow => ({
        ...base,
        kind,
        run,
        method: config.method,
        search: outcome.search,
        proxy,
        sign,
        fromModel: null,
        ...fullRow(evaluated.full, config.method),
        vsHillclimbPct: null,
        pplEvals: outcome.pplEvals,
        proxyEvals: outcome.proxyEvals,
        bestSearchValue: outcome.bestValue,
        stopReason: outcome.stopReason,
        // a Fisher proxy's backward passes are part of what its search pays up front
        calibrationSeconds: setup.calibrationSeconds + (proxy && PROXIES[proxy].needsFisher ? setup.fisherSeconds : 0),
        loopWallSeconds: outcome.seconds,
        loopCpuSeconds: outcome.cpuSeconds,
        evalLog: logFile,
        note: sharedNote(evaluated, run),
      });
      const writeLog = (search: string, outcome: SearchOutcome): string => {
        const file = path.join(out, evalLogName(name, entry.name, search));
        writeFileAtomic(file, evalLogCsv(outcome.log));
        files.push(file);
        return file;
      };
      const say = (r: RunRow): void => {
        const cost = r.loopWallSeconds === null ? '' : `; ${r.pplEvals} PPL + ${r.proxyEvals} proxy evaluations, loop ${r.loopWallSeconds.toFixed(2)} s wall (${r.loopCpuSeconds!.toFixed(2)} s CPU)`;
        log(`${name} ${entry.name} ${r.run}: full PPL ${r.fullPpl.toFixed(4)} at ${formatParams(r.params)}${cost}`);
      };

      const hc = withProgress(hooks, `${name} ${entry.name} hillclimb`, 'PPL evals', config.hillclimb.budget, (onEval) =>
        hillClimbSearch(setup, config.space, { budget: config.hillclimb.budget, windows: config.hillclimb.searchWindows, seed: config.hillclimb.seed, onEval }),
      );
      const hcLog = writeLog('hillclimb', hc);
      const pho = withProgress(hooks, `${name} ${entry.name} pho ${config.pho.proxy}`, 'proxy evals', config.pho.budget, (onEval) =>
        phoSearch(setup, config.space, { proxy: config.pho.proxy, sign: config.pho.sign, budget: config.pho.budget, seed: config.pho.seed, onEval }),
      );
      const phoLog = writeLog('pho', pho);

      const hcRow = searchRow('hillclimb', 'search', hc, evaluate('hillclimb', config.method, hc.best), hcLog, null, null);
      say(hcRow);
      const phoRow = searchRow('pho', 'search', pho, evaluate('pho', config.method, pho.best), phoLog, config.pho.proxy, config.pho.sign);
      say(phoRow);
      rows.push(hcRow, phoRow);

      for (const b of config.baselines) {
        const evaluated = evaluate(b.name, b.method, b.params);
        const row: RunRow = {
          ...base,
          kind: 'baseline',
          run: b.name,
          method: b.method,
          search: null,
          proxy: null,
          sign: null,
          fromModel: null,
          ...fullRow(evaluated.full, b.method),
          ...NO_SEARCH,
          evalLog: null,
          note: sharedNote(evaluated, b.name),
        };
        say(row);
        rows.push(row);
      }

      if (config.phoEveryProxy.includes(entry.name)) {
        for (const proxy of PROXY_NAMES) {
          const sign = proxySign(proxy);
          if (proxy === config.pho.proxy && sign === config.pho.sign) {
            // The same search as the PHO run above (same proxy, sign, budget, seed and statistics): reuse it.
            rows.push({ ...phoRow, kind: 'proxy', run: `pho ${proxy}`, note: SAME_AS_PHO });
            continue;
          }
          const outcome = withProgress(hooks, `${name} ${entry.name} pho ${proxy}`, 'proxy evals', config.pho.budget, (onEval) =>
            phoSearch(setup, config.space, { proxy, sign, budget: config.pho.budget, seed: config.pho.seed, onEval }),
          );
          const file = writeLog(`pho-${proxy}`, outcome);
          const row = searchRow(`pho ${proxy}`, 'proxy', outcome, evaluate(`pho ${proxy}`, config.method, outcome.best), file, proxy, sign);
          say(row);
          rows.push(row);
        }
      }
    }
  } finally {
    model.source.close();
  }
}

/** Each model's best hill-climbing and PHO configurations, pruned and evaluated on every other model. */
function runTransfer(plan: ComparePlan, hooks: CompareHooks, rows: RunRow[]): void {
  const { config } = plan;
  const log = hooks.log ?? (() => {});
  const searchRows = rows.filter((r) => r.kind === 'search');
  for (const target of config.models) {
    const model = openModel(target);
    try {
      const calibration = calibrationFor(model, config);
      for (const entry of config.structures.filter((s) => config.transfer.includes(s.name))) {
        const structure = structureFor(entry, config.method);
        for (const source of config.models.filter((m) => m !== target)) {
          for (const found of searchRows.filter((r) => r.model === source && r.structure === entry.name)) {
            const full = fullEvaluation(model, config.method, found.params, structure, calibration);
            const row: RunRow = {
              model: target,
              structure: entry.name,
              structureLabel: entry.label,
              kind: 'transfer',
              run: `${found.run} of ${source}`,
              method: config.method,
              search: found.search,
              proxy: found.proxy,
              sign: found.sign,
              fromModel: source,
              params: inStrategyOrder(config.method, full.params),
              fullPpl: full.ppl,
              ...NO_SEARCH,
              pruneSeconds: full.pruneSeconds,
              evalSeconds: full.evalSeconds,
              evalWindows: full.record.windows,
              evalSeqlen: full.record.seqlen,
              evalLog: null,
              note: '',
            };
            log(`${target} ${entry.name} ${row.run}: full PPL ${row.fullPpl.toFixed(4)} at ${formatParams(row.params)}`);
            rows.push(row);
          }
        }
      }
    } finally {
      model.source.close();
    }
  }
}

/** The same parameters in the strategy's declaration order (alpha beta gamma kh kw a), for reading. */
function inStrategyOrder(method: string, params: Params): Params {
  const names = Object.keys(getStrategy(method).params);
  const rank = (k: string): number => (names.includes(k) ? names.indexOf(k) : names.length);
  return Object.fromEntries(Object.entries(params).sort(([a], [b]) => rank(a) - rank(b)));
}

function hillclimbRow(rows: readonly RunRow[], model: string, structure: string): RunRow | undefined {
  return rows.find((r) => r.kind === 'search' && r.search === 'hillclimb' && r.model === model && r.structure === structure);
}

function fillVsHillclimb(rows: RunRow[]): void {
  for (const r of rows) {
    const hc = hillclimbRow(rows, r.model, r.structure);
    r.vsHillclimbPct = hc ? (r.fullPpl / hc.fullPpl - 1) * 100 : null;
  }
}

/** The paper's acceptance test: PHO within 1% of hill climbing at >= 20x less search time. */
export const WITHIN_PCT = 1;
export const SPEEDUP = 20;

function costRows(config: SearchCompareConfig, rows: readonly RunRow[]): CostRow[] {
  const out: CostRow[] = [];
  for (const model of config.models) {
    for (const entry of config.structures) {
      const hc = hillclimbRow(rows, model, entry.name);
      const pho = rows.find((r) => r.kind === 'search' && r.search === 'pho' && r.model === model && r.structure === entry.name);
      if (!hc || !pho) continue;
      const withCalibration = (hc.calibrationSeconds! + hc.loopWallSeconds!) / (pho.calibrationSeconds! + pho.loopWallSeconds!);
      const loopWallRatio = hc.loopWallSeconds! / pho.loopWallSeconds!;
      const pct = (pho.fullPpl / hc.fullPpl - 1) * 100;
      out.push({
        model,
        structure: entry.name,
        structureLabel: entry.label,
        hillclimbPpl: hc.fullPpl,
        phoPpl: pho.fullPpl,
        phoVsHillclimbPct: pct,
        loopWallRatio,
        loopCpuRatio: hc.loopCpuSeconds! / pho.loopCpuSeconds!,
        withCalibrationRatio: withCalibration,
        within1Pct: pct <= WITHIN_PCT,
        loopAtLeast20x: loopWallRatio >= SPEEDUP,
        withCalibrationAtLeast20x: withCalibration >= SPEEDUP,
      });
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// proxy studies already in the output folder (optional summary)

/** proxy-study-<model>-<method>-<u50|2of4>.csv, as `crepe proxy-study` names it. */
export function proxyStudyCsvName(model: string, method: string, entry: StructureEntry): string {
  const [n, m] = entry.structure.split(':');
  const structure = entry.structure === 'unstructured' ? `u${Math.round(entry.sparsity * 100)}` : `${n}of${m}`;
  return `proxy-study-${modelStem(model)}-${method}-${structure}.csv`;
}

/** Spearman rho per proxy from the proxy-study CSVs found in the output folder (none: []). */
export function readProxyStudies(plan: ComparePlan): ProxyStudyColumn[] {
  const { config, out } = plan;
  const columns: ProxyStudyColumn[] = [];
  for (const entry of config.structures) {
    for (const model of config.models) {
      const file = path.join(out, proxyStudyCsvName(model, config.method, entry));
      if (!fs.existsSync(file)) continue;
      const table = parseCsv(fs.readFileSync(file, 'utf8'), file);
      const proxies = PROXY_NAMES.filter((p) => table.columns.includes(p));
      if (!table.columns.includes('ppl') || proxies.length === 0) continue;
      const num = (s: string | undefined): number => (s === undefined || s === '' ? NaN : Number(s));
      const samples: StudySample[] = table.rows.map((r, index) => ({
        index,
        params: {},
        proxies: Object.fromEntries(proxies.map((p) => [p, num(r[p])])),
        ppl: num(r.ppl),
        seconds: num(r.seconds),
      }));
      const spearman = Object.fromEntries(correlations(samples, proxies).map((c) => [c.proxy, c.spearman]));
      columns.push({ model, structure: entry.name, structureLabel: entry.label, file, samples: samples.length, spearman });
    }
  }
  return columns;
}

// ---------------------------------------------------------------------------------------------
// output

export const CSV_COLUMNS = [
  'model', 'structure', 'run', 'params', 'full_ppl', 'vs_hillclimb_pct', 'ppl_evals', 'proxy_evals', 'best_search_value',
  'calibration_s', 'loop_wall_s', 'loop_cpu_s', 'search_wall_s', 'kind', 'structure_label', 'method', 'search', 'proxy', 'sign',
  'from_model', 'stop_reason', 'prune_s', 'eval_s', 'eval_windows', 'eval_seqlen', 'eval_log', 'note',
] as const;

/** Parameters in full precision (`alpha=750.0000000001 ...`), so a row reproduces exactly. */
export function paramsText(params: Params): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

const fixed = (v: number | null, digits: number): string => (v === null ? '' : v.toFixed(digits));

export function comparisonCsv(rows: readonly RunRow[]): string {
  return csvText(
    CSV_COLUMNS,
    rows.map((r) => [
      r.model,
      r.structure,
      r.run,
      paramsText(r.params),
      r.fullPpl,
      fixed(r.vsHillclimbPct, 4),
      r.pplEvals,
      r.proxyEvals,
      r.bestSearchValue,
      fixed(r.calibrationSeconds, 3),
      fixed(r.loopWallSeconds, 3),
      fixed(r.loopCpuSeconds, 3),
      r.calibrationSeconds === null || r.loopWallSeconds === null ? '' : (r.calibrationSeconds + r.loopWallSeconds).toFixed(3),
      r.kind,
      r.structureLabel,
      r.method,
      r.search,
      r.proxy,
      r.sign,
      r.fromModel,
      r.stopReason,
      r.pruneSeconds.toFixed(3),
      r.evalSeconds.toFixed(3),
      r.evalWindows,
      r.evalSeqlen,
      r.evalLog === null ? '' : path.basename(r.evalLog),
      r.note,
    ]),
  );
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const ppl = (v: number): string => v.toFixed(4);
const pct = (v: number | null): string => (v === null ? '' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}%`);
const secs = (v: number | null): string => (v === null ? '' : v.toFixed(2));
const ratio = (v: number): string => `${v.toFixed(1)}x`;
const signText = (s: 1 | -1 | null): string => (s === null ? '' : s > 0 ? '+1' : '-1');
const table = (header: string[], align: string[], body: string[][]): string[] => [
  `| ${header.join(' | ')} |`,
  `|${align.join('|')}|`,
  ...body.map((r) => `| ${r.map(cell).join(' | ')} |`),
];

function spaceText(space: SearchSpace): string {
  const dims = space.dims.map((d) => `${d.name} ${d.scale === 'log10' ? 'log10 ' : d.scale === 'odd-index' ? 'odd ' : ''}[${d.min}, ${d.max}]`).join(', ');
  const fixedParams = Object.keys(space.fixed).length ? `; fixed ${formatParams(space.fixed)}` : '';
  return `${dims}${fixedParams}`;
}

/** "stories260K 191 x 512" per model, from the full evaluations. */
function evaluationSizes(rows: readonly RunRow[], models: readonly string[]): string {
  return models
    .map((m) => rows.find((r) => r.model === m))
    .filter((r): r is RunRow => r !== undefined)
    .map((r) => `${r.model} ${r.evalWindows} x ${r.evalSeqlen}`)
    .join(', ');
}

/** The settings paragraph: everything the numbers below depend on, from the config and the run. */
function settingsParagraph(result: ComparisonResult): string {
  const { config } = result.plan;
  const c = config.calibration;
  const proxyDefault = config.pho.proxyGiven === 'default' ? ', the default proxy' : '';
  const keep = [...new Set(result.calibrations.map((k) => k.options.keepInputs))].filter((k) => k > 0);
  const groups = [...new Set([config.method, ...config.baselines.map((b) => b.method)])]
    .map((m) => `${m} ${getStrategy(m).defaultGroup}`)
    .join(', ');
  const hasUnstructured = config.structures.some((s) => s.structure === 'unstructured');
  const calibrationCount =
    c.stats === 'dense'
      ? 'collected once per model and shared by every search and structure of that model'
      : 'collected once per model and structure (a sequential pruning pass with the default parameters)';
  const baselines = config.baselines.length
    ? ` Baselines: ${config.baselines.map((b) => `${b.name} = ${b.method} ${formatParams(b.params)}`).join('; ')}.`
    : '';
  const runs = [
    config.transfer.length && config.models.length > 1 ? `transfer on ${config.transfer.join(', ')}` : '',
    config.phoEveryProxy.length ? `PHO with every proxy (${PROXY_NAMES.join(', ')}; each proxy's default sign) on ${config.phoEveryProxy.join(', ')}` : '',
  ].filter((s) => s);
  return [
    `Generated by \`${result.command}\` from ${config.file} (code ${result.codeVersion}, backend ${result.backend});`,
    `every number below comes from that run. Method ${config.method}; models ${config.models.join(', ')};`,
    `structures ${config.structures.map((s) => `${s.name} = ${s.label}`).join(', ')}${hasUnstructured ? ` (unstructured compared per each method's default group: ${groups})` : ''}.`,
    `Calibration: ${c.nsamples} ${c.dataset} windows at the model's context (seed ${c.seed}); ${c.stats} statistics ${calibrationCount}${keep.length ? `, keeping ${keep.join('/')} raw windows per layer for the reconstruction proxies` : ''}.`,
    `Hill climbing: ${config.hillclimb.budget} PPL evaluations on the first ${config.hillclimb.searchWindows} ${SEARCH_DATASET} evaluation windows (validation split), seed ${config.hillclimb.seed}, from ${formatParams(inStrategyOrder(config.method, searchStart(config.space)))}.`,
    `PHO: ${config.pho.budget} evaluations of the ${config.pho.proxy} proxy (sign ${signText(config.pho.sign)}${proxyDefault}) with CMA-ES from the same start, seed ${config.pho.seed}.`,
    `Search space: ${spaceText(config.space)}.${baselines}${runs.length ? ` Also: ${runs.join('; ')}.` : ''}`,
    `"full PPL" = the configuration pruned with the standard sequential pipeline (as \`crepe prune\`) and evaluated on every ${REPORT_DATASET} evaluation window (test split) (${evaluationSizes(result.rows, config.models)}).`,
    `Times: calibration = collecting the statistics, plus the Fisher pass for a Fisher proxy (charged in full to each search in "search wall s" and in the ratio including calibration); loop = the search's evaluations;`,
    `CPU = user + system seconds of this process during the loop. Calibration per ${c.stats === 'dense' ? 'model' : 'model and structure'}: ${result.calibrations
      .map((k) => `${k.model}${k.structure === null ? '' : ` ${k.structure}`} ${k.seconds.toFixed(2)} s${k.setupSeconds - k.seconds >= 0.01 ? ` (${k.setupSeconds.toFixed(2)} s with the extras some proxies need)` : ''}`)
      .join(', ')}. Total run ${result.totalWallSeconds.toFixed(0)} s wall.`,
  ].join('\n');
}

function runLabel(r: RunRow): string {
  return r.kind === 'search' && r.search === 'pho' ? `PHO (${r.proxy})` : r.run;
}

export function comparisonMarkdown(result: ComparisonResult): string {
  const { config } = result.plan;
  const rows = result.rows;
  const lines: string[] = [`# ${config.method} hyperparameter search: PPL hill climbing versus PHO`, '', settingsParagraph(result), ''];

  lines.push('## Runs', '');
  lines.push(
    ...table(
      ['model', 'structure', 'run', 'params', 'full PPL', 'vs hillclimb', 'PPL evals', 'proxy evals', 'best search value', 'calibration s', 'loop wall s', 'loop CPU s', 'search wall s (calib+loop)'],
      ['---', '---', '---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:'],
      rows
        .filter((r) => r.kind === 'baseline' || r.kind === 'search')
        .map((r) => [
          r.model,
          r.structureLabel,
          runLabel(r),
          formatParams(r.params),
          ppl(r.fullPpl),
          pct(r.vsHillclimbPct),
          r.pplEvals === null ? '' : String(r.pplEvals),
          r.proxyEvals === null ? '' : String(r.proxyEvals),
          r.bestSearchValue === null ? '' : r.bestSearchValue.toPrecision(5),
          secs(r.calibrationSeconds),
          secs(r.loopWallSeconds),
          secs(r.loopCpuSeconds),
          r.calibrationSeconds === null || r.loopWallSeconds === null ? '' : secs(r.calibrationSeconds + r.loopWallSeconds),
        ]),
    ),
    '',
  );

  lines.push('## Cost ratios (hill climbing / PHO) and quality', '');
  lines.push(
    `"within ${WITHIN_PCT}%?": PHO's full PPL at most ${WITHIN_PCT}% above hill climbing's; ">= ${SPEEDUP}x?": the wall ratio of the search loops, and of calibration + loop.`,
    '',
  );
  lines.push(
    ...table(
      ['model', 'structure', 'full PPL hillclimb', 'full PPL PHO', 'PHO vs HC', 'loop wall ratio', 'loop CPU ratio', 'search wall ratio incl. calibration', `within ${WITHIN_PCT}%?`, `>= ${SPEEDUP}x?`],
      ['---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---', '---'],
      result.costs.map((c) => [
        c.model,
        c.structureLabel,
        ppl(c.hillclimbPpl),
        ppl(c.phoPpl),
        pct(c.phoVsHillclimbPct),
        ratio(c.loopWallRatio),
        ratio(c.loopCpuRatio),
        ratio(c.withCalibrationRatio),
        c.within1Pct ? 'yes' : 'no',
        `loop ${c.loopAtLeast20x ? 'yes' : 'no'}, incl. calibration ${c.withCalibrationAtLeast20x ? 'yes' : 'no'}`,
      ]),
    ),
    '',
  );

  const transfer = rows.filter((r) => r.kind === 'transfer');
  if (transfer.length) {
    lines.push('## Transfer: the best configuration of one model applied to another', '');
    lines.push(
      ...table(
        ['structure', 'configuration', 'applied to', 'params', 'full PPL', 'vs hillclimb', "that model's own search (same method)"],
        ['---', '---', '---', '---', '---:', '---:', '---:'],
        transfer.map((r) => {
          const own = rows.find((o) => o.kind === 'search' && o.search === r.search && o.model === r.model && o.structure === r.structure);
          return [
            r.structureLabel,
            `${r.search === 'pho' ? `PHO (${r.proxy})` : 'hillclimb'} best of ${r.fromModel}`,
            r.model,
            formatParams(r.params),
            ppl(r.fullPpl),
            pct(r.vsHillclimbPct),
            own ? ppl(own.fullPpl) : '',
          ];
        }),
      ),
      '',
    );
  }

  const perProxy = rows.filter((r) => r.kind === 'proxy');
  if (perProxy.length) {
    lines.push(`## PHO with every proxy (budget ${config.pho.budget}, seed ${config.pho.seed})`, '');
    lines.push("sign = the proxy's default direction (+1 minimize, -1 maximize); \"vs hillclimb\" compares with the hill-climbing run of the same model and structure.", '');
    lines.push(
      ...table(
        ['model', 'structure', 'proxy', 'sign', 'best configuration', 'full PPL', 'vs hillclimb', 'best proxy', 'loop wall s', 'loop CPU s'],
        ['---', '---', '---', '---:', '---', '---:', '---:', '---:', '---:', '---:'],
        perProxy.map((r) => [
          r.model,
          r.structureLabel,
          r.note === SAME_AS_PHO ? `${r.proxy} (${SAME_AS_PHO})` : r.proxy!,
          signText(r.sign),
          formatParams(r.params),
          ppl(r.fullPpl),
          pct(r.vsHillclimbPct),
          r.bestSearchValue === null ? '' : r.bestSearchValue.toPrecision(5),
          secs(r.loopWallSeconds),
          secs(r.loopCpuSeconds),
        ]),
      ),
      '',
    );
  }

  if (result.proxyStudies.length) {
    const studies = result.proxyStudies;
    const proxies = PROXY_NAMES.filter((p) => studies.some((s) => s.spearman[p] !== undefined));
    const rho = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? 'n/a' : `${v >= 0 ? '+' : ''}${v.toFixed(3)}`);
    lines.push('## Proxy studies (Spearman rho with search-subset PPL)', '');
    lines.push(
      `Recomputed from the \`crepe proxy-study\` CSVs in this folder (${studies.map((s) => path.basename(s.file)).join(', ')}; not rerun by this command). Positive = lower proxy, lower PPL.`,
      '',
    );
    lines.push(
      ...table(
        ['proxy', ...studies.map((s) => `${s.model} ${s.structureLabel} (n=${s.samples})`), 'mean abs rho', 'min abs rho'],
        ['---', ...studies.map(() => '---:'), '---:', '---:'],
        proxies.map((p) => {
          const abs = studies.map((s) => Math.abs(s.spearman[p] ?? NaN)).filter((v) => Number.isFinite(v));
          return [p, ...studies.map((s) => rho(s.spearman[p])), abs.length ? mean(abs).toFixed(3) : 'n/a', abs.length ? Math.min(...abs).toFixed(3) : 'n/a'];
        }),
      ),
      '',
    );
  }
  return lines.join('\n');
}

/** Everything as one JSON-ready object (the CLI's --json). */
export function comparisonJson(result: ComparisonResult): Record<string, unknown> {
  const { config } = result.plan;
  return {
    config: {
      file: config.file,
      models: config.models,
      method: config.method,
      structures: config.structures,
      calibration: config.calibration,
      hillclimb: { budget: config.hillclimb.budget, search_windows: config.hillclimb.searchWindows, seed: config.hillclimb.seed },
      pho: { proxy: config.pho.proxy, sign: config.pho.sign, budget: config.pho.budget, seed: config.pho.seed },
      baselines: config.baselines,
      transfer: config.transfer,
      pho_every_proxy: config.phoEveryProxy,
      space: { dims: config.space.dims.map((d) => ({ name: d.name, scale: d.scale, min: d.min, max: d.max })), fixed: config.space.fixed, start: searchStart(config.space) },
    },
    out: result.plan.out,
    calibrations: result.calibrations.map((c) => ({
      model: c.model,
      structure: c.structure,
      seconds: c.seconds,
      setup_seconds: c.setupSeconds,
      options: c.options,
      nsamples: c.nsamples,
      seqlen: c.seqlen,
    })),
    runs: result.rows.map((r) => ({
      model: r.model,
      structure: r.structure,
      structure_label: r.structureLabel,
      kind: r.kind,
      run: r.run,
      method: r.method,
      search: r.search,
      proxy: r.proxy,
      sign: r.sign,
      from_model: r.fromModel,
      params: r.params,
      full_ppl: r.fullPpl,
      vs_hillclimb_pct: r.vsHillclimbPct,
      ppl_evals: r.pplEvals,
      proxy_evals: r.proxyEvals,
      best_search_value: r.bestSearchValue,
      stop_reason: r.stopReason,
      calibration_seconds: r.calibrationSeconds,
      loop_wall_seconds: r.loopWallSeconds,
      loop_cpu_seconds: r.loopCpuSeconds,
      prune_seconds: r.pruneSeconds,
      eval_seconds: r.evalSeconds,
      eval_windows: r.evalWindows,
      eval_seqlen: r.evalSeqlen,
      eval_log: r.evalLog,
      note: r.note || null,
    })),
    costs: result.costs,
    proxy_studies: result.proxyStudies,
    files: result.files,
    backend: result.backend,
    code_version: result.codeVersion,
    command: result.command,
    total_wall_seconds: result.totalWallSeconds,
  };
}
