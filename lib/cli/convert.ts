import { openModel } from '../model/resolve';
import { FloatDtype } from '../model/safetensors';
import { SaveFormat, saveModel } from '../model/save';
import { CrepeError } from '../errors';
import { checkOutputs } from '../io/outputs';
import { convertedModelCard } from '../model/card';
import { CommonArgs, emit, inputPaths, versionInfo } from './common';

export interface ConvertArgs extends CommonArgs {
  model: string;
  tokenizer?: string;
  to: SaveFormat;
  out: string;
  dtype: FloatDtype;
  /** Replace an existing output crepe did not write. */
  force?: boolean;
}

export async function convertCommand(args: ConvertArgs): Promise<void> {
  if (args.to === 'llama2c' && args.dtype !== 'F32') throw new CrepeError('llama2.c files are float32 only (--dtype F32)');
  const model = openModel(args.model, args.tokenizer);
  try {
    const isDir = args.to === 'hf';
    checkOutputs([{ flag: '--out', path: args.out, kind: isDir ? 'hf-model' : 'llama2c-model', isDir }], inputPaths(model), { force: args.force });
    const card = convertedModelCard(args.model, args.dtype, versionInfo(), `crepe ${process.argv.slice(2).join(' ')}`);
    saveModel(model.source, args.out, { format: args.to, dtype: args.dtype, tokenizer: model.tokenizerPath, force: args.force, card });
  } finally {
    model.source.close();
  }
  emit(args.json, { out: args.out, format: args.to, dtype: args.dtype }, () => `wrote ${args.to} (${args.dtype}) model to ${args.out}`);
}
