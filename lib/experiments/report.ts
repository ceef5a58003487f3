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
import { makeDirs, writeFileAtomic } from '../io/atomic';
import { checkRows } from './row-check';
import { parseCsv } from '../util/csv';
import { DENSE } from './cell';
import { zeroshotReportMarkdown } from './zeroshot-columns';

export type ResultRow = Record<string, string>;

export interface Results {
  file: string;
  /** Column prefixes of the evaluation datasets (`tinystories` for `tinystories_ppl`). */
  datasets: string[];
  /** One row per key (the last one written wins), in file order. */
  rows: ResultRow[];
  /** The CSV's columns (zero-shot tables look for `zs_<task>_*`). */
  columns: string[];
}

export function readResults(file: string): Results {
  if (!fs.existsSync(file) || !fs.statSync(file).isFile()) throw new CrepeError(`results file not found: ${file}`);
  const text = fs.readFileSync(file, 'utf8').replace(/\r\n/g, '\n');
  // A sweep may be running (or have been killed): ignore an unfinished last line.
  const table = parseCsv(text.slice(0, text.lastIndexOf('\n') + 1), file);
  for (const c of ['key', 'model', 'label', 'structure', 'group', 'sparsity']) {
    if (!table.columns.includes(c)) throw new CrepeError(`${file} is not a sweep results CSV (no '${c}' column)`);
  }
  const datasets = table.columns.filter((c) => c.endsWith('_dense_ppl')).map((c) => c.slice(0, -'_dense_ppl'.length));
  const checked = checkRows(table, file);
  for (const p of checked.problems) process.stderr.write(`crepe: ${p}; the row is left out of the report\n`);
  const rows: ResultRow[] = checked.rows;
  if (rows.length === 0) throw new CrepeError(`${file} holds no results yet`);
  return { file, datasets, rows, columns: table.columns };
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
  // Per model and dataset, the table with the most results first (it feeds the plots).
  const modelOrder = uniqueInOrder(results.rows.map((r) => r.model));
  const size = (t: PplTable) => t.rows.reduce((a, r) => a + r.values.filter((v) => v !== null).length, 0);
  return tables.sort(
    (a, b) =>
      modelOrder.indexOf(a.model) - modelOrder.indexOf(b.model) ||
      results.datasets.indexOf(a.dataset) - results.datasets.indexOf(b.dataset) ||
      size(b) - size(a),
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
    for (const r of hits) {
      const v = pplOf(r, dataset);
      if (v !== null) bySeed.set(r.calib_seed ?? '', v);
    }
    return bySeed.size ? seedStat([...bySeed.values()]) : null;
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
    const vals = t.rows.filter((r) => !r.dense).map((r) => r.values[c]?.mean).filter((v): v is number => v !== undefined && Number.isFinite(v));
    return vals.length ? formatPpl(Math.min(...vals)) : null;
  });
  const cell = (v: SeedStat | null, c: number, dense: boolean) => {
    if (v === null) return '–';
    const s = formatStat(v);
    return !dense && formatPpl(v.mean) === best[c] ? `**${s}**` : s;
  };
  const lines = [
    `| Method | Group | ${t.columns.map((c) => c.title).join(' | ')} |`,
    `|:--|:--|${t.columns.map(() => '--:').join('|')}|`,
    ...t.rows.map((r) => `| ${r.dense ? 'Dense' : r.label} | ${r.group || '–'} | ${r.values.map((v, c) => cell(v, c, r.dense)).join(' | ')} |`),
  ];
  return lines.join('\n');
}

// ---------------------------------------------------------------------------------------------
// plots

interface PlotPoint {
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
}

/** Series name: the label, plus the group when a label has rows in several groups. */
function seriesNames(t: PplTable): string[] {
  return t.rows.map((r) => (t.rows.filter((o) => o.label === r.label).length > 1 ? `${r.label} (${r.group})` : r.label));
}

/** Points of the first (largest) table of each model for one dataset and column kind. */
function plotPoints(tables: PplTable[], dataset: string, kind: 'unstructured' | 'nm'): PlotPoint[] {
  const points: PlotPoint[] = [];
  const seen = new Set<string>();
  for (const t of tables) {
    if (t.dataset !== dataset || seen.has(t.model)) continue;
    seen.add(t.model);
    const names = seriesNames(t);
    t.rows.forEach((r, i) => {
      if (r.dense) {
        const d = r.values[0];
        if (d !== null) points.push({ model: t.model, method: 'dense', kind: 'dense', ppl: d.mean, lo: d.mean, hi: d.mean, n: d.n });
        return;
      }
      t.columns.forEach((c, k) => {
        const v = r.values[k];
        if (c.kind !== kind || v === null || !(v.mean > 0) || !Number.isFinite(v.mean)) return;
        // A log axis cannot show mean - std <= 0: clip the bar at a tenth of the mean.
        const lo = Math.max(v.mean - v.std, v.mean / 10);
        points.push({ model: t.model, method: names[i], kind: 'pruned', sparsity: c.sparsity, structure: c.id, ppl: v.mean, lo, hi: v.mean + v.std, n: v.n });
      });
    });
  }
  return points.some((p) => p.kind === 'pruned') ? points : [];
}

const denseRule = {
  transform: [{ filter: "datum.kind === 'dense'" }],
  mark: { type: 'rule', strokeDash: [5, 4], color: 'black' },
  encoding: { y: { field: 'ppl', type: 'quantitative' } },
} as const;

/**
 * One panel per model: the pruned points drawn by `pruned` (a vega-lite layer), the dense model as
 * a dashed rule, each panel with its own y scale (perplexities differ by orders of magnitude).
 */
function perModelPanels(title: string, points: PlotPoint[], pruned: object, resolve: object): TopLevelSpec {
  return {
    $schema: 'https://vega.github.io/schema/vega-lite/v5.json',
    title: { text: title, subtitle: 'log scale; dashed line = dense model; whiskers = mean ± std over calibration seeds' },
    data: { values: points },
    facet: { column: { field: 'model', type: 'nominal', title: null } },
    spec: {
      width: 300,
      height: 220,
      layer: [{ transform: [{ filter: "datum.kind === 'pruned'" }], ...pruned }, denseRule],
    },
    resolve: { scale: resolve },
  } as TopLevelSpec;
}

/** Vega-lite spec: PPL (log) vs unstructured sparsity, one line per method, one panel per model. */
export function sparsityPlotSpec(dataset: string, points: PlotPoint[]): TopLevelSpec {
  return perModelPanels(
    `${dataset}: perplexity vs unstructured sparsity`,
    points,
    {
      encoding: {
        x: { field: 'sparsity', type: 'quantitative', title: 'sparsity', axis: { format: '.0%' } },
        color: { field: 'method', type: 'nominal', title: 'method' },
      },
      layer: [
        { mark: { type: 'line', point: true }, encoding: { y: { field: 'ppl', type: 'quantitative', title: 'perplexity', scale: { type: 'log' } } } },
        { mark: { type: 'rule' }, encoding: { y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } },
      ],
    },
    { y: 'independent' },
  );
}

/** Vega-lite spec: grouped bars of PPL (log) per N:M structure and method, one panel per model. */
export function nmPlotSpec(dataset: string, points: PlotPoint[]): TopLevelSpec {
  const base = 10 ** Math.floor(Math.log10(Math.min(...points.map((p) => p.lo))));
  return perModelPanels(
    `${dataset}: perplexity at N:M sparsity (keep N of every M)`,
    points,
    {
      encoding: {
        x: { field: 'structure', type: 'nominal', title: 'structure', axis: { labelAngle: 0 } },
        xOffset: { field: 'method', type: 'nominal' },
        color: { field: 'method', type: 'nominal', title: 'method' },
      },
      layer: [
        // Bars on a log axis need an explicit positive base (the default starts at 0).
        { mark: { type: 'bar' }, encoding: { y: { field: 'ppl', type: 'quantitative', title: 'perplexity', scale: { type: 'log' }, stack: null }, y2: { datum: base } } },
        { mark: { type: 'rule', color: 'black' }, encoding: { y: { field: 'lo', type: 'quantitative' }, y2: { field: 'hi' } } },
      ],
    },
    // A model's panel shows only the structures it was pruned with (M must divide its widths).
    { x: 'independent', y: 'independent' },
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

function settingsMarkdown(results: Results, tables: PplTable[], csvArg: string, outDir: string): string {
  const rows = results.rows;
  const pruned = rows.filter((r) => r.method !== DENSE);
  const lines = ['## Settings', ''];
  for (const cfg of distinct(rows, (r) => r.config ?? '')) lines.push(`- Sweep: \`crepe sweep --config ${cfg} --out ${csvArg}\``);
  lines.push(`- Report: \`crepe report ${csvArg} --out ${outDir}\``);
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
    const cal = [...seedsOf].map(([setting, seeds]) => `${setting}, ${seeds.length > 1 ? `seeds ${seeds.join(', ')}` : `seed ${seeds[0]}`}`);
    lines.push(`- ${model}: calibration ${cal.join('; ') || '–'}; next-block inputs from the ${distinct(mine, (r) => r.propagate ?? '').join('/') || '–'} model`);
    for (const t of tables.filter((x) => x.model === model)) {
      const dense = t.rows[0].values[0];
      const where = t.split ? `${t.split} split${t.slice ? `, ${t.slice}` : ''}: ` : '';
      lines.push(`  - eval ${t.dataset}: ${where}${t.windows} windows x ${t.seqlen} tokens; dense PPL ${dense === null ? '–' : formatPpl(dense.mean)}`);
    }
  }
  const methods = uniqueInOrder(pruned.map((r) => `${r.label}: ${r.method} ${r.params}`));
  lines.push(`- Methods (label: method params): ${methods.map((m) => `\`${m}\``).join(', ')}`);
  lines.push(`- Backend: ${distinct(rows, (r) => r.backend ?? '').join(', ')}; code version: ${distinct(rows, (r) => r.code_version ?? '').join(', ')}`);
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

/** Write <out>/<csv name>.md and its SVG plots (each file atomically). */
export async function writeReport(csvFile: string, outDir?: string): Promise<ReportFiles> {
  const results = readResults(csvFile);
  const dir = outDir ?? path.dirname(csvFile);
  if (fs.existsSync(dir) && !fs.statSync(dir).isDirectory()) throw new CrepeError(`--out ${dir} is not a folder`);
  makeDirs(dir);
  const base = path.basename(csvFile, path.extname(csvFile));
  const tables = buildTables(results);
  const md: string[] = [
    `# Results: ${path.basename(csvFile)}`,
    '',
    'Perplexity (lower is better). Rows: methods, dense first; columns: unstructured sparsity (each row prunes within its comparison group) and N:M structures (keep N of every M). A cell run with several calibration seeds shows mean ± sample standard deviation (n = number of seeds); the best pruned mean of each column is in **bold**. Each heading names the split its numbers are on.',
  ];
  const svgs: string[] = [];
  for (const dataset of results.datasets) {
    const mine = tables.filter((t) => t.dataset === dataset);
    if (mine.length === 0) continue;
    md.push('', `## ${dataset}`);
    for (const t of mine) md.push('', `### ${t.model} on ${dataset}${t.split ? `, ${t.split} split` : ''} (${t.windows} windows x ${t.seqlen} tokens)`, '', tableMarkdown(t));
    const plots: [string, PlotPoint[], (d: string, p: PlotPoint[]) => TopLevelSpec][] = [
      ['unstructured', plotPoints(tables, dataset, 'unstructured'), sparsityPlotSpec],
      ['nm', plotPoints(tables, dataset, 'nm'), nmPlotSpec],
    ];
    for (const [kind, points, specOf] of plots) {
      if (points.length === 0) continue;
      const name = `${base}_${dataset}_${kind}.svg`;
      writeFileAtomic(path.join(dir, name), await renderSvg(specOf(dataset, points)));
      svgs.push(path.join(dir, name));
      md.push('', `![${dataset} ${kind === 'nm' ? 'N:M' : 'unstructured'}](${name})`);
    }
  }
  const zeroshot = zeroshotReportMarkdown(results.columns, results.rows);
  if (zeroshot) md.push('', zeroshot);
  md.push('', settingsMarkdown(results, tables, csvFile, dir), '');
  const markdown = path.join(dir, `${base}.md`);
  writeFileAtomic(markdown, md.join('\n'));
  return { markdown, svgs };
}
