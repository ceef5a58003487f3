/**
 * A sweep worker: a child process (child_process.fork) that initialises the tfjs backend once,
 * then runs the cells the parent sends, one at a time, keeping opened models and tokenized
 * datasets between cells. The wasm backend is single-threaded, so parallelism is one worker per
 * core. Workers never touch the results file: they send results back and the parent writes.
 */
import { BackendChoice, backendDescription, initBackend } from '../backend';
import { datasetSplit } from '../data/datasets';
import { CrepeError } from '../errors';
import { defaultEvaluator } from '../eval/evaluate';
import { parseTaskList } from '../eval/zeroshot/tasks';
import { cellsOf } from '../eval/zeroshot/table';
import { planHarnessOutput, writeZeroshotHarness } from '../eval/zeroshot/harness';
import { OpenedModel, openModel } from '../model/resolve';
import { runRecipe } from '../recipe/run';
import { Cell, CellResult, EvalOutcome, cellRecipe, describeCell } from './cell';

/** lm-evaluation-harness results files of each cell's zero-shot scoring: FOLDER/<cell>/results_<date>.json. */
export interface HarnessRequest {
  outputPath: string;
  logSamples: boolean;
}

/** Parent -> worker. */
export type ToWorker = { type: 'run'; cell: Cell; harness?: HarnessRequest };

/** Worker -> parent. `key` is null when the worker failed before any cell (backend start-up). */
export type FromWorker =
  | { type: 'ready'; backend: string }
  | { type: 'result'; result: CellResult }
  | { type: 'failed'; key: string | null; message: string; userError: boolean };

/** Runs cells in this process, reusing opened models (and, via the dataset module, token streams). */
export class CellRunner {
  private readonly models = new Map<string, OpenedModel>();

  constructor(readonly backend: string) {}

  private model(name: string): OpenedModel {
    let m = this.models.get(name);
    if (!m) {
      m = openModel(name);
      this.models.set(name, m);
    }
    return m;
  }

  /** Run a cell: its recipe, on the model kept open here (the dense baseline prunes nothing). */
  async run(cell: Cell, harness?: HarnessRequest): Promise<CellResult> {
    const cpu0 = process.cpuUsage();
    const model = this.model(cell.model);
    const start = new Date();
    const outcome = await runRecipe(cellRecipe(cell), { model, inProcess: true });
    const evals: EvalOutcome[] = outcome.pruned.map((r) => ({
      dataset: r.dataset, split: datasetSplit(r.dataset, 'eval'), slice: r.slice, seqlen: r.seqlen, windows: r.windows, ppl: r.ppl, seconds: r.seconds,
    }));
    const zs = outcome.zeroshot?.pruned ?? null;
    const p = cell.prune;
    if (zs && harness && cell.zeroshot) {
      // one results file per cell, named after the cell (the harness's model_name)
      const specs = parseTaskList(cell.zeroshot.tasks);
      const name = describeCell(cell).replace(/ /g, '-');
      const args = `pretrained=${cell.model}${p ? `,method=${p.method},structure=${p.structure},sparsity=${p.sparsity},params=${JSON.stringify(p.params)}` : ''},cell=${cell.key}`;
      const out = planHarnessOutput(harness.outputPath, { logSamples: harness.logSamples }, name, args, specs.map((s) => s.task.name), [], start);
      writeZeroshotHarness(out, model, zs, { backend: this.backend, evaluator: defaultEvaluator(model.source), cell: cell.key });
    }
    return {
      key: cell.key,
      ...(zs ? { zeroshot: cellsOf(zs) } : {}),
      achievedSparsity: outcome.report.sparsity,
      evals,
      pruneSeconds: outcome.pruneSeconds,
      evalSeconds: evals.reduce((a, e) => a + e.seconds, 0) + (zs?.seconds ?? 0),
      cpuSeconds: cpuSeconds(process.cpuUsage(cpu0)),
      backend: this.backend,
    };
  }
}

function cpuSeconds(usage: NodeJS.CpuUsage): number {
  return (usage.user + usage.system) / 1e6;
}

function send(msg: FromWorker): void {
  // The parent may be gone (killed); then there is nobody to tell and the worker just exits.
  if (process.connected) process.send!(msg, undefined, {}, () => undefined);
}

function failure(key: string | null, e: unknown): FromWorker {
  const userError = e instanceof CrepeError;
  const err = e as Error;
  const message = userError || !process.env.CREPE_DEBUG ? err.message : String(err.stack);
  return { type: 'failed', key, message, userError };
}

async function main(): Promise<void> {
  // Exit as soon as the parent disconnects (done, failed or killed). Between cells only:
  // a running cell is synchronous, so it finishes first, and its result is dropped.
  process.on('disconnect', () => process.exit(0));
  let runner: CellRunner;
  try {
    await initBackend((process.argv[2] ?? 'auto') as BackendChoice);
    runner = new CellRunner(backendDescription());
  } catch (e) {
    send(failure(null, e));
    return;
  }
  process.on('message', (msg: ToWorker) => {
    if (msg.type !== 'run') return;
    runner.run(msg.cell, msg.harness).then(
      (result) => send({ type: 'result', result }),
      (e) => send(failure(msg.cell.key, e)),
    );
  });
  send({ type: 'ready', backend: runner.backend });
}

if (require.main === module) void main();
