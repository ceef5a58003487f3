/**
 * The search cost comparison's configuration (experiments/search.json): which models and
 * structures, one calibration setting, the two searches' budgets and seeds, the baselines, and
 * which extra runs (transfer between models, PHO with every proxy) to make. Everything a user can
 * get wrong is rejected here, before any work, with one line naming the file and the field, in
 * the style of the sweep config (lib/experiments/config.ts).
 */
import * as fs from 'fs';
import * as path from 'path';
import { z } from 'zod';
import { DEFAULT_BUDGET, DEFAULT_PROXY } from '../search/defaults';
import { CrepeError } from '../errors';
import { BUILTIN_MODELS } from '../model/resolve';
import { Structure, nmSparsity, parseStructure } from '../prune/select';
import { Params, getStrategy, resolveParams } from '../prune/strategy';
import '../prune/strategies';
import { StatsKind, proxySign } from '../search/objective';
import { ProxyName, parseProxy } from '../search/proxies';
import { SearchSpace, buildSpace, parseBounds } from '../search/space';
import { PhoVerify, verifyRungs } from '../search/pho';
import { PHO_PRESETS, PhoPreset, isPhoPreset } from '../search/presets';
import { checkRungs } from '../search/halving';
import { WindowSample } from '../search/evaluator';
import { FINAL_MEASURES } from '../search/final';
import { HillClimbFinal } from '../search/hillclimb';
import { atField, deprecationLine, describeConfigIssue, fieldError, readJsonConfig, renameSnakeKeys } from './config';

const positiveInt = z.number().int().positive();
const seed = z.number().int().min(0);
/** Structure and run names become parts of file names and table cells. */
const fileSafeName = z.string().regex(/^[A-Za-z0-9_.-]+$/, { message: 'must be letters, digits, _, . or - (it is part of file names)' });

const structureSchema = z
  .object({
    name: fileSafeName,
    /** 'unstructured' or N:M (keep N of every M). */
    structure: z.string().min(1),
    /** Fraction pruned, unstructured only (default 0.5). */
    sparsity: z.number().optional(),
  })
  .strict();

const calibrationSchema = z
  .object({
    dataset: z.string().min(1).default('tinystories'),
    nsamples: positiveInt.default(128),
    seed: seed.default(0),
    stats: z.enum(['dense', 'pruned']).default('dense'),
  })
  .strict();

/** What a search's final choice measures (lib/search/final.ts). */
const finalMeasureSchema = z.enum(FINAL_MEASURES);

const hillclimbFinalSchema = z
  .object({
    /** 'search' (its own one-shot PPL), 'pruned' or 'sequential'. */
    measure: finalMeasureSchema,
    /** The climb's best distinct configurations measured again. */
    candidates: positiveInt,
    /** On the first N search windows. */
    windows: positiveInt,
    /** 'sequential' only: calibration windows (default: the calibration's nsamples). */
    calibrationWindows: positiveInt.optional(),
  })
  .strict();

const hillclimbSchema = z
  .object({
    budget: positiveInt.default(DEFAULT_BUDGET.hillclimb),
    searchWindows: positiveInt.default(16),
    /** The final choice among the climb's best configurations (default: the climb's best). */
    final: hillclimbFinalSchema.optional(),
  })
  .strict();

const verifySchema = z
  .object({
    /** Best distinct configurations taken from each proxy run. */
    candidates: positiveInt,
    /** Cumulative search windows per successive-halving rung (one number: one rung). */
    windows: z.union([positiveInt, z.array(positiveInt).min(1)]),
    /** Keep ceil(n / eta) candidates after each rung but the last. */
    eta: z.number().min(2).optional(),
    /** Also measure the search's start point. */
    start: z.boolean().optional(),
    /** What the last rung measures: 'search' (default), 'pruned' or 'sequential'. */
    final: finalMeasureSchema.optional(),
    /** 'sequential' only: calibration windows of the last rung (default: the calibration's nsamples). */
    finalCalibrationWindows: positiveInt.optional(),
  })
  .strict();

/**
 * One PHO variant: the first in the list is the method the cost table compares. A variant named
 * after a built-in one (lib/search/presets.ts: pho-pool, pho-sh, pho-seq, pho-gini) and giving none of
 * proxies, budget, verify and proxyRows is that variant, as `crepe search --search NAME` runs it.
 */
const phoSchema = z
  .object({
    name: fileSafeName,
    /** Proxy names ('default' = the search CLI's default), one CMA-ES run each. */
    proxies: z.array(z.string().min(1)).min(1, { message: 'list at least one proxy' }).optional(),
    budget: positiveInt.optional(),
    /** Multi-fidelity: PPL of each run's best distinct candidates on the first search windows. */
    verify: verifySchema.optional(),
    /** Compute the proxies on this evenly spaced fraction of each layer's rows (default 1). */
    proxyRows: z.number().gt(0).max(1).optional(),
    /** Run only for these of the config's seeds (default: all). */
    seeds: z.array(seed).min(1).optional(),
  })
  .strict();

const baselineSchema = z
  .object({
    name: z.string().min(1),
    method: z.string().min(1),
    params: z.record(z.number()).optional(),
  })
  .strict();

const spaceSchema = z
  .object({
    /** Parameters to search (as the search CLI's --searched). */
    searched: z.array(z.string().min(1)).optional(),
    /** Bounds `name=lo:hi` in parameter units (as --bound). */
    bounds: z.array(z.string()).optional(),
    /** Values of parameters that are not searched (as --param). */
    fixed: z.record(z.number()).optional(),
  })
  .strict();

const configSchema = z
  .object({
    description: z.string().optional(),
    models: z.array(z.string().min(1)).min(1, { message: 'list at least one model' }),
    method: z.string().min(1).default('crepe'),
    structures: z.array(structureSchema).min(1, { message: 'list at least one structure' }),
    calibration: calibrationSchema.default({}),
    /** Search seeds: every search runs once per seed (the calibration stays the same). */
    seeds: z.array(seed).min(1, { message: 'list at least one seed' }).default([0]),
    hillclimb: hillclimbSchema.default({}),
    /**
     * Which validation windows every search measures: 'first' = the first searchWindows windows
     * (a few consecutive stories), 'spread' = as many windows spread over the whole split.
     */
    searchSample: z.enum(['first', 'spread']).default('first'),
    pho: z.array(phoSchema).min(1, { message: 'list at least one PHO variant' }),
    baselines: z.array(baselineSchema).default([]),
    /** true: every structure; a list: these structure names; false: none. */
    transfer: z.union([z.boolean(), z.array(z.string())]).default(false),
    /** Full evaluations on the first N windows of the test split (default: every window). */
    reportWindows: positiveInt.optional(),
    /** Seeds whose configurations are transferred (default: all). */
    transferSeeds: z.array(seed).min(1).optional(),
    space: spaceSchema.default({}),
    /** Per-block costs of a large model for the wall-time projection (see search-compare/costs.ts). */
    projection: z.string().min(1).optional(),
  })
  .strict();

/** Unstructured sparsity when a structure gives none (the CLI's default). */
export const DEFAULT_SPARSITY = 0.5;

/** The hill-climbing run's name (a PHO variant or baseline may not take it). */
export const HILLCLIMB_RUN = 'hillclimb';

export interface StructureEntry {
  name: string;
  /** Canonical spelling: 'unstructured' or 'N:M'. */
  structure: string;
  /** Fraction pruned: given (unstructured) or 1 - N/M. */
  sparsity: number;
  /** Table label: '50% unstructured', '2:4'. */
  label: string;
}

export interface BaselineEntry {
  name: string;
  method: string;
  /** Every parameter: the method's defaults overridden by the given ones. */
  params: Params;
}

export interface PhoVariant {
  name: string;
  proxies: { proxy: ProxyName; sign: 1 | -1 }[];
  budget: number;
  verify?: PhoVerify;
  /** Fraction of each layer's rows the proxies are computed on (1: all). */
  proxyRows: number;
  /** The seeds this variant runs for. */
  seeds: number[];
}

export interface SearchCompareConfig {
  file: string;
  description?: string;
  models: string[];
  /** The searched method. */
  method: string;
  structures: StructureEntry[];
  calibration: { dataset: string; nsamples: number; seed: number; stats: StatsKind };
  seeds: number[];
  hillclimb: { budget: number; searchWindows: number; final?: HillClimbFinal };
  /** How every search's validation windows are drawn (lib/search/evaluator.ts). */
  searchSample: WindowSample;
  /** PHO variants; the first is the one the cost table and transfer use. */
  pho: PhoVariant[];
  baselines: BaselineEntry[];
  /** Structure names whose best configurations are applied to every other model. */
  transfer: string[];
  transferSeeds: number[];
  /** Full evaluations on the first N test windows (undefined: all). */
  reportWindows?: number;
  /** Path of a per-block cost file for the projection to a large model, if any. */
  projection?: string;
  space: SearchSpace;
  /** The space overrides as written (for the settings paragraph and --json). */
  spaceGiven: { searched?: string[]; bounds?: string[]; fixed?: Record<string, number> };
  /** One-line warnings for the user (deprecated spellings). */
  warnings: string[];
}

/** Keys each object schema accepts, by field path (for "did you mean" hints). */
const OBJECT_SCHEMAS: Record<string, z.AnyZodObject> = {
  '': configSchema,
  structures: structureSchema,
  calibration: calibrationSchema,
  hillclimb: hillclimbSchema,
  'hillclimb.final': hillclimbFinalSchema,
  pho: phoSchema,
  'pho.verify': verifySchema,
  baselines: baselineSchema,
  space: spaceSchema,
};

/** The shared config messages, plus this config's own wording for two kinds of issue. */
function describeIssue(issue: z.ZodIssue): string {
  if (issue.code === 'invalid_type' && issue.received !== 'undefined') return `expected ${issue.expected}, got ${issue.received}`;
  if (issue.code === 'invalid_union') {
    // transfer: report the union as one expectation rather than zod's first branch
    return 'expected true, false or a list of structure names';
  }
  return describeConfigIssue(issue, OBJECT_SCHEMAS);
}

/** File-name form of a model: its base name with anything unusual replaced (as proxy-study does). */
export function modelStem(model: string): string {
  return path.basename(model).replace(/[^\w.-]+/g, '_');
}

/** The structure of `entry` as a method prunes it (unstructured: the method's reference group). */
export function structureFor(entry: StructureEntry, method: string): Structure {
  return parseStructure(entry.structure, entry.structure === 'unstructured' ? entry.sparsity : undefined, getStrategy(method).defaultGroup);
}

function structureLabel(s: Structure): string {
  return s.kind === 'unstructured' ? `${Number((s.sparsity * 100).toPrecision(6))}% unstructured` : `${s.n}:${s.m}`;
}

/** Whether a variant written out in a config has exactly a built-in variant's settings. */
function samePreset(preset: PhoPreset, v: { proxies?: string[]; budget?: number; proxyRows?: number; verify?: PhoVerify }): boolean {
  return (
    JSON.stringify(v.proxies) === JSON.stringify(preset.proxies) &&
    (v.budget ?? DEFAULT_BUDGET.pho) === preset.budget &&
    (v.proxyRows ?? 1) === preset.proxyRows &&
    JSON.stringify(v.verify) === JSON.stringify(preset.verify)
  );
}

/** Validate the parsed JSON of a config file. `file` is only used in messages. */
export function parseSearchCompareConfig(input: unknown, file: string): SearchCompareConfig {
  const { json, renamed } = renameSnakeKeys(input);
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw fieldError(file, issue.path, describeIssue(issue));
  }
  const raw = parsed.data;

  const models = raw.models;
  const stems = new Map<string, number>();
  models.forEach((m, i) => {
    if (!BUILTIN_MODELS[m] && !fs.existsSync(m)) {
      throw fieldError(file, ['models', i], `unknown model '${m}': not a built-in name (${Object.keys(BUILTIN_MODELS).join(', ')}) nor an existing path`);
    }
    const stem = modelStem(m);
    // Two models with one file-name stem would overwrite each other's evaluation logs.
    if (stems.has(stem)) throw fieldError(file, ['models', i], `'${m}' is listed twice (or shares the file name '${stem}' with models[${stems.get(stem)}])`);
    stems.set(stem, i);
  });

  const strategy = atField(file, ['method'], () => getStrategy(raw.method));
  const spaceGiven = raw.space;
  const bounds = atField(file, ['space', 'bounds'], () => parseBounds(spaceGiven.bounds ?? []));
  const space = atField(file, ['space'], () => buildSpace(strategy, { searched: spaceGiven.searched, bounds, fixed: spaceGiven.fixed }));

  const structureNames = new Map<string, number>();
  const structures = raw.structures.map((s, i): StructureEntry => {
    if (structureNames.has(s.name)) throw fieldError(file, ['structures', i, 'name'], `'${s.name}' is also the name of structures[${structureNames.get(s.name)}]`);
    structureNames.set(s.name, i);
    const shape = atField(file, ['structures', i, 'structure'], () => parseStructure(s.structure, undefined, 'row'));
    if (shape.kind === 'nm' && s.sparsity !== undefined) {
      throw fieldError(file, ['structures', i, 'sparsity'], `sparsity applies to unstructured only (${s.structure} fixes it)`);
    }
    if (shape.kind === 'nm') return { name: s.name, structure: `${shape.n}:${shape.m}`, sparsity: nmSparsity(shape.n, shape.m), label: structureLabel(shape) };
    const st = atField(file, ['structures', i, 'sparsity'], () => parseStructure('unstructured', s.sparsity ?? DEFAULT_SPARSITY, 'row'));
    return { name: s.name, structure: 'unstructured', sparsity: s.sparsity ?? DEFAULT_SPARSITY, label: structureLabel(st) };
  });

  const runNames = new Map<string, string>([[HILLCLIMB_RUN, 'the hill-climbing run']]);
  const pho = raw.pho.map((v, i): PhoVariant => {
    if (runNames.has(v.name)) throw fieldError(file, ['pho', i, 'name'], `'${v.name}' is also the name of ${runNames.get(v.name)}`);
    runNames.set(v.name, `pho[${i}]`);
    const custom = v.proxies !== undefined || v.budget !== undefined || v.verify !== undefined || v.proxyRows !== undefined;
    const preset = isPhoPreset(v.name) ? PHO_PRESETS[v.name] : undefined;
    // a built-in variant written out in full must be exactly the built-in one
    if (preset && custom && !samePreset(preset, v)) {
      throw fieldError(file, ['pho', i, 'name'], `'${v.name}' is a built-in PHO variant (crepe search --search ${v.name}) with other settings: give only its name and seeds, or name your variant differently`);
    }
    if (!isPhoPreset(v.name) && v.proxies === undefined) {
      throw fieldError(file, ['pho', i, 'proxies'], `missing (or name a built-in variant: ${Object.keys(PHO_PRESETS).join(', ')})`);
    }
    const names = preset ? preset.proxies : v.proxies!;
    const proxies = names.map((p, j) => {
      const proxy = atField(file, ['pho', i, 'proxies', j], () => parseProxy(p === 'default' ? DEFAULT_PROXY : p));
      return { proxy, sign: proxySign(proxy) };
    });
    if (new Set(proxies.map((p) => p.proxy)).size !== proxies.length) throw fieldError(file, ['pho', i, 'proxies'], 'a proxy is listed twice');
    const verify = preset ? preset.verify : v.verify;
    if (verify) {
      const rungs = verifyRungs(verify);
      const problem = checkRungs(rungs);
      if (problem) throw fieldError(file, ['pho', i, 'verify', 'windows'], problem);
      if (rungs[rungs.length - 1] > raw.hillclimb.searchWindows) {
        throw fieldError(file, ['pho', i, 'verify', 'windows'], `${rungs[rungs.length - 1]} is more than hill climbing's ${raw.hillclimb.searchWindows} search windows`);
      }
    }
    if (verify?.finalCalibrationWindows !== undefined) {
      if ((verify.final ?? 'search') !== 'sequential') throw fieldError(file, ['pho', i, 'verify', 'finalCalibrationWindows'], "applies to final: 'sequential' only");
      if (verify.finalCalibrationWindows > raw.calibration.nsamples) {
        throw fieldError(file, ['pho', i, 'verify', 'finalCalibrationWindows'], `${verify.finalCalibrationWindows} is more than the calibration's ${raw.calibration.nsamples} windows`);
      }
    }
    (v.seeds ?? []).forEach((sd, j) => {
      if (!raw.seeds.includes(sd)) throw fieldError(file, ['pho', i, 'seeds', j], `seed ${sd} is not in seeds (${raw.seeds.join(', ')})`);
    });
    const budget = preset ? preset.budget : v.budget ?? DEFAULT_BUDGET.pho;
    const proxyRows = preset ? preset.proxyRows : v.proxyRows ?? 1;
    return { name: v.name, proxies, budget, verify, proxyRows, seeds: v.seeds ?? raw.seeds };
  });
  const hcFinal = raw.hillclimb.final;
  if (hcFinal) {
    if (hcFinal.windows > raw.hillclimb.searchWindows) throw fieldError(file, ['hillclimb', 'final', 'windows'], `${hcFinal.windows} is more than hill climbing's ${raw.hillclimb.searchWindows} search windows`);
    if (hcFinal.calibrationWindows !== undefined) {
      if (hcFinal.measure !== 'sequential') throw fieldError(file, ['hillclimb', 'final', 'calibrationWindows'], "applies to measure: 'sequential' only");
      if (hcFinal.calibrationWindows > raw.calibration.nsamples) throw fieldError(file, ['hillclimb', 'final', 'calibrationWindows'], `${hcFinal.calibrationWindows} is more than the calibration's ${raw.calibration.nsamples} windows`);
    }
  }
  const seeds = raw.seeds;
  if (new Set(seeds).size !== seeds.length) throw fieldError(file, ['seeds'], `a seed is listed twice: ${seeds.join(', ')}`);
  (raw.transferSeeds ?? []).forEach((sd, j) => {
    if (!seeds.includes(sd)) throw fieldError(file, ['transferSeeds', j], `seed ${sd} is not in seeds (${seeds.join(', ')})`);
  });
  if (raw.projection !== undefined && !fs.existsSync(raw.projection)) throw fieldError(file, ['projection'], `file not found: ${raw.projection}`);

  const baselineNames = new Map<string, number>();
  const baselines = raw.baselines.map((b, i): BaselineEntry => {
    if (runNames.has(b.name)) throw fieldError(file, ['baselines', i, 'name'], `'${b.name}' is the name of a search run; choose another`);
    if (baselineNames.has(b.name)) throw fieldError(file, ['baselines', i, 'name'], `'${b.name}' is also the name of baselines[${baselineNames.get(b.name)}]`);
    baselineNames.set(b.name, i);
    const s = atField(file, ['baselines', i, 'method'], () => getStrategy(b.method));
    const params = atField(file, ['baselines', i, 'params'], () => resolveParams(s, b.params ?? {}));
    return { name: b.name, method: s.name, params };
  });

  const checkNames = (field: string, names: string[]): string[] => {
    names.forEach((n, i) => {
      if (!structureNames.has(n)) throw fieldError(file, [field, i], `unknown structure name '${n}' (structures: ${[...structureNames.keys()].join(', ')})`);
    });
    return [...new Set(names)];
  };
  const transfer = raw.transfer === true ? structures.map((s) => s.name) : raw.transfer === false ? [] : checkNames('transfer', raw.transfer);

  return {
    file,
    description: raw.description,
    models,
    method: strategy.name,
    structures,
    calibration: { ...raw.calibration, stats: raw.calibration.stats as StatsKind },
    seeds,
    // `final` only when given, so that configs without it keep their rows' fingerprints
    hillclimb: { budget: raw.hillclimb.budget, searchWindows: raw.hillclimb.searchWindows, ...(raw.hillclimb.final ? { final: raw.hillclimb.final } : {}) },
    searchSample: raw.searchSample,
    pho,
    baselines,
    transfer,
    transferSeeds: raw.transferSeeds ?? seeds,
    reportWindows: raw.reportWindows,
    projection: raw.projection,
    space,
    spaceGiven,
    warnings: [deprecationLine(file, renamed)].filter((w): w is string => w !== null),
  };
}

/** Read and validate a config file. */
export function loadSearchCompareConfig(file: string): SearchCompareConfig {
  return parseSearchCompareConfig(readJsonConfig(file), file);
}

/**
 * Restrict a config to some of its models and structures (the CLI's --models / --structures),
 * keeping the config's order. Transfer and every-proxy lists keep only the chosen structures.
 */
export function selectSubset(config: SearchCompareConfig, models?: readonly string[], structures?: readonly string[]): SearchCompareConfig {
  const pick = <T>(flag: string, all: T[], nameOf: (t: T) => string, wanted?: readonly string[]): T[] => {
    if (!wanted || wanted.length === 0) return all;
    const names = all.map(nameOf);
    for (const w of wanted) {
      if (!names.includes(w)) throw new CrepeError(`--${flag}: '${w}' is not in ${config.file} (${names.join(', ')})`);
    }
    return all.filter((t) => wanted.includes(nameOf(t)));
  };
  const chosenStructures = pick('structures', config.structures, (s) => s.name, structures);
  const kept = new Set(chosenStructures.map((s) => s.name));
  return {
    ...config,
    models: pick('models', config.models, (m) => m, models),
    structures: chosenStructures,
    transfer: config.transfer.filter((n) => kept.has(n)),
  };
}
