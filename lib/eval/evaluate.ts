import { evaluationWindows, loadDataset, tokenizeDataset } from '../data/datasets';
import { CrepeError } from '../errors';
import { OpenedModel } from '../model/resolve';
import { LlamaModel } from '../model/runtime';
import { WeightSource } from '../model/types';
import { BackendChoice } from '../backend';
import { Evaluator, STREAMING_THRESHOLD, residentDeviceBytes } from '../plan/memory';
import { ActivationStorage } from '../plan/spill';
import { PerplexityResult, ProgressFn, combineWindows, perplexity } from './perplexity';
import { sourceForWorkers, windowNllsParallel } from './pool';
import { StreamingTiming, streamingWindowNlls } from './streaming';
import { publishProgress } from '../util/progress';

export interface EvalOptions {
  /** Window length; default the model's context. */
  seqlen?: number;
  maxWindows?: number;
  onProgress?: ProgressFn;
  /** Resident (every block on the device) or streaming (one block at a time); default by model size. */
  evaluator?: Evaluator;
  /** Where the streaming evaluator keeps hidden states; default f32 in memory. */
  storage?: ActivationStorage;
  spillDir?: string;
}

/** The evaluator used when none is chosen: streaming for models whose resident copy would be large. */
export function defaultEvaluator(source: WeightSource): Evaluator {
  return residentDeviceBytes(source.config) > STREAMING_THRESHOLD ? 'streaming' : 'resident';
}

export interface EvalRecord extends PerplexityResult {
  dataset: string;
  slice: string;
  /** Streaming evaluator only: seconds in the decoder blocks and in the head (one pass for all datasets). */
  stages?: StreamingTiming;
}

/** Check a window length against the model's context. */
export function checkSeqlen(seqlen: number, maxSeqLen: number): void {
  if (!(Number.isInteger(seqlen) && seqlen >= 2)) throw new CrepeError(`seqlen must be an integer >= 2, got ${seqlen}`);
  if (seqlen > maxSeqLen) throw new CrepeError(`seqlen ${seqlen} is larger than the model's context ${maxSeqLen}`);
}

/** Token windows of an evaluation dataset for `model` (tokenized once per process). */
export function datasetWindows(model: OpenedModel, dataset: string, opts: EvalOptions = {}): { windows: Int32Array[]; slice: string } {
  const seqlen = opts.seqlen ?? model.source.config.maxSeqLen;
  checkSeqlen(seqlen, model.source.config.maxSeqLen);
  const ds = loadDataset(dataset, 'eval');
  const tokens = tokenizeDataset(ds, model.tokenizer, model.tokenizerPath);
  return { windows: evaluationWindows(tokens, seqlen, opts.maxWindows), slice: ds.slice };
}

/**
 * Refuse a search subset larger than the split: `count` windows of `dataset` at the model's
 * context must exist (otherwise a search would measure fewer windows than it reports).
 */
export function checkWindowCount(model: OpenedModel, dataset: string, count: number, what: string): void {
  const available = datasetWindows(model, dataset).windows.length;
  if (count > available) {
    throw new CrepeError(`${what} ${count}: ${dataset} has only ${available} windows of ${model.source.config.maxSeqLen} tokens for this model`);
  }
}

/** Perplexity of `source` (the model's own weights, or pruned ones) on each dataset. */
export function evaluateSource(
  model: OpenedModel,
  source: WeightSource,
  datasets: readonly string[],
  options: EvalOptions = {},
): EvalRecord[] {
  const opts: EvalOptions = { ...options, onProgress: publishingProgress(options.onProgress) };
  const inputs = datasets.map((d) => ({ dataset: d, ...datasetWindows(model, d, opts) }));
  if ((opts.evaluator ?? defaultEvaluator(source)) === 'streaming') return evaluateStreaming(source, inputs, opts);
  const runtime = LlamaModel.fromSource(source);
  try {
    return inputs.map(({ dataset, windows, slice }) => ({ dataset, slice, ...perplexity(runtime, windows, opts.onProgress) }));
  } finally {
    runtime.dispose();
  }
}

/** `onProgress`, also published for listeners (lib/util/progress.ts). */
function publishingProgress(onProgress?: ProgressFn): ProgressFn {
  return (done, total, tokensPerSecond) => {
    onProgress?.(done, total, tokensPerSecond);
    publishProgress({ pass: 'eval', unit: 'windows', done, total });
  };
}

/** All datasets' windows in one block-outer pass, so each block is read once. */
function evaluateStreaming(
  source: WeightSource,
  inputs: { dataset: string; windows: Int32Array[]; slice: string }[],
  opts: EvalOptions,
): EvalRecord[] {
  const t0 = process.hrtime.bigint();
  const all = inputs.flatMap((x) => x.windows);
  const timing: StreamingTiming = { blocksSeconds: 0, headSeconds: 0, blocksCpuSeconds: 0, headCpuSeconds: 0 };
  const nlls = streamingWindowNlls(source, all, {
    storage: opts.storage,
    spillDir: opts.spillDir,
    onProgress: opts.onProgress,
    // the block pass comes before any window is done: its progress is published (blocks, then the head)
    onBlock: (done, total) => publishProgress({ pass: 'eval', unit: 'blocks', done, total }),
    timing,
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  let at = 0;
  return inputs.map(({ dataset, windows, slice }) => {
    const mine = nlls.slice(at, at + windows.length);
    at += windows.length;
    // time is shared by the datasets in proportion to their windows
    return { dataset, slice, stages: timing, ...combineWindows(mine, windows[0].length, (seconds * windows.length) / all.length) };
  });
}

/**
 * evaluateSource spread over `jobs` worker processes (wasm is single-threaded per process).
 * Per-window sums are combined in window order, so the perplexity is bit-identical to jobs = 1.
 * A source other than the model's own checkpoint (e.g. pruned weights) is written to a
 * temporary file for the workers first.
 */
export async function evaluateSourceJobs(
  model: OpenedModel,
  source: WeightSource,
  datasets: readonly string[],
  opts: EvalOptions & { jobs: number; backend: BackendChoice },
): Promise<EvalRecord[]> {
  if (opts.jobs <= 1) return evaluateSource(model, source, datasets, opts);
  // Streaming workers each run their windows block by block: every worker reads every block, and
  // each holds one block on its device (the memory planner counts them).
  const streaming = (opts.evaluator ?? defaultEvaluator(source)) === 'streaming' ? { storage: opts.storage ?? 'f32', spillDir: opts.spillDir } : undefined;
  const inputs = datasets.map((d) => ({ dataset: d, ...datasetWindows(model, d, opts) }));
  const shared = sourceForWorkers(source, model.source.origin, source === model.source);
  try {
    const out: EvalRecord[] = [];
    for (const { dataset, windows, slice } of inputs) {
      const t0 = process.hrtime.bigint();
      const nlls = await windowNllsParallel(shared.path, model.tokenizerPath, windows, opts.jobs, opts.backend, opts.onProgress, streaming);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      out.push({ dataset, slice, ...combineWindows(nlls, windows[0].length, seconds) });
    }
    return out;
  } finally {
    shared.cleanup();
  }
}
