/**
 * Hugging Face LLaMA / Mistral checkpoints: a directory with config.json and model.safetensors,
 * or shards listed in model.safetensors.index.json. Weights are read lazily, one tensor at a
 * time, and shards are opened only when one of their tensors is needed.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { checkWeights } from '../io/finite';
import { FloatDtype, SafetensorsFile } from './safetensors';
import { BlockWeights, LINEAR_NAMES, LinearName, LlamaConfig, WeightSource, linearShape } from './types';

export const HF_CONFIG_FILE = 'config.json';
export const HF_SINGLE_FILE = 'model.safetensors';
export const HF_INDEX_FILE = 'model.safetensors.index.json';

const ARCHITECTURES: Record<string, string> = { llama: 'LlamaForCausalLM', mistral: 'MistralForCausalLM' };

const HF_LINEAR: Record<LinearName, string> = {
  q: 'self_attn.q_proj',
  k: 'self_attn.k_proj',
  v: 'self_attn.v_proj',
  o: 'self_attn.o_proj',
  gate: 'mlp.gate_proj',
  up: 'mlp.up_proj',
  down: 'mlp.down_proj',
};

/** HF parameter names. */
export const hfName = {
  embedding: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  classifier: 'lm_head.weight',
  attnNorm: (block: number) => `model.layers.${block}.input_layernorm.weight`,
  ffnNorm: (block: number) => `model.layers.${block}.post_attention_layernorm.weight`,
  linear: (block: number, name: LinearName) => `model.layers.${block}.${HF_LINEAR[name]}.weight`,
};

/** Which piece of a WeightSource an HF tensor holds. */
export type HfTensorRole =
  | { kind: 'embedding' | 'finalNorm' | 'classifier' }
  | { kind: 'attnNorm' | 'ffnNorm'; block: number }
  | { kind: 'linear'; block: number; linear: LinearName };

export interface HfTensor {
  name: string;
  shape: number[];
  role: HfTensorRole;
}

/** Every tensor of the checkpoint in the usual HF file order; lm_head is absent when tied. */
export function hfTensors(cfg: LlamaConfig): HfTensor[] {
  const list: HfTensor[] = [{ name: hfName.embedding, shape: [cfg.vocabSize, cfg.dim], role: { kind: 'embedding' } }];
  for (let b = 0; b < cfg.nLayers; b++) {
    const norm = (kind: 'attnNorm' | 'ffnNorm'): HfTensor => ({
      name: hfName[kind](b),
      shape: [cfg.dim],
      role: { kind, block: b },
    });
    const linear = (l: LinearName): HfTensor => ({
      name: hfName.linear(b, l),
      shape: linearShape(cfg, l),
      role: { kind: 'linear', block: b, linear: l },
    });
    list.push(norm('attnNorm'), ...(['q', 'k', 'v', 'o'] as const).map(linear));
    list.push(norm('ffnNorm'), ...(['gate', 'up', 'down'] as const).map(linear));
  }
  list.push({ name: hfName.finalNorm, shape: [cfg.dim], role: { kind: 'finalNorm' } });
  if (!cfg.tiedEmbeddings) {
    list.push({ name: hfName.classifier, shape: [cfg.vocabSize, cfg.dim], role: { kind: 'classifier' } });
  }
  return list;
}

// ---------------------------------------------------------------------------------------------
// config.json

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

/** Map an HF config.json object to a LlamaConfig, refusing what the runtime would compute differently. */
export function parseHfConfig(raw: unknown, file: string): LlamaConfig {
  if (!isObject(raw)) throw new CrepeError(`${file} is not a JSON object`);
  const modelType = raw.model_type;
  const archs = raw.architectures;
  const archsOk =
    archs === undefined ||
    (Array.isArray(archs) && archs.length > 0 && archs.every((a) => Object.values(ARCHITECTURES).includes(a)));
  if (typeof modelType !== 'string' || !Object.hasOwn(ARCHITECTURES, modelType) || !archsOk) {
    const what = `${JSON.stringify(archs ?? null)} (model_type ${JSON.stringify(modelType ?? null)})`;
    throw new CrepeError(`unsupported architecture ${what} in ${file}; supported: LlamaForCausalLM, MistralForCausalLM`);
  }

  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new CrepeError(`${file}: ${key} must be a positive integer, got ${JSON.stringify(raw[key] ?? null)}`);
    }
    return v;
  };
  const positive = (key: string, fallback: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw new CrepeError(`${file}: ${key} must be a positive number, got ${JSON.stringify(raw[key])}`);
    }
    return v;
  };
  // Features the runtime does not implement: loading them silently would give a different model.
  const unsupported = (what: string): CrepeError => new CrepeError(`unsupported ${what} in ${file}`);
  if (raw.hidden_act !== undefined && raw.hidden_act !== 'silu') throw unsupported(`hidden_act ${JSON.stringify(raw.hidden_act)}`);
  if (raw.rope_scaling != null) throw unsupported(`rope_scaling ${JSON.stringify(raw.rope_scaling)}`);
  if (raw.attention_bias === true) throw unsupported('attention_bias true');
  if (raw.mlp_bias === true) throw unsupported('mlp_bias true');

  const dim = int('hidden_size');
  const nHeads = int('num_attention_heads');
  const nKvHeads = int('num_key_value_heads', nHeads);
  // HF defaults (LlamaConfig): used when a field is absent.
  const headDim = raw.head_dim == null ? dim / nHeads : int('head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new CrepeError(`${file}: head dimension ${headDim} (hidden_size / num_attention_heads) must be an even integer`);
  }
  if (nHeads % nKvHeads !== 0) {
    throw new CrepeError(`${file}: num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);
  }
  let maxSeqLen = int('max_position_embeddings', 2048);
  // Mistral's sliding window only differs from full attention beyond the window: cap the context
  // there so that every sequence the runtime accepts is computed exactly.
  if (raw.sliding_window != null) maxSeqLen = Math.min(maxSeqLen, int('sliding_window'));
  const tied = raw.tie_word_embeddings ?? false;
  if (typeof tied !== 'boolean') throw new CrepeError(`${file}: tie_word_embeddings must be true or false`);

  return {
    architecture: modelType,
    dim,
    hiddenDim: int('intermediate_size'),
    nLayers: int('num_hidden_layers'),
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    maxSeqLen,
    normEps: positive('rms_norm_eps', 1e-6),
    ropeTheta: positive('rope_theta', 10000),
    ropeLayout: 'half',
    tiedEmbeddings: tied,
  };
}

const TORCH_DTYPE: Record<FloatDtype, string> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

/**
 * The config.json describing `cfg` for HF transformers. The caller must have put q/k rows in
 * rotate_half order (HF has no setting for the adjacent layout).
 */
export function hfConfigJson(cfg: LlamaConfig, dtype: FloatDtype): Record<string, unknown> {
  const modelType = cfg.architecture === 'mistral' ? 'mistral' : 'llama';
  return {
    architectures: [ARCHITECTURES[modelType]],
    model_type: modelType,
    hidden_size: cfg.dim,
    intermediate_size: cfg.hiddenDim,
    num_hidden_layers: cfg.nLayers,
    num_attention_heads: cfg.nHeads,
    num_key_value_heads: cfg.nKvHeads,
    head_dim: cfg.headDim,
    vocab_size: cfg.vocabSize,
    max_position_embeddings: cfg.maxSeqLen,
    rms_norm_eps: cfg.normEps,
    rope_theta: cfg.ropeTheta,
    rope_scaling: null,
    tie_word_embeddings: cfg.tiedEmbeddings,
    hidden_act: 'silu',
    attention_bias: false,
    mlp_bias: false,
    ...(modelType === 'mistral' ? { sliding_window: null } : {}),
    torch_dtype: TORCH_DTYPE[dtype],
  };
}

function readJson(file: string, what: string): unknown {
  if (!fs.existsSync(file)) throw new CrepeError(`missing ${what}: ${file}`);
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CrepeError(`${file} is not valid JSON: ${(e as Error).message.split('\n')[0]}`);
  }
}

// ---------------------------------------------------------------------------------------------
// the weight source

/** Open an HF model directory for lazy reading. */
export function openHfModel(dir: string): WeightSource {
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new CrepeError(`HF model directory not found: ${dir}`);
  }
  const config = parseHfConfig(readJson(path.join(dir, HF_CONFIG_FILE), 'config.json'), path.join(dir, HF_CONFIG_FILE));
  const indexFile = path.join(dir, HF_INDEX_FILE);
  const singleFile = path.join(dir, HF_SINGLE_FILE);
  if (fs.existsSync(indexFile)) return new HfModel(config, dir, readWeightMap(indexFile), indexFile);
  if (!fs.existsSync(singleFile)) {
    throw new CrepeError(`no ${HF_SINGLE_FILE} or ${HF_INDEX_FILE} in ${dir} (only safetensors weights are supported)`);
  }
  const single = SafetensorsFile.open(singleFile);
  const weightMap = new Map(single.names().map((n) => [n, HF_SINGLE_FILE]));
  return new HfModel(config, dir, weightMap, singleFile, single);
}

/** tensor name → shard file name (a plain file in the model directory). */
function readWeightMap(indexFile: string): Map<string, string> {
  const raw = readJson(indexFile, HF_INDEX_FILE);
  const map = isObject(raw) ? raw.weight_map : undefined;
  if (!isObject(map)) throw new CrepeError(`${indexFile} has no weight_map object`);
  const out = new Map<string, string>();
  for (const [name, shard] of Object.entries(map)) {
    if (typeof shard !== 'string' || shard === '' || path.basename(shard) !== shard || shard === '.' || shard === '..') {
      throw new CrepeError(`${indexFile}: tensor ${name} maps to an invalid shard file ${JSON.stringify(shard)}`);
    }
    out.set(name, shard);
  }
  return out;
}

class HfModel implements WeightSource {
  readonly format = 'hf';
  private readonly shards = new Map<string, SafetensorsFile>();

  constructor(
    readonly config: LlamaConfig,
    readonly origin: string,
    private readonly weightMap: Map<string, string>,
    /** The file that lists the tensors (named when one is missing). */
    private readonly listing: string,
    single?: SafetensorsFile,
  ) {
    if (single) this.shards.set(HF_SINGLE_FILE, single);
  }

  readEmbedding(): Float32Array {
    return this.read(hfName.embedding, [this.config.vocabSize, this.config.dim]);
  }

  readBlock(index: number): BlockWeights {
    const cfg = this.config;
    if (!Number.isInteger(index) || index < 0 || index >= cfg.nLayers) {
      throw new RangeError(`block ${index} out of range [0, ${cfg.nLayers})`);
    }
    const linears = {} as Record<LinearName, Float32Array>;
    for (const l of LINEAR_NAMES) linears[l] = this.read(hfName.linear(index, l), linearShape(cfg, l));
    return {
      attnNorm: this.read(hfName.attnNorm(index), [cfg.dim]),
      ffnNorm: this.read(hfName.ffnNorm(index), [cfg.dim]),
      linears,
    };
  }

  readFinalNorm(): Float32Array {
    return this.read(hfName.finalNorm, [this.config.dim]);
  }

  readClassifier(): Float32Array {
    if (this.config.tiedEmbeddings) return this.readEmbedding();
    return this.read(hfName.classifier, [this.config.vocabSize, this.config.dim]);
  }

  close(): void {
    for (const s of this.shards.values()) s.close();
    this.shards.clear();
  }

  private read(name: string, shape: number[]): Float32Array {
    const shardName = this.weightMap.get(name);
    if (shardName === undefined) throw new CrepeError(`missing tensor ${name} in ${this.listing}`);
    const shard = this.shard(shardName);
    if (!shard.has(name)) throw new CrepeError(`missing tensor ${name} in ${shard.path} (listed in ${this.listing})`);
    const actual = shard.info(name).shape;
    if (actual.length !== shape.length || actual.some((d, i) => d !== shape[i])) {
      throw new CrepeError(
        `tensor ${name} in ${shard.path} has shape [${actual.join(', ')}], config.json implies [${shape.join(', ')}]`,
      );
    }
    return checkWeights(shard.readFloat32(name), name, shard.path);
  }

  private shard(file: string): SafetensorsFile {
    let s = this.shards.get(file);
    if (!s) {
      const full = path.join(this.origin, file);
      if (!fs.existsSync(full)) throw new CrepeError(`missing shard ${full} (listed in ${this.listing})`);
      s = SafetensorsFile.open(full);
      this.shards.set(file, s);
    }
    return s;
  }
}
