import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { MAX_SMALL_FILE_BYTES, assertRegularFile } from '../io/input';
import { foreignFormat } from '../io/sniff';

/** Read a tokenizer file whole, turning a missing or unreadable file into a CrepeError. */
export function readTokenizerFile(path: string): Buffer {
  assertRegularFile(path, 'tokenizer file', MAX_SMALL_FILE_BYTES);
  try {
    const buf = fs.readFileSync(path);
    const what = foreignFormat(buf.subarray(0, 256), path);
    if (what) throw new CrepeError(what);
    return buf;
  } catch (e) {
    if (e instanceof CrepeError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new CrepeError(`tokenizer file not found: ${path}`);
    if (code === 'EISDIR') throw new CrepeError(`tokenizer path is a folder, not a file: ${path}`);
    throw new CrepeError(`cannot read tokenizer file ${path}: ${(e as Error).message}`);
  }
}

/** Throw a CrepeError unless `id` is a valid token id. */
export function checkId(id: number, vocabSize: number, path: string): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new CrepeError(`token id ${id} is outside the vocabulary (size ${vocabSize}) of ${path}`);
  }
}

/** Read a JSON tokenizer file (tokenizer.json, tokenizer_config.json) that must hold one object. */
export function readTokenizerJson(file: string): Record<string, unknown> {
  const text = readTokenizerFile(file).toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new CrepeError(`bad JSON in ${file}: ${(e as Error).message}`); // CrepeError keeps it to one line
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new CrepeError(`bad tokenizer file ${file}: not a JSON object`);
  return value as Record<string, unknown>;
}

/** transformers' `tokenizer_config.json` in the tokenizer file's folder, or undefined when there is none. */
export function readTokenizerConfigBeside(tokenizerFile: string): Record<string, unknown> | undefined {
  const configFile = path.join(path.dirname(tokenizerFile), 'tokenizer_config.json');
  return fs.existsSync(configFile) ? readTokenizerJson(configFile) : undefined;
}
