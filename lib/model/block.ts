/**
 * The decoder block of every supported model family, described once: its linears (the tensor
 * that feeds each, its [out, in] shape for a config, whether and when it has an output bias, its
 * names in Hugging Face and llama2.c files), its norms, and the order in which they run.
 *
 * Loaders and writers (HF safetensors, llama2.c, convert, save), the runtime, the pruning
 * pipeline, the dump, the memory planner and the Fisher pass read this description instead of
 * keeping lists of their own. A family that differs only in which linears carry a bias (Qwen2)
 * or in what its tensors are called is one `BlockFamily` here plus its config.json mapping in
 * `hf.ts`; nothing downstream changes (test/block.test.ts registers such a family and runs it).
 * A family whose block COMPUTES something else (a different activation, parallel attention)
 * also needs that computation in `forwardBlock` (runtime.ts), the one forward definition.
 */
import { CrepeError } from '../errors';
import type { LlamaConfig } from './types';

/** The prunable linears of a LLaMA-style decoder block. */
export type LinearName = 'q' | 'k' | 'v' | 'o' | 'gate' | 'up' | 'down';
export type NormName = 'attnNorm' | 'ffnNorm';

/**
 * The tensors that feed linears, in execution order: the normed block input, the concatenated
 * attention heads, the normed residual after attention, the gated MLP hidden state. Linears fed
 * by the same tensor share calibration statistics.
 */
export type BlockInput = 'attn-in' | 'attn-out' | 'mlp-in' | 'mlp-hidden';

export interface LinearSpec {
  readonly name: LinearName;
  readonly kind: 'attn' | 'mlp';
  readonly input: BlockInput;
  /** [out, in] (PyTorch layout) for a config. */
  shape(cfg: LlamaConfig): [number, number];
  /** Rows grouped by attention head and rotated by RoPE (q: per query head, k: per key/value head). */
  readonly rotary?: 'q' | 'kv';
  /** Module name inside `model.layers.N.` of an HF checkpoint (`.weight`, `.bias` appended). */
  readonly hf: string;
  /** Tensor name in llama2.c's export.py (`wq`, `w1`, ...). */
  readonly llama2c: string;
}

export interface NormSpec {
  readonly name: NormName;
  /** The block input it normalises (it runs right before the first linear that reads it). */
  readonly feeds: BlockInput;
  readonly hf: string;
  readonly llama2c: string;
}

export interface BlockFamily {
  /** The config's `architecture` (HF model_type); llama2.c files are 'llama'. */
  readonly family: string;
  /** In execution order. */
  readonly linears: readonly LinearSpec[];
  readonly norms: readonly NormSpec[];
  /**
   * Which linears add an output bias: `always`, plus those a config.json flag switches on.
   * Biases are never pruned and do not count towards sparsity.
   */
  readonly biases: { readonly always?: readonly LinearName[]; readonly flags?: Readonly<Record<string, readonly LinearName[]>> };
}

const qOut = (c: LlamaConfig): number => c.nHeads * c.headDim;
const kvOut = (c: LlamaConfig): number => c.nKvHeads * c.headDim;

/** The LLaMA block: pre-norm attention with RoPE (grouped key/value heads), pre-norm SwiGLU MLP. */
export const LLAMA_LINEARS: readonly LinearSpec[] = [
  { name: 'q', kind: 'attn', input: 'attn-in', shape: (c) => [qOut(c), c.dim], rotary: 'q', hf: 'self_attn.q_proj', llama2c: 'wq' },
  { name: 'k', kind: 'attn', input: 'attn-in', shape: (c) => [kvOut(c), c.dim], rotary: 'kv', hf: 'self_attn.k_proj', llama2c: 'wk' },
  { name: 'v', kind: 'attn', input: 'attn-in', shape: (c) => [kvOut(c), c.dim], hf: 'self_attn.v_proj', llama2c: 'wv' },
  { name: 'o', kind: 'attn', input: 'attn-out', shape: (c) => [c.dim, qOut(c)], hf: 'self_attn.o_proj', llama2c: 'wo' },
  { name: 'gate', kind: 'mlp', input: 'mlp-in', shape: (c) => [c.hiddenDim, c.dim], hf: 'mlp.gate_proj', llama2c: 'w1' },
  { name: 'up', kind: 'mlp', input: 'mlp-in', shape: (c) => [c.hiddenDim, c.dim], hf: 'mlp.up_proj', llama2c: 'w3' },
  { name: 'down', kind: 'mlp', input: 'mlp-hidden', shape: (c) => [c.dim, c.hiddenDim], hf: 'mlp.down_proj', llama2c: 'w2' },
];

export const LLAMA_NORMS: readonly NormSpec[] = [
  { name: 'attnNorm', feeds: 'attn-in', hf: 'input_layernorm', llama2c: 'rms_att_weight' },
  { name: 'ffnNorm', feeds: 'mlp-in', hf: 'post_attention_layernorm', llama2c: 'rms_ffn_weight' },
];

const families = new Map<string, BlockFamily>();

/** Make a family known to the loaders and everything downstream; names must be new. */
export function registerBlockFamily(f: BlockFamily): void {
  if (families.has(f.family)) throw new Error(`block family ${f.family} is already registered`);
  const names = f.linears.map((l) => l.name);
  if (new Set(names).size !== names.length) throw new Error(`block family ${f.family} lists a linear twice`);
  for (const n of f.norms) if (!f.linears.some((l) => l.input === n.feeds)) throw new Error(`${f.family}: norm ${n.name} feeds no linear`);
  families.set(f.family, f);
}

registerBlockFamily({ family: 'llama', linears: LLAMA_LINEARS, norms: LLAMA_NORMS, biases: { flags: { attention_bias: ['q', 'k', 'v', 'o'], mlp_bias: ['gate', 'up', 'down'] } } });
registerBlockFamily({ family: 'mistral', linears: LLAMA_LINEARS, norms: LLAMA_NORMS, biases: {} });
registerBlockFamily({ family: 'qwen2', linears: LLAMA_LINEARS, norms: LLAMA_NORMS, biases: { always: ['q', 'k', 'v'] } });

/** The block description of a config's family. */
export function blockOf(cfg: Pick<LlamaConfig, 'architecture'>): BlockFamily {
  const f = families.get(cfg.architecture);
  if (!f) throw new CrepeError(`unknown model family ${JSON.stringify(cfg.architecture)}; known: ${[...families.keys()].join(', ')}`);
  return f;
}

/** The registered family called `name`, if any. */
export function findBlockFamily(name: string): BlockFamily | undefined {
  return families.get(name);
}

/** The linears' names in execution order. */
export function linearNames(cfg: Pick<LlamaConfig, 'architecture'>): readonly LinearName[] {
  return blockOf(cfg).linears.map((l) => l.name);
}

export function linearSpec(cfg: Pick<LlamaConfig, 'architecture'>, name: LinearName): LinearSpec {
  const l = blockOf(cfg).linears.find((s) => s.name === name);
  if (!l) throw new Error(`a ${cfg.architecture} block has no linear ${name}`);
  return l;
}

/** [out, in] of a linear layer. */
export function linearShape(cfg: LlamaConfig, name: LinearName): [number, number] {
  return linearSpec(cfg, name).shape(cfg);
}

/** Where a linear sits: attention or MLP. */
export function linearKind(name: LinearName): 'attn' | 'mlp' {
  return LLAMA_LINEARS.find((l) => l.name === name)!.kind;
}

/** Canonical parameter names used in dumps and HF-style maps, e.g. `blocks.0.attn.q`. */
export function linearKey(block: number, name: LinearName): string {
  return `blocks.${block}.${linearKind(name)}.${name}`;
}

/** Whether the config gives `name` an output bias. */
export function hasBias(cfg: LlamaConfig, name: LinearName): boolean {
  return cfg.biases?.includes(name) ?? false;
}

/**
 * The linears that read each block input, in execution order, e.g. [['q','k','v'], ['o'],
 * ['gate','up'], ['down']] for LLaMA: one calibration statistics object per group.
 */
export function inputGroups(cfg: Pick<LlamaConfig, 'architecture'>): readonly (readonly LinearName[])[] {
  const out = new Map<BlockInput, LinearName[]>();
  for (const l of blockOf(cfg).linears) out.set(l.input, [...(out.get(l.input) ?? []), l.name]);
  return [...out.values()];
}

/** The linears that read `input`. */
export function groupOf(cfg: Pick<LlamaConfig, 'architecture'>, input: BlockInput): readonly LinearName[] {
  return blockOf(cfg).linears.filter((l) => l.input === input).map((l) => l.name);
}

/**
 * The block's tensors in execution order: each norm right before the first linear it feeds,
 * each linear followed by its bias when it has one. This is the order HF checkpoints list them in.
 */
export function blockTensorOrder(cfg: LlamaConfig): ({ norm: NormSpec } | { linear: LinearSpec; bias: boolean })[] {
  const fam = blockOf(cfg);
  const out: ({ norm: NormSpec } | { linear: LinearSpec; bias: boolean })[] = [];
  const seen = new Set<BlockInput>();
  for (const l of fam.linears) {
    if (!seen.has(l.input)) {
      seen.add(l.input);
      for (const n of fam.norms) if (n.feeds === l.input) out.push({ norm: n });
    }
    out.push({ linear: l, bias: hasBias(cfg, l.name) });
  }
  return out;
}

/**
 * Which linears of `family` have a bias under a config.json: the family's `always` list plus
 * every flag set to true. `flag` reads (and type-checks) a boolean key.
 */
export function familyBiases(family: BlockFamily, flag: (key: string) => boolean): LinearName[] {
  const out = new Set<LinearName>(family.biases.always ?? []);
  for (const [key, names] of Object.entries(family.biases.flags ?? {})) if (flag(key)) for (const n of names) out.add(n);
  return family.linears.map((l) => l.name).filter((n) => out.has(n));
}

/** The number of heads whose rows RoPE rotates in `name` (q: query heads, k: key/value heads), or 0. */
export function rotaryHeads(cfg: LlamaConfig, name: LinearName): number {
  const r = linearSpec(cfg, name).rotary;
  return r === 'q' ? cfg.nHeads : r === 'kv' ? cfg.nKvHeads : 0;
}

/** Canonical name of a block's norm in messages and dumps, e.g. `blocks.0.attn_norm`. */
export function normKey(block: number, name: NormName): string {
  return `blocks.${block}.${name.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`)}`;
}
