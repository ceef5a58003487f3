import * as fs from 'fs';
import { describeCell, datasetColumn } from '../experiments/cell';
import { doneKeys, planSweep, runSweep } from '../experiments/sweep';
import { CrepeError } from '../errors';
import { checkOutputs } from '../io/outputs';
import { CommonArgs, datasetFile, emit, positiveIntFlag, progressBar } from './common';

export interface SweepArgs extends CommonArgs {
  config: string;
  jobs: number;
  out?: string;
  dryRun: boolean;
  fresh: boolean;
  /** With --fresh, discard --out even when it is not a crepe results CSV. */
  force?: boolean;
}

/** `crepe sweep`: run every cell of a config on worker processes, appending rows to a CSV. */
export async function sweepCommand(args: SweepArgs): Promise<void> {
  // Everything is validated (config, models, datasets, output file) before a worker starts.
  const jobs = positiveIntFlag('jobs', args.jobs);
  const plan = planSweep(args.config, args.out);
  // --fresh recomputes every cell (npm run reproduce); without it a rerun resumes.
  checkOutputs([{ flag: '--out', path: plan.out, kind: 'file', isDir: false }], [
    args.config,
    ...[...plan.config.eval.map((e) => e.dataset), plan.config.calibration.dataset].flatMap((d) => datasetFile(d) ?? []),
  ]);
  if (args.fresh && !args.dryRun && fs.existsSync(plan.out)) {
    // --fresh discards a previous results CSV, never a file of the user's
    const first = fs.readFileSync(plan.out, 'utf8').split('\n', 1)[0].replace(/\r$/, '');
    if (!first.startsWith('key,model,method,') && !args.force) {
      throw new CrepeError(`--out ${plan.out} is not a crepe results CSV; refusing to discard it (pass --force to replace it anyway)`);
    }
    fs.rmSync(plan.out);
  }
  for (const s of plan.skipped) process.stderr.write(`crepe: skipping ${s}\n`);
  if (args.dryRun) {
    const done = doneKeys(plan.out);
    const lines = plan.cells.map((c) => `${c.key}  ${done.has(c.key) ? 'done' : 'todo'}  ${describeCell(c)}`);
    emit(args.json, { out: plan.out, cells: plan.cells.map((c) => ({ ...c, done: done.has(c.key) })) }, () =>
      [...lines, `${plan.cells.length} cells, ${plan.cells.filter((c) => !done.has(c.key)).length} to run, results in ${plan.out}`].join('\n'),
    );
    return;
  }
  const bar = progressBar('sweep', 'cells');
  // The bar draws only on a terminal; elsewhere (nohup, CI) one line per cell goes to stderr.
  const log = !process.stderr.isTTY;
  let done = 0;
  let total = 0;
  const summary = await runSweep(plan, jobs, args.backend, {
    onStart: (s) => {
      done = s.skipped;
      total = s.total;
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
  }).finally(() => bar.stop());
  emit(args.json, { ...summary }, () =>
    `${summary.ran} cells run, ${summary.skipped} already done (${summary.total} in all) in ${summary.seconds.toFixed(1)} s; results in ${summary.out}`,
  );
}
