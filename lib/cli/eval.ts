import { evaluateSourceJobs } from '../eval/evaluate';
import { openModel } from '../model/resolve';
import { CommonArgs, checkPpl, emit, positiveIntFlag, progressBar, startBackend } from './common';

export interface EvalArgs extends CommonArgs {
  model: string;
  tokenizer?: string;
  dataset: string;
  seqlen?: number;
  maxWindows?: number;
  jobs: number;
}

export async function evalCommand(args: EvalArgs): Promise<void> {
  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  const bar = progressBar('eval', 'windows');
  let started = false;
  const jobs = positiveIntFlag('jobs', args.jobs);
  const [r] = await evaluateSourceJobs(model, model.source, [args.dataset], {
    jobs,
    backend: args.backend,
    seqlen: args.seqlen,
    maxWindows: args.maxWindows,
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
      seconds: r.seconds,
      tokens_per_second: r.tokensPerSecond,
    },
    () =>
      `${args.model} on ${r.dataset} (${r.slice}): PPL ${r.ppl.toFixed(4)} (NLL ${r.nll.toFixed(5)} nats/token) over ${r.windows} windows x ${r.seqlen} tokens = ${r.tokens} predicted tokens; backend ${backend}; ${r.seconds.toFixed(1)} s, ${Math.round(r.tokensPerSecond)} tok/s`,
  );
}
