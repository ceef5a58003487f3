/**
 * Sweep configuration files: a JSON grid of models x methods x sparsities x structures x groups,
 * one calibration setting and a list of evaluation datasets. Everything a user can get wrong is
 * rejected here with one line that names the file and the field (`methods[1].name: ...`).
 */
import { z } from 'zod';
import { CrepeError } from '../errors';
import { closestNames } from '../util/suggest';
import { MAX_SMALL_FILE_BYTES, decodeText, readInputFile } from '../io/input';
import { parseTaskList } from '../eval/zeroshot/tasks';
import { parseStructure } from '../prune/select';
import { Params, getStrategy, resolveParams } from '../prune/strategy';
import { allocationSchema, evalSchema, permuteSchema, refineSchema } from '../recipe/schema';
import '../prune/strategies';

const sparsity = z.number().refine((v) => v >= 0 && v < 1, (v) => ({ message: `sparsity must be in [0, 1), got ${v}` }));
const positiveInt = z.number().int().positive();
const seqlen = z.number().int().min(2);

const methodSchema = z
  .object({
    name: z.string().min(1),
    params: z.record(z.number()).optional(),
    /** Row name in tables and legends (default: the method name, plus its params and add-ons when given). */
    label: z.string().min(1).optional(),
    /** Per-block sparsity: uniform (default) or OWL (outlier-rich blocks pruned less). */
    allocation: allocationSchema.optional(),
    /** Re-pruning after selection: none (default) or DSnoT. */
    refine: refineSchema.optional(),
    /** RIA's channel permutation before N:M selection (N:M structures only). */
    permute: permuteSchema.optional(),
    /** This method's sparsities and structures instead of the config's (e.g. add-on rows at 50% and 2:4 only). */
    sparsities: z.array(sparsity).optional(),
    structures: z.array(z.string()).optional(),
  })
  .strict();

const calibrationSchema = z
  .object({
    dataset: z.string().min(1).default('tinystories'),
    nsamples: positiveInt.default(128),
    /** Window length; default the model's context. */
    seqlen: seqlen.optional(),
    /** One calibration seed (default 0) ... */
    seed: z.number().int().min(0).optional(),
    /** ... or several: every pruned cell runs once per seed, and reports show mean ± std over them. */
    seeds: z.array(z.number().int().min(0)).min(1, { message: 'list at least one seed' }).optional(),
  })
  .strict();

const zeroshotSchema = z
  .object({
    /** Task names (or name:PATH), as `crepe zeroshot --tasks`. */
    tasks: z.array(z.string().min(1)).min(1, { message: 'list at least one zero-shot task' }),
    /** Score only the first N documents of each task; default all. */
    limit: positiveInt.optional(),
  })
  .strict();

const configSchema = z
  .object({
    description: z.string().optional(),
    models: z.array(z.string().min(1)),
    methods: z.array(methodSchema),
    sparsities: z.array(sparsity).default([]),
    structures: z.array(z.string()).default(['unstructured']),
    groups: z.array(z.enum(['row', 'matrix', 'default'])).default(['default']),
    calibration: calibrationSchema.default({}),
    eval: z.array(evalSchema).min(1, { message: 'list at least one evaluation dataset' }),
    /** Next block's calibration inputs from the pruned block (Wanda/SparseGPT) or the dense one. */
    propagate: z.enum(['pruned', 'dense']).default('pruned'),
    /** Zero-shot tasks scored on every cell (dense and pruned), beside the perplexities. */
    zeroshot: zeroshotSchema.optional(),
  })
  .strict();

type RawConfig = z.infer<typeof configSchema>;

export interface MethodEntry {
  name: string;
  /** Every parameter, defaults filled in. */
  params: Params;
  label: string;
  /** Add-ons as written (model- and structure-dependent defaults are filled per cell). */
  allocation?: z.infer<typeof allocationSchema>;
  refine?: z.infer<typeof refineSchema>;
  permute?: { refine: boolean };
  /** Overrides of the config's sparsities / structures (canonical spelling) for this method. */
  sparsities?: number[];
  structures?: string[];
}

export interface SweepEvalEntry {
  dataset: string;
  seqlen?: number;
  maxWindows?: number;
}

export interface CalibrationEntry {
  dataset: string;
  nsamples: number;
  seqlen?: number;
  /** Calibration seeds, in config order, without repeats (default [0]). */
  seeds: number[];
}

/** A validated sweep configuration (model contexts not yet known: seqlens may be unset). */
export interface SweepConfig {
  file: string;
  description?: string;
  models: string[];
  methods: MethodEntry[];
  sparsities: number[];
  /** Canonical spelling: 'unstructured' or 'N:M'. */
  structures: string[];
  groups: ('row' | 'matrix' | 'default')[];
  calibration: CalibrationEntry;
  eval: SweepEvalEntry[];
  propagate: 'pruned' | 'dense';
  zeroshot?: ZeroshotEntry;
}

export interface ZeroshotEntry {
  tasks: string[];
  limit?: number;
}

/** `methods[1].name` from a zod path. */
export function fieldPath(path: readonly (string | number)[]): string {
  return path.map((p, i) => (typeof p === 'number' ? `[${p}]` : i === 0 ? p : `.${p}`)).join('');
}

/** A CrepeError naming the config file and the field. */
export function fieldError(file: string, path: readonly (string | number)[], message: string): CrepeError {
  const where = fieldPath(path);
  return new CrepeError(`${file}: ${where ? `${where}: ` : ''}${message}`);
}

/** Run `fn`, turning a CrepeError into one that names the config file and the field. */
export function atField<T>(file: string, path: readonly (string | number)[], fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    if (e instanceof CrepeError) throw fieldError(file, path, e.message);
    throw e;
  }
}

/**
 * Config keys are camelCase. snake_case spellings (search configs used them) are still read:
 * they are renamed here and listed, so the caller can print one deprecation line. Keys of
 * free-form records (method parameters) are left alone.
 */
export function renameSnakeKeys(json: unknown, records: ReadonlySet<string> = new Set(['params', 'fixed'])): { json: unknown; renamed: string[] } {
  const renamed = new Set<string>();
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== 'object') return v;
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) {
      const camel = k.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());
      if (camel !== k && !(camel in (v as Record<string, unknown>))) renamed.add(`${k} -> ${camel}`);
      const key = camel !== k && !(camel in (v as Record<string, unknown>)) ? camel : k;
      out[key] = records.has(k) ? x : walk(x);
    }
    return out;
  };
  const result = walk(json);
  return { json: result, renamed: [...renamed] };
}

/** The one-line deprecation warning for renamed keys, or null. */
export function deprecationLine(file: string, renamed: readonly string[]): string | null {
  return renamed.length ? `${file}: snake_case keys are deprecated, write camelCase (${renamed.join(', ')})` : null;
}

/** The object schemas of the sweep config, by field path (for "did you mean" hints). */
const OBJECT_SCHEMAS: Record<string, z.AnyZodObject> = {
  '': configSchema,
  methods: methodSchema,
  eval: evalSchema,
  calibration: calibrationSchema,
  zeroshot: zeroshotSchema,
};

/**
 * One line for a zod issue in a config file: an unknown key with the closest key the object at
 * that field accepts (`objects`: object schemas by dotted field path, list indices dropped), a
 * missing field, an enum's choices, else zod's own message.
 */
export function describeConfigIssue(issue: z.ZodIssue, objects: Record<string, z.AnyZodObject>): string {
  if (issue.code === 'unrecognized_keys') {
    const key = issue.keys[0];
    const schema = objects[issue.path.filter((p) => typeof p === 'string').join('.')];
    const known = schema ? Object.keys(schema.shape) : [];
    const close = closestNames(key, known);
    const hint = close.length ? ` (did you mean '${close[0]}'?)` : known.length ? ` (known: ${known.join(', ')})` : '';
    return `unknown key '${key}'${hint}`;
  }
  if (issue.code === 'invalid_type' && issue.received === 'undefined') return 'missing';
  if (issue.code === 'invalid_enum_value') return `must be one of ${issue.options.map((o) => `'${String(o)}'`).join(', ')}, got '${String(issue.received)}'`;
  return issue.message.charAt(0).toLowerCase() + issue.message.slice(1);
}

function defaultLabel(m: z.infer<typeof methodSchema>): string {
  const entries = Object.entries(m.params ?? {});
  const base = entries.length ? `${m.name}(${entries.map(([k, v]) => `${k}=${v}`).join(',')})` : m.name;
  const addons = [
    m.permute ? (m.permute.refine ? 'permute-lsa' : 'permute') : '',
    m.allocation && m.allocation.method !== 'uniform' ? m.allocation.method : '',
    m.refine && m.refine.method !== 'none' ? m.refine.method : '',
  ].filter((a) => a);
  return [base, ...addons].join('+');
}

/** A structure list in canonical spelling ('unstructured' or 'N:M'), each checked. */
function canonicalStructures(file: string, at: (string | number)[], list: string[]): string[] {
  return unique(
    list.map((s, i) => {
      const st = atField(file, [...at, i], () => parseStructure(s, undefined, 'row'));
      return st.kind === 'nm' ? `${st.n}:${st.m}` : 'unstructured';
    }),
  );
}

/** Validate the parsed JSON of a config file. `file` is only used in messages. */
export function parseSweepConfig(json: unknown, file: string): SweepConfig {
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw fieldError(file, issue.path, describeConfigIssue(issue, OBJECT_SCHEMAS));
  }
  const raw: RawConfig = parsed.data;
  if (raw.calibration.seed !== undefined && raw.calibration.seeds !== undefined) {
    throw fieldError(file, ['calibration', 'seeds'], "give 'seed' or 'seeds', not both");
  }
  const methods: MethodEntry[] = [];
  const labels = new Map<string, number>();
  raw.methods.forEach((m, i) => {
    const strategy = atField(file, ['methods', i, 'name'], () => getStrategy(m.name));
    const params = atField(file, ['methods', i, 'params'], () => resolveParams(strategy, m.params));
    const label = m.label ?? defaultLabel(m);
    if (label === 'dense') throw fieldError(file, ['methods', i, 'label'], "'dense' is reserved for the unpruned baseline");
    if (labels.has(label)) {
      throw fieldError(file, ['methods', i, 'label'], `duplicate label '${label}' (also methods[${labels.get(label)}]); give each entry its own label`);
    }
    labels.set(label, i);
    const structures = m.structures && canonicalStructures(file, ['methods', i, 'structures'], m.structures);
    const own = structures ?? canonicalStructures(file, ['structures'], raw.structures);
    if (m.permute && own.includes('unstructured')) {
      throw fieldError(file, ['methods', i, 'permute'], "channel permutation applies to N:M structures only: give this method N:M 'structures'");
    }
    if (m.permute && m.refine && m.refine.method !== 'none') {
      throw fieldError(file, ['methods', i, 'refine'], 'dsnot cannot follow permute (its N:M groups are in the original column order)');
    }
    if (strategy.pruneLayer && (m.permute || (m.refine && m.refine.method !== 'none'))) {
      throw fieldError(file, ['methods', i, m.permute ? 'permute' : 'refine'], `${strategy.name} updates weights itself: permute and refine do not apply to it`);
    }
    methods.push({
      name: m.name,
      params,
      label,
      ...(m.allocation && m.allocation.method !== 'uniform' ? { allocation: m.allocation } : {}),
      ...(m.refine && m.refine.method !== 'none' ? { refine: m.refine } : {}),
      ...(m.permute ? { permute: m.permute } : {}),
      ...(m.sparsities ? { sparsities: unique(m.sparsities) } : {}),
      ...(structures ? { structures } : {}),
    });
  });
  const structures = canonicalStructures(file, ['structures'], raw.structures);
  const seen = new Set<string>();
  raw.eval.forEach((e, i) => {
    // One set of columns per dataset, so a dataset can be listed once.
    if (seen.has(e.dataset)) throw fieldError(file, ['eval', i, 'dataset'], `'${e.dataset}' is listed twice`);
    seen.add(e.dataset);
  });
  if (raw.zeroshot) {
    const zs = raw.zeroshot;
    atField(file, ['zeroshot', 'tasks'], () => parseTaskList(zs.tasks));
  }
  return {
    file,
    description: raw.description,
    models: unique(raw.models),
    methods,
    sparsities: unique(raw.sparsities),
    structures,
    groups: unique(raw.groups),
    calibration: {
      dataset: raw.calibration.dataset,
      nsamples: raw.calibration.nsamples,
      seqlen: raw.calibration.seqlen,
      seeds: unique(raw.calibration.seeds ?? [raw.calibration.seed ?? 0]),
    },
    eval: raw.eval,
    propagate: raw.propagate,
    ...(raw.zeroshot ? { zeroshot: { tasks: raw.zeroshot.tasks, limit: raw.zeroshot.limit } } : {}),
  };
}

function unique<T>(xs: T[]): T[] {
  return [...new Set(xs)];
}

/** A config file's JSON, or a one-line CrepeError (missing, a directory, not JSON). */
export function readJsonConfig(file: string): unknown {
  const text = decodeText(readInputFile(file, 'config file', MAX_SMALL_FILE_BYTES), file, 'config file');
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CrepeError(`${file}: invalid JSON: ${(e as Error).message}`); // V8 quotes the input with its newlines; CrepeError keeps one line
  }
}

/** Read and validate a config file. */
export function loadSweepConfig(file: string): SweepConfig {
  return parseSweepConfig(readJsonConfig(file), file);
}
