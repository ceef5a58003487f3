/**
 * Running a recipe: resolve it against the model, check its outputs and plan its memory before
 * any work, then calibrate, allocate (OWL), prune (with permutation or DSnoT), evaluate dense and
 * pruned, score zero-shot tasks, dump and save. Returns the outcome and the run record: the
 * resolved recipe, code version, backend, calibration and measured results, which `--save`
 * writes beside the weights.
 */
import * as path from 'path';
import { backendDescription, BackendChoice } from '../backend';
import { CrepeError } from '../errors';
import { StagedDir, stageDir, writeFileAtomic } from '../io/atomic';
import { OutputTarget, checkOutputs } from '../io/outputs';
import { EvalRecord, datasetWindows, evaluateSource } from '../eval/evaluate';
import { ZeroshotOptions, ZeroshotResult, evaluateZeroshot, evaluateZeroshotInProcess } from '../eval/zeroshot/evaluate';
import { parseTaskList } from '../eval/zeroshot/tasks';
import { OpenedModel, openModel } from '../model/resolve';
import { prunedModelCard, RECIPE_FILE } from '../model/card';
import { formatForPath, saveModel, savedSparsity } from '../model/save';
import { WeightSource } from '../model/types';
import { DsnotRowStats, dsnotRefiner } from '../prune/addons/dsnot';
import { OwlAllocation, owlAllocation } from '../prune/addons/owl';
import { CalibrationDraw, PruneOutcome, PruneTiming, SparsityReport, pruneModel } from '../prune/pipeline';
import { MemoryPlan, defaultMemoryLimit, parseMemoryFlag, planJson, planMemory, requireFits, scoringCopies } from '../plan/memory';
import { subscribeProgress } from '../util/progress';
import { gitVersion } from '../version';
import { inputPaths } from './inputs';
import { FieldNamer, RecipeParts, ResolvedRecipe, resolveRecipe } from './resolve';
import { DENSE_METHOD, Recipe } from './schema';

/** The stages of a recipe run that report progress, in the order they run. */
export type RecipeStage = 'owl' | 'eval-dense' | 'prune' | 'eval-pruned';

export interface RecipeHooks {
  /** A model the caller opened and keeps open (a sweep worker reuses it); default: opened and closed here. */
  model?: OpenedModel;
  /** Replace existing save / dump outputs that crepe did not write. */
  force?: boolean;
  /** Backend for zero-shot worker processes (the caller has initialised this process's). */
  backend?: BackendChoice;
  /** Score zero-shot tasks in this process even when the recipe asks for jobs (callers that are workers). */
  inProcess?: boolean;
  /**
   * Progress of each stage as it runs: blocks for OWL's dense pass and for pruning, windows (summed
   * over the evaluation sets) for the evaluations; the evaluations also give tokens per second.
   */
  onStage?: (stage: RecipeStage, done: number, total: number, tokensPerSecond?: number) => void;
  /** Zero-shot progress, per phase ('dense', 'pruned'). */
  onZeroshot?: (phase: 'dense' | 'pruned', done: number, total: number, itemsPerSecond: number) => void;
  /** How messages name recipe fields (the command line names flags). */
  fieldName?: FieldNamer;
  /** The command line, recorded in the dump's run.json. */
  argv?: string[];
  /**
   * Zero-shot set-up once the memory plan is known and before any work (the CLI plans the
   * scoring and checks its harness outputs there); returns the options the scoring runs with.
   */
  prepareZeroshot?: (model: OpenedModel, plan: MemoryPlan, recipe: ResolvedRecipe) => ZeroshotOptions;
  /** The zero-shot results, dense (null when not compared) and pruned, e.g. to write harness files. */
  onZeroshotResults?: (model: OpenedModel, dense: ZeroshotResult | null, pruned: ZeroshotResult) => void;
}

/** One perplexity, dense and pruned, on one evaluation set. */
export interface RecipeEval {
  dataset: string;
  slice: string;
  seqlen: number;
  windows: number;
  tokens: number;
  /** null when the recipe does not compare with the dense model. */
  densePpl: number | null;
  ppl: number;
}

/**
 * What a run was and what it measured: written beside a saved model, printed by --json, kept
 * in the dump. `recipe` is the resolved recipe, itself runnable to the same result.
 */
export interface RunRecord {
  recipe: ResolvedRecipe;
  codeVersion: string;
  backend: string;
  /** Calibration windows actually drawn (their slice; start offsets left out); null when none ran. */
  calibration: Omit<CalibrationDraw, 'starts'> | null;
  owl: { outlierRatios: number[]; blockTargets: number[] } | null;
  results: {
    achievedSparsity: number;
    prunedParams: number;
    prunableParams: number;
    eval: RecipeEval[];
    zeroshot: { dense: ZeroshotResult | null; pruned: ZeroshotResult } | null;
  };
}

export interface RecipeOutcome {
  record: RunRecord;
  plan: MemoryPlan;
  /** Per-layer sparsities (empty for a dense recipe). */
  report: SparsityReport;
  pruneSeconds: number;
  timing: PruneTiming | null;
  owl: OwlAllocation | null;
  dsnot: DsnotRowStats | null;
  dense: EvalRecord[];
  pruned: EvalRecord[];
  zeroshot: { dense: ZeroshotResult | null; pruned: ZeroshotResult } | null;
  saved: { path: string; format: string; dtype: string; sparsity: number; zeros: number; record: string } | null;
}

/** Open the recipe's model (when the caller did not) and resolve the recipe for it. */
export function prepareRecipe(recipe: Recipe, hooks: Pick<RecipeHooks, 'model' | 'fieldName'> = {}): { model: OpenedModel; parts: RecipeParts; owned: boolean } {
  const model = hooks.model ?? openModel(recipe.model, recipe.tokenizer);
  try {
    return { model, parts: resolveRecipe(recipe, model.source.config, hooks.fieldName), owned: !hooks.model };
  } catch (e) {
    if (!hooks.model) model.source.close();
    throw e;
  }
}

/** The outputs a recipe writes, for the output policy (never an input, the working directory or each other). */
function checkRecipeOutputs(model: OpenedModel, r: ResolvedRecipe, force: boolean, name: FieldNamer): void {
  const outputs: OutputTarget[] = [];
  if (r.save) {
    const hf = formatForPath(r.save.path) === 'hf';
    outputs.push({ flag: name('save'), path: r.save.path, kind: hf ? 'hf-model' : 'llama2c-model', isDir: hf });
  }
  if (r.dump) outputs.push({ flag: name('dump'), path: r.dump, kind: 'prune-dump', isDir: true });
  checkOutputs(outputs, inputPaths(model, [r.calibration.dataset, ...r.eval.map((e) => e.dataset)]), { force });
}

/** The memory plan of a resolved recipe: refuses (in `fits`) what the host, wasm heap or disk cannot hold. */
export function planRecipe(model: OpenedModel, parts: RecipeParts, wasm: boolean, limitBytes?: number): MemoryPlan {
  const r = parts.recipe;
  const m = r.memory;
  const evalWindows = r.eval.reduce((n, e) => n + datasetWindows(model, e.dataset, { seqlen: e.seqlen, maxWindows: e.maxWindows }).windows.length, 0);
  const evalSeqlen = Math.max(0, ...r.eval.map((e) => e.seqlen));
  const strategy = parts.strategy;
  return planMemory({
    config: model.source.config,
    prune: strategy
      ? {
          nsamples: r.calibration.nsamples,
          seqlen: r.calibration.seqlen,
          gram: !!strategy.statsNeeds?.gram,
          calibrates: strategy.usesActivations || r.refine.method !== 'none' || r.allocation.method === 'owl',
          scoreCopies: scoringCopies(strategy.name),
          propagate: r.propagate,
        }
      : undefined,
    eval: r.eval.length ? { windows: evalWindows, seqlen: evalSeqlen, jobs: 1 } : undefined,
    limit: limitBytes ?? (m.maxMemory === undefined ? defaultMemoryLimit() : parseMemoryFlag(m.maxMemory)),
    storage: m.activations,
    evaluator: m.evaluator,
    spillDir: m.spillDir,
    wasm,
  });
}

/**
 * Evaluate `source` on the recipe's sets: one evaluateSource call per window setting (the
 * streaming evaluator then reads each block once for all sets of that setting), in recipe order.
 */
function evaluateSets(model: OpenedModel, source: WeightSource, r: ResolvedRecipe, plan: MemoryPlan, onProgress?: (done: number, total: number, tokensPerSecond: number) => void): EvalRecord[] {
  const out: EvalRecord[] = new Array(r.eval.length);
  const totalWindows = r.eval.reduce((n, e) => n + datasetWindows(model, e.dataset, { seqlen: e.seqlen, maxWindows: e.maxWindows }).windows.length, 0);
  // the evaluator counts windows per dataset; the stage counts them over all sets
  let finished = 0;
  let last = 0;
  let lastTotal = 0;
  const progress = (done: number, total: number, tps: number): void => {
    if (done <= last) finished += lastTotal;
    [last, lastTotal] = [done, total];
    onProgress?.(finished + done, totalWindows, tps);
  };
  const settings = new Map<string, number[]>();
  r.eval.forEach((e, k) => {
    const key = `${e.seqlen}/${e.maxWindows ?? ''}`;
    settings.set(key, [...(settings.get(key) ?? []), k]);
  });
  for (const ks of settings.values()) {
    const first = r.eval[ks[0]];
    const records = evaluateSource(
      model,
      source,
      ks.map((k) => r.eval[k].dataset),
      { seqlen: first.seqlen, maxWindows: first.maxWindows, evaluator: plan.evaluator ?? undefined, storage: plan.evalStorage, spillDir: r.memory.spillDir, onProgress: progress },
    );
    ks.forEach((k, j) => (out[k] = records[j]));
  }
  for (const rec of out) checkPpl(rec.ppl, `${r.model}${source === model.source ? '' : ` pruned with ${r.method}`} on ${rec.dataset}`);
  return out;
}

/** A perplexity that is NaN or infinite is an error, not a result: it names the model and dataset. */
export function checkPpl(ppl: number, what: string): number {
  if (!Number.isFinite(ppl)) {
    throw new CrepeError(`${what}: the perplexity is ${ppl} (the model's outputs overflowed or are not numbers); no result is reported`);
  }
  return ppl;
}

async function zeroshot(model: OpenedModel, source: WeightSource, r: ResolvedRecipe, hooks: RecipeHooks, phase: 'dense' | 'pruned', prepared: ZeroshotOptions | null): Promise<ZeroshotResult> {
  const zs = r.zeroshot!;
  const specs = parseTaskList(zs.tasks);
  const opts = { ...(prepared ?? { limit: zs.limit, jobs: zs.jobs, backend: hooks.backend ?? 'auto' }), onProgress: hooks.onZeroshot && ((d: number, t: number, ips: number) => hooks.onZeroshot!(phase, d, t, ips)) };
  return hooks.inProcess ? evaluateZeroshotInProcess(model, source, specs, opts) : evaluateZeroshot(model, source, specs, opts);
}

/** The file a saved model's run record goes to: inside an HF directory, beside a llama2.c file. */
export function recordPathFor(savePath: string): string {
  return formatForPath(savePath) === 'hf' ? path.join(savePath, RECIPE_FILE) : `${savePath}.recipe.json`;
}

/** The run record as JSON: non-finite numbers as strings, per-document zero-shot scores left out. */
export function recordJson(record: RunRecord): string {
  return JSON.stringify(
    record,
    (key, v) => (key === 'perDoc' || key === 'docs' ? undefined : typeof v === 'number' && !Number.isFinite(v) ? String(v) : v),
    2,
  );
}

/**
 * Run a recipe. Everything that can be checked is checked before any work (recipe, model,
 * outputs, memory plan); a failure after that leaves no partial save or dump behind.
 */
export async function runRecipe(recipe: Recipe, hooks: RecipeHooks = {}): Promise<RecipeOutcome> {
  const name = hooks.fieldName ?? ((f: string) => f);
  const { model, parts, owned } = prepareRecipe(recipe, hooks);
  let pruned: PruneOutcome | null = null;
  let dump: StagedDir | undefined;
  try {
    const r = parts.recipe;
    checkRecipeOutputs(model, r, !!hooks.force, name);
    const backend = backendDescription();
    const plan = planRecipe(model, parts, backend.startsWith('wasm'));
    requireFits(plan);
    const zsOptions = r.zeroshot && hooks.prepareZeroshot ? hooks.prepareZeroshot(model, plan, r) : null;
    const calibration = { ...r.calibration, storage: plan.storage, spillDir: r.memory.spillDir };
    const structure = parts.structure;
    // OWL measures its outlier ratios on the dense model first (one extra calibration pass).
    const allocation = r.allocation;
    const owl = allocation.method === 'owl' ? withOwlProgress(hooks, () => owlAllocation(model, calibration, structure, { m: allocation.m, lambda: allocation.lambda })) : null;
    const stage = (s: RecipeStage) => (done: number, total: number, tps?: number) => hooks.onStage?.(s, done, total, tps);
    const dense = r.compareDense ? evaluateSets(model, model.source, r, plan, stage('eval-dense')) : [];
    const denseZs = r.zeroshot && r.compareDense ? await zeroshot(model, model.source, r, hooks, 'dense', zsOptions) : null;
    const dsnot: DsnotRowStats | null = r.refine.method === 'dsnot' ? { swaps: 0, errorBefore: 0, errorAfter: 0 } : null;
    dump = r.dump ? stageDir(r.dump, 'prune-dump', { force: hooks.force }) : undefined;
    let source: WeightSource = model.source;
    if (parts.strategy) {
      const refine = r.refine;
      pruned = pruneModel(
        model,
        {
          method: r.method,
          params: r.params,
          structure,
          calibration,
          propagate: r.propagate,
          activationStorage: plan.storage,
          spillBlocks: plan.spillBlocks,
          spillDir: r.memory.spillDir,
          dumpDir: dump?.tmp,
          blockStructures: owl?.structures,
          permute: r.permute ?? undefined,
          refine:
            refine.method === 'dsnot'
              ? dsnotRefiner({ maxCycles: refine.maxCycles, threshold: refine.threshold, skip: refine.skip }, (t) => {
                  dsnot!.swaps += t.swaps;
                  dsnot!.errorBefore += t.errorBefore;
                  dsnot!.errorAfter += t.errorAfter;
                })
              : undefined,
        },
        { onBlock: stage('prune') },
      );
      source = pruned.source;
    }
    const prunedEvals = evaluateSets(model, source, r, plan, stage('eval-pruned'));
    const prunedZs = r.zeroshot ? await zeroshot(model, source, r, hooks, 'pruned', zsOptions) : null;
    if (prunedZs) hooks.onZeroshotResults?.(model, denseZs, prunedZs);
    const report: SparsityReport = pruned?.report ?? { layers: [], total: 0, pruned: 0, sparsity: 0 };
    const record: RunRecord = {
      recipe: r,
      codeVersion: gitVersion(),
      backend,
      calibration: pruned?.calibration ? withoutStarts(pruned.calibration) : null,
      owl: owl && { outlierRatios: owl.outlierRatios, blockTargets: owl.blockSparsities },
      results: {
        achievedSparsity: report.sparsity,
        prunedParams: report.pruned,
        prunableParams: report.total,
        eval: r.eval.map((e, k) => ({
          dataset: e.dataset,
          slice: prunedEvals[k].slice,
          seqlen: prunedEvals[k].seqlen,
          windows: prunedEvals[k].windows,
          tokens: prunedEvals[k].tokens,
          densePpl: dense[k]?.ppl ?? null,
          ppl: prunedEvals[k].ppl,
        })),
        zeroshot: prunedZs ? { dense: denseZs, pruned: prunedZs } : null,
      },
    };
    if (dump) {
      writeFileAtomic(path.join(dump.tmp, 'run.json'), recordJson({ ...record, ...(hooks.argv ? { argv: hooks.argv } : {}), report } as RunRecord));
      dump.commit();
      dump = undefined;
    }
    let saved: RecipeOutcome['saved'] = null;
    if (r.save) {
      // An HF folder carries the model card and crepe-recipe.json (the resolved recipe, results, code version) inside it.
      const card = prunedModelCard({
        model: r.model,
        recipe: { ...r, calibrationDrawn: record.calibration, backend },
        sparsity: report.sparsity,
        dtype: r.save.dtype,
        codeVersion: record.codeVersion,
        dense,
        pruned: prunedEvals,
        zeroshot: denseZs && prunedZs ? { dense: denseZs, pruned: prunedZs } : null,
        command: hooks.argv ? `crepe ${hooks.argv.join(' ')}` : null,
      });
      const format = saveModel(source, r.save.path, { tokenizer: model.tokenizerPath, dtype: r.save.dtype, force: hooks.force, card });
      // Read back: every pruned weight must be zero in the file, whatever the dtype.
      const check = savedSparsity(r.save.path, report.layers);
      // A llama2.c file has no folder: the run record goes beside it.
      const recordFile = recordPathFor(r.save.path);
      if (format === 'llama2c') writeFileAtomic(recordFile, recordJson(record), { kind: 'file' });
      saved = { path: r.save.path, format, dtype: r.save.dtype, ...check, record: recordFile };
    }
    return {
      record,
      plan,
      report,
      pruneSeconds: pruned?.seconds ?? 0,
      timing: pruned?.timing ?? null,
      owl,
      dsnot,
      dense,
      pruned: prunedEvals,
      zeroshot: record.results.zeroshot,
      saved,
    };
  } finally {
    dump?.abort();
    if (owned) (pruned?.source ?? model.source).close();
    else pruned?.source.release();
  }
}

/** OWL's dense calibration pass, whose progress the pipeline publishes (lib/util/progress.ts), as the 'owl' stage. */
function withOwlProgress<T>(hooks: RecipeHooks, run: () => T): T {
  const unsubscribe = subscribeProgress((e) => {
    if (e.pass === 'calibration' && e.unit === 'blocks') hooks.onStage?.('owl', e.done, e.total);
  });
  try {
    return run();
  } finally {
    unsubscribe();
  }
}

function withoutStarts(c: CalibrationDraw): Omit<CalibrationDraw, 'starts'> {
  const { starts: _starts, ...rest } = c;
  return rest;
}

/** A dense recipe's method name, re-exported for callers that build recipes. */
export { DENSE_METHOD };

/** Resolve and plan a recipe without running it (--dry-run): the resolved recipe and its memory plan. */
export function planOnly(recipe: Recipe, hooks: Pick<RecipeHooks, 'model' | 'fieldName' | 'force'> = {}): { recipe: ResolvedRecipe; plan: MemoryPlan } {
  const { model, parts, owned } = prepareRecipe(recipe, hooks);
  try {
    // a dry run refuses what the real run would refuse: outputs are checked before the plan
    checkRecipeOutputs(model, parts.recipe, !!hooks.force, hooks.fieldName ?? ((f) => f));
    return { recipe: parts.recipe, plan: planRecipe(model, parts, backendDescription().startsWith('wasm')) };
  } finally {
    if (owned) model.source.close();
  }
}
