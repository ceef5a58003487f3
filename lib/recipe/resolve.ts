/**
 * A recipe resolved against its model: every default filled (parameters, comparison group,
 * window lengths, add-on settings), every model-dependent check made (widths, contexts), before
 * any work. The resolved form is a recipe too; running it gives what the original gives.
 */
import * as fs from 'fs';
import { CrepeError } from '../errors';
import { checkSeqlen } from '../eval/evaluate';
import { parseTaskList } from '../eval/zeroshot/tasks';
import { configDtype } from '../model/hf';
import { formatForPath } from '../model/save';
import { LlamaConfig, linearNames, linearShape } from '../model/types';
import { OWL_DEFAULTS, checkOwlOptions } from '../prune/addons/owl';
import { Structure, nmSparsity, parseStructure, validateStructureFor } from '../prune/select';
import { Params, Strategy, getStrategy, resolveParams } from '../prune/strategy';
import '../prune/strategies';
import { parseMemoryFlag } from '../plan/memory';
import { DENSE_METHOD, Recipe } from './schema';

/** DSnoT's defaults (the reference's max_cycle_time, update_threshold, skip_layer). */
export const DSNOT_DEFAULTS = { maxCycles: 50, threshold: 0.1, skip: 'mlp' } as const;

export type ResolvedAllocation = { method: 'uniform' } | { method: 'owl'; m: number; lambda: number };
export type ResolvedRefine = { method: 'none' } | { method: 'dsnot'; maxCycles: number; threshold: number; skip: 'mlp' | 'attn' | 'none' };

/** A recipe with every default filled for its model (a valid recipe itself). */
export interface ResolvedRecipe {
  description?: string;
  model: string;
  tokenizer?: string;
  method: string;
  params: Params;
  /** Canonical: 'unstructured' or 'N:M'. */
  structure: string;
  /** Target fraction pruned (1 - N/M for N:M; 0 for dense). */
  sparsity: number;
  /** Unstructured only. */
  group?: 'row' | 'matrix';
  allocation: ResolvedAllocation;
  refine: ResolvedRefine;
  permute: { refine: boolean } | null;
  calibration: { dataset: string; nsamples: number; seqlen: number; seed: number };
  propagate: 'pruned' | 'dense';
  memory: Recipe['memory'];
  eval: { dataset: string; seqlen: number; maxWindows?: number }[];
  compareDense: boolean;
  zeroshot?: { tasks: string[]; limit?: number; jobs: number };
  save?: { path: string; dtype: 'F32' | 'BF16' | 'F16' };
  dump?: string;
}

/**
 * How a message names a recipe field: the field itself for files, the flag for the command line
 * (`group` -> `--group`).
 */
export type FieldNamer = (field: string) => string;
const asField: FieldNamer = (f) => f;

/** The pieces the pipeline needs, beside the resolved recipe. */
export interface RecipeParts {
  recipe: ResolvedRecipe;
  /** null for a dense recipe. */
  strategy: Strategy | null;
  structure: Structure;
}

/**
 * Resolve `recipe` for a model with config `cfg` (an HF save defaults to the source checkpoint's
 * dtype); `name` words messages for the recipe's origin.
 */
export function resolveRecipe(
  recipe: Recipe,
  cfg: LlamaConfig,
  name: FieldNamer = asField,
): RecipeParts {
  const dense = recipe.method === DENSE_METHOD;
  const strategy = dense ? null : getStrategy(recipe.method);
  const params = strategy ? resolveParams(strategy, recipe.params) : {};
  if (dense && Object.keys(recipe.params).length) throw new CrepeError(`${name('params')} do not apply to method '${DENSE_METHOD}'`);
  const group = recipe.group ?? strategy?.defaultGroup ?? 'row';
  const structure = parseStructure(recipe.structure, recipe.sparsity, group);
  if (structure.kind === 'nm' && recipe.group !== undefined) {
    throw new CrepeError(`${name('group')} applies to unstructured pruning only; ${recipe.structure} keeps N of every M in each row`);
  }
  if (!dense) {
    for (const l of linearNames(cfg)) {
      const [o, i] = linearShape(cfg, l);
      validateStructureFor(structure, o, i);
    }
  }
  let allocation: ResolvedAllocation = { method: 'uniform' };
  if (recipe.allocation.method === 'owl') {
    const m = recipe.allocation.m ?? OWL_DEFAULTS.m;
    const lambda = recipe.allocation.lambda ?? (structure.kind === 'nm' ? OWL_DEFAULTS.lambdaNM : OWL_DEFAULTS.lambda);
    checkOwlOptions(m, lambda);
    allocation = { method: 'owl', m, lambda };
  }
  let refine: ResolvedRefine = { method: 'none' };
  if (recipe.refine.method === 'dsnot') {
    const r = recipe.refine;
    refine = { method: 'dsnot', maxCycles: r.maxCycles ?? DSNOT_DEFAULTS.maxCycles, threshold: r.threshold ?? DSNOT_DEFAULTS.threshold, skip: r.skip ?? DSNOT_DEFAULTS.skip };
  }
  const permute = recipe.permute;
  if (permute && structure.kind !== 'nm') throw new CrepeError(`${name('permute')} applies to N:M structures only (e.g. structure 2:4)`);
  // DSnoT's N:M swaps stay inside groups of m consecutive columns; a permuted mask has its groups elsewhere.
  if (permute && refine.method !== 'none') throw new CrepeError(`${name('refine')} dsnot cannot follow ${name('permute')} (its N:M groups are in the original column order)`);
  if (strategy?.pruneLayer && (permute || refine.method !== 'none')) {
    throw new CrepeError(`${strategy.name} updates weights itself: ${name('permute')} and ${name('refine')} do not apply to it`);
  }
  if (dense && (permute || refine.method !== 'none' || allocation.method !== 'uniform')) {
    throw new CrepeError(`method '${DENSE_METHOD}' prunes nothing: allocation, refine and permute do not apply`);
  }
  if (recipe.memory.spillDir !== undefined && !fs.statSync(recipe.memory.spillDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new CrepeError(`${name('memory.spillDir')} ${recipe.memory.spillDir} is not an existing folder`);
  }
  if (recipe.memory.maxMemory !== undefined) parseMemoryFlag(recipe.memory.maxMemory);
  const calibrationSeqlen = recipe.calibration.seqlen ?? cfg.maxSeqLen;
  checkSeqlen(calibrationSeqlen, cfg.maxSeqLen);
  const evals = recipe.eval.map((e) => {
    const seqlen = e.seqlen ?? cfg.maxSeqLen;
    checkSeqlen(seqlen, cfg.maxSeqLen);
    return { dataset: e.dataset, seqlen, ...(e.maxWindows !== undefined ? { maxWindows: e.maxWindows } : {}) };
  });
  if (recipe.zeroshot) parseTaskList(recipe.zeroshot.tasks);
  let save: ResolvedRecipe['save'];
  if (recipe.save) {
    const format = formatForPath(recipe.save.path);
    if (format === 'llama2c' && recipe.save.dtype !== undefined && recipe.save.dtype !== 'F32') throw new CrepeError(`llama2.c files are float32 only (${name('dtype')} F32)`);
    save = { path: recipe.save.path, dtype: format === 'hf' ? recipe.save.dtype ?? configDtype(cfg) ?? 'F32' : 'F32' };
  }
  const resolved: ResolvedRecipe = {
    ...(recipe.description !== undefined ? { description: recipe.description } : {}),
    model: recipe.model,
    ...(recipe.tokenizer !== undefined ? { tokenizer: recipe.tokenizer } : {}),
    method: dense ? DENSE_METHOD : strategy!.name,
    params,
    structure: structure.kind === 'nm' ? `${structure.n}:${structure.m}` : 'unstructured',
    sparsity: dense ? 0 : structure.kind === 'nm' ? nmSparsity(structure.n, structure.m) : structure.sparsity,
    ...(structure.kind === 'unstructured' && !dense ? { group: structure.group } : {}),
    allocation,
    refine,
    permute: permute ? { refine: permute.refine } : null,
    calibration: { dataset: recipe.calibration.dataset, nsamples: recipe.calibration.nsamples, seqlen: calibrationSeqlen, seed: recipe.calibration.seed },
    propagate: recipe.propagate,
    memory: recipe.memory,
    eval: evals,
    compareDense: recipe.compareDense,
    ...(recipe.zeroshot ? { zeroshot: recipe.zeroshot } : {}),
    ...(save ? { save } : {}),
    ...(recipe.dump !== undefined ? { dump: recipe.dump } : {}),
  };
  return { recipe: resolved, strategy, structure: dense ? { kind: 'unstructured', group: 'row', sparsity: 0 } : structure };
}
