import * as tf from '@tensorflow/tfjs';

/**
 * Calibration statistics of one linear layer's input, per input channel j, accumulated over
 * every calibration token: enough for Wanda and RIA (sum of squares), OWL (through Wanda
 * scores) and DSnoT (mean and variance). Linears that share an input share one object.
 */
export interface InputStats {
  inFeatures: number;
  /** sum over tokens of x_j^2 (float64). */
  sumSq: Float64Array;
  /** sum over tokens of x_j. */
  sum: Float64Array;
  /** tokens accumulated. */
  tokens: number;
  /** calibration windows accumulated (Wanda divides its scaler by this). */
  samples: number;
  /** X^T X [in, in] (float64), only when a method asks for it (SparseGPT). */
  gram?: Float64Array;
  /** Copies of the raw inputs [T, in] of the first few windows (reconstruction proxies). */
  inputs?: Float32Array[];
}

export interface StatsOptions {
  gram?: boolean;
  keepInputs?: number;
}

export function emptyStats(inFeatures: number, opts: StatsOptions = {}): InputStats {
  return {
    inFeatures,
    sumSq: new Float64Array(inFeatures),
    sum: new Float64Array(inFeatures),
    tokens: 0,
    samples: 0,
    gram: opts.gram ? new Float64Array(inFeatures * inFeatures) : undefined,
    inputs: opts.keepInputs ? [] : undefined,
  };
}

/**
 * Add one window's input x [T, in]. Column sums use a ones-vector matMul (a reduction over
 * axis 0 is slow on wasm); the totals are kept in float64 on the host.
 */
export function accumulateStats(stats: InputStats, x: tf.Tensor2D, opts: StatsOptions = {}): void {
  const [T, d] = x.shape;
  const ones = tf.ones([1, T]);
  const sq = tf.tidy(() => tf.matMul(ones, tf.square(x)));
  const s = tf.matMul(ones, x);
  const g = opts.gram ? tf.tidy(() => tf.matMul(tf.transpose(x), x)) : null;
  ones.dispose();
  const sqd = sq.dataSync();
  const sd = s.dataSync();
  for (let j = 0; j < d; j++) {
    stats.sumSq[j] += sqd[j];
    stats.sum[j] += sd[j];
  }
  if (g && stats.gram) {
    const gd = g.dataSync();
    for (let k = 0; k < gd.length; k++) stats.gram[k] += gd[k];
  }
  tf.dispose([sq, s, g ?? []]);
  if (stats.inputs && opts.keepInputs && stats.inputs.length < opts.keepInputs) {
    stats.inputs.push(x.dataSync().slice() as Float32Array);
  }
  stats.tokens += T;
  stats.samples += 1;
}

/** Wanda's scaler_row: sum of squares divided by the number of calibration windows. */
export function scalerRow(stats: InputStats): Float32Array {
  const out = new Float32Array(stats.inFeatures);
  const n = Math.max(1, stats.samples);
  for (let j = 0; j < out.length; j++) out[j] = stats.sumSq[j] / n;
  return out;
}

/** Per-channel mean and (population) variance over tokens. */
export function channelMoments(stats: InputStats): { mean: Float32Array; variance: Float32Array } {
  const n = Math.max(1, stats.tokens);
  const mean = new Float32Array(stats.inFeatures);
  const variance = new Float32Array(stats.inFeatures);
  for (let j = 0; j < stats.inFeatures; j++) {
    const m = stats.sum[j] / n;
    mean[j] = m;
    variance[j] = Math.max(0, stats.sumSq[j] / n - m * m);
  }
  return { mean, variance };
}
