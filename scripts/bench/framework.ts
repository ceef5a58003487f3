/**
 * The bench framework: what a section is, the registry `npm run bench -- --only NAME` selects
 * from, and the plain-text tables sections report. Measuring lives in the section files
 * (eval.ts, prune.ts, ...), the numpy comparison in numpy.ts, the command in scripts/bench.ts.
 */
import { Structure } from '../../lib/prune/select';
import { secondsSince } from '../../lib/util/time';

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
  /**
   * false: the section runs only when named with --only (long or special-purpose sections);
   * plain `npm run bench` runs the sections whose flag is absent or true.
   */
  runByDefault?: boolean;
  run(opts: BenchOptions): Promise<SectionResult>;
}

/** Registered sections in registration order (scripts/bench/sections.ts registers them). */
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

export interface ThroughputResult {
  tokensPerSecond: number;
  /** Every measurement, tokens/s. */
  samples: number[];
}

export function summarize(samples: number[]): ThroughputResult {
  return { tokensPerSecond: median(samples), samples };
}

/** Wall times (ms) of `repeats` calls of `run`, after one warm-up call (XNNPACK packing, JIT). */
export function timeRepeats(run: () => void, repeats: number): number[] {
  run();
  const ms: number[] = [];
  for (let i = 0; i < repeats; i++) {
    const t0 = process.hrtime.bigint();
    run();
    ms.push(secondsSince(t0) * 1e3);
  }
  return ms;
}

/** LLaMA-7B's linear shapes [out, in] (attention and MLP): the layers pruning benchmarks time. */
export const LLAMA7B_SHAPES: readonly [number, number][] = [
  [4096, 4096],
  [11008, 4096],
];

/** The structures pruning benchmarks time, with their table labels. */
export const BENCH_STRUCTURES: readonly [string, Structure][] = [
  ['row 50%', { kind: 'unstructured', group: 'row', sparsity: 0.5 }],
  ['matrix 50%', { kind: 'unstructured', group: 'matrix', sparsity: 0.5 }],
  ['2:4', { kind: 'nm', n: 2, m: 4 }],
];

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
