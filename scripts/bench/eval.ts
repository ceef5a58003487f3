/**
 * Section "eval": teacher-forced evaluation throughput (predicted tokens per second) of the
 * built-in models at their context length, on TinyStories evaluation windows, against the
 * independent numpy implementation (scripts/reference/llama2c_numpy.py bench) run on the same
 * machine in the same sitting when python3 with numpy is available. The Foundation issue
 * requires crepe >= 1.5x numpy on stories260K at seqlen 512.
 */
import { assetPath } from '../../lib/assets';
import { datasetWindows } from '../../lib/eval/evaluate';
import { perplexity } from '../../lib/eval/perplexity';
import { EvalPool } from '../../lib/eval/pool';
import { BUILTIN_MODELS, openModel } from '../../lib/model/resolve';
import { LlamaModel } from '../../lib/model/runtime';
import { secondsSince } from '../../lib/util/time';
import { BenchCheck, BenchOptions, BenchSection, BenchTable, summarize } from './framework';
import { NUMPY_REFERENCE, numpyEvalPass } from './numpy';

/** A model ready to be timed pass after pass; dispose when done. */
export interface CrepeEvalRunner {
  seqlen: number;
  /** One timed pass over the windows: predicted tokens/s and the mean NLL. */
  pass(): { tokensPerSecond: number; nll: number };
  dispose(): void;
}

/**
 * crepe's evaluation on `windows` TinyStories evaluation windows of `seqlen` tokens (default:
 * the model's context), after one warm-up window (XNNPACK packs each weight on first use).
 */
export function crepeEvalRunner(model: string, windows: number, seqlen?: number): CrepeEvalRunner {
  const m = openModel(model);
  try {
    const len = seqlen ?? m.source.config.maxSeqLen;
    const all = datasetWindows(m, 'tinystories', { seqlen: len, maxWindows: windows + 1 }).windows;
    if (all.length < windows + 1) throw new Error(`only ${all.length} windows of ${len} tokens available`);
    const runtime = LlamaModel.fromSource(m.source);
    runtime.windowLogProbs(all[0]);
    const timed = all.slice(1);
    return {
      seqlen: len,
      pass: () => {
        const r = perplexity(runtime, timed);
        return { tokensPerSecond: r.tokensPerSecond, nll: r.nll };
      },
      dispose: () => runtime.dispose(),
    };
  } finally {
    m.source.close();
  }
}

/**
 * Steady-state tokens/s of `jobs` worker processes: the pool is started and every worker
 * warmed up on one window first, as the single-process and numpy measurements load the model
 * and warm up before timing.
 */
export async function crepeParallelPass(model: string, windows: number, seqlen: number, jobs: number): Promise<number> {
  const m = openModel(model);
  const pool = await EvalPool.start(m.source.origin, m.tokenizerPath, jobs, 'wasm');
  try {
    const all = datasetWindows(m, 'tinystories', { seqlen, maxWindows: windows + jobs }).windows;
    await pool.run(all.slice(0, jobs));
    const timed = all.slice(jobs);
    const t0 = process.hrtime.bigint();
    await pool.run(timed);
    return (timed.length * (seqlen - 1)) / secondsSince(t0);
  } finally {
    pool.close();
    m.source.close();
  }
}


/** The requirement of the Foundation issue. */
export const EVAL_REQUIREMENT = { model: 'stories260K', seqlen: 512, minRatio: 1.5 } as const;

/** numpy configurations compared with crepe: BLAS threads as installed, and one thread like crepe's wasm. */
function numpyConfigs(opts: BenchOptions): { key: string; header: string; threads?: number }[] {
  if (!opts.python) return [];
  if (opts.numpyThreads !== undefined) return [{ key: 'numpy', header: `numpy ${opts.numpyThreads}T tok/s`, threads: opts.numpyThreads }];
  return [
    { key: 'numpy', header: 'numpy tok/s' },
    { key: 'numpy_1t', header: 'numpy 1T tok/s', threads: 1 },
  ];
}

export const evalSection: BenchSection = {
  name: 'eval',
  description: 'teacher-forced evaluation throughput at the context length, crepe vs the numpy reference',
  async run(opts) {
    const rows: BenchTable['rows'] = [];
    const checks: BenchCheck[] = [];
    const configs = numpyConfigs(opts);
    let numpyVersion: string | null = null;
    for (const model of Object.keys(BUILTIN_MODELS)) {
      const bin = assetPath(...BUILTIN_MODELS[model].weights);
      const m = openModel(model);
      const seqlen = m.source.config.maxSeqLen;
      m.source.close();
      // crepe and numpy passes alternate, so that all see the same machine load.
      opts.log(`eval: ${model}, ${opts.repeats} x ${opts.windows} windows of ${seqlen}, crepe${configs.length ? ' and numpy alternately' : ''}`);
      const runner = crepeEvalRunner(model, opts.windows, seqlen);
      const crepeSamples: number[] = [];
      const numpySamples: number[][] = configs.map(() => []);
      let nll = NaN;
      try {
        for (let r = 0; r < opts.repeats; r++) {
          const p = runner.pass();
          crepeSamples.push(p.tokensPerSecond);
          nll = p.nll;
          configs.forEach((c, i) => {
            const q = numpyEvalPass(opts.python as string, bin, seqlen, opts.windows, c.threads);
            numpySamples[i].push(q.tokensPerSecond);
            numpyVersion = q.numpy;
          });
        }
      } finally {
        runner.dispose();
      }
      // Both cores: `crepe eval --jobs 2`, end to end (worker start and model load included).
      const parallelSamples: number[] = [];
      for (let r = 0; r < opts.repeats; r++) parallelSamples.push(await crepeParallelPass(model, 2 * opts.windows, seqlen, 2));
      const parallel = summarize(parallelSamples);
      const crepe = summarize(crepeSamples);
      const numpy = numpySamples.map(summarize);
      // The comparison is with the faster numpy configuration.
      const best = numpy.length ? Math.max(...numpy.map((n) => n.tokensPerSecond)) : null;
      const ratio = best === null ? null : Math.max(crepe.tokensPerSecond, parallel.tokensPerSecond) / best;
      const row: BenchTable['rows'][number] = {
        model,
        seqlen,
        windows: opts.windows,
        crepe_tokens_per_second: crepe.tokensPerSecond,
        crepe_jobs2_tokens_per_second: parallel.tokensPerSecond,
        ratio,
        crepe_nll: nll,
        crepe_samples: crepe.samples.map((x) => Math.round(x)).join(' '),
      };
      configs.forEach((c, i) => {
        row[`${c.key}_tokens_per_second`] = numpy[i].tokensPerSecond;
        row[`${c.key}_samples`] = numpy[i].samples.map((x) => Math.round(x)).join(' ');
      });
      rows.push(row);
      if (model === EVAL_REQUIREMENT.model && seqlen === EVAL_REQUIREMENT.seqlen) {
        checks.push({
          name: `${model} eval at seqlen ${seqlen}: crepe >= ${EVAL_REQUIREMENT.minRatio}x numpy (the faster configuration)`,
          pass: ratio === null ? null : ratio >= EVAL_REQUIREMENT.minRatio,
          detail: ratio === null ? 'numpy not available: not measured' : `${ratio.toFixed(2)}x`,
        });
      }
    }
    return {
      tables: [
        {
          title: `[eval] predicted tokens/s, median of ${opts.repeats} passes over ${opts.windows} windows at the model's context`,
          columns: [
            { key: 'model', header: 'model' },
            { key: 'seqlen', header: 'seqlen' },
            { key: 'windows', header: 'windows' },
            { key: 'crepe_tokens_per_second', header: 'crepe tok/s' },
            { key: 'crepe_jobs2_tokens_per_second', header: 'crepe --jobs 2 tok/s' },
            ...configs.map((c) => ({ key: `${c.key}_tokens_per_second`, header: c.header })),
            { key: 'ratio', header: 'crepe/numpy', digits: 2 },
          ],
          rows,
          notes: [
            'crepe: TinyStories evaluation windows, one warm-up window first, one thread (tfjs runs wasm single-threaded in Node)',
            `crepe --jobs 2: ${2 * opts.windows} windows over two worker processes (EvalPool), after loading and one warm-up window per worker`,
            ...(configs.length
              ? [
                  `numpy ${numpyVersion}: ${opts.python} ${NUMPY_REFERENCE} bench (random ids, one warm-up window)` +
                    (configs.length > 1 ? '; numpy = BLAS threads as installed, 1T = OPENBLAS/OMP/MKL_NUM_THREADS=1' : ''),
                  'crepe/numpy: the faster crepe column against the faster numpy column (both may use both cores)',
                ]
              : ['numpy reference skipped (no python3 with numpy, or --no-numpy)']),
          ],
        },
      ],
      checks,
    };
  },
};
