/**
 * The comparison's outputs: the results CSV (one row per unit), the Markdown report whose every
 * number comes from the journal of this config, and the --json object. Findings belong in the
 * README, not here.
 */
import * as fs from 'fs';
import * as path from 'path';
import { getStrategy } from '../../prune/strategy';
import { REPORT_DATASET, SEARCH_DATASET } from '../../search/objective';
import { ProxyName, listProxies } from '../../search/proxies';
import { mean } from '../../search/rank';
import { SearchSpace, formatParams, searchStart } from '../../search/space';
import { StudySample, correlations } from '../../search/study';
import { csvText, parseCsv } from '../../util/csv';
import { HILLCLIMB_RUN, StructureEntry, modelStem } from '../search-config';
import { ConvergenceCurve, CostRow, Projection, SPEEDUP, Spread, TransferRow, WITHIN_PCT } from './costs';
import { ComparePlan } from './plan';
import { CalibrationRecord, RunRow, paramsText } from './rows';
import { DEFAULT_ETA, PhoVerify, verifyRungs } from '../../search/pho';
import { FinalMeasure } from '../../search/final';
import { inStrategyOrder } from './run';

export const RESULTS_CSV = 'search-comparison.csv';
export const RESULTS_MD = 'search-comparison.md';

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
  curves: ConvergenceCurve[];
  transfer: TransferRow[];
  projection: Projection | null;
  calibrations: CalibrationRecord[];
  proxyStudies: ProxyStudyColumn[];
  files: string[];
  backend: string;
  codeVersion: string;
  command: string;
  /** Units run by this invocation, and those found in the journal. */
  ranUnits: number;
  resumedUnits: number;
  /** Units of the plan with no row (a report written with --report-only before the run finished). */
  missingUnits: number;
  /** Units whose journal row is no longer current (config or code changed) and was not rerun yet. */
  staleUnits: number;
  totalWallSeconds: number;
  /** What else ran on the machine, as the caller saw it (e.g. the load average). */
  load: string;
}

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
      const proxies = listProxies().filter((p) => table.columns.includes(p));
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

export const CSV_COLUMNS = [
  'model', 'structure', 'run', 'seed', 'params', 'full_ppl', 'ppl_evals', 'proxy_evals', 'best_search_value',
  'calibration_s', 'loop_wall_s', 'loop_cpu_s', 'window_evals', 'kind', 'structure_label', 'method', 'search', 'proxies',
  'from_model', 'stop_reason', 'prune_s', 'eval_s', 'eval_dataset', 'eval_windows', 'eval_seqlen', 'eval_log', 'note',
  'load_average', 'code_version',
] as const;

const fixed = (v: number | null, digits: number): string => (v === null ? '' : v.toFixed(digits));

export function comparisonCsv(rows: readonly RunRow[]): string {
  return csvText(
    CSV_COLUMNS,
    rows.map((r) => [
      r.model, r.structure, r.run, r.seed, paramsText(r.params), r.fullPpl, r.pplEvals, r.proxyEvals, r.bestSearchValue,
      fixed(r.calibrationSeconds, 3), fixed(r.loopWallSeconds, 3), fixed(r.loopCpuSeconds, 3), r.windowEvals, r.kind, r.structureLabel, r.method, r.search, r.proxies,
      r.fromModel, r.stopReason, r.pruneSeconds.toFixed(3), r.evalSeconds.toFixed(3), r.evalDataset, r.evalWindows, r.evalSeqlen, r.evalLog ?? '', r.note,
      r.loadAverage.toFixed(2), r.codeVersion,
    ]),
  );
}

const cell = (s: string): string => s.replace(/\|/g, '\\|').replace(/\n/g, ' ');
const ppl = (v: number): string => v.toFixed(4);
const pm = (s: Spread, digits = 4): string => (s.n > 1 ? `${s.mean.toFixed(digits)} ± ${s.std.toFixed(digits)} (n=${s.n})` : `${s.mean.toFixed(digits)} (n=1)`);
const pct = (v: number | null): string => (v === null ? '' : `${v >= 0 ? '+' : ''}${v.toFixed(2)}%`);
const secs = (v: number | null): string => (v === null ? '' : v.toFixed(2));
const ratio = (v: number): string => `${v.toFixed(1)}x`;
const duration = (s: number): string => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` : `${s.toFixed(1)} s`);
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

/** How a PHO variant measures its candidates, in words. */
function verifyText(v: PhoVerify): string {
  const rungs = verifyRungs(v);
  const pool = `the ${v.candidates} best distinct configurations of each run${v.start ? ' and the start point' : ''}`;
  const final = v.final ?? 'search';
  const finalText = final === 'search' ? '' : `${finalMeasureText(final, v.finalCalibrationWindows)} `;
  if (rungs.length === 1) return `${pool} measured by ${finalText}PPL on ${rungs[0]} search windows, lowest wins`;
  const last = final === 'search' ? 'lowest PPL at the last rung wins' : `the survivors measured afresh at the last rung by ${finalText}PPL, lowest wins`;
  return `${pool} measured by successive halving on the search windows (all on ${rungs[0]}, the best 1/${v.eta ?? DEFAULT_ETA} on up to ${rungs.slice(1).join(', then ')}), ${last}`;
}

/** A final measurement in words (lib/search/final.ts). */
function finalMeasureText(measure: FinalMeasure, calibrationWindows?: number): string {
  if (measure === 'pruned') return "one-shot 'pruned'-statistics";
  if (measure === 'sequential') return `sequential-pipeline (as crepe prune${calibrationWindows === undefined ? '' : `, ${calibrationWindows} calibration windows`})`;
  return 'one-shot';
}

/** "abc (12 rows), def (3 rows)". */
function codeVersions(rows: readonly RunRow[]): string {
  const counts = new Map<string, number>();
  for (const r of rows) counts.set(r.codeVersion, (counts.get(r.codeVersion) ?? 0) + 1);
  return [...counts].map(([v, n]) => `${v} (${n} row${n === 1 ? '' : 's'})`).join(', ') || 'none';
}

function loadRange(rows: readonly RunRow[]): string {
  const loads = rows.map((r) => r.loadAverage);
  return loads.length ? `${Math.min(...loads).toFixed(1)} to ${Math.max(...loads).toFixed(1)}` : 'no rows';
}

function evaluationSizes(rows: readonly RunRow[], models: readonly string[]): string {
  return models
    .map((m) => rows.find((r) => r.model === m))
    .filter((r): r is RunRow => r !== undefined)
    .map((r) => `${r.model} ${r.evalDataset} ${r.evalWindows} x ${r.evalSeqlen}`)
    .join(', ');
}

function settingsParagraph(result: ComparisonResult): string {
  const { config } = result.plan;
  const c = config.calibration;
  const groups = [...new Set([config.method, ...config.baselines.map((b) => b.method)])].map((m) => `${m} ${getStrategy(m).defaultGroup}`).join(', ');
  const hasUnstructured = config.structures.some((s) => s.structure === 'unstructured');
  const variants = config.pho
    .map((v, i) => `${v.name}${i === 0 ? ' (the method compared)' : ''} = CMA-ES on ${v.proxies.map((p) => `${p.proxy} (sign ${p.sign > 0 ? '+1' : '-1'})`).join(' and ')}, ${v.budget} proxy evaluations each${
      v.proxyRows < 1 ? ` (proxies on ${v.proxyRows * 100}% of each layer's rows)` : ''
    }${v.verify ? `, then ${verifyText(v.verify)}` : ', best proxy wins'}`)
    .join('; ');
  return [
    `Generated by \`${result.command}\` from ${config.file} (code ${result.codeVersion}, backend ${result.backend}); every number below comes from this config's journal`,
    `(${result.ranUnits} units run by the last invocation, ${result.resumedUnits} resumed from earlier ones${result.missingUnits ? `; ${result.missingUnits} units of the plan have no current row yet${result.staleUnits ? ` (${result.staleUnits} of them have a row from older code or config)` : ''}: cells show the seeds that finished (n)` : ''}).`,
    `Rows were produced by code ${codeVersions(result.rows)}; a row is reused only while the code that decides its numbers and its part of the config are unchanged (the journal's fingerprints), otherwise it is rerun. Machine load: ${result.load}; each row records the 1-minute load average when it finished (${loadRange(result.rows)}).`,
    `Method ${config.method}; models ${config.models.join(', ')}; structures ${config.structures.map((s) => `${s.name} = ${s.label}`).join(', ')}${hasUnstructured ? ` (unstructured per each method's default group: ${groups})` : ''}; search seeds ${config.seeds.join(', ')}.`,
    `Calibration: ${c.nsamples} ${c.dataset} windows at the model's context (seed ${c.seed}); ${c.stats} statistics collected once per model${c.stats === 'dense' ? ' and shared by every search and structure' : ' and structure'}.`,
    `Hill climbing: PPL on ${config.searchSample === 'spread' ? `${config.hillclimb.searchWindows} ${SEARCH_DATASET} windows spread over the whole split (van der Corput order: 0, 1/2, 1/4, 3/4, ... of it; every search, PHO's halving rungs included, measures a prefix of these)` : `the first ${config.hillclimb.searchWindows} ${SEARCH_DATASET} windows`}, budget ${config.hillclimb.budget} evaluations (it stops earlier when converged), from ${formatParams(inStrategyOrder(config.method, searchStart(config.space)))}${
      config.hillclimb.final ? `; its ${config.hillclimb.final.candidates} best distinct configurations then measured by ${finalMeasureText(config.hillclimb.final.measure, config.hillclimb.final.calibrationWindows)} PPL on ${config.hillclimb.final.windows} search windows, lowest wins` : ''
    }.`,
    `PHO variants, same start and seeds: ${variants}.`,
    `Search space: ${spaceText(config.space)}.${config.baselines.length ? ` Baselines: ${config.baselines.map((b) => `${b.name} = ${b.method} ${formatParams(b.params)}`).join('; ')}.` : ''}`,
    `"full PPL" = the configuration pruned with the standard sequential pipeline (as \`crepe prune\`) and evaluated on ${config.reportWindows ? `the first ${config.reportWindows} windows` : 'every window'} of the ${REPORT_DATASET} test split (${evaluationSizes(result.rows, config.models)}); mean ± sample std over the search seeds. Searches measure only on the ${SEARCH_DATASET} validation split.`,
    `Times: loop = the search's evaluations (wall, and CPU = user + system of this process and of any child process it started); calibration = the statistics and the search evaluator's caches, once per model: ${result.calibrations
      .map((k) => `${k.model}${k.structure === null ? '' : ` ${k.structure}`} ${k.seconds.toFixed(2)} s`)
      .join(', ')}.`,
  ].join('\n');
}

export function comparisonMarkdown(result: ComparisonResult): string {
  const { config } = result.plan;
  const rows = result.rows;
  const lines: string[] = [`# ${config.method} hyperparameter search: PPL hill climbing versus PHO`, '', settingsParagraph(result), ''];

  lines.push(`## PHO against hill climbing (mean over seeds ${config.seeds.join(', ')})`, '');
  lines.push(`"within ${WITHIN_PCT}%?": mean PHO full PPL at most ${WITHIN_PCT}% above mean hill climbing's; ">= ${SPEEDUP}x?": ratio of the mean search-loop wall times.`, '');
  lines.push(
    ...table(
      ['model', 'structure', 'PHO variant', 'full PPL hillclimb', 'full PPL PHO', 'PHO vs HC', 'HC evals (windows)', 'PHO proxy + PPL evals (windows)', 'HC loop s', 'PHO loop s', 'loop wall ratio', 'loop CPU ratio', 'incl. calibration', `within ${WITHIN_PCT}%?`, `>= ${SPEEDUP}x?`],
      ['---', '---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---', '---'],
      result.costs.map((c) => [
        c.model, c.structureLabel, `${c.pho} (${c.proxies})`, pm(c.hillclimbPpl), pm(c.phoPpl), pct(c.phoVsHillclimbPct),
        `${c.hillclimbEvals.mean.toFixed(1)} (${c.hillclimbWindowEvals.mean.toFixed(0)})`, `${c.phoProxyEvals.mean.toFixed(0)} + ${c.phoPplEvals.mean.toFixed(1)} (${c.phoWindowEvals.mean.toFixed(1)})`,
        secs(c.hillclimbLoopSeconds), secs(c.phoLoopSeconds), ratio(c.loopWallRatio), ratio(c.loopCpuRatio), ratio(c.withCalibrationRatio),
        c.within1Pct ? 'yes' : 'no', c.loopAtLeast20x ? 'yes' : 'no',
      ]),
    ),
    '',
  );

  if (result.curves.length) {
    lines.push('## Hill climbing converges (best search-subset PPL after k evaluations, mean over seeds)', '');
    for (const curve of result.curves) {
      lines.push(
        `${curve.model} ${curve.structureLabel}: ${curve.seeds.map((s) => `seed ${s.seed} stopped after ${s.evals} (${s.stopReason})`).join(', ')}; ` +
          curve.bestAfter.map((p) => `${p.evals}: ${p.ppl.toFixed(4)}`).join(', '),
        '',
      );
    }
  }

  lines.push('## Runs', '');
  lines.push(
    ...table(
      ['model', 'structure', 'run', 'seed', 'params', 'full PPL', 'PPL evals', 'window evals', 'proxy evals', 'best search value', 'loop wall s', 'loop CPU s', 'load', 'note'],
      ['---', '---', '---', '---:', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---'],
      rows
        .filter((r) => r.kind !== 'transfer')
        .map((r) => [
          r.model, r.structureLabel, r.run, r.seed === null ? '' : String(r.seed), formatParams(r.params), ppl(r.fullPpl),
          r.pplEvals === null ? '' : String(r.pplEvals), r.windowEvals === null ? '' : String(r.windowEvals), r.proxyEvals === null ? '' : String(r.proxyEvals),
          r.bestSearchValue === null ? '' : r.bestSearchValue.toPrecision(5), secs(r.loopWallSeconds), secs(r.loopCpuSeconds), r.loadAverage.toFixed(1), r.note,
        ]),
    ),
    '',
  );

  if (result.transfer.length) {
    lines.push('## Transfer: configurations found on one model, applied to the other (full PPL, mean over seeds)', '');
    lines.push(
      ...table(
        ['structure', 'search', 'found on', 'applied to', 'transferred', "target's own search", "target's own hill climbing", 'transferred vs own hill climbing'],
        ['---', '---', '---', '---', '---:', '---:', '---:', '---:'],
        result.transfer.map((t) => [
          t.structureLabel, t.run, t.fromModel, t.toModel, pm(t.transferred), pm(t.own), pm(t.ownHillclimb), pct((t.transferred.mean / t.ownHillclimb.mean - 1) * 100),
        ]),
      ),
      '',
    );
  }

  if (result.projection) {
    const p = result.projection;
    lines.push(`## Projection to ${p.costs.model}`, '');
    lines.push(
      `Per-weight costs measured by \`${p.costs.command}\` (${p.costs.description}; backend ${p.costs.backend}; load ${p.costs.load}): ` +
        `${(p.costs.proxySecondsPerWeight * 1e9).toFixed(2)} ns per weight for a proxy evaluation, ${(p.costs.pruneSecondsPerWeight * 1e9).toFixed(2)} ns per weight to prune, ` +
        `${(p.costs.forwardSecondsPerWeightToken * 1e12).toFixed(2)} ps per weight and token of forward; ${(p.costs.linearWeights / 1e9).toFixed(2)} G linear weights, ${p.costs.blocks} blocks, windows of ${p.costs.seqlen} tokens.`,
      `Each search keeps the evaluation counts of our runs (mean over seeds); a sequential-pipeline prune in a loop (a final measurement) also pays its calibration forward. Calibration = the statistics both searches share (one dense forward over ${config.calibration.nsamples} windows, one scoring pass for the caches${p.prunedStatistics ? ", and one sequential pass for the 'pruned' statistics" : ''}). The paper reports 11 h for hill climbing and about 20 min for PHO on LLaMA-2-7B (GPU).`,
      '',
    );
    lines.push(
      ...table(
        ['counts from', 'PHO variant', 'hill climbing (evals x windows)', 'PHO (proxy evals + PPL evals, window evals)', 'HC projected', 'PHO projected', 'loop ratio', 'calibration projected', 'incl. calibration'],
        ['---', '---', '---', '---', '---:', '---:', '---:', '---:', '---:'],
        p.rows.map((r) => [
          `${r.model} ${r.structureLabel}`, r.pho, `${r.hillclimbEvals.toFixed(1)} x ${r.searchWindows}`,
          `${r.phoProxyEvals.toFixed(0)} + ${r.phoPplEvals.toFixed(1)}, ${r.phoWindowEvals.toFixed(1)}${r.phoSequentialPrunes ? ` (${r.phoSequentialPrunes.toFixed(1)} sequential prunes)` : ''}`,
          duration(r.hillclimbSeconds), duration(r.phoSeconds), ratio(r.ratio), duration(r.calibrationSeconds), ratio(r.withCalibrationRatio),
        ]),
      ),
      '',
    );
  }

  if (result.proxyStudies.length) {
    const studies = result.proxyStudies;
    const proxies = listProxies().filter((p) => studies.some((s) => s.spearman[p] !== undefined));
    const rho = (v: number | undefined): string => (v === undefined || !Number.isFinite(v) ? 'n/a' : `${v >= 0 ? '+' : ''}${v.toFixed(3)}`);
    lines.push('## Proxy studies (Spearman rho with search-subset PPL)', '');
    lines.push(`Recomputed from the \`crepe proxy-study\` CSVs in this folder (${studies.map((s) => path.basename(s.file)).join(', ')}; not rerun by this command). Positive = lower proxy, lower PPL.`, '');
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
      seeds: config.seeds,
      hillclimb: { budget: config.hillclimb.budget, search_windows: config.hillclimb.searchWindows, run: HILLCLIMB_RUN },
      search_sample: config.searchSample,
      pho: config.pho,
      baselines: config.baselines,
      transfer: config.transfer,
      space: { dims: config.space.dims.map((d) => ({ name: d.name, scale: d.scale, min: d.min, max: d.max })), fixed: config.space.fixed, start: searchStart(config.space) },
    },
    out: result.plan.out,
    calibrations: result.calibrations,
    runs: result.rows,
    costs: result.costs,
    convergence: result.curves,
    transfer: result.transfer,
    projection: result.projection,
    proxy_studies: result.proxyStudies,
    files: result.files,
    backend: result.backend,
    code_version: result.codeVersion,
    command: result.command,
    ran_units: result.ranUnits,
    resumed_units: result.resumedUnits,
    stale_units: result.staleUnits,
    total_wall_seconds: result.totalWallSeconds,
    load: result.load,
  };
}
