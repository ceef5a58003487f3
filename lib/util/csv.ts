/**
 * The one CSV code path: every CSV crepe writes (sweep results, search logs, proxy studies,
 * search comparisons) goes through csv-stringify and every CSV it reads through csv-parse, both
 * from the node-csv project, so quoting is RFC 4180 everywhere: a field with a comma, a quote
 * or a line break (\n or \r) is quoted, quotes doubled.
 */
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { CrepeError } from '../errors';

export type CsvValue = string | number | boolean | null | undefined;

/** Numbers in full precision (String(x)), booleans as true/false, null and undefined empty. */
const STRINGIFY_OPTIONS = { cast: { boolean: (v: boolean) => String(v) } } as const;

/** A header line and one line per row (each with its newline). */
export function csvText(header: readonly string[], rows: readonly (readonly CsvValue[])[]): string {
  return stringify([header, ...rows] as CsvValue[][], STRINGIFY_OPTIONS);
}

/** The header line (with its newline). */
export function csvHeader(columns: readonly string[]): string {
  return stringify([columns as string[]], STRINGIFY_OPTIONS);
}

/**
 * One row as one CSV line (with its newline), fields in `columns` order. A value with a line
 * break is refused, so every row is one physical line: appending writers (the sweep's results
 * file) rely on that to recover from a run killed mid-line.
 */
export function csvLine(columns: readonly string[], row: Readonly<Record<string, CsvValue>>): string {
  for (const c of columns) {
    if (/[\n\r]/.test(String(row[c] ?? ''))) throw new CrepeError(`value of column ${c} contains a line break: ${JSON.stringify(row[c])}`);
  }
  return stringify([columns.map((c) => row[c])], STRINGIFY_OPTIONS);
}

export interface CsvTable {
  columns: string[];
  rows: Record<string, string>[];
}

function parseRecords(text: string, what: string): string[][] {
  try {
    return parse(text, { skip_empty_lines: true, relax_column_count: false }) as string[][];
  } catch (e) {
    throw new CrepeError(`${what}: ${(e as Error).message}`);
  }
}

/**
 * Parse complete CSV text: a header line, then rows. Rows whose field count differs from the
 * header's, and malformed quoting, are errors naming `file` and the line.
 */
export function parseCsv(text: string, file: string): CsvTable {
  const records = parseRecords(text, file);
  if (records.length === 0) return { columns: [], rows: [] };
  const [columns, ...rest] = records;
  return { columns, rows: rest.map((fields) => Object.fromEntries(columns.map((c, k) => [c, fields[k]]))) };
}

/** The fields of one CSV line (no line break inside). */
export function parseCsvLine(line: string): string[] {
  const records = parseRecords(line, 'CSV line');
  if (records.length !== 1) throw new CrepeError(`expected one CSV line, got ${records.length}: ${line.slice(0, 80)}`);
  return records[0];
}
