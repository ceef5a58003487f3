import { describePlan, planJson } from '../plan/memory';
import { formatRecipe, loadRecipe } from '../recipe/schema';
import { planOnly } from '../recipe/run';
import { CommonArgs, emit, startBackend } from './common';
import { runAndPrint } from './prune';

export interface RunArgs extends CommonArgs {
  recipe: string;
  force?: boolean;
  dryRun?: boolean;
  printRecipe?: boolean;
  recipeFormat?: 'json' | 'yaml';
}

/** `crepe run RECIPE`: run a recipe file (JSON or YAML) and print as `crepe prune` does. */
export async function runCommand(args: RunArgs): Promise<void> {
  const recipe = loadRecipe(args.recipe);
  const backend = await startBackend(args.backend);
  if (args.printRecipe) {
    process.stdout.write(formatRecipe(planOnly(recipe).recipe, args.recipeFormat ?? 'json'));
    return;
  }
  if (args.dryRun) {
    const { recipe: resolved, plan } = planOnly(recipe);
    emit(args.json, { dry_run: true, recipe: resolved, memory_plan: planJson(plan) }, () => describePlan(plan));
    if (!plan.fits) process.exitCode = 2;
    return;
  }
  await runAndPrint(recipe, { backend, json: args.json, force: args.force, backendChoice: args.backend, argv: process.argv.slice(2), fieldName: (f) => f });
}
