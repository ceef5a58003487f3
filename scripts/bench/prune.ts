/**
 * Section "prune": score + select time per strategy and structure on LLaMA-7B-sized random
 * layers (one core), and whole-model pruning time per method on the asset models. The
 * pruning-core issue requires CRePE 3x3 at 50% per row on 4096 x 4096 under 600 ms.
 */
import * as tf from '@tensorflow/tfjs';
import { openModel } from '../../lib/model/resolve';
import { pruneModel } from '../../lib/prune/pipeline';
import { Structure, selectMask } from '../../lib/prune/select';
import { emptyStats } from '../../lib/prune/stats';
import { getStrategy, listStrategies, resolveParams } from '../../lib/prune/strategy';
import '../../lib/prune/strategies';
import { Rng } from '../../lib/util/random';
import { secondsSince } from '../../lib/util/time';
import { BENCH_STRUCTURES, BenchSection, LLAMA7B_SHAPES, median } from './framework';

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
  for (const [rows, cols] of LLAMA7B_SHAPES) {
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
        if (r > 0) scoreMs.push(secondsSince(t0) * 1e3);
      }
      for (const [name, st] of BENCH_STRUCTURES) {
        const selMs: number[] = [];
        for (let r = 0; r <= repeats; r++) {
          const t0 = process.hrtime.bigint();
          selectMask(scores, rows, cols, st);
          if (r > 0) selMs.push(secondsSince(t0) * 1e3);
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


/** The requirement of the pruning-core issue. */
export const PRUNE_REQUIREMENT = { method: 'crepe', shape: '4096x4096', structure: 'row 50%', maxMs: 600 } as const;

export const pruneSection: BenchSection = {
  name: 'prune',
  description: 'score + select time per strategy on 7B-sized layers, and whole-model pruning time per method',
  async run(opts) {
    opts.log('prune: score + select on 4096x4096 and 11008x4096 random layers');
    const layers = benchLayers(undefined, opts.repeats);
    opts.log('prune: whole asset models, 128 calibration windows');
    const models = benchModels();
    const req = layers.find((l) => l.method === PRUNE_REQUIREMENT.method && l.shape === PRUNE_REQUIREMENT.shape && l.structure === PRUNE_REQUIREMENT.structure);
    return {
      tables: [
        {
          title: `[prune] score + select on one core, median of ${opts.repeats} after a warm-up (ms)`,
          columns: [
            { key: 'shape', header: 'shape' },
            { key: 'method', header: 'method' },
            { key: 'structure', header: 'structure' },
            { key: 'score_ms', header: 'score ms' },
            { key: 'select_ms', header: 'select ms' },
            { key: 'total_ms', header: 'total ms' },
          ],
          rows: layers.map((l) => ({ ...l })),
          notes: ['score includes uploading the weight and downloading the scores; default parameters (crepe 3x3)'],
        },
        {
          title: '[prune] whole-model pruning time (calibration forwards + scoring + selection, no evaluation), seconds',
          columns: [
            { key: 'model', header: 'model' },
            { key: 'method', header: 'method' },
            { key: 'structure', header: 'structure' },
            { key: 'prune_seconds', header: 'seconds', digits: 2 },
          ],
          rows: models.map((m) => ({ ...m })),
          notes: ['128 TinyStories calibration windows at the model context, seed 0, propagate pruned'],
        },
      ],
      checks: [
        {
          name: `${PRUNE_REQUIREMENT.method} 3x3 at 50% per row on ${PRUNE_REQUIREMENT.shape} under ${PRUNE_REQUIREMENT.maxMs} ms`,
          pass: req ? req.total_ms < PRUNE_REQUIREMENT.maxMs : null,
          detail: req ? `${req.total_ms.toFixed(0)} ms` : 'not measured',
        },
      ],
    };
  },
};
