/**
 * Write a TinyLlama-1.1B-shaped checkpoint with seeded random weights (scripts/bench/scale.ts's
 * SyntheticSource: LLaMA's initialiser std, norm gains 1): 22 blocks, dim 2048, MLP 5632, 32
 * heads, 4 key/value heads, vocabulary 32000, context 2048, BF16 as TinyLlama ships. With
 * stories260K's tokenizer padded to the model's 32000 entries (`tok512-padded.bin`: the 512
 * pieces, then pieces that no text can produce, e.g. `<unused-600>`, score -1e9), so zero-shot
 * tasks and texts tokenize exactly as for stories260K; the costs do not depend on which ids come.
 *
 *   node dist/scripts/synthetic-1b.js DIR [SEED]
 *   crepe zeroshot --model DIR --tokenizer DIR/tok512-padded.bin --tasks ...
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { assetPath } from '../lib/assets';
import { writeHfModel } from '../lib/model/convert';
import { LlamaConfig } from '../lib/model/types';
import { LLAMA2_7B, SyntheticSource } from './bench/scale';

export const TINYLLAMA_1B: LlamaConfig = { ...LLAMA2_7B, dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, headDim: 64, vocabSize: 32000, maxSeqLen: 2048 };

/** A llama2.c tokenizer file (max_token_len, then score/length/bytes per piece) with unreachable pieces appended up to `vocab`. */
export function paddedLlama2cTokenizer(file: Buffer, vocab: number): Buffer {
  let n = 0;
  for (let off = 4; off < file.length; n++) off += 8 + file.readInt32LE(off + 4);
  const parts: Buffer[] = [file];
  for (let i = n; i < vocab; i++) {
    const piece = Buffer.from(`<unused-${i}>`, 'latin1');
    const head = Buffer.alloc(8);
    head.writeFloatLE(-1e9, 0);
    head.writeInt32LE(piece.length, 4);
    parts.push(head, piece);
  }
  return Buffer.concat(parts);
}

if (require.main === module) {
  const [dir, seed] = process.argv.slice(2);
  if (!dir) {
    process.stderr.write('usage: node dist/scripts/synthetic-1b.js DIR [SEED]\n');
    process.exit(2);
  }
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-tok-'));
  const tokenizer = path.join(tmp, 'tok512-padded.bin');
  fs.writeFileSync(tokenizer, paddedLlama2cTokenizer(fs.readFileSync(assetPath('models', 'stories260K', 'tok512.bin')), TINYLLAMA_1B.vocabSize));
  try {
    writeHfModel(new SyntheticSource(TINYLLAMA_1B, Number(seed ?? 0)), dir, { dtype: 'BF16', tokenizer, force: true });
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  process.stdout.write(`wrote ${dir}\n`);
}
