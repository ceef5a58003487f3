/**
 * Hugging Face LLaMA / Mistral checkpoints: a directory with config.json and model.safetensors,
 * or shards listed in model.safetensors.index.json. Weights are read lazily, one tensor at a
 * time, and shards are opened only when one of their tensors is needed.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { checkWeights } from '../io/finite';
import { MAX_SMALL_FILE_BYTES, decodeText, readInputFile } from '../io/input';
import { FloatDtype, SafetensorsFile } from './safetensors';
import { blockOf, blockTensorOrder, familyBiases, findBlockFamily, linearSpec } from './block';
import { BlockWeights, LinearName, LlamaConfig, NormName, RopeScaling, WeightSource, linearShape } from './types';

export const HF_CONFIG_FILE = 'config.json';
export const HF_SINGLE_FILE = 'model.safetensors';
export const HF_INDEX_FILE = 'model.safetensors.index.json';

/**
 * The loader's side of a model family: how config.json names it and the defaults transformers'
 * config class fills in. Its decoder block (linears, norms, biases, tensor names) is the block
 * family of the same name (block.ts).
 */
export interface HfFamily {
  /** config.json model_type = the block family's name. */
  modelType: string;
  /** The one entry of config.json `architectures`. */
  architecture: string;
  /** transformers' defaults for absent keys. */
  defaults: { maxPositions: number; normEps: number; slidingWindow: number | null; kvHeads?: number };
}

const HF_FAMILIES = new Map<string, HfFamily>();

/** Make config.json files of model_type `f.modelType` loadable; its block family must be registered. */
export function registerHfFamily(f: HfFamily): void {
  if (HF_FAMILIES.has(f.modelType)) throw new Error(`HF family ${f.modelType} is already registered`);
  if (!findBlockFamily(f.modelType)) throw new Error(`HF family ${f.modelType} has no block family (block.ts)`);
  HF_FAMILIES.set(f.modelType, f);
}

// transformers' LlamaConfig, MistralConfig, Qwen2Config (Qwen2's default is 32 key/value heads, not num_attention_heads)
registerHfFamily({ modelType: 'llama', architecture: 'LlamaForCausalLM', defaults: { maxPositions: 2048, normEps: 1e-6, slidingWindow: null } });
registerHfFamily({ modelType: 'mistral', architecture: 'MistralForCausalLM', defaults: { maxPositions: 131072, normEps: 1e-6, slidingWindow: 4096 } });
registerHfFamily({ modelType: 'qwen2', architecture: 'Qwen2ForCausalLM', defaults: { maxPositions: 32768, normEps: 1e-6, slidingWindow: null, kvHeads: 32 } });

type Family = Pick<LlamaConfig, 'architecture'>;
const LLAMA: Family = { architecture: 'llama' };

/** HF parameter names; block tensors are named by the family's block description. */
export const hfName = {
  embedding: 'model.embed_tokens.weight',
  finalNorm: 'model.norm.weight',
  classifier: 'lm_head.weight',
  norm: (block: number, name: NormName, fam: Family = LLAMA) =>
    `model.layers.${block}.${blockOf(fam).norms.find((n) => n.name === name)!.hf}.weight`,
  linear: (block: number, name: LinearName, fam: Family = LLAMA) => `model.layers.${block}.${linearSpec(fam, name).hf}.weight`,
  bias: (block: number, name: LinearName, fam: Family = LLAMA) => `model.layers.${block}.${linearSpec(fam, name).hf}.bias`,
};

/**
 * Tensors a checkpoint may hold that transformers does not use: old exports saved the rotary
 * inv_freq buffer (recomputed from the config), and tied models may also store lm_head.weight
 * (transformers replaces it by the embedding).
 */
function ignorableTensor(name: string, cfg: LlamaConfig): boolean {
  return /^model\.layers\.\d+\.self_attn\.rotary_emb\.inv_freq$/.test(name) || (cfg.tiedEmbeddings && name === hfName.classifier);
}

/** Which piece of a WeightSource an HF tensor holds. */
export type HfTensorRole =
  | { kind: 'embedding' | 'finalNorm' | 'classifier' }
  | { kind: 'norm'; block: number; norm: NormName }
  | { kind: 'linear' | 'bias'; block: number; linear: LinearName };

export interface HfTensor {
  name: string;
  shape: number[];
  role: HfTensorRole;
}

/** Block `b`'s tensors in the usual HF file order (the block description's execution order). */
function hfBlockTensors(cfg: LlamaConfig, b: number): HfTensor[] {
  return blockTensorOrder(cfg).flatMap((t): HfTensor[] => {
    if ('norm' in t) return [{ name: hfName.norm(b, t.norm.name, cfg), shape: [cfg.dim], role: { kind: 'norm', block: b, norm: t.norm.name } }];
    const l = t.linear.name;
    const weight: HfTensor = { name: hfName.linear(b, l, cfg), shape: linearShape(cfg, l), role: { kind: 'linear', block: b, linear: l } };
    if (!t.bias) return [weight];
    return [weight, { name: hfName.bias(b, l, cfg), shape: [linearShape(cfg, l)[0]], role: { kind: 'bias', block: b, linear: l } }];
  });
}

/** Every tensor of the checkpoint in the usual HF file order; lm_head is absent when tied. */
export function hfTensors(cfg: LlamaConfig): HfTensor[] {
  const list: HfTensor[] = [{ name: hfName.embedding, shape: [cfg.vocabSize, cfg.dim], role: { kind: 'embedding' } }];
  for (let b = 0; b < cfg.nLayers; b++) list.push(...hfBlockTensors(cfg, b));
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

/**
 * Keys of config.json that crepe reads: their values decide what is computed (or that the
 * model is refused). Every other key must be in IGNORED_CONFIG_KEYS, or the model is refused.
 */
const READ_CONFIG_KEYS = new Set([
  'architectures', 'model_type', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads',
  'num_key_value_heads', 'head_dim', 'vocab_size', 'max_position_embeddings', 'rms_norm_eps', 'rope_theta',
  'rope_scaling', 'rope_parameters', 'partial_rotary_factor', 'tie_word_embeddings', 'hidden_act', 'attention_bias',
  'mlp_bias', 'sliding_window', 'use_sliding_window', 'max_window_layers', 'layer_types', 'rope_interleaved',
  'use_mrope', 'pretraining_tp',
]);

/**
 * Keys known not to change the forward pass at inference: storage dtype, special-token ids,
 * training-only settings (initialisation, dropout, which is off at inference), caching, and
 * bookkeeping. They are kept and written back on save.
 */
const IGNORED_CONFIG_KEYS = new Set([
  'torch_dtype', 'dtype', 'transformers_version', '_name_or_path', 'bos_token_id', 'eos_token_id', 'pad_token_id',
  'initializer_range', 'attention_dropout', 'use_cache', 'output_attentions', 'output_hidden_states',
  'return_dict', 'tokenizer_class', 'is_llama_config', '_attn_implementation_autoset', 'max_length',
  'keys_to_ignore_at_inference',
]);

/** config.json keys that switch biases on (read only for families whose block description names them). */
const BIAS_FLAG_KEYS = ['attention_bias', 'mlp_bias'];

/** Keys each rope type reads inside rope_scaling / rope_parameters. */
const ROPE_KEYS: Record<string, string[]> = {
  default: ['rope_type', 'type', 'rope_theta'],
  linear: ['rope_type', 'type', 'rope_theta', 'factor'],
  llama3: ['rope_type', 'type', 'rope_theta', 'factor', 'low_freq_factor', 'high_freq_factor', 'original_max_position_embeddings'],
};

/** Map an HF config.json object to a LlamaConfig; anything crepe would not compute as transformers does is refused. */
export function parseHfConfig(raw: unknown, file: string): LlamaConfig {
  if (!isObject(raw)) throw new CrepeError(`${file} is not a JSON object`);
  const modelType = raw.model_type;
  const archs = raw.architectures;
  const family = typeof modelType === 'string' ? HF_FAMILIES.get(modelType) : undefined;
  const archsOk = archs === undefined || (Array.isArray(archs) && archs.length === 1 && archs[0] === family?.architecture);
  if (typeof modelType !== 'string' || !family || !archsOk) {
    const what = `${JSON.stringify(archs ?? null)} (model_type ${JSON.stringify(modelType ?? null)})`;
    const supported = [...HF_FAMILIES.values()].map((f) => f.architecture).join(', ');
    throw new CrepeError(`unsupported architecture ${what} in ${file}; supported: ${supported}`);
  }
  for (const key of Object.keys(raw)) {
    if (!READ_CONFIG_KEYS.has(key) && !IGNORED_CONFIG_KEYS.has(key)) {
      throw new CrepeError(`unsupported config key ${JSON.stringify(key)} in ${file}: crepe does not know whether it changes the model, so it refuses to load it`);
    }
  }
  const defaults = family.defaults;
  const unsupported = (what: string): CrepeError => new CrepeError(`unsupported ${what} in ${file}`);

  const int = (key: string, fallback?: number): number => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new CrepeError(`${file}: ${key} must be a positive integer, got ${JSON.stringify(raw[key] ?? null)}`);
    }
    return v;
  };
  const positive = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw new CrepeError(`${file}: ${key} must be a positive number, got ${JSON.stringify(v ?? null)}`);
    }
    return v;
  };
  const flag = (key: string, fallback: boolean): boolean => {
    const v = raw[key] ?? fallback;
    if (typeof v !== 'boolean') throw new CrepeError(`${file}: ${key} must be true or false, got ${JSON.stringify(v)}`);
    return v;
  };

  if ((raw.hidden_act ?? 'silu') !== 'silu') throw unsupported(`hidden_act ${JSON.stringify(raw.hidden_act)}`);
  if (flag('rope_interleaved', false)) throw unsupported('rope_interleaved true');
  if (flag('use_mrope', false)) throw unsupported('use_mrope true (multimodal rotary embedding)');
  if (raw.partial_rotary_factor != null && raw.partial_rotary_factor !== 1) throw unsupported(`partial_rotary_factor ${JSON.stringify(raw.partial_rotary_factor)}`);
  if (raw.pretraining_tp != null) int('pretraining_tp'); // any value computes the same product (transformers only splits the matmul)

  const dim = int('hidden_size');
  const nHeads = int('num_attention_heads');
  const nKvHeads = int('num_key_value_heads', defaults.kvHeads ?? nHeads);
  const headDim = raw.head_dim == null ? dim / nHeads : int('head_dim');
  if (!Number.isInteger(headDim) || headDim % 2 !== 0) {
    throw new CrepeError(`${file}: head dimension ${headDim} (hidden_size / num_attention_heads) must be an even integer`);
  }
  if (nHeads % nKvHeads !== 0) {
    throw new CrepeError(`${file}: num_attention_heads ${nHeads} is not a multiple of num_key_value_heads ${nKvHeads}`);
  }
  const nLayers = int('num_hidden_layers');
  const maxSeqLen = int('max_position_embeddings', defaults.maxPositions);
  const tied = flag('tie_word_embeddings', false);

  // Biases as the block description says: always on some linears (Qwen2: q/k/v), or switched on
  // by flags (Llama: attention_bias on q/k/v/o, mlp_bias on the MLP). A flag the family does not read is refused.
  const block = blockOf({ architecture: modelType });
  for (const key of BIAS_FLAG_KEYS) {
    if (raw[key] != null && !Object.hasOwn(block.biases.flags ?? {}, key)) throw unsupported(`${key} for model_type ${modelType} (transformers does not read it)`);
  }
  const biases = familyBiases(block, (key) => flag(key, false));

  const slidingWindow = parseSlidingWindow(raw, modelType, nLayers, file, defaults.slidingWindow);
  const { theta, scaling } = parseRope(raw, maxSeqLen, file);

  return {
    architecture: modelType,
    dim,
    hiddenDim: int('intermediate_size'),
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize: int('vocab_size'),
    maxSeqLen,
    normEps: positive(raw.rms_norm_eps ?? defaults.normEps, 'rms_norm_eps'),
    ropeTheta: theta,
    ropeLayout: 'half',
    tiedEmbeddings: tied,
    ...(scaling ? { ropeScaling: scaling } : {}),
    ...(biases.length > 0 ? { biases } : {}),
    ...(slidingWindow !== null ? { slidingWindow } : {}),
    sourceConfig: structuredClone(raw),
  };
}

/**
 * RoPE theta and scaling from either spelling: transformers 4.x (top-level rope_theta, optional
 * rope_scaling {type|rope_type, factor, ...}) or 5.x (rope_parameters {rope_type, rope_theta,
 * ...}). As transformers' convert_rope_params_to_dict: rope_scaling wins over rope_parameters,
 * a theta inside the dict wins over the top-level one, and the default theta is 10000.
 */
function parseRope(raw: Record<string, unknown>, maxSeqLen: number, file: string): { theta: number; scaling?: RopeScaling } {
  const dict = raw.rope_scaling ?? raw.rope_parameters ?? {};
  const which = raw.rope_scaling != null ? 'rope_scaling' : 'rope_parameters';
  if (!isObject(dict)) throw new CrepeError(`${file}: ${which} must be an object, got ${JSON.stringify(dict)}`);
  const type = dict.rope_type ?? dict.type ?? 'default';
  if (typeof type !== 'string') throw new CrepeError(`${file}: ${which}.rope_type must be a string`);
  if (!Object.hasOwn(ROPE_KEYS, type)) {
    throw new CrepeError(
      `unsupported rope type ${JSON.stringify(type)} in ${file} (${which}): crepe computes default, linear and llama3 RoPE; ${type} would give different positions`,
    );
  }
  for (const key of Object.keys(dict)) {
    if (!ROPE_KEYS[type].includes(key)) throw new CrepeError(`unsupported key ${JSON.stringify(key)} in ${which} (rope type ${type}) of ${file}`);
  }
  const number = (v: unknown, key: string): number => {
    if (typeof v !== 'number' || !(v > 0) || !Number.isFinite(v)) {
      throw new CrepeError(`${file}: ${key} must be a positive number, got ${JSON.stringify(v ?? null)}`);
    }
    return v;
  };
  const theta = number(dict.rope_theta ?? raw.rope_theta ?? 10000, 'rope_theta');
  if (type === 'default') return { theta };
  const factor = number(dict.factor, `${which}.factor`);
  if (type === 'linear') return { theta, scaling: { type: 'linear', factor } };
  const lowFreqFactor = number(dict.low_freq_factor, `${which}.low_freq_factor`);
  const highFreqFactor = number(dict.high_freq_factor, `${which}.high_freq_factor`);
  if (!(highFreqFactor > lowFreqFactor)) throw new CrepeError(`${file}: ${which}.high_freq_factor must exceed low_freq_factor`);
  const original = number(dict.original_max_position_embeddings ?? maxSeqLen, `${which}.original_max_position_embeddings`);
  return { theta, scaling: { type: 'llama3', factor, lowFreqFactor, highFreqFactor, originalMaxPositionEmbeddings: original } };
}

/**
 * The attention window every layer uses, or null for full causal attention. Mistral applies
 * sliding_window (default 4096 when the key is absent) to every layer; Qwen2 only with
 * use_sliding_window, and then per layer (refused unless no layer or every layer slides).
 */
function parseSlidingWindow(
  raw: Record<string, unknown>,
  modelType: string,
  nLayers: number,
  file: string,
  fallback: number | null,
): number | null {
  const windowOf = (): number | null => {
    const v = raw.sliding_window === undefined ? fallback : raw.sliding_window;
    if (v === null) return null;
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v <= 0) {
      throw new CrepeError(`${file}: sliding_window must be a positive integer or null, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  let window: number | null;
  if (modelType === 'mistral') window = windowOf();
  else if (modelType === 'qwen2') {
    const use = raw.use_sliding_window ?? false;
    if (typeof use !== 'boolean') throw new CrepeError(`${file}: use_sliding_window must be true or false`);
    window = use ? windowOf() : null;
    const firstSliding = raw.max_window_layers ?? 28;
    if (window !== null && !(typeof firstSliding === 'number' && firstSliding === 0)) {
      throw new CrepeError(`unsupported per-layer sliding window in ${file} (use_sliding_window with max_window_layers ${JSON.stringify(firstSliding)})`);
    }
  } else {
    if (raw.sliding_window != null || raw.use_sliding_window != null) throw new CrepeError(`unsupported sliding_window for model_type ${modelType} in ${file}`);
    window = null;
  }
  const types = raw.layer_types;
  if (types != null) {
    const want = window === null ? 'full_attention' : 'sliding_attention';
    if (!Array.isArray(types) || types.length !== nLayers || types.some((t) => t !== want)) {
      throw new CrepeError(`unsupported layer_types in ${file}: crepe needs ${nLayers} x "${want}" for this config, got ${JSON.stringify(types)}`);
    }
  }
  return window;
}

const TORCH_DTYPE: Record<FloatDtype, string> = { F32: 'float32', BF16: 'bfloat16', F16: 'float16' };

/** The safetensors dtype a config.json declares (torch_dtype or dtype), if it is one crepe writes. */
export function configDtype(cfg: LlamaConfig): FloatDtype | undefined {
  const declared = cfg.sourceConfig?.dtype ?? cfg.sourceConfig?.torch_dtype;
  return (Object.keys(TORCH_DTYPE) as FloatDtype[]).find((d) => TORCH_DTYPE[d] === declared);
}

/**
 * The config.json describing `cfg` for HF transformers. A model read from HF writes back its own
 * config.json with only the dtype changed (in the source's spelling); a llama2.c model gets a
 * new one. The caller must have put q/k rows in rotate_half order (HF has no setting for the
 * adjacent layout).
 */
export function hfConfigJson(cfg: LlamaConfig, dtype: FloatDtype, tokens: SpecialTokenIds = {}): Record<string, unknown> {
  // The tokenizer's ids, where the source's config.json does not already say (-1: the tokenizer has none).
  const ids: Record<string, number> = {};
  for (const [key, id] of [['bos_token_id', tokens.bos], ['eos_token_id', tokens.eos], ['pad_token_id', tokens.pad]] as const) {
    if (id !== undefined && id >= 0 && cfg.sourceConfig?.[key] == null) ids[key] = id;
  }
  if (cfg.sourceConfig) {
    const out: Record<string, unknown> = { ...structuredClone(cfg.sourceConfig), ...ids };
    if ('dtype' in out || !('torch_dtype' in out)) out.dtype = TORCH_DTYPE[dtype];
    if ('torch_dtype' in out) out.torch_dtype = TORCH_DTYPE[dtype];
    return out;
  }
  if (cfg.ropeScaling || cfg.biases?.length || cfg.slidingWindow !== undefined) {
    throw new Error('a config with rope scaling, biases or a sliding window comes from HF and keeps its sourceConfig');
  }
  const modelType = cfg.architecture === 'mistral' ? 'mistral' : 'llama';
  return {
    architectures: [HF_FAMILIES.get(modelType)!.architecture],
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
    ...(modelType === 'mistral' ? { sliding_window: null } : { attention_bias: false, mlp_bias: false }),
    ...ids,
    torch_dtype: TORCH_DTYPE[dtype],
  };
}

/** Special-token ids for config.json and generation_config.json; absent or -1: none. */
export interface SpecialTokenIds {
  bos?: number;
  eos?: number;
  pad?: number;
}

function readJson(file: string, what: string): unknown {
  if (!fs.existsSync(file)) throw new CrepeError(`missing ${what}: ${file}`);
  const text = decodeText(readInputFile(file, what, MAX_SMALL_FILE_BYTES), file, what);
  try {
    return JSON.parse(text);
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
  if (fs.existsSync(indexFile)) {
    const weightMap = readWeightMap(indexFile);
    checkTensorNames(config, weightMap.keys(), indexFile);
    return new HfModel(config, dir, weightMap, indexFile).checkEmbeddingShape();
  }
  if (!fs.existsSync(singleFile)) {
    const torch = fs.readdirSync(dir).find((f) => /\.(bin|pth|pt)$/.test(f));
    if (torch) {
      throw new CrepeError(`${path.join(dir, torch)} holds PyTorch (pickle) weights, which crepe does not read: convert the model to safetensors (model.safetensors)`);
    }
    throw new CrepeError(`no ${HF_SINGLE_FILE} or ${HF_INDEX_FILE} in ${dir} (only safetensors weights are supported)`);
  }
  const single = SafetensorsFile.open(singleFile);
  try {
    checkTensorNames(config, single.names(), singleFile);
  } catch (e) {
    single.close();
    throw e;
  }
  const weightMap = new Map(single.names().map((n) => [n, HF_SINGLE_FILE]));
  return new HfModel(config, dir, weightMap, singleFile, single).checkEmbeddingShape();
}

/** Every tensor of the checkpoint is used or known to be ignorable; anything else is refused by name. */
function checkTensorNames(cfg: LlamaConfig, names: Iterable<string>, listing: string): void {
  const expected = new Set(hfTensors(cfg).map((t) => t.name));
  for (const name of names) {
    if (!expected.has(name) && !ignorableTensor(name, cfg)) {
      throw new CrepeError(`unexpected tensor ${name} in ${listing}: a ${cfg.architecture} model with this config.json does not use it, so the checkpoint is not what the config describes`);
    }
  }
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
    const norms = {} as Record<NormName, Float32Array>;
    const biases: Partial<Record<LinearName, Float32Array>> = {};
    for (const t of hfBlockTensors(cfg, index)) {
      const role = t.role;
      if (role.kind === 'norm') norms[role.norm] = this.read(t.name, t.shape);
      else if (role.kind === 'linear') linears[role.linear] = this.read(t.name, t.shape);
      else if (role.kind === 'bias') biases[role.linear] = this.read(t.name, t.shape);
    }
    return Object.keys(biases).length > 0 ? { norms, linears, biases } : { norms, linears };
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

  /**
   * The embedding's shape against config.json, from the shard's header alone: a vocab_size that
   * disagrees with the weights is blamed on config.json and the shard when the model is opened,
   * before a tokenizer is checked against it.
   */
  checkEmbeddingShape(): this {
    try {
      // a missing embedding is reported when it is read, as any missing tensor
      const shardName = this.weightMap.get(hfName.embedding);
      if (shardName !== undefined && this.shard(shardName).has(hfName.embedding)) this.shapeChecked(hfName.embedding, [this.config.vocabSize, this.config.dim]);
    } catch (e) {
      this.close();
      throw e;
    }
    return this;
  }

  /** The shard holding `name`, after checking the tensor's shape is `shape`. */
  private shapeChecked(name: string, shape: number[]): SafetensorsFile {
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
    return shard;
  }

  private read(name: string, shape: number[]): Float32Array {
    const shard = this.shapeChecked(name, shape);
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
