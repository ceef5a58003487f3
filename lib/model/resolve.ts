import * as fs from 'fs';
import * as path from 'path';
import { assetPath } from '../assets';
import { CrepeError } from '../errors';
import { SniffedFormat, readHead, sniffFormat } from '../io/sniff';
import { didYouMean } from '../util/suggest';
import { loadTokenizer } from '../tokenizers';
import { Tokenizer } from '../tokenizers/types';
import { HF_CONFIG_FILE, openHfModel } from './hf';
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
      refuseFolderWithoutConfig(spec);
      source = openHfModel(spec);
      tokPath ??= findTokenizer(spec);
    } else {
      refuseNonCheckpoint(spec);
      source = Llama2cSource.open(spec);
      tokPath ??= findTokenizer(path.dirname(spec));
    }
  } else {
    const hint = didYouMean(spec, Object.keys(BUILTIN_MODELS));
    throw new CrepeError(
      hint
        ? `unknown model '${spec}'${hint}`
        : `unknown model '${spec}': not a built-in name (${Object.keys(BUILTIN_MODELS).join(', ')}) nor an existing path`,
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

const MODEL_FORMS = 'a built-in name, a HF folder (config.json + *.safetensors) or a llama2.c .bin file';

/** What a file of format `f` is, for a refusal. */
const FORMAT_NAMES: Record<SniffedFormat, string> = {
  safetensors: 'a safetensors file',
  gguf: 'a GGUF file (llama.cpp)',
  ggml: 'a GGML file (old llama.cpp)',
  pytorch: 'a PyTorch checkpoint (pickle or zip)',
  'git-lfs-pointer': 'a Git LFS pointer, not the file itself',
  'tokenizer-json': 'a tokenizer (HF tokenizer.json)',
  'hf-config': 'a transformers config',
  'safetensors-index': 'the index of a sharded safetensors checkpoint',
  json: 'a JSON file',
  sentencepiece: 'a tokenizer (sentencepiece model)',
  'llama2c-tokenizer': 'a tokenizer (llama2.c tokenizer.bin)',
};

/**
 * The refusal of a --model file that is not a llama2.c checkpoint, naming what it is and what to
 * pass instead; null when the file may be a checkpoint (llama2.c files have no magic number).
 */
export function modelFileMistake(file: string): string | null {
  const read = readHead(file);
  const format = read && sniffFormat(read.head, read.size);
  if (!format) return null;
  const dir = path.dirname(file);
  const hasConfig = fs.existsSync(path.join(dir, HF_CONFIG_FILE));
  const folder = hasConfig ? `pass the folder that holds it with config.json (--model ${dir})` : `pass the folder that holds it with its config.json (${dir} has none)`;
  const what = `${file} is ${FORMAT_NAMES[format]}`;
  switch (format) {
    case 'safetensors':
    case 'hf-config':
    case 'safetensors-index':
      return `${what}: ${folder}`;
    case 'tokenizer-json':
    case 'sentencepiece':
    case 'llama2c-tokenizer':
      return `${what}, not model weights: pass it as --tokenizer, and as --model ${MODEL_FORMS}`;
    case 'git-lfs-pointer':
      return `${what}: run git lfs pull in its repository`;
    case 'pytorch':
      return `${what}, which crepe does not read: ${hasConfig ? 'save it as safetensors beside its config.json (transformers: save_pretrained(dir, safe_serialization=True)) and pass that folder' : 'convert it to a HF folder with config.json and model.safetensors'}`;
    case 'gguf':
    case 'ggml':
      return `${what}, which crepe does not read: pass ${MODEL_FORMS} (the checkpoint the GGUF was made from)`;
    case 'json':
      return `${what}, not model weights: --model takes ${MODEL_FORMS}`;
  }
}

function refuseNonCheckpoint(file: string): void {
  const mistake = modelFileMistake(file);
  if (mistake) throw new CrepeError(mistake);
}

/** A folder without config.json: say which checkpoint file inside it to pass, when there is one. */
function refuseFolderWithoutConfig(dir: string): void {
  if (fs.existsSync(path.join(dir, HF_CONFIG_FILE))) return;
  let files: string[] = [];
  try {
    files = fs.readdirSync(dir).sort();
  } catch {
    return; // openHfModel reports an unreadable folder
  }
  const llama2c = files.filter((f) => f.endsWith('.bin') && !modelFileMistake(path.join(dir, f)));
  const other = files.find((f) => /\.(safetensors|gguf|pt|pth)$/.test(f));
  if (llama2c.length) {
    throw new CrepeError(`${dir} has no ${HF_CONFIG_FILE}, so it is not a HF folder; it holds ${llama2c.join(', ')}: pass a llama2.c checkpoint file itself (--model ${path.join(dir, llama2c[0])})`);
  }
  if (other) throw new CrepeError(`${dir} has no ${HF_CONFIG_FILE}, which crepe needs beside ${other} (the model's transformers config)`);
}
