import * as tf from '@tensorflow/tfjs';
import { CrepeError } from '../errors';
import { allCores, Blas, enableBlasKernels, loadBlas, selfCheck } from './blas';

export { allCores } from './blas';

/**
 * auto: a native tfjs binding, else wasm with its products through a native BLAS ('blas'), else
 * plain wasm. blas: wasm + BLAS or a one-line error. wasm: plain wasm (the portable reference).
 * cpu: tfjs's JavaScript backend, for debugging only.
 */
export type BackendChoice = 'auto' | 'blas' | 'wasm' | 'cpu' | 'tensorflow';
export const BACKEND_CHOICES: readonly BackendChoice[] = ['auto', 'blas', 'wasm', 'cpu', 'tensorflow'];

/** The --backend default: CREPE_BACKEND when set (the test suite pins plain wasm with it), else auto. */
export function defaultBackendChoice(): BackendChoice {
  const env = process.env.CREPE_BACKEND as BackendChoice | undefined;
  return env && BACKEND_CHOICES.includes(env) ? env : 'auto';
}

/** Try to load a native TensorFlow binding; they are optional peers and absent on most machines. */
function tryRequireNative(): string | null {
  for (const pkg of ['@tensorflow/tfjs-node-gpu', '@tensorflow/tfjs-node']) {
    try {
      require(pkg);
      return pkg;
    } catch {
      /* not installed: fall through */
    }
  }
  return null;
}

let active: string | null = null;
let blas: Blas | null = null;
let threadCount = 1;

/**
 * Threads for the native BLAS: `--threads` (which sets CREPE_THREADS, so worker processes see it
 * too), else all cores. Worker pools divide it among their workers (workerEnv).
 */
export function configuredThreads(): number {
  const env = Number(process.env.CREPE_THREADS);
  return Number.isInteger(env) && env >= 1 ? env : allCores();
}

/** Set the thread count of this process and of the workers it starts later (the --threads flag). */
export function setThreads(n: number): void {
  if (!Number.isInteger(n) || n < 1) throw new CrepeError(`--threads must be a positive integer (got ${n})`);
  process.env.CREPE_THREADS = String(n);
  threadCount = n;
  blas?.setThreads(n);
}

/**
 * The environment for one of `jobs` worker processes: the threads divided among them (at least
 * one each), so that N workers with BLAS threads do not oversubscribe the cores.
 */
export function workerEnv(jobs: number, opts: { parentStarted?: boolean } = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, CREPE_THREADS: String(Math.max(1, Math.floor(configuredThreads() / Math.max(1, jobs)))) };
  // a parent that started an engine itself has already said why the BLAS is unavailable
  if (opts.parentStarted) env.CREPE_QUIET_FALLBACK = '1';
  return env;
}

/** Load the BLAS and route the wasm products through it; the reason it cannot, or null on success. */
function tryBlas(): string | null {
  let lib: Blas;
  try {
    lib = loadBlas();
  } catch (e) {
    return (e as Error).message;
  }
  threadCount = configuredThreads();
  lib.setThreads(threadCount);
  const disagreement = selfCheck(lib);
  if (disagreement) return `${lib.name} (${lib.path}) failed the self-check against the wasm kernel: ${disagreement}`;
  enableBlasKernels(lib);
  blas = lib;
  return null;
}

/**
 * Select and initialise the tfjs backend once per process (see BackendChoice). When auto cannot
 * use the BLAS it says why in one line on stderr and runs plain wasm; an explicit 'blas' that
 * cannot is a CrepeError.
 */
export async function initBackend(choice: BackendChoice = 'auto'): Promise<string> {
  if (active !== null) return active;
  if (!BACKEND_CHOICES.includes(choice)) {
    throw new CrepeError(`unknown backend '${choice}' (choose one of ${BACKEND_CHOICES.join(', ')})`);
  }
  let name: string;
  if (choice === 'tensorflow' || choice === 'auto') {
    const native = tryRequireNative();
    if (native) name = 'tensorflow';
    else if (choice === 'tensorflow') {
      throw new CrepeError('backend tensorflow needs @tensorflow/tfjs-node-gpu or @tensorflow/tfjs-node installed');
    } else name = 'wasm';
  } else name = choice === 'blas' ? 'wasm' : choice;
  if (name === 'wasm') require('@tensorflow/tfjs-backend-wasm');
  const ok = await tf.setBackend(name);
  if (!ok) throw new CrepeError(`backend ${name} failed to initialise`);
  await tf.ready();
  if (name === 'wasm' && (choice === 'auto' || choice === 'blas')) {
    const why = tryBlas();
    if (why && choice === 'blas') throw new CrepeError(`backend blas unavailable: ${why}`);
    if (why && !process.env.CREPE_QUIET_FALLBACK) process.stderr.write(`crepe: native BLAS unavailable, using plain wasm: ${why}\n`);
  }
  active = blas ? 'blas' : name;
  return active;
}

/** The engine in use, with what decides its speed, for recording beside every result. */
export function backendDescription(): string {
  const name = tf.getBackend();
  if (name === 'wasm') {
    const simd = tf.env().getBool('WASM_HAS_SIMD_SUPPORT');
    const base = `wasm${simd ? '+simd' : ''}`;
    return blas ? `${base}+blas[${blas.name} ${threadCount} thread${threadCount === 1 ? '' : 's'}]` : base;
  }
  return name;
}

/** The loaded BLAS (null on any other engine), for benches. */
export function activeBlas(): Blas | null {
  return blas;
}
