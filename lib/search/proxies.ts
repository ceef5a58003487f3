/**
 * Cheap stand-ins for perplexity, computed from what pruning produces anyway (each layer's
 * weight, calibration statistics, scores and mask): no forward pass through the model.
 *
 * Every proxy is a per-layer number averaged over the layers with equal weight (except the pooled
 * Gini, which is one Gini over all layers). Whether lower or higher predicts lower perplexity is
 * not assumed: the proxy study measures it, and `sign` records the measured direction, so
 * searches minimize `sign * proxy`.
 */
import * as tf from '@tensorflow/tfjs';
import { CrepeError } from '../errors';
import { InputStats } from '../prune/stats';
import { gini } from './rank';

/** One pruned layer as the pipeline's onLayer hook reports it. */
export interface LayerSample {
  weight: Float32Array;
  scores: Float32Array;
  mask: Uint8Array;
  stats: InputStats;
  rows: number;
  cols: number;
}

export const PROXY_NAMES = ['gini-pruned-scores', 'gini-pooled', 'gini-ref', 'energy', 'recon'] as const;
export type ProxyName = (typeof PROXY_NAMES)[number];

export interface ProxyDef {
  name: ProxyName;
  description: string;
  /**
   * +1: a lower proxy predicts a lower PPL, so searches minimize the proxy; -1: maximize it.
   * Defaults are the directions MEASURED by `crepe proxy-study` (results/proxy-study-*.md).
   */
  sign: 1 | -1;
  /** Needs raw calibration inputs (statistics collected with keepInputs). */
  needsInputs: boolean;
}

export const PROXIES: Record<ProxyName, ProxyDef> = {
  'gini-pruned-scores': {
    name: 'gini-pruned-scores',
    description: "mean over layers of the Gini coefficient of the pruned weights' scores (the paper's proxy as we read it)",
    sign: 1,
    needsInputs: false,
  },
  'gini-pooled': {
    name: 'gini-pooled',
    description: "one Gini over all layers' pruned scores, each divided by its layer's mean score",
    sign: 1,
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
  recon: {
    name: 'recon',
    description: 'mean over layers of ||W X - (W*M) X||^2 / ||W X||^2 on the kept calibration windows',
    sign: 1,
    needsInputs: true,
  },
};

export function parseProxy(name: string): ProxyName {
  if (!(PROXY_NAMES as readonly string[]).includes(name)) {
    throw new CrepeError(`unknown proxy '${name}' (known: ${PROXY_NAMES.join(', ')})`);
  }
  return name as ProxyName;
}

/** Scores of the pruned weights (mask 0). */
function prunedValues(values: ArrayLike<number>, mask: Uint8Array): Float64Array {
  let n = 0;
  for (let k = 0; k < mask.length; k++) if (mask[k] === 0) n++;
  const out = new Float64Array(n);
  for (let k = 0, p = 0; k < mask.length; k++) if (mask[k] === 0) out[p++] = values[k];
  return out;
}

/**
 * Gini of the pruned weights' scores in one layer; NaN when nothing is pruned. Gini is scale
 * invariant, so dividing by the layer's mean score (to compare layers) would not change it.
 */
export function giniPrunedScores(layer: LayerSample): number {
  const pruned = prunedValues(layer.scores, layer.mask);
  return pruned.length ? gini(pruned) : NaN;
}

/** Gini, over the pruned weights, of |W_ij| * ||X_j||, an importance that does not depend on the configuration. */
export function giniReference(layer: LayerSample): number {
  const norms = channelNorms(layer.stats);
  const ref = new Float64Array(layer.weight.length);
  for (let r = 0, k = 0; r < layer.rows; r++) for (let c = 0; c < layer.cols; c++, k++) ref[k] = Math.abs(layer.weight[k]) * norms[c];
  const pruned = prunedValues(ref, layer.mask);
  return pruned.length ? gini(pruned) : NaN;
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
 * ||W X - (W*M) X||^2 / ||W X||^2 over the kept windows. With D = W*(1 - M) and G = X^T X,
 * ||D X^T||^2 = sum((D G) * D), so the cost is one [out, in] x [in, in] product per term, not
 * one per calibration token.
 */
export function reconstructionError(layer: LayerSample): number {
  const g = keptInputGram(layer.stats);
  const dropped = new Float32Array(layer.weight.length);
  for (let k = 0; k < dropped.length; k++) if (layer.mask[k] === 0) dropped[k] = layer.weight[k];
  const [err, ref] = tf.tidy(() => {
    const gt = tf.tensor2d(g, [layer.cols, layer.cols]);
    const quad = (m: Float32Array): tf.Tensor => {
      const t = tf.tensor2d(m, [layer.rows, layer.cols]);
      return tf.sum(tf.mul(tf.matMul(t, gt), t));
    };
    return [quad(dropped), quad(layer.weight)];
  });
  const e = err.dataSync()[0];
  const r = ref.dataSync()[0];
  tf.dispose([err, ref]);
  return r > 0 ? e / r : 0;
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
  recon: reconstructionError,
};

/** Collects the requested proxies layer by layer (feed it from PruneHooks.onLayer). */
export class ProxyAccumulator {
  private readonly perLayer = new Map<ProxyName, number[]>();
  private readonly pooled: Float64Array[] = [];

  constructor(readonly names: readonly ProxyName[]) {
    for (const n of names) this.perLayer.set(n, []);
  }

  add(layer: LayerSample): void {
    for (const [name, values] of this.perLayer) {
      const f = PER_LAYER[name];
      if (f) values.push(f(layer));
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
        const all = new Float64Array(n);
        let at = 0;
        for (const p of this.pooled) {
          all.set(p, at);
          at += p.length;
        }
        out[name] = n ? gini(all) : NaN;
      } else {
        const defined = values.filter((v) => !Number.isNaN(v));
        out[name] = defined.length ? defined.reduce((a, v) => a + v, 0) / defined.length : NaN;
      }
    }
    return out;
  }
}
