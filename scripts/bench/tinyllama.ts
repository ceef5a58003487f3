/**
 * Section "tinyllama" (run with `npm run bench -- --only tinyllama`; not run by default): an
 * end-to-end `crepe prune --method wanda ... --eval wikitext2` of a TinyLlama-1.1B-shaped
 * synthetic checkpoint (22 blocks, dim 2048, hidden 5632, 32 heads, 4 key/value heads, vocab
 * 32000; seeded random weights from the scale bench's generator, BF16 safetensors) in a child
 * process on the bench's engine, with its wall and CPU time.
 *
 * The full run (128 x 2048 calibration, every WikiText-2 window) takes hours on a small machine,
 * so the settings can shrink it; the section then projects the full run from the measured
 * per-block stage times, linearly (calibration in the number of windows, evaluation in the
 * windows, both in the blocks), and says so. The synthetic checkpoint's tokenizer is a
 * 105-piece one, so WikiText-2 has more windows than with TinyLlama's own; the projection
 * uses 166 windows of 2048 (LLaMA's tokenizer), as the 7B cost model does.
 *
 * Settings by environment: CREPE_1B_BLOCKS=22  CREPE_1B_NSAMPLES=128  CREPE_1B_SEQLEN=2048
 * CREPE_1B_WINDOWS (eval windows; default all)  CREPE_1B_DIR=/tmp
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { assetPath, projectRoot } from '../../lib/assets';
import { activeBlas, backendDescription } from '../../lib/backend';
import { writeHfModel } from '../../lib/model/convert';
import { LlamaConfig } from '../../lib/model/types';
import { BenchSection, BenchTable } from './framework';
import { SyntheticSource } from './scale';

/** TinyLlama-1.1B's shape (TinyLlama/TinyLlama-1.1B-intermediate-step-1431k-3T config.json). */
export const TINYLLAMA_1B: LlamaConfig = {
  architecture: 'llama',
  dim: 2048,
  hiddenDim: 5632,
  nLayers: 22,
  nHeads: 32,
  nKvHeads: 4,
  headDim: 64,
  vocabSize: 32000,
  maxSeqLen: 2048,
  normEps: 1e-5,
  ropeTheta: 10000,
  ropeLayout: 'half',
  tiedEmbeddings: false,
};

const FULL = { blocks: 22, nsamples: 128, seqlen: 2048, evalWindows: 166 };

function envInt(name: string, fallback: number | undefined): number | undefined {
  if (process.env[name] === undefined) return fallback;
  const v = Number(process.env[name]);
  if (!(Number.isInteger(v) && v > 0)) throw new Error(`${name} must be a positive integer`);
  return v;
}

export const tinyllamaSection: BenchSection = {
  name: 'tinyllama',
  description: 'end-to-end wanda prune + WikiText-2 eval of a TinyLlama-1.1B-shaped synthetic checkpoint (or a projection from a subset)',
  runByDefault: false,
  async run(opts) {
    const blocks = envInt('CREPE_1B_BLOCKS', FULL.blocks)!;
    const nsamples = envInt('CREPE_1B_NSAMPLES', FULL.nsamples)!;
    const seqlen = envInt('CREPE_1B_SEQLEN', FULL.seqlen)!;
    const windows = envInt('CREPE_1B_WINDOWS', undefined);
    const root = fs.mkdtempSync(path.join(process.env.CREPE_1B_DIR ?? os.tmpdir(), 'crepe-1b-'));
    const dir = path.join(root, 'tinyllama-shaped');
    const cfg = { ...TINYLLAMA_1B, nLayers: blocks };
    try {
      opts.log(`tinyllama: writing a ${blocks}-block TinyLlama-shaped BF16 checkpoint to ${dir}`);
      writeHfModel(new SyntheticSource(cfg, 0), dir, { dtype: 'BF16', tokenizer: assetPath('models', 'babyllama-char', 'tok105.model'), force: true });
      const args = [
        'prune', '--model', dir, '--method', 'wanda', '--sparsity', '0.5', '--nsamples', String(nsamples), '--calib-seqlen', String(seqlen),
        '--eval', 'wikitext2', '--seqlen', String(seqlen), '--evaluator', 'streaming', ...(windows ? ['--max-windows', String(windows)] : []),
        '--backend', activeBlas() ? 'blas' : 'wasm', '--json',
      ];
      opts.log(`tinyllama: crepe ${args.join(' ')}`);
      const load0 = os.loadavg()[0];
      const t0 = Date.now();
      const r = spawnSync(process.execPath, [path.join(projectRoot(), 'dist', 'scripts', 'cli.js'), ...args], { encoding: 'utf8', maxBuffer: 256 << 20 });
      const wall = (Date.now() - t0) / 1000;
      if (r.status !== 0) throw new Error(`crepe prune failed (${r.status}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
      const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
      const e = j.eval[0];
      const t = j.prune_timing;
      const perBlock = {
        read: t.read_seconds / blocks,
        calibration: t.calibration_seconds / blocks,
        scoring: t.scoring_seconds / blocks,
        evalBlocks: e.eval_blocks_seconds / blocks,
      };
      const pruneProjected = FULL.blocks * (perBlock.read + perBlock.calibration * (FULL.nsamples / nsamples) + perBlock.scoring);
      const evalProjected = FULL.blocks * perBlock.evalBlocks * (FULL.evalWindows / e.windows) + e.eval_head_seconds * (FULL.evalWindows / e.windows);
      const subset = blocks !== FULL.blocks || nsamples !== FULL.nsamples || seqlen !== FULL.seqlen || windows !== undefined;
      const table: BenchTable = {
        title: `[tinyllama] crepe prune --method wanda (50%) + WikiText-2 eval of a TinyLlama-1.1B-shaped checkpoint (${backendDescription()}), wall seconds`,
        columns: [
          { key: 'what', header: 'what' },
          { key: 'blocks', header: 'blocks' },
          { key: 'calib', header: 'calibration' },
          { key: 'windows', header: 'eval windows' },
          { key: 'prune', header: 'prune s', digits: 0 },
          { key: 'eval', header: 'eval s', digits: 0 },
          { key: 'total', header: 'wall s', digits: 0 },
        ],
        rows: [
          { what: 'measured', blocks, calib: `${nsamples} x ${seqlen}`, windows: `${e.windows} x ${e.seqlen}`, prune: t.read_seconds + t.calibration_seconds + t.scoring_seconds, eval: e.eval_blocks_seconds + e.eval_head_seconds, total: wall },
          ...(subset
            ? [{ what: 'projected (linear in blocks, windows)', blocks: FULL.blocks, calib: `${FULL.nsamples} x ${FULL.seqlen}`, windows: `${FULL.evalWindows} x ${FULL.seqlen}`, prune: pruneProjected, eval: evalProjected, total: pruneProjected + evalProjected }]
            : []),
        ],
        notes: [
          `per block: read ${perBlock.read.toFixed(1)} s, calibration ${perBlock.calibration.toFixed(1)} s (${nsamples} windows), scoring + selection ${perBlock.scoring.toFixed(1)} s, eval ${perBlock.evalBlocks.toFixed(1)} s (${e.windows} windows); head ${e.eval_head_seconds.toFixed(1)} s`,
          `dense PPL ${e.dense_ppl}, pruned PPL ${e.pruned_ppl} (random weights: the numbers only show the run completed)`,
          `load average ${load0.toFixed(2)} at the start, ${os.loadavg()[0].toFixed(2)} at the end (${os.cpus().length} CPUs)`,
          ...(subset ? ['projected: not a measurement of the full run; the measured subset is the first row'] : []),
        ],
      };
      return { tables: [table], checks: [] };
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  },
};
