/**
 * Evaluating many configurations of one strategy on one model, as a search does, without redoing
 * what does not change between them. Built once per search setup, it keeps every linear's
 * weight, statistics and the strategy's prepared scorer (`Strategy.prepare`: for CRePE |W|, row
 * and column sums and window sums per kernel shape); a configuration then costs one scoring pass
 * and one mask selection per layer on the host, with no tfjs round trip and no weight reads.
 *
 * The masks are the ones the standard pipeline would choose from the same statistics (scores
 * equal to `Strategy.score` up to float32 rounding, checked by the strategy contract tests), so
 * search-subset PPLs and proxies are those of `pruneModel` with `precomputed` statistics.
 * Strategies without `prepare`, or that update weights (`pruneLayer`), score through tfjs.
 *
 * Memory: the dense linears of every block stay resident (plus the prepared caches), so this is
 * for the models a search runs on, not for checkpoints larger than memory.
 */
import * as tf from '@tensorflow/tfjs';
import { LinearName, linearKey, linearKind, linearNames, linearShape } from '../model/types';
import { OverlaySource, CalibrationStats } from '../prune/pipeline';
import { Structure, applyMask, selectMask } from '../prune/select';
import { InputStats, emptyStats } from '../prune/stats';
import { LayerContext, Params, Strategy, canonicalRowOrder } from '../prune/strategy';
import { datasetWindows } from '../eval/evaluate';
import { perplexity, windowNll } from '../eval/perplexity';
import { OpenedModel } from '../model/resolve';
import { LlamaModel } from '../model/runtime';
import { WeightSource, BlockWeights } from '../model/types';
import { WeightFisher } from './fisher';
import { LayerSample } from './proxy';

interface PreparedLayer {
  block: number;
  name: LinearName;
  rows: number;
  cols: number;
  weight: Float32Array;
  stats: InputStats;
  /** Scores of the whole layer, or of the listed rows only ([rows.length, cols]). */
  score: (params: Params, rows?: Int32Array) => Float32Array;
}

/**
 * A layer's row sample for proxies: which rows, and their weights (one array, so caches keyed by
 * it hit), plus the Fisher data of those rows when the setup collected it.
 */
interface RowSample {
  rows: Int32Array;
  weight: Float32Array;
  fisher?: Float32Array;
  outputFisher?: Float32Array;
  fisherTokens?: { g: Float32Array; x: Float32Array; count: number };
}

export interface PrunedLayer extends LayerSample {
  block: number;
  name: LinearName;
}

/**
 * Which evaluation windows form a search subset of `count` windows: 'first' = the first `count`
 * windows of the split (a few consecutive documents); 'spread' = `count` windows spread over the
 * whole split, so that the subset samples many documents (see `spreadWindowIndices`).
 */
export type WindowSample = 'first' | 'spread';

/**
 * The first `count` positions of a van der Corput (base-2 radical inverse) sequence scaled to
 * [0, total): 0, 1/2, 1/4, 3/4, 1/8, ... of the split. Every prefix is itself spread over the
 * whole split, so a multi-fidelity search that extends 2 windows to 6 keeps sampling the whole
 * split, and the subset of `count` windows is the same whatever larger subset is asked for later.
 * Positions are distinct while count <= total (distinct dyadic fractions at least 1/total apart
 * until the sequence is finer than the split; then the next unused window is taken).
 */
export function spreadWindowIndices(total: number, count: number): number[] {
  if (!(Number.isInteger(count) && count >= 0 && count <= total)) throw new Error(`cannot spread ${count} windows over ${total}`);
  const used = new Set<number>();
  const out: number[] = [];
  for (let k = 0; out.length < count; k++) {
    let v = 0;
    for (let bit = 0.5, n = k; n > 0; n >>= 1, bit /= 2) if (n & 1) v += bit;
    let i = Math.floor(v * total);
    while (used.has(i)) i = (i + 1) % total;
    used.add(i);
    out.push(i);
  }
  return out;
}

export class ConfigEvaluator {
  private layers: PreparedLayer[] = [];
  private denseBlocks: BlockWeights[] = [];
  private windowCache = new Map<string, Int32Array[]>();
  private rowSamples = new Map<number, (RowSample | undefined)[]>();

  constructor(
    readonly model: OpenedModel,
    readonly strategy: Strategy,
    readonly structure: Structure,
    stats: CalibrationStats | null,
    readonly fisher?: WeightFisher,
    /** How a search subset of windows is drawn from the split (default: the first windows). */
    readonly windowSample: WindowSample = 'first',
  ) {
    if (!stats) return; // withStructure fills the caches in
    const src = model.source;
    const cfg = src.config;
    for (let b = 0; b < cfg.nLayers; b++) {
      const dense = src.readBlock(b);
      this.denseBlocks.push(dense);
      for (const name of linearNames(cfg)) {
        const [rows, cols] = linearShape(cfg, name);
        const weight = dense.linears[name];
        const layerStats = stats.blocks[b]?.get(name) ?? emptyStats(cols);
        const ctxOf = (w: tf.Tensor2D): LayerContext => ({
          weight: w,
          weightData: weight,
          shape: [rows, cols],
          stats: layerStats,
          name,
          block: b,
          kind: linearKind(name),
          key: linearKey(b, name),
          canonicalRows: canonicalRowOrder(cfg, name),
        });
        let score: (p: Params, rows?: Int32Array) => Float32Array;
        if (strategy.prepare) {
          const t = tf.tensor2d(weight, [rows, cols]);
          try {
            score = strategy.prepare(ctxOf(t));
          } finally {
            t.dispose();
          }
        } else {
          score = (p, only) => {
            const t = tf.tensor2d(weight, [rows, cols]);
            try {
              const s = strategy.score(ctxOf(t), p);
              const out = s.dataSync() as Float32Array;
              s.dispose();
              return only ? gatherRows(out, only, cols) : out;
            } finally {
              t.dispose();
            }
          };
        }
        this.layers.push({ block: b, name, rows, cols, weight, stats: layerStats, score });
      }
    }
  }

  /** The same caches (weights, prepared scorers, windows), selecting masks for another structure. */
  withStructure(structure: Structure): ConfigEvaluator {
    const other = new ConfigEvaluator(this.model, this.strategy, structure, null, this.fisher, this.windowSample);
    other.layers = this.layers;
    other.denseBlocks = this.denseBlocks;
    other.windowCache = this.windowCache;
    other.rowSamples = this.rowSamples;
    return other;
  }

  /** Whether this evaluator can stand in for the pipeline (score-then-select strategies). */
  static supports(strategy: Strategy): boolean {
    return !strategy.pruneLayer;
  }

  /** Score and select every layer under `params`, calling `onLayer` with each (in pipeline order). */
  prune(params: Params, onLayer?: (layer: PrunedLayer) => void): Uint8Array[] {
    const masks: Uint8Array[] = [];
    for (const l of this.layers) {
      const scores = l.score(params);
      const mask = selectMask(scores, l.rows, l.cols, this.structure);
      masks.push(mask);
      onLayer?.({
        block: l.block,
        name: l.name,
        weight: l.weight,
        scores,
        mask,
        stats: l.stats,
        rows: l.rows,
        cols: l.cols,
        ...this.fisherOf(l),
      });
    }
    return masks;
  }

  /**
   * Like `prune`, but each layer keeps only an evenly spaced `fraction` of its rows (at least
   * one) after scoring, and selects the mask within them: what a proxy needs when an estimate
   * from a row sample is enough. Row-wise and N:M selections are exactly those of the whole
   * layer on the kept rows; a matrix-wide unstructured selection uses the sample's own
   * threshold (an estimate of the whole matrix's). No masks are returned: the sample cannot
   * prune the model.
   */
  pruneSampled(params: Params, fraction: number, onLayer: (layer: PrunedLayer) => void): void {
    if (!(fraction > 0 && fraction <= 1)) throw new Error(`row fraction must be in (0, 1], got ${fraction}`);
    const samples = this.rowSamplesOf(fraction);
    this.layers.forEach((l, i) => {
      const sample = samples[i];
      // only the sampled rows are scored (the prepared scorer's window sums still see their neighbours)
      const scores = sample ? l.score(params, sample.rows) : l.score(params);
      const weight = sample ? sample.weight : l.weight;
      const rows = sample ? sample.rows.length : l.rows;
      const mask = selectMask(scores, rows, l.cols, this.structure);
      const fisher = sample ? { fisher: sample.fisher, outputFisher: sample.outputFisher, fisherTokens: sample.fisherTokens } : this.fisherOf(l);
      onLayer({ block: l.block, name: l.name, weight, scores, mask, stats: l.stats, rows, cols: l.cols, ...fisher });
    });
  }

  /** The layer's Fisher data (fisher.ts), when the setup collected it. */
  private fisherOf(l: PreparedLayer): Pick<LayerSample, 'fisher' | 'outputFisher' | 'fisherTokens'> {
    if (!this.fisher) return {};
    return {
      fisher: this.fisher.blocks[l.block]?.get(l.name),
      outputFisher: this.fisher.outputs[l.block]?.get(l.name),
      fisherTokens: { ...this.fisher.kept[l.block].get(l.name)!, count: this.fisher.keptTokens },
    };
  }

  /** Per layer the evenly spaced rows a fraction keeps (undefined: every row), built once per fraction. */
  private rowSamplesOf(fraction: number): (RowSample | undefined)[] {
    let samples = this.rowSamples.get(fraction);
    if (!samples) {
      samples = this.layers.map((l) => {
        const kept = Math.max(1, Math.round(l.rows * fraction));
        if (kept >= l.rows) return undefined;
        const rows = Int32Array.from({ length: kept }, (_, i) => Math.floor(((i + 0.5) * l.rows) / kept));
        const sample: RowSample = { rows, weight: gatherRows(l.weight, rows, l.cols) };
        const f = this.fisherOf(l);
        // the Fisher diagonal [rows, cols] and output sensitivities [rows] by row; the kept
        // tokens' output gradients [S, rows] by column (their inputs [S, cols] are shared)
        if (f.fisher) sample.fisher = gatherRows(f.fisher, rows, l.cols);
        if (f.outputFisher) sample.outputFisher = gatherRows(f.outputFisher, rows, 1);
        if (f.fisherTokens) {
          const { g, x, count } = f.fisherTokens;
          const gs = new Float32Array(count * kept);
          for (let t = 0; t < count; t++) for (let i = 0; i < kept; i++) gs[t * kept + i] = g[t * l.rows + rows[i]];
          sample.fisherTokens = { g: gs, x, count };
        }
        return sample;
      });
      this.rowSamples.set(fraction, samples);
    }
    return samples;
  }

  /**
   * The search subset of `count` evaluation windows of `dataset` (see `windowSample`), tokenized
   * once per evaluator.
   */
  private windows(dataset: string, count: number | 'all'): Int32Array[] {
    const key = `${dataset}\u0000${count}`;
    let ws = this.windowCache.get(key);
    if (!ws) {
      if (this.windowSample === 'spread' && count !== 'all') {
        const all = this.windows(dataset, 'all');
        if (all.length < count) throw new Error(`${dataset} has ${all.length} evaluation windows, ${count} asked for`);
        ws = spreadWindowIndices(all.length, count).map((i) => all[i]);
      } else ws = datasetWindows(this.model, dataset, { maxWindows: count === 'all' ? undefined : count }).windows;
      this.windowCache.set(key, ws);
    }
    return ws;
  }

  /** The pruned model ready for forward passes (the caller disposes it): masks from `prune`. */
  prunedRuntime(masks: readonly Uint8Array[]): LlamaModel {
    return LlamaModel.fromSource(this.prunedSource(masks));
  }

  /**
   * Per-window NLL sums (float64, as `perplexity` sums them) of windows [from, to) of `dataset`
   * under `runtime` (from `prunedRuntime`), so that a multi-fidelity search can extend a
   * candidate's measurement with more windows without recomputing the ones it has.
   */
  windowNlls(runtime: LlamaModel, dataset: string, from: number, to: number): number[] {
    const ws = this.windows(dataset, to);
    if (ws.length < to) throw new Error(`${dataset} has ${ws.length} evaluation windows, ${to} asked for`);
    return ws.slice(from, to).map((w) => windowNll(runtime, w));
  }

  /**
   * Perplexity of the pruned model on the search subset of `windows` evaluation windows of `dataset`
   * ('all': every one). The windows are tokenized once per evaluator, so a search pays only
   * for the forward passes.
   */
  perplexity(masks: readonly Uint8Array[], dataset: string, windows: number | 'all'): number {
    const ws = this.windows(dataset, windows);
    const runtime = LlamaModel.fromSource(this.prunedSource(masks));
    try {
      return perplexity(runtime, ws).ppl;
    } finally {
      runtime.dispose();
    }
  }

  /** The pruned model as a weight source (masks from `prune`). */
  prunedSource(masks: readonly Uint8Array[]): WeightSource {
    const overlay = new OverlaySource(this.model.source);
    this.denseBlocks.forEach((dense, b) => {
      const linears = { ...dense.linears };
      const names = linearNames(this.model.source.config);
      names.forEach((name, i) => {
        linears[name] = applyMask(dense.linears[name], masks[b * names.length + i]);
      });
      overlay.setBlock(b, { ...dense, linears });
    });
    return overlay;
  }
}

/** The listed rows of a [*, cols] row-major matrix, in that order. */
function gatherRows(a: Float32Array, rows: Int32Array, cols: number): Float32Array {
  const out = new Float32Array(rows.length * cols);
  rows.forEach((r, i) => out.set(a.subarray(r * cols, (r + 1) * cols), i * cols));
  return out;
}
