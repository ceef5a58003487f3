import * as tf from '@tensorflow/tfjs';
import { ropeAngle, ropeInverseFrequencies } from './rope';
import { BlockInput, blockOf, groupOf, hasBias } from './block';
import { BlockWeights, LinearName, LlamaConfig, NormName, WeightSource, linearShape } from './types';

/**
 * The LLaMA forward pass in tfjs, written for the wasm backend's fast path (docs/performance.md):
 * only plain 2-D matMuls against pre-transposed, reused weight tensors; attention is split per
 * head with the head's weight slices prepared once, so no slice, transpose or batched matMul
 * runs per token window. RoPE is folded into two projections per head (x·A ⊙ cos + x·B ⊙ sin,
 * where B holds A's columns paired and signed), and the 1/sqrt(headDim) scale into q.
 */

/** Row-major transpose of an [rows, cols] array (JS loop; cheaper than a tfjs transpose on wasm). */
export function transpose(a: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(a.length);
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(rows, r0 + B);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(cols, c0 + B);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let c = c0; c < c1; c++) out[c * rows + r] = a[base + c];
      }
    }
  }
  return out;
}

/** For rotary index a within a head: its partner index and the sign of the partner's term. */
export function rotaryPartner(layout: LlamaConfig['ropeLayout'], headDim: number, a: number): [number, number] {
  if (layout === 'adjacent') return a % 2 === 0 ? [a + 1, -1] : [a - 1, 1];
  const half = headDim / 2;
  return a < half ? [a + half, -1] : [a - half, 1];
}

/** Frequency index of rotary position a within a head. */
function rotaryFreqIndex(layout: LlamaConfig['ropeLayout'], headDim: number, a: number): number {
  return layout === 'adjacent' ? a >> 1 : a % (headDim / 2);
}

/** Device tensors for one decoder block. */
export interface BlockTensors {
  norms: Record<NormName, tf.Tensor1D>;
  qA: tf.Tensor2D[]; // per q head [dim, hd], scaled by 1/sqrt(hd)
  qB: tf.Tensor2D[]; // per q head, rotary partner columns
  kA: tf.Tensor2D[]; // per kv head [hd, dim]: k^T = kA · x^T
  kB: tf.Tensor2D[];
  vT: tf.Tensor2D[]; // per kv head [dim, hd]
  oT: tf.Tensor2D[]; // per q head [hd, dim]
  gateT: tf.Tensor2D; // [dim, hidden]
  upT: tf.Tensor2D;
  downT: tf.Tensor2D; // [hidden, dim]
  /**
   * Output biases, shaped to add where each projection is computed: q per head as [1, hd] in
   * the qA and qB orientations (A and B: the rotary fold applies to the bias like to x·W), k per
   * kv head as [hd, 1] (kA, kB), v per kv head [1, hd], o/gate/up/down [1, out].
   */
  bias: {
    qA?: tf.Tensor2D[];
    qB?: tf.Tensor2D[];
    kA?: tf.Tensor2D[];
    kB?: tf.Tensor2D[];
    v?: tf.Tensor2D[];
    o?: tf.Tensor2D;
    gate?: tf.Tensor2D;
    up?: tf.Tensor2D;
    down?: tf.Tensor2D;
  };
}

export function disposeBlock(b: BlockTensors): void {
  tf.dispose([...Object.values(b.norms), ...b.qA, ...b.qB, ...b.kA, ...b.kB, ...b.vT, ...b.oT, b.gateT, b.upT, b.downT]);
  tf.dispose(Object.values(b.bias).flat());
}

/** A bias of `name`, checked against the config: present exactly for the linears in cfg.biases. */
function biasOf(cfg: LlamaConfig, w: BlockWeights, name: LinearName): Float32Array | undefined {
  const expected = hasBias(cfg, name);
  const b = w.biases?.[name];
  if (expected !== (b !== undefined)) throw new Error(`block weights ${expected ? 'lack' : 'have'} a ${name} bias the config ${expected ? 'declares' : 'does not declare'}`);
  if (b && b.length !== linearShape(cfg, name)[0]) throw new Error(`${name} bias has ${b.length} values, expected ${linearShape(cfg, name)[0]}`);
  return b;
}

/** Per head slices of a bias in the rotary A/B orientation: A[c] = b[c] * scale, B[c] = sign * b[partner(c)] * scale. */
function rotaryBias(cfg: LlamaConfig, bias: Float32Array, heads: number, scale: number): { a: Float32Array[]; b: Float32Array[] } {
  const hd = cfg.headDim;
  const a: Float32Array[] = [];
  const b: Float32Array[] = [];
  for (let h = 0; h < heads; h++) {
    const ah = new Float32Array(hd);
    const bh = new Float32Array(hd);
    for (let c = 0; c < hd; c++) {
      const [p, sign] = rotaryPartner(cfg.ropeLayout, hd, c);
      ah[c] = bias[h * hd + c] * scale;
      bh[c] = sign * bias[h * hd + p] * scale;
    }
    a.push(ah);
    b.push(bh);
  }
  return { a, b };
}

/** Prepare a block's device tensors from [out, in] weights. */
export function makeBlockTensors(cfg: LlamaConfig, w: BlockWeights): BlockTensors {
  const { dim, headDim: hd, nHeads, nKvHeads } = cfg;
  const scale = 1 / Math.sqrt(hd);
  const qT = transpose(w.linears.q, nHeads * hd, dim); // [dim, nHeads*hd]
  const qA: tf.Tensor2D[] = [];
  const qB: tf.Tensor2D[] = [];
  for (let h = 0; h < nHeads; h++) {
    const a = new Float32Array(dim * hd);
    const b = new Float32Array(dim * hd);
    for (let r = 0; r < dim; r++) {
      const src = r * nHeads * hd + h * hd;
      for (let c = 0; c < hd; c++) {
        const [p, sign] = rotaryPartner(cfg.ropeLayout, hd, c);
        a[r * hd + c] = qT[src + c] * scale;
        b[r * hd + c] = sign * qT[src + p] * scale;
      }
    }
    qA.push(tf.tensor2d(a, [dim, hd]));
    qB.push(tf.tensor2d(b, [dim, hd]));
  }
  const kA: tf.Tensor2D[] = [];
  const kB: tf.Tensor2D[] = [];
  const vT: tf.Tensor2D[] = [];
  const vTall = transpose(w.linears.v, nKvHeads * hd, dim);
  for (let h = 0; h < nKvHeads; h++) {
    const a = w.linears.k.slice(h * hd * dim, (h + 1) * hd * dim);
    const b = new Float32Array(hd * dim);
    for (let c = 0; c < hd; c++) {
      const [p, sign] = rotaryPartner(cfg.ropeLayout, hd, c);
      for (let j = 0; j < dim; j++) b[c * dim + j] = sign * a[p * dim + j];
    }
    kA.push(tf.tensor2d(a, [hd, dim]));
    kB.push(tf.tensor2d(b, [hd, dim]));
    const v = new Float32Array(dim * hd);
    for (let r = 0; r < dim; r++) for (let c = 0; c < hd; c++) v[r * hd + c] = vTall[r * nKvHeads * hd + h * hd + c];
    vT.push(tf.tensor2d(v, [dim, hd]));
  }
  const oTall = transpose(w.linears.o, dim, nHeads * hd); // [nHeads*hd, dim]: head h = rows h*hd..
  const oT: tf.Tensor2D[] = [];
  for (let h = 0; h < nHeads; h++) oT.push(tf.tensor2d(oTall.slice(h * hd * dim, (h + 1) * hd * dim), [hd, dim]));
  const t2 = (name: LinearName): tf.Tensor2D => {
    const [o, i] = linearShape(cfg, name);
    return tf.tensor2d(transpose(w.linears[name], o, i), [i, o]);
  };
  const bias: BlockTensors['bias'] = {};
  const bq = biasOf(cfg, w, 'q');
  if (bq) {
    const r = rotaryBias(cfg, bq, nHeads, scale);
    bias.qA = r.a.map((x) => tf.tensor2d(x, [1, hd]));
    bias.qB = r.b.map((x) => tf.tensor2d(x, [1, hd]));
  }
  const bk = biasOf(cfg, w, 'k');
  if (bk) {
    const r = rotaryBias(cfg, bk, nKvHeads, 1);
    bias.kA = r.a.map((x) => tf.tensor2d(x, [hd, 1]));
    bias.kB = r.b.map((x) => tf.tensor2d(x, [hd, 1]));
  }
  const bv = biasOf(cfg, w, 'v');
  if (bv) bias.v = Array.from({ length: nKvHeads }, (_, h) => tf.tensor2d(bv.slice(h * hd, (h + 1) * hd), [1, hd]));
  for (const name of ['o', 'gate', 'up', 'down'] as const) {
    const b = biasOf(cfg, w, name);
    if (b) bias[name] = tf.tensor2d(b, [1, b.length]);
  }
  return {
    bias,
    norms: Object.fromEntries(blockOf(cfg).norms.map((n) => [n.name, tf.tensor1d(w.norms[n.name])])) as Record<NormName, tf.Tensor1D>,
    qA,
    qB,
    kA,
    kB,
    vT,
    oT,
    gateT: t2('gate'),
    upT: t2('up'),
    downT: t2('down'),
  };
}

/** Position-dependent tables for one window length: rotary cos/sin in both orientations, causal mask. */
export interface WindowTables {
  length: number;
  cos: tf.Tensor2D; // [T, hd]
  sin: tf.Tensor2D;
  cosT: tf.Tensor2D; // [hd, T]
  sinT: tf.Tensor2D;
  causal: tf.Tensor2D; // [T, T]: 0 where a query may see a key (causal, within the sliding window), -1e9 elsewhere
  /**
   * Block-causal attention for long windows: queries [0, h) only ever see keys [0, h), so they are
   * scored against that prefix alone, saving a quarter of the T x T score work (the biggest cost
   * of the forward pass for small heads). masks: [h, h] and [T - h, T].
   */
  split: { h: number; mask0: tf.Tensor2D; mask1: tf.Tensor2D } | null;
}

/** Windows at least this long use the two-block causal attention. */
const SPLIT_MIN_LENGTH = 128;

function causalMask(rows: number, cols: number, offset: number, window?: number): Float32Array {
  // row r (absolute position q = r + offset) sees columns c <= q, and with a sliding window only
  // c > q - window (transformers' sliding_window_overlay: kv_idx > q_idx - sliding_window)
  const m = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const q = r + offset;
    for (let c = 0; c < cols; c++) if (c > q || (window !== undefined && c <= q - window)) m[r * cols + c] = -1e9;
  }
  return m;
}

/** Rotary cos/sin rows [positions.length, hd] for the given absolute positions. */
function rotaryTables(cfg: LlamaConfig, positions: ArrayLike<number>): { cos: Float32Array; sin: Float32Array } {
  const hd = cfg.headDim;
  const T = positions.length;
  const cos = new Float32Array(T * hd);
  const sin = new Float32Array(T * hd);
  const inv = ropeInverseFrequencies(cfg);
  for (let t = 0; t < T; t++) {
    for (let a = 0; a < hd; a++) {
      // HF layout: float32 angles as transformers computes them; llama2.c: float64 (see rope.ts)
      const angle = ropeAngle(cfg.ropeLayout, positions[t], inv[rotaryFreqIndex(cfg.ropeLayout, hd, a)]);
      cos[t * hd + a] = Math.cos(angle);
      sin[t * hd + a] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/**
 * Tables for a packed sequence: several token sequences laid side by side in one window, each
 * row with its own rotary position and an additive attention mask [T, T] (0 = visible, -1e9 =
 * hidden) saying which rows it sees. Sequences that share a prefix (the choices of a
 * multiple-choice item) are scored in one forward that computes the prefix once.
 */
export function makePackedTables(cfg: LlamaConfig, positions: ArrayLike<number>, mask: Float32Array): WindowTables {
  const T = positions.length;
  if (mask.length !== T * T) throw new Error(`packed mask has ${mask.length} entries for ${T} rows`);
  let visible = mask;
  const window = cfg.slidingWindow;
  if (window !== undefined) {
    // a sliding window hides keys more than `window` positions back, within each packed sequence too
    visible = mask.slice();
    for (let r = 0; r < T; r++) for (let c = 0; c < T; c++) if (positions[c] <= positions[r] - window) visible[r * T + c] = -1e9;
  }
  return tablesFrom(cfg, positions, visible, null);
}

export function makeWindowTables(cfg: LlamaConfig, T: number): WindowTables {
  const window = cfg.slidingWindow;
  const h = T >> 1;
  const split =
    T >= SPLIT_MIN_LENGTH
      ? { h, mask0: tf.tensor2d(causalMask(h, h, 0, window), [h, h]), mask1: tf.tensor2d(causalMask(T - h, T, h, window), [T - h, T]) }
      : null;
  return tablesFrom(cfg, Array.from({ length: T }, (_, t) => t), causalMask(T, T, 0, window), split);
}

/** Device tables for rows at `positions` with the additive attention mask [T, T]. */
function tablesFrom(cfg: LlamaConfig, positions: ArrayLike<number>, mask: Float32Array, split: WindowTables['split']): WindowTables {
  const T = positions.length;
  const hd = cfg.headDim;
  const { cos, sin } = rotaryTables(cfg, positions);
  return {
    split,
    length: T,
    cos: tf.tensor2d(cos, [T, hd]),
    sin: tf.tensor2d(sin, [T, hd]),
    cosT: tf.tensor2d(transpose(cos, T, hd), [hd, T]),
    sinT: tf.tensor2d(transpose(sin, T, hd), [hd, T]),
    causal: tf.tensor2d(mask, [T, T]),
  };
}

export function disposeWindowTables(t: WindowTables): void {
  tf.dispose([t.cos, t.sin, t.cosT, t.sinT, t.causal]);
  if (t.split) tf.dispose([t.split.mask0, t.split.mask1]);
}

/** Causal attention of one head: softmax(q kT + mask) v, in one block or in two (see WindowTables.split). */
function attendHead(
  q: tf.Tensor2D,
  kv: { kT: tf.Tensor2D; v: tf.Tensor2D; kT0: tf.Tensor2D | null; v0: tf.Tensor2D | null },
  tables: WindowTables,
): tf.Tensor2D {
  const sp = tables.split;
  if (!sp || !kv.kT0 || !kv.v0) return tf.matMul(tf.softmax(tf.add(tf.matMul(q, kv.kT), tables.causal)) as tf.Tensor2D, kv.v);
  const T = tables.length;
  const hd = q.shape[1];
  const q0 = tf.slice(q, [0, 0], [sp.h, hd]);
  const q1 = tf.slice(q, [sp.h, 0], [T - sp.h, hd]);
  const o0 = tf.matMul(tf.softmax(tf.add(tf.matMul(q0, kv.kT0), sp.mask0)) as tf.Tensor2D, kv.v0);
  const o1 = tf.matMul(tf.softmax(tf.add(tf.matMul(q1, kv.kT), sp.mask1)) as tf.Tensor2D, kv.v);
  return tf.concat([o0, o1], 0) as tf.Tensor2D;
}

/**
 * Called with the input of each group of linears that share an input (block.ts inputGroups),
 * inside the block's forward: ['q','k','v'] (normed x), ['o'] (concatenated head outputs),
 * ['gate','up'], ['down']. The tensor is disposed after the call returns; copy what you need.
 */
export type CaptureFn = (names: readonly LinearName[], input: tf.Tensor2D) => void;

export function rmsNorm(x: tf.Tensor2D, w: tf.Tensor1D, eps: number): tf.Tensor2D {
  // a tidy of its own: the [T, dim] square and product are freed here, not at the end of the block
  return tf.tidy(() => {
    const ms = tf.mean(tf.square(x), -1, true);
    return tf.mul(tf.mul(x, tf.rsqrt(tf.add(ms, eps))), w) as tf.Tensor2D;
  });
}

/**
 * Tensors [T, out] added to linears' outputs y = x·W^T + b, for the differentiable pass: the
 * Fisher pass (lib/search/fisher.ts) adds zeros and takes the loss's gradient with respect to
 * them, which is dL/dy. The folded q/k projections rotate inside their matMuls, so a q or k
 * delta is rotated here the same way, with `partners` (rotaryPartnerMatrix) as a matMul because
 * wasm has no kernel for gather's gradient; q's is also scaled by 1/sqrt(headDim) like qA/qB.
 */
export interface OutputDeltas {
  delta: Partial<Record<LinearName, tf.Tensor2D>>;
  partners: tf.Tensor2D;
}

/** [hd, hd] signed permutation P with (z·P)[c] = sign(c) * z[partner(c)]: RoPE is z ⊙ cos + (z·P) ⊙ sin. */
export function rotaryPartnerMatrix(cfg: LlamaConfig): tf.Tensor2D {
  const hd = cfg.headDim;
  const p = new Float32Array(hd * hd);
  for (let c = 0; c < hd; c++) {
    const [partner, sign] = rotaryPartner(cfg.ropeLayout, hd, c);
    p[partner * hd + c] = sign;
  }
  return tf.tensor2d(p, [hd, hd]);
}

/**
 * One decoder block over one window x [T, dim] → [T, dim]: THE forward definition of the block.
 * Evaluation, generation and the pruning pipeline run it as it is; the Fisher pass runs it
 * under tfjs autodiff with `deltas` on the linears' outputs. One definition rather than a
 * second, plainer differentiable copy: the two cannot drift apart, and the fast path pays
 * nothing for the hooks (a skipped branch per linear when `deltas` is absent).
 */
export function forwardBlock(
  cfg: LlamaConfig,
  b: BlockTensors,
  tables: WindowTables,
  x: tf.Tensor2D,
  capture?: CaptureFn,
  deltas?: OutputDeltas,
): tf.Tensor2D {
  return tf.tidy(() => {
    const group = cfg.nHeads / cfg.nKvHeads;
    const hd = cfg.headDim;
    const readers = (input: BlockInput): readonly LinearName[] => groupOf(cfg, input);
    const xn = rmsNorm(x, b.norms.attnNorm, cfg.normEps);
    if (capture) capture(readers('attn-in'), xn);
    const xT = tf.transpose(xn) as tf.Tensor2D; // once per block, shared by all k heads
    const sp = tables.split;
    const kvs: { kT: tf.Tensor2D; v: tf.Tensor2D; kT0: tf.Tensor2D | null; v0: tf.Tensor2D | null }[] = [];
    const bias = b.bias;
    const plus = (y: tf.Tensor2D, add: tf.Tensor2D | undefined): tf.Tensor2D => (add ? tf.add(y, add) : y);
    const d = deltas?.delta ?? {};
    const headDelta = (name: LinearName, h: number): tf.Tensor2D | undefined => {
      const t = d[name];
      return t && (tf.slice(t, [0, h * hd], [t.shape[0], hd]) as tf.Tensor2D);
    };
    const rotated = (z: tf.Tensor2D): tf.Tensor2D =>
      tf.add(tf.mul(z, tables.cos), tf.mul(tf.matMul(z, deltas!.partners), tables.sin)) as tf.Tensor2D;
    for (let h = 0; h < cfg.nKvHeads; h++) {
      // a tidy per kv head: only its k^T and v stay until the attention, not the projections' parts
      const [kT, v] = tf.tidy(() => {
        let kT = tf.add(
          tf.mul(plus(tf.matMul(b.kA[h], xT), bias.kA?.[h]), tables.cosT),
          tf.mul(plus(tf.matMul(b.kB[h], xT), bias.kB?.[h]), tables.sinT),
        ) as tf.Tensor2D;
        const dk = headDelta('k', h);
        if (dk) kT = tf.add(kT, tf.transpose(rotated(dk))) as tf.Tensor2D;
        return [kT, plus(plus(tf.matMul(xn, b.vT[h]), bias.v?.[h]), headDelta('v', h))];
      }) as [tf.Tensor2D, tf.Tensor2D];
      kvs.push({
        kT,
        v,
        kT0: sp ? (tf.slice(kT, [0, 0], [hd, sp.h]) as tf.Tensor2D) : null,
        v0: sp ? (tf.slice(v, [0, 0], [sp.h, hd]) as tf.Tensor2D) : null,
      });
    }
    const heads: tf.Tensor2D[] = [];
    for (let h = 0; h < cfg.nHeads; h++) {
      // one tidy per head: its [T, T] scores are freed before the next head's, so the attention
      // intermediates on the device are one head's, not nHeads' (2048-token windows at 32 heads)
      heads.push(
        tf.tidy(() => {
          let q = tf.add(
            tf.mul(plus(tf.matMul(xn, b.qA[h]), bias.qA?.[h]), tables.cos),
            tf.mul(plus(tf.matMul(xn, b.qB[h]), bias.qB?.[h]), tables.sin),
          ) as tf.Tensor2D;
          const dq = headDelta('q', h);
          if (dq) q = tf.add(q, tf.mul(rotated(dq), 1 / Math.sqrt(hd))) as tf.Tensor2D;
          return attendHead(q, kvs[Math.floor(h / group)], tables);
        }),
      );
    }
    if (capture) capture(readers('attn-out'), tf.concat(heads, 1) as tf.Tensor2D);
    // the o projection summed head by head in order (what addN computes), holding one [T, dim]
    // partial product at a time instead of nHeads of them
    let projected = tf.matMul(heads[0], b.oT[0]) as tf.Tensor2D;
    for (let h = 1; h < cfg.nHeads; h++) {
      const term = tf.matMul(heads[h], b.oT[h]);
      const sum = tf.add(projected, term) as tf.Tensor2D;
      tf.dispose([projected, term]);
      projected = sum;
    }
    const attnOut = plus(plus(projected, bias.o), d.o);
    const x1 = tf.add(x, attnOut) as tf.Tensor2D;
    const xn2 = rmsNorm(x1, b.norms.ffnNorm, cfg.normEps);
    if (capture) capture(readers('mlp-in'), xn2);
    // a tidy for the MLP's [T, hidden] gate, sigmoid, product and up: only their result stays
    const hidden = tf.tidy(() => {
      const gate = plus(plus(tf.matMul(xn2, b.gateT), bias.gate), d.gate);
      return tf.mul(tf.mul(gate, tf.sigmoid(gate)), plus(plus(tf.matMul(xn2, b.upT), bias.up), d.up)) as tf.Tensor2D;
    });
    if (capture) capture(readers('mlp-hidden'), hidden);
    return tf.add(x1, plus(plus(tf.matMul(hidden, b.downT), bias.down), d.down)) as tf.Tensor2D;
  });
}

/** Next-token logits [rows, vocab] from final hidden states [rows, dim]: the final norm, then the classifier. */
export function headLogits(cfg: LlamaConfig, finalNorm: tf.Tensor1D, classifierT: tf.Tensor2D, x: tf.Tensor2D): tf.Tensor2D {
  return tf.matMul(rmsNorm(x, finalNorm, cfg.normEps), classifierT);
}

/** Largest number of logits materialised at once by the head (keeps big vocabularies in bounds). */
const HEAD_CHUNK_ELEMENTS = 1 << 22;

/**
 * Teacher-forced log-probabilities from a window's final hidden states x [T, dim]:
 * out[t] = log p(tokens[t+1] | tokens[0..t]), float32: the log of the softmax, or the stable
 * log-softmax for a chunk where a probability underflows (below). Shared by the
 * resident model and the streaming evaluator so both give the same numbers. `x` is not disposed.
 */
export function headLogProbs(cfg: LlamaConfig, finalNorm: tf.Tensor1D, classifierT: tf.Tensor2D, x: tf.Tensor2D, tokens: Int32Array): Float32Array {
  const T = tokens.length;
  const V = cfg.vocabSize;
  const out = new Float32Array(T - 1);
  const chunk = Math.max(1, Math.floor(HEAD_CHUNK_ELEMENTS / V));
  for (let start = 0; start < T - 1; start += chunk) {
    const len = Math.min(chunk, T - 1 - start);
    const idx = new Int32Array(len);
    for (let t = 0; t < len; t++) idx[t] = t * V + tokens[start + t + 1];
    const logits = tf.tidy(() => {
      const xs = tf.slice(x, [start, 0], [len, cfg.dim]);
      return headLogits(cfg, finalNorm, classifierT, xs);
    });
    // The native softmax kernel is several times faster than tfjs's composite logSoftmax;
    // log p is exact to float32 rounding unless p underflows, and then (p = 0) the chunk is
    // recomputed with the stable log-softmax.
    const flatIdx = tf.tensor1d(idx, 'int32');
    const picked = tf.tidy(() => tf.log(tf.gather(tf.reshape(tf.softmax(logits), [-1]), flatIdx)));
    let lp = picked.dataSync() as Float32Array;
    if (lp.some((v) => !Number.isFinite(v))) {
      const stable = tf.tidy(() => tf.gather(tf.reshape(tf.logSoftmax(logits), [-1]), flatIdx));
      lp = stable.dataSync() as Float32Array;
      stable.dispose();
    }
    out.set(lp, start);
    tf.dispose([logits, flatIdx, picked]);
  }
  return out;
}

/**
 * A model whose blocks are all resident on the device: used for evaluation and generation.
 * The pruning pipeline, which must hold one block at a time, uses forwardBlock directly.
 */
export class LlamaModel {
  private tables = new Map<number, WindowTables>();

  private constructor(
    readonly config: LlamaConfig,
    private embedding: tf.Tensor2D, // [vocab, dim]
    private finalNorm: tf.Tensor1D,
    private classifierT: tf.Tensor2D, // [dim, vocab]
    private blocks: BlockTensors[],
  ) {}

  static fromSource(src: WeightSource): LlamaModel {
    const cfg = src.config;
    const emb = src.readEmbedding();
    const cls = cfg.tiedEmbeddings ? emb : src.readClassifier();
    const blocks: BlockTensors[] = [];
    for (let i = 0; i < cfg.nLayers; i++) blocks.push(makeBlockTensors(cfg, src.readBlock(i)));
    return new LlamaModel(
      cfg,
      tf.tensor2d(emb, [cfg.vocabSize, cfg.dim]),
      tf.tensor1d(src.readFinalNorm()),
      tf.tensor2d(transpose(cls, cfg.vocabSize, cfg.dim), [cfg.dim, cfg.vocabSize]),
      blocks,
    );
  }

  /** Replace one block's weights (e.g. after pruning). */
  setBlock(index: number, w: BlockWeights): void {
    disposeBlock(this.blocks[index]);
    this.blocks[index] = makeBlockTensors(this.config, w);
  }

  /** Tables for window length T; a few lengths are cached (generation walks through many). */
  windowTables(T: number): WindowTables {
    let t = this.tables.get(T);
    if (!t) {
      t = makeWindowTables(this.config, T);
      this.tables.set(T, t);
      if (this.tables.size > 4) {
        const oldest = this.tables.keys().next().value as number;
        disposeWindowTables(this.tables.get(oldest)!);
        this.tables.delete(oldest);
      }
    }
    return t;
  }

  embed(tokens: Int32Array): tf.Tensor2D {
    return tf.tidy(() => tf.gather(this.embedding, tf.tensor1d(tokens, 'int32')) as tf.Tensor2D);
  }

  /**
   * Final hidden states [T, dim] of one window (or of a packed sequence with its own tables).
   * `hooks(block)` gives a block's capture and output deltas (the Fisher pass).
   */
  hidden(
    tokens: Int32Array,
    tables: WindowTables = this.windowTables(tokens.length),
    hooks?: (block: number) => { capture?: CaptureFn; deltas?: OutputDeltas },
  ): tf.Tensor2D {
    let x = this.embed(tokens);
    this.blocks.forEach((b, i) => {
      const h = hooks?.(i);
      const next = forwardBlock(this.config, b, tables, x, h?.capture, h?.deltas);
      x.dispose();
      x = next;
    });
    return x;
  }

  /** Next-token logits [rows, vocab] from final hidden states [rows, dim] (not disposed). */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    return headLogits(this.config, this.finalNorm, this.classifierT, x);
  }

  /**
   * Teacher-forced log-probabilities: out[t] = log p(tokens[t+1] | tokens[0..t]) for
   * t = 0..T-2, in float32: the log of the softmax, or the stable log-softmax for a chunk
   * where a probability underflows (below).
   */
  windowLogProbs(tokens: Int32Array): Float32Array {
    const x = this.hidden(tokens);
    const out = headLogProbs(this.config, this.finalNorm, this.classifierT, x, tokens);
    x.dispose();
    return out;
  }

  /** Logits [rows.length, vocab] (row-major) at the given positions of final hidden states `x`. */
  logitsAt(x: tf.Tensor2D, rows: Int32Array): Float32Array {
    const logits = tf.tidy(() => this.logits(tf.gather(x, tf.tensor1d(rows, 'int32')) as tf.Tensor2D));
    const out = logits.dataSync() as Float32Array;
    logits.dispose();
    return out;
  }

  /** Logits of the next token after the last position. */
  lastLogits(tokens: Int32Array): Float32Array {
    const x = this.hidden(tokens);
    const T = tokens.length;
    const logits = tf.tidy(() => this.logits(tf.slice(x, [T - 1, 0], [1, this.config.dim])));
    const out = logits.dataSync() as Float32Array;
    tf.dispose([x, logits]);
    return out;
  }

  /** Greedy decoding (no KV cache: the models this is used on are small). */
  generateGreedy(prompt: Int32Array, steps: number, stopAt: readonly number[] = []): Int32Array {
    const ids = Array.from(prompt);
    for (let s = 0; s < steps && ids.length < this.config.maxSeqLen; s++) {
      const logits = this.lastLogits(Int32Array.from(ids));
      let best = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i] > logits[best]) best = i;
      if (stopAt.includes(best)) break;
      ids.push(best);
    }
    return Int32Array.from(ids);
  }

  dispose(): void {
    for (const b of this.blocks) disposeBlock(b);
    for (const t of this.tables.values()) disposeWindowTables(t);
    this.tables.clear();
    tf.dispose([this.embedding, this.finalNorm, this.classifierT]);
  }
}
