import * as fs from 'fs';
import * as path from 'path';
import { describeCell, datasetColumn } from '../experiments/cell';
import { existingRows, parseShard, planSweep, runSweep } from '../experiments/sweep';
import { FileLock, lockFile, lockRefusal } from '../io/lock';
import { CrepeError } from '../errors';
import { checkOutputs } from '../io/outputs';
import { planHarnessOutput } from '../eval/zeroshot/harness';
import { HarnessRequest } from '../experiments/worker';
import { CommonArgs, datasetFile, emit, nonNegativeIntFlag, positiveIntFlag, progressBar } from './common';

export interface SweepArgs extends CommonArgs {
  config: string;
  jobs: number;
  out?: string;
  dryRun: boolean;
  fresh: boolean;
  /** Calibration seed of every cell, in place of the config's. */
  seed?: number;
  /** With --fresh, discard --out even when it is not a crepe results CSV. */
  force?: boolean;
  /** 'K/N': run share K of N of the cells (a cluster job array). */
  shard?: string;
  /** lm-evaluation-harness results file of every cell's zero-shot scoring, under this folder. */
  outputPath?: string;
  logSamples?: boolean;
}

/** `crepe sweep`: run every cell of a config on worker processes, appending rows to a CSV. */
export async function sweepCommand(args: SweepArgs): Promise<void> {
  // Everything is validated (config, models, datasets, output file) before a worker starts.
  const jobs = positiveIntFlag('jobs', args.jobs);
  const shard = args.shard === undefined ? undefined : parseShard(String(args.shard));
  const plan = planSweep(args.config, args.out, shard, { seed: args.seed === undefined ? undefined : nonNegativeIntFlag('seed', args.seed) });
  // --fresh recomputes every cell (npm run reproduce); without it a rerun resumes.
  checkOutputs([{ flag: '--out', path: plan.out, kind: 'file', isDir: false }], [
    args.config,
    ...[...plan.config.eval.map((e) => e.dataset), plan.config.calibration.dataset].flatMap((d) => datasetFile(d) ?? []),
  ]);
  const harness = harnessRequest(args, plan.config.zeroshot !== undefined);
  for (const s of plan.skipped) process.stderr.write(`crepe: skipping ${s}\n`);
  if (args.dryRun) {
    // The same checks as the run (lock, columns, shard), so the dry run refuses what the run would.
    let done: Map<string, unknown>;
    if (args.fresh) {
      const refusal = lockRefusal(plan.out);
      if (refusal) throw new CrepeError(refusal);
      checkDiscardable(plan.out, !!args.force);
      done = new Map();
    } else done = existingRows(plan);
    const lines = plan.cells.map((c) => `${c.key}  ${done.has(c.key) ? 'done' : 'todo'}  ${describeCell(c)}`);
    const share = plan.shard ? ` (shard ${plan.shard.k}/${plan.shard.n} of ${plan.allCells.length} cells)` : '';
    emit(args.json, { out: plan.out, ...(plan.shard ? { shard: `${plan.shard.k}/${plan.shard.n}`, sweepTotal: plan.allCells.length } : {}), cells: plan.cells.map((c) => ({ ...c, done: done.has(c.key) })) }, () =>
      [...lines, `${plan.cells.length} cells${share}, ${plan.cells.filter((c) => !done.has(c.key)).length} to run, results in ${plan.out}`].join('\n'),
    );
    return;
  }
  // Locked before --fresh discards the old file: a running sweep's CSV is never removed.
  let lock: FileLock | undefined;
  if (fs.existsSync(path.dirname(path.resolve(plan.out)))) lock = lockFile(plan.out, 'crepe sweep');
  try {
    if (args.fresh && fs.existsSync(plan.out)) {
      checkDiscardable(plan.out, !!args.force);
      fs.rmSync(plan.out);
    }
    await runAndReport(args, plan, jobs, lock, harness);
  } finally {
    lock?.release();
  }
}

/** --fresh discards a previous results CSV, never a file of the user's (unless --force). */
function checkDiscardable(out: string, force: boolean): void {
  if (!fs.existsSync(out) || force) return;
  const first = fs.readFileSync(out, 'utf8').split('\n', 1)[0].replace(/\r$/, '');
  if (!first.startsWith('key,model,method,')) {
    throw new CrepeError(`--out ${out} is not a crepe results CSV; refusing to discard it (pass --force to replace it anyway)`);
  }
}

async function runAndReport(args: SweepArgs, plan: ReturnType<typeof planSweep>, jobs: number, lock: FileLock | undefined, harness: HarnessRequest | undefined): Promise<void> {
  const bar = progressBar('sweep', 'cells');
  // The bar draws only on a terminal; elsewhere (nohup, CI) one line per cell goes to stderr.
  const log = !process.stderr.isTTY;
  let done = 0;
  let total = 0;
  const summary = await runSweep(plan, jobs, args.backend, {
    onStart: (s) => {
      done = s.skipped;
      total = s.total;
      if (s.helpers > 0) process.stderr.write(`crepe: shard ${plan.shard!.k}/${plan.shard!.n} evaluates ${s.helpers} dense baseline(s) that another shard writes (its pruned rows need the dense PPL)\n`);
      if (s.repairedBytes > 0) process.stderr.write(`crepe: cut off an interrupted last line (${s.repairedBytes} bytes) of ${plan.out}\n`);
      if (log) process.stderr.write(`sweep: ${s.total} cells, ${s.skipped} already in ${plan.out}, ${s.toRun} to run on ${Math.min(jobs, s.toRun)} workers\n`);
      bar.start(s.total, s.skipped, { rate: '' });
    },
    onRow: (cell, row) => {
      done++;
      const ppl = plan.config.eval.map((e) => `${e.dataset} ${Number(row[`${datasetColumn(e.dataset)}_ppl`]).toFixed(3)}`).join(', ');
      const last = `${describeCell(cell)}: ${ppl}`;
      bar.update(done, { rate: last });
      if (log) process.stderr.write(`[${done}/${total}] ${last} (prune ${row.prune_seconds} s, eval ${row.eval_seconds} s)\n`);
    },
  }, lock, harness).finally(() => bar.stop());
  emit(args.json, { ...summary }, () =>
    `${summary.ran} cells run, ${summary.skipped} already done (${summary.total} in all${summary.shard ? `, shard ${summary.shard} of ${summary.sweepTotal} cells` : ''}) in ${summary.seconds.toFixed(1)} s; results in ${summary.out}`,
  );
}

/**
 * --output-path: one harness results file per cell with zero-shot tasks, in
 * FOLDER/<model-method-structure...>/results_<date>.json (the cell's description is the
 * harness's model name). The folder must be creatable; checked before any worker starts.
 */
function harnessRequest(args: SweepArgs, zeroshot: boolean): HarnessRequest | undefined {
  if (args.outputPath === undefined) {
    if (args.logSamples) throw new CrepeError('--log-samples needs --output-path');
    return undefined;
  }
  if (!zeroshot) throw new CrepeError(`--output-path writes zero-shot results: the config ${args.config} has no zeroshot field`);
  if (args.outputPath.toLowerCase().endsWith('.json')) throw new CrepeError(`--output-path ${args.outputPath}: a sweep writes one results file per cell; give a folder`);
  planHarnessOutput(args.outputPath, { logSamples: args.logSamples }, 'check', '', [], [args.config]);
  return { outputPath: args.outputPath, logSamples: !!args.logSamples };
}
