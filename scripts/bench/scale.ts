/**
 * Section "scale" (run with `npm run bench -- --only scale`; not run by default): a synthetic
 * checkpoint shaped like LLaMA-2-7B (dim 4096, hidden 11008, 32 heads, vocab 32000, BF16, HF
 * safetensors shards as `save_pretrained` writes them, seeded random weights) with a few
 * decoder blocks is pruned with `crepe prune ... --eval wikitext2 --save` in a child process,
 * for two block counts. Reported: peak RSS and wasm heap of that process (they must not grow with
 * the block count), seconds per block for calibration, scoring + selection and evaluation, and
 * the cost model (lib/plan/cost.ts): the per-block costs extrapolated to the full 32-block model
 * at 128 x 2048 calibration and the full WikiText-2 evaluation, on this CPU and on a GPU at a
 * stated throughput. Results also go to results/scale-bench.{md,json}.
 *
 * Settings by environment (the bench's flags are shared by all sections):
 *   CREPE_SCALE_BLOCKS=4,8  CREPE_SCALE_METHODS=wanda,crepe (every method on every block count),
 *   or CREPE_SCALE_RUNS=wanda:4,crepe:4,wanda:8 (explicit pairs)  CREPE_SCALE_DIR=/tmp (checkpoints,
 *   deleted afterwards)  CREPE_SCALE_NSAMPLES=2  CREPE_SCALE_SEQLEN=128  CREPE_SCALE_WINDOWS=2
 *   CREPE_SCALE_MAX_MEMORY=6 (GiB, passed as --max-memory)  CREPE_SCALE_RESULTS=scale-bench (file
 *   stem in results/, e.g. to run block counts in two processes side by side)
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { assetPath, projectRoot } from '../../lib/assets';
import { writeHfModel } from '../../lib/model/convert';
import { BlockWeights, LinearName, LlamaConfig, WeightSource, linearNames, linearShape } from '../../lib/model/types';
import { CostProjection, MeasuredBlockCosts, blockForwardFlops, gpuSeconds, projectCosts } from '../../lib/plan/cost';
import { GiB } from '../../lib/plan/memory';
import { Rng } from '../../lib/util/random';
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
  seconds: number;
  maxRss: number;
  wasmHeap: number | null;
  plannedHost: number;
  plannedDevice: number;
  measured: MeasuredBlockCosts;
  densePpl: number;
  prunedPpl: number;
  command: string;
}

function envList(name: string, fallback: string): string[] {
  return (process.env[name] ?? fallback).split(',').map((s) => s.trim()).filter(Boolean);
}

function envNumber(name: string, fallback: number): number {
  const v = Number(process.env[name] ?? fallback);
  if (!(v > 0)) throw new Error(`${name} must be a positive number`);
  return v;
}

/** Run `crepe prune` on the checkpoint in a child process and collect its JSON and peak memory. */
function runPrune(dir: string, out: string, method: string, blocks: number, s: { nsamples: number; seqlen: number; windows: number; maxMemory: number }): RunResult {
  const cli = path.join(projectRoot(), 'dist', 'scripts', 'cli.js');
  const preload = path.join(projectRoot(), 'dist', 'scripts', 'bench', 'peak-memory.js');
  const args = [
    'prune', '--model', dir, '--method', method, '--sparsity', '0.5', '--nsamples', String(s.nsamples), '--calib-seqlen', String(s.seqlen),
    '--eval', 'wikitext2', '--seqlen', String(s.seqlen), '--max-windows', String(s.windows), '--save', out, '--max-memory', String(s.maxMemory),
    '--backend', 'wasm', '--json',
  ];
  const t0 = Date.now();
  const r = spawnSync(process.execPath, ['-r', preload, cli, ...args], { encoding: 'utf8', maxBuffer: 256 << 20, env: { ...process.env, [PEAK_ENV]: '1' } });
  const seconds = (Date.now() - t0) / 1000;
  const peakLine = r.stderr.split('\n').find((l) => l.startsWith(PEAK_MARKER));
  if (r.status !== 0 || !peakLine) throw new Error(`crepe ${args.join(' ')} failed (${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const peak = JSON.parse(peakLine.slice(PEAK_MARKER.length)) as { max_rss_bytes: number; wasm_heap_bytes: number | null };
  const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
  const e = j.eval[0];
  return {
    method,
    blocks,
    seconds,
    maxRss: peak.max_rss_bytes,
    wasmHeap: peak.wasm_heap_bytes,
    plannedHost: j.memory_plan.host_bytes,
    plannedDevice: j.memory_plan.device_bytes,
    measured: {
      calibrationSeconds: j.prune_timing.calibration_seconds / blocks,
      scoringSeconds: j.prune_timing.scoring_seconds / blocks,
      evalSeconds: e.eval_blocks_seconds / blocks,
      evalHeadSeconds: e.eval_head_seconds,
      nsamples: s.nsamples,
      calibSeqlen: s.seqlen,
      calibForwards: j.prune_timing.calib_forwards,
      evalWindows: e.windows,
      evalSeqlen: e.seqlen,
    },
    densePpl: e.dense_ppl,
    prunedPpl: e.pruned_ppl,
    command: `node dist/scripts/cli.js ${args.map((a) => (a === dir ? `<${blocks}-block checkpoint>` : a === out ? '<out>' : a)).join(' ')}`,
  };
}

const gib = (b: number | null) => (b === null ? null : b / GiB);

export function costTable(rows: { label: string; p: CostProjection }[]): BenchTable {
  return {
    title: `[scale] cost model: LLaMA-2-7B (32 blocks), ${STANDARD_7B.nsamples} x ${STANDARD_7B.calibSeqlen} calibration, full WikiText-2 (${STANDARD_7B.evalWindows} x ${STANDARD_7B.evalSeqlen})`,
    columns: [
      { key: 'label', header: 'measured on' },
      { key: 'calib', header: 'calibration s/block', digits: 1 },
      { key: 'score', header: 'score+select s/block', digits: 1 },
      { key: 'eval', header: 'eval s/block', digits: 1 },
      { key: 'prune_h', header: 'prune, this CPU (h)', digits: 1 },
      { key: 'eval_h', header: 'eval, this CPU (h)', digits: 1 },
      { key: 'gpu_prune_s', header: 'prune, GPU (s)', digits: 0 },
      { key: 'gpu_eval_s', header: 'eval, GPU (s)', digits: 0 },
    ],
    rows: rows.map(({ label, p }) => ({
      label,
      calib: p.calibrationSecondsPerBlock,
      score: p.scoringSecondsPerBlock,
      eval: p.evalSecondsPerBlock,
      prune_h: p.pruneSeconds / 3600,
      eval_h: p.evalSeconds / 3600,
      gpu_prune_s: gpuSeconds(p.flops.calibration, GPU.flopsPerSecond),
      gpu_eval_s: gpuSeconds(p.flops.eval, GPU.flopsPerSecond),
    })),
    notes: [
      'CPU: measured seconds per block x (FLOPs at the standard settings / FLOPs at the measured settings); scoring + selection does not scale with the calibration set.',
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
          summarize(runs, checkpoints, settings, methods);
          fs.rmSync(out, { recursive: true, force: true });
        }
        fs.rmSync(dir, { recursive: true, force: true });
      }
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
    return summarize(runs, checkpoints, settings, methods);
  },
};

/** Tables and checks of the runs so far (written after every run, so a long bench leaves its results behind). */
function summarize(
  runs: RunResult[],
  checkpoints: { blocks: number; bytes: number; files: string[]; seconds: number }[],
  settings: { nsamples: number; seqlen: number; windows: number; maxMemory: number },
  methods: string[],
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
      { key: 'calib', header: 'calibration s/block', digits: 2 },
      { key: 'score', header: 'score+select s/block', digits: 2 },
      { key: 'eval', header: 'eval s/block', digits: 2 },
      { key: 'head', header: 'eval head s', digits: 2 },
      { key: 'seconds', header: 'wall s', digits: 0 },
    ],
    rows: runs.map((r) => ({
      method: r.method,
      blocks: r.blocks,
      rss: gib(r.maxRss),
      heap: gib(r.wasmHeap),
      plan_host: gib(r.plannedHost),
      plan_device: gib(r.plannedDevice),
      calib: r.measured.calibrationSeconds,
      score: r.measured.scoringSeconds,
      eval: r.measured.evalSeconds,
      head: r.measured.evalHeadSeconds,
      seconds: r.seconds,
    })),
    notes: [
      ...checkpoints.map((c) => `${c.blocks} blocks: ${(c.bytes / 1e9).toFixed(2)} GB in ${c.files.filter((f) => f.endsWith('.safetensors')).length} safetensors shards (${c.files.join(', ')}), written in ${c.seconds.toFixed(0)} s`),
      `command: ${runs[0]?.command ?? ''}`,
    ],
  };
  const projections = runs.map((r) => ({ label: `${r.method}, ${r.blocks} blocks`, p: projectCosts(r.measured, STANDARD_7B) }));
  const costs = costTable(projections);
  const maxRss = Math.max(...runs.map((r) => r.maxRss));
  const byMethod = methods.map((m) => runs.filter((r) => r.method === m).map((r) => r.maxRss));
  const growth = Math.max(...byMethod.map((v) => (v.length > 1 ? Math.max(...v) / Math.min(...v) : 1)));
  const result: SectionResult = {
    tables: [memoryTable, costs],
    checks: [
      { name: 'scale: peak RSS < 6 GiB for every block count', pass: maxRss < 6 * GiB, detail: `max ${(maxRss / GiB).toFixed(2)} GiB` },
      { name: 'scale: peak RSS does not grow with the block count (< 10% between counts)', pass: growth < 1.1, detail: `largest ratio ${growth.toFixed(3)}` },
    ],
  };
  writeScaleResults(result.tables, result.checks, runs, projections);
  return result;
}

/** results/scale-bench.{md,json}: the tables, and the raw runs and projections for reuse (search cost projection). */
function writeScaleResults(tables: BenchTable[], checks: { name: string; pass: boolean | null; detail: string }[], runs: RunResult[], projections: { label: string; p: CostProjection }[]): void {
  const dir = path.join(projectRoot(), 'results');
  const stem = process.env.CREPE_SCALE_RESULTS ?? 'scale-bench';
  if (!/^[\w.-]+$/.test(stem)) throw new Error(`CREPE_SCALE_RESULTS must be a plain file stem, got '${stem}'`);
  const header = `# Scale bench (7B-shaped synthetic checkpoint)\n\nWritten by \`npm run bench -- --only scale\` on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'CPU'}, node ${process.version}, backend wasm, ${new Date().toISOString()}.\n\n`;
  const md = header + tables.map((t) => '```\n' + renderTable(t) + '\n```\n').join('\n') + '\n' + checks.map((c) => `- check ${c.pass ? 'PASS' : 'FAIL'}: ${c.name} (${c.detail})`).join('\n') + '\n';
  writeFileAtomic(path.join(dir, `${stem}.md`), md);
  writeFileAtomic(
    path.join(dir, `${stem}.json`),
    JSON.stringify({ date: new Date().toISOString(), standard: { ...STANDARD_7B, config: undefined }, gpu: GPU, runs, projections }, null, 2) + '\n',
  );
}
