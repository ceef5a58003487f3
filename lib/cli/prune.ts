import { FloatDtype } from '../model/safetensors';
import { PruneOutcome } from '../prune/pipeline';
import { getStrategy, parseParamPairs } from '../prune/strategy';
import { describePlan, planJson } from '../plan/memory';
import { zeroshotMarkdown } from '../eval/zeroshot/table';
import { CrepeError } from '../errors';
import { Recipe, RecipeInput, formatRecipe, parseRecipe } from '../recipe/schema';
import { DSNOT_DEFAULTS } from '../recipe/resolve';
import { RecipeHooks, RecipeOutcome, RecipeStage, planOnly, runRecipe } from '../recipe/run';
import { checkTaskFiles, parseTaskList } from '../eval/zeroshot/tasks';
import { PruneZeroshot, harnessFilesJson, pruneZeroshot, writeHarness, zeroshotJson, zeroshotOptions } from './zeroshot';
import { PruneTargetArgs, emit, inputPaths, numberFlag, positiveIntFlag, progressBar, startBackend, versionInfo } from './common';
import { MemoryArgs } from './memory';
export interface PruneArgs extends PruneTargetArgs, MemoryArgs {
  calibSeed: number;
  propagate: 'pruned' | 'dense';
  eval?: string[];
  seqlen?: number;
  maxWindows?: number;
  save?: string;
  /** dtype of an HF --save; default the source config's dtype, else F32. */
  dtype?: FloatDtype;
  dump?: string;
  /** Replace existing outputs crepe did not write. */
  force?: boolean;
  /** Add-ons: OWL allocation, DSnoT re-pruning, RIA channel permutation. */
  allocation?: string;
  owlM?: number;
  owlLambda?: number;
  refine?: string;
  dsnotCycles?: number;
  dsnotThreshold?: number;
  dsnotSkip?: 'mlp' | 'attn' | 'none';
  permute?: boolean;
  permuteRefine?: boolean;
  /** Zero-shot tasks scored on the dense and the pruned model (as `crepe zeroshot`). */
  zeroshot?: string[];
  zeroshotLimit?: number;
  zeroshotJobs?: number;
  /** lm-evaluation-harness results files of the zero-shot scoring (a folder), and per-document samples. */
  outputPath?: string;
  logSamples?: boolean;
  /** Print the recipe this command line means (resolved against the model) and stop. */
  printRecipe?: boolean;
  recipeFormat?: 'json' | 'yaml';
}

/** How a recipe field is named in messages of `crepe prune`: its flag. */
export const PRUNE_FLAG_NAMES: Record<string, string> = {
  group: '--group',
  permute: '--permute',
  refine: '--refine',
  save: '--save',
  dump: '--dump',
  dtype: '--dtype',
  params: '--param',
  'memory.spillDir': '--spill-dir',
};
export const pruneFlagName = (field: string): string => PRUNE_FLAG_NAMES[field] ?? field;

/**
 * A flag that only applies with another is refused when that other is absent (it would be
 * ignored without a word): one line naming the flag and what it needs.
 */
function checkFlagDependencies(args: PruneArgs): void {
  const needs: [string, unknown, string, boolean][] = [
    ['--zeroshot-limit', args.zeroshotLimit, '--zeroshot', !!args.zeroshot?.length],
    ['--zeroshot-jobs', args.zeroshotJobs, '--zeroshot', !!args.zeroshot?.length],
    ['--owl-m', args.owlM, '--allocation owl', args.allocation === 'owl'],
    ['--owl-lambda', args.owlLambda, '--allocation owl', args.allocation === 'owl'],
    ['--dsnot-cycles', args.dsnotCycles, '--refine dsnot', args.refine === 'dsnot'],
    ['--dsnot-threshold', args.dsnotThreshold, '--refine dsnot', args.refine === 'dsnot'],
    ['--dsnot-skip', args.dsnotSkip, '--refine dsnot', args.refine === 'dsnot'],
    ['--seqlen', args.seqlen, '--eval', !!args.eval?.length],
    ['--max-windows', args.maxWindows, '--eval', !!args.eval?.length],
    ['--dtype', args.dtype, '--save', args.save !== undefined],
  ];
  for (const [flag, value, needed, present] of needs) {
    if (value !== undefined && !present) throw new CrepeError(`${flag} only applies with ${needed}`);
  }
}

function fmtPpl(r: { dataset: string; ppl: number; windows: number; seqlen: number }): string {
  return `${r.dataset}: PPL ${r.ppl.toFixed(4)} (${r.windows} x ${r.seqlen})`;
}

/**
 * The recipe a `crepe prune` command line means. Flag values are checked here with messages
 * naming the flag; everything else (method, parameters, structure against the model, add-on
 * combinations) is checked when the recipe is resolved.
 */
export function recipeFromArgs(args: PruneArgs): Recipe {
  const strategy = args.method === 'dense' ? undefined : getStrategy(args.method);
  const params = parseParamPairs(args.param ?? [], strategy);
  const sparsity = args.sparsity === undefined ? undefined : numberFlag('sparsity', args.sparsity);
  const nsamples = positiveIntFlag('nsamples', args.nsamples);
  const seed = numberFlag('calib-seed', args.calibSeed);
  const allocation = args.allocation ?? 'uniform';
  if (allocation !== 'uniform' && allocation !== 'owl') throw new CrepeError(`--allocation must be 'uniform' or 'owl', got '${allocation}'`);
  const refine = args.refine ?? 'none';
  if (refine !== 'none' && refine !== 'dsnot') throw new CrepeError(`--refine must be 'none' or 'dsnot', got '${refine}'`);
  const owlM = args.owlM === undefined ? undefined : numberFlag('owl-m', args.owlM);
  const owlLambda = args.owlLambda === undefined ? undefined : numberFlag('owl-lambda', args.owlLambda);
  const dsnotCycles = numberFlag('dsnot-cycles', args.dsnotCycles ?? DSNOT_DEFAULTS.maxCycles);
  const dsnotThreshold = numberFlag('dsnot-threshold', args.dsnotThreshold ?? DSNOT_DEFAULTS.threshold);
  if (!Number.isInteger(dsnotCycles) || dsnotCycles < 0) throw new CrepeError(`--dsnot-cycles must be a whole number >= 0, got ${dsnotCycles}`);
  if (dsnotThreshold < 0) throw new CrepeError(`--dsnot-threshold must be >= 0, got ${dsnotThreshold}`);
  if (!Number.isInteger(seed) || seed < 0) throw new CrepeError(`--calib-seed must be a whole number >= 0, got ${seed}`);
  const permute = !!(args.permute || args.permuteRefine);
  const zeroshot = args.zeroshot?.length
    ? { tasks: args.zeroshot, ...(args.zeroshotLimit !== undefined ? { limit: positiveIntFlag('zeroshot-limit', args.zeroshotLimit) } : {}), jobs: positiveIntFlag('zeroshot-jobs', args.zeroshotJobs ?? 1) }
    : undefined;
  const evalSets = (args.eval ?? []).map((dataset) => ({
    dataset,
    ...(args.seqlen !== undefined ? { seqlen: args.seqlen } : {}),
    ...(args.maxWindows !== undefined ? { maxWindows: positiveIntFlag('max-windows', args.maxWindows) } : {}),
  }));
  const input: RecipeInput = {
    model: args.model,
    ...(args.tokenizer !== undefined ? { tokenizer: args.tokenizer } : {}),
    method: args.method,
    params,
    structure: args.structure,
    ...(sparsity !== undefined ? { sparsity } : {}),
    ...(args.group !== undefined ? { group: args.group } : {}),
    allocation: allocation === 'owl' ? { method: 'owl', ...(owlM !== undefined ? { m: owlM } : {}), ...(owlLambda !== undefined ? { lambda: owlLambda } : {}) } : { method: 'uniform' },
    refine: refine === 'dsnot' ? { method: 'dsnot', maxCycles: dsnotCycles, threshold: dsnotThreshold, skip: args.dsnotSkip ?? DSNOT_DEFAULTS.skip } : { method: 'none' },
    permute: permute ? { refine: !!args.permuteRefine } : null,
    calibration: { dataset: args.calib, nsamples, ...(args.calibSeqlen !== undefined ? { seqlen: args.calibSeqlen } : {}), seed },
    propagate: args.propagate,
    memory: {
      ...(args.maxMemory !== undefined ? { maxMemory: args.maxMemory } : {}),
      activations: args.activations ?? 'auto',
      evaluator: args.evaluator ?? 'auto',
      ...(args.spillDir !== undefined ? { spillDir: args.spillDir } : {}),
    },
    eval: evalSets,
    ...(zeroshot ? { zeroshot } : {}),
    ...(args.save !== undefined ? { save: { path: args.save, ...(args.dtype !== undefined ? { dtype: args.dtype } : {}) } } : {}),
    ...(args.dump !== undefined ? { dump: args.dump } : {}),
  };
  return parseRecipe(input, 'command line');
}

export async function pruneCommand(args: PruneArgs): Promise<void> {
  // Validate everything before any work, so bad input never leaves a partial output behind.
  checkFlagDependencies(args);
  const recipe = recipeFromArgs(args);
  if (recipe.zeroshot) checkTaskFiles(parseTaskList(recipe.zeroshot.tasks));
  // zero-shot flags that are not part of the recipe's result (bootstrap, BOS) keep their defaults
  const backend = await startBackend(args.backend);
  if (args.printRecipe) {
    const { recipe: resolved } = planOnly(recipe, { fieldName: pruneFlagName, force: args.force });
    process.stdout.write(formatRecipe(resolved, args.recipeFormat ?? 'json'));
    return;
  }
  if (args.dryRun) {
    const { recipe: resolved, plan } = planOnly(recipe, { fieldName: pruneFlagName, force: args.force });
    emit(args.json, { dry_run: true, model: args.model, method: args.method, recipe: resolved, memory_plan: planJson(plan) }, () => describePlan(plan));
    if (!plan.fits) process.exitCode = 2;
    return;
  }
  if ((args.outputPath !== undefined || args.logSamples) && !recipe.zeroshot) throw new CrepeError('--output-path and --log-samples write zero-shot results: add --zeroshot TASKS');
  // Zero-shot: tasks tokenized, scoring planned beside the pruned blocks, harness outputs checked (before any work).
  let zs: PruneZeroshot | null = null;
  const zsOpts = zeroshotOptions({ limit: args.zeroshotLimit, jobs: args.zeroshotJobs ?? 1, backend: args.backend });
  const hooks: Pick<RecipeHooks, 'prepareZeroshot' | 'onZeroshotResults'> = {
    prepareZeroshot: (model, plan, r) => {
      const tasks = parseTaskList(r.zeroshot!.tasks);
      const structureLabel = r.group ? `${r.structure}-${r.sparsity}` : r.structure;
      zs = pruneZeroshot(
        model,
        tasks,
        zsOpts,
        args,
        { name: `${r.model}-${r.method}-${structureLabel}`, args: `pretrained=${r.model},method=${r.method},structure=${structureLabel},params=${JSON.stringify(r.params)}`, blocksHeld: !plan.spillBlocks },
        backend.startsWith('wasm'),
        [...inputPaths(model, [r.calibration.dataset, ...r.eval.map((e) => e.dataset)]), ...tasks.map((t) => t.file).filter((f): f is string => f !== undefined)],
      );
      return zs.run;
    },
    onZeroshotResults: (model, dense, pruned) => {
      const z = zs!;
      const run = { backend, evaluator: z.run.evaluator, jobs: zsOpts.jobs };
      if (z.dense && dense) writeHarness(z.dense, model, dense, run);
      if (z.pruned) writeHarness(z.pruned, model, pruned, { ...run, pruned: { method: recipe.method, params: recipe.params, structure: recipe.structure, sparsity: recipe.sparsity ?? 0.5 } });
    },
  };
  await runAndPrint(recipe, { backend, json: args.json, force: args.force, backendChoice: args.backend, argv: process.argv.slice(2), hooks, zeroshotFiles: () => zs });
}

/** Run a recipe with progress bars and print its outcome (shared by `crepe prune` and `crepe run`). */
export async function runAndPrint(
  recipe: Recipe,
  o: {
    backend: string;
    json: boolean;
    force?: boolean;
    backendChoice: PruneArgs['backend'];
    argv: string[];
    fieldName?: (f: string) => string;
    hooks?: Pick<RecipeHooks, 'prepareZeroshot' | 'onZeroshotResults'>;
    /** The harness files the zero-shot scoring wrote (prune --output-path). */
    zeroshotFiles?: () => PruneZeroshot | null;
  },
): Promise<RecipeOutcome> {
  // one bar at a time: each stage's bar is stopped (its one line printed) when the next stage starts
  const labels: Record<RecipeStage | 'zeroshot-dense' | 'zeroshot-pruned', [string, string]> = {
    owl: ['owl dense pass', 'blocks'],
    'eval-dense': ['eval dense', 'windows'],
    prune: [`prune ${recipe.method}`, 'blocks'],
    'eval-pruned': ['eval pruned', 'windows'],
    'zeroshot-dense': ['zeroshot dense', 'items'],
    'zeroshot-pruned': ['zeroshot pruned', 'items'],
  };
  const open: { stage: keyof typeof labels | null; bar: ReturnType<typeof progressBar> | null } = { stage: null, bar: null };
  const show = (stage: keyof typeof labels, done: number, total: number, rate: string): void => {
    if (open.stage !== stage || !open.bar) {
      open.bar?.stop();
      const [label, unit] = labels[stage];
      open.stage = stage;
      open.bar = progressBar(label, unit);
      open.bar.start(total, 0, { rate: '' });
    }
    open.bar.update(done, { rate });
  };
  let outcome: RecipeOutcome;
  try {
    outcome = await runRecipe(recipe, {
      ...o.hooks,
      force: o.force,
      backend: o.backendChoice,
      fieldName: o.fieldName ?? pruneFlagName,
      argv: o.argv,
      onStage: (stage, done, total, tps) => show(stage, done, total, tps === undefined ? '' : `${Math.round(tps)} tok/s`),
      onZeroshot: (phase, done, total, ips) => show(`zeroshot-${phase}`, done, total, `${ips.toFixed(1)} items/s`),
    });
  } finally {
    open.bar?.stop();
  }
  printOutcome(outcome, o.json, o.backend, o.zeroshotFiles?.() ?? null);
  return outcome;
}

function printOutcome(outcome: RecipeOutcome, json: boolean, backend: string, zsFiles: PruneZeroshot | null): void {
  const r = outcome.record.recipe;
  const report = outcome.report;
  const owl = outcome.owl;
  const timing = outcome.timing;
  const dense = outcome.dense;
  const pruned = outcome.pruned;
  const zs = outcome.zeroshot;
  const unstructured = r.group !== undefined;
  const result = {
    model: r.model,
    method: r.method,
    params: r.params,
    structure: r.structure,
    group: r.group ?? null,
    sparsity: r.sparsity,
    calibration: outcome.record.calibration,
    propagate: r.propagate,
    allocation: owl && r.allocation.method === 'owl'
      ? { method: 'owl', m: r.allocation.m, lambda: r.allocation.lambda, outlier_ratios: owl.outlierRatios, block_targets: owl.blockSparsities }
      : { method: 'uniform' },
    refine: r.refine.method === 'dsnot' ? { method: 'dsnot', max_cycles: r.refine.maxCycles, threshold: r.refine.threshold, skip: r.refine.skip } : null,
    permute: r.permute,
    backend,
    code_version: versionInfo(),
    recipe: r,
    achieved_sparsity: report.sparsity,
    pruned_params: report.pruned,
    prunable_params: report.total,
    prune_seconds: outcome.pruneSeconds,
    prune_timing: timing && {
      read_seconds: timing.readSeconds,
      calibration_seconds: timing.calibrationSeconds,
      scoring_seconds: timing.scoringSeconds,
      calib_forwards: timing.calibForwards,
      cpu_read_seconds: timing.cpu.readSeconds,
      cpu_calibration_seconds: timing.cpu.calibrationSeconds,
      cpu_scoring_seconds: timing.cpu.scoringSeconds,
    },
    block_sparsities: blockSparsities(report.layers),
    dsnot: outcome.dsnot ? { swaps: outcome.dsnot.swaps, abs_error_before: outcome.dsnot.errorBefore, abs_error_after: outcome.dsnot.errorAfter } : null,
    layers: report.layers,
    // the run record's evaluations, with the CLI's timings
    eval: outcome.record.results.eval.map((e, k) => ({
      dataset: e.dataset,
      slice: e.slice,
      seqlen: e.seqlen,
      windows: e.windows,
      tokens: e.tokens,
      dense_ppl: e.densePpl,
      pruned_ppl: e.ppl,
      eval_seconds: pruned[k].seconds,
      eval_blocks_seconds: pruned[k].stages?.blocksSeconds ?? null,
      eval_head_seconds: pruned[k].stages?.headSeconds ?? null,
      eval_blocks_cpu_seconds: pruned[k].stages?.blocksCpuSeconds ?? null,
      eval_head_cpu_seconds: pruned[k].stages?.headCpuSeconds ?? null,
    })),
    zeroshot: zs
      ? {
          dense: zs.dense && zeroshotJson(zs.dense),
          pruned: zeroshotJson(zs.pruned),
          evaluator: zsFiles?.run.evaluator ?? null,
          harness_files: zsFiles ? { dense: harnessFilesJson(zsFiles.dense), pruned: harnessFilesJson(zsFiles.pruned) } : null,
        }
      : null,
    saved: r.save?.path ?? null,
    saved_model: outcome.saved && { format: outcome.saved.format, dtype: outcome.saved.dtype, sparsity: outcome.saved.sparsity, zeros: outcome.saved.zeros, record: outcome.saved.record },
    dump: r.dump ?? null,
    memory_plan: planJson(outcome.plan),
  };
  emit(json, result, () => {
    const lines = [
      `${r.model} pruned with ${r.method} ${JSON.stringify(r.params)}, ${r.structure}${unstructured ? ` ${r.sparsity} per ${r.group}` : ''}; backend ${backend}`,
      `sparsity ${(report.sparsity * 100).toFixed(4)}% of ${report.total} prunable weights; pruning took ${outcome.pruneSeconds.toFixed(2)} s`,
    ];
    if (owl && r.allocation.method === 'owl') {
      lines.push(`OWL allocation (M ${r.allocation.m}, lambda ${r.allocation.lambda}); target mean ${(mean(owl.blockSparsities) * 100).toFixed(4)}%:`);
      blockSparsities(report.layers).forEach((s, b) =>
        lines.push(`  block ${b}: outlier ratio ${owl.outlierRatios[b].toFixed(3)}%, target ${(owl.blockSparsities[b] * 100).toFixed(3)}%, achieved ${(s * 100).toFixed(3)}%`),
      );
    }
    if (outcome.dsnot) {
      const d = outcome.dsnot;
      lines.push(`DSnoT: ${d.swaps} swaps; sum over rows of |expected error| ${d.errorBefore.toPrecision(5)} -> ${d.errorAfter.toPrecision(5)}`);
    }
    for (const l of report.layers) lines.push(`  ${l.key.padEnd(22)} [${l.shape.join(' x ')}] ${(l.sparsity * 100).toFixed(2)}%`);
    r.eval.forEach((_, k) => {
      if (dense[k]) lines.push(`dense  ${fmtPpl(dense[k])}`);
      lines.push(`pruned ${fmtPpl(pruned[k])}`);
    });
    if (zs) {
      lines.push(
        zeroshotMarkdown([
          ...(zs.dense ? [{ label: 'dense', result: zs.dense }] : []),
          { label: `${r.method} ${r.structure}${unstructured ? ` ${r.sparsity}` : ''}`, result: zs.pruned },
        ]),
      );
    }
    if (outcome.saved) lines.push(`saved to ${outcome.saved.path} (${outcome.saved.format}, ${outcome.saved.dtype}; sparsity read back ${(outcome.saved.sparsity * 100).toFixed(4)}%); run record in ${outcome.saved.record}`);
    if (r.dump) lines.push(`artefacts in ${r.dump}`);
    return lines.join('\n');
  });
}

/** Achieved sparsity per decoder block, from the per-layer report (keys `blocks.<b>.…`). */
function blockSparsities(layers: PruneOutcome['report']['layers']): number[] {
  const pruned: number[] = [];
  const total: number[] = [];
  for (const l of layers) {
    const b = Number(l.key.split('.')[1]);
    pruned[b] = (pruned[b] ?? 0) + l.pruned;
    total[b] = (total[b] ?? 0) + l.total;
  }
  return total.map((t, b) => pruned[b] / t);
}

function mean(v: readonly number[]): number {
  return v.reduce((a, b) => a + b, 0) / v.length;
}
