/**
 * crepe's public API, the package's `main`: what a script needs to open a model, prune it,
 * measure its perplexity and save it in-process, and to add a scoring strategy. The CLI
 * (scripts/cli.ts) is built on the same functions. Everything else under lib/ is internal.
 *
 *   const model = openModel('stories260K');
 *   const pruned = pruneModel(model, { method: 'wanda', params: resolveParams(getStrategy('wanda')),
 *     structure: parseStructure('unstructured', 0.5, 'row'), propagate: 'pruned',
 *     calibration: { dataset: 'tinystories', nsamples: 128, seqlen: 512, seed: 0 } });
 *   const [record] = evaluateSource(model, pruned.source, ['tinystories']);
 *
 * (after `await initBackend()`). docs/architecture.md describes the layers behind these.
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
export { evaluateSource, type EvalRecord } from './eval/evaluate';
export { Rng } from './util/random';
