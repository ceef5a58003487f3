import * as fs from 'fs';
import * as path from 'path';
import { assetPath } from '../assets';
import { CrepeError } from '../errors';
import { loadTokenizer } from '../tokenizers';
import { Tokenizer } from '../tokenizers/types';
import { openHfModel } from './hf';
import { Llama2cSource } from './llama2c';
import { WeightSource } from './types';

/** The models shipped in the assets folder, by name. */
export const BUILTIN_MODELS: Record<string, { weights: string[]; tokenizer: string[] }> = {
  stories260K: {
    weights: ['models', 'stories260K', 'stories260K.bin'],
    tokenizer: ['models', 'stories260K', 'tok512.bin'],
  },
  'babyllama-char': {
    weights: ['models', 'babyllama-char', 'model5000.bin'],
    tokenizer: ['models', 'babyllama-char', 'tok105.model'],
  },
};

export interface OpenedModel {
  /** The name or path the user gave. */
  name: string;
  source: WeightSource;
  tokenizer: Tokenizer;
  tokenizerPath: string;
}

/** Tokenizer files looked for beside a checkpoint, in order. */
const TOKENIZER_CANDIDATES = ['tokenizer.json', 'tokenizer.model', 'tokenizer.bin', 'tok512.bin', 'tok105.model'];

function findTokenizer(dir: string): string | undefined {
  for (const c of TOKENIZER_CANDIDATES) {
    const p = path.join(dir, c);
    if (fs.existsSync(p)) return p;
  }
  return undefined;
}

/**
 * Resolve a model spec: a built-in name (stories260K, babyllama-char), a HF directory
 * (config.json + safetensors), or a llama2.c `.bin` file. The tokenizer is taken from
 * `tokenizerPath` when given, else found beside the weights.
 */
export function openModel(spec: string, tokenizerPath?: string): OpenedModel {
  const builtin = BUILTIN_MODELS[spec];
  let source: WeightSource;
  let tokPath: string | undefined = tokenizerPath;
  if (builtin) {
    source = Llama2cSource.open(assetPath(...builtin.weights));
    tokPath ??= assetPath(...builtin.tokenizer);
  } else if (fs.existsSync(spec)) {
    if (fs.statSync(spec).isDirectory()) {
      source = openHfModel(spec);
      tokPath ??= findTokenizer(spec);
    } else {
      source = Llama2cSource.open(spec);
      tokPath ??= findTokenizer(path.dirname(spec));
    }
  } else {
    throw new CrepeError(
      `unknown model '${spec}': not a built-in name (${Object.keys(BUILTIN_MODELS).join(', ')}) nor an existing path`,
    );
  }
  if (!tokPath) {
    source.close();
    throw new CrepeError(`no tokenizer found for model '${spec}' (pass --tokenizer PATH)`);
  }
  try {
    const tokenizer = loadTokenizer(tokPath, { vocabSize: source.config.vocabSize });
    if (tokenizer.vocabSize > source.config.vocabSize) {
      throw new CrepeError(
        `tokenizer ${tokPath} has ${tokenizer.vocabSize} tokens but model '${spec}' only ${source.config.vocabSize}`,
      );
    }
    return { name: spec, source, tokenizer, tokenizerPath: tokPath };
  } catch (e) {
    source.close();
    throw e;
  }
}
