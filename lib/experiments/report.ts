/**
 * Paper-style results from a sweep CSV: Markdown tables (per model and evaluation dataset: rows
 * = methods with dense first, columns = unstructured sparsities then N:M structures, the best
 * pruned PPL per column in bold) and SVG plots drawn by vega-lite + vega in Node (no browser:
 * a headless vega View renders straight to SVG).
 */
import * as fs from 'fs';
import * as path from 'path';
import * as vega from 'vega';
import { compile, TopLevelSpec } from 'vega-lite';
import { CrepeError } from '../errors';
import { cleanStaleTemporaries, makeDirs, statPath } from '../io/atomic';
import { checkRows } from './row-check';
import { parseCsv } from '../util/csv';
import { DENSE } from './cell';
import { canonicalPath, checkOutputs } from '../io/outputs';
import { listStrategies } from '../prune/strategy';
import '../prune/strategies';
import { zeroshotReportMarkdown } from './zeroshot-columns';

export type ResultRow = Record<string, string>;

export interface Results {
  /** The CSVs the rows come from (several: the shards of one sweep, merged). */
  files: string[];
  /** Column prefixes of the evaluation datasets (`tinystories` for `tinystories_ppl`). */
  datasets: string[];
  /** One row per key (within a file the last one written wins), in canonical order (canonicalRowOrder). */
  rows: ResultRow[];
  /** The CSV's columns (zero-shot tables look for `zs_<task>_*`). */
  columns: string[];
}

/** The usable rows and columns of one results CSV (damaged rows are named on stderr and left out). */
function readOne(file: string): { columns: string[]; rows: ResultRow[] } {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new CrepeError(`results file not found: ${file}`);
  const text = fs.readFileSync(file, 'utf8').replace(/\r\n/g, '\n');
  // A sweep may be running (or have been killed): ignore an unfinished last line.
  const table = parseCsv(text.slice(0, text.lastIndexOf('\n') + 1), file);
  for (const c of ['key', 'model', 'label', 'structure', 'group', 'sparsity']) {
    if (!table.columns.includes(c)) throw new CrepeError(`${file} is not a sweep results CSV (no '${c}' column)`);
  }
  const checked = checkRows(table, file);
  for (const p of checked.problems) process.stderr.write(`crepe: ${p}; the row is left out of the report\n`);
  for (const p of checked.duplicates) process.stderr.write(`crepe: ${p}\n`);
  return { columns: table.columns, rows: checked.rows };
}

/** Where a row sits in a report: two rows at one place are two answers to one question. */
function placeOf(r: ResultRow, datasets: readonly string[]): string {
  const evals = datasets.map((d) => [r[`${d}_split`] ?? '', r[`${d}_seqlen`], r[`${d}_windows`]]);
  return JSON.stringify([r.model, r.method, r.label, r.params, r.structure, r.group, r.sparsity, r.calib_dataset ?? '', r.calib_nsamples ?? '', r.calib_seqlen ?? '', r.calib_seed ?? '', r.propagate ?? '', evals]);
}

/** `<model> <label> <structure> [<sparsity> per <group>] seed <s>` for messages. */
function describeRow(r: ResultRow): string {
  if (r.method === DENSE) return `${r.model} dense`;
  const what = r.structure === 'unstructured' ? `unstructured ${r.sparsity} per ${r.group}` : r.structure;
  return `${r.model} ${r.label} ${what} seed ${r.calib_seed ?? ''}`;
}

/**
 * Read one results CSV, or merge several (the shards of one sweep, `crepe sweep --shard K/N`).
 * Merging refuses, in one line, CSVs with different columns, a cell (key) present in two files,
 * and two cells of different keys that would fill the same table entry (a conflict: e.g. the same
 * method and seed run from two configs with different settings that the table does not show).
 */
export function readResults(files: string | readonly string[]): Results {
  const list = typeof files === 'string' ? [files] : [...files];
  if (list.length === 0) throw new CrepeError('name at least one results CSV');
  const seenFile = new Map<string, string>();
  for (const f of list) {
    const c = canonicalPath(f);
    const other = seenFile.get(c);
    if (other !== undefined) throw new CrepeError(`${f} is given twice${other !== f ? ` (also as ${other})` : ''}`);
    seenFile.set(c, f);
  }
  const parts = list.map((f) => ({ file: f, ...readOne(f) }));
  const columns = parts[0].columns;
  for (const p of parts.slice(1)) {
    if (p.columns.join(',') !== columns.join(',')) {
      throw new CrepeError(`${p.file} has other columns than ${parts[0].file} (another sweep config?): merge only the shards of one sweep`);
    }
  }
  const datasets = columns.filter((c) => c.endsWith('_dense_ppl')).map((c) => c.slice(0, -'_dense_ppl'.length));
  const byKey = new Map<string, string>();
  const byPlace = new Map<string, { file: string; key: string }>();
  const rows: ResultRow[] = [];
  for (const p of parts) {
    for (const r of p.rows) {
      const other = byKey.get(r.key);
      if (other !== undefined) {
        throw new CrepeError(`cell ${r.key} (${describeRow(r)}) is in both ${other} and ${p.file}: merge each shard once, and shards of one sweep only`);
      }
      byKey.set(r.key, p.file);
      if (list.length > 1) {
        const place = placeOf(r, datasets);
        const twin = byPlace.get(place);
        if (twin) throw new CrepeError(`${twin.file} (cell ${twin.key}) and ${p.file} (cell ${r.key}) both hold ${describeRow(r)} with different settings: merge only the shards of one sweep`);
        byPlace.set(place, { file: p.file, key: r.key });
      }
      rows.push(r);
    }
  }
  if (rows.length === 0) throw new CrepeError(`${list.join(', ')} ${list.length > 1 ? 'hold' : 'holds'} no results yet`);
  return { files: list, datasets, rows: canonicalRowOrder(rows), columns };
}

/** Position of a method in the strategy registry (the order the README lists them); unknown methods last. */
function methodRank(method: string): number {
  if (method === DENSE) return -1;
  const k = listStrategies().indexOf(method);
  return k < 0 ? Number.MAX_SAFE_INTEGER : k;
}

const cmp = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);
const cmpNum = (a: string, b: string): number => {
  const x = Number(a);
  const y = Number(b);
  return Number.isFinite(x) && Number.isFinite(y) ? x - y : cmp(a, b);
};

/**
 * The order every table, plot and list of a report follows, whatever order the rows were
 * written in (workers finish cells in a different order on every run): models by name; per
 * model the dense row, then methods in registry order, labels by name; unstructured before N:M
 * (by sparsity, then M); groups, sparsities and calibration seeds ascending. Rows equal in all
 * of these keep their file order (a stable sort).
 */
export function canonicalRowOrder(rows: readonly ResultRow[]): ResultRow[] {
  const structureRank = (s: string): [number, number, number] => {
    if (s === DENSE) return [0, 0, 0];
    if (s === 'unstructured') return [1, 0, 0];
    const [n, m] = s.split(':').map(Number);
    return Number.isFinite(n) && Number.isFinite(m) && m > 0 ? [2, 1 - n / m, m] : [3, 0, 0];
  };
  return [...rows].sort((a, b) => {
    const sa = structureRank(a.structure);
    const sb = structureRank(b.structure);
    return (
      cmp(a.model, b.model) ||
      methodRank(a.method) - methodRank(b.method) ||
      cmp(a.method, b.method) ||
      cmp(a.label, b.label) ||
      sa[0] - sb[0] || sa[1] - sb[1] || sa[2] - sb[2] || cmp(a.structure, b.structure) ||
      cmp(a.group, b.group) ||
      cmpNum(a.sparsity, b.sparsity) ||
      cmpNum(a.calib_seed ?? '', b.calib_seed ?? '')
    );
  });
}

// ---------------------------------------------------------------------------------------------
// tables

export interface TableColumn {
  /** '0.5' for unstructured sparsity, 'N:M' for structures. */
  id: string;
  title: string;
  kind: 'unstructured' | 'nm';
  sparsity: number;
}

/** A cell's perplexity over calibration seeds: mean, sample standard deviation (0 when n = 1), n. */
export interface SeedStat {
  mean: number;
  std: number;
  n: number;
  /** Mean achieved sparsity over the seeds, where the rows record it. */
  achieved?: number;
}

/** How far a cell's achieved sparsity is from its column's (0 when the rows do not record it). */
function sparsityGap(v: SeedStat | null, col: TableColumn): number {
  return v === null || v.achieved === undefined ? 0 : Math.abs(v.achieved - col.sparsity);
}

/**
 * A cell's achieved sparsity is shown when it is more than half a point off its column's: per-row
 * floors on narrow rows (Wanda's 64-wide rows at 70% keep 20 of 64, 68.75%) and OWL's N:M
 * allocation (whole blocks moved to another pattern, whose rounded moves need not cancel).
 */
export function showsAchieved(v: SeedStat | null, col: TableColumn): boolean {
  return sparsityGap(v, col) > 0.005;
}

/** More than two points off: not comparable with the column's others, so never bold and not plotted. */
export function offTarget(v: SeedStat | null, col: TableColumn): boolean {
  return sparsityGap(v, col) > 0.02;
}

export interface TableRow {
  label: string;
  /** Comparison group of the unstructured cells ('' when none). */
  group: string;
  dense: boolean;
  values: (SeedStat | null)[];
}

/** One table: a model on one evaluation dataset with one window setting. */
export interface PplTable {
  model: string;
  dataset: string;
  /** Which split the numbers are on ('test', 'validation'; '' for results written before splits were recorded). */
  split: string;
  /** Exactly which text ('' when not recorded). */
  slice: string;
  seqlen: string;
  windows: string;
  columns: TableColumn[];
  rows: TableRow[];
  /** The dense model's PPL (null when the table has no dense row and no dense column value). */
  dense: SeedStat | null;
}

const isNM = (s: string) => /^\d+:\d+$/.test(s);

function pplOf(r: ResultRow, dataset: string): number | null {
  const v = r[`${dataset}_ppl`];
  return v === undefined || v === '' ? null : Number(v);
}

/** Mean and sample standard deviation (n - 1 in the denominator; 0 for a single value). */
export function seedStat(values: readonly number[]): SeedStat {
  const n = values.length;
  const mean = values.reduce((a, v) => a + v, 0) / n;
  const std = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

function percent(s: number): string {
  return `${Number((s * 100).toFixed(1))}%`;
}

function uniqueInOrder<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

/** Group rows into tables and lay each out as methods x (sparsities, N:M structures). */
export function buildTables(results: Results): PplTable[] {
  const tables: PplTable[] = [];
  for (const dataset of results.datasets) {
    const buckets = new Map<string, ResultRow[]>();
    for (const r of results.rows) {
      if (pplOf(r, dataset) === null) continue;
      const id = JSON.stringify([r.model, r[`${dataset}_seqlen`], r[`${dataset}_windows`]]);
      buckets.set(id, [...(buckets.get(id) ?? []), r]);
    }
    for (const rows of buckets.values()) tables.push(layoutTable(dataset, rows));
  }
  // Per model and dataset, the table with the most results first (it feeds the plots); equal
  // sizes by window length and count, so the order never depends on the order of the rows.
  const modelOrder = uniqueInOrder(results.rows.map((r) => r.model));
  const size = (t: PplTable) => t.rows.reduce((a, r) => a + r.values.filter((v) => v !== null).length, 0);
  return tables.sort(
    (a, b) =>
      modelOrder.indexOf(a.model) - modelOrder.indexOf(b.model) ||
      results.datasets.indexOf(a.dataset) - results.datasets.indexOf(b.dataset) ||
      size(b) - size(a) ||
      Number(b.seqlen) - Number(a.seqlen) ||
      Number(b.windows) - Number(a.windows),
  );
}

function layoutTable(dataset: string, rows: ResultRow[]): PplTable {
  const pruned = rows.filter((r) => r.method !== DENSE);
  const unstructured = pruned.filter((r) => r.structure === 'unstructured');
  const sparsities = uniqueInOrder(unstructured.map((r) => Number(r.sparsity))).sort((a, b) => a - b);
  const nmRows = pruned.filter((r) => isNM(r.structure));
  const structures = uniqueInOrder(nmRows.map((r) => r.structure)).sort((a, b) => {
    const [na, ma] = a.split(':').map(Number);
    const [nb, mb] = b.split(':').map(Number);
    return 1 - na / ma - (1 - nb / mb) || ma - mb;
  });
  const columns: TableColumn[] = [
    ...sparsities.map((s) => ({ id: String(s), title: percent(s), kind: 'unstructured' as const, sparsity: s })),
    ...structures.map((s) => {
      const [n, m] = s.split(':').map(Number);
      return { id: s, title: s, kind: 'nm' as const, sparsity: 1 - n / m };
    }),
  ];
  // One value per calibration seed; of two results for one seed (e.g. from two configs) the later wins.
  const find = (label: string, group: string, col: TableColumn): SeedStat | null => {
    const hits = pruned.filter((r) =>
      r.label === label && (col.kind === 'nm' ? r.structure === col.id : r.structure === 'unstructured' && r.group === group && Number(r.sparsity) === col.sparsity),
    );
    const bySeed = new Map<string, number>();
    const achievedBySeed = new Map<string, number>();
    for (const r of hits) {
      const v = pplOf(r, dataset);
      if (v === null) continue;
      bySeed.set(r.calib_seed ?? '', v);
      if (r.achieved_sparsity !== undefined && r.achieved_sparsity !== '') achievedBySeed.set(r.calib_seed ?? '', Number(r.achieved_sparsity));
    }
    if (!bySeed.size) return null;
    const stat = seedStat([...bySeed.values()]);
    return achievedBySeed.size ? { ...stat, achieved: seedStat([...achievedBySeed.values()]).mean } : stat;
  };
  const denseRow = rows.filter((r) => r.method === DENSE).pop();
  const densePpl = denseRow ? pplOf(denseRow, dataset) : Number(rows[0][`${dataset}_dense_ppl`]);
  const denseStat = densePpl === null ? null : seedStat([densePpl]);
  const tableRows: TableRow[] = [{ label: DENSE, group: '', dense: true, values: columns.map(() => denseStat) }];
  for (const label of uniqueInOrder(pruned.map((r) => r.label))) {
    const groups = uniqueInOrder(unstructured.filter((r) => r.label === label).map((r) => r.group));
    for (const group of groups.length ? groups : ['']) {
      tableRows.push({ label, group, dense: false, values: columns.map((c) => find(label, group, c)) });
    }
  }
  return {
    model: rows[0].model,
    dataset,
    split: rows[0][`${dataset}_split`] ?? '',
    slice: rows[0][`${dataset}_slice`] ?? '',
    seqlen: rows[0][`${dataset}_seqlen`],
    windows: rows[0][`${dataset}_windows`],
    columns,
    rows: tableRows,
    dense: denseStat,
  };
}

export function formatPpl(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  return v < 1e5 ? v.toFixed(2) : v.toExponential(2);
}

/** `mean ± std (n=k)` over seeds, or just the value for a single seed. */
export function formatStat(v: SeedStat): string {
  return v.n > 1 ? `${formatPpl(v.mean)} ± ${formatPpl(v.std)} (n=${v.n})` : formatPpl(v.mean);
}

/** A Markdown table; the lowest pruned (mean) PPL of each column (ties included) in bold. */
export function tableMarkdown(t: PplTable): string {
  const best = t.columns.map((_, c) => {
    const vals = t.rows
      .filter((r) => !r.dense && !offTarget(r.values[c], t.columns[c]))
      .map((r) => r.values[c]?.mean)
      .filter((v): v is number => v !== undefined && Number.isFinite(v));
    return vals.length ? formatPpl(Math.min(...vals)) : null;
  });
  const cell = (v: SeedStat | null, c: number, dense: boolean) => {
    if (v === null) return '–';
    const s = formatStat(v);
    const shown = showsAchieved(v, t.columns[c]) ? `${s}, ${percent(v.achieved!)} sparse` : s;
    return !dense && !offTarget(v, t.columns[c]) && formatPpl(v.mean) === best[c] ? `**${shown}**` : shown;
  };
  if (t.columns.length === 0) {
    // Only the dense baseline so far (a sweep that has just started).
    const d = t.dense;
    return ['| Method | PPL |', '|:--|--:|', `| Dense | ${d === null ? '–' : formatStat(d)} |`, '', 'No pruned results yet.'].join('\n');
  }
  const lines = [
    `| Method | Group | ${t.columns.map((c) => c.title).join(' | ')} |`,
    `|:--|:--|${t.columns.map(() => '--:').join('|')}|`,
    ...t.rows.map((r) => `| ${r.dense ? 'Dense' : r.label} | ${r.group || '–'} | ${r.values.map((v, c) => cell(v, c, r.dense)).join(' | ')} |`),
  ];
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// plots

export interface PlotPoint {
  model: string;
  method: string;
  kind: 'pruned' | 'dense';
  sparsity?: number;
  structure?: string;
  /** Mean over calibration seeds, and mean - std / mean + std (equal to it for one seed). */
  ppl: number;
  lo: number;
  hi: number;
  n: number;
  /** Where the point is drawn on a sparsity axis: its sparsity moved sideways by its series' slot, so no two series share an x. */
  x?: number;
  /** What the mark says to a screen reader (its true sparsity or structure and value, not the drawn x). */
  text: string;
}

/** Series name: the label, plus the group when a label has rows in several groups. */
function seriesNames(t: PplTable): string[] {
  return t.rows.map((r) => (t.rows.filter((o) => o.label === r.label).length > 1 ? `${r.label} (${r.group})` : r.label));
}

/**
 * Points of the first (largest) table of each model for one dataset and column kind. On the
 * sparsity axis every series gets its own slot around each level (a dodge of a fraction of the
 * smallest gap between levels), so equal or close values never hide one another.
 */
export function plotPoints(tables: PplTable[], dataset: string, kind: 'unstructured' | 'nm'): PlotPoint[] {
  const points: PlotPoint[] = [];
  const seen = new Set<string>();
  for (const t of tables) {
    if (t.dataset !== dataset || seen.has(t.model)) continue;
    seen.add(t.model);
    const names = seriesNames(t);
    t.rows.forEach((r, i) => {
      if (r.dense) {
        const d = t.dense;
        if (d !== null) points.push({ model: t.model, method: 'dense', kind: 'dense', ppl: d.mean, lo: d.mean, hi: d.mean, n: d.n, text: `${t.model} dense: ${formatStat(d)}` });
        return;
      }
      t.columns.forEach((c, k) => {
        const v = r.values[k];
        if (c.kind !== kind || v === null || offTarget(v, c) || !(v.mean > 0) || !Number.isFinite(v.mean)) return;
        // A log axis cannot show mean - std <= 0: clip the whisker at a tenth of the mean. Seeds
        // that agree (magnitude pruning reads no calibration data) can leave a rounding-size std.
        const std = v.std > 1e-9 * v.mean ? v.std : 0;
        const lo = Math.max(v.mean - std, v.mean / 10);
        const text = `${t.model} ${names[i]} ${c.title}: ${formatStat(v)}`;
        points.push({ model: t.model, method: names[i], kind: 'pruned', sparsity: c.sparsity, structure: c.id, ppl: v.mean, lo, hi: v.mean + std, n: v.n, text });
      });
    });
  }
  if (!points.some((p) => p.kind === 'pruned')) return [];
  const series = uniqueInOrder(points.filter((p) => p.kind === 'pruned').map((p) => p.method));
  const { dodge } = sparsityAxis(points);
  for (const p of points) {
    if (p.sparsity !== undefined) p.x = p.sparsity + (series.indexOf(p.method) - (series.length - 1) / 2) * dodge;
  }
  return points;
}

/** The sparsity levels of `points`, the step between neighbouring series, and the axis domain. */
function sparsityAxis(points: PlotPoint[]): { levels: number[]; dodge: number; domain: [number, number] } {
  const levels = uniqueInOrder(points.flatMap((p) => (p.kind === 'pruned' && p.sparsity !== undefined ? [p.sparsity] : []))).sort((a, b) => a - b);
  const nSeries = new Set(points.filter((p) => p.kind === 'pruned').map((p) => p.method)).size;
  const gaps = levels.slice(1).map((s, i) => s - levels[i]);
  const gap = gaps.length ? Math.min(...gaps) : 0.1;
  // The series at one level take up to half the gap to the next level.
  const dodge = gap / 2 / Math.max(nSeries, 1);
  const pad = gap / 2;
  return { levels, dodge, domain: [(levels[0] ?? 0.5) - pad, (levels[levels.length - 1] ?? 0.5) + pad] };
}

/** Marker size (vega: the area in px^2 of the bounding square, so sqrt(30) = 5.5 px across) of the mean points, and the width (px) of the whisker caps: caps are wider than markers. */
export const MARKER_AREA = 30;
export const CAP_WIDTH = 14;

const denseRule = {
  transform: [{ filter: "datum.kind === 'dense'" }],
  mark: { type: 'rule', strokeDash: [5, 4], color: 'black' },
  encoding: { y: { field: 'ppl', type: 'quantitative' } },
} as const;

const logPpl = { type: 'quantitative', title: 'perplexity', scale: { type: 'log' } } as const;

/** Whiskers (mean ± std, drawn only where there are several seeds) with caps at both ends. */
function whiskers(x: object, extra: object = {}, colour: object = {}): object[] {
  // Nothing to draw where the seeds agree (magnitude pruning does not read the calibration data).
  const many = { filter: "datum.kind === 'pruned' && datum.hi > datum.lo" };
  return [
    { transform: [many], mark: { type: 'rule', strokeWidth: 1.5 }, encoding: { ...x, ...extra, ...colour, y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } },
    ...['lo', 'hi'].map((end) => ({
      transform: [many],
      mark: { type: 'tick', orient: 'horizontal', size: CAP_WIDTH, thickness: 1.5 },
      encoding: { ...x, ...extra, ...colour, y: { field: end, type: 'quantitative' } },
    })),
  ];
}

/**
 * One panel per model side by side (hconcat: each with its own scales, since perplexities differ
 * by orders of magnitude), one colour per method shared by all panels, the dense model as a
 * dashed rule.
 */
function perModelPanels(title: string, subtitle: string | string[], points: PlotPoint[], panel: (model: string, mine: PlotPoint[]) => object): TopLevelSpec {
  const models = uniqueInOrder(points.map((p) => p.model));
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, subtitle },
    data: { values: points },
    hconcat: models.map((m) => ({
      title: m,
      width: 320,
      height: 240,
      transform: [{ filter: `datum.model === ${JSON.stringify(m)}` }],
      ...panel(m, points.filter((p) => p.model === m)),
    })),
    resolve: { scale: { x: 'independent', y: 'independent', xOffset: 'independent' } },
    config: SERIES_LEGEND,
  } as TopLevelSpec;
}

const SERIES_COLOUR = { color: { field: 'method', type: 'nominal', title: 'method', sort: null }, description: { field: 'text' } } as const;
/** Legend symbols drawn as solid circles (the band layer would otherwise make them pale). */
const SERIES_LEGEND = { legend: { orient: 'right', symbolType: 'circle', symbolOpacity: 1, symbolStrokeWidth: 0 } } as const;
const SERIES_COLOUR_UNLISTED = SERIES_COLOUR;

/** Vega-lite spec: PPL (log) vs unstructured sparsity, one line per method with a band and whiskers over seeds, one panel per model. */
export function sparsityPlotSpec(dataset: string, points: PlotPoint[]): TopLevelSpec {
  return perModelPanels(
    `${dataset}: perplexity vs unstructured sparsity`,
    ['log scale; dashed line = dense model; band and whiskers = mean ± std over calibration seeds', 'methods are drawn side by side at each sparsity level'],
    points,
    (_m, mine) => {
      const { levels, domain } = sparsityAxis(mine);
      const x = { x: { field: 'x', type: 'quantitative', title: 'sparsity', scale: { domain, nice: false, zero: false }, axis: { values: levels, format: '.0%', grid: false } } };
      const pruned = { filter: "datum.kind === 'pruned'" };
      return {
        layer: [
          { transform: [pruned], mark: { type: 'area', opacity: 0.15 }, encoding: { ...x, ...SERIES_COLOUR_UNLISTED, y: { field: 'lo', ...logPpl }, y2: { field: 'hi' } } },
          { transform: [pruned], mark: { type: 'line', strokeWidth: 1.5 }, encoding: { ...x, ...SERIES_COLOUR, y: { field: 'ppl', ...logPpl } } },
          ...whiskers(x, {}, SERIES_COLOUR_UNLISTED),
          { transform: [pruned], mark: { type: 'point', filled: true, opacity: 1, size: MARKER_AREA }, encoding: { ...x, ...SERIES_COLOUR, y: { field: 'ppl', ...logPpl } } },
          denseRule,
        ],
      };
    },
  );
}

/** Vega-lite spec: grouped bars of PPL (log) per N:M structure and method, whiskers over seeds, one panel per model. */
export function nmPlotSpec(dataset: string, points: PlotPoint[]): TopLevelSpec {
  const base = 10 ** Math.floor(Math.log10(Math.min(...points.map((p) => p.lo))));
  const structures = uniqueInOrder(points.flatMap((p) => (p.kind === 'pruned' && p.structure ? [p.structure] : [])));
  const methods = uniqueInOrder(points.filter((p) => p.kind === 'pruned').map((p) => p.method));
  return perModelPanels(
    `${dataset}: perplexity at N:M sparsity (keep N of every M)`,
    ['log scale; dashed line = dense model; whiskers = mean ± std over calibration seeds', 'cells more than two points off their sparsity (OWL moves whole blocks to other N:M patterns) are in the table only'],
    points,
    (_m, mine) => {
      // A model's panel shows only the structures it was pruned with (M must divide its widths).
      const own = structures.filter((s) => mine.some((p) => p.structure === s));
      const x = { x: { field: 'structure', type: 'nominal', title: 'structure', sort: own, scale: { domain: own, paddingInner: 0.3, paddingOuter: 0.2 }, axis: { labelAngle: 0 } } };
      const offset = { xOffset: { field: 'method', type: 'nominal', sort: methods, scale: { domain: methods, paddingInner: 0.1 } } };
      return {
        layer: [
          // Bars on a log axis need an explicit positive base (the default starts at 0).
          { transform: [{ filter: "datum.kind === 'pruned'" }], mark: { type: 'bar' }, encoding: { ...x, ...offset, ...SERIES_COLOUR, y: { field: 'ppl', ...logPpl, stack: null }, y2: { datum: base } } },
          ...whiskers(x, offset, { color: { value: 'black' } }),
          denseRule,
        ],
      };
    },
  );
}

/** Render a vega-lite spec to SVG text, headless. */
export async function renderSvg(spec: TopLevelSpec): Promise<string> {
  const view = new vega.View(vega.parse(compile(spec).spec), { renderer: 'none' });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}

// ---------------------------------------------------------------------------------------------
// the report

function distinct(rows: ResultRow[], f: (r: ResultRow) => string): string[] {
  return uniqueInOrder(rows.map(f).filter((s) => s !== ''));
}

function settingsMarkdown(results: Results, tables: PplTable[], reportCommand: string): string {
  const rows = results.rows;
  const pruned = rows.filter((r) => r.method !== DENSE);
  const lines = ['## Settings', ''];
  const files = results.files.join(' ');
  for (const cfg of distinct(rows, (r) => r.config ?? '').sort()) {
    lines.push(results.files.length > 1 ? `- Sweep: \`crepe sweep --config ${cfg}\` in ${results.files.length} shards (\`--shard K/${results.files.length}\`), merged from ${files}` : `- Sweep: \`crepe sweep --config ${cfg} --out ${files}\``);
  }
  lines.push(`- Report: \`${reportCommand}\``);
  for (const model of distinct(rows, (r) => r.model)) {
    const mine = pruned.filter((r) => r.model === model);
    // One entry per calibration setting, its seeds listed together.
    const seedsOf = new Map<string, string[]>();
    for (const r of mine) {
      if (!r.calib_dataset) continue;
      const setting = `${r.calib_dataset} (calibration split), ${r.calib_nsamples} samples x ${r.calib_seqlen} tokens`;
      const seeds = seedsOf.get(setting) ?? [];
      if (!seeds.includes(r.calib_seed)) seeds.push(r.calib_seed);
      seedsOf.set(setting, seeds);
    }
    const cal = [...seedsOf].map(([setting, seeds]) => {
      seeds.sort((a, b) => cmpNum(a, b));
      return `${setting}, ${seeds.length > 1 ? `seeds ${seeds.join(', ')}` : `seed ${seeds[0]}`}`;
    });
    lines.push(`- ${model}: calibration ${cal.join('; ') || '–'}; next-block inputs from the ${distinct(mine, (r) => r.propagate ?? '').join('/') || '–'} model`);
    for (const t of tables.filter((x) => x.model === model)) {
      const dense = t.dense;
      const where = t.split ? `${t.split} split${t.slice ? `, ${t.slice}` : ''}: ` : '';
      lines.push(`  - eval ${t.dataset}: ${where}${t.windows} windows x ${t.seqlen} tokens; dense PPL ${dense === null ? '–' : formatPpl(dense.mean)}`);
    }
  }
  const methods = uniqueInOrder(pruned.map((r) => `${r.label}: ${r.method} ${r.params}`));
  lines.push(`- Methods (label: method params): ${methods.map((m) => `\`${m}\``).join(', ')}`);
  lines.push(`- Backend: ${distinct(rows, (r) => r.backend ?? '').sort().join(', ')}; code version: ${distinct(rows, (r) => r.code_version ?? '').sort().join(', ')}`);
  const times = distinct(rows, (r) => r.timestamp ?? '').sort();
  if (times.length) {
    const minutes = (Date.parse(times[times.length - 1]) - Date.parse(times[0])) / 60000;
    lines.push(`- Rows written ${times[0]} to ${times[times.length - 1]} (${minutes.toFixed(1)} min)`);
  }
  const sum = (c: string) => rows.reduce((a, r) => a + (Number(r[c]) || 0), 0);
  lines.push(`- Compute: ${rows.length} cells; ${sum('prune_seconds').toFixed(0)} s pruning and ${sum('eval_seconds').toFixed(0)} s evaluating (wall, per worker), ${sum('cpu_seconds').toFixed(0)} s CPU`);
  return lines.join('\n');
}

export interface ReportFiles {
  markdown: string;
  svgs: string[];
}

export interface ReportOptions {
  /** Output folder (default: the first CSV's folder; created when missing). */
  out?: string;
  /** Base name of the written files (default: the CSV's name; for several CSVs their common prefix). */
  name?: string;
  /** Replace files at the output names that crepe report did not write. */
  force?: boolean;
}

/** The base name of a report of `files`: the CSV's name, or the common prefix of several names (`main.1of3`, `main.2of3` -> `main`). */
export function reportBaseName(files: readonly string[]): string {
  const names = files.map((f) => path.basename(f, path.extname(f)));
  if (names.length === 1) return names[0];
  let prefix = names[0];
  for (const n of names.slice(1)) while (!n.startsWith(prefix)) prefix = prefix.slice(0, -1);
  return prefix.replace(/[-_.\s]+$/, '') || 'report';
}

/**
 * Whether `file` is a report file crepe wrote (so a rerun may replace it): the Markdown starts with
 * the report's heading and names the report command; an SVG is a vega drawing titled as the
 * report titles its plots. Recognised by content rather than by a marker beside it, so the
 * reports committed to a repository stay replaceable after a checkout.
 */
export function isReportFile(file: string): boolean {
  let head: string;
  try {
    // A report's files are small (an SVG's title comes after its marks, so the whole file is read).
    if (fs.statSync(file).size > 64 << 20) return false;
    head = fs.readFileSync(file, 'utf8');
  } catch {
    return false;
  }
  if (file.endsWith('.md')) return head.startsWith('# Results: ') && head.includes('\n## Settings\n') && head.includes('- Report: `crepe report ');
  if (file.endsWith('.svg')) return head.startsWith('<svg') && head.includes('class="marks"') && /<text[^>]*>[^<]*: perplexity (vs unstructured sparsity|at N:M sparsity \(keep N of every M\))<\/text>/.test(head);
  return false;
}

/**
 * The output policy of `crepe report`, checked before any plot is drawn: the folder is (or can
 * be made) a folder, no output is an input (`crepe report x.md` would otherwise write x.md over
 * itself), and a file already at an output name is replaced only when crepe report wrote it or
 * `force` is given.
 */
function checkReportOutputs(dir: string, names: string[], inputs: readonly string[], force: boolean): void {
  const st = statPath(dir);
  if (st && !st.isDirectory()) throw new CrepeError(`--out ${dir} is not a folder`);
  if (!st) {
    // The nearest existing ancestor must be a writable folder.
    let head = path.resolve(dir);
    while (!statPath(head) && path.dirname(head) !== head) head = path.dirname(head);
    if (!statPath(head)?.isDirectory()) throw new CrepeError(`cannot create folder ${dir}: ${head} is not a folder`);
    try {
      fs.accessSync(head, fs.constants.W_OK);
    } catch {
      throw new CrepeError(`cannot create folder ${dir}: permission denied on ${head}`);
    }
  }
  const ins = inputs.map((p) => ({ p, c: canonicalPath(p) }));
  for (const name of names) {
    const target = path.join(dir, name);
    const hit = ins.find((i) => i.c === canonicalPath(target));
    if (hit) throw new CrepeError(`the report would write ${target} over its input ${hit.p}: give another --name or --out`);
  }
  if (!st) return;
  checkOutputs(names.map((n) => ({ flag: '--out', path: path.join(dir, n), kind: 'file' as const, isDir: false })), [...inputs]);
  for (const name of names) {
    const target = path.join(dir, name);
    const t = statPath(target, { follow: false });
    if (!t || force) continue;
    if (!t.isFile()) throw new CrepeError(`--out: ${target} is not a regular file; refusing to replace it`);
    if (!isReportFile(target)) throw new CrepeError(`--out: ${target} exists and is not a report crepe wrote; refusing to replace it (pass --force to replace it anyway)`);
  }
}

let stagedCounter = 0;

/**
 * Write every file of a report or none: each is written to a temporary beside its target (named as
 * lib/io/atomic names them, so a killed run's leftovers are cleaned by the next write) and
 * fsync'd, and only when all are complete are they renamed into place. On failure the
 * temporaries, and the folder when this call created it, are removed.
 */
function writeAllOrNothing(dir: string, files: { name: string; text: string }[]): void {
  const created = !statPath(dir);
  const staged: { tmp: string; target: string }[] = [];
  try {
    makeDirs(dir);
    for (const f of files) {
      const target = path.resolve(dir, f.name);
      cleanStaleTemporaries(target);
      const tmp = path.join(path.dirname(target), `.${f.name}.crepe-${process.pid}-${Date.now().toString(36)}${stagedCounter++}.tmp`);
      staged.push({ tmp, target });
      const fd = fs.openSync(tmp, 'wx');
      try {
        fs.writeSync(fd, Buffer.from(f.text, 'utf8'));
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
    }
    for (const s of staged) fs.renameSync(s.tmp, s.target);
  } catch (e) {
    for (const s of staged) fs.rmSync(s.tmp, { force: true });
    if (created) fs.rmSync(dir, { recursive: true, force: true });
    if (e instanceof CrepeError) throw e;
    const code = (e as NodeJS.ErrnoException).code;
    const why: Record<string, string> = { EACCES: 'permission denied', EPERM: 'permission denied', ENOSPC: 'no space left on the device', EROFS: 'read-only file system', EDQUOT: 'disk quota exceeded' };
    throw new CrepeError(`cannot write the report in ${dir}: ${code ? why[code] ?? code : (e as Error).message}; nothing was written`);
  }
}

/**
 * Write <out>/<name>.md and its SVG plots from one results CSV or the merged shards of one sweep.
 * Every output is checked before any plot is drawn, and all files are written or none.
 */
export async function writeReport(csvFiles: string | readonly string[], opts: ReportOptions = {}): Promise<ReportFiles> {
  const files = typeof csvFiles === 'string' ? [csvFiles] : [...csvFiles];
  const results = readResults(files);
  const dir = opts.out ?? path.dirname(files[0]);
  const base = opts.name ?? reportBaseName(files);
  if (!/^[^/\\]+$/.test(base) || base === '.' || base === '..') throw new CrepeError(`--name '${base}' is not a file name`);
  const tables = buildTables(results);
  const plots: { dataset: string; kind: 'unstructured' | 'nm'; points: PlotPoint[]; name: string }[] = [];
  for (const dataset of results.datasets) {
    if (!tables.some((t) => t.dataset === dataset)) continue;
    for (const kind of ['unstructured', 'nm'] as const) {
      const points = plotPoints(tables, dataset, kind);
      if (points.length) plots.push({ dataset, kind, points, name: `${base}_${dataset}_${kind}.svg` });
    }
  }
  const mdName = `${base}.md`;
  checkReportOutputs(dir, [mdName, ...plots.map((p) => p.name)], files, !!opts.force);

  const command = ['crepe report', ...files, ...(opts.out !== undefined ? ['--out', opts.out] : []), ...(opts.name !== undefined ? ['--name', opts.name] : [])].join(' ');
  const md: string[] = [
    `# Results: ${files.map((f) => path.basename(f)).join(' + ')}`,
    '',
    'Perplexity (lower is better). Rows: methods, dense first; columns: unstructured sparsity (each row prunes within its comparison group) and N:M structures (keep N of every M). A cell run with several calibration seeds shows mean ± sample standard deviation (n = number of seeds); the best pruned mean of each column is in **bold**. A cell whose achieved sparsity is more than half a point off the column says so, e.g. "45% sparse" (per-row rounding on narrow rows, or the OWL N:M allocation, which moves whole blocks to another N:M pattern); more than two points off, it is neither bold nor plotted. Each heading names the split its numbers are on.',
  ];
  const out: { name: string; text: string }[] = [];
  for (const dataset of results.datasets) {
    const mine = tables.filter((t) => t.dataset === dataset);
    if (mine.length === 0) continue;
    md.push('', `## ${dataset}`);
    for (const t of mine) md.push('', `### ${t.model} on ${dataset}${t.split ? `, ${t.split} split` : ''} (${t.windows} windows x ${t.seqlen} tokens)`, '', tableMarkdown(t));
    for (const p of plots.filter((x) => x.dataset === dataset)) {
      const spec = p.kind === 'nm' ? nmPlotSpec(dataset, p.points) : sparsityPlotSpec(dataset, p.points);
      out.push({ name: p.name, text: await renderSvg(spec) });
      md.push('', `![${dataset} ${p.kind === 'nm' ? 'N:M' : 'unstructured'}](${p.name})`);
    }
  }
  const zeroshot = zeroshotReportMarkdown(results.columns, results.rows);
  if (zeroshot) md.push('', zeroshot);
  md.push('', settingsMarkdown(results, tables, command), '');
  writeAllOrNothing(dir, [{ name: mdName, text: md.join('\n') }, ...out]);
  return { markdown: path.join(dir, mdName), svgs: out.map((f) => path.join(dir, f.name)) };
}
