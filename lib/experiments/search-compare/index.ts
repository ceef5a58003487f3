/**
 * The search cost comparison (`crepe search-compare`), split by concern: plan.ts validates and
 * lists the units of work, run.ts runs those the journal (journal.ts) does not have yet,
 * costs.ts turns the rows into cost ratios, convergence curves, transfer and the large-model
 * projection, and report.ts writes the CSV and the Markdown report.
 */
import * as path from 'path';
import { writeFileAtomic } from '../../io/atomic';
import { convergenceCurves, costRows, projectCosts, readProjectionCosts, transferRows } from './costs';
import { Journal } from './journal';
import { ComparePlan, planUnits } from './plan';
import { ComparisonResult, RESULTS_CSV, RESULTS_MD, comparisonCsv, comparisonMarkdown, readProxyStudies } from './report';
import { CompareHooks, runUnits } from './run';

export * from './costs';
export { CODE_ROOTS, JOURNAL, Journal, LEGACY_CODE_PATHS, sourceFingerprint, unitFingerprint, unitSourceFiles } from './journal';
export * from './plan';
export * from './report';
export * from './rows';
export type { CompareHooks, SearchProgress } from './run';
export { evalLogName } from './run';

/** What the caller knows about the process, recorded in the report. */
export interface CompareContext {
  backend: string;
  codeVersion: string;
  /** The command line as the user would type it again. */
  command: string;
  /** Start over instead of continuing the journal in the output folder. */
  fresh?: boolean;
  /** The machine's load as the caller measured it (recorded in the report). */
  load?: () => string;
  /** Run nothing: write the CSV and the report from the journal's rows as they are. */
  reportOnly?: boolean;
}

/** Run what the journal lacks, then write the CSV and the report from every row of the plan. */
export function runComparison(plan: ComparePlan, ctx: CompareContext, hooks: CompareHooks = {}): ComparisonResult {
  const t0 = process.hrtime.bigint();
  const { config } = plan;
  const journal = Journal.open(plan.out, plan.fullConfig, ctx.fresh ?? false);
  const resumed = planUnits(config).filter((u) => journal.has(u)).length;
  const stale = planUnits(config).filter((u) => journal.stale(u)).length;
  const outcome = ctx.reportOnly ? { files: [], ran: 0 } : runUnits(plan, journal, ctx.codeVersion, hooks);
  // Rows in plan order (the units list is the reading order too).
  const rows = planUnits(config)
    .map((u) => journal.row(u))
    .filter((r): r is NonNullable<typeof r> => r !== undefined);
  const costs = costRows(config, rows);
  const csvFile = path.join(plan.out, RESULTS_CSV);
  const mdFile = path.join(plan.out, RESULTS_MD);
  const result: ComparisonResult = {
    plan,
    rows,
    costs,
    curves: convergenceCurves(config, rows, plan.out),
    transfer: transferRows(config, rows),
    projection: config.projection ? projectCosts(config, costs, readProjectionCosts(config.projection)) : null,
    calibrations: journal.calibrations.filter((c) => config.models.includes(c.model)),
    proxyStudies: readProxyStudies(plan),
    files: [...outcome.files, journal.file, csvFile, mdFile],
    missingUnits: planUnits(config).filter((u) => !journal.has(u)).length,
    staleUnits: stale,
    backend: ctx.backend,
    codeVersion: ctx.codeVersion,
    command: ctx.command,
    ranUnits: outcome.ran,
    resumedUnits: resumed,
    totalWallSeconds: Number(process.hrtime.bigint() - t0) / 1e9,
    load: ctx.load?.() ?? 'not recorded',
  };
  writeFileAtomic(csvFile, comparisonCsv(rows));
  writeFileAtomic(mdFile, comparisonMarkdown(result));
  return result;
}
