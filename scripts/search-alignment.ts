/**
 * Does a search's objective rank configurations the way the final pipeline does? For the
 * configurations a search comparison picked (results/search-comparison.csv, plus the start
 * point), on one model and structure: the one-shot PPL a search measures (every layer pruned
 * at once from stored statistics, dense or 'pruned'), against the PPL of the same configuration
 * pruned by the standard sequential pipeline (`crepe prune`), all on the first N validation
 * windows (never the test split). Prints each configuration and the Spearman rho of each
 * objective with the sequential PPL. The last-rung columns are the final measurements a search
 * can make its last choice with (lib/search/final.ts) on the first `rung` windows, as PHO's last
 * rung measures them: 'search' (one-shot from dense statistics, today's), 'pruned' and
 * 'sequential'.
 *
 *   node dist/scripts/search-alignment.js <config.json> <model> <structure> [windows=64] [rung=6]
 */
import * as fs from 'fs';
import * as path from 'path';
import { initBackend } from '../lib/backend';
import { loadSearchCompareConfig, structureFor } from '../lib/experiments/search-config';
import { RESULTS_CSV } from '../lib/experiments/search-compare';
import { calibrationFor } from '../lib/experiments/search-compare/run';
import { openModel } from '../lib/model/resolve';
import { Params, getStrategy } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { spearman } from '../lib/search/rank';
import { SEARCH_DATASET, calibrateOnce, fullEvaluation, setupOptionsFor } from '../lib/search/objective';
import { formatParams, searchStart } from '../lib/search/space';
import { finalPerplexity, withPrunedEvaluator } from '../lib/search/final';
import { parseCsv } from '../lib/util/csv';

async function main(): Promise<void> {
  const [file, modelName, structureName, windowsArg, rungArg] = process.argv.slice(2);
  if (!file || !modelName || !structureName) throw new Error('usage: search-alignment <config.json> <model> <structure> [windows] [rung]');
  const windows = Number(windowsArg ?? 64);
  const rung = Number(rungArg ?? 6);
  await initBackend('wasm');
  const config = loadSearchCompareConfig(file);
  const entry = config.structures.find((s) => s.name === structureName);
  if (!entry) throw new Error(`no structure '${structureName}' in ${file}`);
  const strategy = getStrategy(config.method);
  const model = openModel(modelName);
  const structure = structureFor(entry, config.method);
  const calibration = calibrationFor(model, config);
  const dense = calibrateOnce(model, strategy, structure, calibration, setupOptionsFor('dense', []));
  const pruned = calibrateOnce(model, strategy, structure, calibration, setupOptionsFor('pruned', []));
  // the final measurements as a search makes them: the search's dense setup plus 'pruned' statistics
  const finalSetup = withPrunedEvaluator(dense).setup;
  const csvFile = path.join('results', RESULTS_CSV);
  const { rows } = parseCsv(fs.readFileSync(csvFile, 'utf8'), csvFile);
  const configs = new Map<string, { params: Params; label: string }>();
  const start = searchStart(config.space);
  configs.set(formatParams(start), { params: start, label: 'start' });
  for (const r of rows) {
    if (r.model !== modelName || r.structure !== structureName || r.kind !== 'search') continue;
    const params: Params = Object.fromEntries(r.params.split(' ').map((kv: string) => kv.split('=')).map(([k, v]: string[]) => [k, Number(v)]));
    if (!configs.has(formatParams(params))) configs.set(formatParams(params), { params, label: `${r.run} seed ${r.seed}` });
  }
  const cols: Record<string, number[]> = { dense16: [], dense: [], pruned: [], lastSearch: [], lastPruned: [], lastSequential: [], sequential: [] };
  for (const { params, label } of configs.values()) {
    const d = dense.evaluator!;
    const p = pruned.evaluator!;
    const values = {
      dense16: d.perplexity(d.prune(params), SEARCH_DATASET, 16),
      dense: d.perplexity(d.prune(params), SEARCH_DATASET, windows),
      pruned: p.perplexity(p.prune(params), SEARCH_DATASET, windows),
      lastSearch: finalPerplexity(finalSetup, params, { measure: 'search' }, rung),
      lastPruned: finalPerplexity(finalSetup, params, { measure: 'pruned' }, rung),
      lastSequential: finalPerplexity(finalSetup, params, { measure: 'sequential' }, rung),
      sequential: fullEvaluation(model, config.method, params, structure, calibration, SEARCH_DATASET, windows).ppl,
    };
    for (const k of Object.keys(cols)) cols[k].push(values[k as keyof typeof values]);
    console.log(`${label.padEnd(18)} one-shot dense@16 ${values.dense16.toFixed(3)}  dense@${windows} ${values.dense.toFixed(3)}  pruned-stats@${windows} ${values.pruned.toFixed(3)}  last rung@${rung}: search ${values.lastSearch.toFixed(3)} pruned ${values.lastPruned.toFixed(3)} sequential ${values.lastSequential.toFixed(3)}  sequential@${windows} ${values.sequential.toFixed(3)}  ${formatParams(params)}`);
  }
  const rho = (k: string): string => spearman(cols[k], cols.sequential).toFixed(3);
  console.log(`== ${modelName} ${structureName}: Spearman rho with the sequential pipeline's PPL (n=${configs.size}): one-shot dense@16 ${rho('dense16')}, dense@${windows} ${rho('dense')}, pruned-stats@${windows} ${rho('pruned')}; last rung on ${rung} windows: search (one-shot dense) ${rho('lastSearch')}, 'pruned' ${rho('lastPruned')}, sequential ${rho('lastSequential')}`);
}

main().catch((e: unknown) => {
  console.error(`crepe: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
