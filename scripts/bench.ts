#!/usr/bin/env node
/**
 * crepe's benchmarks. Not a test: numbers depend on the machine, so every run prints the
 * machine, node, backend and the settings beside them.
 *
 *   npm run bench                               build, then every default section
 *   npm run bench -- --only eval --windows 32   one section, more windows
 *   npm run bench -- --list                     the registered sections
 *   npm run bench -- --json                     one JSON object on stdout (progress on stderr)
 *   npm run bench -- --check                    exit 1 when a requirement check fails
 *
 * This file is the command: options, running the selected sections, printing the report.
 * Sections live in scripts/bench/ (one file each, registered in scripts/bench/sections.ts);
 * the framework (section type, registry, tables) is scripts/bench/framework.ts and the numpy
 * reference runner scripts/bench/numpy.ts.
 */
import * as os from 'os';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { BACKEND_CHOICES, BackendChoice, backendDescription, initBackend } from '../lib/backend';
import { BenchCheck, BenchOptions, SECTIONS, SectionResult, renderTable } from './bench/framework';
import { findNumpyPython } from './bench/numpy';
import './bench/sections';


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

/** The plain-text report: header line, every section's tables, machine load, checks. */
export function renderReport(report: BenchReport): string {
  const out = [`crepe bench, ${report.date}: node ${report.node}, backend ${report.backend}, ${report.cpus} x ${report.cpu_model}`, ''];
  for (const r of Object.values(report.sections)) for (const t of r.tables) out.push(renderTable(t), '');
  const [l0, l1] = report.loadavg;
  out.push(`load average ${l0.toFixed(2)} at the start, ${l1.toFixed(2)} at the end (${report.cpus} CPUs)`);
  if (Math.max(l0, l1) > report.cpus / 2) out.push('  warning: the machine was busy; timings (numpy with threaded BLAS most of all) may be skewed');
  for (const c of report.checks) out.push(`check ${c.pass === null ? 'SKIP' : c.pass ? 'PASS' : 'FAIL'}: ${c.name} (${c.detail})`);
  return `${out.join('\n').trimEnd()}\n`;
}

export async function runBench(argv: string[]): Promise<number> {
  const args = await yargs(argv)
    .scriptName('bench')
    .usage('$0 [options]\n\ncrepe benchmarks (run with `npm run bench -- [options]`).')
    .option('only', { type: 'string', array: true, describe: `sections to run (default: all but the --only ones): ${SECTIONS.map((s) => s.name).join(', ')}` })
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
    for (const s of SECTIONS) process.stdout.write(`${s.name.padEnd(12)} ${s.description}${s.runByDefault === false ? ' [--only]' : ''}\n`);
    return 0;
  }
  const only = args.only ?? SECTIONS.filter((s) => s.runByDefault !== false).map((s) => s.name);
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

  process.stdout.write(args.json ? `${JSON.stringify(report)}\n` : renderReport(report));
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
