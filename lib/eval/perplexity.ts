import { LlamaModel } from '../model/runtime';

export interface PerplexityResult {
  ppl: number;
  /** Mean negative log-likelihood per predicted token (nats). */
  nll: number;
  /** Predicted tokens = windows x (seqlen - 1). */
  tokens: number;
  windows: number;
  seqlen: number;
  seconds: number;
  tokensPerSecond: number;
}

export type ProgressFn = (done: number, total: number, tokensPerSecond: number) => void;

/**
 * Perplexity with the Wanda / SparseGPT protocol: independent windows, every next-token
 * prediction inside a window scored, PPL = exp(total NLL / predicted tokens). The sum is kept
 * in float64; per-token log-probabilities come from a float32 stable log-softmax.
 */
export function perplexity(model: LlamaModel, windows: Int32Array[], onProgress?: ProgressFn): PerplexityResult {
  const t0 = process.hrtime.bigint();
  let total = 0;
  let count = 0;
  windows.forEach((w, i) => {
    const lp = model.windowLogProbs(w);
    for (let t = 0; t < lp.length; t++) total -= lp[t];
    count += lp.length;
    if (onProgress) onProgress(i + 1, windows.length, count / (Number(process.hrtime.bigint() - t0) / 1e9));
  });
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const nll = total / count;
  return {
    ppl: Math.exp(nll),
    nll,
    tokens: count,
    windows: windows.length,
    seqlen: windows[0].length,
    seconds,
    tokensPerSecond: count / seconds,
  };
}
