/**
 * Evaluation worker process: loads one model (resident on the device, or, streaming, one block at
 * a time) and returns per-window NLL sums for the windows it is sent. wasm runs single-threaded in Node, so several of these use several cores.
 *
 * The worker must not outlive its parent: it yields to the event loop between windows, so the
 * IPC channel's 'disconnect' (the parent exited, was killed, or closed the pool) is seen within
 * one window, and it also checks that its parent process is still the one that started it.
 */
import { BackendChoice, initBackend } from '../backend';
import { CrepeError } from '../errors';
import { openModel } from '../model/resolve';
import { LlamaModel } from '../model/runtime';
import { WeightSource } from '../model/types';
import { ActivationStorage } from '../plan/spill';
import { windowNll } from './perplexity';
import { streamingWindowNlls } from './streaming';
import { RequestScore, scorePacked } from './zeroshot/loglikelihood';

export type WorkerRequest =
  /** streaming: keep the checkpoint open and run each batch of windows block by block (lib/eval/streaming.ts). */
  | { type: 'init'; model: string; tokenizer: string; backend: BackendChoice; streaming?: { storage: ActivationStorage; spillDir?: string } }
  | { type: 'windows'; indices: number[]; windows: number[][] }
  /** One packed batch of zero-shot requests: per item, per request, input and continuation ids. */
  | { type: 'loglikelihood'; index: number; items: { input: number[]; cont: number[] }[][] };

export type WorkerReply =
  | { type: 'ready' }
  | { type: 'result'; index: number; nll: number }
  | { type: 'scores'; index: number; scores: RequestScore[][] }
  | { type: 'error'; message: string; user: boolean };

let runtime: LlamaModel | null = null;
let streaming: { source: WeightSource; storage: ActivationStorage; spillDir?: string } | null = null;
const parentPid = process.ppid;

/** The parent is gone: the channel closed, or this process was re-parented (the parent died). */
function orphaned(): boolean {
  return !process.connected || process.ppid !== parentPid;
}

function reply(m: WorkerReply): void {
  if (!orphaned()) process.send!(m, undefined, {}, () => undefined);
}

const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

process.on('message', (msg: WorkerRequest) => {
  void (async () => {
    try {
      if (msg.type === 'init') {
        await initBackend(msg.backend);
        const model = openModel(msg.model, msg.tokenizer);
        if (msg.streaming) streaming = { source: model.source, ...msg.streaming };
        else {
          runtime = LlamaModel.fromSource(model.source);
          model.source.close();
        }
        reply({ type: 'ready' });
      } else if (msg.type === 'loglikelihood') {
        if (!runtime) throw new Error('worker not initialised');
        await nextTurn();
        if (orphaned()) process.exit(0);
        const items = msg.items.map((reqs) => reqs.map((r) => ({ input: Int32Array.from(r.input), cont: Int32Array.from(r.cont) })));
        reply({ type: 'scores', index: msg.index, scores: scorePacked(runtime, items) });
      } else if (streaming) {
        // block-outer over this worker's windows; the parent's death is checked after every block
        await nextTurn();
        const nlls = streamingWindowNlls(streaming.source, msg.windows.map((w) => Int32Array.from(w)), {
          storage: streaming.storage,
          spillDir: streaming.spillDir,
          onBlock: () => {
            if (process.ppid !== parentPid) process.exit(0);
          },
        });
        nlls.forEach((nll, k) => reply({ type: 'result', index: msg.indices[k], nll }));
      } else {
        if (!runtime) throw new Error('worker not initialised');
        for (let k = 0; k < msg.windows.length; k++) {
          await nextTurn();
          if (orphaned()) process.exit(0);
          reply({ type: 'result', index: msg.indices[k], nll: windowNll(runtime, Int32Array.from(msg.windows[k])) });
        }
      }
    } catch (e) {
      reply({ type: 'error', message: (e as Error).message, user: e instanceof CrepeError });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
// Belt and braces for a parent killed while this worker is inside a long window: the timer fires between windows too.
setInterval(() => {
  if (orphaned()) process.exit(0);
}, 1000).unref();
