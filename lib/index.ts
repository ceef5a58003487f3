/**
 * crepe's public API, the package's `main` (with type declarations, `types`): what a script needs
 * to open a model, prune it, measure its perplexity and zero-shot accuracy, save it as a folder
 * transformers loads, run sweeps and hyperparameter searches, and add a scoring strategy. The CLI
 * (scripts/cli.ts) is built on the same functions. Everything else under lib/ is internal.
 *
 *   const model = openModel('stories260K');
 *   const pruned = pruneModel(model, { method: 'wanda', params: resolveParams(getStrategy('wanda')),
 *     structure: parseStructure('unstructured', 0.5, 'row'), propagate: 'pruned',
 *     calibration: { dataset: 'tinystories', nsamples: 128, seqlen: 512, seed: 0 } });
 *   const [record] = evaluateSource(model, pruned.source, ['tinystories']);
 *
 * (after `await initBackend()`), or the same run as one recipe, as `crepe run` does:
 *
 *   const outcome = await runRecipe(parseRecipe({ model: 'stories260K', method: 'wanda', eval: [{ dataset: 'tinystories' }] }));
 *
 * docs/architecture.md describes the layers behind these.
 */
import './prune/strategies'; // registers the built-in strategies

export { CrepeError } from './errors';
export { initBackend, type BackendChoice } from './backend';
export { BUILTIN_MODELS, openModel, type OpenedModel } from './model/resolve';
export type { LlamaConfig, WeightSource } from './model/types';
export { saveModel } from './model/save';
export { loadTokenizer, type Tokenizer } from './tokenizers';
export { loadDataset } from './data/datasets';
export { getStrategy, listStrategies, registerStrategy, resolveParams, type LayerContext, type ParamSpec, type Params, type Strategy } from './prune/strategy';
export { parseStructure, selectMask, type Structure } from './prune/select';
export { pruneModel, type CalibrationSpec, type PruneOutcome, type PruneSpec } from './prune/pipeline';
export { evaluateSource, evaluateSourceJobs, datasetWindows, type EvalOptions, type EvalRecord } from './eval/evaluate';
export { perplexity, type PerplexityResult } from './eval/perplexity';
export { Rng } from './util/random';

// Writing models others load: HF folders with tokenizer files, model card and recipe file.
export { writeHfModel, type WriteHfOptions } from './model/convert';
export {
  writeModelCard,
  renderModelCard,
  prunedModelCard,
  convertedModelCard,
  baseModelInfo,
  RECIPE_FILE,
  type ModelCardInfo,
  type BaseModelInfo,
  type JsonObject,
} from './model/card';
export { tokenizerToHf, type HfTokenizerFiles } from './tokenizers/export';

// Zero-shot evaluation (lm-evaluation-harness tasks).
export { evaluateZeroshot, type ZeroshotOptions, type ZeroshotResult, type TaskResult } from './eval/zeroshot/evaluate';
export { TASKS, parseTaskList, type TaskSpec, type TaskDef } from './eval/zeroshot/tasks';
export { zeroshotMarkdown } from './eval/zeroshot/table';

// Sweeps and their reports.
export { planSweep, runSweep, type SweepPlan, type SweepSummary, type SweepEvents } from './experiments/sweep';
export { writeReport, readResults, type ReportFiles } from './experiments/report';

// Hyperparameter search.
export { calibrateOnce, evaluateConfiguration, fullEvaluation, type SearchSetup, type SearchOutcome, type FullEvaluation } from './search/objective';
export { buildSpace, type SearchSpace } from './search/space';
export { phoSearch, type PhoOptions, type PhoOutcome } from './search/pho';
export { hillClimbSearch, type HillClimbSearchOptions } from './search/hillclimb';

// Recipes: one run description, as crepe prune / crepe run execute it.
export { loadRecipe, parseRecipe, type Recipe, type RecipeInput } from './recipe/schema';
export { resolveRecipe, type ResolvedRecipe } from './recipe/resolve';
export { runRecipe, type RecipeHooks, type RecipeOutcome, type RunRecord } from './recipe/run';
