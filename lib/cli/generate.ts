import { CrepeError } from '../errors';
import { openModel } from '../model/resolve';
import { LlamaModel } from '../model/runtime';
import { CommonArgs, emit, positiveIntFlag, startBackend } from './common';
import { BudgetArgs, budgetOf, planResident } from './memory';

export interface GenerateArgs extends CommonArgs, BudgetArgs {
  model: string;
  tokenizer?: string;
  prompt: string;
  steps: number;
}

export async function generateCommand(args: GenerateArgs): Promise<void> {
  const steps = positiveIntFlag('steps', args.steps);
  budgetOf(args); // validated before any work
  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  const tok = model.tokenizer;
  if (args.prompt.length === 0 && tok.bosId < 0) {
    model.source.close();
    throw new CrepeError(`tokenizer ${model.tokenizerPath} has no BOS token to start from: give a --prompt`);
  }
  const prompt = args.prompt.length > 0 ? tok.encode(args.prompt, { bos: tok.addBos }) : Int32Array.of(tok.bosId);
  const context = model.source.config.maxSeqLen;
  if (prompt.length >= context || steps > context - prompt.length) {
    model.source.close();
    throw new CrepeError(
      prompt.length >= context
        ? `the prompt has ${prompt.length} tokens, no room left in the model's context of ${context}`
        : `--steps ${steps} does not fit: the context holds ${context} tokens and the prompt takes ${prompt.length} (at most --steps ${context - prompt.length})`,
    );
  }
  // every block on the device, windows up to prompt + steps tokens: refused before loading if it cannot fit
  const plan = planResident(model.source.config, args, { seqlen: prompt.length + steps, jobs: 1, lengthFlag: null, wasm: backend.startsWith('wasm') }, { model: args.model });
  if (!plan) return model.source.close();
  const runtime = LlamaModel.fromSource(model.source);
  // llama2.c's run.c ends a story at BOS; HF models end at EOS.
  const ids = runtime.generateGreedy(prompt, steps, [tok.bosId, tok.eosId].filter((i) => i >= 0));
  runtime.dispose();
  model.source.close();
  const text = tok.decode(ids);
  emit(args.json, { text, ids: Array.from(ids), backend }, () => text);
}
