/**
 * Loss sensitivity of every linear layer's weights, measured once per model for the Fisher
 * proxies: F_ij = sum over calibration tokens t of g_ti^2 x_tj^2, where g_t = dLoss/dy_t is the
 * gradient of the window's next-token loss with respect to the layer's OUTPUT at token t and x_t
 * its input. With the next tokens sampled from the dense model (the default; see sampleTargets)
 * that is the diagonal of the Fisher information of the weights with the tokens treated as
 * independent samples (labels 'data' gives the empirical Fisher instead), so ½ sum_pruned
 * F_ij W_ij^2 estimates how much the calibration loss (KL to the dense model) rises when those
 * weights are removed (OBD's second-order term), in the same
 * units (nats) for every layer: unlike the per-layer error shares, it needs no arbitrary weighting
 * of layers or rows against each other.
 *
 * The gradient comes from tfjs autodiff over the runtime's own forward (forwardBlock, the one
 * forward definition), run with zero "delta" tensors added to every linear's output: the
 * gradient with respect to a delta is dLoss/dy for that linear. The tests check that its
 * log-probabilities are the runtime's and its gradients match finite differences. All blocks are
 * resident during this pass: fine for the models searched here; a 70B model would need a
 * block-checkpointed backward, which is not written.
 */
import * as tf from '@tensorflow/tfjs';
import { OpenedModel } from '../model/resolve';
import { LlamaModel, WindowTables, disposeWindowTables, makeWindowTables, rotaryPartnerMatrix } from '../model/runtime';
import { LinearName, LlamaConfig, linearNames, linearShape } from '../model/types';
import { CalibrationSpec, drawCalibration } from '../prune/pipeline';
import { Rng } from '../util/random';

/** Per block, per linear: F [out, in] row-major (float32), summed over tokens and divided by the token count. */
export interface WeightFisher {
  blocks: Map<LinearName, Float32Array>[];
  /** Per block, per linear: mean over tokens of g_ti^2 [out], the output channels' sensitivity. */
  outputs: Map<LinearName, Float32Array>[];
  /**
   * Per block, per linear: the first `keptTokens` tokens' output gradients G [S, out] and inputs
   * X [S, in], for the full quadratic form ½ mean_t (g_t · ΔW x_t)^2 (output correlations included).
   */
  kept: Map<LinearName, { g: Float32Array; x: Float32Array }>[];
  keptTokens: number;
  windows: number;
  tokens: number;
}

/** The runtime model and what the differentiable pass adds to it: the rotary partner matrix and window tables. */
interface GradModel {
  lm: LlamaModel;
  partners: tf.Tensor2D;
  tables: WindowTables;
}

function gradModel(model: OpenedModel, T: number): GradModel {
  const cfg = model.source.config;
  return { lm: LlamaModel.fromSource(model.source), partners: rotaryPartnerMatrix(cfg), tables: makeWindowTables(cfg, T) };
}

function disposeGradModel(m: GradModel): void {
  m.lm.dispose();
  m.partners.dispose();
  disposeWindowTables(m.tables);
}

/**
 * Log-softmax of the next-token logits [T - 1, vocab] of one window, with `deltas[b][name]`
 * [T, out] added to each linear's output (zeros: their gradient is dLoss/dy) and each linear's
 * input reported to `onInput` once per input group. The head is the runtime's (headLogits);
 * the log-softmax is tfjs's composite one, which has a gradient.
 */
function windowLogSoftmax(
  m: GradModel,
  tokens: Int32Array,
  deltas: Record<LinearName, tf.Tensor2D>[],
  onInput: (block: number, names: readonly LinearName[], x: tf.Tensor2D) => void,
): tf.Tensor2D {
  const cfg = m.lm.config;
  const x = m.lm.hidden(tokens, m.tables, (b) => ({
    capture: (names, input) => onInput(b, names, input),
    deltas: { delta: deltas[b], partners: m.partners },
  }));
  return tf.logSoftmax(m.lm.logits(tf.slice(x, [0, 0], [tokens.length - 1, cfg.dim]))) as tf.Tensor2D;
}

function zeroDeltas(cfg: LlamaConfig, T: number): Record<LinearName, tf.Tensor2D> {
  const d = {} as Record<LinearName, tf.Tensor2D>;
  for (const n of linearNames(cfg)) d[n] = tf.zeros([T, linearShape(cfg, n)[0]]);
  return d;
}

/** log p(tokens[t+1] | tokens[..t]) from the differentiable pass: the tests compare it with the runtime. */
export function gradForwardLogProbs(model: OpenedModel, tokens: Int32Array): Float32Array {
  const cfg = model.source.config;
  const m = gradModel(model, tokens.length);
  const deltas = Array.from({ length: cfg.nLayers }, () => zeroDeltas(cfg, tokens.length));
  try {
    const picked = tf.tidy(() => {
      const logp = windowLogSoftmax(m, tokens, deltas, () => undefined);
      return tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(tokens.subarray(1), 'int32'), cfg.vocabSize)), 1);
    });
    const out = picked.dataSync() as Float32Array;
    picked.dispose();
    return out;
  } finally {
    disposeGradModel(m);
    deltas.forEach((d) => tf.dispose(Object.values(d)));
  }
}

/**
 * Next tokens drawn from the dense model's own predictions: with them the squared gradients
 * estimate the true Fisher (the curvature of KL(dense || pruned), whose gradient at the dense
 * model is zero, so the quadratic term is the leading one), not the empirical Fisher of the
 * text's actual tokens.
 */
function sampleTargets(cfg: LlamaConfig, m: GradModel, tokens: Int32Array, rng: Rng): Int32Array {
  const deltas = Array.from({ length: cfg.nLayers }, () => zeroDeltas(cfg, tokens.length));
  const probs = tf.tidy(() => tf.exp(windowLogSoftmax(m, tokens, deltas, () => undefined)));
  const p = probs.dataSync();
  tf.dispose([probs, ...deltas.flatMap((d) => Object.values(d))]);
  const V = cfg.vocabSize;
  const out = new Int32Array(tokens.length - 1);
  for (let t = 0; t < out.length; t++) {
    let u = rng.next();
    let k = 0;
    for (; k < V - 1; k++) {
      u -= p[t * V + k];
      if (u < 0) break;
    }
    out[t] = k;
  }
  return out;
}

/** Next-token labels for the backward pass: the text's own ('data') or sampled from the dense model. */
export type FisherLabels = 'data' | 'model';

/**
 * The Fisher diagonal of every linear from the first `windows` calibration windows of `cal`
 * (the same windows the statistics use, drawn with the same seed), keeping the first
 * `keepTokens` tokens' output gradients and inputs for the 'fisher-output' proxy.
 */
export function collectWeightFisher(
  model: OpenedModel,
  cal: CalibrationSpec,
  windows: number,
  labels: FisherLabels = 'model',
  keepTokens = 1024,
): WeightFisher {
  const rng = new Rng(cal.seed);
  const keptParts: Map<LinearName, { g: Float32Array[]; x: Float32Array[] }>[] = [];
  let keptTokens = 0;
  const cfg = model.source.config;
  const names = linearNames(cfg);
  // the first `windows` of the statistics' own calibration windows (the sampler's order is fixed by the seed)
  const picked = drawCalibration(model, cal).windows.slice(0, windows);
  const acc: Map<LinearName, Float64Array>[] = [];
  const accOut: Map<LinearName, Float64Array>[] = [];
  for (let b = 0; b < cfg.nLayers; b++) {
    const mp = new Map<LinearName, Float64Array>();
    const mo = new Map<LinearName, Float64Array>();
    for (const n of names) {
      const [o, i] = linearShape(cfg, n);
      mp.set(n, new Float64Array(o * i));
      mo.set(n, new Float64Array(o));
    }
    acc.push(mp);
    accOut.push(mo);
    keptParts.push(new Map(names.map((n) => [n, { g: [], x: [] }])));
  }
  const m = gradModel(model, cal.seqlen);
  let tokens = 0;
  try {
    for (const w of picked) {
      const targets = labels === 'data' ? w.subarray(1) : sampleTargets(cfg, m, w, rng);
      const deltas = Array.from({ length: cfg.nLayers }, () => zeroDeltas(cfg, w.length));
      const flat = deltas.flatMap((d) => names.map((n) => d[n]));
      const inputs: Map<LinearName, tf.Tensor2D>[] = Array.from({ length: cfg.nLayers }, () => new Map());
      const { grads } = tf.tidy(() => {
        const lossOf = (...ds: tf.Tensor[]): tf.Scalar => {
          const rebuilt = deltas.map((_, b) => {
            const d = {} as Record<LinearName, tf.Tensor2D>;
            names.forEach((n, k) => (d[n] = ds[b * names.length + k] as tf.Tensor2D));
            return d;
          });
          const logp = windowLogSoftmax(m, w, rebuilt, (b, names, x) => {
            const kept = tf.keep(tf.clone(x));
            for (const n of names) inputs[b].set(n, kept);
          });
          return tf.neg(tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(targets, 'int32'), cfg.vocabSize)))) as tf.Scalar;
        };
        const r = tf.valueAndGrads(lossOf)(flat);
        return { grads: r.grads.map((g) => tf.keep(g)) };
      });
      const take = Math.min(keepTokens - keptTokens, w.length - 1);
      for (let b = 0; b < cfg.nLayers; b++) {
        names.forEach((n, k) => {
          const g = grads[b * names.length + k];
          if (take > 0) {
            const [o, i] = linearShape(cfg, n);
            keptParts[b].get(n)!.g.push((g.dataSync() as Float32Array).slice(0, take * o));
            keptParts[b].get(n)!.x.push((inputs[b].get(n)!.dataSync() as Float32Array).slice(0, take * i));
          }
          const [f, s] = tf.tidy(() => {
            const g2 = tf.square(g);
            return [tf.matMul(g2, tf.square(inputs[b].get(n)!), true, false), tf.sum(g2, 0)];
          });
          const fd = f.dataSync();
          const dst = acc[b].get(n)!;
          for (let e = 0; e < fd.length; e++) dst[e] += fd[e];
          const sd = s.dataSync();
          const dOut = accOut[b].get(n)!;
          for (let e = 0; e < sd.length; e++) dOut[e] += sd[e];
          tf.dispose([f, s]);
        });
      }
      tokens += w.length - 1;
      keptTokens += Math.max(take, 0);
      tf.dispose(grads);
      tf.dispose([...new Set(inputs.flatMap((mp) => [...mp.values()]))]);
      tf.dispose(flat);
    }
  } finally {
    disposeGradModel(m);
  }
  const perToken = (maps: Map<LinearName, Float64Array>[]): Map<LinearName, Float32Array>[] =>
    maps.map((mp) => {
      const out = new Map<LinearName, Float32Array>();
      for (const [n, v] of mp) out.set(n, Float32Array.from(v, (e) => e / Math.max(tokens, 1)));
      return out;
    });
  const concat = (parts: Float32Array[]): Float32Array => {
    const out = new Float32Array(parts.reduce((a, p) => a + p.length, 0));
    let at = 0;
    for (const p of parts) {
      out.set(p, at);
      at += p.length;
    }
    return out;
  };
  const kept = keptParts.map((mp) => new Map([...mp].map(([n, v]) => [n, { g: concat(v.g), x: concat(v.x) }])));
  return { blocks: perToken(acc), outputs: perToken(accOut), kept, keptTokens, windows: picked.length, tokens };
}
