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

/** Sum of -log p over one window's predictions, accumulated in float64. */
export function windowNll(model: LlamaModel, window: Int32Array): number {
  const lp = model.windowLogProbs(window);
  let s = 0;
  for (let t = 0; t < lp.length; t++) s -= lp[t];
  return s;
}

/**
 * Combine per-window NLL sums in window order, so that a single process and any number of
 * worker processes give bit-identical perplexities.
 */
export function combineWindows(nlls: readonly number[], seqlen: number, seconds: number): PerplexityResult {
  let total = 0;
  for (const v of nlls) total += v;
  const tokens = nlls.length * (seqlen - 1);
  const nll = total / tokens;
  return { ppl: Math.exp(nll), nll, tokens, windows: nlls.length, seqlen, seconds, tokensPerSecond: tokens / seconds };
}

/**
 * Perplexity with the Wanda / SparseGPT protocol: independent windows, every next-token
 * prediction inside a window scored, PPL = exp(total NLL / predicted tokens). Per-token
 * log-probabilities are float32 (LlamaModel.windowLogProbs: log of the softmax, the stable
 * log-softmax where a probability underflows); sums are float64.
 */
export function perplexity(model: LlamaModel, windows: Int32Array[], onProgress?: ProgressFn): PerplexityResult {
  const t0 = process.hrtime.bigint();
  const elapsed = () => Number(process.hrtime.bigint() - t0) / 1e9;
  const nlls = windows.map((w, i) => {
    const v = windowNll(model, w);
    if (onProgress) onProgress(i + 1, windows.length, ((i + 1) * (w.length - 1)) / elapsed());
    return v;
  });
  return combineWindows(nlls, windows[0].length, elapsed());
}
