import * as tf from '@tensorflow/tfjs';
import { initBackend } from '../lib/backend';
import { BUILTIN_MODELS, openModel } from '../lib/model/resolve';
import { LinearName } from '../lib/model/types';
import { pruneModel } from '../lib/prune/pipeline';
import { Structure, selectMask } from '../lib/prune/select';
import { InputStats, accumulateStats, emptyStats } from '../lib/prune/stats';
import { LayerContext, getStrategy, listStrategies, parseParamPairs, resolveParams } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { Rng } from '../lib/util/random';
import { CrepeError } from '../lib/errors';

beforeAll(async () => {
  await initBackend('wasm');
});

function statsFrom(sumSq: number[], samples = 4): InputStats {
  const s = emptyStats(sumSq.length);
  sumSq.forEach((v, j) => (s.sumSq[j] = v));
  s.samples = samples;
  s.tokens = samples * 16;
  return s;
}

function context(w: number[][], stats: InputStats, name: LinearName = 'q'): LayerContext {
  const rows = w.length;
  const cols = w[0].length;
  const data = Float32Array.from(w.flat());
  return {
    weight: tf.tensor2d(data, [rows, cols]),
    weightData: data,
    shape: [rows, cols],
    stats,
    name,
    block: 0,
    kind: 'attn',
    key: `blocks.0.attn.${name}`,
  };
}

function scoreOf(method: string, ctx: LayerContext, given: Record<string, number> = {}): number[] {
  const s = getStrategy(method);
  const t = s.score(ctx, resolveParams(s, given));
  const out = Array.from(t.dataSync());
  t.dispose();
  return out;
}

const W = [
  [1, -2, 0.5],
  [-4, 1, 2],
];
// sumSq / samples = [4, 1, 16] → ||X_j|| = [2, 1, 4]
const STATS = statsFrom([16, 4, 64], 4);

describe('built-in strategies on a hand-computed 2x3 layer', () => {
  test('magnitude is |W|', () => {
    const ctx = context(W, STATS);
    expect(scoreOf('magnitude', ctx)).toEqual([1, 2, 0.5, 4, 1, 2]);
    ctx.weight.dispose();
  });

  test('wanda is |W| * sqrt(sumSq / samples)', () => {
    const ctx = context(W, STATS);
    expect(scoreOf('wanda', ctx)).toEqual([2, 2, 2, 8, 1, 8]);
    ctx.weight.dispose();
  });

  test('ri is |W|/rowsum + |W|/colsum; ria multiplies by norm^a', () => {
    const ctx = context(W, STATS);
    // row sums 3.5, 7; column sums 5, 3, 2.5
    const ri = [1 / 3.5 + 1 / 5, 2 / 3.5 + 2 / 3, 0.5 / 3.5 + 0.5 / 2.5, 4 / 7 + 4 / 5, 1 / 7 + 1 / 3, 2 / 7 + 2 / 2.5];
    scoreOf('ri', ctx).forEach((v, k) => expect(v).toBeCloseTo(ri[k], 6));
    const norm = [2, 1, 4, 2, 1, 4];
    scoreOf('ria', ctx).forEach((v, k) => expect(v).toBeCloseTo(ri[k] * Math.sqrt(norm[k]), 6));
    scoreOf('ria', ctx, { a: 1 }).forEach((v, k) => expect(v).toBeCloseTo(ri[k] * norm[k], 5));
    ctx.weight.dispose();
  });

  test('crepe neighbourhood term uses exact zero-padded window sums', () => {
    const ctx = context(W, STATS);
    // 3x3 windows on a 2x3 matrix: window of (i, j) = all rows, columns j-1..j+1
    const A = W.map((r) => r.map(Math.abs));
    const box = (i: number, j: number) => {
      let s = 0;
      for (let r = i - 1; r <= i + 1; r++) for (let c = j - 1; c <= j + 1; c++) if (r >= 0 && r < 2 && c >= 0 && c < 3) s += A[r][c];
      return s;
    };
    const p = { alpha: 0.5, beta: 2, gamma: 3, a: 0 };
    const expected: number[] = [];
    const rs = [3.5, 7];
    const cs = [5, 3, 2.5];
    for (let i = 0; i < 2; i++) for (let j = 0; j < 3; j++) expected.push(p.alpha * A[i][j] / rs[i] + p.beta * A[i][j] / cs[j] + p.gamma * A[i][j] / box(i, j));
    scoreOf('crepe', ctx, p).forEach((v, k) => expect(v).toBeCloseTo(expected[k], 5));
    // a 1x3 window only looks along the row
    const wide = scoreOf('crepe', ctx, { alpha: 0, beta: 0, gamma: 1, kh: 1, kw: 3, a: 0 });
    const rowBox = (i: number, j: number) => A[i].slice(Math.max(0, j - 1), j + 2).reduce((x, y) => x + y, 0);
    wide.forEach((v, k) => expect(v).toBeCloseTo(A[Math.floor(k / 3)][k % 3] / rowBox(Math.floor(k / 3), k % 3), 6));
    ctx.weight.dispose();
  });

  test('all-zero rows and windows score 0, not NaN', () => {
    const ctx = context([[0, 0, 0], [0, 1, 0]], STATS);
    for (const m of listStrategies()) for (const v of scoreOf(m, ctx)) expect(Number.isFinite(v)).toBe(true);
    ctx.weight.dispose();
  });

  test('CRePE(alpha=1, beta=1, gamma=0, a=0.5) and RIA both equal RIA written out in float64 on a random layer', () => {
    const rng = new Rng(3);
    const [rows, cols, samples] = [40, 24, 7];
    const w = Array.from({ length: rows }, () => Array.from({ length: cols }, () => rng.normal()));
    const sumSq = Array.from({ length: cols }, () => rng.next() * 10);
    const ctx = context(w, statsFrom(sumSq, samples));
    // RIA_ij = (|W_ij| / sum_k |W_ik| + |W_ij| / sum_k |W_kj|) * ||X_j||^a, ||X_j|| = sqrt(sumSq_j / samples), a = 0.5
    const w32 = w.map((r) => r.map((v) => Math.fround(v)));
    const rowSum = w32.map((r) => r.reduce((a, v) => a + Math.abs(v), 0));
    const colSum = Array.from({ length: cols }, (_, j) => w32.reduce((a, r) => a + Math.abs(r[j]), 0));
    const ref = w32.flatMap((r, i) => r.map((v, j) => (Math.abs(v) / rowSum[i] + Math.abs(v) / colSum[j]) * Math.pow(Math.sqrt(Math.fround(sumSq[j]) / samples), 0.5)));
    for (const [method, params] of [['crepe', { alpha: 1, beta: 1, gamma: 0, a: 0.5 }], ['ria', {}]] as const) {
      const scores = scoreOf(method, ctx, params);
      scores.forEach((v, k) => expect(Math.abs(v - ref[k]) / ref[k]).toBeLessThan(1e-5));
      // and the same selection: the half with the lowest independent scores is pruned
      const mask = selectMask(Float32Array.from(scores), rows, cols, { kind: 'unstructured', group: 'matrix', sparsity: 0.5 });
      const threshold = [...ref].sort((a, b) => a - b)[rows * cols / 2 - 1];
      ref.forEach((r, k) => {
        if (Math.abs(r - threshold) / threshold > 1e-5) expect(mask[k]).toBe(r > threshold ? 1 : 0);
      });
    }
    ctx.weight.dispose();
  });
});

describe('contract: every registered strategy', () => {
  const rows = 48;
  const cols = 64;
  const rng = new Rng(11);
  const data = Float32Array.from({ length: rows * cols }, () => rng.normal());
  const stats = statsFrom(Array.from({ length: cols }, () => 1 + rng.next() * 50), 8);
  const structures: Structure[] = [
    { kind: 'unstructured', group: 'row', sparsity: 0.5 },
    { kind: 'unstructured', group: 'matrix', sparsity: 0.37 },
    { kind: 'nm', n: 2, m: 4 },
    { kind: 'nm', n: 3, m: 8 },
  ];

  for (const method of listStrategies()) {
    test(`${method}: shape, finiteness, determinism, exact sparsity, no leaks`, () => {
      const s = getStrategy(method);
      const params = resolveParams(s);
      const weight = tf.tensor2d(data, [rows, cols]);
      const ctx: LayerContext = { weight, weightData: data, shape: [rows, cols], stats, name: 'gate', block: 1, kind: 'mlp', key: 'blocks.1.mlp.gate' };
      const before = tf.memory().numTensors;
      const t1 = s.score(ctx, params);
      const t2 = s.score(ctx, params);
      expect(t1.shape).toEqual([rows, cols]);
      const a = t1.dataSync() as Float32Array;
      const b = t2.dataSync() as Float32Array;
      tf.dispose([t1, t2]);
      expect(tf.memory().numTensors).toBe(before);
      weight.dispose();
      expect(a.every((v) => Number.isFinite(v))).toBe(true);
      expect(Buffer.compare(Buffer.from(a.buffer), Buffer.from(b.buffer))).toBe(0);
      for (const st of structures) {
        const mask = selectMask(a, rows, cols, st);
        let pruned = 0;
        for (const v of mask) pruned += 1 - v;
        const expected =
          st.kind === 'nm' ? (rows * cols * (st.m - st.n)) / st.m : st.group === 'row' ? rows * Math.floor(cols * st.sparsity) : Math.floor(rows * cols * st.sparsity);
        expect(pruned).toBe(expected);
      }
    });
  }

  // Strategies that update the kept weights (pruneLayer) replace score-then-select in the
  // pipeline, so they get their own contract. Sparsities are chosen so that per row, per matrix
  // and per column block (SparseGPT) counts coincide: rows * cols * s exactly.
  const weightUpdating = listStrategies().filter((m) => getStrategy(m).pruneLayer);
  const exactStructures: Structure[] = [
    { kind: 'unstructured', group: 'row', sparsity: 0.5 },
    { kind: 'unstructured', group: 'matrix', sparsity: 0.375 },
    { kind: 'nm', n: 2, m: 4 },
    { kind: 'nm', n: 3, m: 8 },
  ];

  test('at least one registered strategy updates weights, so the contract below runs', () => {
    expect(weightUpdating.length).toBeGreaterThan(0);
  });

  /** sum over rows of (w - v) G (w - v)^T: the layer's output error on the calibration inputs. */
  function reconstructionError(w: Float32Array, v: Float32Array, gram: Float64Array): number {
    let e = 0;
    const d = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      for (let j = 0; j < cols; j++) d[j] = w[r * cols + j] - v[r * cols + j];
      for (let j = 0; j < cols; j++) for (let k = 0; k < cols; k++) e += d[j] * gram[j * cols + k] * d[k];
    }
    return e;
  }

  for (const method of weightUpdating) {
    test(`${method}: pruneLayer keeps exact counts, zeroes what it prunes, leaves its input alone, is deterministic, beats masking alone, no leaks`, () => {
      const s = getStrategy(method);
      const params = resolveParams(s);
      // calibration inputs with correlated channels, so reconstruction has something to do
      const xs = new Rng(5);
      const layerStats = emptyStats(cols, s.statsNeeds ?? {});
      for (let win = 0; win < 2; win++) {
        const T = 128;
        const x = new Float32Array(T * cols);
        for (let t = 0; t < T; t++) {
          const shared = xs.normal();
          for (let j = 0; j < cols; j++) x[t * cols + j] = (0.5 + (j % 7)) * (xs.normal() + 0.8 * shared);
        }
        const xt = tf.tensor2d(x, [T, cols]);
        accumulateStats(layerStats, xt, s.statsNeeds ?? {});
        xt.dispose();
      }
      const original = data.slice();
      const weight = tf.tensor2d(data, [rows, cols]);
      const ctx: LayerContext = { weight, weightData: data, shape: [rows, cols], stats: layerStats, name: 'gate', block: 1, kind: 'mlp', key: 'blocks.1.mlp.gate' };
      for (const st of exactStructures) {
        const before = tf.memory().numTensors;
        const r1 = s.pruneLayer!(ctx, st, params);
        const r2 = s.pruneLayer!(ctx, st, params);
        expect(tf.memory().numTensors).toBe(before);
        expect(Buffer.compare(Buffer.from(data.buffer), Buffer.from(original.buffer))).toBe(0);
        expect(Buffer.compare(Buffer.from(r1.weight.buffer), Buffer.from(r2.weight.buffer))).toBe(0);
        expect(Buffer.compare(Buffer.from(r1.mask), Buffer.from(r2.mask))).toBe(0);
        expect(r1.weight).toHaveLength(rows * cols);
        expect(r1.mask).toHaveLength(rows * cols);
        let pruned = 0;
        let bad = 0; // mask values other than 0/1, pruned weights not 0, kept weights not finite
        for (let k = 0; k < r1.mask.length; k++) {
          if (r1.mask[k] === 0) {
            pruned++;
            if (r1.weight[k] !== 0) bad++;
          } else if (r1.mask[k] !== 1 || !Number.isFinite(r1.weight[k])) bad++;
        }
        expect(bad).toBe(0);
        if (st.kind === 'nm') {
          for (let g = 0; g < r1.mask.length; g += st.m) expect(r1.mask.slice(g, g + st.m).reduce((a, b) => a + b, 0)).toBe(st.n);
        } else expect(pruned).toBe(rows * cols * st.sparsity);
        // the point of updating weights: less output error than zeroing the same entries
        const gram = layerStats.gram ?? (() => { throw new Error(`${method} asked for no Gram matrix`); })();
        const masked = Float32Array.from(original, (v, k) => (r1.mask[k] ? v : 0));
        expect(reconstructionError(original, r1.weight, gram)).toBeLessThan(reconstructionError(original, masked, gram));
      }
      weight.dispose();
    });
  }
});

describe('parameters', () => {
  test('unknown parameter, out-of-range value and even kernels are rejected with one-line messages', () => {
    const crepe = getStrategy('crepe');
    expect(() => resolveParams(crepe, { delta: 1 })).toThrow(CrepeError);
    expect(() => resolveParams(crepe, { delta: 1 })).toThrow(/unknown parameter 'delta' for method crepe/);
    expect(() => resolveParams(crepe, { kh: 4 })).toThrow(/must be odd/);
    expect(() => resolveParams(crepe, { alpha: -1 })).toThrow(/out of range/);
    expect(() => resolveParams(crepe, { a: 'x' })).toThrow(/not a finite number/);
    expect(() => resolveParams(getStrategy('wanda'), { a: 1 })).toThrow(/it takes none/);
    expect(() => getStrategy('sparsegpt2')).toThrow(/unknown method 'sparsegpt2'/);
  });

  test('kernel=KHxKW shorthand', () => {
    // the shorthand is CRePE's own (its paramAliases), not the generic parser's
    const crepe = getStrategy('crepe');
    expect(parseParamPairs(['kernel=3x5', 'gamma=0.1'], crepe)).toEqual({ kh: '3', kw: '5', gamma: '0.1' });
    expect(parseParamPairs(['kernel=7'], crepe)).toEqual({ kh: '7', kw: '7' });
    expect(() => parseParamPairs(['kernel=3by3'], crepe)).toThrow(CrepeError);
    expect(() => parseParamPairs(['gamma'], crepe)).toThrow(CrepeError);
    expect(parseParamPairs(['kernel=3x5'], getStrategy('ria'))).toEqual({ kernel: '3x5' }); // then refused by resolveParams
    expect(() => resolveParams(getStrategy('ria'), parseParamPairs(['kernel=3x5'], getStrategy('ria')))).toThrow(/unknown parameter 'kernel'/);
  });
});

describe('on the real model', () => {
  const calibration = { dataset: 'tinystories', nsamples: 8, seqlen: 128, seed: 0 };

  function masksOf(method: string, params: Record<string, number>, structure: Structure): Map<string, Uint8Array> {
    const model = openModel('stories260K');
    const masks = new Map<string, Uint8Array>();
    const s = getStrategy(method);
    const out = pruneModel(
      model,
      { method, params: resolveParams(s, params), structure, calibration, propagate: 'pruned' },
      { onLayer: (l) => masks.set(`${l.block}.${l.name}`, l.mask) },
    );
    // exact counts: per row floor(in * s), per matrix floor(numel * s), N:M (m - n)/m
    for (const l of out.report.layers) {
      const [o, i] = l.shape;
      const expected =
        structure.kind === 'nm'
          ? (o * i * (structure.m - structure.n)) / structure.m
          : structure.group === 'row'
            ? o * Math.floor(i * structure.sparsity)
            : Math.floor(o * i * structure.sparsity);
      expect(l.pruned).toBe(expected);
    }
    expect(out.report.pruned).toBe(out.report.layers.reduce((a, l) => a + l.pruned, 0));
    model.source.close();
    return masks;
  }

  /**
   * RIA's published score in float64 on the host, written from the paper's formula and nothing
   * in lib/: RIA_ij = (|W_ij| / sum_k |W_kj| + |W_ij| / sum_k |W_ik|) * (||X_j||_2)^a with
   * ||X_j||^2 = Wanda's scaler_row = sum of x_j^2 over calibration tokens / windows.
   */
  function riaFloat64(w: Float32Array, rows: number, cols: number, stats: InputStats, a: number): Float64Array {
    const rowSum = new Float64Array(rows);
    const colSum = new Float64Array(cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = Math.abs(w[r * cols + c]);
        rowSum[r] += v;
        colSum[c] += v;
      }
    }
    const out = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        const v = Math.abs(w[r * cols + c]);
        const norm = Math.sqrt(stats.sumSq[c] / stats.samples);
        out[r * cols + c] = (v / colSum[c] + v / rowSum[r]) * Math.pow(norm, a);
      }
    }
    return out;
  }

  /**
   * Keep masks from float64 scores by sorting (no radix select): per matrix, prune the floor(n s)
   * lowest; N:M, in each group of m consecutive inputs of a row keep the n highest.
   */
  function referenceMask(scores: Float64Array, rows: number, cols: number, st: Structure): Uint8Array {
    const mask = new Uint8Array(scores.length).fill(1);
    if (st.kind === 'unstructured') {
      const idx = Array.from(scores.keys()).sort((x, y) => scores[x] - scores[y] || x - y);
      for (let t = 0; t < Math.floor(scores.length * st.sparsity); t++) mask[idx[t]] = 0;
      return mask;
    }
    for (let r = 0; r < rows; r++) {
      for (let g = 0; g < cols; g += st.m) {
        const idx = Array.from({ length: st.m }, (_, t) => r * cols + g + t).sort((x, y) => scores[x] - scores[y] || x - y);
        for (let t = 0; t < st.m - st.n; t++) mask[idx[t]] = 0;
      }
    }
    return mask;
  }

  test.each([
    [{ kind: 'unstructured', group: 'matrix', sparsity: 0.5 } as Structure],
    [{ kind: 'nm', n: 2, m: 4 } as Structure],
  ])('CRePE(1, 1, 0, a=0.5) and RIA both match an independent float64 RIA on the real model (%j)', (structure) => {
    for (const method of ['crepe', 'ria']) {
      const model = openModel('stories260K');
      const s = getStrategy(method);
      const params: Record<string, number> = method === 'crepe' ? { alpha: 1, beta: 1, gamma: 0, a: 0.5 } : {};
      let layers = 0;
      let differing = 0;
      let total = 0;
      let worstScore = 0;
      pruneModel(
        model,
        { method, params: resolveParams(s, params), structure, calibration, propagate: 'pruned' },
        {
          onLayer: ({ stats, weight, scores, mask }) => {
            layers++;
            const [rows, cols] = [scores.length / stats.inFeatures, stats.inFeatures];
            const ref = riaFloat64(weight, rows, cols, stats, 0.5);
            // Scores: float32 against float64, within ~16 float32 ulps.
            for (let k = 0; k < ref.length; k++) worstScore = Math.max(worstScore, Math.abs(scores[k] - ref[k]) / Math.max(Math.abs(ref[k]), 1e-30));
            // Masks: the reference's selection from its float64 scores, entry for entry.
            const refMask = referenceMask(ref, rows, cols, structure);
            for (let k = 0; k < mask.length; k++) {
              total++;
              if (mask[k] !== refMask[k]) differing++;
            }
          },
        },
      );
      model.source.close();
      expect(layers).toBe(35);
      expect(total).toBeGreaterThan(200_000);
      expect(worstScore).toBeLessThan(1e-6);
      expect(differing).toBe(0);
    }
  });

  test('uniform sparsity is exact per layer and in total, and the same seed gives the same masks', () => {
    const st: Structure = { kind: 'unstructured', group: 'row', sparsity: 0.3 };
    const a = masksOf('crepe', {}, st);
    const b = masksOf('crepe', {}, st);
    for (const [k, m] of a) expect(Buffer.compare(Buffer.from(b.get(k)!), Buffer.from(m))).toBe(0);
  });

  test('every built-in name opens the published model with its tokenizer; an unknown name is refused', () => {
    // Shapes from the model cards (karpathy/tinyllamas stories260K; EN10/BabyLlama), not from our loader.
    const published: Record<string, { dim: number; nLayers: number; vocabSize: number; maxSeqLen: number }> = {
      stories260K: { dim: 64, nLayers: 5, vocabSize: 512, maxSeqLen: 512 },
      'babyllama-char': { dim: 128, nLayers: 5, vocabSize: 105, maxSeqLen: 256 },
    };
    expect(Object.keys(BUILTIN_MODELS).sort()).toEqual(Object.keys(published).sort());
    for (const name of Object.keys(BUILTIN_MODELS)) {
      const m = openModel(name);
      try {
        expect(m.source.config).toMatchObject(published[name]);
        expect(m.tokenizer.vocabSize).toBe(published[name].vocabSize);
        expect(m.tokenizer.decode(m.tokenizer.encode('Once upon a time'))).toContain('Once upon a time');
      } finally {
        m.source.close();
      }
    }
    expect(() => openModel('stories260k')).toThrow(/^unknown model 'stories260k'; did you mean 'stories260K'\?$/);
    expect(() => openModel('gpt5')).toThrow(/^unknown model 'gpt5': not a built-in name \(stories260K, babyllama-char\) nor an existing path$/);
  });
});
