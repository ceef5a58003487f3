/**
 * Zero-shot results in sweep CSVs: seven columns per task (`zs_<task>_items`, `_acc`,
 * `_acc_stderr`, `_acc_norm`, `_acc_norm_stderr`, `_ppl`, `_ppl_stderr`; empty where the
 * harness does not report the metric), and the report's table built back from them.
 */
import { ZeroshotCell, ZeroshotRow, zeroshotTable } from '../eval/zeroshot/table';

/** One task's numbers, as a sweep worker sends them to the parent (the table's cell). */
export type ZeroshotOutcome = ZeroshotCell;

const SUFFIXES = ['items', 'acc', 'acc_stderr', 'acc_norm', 'acc_norm_stderr', 'ppl', 'ppl_stderr'] as const;

export function zeroshotColumns(tasks: readonly string[]): string[] {
  return tasks.flatMap((t) => SUFFIXES.map((s) => `zs_${t}_${s}`));
}

export function zeroshotRowValues(outcomes: readonly ZeroshotOutcome[]): Record<string, string | number> {
  const v = (x: number | null): string | number => (x === null ? '' : x);
  const row: Record<string, string | number> = {};
  for (const o of outcomes) {
    const values = [o.items, o.acc, o.accStderr, o.accNorm ?? null, o.accNormStderr ?? null, o.perplexity ?? null, o.perplexityStderr ?? null];
    SUFFIXES.forEach((s, k) => (row[`zs_${o.task}_${s}`] = v(values[k])));
  }
  return row;
}

/** Task names present in a CSV's columns, in column order. */
export function zeroshotTasksOf(columns: readonly string[]): string[] {
  return columns.filter((c) => c.startsWith('zs_') && c.endsWith('_items')).map((c) => c.slice(3, -'_items'.length));
}

function cellOf(row: Record<string, string>, task: string): ZeroshotCell | null {
  const num = (s: string): number | null => {
    const x = row[`zs_${task}_${s}`];
    return x === undefined || x === '' ? null : Number(x);
  };
  const items = num('items');
  if (items === null) return null;
  return {
    task,
    items,
    acc: num('acc'),
    accStderr: num('acc_stderr'),
    accNorm: num('acc_norm'),
    accNormStderr: num('acc_norm_stderr'),
    perplexity: num('ppl'),
    perplexityStderr: num('ppl_stderr'),
  };
}

/**
 * The zero-shot section of a report: per model, one row per cell that has zero-shot results
 * (dense first), labelled by method, structure and sparsity. Empty when no row has any.
 */
export function zeroshotReportMarkdown(columns: readonly string[], rows: readonly Record<string, string>[]): string {
  const tasks = zeroshotTasksOf(columns);
  if (tasks.length === 0) return '';
  const out: string[] = [
    '## Zero-shot accuracy',
    '',
    "Accuracy in % ± the harness's standard error (`acc`; `acc_norm` where the harness reports it), n = documents scored per task; LAMBADA-style tasks also give perplexity ± its bootstrap stderr. Mean acc: over the papers' tasks present (BoolQ, RTE, HellaSwag, WinoGrande, ARC-e, ARC-c, OpenBookQA). Scoring as lm-evaluation-harness (docs/zeroshot.md).",
  ];
  const models = [...new Set(rows.map((r) => r.model))];
  for (const model of models) {
    const mine = rows.filter((r) => r.model === model && tasks.some((t) => cellOf(r, t) !== null));
    if (mine.length === 0) continue;
    const ordered = [...mine.filter((r) => r.method === 'dense'), ...mine.filter((r) => r.method !== 'dense')];
    const tableRows: ZeroshotRow[] = ordered.map((r) => ({
      label: r.method === 'dense' ? 'dense' : `${r.label} ${/^\d+:\d+$/.test(r.structure) ? r.structure : `${(100 * Number(r.sparsity)).toFixed(0)}%${r.group ? ` ${r.group}` : ''}`}`,
      cells: tasks.map((t) => cellOf(r, t)).filter((c): c is ZeroshotCell => c !== null),
    }));
    out.push('', `### ${model}`, '', zeroshotTable(tableRows));
  }
  return out.join('\n');
}
