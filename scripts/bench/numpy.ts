/**
 * The numpy reference the eval section compares with: scripts/reference/llama2c_numpy.py, an
 * independent float32 implementation of the llama2.c forward pass, run in its own process when
 * python3 with numpy is available (never required: sections report SKIP without it).
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { projectRoot } from '../../lib/assets';

/** `python` if it runs and imports numpy, else null. */
export function findNumpyPython(candidates: string[] = ['python3', 'python']): string | null {
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import numpy'], { stdio: 'ignore', timeout: 30_000 });
    if (r.status === 0) return py;
  }
  return null;
}

export const NUMPY_REFERENCE = path.join('scripts', 'reference', 'llama2c_numpy.py');

/**
 * One run of the numpy reference (`llama2c_numpy.py bench MODEL SEQLEN WINDOWS`: a warm-up
 * window, then `windows` windows of random ids) in a fresh process.
 */
export function numpyEvalPass(
  python: string,
  modelBin: string,
  seqlen: number,
  windows: number,
  threads?: number,
): { tokensPerSecond: number; numpy: string } {
  const env = { ...process.env };
  if (threads !== undefined) {
    for (const k of ['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS']) env[k] = String(threads);
  }
  const script = path.join(projectRoot(), NUMPY_REFERENCE);
  const r = spawnSync(python, [script, 'bench', modelBin, String(seqlen), String(windows)], { encoding: 'utf8', env, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${python} ${NUMPY_REFERENCE} bench failed: ${(r.stderr || String(r.error)).trim().split('\n').pop()}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { tokens_per_second: number; numpy: string };
  return { tokensPerSecond: out.tokens_per_second, numpy: out.numpy };
}
