/**
 * The memory planner: before any work, estimate the peak host memory (RSS) and device memory
 * (the tfjs-wasm heap, which lives inside the host process and never shrinks) of a command, pick
 * where activations live and which evaluator runs, and refuse in one line when the request cannot
 * fit. The estimates are sums of the large buffers the code allocates (listed as plan items);
 * small objects are covered by a fixed runtime allowance.
 */
import * as fs from 'fs';
import * as os from 'os';
import { CrepeError } from '../errors';
import { osCause } from '../io/atomic';
import { LlamaConfig, inputGroups, linearNames, linearShape } from '../model/types';
import { ActivationStorage } from './spill';

export const GiB = 2 ** 30;
/** wasm32 addresses at most 4 GiB; tfjs-wasm can corrupt memory silently when its heap runs out. */
export const WASM_HEAP_CAP = 4 * GiB;
/**
 * The planner keeps the estimated wasm heap below this. The estimates are upper bounds of heaps
 * measured on the 7B shape (factors below; e.g. a 2048-token forward: 3.1 GiB estimated, 2.77 GiB
 * measured), so 0.8 GiB of the cap stay free on top of the estimate's own margin.
 */
export const WASM_HEAP_LIMIT = 3.2 * GiB;
/** Device bytes of a resident model above which evaluation streams blocks by default. */
export const STREAMING_THRESHOLD = 1 * GiB;
/** Node, tfjs, the wasm module, tokenizers and datasets. */
const RUNTIME_BYTES = 0.35 * GiB;
/**
 * Heap factors, measured on the 7B-shaped block (wasm, scale bench's probes): XNNPACK packs every
 * weight a matMul uses into a copy of its own, so weights take twice their bytes (0.88 GiB of
 * block tensors became a 1.80 GiB heap after one forward); a forward's intermediates, freed and
 * reallocated window after window, took up to 1.44x their bytes at 2048 tokens (0.70 GiB at peak,
 * their estimate here 0.92 GiB); scoring's differently-sized temporaries (CRePE's padded window
 * sums) fragment most: 1.58x alone, and after the block's phase the heap grows further (the
 * 7B-shaped bench, 4 blocks: 1.96 GiB measured for wanda, 2.80 GiB for crepe, against 1.92 and
 * 2.57 GiB estimated with factors 2.1 and 1.7, which were raised to these). A native backend
 * gets 1.1 throughout.
 *
 * `scores`: attention's [T, T] buffers (a head's scores, masked scores and softmax) fragment the
 * heap at long windows: each head frees its buffers, but the small outputs kept between heads
 * split the freed region, and the next head's buffers may need fresh room. Measured on a
 * long-context model (results/long-window-heap.md: 1 block, dim 256, 4 heads of 64): heaps of
 * 1.31 / 2.16 / 3.32 GiB (resident) and 1.31 / 2.94 / 3.32 GiB (streaming) at 8192 / 10240 /
 * 12288 tokens, up to 2.3 times the scores on top of the window's tables and the other
 * intermediates; at 14336 and 16384 tokens the heap ran out. With 2.5 the plan is above every
 * measured heap (2.04 / 3.12 / 4.44 GiB resident, 2.01 / 3.08 / 4.39 streaming) and refuses
 * 12288 tokens and more on that model; the 7B shape at 2048 tokens changes by 0.1 GiB.
 */
const WASM_FACTORS = { weights: 2.2, activations: 1.25, scoring: 2.0, scores: 2.5 };
const NATIVE_FACTORS = { weights: 1.1, activations: 1.1, scoring: 1.1, scores: 1.1 };
/**
 * Device copies of one linear's size that a strategy's scoring holds at its peak, the weight
 * included (tf.profile on a 11008 x 4096 linear: magnitude 2, wanda 3, ria 5, crepe 9); others
 * get the largest.
 */
const SCORE_COPIES: Record<string, number> = { magnitude: 2, wanda: 3, ria: 5, crepe: 9 };
export function scoringCopies(method: string): number {
  return SCORE_COPIES[method] ?? Math.max(...Object.values(SCORE_COPIES));
}
const F32 = 4;
/** Spill files may take at most this share of the free disk space. */
const DISK_SHARE = 0.25;

/** Free bytes for an unprivileged writer in the file system holding `dir`. */
export function freeDiskBytes(dir: string): number {
  try {
    const s = fs.statfsSync(dir);
    return s.bavail * s.bsize;
  } catch (e) {
    throw new CrepeError(`cannot measure the free space in ${dir}: ${osCause(e)}`);
  }
}

export type Evaluator = 'resident' | 'streaming';
export type EvaluatorChoice = Evaluator | 'auto';
export type StorageChoice = ActivationStorage | 'auto';

export interface PlanItem {
  what: string;
  host: number;
  device: number;
  /** Bytes of spill files. */
  disk?: number;
}

/** What a command will do, as far as memory goes. */
export interface PlanRequest {
  config: LlamaConfig;
  /** Pruning with calibration; absent for eval-only commands. */
  prune?: {
    nsamples: number;
    seqlen: number;
    /** The method accumulates X^T X per input (SparseGPT). */
    gram: boolean;
    /** Calibration runs at all (magnitude without add-ons needs none). */
    calibrates: boolean;
    /** Device copies of the largest linear while it is scored (scoringCopies); default the largest known. */
    scoreCopies?: number;
    propagate: 'pruned' | 'dense';
  };
  /** Evaluation windows (all datasets together) and their length; absent when nothing is evaluated. */
  eval?: { windows: number; seqlen: number; jobs: number };
  /**
   * Extra host or device needs of the command, e.g. a search's kept calibration inputs or a
   * backward pass (added to the largest phase).
   */
  extra?: PlanItem[];
  /**
   * Commands whose evaluation has no streaming path (generate, zero-shot, the search's pruned
   * model): the resident model only, and hints that do not suggest --evaluator streaming.
   */
  residentOnly?: boolean;
  /** The flag that sets the evaluation window length, for hints (default --seqlen; null: none). */
  lengthFlag?: string | null;
  /** Host budget in bytes (--max-memory). */
  limit: number;
  storage: StorageChoice;
  evaluator: EvaluatorChoice;
  /** Pruned blocks go to a spill file; default when they would take more than a quarter of the budget. */
  spillBlocks?: boolean;
  /** The wasm backend is in use (its heap is capped); false for a native backend. */
  wasm: boolean;
  /** Free bytes where spill files go; default: measured in spillDir or the temporary folder. */
  diskFree?: number;
  spillDir?: string;
}

export interface MemoryPlan {
  hostBytes: number;
  deviceBytes: number;
  /** Spill files at their largest. */
  diskBytes: number;
  diskFreeBytes: number;
  limitBytes: number;
  deviceLimitBytes: number | null;
  /** Calibration activations. */
  storage: ActivationStorage;
  /** The streaming evaluator's hidden states: never F16 (a PPL must not depend on the budget). */
  evalStorage: ActivationStorage;
  evaluator: Evaluator | null;
  spillBlocks: boolean;
  items: PlanItem[];
  fits: boolean;
  /** Why not, as the one-line refusal; null when it fits. */
  refusal: string | null;
}

/** Floats of one decoder block's weights. */
export function blockParams(cfg: LlamaConfig): number {
  let n = 2 * cfg.dim;
  for (const l of linearNames(cfg)) {
    const [o, i] = linearShape(cfg, l);
    n += o * i;
  }
  return n;
}

/** Device bytes of one block as makeBlockTensors lays it out (q and k twice: the RoPE-folded pairs). */
export function blockDeviceBytes(cfg: LlamaConfig): number {
  const [qo, qi] = linearShape(cfg, 'q');
  const [ko, ki] = linearShape(cfg, 'k');
  return (blockParams(cfg) + qo * qi + ko * ki) * F32;
}

/** Peak device bytes of the intermediates of one block's forward pass over one window of T tokens. */
export function forwardActivationBytes(cfg: LlamaConfig, T: number): number {
  return forwardHeapBytes(cfg, T, { activations: 1, scores: 1 });
}

/**
 * The wasm heap a window's forward takes: its intermediates (forwardActivationBytes) with the
 * heap factors, the attention's [T, T] buffers with their own (see WASM_FACTORS.scores).
 */
export function forwardHeapBytes(cfg: LlamaConfig, T: number, factor: { activations: number; scores: number }): number {
  const hd = cfg.headDim;
  // runtime.ts forwardBlock frees as it goes (a tidy per kv head, per head, per norm, for the
  // MLP): kept through the block are the normed input and its transpose, every kv head's k^T and
  // v (+ the split's slices), every head's output (+ their concatenation for capture), the o
  // projection's partial sums, the residual, the second norm and the MLP's output.
  const kept = 8 * T * cfg.dim + 3 * cfg.nKvHeads * T * hd + 2 * cfg.nHeads * T * hd;
  // on top, at one time either one head's attention (scores, + mask, softmax: 3/4 of T x T with
  // the two-block causal split; its q) or one kv head's projections, or the MLP's gate, sigmoid,
  // product, up and result, or the down projection
  const scores = 3 * T * T * (T >= 128 ? 0.75 : 1);
  const attention = factor.scores * scores + factor.activations * 8 * T * hd;
  const mlp = factor.activations * (5 * T * cfg.hiddenDim + 3 * T * cfg.dim);
  return (factor.activations * kept + Math.max(attention, mlp)) * F32;
}

/**
 * Device bytes of one window length's tables (runtime.ts makeWindowTables), on the device for as
 * long as windows of that length run: the causal mask [T, T], from 128 tokens also the two-block
 * split's masks [T/2, T/2] and [T/2, T], and the rotary cos/sin in both orientations. At long
 * windows they rival the attention itself (1.75 T^2 floats against a head's 2.25 T^2).
 */
export function windowTableBytes(cfg: LlamaConfig, T: number): number {
  const h = T >> 1;
  const masks = T * T + (T >= 128 ? h * h + (T - h) * T : 0);
  return (masks + 4 * T * cfg.headDim) * F32;
}

/** Device bytes of the classifier head: the transposed classifier (a weight), and one chunk of logits with the final states. */
function headDeviceBytes(cfg: LlamaConfig, T: number): { weights: number; activations: number } {
  const chunkRows = Math.min(T, Math.max(1, Math.floor((1 << 22) / cfg.vocabSize)));
  return { weights: cfg.vocabSize * cfg.dim * F32, activations: (3 * chunkRows * cfg.vocabSize + 2 * T * cfg.dim) * F32 };
}

/** Bytes of the largest linear (scoring holds a few of its size on the device). */
function largestLinearBytes(cfg: LlamaConfig): number {
  return Math.max(...linearNames(cfg).map((l) => linearShape(cfg, l)[0] * linearShape(cfg, l)[1])) * F32;
}

export function residentDeviceBytes(cfg: LlamaConfig): number {
  const embeddings = 2 * cfg.vocabSize * cfg.dim * F32; // the embedding and the transposed classifier (a copy even when tied)
  return cfg.nLayers * blockDeviceBytes(cfg) + embeddings;
}

/** Bytes of X^T X accumulators for the four input groups, plus SparseGPT's Hessian and inverse of the largest. */
function gramBytes(cfg: LlamaConfig): number {
  const ins = [linearShape(cfg, 'q')[1], linearShape(cfg, 'o')[1], linearShape(cfg, 'gate')[1], linearShape(cfg, 'down')[1]];
  const biggest = Math.max(...ins);
  return ins.reduce((a, n) => a + n * n * 8, 0) + 2 * biggest * biggest * 8;
}

const storageFactor: Record<ActivationStorage, number> = { f32: 1, f16: 0.5, disk: 0 };

/** Bytes with a unit that shows them (B, KiB, MiB, GiB, TiB), three significant digits. */
export function fmtBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = bytes;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${u === 0 ? v.toFixed(0) : v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${units[u]}`;
}

export function fmtGiB(bytes: number): string {
  const g = bytes / GiB;
  return g >= 10 ? g.toFixed(0) : g >= 1 ? g.toFixed(1) : g.toFixed(2);
}

/** Default host budget: 80% of the machine's memory. */
export function defaultMemoryLimit(): number {
  return 0.8 * os.totalmem();
}

/** Parse --max-memory: GiB as a number, or with a unit (e.g. 6, 6G, 6GiB, 512M). */
export function parseMemoryFlag(v: unknown): number {
  const s = String(v).trim();
  const m = /^(\d+(?:\.\d+)?)\s*(g|gb|gib|m|mb|mib)?$/i.exec(s);
  if (!m || !(Number(m[1]) > 0)) throw new CrepeError(`--max-memory must be a positive size in GiB (e.g. 6 or 512M), got '${s}'`);
  const unit = (m[2] ?? 'g').toLowerCase();
  return Number(m[1]) * (unit.startsWith('m') ? 2 ** 20 : GiB);
}

/** The plan for one storage / evaluator / spill choice (no decisions). */
function estimate(req: PlanRequest, storage: ActivationStorage, evaluator: Evaluator | null, spillBlocks: boolean, probe = false): MemoryPlan {
  const cfg = req.config;
  const factor = req.wasm ? WASM_FACTORS : NATIVE_FACTORS;
  const blockHost = blockParams(cfg) * F32;
  const embHost = cfg.vocabSize * cfg.dim * F32;
  const items: PlanItem[] = [{ what: 'runtime (node, tfjs, tokenizer, text)', host: RUNTIME_BYTES, device: 0 }];
  // Phases run one after the other; the host peak is the largest phase, the wasm heap keeps its largest size.
  const phases: { host: number; device: number }[] = [];
  // device: the sum of the items, unless the phase's device items take turns (then their largest turn)
  const phase = (list: PlanItem[], device?: number) => {
    items.push(...list);
    phases.push({ host: list.reduce((a, i) => a + i.host, 0), device: device ?? list.reduce((a, i) => a + i.device, 0) });
  };
  phase([{ what: 'embedding read from the checkpoint', host: embHost, device: 0 }]);
  const p = req.prune;
  if (p) {
    const T = p.seqlen;
    const window = T * cfg.dim * F32;
    const buffers = p.calibrates ? (p.propagate === 'dense' ? 2 : 1) : 0;
    const list: PlanItem[] = [
      {
        what: `calibration activations: ${p.nsamples} x ${T} x ${cfg.dim}, ${buffers} buffer(s), ${storage}`,
        host: buffers * p.nsamples * window * storageFactor[storage] + window,
        device: 0,
        disk: storage === 'disk' ? buffers * p.nsamples * window : 0,
      },
      { what: 'one block: dense, pruned and transposed copies (F32)', host: 3 * blockHost, device: factor.weights * blockDeviceBytes(cfg) },
      {
        what: `one window's forward intermediates and its tables (${T} tokens)`,
        host: p.calibrates ? windowTableBytes(cfg, T) : 0,
        device: p.calibrates ? forwardHeapBytes(cfg, T, factor) + windowTableBytes(cfg, T) : 0,
      },
    ];
    // scoring runs after the block has left the device: the largest linear and its score temporaries
    const scoring: PlanItem = {
      what: `scoring: the largest linear and its temporaries (${p.scoreCopies ?? scoringCopies('')} copies), after the block left the device`,
      host: 0,
      device: factor.scoring * (p.scoreCopies ?? scoringCopies('')) * largestLinearBytes(cfg),
    };
    list.push(scoring);
    if (p.gram) {
      const hidden = Math.max(cfg.hiddenDim, cfg.dim);
      list.push({ what: 'SparseGPT X^T X accumulators and Hessian factors (F64; on the device while scoring)', host: gramBytes(cfg), device: factor.activations * 2 * hidden * hidden * F32 });
    }
    list.push({
      what: spillBlocks ? 'pruned blocks (spill file on disk)' : `pruned blocks kept in memory (${cfg.nLayers})`,
      host: spillBlocks ? 0 : cfg.nLayers * blockHost,
      device: 0,
      disk: spillBlocks ? cfg.nLayers * blockHost : 0,
    });
    const forwardTurn = list[1].device + list[2].device;
    const scoringTurn = list.slice(3).reduce((a, i) => a + i.device, 0);
    phase(list, Math.max(forwardTurn, scoringTurn));
  }
  const e = req.eval;
  const evalStorage: ActivationStorage = storage === 'f16' ? 'disk' : storage;
  if (e && evaluator) {
    const T = e.seqlen;
    if (evaluator === 'resident') {
      phase([
        { what: 'resident model: every block on the device (per process)', host: 2 * blockHost, device: factor.weights * residentDeviceBytes(cfg) },
        {
          what: `evaluation forward intermediates and the window's tables (${T} tokens)`,
          host: windowTableBytes(cfg, T),
          device: forwardHeapBytes(cfg, T, factor) + factor.activations * headDeviceBytes(cfg, T).activations + windowTableBytes(cfg, T),
        },
      ]);
    } else {
      const states: PlanItem = {
        what: `evaluation hidden states: ${e.windows} x ${T} x ${cfg.dim}, ${evalStorage}`,
        host: e.windows * T * cfg.dim * F32 * storageFactor[evalStorage] + T * cfg.dim * F32,
        device: 0,
        disk: evalStorage === 'disk' ? e.windows * T * cfg.dim * F32 : 0,
      };
      // blocks first, then the head: never on the device together
      phase([
        states,
        { what: 'streaming: one block on the device', host: 2 * blockHost, device: factor.weights * blockDeviceBytes(cfg) },
        { what: `evaluation forward intermediates and the window's tables (${T} tokens)`, host: windowTableBytes(cfg, T), device: forwardHeapBytes(cfg, T, factor) + windowTableBytes(cfg, T) },
      ]);
      phase([
        { ...states, what: 'evaluation hidden states (as above)', disk: 0 },
        { what: 'streaming: the classifier head on the device', host: 2 * embHost, device: factor.weights * headDeviceBytes(cfg, T).weights + factor.activations * headDeviceBytes(cfg, T).activations },
      ]);
    }
  }
  if (req.extra?.length) {
    // on top of the largest phase (they live through the command)
    items.push(...req.extra);
    const top = phases.reduce((a, x) => (x.host + x.device > a.host + a.device ? x : a), { host: 0, device: 0 });
    top.host += req.extra.reduce((a, i) => a + i.host, 0);
    top.device += req.extra.reduce((a, i) => a + i.device, 0);
  }
  const deviceBytes = Math.max(0, ...phases.map((x) => x.device));
  // Pruned blocks stay spilled while the pruned model is evaluated; the other spill files come and go.
  const diskBytes = items.reduce((a, i) => a + (i.disk ?? 0), 0);
  const diskFreeBytes = req.diskFree ?? freeDiskBytes(req.spillDir ?? os.tmpdir());
  // The wasm heap is part of this process's memory; workers (--jobs) each hold their own: a resident
  // model, or (streaming) one block on the device, its host copies and the reader's buffers.
  // never more workers than windows: the pool starts no more (eval.ts caps --jobs the same way)
  const workers = e && Math.min(e.jobs, e.windows) > 1 ? Math.min(e.jobs, e.windows) : 0;
  const perWorker = evaluator === 'streaming' ? RUNTIME_BYTES + deviceBytes + 2 * Math.max(blockHost, embHost) : RUNTIME_BYTES + deviceBytes;
  const hostBytes = RUNTIME_BYTES + Math.max(0, ...phases.map((x) => x.host)) + deviceBytes + workers * perWorker;
  const deviceLimitBytes = req.wasm ? WASM_HEAP_LIMIT : null;
  let refusal: string | null = null;
  if (probe) refusal = null; // deviceHint's what-if: sizes only
  else if (deviceLimitBytes !== null && deviceBytes > deviceLimitBytes) {
    const hint = deviceHint(req, storage, evaluator, spillBlocks);
    refusal = `needs ~${fmtGiB(deviceBytes)} GiB of wasm heap, limit ${fmtGiB(deviceLimitBytes)} GiB (the heap is capped at 4 GiB${hint.why ? `, and ${hint.why}` : ''}); try ${hint.tries}`;
  } else if (hostBytes > req.limit) {
    refusal = `needs ~${fmtGiB(hostBytes)} GiB of memory, limit ${fmtGiB(req.limit)} GiB; ${hostHint(req, hostBytes)}`;
  } else if (diskBytes > DISK_SHARE * diskFreeBytes) {
    refusal =
      `needs ~${fmtBytes(diskBytes)} of spill files, and they may take at most ${DISK_SHARE * 100}% of the ${fmtBytes(diskFreeBytes)} free in ${req.spillDir ?? os.tmpdir()}; ` +
      `try fewer --nsamples or --max-windows, or --spill-dir on a larger disk`;
  }
  return { hostBytes, deviceBytes, diskBytes, diskFreeBytes, limitBytes: req.limit, deviceLimitBytes, storage, evalStorage, evaluator, spillBlocks, items, fits: refusal === null, refusal };
}

/**
 * What could bring the heap under the limit. Shorter windows are suggested only when they would
 * (the heap at one-token windows fits); otherwise the fixed part is named: with a large
 * vocabulary the embedding, classifier and head take the heap whatever the window length.
 */
function deviceHint(req: PlanRequest, storage: ActivationStorage, evaluator: Evaluator | null, spillBlocks: boolean): { why: string; tries: string } {
  const tries: string[] = [];
  const limit = WASM_HEAP_LIMIT;
  const short = estimate(
    { ...req, prune: req.prune && { ...req.prune, seqlen: 1 }, eval: req.eval && { ...req.eval, seqlen: 1 }, extra: req.extra?.map((i) => ({ ...i, device: 0 })) },
    storage,
    evaluator,
    spillBlocks,
    true,
  );
  const lengthsHelp = short.deviceBytes <= limit;
  if (lengthsHelp && req.prune?.calibrates) tries.push(`a shorter --calib-seqlen (now ${req.prune.seqlen})`);
  const lengthFlag = req.lengthFlag === undefined ? '--seqlen' : req.lengthFlag;
  if (lengthsHelp && req.eval && lengthFlag) tries.push(`a shorter ${lengthFlag} (now ${req.eval.seqlen})`);
  if (evaluator === 'resident' && !req.residentOnly && estimate(req, storage, 'streaming', spillBlocks, true).deviceBytes <= limit) tries.push('--evaluator streaming');
  tries.push('a native backend (--backend tensorflow)');
  const cfg = req.config;
  const vocab = (WASM_FACTORS.weights * (evaluator === 'resident' ? 2 : 1) * cfg.vocabSize * cfg.dim * F32);
  const why = lengthsHelp
    ? ''
    : vocab > short.deviceBytes / 2
      ? `the vocabulary alone, ${cfg.vocabSize} tokens x ${cfg.dim}, takes ~${fmtGiB(vocab)} GiB whatever the window length`
      : `the weights alone take ~${fmtGiB(short.deviceBytes)} GiB whatever the window length`;
  return { why, tries: tries.join(', or ') };
}

function hostHint(req: PlanRequest, need: number): string {
  const tries: string[] = [];
  const p = req.prune;
  if (p?.calibrates) {
    const perSample = (p.propagate === 'dense' ? 2 : 1) * p.seqlen * req.config.dim * F32;
    const fewer = Math.floor(p.nsamples - (need - req.limit) / perSample);
    if (fewer >= 1 && fewer < p.nsamples) tries.push(`--nsamples ${fewer}`);
  }
  if (req.storage !== 'auto' && req.storage !== 'disk') tries.push('--activations disk');
  if (req.eval && req.evaluator === 'resident' && !req.residentOnly) tries.push('--evaluator streaming');
  tries.push(`--max-memory ${Math.ceil(need / GiB)} (if the machine has it)`);
  return `try ${tries.join(' or ')}`;
}

/**
 * Decide storage, evaluator and block spilling within the budget and estimate the peaks.
 * Choices left to 'auto': the resident evaluator unless the model is large
 * (STREAMING_THRESHOLD) or does not fit; activations in F32, else F16 for calibration (rounded,
 * half the memory) or a spill file (exact, slower); pruned blocks spilled when they would take
 * over a quarter of the budget. The returned plan has `fits` false and a one-line `refusal` when
 * no choice fits.
 */
export function planMemory(req: PlanRequest): MemoryPlan {
  const evaluators: (Evaluator | null)[] = !req.eval
    ? [null]
    : req.residentOnly
      ? ['resident']
      : req.evaluator !== 'auto'
      ? [req.evaluator]
      : residentDeviceBytes(req.config) > STREAMING_THRESHOLD
        ? ['streaming']
        : ['resident', 'streaming'];
  const storages: ActivationStorage[] = req.storage !== 'auto' ? [req.storage] : req.prune?.calibrates ? ['f32', 'f16', 'disk'] : ['f32', 'disk'];
  const blockTotal = req.config.nLayers * blockParams(req.config) * F32;
  const spill = req.spillBlocks ?? (req.prune !== undefined && blockTotal > req.limit / 4);
  let first: MemoryPlan | null = null;
  for (const ev of evaluators) {
    for (const st of storages) {
      // F16 rounds evaluation hidden states too: only worth it for calibration, never for a PPL.
      if (st === 'f16' && req.storage === 'auto' && !req.prune?.calibrates) continue;
      for (const sp of spill || req.spillBlocks === false ? [spill] : [false, true]) {
        const plan = estimate(req, st, ev, sp);
        first ??= plan;
        if (plan.fits) return plan;
      }
    }
  }
  return first!;
}

/** Throw the plan's one-line refusal. */
export function requireFits(plan: MemoryPlan): void {
  if (!plan.fits) throw new CrepeError(plan.refusal!);
}

/** The plan as printed by --dry-run. */
export function describePlan(plan: MemoryPlan): string {
  const lines = [
    `memory plan: peak host ~${fmtGiB(plan.hostBytes)} GiB of ${fmtGiB(plan.limitBytes)} GiB allowed; ` +
      `wasm heap ~${fmtGiB(plan.deviceBytes)} GiB${plan.deviceLimitBytes !== null ? ` of ${fmtGiB(plan.deviceLimitBytes)} GiB allowed (cap 4 GiB)` : ''}; ` +
      `spill files ~${fmtGiB(plan.diskBytes)} GiB (${fmtGiB(plan.diskFreeBytes)} GiB free)`,
    `  activations ${plan.storage}${plan.evaluator === 'streaming' ? ` (evaluation ${plan.evalStorage})` : ''}; evaluator ${plan.evaluator ?? 'none'}; pruned blocks ${plan.spillBlocks ? 'spilled to disk' : 'in memory'}`,
  ];
  for (const i of plan.items) {
    lines.push(`  ${i.what}: host ${fmtGiB(i.host)} GiB, device ${fmtGiB(i.device)} GiB${i.disk ? `, disk ${fmtGiB(i.disk)} GiB` : ''}`);
  }
  lines.push(plan.fits ? '  fits' : `  refused: ${plan.refusal}`);
  return lines.join('\n');
}

/** The plan as a JSON object (--json). */
export function planJson(plan: MemoryPlan): Record<string, unknown> {
  return {
    host_bytes: Math.round(plan.hostBytes),
    device_bytes: Math.round(plan.deviceBytes),
    disk_bytes: Math.round(plan.diskBytes),
    disk_free_bytes: Math.round(plan.diskFreeBytes),
    limit_bytes: Math.round(plan.limitBytes),
    device_limit_bytes: plan.deviceLimitBytes,
    activations: plan.storage,
    eval_activations: plan.evalStorage,
    evaluator: plan.evaluator,
    spill_blocks: plan.spillBlocks,
    fits: plan.fits,
    refusal: plan.refusal,
    items: plan.items.map((i) => ({ what: i.what, host_bytes: Math.round(i.host), device_bytes: Math.round(i.device), disk_bytes: Math.round(i.disk ?? 0) })),
  };
}

/** Floats of one window's inputs to every input group of a block (what a search keeps per kept window). */
function groupInputFloats(cfg: LlamaConfig, T: number): number {
  return inputGroups(cfg).reduce((a, g) => a + T * linearShape(cfg, g[0])[1], 0);
}

/** What a search (search, proxy-study, search-compare) needs besides a prune: see searchPlanRequest. */
export interface SearchPlanSettings {
  nsamples: number;
  seqlen: number;
  /** The strategy accumulates X^T X (kept for every block through the search). */
  gram: boolean;
  scoreCopies: number;
  /** Raw calibration windows kept per input group of every block (reconstruction proxies). */
  keepInputs: number;
  /** Windows of the Fisher pass (a backward through the resident model); 0: none. */
  fisherWindows: number;
  /** Evaluation windows per PPL evaluation, at the model's context. */
  evalWindows: number;
}

/**
 * A search calibrates once like a prune (pruned propagation), then keeps every block's
 * statistics (X^T X too, for SparseGPT-like strategies) and kept inputs for the whole search,
 * prunes in memory and evaluates the pruned model resident on the device, and the Fisher proxy
 * runs a backward pass through the resident model (every block's forward intermediates kept).
 */
export function searchPlanRequest(cfg: LlamaConfig, s: SearchPlanSettings, rest: Pick<PlanRequest, 'limit' | 'wasm' | 'diskFree' | 'spillDir'>): PlanRequest {
  const extra: PlanItem[] = [];
  if (s.keepInputs > 0) {
    extra.push({ what: `kept calibration inputs: ${s.keepInputs} windows x every input group x ${cfg.nLayers} blocks`, host: s.keepInputs * groupInputFloats(cfg, s.seqlen) * F32 * cfg.nLayers, device: 0 });
  }
  if (s.gram) extra.push({ what: `X^T X of every block, kept through the search (F64)`, host: cfg.nLayers * gramBytes(cfg), device: 0 });
  if (s.fisherWindows > 0) {
    extra.push({ what: `Fisher pass: every block's forward intermediates kept for the backward (${cfg.maxSeqLen} tokens)`, host: 0, device: WASM_FACTORS.activations * cfg.nLayers * forwardActivationBytes(cfg, s.seqlen) });
  }
  return {
    config: cfg,
    prune: { nsamples: s.nsamples, seqlen: s.seqlen, gram: s.gram, calibrates: true, propagate: 'pruned', scoreCopies: s.scoreCopies },
    eval: { windows: s.evalWindows, seqlen: cfg.maxSeqLen, jobs: 1 },
    storage: 'auto',
    evaluator: 'resident',
    residentOnly: true,
    spillBlocks: false,
    lengthFlag: null,
    extra,
    ...rest,
  };
}

/** What zero-shot scoring stores and runs: see zeroshotPlanRequest. */
export interface ZeroshotPlanSettings {
  /** Rows of every pack's hidden states the streaming evaluator keeps between blocks (padding included). */
  storedRows: number;
  /** Rows of the longest pack (one forward's length). */
  longestPack: number;
  jobs: number;
}

/**
 * Zero-shot scoring as an evaluation: packs of up to `longestPack` rows are the windows; the
 * streaming evaluator keeps `storedRows` rows of hidden states (as windows of the longest pack's
 * length, rounded up by at most one pack). A pack's attention mask is arbitrary (requests side
 * by side), so the two-block causal split does not apply: the quarter of T x T scores it would
 * save is added, with the pack's mask on host and device, and the head's logits of up to every
 * row of a pack at once.
 */
export function zeroshotPlanRequest(
  cfg: LlamaConfig,
  s: ZeroshotPlanSettings & Pick<PlanRequest, 'limit' | 'storage' | 'evaluator' | 'wasm' | 'diskFree' | 'spillDir' | 'extra'>,
): PlanRequest {
  const T = Math.max(1, s.longestPack);
  const factor = s.wasm ? WASM_FACTORS : NATIVE_FACTORS;
  const extra: PlanItem[] = [
    {
      what: `zero-shot packs of up to ${T} rows: full attention scores, the pack's mask, the head's logits of every row`,
      host: 2 * T * T * F32,
      device: factor.activations * ((T >= 128 ? 0.25 * 3 * T * T : 0) + T * T + 3 * T * cfg.vocabSize) * F32,
    },
    ...(s.extra ?? []),
  ];
  return {
    config: cfg,
    eval: { windows: Math.ceil(s.storedRows / T), seqlen: T, jobs: s.jobs },
    limit: s.limit,
    storage: s.storage,
    evaluator: s.evaluator,
    lengthFlag: null,
    wasm: s.wasm,
    diskFree: s.diskFree,
    spillDir: s.spillDir,
    extra,
  };
}
