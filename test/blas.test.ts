/**
 * The native BLAS engine (wasm with its matrix products in cblas_sgemm, lib/backend/blas.ts)
 * against an independent float64 product and against plain wasm on both embedded models.
 * Skipped, with the reason printed, where no BLAS library loads (CI installs OpenBLAS and runs
 * this file).
 */
import * as tf from '@tensorflow/tfjs';
import { initBackend, backendDescription } from '../lib/backend';
import { Blas, blasKernelsEnabled, disableBlasKernels, enableBlasKernels, loadBlas, nativeProductCount, selfCheck } from '../lib/backend/blas';
import { evaluateSource } from '../lib/eval/evaluate';
import { evaluateZeroshotInProcess } from '../lib/eval/zeroshot/evaluate';
import { findTask } from '../lib/eval/zeroshot/tasks';
import { openModel } from '../lib/model/resolve';
import { pruneModel } from '../lib/prune/pipeline';
import { parseStructure } from '../lib/prune/select';
import { getStrategy, resolveParams } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { mulberry32, randomArray, runCli } from './helpers';

let blas: Blas | null = null;
let reason = '';
try {
  blas = loadBlas();
} catch (e) {
  reason = (e as Error).message;
}
const describeBlas = blas ? describe : describe.skip;
if (!blas) {
  // eslint-disable-next-line no-console
  console.log(`test/blas.test.ts: BLAS tests skipped: ${reason}`);
}

/** C = op(A) op(B) in float64 from the definition, batch dims broadcast as numpy does. */
function reference(a: Float32Array, aShape: number[], b: Float32Array, bShape: number[], tA: boolean, tB: boolean): Float64Array {
  const [ar, br] = [aShape.length, bShape.length];
  const m = tA ? aShape[ar - 1] : aShape[ar - 2];
  const k = tA ? aShape[ar - 2] : aShape[ar - 1];
  const n = tB ? bShape[br - 2] : bShape[br - 1];
  const batchA = aShape.slice(0, -2).reduce((x, y) => x * y, 1);
  const batchB = bShape.slice(0, -2).reduce((x, y) => x * y, 1);
  const batch = Math.max(batchA, batchB);
  const out = new Float64Array(batch * m * n);
  for (let q = 0; q < batch; q++) {
    const ao = (batchA === 1 ? 0 : q) * m * k;
    const bo = (batchB === 1 ? 0 : q) * k * n;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let s = 0;
        for (let p = 0; p < k; p++) s += a[ao + (tA ? p * m + i : i * k + p)] * b[bo + (tB ? j * k + p : p * n + j)];
        out[q * m * n + i * n + j] = s;
      }
    }
  }
  return out;
}

function worstRelative(got: ArrayLike<number>, ref: ArrayLike<number>): number {
  let scale = 0;
  let worst = 0;
  for (let i = 0; i < ref.length; i++) {
    scale = Math.max(scale, Math.abs(ref[i]));
    worst = Math.max(worst, Math.abs(got[i] - ref[i]));
  }
  return worst / scale;
}

/** The values of the tensor `make` returns; every tensor it made is freed. */
function download(make: () => tf.Tensor): Float32Array {
  const t = tf.tidy(make);
  const v = t.dataSync() as Float32Array;
  t.dispose();
  return v;
}

/** Run `fn` on plain wasm, then with the BLAS kernels; the kernels are left enabled. */
function bothEngines<T>(fn: () => T): { wasm: T; blas: T } {
  disableBlasKernels();
  const wasm = fn();
  enableBlasKernels(blas!);
  return { wasm, blas: fn() };
}

describeBlas('BLAS kernels', () => {
  beforeAll(async () => {
    await initBackend('blas');
  });

  test('the engine is named with its library and threads', () => {
    expect(blasKernelsEnabled()).toBe(true);
    expect(backendDescription()).toMatch(/^wasm\+simd\+blas\[\S.* \d+ threads?\]$/);
  });

  test('products match a float64 product: transposes, batches, broadcast batches, a fused bias + relu', () => {
    const rng = mulberry32(5);
    const cases: [number[], number[], boolean, boolean][] = [
      [[70, 130], [130, 90], false, false],
      [[130, 70], [130, 90], true, false],
      [[70, 130], [90, 130], false, true],
      [[130, 70], [90, 130], true, true],
      [[3, 20, 33], [3, 33, 17], false, false],
      [[3, 20, 33], [1, 17, 33], false, true],
      [[33, 20], [2, 3, 33, 17], true, false],
      [[2, 1, 5, 8], [1, 3, 8, 4], false, false], // batch dims that do not flatten: the wasm kernel's case
    ];
    for (const [as, bs, tA, tB] of cases) {
      const a = randomArray(as.reduce((x, y) => x * y, 1), rng, 2, -1);
      const b = randomArray(bs.reduce((x, y) => x * y, 1), rng, 2, -1);
      const before = nativeProductCount();
      const got = download(() => tf.matMul(tf.tensor(a, as), tf.tensor(b, bs), tA, tB));
      const native = nativeProductCount() - before;
      if (as.length === 4 && bs.length === 4) {
        // [2,1,..] x [1,3,..]: broadcasting beyond one flattened batch stays on wasm
        expect(native).toBe(0);
        continue;
      }
      expect(native).toBe(1);
      expect(worstRelative(got, reference(a, as, b, bs, tA, tB))).toBeLessThan(1e-6);
    }
    const a = randomArray(40 * 64, rng, 2, -1);
    const w = randomArray(64 * 24, rng, 2, -1);
    const bias = randomArray(24, rng, 2, -1);
    const before = nativeProductCount();
    const fused = download(() => tf.fused.matMul({ a: tf.tensor2d(a, [40, 64]), b: tf.tensor2d(w, [64, 24]), bias: tf.tensor1d(bias), activation: 'relu' }));
    expect(nativeProductCount() - before).toBe(1);
    const ref = reference(a, [40, 64], w, [64, 24], false, false).map((v, i) => Math.max(0, v + bias[i % 24]));
    expect(worstRelative(fused, ref)).toBeLessThan(1e-6);
    expect(tf.memory().numTensors).toBe(0);
  });

  test('a product whose output grows the wasm heap reads and writes the new heap', () => {
    const backend = tf.backend() as unknown as { wasm: { HEAPU8: Uint8Array } };
    const heapBefore = backend.wasm.HEAPU8.buffer.byteLength;
    const m = 1024;
    const k = 8;
    const n = Math.ceil(heapBefore / 4 / m) + 1024; // an output larger than the whole heap now
    const rng = mulberry32(9);
    const a = randomArray(m * k, rng, 2, -1);
    const b = randomArray(k * n, rng, 2, -1);
    const ta = tf.tensor2d(a, [m, k]);
    const tb = tf.tensor2d(b, [k, n]);
    const c = tf.matMul(ta, tb);
    expect(backend.wasm.HEAPU8.buffer.byteLength).toBeGreaterThan(heapBefore);
    const got = c.dataSync();
    tf.dispose([ta, tb, c]);
    // every 997th entry against the definition
    for (let e = 0; e < m * n; e += 997) {
      const i = Math.floor(e / n);
      const j = e % n;
      let s = 0;
      for (let p = 0; p < k; p++) s += a[i * k + p] * b[p * n + j];
      expect(Math.abs(got[e] - s)).toBeLessThan(1e-5);
    }
  });

  test('the self-check passes here and catches a wrong product', () => {
    expect(selfCheck(blas!)).toBeNull();
    // a BLAS that returns its inputs unchanged (C stays zero-filled garbage) is refused
    const broken: Blas = { ...blas!, sgemm: () => {} };
    expect(selfCheck(broken)).toMatch(/differs from the wasm kernel/);
    expect(blasKernelsEnabled()).toBe(true); // the check leaves the kernels as it found them
  });

  const models: [string, string, number][] = [
    ['stories260K', 'tinystories', 4],
    ['babyllama-char', 'wikitext2', 4],
  ];

  test.each(models)('%s: perplexity within 1e-5 relative of plain wasm', (name, dataset, windows) => {
    const model = openModel(name);
    try {
      const r = bothEngines(() => evaluateSource(model, model.source, [dataset], { maxWindows: windows })[0].ppl);
      const rel = Math.abs(r.blas - r.wasm) / r.wasm;
      // eslint-disable-next-line no-console
      console.log(`${name} ${dataset} ${windows} windows: PPL wasm ${r.wasm}, blas ${r.blas}, relative difference ${rel.toExponential(2)}`);
      expect(rel).toBeLessThan(1e-5);
      expect(r.blas).not.toBe(r.wasm); // the products really ran elsewhere (bit-equal sums would mean they did not)
    } finally {
      model.source.close();
    }
  });

  test.each(models)('%s: wanda masks differ only where scores tie at the cut-off', (name) => {
    type Layer = { scores: Float32Array; mask: Uint8Array; cols: number };
    const run = (): Map<string, Layer> => {
      const model = openModel(name);
      const layers = new Map<string, Layer>();
      try {
        const s = getStrategy('wanda');
        pruneModel(
          model,
          {
            method: 'wanda',
            params: resolveParams(s, {}),
            structure: parseStructure('unstructured', 0.5, 'row'),
            calibration: { dataset: 'tinystories', nsamples: 8, seqlen: 128, seed: 0 },
            propagate: 'pruned',
          },
          { onLayer: (l) => layers.set(`${l.block}.${l.name}`, { scores: l.scores.slice(), mask: l.mask.slice(), cols: l.stats.inFeatures }) },
        ).source.close();
      } finally {
        model.source.close();
      }
      return layers;
    };
    const r = bothEngines(run);
    let differing = 0;
    let total = 0;
    let worstGap = 0;
    for (const [key, w] of r.wasm) {
      const b = r.blas.get(key)!;
      total += w.mask.length;
      for (let row = 0; row < w.mask.length / w.cols; row++) {
        // this row's cut-off on plain wasm: between the largest pruned and the smallest kept score
        let maxPruned = -Infinity;
        let minKept = Infinity;
        for (let c = 0; c < w.cols; c++) {
          const i = row * w.cols + c;
          if (w.mask[i]) minKept = Math.min(minKept, w.scores[i]);
          else maxPruned = Math.max(maxPruned, w.scores[i]);
        }
        const cut = (maxPruned + minKept) / 2;
        for (let c = 0; c < w.cols; c++) {
          const i = row * w.cols + c;
          if (w.mask[i] === b.mask[i]) continue;
          differing++;
          worstGap = Math.max(worstGap, Math.abs(w.scores[i] - cut) / Math.abs(cut), Math.abs(b.scores[i] - cut) / Math.abs(cut));
        }
      }
    }
    // eslint-disable-next-line no-console
    console.log(`${name}: wanda 50% masks, ${differing} of ${total} entries differ between wasm and blas (largest distance of one from its row's cut-off ${worstGap.toExponential(2)} relative)`);
    expect(worstGap).toBeLessThan(1e-4);
    expect(differing).toBeLessThan(total * 1e-3);
  });

  test('stories260K: zero-shot log-likelihoods within 1e-4 of plain wasm', () => {
    const model = openModel('stories260K');
    try {
      const r = bothEngines(() =>
        evaluateZeroshotInProcess(model, model.source, [{ task: findTask('arc_easy') }, { task: findTask('piqa') }], { limit: 10, bootstrapIters: 10 }),
      );
      let n = 0;
      let worst = 0;
      r.wasm.tasks.forEach((t, ti) =>
        t.perDoc.forEach((d, di) =>
          d.scores.forEach((s, si) => {
            n++;
            worst = Math.max(worst, Math.abs(s.ll - r.blas.tasks[ti].perDoc[di].scores[si].ll));
          }),
        ),
      );
      // eslint-disable-next-line no-console
      console.log(`stories260K zero-shot: ${n} log-likelihoods, largest difference ${worst.toExponential(2)}`);
      expect(n).toBeGreaterThan(40);
      expect(worst).toBeLessThan(1e-4);
    } finally {
      model.source.close();
    }
  });
});

describe('engine selection on the command line', () => {
  const evalArgs = ['eval', '--model', 'stories260K', '--dataset', 'tinystories', '--max-windows', '1', '--json'];

  test('a missing library: auto falls back to plain wasm with one line, blas is a one-line error', () => {
    const env = { CREPE_BLAS_LIB: '/nonexistent/libopenblas.so.0' };
    const auto = runCli([...evalArgs, '--backend', 'auto'], { env });
    expect(auto.code).toBe(0);
    expect(JSON.parse(auto.stdout).backend).toMatch(/^wasm(\+simd)?$/);
    expect(auto.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^crepe: native BLAS unavailable, using plain wasm: .*nonexistent/)]);
    const forced = runCli([...evalArgs, '--backend', 'blas'], { env });
    expect(forced.code).toBe(2);
    expect(forced.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^crepe: backend blas unavailable: /)]);
  });

  (blas ? test : test.skip)('auto picks the BLAS engine and --threads sets its threads; both appear in --json', () => {
    const r = runCli([...evalArgs, '--backend', 'auto', '--threads', '1']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).backend).toMatch(/^wasm\+simd\+blas\[.* 1 thread\]$/);
    // results depend on the BLAS's thread count (its partition of the product), so --jobs N gives
    // each worker threads/N: --jobs 2 --threads 2 is --jobs 1 --threads 1, bit for bit
    const nll = (extra: string[]): number => JSON.parse(runCli([...evalArgs.slice(0, -3), '--max-windows', '4', '--json', '--backend', 'blas', ...extra]).stdout).nll;
    expect(nll(['--jobs', '2', '--threads', '2'])).toBe(nll(['--jobs', '1', '--threads', '1']));
    const bad = runCli([...evalArgs, '--threads', '0']);
    expect(bad.code).toBe(2);
    expect(bad.stderr.trim()).toBe('crepe: --threads must be a positive integer (got 0)');
  });
});
