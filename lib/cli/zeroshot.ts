import { BackendChoice } from '../backend';
import { CrepeError } from '../errors';
import { PreparedTask, ZeroshotOptions, ZeroshotResult, evaluateZeroshot, prepareTasks, zeroshotLayout } from '../eval/zeroshot/evaluate';
import { HarnessOutput, planHarnessOutput, writeZeroshotHarness } from '../eval/zeroshot/harness';
import { TaskSpec, parseTaskList } from '../eval/zeroshot/tasks';
import { zeroshotMarkdown } from '../eval/zeroshot/table';
import { OpenedModel, openModel } from '../model/resolve';
import { WeightSource } from '../model/types';
import { EvaluatorChoice, MemoryPlan, PlanItem, blockParams, planJson, zeroshotPlanRequest } from '../plan/memory';
import { CommonArgs, emit, inputPaths, positiveIntFlag, progressBar, startBackend } from './common';
import { BudgetArgs, memoryChoices, planOrRefuse } from './memory';

export interface ZeroshotArgs extends CommonArgs, BudgetArgs {
  model: string;
  tokenizer?: string;
  tasks: string[];
  limit?: number;
  jobs: number;
  bos?: boolean;
  bootstrapIters: number;
  evaluator?: EvaluatorChoice;
  spillDir?: string;
  outputPath?: string;
  logSamples?: boolean;
  force?: boolean;
}

/** The zero-shot flags, validated, as evaluation options (shared by `zeroshot` and `prune --zeroshot`). */
export function zeroshotOptions(a: { limit?: number; jobs: number; bos?: boolean; bootstrapIters?: number; backend: BackendChoice }): ZeroshotOptions {
  const bootstrapIters = a.bootstrapIters ?? 100_000;
  if (!(Number.isInteger(bootstrapIters) && bootstrapIters >= 0)) throw new CrepeError(`--bootstrap-iters must be a non-negative integer, got ${bootstrapIters}`);
  return {
    limit: a.limit === undefined ? undefined : positiveIntFlag('limit', a.limit),
    jobs: positiveIntFlag('jobs', a.jobs),
    addBos: a.bos,
    bootstrapIters,
    backend: a.backend,
  };
}

/**
 * Plan zero-shot scoring of prepared tasks (the evaluator and where its hidden states live), as
 * planOrRefuse: null after --dry-run. The streaming evaluator runs in one process, so --jobs
 * above 1 with it is refused. `extra`: what the command holds besides (e.g. pruned blocks).
 */
export function planZeroshot(
  model: OpenedModel,
  prepared: readonly PreparedTask[],
  opts: ZeroshotOptions,
  a: BudgetArgs & { evaluator?: EvaluatorChoice; spillDir?: string; jobsFlag: string },
  wasm: boolean,
  info: Record<string, unknown>,
  extra: PlanItem[] = [],
): MemoryPlan | null {
  const memory = memoryChoices({ maxMemory: a.maxMemory, evaluator: a.evaluator, spillDir: a.spillDir });
  const jobs = opts.jobs ?? 1;
  if (memory.evaluator === 'streaming' && jobs > 1) throw new CrepeError(`zero-shot's streaming evaluator runs in one process: use ${a.jobsFlag} 1 (now ${jobs}) or --evaluator resident`);
  const layout = zeroshotLayout(prepared, opts);
  const plan = planOrRefuse(zeroshotPlanRequest(model.source.config, { ...layout, jobs, ...memory, storage: 'auto', wasm, extra }), a, info);
  if (plan?.evaluator === 'streaming' && jobs > 1) {
    throw new CrepeError(`this model is scored by the streaming evaluator (one block on the device at a time), which runs in one process: use ${a.jobsFlag} 1 (now ${jobs})`);
  }
  return plan;
}

/** The options a plan chose. */
export function plannedOptions(plan: MemoryPlan, spillDir: string | undefined): Pick<ZeroshotOptions, 'evaluator' | 'storage' | 'spillDir'> {
  return { evaluator: plan.evaluator ?? undefined, storage: plan.evalStorage === 'disk' ? 'disk' : 'f32', spillDir };
}

/** evaluateZeroshot with a progress bar on stderr. */
export async function runZeroshot(model: OpenedModel, source: WeightSource, specs: TaskSpec[], opts: ZeroshotOptions, label: string): Promise<ZeroshotResult> {
  const bar = progressBar(label, 'items');
  let started = false;
  try {
    return await evaluateZeroshot(model, source, specs, {
      ...opts,
      onProgress: (done, total, ips) => {
        if (!started) bar.start(total, 0, { rate: '' });
        started = true;
        bar.update(done, { rate: `${ips.toFixed(1)} items/s` });
      },
    });
  } finally {
    bar.stop();
  }
}

/** The JSON form of a result: per task metrics with stderr and counts (per-document scores left out). */
export function zeroshotJson(r: ZeroshotResult): Record<string, unknown> {
  return {
    tasks: r.tasks.map((t) => ({
      task: t.task,
      harness: t.harness,
      source: t.source,
      items: t.items,
      total_items: t.totalItems,
      requests: t.requests,
      truncated_requests: t.truncated,
      overlong_requests: t.overlong,
      metrics: t.metrics,
    })),
    add_bos: r.addBos,
    max_length: r.maxLength,
    limit: r.limit,
    bootstrap_iters: r.bootstrapIters,
    items: r.items,
    seconds: r.seconds,
    items_per_second: r.itemsPerSecond,
  };
}

/** Plan (and check) the harness files of a model named `modelName`; null without --output-path. */
export function harnessOutput(
  a: { outputPath?: string; logSamples?: boolean; force?: boolean },
  modelName: string,
  modelArgs: string,
  tasks: readonly string[],
  inputs: readonly string[],
  start = new Date(),
): HarnessOutput | null {
  if (a.outputPath === undefined) {
    if (a.logSamples) throw new CrepeError('--log-samples needs --output-path (the samples files go beside the results file)');
    return null;
  }
  return planHarnessOutput(a.outputPath, a, modelName, modelArgs, tasks, inputs, start);
}

/** Write the harness results file (and samples) of a result. */
export const writeHarness = writeZeroshotHarness;

/** The files written, for --json and the human line. */
export function harnessFilesJson(out: HarnessOutput | null): Record<string, unknown> | null {
  return out ? { results: out.files.results, samples: out.logSamples ? out.files.samples : null } : null;
}

export async function zeroshotCommand(args: ZeroshotArgs): Promise<void> {
  const backend = await startBackend(args.backend);
  const specs = parseTaskList(args.tasks);
  const opts = zeroshotOptions(args);
  memoryChoices(args); // validated before any work
  const model = openModel(args.model, args.tokenizer);
  try {
    const taskFiles = specs.map((s) => s.file).filter((f): f is string => f !== undefined);
    const harness = harnessOutput(args, args.model, `pretrained=${args.model}`, specs.map((s) => s.task.name), [...inputPaths(model), ...taskFiles]);
    // Plan before any model compute: the packs are known once the tasks are tokenized.
    const prepared = prepareTasks(model, specs, opts);
    const plan = planZeroshot(model, prepared, opts, { ...args, jobsFlag: '--jobs' }, backend.startsWith('wasm'), { model: args.model });
    if (!plan) return;
    const run = { ...opts, prepared, ...plannedOptions(plan, args.spillDir) };
    const r = await runZeroshot(model, model.source, specs, run, 'zeroshot');
    if (harness) writeHarness(harness, model, r, { backend, evaluator: plan.evaluator, jobs: opts.jobs });
    emit(
      args.json,
      { model: args.model, backend, jobs: opts.jobs, evaluator: plan.evaluator, ...zeroshotJson(r), harness_files: harnessFilesJson(harness), memory_plan: planJson(plan) },
      () =>
        `${zeroshotMarkdown([{ label: args.model, result: r }])}\n${args.model}; backend ${backend}; ${plan.evaluator} evaluator; ${r.items} items in ${r.seconds.toFixed(1)} s (${r.itemsPerSecond.toFixed(1)} items/s, ${opts.jobs} job(s)); context ${r.maxLength} tokens, BOS ${r.addBos ? 'prepended' : 'not prepended'}${r.limit ? `; first ${r.limit} documents per task` : ''}` +
        (harness ? `\nharness results: ${harness.files.results}${harness.logSamples ? ` (+ ${Object.keys(harness.files.samples).length} samples file(s))` : ''}` : ''),
    );
  } finally {
    model.source.close();
  }
}

/** What `prune --zeroshot` settles before any work: the prepared tasks and planned options, and the harness outputs. */
export interface PruneZeroshot {
  run: ZeroshotOptions;
  dense: HarnessOutput | null;
  pruned: HarnessOutput | null;
}

/**
 * prune --zeroshot: tokenize the tasks, plan their scoring (the pruned blocks are held in memory
 * beside it unless the plan spills them) and check the harness outputs of the dense and the
 * pruned model (two files: --output-path must be a folder). Refuses in one line; never prints.
 */
export function pruneZeroshot(
  model: OpenedModel,
  specs: readonly TaskSpec[],
  opts: ZeroshotOptions,
  a: BudgetArgs & { evaluator?: EvaluatorChoice; spillDir?: string; outputPath?: string; logSamples?: boolean; force?: boolean },
  pruned: { name: string; args: string; blocksHeld: boolean },
  wasm: boolean,
  inputs: readonly string[],
): PruneZeroshot {
  if (a.outputPath !== undefined && a.outputPath.toLowerCase().endsWith('.json')) {
    throw new CrepeError(`--output-path ${a.outputPath}: prune --zeroshot writes two results files (dense and pruned); give a folder`);
  }
  const names = specs.map((s) => s.task.name);
  const start = new Date();
  const dense = harnessOutput(a, model.name, `pretrained=${model.name}`, names, inputs, start);
  const prunedOut = harnessOutput(a, pruned.name, pruned.args, names, inputs, start);
  const prepared = prepareTasks(model, specs, opts);
  const cfg = model.source.config;
  const held: PlanItem[] = pruned.blocksHeld ? [{ what: `pruned blocks kept in memory (${cfg.nLayers})`, host: cfg.nLayers * blockParams(cfg) * 4, device: 0 }] : [];
  const plan = planZeroshot(model, prepared, opts, { ...a, dryRun: false, jobsFlag: '--zeroshot-jobs' }, wasm, {}, held)!;
  return { run: { ...opts, prepared, ...plannedOptions(plan, a.spillDir) }, dense, pruned: prunedOut };
}
