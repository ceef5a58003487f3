import { datasetWindows, evaluateSourceJobs } from '../eval/evaluate';
import { openModel } from '../model/resolve';
import { planJson } from '../plan/memory';
import { CommonArgs, checkPpl, emit, positiveIntFlag, startBackend, withEvalProgress } from './common';
import { MemoryArgs, memoryChoices, planOrRefuse } from './memory';

export interface EvalArgs extends CommonArgs, MemoryArgs {
  model: string;
  tokenizer?: string;
  /** One or more evaluation datasets (--dataset a,b or repeated). */
  dataset: string[] | string;
  seqlen?: number;
  maxWindows?: number;
  jobs: number;
}

export async function evalCommand(args: EvalArgs): Promise<void> {
  const requestedJobs = positiveIntFlag('jobs', args.jobs);
  const datasets = ([] as string[]).concat(args.dataset);
  const memory = memoryChoices(args);
  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  // Plan before any model compute: the windows are known once the text is tokenized.
  const counts = datasets.map((d) => datasetWindows(model, d, { seqlen: args.seqlen, maxWindows: args.maxWindows }).windows);
  const windows = counts.reduce((n, w) => n + w.length, 0);
  // no more workers than windows: the rest would have nothing to do, and each holds a model
  const jobs = Math.min(requestedJobs, windows);
  const plan = planOrRefuse(
    { config: model.source.config, eval: { windows, seqlen: counts[0][0].length, jobs }, ...memory, wasm: backend.startsWith('wasm') },
    args,
    { model: args.model, dataset: datasets.join(',') },
  );
  if (!plan) return model.source.close();
  const records = await withEvalProgress('eval', windows, (onProgress) =>
    evaluateSourceJobs(model, model.source, datasets, {
      jobs,
      backend: args.backend,
      seqlen: args.seqlen,
      maxWindows: args.maxWindows,
      evaluator: plan.evaluator ?? undefined,
      storage: plan.evalStorage,
      spillDir: memory.spillDir,
      onProgress,
    }),
  );
  model.source.close();
  for (const r of records) checkPpl(r.ppl, `${args.model} on ${r.dataset}`);
  const perDataset = records.map((r) => ({
    ppl: r.ppl,
    nll: r.nll,
    tokens: r.tokens,
    windows: r.windows,
    seqlen: r.seqlen,
    dataset: r.dataset,
    slice: r.slice,
    seconds: r.seconds,
    tokens_per_second: r.tokensPerSecond,
  }));
  const shared = { model: args.model, backend, jobs, evaluator: plan.evaluator };
  // one dataset: its fields at the top level; several: one object each under `datasets`
  const json = records.length === 1 ? { ...perDataset[0], ...shared, memory_plan: planJson(plan) } : { ...shared, datasets: perDataset, memory_plan: planJson(plan) };
  emit(args.json, json, () =>
    records
      .map(
        (r) =>
          `${args.model} on ${r.dataset} (${r.slice}): PPL ${r.ppl.toFixed(4)} (NLL ${r.nll.toFixed(5)} nats/token) over ${r.windows} windows x ${r.seqlen} tokens = ${r.tokens} predicted tokens; backend ${backend}; ${plan.evaluator} evaluator; ${r.seconds.toFixed(1)} s, ${Math.round(r.tokensPerSecond)} tok/s`,
      )
      .join('\n'),
  );
}
