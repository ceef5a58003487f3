import { ChildProcess, fork } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { BackendChoice, workerEnv } from '../backend';
import { projectRoot } from '../assets';
import { CrepeError } from '../errors';
import { saveModel } from '../model/save';
import { WeightSource } from '../model/types';
import { ActivationStorage } from '../plan/spill';
import { ProgressFn } from './perplexity';
import { WorkerReply, WorkerRequest } from './worker';
import { RequestScore, TokenRequest } from './zeroshot/loglikelihood';

/** The compiled worker (tests run from TypeScript sources, so always use dist/). */
function workerScript(): string {
  const p = path.join(projectRoot(), 'dist', 'lib', 'eval', 'worker.js');
  if (!fs.existsSync(p)) throw new Error(`evaluation worker not built: ${p} (run npm run build)`);
  return p;
}

interface PoolWorker {
  /** 1-based, as named in messages. */
  number: number;
  child: ChildProcess;
  /** What the worker is doing, for the message when it dies. */
  task: string;
  /** Settles the request in flight on this worker. */
  onReply: (m: WorkerReply) => void;
  /** Called once if the worker process ends while a request is in flight. */
  onDeath: (e: Error) => void;
}

/** Contiguous window ranges [start, end) for `workers` workers, as even as possible. */
export function windowRanges(count: number, workers: number): [number, number][] {
  const out: [number, number][] = [];
  for (let k = 0; k < workers; k++) out.push([Math.floor((k * count) / workers), Math.floor(((k + 1) * count) / workers)]);
  return out;
}

/**
 * Worker processes that each hold the model (wasm is single-threaded per process). Start once,
 * `run` any number of window batches, `close`. Each worker gets a contiguous range of windows
 * and results come back by index, so the order of the sums is fixed whatever the number of
 * workers. A worker that dies (killed, out of memory) fails the run at once with a message naming
 * it and its windows; the other workers are stopped. Workers exit by themselves when this
 * process dies (they watch the IPC channel between windows).
 */
export class EvalPool {
  private closed = false;

  private constructor(private readonly workers: PoolWorker[]) {}

  static async start(
    modelPath: string,
    tokenizerPath: string,
    jobs: number,
    backend: BackendChoice,
    streaming?: { storage: ActivationStorage; spillDir?: string },
  ): Promise<EvalPool> {
    const workers: PoolWorker[] = [];
    const pool = new EvalPool(workers);
    try {
      await Promise.all(
        Array.from({ length: jobs }, (_, k) => {
          // stderr is piped, not inherited: a dying worker's engine output (V8's out-of-memory
          // report, XNNPACK messages) must not reach the user; CREPE_DEBUG passes it through.
          const child = fork(workerScript(), [], { stdio: ['ignore', 'inherit', 'pipe', 'ipc'], env: workerEnv(jobs, { parentStarted: true }) });
          child.stderr?.on('data', (d: Buffer) => {
            if (process.env.CREPE_DEBUG) process.stderr.write(d);
          });
          const w: PoolWorker = { number: k + 1, child, task: 'loading the model', onReply: () => {}, onDeath: () => {} };
          workers.push(w);
          child.on('message', (m: WorkerReply) => w.onReply(m));
          child.on('exit', (code, signal) => {
            if (pool.closed) return;
            w.onDeath(new CrepeError(`evaluation worker ${w.number} of ${jobs} (pid ${child.pid}) died (${deathCause(code, signal)}) while ${w.task}`, 1));
          });
          // A failed send (the worker already gone) is reported by the exit handler.
          child.on('error', () => undefined);
          return new Promise<void>((resolve, reject) => {
            w.onReply = (m) => (m.type === 'ready' ? resolve() : reject(replyError(m)));
            w.onDeath = reject;
            const init: WorkerRequest = { type: 'init', model: modelPath, tokenizer: tokenizerPath, backend, ...(streaming ? { streaming } : {}) };
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
    const ranges = windowRanges(windows.length, this.workers.length);
    const t0 = process.hrtime.bigint();
    let done = 0;
    try {
      await Promise.all(
        this.workers.map((w, k) => {
          const [start, end] = ranges[k];
          if (start === end) return Promise.resolve();
          return new Promise<void>((resolve, reject) => {
            let remaining = end - start;
            w.task = `evaluating windows ${start}-${end - 1} of ${windows.length}`;
            w.onDeath = reject;
            w.onReply = (m) => {
              if (m.type !== 'result') return reject(replyError(m));
              nlls[m.index] = m.nll;
              done++;
              onProgress?.(done, windows.length, (done * (windows[0].length - 1)) / (Number(process.hrtime.bigint() - t0) / 1e9));
              if (--remaining === 0) {
                w.task = 'idle';
                w.onDeath = () => {};
                resolve();
              }
            };
            const indices = Array.from({ length: end - start }, (_, i) => start + i);
            const req: WorkerRequest = { type: 'windows', indices, windows: indices.map((i) => Array.from(windows[i])) };
            w.child.send(req);
          });
        }),
      );
    } catch (e) {
      // One worker failed: the others' results are useless, stop them now rather than at the end of their batch.
      this.close(true);
      throw e;
    }
    return nlls;
  }

  /**
   * Zero-shot log-likelihood batches (see zeroshot/loglikelihood.ts), handed out one at a time to
   * whichever worker is free (batches differ in cost); results come back by batch index, and
   * each batch is computed whole by one worker, so the scores do not depend on the worker count.
   * A dead or failing worker fails the run at once, as in `run`.
   */
  async scoreBatches(batches: readonly (readonly TokenRequest[])[][], onBatch?: (index: number) => void): Promise<RequestScore[][][]> {
    const out = new Array<RequestScore[][]>(batches.length);
    let next = 0;
    try {
      await Promise.all(
        this.workers.map(
          (w) =>
            new Promise<void>((resolve, reject) => {
              w.onDeath = reject;
              const sendNext = (): void => {
                if (next >= batches.length) {
                  w.task = 'idle';
                  w.onDeath = () => {};
                  return resolve();
                }
                const index = next++;
                w.task = `scoring zero-shot batch ${index + 1} of ${batches.length}`;
                const req: WorkerRequest = {
                  type: 'loglikelihood',
                  index,
                  items: batches[index].map((reqs) => reqs.map((r) => ({ input: Array.from(r.input), cont: Array.from(r.cont) }))),
                };
                w.child.send(req);
              };
              w.onReply = (m) => {
                if (m.type !== 'scores') return reject(replyError(m));
                out[m.index] = m.scores;
                onBatch?.(m.index);
                sendNext();
              };
              sendNext();
            }),
        ),
      );
    } catch (e) {
      this.close(true);
      throw e;
    }
    return out;
  }

  /** Let the workers exit (they leave when the channel closes); `kill` also signals them. */
  close(kill = false): void {
    this.closed = true;
    for (const w of this.workers) {
      if (w.child.connected) w.child.disconnect();
      if (kill && w.child.exitCode === null && w.child.signalCode === null) w.child.kill('SIGKILL');
    }
  }
}

function deathCause(code: number | null, signal: NodeJS.Signals | null): string {
  if (signal === 'SIGKILL') return 'SIGKILL, e.g. killed or out of memory';
  return signal ?? `exit code ${code}`;
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
  streaming?: { storage: ActivationStorage; spillDir?: string },
): Promise<number[]> {
  const pool = await EvalPool.start(modelPath, tokenizerPath, Math.min(jobs, windows.length), backend, streaming);
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
