/**
 * `crepe prune --dump` artefacts are checked against an independent float64 re-computation of
 * each method's score from the dumped statistics and the original weights: the dumped mask
 * must prune exactly the right count, and never keep a weight whose independent score is
 * clearly below that of a pruned one in the same comparison group.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { assetPath } from '../lib/assets';
import { Llama2cSource } from '../lib/model/llama2c';
import { SafetensorsFile } from '../lib/model/safetensors';
import { LinearName, linearKey, linearShape } from '../lib/model/types';
import { canonicalRowOrder } from '../lib/prune/strategy';

const CLI = path.resolve(__dirname, '..', 'dist', 'scripts', 'cli.js');
/** The seven linears, listed here independently of the block description, and the linear whose dump holds each one's input statistics. */
const LINEARS = ['q', 'k', 'v', 'o', 'gate', 'up', 'down'] as const;
const STATS_OWNER: Record<LinearName, LinearName> = { q: 'q', k: 'q', v: 'q', o: 'o', gate: 'gate', up: 'gate', down: 'down' };

/**
 * `order`: canonical (HF) row order of q/k in a llama2.c file (canonical row p is file row
 * order[p]); CRePE's windows are taken over canonical neighbours, so masks do not depend on the
 * file layout.
 */
type Scorer = (w: Float64Array, rows: number, cols: number, norm2: Float64Array, order?: Int32Array) => Float64Array;

const abs = (w: Float64Array) => w.map(Math.abs);
const sums = (a: Float64Array, rows: number, cols: number) => {
  const rs = new Float64Array(rows);
  const cs = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) {
    rs[r] += a[r * cols + c];
    cs[c] += a[r * cols + c];
  }
  return { rs, cs };
};

const scorers: Record<string, Scorer> = {
  magnitude: (w) => abs(w),
  wanda: (w, rows, cols, norm2) => abs(w).map((v, k) => v * Math.sqrt(norm2[k % cols])),
  ria: (w, rows, cols, norm2) => {
    const a = abs(w);
    const { rs, cs } = sums(a, rows, cols);
    return a.map((v, k) => (v / rs[Math.floor(k / cols)] + v / cs[k % cols]) * Math.pow(norm2[k % cols], 0.25));
  },
  // crepe defaults: alpha 1, beta 1, gamma 0.03, 3x3, a 0.5
  crepe: (w, rows, cols, norm2, order) => {
    const a = abs(w);
    const { rs, cs } = sums(a, rows, cols);
    const fileRow = (p: number) => (order ? order[p] : p);
    const position = new Int32Array(rows);
    for (let p = 0; p < rows; p++) position[fileRow(p)] = p;
    return a.map((v, k) => {
      const i = Math.floor(k / cols);
      const j = k % cols;
      const p = position[i];
      let box = 0;
      for (let q = Math.max(0, p - 1); q <= Math.min(rows - 1, p + 1); q++)
        for (let c = Math.max(0, j - 1); c <= Math.min(cols - 1, j + 1); c++) box += a[fileRow(q) * cols + c];
      return (v / rs[i] + v / cs[j] + (0.03 * v) / box) * Math.pow(norm2[j], 0.25);
    });
  },
};

/** Check that `mask` is a correct lowest-score selection of `scores` within groups of `groupSize`. */
function checkSelection(scores: Float64Array, mask: Float32Array, groupSize: number, pruneCount: number): void {
  for (let g = 0; g < scores.length; g += groupSize) {
    let pruned = 0;
    let maxPruned = -Infinity;
    let minKept = Infinity;
    for (let k = g; k < g + groupSize; k++) {
      if (mask[k] === 0) {
        pruned++;
        maxPruned = Math.max(maxPruned, scores[k]);
      } else minKept = Math.min(minKept, scores[k]);
    }
    expect(pruned).toBe(pruneCount);
    // float32 (tfjs) against float64 (here): allow a relative 1e-5 at the threshold
    expect(maxPruned).toBeLessThanOrEqual(minKept * (1 + 1e-5) + 1e-30);
  }
}

describe.each(['magnitude', 'wanda', 'ria', 'crepe'])('--dump of %s', (method) => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `crepe-dump-${method}-`));
  const dump = path.join(dir, 'dump');
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  test('masks match an independent re-computation from the dumped statistics', () => {
    const r = spawnSync(
      'node',
      [CLI, 'prune', '--model', 'stories260K', '--method', method, '--sparsity', '0.5', '--nsamples', '8', '--calib-seqlen', '128', '--dump', dump, '--json'],
      { encoding: 'utf8' },
    );
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const run = JSON.parse(fs.readFileSync(path.join(dump, 'run.json'), 'utf8'));
    expect(run.recipe.method).toBe(method);
    const calib = JSON.parse(fs.readFileSync(path.join(dump, 'calibration.json'), 'utf8'));
    if (method !== 'magnitude') expect(calib.windows).toHaveLength(8);
    const src = Llama2cSource.open(assetPath('models', 'stories260K', 'stories260K.bin'));
    const cfg = src.config;
    const group = method === 'wanda' ? 'row' : 'matrix';
    for (let b = 0; b < cfg.nLayers; b++) {
      const file = SafetensorsFile.open(path.join(dump, `blocks.${b}.safetensors`));
      const samples = Number((file.metadata() as Record<string, string>).samples);
      const dense = src.readBlock(b);
      for (const name of LINEARS) {
        const [rows, cols] = linearShape(cfg, name);
        const mask = file.readFloat32(`${linearKey(b, name)}.mask`);
        const norm2 = new Float64Array(cols);
        if (method !== 'magnitude') {
          const sumsq = file.readFloat32(`${linearKey(b, STATS_OWNER[name])}.input.sumsq`);
          for (let j = 0; j < cols; j++) norm2[j] = sumsq[j] / samples;
        }
        const scores = scorers[method](Float64Array.from(dense.linears[name]), rows, cols, norm2, canonicalRowOrder(cfg, name));
        if (group === 'row') checkSelection(scores, mask, cols, Math.floor(cols * 0.5));
        else checkSelection(scores, mask, rows * cols, Math.floor(rows * cols * 0.5));
      }
      file.close();
    }
    src.close();
  });
});
