import { BackendChoice } from '../backend';
import { CrepeError } from '../errors';
import { ZeroshotOptions, ZeroshotResult, evaluateZeroshot } from '../eval/zeroshot/evaluate';
import { TaskSpec, parseTaskList } from '../eval/zeroshot/tasks';
import { zeroshotMarkdown } from '../eval/zeroshot/table';
import { OpenedModel, openModel } from '../model/resolve';
import { WeightSource } from '../model/types';
import { CommonArgs, emit, positiveIntFlag, progressBar, startBackend } from './common';
import { BudgetArgs, budgetOf, planResident } from './memory';

export interface ZeroshotArgs extends CommonArgs, BudgetArgs {
  model: string;
  tokenizer?: string;
  tasks: string[];
  limit?: number;
  jobs: number;
  bos?: boolean;
  bootstrapIters: number;
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

export async function zeroshotCommand(args: ZeroshotArgs): Promise<void> {
  const backend = await startBackend(args.backend);
  const specs = parseTaskList(args.tasks);
  const opts = zeroshotOptions(args);
  budgetOf(args); // validated before any work
  const model = openModel(args.model, args.tokenizer);
  try {
    // the model resident in every process, packed requests up to its context
    const cfg = model.source.config;
    const plan = planResident(cfg, args, { seqlen: cfg.maxSeqLen, jobs: opts.jobs ?? 1, lengthFlag: null, wasm: backend.startsWith('wasm') }, { model: args.model });
    if (!plan) return;
    const r = await runZeroshot(model, model.source, specs, opts, 'zeroshot');
    emit(
      args.json,
      { model: args.model, backend, jobs: opts.jobs, ...zeroshotJson(r) },
      () =>
        `${zeroshotMarkdown([{ label: args.model, result: r }])}\n${args.model}; backend ${backend}; ${r.items} items in ${r.seconds.toFixed(1)} s (${r.itemsPerSecond.toFixed(1)} items/s, ${opts.jobs} job(s)); context ${r.maxLength} tokens, BOS ${r.addBos ? 'prepended' : 'not prepended'}${r.limit ? `; first ${r.limit} documents per task` : ''}`,
    );
  } finally {
    model.source.close();
  }
}
