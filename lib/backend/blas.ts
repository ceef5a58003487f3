/**
 * Matrix products of the wasm backend through a native BLAS (cblas_sgemm, OpenBLAS by default).
 *
 * tfjs stays the framework: the wasm backend keeps every tensor in its own heap, and the two
 * product kernels (BatchMatMul, _FusedMatMul) are replaced by kernels that call cblas_sgemm on
 * that heap directly, with no copy, through the FFI package koffi (an optional dependency that
 * ships its binaries). Everything else (softmax, norms, elementwise ops) stays on wasm. Cases the
 * native kernel does not take (non-float32, broadcasting that does not flatten to one operand
 * of batch 1, fused activations other than linear and relu) go to the original wasm kernel.
 *
 * The library is found at run time: CREPE_BLAS_LIB, else libopenblas.so.0 (Debian's
 * libopenblas0-pthread) and a few usual names. Nothing here is loaded unless asked for.
 */
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';

const CBLAS_ROW_MAJOR = 101;
const CBLAS_NO_TRANS = 111;
const CBLAS_TRANS = 112;

/** Library names tried in order when CREPE_BLAS_LIB is not set. */
const DEFAULT_LIBRARIES = ['libopenblas.so.0', 'libopenblas.so', 'libopenblas.dylib', 'libopenblas.0.dylib'];

type Sgemm = (
  order: number, transA: number, transB: number, m: number, n: number, k: number,
  alpha: number, a: Float32Array, lda: number, b: Float32Array, ldb: number,
  beta: number, c: Float32Array, ldc: number,
) => void;

export interface Blas {
  /** The file that was loaded. */
  path: string;
  /** e.g. 'OpenBLAS 0.3.21' (from openblas_get_config), or the file name for another BLAS. */
  name: string;
  sgemm: Sgemm;
  /** Set the library's thread count (a no-op for a BLAS without openblas_set_num_threads). */
  setThreads(n: number): void;
  /** The thread count in force (null when the library does not say). */
  threads(): number | null;
}

let loaded: Blas | null = null;

/** All cores of this machine (the default of --threads). */
export function allCores(): number {
  return typeof os.availableParallelism === 'function' ? os.availableParallelism() : os.cpus().length;
}

/**
 * Load the BLAS library (once per process). Throws an Error whose message says what is missing
 * (koffi not installed, no library found, no cblas_sgemm in it); the caller turns it into a
 * fallback line or a CrepeError.
 */
export function loadBlas(): Blas {
  if (loaded) return loaded;
  let koffi: typeof import('koffi');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    koffi = require('koffi');
  } catch {
    throw new Error('the optional package koffi is not installed');
  }
  const explicit = process.env.CREPE_BLAS_LIB;
  const candidates = explicit ? [explicit] : DEFAULT_LIBRARIES;
  let lib: ReturnType<typeof koffi.load> | null = null;
  let path = '';
  const failures: string[] = [];
  for (const c of candidates) {
    try {
      lib = koffi.load(c);
      path = c;
      break;
    } catch (e) {
      failures.push(`${c}: ${String((e as Error).message).split('\n')[0]}`);
    }
  }
  if (!lib) {
    throw new Error(
      explicit
        ? `CREPE_BLAS_LIB=${explicit} could not be loaded (${failures[0]})`
        : `no BLAS library found (tried ${candidates.join(', ')}; install libopenblas0-pthread or set CREPE_BLAS_LIB)`,
    );
  }
  const fn = <T>(decl: string): T | null => {
    try {
      return lib!.func(decl) as unknown as T;
    } catch {
      return null;
    }
  };
  // void* operands: koffi hands a typed array's own memory to C (no copy in or out), which is
  // what lets the product read and write the wasm heap in place
  const sgemm = fn<Sgemm>(
    'void cblas_sgemm(int order, int transA, int transB, int m, int n, int k, float alpha, void *a, int lda, void *b, int ldb, float beta, void *c, int ldc)',
  );
  if (!sgemm) throw new Error(`${path} has no cblas_sgemm`);
  const getConfig = fn<() => string>('const char *openblas_get_config()');
  const setNum = fn<(n: number) => void>('void openblas_set_num_threads(int n)');
  const getNum = fn<() => number>('int openblas_get_num_threads()');
  let name = path;
  if (getConfig) {
    const m = /OpenBLAS\s+([0-9][\w.]*)/.exec(getConfig() ?? '');
    name = m ? `OpenBLAS ${m[1]}` : 'OpenBLAS';
  }
  loaded = {
    path,
    name,
    sgemm,
    setThreads: (n) => setNum?.(n),
    threads: () => (getNum ? getNum() : null),
  };
  return loaded;
}

/** The minimal view of the wasm backend that the kernels use (tfjs-backend-wasm's BackendWasm). */
interface WasmBackendLike {
  dataIdMap: { get(id: unknown): { memoryOffset: number; shape: number[] } };
  wasm: { HEAPU8: Uint8Array };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
}

interface Originals {
  batchMatMul: tf.KernelConfig;
  fusedMatMul: tf.KernelConfig;
}

let originals: Originals | null = null;
/** Products with fewer multiply-adds than this stay on wasm (call overhead dominates below it). */
let minMultiplyAdds = 0;
let nativeCalls = 0;

/** How many products went through the native kernel since the process started (tests, benches). */
export function nativeProductCount(): number {
  return nativeCalls;
}

/** Float32 view of `length` elements of the wasm heap at `byteOffset`, taken from the live buffer. */
function heapView(backend: WasmBackendLike, byteOffset: number, length: number): Float32Array {
  return new Float32Array(backend.wasm.HEAPU8.buffer, byteOffset, length);
}

interface ProductPlan {
  m: number;
  n: number;
  k: number;
  batch: number;
  /** Elements between consecutive batches of A and B (0: broadcast). */
  strideA: number;
  strideB: number;
  outShape: number[];
}

/**
 * The shape arithmetic of BatchMatMul (as tfjs-core defines it), or null when the batch dims do
 * not flatten to equal batches or a batch of one: those rare shapes stay on the wasm kernel.
 */
function planProduct(aShape: number[], bShape: number[], transposeA: boolean, transposeB: boolean): ProductPlan | null {
  const ar = aShape.length;
  const br = bShape.length;
  if (ar < 2 || br < 2) return null;
  const k = transposeA ? aShape[ar - 2] : aShape[ar - 1];
  const kB = transposeB ? bShape[br - 1] : bShape[br - 2];
  if (k !== kB) return null; // the wasm kernel throws tfjs's own message
  const m = transposeA ? aShape[ar - 1] : aShape[ar - 2];
  const n = transposeB ? bShape[br - 2] : bShape[br - 1];
  const batchA = tf.util.sizeFromShape(aShape.slice(0, -2));
  const batchB = tf.util.sizeFromShape(bShape.slice(0, -2));
  let outer: number[];
  try {
    outer = tf.broadcast_util.assertAndGetBroadcastShape(aShape.slice(0, -2), bShape.slice(0, -2));
  } catch {
    return null;
  }
  const batch = tf.util.sizeFromShape(outer);
  if (!((batchA === batch || batchA === 1) && (batchB === batch || batchB === 1))) return null;
  return {
    m, n, k, batch,
    strideA: batchA === 1 ? 0 : m * k,
    strideB: batchB === 1 ? 0 : k * n,
    outShape: [...outer, m, n],
  };
}

/** C[b] = op(A[b]) · op(B[b]) for every batch, row-major, into the output tensor's memory. */
function gemmInto(
  blas: Blas,
  backend: WasmBackendLike,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  out: tf.TensorInfo,
  p: ProductPlan,
  transposeA: boolean,
  transposeB: boolean,
): void {
  const { m, n, k } = p;
  // offsets and views only now: allocating the output may have grown (and so replaced) the heap
  const aOff = backend.dataIdMap.get(a.dataId).memoryOffset;
  const bOff = backend.dataIdMap.get(b.dataId).memoryOffset;
  const cOff = backend.dataIdMap.get(out.dataId).memoryOffset;
  if (k === 0) {
    heapView(backend, cOff, p.batch * m * n).fill(0);
    return;
  }
  const lda = transposeA ? m : k;
  const ldb = transposeB ? k : n;
  const tA = transposeA ? CBLAS_TRANS : CBLAS_NO_TRANS;
  const tB = transposeB ? CBLAS_TRANS : CBLAS_NO_TRANS;
  for (let i = 0; i < p.batch; i++) {
    const av = heapView(backend, aOff + 4 * i * p.strideA, m * k);
    const bv = heapView(backend, bOff + 4 * i * p.strideB, k * n);
    const cv = heapView(backend, cOff + 4 * i * m * n, m * n);
    blas.sgemm(CBLAS_ROW_MAJOR, tA, tB, m, n, k, 1, av, lda, bv, ldb, 0, cv, n);
  }
  nativeCalls += 1;
}

function nativeBatchMatMul(blas: Blas, original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b } = args.inputs as { a: tf.TensorInfo; b: tf.TensorInfo };
    const { transposeA, transposeB } = args.attrs as { transposeA: boolean; transposeB: boolean };
    const backend = args.backend as unknown as WasmBackendLike;
    const p = a.dtype === 'float32' && b.dtype === 'float32' ? planProduct(a.shape, b.shape, transposeA, transposeB) : null;
    if (!p || p.batch * p.m * p.n * p.k < minMultiplyAdds || p.batch * p.m * p.n === 0) return original(args);
    const out = backend.makeOutput(p.outShape, 'float32');
    gemmInto(blas, backend, a, b, out, p, transposeA, transposeB);
    return out;
  };
}

/**
 * _FusedMatMul: the product, then a rank-1 bias, then linear or relu, as the wasm kernel does
 * (it rejects any other bias rank). Other activations go to the wasm kernel.
 */
function nativeFusedMatMul(blas: Blas, original: tf.KernelFunc): tf.KernelFunc {
  return (args) => {
    const { a, b, bias, preluActivationWeights } = args.inputs as Record<string, tf.TensorInfo | undefined>;
    const { transposeA, transposeB, activation } = args.attrs as { transposeA: boolean; transposeB: boolean; activation: string };
    const backend = args.backend as unknown as WasmBackendLike;
    const simple =
      a!.dtype === 'float32' && b!.dtype === 'float32' && preluActivationWeights == null &&
      (activation === 'linear' || activation === 'relu') &&
      (bias == null || (bias.shape.length === 1 && bias.dtype === 'float32'));
    const p = simple ? planProduct(a!.shape, b!.shape, transposeA, transposeB) : null;
    // the wasm kernel adds a bias correctly only to an untransposed product of batch 1 (tfjs
    // 4.22: off by up to 1.7 with a transpose or a batch of 3); the others stay on it, so the
    // two engines compute the same
    if (!p || (bias != null && (bias.shape[0] !== p.n || p.batch > 1 || transposeA || transposeB)) || p.batch * p.m * p.n * p.k < minMultiplyAdds || p.batch * p.m * p.n === 0) {
      return original(args);
    }
    const out = backend.makeOutput(p.outShape, 'float32');
    gemmInto(blas, backend, a!, b!, out, p, transposeA, transposeB);
    const c = heapView(backend, backend.dataIdMap.get(out.dataId).memoryOffset, p.batch * p.m * p.n);
    const bv = bias ? heapView(backend, backend.dataIdMap.get(bias.dataId).memoryOffset, bias.shape[0]) : null;
    const relu = activation === 'relu';
    if (bv || relu) {
      for (let r = 0; r < p.batch * p.m; r++) {
        const base = r * p.n;
        for (let j = 0; j < p.n; j++) {
          let v = c[base + j];
          if (bv) v = Math.fround(v + bv[j]);
          if (relu && v < 0) v = 0;
          c[base + j] = v;
        }
      }
    }
    return out;
  };
}

function replaceKernel(name: string, kernelFunc: tf.KernelFunc): void {
  tf.unregisterKernel(name, 'wasm');
  tf.registerKernel({ kernelName: name, backendName: 'wasm', kernelFunc });
}

/** Route the wasm backend's products through `blas` (the wasm backend must be initialised). */
export function enableBlasKernels(blas: Blas, opts: { minMultiplyAdds?: number } = {}): void {
  if (!originals) {
    const bm = tf.getKernel(tf.BatchMatMul, 'wasm');
    const fm = tf.getKernel(tf._FusedMatMul, 'wasm');
    if (!bm || !fm) throw new Error('the wasm backend has no BatchMatMul/_FusedMatMul kernel to replace');
    originals = { batchMatMul: bm, fusedMatMul: fm };
  }
  minMultiplyAdds = opts.minMultiplyAdds ?? minMultiplyAdds;
  replaceKernel(tf.BatchMatMul, nativeBatchMatMul(blas, originals.batchMatMul.kernelFunc));
  replaceKernel(tf._FusedMatMul, nativeFusedMatMul(blas, originals.fusedMatMul.kernelFunc));
}

/** Put the wasm backend's own product kernels back. */
export function disableBlasKernels(): void {
  if (!originals) return;
  replaceKernel(tf.BatchMatMul, originals.batchMatMul.kernelFunc);
  replaceKernel(tf._FusedMatMul, originals.fusedMatMul.kernelFunc);
}

/** True while the native kernels are registered. */
export function blasKernelsEnabled(): boolean {
  return originals !== null && tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc !== originals.batchMatMul.kernelFunc;
}

/** Deterministic values in [-1, 1) (no crepe RNG: this layer sits below util's users' concepts). */
function checkValues(n: number, seed: number): Float32Array {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/**
 * Compare the native products with the wasm kernels on small cases that cover every transpose,
 * a batch, a broadcast batch, a fused bias + relu and a product larger than the BLAS's blocking.
 * Returns null when they agree (relative to each result's largest magnitude, 1e-5), else a
 * description of the first disagreement. Leaves the kernels as it found them.
 */
export function selfCheck(blas: Blas): string | null {
  const cases: { a: number[]; b: number[]; tA: boolean; tB: boolean; fused?: boolean }[] = [
    { a: [37, 53], b: [53, 29], tA: false, tB: false },
    { a: [53, 37], b: [53, 29], tA: true, tB: false },
    { a: [37, 53], b: [29, 53], tA: false, tB: true },
    { a: [53, 37], b: [29, 53], tA: true, tB: true },
    { a: [3, 17, 40], b: [3, 40, 21], tA: false, tB: false },
    { a: [1, 17, 40], b: [4, 21, 40], tA: false, tB: true },
    { a: [2, 2, 9, 40], b: [40, 11], tA: false, tB: false },
    { a: [17, 40], b: [40, 21], tA: false, tB: false, fused: true },
    { a: [300, 520], b: [520, 260], tA: false, tB: false },
  ];
  const previous = [tf.getKernel(tf.BatchMatMul, 'wasm')?.kernelFunc, tf.getKernel(tf._FusedMatMul, 'wasm')?.kernelFunc];
  const run = (): Float32Array[] =>
    cases.map((c, i) => {
      const t = tf.tidy(() => {
        const a = tf.tensor(checkValues(tf.util.sizeFromShape(c.a), 11 + i), c.a);
        const b = tf.tensor(checkValues(tf.util.sizeFromShape(c.b), 101 + i), c.b);
        if (c.fused) {
          const bias = tf.tensor1d(checkValues(c.tB ? c.b[c.b.length - 2] : c.b[c.b.length - 1], 7));
          return tf.fused.matMul({ a, b, transposeA: c.tA, transposeB: c.tB, bias, activation: 'relu' });
        }
        return tf.matMul(a, b, c.tA, c.tB);
      });
      const values = t.dataSync() as Float32Array;
      t.dispose();
      return values;
    });
  const threshold = minMultiplyAdds;
  try {
    disableBlasKernels();
    const ref = run();
    enableBlasKernels(blas, { minMultiplyAdds: 0 });
    const before = nativeCalls;
    const got = run();
    if (nativeCalls - before !== cases.length) return `only ${nativeCalls - before} of ${cases.length} check products took the native path`;
    for (let i = 0; i < cases.length; i++) {
      let scale = 0;
      let worst = 0;
      for (let j = 0; j < ref[i].length; j++) {
        scale = Math.max(scale, Math.abs(ref[i][j]));
        const d = Math.abs(ref[i][j] - got[i][j]);
        worst = Number.isNaN(d) ? Infinity : Math.max(worst, d);
      }
      if (got[i].length !== ref[i].length || worst > 1e-5 * Math.max(scale, 1e-30)) {
        const c = cases[i];
        return `product ${JSON.stringify(c.a)} x ${JSON.stringify(c.b)} (transposeA ${c.tA}, transposeB ${c.tB}) differs from the wasm kernel by ${worst.toExponential(2)} (scale ${scale.toExponential(2)})`;
      }
    }
    return null;
  } catch (e) {
    return `the check products failed: ${String((e as Error).message).split('\n')[0]}`;
  } finally {
    minMultiplyAdds = threshold;
    if (previous[0] && previous[1]) {
      replaceKernel(tf.BatchMatMul, previous[0]);
      replaceKernel(tf._FusedMatMul, previous[1]);
    }
  }
}
