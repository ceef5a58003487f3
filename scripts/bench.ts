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
  seconds: number;
  tokens: number;
}

/**
 * crepe's evaluation throughput on `windows` TinyStories evaluation windows of `seqlen` tokens:
 * one warm-up window (XNNPACK packs each weight on first use), then `repeats` timed passes.
 */
export function crepeEvalThroughput(model: string, seqlen: number, windows: number, repeats: number): ThroughputResult & { nll: number } {
  const m = openModel(model);
  try {
    const all = datasetWindows(m, 'tinystories', { seqlen, maxWindows: windows + 1 }).windows;
    if (all.length < windows + 1) throw new Error(`only ${all.length} windows of ${seqlen} tokens available`);
    const runtime = LlamaModel.fromSource(m.source);
    try {
      runtime.windowLogProbs(all[0]);
      const timed = all.slice(1);
      const runs = Array.from({ length: repeats }, () => perplexity(runtime, timed));
      const samples = runs.map((r) => r.tokensPerSecond);
      return {
        tokensPerSecond: median(samples),
        samples,
        seconds: runs.reduce((a, r) => a + r.seconds, 0),
        tokens: runs[0].tokens,
        nll: runs[0].nll,
      };
    } finally {
      runtime.dispose();
    }
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
 * The numpy reference's throughput (`llama2c_numpy.py bench MODEL SEQLEN WINDOWS`: one warm-up,
 * then `windows` windows of random ids), run `repeats` times in fresh processes.
 */
export function numpyEvalThroughput(
  python: string,
  modelBin: string,
  seqlen: number,
  windows: number,
  repeats: number,
  threads?: number,
): ThroughputResult & { numpy: string } {
  const env = { ...process.env };
  if (threads !== undefined) {
    for (const k of ['OPENBLAS_NUM_THREADS', 'OMP_NUM_THREADS', 'MKL_NUM_THREADS']) env[k] = String(threads);
  }
  const runs = Array.from({ length: repeats }, () => {
    const script = path.join(projectRoot(), NUMPY_REFERENCE);
    const r = spawnSync(python, [script, 'bench', modelBin, String(seqlen), String(windows)], { encoding: 'utf8', env, timeout: 600_000 });
    if (r.status !== 0) throw new Error(`${python} ${NUMPY_REFERENCE} bench failed: ${(r.stderr || String(r.error)).trim().split('\n').pop()}`);
    return JSON.parse(r.stdout.trim().split('\n').pop() as string) as { tokens_per_second: number; seconds: number; numpy: string };
  });
  const samples = runs.map((r) => r.tokens_per_second);
  return {
    tokensPerSecond: median(samples),
    samples,
    seconds: runs.reduce((a, r) => a + r.seconds, 0),
    tokens: windows * (seqlen - 1),
    numpy: runs[0].numpy,
  };
}

// ---------------------------------------------------------------------------------------------
// section: eval

/** The requirement of the Foundation issue. */
export const EVAL_REQUIREMENT = { model: 'stories260K', seqlen: 512, minRatio: 1.5 } as const;

export const evalSection: BenchSection = {
  name: 'eval',
  description: 'teacher-forced evaluation throughput at the context length, crepe vs the numpy reference',
  async run(opts) {
    const rows: BenchTable['rows'] = [];
    const checks: BenchCheck[] = [];
    let numpyVersion: string | null = null;
    for (const model of Object.keys(BUILTIN_MODELS)) {
      const bin = assetPath(...BUILTIN_MODELS[model].weights);
      const m = openModel(model);
      const seqlen = m.source.config.maxSeqLen;
      m.source.close();
      opts.log(`eval: ${model} crepe, ${opts.repeats} x ${opts.windows} windows of ${seqlen}`);
      const crepe = crepeEvalThroughput(model, seqlen, opts.windows, opts.repeats);
      let numpy: (ThroughputResult & { numpy: string }) | null = null;
      if (opts.python) {
        opts.log(`eval: ${model} numpy, ${opts.repeats} x ${opts.windows} windows of ${seqlen}`);
        numpy = numpyEvalThroughput(opts.python, bin, seqlen, opts.windows, opts.repeats, opts.numpyThreads);
        numpyVersion = numpy.numpy;
      }
      const ratio = numpy ? crepe.tokensPerSecond / numpy.tokensPerSecond : null;
      rows.push({
        model,
        seqlen,
        windows: opts.windows,
        crepe_tokens_per_second: crepe.tokensPerSecond,
        numpy_tokens_per_second: numpy?.tokensPerSecond ?? null,
        ratio,
        crepe_nll: crepe.nll,
      });
      if (model === EVAL_REQUIREMENT.model && seqlen === EVAL_REQUIREMENT.seqlen) {
        checks.push({
          name: `${model} eval at seqlen ${seqlen}: crepe >= ${EVAL_REQUIREMENT.minRatio}x numpy`,
          pass: ratio === null ? null : ratio >= EVAL_REQUIREMENT.minRatio,
          detail: ratio === null ? 'numpy not available: not measured' : `${ratio.toFixed(2)}x`,
        });
      }
    }
    const threads = opts.numpyThreads === undefined ? 'numpy BLAS threads as installed' : `numpy BLAS threads ${opts.numpyThreads}`;
    return {
      tables: [
        {
          title: `[eval] predicted tokens/s, median of ${opts.repeats} passes over ${opts.windows} windows at the model's context (crepe: TinyStories eval windows after one warm-up window; numpy: random ids, ${threads})`,
          columns: [
            { key: 'model', header: 'model' },
            { key: 'seqlen', header: 'seqlen' },
            { key: 'windows', header: 'windows' },
            { key: 'crepe_tokens_per_second', header: 'crepe tok/s' },
            { key: 'numpy_tokens_per_second', header: 'numpy tok/s' },
            { key: 'ratio', header: 'crepe/numpy', digits: 2 },
          ],
          rows,
          notes: opts.python
            ? [`numpy ${numpyVersion} via ${opts.python} ${NUMPY_REFERENCE} bench`]
            : ['numpy reference skipped (no python3 with numpy, or --no-numpy)'],
        },
      ],
      checks,
    };
  },
};

registerSection(evalSection);

// ---------------------------------------------------------------------------------------------
// main

export interface BenchReport {
  date: string;
  node: string;
  backend: string;
  cpus: number;
  cpu_model: string;
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
    options: { windows: opts.windows, repeats: opts.repeats, python, numpy_threads: opts.numpyThreads ?? null },
    sections: {},
    checks: [],
  };
  for (const s of SECTIONS.filter((x) => only.includes(x.name))) {
    const r = await s.run(opts);
    report.sections[s.name] = r;
    report.checks.push(...r.checks);
  }

  if (args.json) {
    process.stdout.write(`${JSON.stringify(report)}\n`);
  } else {
    const out = [`crepe bench, ${report.date}: node ${report.node}, backend ${report.backend}, ${report.cpus} x ${report.cpu_model}`, ''];
    for (const r of Object.values(report.sections)) for (const t of r.tables) out.push(renderTable(t), '');
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
