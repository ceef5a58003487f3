/**
 * A sweep worker: a child process (child_process.fork) that initialises the tfjs backend once,
 * then runs the cells the parent sends, one at a time, keeping opened models and tokenized
 * datasets between cells. The wasm backend is single-threaded, so parallelism is one worker per
 * core. Workers never touch the results file: they send results back and the parent writes.
 */
import { BackendChoice, backendDescription, initBackend } from '../backend';
import { datasetSplit } from '../data/datasets';
import { CrepeError } from '../errors';
import { defaultEvaluator, evaluateSource } from '../eval/evaluate';
import { evaluateZeroshotInProcess } from '../eval/zeroshot/evaluate';
import { parseTaskList } from '../eval/zeroshot/tasks';
import { cellsOf } from '../eval/zeroshot/table';
import { OpenedModel, openModel } from '../model/resolve';
import { pruneModel } from '../prune/pipeline';
import { parseStructure } from '../prune/select';
import { WeightSource } from '../model/types';
import { Cell, CellResult, EvalOutcome, describeCell } from './cell';
import { planHarnessOutput, writeZeroshotHarness } from '../eval/zeroshot/harness';

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

  run(cell: Cell, harness?: HarnessRequest): CellResult {
    const cpu0 = process.cpuUsage();
    const model = this.model(cell.model);
    let source: WeightSource = model.source;
    let achievedSparsity = 0;
    let pruneSeconds = 0;
    const p = cell.prune;
    if (p) {
      const structure = p.group ? parseStructure(p.structure, p.sparsity, p.group) : parseStructure(p.structure, undefined, 'row');
      const outcome = pruneModel(model, { method: p.method, params: p.params, structure, calibration: p.calibration, propagate: p.propagate });
      // The outcome's source overlays the pruned blocks on the shared model source; it is
      // dropped after evaluation and the shared source stays open for the next cell.
      source = outcome.source;
      achievedSparsity = outcome.report.sparsity;
      pruneSeconds = outcome.seconds;
    }
    const evals: EvalOutcome[] = cell.eval.map((e) => {
      const [r] = evaluateSource(model, source, [e.dataset], { seqlen: e.seqlen, maxWindows: e.maxWindows ?? undefined });
      return { dataset: e.dataset, split: datasetSplit(e.dataset, 'eval'), slice: r.slice, seqlen: r.seqlen, windows: r.windows, ppl: r.ppl, seconds: r.seconds };
    });
    const specs = cell.zeroshot ? parseTaskList(cell.zeroshot.tasks) : [];
    const start = new Date();
    const zs = cell.zeroshot ? evaluateZeroshotInProcess(model, source, specs, { limit: cell.zeroshot.limit }) : null;
    if (zs && harness) {
      // one results file per cell, named after the cell (the harness's model_name)
      const name = describeCell(cell).replace(/ /g, '-');
      const args = `pretrained=${cell.model}${p ? `,method=${p.method},structure=${p.structure},sparsity=${p.sparsity},params=${JSON.stringify(p.params)}` : ''},cell=${cell.key}`;
      const out = planHarnessOutput(harness.outputPath, { logSamples: harness.logSamples }, name, args, specs.map((s) => s.task.name), [], start);
      writeZeroshotHarness(out, model, zs, { backend: this.backend, evaluator: defaultEvaluator(source), cell: cell.key });
    }
    return {
      key: cell.key,
      ...(zs ? { zeroshot: cellsOf(zs) } : {}),
      achievedSparsity,
      evals,
      pruneSeconds,
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
    try {
      send({ type: 'result', result: runner.run(msg.cell, msg.harness) });
    } catch (e) {
      send(failure(msg.cell.key, e));
    }
  });
  send({ type: 'ready', backend: runner.backend });
}

if (require.main === module) void main();
