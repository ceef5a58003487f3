/**
 * Validation of the rows of a results CSV as they are read back (resume, dry run, report): a
 * damaged row (empty or non-numeric PPL, impossible counts) is reported and left out, never
 * used, so a sweep recomputes its cell; of rows with the same key the last complete one counts
 * (the cell is done: nothing is recomputed).
 */
import { CsvTable } from '../util/csv';

export interface CheckedRows {
  rows: Record<string, string>[];
  /** One line per damaged row left out: '<file> line <n>: <why>'. */
  problems: string[];
  /** One line per earlier row of a key written again: its cell is not lost (the later row counts). */
  duplicates: string[];
}

type Rule = (v: string) => boolean;
const num = (v: string) => (v.trim() === '' ? NaN : Number(v));
const fraction: Rule = (v) => num(v) >= 0 && num(v) <= 1;
const positiveInt: Rule = (v) => Number.isInteger(num(v)) && num(v) > 0;
const nonNegative: Rule = (v) => num(v) >= 0 && Number.isFinite(num(v));
/** exp(mean NLL) with NLL >= 0. */
const perplexity: Rule = (v) => num(v) >= 1 && Number.isFinite(num(v));

/** Zero-shot columns (zeroshot-columns.ts): a metric is empty where the harness does not report it for the task. */
const orEmpty = (rule: Rule): Rule => (v) => v.trim() === '' || rule(v);

function ruleOf(column: string): [Rule, string] | null {
  if (column.startsWith('zs_')) {
    if (column.endsWith('_items')) return [positiveInt, 'a positive whole number'];
    if (column.endsWith('_stderr')) return [orEmpty(nonNegative), 'a standard error (a number >= 0) or empty'];
    if (column.endsWith('_ppl')) return [orEmpty(perplexity), 'a perplexity (a finite number >= 1) or empty'];
    return [orEmpty(fraction), 'an accuracy in [0, 1] or empty'];
  }
  if (column === 'sparsity' || column === 'achieved_sparsity') return [fraction, 'a fraction in [0, 1]'];
  if (column.endsWith('_seqlen') && column !== 'calib_seqlen') return [positiveInt, 'a positive whole number'];
  if (column.endsWith('_windows')) return [positiveInt, 'a positive whole number'];
  if (column.endsWith('_ppl')) return [perplexity, 'a perplexity (a finite number >= 1)'];
  if (column.endsWith('_seconds')) return [nonNegative, 'a number of seconds'];
  return null;
}

/** Why a row is damaged, or null. */
export function rowProblem(row: Record<string, string>, columns: readonly string[]): string | null {
  if (!row.key || !/^\S+$/.test(row.key)) return `key '${row.key ?? ''}' is not a cell key`;
  for (const c of columns) {
    const rule = ruleOf(c);
    if (rule && !rule[0](row[c] ?? '')) return `${c} '${row[c] ?? ''}' is not ${rule[1]}`;
  }
  return null;
}

/** The usable rows of a parsed results table (line numbers assume one line per row, as crepe writes). */
export function checkRows(table: CsvTable, file: string): CheckedRows {
  const problems: string[] = [];
  const duplicates: string[] = [];
  const byKey = new Map<string, { row: Record<string, string>; line: number }>();
  table.rows.forEach((row, k) => {
    const line = k + 2;
    const why = rowProblem(row, table.columns);
    if (why) {
      problems.push(`${file} line ${line}: ${why}`);
      return;
    }
    const earlier = byKey.get(row.key);
    if (earlier) {
      duplicates.push(`${file} line ${earlier.line}: key ${row.key} appears again on line ${line}, which is used instead`);
      byKey.delete(row.key);
    }
    byKey.set(row.key, { row, line });
  });
  return { rows: [...byKey.values()].map((r) => r.row), problems, duplicates };
}
