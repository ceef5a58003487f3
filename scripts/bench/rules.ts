/**
 * Section "rules" (run with --only rules): the measurements behind the performance rules of
 * docs/performance.md, each rule's fast path against the slow path it replaces, on the backend
 * in use (wasm unless told otherwise) and, for the backend rule, on tfjs's cpu backend.
 */
import * as tf from '@tensorflow/tfjs';
import { selectMask } from '../../lib/prune/select';
import { Rng } from '../../lib/util/random';
import { BenchSection, BenchTable, median, timeRepeats } from './framework';

/** Median wall time (ms) of `repeats` calls after one warm-up call; `run` disposes what it makes. */
function timeMs(run: () => void, repeats: number): number {
  return median(timeRepeats(run, repeats));
}

function randomArray(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => rng.normal());
}

/** One rule: the fast path and the path it replaces, same result, timed alike. */
interface RuleCase {
  rule: string;
  fast: string;
  slow: string;
  /** Floating-point operations of one call, for GFLOP/s (matMuls only). */
  flops?: number;
  fastRun: () => void;
  slowRun: () => void;
}

function cases(): { list: RuleCase[]; dispose: () => void } {
  const keep: tf.Tensor[] = [];
  const hold = <T extends tf.Tensor>(t: T): T => {
    keep.push(t);
    return t;
  };
  // a projection as the runtime runs it: [T, in] x [in, out], T = 512 tokens, 1024 x 1024 weight
  const [T, IN, OUT] = [512, 1024, 1024];
  const x = hold(tf.tensor2d(randomArray(T * IN, 1), [T, IN]));
  const wData = randomArray(OUT * IN, 2); // PyTorch layout [out, in]
  const w = hold(tf.tensor2d(wData, [OUT, IN]));
  const wT = hold(tf.transpose(w) as tf.Tensor2D); // pre-transposed [in, out]
  const flops = 2 * T * IN * OUT;
  // attention scores per head: 8 heads of [T, 64] x [64, T]
  const H = 8;
  const hd = 64;
  const q3 = hold(tf.tensor3d(randomArray(H * T * hd, 3), [H, T, hd]));
  const k3T = hold(tf.tensor3d(randomArray(H * hd * T, 4), [H, hd, T]));
  const q2 = tf.unstack(q3).map((t) => hold(t as tf.Tensor2D));
  const k2T = tf.unstack(k3T).map((t) => hold(t as tf.Tensor2D));
  const attnFlops = 2 * H * T * hd * T;
  // a column reduction as the calibration statistics need it: sum over 2048 tokens of x^2
  const acts = hold(tf.tensor2d(randomArray(2048 * IN, 5), [2048, IN]));
  const ones = hold(tf.ones([1, 2048]) as tf.Tensor2D);
  // mask selection: 50% per row of a 1024 x 4096 score matrix
  const [R, C] = [1024, 4096];
  const scores = randomArray(R * C, 6).map(Math.abs);
  const scoresT = hold(tf.tensor2d(scores, [R, C]));
  const list: RuleCase[] = [
    {
      rule: 'plain 2-D matMul against a pre-transposed weight',
      fast: 'matMul(x, wT)',
      slow: 'matMul(x, w, false, true)',
      flops,
      fastRun: () => tf.matMul(x, wT).dispose(),
      slowRun: () => tf.matMul(x, w, false, true).dispose(),
    },
    {
      rule: 'reuse weight tensors (XNNPACK packs a weight once per tensor)',
      fast: 'matMul(x, wT) on one tensor',
      slow: 'a new weight tensor per call',
      flops,
      fastRun: () => tf.matMul(x, wT).dispose(),
      slowRun: () => {
        const fresh = tf.tensor2d(wData, [IN, OUT]); // same shape; the values do not matter for timing
        tf.matMul(x, fresh).dispose();
        fresh.dispose();
      },
    },
    {
      rule: 'attention as per-head 2-D matMuls, not a batched matMul',
      fast: `${H} x matMul([${T},${hd}], [${hd},${T}])`,
      slow: `matMul([${H},${T},${hd}], [${H},${hd},${T}])`,
      flops: attnFlops,
      fastRun: () => q2.forEach((q, h) => tf.matMul(q, k2T[h]).dispose()),
      slowRun: () => tf.matMul(q3, k3T).dispose(),
    },
    {
      rule: 'reduce over axis 0 with a ones-vector matMul',
      fast: 'matMul(ones[1,T], square(x))',
      slow: 'sum(square(x), 0)',
      fastRun: () => tf.tidy(() => tf.matMul(ones, tf.square(acts))).dispose(),
      slowRun: () => tf.tidy(() => tf.sum(tf.square(acts), 0)).dispose(),
    },
    {
      rule: 'mask selection in typed-array loops, not tfjs topk',
      fast: 'selectMask (radix select)',
      slow: 'topk per row + mask on host',
      fastRun: () => void selectMask(scores, R, C, { kind: 'unstructured', group: 'row', sparsity: 0.5 }),
      slowRun: () => {
        const { indices, values } = tf.topk(scoresT, C / 2);
        const idx = indices.dataSync();
        const mask = new Uint8Array(R * C);
        for (let r = 0; r < R; r++) for (let k = 0; k < C / 2; k++) mask[r * C + idx[r * (C / 2) + k]] = 1;
        tf.dispose([indices, values]);
      },
    },
  ];
  return { list, dispose: () => tf.dispose(keep) };
}

export const rulesSection: BenchSection = {
  name: 'rules',
  description: 'the measurements behind the performance rules (docs/performance.md): fast path vs the path it replaces',
  runByDefault: false,
  async run(opts) {
    const backend = tf.getBackend();
    const rows: BenchTable['rows'] = [];
    const { list, dispose } = cases();
    try {
      for (const c of list) {
        opts.log(`rules: ${c.rule}`);
        const fastMs = timeMs(c.fastRun, opts.repeats);
        const slowMs = timeMs(c.slowRun, opts.repeats);
        rows.push({
          rule: c.rule,
          fast: c.fast,
          fast_ms: fastMs,
          slow: c.slow,
          slow_ms: slowMs,
          speedup: slowMs / fastMs,
          fast_gflops: c.flops ? c.flops / fastMs / 1e6 : null,
        });
      }
    } finally {
      dispose();
    }
    // never the cpu backend for compute: the same plain matMul on tfjs's cpu backend
    const backendRows: BenchTable['rows'] = [];
    if (backend !== 'cpu') {
      opts.log('rules: the same matMul on the cpu backend');
      const [T, IN, OUT] = [128, 1024, 1024];
      const flops = 2 * T * IN * OUT;
      const gflops = (): number => {
        const x = tf.tensor2d(randomArray(T * IN, 7), [T, IN]);
        const w = tf.tensor2d(randomArray(IN * OUT, 8), [IN, OUT]);
        const ms = timeMs(() => tf.matMul(x, w).dispose(), opts.repeats);
        tf.dispose([x, w]);
        return flops / ms / 1e6;
      };
      const own = gflops();
      await tf.setBackend('cpu');
      let cpu: number;
      try {
        cpu = gflops();
      } finally {
        await tf.setBackend(backend);
      }
      backendRows.push({ backend, shape: `[${T},${IN}] x [${IN},${OUT}]`, gflops: own }, { backend: 'cpu', shape: `[${T},${IN}] x [${IN},${OUT}]`, gflops: cpu });
    }
    return {
      tables: [
        {
          title: `[rules] fast path vs the path it replaces, ${backend}, one core, median of ${opts.repeats} after a warm-up (ms)`,
          columns: [
            { key: 'rule', header: 'rule' },
            { key: 'fast', header: 'fast path' },
            { key: 'fast_ms', header: 'ms', digits: 1 },
            { key: 'slow', header: 'replaces' },
            { key: 'slow_ms', header: 'ms', digits: 1 },
            { key: 'speedup', header: 'speedup', digits: 1 },
            { key: 'fast_gflops', header: 'GFLOP/s', digits: 1 },
          ],
          rows,
          notes: ['matMul shapes: x [512, 1024], weight 1024 x 1024; attention 8 heads, 512 tokens, head dim 64; selection 50% per row of 1024 x 4096'],
        },
        ...(backendRows.length
          ? [
              {
                title: '[rules] plain matMul throughput per backend (GFLOP/s, one core)',
                columns: [
                  { key: 'backend', header: 'backend' },
                  { key: 'shape', header: 'shape' },
                  { key: 'gflops', header: 'GFLOP/s', digits: 1 },
                ],
                rows: backendRows,
              },
            ]
          : []),
      ],
      checks: [],
    };
  },
};
