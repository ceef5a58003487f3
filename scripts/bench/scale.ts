/**
 * Section "scale" (run with `npm run bench -- --only scale`; not run by default): a synthetic
 * checkpoint shaped like LLaMA-2-7B (dim 4096, hidden 11008, 32 heads, vocab 32000, BF16, HF
 * safetensors shards as `save_pretrained` writes them, seeded random weights) with a few
 * decoder blocks is pruned with `crepe prune ... --eval wikitext2 --save` in a child process,
 * per method and block count. Reported: peak RSS and wasm heap of that process (they must not
 * grow with the block count: at least two block counts per method, or the check fails), wall and
 * CPU seconds and the load average, seconds per block for reading, calibration, scoring +
 * selection and evaluation, and the cost model (lib/plan/cost.ts): first, in this process, one
 * 7B-shaped block's forward is timed on one window at several lengths (CPU seconds) and fitted as
 * a + b T + c T^2, the head likewise as a + b T; each run's per-block stage costs then split into
 * a fixed part (measured minus the forwards' share) and the forwards, and only the forwards are
 * extrapolated to the full 32-block model at 128 x 2048 calibration and the full WikiText-2
 * evaluation, on this CPU and on a GPU at a stated throughput. Results also go to
 * results/scale-bench.{md,json}.
 *
 * Settings by environment (the bench's flags are shared by all sections):
 *   CREPE_SCALE_BLOCKS=4,8  CREPE_SCALE_METHODS=wanda,crepe (every method on every block count),
 *   or CREPE_SCALE_RUNS=wanda:4,crepe:4,wanda:8 (explicit pairs)  CREPE_SCALE_DIR=/tmp (checkpoints,
 *   deleted afterwards)  CREPE_SCALE_NSAMPLES=2  CREPE_SCALE_SEQLEN=128  CREPE_SCALE_WINDOWS=2
 *   CREPE_SCALE_MAX_MEMORY=6 (GiB, passed as --max-memory)  CREPE_SCALE_RESULTS=scale-bench (file
 *   stem in results/, e.g. to run block counts in two processes side by side)
 *   CREPE_SCALE_FIT=128,512,1024,2048 (window lengths of the block forward fit; the head's: those <= 512)
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { assetPath, projectRoot } from '../../lib/assets';
import { activeBlas, backendDescription } from '../../lib/backend';
import { writeHfModel } from '../../lib/model/convert';
import { disposeBlock, disposeWindowTables, forwardBlock, headLogProbs, makeBlockTensors, makeWindowTables, transpose } from '../../lib/model/runtime';
import { BlockWeights, LinearName, LlamaConfig, WeightSource, linearNames, linearShape } from '../../lib/model/types';
import { CostProjection, MeasuredBlockCosts, TimedWindow, WindowCost, blockForwardFlops, fitWindowCost, gpuSeconds, headFlops, projectCosts, windowSeconds } from '../../lib/plan/cost';
import { GiB } from '../../lib/plan/memory';
import { Rng } from '../../lib/util/random';
import { cpuSecondsSince } from '../../lib/util/time';
import { writeFileAtomic } from '../../lib/io/atomic';
import { BenchSection, BenchTable, SectionResult, renderTable } from './framework';
import { PEAK_ENV, PEAK_MARKER } from './peak-memory';

/** LLaMA-2-7B's shape (meta-llama/Llama-2-7b-hf config.json). */
export const LLAMA2_7B: LlamaConfig = {
  architecture: 'llama',
  dim: 4096,
  hiddenDim: 11008,
  nLayers: 32,
  nHeads: 32,
  nKvHeads: 32,
  headDim: 128,
  vocabSize: 32000,
  maxSeqLen: 4096,
  normEps: 1e-5,
  ropeTheta: 10000,
  ropeLayout: 'half',
  tiedEmbeddings: false,
};

/** The real checkpoint's shard limit (save_pretrained's 10 GB at the time): 2 shards for 32 blocks. */
const REAL_SHARD_BYTES = 10e9;
/** Standard settings of the pruning papers; WikiText-2 test is 341,469 LLaMA tokens = 166 windows of 2048. */
export const STANDARD_7B = { config: LLAMA2_7B, nsamples: 128, calibSeqlen: 2048, evalWindows: 166, evalSeqlen: 2048 };
/** Stated GPU throughput for the FLOP-count estimate: an A100's 312 TFLOP/s BF16 peak at 40% utilisation. */
export const GPU = { name: 'A100-class GPU at 125 TFLOP/s sustained (40% of 312 TFLOP/s BF16 peak)', flopsPerSecond: 125e12 };

/**
 * Seeded random weights of a LLaMA-shaped model, made on request (nothing held): linears
 * uniform with the std 0.02 of LLaMA's initialiser, norm gains 1.
 */
export class SyntheticSource implements WeightSource {
  readonly format = 'hf' as const;
  readonly origin: string;
  constructor(
    readonly config: LlamaConfig,
    private readonly seed: number,
  ) {
    this.origin = `synthetic(seed ${seed})`;
  }
  private random(n: number, stream: number): Float32Array {
    const rng = new Rng(this.seed * 1_000_003 + stream);
    const a = 0.02 * Math.sqrt(3);
    const out = new Float32Array(n);
    for (let k = 0; k < n; k++) out[k] = (2 * rng.next() - 1) * a;
    return out;
  }
  readEmbedding(): Float32Array {
    return this.random(this.config.vocabSize * this.config.dim, 1);
  }
  readClassifier(): Float32Array {
    return this.random(this.config.vocabSize * this.config.dim, 2);
  }
  readFinalNorm(): Float32Array {
    return new Float32Array(this.config.dim).fill(1);
  }
  readBlock(index: number): BlockWeights {
    const linears = {} as Record<LinearName, Float32Array>;
    linearNames(this.config).forEach((l, k) => {
      const [o, i] = linearShape(this.config, l);
      linears[l] = this.random(o * i, 100 + index * 10 + k);
    });
    const ones = () => new Float32Array(this.config.dim).fill(1);
    return { norms: { attnNorm: ones(), ffnNorm: ones() }, linears };
  }
  close(): void {}
}

/** Write a `blocks`-block 7B-shaped BF16 HF checkpoint to `dir` (replaced), with a tokenizer. */
export function writeSynthetic7B(dir: string, blocks: number, seed = 0): void {
  const cfg = { ...LLAMA2_7B, nLayers: blocks };
  writeHfModel(new SyntheticSource(cfg, seed), dir, {
    dtype: 'BF16',
    shardBytes: (REAL_SHARD_BYTES * blocks) / LLAMA2_7B.nLayers,
    // a small sentencepiece tokenizer (105 pieces): ids stay below the 32000-row embedding, and
    // the costs measured do not depend on which ids come
    tokenizer: assetPath('models', 'babyllama-char', 'tok105.model'),
    force: true,
  });
}

interface RunResult {
  method: string;
  blocks: number;
  /** Wall seconds of the child process, and its CPU seconds (user + system, its own and its children's). */
  seconds: number;
  cpuSeconds: number;
  /** 1-minute load average when the run started and ended (2 CPUs shared with other work). */
  loadavg: [number, number];
  maxRss: number;
  wasmHeap: number | null;
  plannedHost: number;
  plannedDevice: number;
  /** Per-block costs in CPU seconds (what the cost model uses), and the same stages in wall seconds. */
  measured: MeasuredBlockCosts;
  measuredWall: MeasuredBlockCosts;
  densePpl: number;
  prunedPpl: number;
  command: string;
}

/** Window costs of one 7B-shaped block and of the head, timed in this process (CPU seconds). */
export interface WindowFits {
  block: WindowCost;
  head: WindowCost;
  /** Wall seconds of the same timings, for comparison. */
  blockWall: TimedWindow[];
  headWall: TimedWindow[];
  loadavg: [number, number];
}

function envList(name: string, fallback: string): string[] {
  return (process.env[name] ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
}

function envNumber(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!(v > 0)) throw new Error(`${name} must be a positive number`);
  return v;
}

/** Time `fn` once: CPU seconds (user + system of this process) and wall seconds. */
function timed(fn: () => void): { cpu: number; wall: number } {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  fn();
  return { cpu: cpuSecondsSince(c0), wall: Number(process.hrtime.bigint() - t0) / 1e9 };
}

/**
 * Time one window through one 7B-shaped block (random weights) at each length, after a warm-up
 * forward (XNNPACK packs each weight on first use), then the head on one window per length;
 * fit both. wasm runs on one thread, so CPU seconds are what one idle core would take.
 */
export async function measureWindowCosts(lengths: number[], log: (m: string) => void): Promise<WindowFits> {
  const load0 = os.loadavg()[0];
  const cfg = { ...LLAMA2_7B, nLayers: 1 };
  const src = new SyntheticSource(cfg, 1);
  const block: TimedWindow[] = [];
  const blockWall: TimedWindow[] = [];
  const bt = makeBlockTensors(cfg, src.readBlock(0));
  const rng = new Rng(7);
  const input = (T: number) => tf.tensor2d(Float32Array.from({ length: T * cfg.dim }, () => 2 * rng.next() - 1), [T, cfg.dim]);
  try {
    for (const T of [lengths[0], ...lengths]) {
      const tables = makeWindowTables(cfg, T);
      const x = input(T);
      const t = timed(() => forwardBlock(cfg, bt, tables, x).dispose());
      tf.dispose(x);
      disposeWindowTables(tables);
      block.push({ tokens: T, seconds: t.cpu });
      blockWall.push({ tokens: T, seconds: t.wall });
      log(`scale: block forward, ${T} tokens: ${t.cpu.toFixed(2)} CPU s, ${t.wall.toFixed(2)} wall s`);
    }
  } finally {
    disposeBlock(bt);
  }
  // the first timing was the warm-up
  block.shift();
  blockWall.shift();
  const head: TimedWindow[] = [];
  const headWall: TimedWindow[] = [];
  const classifierT = tf.tensor2d(transpose(src.readClassifier(), cfg.vocabSize, cfg.dim), [cfg.dim, cfg.vocabSize]);
  const finalNorm = tf.tensor1d(src.readFinalNorm());
  try {
    const headLengths = lengths.filter((T) => T <= 512);
    for (const T of [headLengths[0], ...headLengths]) {
      const x = input(T);
      const tokens = Int32Array.from({ length: T }, (_, k) => (k * 7919) % cfg.vocabSize);
      const t = timed(() => headLogProbs(cfg, finalNorm, classifierT, x, tokens));
      x.dispose();
      head.push({ tokens: T, seconds: t.cpu });
      headWall.push({ tokens: T, seconds: t.wall });
      log(`scale: head, ${T} tokens: ${t.cpu.toFixed(2)} CPU s, ${t.wall.toFixed(2)} wall s`);
    }
  } finally {
    tf.dispose([classifierT, finalNorm]);
  }
  head.shift();
  headWall.shift();
  return { block: fitWindowCost(block), head: fitWindowCost(head, false), blockWall, headWall, loadavg: [load0, os.loadavg()[0]] };
}

/**
 * CPU seconds (user + system) of this process's waited-for children and their descendants, from
 * /proc/self/stat (cutime, cstime in clock ticks of 1/100 s); null off Linux.
 */
function childrenCpuSeconds(): number | null {
  try {
    const stat = fs.readFileSync('/proc/self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is field 3 (state): cutime and cstime are fields 16 and 17
    return (Number(fields[13]) + Number(fields[14])) / 100;
  } catch {
    return null;
  }
}

/** Run `crepe prune` on the checkpoint in a child process and collect its JSON and peak memory. */
function runPrune(dir: string, out: string, method: string, blocks: number, s: { nsamples: number; seqlen: number; windows: number; maxMemory: number }): RunResult {
  const cli = path.join(projectRoot(), 'dist', 'scripts', 'cli.js');
  const preload = path.join(projectRoot(), 'dist', 'scripts', 'bench', 'peak-memory.js');
  const args = [
    'prune', '--model', dir, '--method', method, '--sparsity', '0.5', '--nsamples', String(s.nsamples), '--calib-seqlen', String(s.seqlen),
    '--eval', 'wikitext2', '--seqlen', String(s.seqlen), '--max-windows', String(s.windows), '--save', out, '--max-memory', String(s.maxMemory),
    '--backend', activeBlas() ? 'blas' : 'wasm', '--json',
  ];
  const load0 = os.loadavg()[0];
  const cpu0 = childrenCpuSeconds();
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-r', preload, cli, ...args], { encoding: 'utf8', maxBuffer: 256 << 20, env: { ...process.env, [PEAK_ENV]: '1' } });
  const seconds = (Date.now() - t0) / 1000;
  const cpu1 = childrenCpuSeconds();
  const peakLine = r.stderr.split('\n').find((l) => l.startsWith(PEAK_MARKER));
  if (r.status !== 0 || !peakLine) throw new Error(`crepe ${args.join(' ')} failed (${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const peak = JSON.parse(peakLine.slice(PEAK_MARKER.length)) as { max_rss_bytes: number; wasm_heap_bytes: number | null; cpu_seconds: number };
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
  const e = j.eval[0];
  const t = j.prune_timing;
  // the last block propagates nothing: window forwards per block, averaged
  const calibWindowForwards = (s.nsamples * (t.calib_forwards * blocks - (t.calib_forwards > 1 ? 1 : 0))) / blocks;
  const settings = { nsamples: s.nsamples, calibSeqlen: s.seqlen, calibForwards: t.calib_forwards, calibWindowForwards, evalWindows: e.windows, evalSeqlen: e.seqlen };
  return {
    method,
    blocks,
    seconds,
    cpuSeconds: cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : peak.cpu_seconds,
    loadavg: [load0, os.loadavg()[0]],
    maxRss: peak.max_rss_bytes,
    wasmHeap: peak.wasm_heap_bytes,
    plannedHost: j.memory_plan.host_bytes,
    plannedDevice: j.memory_plan.device_bytes,
    measured: {
      readSeconds: t.cpu_read_seconds / blocks,
      calibrationSeconds: t.cpu_calibration_seconds / blocks,
      scoringSeconds: t.cpu_scoring_seconds / blocks,
      evalSeconds: e.eval_blocks_cpu_seconds / blocks,
      evalHeadSeconds: e.eval_head_cpu_seconds,
      ...settings,
    },
    measuredWall: {
      readSeconds: t.read_seconds / blocks,
      calibrationSeconds: t.calibration_seconds / blocks,
      scoringSeconds: t.scoring_seconds / blocks,
      evalSeconds: e.eval_blocks_seconds / blocks,
      evalHeadSeconds: e.eval_head_seconds,
      ...settings,
    },
    densePpl: e.dense_ppl,
    prunedPpl: e.pruned_ppl,
    command: `node dist/scripts/cli.js ${args.map((a) => (a === dir ? `<${blocks}-block checkpoint>` : a === out ? '<out>' : a)).join(' ')}`,
  };
}

const gib = (b: number | null) => (b === null ? null : b / GiB);

/** The block's and the head's fitted window costs against the timings, with the FLOP rate they imply. */
export function fitTable(fits: WindowFits): BenchTable {
  const cfg = LLAMA2_7B;
  const rows = [
    ...fits.block.points.map((p, k) => ({ part: 'block forward', T: p.tokens, cpu: p.seconds, wall: fits.blockWall[k].seconds, fit: windowSeconds(fits.block, p.tokens), gflops: blockForwardFlops(cfg, 1, p.tokens) / p.seconds / 1e9 })),
    ...fits.head.points.map((p, k) => ({ part: 'head', T: p.tokens, cpu: p.seconds, wall: fits.headWall[k].seconds, fit: windowSeconds(fits.head, p.tokens), gflops: headFlops(cfg, 1, p.tokens) / p.seconds / 1e9 })),
    { part: 'block forward (fit)', T: STANDARD_7B.calibSeqlen, cpu: null, wall: null, fit: windowSeconds(fits.block, STANDARD_7B.calibSeqlen), gflops: blockForwardFlops(cfg, 1, STANDARD_7B.calibSeqlen) / windowSeconds(fits.block, STANDARD_7B.calibSeqlen) / 1e9 },
    { part: 'head (fit)', T: STANDARD_7B.evalSeqlen, cpu: null, wall: null, fit: windowSeconds(fits.head, STANDARD_7B.evalSeqlen), gflops: headFlops(cfg, 1, STANDARD_7B.evalSeqlen) / windowSeconds(fits.head, STANDARD_7B.evalSeqlen) / 1e9 },
  ];
  const f = fits.block;
  return {
    title: `[scale] one window through one 7B-shaped block and through the head (this process, ${backendDescription()})`,
    columns: [
      { key: 'part', header: 'part' },
      { key: 'T', header: 'tokens' },
      { key: 'cpu', header: 'CPU s', digits: 2 },
      { key: 'wall', header: 'wall s', digits: 2 },
      { key: 'fit', header: 'fitted s', digits: 2 },
      { key: 'gflops', header: 'GFLOP/s', digits: 1 },
    ],
    rows,
    notes: [
      `block: w(T) = ${f.perWindow.toFixed(3)} + ${(f.perToken * 1e3).toFixed(3)}e-3 T + ${(f.perTokenSq * 1e6).toFixed(4)}e-6 T^2 CPU s (least squares over the timed lengths; a negative term is dropped and the rest refitted)`,
      `head: h(T) = ${fits.head.perWindow.toFixed(3)} + ${(fits.head.perToken * 1e3).toFixed(3)}e-3 T CPU s`,
      `load average ${fits.loadavg[0].toFixed(2)} at the start, ${fits.loadavg[1].toFixed(2)} at the end (2 CPUs shared with other work)`,
    ],
  };
}

export function costTable(rows: { label: string; p: CostProjection }[]): BenchTable {
  return {
    title: `[scale] cost model: LLaMA-2-7B (32 blocks), ${STANDARD_7B.nsamples} x ${STANDARD_7B.calibSeqlen} calibration, full WikiText-2 (${STANDARD_7B.evalWindows} x ${STANDARD_7B.evalSeqlen}), from CPU seconds (one core's work) and from wall seconds`,
    columns: [
      { key: 'label', header: 'measured on' },
      { key: 'fixed', header: 'fixed prune s/block', digits: 1 },
      { key: 'fixed_eval', header: 'fixed eval s/block', digits: 1 },
      { key: 'window', header: 's/window/block @2048', digits: 1 },
      { key: 'calib', header: 'calibration s/block', digits: 0 },
      { key: 'eval', header: 'eval s/block', digits: 0 },
      { key: 'prune_h', header: 'prune, this CPU (h)', digits: 1 },
      { key: 'eval_h', header: 'eval, this CPU (h)', digits: 1 },
      { key: 'gpu_prune_s', header: 'prune, GPU (s)', digits: 0 },
      { key: 'gpu_eval_s', header: 'eval, GPU (s)', digits: 0 },
    ],
    rows: rows.map(({ label, p }) => ({
      label,
      fixed: p.fixed.read + p.fixed.calibration + p.fixed.scoring,
      fixed_eval: p.fixed.eval,
      window: p.windowSeconds.calibration,
      calib: p.calibrationSecondsPerBlock,
      eval: p.evalSecondsPerBlock,
      prune_h: p.pruneSeconds / 3600,
      eval_h: p.evalSeconds / 3600,
      gpu_prune_s: gpuSeconds(p.flops.calibration, GPU.flopsPerSecond),
      gpu_eval_s: gpuSeconds(p.flops.eval, GPU.flopsPerSecond),
    })),
    notes: [
      'fixed: a stage\'s measured CPU seconds per block minus its window forwards x w(T) (read + calibration uploads + scoring + selection; eval: read + upload); not extrapolated.',
      `calibration s/block = fixed + ${STANDARD_7B.nsamples} x (2 - 1/32) window forwards x w(${STANDARD_7B.calibSeqlen}); eval s/block = fixed + ${STANDARD_7B.evalWindows} x w(${STANDARD_7B.evalSeqlen}); prune = 32 x (read + calibration + scoring); eval = 32 x eval + head.`,
      `this CPU: the 'CPU s' rows add up the work of every thread (engine ${backendDescription()}; with one thread, an idle core's wall time); the 'wall s' rows are what a user waits on this machine with that many BLAS threads, valid only when the machine was otherwise idle (see the load averages).`,
      `GPU: FLOPs / ${GPU.name}; a lower bound (no memory traffic); scoring + selection not included.`,
      `FLOPs per block forward: 2 x tokens x 202.4M linear parameters + 4 x T^2 x 4096 attention; at 2048 tokens ${(blockForwardFlops(LLAMA2_7B, 1, 2048) / 1e12).toFixed(2)} TFLOP per window.`,
    ],
  };
}

export const scaleSection: BenchSection = {
  name: 'scale',
  description: '7B-shaped synthetic checkpoint: prune + eval + save in bounded memory for two block counts, per-block costs, 7B cost model',
  runByDefault: false,
  async run(opts) {
    const pairs: [string, number][] = process.env.CREPE_SCALE_RUNS
      ? envList('CREPE_SCALE_RUNS', '').map((p) => {
          const [m, b] = p.split(':');
          return [m, Number(b)];
        })
      : envList('CREPE_SCALE_BLOCKS', '4,8').flatMap((b) => envList('CREPE_SCALE_METHODS', 'wanda,crepe').map((m): [string, number] => [m, Number(b)]));
    for (const [, b] of pairs) if (!(Number.isInteger(b) && b >= 1)) throw new Error(`scale: bad block count ${b}`);
    const blockCounts = [...new Set(pairs.map(([, b]) => b))];
    const methods = [...new Set(pairs.map(([m]) => m))];
    const settings = {
      nsamples: envNumber('CREPE_SCALE_NSAMPLES', 2),
      seqlen: envNumber('CREPE_SCALE_SEQLEN', 128),
      windows: envNumber('CREPE_SCALE_WINDOWS', 2),
      maxMemory: envNumber('CREPE_SCALE_MAX_MEMORY', 6),
    };
    const fitLengths = envList('CREPE_SCALE_FIT', '128,512,1024,2048').map(Number);
    if (fitLengths.length < 3 || fitLengths.some((T) => !(Number.isInteger(T) && T >= 2))) throw new Error('CREPE_SCALE_FIT needs at least three window lengths');
    opts.log(`scale: timing one 7B-shaped block's forward at ${fitLengths.join(', ')} tokens`);
    const fits = await measureWindowCosts(fitLengths, opts.log);
    const root = fs.mkdtempSync(path.join(process.env.CREPE_SCALE_DIR ?? os.tmpdir(), 'crepe-scale-'));
    const runs: RunResult[] = [];
    const checkpoints: { blocks: number; bytes: number; files: string[]; seconds: number }[] = [];
    try {
      for (const blocks of blockCounts) {
        const dir = path.join(root, `llama2-7b-shaped-${blocks}`);
        opts.log(`scale: writing a ${blocks}-block 7B-shaped BF16 checkpoint to ${dir}`);
        const t0 = Date.now();
        writeSynthetic7B(dir, blocks, 0);
        const files = fs.readdirSync(dir).sort();
        const bytes = files.reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0);
        checkpoints.push({ blocks, bytes, files, seconds: (Date.now() - t0) / 1000 });
        for (const method of pairs.filter(([, b]) => b === blocks).map(([m]) => m)) {
          opts.log(`scale: crepe prune --method ${method} on ${blocks} blocks`);
          const out = path.join(root, `pruned-${method}-${blocks}`);
          runs.push(runPrune(dir, out, method, blocks, settings));
          summarize(runs, checkpoints, settings, methods, fits);
          fs.rmSync(out, { recursive: true, force: true });
        }
        fs.rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
    return summarize(runs, checkpoints, settings, methods, fits);
  },
};

/**
 * The check that peak RSS does not grow with the number of blocks: it needs at least two block
 * counts of every method (one count cannot show growth, so it fails rather than pass vacuously).
 */
export function rssGrowthCheck(runs: { method: string; blocks: number; maxRss: number }[]): { pass: boolean; detail: string } {
  const methods = [...new Set(runs.map((r) => r.method))];
  if (methods.length === 0) return { pass: false, detail: 'no runs' };
  const parts: string[] = [];
  let pass = true;
  for (const m of methods) {
    const mine = runs.filter((r) => r.method === m).sort((a, b) => a.blocks - b.blocks);
    const counts = [...new Set(mine.map((r) => r.blocks))];
    if (counts.length < 2) {
      pass = false;
      parts.push(`${m}: only ${counts.join('')} blocks measured, two block counts needed`);
      continue;
    }
    const ratio = Math.max(...mine.map((r) => r.maxRss)) / Math.min(...mine.map((r) => r.maxRss));
    const largerUses = mine[mine.length - 1].maxRss / mine[0].maxRss;
    if (!(ratio < 1.1)) pass = false;
    parts.push(`${m}: ${counts.join(' vs ')} blocks, ${mine.map((r) => (r.maxRss / GiB).toFixed(2)).join(' vs ')} GiB (${counts[counts.length - 1]}/${counts[0]}: x${largerUses.toFixed(3)})`);
  }
  return { pass, detail: parts.join('; ') };
}

/** Tables and checks of the runs so far (written after every run, so a long bench leaves its results behind). */
function summarize(
  runs: RunResult[],
  checkpoints: { blocks: number; bytes: number; files: string[]; seconds: number }[],
  settings: { nsamples: number; seqlen: number; windows: number; maxMemory: number },
  methods: string[],
  fits: WindowFits,
): SectionResult {
  const memoryTable: BenchTable = {
    title: `[scale] crepe prune --eval wikitext2 --save on the 7B-shaped checkpoint (${settings.nsamples} x ${settings.seqlen} calibration, ${settings.windows} eval windows, --max-memory ${settings.maxMemory})`,
    columns: [
      { key: 'method', header: 'method' },
      { key: 'blocks', header: 'blocks' },
      { key: 'rss', header: 'peak RSS (GiB)', digits: 2 },
      { key: 'heap', header: 'wasm heap (GiB)', digits: 2 },
      { key: 'plan_host', header: 'planned host (GiB)', digits: 2 },
      { key: 'plan_device', header: 'planned heap (GiB)', digits: 2 },
      { key: 'read', header: 'read s/block', digits: 1 },
      { key: 'calib', header: 'calibration s/block', digits: 1 },
      { key: 'score', header: 'score+select s/block', digits: 1 },
      { key: 'eval', header: 'eval s/block', digits: 1 },
      { key: 'head', header: 'eval head s', digits: 1 },
      { key: 'seconds', header: 'wall s', digits: 0 },
      { key: 'cpu', header: 'CPU s', digits: 0 },
      { key: 'load', header: 'load avg', digits: 0 },
    ],
    rows: runs.map((r) => ({
      method: r.method,
      blocks: r.blocks,
      rss: gib(r.maxRss),
      heap: gib(r.wasmHeap),
      plan_host: gib(r.plannedHost),
      plan_device: gib(r.plannedDevice),
      read: r.measured.readSeconds,
      calib: r.measured.calibrationSeconds,
      score: r.measured.scoringSeconds,
      eval: r.measured.evalSeconds,
      head: r.measured.evalHeadSeconds,
      seconds: r.seconds,
      cpu: r.cpuSeconds,
      load: `${r.loadavg[0].toFixed(1)}-${r.loadavg[1].toFixed(1)}`,
    })),
    notes: [
      'per-block stage costs in CPU seconds (user + system of the crepe process); wall s and CPU s are the whole child process; load avg: 1-minute, at its start and end, 2 CPUs',
      ...runs.map((r) => `${r.method}, ${r.blocks} blocks, the same stages in wall seconds: read ${r.measuredWall.readSeconds.toFixed(1)}, calibration ${r.measuredWall.calibrationSeconds.toFixed(1)}, scoring ${r.measuredWall.scoringSeconds.toFixed(1)}, eval ${r.measuredWall.evalSeconds.toFixed(1)} s/block, head ${r.measuredWall.evalHeadSeconds.toFixed(1)} s; PPL dense ${r.densePpl.toFixed(1)}, pruned ${r.prunedPpl.toFixed(1)} (random weights)`),
      ...checkpoints.map((c) => `${c.blocks} blocks: ${(c.bytes / 1e9).toFixed(2)} GB in ${c.files.filter((f) => f.endsWith('.safetensors')).length} safetensors shards (${c.files.join(', ')}), written in ${c.seconds.toFixed(0)} s`),
      `command: ${runs[0]?.command ?? ''}`,
    ],
  };
  // CPU seconds project one core's work; wall seconds project what a user waits with every BLAS thread
  // (the fits and the child prune run on the same engine and thread count, so they combine)
  const threads = activeBlas()?.threads() ?? 1;
  const blockWallFit = fitWindowCost(fits.blockWall);
  const headWallFit = fitWindowCost(fits.headWall, false);
  const projections = runs.flatMap((r) => [
    { label: `${r.method}, ${r.blocks} blocks, CPU s`, p: projectCosts(r.measured, fits.block, fits.head, STANDARD_7B) },
    { label: `${r.method}, ${r.blocks} blocks, wall s (${threads} thread${threads === 1 ? '' : 's'})`, p: projectCosts(r.measuredWall, blockWallFit, headWallFit, STANDARD_7B) },
  ]);
  const maxRss = Math.max(...runs.map((r) => r.maxRss));
  const growth = rssGrowthCheck(runs);
  const result: SectionResult = {
    tables: [memoryTable, fitTable(fits), costTable(projections)],
    checks: [
      { name: 'scale: peak RSS < 6 GiB for every run', pass: runs.length > 0 && maxRss < 6 * GiB, detail: `max ${(maxRss / GiB).toFixed(2)} GiB over ${runs.length} runs` },
      { name: 'scale: peak RSS does not grow with the block count (< 10% between counts, two counts per method)', ...growth },
    ],
  };
  writeScaleResults(result.tables, result.checks, runs, fits, projections, methods);
  return result;
}

/** results/scale-bench.{md,json}: the tables, and the raw runs, fits and projections for reuse. */
function writeScaleResults(
  tables: BenchTable[],
  checks: { name: string; pass: boolean | null; detail: string }[],
  runs: RunResult[],
  fits: WindowFits,
  projections: { label: string; p: CostProjection }[],
  methods: string[],
): void {
  const dir = path.join(projectRoot(), 'results');
  const stem = process.env.CREPE_SCALE_RESULTS ?? 'scale-bench';
  if (!/^[\w.-]+$/.test(stem)) throw new Error(`CREPE_SCALE_RESULTS must be a plain file stem, got '${stem}'`);
  const env = ['CREPE_SCALE_RESULTS', 'CREPE_SCALE_RUNS', 'CREPE_SCALE_BLOCKS', 'CREPE_SCALE_METHODS', 'CREPE_SCALE_NSAMPLES', 'CREPE_SCALE_SEQLEN', 'CREPE_SCALE_WINDOWS', 'CREPE_SCALE_MAX_MEMORY', 'CREPE_SCALE_FIT']
    .filter((k) => process.env[k] !== undefined)
    .map((k) => `${k}=${process.env[k]} `)
    .join('');
  const header =
    `# Scale bench (7B-shaped synthetic checkpoint)\n\nWritten by \`${env}npm run bench -- --only scale\` (methods ${methods.join(', ')}) on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'CPU'}, ` +
    `node ${process.version}, backend ${backendDescription()}, ${new Date().toISOString()}, with load averages below (wall seconds are valid only where the load stayed near the thread count; CPU seconds are comparable always).\n\n`;
  const md = header + tables.map((t) => '```\n' + renderTable(t) + '\n```\n').join('\n') + '\n' + checks.map((c) => `- check ${c.pass ? 'PASS' : 'FAIL'}: ${c.name} (${c.detail})`).join('\n') + '\n';
  writeFileAtomic(path.join(dir, `${stem}.md`), md);
  writeFileAtomic(
    path.join(dir, `${stem}.json`),
    JSON.stringify({ date: new Date().toISOString(), standard: { ...STANDARD_7B, config: undefined }, gpu: GPU, fits, runs, projections }, null, 2) + '\n',
  );
}
