import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { writeFileStreamAtomic } from '../io/atomic';
import { writeHfModel } from './convert';
import { FloatDtype } from './safetensors';
import { writeLlama2c } from './llama2c';
import { WeightSource } from './types';

export type SaveFormat = 'llama2c' | 'hf';

/** A path ending in .bin is a llama2.c file; anything else a HF directory. */
export function formatForPath(p: string): SaveFormat {
  return p.endsWith('.bin') ? 'llama2c' : 'hf';
}

/**
 * Save a model (e.g. a pruned overlay) atomically: llama2.c files are streamed to a temporary
 * file and renamed; HF directories are built under a temporary name and renamed.
 */
export function saveModel(
  src: WeightSource,
  out: string,
  opts: { format?: SaveFormat; dtype?: FloatDtype; tokenizer?: string; force?: boolean } = {},
): SaveFormat {
  const format = opts.format ?? formatForPath(out);
  const dir = path.dirname(path.resolve(out));
  if (!fs.existsSync(dir)) throw new CrepeError(`cannot save to ${out}: folder ${dir} does not exist`);
  if (format === 'hf') {
    writeHfModel(src, out, { dtype: opts.dtype ?? 'F32', tokenizer: opts.tokenizer, force: opts.force });
    return format;
  }
  writeFileStreamAtomic(
    out,
    (fd) =>
      writeLlama2c(src, out, (chunks) => {
        for (const c of chunks) fs.writeSync(fd, c);
      }),
    { kind: 'llama2c-model', force: opts.force },
  );
  return format;
}
