/**
 * The streaming zero-shot evaluator: block-outer, pack-inner, as `eval`'s streaming evaluator
 * runs windows. Every pack's hidden states (all documents' context + continuation rows) stay
 * on the host (or in a spill file) between blocks; one decoder block's weights are on the device
 * at a time, then the head scores the continuation rows. The packs, their rotary positions and
 * attention masks are those of the resident evaluator, and the kernels run in the same order on
 * float32 states copied exactly between blocks, so the scores are bit-identical to it.
 */
import * as tf from '@tensorflow/tfjs';
import { disposeBlock, disposeWindowTables, forwardBlock, headLogits, makeBlockTensors, makePackedTables, transpose } from '../../model/runtime';
import { WeightSource } from '../../model/types';
import { ActivationStorage, ActivationStore, createActivationStore } from '../../plan/spill';
import { RequestScore, TokenRequest, continuationRows, packItems, packedLength, scoresFromLogits } from './loglikelihood';

/** Rows per stored record: a pack takes ceil(rows / PAGE_ROWS) records, so at most PAGE_ROWS - 1 rows are padding. */
export const PAGE_ROWS = 32;

export interface StreamingZeroshotOptions {
  /** Where the hidden states live between blocks: float32 in memory or a spill file (exact either way). */
  storage?: Exclude<ActivationStorage, 'f16'>;
  spillDir?: string;
  /** (steps done, steps in all): one step per pack per block, and per pack for the head. */
  onStep?: (done: number, total: number) => void;
}

/** Host rows the streaming evaluator stores for these batches (padding included), and the longest pack. */
export function streamingLayout(items: readonly (readonly TokenRequest[])[], batches: readonly number[][]): { storedRows: number; longestPack: number } {
  let storedRows = 0;
  let longestPack = 0;
  for (const b of batches) {
    const rows = b.reduce((a, i) => a + packedLength(items[i]), 0);
    storedRows += Math.ceil(rows / PAGE_ROWS) * PAGE_ROWS;
    longestPack = Math.max(longestPack, rows);
  }
  return { storedRows, longestPack };
}

/** Each pack's hidden states [rows, dim] as consecutive fixed-size records of an ActivationStore. */
class PackStates {
  private readonly first: number[] = [];
  private readonly rows: number[] = [];
  private readonly store: ActivationStore;
  constructor(
    rowsPerPack: readonly number[],
    private readonly dim: number,
    storage: Exclude<ActivationStorage, 'f16'>,
    spillDir?: string,
  ) {
    let records = 0;
    for (const r of rowsPerPack) {
      this.first.push(records);
      this.rows.push(r);
      records += Math.ceil(r / PAGE_ROWS);
    }
    this.store = createActivationStore(storage, records, PAGE_ROWS * dim, spillDir);
  }
  get(p: number): Float32Array {
    const out = new Float32Array(this.rows[p] * this.dim);
    const page = PAGE_ROWS * this.dim;
    for (let k = 0, at = 0; at < out.length; k++, at += page) {
      const rec = this.store.get(this.first[p] + k);
      out.set(rec.subarray(0, Math.min(page, out.length - at)), at);
    }
    return out;
  }
  set(p: number, x: Float32Array): void {
    const page = PAGE_ROWS * this.dim;
    for (let k = 0, at = 0; at < x.length; k++, at += page) {
      let rec = x.subarray(at, at + page);
      if (rec.length < page) {
        const padded = new Float32Array(page);
        padded.set(rec);
        rec = padded;
      }
      // a record that is a view into a larger buffer: the disk store writes the view's bytes only
      this.store.set(this.first[p] + k, rec);
    }
  }
  dispose(): void {
    this.store.dispose();
  }
}

/**
 * Scores of all items (each a list of requests), batched as `batches` (packBatches), computed
 * one decoder block at a time.
 */
export function scoreStreaming(source: WeightSource, items: readonly (readonly TokenRequest[])[], batches: readonly number[][], opts: StreamingZeroshotOptions = {}): RequestScore[][] {
  const cfg = source.config;
  const out = new Array<RequestScore[]>(items.length);
  if (batches.length === 0) return out;
  const packOf = (b: readonly number[]) => packItems(b.map((i) => items[i]));
  const rowsPerPack = batches.map((b) => b.reduce((a, i) => a + packedLength(items[i]), 0));
  const states = new PackStates(rowsPerPack, cfg.dim, opts.storage ?? 'f32', opts.spillDir);
  const total = (cfg.nLayers + 1) * batches.length;
  let done = 0;
  const step = () => opts.onStep?.(++done, total);
  try {
    // the embedding rows of every pack's tokens (what tf.gather copies in the resident model)
    {
      const emb = source.readEmbedding();
      batches.forEach((b, p) => {
        const { tokens } = packOf(b);
        const x = new Float32Array(tokens.length * cfg.dim);
        for (let t = 0; t < tokens.length; t++) x.set(emb.subarray(tokens[t] * cfg.dim, (tokens[t] + 1) * cfg.dim), t * cfg.dim);
        states.set(p, x);
      });
    }
    for (let block = 0; block < cfg.nLayers; block++) {
      const bt = makeBlockTensors(cfg, source.readBlock(block));
      try {
        batches.forEach((b, p) => {
          // the pack's positions and mask are rebuilt per block: T x T floats per pack would not stay small on the host
          const pack = packOf(b);
          const tables = makePackedTables(cfg, pack.positions, pack.mask);
          const x = tf.tensor2d(states.get(p), [pack.tokens.length, cfg.dim]);
          try {
            const y = forwardBlock(cfg, bt, tables, x);
            states.set(p, y.dataSync() as Float32Array);
            y.dispose();
          } finally {
            x.dispose();
            disposeWindowTables(tables);
          }
          step();
        });
      } finally {
        disposeBlock(bt);
      }
    }
    const cls = cfg.tiedEmbeddings ? source.readEmbedding() : source.readClassifier();
    const classifierT = tf.tensor2d(transpose(cls, cfg.vocabSize, cfg.dim), [cfg.dim, cfg.vocabSize]);
    const finalNorm = tf.tensor1d(source.readFinalNorm());
    try {
      batches.forEach((b, p) => {
        const pack = packOf(b);
        const x = tf.tensor2d(states.get(p), [pack.tokens.length, cfg.dim]);
        // as LlamaModel.logitsAt: the continuation rows, then the final norm and the classifier
        const logits = tf.tidy(() => headLogits(cfg, finalNorm, classifierT, tf.gather(x, tf.tensor1d(continuationRows(pack), 'int32')) as tf.Tensor2D));
        const data = logits.dataSync() as Float32Array;
        tf.dispose([x, logits]);
        const mine = b.map((i) => items[i]);
        scoresFromLogits(mine, pack, data, cfg.vocabSize).forEach((s, k) => (out[b[k]] = s));
        step();
      });
    } finally {
      tf.dispose([classifierT, finalNorm]);
    }
  } finally {
    states.dispose();
  }
  return out;
}
