/**
 * The streaming evaluator: block-outer, window-inner, as the pruning pipeline runs. The hidden
 * states of every evaluation window stay on the host (or in a spill file), one decoder block's
 * weights are on the device at a time, read lazily from the source (a checkpoint, or pruned
 * blocks in a spill file). Peak device memory is one block plus the head, whatever the depth;
 * the numbers are those of the resident LlamaModel (same kernels, same order, float32 hidden
 * states copied exactly between blocks).
 */
import * as tf from '@tensorflow/tfjs';
import { disposeBlock, disposeWindowTables, headLogProbs, makeBlockTensors, makeWindowTables, transpose } from '../model/runtime';
import { WeightSource } from '../model/types';
import { ActivationStorage } from '../plan/spill';
import { embedWindows, runBlock } from '../prune/pipeline';
import { cpuSecondsSince, secondsSince } from '../util/time';
import { ProgressFn } from './perplexity';

export interface StreamingOptions {
  storage?: ActivationStorage;
  spillDir?: string;
  /** Called after each block (done, total) and after the head. */
  onBlock?: (done: number, total: number) => void;
  onProgress?: ProgressFn;
  /** Filled with the seconds spent in the decoder blocks (reading included) and in the head. */
  timing?: StreamingTiming;
}

export interface StreamingTiming {
  blocksSeconds: number;
  headSeconds: number;
  /** CPU seconds (user + system) of the same two stages. */
  blocksCpuSeconds: number;
  headCpuSeconds: number;
}

/**
 * Per-window NLL sums (float64) of `windows` (all of one length) under `source`, computed one
 * block at a time. Several datasets' windows can go through one pass, so each block is read once.
 */
export function streamingWindowNlls(source: WeightSource, windows: Int32Array[], opts: StreamingOptions = {}): number[] {
  if (windows.length === 0) return [];
  const cfg = source.config;
  const T = windows[0].length;
  if (windows.some((w) => w.length !== T)) throw new Error('streaming evaluation needs windows of one length');
  const states = embedWindows(source, windows, opts.storage ?? 'f32', opts.spillDir);
  const tables = makeWindowTables(cfg, T);
  const t0 = process.hrtime.bigint();
  const c0 = process.cpuUsage();
  const timing = opts.timing ?? { blocksSeconds: 0, headSeconds: 0, blocksCpuSeconds: 0, headCpuSeconds: 0 };
  try {
    for (let b = 0; b < cfg.nLayers; b++) {
      const bt = makeBlockTensors(cfg, source.readBlock(b));
      try {
        runBlock(cfg, bt, tables, states, states);
      } finally {
        disposeBlock(bt);
      }
      opts.onBlock?.(b + 1, cfg.nLayers + 1);
    }
    timing.blocksSeconds = secondsSince(t0);
    timing.blocksCpuSeconds = cpuSecondsSince(c0);
    const tHead = process.hrtime.bigint();
    const cHead = process.cpuUsage();
    const cls = cfg.tiedEmbeddings ? source.readEmbedding() : source.readClassifier();
    const classifierT = tf.tensor2d(transpose(cls, cfg.vocabSize, cfg.dim), [cfg.dim, cfg.vocabSize]);
    const finalNorm = tf.tensor1d(source.readFinalNorm());
    try {
      return windows.map((w, i) => {
        const x = tf.tensor2d(states.get(i), [T, cfg.dim]);
        const lp = headLogProbs(cfg, finalNorm, classifierT, x, w);
        x.dispose();
        let s = 0;
        for (let t = 0; t < lp.length; t++) s -= lp[t];
        opts.onProgress?.(i + 1, windows.length, ((i + 1) * (T - 1)) / (Number(process.hrtime.bigint() - t0) / 1e9));
        return s;
      });
    } finally {
      tf.dispose([classifierT, finalNorm]);
      timing.headSeconds = secondsSince(tHead);
      timing.headCpuSeconds = cpuSecondsSince(cHead);
      opts.onBlock?.(cfg.nLayers + 1, cfg.nLayers + 1);
    }
  } finally {
    states.dispose();
    disposeWindowTables(tables);
  }
}
