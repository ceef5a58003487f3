/**
 * The memory flags shared by commands that load a model (--max-memory, --activations, --evaluator,
 * --spill-dir, --dry-run), and the planning of every command that loads one.
 */
import * as fs from 'fs';
import { CrepeError } from '../errors';
import { probeWritable } from '../io/outputs';
import { LlamaConfig } from '../model/types';
import { OpenedModel, openModel } from '../model/resolve';
import { Strategy, getStrategy } from '../prune/strategy';
import { ComparePlan } from '../experiments/search-compare/plan';
import { setupOptionsFor } from '../search/objective';
import {
  EvaluatorChoice, MemoryPlan, PlanRequest, StorageChoice, defaultMemoryLimit, describePlan, parseMemoryFlag, planJson, planMemory, requireFits, scoringCopies, searchPlanRequest,
} from '../plan/memory';
import { emit } from './common';

export interface MemoryArgs {
  maxMemory?: string | number;
  activations?: StorageChoice;
  evaluator?: EvaluatorChoice;
  spillDir?: string;
  dryRun?: boolean;
}

/** The budget and choices of the memory flags, validated. */
export function memoryChoices(args: MemoryArgs): Pick<PlanRequest, 'limit' | 'storage' | 'evaluator' | 'spillDir'> {
  const limit = args.maxMemory === undefined ? defaultMemoryLimit() : parseMemoryFlag(args.maxMemory);
  if (args.spillDir !== undefined && !fs.statSync(args.spillDir, { throwIfNoEntry: false })?.isDirectory()) {
    throw new CrepeError(`--spill-dir ${args.spillDir} is not an existing folder`);
  }
  if (args.spillDir !== undefined) probeWritable(args.spillDir, `spill files in --spill-dir ${args.spillDir}`);
  return { limit, storage: args.activations ?? 'auto', evaluator: args.evaluator ?? 'auto', spillDir: args.spillDir };
}

/**
 * Plan, then: with --dry-run print the plan and return null (the command stops there); when the
 * request cannot fit, refuse in one line before any work; else return the plan.
 */
export function planOrRefuse(req: PlanRequest, args: MemoryArgs & { json: boolean }, extra: Record<string, unknown> = {}): MemoryPlan | null {
  const plan = planMemory(req);
  if (args.dryRun) {
    emit(args.json, { dry_run: true, ...extra, memory_plan: planJson(plan) }, () => describePlan(plan));
    if (!plan.fits) process.exitCode = 2;
    return null;
  }
  requireFits(plan);
  return plan;
}

/** --max-memory and --dry-run of a command that is planned but chooses nothing else (generate, zeroshot, searches). */
export interface BudgetArgs {
  maxMemory?: string | number;
  dryRun?: boolean;
  json: boolean;
}

/** The --max-memory budget, validated (default 80% of RAM). */
export function budgetOf(args: { maxMemory?: string | number }): number {
  return args.maxMemory === undefined ? defaultMemoryLimit() : parseMemoryFlag(args.maxMemory);
}

/**
 * Plan a command that keeps the whole model on the device (generate, zeroshot: no streaming
 * path): one window of `seqlen` tokens per process, `jobs` processes. As planOrRefuse.
 */
export function planResident(
  config: LlamaConfig,
  args: BudgetArgs,
  r: { seqlen: number; jobs: number; lengthFlag: string | null; wasm: boolean },
  extra: Record<string, unknown> = {},
): MemoryPlan | null {
  return planOrRefuse(
    {
      config,
      eval: { windows: 1, seqlen: r.seqlen, jobs: r.jobs },
      limit: budgetOf(args),
      storage: 'auto',
      evaluator: 'resident',
      residentOnly: true,
      lengthFlag: r.lengthFlag,
      wasm: r.wasm,
    },
    args,
    extra,
  );
}

/** Plan a search (search, proxy-study): see searchPlanRequest. As planOrRefuse. */
export function planSearch(
  model: OpenedModel,
  strategy: Strategy,
  s: { nsamples: number; seqlen: number; keepInputs: number; fisherWindows?: number; evalWindows: number },
  args: BudgetArgs,
  wasm: boolean,
  extra: Record<string, unknown> = {},
): MemoryPlan | null {
  const req = searchPlanRequest(
    model.source.config,
    { ...s, fisherWindows: s.fisherWindows ?? 0, gram: !!strategy.statsNeeds?.gram, scoreCopies: scoringCopies(strategy.name) },
    { limit: budgetOf(args), wasm },
  );
  return planOrRefuse(req, args, extra);
}

/**
 * Plan every model of a search comparison (each runs its searches one after the other, as
 * `crepe search` would): false when --dry-run printed the plans or stopped the command.
 */
export function planComparisonMemory(plan: ComparePlan, args: BudgetArgs, wasm: boolean): boolean {
  const { config } = plan;
  const strategy = getStrategy(config.method);
  const proxies = [...new Set(config.pho.flatMap((v) => v.proxies.map((p) => p.proxy)))];
  const options = setupOptionsFor(config.calibration.stats, proxies);
  let go = true;
  for (const name of config.models) {
    const model = openModel(name);
    try {
      const s = { nsamples: config.calibration.nsamples, seqlen: model.source.config.maxSeqLen, keepInputs: options.keepInputs, fisherWindows: options.fisherWindows, evalWindows: config.hillclimb.searchWindows };
      if (!planSearch(model, strategy, s, args, wasm, { model: name, method: config.method })) go = false;
    } finally {
      model.source.close();
    }
  }
  return go;
}
