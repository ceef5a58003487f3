/**
 * forwardBlock's attention runs head by head, freeing each head's [T, T] scores before the next
 * (and summing the o projection head by head), so the device memory of a window's forward does
 * not grow with heads x T^2. Checked here: the block's output against an independent float64
 * implementation of a LLaMA decoder block written from the transformers formulas (RMSNorm,
 * rotate_half / adjacent-pair RoPE, grouped-query causal softmax attention, SwiGLU), on both
 * attention paths (one block, and the two-block causal split from 128 tokens), with and without
 * biases; and the peak device bytes of one forward (tf.profile) below one head-set of scores and
 * below the planner's estimate (forwardActivationBytes).
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend';
import { disposeBlock, disposeWindowTables, forwardBlock, makeBlockTensors, makeWindowTables } from '../lib/model/runtime';
import { BlockWeights, LinearName, LlamaConfig, linearNames, linearShape } from '../lib/model/types';
import { forwardActivationBytes } from '../lib/plan/memory';
import { maxDeviation, mulberry32, randomArray, tinyConfig } from './helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

function randomBlock(cfg: LlamaConfig, seed: number): BlockWeights {
  const rng = mulberry32(seed);
  const linears = {} as Record<LinearName, Float32Array>;
  for (const l of linearNames(cfg)) {
    const [o, i] = linearShape(cfg, l);
    linears[l] = randomArray(o * i, rng, 1 / Math.sqrt(i));
  }
  const biases = cfg.biases ? Object.fromEntries(cfg.biases.map((l) => [l, randomArray(linearShape(cfg, l)[0], rng, 0.3)])) : undefined;
  return { norms: { attnNorm: randomArray(cfg.dim, rng, 0.2, 1), ffnNorm: randomArray(cfg.dim, rng, 0.2, 1) }, linears, ...(biases ? { biases } : {}) };
}

/** y = W x + b for every row of x [T, in], W [out, in], in float64. */
function linear(x: Float64Array, T: number, w: Float32Array, out: number, inp: number, b?: Float32Array): Float64Array {
  const y = new Float64Array(T * out);
  for (let t = 0; t < T; t++)
    for (let o = 0; o < out; o++) {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inp; i++) s += w[o * inp + i] * x[t * inp + i];
      y[t * out + o] = s;
    }
  return y;
}

function rmsNorm64(x: Float64Array, T: number, d: number, g: Float32Array, eps: number): Float64Array {
  const y = new Float64Array(T * d);
  for (let t = 0; t < T; t++) {
    let ms = 0;
    for (let i = 0; i < d; i++) ms += x[t * d + i] ** 2;
    const r = 1 / Math.sqrt(ms / d + eps);
    for (let i = 0; i < d; i++) y[t * d + i] = x[t * d + i] * r * g[i];
  }
  return y;
}

/** Rotate every head of x [T, heads * hd] in place by its position (HF rotate_half or llama2.c adjacent pairs). */
function rope64(x: Float64Array, T: number, heads: number, cfg: LlamaConfig): void {
  const hd = cfg.headDim;
  for (let t = 0; t < T; t++)
    for (let h = 0; h < heads; h++)
      for (let i = 0; i < hd / 2; i++) {
        const angle = t / Math.pow(cfg.ropeTheta, (2 * i) / hd);
        const [a, b] = cfg.ropeLayout === 'half' ? [i, i + hd / 2] : [2 * i, 2 * i + 1];
        const base = t * heads * hd + h * hd;
        const xa = x[base + a];
        const xb = x[base + b];
        x[base + a] = xa * Math.cos(angle) - xb * Math.sin(angle);
        x[base + b] = xb * Math.cos(angle) + xa * Math.sin(angle);
      }
}

/** One LLaMA decoder block over x [T, dim] in float64. */
function referenceBlock(cfg: LlamaConfig, w: BlockWeights, x32: Float32Array, T: number): Float64Array {
  const { dim, hiddenDim, nHeads, nKvHeads, headDim: hd } = cfg;
  const x = Float64Array.from(x32);
  const xn = rmsNorm64(x, T, dim, w.norms.attnNorm, cfg.normEps);
  const q = linear(xn, T, w.linears.q, nHeads * hd, dim, w.biases?.q);
  const k = linear(xn, T, w.linears.k, nKvHeads * hd, dim, w.biases?.k);
  const v = linear(xn, T, w.linears.v, nKvHeads * hd, dim, w.biases?.v);
  rope64(q, T, nHeads, cfg);
  rope64(k, T, nKvHeads, cfg);
  const att = new Float64Array(T * nHeads * hd);
  const scores = new Float64Array(T);
  for (let h = 0; h < nHeads; h++) {
    const kv = Math.floor(h / (nHeads / nKvHeads));
    for (let t = 0; t < T; t++) {
      let max = -Infinity;
      for (let s = 0; s <= t; s++) {
        let dot = 0;
        for (let c = 0; c < hd; c++) dot += q[t * nHeads * hd + h * hd + c] * k[s * nKvHeads * hd + kv * hd + c];
        scores[s] = dot / Math.sqrt(hd);
        max = Math.max(max, scores[s]);
      }
      let z = 0;
      for (let s = 0; s <= t; s++) z += (scores[s] = Math.exp(scores[s] - max));
      for (let s = 0; s <= t; s++)
        for (let c = 0; c < hd; c++) att[t * nHeads * hd + h * hd + c] += (scores[s] / z) * v[s * nKvHeads * hd + kv * hd + c];
    }
  }
  const o = linear(att, T, w.linears.o, dim, nHeads * hd);
  const x1 = x.map((xi, i) => xi + o[i]);
  const xn2 = rmsNorm64(x1, T, dim, w.norms.ffnNorm, cfg.normEps);
  const gate = linear(xn2, T, w.linears.gate, hiddenDim, dim);
  const up = linear(xn2, T, w.linears.up, hiddenDim, dim);
  const hidden = gate.map((g, i) => (g / (1 + Math.exp(-g))) * up[i]);
  const down = linear(hidden, T, w.linears.down, dim, hiddenDim);
  return x1.map((xi, i) => xi + down[i]);
}

/** The block's output on x, and the peak device bytes the forward added above what was allocated before it. */
async function runBlock(cfg: LlamaConfig, w: BlockWeights, x: Float32Array, T: number): Promise<{ y: Float32Array; peakBytes: number }> {
  const b = makeBlockTensors(cfg, w);
  const tables = makeWindowTables(cfg, T);
  const xt = tf.tensor2d(x, [T, cfg.dim]);
  try {
    const before = tf.memory().numBytes;
    let y: Float32Array = new Float32Array(0);
    // tf.profile's peakBytes is the largest total of live tensor bytes after any kernel
    const info = await tf.profile(() => {
      const out = forwardBlock(cfg, b, tables, xt);
      y = out.dataSync() as Float32Array;
      out.dispose();
    });
    expect(tf.memory().numBytes).toBe(before);
    return { y, peakBytes: info.peakBytes - before };
  } finally {
    xt.dispose();
    disposeBlock(b);
    disposeWindowTables(tables);
  }
}

describe('forwardBlock with bounded attention', () => {
  const cases: { name: string; cfg: LlamaConfig; T: number }[] = [
    { name: 'adjacent RoPE, GQA 8/2, 40 tokens (one-block attention)', cfg: tinyConfig({ dim: 64, hiddenDim: 96, nHeads: 8, nKvHeads: 2, headDim: 8, maxSeqLen: 256 }), T: 40 },
    {
      name: 'rotate_half RoPE, 8 heads, q/k/v biases, 160 tokens (two-block causal split)',
      cfg: tinyConfig({ dim: 64, hiddenDim: 96, nHeads: 8, nKvHeads: 8, headDim: 8, maxSeqLen: 256, ropeLayout: 'half', biases: ['q', 'k', 'v'] }),
      T: 160,
    },
  ];
  for (const { name, cfg, T } of cases) {
    test(`equals an independent float64 block: ${name}`, async () => {
      const w = randomBlock(cfg, 7);
      const x = randomArray(T * cfg.dim, mulberry32(11));
      const { y } = await runBlock(cfg, w, x, T);
      const ref = referenceBlock(cfg, w, x, T);
      const { worst, scale } = maxDeviation(y, ref);
      expect(scale).toBeGreaterThan(0.5);
      expect(worst / scale).toBeLessThan(2e-5);
    });
  }

  test('peak device bytes of a forward stay below one full set of per-head scores and below the planner estimate', async () => {
    // 16 heads of 4 over 256 tokens: all heads' scores at once would be 16 x 3/4 x 256^2 x 4 B = 3 MiB
    // (x3 with the mask and softmax copies); one head's 0.6 MiB
    const cfg = tinyConfig({ dim: 64, hiddenDim: 96, nHeads: 16, nKvHeads: 4, headDim: 4, maxSeqLen: 256 });
    const T = 256;
    const { peakBytes } = await runBlock(cfg, randomBlock(cfg, 3), randomArray(T * cfg.dim, mulberry32(5)), T);
    const allHeadsScores = cfg.nHeads * 0.75 * T * T * 4;
    expect(peakBytes).toBeGreaterThan(0);
    expect(peakBytes).toBeLessThan(allHeadsScores);
    expect(peakBytes).toBeLessThanOrEqual(forwardActivationBytes(cfg, T));
  });
});
