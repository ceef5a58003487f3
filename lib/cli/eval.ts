import { datasetWindows, evaluateSourceJobs } from '../eval/evaluate';
import { openModel } from '../model/resolve';
import { planJson } from '../plan/memory';
import { CommonArgs, checkPpl, emit, positiveIntFlag, progressBar, startBackend } from './common';
import { MemoryArgs, memoryChoices, planOrRefuse } from './memory';

export interface EvalArgs extends CommonArgs, MemoryArgs {
  model: string;
  tokenizer?: string;
  dataset: string;
  seqlen?: number;
  maxWindows?: number;
  jobs: number;
}

export async function evalCommand(args: EvalArgs): Promise<void> {
  const jobs = positiveIntFlag('jobs', args.jobs);
  const memory = memoryChoices(args);
  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  // Plan before any model compute: the windows are known once the text is tokenized.
  const { windows } = datasetWindows(model, args.dataset, { seqlen: args.seqlen, maxWindows: args.maxWindows });
  const plan = planOrRefuse(
    { config: model.source.config, eval: { windows: windows.length, seqlen: windows[0].length, jobs }, ...memory, wasm: backend.startsWith('wasm') },
    args,
    { model: args.model, dataset: args.dataset },
  );
  if (!plan) return model.source.close();
  const bar = progressBar('eval', 'windows');
  let started = false;
  const [r] = await evaluateSourceJobs(model, model.source, [args.dataset], {
    jobs,
    backend: args.backend,
    seqlen: args.seqlen,
    maxWindows: args.maxWindows,
    evaluator: plan.evaluator ?? undefined,
    storage: plan.evalStorage,
    spillDir: memory.spillDir,
    onProgress: (done, total, tps) => {
      if (!started) bar.start(total, 0, { rate: '' });
      started = true;
      bar.update(done, { rate: `${Math.round(tps)} tok/s` });
    },
  });
  bar.stop();
  model.source.close();
  checkPpl(r.ppl, `${args.model} on ${r.dataset}`);
  emit(
    args.json,
    {
      ppl: r.ppl,
      nll: r.nll,
      tokens: r.tokens,
      windows: r.windows,
      seqlen: r.seqlen,
      dataset: r.dataset,
      slice: r.slice,
      model: args.model,
      backend,
      jobs,
      evaluator: plan.evaluator,
      seconds: r.seconds,
      tokens_per_second: r.tokensPerSecond,
      memory_plan: planJson(plan),
    },
    () =>
      `${args.model} on ${r.dataset} (${r.slice}): PPL ${r.ppl.toFixed(4)} (NLL ${r.nll.toFixed(5)} nats/token) over ${r.windows} windows x ${r.seqlen} tokens = ${r.tokens} predicted tokens; backend ${backend}; ${plan.evaluator} evaluator; ${r.seconds.toFixed(1)} s, ${Math.round(r.tokensPerSecond)} tok/s`,
  );
}
