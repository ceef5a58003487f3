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
 * The gradient comes from tfjs autodiff over a plain differentiable LLaMA forward written here
 * (explicit projections, RoPE as a signed-permutation matMul) rather than the runtime's folded fast path, whose fused
 * per-head projections never materialise a linear's output. The test checks that both forwards
 * give the same log-probabilities. All blocks are resident during this pass: fine for the models
 * searched here; a 70B model would need a block-checkpointed backward, which is not written.
 */
import * as tf from '@tensorflow/tfjs';
import { OpenedModel } from '../model/resolve';
import { disposeWindowTables, makeWindowTables, rmsNorm, rotaryPartner } from '../model/runtime';
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

interface GradBlock {
  attnNorm: tf.Tensor1D;
  ffnNorm: tf.Tensor1D;
  /** Transposed weights [in, out] so every projection is x · W^T as a plain matMul. */
  wT: Record<LinearName, tf.Tensor2D>;
  /** Output biases [1, out] of the linears that have one (config.biases). */
  bias: Partial<Record<LinearName, tf.Tensor2D>>;
}

/**
 * Position tables for the differentiable forward: cos/sin [T, hd] and the signed permutation
 * [hd, hd] that moves each rotary partner into place (a matMul, because wasm has no kernel for
 * gather's gradient).
 */
interface RopeTables {
  cos: tf.Tensor2D;
  sin: tf.Tensor2D;
  partners: tf.Tensor2D;
  causal: tf.Tensor2D;
}

function ropeTables(cfg: LlamaConfig, T: number): RopeTables {
  const t = makeWindowTables(cfg, T);
  const hd = cfg.headDim;
  const partners = new Float32Array(hd * hd);
  for (let c = 0; c < hd; c++) {
    const [p, sign] = rotaryPartner(cfg.ropeLayout, hd, c);
    partners[p * hd + c] = sign; // (x · P)[c] = sign * x[p]
  }
  const out = {
    cos: tf.clone(t.cos),
    sin: tf.clone(t.sin),
    causal: tf.clone(t.causal),
    partners: tf.tensor2d(partners, [hd, hd]),
  };
  disposeWindowTables(t);
  return out;
}

function rotate(x: tf.Tensor2D, rope: RopeTables): tf.Tensor2D {
  return tf.add(tf.mul(x, rope.cos), tf.mul(tf.matMul(x, rope.partners), rope.sin)) as tf.Tensor2D;
}

/**
 * Log-softmax of the next-token logits [T - 1, vocab] of one window, with `deltas[b][name]`
 * [T, out] added to each linear's output (zeros: their gradient is dLoss/dy) and each linear's
 * input reported to `onInput` once per input group.
 */
function windowLogSoftmax(
  cfg: LlamaConfig,
  m: GradModel,
  rope: RopeTables,
  tokens: Int32Array,
  deltas: Record<LinearName, tf.Tensor2D>[],
  onInput: (block: number, names: readonly LinearName[], x: tf.Tensor2D) => void,
): tf.Tensor2D {
  const T = tokens.length;
  const hd = cfg.headDim;
  const group = cfg.nHeads / cfg.nKvHeads;
  const scale = 1 / Math.sqrt(hd);
  let x = tf.gather(m.emb, tf.tensor1d(tokens, 'int32')) as tf.Tensor2D;
  m.blocks.forEach((b, i) => {
    const d = deltas[i];
    const proj = (input: tf.Tensor2D, name: LinearName): tf.Tensor2D => {
      const y = tf.add(tf.matMul(input, b.wT[name]), d[name]) as tf.Tensor2D;
      const bias = b.bias[name];
      return bias ? (tf.add(y, bias) as tf.Tensor2D) : y;
    };
    const xn = rmsNorm(x, b.attnNorm, cfg.normEps);
    onInput(i, ['q', 'k', 'v'], xn);
    const q = proj(xn, 'q');
    const k = proj(xn, 'k');
    const v = proj(xn, 'v');
    const heads: tf.Tensor2D[] = [];
    for (let h = 0; h < cfg.nHeads; h++) {
      const kv = Math.floor(h / group);
      const qh = rotate(tf.slice(q, [0, h * hd], [T, hd]), rope);
      const kh = rotate(tf.slice(k, [0, kv * hd], [T, hd]), rope);
      const vh = tf.slice(v, [0, kv * hd], [T, hd]);
      const att = tf.softmax(tf.add(tf.mul(tf.matMul(qh, kh, false, true), scale), rope.causal)) as tf.Tensor2D;
      heads.push(tf.matMul(att, vh));
    }
    const oIn = tf.concat(heads, 1) as tf.Tensor2D;
    onInput(i, ['o'], oIn);
    const x1 = tf.add(x, proj(oIn, 'o')) as tf.Tensor2D;
    const xn2 = rmsNorm(x1, b.ffnNorm, cfg.normEps);
    onInput(i, ['gate', 'up'], xn2);
    const gate = proj(xn2, 'gate');
    const hidden = tf.mul(tf.mul(gate, tf.sigmoid(gate)), proj(xn2, 'up')) as tf.Tensor2D;
    onInput(i, ['down'], hidden);
    x = tf.add(x1, proj(hidden, 'down')) as tf.Tensor2D;
  });
  return tf.logSoftmax(tf.matMul(rmsNorm(tf.slice(x, [0, 0], [T - 1, cfg.dim]), m.finalNorm, cfg.normEps), m.clsT)) as tf.Tensor2D;
}

interface GradModel {
  emb: tf.Tensor2D;
  finalNorm: tf.Tensor1D;
  clsT: tf.Tensor2D;
  blocks: GradBlock[];
}

/** The model's weights as the differentiable forward wants them (all blocks on the device). */
function gradModel(model: OpenedModel): GradModel {
  const src = model.source;
  const cfg = src.config;
  const emb = src.readEmbedding();
  const cls = cfg.tiedEmbeddings ? emb : src.readClassifier();
  const blocks: GradBlock[] = [];
  for (let i = 0; i < cfg.nLayers; i++) {
    const w = src.readBlock(i);
    const wT = {} as Record<LinearName, tf.Tensor2D>;
    for (const n of linearNames(cfg)) {
      const [o, inF] = linearShape(cfg, n);
      wT[n] = tf.tidy(() => tf.transpose(tf.tensor2d(w.linears[n], [o, inF])));
    }
    const bias: GradBlock['bias'] = {};
    for (const [n, v] of Object.entries(w.biases ?? {}) as [LinearName, Float32Array][]) bias[n] = tf.tensor2d(v, [1, v.length]);
    blocks.push({ attnNorm: tf.tensor1d(w.norms.attnNorm), ffnNorm: tf.tensor1d(w.norms.ffnNorm), wT, bias });
  }
  return {
    emb: tf.tensor2d(emb, [cfg.vocabSize, cfg.dim]),
    finalNorm: tf.tensor1d(src.readFinalNorm()),
    clsT: tf.tidy(() => tf.transpose(tf.tensor2d(cls, [cfg.vocabSize, cfg.dim]))),
    blocks,
  };
}

function disposeGradModel(m: GradModel): void {
  tf.dispose([m.emb, m.finalNorm, m.clsT]);
  for (const b of m.blocks) tf.dispose([b.attnNorm, b.ffnNorm, ...Object.values(b.wT), ...Object.values(b.bias)]);
}

function zeroDeltas(cfg: LlamaConfig, T: number): Record<LinearName, tf.Tensor2D> {
  const d = {} as Record<LinearName, tf.Tensor2D>;
  for (const n of linearNames(cfg)) d[n] = tf.zeros([T, linearShape(cfg, n)[0]]);
  return d;
}

/** log p(tokens[t+1] | tokens[..t]) from the differentiable forward: the tests compare it with the runtime. */
export function gradForwardLogProbs(model: OpenedModel, tokens: Int32Array): Float32Array {
  const cfg = model.source.config;
  const m = gradModel(model);
  const rope = ropeTables(cfg, tokens.length);
  const deltas = m.blocks.map(() => zeroDeltas(cfg, tokens.length));
  try {
    const picked = tf.tidy(() => {
      const logp = windowLogSoftmax(cfg, m, rope, tokens, deltas, () => undefined);
      return tf.sum(tf.mul(logp, tf.oneHot(tf.tensor1d(tokens.subarray(1), 'int32'), cfg.vocabSize)), 1);
    });
    const out = picked.dataSync() as Float32Array;
    picked.dispose();
    return out;
  } finally {
    disposeGradModel(m);
    tf.dispose(Object.values(rope));
    deltas.forEach((d) => tf.dispose(Object.values(d)));
  }
}

/**
 * Next tokens drawn from the dense model's own predictions: with them the squared gradients
 * estimate the true Fisher (the curvature of KL(dense || pruned), whose gradient at the dense
 * model is zero, so the quadratic term is the leading one), not the empirical Fisher of the
 * text's actual tokens.
 */
function sampleTargets(cfg: LlamaConfig, m: GradModel, rope: RopeTables, tokens: Int32Array, rng: Rng): Int32Array {
  const deltas = m.blocks.map(() => zeroDeltas(cfg, tokens.length));
  const probs = tf.tidy(() => tf.exp(windowLogSoftmax(cfg, m, rope, tokens, deltas, () => undefined)));
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
  // the first `windows` of the statistics' own calibration windows (the sampler's order is fixed by the seed)
  const picked = drawCalibration(model, cal).windows.slice(0, windows);
  const acc: Map<LinearName, Float64Array>[] = [];
  const accOut: Map<LinearName, Float64Array>[] = [];
  for (let b = 0; b < cfg.nLayers; b++) {
    const mp = new Map<LinearName, Float64Array>();
    const mo = new Map<LinearName, Float64Array>();
    for (const n of linearNames(cfg)) {
      const [o, i] = linearShape(cfg, n);
      mp.set(n, new Float64Array(o * i));
      mo.set(n, new Float64Array(o));
    }
    acc.push(mp);
    accOut.push(mo);
    keptParts.push(new Map(linearNames(cfg).map((n) => [n, { g: [], x: [] }])));
  }
  const m = gradModel(model);
  const rope = ropeTables(cfg, cal.seqlen);
  let tokens = 0;
  try {
    for (const w of picked) {
      const targets = labels === 'data' ? w.subarray(1) : sampleTargets(cfg, m, rope, w, rng);
      const deltas = m.blocks.map(() => zeroDeltas(cfg, w.length));
      const flat = deltas.flatMap((d) => linearNames(cfg).map((n) => d[n]));
      const inputs: Map<LinearName, tf.Tensor2D>[] = m.blocks.map(() => new Map());
      const { grads } = tf.tidy(() => {
        const lossOf = (...ds: tf.Tensor[]): tf.Scalar => {
          const rebuilt = m.blocks.map((_, b) => {
            const d = {} as Record<LinearName, tf.Tensor2D>;
            linearNames(cfg).forEach((n, k) => (d[n] = ds[b * linearNames(cfg).length + k] as tf.Tensor2D));
            return d;
          });
          const logp = windowLogSoftmax(cfg, m, rope, w, rebuilt, (b, names, x) => {
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
        linearNames(cfg).forEach((n, k) => {
          const g = grads[b * linearNames(cfg).length + k];
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
    tf.dispose(Object.values(rope));
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
