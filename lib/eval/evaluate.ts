import { evaluationWindows, loadDataset, tokenizeDataset } from '../data/datasets';
import { CrepeError } from '../errors';
import { OpenedModel } from '../model/resolve';
import { LlamaModel } from '../model/runtime';
import { WeightSource } from '../model/types';
import { PerplexityResult, ProgressFn, perplexity } from './perplexity';

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
