/**
 * The Fisher pass behind the 'fisher' proxies: its differentiable forward agrees with the
 * runtime's fast forward, its gradients agree with finite differences of the loss, the pass is
 * deterministic, and the proxies computed from it behave as their definitions say.
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend';
import { OpenedModel, openModel } from '../lib/model/resolve';
import { LlamaModel } from '../lib/model/runtime';
import { BlockWeights, WeightSource, linearShape } from '../lib/model/types';
import { halfToAdjacentOrder, permuteRows, writeHfModel } from '../lib/model/convert';
import { makeTmp, maxDeviation, rmTmp } from './helpers';
import { CalibrationSpec, drawCalibration } from '../lib/prune/pipeline';
import { emptyStats } from '../lib/prune/stats';
import { collectWeightFisher, gradForwardLogProbs } from '../lib/search/fisher';
import { fisherLoss, fisherOutputLoss, fisherRowLoss } from '../lib/search/proxies';

beforeAll(async () => {
  await initBackend('wasm');
});

function windowOf(model: OpenedModel, T: number): Int32Array {
  const ids = model.tokenizer.encode('Once upon a time, there was a little girl named Lily. She loved to play outside in the sunshine with her dog.', { bos: true });
  return Int32Array.from({ length: T }, (_, t) => ids[t % ids.length]);
}

describe.each(['stories260K', 'babyllama-char'])('%s', (name) => {
  let model: OpenedModel;
  beforeAll(() => {
    model = openModel(name);
  });
  afterAll(() => model.source.close());

  // one forward definition: the differentiable pass runs the runtime's forwardBlock with zero
  // deltas on the linears' outputs; only the head's log-softmax is computed differently
  test.each([96, 160])('the differentiable pass gives the runtime log-probabilities (1e-4), %i tokens', (T) => {
    const tokens = windowOf(model, T);
    const lm = LlamaModel.fromSource(model.source);
    const want = lm.windowLogProbs(tokens);
    lm.dispose();
    const got = gradForwardLogProbs(model, tokens);
    expect(got.length).toBe(want.length);
    let worst = 0;
    for (let t = 0; t < got.length; t++) worst = Math.max(worst, Math.abs(got[t] - want[t]));
    expect(worst).toBeLessThan(1e-4);
  });
});

describe('Fisher pass on stories260K', () => {
  let model: OpenedModel;
  const cal: CalibrationSpec = { dataset: 'tinystories', nsamples: 4, seqlen: 64, seed: 3 };
  beforeAll(() => {
    model = openModel('stories260K');
  });
  afterAll(() => model.source.close());

  // Every linear: the hooks add the delta where each linear's output is computed (q and k inside
  // the RoPE-folded projections), so a wrong rotation or scale there shows up in q/k only.
  test.each(['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const)('%s: gradients match central finite differences of the data loss', (name) => {
    const f = collectWeightFisher(model, cal, 1, 'data', 64);
    expect(f.keptTokens).toBe(63);
    const block = 1;
    const [rows, cols] = linearShape(model.source.config, name);
    const { g, x } = f.kept[block].get(name)!;
    // dL/dW = sum_t g_t x_t^T, checked along the direction D = G / max|G|: every row counts
    // (q/k rows of the fast-rotating RoPE pairs too), weighted by its gradient
    const G = new Float64Array(rows * cols);
    for (let t = 0; t < f.keptTokens; t++) for (let i = 0; i < rows; i++) for (let j = 0; j < cols; j++) G[i * cols + j] += g[t * rows + i] * x[t * cols + j];
    const top = G.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const predicted = G.reduce((a, v) => a + (v * v) / top, 0); // <G, D>
    const tokens = drawCalibration(model, cal).windows[0]; // the window the Fisher pass used
    const lossWith = (eps: number): number => {
      const src = perturbed(model.source, block, (w) => G.forEach((v, e) => (w.linears[name][e] += (eps * v) / top)));
      // the runtime's own evaluation (not the differentiable pass) gives the perturbed loss
      const lm = LlamaModel.fromSource(src);
      const lp = lm.windowLogProbs(tokens);
      lm.dispose();
      return -lp.reduce((a, v) => a + v, 0);
    };
    const eps = 1e-3;
    const fd = (lossWith(eps) - lossWith(-eps)) / (2 * eps);
    expect(predicted).toBeGreaterThan(0.05);
    expect(Math.abs(fd - predicted) / predicted).toBeLessThan(0.01);
  });

  test('the same model in the HF layout has the same Fisher, q/k rows permuted (windows of 160: the split attention)', () => {
    const tmp = makeTmp('crepe-fisher-');
    try {
      const dir = `${tmp}/hf`;
      writeHfModel(model.source, dir, { dtype: 'F32', tokenizer: model.tokenizerPath });
      const hf = openModel(dir);
      const long = { ...cal, seqlen: 160 };
      const a = collectWeightFisher(model, long, 1, 'data');
      const b = collectWeightFisher(hf, long, 1, 'data');
      hf.source.close();
      const cfg = model.source.config;
      for (const name of ['q', 'k', 'v', 'down'] as const) {
        const [, cols] = linearShape(cfg, name);
        const heads = name === 'q' ? cfg.nHeads : cfg.nKvHeads;
        const fa = a.blocks[2].get(name)!;
        const fb = name === 'q' || name === 'k' ? permuteRows(b.blocks[2].get(name)!, cols, halfToAdjacentOrder(heads, cfg.headDim)) : b.blocks[2].get(name)!;
        const { worst, scale } = maxDeviation(fb, fa);
        expect(scale).toBeGreaterThan(0);
        expect(worst / scale).toBeLessThan(1e-3);
      }
    } finally {
      rmTmp(tmp);
    }
  });

  test('deterministic, non-negative, and consistent between its three forms', () => {
    const a = collectWeightFisher(model, cal, 2);
    const b = collectWeightFisher(model, cal, 2);
    expect(a.tokens).toBe(126);
    for (const name of ['q', 'down'] as const) {
      expect(Buffer.from(a.blocks[2].get(name)!.buffer).equals(Buffer.from(b.blocks[2].get(name)!.buffer))).toBe(true);
      expect(a.blocks[2].get(name)!.every((v) => v >= 0)).toBe(true);
    }
    // hand-computed values of the three proxies on a 3 x 1 layer with two tokens
    const rows = 3;
    const weight = Float32Array.from([2, -1, 0.5]);
    const g = Float32Array.from([1, 0, 2, /* t1 */ 0, 3, 1]); // [2 tokens, 3 rows]
    const xIn = Float32Array.from([1, 2]); // [2 tokens, 1 col]
    const fisher = new Float32Array(rows);
    const outputFisher = new Float32Array(rows);
    for (let i = 0; i < rows; i++) {
      fisher[i] = (g[i] ** 2 * xIn[0] ** 2 + g[rows + i] ** 2 * xIn[1] ** 2) / 2;
      outputFisher[i] = (g[i] ** 2 + g[rows + i] ** 2) / 2;
    }
    const stats = emptyStats(1);
    stats.sumSq[0] = xIn[0] ** 2 + xIn[1] ** 2;
    stats.tokens = 2;
    const mask = Uint8Array.from([0, 1, 0]); // rows 0 and 2 pruned
    const layer = { weight, scores: weight, mask, stats, rows, cols: 1, fisher, outputFisher, fisherTokens: { g, x: xIn, count: 2 } };
    // hand-computed: ½ (F_0 * 4 + F_2 * 0.25), F_0 = (1 + 0)/2, F_2 = (4 + 4)/2
    expect(fisherLoss(layer)).toBeCloseTo(0.5 * (0.5 * 4 + 4 * 0.25), 6);
    // fisher-row: s_0 = 0.5, s_2 = 2.5, E[x^2] = 2.5
    expect(fisherRowLoss(layer)).toBeCloseTo(0.5 * (0.5 * 4 * 2.5 + 2.5 * 0.25 * 2.5), 6);
    // fisher-output: dy_t = x_t * (2, 0, 0.5); e_0 = 1*2 + 2*0.5 = 3, e_1 = 2*(0 + 0.5) = 1
    expect(fisherOutputLoss(layer)).toBeCloseTo((0.5 * (9 + 1)) / 2, 5);
    // nothing pruned: no loss
    expect(fisherLoss({ ...layer, mask: Uint8Array.from([1, 1, 1]) })).toBe(0);
  });

  test('no tensors leak', () => {
    const before = tf.memory().numTensors;
    collectWeightFisher(model, cal, 1);
    expect(tf.memory().numTensors).toBe(before);
  });
});


/** The same source with one block's weights edited. */
function perturbed(src: WeightSource, block: number, edit: (w: BlockWeights) => void): WeightSource {
  return {
    ...src,
    config: src.config,
    format: src.format,
    origin: src.origin,
    readEmbedding: () => src.readEmbedding(),
    readFinalNorm: () => src.readFinalNorm(),
    readClassifier: () => src.readClassifier(),
    close: () => undefined,
    readBlock: (i: number) => {
      const w = src.readBlock(i);
      if (i !== block) return w;
      const copy: BlockWeights = { ...w, linears: { ...w.linears } };
      for (const k of Object.keys(copy.linears) as (keyof BlockWeights['linears'])[]) copy.linears[k] = copy.linears[k].slice();
      edit(copy);
      return copy;
    },
  };
}
