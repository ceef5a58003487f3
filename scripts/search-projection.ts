/**
 * Per-weight costs of a search on LLaMA-2-7B-shaped matrices, for the wall-time projection in
 * results/search-comparison.md (`crepe search-compare` reads this file when the config names it).
 *
 * Measured on one gate-shaped linear [11008, 4096] (the largest kind; every cost here is linear
 * in the number of weights) with the search code itself: a proxy evaluation = CRePE's prepared
 * scoring + 50% selection + the energy-row and energy proxies; a PPL evaluation's pruning =
 * scoring + selection + masking; the forward = the runtime's matMul of [tokens, 4096] by the
 * pre-transposed weight. Times are CPU seconds of this process on one thread (the BLAS engine,
 * when present, is held to one thread), so the numbers are one core's and do not depend on what
 * else the shared machine runs; the load and the engine are recorded.
 *
 *   node dist/scripts/search-projection.js [out.json]    (npm run search-projection; CREPE_BACKEND=wasm for plain wasm)
 */
import * as fs from 'fs';
import * as os from 'os';
import * as tf from '@tensorflow/tfjs';
import { BackendChoice, backendDescription, initBackend, setThreads } from '../lib/backend';
import { writeFileAtomic } from '../lib/io/atomic';
import { applyMask, selectMask } from '../lib/prune/select';
import { emptyStats } from '../lib/prune/stats';
import { LayerContext, getStrategy } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { ProxyAccumulator } from '../lib/search/proxies';

const DIM = 4096;
const HIDDEN = 11008;
const LAYERS = 32;
/** Linear weights of LLaMA-2-7B: q k v o [4096, 4096] and gate up down [11008 x 4096] per block. */
const LINEAR_WEIGHTS = LAYERS * (4 * DIM * DIM + 3 * HIDDEN * DIM);
const SEQLEN = 4096;
const TOKENS = 64;
const REPEATS = 3;

function cpuSeconds(fn: () => void): number {
  const c0 = process.cpuUsage();
  fn();
  const d = process.cpuUsage(c0);
  return (d.user + d.system) / 1e6;
}

async function main(): Promise<void> {
  const out = process.argv[2] ?? 'results/search-projection-7b.json';
  await initBackend((process.env.CREPE_BACKEND as BackendChoice | undefined) ?? 'auto');
  setThreads(1);
  const n = HIDDEN * DIM;
  let seed = 7;
  const next = (): number => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
  const weightData = Float32Array.from({ length: n }, () => (next() - 0.5) * 0.04);
  const stats = emptyStats(DIM);
  for (let j = 0; j < DIM; j++) stats.sumSq[j] = next() * 100;
  stats.samples = 128;
  stats.tokens = 128 * SEQLEN;
  const weight = tf.tensor2d(weightData, [HIDDEN, DIM]);
  const ctx: LayerContext = { weight, weightData, shape: [HIDDEN, DIM], stats, name: 'gate', block: 0, kind: 'mlp', key: 'blocks.0.mlp.gate' };
  const crepe = getStrategy('crepe');
  const score = crepe.prepare!(ctx);
  weight.dispose();
  const structure = { kind: 'unstructured' as const, group: 'matrix' as const, sparsity: 0.5 };
  const configs = [
    { alpha: 3, beta: 0.2, gamma: 0.01, kh: 3, kw: 1, a: 0.5 },
    { alpha: 0.5, beta: 4, gamma: 0.05, kh: 1, kw: 5, a: 0.5 },
  ];
  // warm the per-kernel caches: a search revisits kernel shapes (at most 25 of them)
  for (const p of configs) score(p);
  let proxy = 0;
  let prune = 0;
  for (let r = 0; r < REPEATS; r++) {
    for (const p of configs) {
      proxy += cpuSeconds(() => {
        const acc = new ProxyAccumulator(['energy-row', 'energy']);
        const s = score(p);
        acc.add({ weight: weightData, scores: s, mask: selectMask(s, HIDDEN, DIM, structure), stats, rows: HIDDEN, cols: DIM });
        acc.values();
      });
      prune += cpuSeconds(() => {
        const s = score(p);
        applyMask(weightData, selectMask(s, HIDDEN, DIM, structure));
      });
    }
  }
  const evals = REPEATS * configs.length;
  // Forward: the runtime's layout, activations [tokens, in] times the pre-transposed weight [in, out].
  const wT = tf.tensor2d(weightData, [DIM, HIDDEN]);
  const x = tf.randomNormal([TOKENS, DIM]) as tf.Tensor2D;
  tf.matMul(x, wT).dispose(); // warm-up
  const forward = cpuSeconds(() => {
    for (let r = 0; r < REPEATS; r++) tf.matMul(x, wT).dataSync();
  });
  tf.dispose([wT, x]);
  const result = {
    description: `CPU seconds per weight on one [${HIDDEN}, ${DIM}] CRePE layer (LLaMA-2-7B gate shape), ${evals} configurations; forward = matMul of ${TOKENS} tokens, ${REPEATS} repeats`,
    command: 'npm run search-projection',
    model: 'LLaMA-2-7B',
    linearWeights: LINEAR_WEIGHTS,
    blocks: LAYERS,
    seqlen: SEQLEN,
    proxySecondsPerWeight: proxy / evals / n,
    pruneSecondsPerWeight: prune / evals / n,
    forwardSecondsPerWeightToken: forward / REPEATS / (TOKENS * n),
    backend: backendDescription(),
    load: `load average ${os.loadavg().map((v) => v.toFixed(1)).join(' / ')} on ${os.cpus().length} cores (CPU seconds are counted, not wall)`,
  };
  writeFileAtomic(out, `${JSON.stringify(result, null, 2)}\n`);
  process.stdout.write(`${JSON.stringify(result, null, 2)}\nwrote ${out}\n`);
  if (!fs.existsSync(out)) process.exitCode = 1;
}

main().catch((e) => {
  process.stderr.write(`crepe: ${(e as Error).message}\n`);
  process.exit(1);
});
