/**
 * A recipe: one validated description of a pruning run (what to prune, how, on which calibration
 * data, with which add-ons, what to measure and where to write), as a JSON or YAML file, a
 * command line (`crepe prune` maps its flags to one) or a sweep cell. `resolveRecipe` fills every
 * default against the model; the resolved recipe is itself a recipe that runs to the same result.
 */
import * as path from 'path';
import { z } from 'zod';
import YAML from 'yaml';
import { CrepeError } from '../errors';
import { MAX_SMALL_FILE_BYTES, decodeText, readInputFile } from '../io/input';

const positiveInt = z.number().int().positive();
const seqlen = z.number().int().min(2);

/** A value a strategy parameter takes: a number, or a string its parser reads (e.g. from a flag). */
const paramValue = z.union([z.number(), z.string()]);

export const allocationSchema = z.discriminatedUnion('method', [
  z.object({ method: z.literal('uniform') }).strict(),
  z
    .object({
      method: z.literal('owl'),
      /** Outlier threshold: a score above M times its block's mean is an outlier (default 5). */
      m: z.number().optional(),
      /** Block sparsities span S +- lambda (default 0.08); N:M: range of the rounded shift of N (default 2). */
      lambda: z.number().optional(),
    })
    .strict(),
]);

export const refineSchema = z.discriminatedUnion('method', [
  z.object({ method: z.literal('none') }).strict(),
  z
    .object({
      method: z.literal('dsnot'),
      /** Most swaps per row (default 50). */
      maxCycles: z.number().int().min(0).optional(),
      /** Stop a row once |expected error| <= this (default 0.1). */
      threshold: z.number().min(0).optional(),
      /** Layers left as selected (default 'mlp': attention only, as the reference). */
      skip: z.enum(['mlp', 'attn', 'none']).optional(),
    })
    .strict(),
]);

/** RIA's channel permutation; refine: linear sum assignment refinement of the greedy permutation. */
export const permuteSchema = z.object({ refine: z.boolean().default(false) }).strict();

const calibrationSchema = z
  .object({
    dataset: z.string().min(1).default('tinystories'),
    nsamples: positiveInt.default(128),
    /** Window length; default the model's context. */
    seqlen: seqlen.optional(),
    seed: z.number().int().min(0).default(0),
  })
  .strict();

const memorySchema = z
  .object({
    /** Host budget in GiB (a number) or with a unit ('512M'); default 80% of RAM. */
    maxMemory: z.union([z.number(), z.string()]).optional(),
    /** Where calibration activations and evaluation hidden states live between blocks. */
    activations: z.enum(['auto', 'f32', 'f16', 'disk']).default('auto'),
    evaluator: z.enum(['auto', 'resident', 'streaming']).default('auto'),
    /** Folder for spill files; default the temporary folder. */
    spillDir: z.string().min(1).optional(),
  })
  .strict();

/** One evaluation set (also a sweep config's `eval` entry). */
export const evalSchema = z
  .object({
    dataset: z.string().min(1),
    /** Window length; default the model's context. */
    seqlen: seqlen.optional(),
    /** Only the first N windows; default all. */
    maxWindows: positiveInt.optional(),
  })
  .strict();

const zeroshotSchema = z
  .object({
    tasks: z.array(z.string().min(1)).min(1, { message: 'list at least one zero-shot task' }),
    /** Score only the first N documents of each task. */
    limit: positiveInt.optional(),
    /** Worker processes (the result does not depend on it). */
    jobs: positiveInt.default(1),
  })
  .strict();

const saveSchema = z
  .object({
    /** A .bin path (llama2.c) or a directory (HF). */
    path: z.string().min(1),
    /** dtype of an HF directory; default the source config's dtype, else F32. */
    dtype: z.enum(['F32', 'BF16', 'F16']).optional(),
  })
  .strict();

export const recipeSchema = z
  .object({
    description: z.string().optional(),
    model: z.string().min(1),
    /** Tokenizer file; default found beside the model. */
    tokenizer: z.string().min(1).optional(),
    /** A scoring strategy, or 'dense' for no pruning (evaluate the model as it is). */
    method: z.string().min(1),
    params: z.record(paramValue).default({}),
    /** 'unstructured' or N:M (keep N of every M). */
    structure: z.string().min(1).default('unstructured'),
    /** Unstructured: fraction pruned (default 0.5). N:M fixes it. */
    sparsity: z.number().optional(),
    /** Unstructured comparison group; default the method's reference group. */
    group: z.enum(['row', 'matrix']).optional(),
    allocation: allocationSchema.default({ method: 'uniform' }),
    refine: refineSchema.default({ method: 'none' }),
    /** RIA's channel permutation before N:M selection (refine: linear sum assignment refinement). */
    permute: permuteSchema.nullable().default(null),
    calibration: calibrationSchema.default({}),
    /** Next block's calibration inputs from the pruned block (default) or the dense one. */
    propagate: z.enum(['pruned', 'dense']).default('pruned'),
    memory: memorySchema.default({}),
    eval: z.array(evalSchema).default([]),
    /** Also evaluate the dense model on the same windows and tasks (default true). */
    compareDense: z.boolean().default(true),
    zeroshot: zeroshotSchema.optional(),
    save: saveSchema.optional(),
    /** Folder for calibration windows, statistics, masks and run.json. */
    dump: z.string().min(1).optional(),
  })
  .strict();

/** A recipe as written (defaults of the schema filled, model-dependent ones not yet). */
export type Recipe = z.infer<typeof recipeSchema>;
/** A recipe as a user may write it (every defaulted field optional). */
export type RecipeInput = z.input<typeof recipeSchema>;

/** The method name of a recipe that prunes nothing. */
export const DENSE_METHOD = 'dense';

function issuePath(p: readonly (string | number)[]): string {
  return p.map((x, i) => (typeof x === 'number' ? `[${x}]` : i === 0 ? x : `.${x}`)).join('');
}

function issueMessage(issue: z.ZodIssue): string {
  if (issue.code === 'unrecognized_keys') return `unknown key '${issue.keys[0]}'`;
  if (issue.code === 'invalid_type' && issue.received === 'undefined') return 'missing';
  if (issue.code === 'invalid_enum_value') return `must be one of ${issue.options.map((o) => `'${String(o)}'`).join(', ')}, got '${String(issue.received)}'`;
  if (issue.code === 'invalid_union_discriminator') return `must be one of ${issue.options.map((o) => `'${String(o)}'`).join(', ')}`;
  return issue.message.charAt(0).toLowerCase() + issue.message.slice(1);
}

/** Validate a parsed recipe; `where` names its origin in messages (a file, or 'recipe'). */
export function parseRecipe(json: unknown, where = 'recipe'): Recipe {
  const parsed = recipeSchema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const at = issuePath(issue.path);
    throw new CrepeError(`${where}: ${at ? `${at}: ` : ''}${issueMessage(issue)}`);
  }
  return parsed.data;
}

/** Read a recipe file: YAML for .yaml/.yml, else JSON (YAML is a superset, but JSON errors read better). */
export function loadRecipe(file: string): Recipe {
  const text = decodeText(readInputFile(file, 'recipe file', MAX_SMALL_FILE_BYTES), file, 'recipe file');
  const yaml = /\.ya?ml$/i.test(path.extname(file));
  let json: unknown;
  try {
    json = yaml ? YAML.parse(text) : JSON.parse(text);
  } catch (e) {
    throw new CrepeError(`${file}: invalid ${yaml ? 'YAML' : 'JSON'}: ${(e as Error).message}`);
  }
  return parseRecipe(json, file);
}

/** A recipe as text: JSON (default) or YAML. */
export function formatRecipe(recipe: RecipeInput, format: 'json' | 'yaml' = 'json'): string {
  return format === 'yaml' ? YAML.stringify(recipe) : `${JSON.stringify(recipe, null, 2)}\n`;
}
