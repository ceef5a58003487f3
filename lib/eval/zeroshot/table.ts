/** Zero-shot tables as the pruning papers print them: accuracy per task (%) and the mean. */
import { PAPER_TASKS } from './tasks';

/** One table row's numbers for one task. */
export interface ZeroshotCell {
  task: string;
  items: number;
  acc: number | null;
  accStderr: number | null;
  accNorm?: number | null;
  accNormStderr?: number | null;
  perplexity?: number | null;
  perplexityStderr?: number | null;
}

export interface ZeroshotRow {
  label: string;
  cells: ZeroshotCell[];
}

/** Cells of a result (anything with per-task metrics and item counts). */
export function cellsOf(result: {
  tasks: { task: string; items: number; metrics: Partial<Record<'acc' | 'acc_norm' | 'perplexity', { value: number; stderr: number | null }>> }[];
}): ZeroshotCell[] {
  return result.tasks.map((t) => ({
    task: t.task,
    items: t.items,
    acc: t.metrics.acc?.value ?? null,
    accStderr: t.metrics.acc?.stderr ?? null,
    accNorm: t.metrics.acc_norm?.value ?? null,
    accNormStderr: t.metrics.acc_norm?.stderr ?? null,
    perplexity: t.metrics.perplexity?.value ?? null,
    perplexityStderr: t.metrics.perplexity?.stderr ?? null,
  }));
}

const pct = (v: number | null | undefined, se: number | null | undefined): string =>
  v === null || v === undefined ? '–' : se === null || se === undefined ? (100 * v).toFixed(1) : `${(100 * v).toFixed(1)} ± ${(100 * se).toFixed(1)}`;

/** Mean `acc` over the papers' tasks present in a row, and which tasks those are (null if none). */
export function paperMean(cells: readonly ZeroshotCell[]): { mean: number; tasks: string[] } | null {
  const used = cells.filter((c) => (PAPER_TASKS as readonly string[]).includes(c.task) && c.acc !== null);
  return used.length === 0 ? null : { mean: used.reduce((a, c) => a + (c.acc as number), 0) / used.length, tasks: used.map((c) => c.task) };
}

/**
 * Markdown: one row per run; per task `acc ± stderr` in %, `acc_norm` where the harness reports
 * it, LAMBADA-style tasks also with perplexity; the mean of acc over the papers' tasks present;
 * item counts in the header (or in each cell when runs differ).
 */
export function zeroshotTable(rows: readonly ZeroshotRow[]): string {
  if (rows.length === 0) return '';
  const tasks = rows[0].cells.map((c) => c.task);
  const cols: { head: string; get: (r: ZeroshotRow) => string }[] = [];
  for (const t of tasks) {
    const counts = new Set(rows.map((r) => r.cells.find((c) => c.task === t)?.items));
    const n = counts.size === 1 ? ` (n=${[...counts][0]})` : '';
    const cell = (r: ZeroshotRow): ZeroshotCell | undefined => r.cells.find((c) => c.task === t);
    const withN = (r: ZeroshotRow, s: string): string => (n || !cell(r) ? s : `${s} (n=${cell(r)!.items})`);
    cols.push({ head: `${t} acc${n}`, get: (r) => withN(r, pct(cell(r)?.acc, cell(r)?.accStderr)) });
    if (rows.some((r) => cell(r)?.accNorm !== null && cell(r)?.accNorm !== undefined)) cols.push({ head: `${t} acc_norm`, get: (r) => pct(cell(r)?.accNorm, cell(r)?.accNormStderr) });
    if (rows.some((r) => cell(r)?.perplexity !== null && cell(r)?.perplexity !== undefined)) {
      cols.push({
        head: `${t} ppl`,
        get: (r) => {
          const c = cell(r);
          if (!c || c.perplexity === null || c.perplexity === undefined) return '–';
          return c.perplexityStderr === null || c.perplexityStderr === undefined ? c.perplexity.toPrecision(4) : `${c.perplexity.toPrecision(4)} ± ${c.perplexityStderr.toPrecision(3)}`;
        },
      });
    }
  }
  const mean = rows.map((r) => paperMean(r.cells));
  if (mean.some((m) => m !== null)) {
    // the tasks averaged are named: in the header when every row averages the same ones, else in each cell
    const sets = new Set(mean.map((m) => m?.tasks.join(', ')));
    const same = sets.size === 1 ? [...sets][0] : undefined;
    cols.push({
      head: `Mean acc${same ? ` over ${same}` : ''}`,
      get: (r) => {
        const m = paperMean(r.cells);
        return m ? `${(100 * m.mean).toFixed(2)}${same ? '' : ` (over ${m.tasks.join(', ')})`}` : '–';
      },
    });
  }
  const head = `| run | ${cols.map((c) => c.head).join(' | ')} |`;
  const sep = `|:--|${cols.map(() => '--:').join('|')}|`;
  const body = rows.map((r) => `| ${r.label} | ${cols.map((c) => c.get(r)).join(' | ')} |`);
  return [head, sep, ...body].join('\n');
}

/** Table of results labelled by run. */
export function zeroshotMarkdown(results: readonly { label: string; result: Parameters<typeof cellsOf>[0] }[]): string {
  return zeroshotTable(results.map((r) => ({ label: r.label, cells: cellsOf(r.result) })));
}
