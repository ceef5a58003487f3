import * as fs from 'fs';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { drawCalibrationWindows } from '../data/datasets';
import { CrepeError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { OpenedModel } from '../model/resolve';
import {
  BlockTensors,
  disposeBlock,
  disposeWindowTables,
  forwardBlock,
  makeBlockTensors,
  makeWindowTables,
} from '../model/runtime';
import { writeSafetensors } from '../model/safetensors';
import { ActivationStorage, ActivationStore, BlockSpill, createActivationStore } from '../plan/spill';
import { BlockWeights, LinearName, LlamaConfig, WeightSource, inputGroups, linearKey, linearKind, linearNames, linearShape } from '../model/types';
import { permuteForNM } from './permute';
import { Structure, applyMask, selectMask, validateStructureFor } from './select';
import { InputStats, StatsOptions, accumulateStats, emptyStats } from './stats';
import { Params, canonicalRowOrder, getStrategy } from './strategy';
import './strategies';
import { publishProgress } from '../util/progress';
import { cpuSecondsSince, secondsSince } from '../util/time';

export interface CalibrationSpec {
  dataset: string;
  nsamples: number;
  seqlen: number;
  seed: number;
  /** Where collectDenseStats keeps activations between blocks; default f32 in memory. */
  storage?: ActivationStorage;
  spillDir?: string;
}

export interface PruneSpec {
  method: string;
  params: Params;
  structure: Structure;
  calibration: CalibrationSpec;
  /** Feed the next block the pruned block's outputs (Wanda/SparseGPT) or the dense ones. */
  propagate: 'pruned' | 'dense';
  /** Write calibration windows, statistics and masks here. */
  dumpDir?: string;
  /**
   * Statistics computed once (collectDenseStats): no calibration forward runs at all, which is
   * what hyperparameter search needs (many configurations, one calibration).
   */
  precomputed?: CalibrationStats;
  /** Per-block structure (non-uniform allocation such as OWL); default `structure` everywhere. */
  blockStructures?: Structure[];
  /** RIA's channel permutation before N:M selection. */
  permute?: { refine: boolean };
  /** Mask refinement after selection (re-pruning such as DSnoT). */
  refine?: MaskRefiner;
  /** Where calibration activations live between blocks (the memory planner's choice); default f32 in memory. */
  activationStorage?: ActivationStorage;
  /** Write pruned blocks to a spill file instead of keeping them in memory (large models). */
  spillBlocks?: boolean;
  /** Folder for spill files; default the system's temporary folder. */
  spillDir?: string;
}

/** Everything a mask refiner sees of one linear; it returns the new keep mask. */
export interface RefineInput {
  name: LinearName;
  kind: 'attn' | 'mlp';
  weight: Float32Array;
  shape: [number, number];
  stats: InputStats;
  scores: Float32Array;
  mask: Uint8Array;
  structure: Structure;
}
export type MaskRefiner = (layer: RefineInput) => Uint8Array;

/** Every block's input statistics, keyed by block then linear. */
export interface CalibrationStats {
  blocks: Map<LinearName, InputStats>[];
  calibration: CalibrationDraw;
}

export interface LayerReport {
  key: string;
  shape: [number, number];
  total: number;
  pruned: number;
  sparsity: number;
}

export interface SparsityReport {
  layers: LayerReport[];
  total: number;
  pruned: number;
  sparsity: number;
}

/** The calibration windows a run drew: from which split, where, with which seed. */
export interface CalibrationDraw {
  dataset: string;
  slice: string;
  starts: number[];
  /** c4:PATH only: the document each window was cut from (starts are offsets inside it). */
  documents?: number[];
  nsamples: number;
  seqlen: number;
  seed: number;
}

export interface PruneOutcome {
  /** The pruned model: the original source with every block replaced (close it, or `release` to keep the model open). */
  source: OverlaySource;
  report: SparsityReport;
  seconds: number;
  /** Where the time went, summed over blocks (the scale bench's per-block costs). */
  timing: PruneTiming;
  calibration: CalibrationDraw | null;
}

export interface PruneTiming {
  /** Reading blocks from the checkpoint. */
  readSeconds: number;
  /** Calibration forwards: the dense statistics pass and the pruned propagation (device upload included). */
  calibrationSeconds: number;
  /** Scoring, mask selection (and weight updates) of every linear. */
  scoringSeconds: number;
  /** Forward passes per calibration window and block. */
  calibForwards: number;
  /** CPU seconds (user + system) of the same three stages: comparable across machine loads, unlike wall seconds. */
  cpu: { readSeconds: number; calibrationSeconds: number; scoringSeconds: number };
}

/** Per-block hooks for add-ons (progress, custom per-layer processing). */
export interface PruneHooks {
  onBlock?: (done: number, total: number) => void;
  /** Extra statistics a caller needs (e.g. a reconstruction proxy keeps inputs). */
  statsOptions?: StatsOptions;
  /** Called with every layer's statistics, scores and mask after selection. */
  onLayer?: (info: { block: number; name: LinearName; stats: InputStats; weight: Float32Array; scores: Float32Array; mask: Uint8Array }) => void;
}

/**
 * A WeightSource that serves replaced blocks (kept in memory, or in a spill file for large
 * models) and everything else from `base`. Closing it closes the spill file and `base`.
 */
export class OverlaySource implements WeightSource {
  private readonly inMemory = new Map<number, BlockWeights>();
  constructor(
    readonly base: WeightSource,
    private readonly spill: BlockSpill | null = null,
  ) {}
  setBlock(i: number, w: BlockWeights): void {
    if (this.spill) this.spill.put(i, w);
    else this.inMemory.set(i, w);
  }
  /** Close the spill file but leave `base` open (it is the caller's model). */
  release(): void {
    this.spill?.close();
    this.inMemory.clear();
  }
  get config(): LlamaConfig {
    return this.base.config;
  }
  get format(): 'llama2c' | 'hf' {
    return this.base.format;
  }
  get origin(): string {
    return this.base.origin;
  }
  readEmbedding(): Float32Array {
    return this.base.readEmbedding();
  }
  readBlock(i: number): BlockWeights {
    if (this.spill?.has(i)) return this.spill.get(i);
    return this.inMemory.get(i) ?? this.base.readBlock(i);
  }
  readFinalNorm(): Float32Array {
    return this.base.readFinalNorm();
  }
  readClassifier(): Float32Array {
    return this.base.readClassifier();
  }
  close(): void {
    this.release();
    this.base.close();
  }
}

/** Draw the calibration windows (seeded) from the calibration split of a dataset. */
export function drawCalibration(model: OpenedModel, cal: CalibrationSpec): { windows: Int32Array[]; record: CalibrationDraw } {
  const draw = drawCalibrationWindows(cal.dataset, model.tokenizer, model.tokenizerPath, cal.nsamples, cal.seqlen, cal.seed);
  return {
    windows: draw.windows,
    record: {
      dataset: cal.dataset, slice: draw.slice, starts: draw.starts, ...(draw.documents ? { documents: draw.documents } : {}),
      nsamples: cal.nsamples, seqlen: cal.seqlen, seed: cal.seed,
    },
  };
}

/**
 * Statistics of every block's linears from the DENSE model's block inputs, computed in one
 * pass. Pruning with them (spec.precomputed) needs no further forward passes; the price is that
 * later blocks see dense rather than pruned inputs (the `--propagate dense` variant).
 */
export function collectDenseStats(model: OpenedModel, cal: CalibrationSpec, opts: StatsOptions = {}): CalibrationStats {
  const cfg = model.source.config;
  if (cal.seqlen > cfg.maxSeqLen) {
    throw new CrepeError(`calibration seqlen ${cal.seqlen} exceeds the model context ${cfg.maxSeqLen}`);
  }
  const { windows, record } = drawCalibration(model, cal);
  let inputs = embedWindows(model.source, windows, cal.storage ?? 'f32', cal.spillDir);
  const tables = makeWindowTables(cfg, cal.seqlen);
  const blocks: Map<LinearName, InputStats>[] = [];
  try {
    for (let b = 0; b < cfg.nLayers; b++) {
      const bt = makeBlockTensors(cfg, model.source.readBlock(b));
      const statsOf = new Map<LinearName, InputStats>();
      for (const group of inputGroups(cfg)) {
        const s = emptyStats(linearShape(cfg, group[0])[1], opts);
        for (const n of group) statsOf.set(n, s);
      }
      const outputs = b < cfg.nLayers - 1 ? emptyLike(inputs, cal.spillDir) : null;
      runBlock(cfg, bt, tables, inputs, outputs, (names, x) => accumulateStats(statsOf.get(names[0])!, x, opts));
      disposeBlock(bt);
      inputs.dispose();
      if (outputs) inputs = outputs;
      blocks.push(statsOf);
      publishProgress({ pass: 'calibration', unit: 'blocks', done: b + 1, total: cfg.nLayers });
    }
  } finally {
    inputs.dispose();
    disposeWindowTables(tables);
  }
  return { blocks, calibration: record };
}

/**
 * Gather rows of the embedding on the host: block 0's inputs, kept off the wasm heap (in memory
 * or spilled, as the memory planner chose). All windows have the same length.
 */
export function embedWindows(src: WeightSource, windows: Int32Array[], storage: ActivationStorage = 'f32', spillDir?: string): ActivationStore {
  const { dim } = src.config;
  const emb = src.readEmbedding();
  const store = createActivationStore(storage, windows.length, (windows[0]?.length ?? 0) * dim, spillDir);
  windows.forEach((w, i) => {
    const x = new Float32Array(w.length * dim);
    for (let t = 0; t < w.length; t++) x.set(emb.subarray(w[t] * dim, (w[t] + 1) * dim), t * dim);
    store.set(i, x);
  });
  return store;
}

/** A new store of the same kind and size as `s`, for a block's outputs. */
export function emptyLike(s: ActivationStore, spillDir?: string): ActivationStore {
  return createActivationStore(s.storage, s.count, s.length, spillDir);
}

/**
 * Run one block over every window; inputs and outputs live on the host between blocks. Outputs
 * go to `outputs` (which may be `inputs` itself: each window is read before it is overwritten),
 * or are dropped when only the captured statistics are wanted.
 */
export function runBlock(
  cfg: LlamaConfig,
  bt: BlockTensors,
  tables: ReturnType<typeof makeWindowTables>,
  inputs: ActivationStore,
  outputs: ActivationStore | null,
  capture?: (names: readonly LinearName[], x: tf.Tensor2D) => void,
): void {
  for (let i = 0; i < inputs.count; i++) {
    const x = tf.tensor2d(inputs.get(i), [tables.length, cfg.dim]);
    const y = forwardBlock(cfg, bt, tables, x, capture);
    if (outputs) outputs.set(i, y.dataSync() as Float32Array);
    tf.dispose([x, y]);
  }
}

/** Wall and CPU seconds per stage of the pipeline, summed over blocks. */
class StageClock {
  readonly timing: PruneTiming = { readSeconds: 0, calibrationSeconds: 0, scoringSeconds: 0, calibForwards: 0, cpu: { readSeconds: 0, calibrationSeconds: 0, scoringSeconds: 0 } };
  time<T>(stage: 'read' | 'calibration' | 'scoring', fn: () => T): T {
    const t = process.hrtime.bigint();
    const c = process.cpuUsage();
    try {
      return fn();
    } finally {
      const key = `${stage}Seconds` as const;
      this.timing[key] += secondsSince(t);
      this.timing.cpu[key] += cpuSecondsSince(c);
    }
  }
}

/**
 * Writes `--dump` artefacts: the calibration windows, and per block every linear's mask plus
 * the input statistics of each input group once (under the group's first linear, as the block
 * description orders them).
 */
class PruneDump {
  private tensors: { name: string; shape: number[]; data: Float32Array }[] = [];
  constructor(
    private readonly dir: string,
    private readonly cfg: LlamaConfig,
  ) {
    fs.mkdirSync(dir, { recursive: true });
  }
  calibration(record: CalibrationDraw | null, windows: Int32Array[]): void {
    writeFileAtomic(path.join(this.dir, 'calibration.json'), JSON.stringify({ ...record, windows: windows.map((w) => Array.from(w)) }));
  }
  layer(block: number, name: LinearName, stats: InputStats, mask: Uint8Array): void {
    const [o, i] = linearShape(this.cfg, name);
    const key = linearKey(block, name);
    this.tensors.push({ name: `${key}.mask`, shape: [o, i], data: Float32Array.from(mask) });
    if (inputGroups(this.cfg).some((g) => g[0] === name)) {
      this.tensors.push({ name: `${key}.input.sumsq`, shape: [i], data: Float32Array.from(stats.sumSq) });
      this.tensors.push({ name: `${key}.input.sum`, shape: [i], data: Float32Array.from(stats.sum) });
    }
  }
  endBlock(block: number, statsOf: Map<LinearName, InputStats>): void {
    const groups = inputGroups(this.cfg);
    const s = statsOf.get(groups[0][0]);
    const shared = groups.filter((g) => g.length > 1).map((g) => `${g.join('/')} share the ${g[0]} input statistics`);
    writeSafetensors(path.join(this.dir, `blocks.${block}.safetensors`), this.tensors, 'F32', {
      block: String(block),
      samples: String(s?.samples ?? 0),
      tokens: String(s?.tokens ?? 0),
      note: shared.join(', '),
    });
    this.tensors = [];
  }
}

/** Check a spec against the model before any work; the structure of each block. */
function checkSpec(cfg: LlamaConfig, spec: PruneSpec): (b: number) => Structure {
  if (spec.blockStructures && spec.blockStructures.length !== cfg.nLayers) {
    throw new CrepeError(`${spec.blockStructures.length} per-block structures for ${cfg.nLayers} blocks`);
  }
  const structureOf = (b: number): Structure => spec.blockStructures?.[b] ?? spec.structure;
  for (let b = 0; b < cfg.nLayers; b++) {
    for (const name of linearNames(cfg)) {
      const [o, i] = linearShape(cfg, name);
      validateStructureFor(structureOf(b), o, i);
    }
  }
  if (spec.permute && spec.structure.kind !== 'nm') throw new CrepeError('channel permutation applies to N:M structures only');
  if (spec.calibration.seqlen > cfg.maxSeqLen) {
    throw new CrepeError(`calibration seqlen ${spec.calibration.seqlen} exceeds the model context ${cfg.maxSeqLen}`);
  }
  return structureOf;
}

/** Input statistics of one block's linears over the calibration inputs (one object per input group). */
function blockStatistics(cfg: LlamaConfig, bt: BlockTensors, tables: ReturnType<typeof makeWindowTables>, inputs: ActivationStore, outputs: ActivationStore | null, opts: StatsOptions): Map<LinearName, InputStats> {
  const statsOf = new Map<LinearName, InputStats>();
  for (const group of inputGroups(cfg)) {
    const s = emptyStats(linearShape(cfg, group[0])[1], opts);
    for (const n of group) statsOf.set(n, s);
  }
  runBlock(cfg, bt, tables, inputs, outputs, (names, x) => accumulateStats(statsOf.get(names[0])!, x, opts));
  return statsOf;
}

/** One pruned linear: its mask, new weight and statistics. */
interface PrunedLinear {
  name: LinearName;
  mask: Uint8Array;
  weight: Float32Array;
  scores: Float32Array;
  stats: InputStats;
}

/** Score, select (and refine or update) one linear. */
function pruneLinear(cfg: LlamaConfig, spec: PruneSpec, b: number, name: LinearName, w: Float32Array, stats: InputStats, structure: Structure): PrunedLinear {
  const strategy = getStrategy(spec.method);
  const [o, i] = linearShape(cfg, name);
  const weight = tf.tensor2d(w, [o, i]);
  try {
    const ctx = { weight, weightData: w, shape: [o, i] as [number, number], stats, name, block: b, kind: linearKind(name), key: linearKey(b, name), canonicalRows: canonicalRowOrder(cfg, name) };
    const scoreT = strategy.score(ctx, spec.params);
    const scores = scoreT.dataSync() as Float32Array;
    scoreT.dispose();
    if (strategy.pruneLayer) {
      const r = strategy.pruneLayer(ctx, structure, spec.params);
      return { name, mask: r.mask, weight: r.weight, scores, stats };
    }
    let mask =
      spec.permute && structure.kind === 'nm'
        ? permuteForNM(scores, o, i, structure.n, structure.m, { refine: spec.permute.refine }).mask
        : selectMask(scores, o, i, structure);
    if (spec.refine) mask = spec.refine({ name, kind: linearKind(name), weight: w, shape: [o, i], stats, scores, mask, structure });
    return { name, mask, weight: applyMask(w, mask), scores, stats };
  } finally {
    weight.dispose();
  }
}

function layerReport(cfg: LlamaConfig, b: number, l: PrunedLinear): LayerReport {
  let kept = 0;
  for (let k = 0; k < l.mask.length; k++) kept += l.mask[k];
  return { key: linearKey(b, l.name), shape: linearShape(cfg, l.name), total: l.mask.length, pruned: l.mask.length - kept, sparsity: 1 - kept / l.mask.length };
}

/**
 * The layer-by-layer pruning pipeline (Wanda / SparseGPT "sequential calibration"): capture
 * block 0's inputs for the calibration windows; for each block, one forward collects the
 * statistics of all seven linears, every linear is scored and masked, and the pruned block
 * produces the next block's inputs. Only one block's weights are on the device at a time.
 */
export function pruneModel(model: OpenedModel, spec: PruneSpec, hooks: PruneHooks = {}): PruneOutcome {
  const t0 = process.hrtime.bigint();
  const src = model.source;
  const cfg = src.config;
  const strategy = getStrategy(spec.method);
  const structureOf = checkSpec(cfg, spec);
  const statsOptions: StatsOptions = { ...strategy.statsNeeds, ...hooks.statsOptions };
  const needCalibration = !spec.precomputed && (strategy.usesActivations || !!hooks.statsOptions || !!spec.refine);
  let calibration: CalibrationDraw | null = spec.precomputed?.calibration ?? null;
  let inputs: ActivationStore | null = null;
  let windows: Int32Array[] = [];
  if (needCalibration) {
    const drawn = drawCalibration(model, spec.calibration);
    windows = drawn.windows;
    calibration = drawn.record;
    inputs = embedWindows(src, windows, spec.activationStorage ?? 'f32', spec.spillDir);
  }
  const dump = spec.dumpDir ? new PruneDump(spec.dumpDir, cfg) : null;
  dump?.calibration(calibration, windows);
  const tables = makeWindowTables(cfg, spec.calibration.seqlen);
  const overlay = new OverlaySource(src, spec.spillBlocks ? new BlockSpill(spec.spillDir) : null);
  const clock = new StageClock();
  const layers: LayerReport[] = [];
  let done = false;
  try {
    for (let b = 0; b < cfg.nLayers; b++) {
      const dense = clock.time('read', () => src.readBlock(b));
      // With --propagate pruned the dense outputs are not needed: only their statistics are kept.
      const denseOut = inputs && spec.propagate === 'dense' && b < cfg.nLayers - 1 ? emptyLike(inputs, spec.spillDir) : null;
      const statsOf = clock.time('calibration', () => {
        if (!inputs) return spec.precomputed?.blocks[b] ?? new Map<LinearName, InputStats>();
        const bt = makeBlockTensors(cfg, dense);
        try {
          return blockStatistics(cfg, bt, tables, inputs, denseOut, statsOptions);
        } finally {
          disposeBlock(bt);
        }
      });
      // Everything but the linears (norms, biases, ...) is carried over untouched.
      const pruned: BlockWeights = { ...dense, linears: { ...dense.linears } };
      for (const name of linearNames(cfg)) {
        // one linear's scores at a time: they are dropped before the next is scored
        const r = clock.time('scoring', () => pruneLinear(cfg, spec, b, name, dense.linears[name], statsOf.get(name) ?? emptyStats(linearShape(cfg, name)[1]), structureOf(b)));
        pruned.linears[r.name] = r.weight;
        hooks.onLayer?.({ block: b, name: r.name, stats: r.stats, weight: dense.linears[r.name], scores: r.scores, mask: r.mask });
        layers.push(layerReport(cfg, b, r));
        dump?.layer(b, r.name, r.stats, r.mask);
      }
      dump?.endBlock(b, statsOf);
      clock.time('calibration', () => {
        if (!inputs || b === cfg.nLayers - 1) return;
        if (denseOut) {
          inputs.dispose();
          inputs = denseOut;
          return;
        }
        const pbt = makeBlockTensors(cfg, pruned);
        runBlock(cfg, pbt, tables, inputs, inputs);
        disposeBlock(pbt);
      });
      overlay.setBlock(b, pruned);
      hooks.onBlock?.(b + 1, cfg.nLayers);
      publishProgress({ pass: 'prune', unit: 'blocks', done: b + 1, total: cfg.nLayers });
    }
    done = true;
  } finally {
    (inputs as ActivationStore | null)?.dispose();
    disposeWindowTables(tables);
    if (!done) overlay.release();
  }
  const total = layers.reduce((a, l) => a + l.total, 0);
  const prunedCount = layers.reduce((a, l) => a + l.pruned, 0);
  return {
    source: overlay,
    report: { layers, total, pruned: prunedCount, sparsity: prunedCount / total },
    seconds: Number(process.hrtime.bigint() - t0) / 1e9,
    timing: { ...clock.timing, calibForwards: !needCalibration ? 0 : spec.propagate === 'dense' ? 1 : 2 },
    calibration,
  };
}
