/**
 * The model-side vocabulary shared by loaders, the runtime and the pruning pipeline.
 * Weights are kept in PyTorch layout: a linear layer's weight is [out, in], row-major.
 */

import type { LinearName, NormName } from './block';

// The block vocabulary lives in block.ts (one description per model family); re-exported here
// because every model-side module speaks it.
export type { LinearName, NormName } from './block';
export { inputGroups, linearKey, linearKind, linearNames, linearShape, rotaryHeads } from './block';

/**
 * Rotary embedding layout. 'adjacent': llama2.c / Meta, rotates pairs (2i, 2i+1).
 * 'half': Hugging Face rotate_half, rotates pairs (i, i + headDim/2).
 */
export type RopeLayout = 'adjacent' | 'half';

/**
 * RoPE frequency scaling, as transformers' modeling_rope_utils computes inv_freq: 'linear'
 * divides every frequency by factor; 'llama3' (Llama 3.1+) divides the low frequencies by factor,
 * keeps the high ones and interpolates in between.
 */
export type RopeScaling =
  | { type: 'linear'; factor: number }
  | { type: 'llama3'; factor: number; lowFreqFactor: number; highFreqFactor: number; originalMaxPositionEmbeddings: number };

export interface LlamaConfig {
  architecture: string; // e.g. 'llama', 'mistral'
  dim: number;
  hiddenDim: number;
  nLayers: number;
  nHeads: number;
  nKvHeads: number;
  headDim: number;
  vocabSize: number;
  maxSeqLen: number;
  normEps: number;
  ropeTheta: number;
  ropeLayout: RopeLayout;
  /** Frequency scaling on top of ropeTheta; absent = none. */
  ropeScaling?: RopeScaling;
  /** true when the classifier shares the token-embedding matrix. */
  tiedEmbeddings: boolean;
  /** Linears with an additive output bias (Qwen2: q, k, v); absent = none. Biases are never pruned. */
  biases?: readonly LinearName[];
  /** Sliding-window attention (Mistral): a query sees the last slidingWindow keys, itself included; absent = full causal. */
  slidingWindow?: number;
  /**
   * The checkpoint's own config.json (HF sources), so that a saved model writes back every field
   * in the source's spelling instead of a rebuilt subset.
   */
  sourceConfig?: Readonly<Record<string, unknown>>;
}

/**
 * One decoder block's weights, float32, linears in [out, in] layout. Code that rebuilds a block
 * (e.g. after pruning) copies the whole object and replaces what it changes, so optional parts
 * such as biases travel with it.
 */
export interface BlockWeights {
  /** The family's norms (block.ts), each [dim]. */
  norms: Record<NormName, Float32Array>;
  linears: Record<LinearName, Float32Array>;
  /** Output biases [out] of the linears in config.biases (never pruned, not counted in sparsity). */
  biases?: Partial<Record<LinearName, Float32Array>>;
}

/**
 * Lazy access to a checkpoint. Implementations read one piece at a time from disk so that a
 * model far larger than memory can be processed one decoder block at a time.
 */
export interface WeightSource {
  readonly config: LlamaConfig;
  readonly format: 'llama2c' | 'hf';
  /** Human-readable origin (a path). */
  readonly origin: string;
  readEmbedding(): Float32Array; // [vocab, dim]
  readBlock(index: number): BlockWeights;
  readFinalNorm(): Float32Array; // [dim]
  readClassifier(): Float32Array; // [vocab, dim]; equals the embedding when tied
  close(): void;
}
