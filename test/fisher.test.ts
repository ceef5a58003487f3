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

  test('the differentiable forward gives the runtime log-probabilities (1e-4)', () => {
    const tokens = windowOf(model, 96);
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

  test('gradients match central finite differences of the data loss', () => {
    const f = collectWeightFisher(model, cal, 1, 'data', 64);
    expect(f.keptTokens).toBe(63);
    const block = 1;
    const name = 'gate' as const;
    const [rows, cols] = linearShape(model.source.config, name);
    const { g, x } = f.kept[block].get(name)!;
    // dL/dW = sum_t g_t x_t^T; check the entry with the largest gradient
    let best = { i: 0, j: 0, v: 0 };
    for (let i = 0; i < rows; i++) {
      for (let j = 0; j < cols; j++) {
        let v = 0;
        for (let t = 0; t < f.keptTokens; t++) v += g[t * rows + i] * x[t * cols + j];
        if (Math.abs(v) > Math.abs(best.v)) best = { i, j, v };
      }
    }
    const tokens = drawCalibration(model, cal).windows[0]; // the window the Fisher pass used
    const lossWith = (delta: number): number => {
      const src = perturbed(model.source, block, (w) => (w.linears[name][best.i * cols + best.j] += delta));
      const lp = gradForwardLogProbs({ ...model, source: src }, tokens);
      return -lp.reduce((a, v) => a + v, 0);
    };
    const eps = 1e-2;
    const fd = (lossWith(eps) - lossWith(-eps)) / (2 * eps);
    expect(Math.abs(best.v)).toBeGreaterThan(0.1);
    expect(Math.abs(fd - best.v) / Math.abs(best.v)).toBeLessThan(0.03);
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
