/**
 * Section "select" (run with --only select): mask selection (lib/prune/select.ts) alone on
 * LLaMA-7B-sized random score matrices, every structure including 4:8, and RIA's channel
 * permutation for 2:4 (lib/prune/permute.ts) on 4096 x 4096. One core.
 */
import { permuteForNM } from '../../lib/prune/permute';
import { Structure, selectMask } from '../../lib/prune/select';
import { Rng } from '../../lib/util/random';
import { BENCH_STRUCTURES, BenchSection, BenchTable, LLAMA7B_SHAPES, median, timeRepeats } from './framework';

const STRUCTURES: readonly [string, Structure][] = [...BENCH_STRUCTURES, ['4:8', { kind: 'nm', n: 4, m: 8 }]];

/** Positive scores with per-column scales, like |W| * ||X_j||. */
function randomScores(rows: number, cols: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const colScale = Float32Array.from({ length: cols }, () => Math.exp(3 * rng.next()));
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = rng.next() * colScale[i % cols];
  return out;
}

/**
 * Wall times in ms of `repeats` runs after one warm-up run: the minimum (the cost without
 * interference from other processes) and the median.
 */
function timeMs(run: () => void, repeats: number): { min_ms: number; median_ms: number } {
  const ms = timeRepeats(run, repeats);
  return { min_ms: Math.min(...ms), median_ms: median(ms) };
}

export const selectSection: BenchSection = {
  name: 'select',
  description: 'mask selection alone per structure (incl. 4:8) and channel permutation for 2:4',
  runByDefault: false,
  async run(opts) {
    const rows: BenchTable['rows'] = [];
    for (const [r, c] of LLAMA7B_SHAPES) {
      opts.log(`select: ${r}x${c}`);
      const scores = randomScores(r, c, r + c);
      for (const [name, structure] of STRUCTURES) rows.push({ shape: `${r}x${c}`, structure: name, ...timeMs(() => selectMask(scores, r, c, structure), opts.repeats) });
    }
    const permuteRows: BenchTable['rows'] = [];
    const [pr, pc] = [4096, 4096];
    const scores = randomScores(pr, pc, 7);
    for (const refine of [false, true]) {
      opts.log(`select: permute 2:4 refine=${refine}`);
      permuteRows.push({ shape: `${pr}x${pc}`, refine: String(refine), ...timeMs(() => permuteForNM(scores, pr, pc, 2, 4, { refine }), 1) });
    }
    const timeColumns = [
      { key: 'min_ms', header: 'min ms' },
      { key: 'median_ms', header: 'median ms' },
    ];
    return {
      tables: [
        {
          title: `[select] selectMask on one core, ${opts.repeats} runs after a warm-up (ms)`,
          columns: [{ key: 'shape', header: 'shape' }, { key: 'structure', header: 'structure' }, ...timeColumns],
          rows,
        },
        {
          title: '[select] RIA channel permutation for 2:4, one run after a warm-up (ms)',
          columns: [{ key: 'shape', header: 'shape' }, { key: 'refine', header: 'refine' }, ...timeColumns],
          rows: permuteRows,
        },
      ],
      checks: [],
    };
  },
};
