/**
 * Writing any WeightSource as a Hugging Face checkpoint, one decoder block in memory at a time,
 * and the q/k row permutation between the two RoPE layouts.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { writeDirAtomic } from '../io/atomic';
import { checkF16Range } from '../io/finite';
import { loadTokenizer } from '../tokenizers';
import { HfTokenizerFiles, tokenizerToHf } from '../tokenizers/export';
import { gitVersion } from '../version';
import { ModelCardInfo, convertedModelCard, writeModelCard } from './card';
import { HF_CONFIG_FILE, HF_INDEX_FILE, HF_SINGLE_FILE, HfTensor, SpecialTokenIds, hfConfigJson, hfTensors } from './hf';
import { FloatDtype, SafetensorsWriter, dtypeBytes } from './safetensors';
import { rotaryHeads } from './block';
import { BlockWeights, LlamaConfig, WeightSource } from './types';

// ---------------------------------------------------------------------------------------------
// RoPE layouts

/**
 * Row order taking a q or k weight from the adjacent layout (llama2.c / Meta, pairs (2i, 2i+1))
 * to HF's rotate_half layout (pairs (i, i + headDim/2)): `order[halfRow] = adjacentRow`. Within
 * each head, adjacent row 2i goes to i and row 2i+1 to i + headDim/2, which is what HF's
 * convert_llama_weights_to_hf does with
 * `w.view(n_heads, dim1 // n_heads // 2, 2, dim2).transpose(1, 2).reshape(dim1, dim2)`.
 * Use nKvHeads as `nHeads` for k.
 */
export function adjacentToHalfOrder(nHeads: number, headDim: number): Int32Array {
  const half = headDim / 2;
  const order = new Int32Array(nHeads * headDim);
  for (let h = 0; h < nHeads; h++) {
    const base = h * headDim;
    for (let i = 0; i < half; i++) {
      order[base + i] = base + 2 * i;
      order[base + half + i] = base + 2 * i + 1;
    }
  }
  return order;
}

/** The inverse of adjacentToHalfOrder: `order[adjacentRow] = halfRow`. */
export function halfToAdjacentOrder(nHeads: number, headDim: number): Int32Array {
  const forward = adjacentToHalfOrder(nHeads, headDim);
  const order = new Int32Array(forward.length);
  forward.forEach((from, to) => (order[from] = to));
  return order;
}

/**
 * Reorder the rows of a row-major [order.length, cols] matrix: output row r is input row
 * order[r]. Works for weights and for masks / scores of the same shape.
 */
export function permuteRows<T extends Float32Array | Uint8Array | Int32Array>(data: T, cols: number, order: ArrayLike<number>): T {
  if (data.length !== order.length * cols) {
    throw new Error(`permuteRows: ${data.length} values is not ${order.length} rows of ${cols}`);
  }
  const out = data.slice() as T;
  for (let r = 0; r < order.length; r++) {
    out.set(data.subarray(order[r] * cols, (order[r] + 1) * cols), r * cols);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// writing

export interface WriteHfOptions {
  dtype: FloatDtype;
  /** Split into model-0000k-of-0000n.safetensors shards above this size; default 5 GB like HF. */
  shardBytes?: number;
  /**
   * The model's tokenizer. A llama2.c `.bin` or sentencepiece `.model` is converted to
   * tokenizer.json, tokenizer_config.json and special_tokens_map.json (copied as it is when it
   * cannot be, with a note on the card); any other file (tokenizer.json, ...) is copied.
   */
  tokenizer?: string;
  /** Replace an existing folder crepe did not write. */
  force?: boolean;
  /** Folders whose tokenizer and generation files (COMPANION_FILES) are copied too, first found wins. */
  companionDirs?: string[];
  /** What the model card and crepe-recipe.json say; default: a conversion of `src.origin`. */
  card?: ModelCardInfo;
}

/** The files besides the weights that the HF ecosystem reads from a model folder. */
export const COMPANION_FILES = [
  'tokenizer.json',
  'tokenizer.model',
  'tokenizer_config.json',
  'special_tokens_map.json',
  'added_tokens.json',
  'generation_config.json',
];

const DEFAULT_SHARD_BYTES = 5e9;

interface Shard {
  file: string;
  tensors: HfTensor[];
}

/**
 * Write `src` to `outDir` (replaced atomically) as config.json + model.safetensors, or as shards
 * + model.safetensors.index.json when bigger than shardBytes. Reads src one block at a time.
 */
export function writeHfModel(src: WeightSource, outDir: string, opts: WriteHfOptions): void {
  const shardBytes = opts.shardBytes ?? DEFAULT_SHARD_BYTES;
  if (!(shardBytes > 0)) throw new CrepeError(`shard size must be positive, got ${shardBytes}`);
  if (opts.tokenizer !== undefined && !fs.statSync(opts.tokenizer, { throwIfNoEntry: false })?.isFile()) {
    throw new CrepeError(`tokenizer file not found: ${opts.tokenizer}`);
  }
  const cfg = src.config;
  const bytesOf = (t: HfTensor) => t.shape.reduce((a, d) => a * d, 1) * dtypeBytes(opts.dtype);
  const tensors = hfTensors(cfg);
  const shards = planShards(tensors, bytesOf, shardBytes);
  const fetch = tensorFetcher(src);

  const notes: string[] = [];
  const converted = opts.tokenizer !== undefined ? convertTokenizer(opts.tokenizer, cfg, notes) : null;
  const ids: SpecialTokenIds = converted ? { bos: converted.bosId, eos: converted.eosId } : {};

  writeDirAtomic(outDir, (tmp) => {
    const config = hfConfigJson(cfg, opts.dtype, ids);
    fs.writeFileSync(path.join(tmp, HF_CONFIG_FILE), JSON.stringify(config, null, 2) + '\n');
    for (const shard of shards) {
      // transformers refuses safetensors files whose metadata lacks format "pt".
      const writer = new SafetensorsWriter(path.join(tmp, shard.file), shard.tensors, opts.dtype, { format: 'pt' });
      try {
        for (const t of shard.tensors) {
          const data = fetch(t);
          if (opts.dtype === 'F16') checkF16Range(data, t.name); // float16 would turn these into Inf
          writer.write(t.name, data);
        }
        writer.finish();
      } finally {
        writer.abort();
      }
    }
    if (shards.length > 1) {
      const weightMap: Record<string, string> = {};
      for (const s of shards) for (const t of s.tensors) weightMap[t.name] = s.file;
      const totalSize = tensors.reduce((a, t) => a + bytesOf(t), 0);
      const index = { metadata: { total_size: totalSize }, weight_map: weightMap };
      fs.writeFileSync(path.join(tmp, HF_INDEX_FILE), JSON.stringify(index, null, 2) + '\n');
    }
    const copy = (from: string): void => {
      const to = path.join(tmp, path.basename(from));
      if (fs.existsSync(to)) return;
      fs.copyFileSync(from, to);
      fs.chmodSync(to, 0o644); // the source may be a read-only asset; the output is the user's
    };
    const json = (name: string, value: unknown) => fs.writeFileSync(path.join(tmp, name), JSON.stringify(value, null, 2) + '\n');
    if (converted) {
      json('tokenizer.json', converted.tokenizer);
      json('tokenizer_config.json', converted.tokenizerConfig);
      json('special_tokens_map.json', converted.specialTokensMap);
    } else if (opts.tokenizer !== undefined) {
      copy(opts.tokenizer);
    }
    // A tokenizer copied as it is brings its folder's tokenizer and generation files.
    const companionDirs = [...(!converted && opts.tokenizer !== undefined ? [path.dirname(opts.tokenizer)] : []), ...(opts.companionDirs ?? [])];
    for (const dir of companionDirs) {
      for (const name of COMPANION_FILES) {
        const from = path.join(dir, name);
        if (fs.statSync(from, { throwIfNoEntry: false })?.isFile()) copy(from);
      }
    }
    const generation = generationConfig(config);
    if (generation && !fs.existsSync(path.join(tmp, 'generation_config.json'))) json('generation_config.json', generation);
    const card: ModelCardInfo = opts.card ?? convertedModelCard(src.origin, opts.dtype, gitVersion());
    writeModelCard(tmp, { ...card, notes: [...card.notes, ...notes] });
  }, 'hf-model', { force: opts.force });
}

/**
 * The HF tokenizer files for a llama2.c or sentencepiece tokenizer; null for other files (copied
 * as they are) and for one that cannot be converted (then copied, and the reason noted).
 */
function convertTokenizer(file: string, cfg: LlamaConfig, notes: string[]): HfTokenizerFiles | null {
  const ext = path.extname(file).toLowerCase();
  if (ext !== '.bin' && ext !== '.model') return null;
  try {
    return tokenizerToHf(loadTokenizer(file, { vocabSize: ext === '.bin' ? cfg.vocabSize : undefined }), { modelMaxLength: cfg.maxSeqLen });
  } catch (e) {
    if (!(e instanceof CrepeError)) throw e;
    const note = `the tokenizer ${path.basename(file)} is copied as it is, not converted to tokenizer.json: ${e.message}`;
    process.stderr.write(`crepe: warning: ${note}\n`);
    notes.push(note);
    return null;
  }
}

/** generation_config.json from config.json's token ids, as transformers derives it (_from_model_config); null without ids. */
function generationConfig(config: Record<string, unknown>): Record<string, unknown> | null {
  const out: Record<string, unknown> = { _from_model_config: true };
  for (const key of ['bos_token_id', 'eos_token_id', 'pad_token_id']) if (config[key] != null) out[key] = config[key];
  return Object.keys(out).length > 1 ? out : null;
}

/** Consecutive tensors packed greedily into shards of at most maxBytes (a bigger tensor gets its own). */
function planShards(tensors: HfTensor[], bytesOf: (t: HfTensor) => number, maxBytes: number): Shard[] {
  const groups: HfTensor[][] = [];
  let size = 0;
  for (const t of tensors) {
    const bytes = bytesOf(t);
    if (groups.length === 0 || size + bytes > maxBytes) {
      groups.push([]);
      size = 0;
    }
    groups[groups.length - 1].push(t);
    size += bytes;
  }
  if (groups.length === 1) return [{ file: HF_SINGLE_FILE, tensors: groups[0] }];
  const pad = (n: number) => String(n).padStart(5, '0');
  return groups.map((g, k) => ({ file: `model-${pad(k + 1)}-of-${pad(groups.length)}.safetensors`, tensors: g }));
}

/**
 * Returns each HF tensor's data in HF layout. Tensors are requested in file order, so keeping
 * only the last block read means each block is read once and one is in memory at a time.
 */
function tensorFetcher(src: WeightSource): (t: HfTensor) => Float32Array {
  const cfg: LlamaConfig = src.config;
  let cached: { index: number; weights: BlockWeights } | null = null;
  const block = (index: number): BlockWeights => {
    if (cached?.index !== index) cached = { index, weights: src.readBlock(index) };
    return cached.weights;
  };
  return (t) => {
    const role = t.role;
    switch (role.kind) {
      case 'embedding':
        return src.readEmbedding();
      case 'finalNorm':
        return src.readFinalNorm();
      case 'classifier':
        return src.readClassifier();
      case 'norm':
        return block(role.block).norms[role.norm];
      case 'linear':
      case 'bias': {
        const w = role.kind === 'linear' ? block(role.block).linears[role.linear] : block(role.block).biases?.[role.linear];
        if (!w) throw new Error(`block ${role.block} has no ${role.linear} bias`);
        const heads = rotaryHeads(cfg, role.linear);
        if (cfg.ropeLayout === 'half' || heads === 0) return w;
        return permuteRows(w, role.kind === 'linear' ? cfg.dim : 1, adjacentToHalfOrder(heads, cfg.headDim));
      }
    }
  };
}
