import * as path from 'path';
import { CrepeError } from '../errors';
import { loadHfTokenizer } from './hf';
import { loadLlama2cTokenizer } from './llama2c';
import { loadSentencePieceTokenizer } from './sentencepiece';
import type { Tokenizer } from './types';

export type { Tokenizer } from './types';
export { HfTokenizer, loadHfTokenizer } from './hf';
export { Llama2cTokenizer, loadLlama2cTokenizer, type Llama2cOptions } from './llama2c';
export { SentencePieceTokenizer, loadSentencePieceTokenizer, parseSentencePieceModel } from './sentencepiece';

export interface LoadTokenizerOptions {
  /** For llama2.c `.bin` files, which do not store it: the model's vocab size. Default: read to the end. */
  vocabSize?: number;
}

/**
 * Load a tokenizer, choosing the format by file name: `.bin` llama2.c, `.model` sentencepiece,
 * `.json` (tokenizer.json) Hugging Face.
 */
export function loadTokenizer(file: string, opts: LoadTokenizerOptions = {}): Tokenizer {
  const ext = path.extname(file).toLowerCase();
  if (ext === '.bin') return loadLlama2cTokenizer(file, { vocabSize: opts.vocabSize });
  if (ext === '.model') return loadSentencePieceTokenizer(file);
  if (ext === '.json') return loadHfTokenizer(file);
  throw new CrepeError(`unknown tokenizer format for ${file}: expected .bin (llama2.c), .model (sentencepiece) or tokenizer.json`);
}
