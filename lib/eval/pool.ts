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

interface PoolWorker {
  child: ChildProcess;
  /** Settles the request in flight on this worker. */
  onReply: (m: WorkerReply) => void;
}

/**
 * Worker processes that each hold the model (wasm is single-threaded per process). Start once,
 * `run` any number of window batches, `close`. Windows are dealt round-robin and results come
 * back by index, so the order of the sums is fixed whatever the number of workers.
 */
export class EvalPool {
  private constructor(private readonly workers: PoolWorker[]) {}

  static async start(modelPath: string, tokenizerPath: string, jobs: number, backend: BackendChoice): Promise<EvalPool> {
    const workers: PoolWorker[] = [];
    const pool = new EvalPool(workers);
    try {
      await Promise.all(
        Array.from({ length: jobs }, () => {
          const child = fork(workerScript(), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
          const w: PoolWorker = { child, onReply: () => {} };
          workers.push(w);
          child.on('message', (m: WorkerReply) => w.onReply(m));
          return new Promise<void>((resolve, reject) => {
            w.onReply = (m) => (m.type === 'ready' ? resolve() : reject(replyError(m)));
            child.on('exit', (code) => reject(new Error(`evaluation worker exited with code ${code}`)));
            const init: WorkerRequest = { type: 'init', model: modelPath, tokenizer: tokenizerPath, backend };
            child.send(init);
          });
        }),
      );
    } catch (e) {
      pool.close();
      throw e;
    }
    return pool;
  }

  get size(): number {
    return this.workers.length;
  }

  /** Per-window NLL sums of `windows`, in window order. */
  async run(windows: Int32Array[], onProgress?: ProgressFn): Promise<number[]> {
    const nlls = new Array<number>(windows.length).fill(NaN);
    const n = this.workers.length;
    const t0 = process.hrtime.bigint();
    let done = 0;
    await Promise.all(
      this.workers.map((w, k) => {
        const indices = windows.map((_, i) => i).filter((i) => i % n === k);
        if (indices.length === 0) return Promise.resolve();
        return new Promise<void>((resolve, reject) => {
          let remaining = indices.length;
          w.onReply = (m) => {
            if (m.type !== 'result') return reject(replyError(m));
            nlls[m.index] = m.nll;
            done++;
            onProgress?.(done, windows.length, (done * (windows[0].length - 1)) / (Number(process.hrtime.bigint() - t0) / 1e9));
            if (--remaining === 0) resolve();
          };
          const req: WorkerRequest = { type: 'windows', indices, windows: indices.map((i) => Array.from(windows[i])) };
          w.child.send(req);
        });
      }),
    );
    return nlls;
  }

  close(): void {
    for (const w of this.workers) if (w.child.connected) w.child.disconnect();
  }
}

function replyError(m: WorkerReply): Error {
  if (m.type === 'error') return m.user ? new CrepeError(m.message) : new Error(m.message);
  return new Error(`unexpected reply from evaluation worker: ${m.type}`);
}

/** Per-window NLL sums computed by `jobs` worker processes started for this call. */
export async function windowNllsParallel(
  modelPath: string,
  tokenizerPath: string,
  windows: Int32Array[],
  jobs: number,
  backend: BackendChoice,
  onProgress?: ProgressFn,
): Promise<number[]> {
  const pool = await EvalPool.start(modelPath, tokenizerPath, Math.min(jobs, windows.length), backend);
  try {
    return await pool.run(windows, onProgress);
  } finally {
    pool.close();
  }
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
