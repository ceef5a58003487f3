/** The memory flags shared by commands that load a model (--max-memory, --activations, --evaluator, --spill-dir, --dry-run). */
import * as fs from 'fs';
import { CrepeError } from '../errors';
import { EvaluatorChoice, MemoryPlan, PlanRequest, StorageChoice, defaultMemoryLimit, describePlan, parseMemoryFlag, planJson, planMemory, requireFits } from '../plan/memory';
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
