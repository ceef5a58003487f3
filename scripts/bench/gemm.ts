/**
 * Section "gemm": matrix-product throughput at LLaMA-2-7B shapes, and a 7B-shaped evaluation,
 * beside numpy (and torch when installed) in the same run, on one thread and on all threads.
 *
 * A pass is one window of `CREPE_GEMM_TOKENS` tokens (default 2048) through the seven linears of
 * a block (q, k, v, o: 4096 x 4096; gate, up: 11008 x 4096; down: 4096 x 11008), x [T, in] times
 * the pre-transposed weight [in, out] as the runtime does it. Rows:
 *   crepe (tfjs, blas kernel)  tf.matMul on wasm tensors through the BLAS kernel (lib/backend/blas.ts)
 *   OpenBLAS direct            the same library's cblas_sgemm on plain Float32Arrays (no tfjs)
 *   numpy / torch              scripts/reference/gemm_bench.py in a child process
 *   crepe (plain wasm)         the wasm kernel (XNNPACK), one thread, on T/8 tokens (it is ~10x slower)
 * Then the evaluation of a 7B-shaped model on 512-token windows (one synthetic block's forward
 * through forwardBlock and the head, timed after a warm-up, loading excluded) as GFLOP/s of the
 * whole model (32 blocks + head), against numpy's one-thread GEMM rate of the same run.
 * Wall seconds throughout (BLAS threads run in parallel); the load average is printed because
 * other work on the machine skews every absolute number: compare the ratios.
 *
 * Settings by environment: CREPE_GEMM_TOKENS=2048, CREPE_GEMM_EVAL_TOKENS=512,
 * CREPE_GEMM_THREADS=1,<all cores> (thread counts to measure).
 */
import { spawnSync } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { activeBlas, allCores, backendDescription, setThreads } from '../../lib/backend';
import { Blas, disableBlasKernels, enableBlasKernels } from '../../lib/backend/blas';
import { projectRoot } from '../../lib/assets';
import { disposeBlock, disposeWindowTables, forwardBlock, headLogProbs, makeBlockTensors, makeWindowTables, transpose } from '../../lib/model/runtime';
import { blockForwardFlops, headFlops } from '../../lib/plan/cost';
import { Rng } from '../../lib/util/random';
import { BenchCheck, BenchSection, BenchTable, median } from './framework';
import { LLAMA2_7B, SyntheticSource } from './scale';

/** [out, in] of the seven linears of a LLaMA-2-7B block, in execution order. */
const LINEARS: readonly [number, number][] = [
  [4096, 4096], [4096, 4096], [4096, 4096], [4096, 4096], [11008, 4096], [11008, 4096], [4096, 11008],
];
const PASS_PARAMS = LINEARS.reduce((s, [o, i]) => s + o * i, 0);

function envInt(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!(Number.isInteger(v) && v > 0)) throw new Error(`${name} must be a positive integer`);
  return v;
}

function uniform(n: number, rng: Rng): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = 2 * rng.next() - 1;
  return out;
}

/** Median GFLOP/s of `repeats` timed passes after one warm-up pass. */
function rate(flops: number, repeats: number, pass: () => void): number {
  pass();
  const r: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    pass();
    r.push(flops / (Number(process.hrtime.bigint() - t0) / 1e9) / 1e9);
  }
  return median(r);
}

/** The seven products on tfjs tensors (whatever kernel is registered). */
function tfjsRate(tokens: number, repeats: number, rng: Rng): number {
  const weights = new Map<string, tf.Tensor2D>();
  const inputs = new Map<number, tf.Tensor2D>();
  for (const [o, i] of LINEARS) {
    if (!weights.has(`${o}x${i}`)) weights.set(`${o}x${i}`, tf.tensor2d(uniform(i * o, rng), [i, o]));
    if (!inputs.has(i)) inputs.set(i, tf.tensor2d(uniform(tokens * i, rng), [tokens, i]));
  }
  try {
    return rate(2 * tokens * PASS_PARAMS, repeats, () => {
      for (const [o, i] of LINEARS) tf.matMul(inputs.get(i)!, weights.get(`${o}x${i}`)!).dispose();
    });
  } finally {
    tf.dispose([...weights.values(), ...inputs.values()]);
  }
}

/** The seven products straight through the library's cblas_sgemm on host arrays. */
function directRate(blas: Blas, tokens: number, repeats: number, rng: Rng): number {
  const weights = new Map<string, Float32Array>();
  const inputs = new Map<number, Float32Array>();
  for (const [o, i] of LINEARS) {
    if (!weights.has(`${o}x${i}`)) weights.set(`${o}x${i}`, uniform(i * o, rng));
    if (!inputs.has(i)) inputs.set(i, uniform(tokens * i, rng));
  }
  const out = new Float32Array(tokens * Math.max(...LINEARS.map(([o]) => o)));
  return rate(2 * tokens * PASS_PARAMS, repeats, () => {
    for (const [o, i] of LINEARS) blas.sgemm(101, 111, 111, tokens, o, i, 1, inputs.get(i)!, i, weights.get(`${o}x${i}`)!, o, 0, out, o);
  });
}

interface PythonRates {
  numpy: string;
  numpy_gflops: number;
  torch: string | null;
  torch_gflops?: number;
}

function pythonRates(python: string, tokens: number, threads: number, repeats: number): PythonRates {
  const env = { ...process.env };
  for (const k of ['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS']) env[k] = String(threads);
  const script = path.join(projectRoot(), 'scripts', 'reference', 'gemm_bench.py');
  const r = spawnSync(python, [script, String(tokens), String(threads), String(repeats)], { encoding: 'utf8', env, timeout: 1_800_000 });
  if (r.status !== 0) throw new Error(`${python} gemm_bench.py failed: ${(r.stderr || String(r.error)).trim().split('\n').pop()}`);
  return JSON.parse(r.stdout.trim().split('\n').pop() as string) as PythonRates;
}

/** One 7B-shaped block forward and the head on a `T`-token window: the model's GFLOP/s (32 blocks + head). */
function evalRate(T: number, repeats: number, log: (m: string) => void): { gflops: number; blockSeconds: number; headSeconds: number } {
  const cfg = { ...LLAMA2_7B, nLayers: 1 };
  const src = new SyntheticSource(cfg, 1);
  const rng = new Rng(7);
  const bt = makeBlockTensors(cfg, src.readBlock(0));
  const tables = makeWindowTables(cfg, T);
  const x = tf.tensor2d(uniform(T * cfg.dim, rng), [T, cfg.dim]);
  const time = (fn: () => void): number => {
    fn();
    const s: number[] = [];
    for (let i = 0; i < repeats; i++) {
      const t0 = process.hrtime.bigint();
      fn();
      s.push(Number(process.hrtime.bigint() - t0) / 1e9);
    }
    return median(s);
  };
  let blockSeconds: number;
  try {
    blockSeconds = time(() => forwardBlock(cfg, bt, tables, x).dispose());
  } finally {
    disposeBlock(bt);
    disposeWindowTables(tables);
  }
  const classifierT = tf.tensor2d(transpose(src.readClassifier(), cfg.vocabSize, cfg.dim), [cfg.dim, cfg.vocabSize]);
  const finalNorm = tf.tensor1d(src.readFinalNorm());
  const tokens = Int32Array.from({ length: T }, (_, k) => (k * 7919) % cfg.vocabSize);
  let headSeconds: number;
  try {
    headSeconds = time(() => headLogProbs(cfg, finalNorm, classifierT, x, tokens));
  } finally {
    tf.dispose([classifierT, finalNorm, x]);
  }
  const L = LLAMA2_7B.nLayers;
  const flops = L * blockForwardFlops(LLAMA2_7B, 1, T) + headFlops(LLAMA2_7B, 1, T);
  const gflops = flops / (L * blockSeconds + headSeconds) / 1e9;
  log(`gemm: 7B-shaped eval at ${T} tokens: block ${blockSeconds.toFixed(2)} s, head ${headSeconds.toFixed(2)} s, ${gflops.toFixed(1)} GFLOP/s`);
  return { gflops, blockSeconds, headSeconds };
}

export const gemmSection: BenchSection = {
  name: 'gemm',
  description: 'matrix products at LLaMA-2-7B shapes and a 7B-shaped evaluation, beside numpy/torch, on 1 and all threads',
  async run(opts) {
    const load0 = os.loadavg()[0];
    const tokens = envInt('CREPE_GEMM_TOKENS', 2048);
    const evalTokens = envInt('CREPE_GEMM_EVAL_TOKENS', 512);
    const threadList = (process.env.CREPE_GEMM_THREADS ?? `1,${allCores()}`).split(',').map(Number);
    const blas = activeBlas();
    const repeats = opts.repeats;
    const rng = new Rng(3);
    const checks: BenchCheck[] = [];
    const rows: Record<string, string | number | null>[] = [];
    const evalRows: Record<string, string | number | null>[] = [];
    let numpyOne: number | null = null;
    const evalByThreads = new Map<number, number>();
    for (const threads of [...new Set(threadList)]) {
      const row: Record<string, string | number | null> = { threads };
      if (blas) {
        setThreads(threads);
        opts.log(`gemm: ${threads} thread(s): crepe through the BLAS kernel`);
        row.crepe = tfjsRate(tokens, repeats, rng);
        opts.log(`gemm: ${threads} thread(s): OpenBLAS direct`);
        row.direct = directRate(blas, tokens, repeats, rng);
        row.vsDirect = (row.crepe as number) / (row.direct as number);
        checks.push({ name: `gemm: crepe within 80% of ${blas.name} on ${threads} thread(s)`, pass: (row.vsDirect as number) >= 0.8, detail: `${(row.crepe as number).toFixed(1)} vs ${(row.direct as number).toFixed(1)} GFLOP/s` });
      }
      if (opts.python) {
        opts.log(`gemm: ${threads} thread(s): numpy (and torch if installed)`);
        const py = pythonRates(opts.python, tokens, threads, repeats);
        row.numpy = py.numpy_gflops;
        row.torch = py.torch_gflops ?? null;
        if (threads === 1) numpyOne = py.numpy_gflops;
        if (row.crepe !== undefined) row.vsNumpy = (row.crepe as number) / py.numpy_gflops;
        if (row.crepe !== undefined && py.torch_gflops) row.vsTorch = (row.crepe as number) / py.torch_gflops;
        row.libs = `numpy ${py.numpy}${py.torch ? `, torch ${py.torch}` : ', no torch'}`;
      }
      if (blas || threads === 1) {
        opts.log(`gemm: ${threads} thread(s): 7B-shaped evaluation at ${evalTokens} tokens`);
        const e = evalRate(evalTokens, repeats, opts.log);
        evalByThreads.set(threads, e.gflops);
        evalRows.push({ engine: backendDescription(), threads, block: e.blockSeconds, head: e.headSeconds, gflops: e.gflops });
      }
      rows.push(row);
    }
    if (blas) setThreads(threadList[threadList.length - 1]);
    // plain wasm for scale: its own kernel, one thread, a shorter window
    let wasmRate: number | null = null;
    if (blas) disableBlasKernels();
    try {
      opts.log(`gemm: plain wasm kernel at ${Math.max(1, tokens >> 3)} tokens`);
      wasmRate = tfjsRate(Math.max(1, tokens >> 3), 1, rng);
    } finally {
      if (blas) enableBlasKernels(blas);
    }
    for (const r of rows) if (r.threads === 1) r.wasm = wasmRate;
    for (const [threads, g] of evalByThreads) {
      const row = evalRows.find((r) => r.threads === threads)!;
      row.vsNumpy1 = numpyOne ? g / numpyOne : null;
    }
    const best = Math.max(...evalByThreads.values());
    checks.push({
      name: '7B-shaped evaluation (512-token windows) at >= 0.5x numpy one-thread GEMM',
      pass: numpyOne === null ? null : best / numpyOne >= 0.5,
      detail: numpyOne === null ? 'no numpy' : `${best.toFixed(1)} GFLOP/s vs numpy ${numpyOne.toFixed(1)} on one thread: ${(best / numpyOne).toFixed(2)}x`,
    });
    const load1 = os.loadavg()[0];
    const gemmTable: BenchTable = {
      title: `[gemm] a ${tokens}-token window through the seven linears of a LLaMA-2-7B block (${((2 * tokens * PASS_PARAMS) / 1e9).toFixed(0)} GFLOP), GFLOP/s, median of ${repeats}, wall time`,
      columns: [
        { key: 'threads', header: 'threads' },
        { key: 'crepe', header: 'crepe (blas kernel)', digits: 1 },
        { key: 'direct', header: 'OpenBLAS direct', digits: 1 },
        { key: 'numpy', header: 'numpy', digits: 1 },
        { key: 'torch', header: 'torch', digits: 1 },
        { key: 'wasm', header: 'plain wasm', digits: 1 },
        { key: 'vsDirect', header: 'crepe/OpenBLAS', digits: 2 },
        { key: 'vsNumpy', header: 'crepe/numpy', digits: 2 },
        { key: 'vsTorch', header: 'crepe/torch', digits: 2 },
        { key: 'libs', header: 'python side' },
      ],
      rows,
      notes: [
        `crepe: tf.matMul through ${blas ? blas.name : 'no BLAS (engine ' + backendDescription() + ')'}; OpenBLAS direct: the same library's cblas_sgemm on host arrays, no tfjs; plain wasm: XNNPACK on ${Math.max(1, tokens >> 3)} tokens, one pass, one thread`,
        `load average ${load0.toFixed(2)} at the start, ${load1.toFixed(2)} at the end (${os.cpus().length} CPUs${load0 > os.cpus().length / 2 ? ', shared with other work: compare ratios, not absolute rates' : ''})`,
      ],
    };
    const evalTable: BenchTable = {
      title: `[gemm] evaluation of a LLaMA-2-7B-shaped model on ${evalTokens}-token windows (one block's forward x 32 + the head; loading excluded), wall s, median of ${repeats}`,
      columns: [
        { key: 'engine', header: 'engine' },
        { key: 'threads', header: 'threads' },
        { key: 'block', header: 'block s', digits: 2 },
        { key: 'head', header: 'head s', digits: 2 },
        { key: 'gflops', header: 'GFLOP/s', digits: 1 },
        { key: 'vsNumpy1', header: 'vs numpy 1 thread', digits: 2 },
      ],
      rows: evalRows,
      notes: [`FLOPs: 32 x (2 x T x 202.4M linear parameters + 4 x T^2 x 4096) + 2 x T x 4096 x 32000; numpy 1 thread: the GEMM rate of the table above, same run`],
    };
    return { tables: [gemmTable, evalTable], checks };
  },
};
