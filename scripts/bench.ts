#!/usr/bin/env node
/**
 * crepe's benchmarks. Not a test: numbers depend on the machine, so every run prints the
 * machine, node, backend and the settings beside them.
 *
 *   npm run bench                               build, then every section
 *   npm run bench -- --only eval --windows 32   one section, more windows
 *   npm run bench -- --json                     one JSON object on stdout (progress on stderr)
 *   npm run bench -- --check                    exit 1 when a requirement check fails
 *
 * Sections are named and registered in SECTIONS; add one (e.g. pruning speed) by writing a
 * BenchSection and calling registerSection, and it becomes selectable with --only.
 *
 * Section "eval": teacher-forced evaluation throughput (predicted tokens per second) of the
 * built-in models at their context length, on TinyStories evaluation windows, against the
 * independent numpy implementation (scripts/reference/llama2c_numpy.py bench) run on the same
 * machine in the same sitting when python3 with numpy is available. The Foundation issue
 * requires crepe >= 1.5x numpy on stories260K at seqlen 512.
 */
import { spawnSync } from 'child_process';
import * as os from 'os';
import * as path from 'path';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { assetPath, projectRoot } from '../lib/assets';
import { BACKEND_CHOICES, BackendChoice, backendDescription, initBackend } from '../lib/backend';
import { datasetWindows } from '../lib/eval/evaluate';
import { perplexity } from '../lib/eval/perplexity';
import { EvalPool } from '../lib/eval/pool';
import { benchLayers, benchModels } from './bench-prune';
import { BUILTIN_MODELS, openModel } from '../lib/model/resolve';
import { LlamaModel } from '../lib/model/runtime';

// ---------------------------------------------------------------------------------------------
// the framework: sections, tables, checks

export interface BenchOptions {
  /** Timed windows per measurement. */
  windows: number;
  /** Measurements per cell; the median is reported. */
  repeats: number;
  /** python3 with numpy, or null to skip the numpy reference. */
  python: string | null;
  /** OPENBLAS/OMP/MKL thread count for numpy; undefined leaves numpy as installed. */
  numpyThreads?: number;
  /** Progress messages (stderr). */
  log: (msg: string) => void;
}

export interface BenchColumn {
  key: string;
  header: string;
  /** Decimal places for numbers (default 0, with thousands separators). */
  digits?: number;
}

export interface BenchTable {
  title: string;
  columns: BenchColumn[];
  rows: Record<string, string | number | null>[];
  notes?: string[];
}

export interface BenchCheck {
  name: string;
  /** null: could not be decided (e.g. no numpy). */
  pass: boolean | null;
  detail: string;
}

export interface SectionResult {
  tables: BenchTable[];
  checks: BenchCheck[];
}

export interface BenchSection {
  name: string;
  description: string;
  run(opts: BenchOptions): Promise<SectionResult>;
}

export const SECTIONS: BenchSection[] = [];

export function registerSection(section: BenchSection): void {
  if (SECTIONS.some((s) => s.name === section.name)) throw new Error(`bench section ${section.name} registered twice`);
  SECTIONS.push(section);
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

function formatCell(v: string | number | null, digits = 0): string {
  if (v === null) return '-';
  if (typeof v === 'string') return v;
  return v.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

/** A plain-text table: first column left-aligned, the others right-aligned. */
export function renderTable(t: BenchTable): string {
  const cells = t.rows.map((r) => t.columns.map((c) => formatCell(r[c.key] ?? null, c.digits)));
  const widths = t.columns.map((c, i) => Math.max(c.header.length, ...cells.map((r) => r[i].length)));
  const line = (vals: string[]) => vals.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('  ');
  const out = [t.title, line(t.columns.map((c) => c.header)), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.map(line)];
  for (const n of t.notes ?? []) out.push(`  ${n}`);
  return out.join('\n');
}

// ---------------------------------------------------------------------------------------------
// measurements, exported for other sections

export interface ThroughputResult {
  tokensPerSecond: number;
  /** Every measurement, tokens/s. */
  samples: number[];
}

export function summarize(samples: number[]): ThroughputResult {
  return { tokensPerSecond: median(samples), samples };
}

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

/** `python` if it runs and imports numpy, else null. */
export function findNumpyPython(candidates: string[] = ['python3', 'python']): string | null {
  for (const py of candidates) {
    const r = spawnSync(py, ['-c', 'import numpy'], { stdio: 'ignore', timeout: 30_000 });
    if (r.status === 0) return py;
  }
  return null;
}

export const NUMPY_REFERENCE = path.join('scripts', 'reference', 'llama2c_numpy.py');

/**
 * One run of the numpy reference (`llama2c_numpy.py bench MODEL SEQLEN WINDOWS`: a warm-up
 * window, then `windows` windows of random ids) in a fresh process.
 */
export function numpyEvalPass(
  python: string,
  modelBin: string,
  seqlen: number,
  windows: number,
  threads?: number,
): { tokensPerSecond: number; numpy: string } {
  const env = { ...process.env };
  if (threads !== undefined) {
    for (const k of ['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS']) env[k] = String(threads);
  }
  const script = path.join(projectRoot(), NUMPY_REFERENCE);
  const r = spawnSync(python, [script, 'bench', modelBin, String(seqlen), String(windows)], { encoding: 'utf8', env, timeout: 600_000 });
  if (r.status !== 0) throw new Error(`${python} ${NUMPY_REFERENCE} bench failed: ${(r.stderr || String(r.error)).trim().split('\n').pop()}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop() as string) as { tokens_per_second: number; numpy: string };
  return { tokensPerSecond: out.tokens_per_second, numpy: out.numpy };
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
    return (timed.length * (seqlen - 1)) / (Number(process.hrtime.bigint() - t0) / 1e9);
  } finally {
    pool.close();
    m.source.close();
  }
}

// ---------------------------------------------------------------------------------------------
// section: eval

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

registerSection(evalSection);

// ---------------------------------------------------------------------------------------------
// section: prune

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

registerSection(pruneSection);

// ---------------------------------------------------------------------------------------------
// main

export interface BenchReport {
  date: string;
  node: string;
  backend: string;
  cpus: number;
  cpu_model: string;
  /** 1-minute load average at the start and the end: other work on the machine skews timings. */
  loadavg: [number, number];
  options: { windows: number; repeats: number; python: string | null; numpy_threads: number | null };
  sections: Record<string, SectionResult>;
  checks: BenchCheck[];
}

export async function runBench(argv: string[]): Promise<number> {
  const args = await yargs(argv)
    .scriptName('bench')
    .usage('$0 [options]\n\ncrepe benchmarks (run with `npm run bench -- [options]`).')
    .option('only', { type: 'string', array: true, describe: `sections to run (default all): ${SECTIONS.map((s) => s.name).join(', ')}` })
    .option('list', { type: 'boolean', default: false, describe: 'list the sections and exit' })
    .option('windows', { type: 'number', default: 16, describe: 'timed windows per measurement' })
    .option('repeats', { type: 'number', default: 3, describe: 'measurements per cell (median reported)' })
    .option('numpy', { type: 'boolean', default: true, describe: 'compare with the numpy reference when python3 + numpy exist (--no-numpy to skip)' })
    .option('python', { type: 'string', describe: 'python interpreter for the numpy reference (default: python3, then python)' })
    .option('numpy-threads', { type: 'number', describe: 'BLAS threads for numpy (default: as installed)' })
    .option('backend', { choices: BACKEND_CHOICES, default: 'auto' as BackendChoice, describe: 'tfjs backend' })
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' })
    .option('check', { type: 'boolean', default: false, describe: 'exit 1 when a requirement check fails' })
    .example('npm run bench -- --only eval --windows 32', 'the eval section with more windows')
    .strict()
    .help()
    .parseAsync();

  if (args.list) {
    for (const s of SECTIONS) process.stdout.write(`${s.name.padEnd(12)} ${s.description}\n`);
    return 0;
  }
  const only = args.only ?? SECTIONS.map((s) => s.name);
  const unknown = only.filter((n) => !SECTIONS.some((s) => s.name === n));
  if (unknown.length) {
    process.stderr.write(`bench: unknown section ${unknown.join(', ')} (have ${SECTIONS.map((s) => s.name).join(', ')})\n`);
    return 2;
  }
  for (const [k, v] of [['windows', args.windows], ['repeats', args.repeats]] as const) {
    if (!(Number.isInteger(v) && v > 0)) {
      process.stderr.write(`bench: --${k} must be a positive integer, got ${v}\n`);
      return 2;
    }
  }
  await initBackend(args.backend);
  const python = args.numpy ? findNumpyPython(args.python ? [args.python] : undefined) : null;
  const opts: BenchOptions = {
    windows: args.windows,
    repeats: args.repeats,
    python,
    numpyThreads: args['numpy-threads'],
    log: (msg) => process.stderr.write(`${msg}\n`),
  };
  const report: BenchReport = {
    date: new Date().toISOString(),
    node: process.version,
    backend: backendDescription(),
    cpus: os.cpus().length,
    cpu_model: os.cpus()[0]?.model ?? 'unknown',
    loadavg: [os.loadavg()[0], NaN],
    options: { windows: opts.windows, repeats: opts.repeats, python, numpy_threads: opts.numpyThreads ?? null },
    sections: {},
    checks: [],
  };
  for (const s of SECTIONS.filter((x) => only.includes(x.name))) {
    const r = await s.run(opts);
    report.sections[s.name] = r;
    report.checks.push(...r.checks);
  }
  report.loadavg[1] = os.loadavg()[0];

  if (args.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    const out = [`crepe bench, ${report.date}: node ${report.node}, backend ${report.backend}, ${report.cpus} x ${report.cpu_model}`, ''];
    for (const r of Object.values(report.sections)) for (const t of r.tables) out.push(renderTable(t), '');
    const [l0, l1] = report.loadavg;
    out.push(`load average ${l0.toFixed(2)} at the start, ${l1.toFixed(2)} at the end (${report.cpus} CPUs)`);
    if (Math.max(l0, l1) > report.cpus / 2) out.push('  warning: the machine was busy; timings (numpy with threaded BLAS most of all) may be skewed');
    for (const c of report.checks) out.push(`check ${c.pass === null ? 'SKIP' : c.pass ? 'PASS' : 'FAIL'}: ${c.name} (${c.detail})`);
    process.stdout.write(`${out.join('\n').trimEnd()}\n`);
  }
  return args.check && report.checks.some((c) => c.pass === false) ? 1 : 0;
}

if (require.main === module) {
  runBench(hideBin(process.argv)).then(
    (code) => process.exit(code),
    (e: Error) => {
      process.stderr.write(`bench: ${e.message}\n`);
      process.exit(1);
    },
  );
}
