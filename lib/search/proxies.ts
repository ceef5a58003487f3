/**
 * Cheap stand-ins for perplexity, computed from what pruning produces anyway (each layer's
 * weight, calibration statistics, scores and mask): no forward pass through the model.
 *
 * Every proxy is a per-layer number averaged over the layers with equal weight (except the pooled
 * Gini, which is one Gini over all layers, and 'fisher', whose per-layer values are already in
 * loss units and are summed). Whether lower or higher predicts lower perplexity is
 * not assumed: the proxy study measures it, and `sign` records the measured direction, so
 * searches minimize `sign * proxy`.
 */
import * as tf from '@tensorflow/tfjs';
import { CrepeError } from '../errors';
import { InputStats } from '../prune/stats';
import { gini, giniOfSorted } from './rank';

/** One pruned layer as the pipeline's onLayer hook reports it. */
export interface LayerSample {
  weight: Float32Array;
  scores: Float32Array;
  mask: Uint8Array;
  stats: InputStats;
  rows: number;
  cols: number;
  /** The layer's Fisher diagonal [rows, cols] (fisher.ts), when the setup collected it. */
  fisher?: Float32Array;
  /** Its output channels' sensitivity mean_t g_ti^2 [rows] (fisher.ts). */
  outputFisher?: Float32Array;
  /** Kept tokens' output gradients [S, rows] and inputs [S, cols] (fisher.ts). */
  fisherTokens?: { g: Float32Array; x: Float32Array; count: number };
}

export const PROXY_NAMES = ['gini-pruned-scores', 'gini-pooled', 'gini-ref', 'energy', 'energy-row', 'recon', 'recon-row', 'fisher', 'fisher-row', 'fisher-output'] as const;
export type ProxyName = (typeof PROXY_NAMES)[number];

export interface ProxyDef {
  name: ProxyName;
  description: string;
  /**
   * +1: a lower proxy predicts a lower PPL, so searches minimize the proxy; -1: maximize it.
   * Defaults are the directions MEASURED by `crepe proxy-study` (results/proxy-study-*.md: 40
   * uniform configurations each, stories260K and babyllama-char, 50% unstructured and 2:4).
   * The Gini proxies correlate negatively in three of the four studies (positively on
   * stories260K 2:4), so they default to -1 (maximize); all others correlate positively.
   */
  sign: 1 | -1;
  /** Needs raw calibration inputs (statistics collected with keepInputs). */
  needsInputs: boolean;
  /** Needs the weights' Fisher diagonal (one backward pass per calibration window, fisher.ts). */
  needsFisher?: boolean;
  /** How layers combine: 'mean' of per-layer values (scale-free shares), or 'sum' (already in loss units). */
  aggregate?: 'mean' | 'sum';
}

export const PROXIES: Record<ProxyName, ProxyDef> = {
  'gini-pruned-scores': {
    name: 'gini-pruned-scores',
    description: "mean over layers of the Gini coefficient of the pruned weights' scores (the paper's proxy as we read it)",
    sign: -1,
    needsInputs: false,
  },
  'gini-pooled': {
    name: 'gini-pooled',
    description: "one Gini over all layers' pruned scores, each divided by its layer's mean score",
    sign: -1,
    needsInputs: false,
  },
  'gini-ref': {
    name: 'gini-ref',
    description: 'mean over layers of the Gini, over the pruned weights, of the fixed importance |W_ij| ||X_j||',
    sign: 1,
    needsInputs: false,
  },
  energy: {
    name: 'energy',
    description: 'mean over layers of the pruned share of sum W_ij^2 ||X_j||^2 (diagonal estimate of the output error)',
    sign: 1,
    needsInputs: false,
  },
  'energy-row': {
    name: 'energy-row',
    description: 'mean over layers and output rows of the pruned share of the row energy sum_j W_ij^2 ||X_j||^2',
    sign: 1,
    needsInputs: false,
  },
  recon: {
    name: 'recon',
    description: 'mean over layers of ||W X - (W*M) X||^2 / ||W X||^2 on the kept calibration windows',
    sign: 1,
    needsInputs: true,
  },
  'recon-row': {
    name: 'recon-row',
    description: 'mean over layers and output rows of the relative reconstruction error of each output (kept windows)',
    sign: 1,
    needsInputs: true,
  },
  fisher: {
    name: 'fisher',
    description: 'sum over layers of ½ sum_pruned F_ij W_ij^2, F = token-level Fisher diagonal of the weights: the estimated calibration-loss increase (nats/token)',
    sign: 1,
    needsInputs: false,
    needsFisher: true,
    aggregate: 'sum',
  },
  'fisher-row': {
    name: 'fisher-row',
    description: "sum over layers of ½ sum_pruned s_i W_ij^2 E[x_j^2]: 'fisher' with F_ij factored into output sensitivity s_i = E[g_i^2] times input energy (less noisy)",
    sign: 1,
    needsInputs: false,
    needsFisher: true,
    aggregate: 'sum',
  },
  'fisher-output': {
    name: 'fisher-output',
    description: 'sum over layers of ½ mean_t (g_t · (W - W*M) x_t)^2 on the kept Fisher tokens: the Fisher quadratic form with output correlations',
    sign: 1,
    needsInputs: false,
    needsFisher: true,
    aggregate: 'sum',
  },
};

export function parseProxy(name: string): ProxyName {
  if (!(PROXY_NAMES as readonly string[]).includes(name)) {
    throw new CrepeError(`unknown proxy '${name}' (known: ${PROXY_NAMES.join(', ')})`);
  }
  return name as ProxyName;
}

/** Values at the pruned positions (mask 0), as float32 (plenty for a proxy, and half the memory). */
function prunedValues(values: ArrayLike<number>, mask: Uint8Array): Float32Array {
  let n = 0;
  for (let k = 0; k < mask.length; k++) if (mask[k] === 0) n++;
  const out = new Float32Array(n);
  for (let k = 0, p = 0; k < mask.length; k++) if (mask[k] === 0) out[p++] = values[k];
  return out;
}

/**
 * Gini coefficient (as rank.ts `gini`) of non-negative float32 values in O(n). A proxy is
 * evaluated once per configuration on up to millions of pruned scores, where a comparison sort
 * costs more than the pruning itself; the bit patterns of non-negative IEEE-754 floats order like
 * their values, so a 3-pass LSD radix sort (11 bits per pass) of those patterns sorts them.
 * Anything negative or NaN goes to `gini`, which rejects it.
 */
export function giniNonNegative(values: Float32Array): number {
  const n = values.length;
  if (n === 0 || values.some((v) => !(v >= 0))) return gini(values);
  let keys: Uint32Array = new Uint32Array(Float32Array.from(values).buffer);
  for (let k = 0; k < n; k++) if (keys[k] === 0x80000000) keys[k] = 0; // -0 sorts as +0
  let scratch: Uint32Array = new Uint32Array(n);
  const counts = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) {
    counts.fill(0);
    for (let k = 0; k < n; k++) counts[(keys[k] >>> shift) & 2047]++;
    for (let d = 0, at = 0; d < 2048; d++) {
      const c = counts[d];
      counts[d] = at;
      at += c;
    }
    for (let k = 0; k < n; k++) scratch[counts[(keys[k] >>> shift) & 2047]++] = keys[k];
    [keys, scratch] = [scratch, keys];
  }
  return giniOfSorted(new Float32Array(keys.buffer));
}

/**
 * Gini of the pruned weights' scores in one layer; NaN when nothing is pruned. Gini is scale
 * invariant, so dividing by the layer's mean score (to compare layers) would not change it.
 */
export function giniPrunedScores(layer: LayerSample): number {
  const pruned = prunedValues(layer.scores, layer.mask);
  return pruned.length ? giniNonNegative(pruned) : NaN;
}

/** Gini, over the pruned weights, of |W_ij| * ||X_j||, an importance that does not depend on the configuration. */
export function giniReference(layer: LayerSample): number {
  const norms = channelNorms(layer.stats);
  const ref = new Float32Array(layer.weight.length);
  for (let r = 0, k = 0; r < layer.rows; r++) for (let c = 0; c < layer.cols; c++, k++) ref[k] = Math.abs(layer.weight[k]) * norms[c];
  const pruned = prunedValues(ref, layer.mask);
  return pruned.length ? giniNonNegative(pruned) : NaN;
}

/**
 * Share of the layer's "energy" sum_ij W_ij^2 ||X_j||^2 / N that the pruned weights carry: the
 * expected squared output error if input channels were uncorrelated (N = calibration tokens,
 * which cancels in the ratio). In [0, 1]; 0 for an empty layer.
 */
export function prunedEnergyShare(layer: LayerSample): number {
  const sq = layer.stats.sumSq;
  let pruned = 0;
  let total = 0;
  for (let r = 0, k = 0; r < layer.rows; r++) {
    for (let c = 0; c < layer.cols; c++, k++) {
      const e = layer.weight[k] * layer.weight[k] * sq[c];
      total += e;
      if (layer.mask[k] === 0) pruned += e;
    }
  }
  return total > 0 ? pruned / total : 0;
}

/**
 * The same share per output row, averaged over the rows with non-zero energy: every output
 * neuron counts equally, however large its weights.
 */
export function prunedEnergyShareByRow(layer: LayerSample): number {
  const sq = layer.stats.sumSq;
  let sum = 0;
  let rowsCounted = 0;
  for (let r = 0, k = 0; r < layer.rows; r++) {
    let pruned = 0;
    let total = 0;
    for (let c = 0; c < layer.cols; c++, k++) {
      const e = layer.weight[k] * layer.weight[k] * sq[c];
      total += e;
      if (layer.mask[k] === 0) pruned += e;
    }
    if (total > 0) {
      sum += pruned / total;
      rowsCounted++;
    }
  }
  return rowsCounted ? sum / rowsCounted : 0;
}

const gramCache = new WeakMap<InputStats, Float32Array>();

/** X^T X [in, in] over the kept calibration windows, computed once per statistics object. */
export function keptInputGram(stats: InputStats): Float32Array {
  let g = gramCache.get(stats);
  if (g) return g;
  const inputs = stats.inputs;
  if (!inputs || inputs.length === 0) {
    throw new CrepeError("proxy 'recon' needs raw calibration inputs: collect statistics with keepInputs > 0");
  }
  const d = stats.inFeatures;
  const sum = tf.tidy(() =>
    tf.addN(inputs.map((x) => {
      const t = tf.tensor2d(x, [x.length / d, d]);
      return tf.matMul(t, t, true, false); // once per layer group, so the slow transposed path is fine
    })),
  );
  g = sum.dataSync() as Float32Array;
  sum.dispose();
  gramCache.set(stats, g);
  return g;
}

/**
 * Relative output reconstruction error over the kept windows: `total` = ||W X - (W*M) X||^2 /
 * ||W X||^2, `byRow` = the same ratio per output row, averaged over rows with non-zero output.
 * With D = W*(1 - M) and G = X^T X, row i's error is (D G D^T)_ii = sum_j (D G)_ij D_ij, so the
 * cost is one [out, in] x [in, in] product per term, not one per calibration token.
 */
export function reconstructionErrors(layer: LayerSample): { total: number; byRow: number } {
  const g = keptInputGram(layer.stats);
  const dropped = new Float32Array(layer.weight.length);
  for (let k = 0; k < dropped.length; k++) if (layer.mask[k] === 0) dropped[k] = layer.weight[k];
  const [errT, refT] = tf.tidy(() => {
    const gt = tf.tensor2d(g, [layer.cols, layer.cols]);
    const rowQuadratic = (m: Float32Array): tf.Tensor => {
      const t = tf.tensor2d(m, [layer.rows, layer.cols]);
      return tf.sum(tf.mul(tf.matMul(t, gt), t), 1);
    };
    return [rowQuadratic(dropped), rowQuadratic(layer.weight)];
  });
  const err = errT.dataSync();
  const ref = refT.dataSync();
  tf.dispose([errT, refT]);
  let errSum = 0;
  let refSum = 0;
  let ratioSum = 0;
  let rowsCounted = 0;
  for (let r = 0; r < layer.rows; r++) {
    errSum += err[r];
    refSum += ref[r];
    if (ref[r] > 0) {
      ratioSum += err[r] / ref[r];
      rowsCounted++;
    }
  }
  return { total: refSum > 0 ? errSum / refSum : 0, byRow: rowsCounted ? ratioSum / rowsCounted : 0 };
}

/** ½ sum over pruned weights of F_ij W_ij^2: OBD's estimate of the loss increase from this layer alone. */
export function fisherLoss(layer: LayerSample): number {
  const f = layer.fisher;
  if (!f) throw new CrepeError("proxy 'fisher' needs the Fisher diagonal: calibrate with fisherWindows > 0");
  let sum = 0;
  for (let k = 0; k < layer.mask.length; k++) if (layer.mask[k] === 0) sum += f[k] * layer.weight[k] * layer.weight[k];
  return sum / 2;
}

/** ½ sum over pruned weights of s_i W_ij^2 E[x_j^2], the rank-one factorisation of fisherLoss's F. */
export function fisherRowLoss(layer: LayerSample): number {
  const s = layer.outputFisher;
  if (!s) throw new CrepeError("proxy 'fisher-row' needs the Fisher diagonal: calibrate with fisherWindows > 0");
  const sq = layer.stats.sumSq;
  const tokens = Math.max(layer.stats.tokens, 1);
  let sum = 0;
  for (let r = 0, k = 0; r < layer.rows; r++) {
    let row = 0;
    for (let c = 0; c < layer.cols; c++, k++) if (layer.mask[k] === 0) row += layer.weight[k] * layer.weight[k] * sq[c];
    sum += s[r] * row;
  }
  return sum / tokens / 2;
}

/** ½ mean over kept tokens of (g_t · D x_t)^2 with D = W*(1 - M): one [S, in] x [in, out] product. */
export function fisherOutputLoss(layer: LayerSample): number {
  const k = layer.fisherTokens;
  if (!k) throw new CrepeError("proxy 'fisher-output' needs the Fisher tokens: calibrate with fisherWindows > 0");
  if (k.count === 0) return 0;
  const dropped = new Float32Array(layer.weight.length);
  for (let e = 0; e < dropped.length; e++) if (layer.mask[e] === 0) dropped[e] = layer.weight[e];
  const total = tf.tidy(() => {
    const dy = tf.matMul(tf.tensor2d(k.x, [k.count, layer.cols]), tf.tensor2d(dropped, [layer.rows, layer.cols]), false, true);
    return tf.sum(tf.square(tf.sum(tf.mul(dy, tf.tensor2d(k.g, [k.count, layer.rows])), 1)));
  });
  const v = total.dataSync()[0];
  total.dispose();
  return v / k.count / 2;
}

function channelNorms(stats: InputStats): Float64Array {
  const out = new Float64Array(stats.inFeatures);
  for (let j = 0; j < out.length; j++) out[j] = Math.sqrt(stats.sumSq[j]);
  return out;
}

const PER_LAYER: Partial<Record<ProxyName, (l: LayerSample) => number>> = {
  'gini-pruned-scores': giniPrunedScores,
  'gini-ref': giniReference,
  energy: prunedEnergyShare,
  'energy-row': prunedEnergyShareByRow,
  fisher: fisherLoss,
  'fisher-row': fisherRowLoss,
  'fisher-output': fisherOutputLoss,
};

/** Collects the requested proxies layer by layer (feed it from PruneHooks.onLayer). */
export class ProxyAccumulator {
  private readonly perLayer = new Map<ProxyName, number[]>();
  private readonly pooled: Float32Array[] = [];

  constructor(readonly names: readonly ProxyName[]) {
    for (const n of names) this.perLayer.set(n, []);
  }

  add(layer: LayerSample): void {
    for (const [name, values] of this.perLayer) {
      const f = PER_LAYER[name];
      if (f) values.push(f(layer));
    }
    if (this.perLayer.has('recon') || this.perLayer.has('recon-row')) {
      const r = reconstructionErrors(layer); // one computation serves both
      this.perLayer.get('recon')?.push(r.total);
      this.perLayer.get('recon-row')?.push(r.byRow);
    }
    if (this.perLayer.has('gini-pooled')) {
      let total = 0;
      for (let k = 0; k < layer.scores.length; k++) total += layer.scores[k];
      const mean = total / layer.scores.length;
      const pruned = prunedValues(layer.scores, layer.mask);
      if (mean > 0) for (let k = 0; k < pruned.length; k++) pruned[k] /= mean;
      this.pooled.push(pruned);
    }
  }

  /** Each proxy's value; per-layer proxies average the layers where they are defined. */
  values(): Record<ProxyName, number> {
    const out = {} as Record<ProxyName, number>;
    for (const [name, values] of this.perLayer) {
      if (name === 'gini-pooled') {
        const n = this.pooled.reduce((a, p) => a + p.length, 0);
        const all = new Float32Array(n);
        let at = 0;
        for (const p of this.pooled) {
          all.set(p, at);
          at += p.length;
        }
        out[name] = n ? giniNonNegative(all) : NaN;
      } else {
        const defined = values.filter((v) => !Number.isNaN(v));
        const sum = defined.reduce((a, v) => a + v, 0);
        out[name] = !defined.length ? NaN : PROXIES[name].aggregate === 'sum' ? sum : sum / defined.length;
      }
    }
    return out;
  }
}
