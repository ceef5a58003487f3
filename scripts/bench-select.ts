/**
 * Times mask selection (lib/prune/select.ts) on LLaMA-7B-sized random score matrices, one core.
 * Not a test. Run: npx tsc -p tsconfig.json && node dist/scripts/bench-select.js [--permute]
 * --permute also times RIA's channel permutation (lib/prune/permute.ts) on 4096 x 4096, 2:4.
 */
import { loadavg } from 'os';
import { permuteForNM } from '../lib/prune/permute';
import { selectMask, Structure } from '../lib/prune/select';

const SHAPES: [number, number][] = [[4096, 4096], [11008, 4096]];
const STRUCTURES: [string, Structure][] = [
  ['row 50%', { kind: 'unstructured', group: 'row', sparsity: 0.5 }],
  ['matrix 50%', { kind: 'unstructured', group: 'matrix', sparsity: 0.5 }],
  ['2:4', { kind: 'nm', n: 2, m: 4 }],
  ['4:8', { kind: 'nm', n: 4, m: 8 }],
];
const REPEATS = 5;

/** Positive scores with per-column scales, like |W| * ||X_j|| (xorshift32: fast and repeatable). */
function randomScores(rows: number, cols: number, seed: number): Float32Array {
  let x = seed >>> 0 || 1;
  const next = () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 4294967296;
  };
  const colScale = Float32Array.from({ length: cols }, () => Math.exp(3 * next()));
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) out[i] = next() * colScale[i % cols];
  return out;
}

/**
 * Wall times in ms of `repeats` runs after one warm-up run: the minimum (the cost without
 * interference: other processes share these small machines) and the median.
 */
function time(run: () => void, repeats = REPEATS): { min: number; median: number } {
  run();
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    run();
    ms.push(Number(process.hrtime.bigint() - t0) / 1e6);
  }
  ms.sort((a, b) => a - b);
  return { min: ms[0], median: ms[repeats >> 1] };
}

const fmt = (t: { min: number; median: number }) =>
  `min ${t.min.toFixed(0).padStart(6)} ms   median ${t.median.toFixed(0).padStart(6)} ms`;

function main(): void {
  console.log(`selectMask, ${REPEATS} runs after a warm-up, one core (node ${process.version}, load average ${loadavg()[0].toFixed(1)})`);
  for (const [rows, cols] of SHAPES) {
    const scores = randomScores(rows, cols, rows + cols);
    for (const [name, structure] of STRUCTURES) {
      const t = time(() => selectMask(scores, rows, cols, structure));
      console.log(`${`${rows}x${cols}`.padEnd(11)} ${name.padEnd(11)} ${fmt(t)}`);
    }
  }
  if (process.argv.includes('--permute')) {
    const [rows, cols] = [4096, 4096];
    const scores = randomScores(rows, cols, 7);
    for (const refine of [false, true]) {
      const t = time(() => permuteForNM(scores, rows, cols, 2, 4, { refine }), 1);
      console.log(`${rows}x${cols} permute 2:4 refine=${refine}: ${t.min.toFixed(0)} ms`);
    }
  }
}

main();
