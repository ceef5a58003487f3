import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { writeFileStreamAtomic } from '../io/atomic';
import { ModelCardInfo } from './card';
import { writeHfModel } from './convert';
import { openHfModel } from './hf';
import { Llama2cSource, writeLlama2c } from './llama2c';
import { FloatDtype } from './safetensors';
import { WeightSource, linearKey, linearNames } from './types';

export type SaveFormat = 'llama2c' | 'hf';

/** A path ending in .bin is a llama2.c file; anything else a HF directory. */
export function formatForPath(p: string): SaveFormat {
  return p.endsWith('.bin') ? 'llama2c' : 'hf';
}

/**
 * Save a model (e.g. a pruned overlay) atomically: llama2.c files are streamed to a temporary
 * file and renamed; HF directories are built under a temporary name and renamed, with the
 * tokenizer files transformers loads, a model card (README.md) and crepe-recipe.json from `card`.
 */
export function saveModel(
  src: WeightSource,
  out: string,
  opts: { format?: SaveFormat; dtype?: FloatDtype; tokenizer?: string; force?: boolean; card?: ModelCardInfo } = {},
): SaveFormat {
  const format = opts.format ?? formatForPath(out);
  const dir = path.dirname(path.resolve(out));
  if (!fs.existsSync(dir)) throw new CrepeError(`cannot save to ${out}: folder ${dir} does not exist`);
  if (format === 'hf') {
    // Tokenizer and generation files travel with the weights: from the tokenizer's folder, then
    // from the source checkpoint's folder.
    const companionDirs = [opts.tokenizer && path.dirname(opts.tokenizer), src.format === 'hf' ? src.origin : undefined];
    writeHfModel(src, out, {
      dtype: opts.dtype ?? 'F32',
      tokenizer: opts.tokenizer,
      companionDirs: companionDirs.filter((d): d is string => !!d),
      force: opts.force,
      card: opts.card,
    });
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

/**
 * Reopen a saved model and count the zeros of every prunable linear: each layer must hold at
 * least as many zeros as it had weights pruned (a weight that rounds to zero in a 16-bit dtype
 * may add one), else the file lost pruned zeros and this refuses. Returns the sparsity read back.
 */
export function savedSparsity(out: string, layers: readonly { key: string; pruned: number; total: number }[]): { sparsity: number; zeros: number } {
  const src = formatForPath(out) === 'hf' ? openHfModel(out) : Llama2cSource.open(out);
  try {
    const pruned = new Map(layers.map((l) => [l.key, l.pruned]));
    let zeros = 0;
    let total = 0;
    for (let b = 0; b < src.config.nLayers; b++) {
      const block = src.readBlock(b);
      for (const name of linearNames(src.config)) {
        const w = block.linears[name];
        let z = 0;
        for (let k = 0; k < w.length; k++) if (w[k] === 0) z++;
        const key = linearKey(b, name);
        if (z < (pruned.get(key) ?? 0)) throw new CrepeError(`saved model ${out}: ${key} has ${z} zeros but ${pruned.get(key)} weights were pruned`);
        zeros += z;
        total += w.length;
      }
    }
    return { sparsity: zeros / total, zeros };
  } finally {
    src.close();
  }
}
