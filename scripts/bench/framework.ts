/**
 * The bench framework: what a section is, the registry `npm run bench -- --only NAME` selects
 * from, and the plain-text tables sections report. Measuring lives in the section files
 * (eval.ts, prune.ts, ...), the numpy comparison in numpy.ts, the command in scripts/bench.ts.
 */

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
