import { evaluationWindows, loadDataset, tokenizeDataset } from '../data/datasets';
import { CrepeError } from '../errors';
import { OpenedModel } from '../model/resolve';
import { LlamaModel } from '../model/runtime';
import { WeightSource } from '../model/types';
import { BackendChoice } from '../backend';
import { PerplexityResult, ProgressFn, combineWindows, perplexity } from './perplexity';
import { sourceForWorkers, windowNllsParallel } from './pool';

export interface EvalOptions {
  /** Window length; default the model's context. */
  seqlen?: number;
  maxWindows?: number;
  onProgress?: ProgressFn;
}

export interface EvalRecord extends PerplexityResult {
  dataset: string;
  slice: string;
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

/** Perplexity of `source` (the model's own weights, or pruned ones) on each dataset. */
export function evaluateSource(
  model: OpenedModel,
  source: WeightSource,
  datasets: readonly string[],
  opts: EvalOptions = {},
): EvalRecord[] {
  const inputs = datasets.map((d) => ({ dataset: d, ...datasetWindows(model, d, opts) }));
  const runtime = LlamaModel.fromSource(source);
  try {
    return inputs.map(({ dataset, windows, slice }) => ({ dataset, slice, ...perplexity(runtime, windows, opts.onProgress) }));
  } finally {
    runtime.dispose();
  }
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
  const inputs = datasets.map((d) => ({ dataset: d, ...datasetWindows(model, d, opts) }));
  const shared = sourceForWorkers(source, model.source.origin, source === model.source);
  try {
    const out: EvalRecord[] = [];
    for (const { dataset, windows, slice } of inputs) {
      const t0 = process.hrtime.bigint();
      const nlls = await windowNllsParallel(shared.path, model.tokenizerPath, windows, opts.jobs, opts.backend, opts.onProgress);
      const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
      out.push({ dataset, slice, ...combineWindows(nlls, windows[0].length, seconds) });
    }
    return out;
  } finally {
    shared.cleanup();
  }
}
