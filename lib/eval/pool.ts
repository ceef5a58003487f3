import { ChildProcess, fork } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BackendChoice } from '../backend';
import { projectRoot } from '../assets';
import { CrepeError } from '../errors';
import { saveModel } from '../model/save';
import { WeightSource } from '../model/types';
import { ProgressFn } from './perplexity';
import { WorkerReply, WorkerRequest } from './worker';

/** The compiled worker (tests run from TypeScript sources, so always use dist/). */
function workerScript(): string {
  const p = path.join(projectRoot(), 'dist', 'lib', 'eval', 'worker.js');
  if (!fs.existsSync(p)) throw new Error(`evaluation worker not built: ${p} (run npm run build)`);
  return p;
}

/**
 * Per-window NLL sums computed by `jobs` worker processes, each holding the model. Windows are
 * dealt round-robin; results come back by index, so the order of the sums is fixed.
 */
export async function windowNllsParallel(
  modelPath: string,
  tokenizerPath: string,
  windows: Int32Array[],
  jobs: number,
  backend: BackendChoice,
  onProgress?: ProgressFn,
): Promise<number[]> {
  const n = Math.min(jobs, windows.length);
  const nlls = new Array<number>(windows.length).fill(NaN);
  const workers: ChildProcess[] = [];
  const t0 = process.hrtime.bigint();
  let done = 0;
  try {
    await Promise.all(
      Array.from({ length: n }, (_, k) => {
        const indices = windows.map((_, i) => i).filter((i) => i % n === k);
        const child = fork(workerScript(), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
        workers.push(child);
        return new Promise<void>((resolve, reject) => {
          let remaining = indices.length;
          child.on('message', (m: WorkerReply) => {
            if (m.type === 'ready') {
              const req: WorkerRequest = { type: 'windows', indices, windows: indices.map((i) => Array.from(windows[i])) };
              child.send(req);
            } else if (m.type === 'result') {
              nlls[m.index] = m.nll;
              done++;
              const secs = Number(process.hrtime.bigint() - t0) / 1e9;
              onProgress?.(done, windows.length, (done * (windows[0].length - 1)) / secs);
              if (--remaining === 0) resolve();
            } else reject(m.user ? new CrepeError(m.message) : new Error(m.message));
          });
          child.on('exit', (code) => {
            if (remaining > 0) reject(new Error(`evaluation worker exited with code ${code}`));
          });
          const init: WorkerRequest = { type: 'init', model: modelPath, tokenizer: tokenizerPath, backend };
          child.send(init);
        });
      }),
    );
  } finally {
    for (const w of workers) if (w.connected) w.disconnect();
  }
  return nlls;
}

/**
 * Give workers a file they can open: the original checkpoint when `source` is it, else a
 * temporary copy (pruned weights live only in this process). Returns the path and a cleanup.
 */
export function sourceForWorkers(source: WeightSource, originalPath: string, isOriginal: boolean): { path: string; cleanup: () => void } {
  if (isOriginal) return { path: originalPath, cleanup: () => {} };
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-eval-'));
  const file = source.format === 'llama2c' ? path.join(dir, 'model.bin') : path.join(dir, 'model');
  saveModel(source, file);
  return { path: file, cleanup: () => fs.rmSync(dir, { recursive: true, force: true }) };
}
