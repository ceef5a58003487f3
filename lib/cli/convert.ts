import { openModel } from '../model/resolve';
import { FloatDtype } from '../model/safetensors';
import { SaveFormat, saveModel } from '../model/save';
import { CrepeError } from '../errors';
import { CommonArgs, emit } from './common';

export interface ConvertArgs extends CommonArgs {
  model: string;
  tokenizer?: string;
  to: SaveFormat;
  out: string;
  dtype: FloatDtype;
}

export async function convertCommand(args: ConvertArgs): Promise<void> {
  if (args.to === 'llama2c' && args.dtype !== 'F32') throw new CrepeError('llama2.c files are float32 only (--dtype F32)');
  const model = openModel(args.model, args.tokenizer);
  try {
    saveModel(model.source, args.out, { format: args.to, dtype: args.dtype, tokenizer: model.tokenizerPath });
  } finally {
    model.source.close();
  }
  emit(args.json, { out: args.out, format: args.to, dtype: args.dtype }, () => `wrote ${args.to} (${args.dtype}) model to ${args.out}`);
}
