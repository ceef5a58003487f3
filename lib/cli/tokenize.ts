import { openModel } from '../model/resolve';
import { CommonArgs, emit } from './common';

export interface TokenizeArgs extends CommonArgs {
  model: string;
  tokenizer?: string;
  text: string;
  bos: boolean;
}

export async function tokenizeCommand(args: TokenizeArgs): Promise<void> {
  const model = openModel(args.model, args.tokenizer);
  const ids = Array.from(model.tokenizer.encode(args.text, { bos: args.bos }));
  model.source.close();
  emit(args.json, { ids }, () => ids.join(' '));
}
