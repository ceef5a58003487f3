/**
 * Evaluation worker process: loads one model and returns per-window NLL sums for the windows it
 * is sent. wasm runs single-threaded in Node, so several of these use several cores.
 */
import { BackendChoice, initBackend } from '../backend';
import { CrepeError } from '../errors';
import { openModel } from '../model/resolve';
import { LlamaModel } from '../model/runtime';
import { windowNll } from './perplexity';

export type WorkerRequest =
  | { type: 'init'; model: string; tokenizer: string; backend: BackendChoice }
  | { type: 'windows'; indices: number[]; windows: number[][] };

export type WorkerReply =
  | { type: 'ready' }
  | { type: 'result'; index: number; nll: number }
  | { type: 'error'; message: string; user: boolean };

let runtime: LlamaModel | null = null;

function reply(m: WorkerReply): void {
  process.send!(m);
}

process.on('message', (msg: WorkerRequest) => {
  void (async () => {
    try {
      if (msg.type === 'init') {
        await initBackend(msg.backend);
        const model = openModel(msg.model, msg.tokenizer);
        runtime = LlamaModel.fromSource(model.source);
        model.source.close();
        reply({ type: 'ready' });
      } else {
        if (!runtime) throw new Error('worker not initialised');
        msg.windows.forEach((w, k) => reply({ type: 'result', index: msg.indices[k], nll: windowNll(runtime!, Int32Array.from(w)) }));
      }
    } catch (e) {
      reply({ type: 'error', message: (e as Error).message, user: e instanceof CrepeError });
    }
  })();
});
process.on('disconnect', () => process.exit(0));
