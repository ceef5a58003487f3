/**
 * Pruning benchmarks (not tests): score + select time per strategy and structure on
 * LLaMA-7B-sized random layers, and whole-model pruning time per method on the asset models.
 * Run: npm run build && node dist/scripts/bench-prune.js [--layers-only|--models-only] [--json]
 */
import * as tf from '@tensorflow/tfjs';
import { backendDescription, initBackend } from '../lib/backend';
import { openModel } from '../lib/model/resolve';
import { pruneModel } from '../lib/prune/pipeline';
import { Structure, selectMask } from '../lib/prune/select';
import { emptyStats } from '../lib/prune/stats';
import { getStrategy, listStrategies, resolveParams } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { Rng } from '../lib/util/random';

const LAYER_SHAPES: [number, number][] = [
  [4096, 4096],
  [11008, 4096],
];
const STRUCTURES: [string, Structure][] = [
  ['row 50%', { kind: 'unstructured', group: 'row', sparsity: 0.5 }],
  ['matrix 50%', { kind: 'unstructured', group: 'matrix', sparsity: 0.5 }],
  ['2:4', { kind: 'nm', n: 2, m: 4 }],
];

function median(xs: number[]): number {
  return [...xs].sort((a, b) => a - b)[xs.length >> 1];
}

function seconds(t0: bigint): number {
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

export interface LayerBench {
  shape: string;
  method: string;
  structure: string;
  score_ms: number;
  select_ms: number;
  total_ms: number;
}

/** Score + select one random layer (upload of the weight counted in the score time). */
export function benchLayers(methods = listStrategies(), repeats = 3): LayerBench[] {
  const out: LayerBench[] = [];
  for (const [rows, cols] of LAYER_SHAPES) {
    const rng = new Rng(rows + cols);
    const w = new Float32Array(rows * cols);
    for (let k = 0; k < w.length; k++) w[k] = (rng.next() - 0.5) * 0.1;
    const stats = emptyStats(cols);
    for (let j = 0; j < cols; j++) stats.sumSq[j] = 1 + 100 * rng.next();
    stats.samples = 128;
    for (const method of methods) {
      const s = getStrategy(method);
      const params = resolveParams(s);
      let scores: Float32Array = new Float32Array(0);
      const scoreMs: number[] = [];
      for (let r = 0; r <= repeats; r++) {
        const t0 = process.hrtime.bigint();
        const weight = tf.tensor2d(w, [rows, cols]);
        const t = s.score({ weight, weightData: w, shape: [rows, cols], stats, name: 'gate', block: 0, kind: 'mlp', key: 'bench' }, params);
        scores = t.dataSync() as Float32Array;
        tf.dispose([t, weight]);
        if (r > 0) scoreMs.push(seconds(t0) * 1e3);
      }
      for (const [name, st] of STRUCTURES) {
        const selMs: number[] = [];
        for (let r = 0; r <= repeats; r++) {
          const t0 = process.hrtime.bigint();
          selectMask(scores, rows, cols, st);
          if (r > 0) selMs.push(seconds(t0) * 1e3);
        }
        const sc = median(scoreMs);
        const se = median(selMs);
        out.push({ shape: `${rows}x${cols}`, method, structure: name, score_ms: sc, select_ms: se, total_ms: sc + se });
      }
    }
  }
  return out;
}

export interface ModelBench {
  model: string;
  method: string;
  structure: string;
  nsamples: number;
  prune_seconds: number;
}

/** Whole-model pruning time (calibration forwards + scoring + selection), no evaluation. */
export function benchModels(models = ['stories260K', 'babyllama-char'], methods = listStrategies()): ModelBench[] {
  const out: ModelBench[] = [];
  for (const name of models) {
    for (const method of methods) {
      const model = openModel(name);
      const s = getStrategy(method);
      const structure: Structure = { kind: 'unstructured', group: s.defaultGroup, sparsity: 0.5 };
      const cal = { dataset: 'tinystories', nsamples: 128, seqlen: model.source.config.maxSeqLen, seed: 0 };
      const r = pruneModel(model, { method, params: resolveParams(s), structure, calibration: cal, propagate: 'pruned' });
      out.push({ model: name, method, structure: `unstructured 50% per ${s.defaultGroup}`, nsamples: 128, prune_seconds: r.seconds });
      model.source.close();
    }
  }
  return out;
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  await initBackend('wasm');
  const json = args.includes('--json');
  const result: Record<string, unknown> = { backend: backendDescription(), node: process.version };
  if (!args.includes('--models-only')) {
    const layers = benchLayers();
    result.layers = layers;
    if (!json) {
      console.log(`score + select on one core (${backendDescription()}), median of 3 after a warm-up`);
      console.log('shape        method     structure    score ms  select ms  total ms');
      for (const l of layers) {
        console.log(
          `${l.shape.padEnd(12)} ${l.method.padEnd(10)} ${l.structure.padEnd(12)} ${l.score_ms.toFixed(0).padStart(8)} ${l.select_ms.toFixed(0).padStart(10)} ${l.total_ms.toFixed(0).padStart(9)}`,
        );
      }
    }
  }
  if (!args.includes('--layers-only')) {
    const models = benchModels();
    result.models = models;
    if (!json) {
      console.log('\nwhole-model pruning (128 calibration windows at the model context, seed 0), seconds');
      for (const m of models) console.log(`${m.model.padEnd(16)} ${m.method.padEnd(10)} ${m.structure.padEnd(28)} ${m.prune_seconds.toFixed(2)}`);
    }
  }
  if (json) console.log(JSON.stringify(result));
}

if (require.main === module) void main();
