/**
 * Sweep cells: one (model, method, structure, group, sparsity, calibration, evaluation) setting,
 * its stable key, and its row in the results CSV. A config expands into cells here; the dense
 * baseline of each model is a cell too (prune = null), so its PPL is computed once, stored as a
 * row, and read back on resume.
 */
import { createHash } from 'crypto';
import { Split, datasetSplit, loadDataset } from '../data/datasets';
import { CrepeError } from '../errors';
import { checkSeqlen } from '../eval/evaluate';
import { OpenedModel, openModel } from '../model/resolve';
import { defaultMemoryLimit } from '../plan/memory';
import { DENSE_METHOD, Recipe, RecipeInput, parseRecipe } from '../recipe/schema';
import { planRecipe } from '../recipe/run';
import { resolveRecipe } from '../recipe/resolve';
import { linearNames, linearShape } from '../model/types';
import { CalibrationSpec } from '../prune/pipeline';
import { nmSparsity, parseStructure, validateStructureFor } from '../prune/select';
import { Params, getStrategy } from '../prune/strategy';
import { MethodEntry, SweepConfig, ZeroshotEntry, atField, fieldError } from './config';
import { OWL_DEFAULTS } from '../prune/addons/owl';
import { DSNOT_DEFAULTS } from '../recipe/resolve';
import { ZeroshotOutcome, zeroshotColumns, zeroshotRowValues } from './zeroshot-columns';

/** One evaluation, with the window length resolved against the model's context. */
export interface EvalSpec {
  dataset: string;
  seqlen: number;
  /** null = every window of the split. */
  maxWindows: number | null;
}

export interface PruneSettings {
  method: string;
  params: Params;
  /** 'unstructured' or 'N:M' (keep N of every M). */
  structure: string;
  /** Comparison group for unstructured sparsity; null for N:M. */
  group: 'row' | 'matrix' | null;
  /** Target sparsity (1 - N/M for N:M). */
  sparsity: number;
  calibration: CalibrationSpec;
  propagate: 'pruned' | 'dense';
  /** Add-ons, with their defaults filled (absent: uniform allocation, no re-pruning, no permutation). */
  allocation?: { method: 'owl'; m: number; lambda: number };
  refine?: { method: 'dsnot'; maxCycles: number; threshold: number; skip: 'mlp' | 'attn' | 'none' };
  permute?: { refine: boolean };
}

export interface Cell {
  /** Short sha256 of the canonical settings (model, eval, prune); label excluded. */
  key: string;
  model: string;
  label: string;
  eval: EvalSpec[];
  /** null: the dense baseline. */
  prune: PruneSettings | null;
  /** Zero-shot tasks scored on the cell's model (absent: none, and the key is as before). */
  zeroshot?: ZeroshotEntry;
}

/** The method name and label of dense baseline rows. */
export const DENSE = 'dense';

/** What the parent needs to know about a model to expand and validate a sweep. */
export interface ModelInfo {
  name: string;
  maxSeqLen: number;
  /** [out, in] of each prunable linear. */
  shapes: [number, number][];
}

/** JSON with object keys sorted, so equal settings always hash alike. */
export function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(',')}]`;
  if (v !== null && typeof v === 'object') {
    const entries = Object.entries(v as Record<string, unknown>)
      .filter(([, x]) => x !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(',')}}`;
  }
  return JSON.stringify(v);
}

export function cellKey(settings: { model: string; eval: EvalSpec[]; prune: PruneSettings | null; zeroshot?: ZeroshotEntry }): string {
  return createHash('sha256').update(canonicalJson(settings)).digest('hex').slice(0, 16);
}

/** A method's add-ons with their defaults filled for a structure (only those that are on). */
export function resolveAddons(m: MethodEntry, nm: boolean): Pick<PruneSettings, 'allocation' | 'refine' | 'permute'> {
  const out: Pick<PruneSettings, 'allocation' | 'refine' | 'permute'> = {};
  if (m.allocation?.method === 'owl') {
    out.allocation = { method: 'owl', m: m.allocation.m ?? OWL_DEFAULTS.m, lambda: m.allocation.lambda ?? (nm ? OWL_DEFAULTS.lambdaNM : OWL_DEFAULTS.lambda) };
  }
  if (m.refine?.method === 'dsnot') {
    const r = m.refine;
    out.refine = { method: 'dsnot', maxCycles: r.maxCycles ?? DSNOT_DEFAULTS.maxCycles, threshold: r.threshold ?? DSNOT_DEFAULTS.threshold, skip: r.skip ?? DSNOT_DEFAULTS.skip };
  }
  if (m.permute) out.permute = { refine: m.permute.refine };
  return out;
}

function makeCell(model: string, label: string, evals: EvalSpec[], prune: PruneSettings | null, zeroshot?: ZeroshotEntry): Cell {
  return { key: cellKey({ model, eval: evals, prune, zeroshot }), model, label, eval: evals, prune, ...(zeroshot ? { zeroshot } : {}) };
}

export interface Expansion {
  cells: Cell[];
  /** (model, structure) pairs left out because the model's widths do not allow them. */
  skipped: string[];
}

/**
 * Expand a config into cells: per model, the dense baseline first, then methods x calibration
 * seeds x structures x groups x sparsities. N:M structures ignore the sparsity and group axes (one cell each).
 * Settings a model cannot take are errors naming the config field (a window longer than its
 * context), except an N:M structure whose M does not divide some width of one model but fits
 * another: that pair is skipped (stories260K's 172-wide down projection rules out 4:8, while
 * babyllama-char takes it) and listed in `skipped`. Duplicates (e.g. groups 'default' and 'row'
 * for Wanda) collapse to one cell.
 */
export function expandCells(config: SweepConfig, models: ModelInfo[]): Expansion {
  const err = (path: (string | number)[], fn: () => void) => atField(config.file, path, fn);
  const skipped: string[] = [];
  const fitsSomeModel = new Set<string>();
  const firstReason = new Map<string, string>();
  const fits = (model: ModelInfo, structure: string): string | null => {
    try {
      for (const [o, i] of model.shapes) validateStructureFor(parseStructure(structure, undefined, 'row'), o, i);
      return null;
    } catch (e) {
      if (e instanceof CrepeError) return e.message;
      throw e;
    }
  };
  const dense: Cell[] = [];
  const pruned: Cell[] = [];
  for (const model of models) {
    const ctx = model.maxSeqLen;
    const evals: EvalSpec[] = config.eval.map((e, i) => {
      const seqlen = e.seqlen ?? ctx;
      err(['eval', i, 'seqlen'], () => checkSeqlen(seqlen, ctx));
      return { dataset: e.dataset, seqlen, maxWindows: e.maxWindows ?? null };
    });
    const cal = config.calibration;
    const calibrationSeqlen = cal.seqlen ?? ctx;
    err(['calibration', 'seqlen'], () => checkSeqlen(calibrationSeqlen, ctx));
    // Which of the config's structures (and of each method's own) this model's widths take.
    const fitting = new Map<string, boolean>();
    const takes = (structure: string): boolean => {
      if (!fitting.has(structure)) {
        const why = fits(model, structure);
        if (why) {
          skipped.push(`${model.name} ${structure}: ${why}`);
          if (!firstReason.has(structure)) firstReason.set(structure, `${why} (model ${model.name})`);
        } else fitsSomeModel.add(structure);
        fitting.set(structure, !why);
      }
      return fitting.get(structure)!;
    };
    config.structures.forEach(takes);
    dense.push(makeCell(model.name, DENSE, evals, null, config.zeroshot));
    for (const m of config.methods) for (const seed of cal.seeds) {
      const calibration: CalibrationSpec = { dataset: cal.dataset, nsamples: cal.nsamples, seqlen: calibrationSeqlen, seed };
      const base = { method: m.name, params: m.params, calibration, propagate: config.propagate };
      const structures = (m.structures ?? config.structures).filter(takes);
      for (const structure of structures) {
        const parsed = parseStructure(structure, undefined, 'row');
        const addons = resolveAddons(m, parsed.kind === 'nm');
        if (parsed.kind === 'nm') {
          pruned.push(makeCell(model.name, m.label, evals, { ...base, structure, group: null, sparsity: nmSparsity(parsed.n, parsed.m), ...addons }, config.zeroshot));
          continue;
        }
        for (const g of config.groups) {
          const group = g === 'default' ? getStrategy(m.name).defaultGroup : g;
          for (const sparsity of m.sparsities ?? config.sparsities) {
            pruned.push(makeCell(model.name, m.label, evals, { ...base, structure, group, sparsity, ...addons }, config.zeroshot));
          }
        }
      }
    }
  }
  const methodStructures = config.methods.flatMap((m, i) => (m.structures ?? []).map((structure, j) => ({ structure, path: ['methods', i, 'structures', j] as (string | number)[] })));
  for (const { structure, path } of methodStructures) {
    const reason = firstReason.get(structure);
    if (reason && !fitsSomeModel.has(structure)) throw fieldError(config.file, path, reason);
  }
  config.structures.forEach((structure, i) => {
    const reason = firstReason.get(structure);
    if (reason && !fitsSomeModel.has(structure)) throw fieldError(config.file, ['structures', i], reason);
  });
  if (pruned.length === 0) {
    const empty = (['models', 'methods', 'groups'] as const).find((k) => config[k].length === 0);
    const why = empty ? `'${empty}' is empty` : `'sparsities' is empty and 'structures' has no N:M entry`;
    throw new CrepeError(`${config.file}: empty sweep: no cells to run (${why})`);
  }
  const seen = new Set<string>();
  const cells = [...dense, ...pruned].filter((c) => !seen.has(c.key) && seen.add(c.key));
  return { cells, skipped };
}

/**
 * Open every model of the config (header and tokenizer only) and check the datasets, then
 * expand and plan every cell's memory (as runRecipe would). All of this runs before any work,
 * so a bad config never leaves partial output.
 */
export function planCells(config: SweepConfig, opts: { jobs?: number } = {}): Expansion {
  const check = (path: (string | number)[], fn: () => void) => atField(config.file, path, fn);
  const opened = new Map<string, OpenedModel>();
  try {
    const models: ModelInfo[] = config.models.map((name, i) =>
      atField(config.file, ['models', i], () => {
        const m = openModel(name);
        opened.set(name, m);
        const cfg = m.source.config;
        return { name, maxSeqLen: cfg.maxSeqLen, shapes: linearNames(cfg).map((l) => linearShape(cfg, l)) };
      }),
    );
    if (config.models.length > 0) {
      config.eval.forEach((e, i) => check(['eval', i, 'dataset'], () => loadDataset(e.dataset, 'eval')));
      check(['calibration', 'dataset'], () => loadDataset(config.calibration.dataset, 'calib'));
    }
    const expansion = expandCells(config, models);
    // Every cell's memory plan, before any work: a worker runs one cell at a time, each within
    // its share of the host budget (wasm heap limits assumed, the tighter case).
    const limit = defaultMemoryLimit() / Math.max(1, opts.jobs ?? 1);
    const planned = new Set<string>();
    for (const cell of expansion.cells) {
      const recipe = cellRecipe(cell);
      const p = cell.prune;
      const shape = JSON.stringify([cell.model, p?.method, p?.calibration, p?.propagate, !!p?.refine, !!p?.allocation, cell.eval]);
      if (planned.has(shape)) continue; // cells that differ only in sparsity or structure need the same memory
      planned.add(shape);
      const model = opened.get(cell.model)!;
      const plan = planRecipe(model, resolveRecipe(recipe, model.source.config), true, limit);
      if (!plan.fits) throw new CrepeError(`${config.file}: cell ${describeCell(cell)}: ${plan.refusal}`);
    }
    return expansion;
  } finally {
    for (const m of opened.values()) m.source.close();
  }
}

/** The recipe a cell runs: its model, pruning and evaluations (the dense baseline is method 'dense'). */
export function cellRecipe(cell: Cell): Recipe {
  const p = cell.prune;
  const input: RecipeInput = {
    model: cell.model,
    method: p ? p.method : DENSE_METHOD,
    params: p?.params ?? {},
    structure: p?.structure ?? 'unstructured',
    ...(p?.group ? { sparsity: p.sparsity, group: p.group } : {}),
    allocation: p?.allocation ?? { method: 'uniform' },
    refine: p?.refine ?? { method: 'none' },
    permute: p?.permute ?? null,
    ...(p ? { calibration: { dataset: p.calibration.dataset, nsamples: p.calibration.nsamples, seqlen: p.calibration.seqlen, seed: p.calibration.seed } } : {}),
    propagate: p?.propagate ?? 'pruned',
    eval: cell.eval.map((e) => ({ dataset: e.dataset, seqlen: e.seqlen, ...(e.maxWindows !== null ? { maxWindows: e.maxWindows } : {}) })),
    compareDense: false,
    ...(cell.zeroshot ? { zeroshot: { tasks: cell.zeroshot.tasks, ...(cell.zeroshot.limit !== undefined ? { limit: cell.zeroshot.limit } : {}), jobs: 1 } } : {}),
  };
  return parseRecipe(input, `cell ${describeCell(cell)}`);
}

/** One line per cell, for logs and --dry-run. */
export function describeCell(c: Cell): string {
  if (!c.prune) return `${c.model} dense`;
  const p = c.prune;
  const what = p.group ? `${p.structure} ${p.sparsity} per ${p.group}` : p.structure;
  return `${c.model} ${c.label} ${what}`;
}

// ---------------------------------------------------------------------------------------------
// results

/** One perplexity measurement. */
export interface EvalOutcome {
  dataset: string;
  /** Which split the number is on (test / validation) and exactly which text. */
  split: Split;
  slice: string;
  seqlen: number;
  windows: number;
  ppl: number;
  seconds: number;
}

/** What a worker returns for a cell. */
export interface CellResult {
  key: string;
  /** Fraction of prunable weights set to zero (0 for dense). */
  achievedSparsity: number;
  evals: EvalOutcome[];
  pruneSeconds: number;
  evalSeconds: number;
  /** CPU time of the worker for the whole cell: the work, independent of machine load. */
  cpuSeconds: number;
  backend: string;
  /** Zero-shot results when the cell asks for them. */
  zeroshot?: ZeroshotOutcome[];
}

/** Column-name form of a dataset spec ('text:/a/b.txt' -> 'text_a_b_txt'). */
export function datasetColumn(dataset: string): string {
  return dataset.replace(/[^A-Za-z0-9]+/g, '_').replace(/^_|_$/g, '');
}

const LEADING = [
  'key', 'model', 'method', 'label', 'params', 'structure', 'group', 'sparsity', 'achieved_sparsity',
  'calib_dataset', 'calib_nsamples', 'calib_seqlen', 'calib_seed', 'propagate',
] as const;
const TRAILING = ['prune_seconds', 'eval_seconds', 'cpu_seconds', 'backend', 'code_version', 'config', 'timestamp'] as const;

/** The CSV columns for a list of evaluation datasets (six per dataset) and zero-shot tasks (seven per task). */
export function resultColumns(evalDatasets: readonly string[], zeroshotTasks: readonly string[] = []): string[] {
  // Two datasets whose names map to one column would both hold the second one's PPL.
  const byColumn = new Map<string, string>();
  for (const d of evalDatasets) {
    const other = byColumn.get(datasetColumn(d));
    if (other !== undefined) throw new CrepeError(`evaluation datasets '${other}' and '${d}' both map to the CSV column '${datasetColumn(d)}': rename one of the files`);
    byColumn.set(datasetColumn(d), d);
  }
  const perDataset = evalDatasets.flatMap((d) => {
    const c = datasetColumn(d);
    return [`${c}_split`, `${c}_slice`, `${c}_seqlen`, `${c}_windows`, `${c}_dense_ppl`, `${c}_ppl`];
  });
  return [...LEADING, ...perDataset, ...zeroshotColumns(zeroshotTasks), ...TRAILING];
}

export type Row = Record<string, string | number>;

export interface RowContext {
  codeVersion: string;
  config: string;
  timestamp: string;
}

/** The CSV row of a finished cell; `dense` holds the model's dense results (the same for dense cells). */
export function resultRow(cell: Cell, result: CellResult, dense: readonly EvalOutcome[], ctx: RowContext): Row {
  const p = cell.prune;
  const row: Row = {
    key: cell.key,
    model: cell.model,
    method: p ? p.method : DENSE,
    label: cell.label,
    params: JSON.stringify(p ? p.params : {}),
    structure: p ? p.structure : DENSE,
    group: p?.group ?? '',
    sparsity: p ? p.sparsity : 0,
    achieved_sparsity: result.achievedSparsity,
    calib_dataset: p?.calibration.dataset ?? '',
    calib_nsamples: p?.calibration.nsamples ?? '',
    calib_seqlen: p?.calibration.seqlen ?? '',
    calib_seed: p?.calibration.seed ?? '',
    propagate: p?.propagate ?? '',
  };
  for (const e of result.evals) {
    const d = dense.find((x) => x.dataset === e.dataset);
    if (!d) throw new Error(`no dense result for ${cell.model} on ${e.dataset}`);
    const c = datasetColumn(e.dataset);
    Object.assign(row, { [`${c}_split`]: e.split, [`${c}_slice`]: e.slice, [`${c}_seqlen`]: e.seqlen, [`${c}_windows`]: e.windows, [`${c}_dense_ppl`]: d.ppl, [`${c}_ppl`]: e.ppl });
  }
  if (result.zeroshot) Object.assign(row, zeroshotRowValues(result.zeroshot));
  return {
    ...row,
    prune_seconds: round(result.pruneSeconds, 3),
    eval_seconds: round(result.evalSeconds, 3),
    cpu_seconds: round(result.cpuSeconds, 3),
    backend: result.backend,
    code_version: ctx.codeVersion,
    config: ctx.config,
    timestamp: ctx.timestamp,
  };
}

function round(x: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(x * f) / f;
}

/** The dense results stored in a dense row, for reuse on resume. */
export function denseFromRow(row: Record<string, string>, evals: readonly EvalSpec[]): EvalOutcome[] {
  return evals.map((e) => {
    const c = datasetColumn(e.dataset);
    return { dataset: e.dataset, split: datasetSplit(e.dataset, 'eval'), slice: row[`${c}_slice`] ?? '', seqlen: Number(row[`${c}_seqlen`]), windows: Number(row[`${c}_windows`]), ppl: Number(row[`${c}_ppl`]), seconds: 0 };
  });
}
