/**
 * Validation probe for PHO variants: runs the named variants of a search-compare config (same
 * calibration, statistics, space and seeds as `crepe search-compare`) and measures each pick's
 * PPL on the first 16 TinyStories validation windows, the objective hill climbing optimizes, so
 * variants can be compared without looking at the test split. Prints one line per run and the
 * mean per cell; loop CPU seconds are this process's (user + system).
 *
 *   node dist/scripts/search-probe.js <config.json> <variant,...> [model,...]
 */
import { initBackend } from '../lib/backend';
import { loadSearchCompareConfig, structureFor } from '../lib/experiments/search-config';
import { calibrationFor } from '../lib/experiments/search-compare/run';
import { openModel } from '../lib/model/resolve';
import { getStrategy } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { SearchSetup, calibrateOnce, setupOptionsFor } from '../lib/search/objective';
import { phoSearch } from '../lib/search/pho';

const PROBE_WINDOWS = 16;

async function main(): Promise<void> {
  const [file, variants, models] = process.argv.slice(2);
  if (!file || !variants) throw new Error('usage: search-probe <config.json> <variant,...> [model,...]');
  await initBackend('wasm');
  const config = loadSearchCompareConfig(file);
  const chosen = variants.split(',').map((name) => {
    const v = config.pho.find((p) => p.name === name);
    if (!v) throw new Error(`no PHO variant '${name}' in ${file}`);
    return v;
  });
  const strategy = getStrategy(config.method);
  for (const name of models ? models.split(',') : config.models) {
    const model = openModel(name);
    const proxies = chosen.flatMap((v) => v.proxies.map((p) => p.proxy));
    let base: SearchSetup | null = null;
    for (const entry of config.structures) {
      const structure = structureFor(entry, config.method);
      base ??= calibrateOnce(model, strategy, structure, calibrationFor(model, config), setupOptionsFor(config.calibration.stats, proxies));
      const setup: SearchSetup = { ...base, structure, evaluator: base.evaluator?.withStructure(structure) };
      const ev = setup.evaluator!;
      for (const v of chosen) {
        const ppls: number[] = [];
        for (const seed of v.seeds) {
          const [first, ...rest] = v.proxies;
          const cpu0 = process.cpuUsage();
          const r = phoSearch(setup, config.space, { ...first, portfolio: rest, budget: v.budget, seed, verify: v.verify, proxyRows: v.proxyRows });
          const cpu = process.cpuUsage(cpu0);
          const ppl = ev.perplexity(ev.prune(r.best), setup.dataset, PROBE_WINDOWS);
          ppls.push(ppl);
          const params = Object.entries(r.best).map(([k, x]) => `${k}=${x.toPrecision(4)}`).join(' ');
          console.log(`${name} ${entry.name} ${v.name} seed ${seed}: val PPL@${PROBE_WINDOWS} ${ppl.toFixed(4)}; ${r.proxyEvals} proxy + ${r.windowEvals} window evaluations; loop ${r.seconds.toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU; ${params}`);
        }
        console.log(`== ${name} ${entry.name} ${v.name}: mean val PPL@${PROBE_WINDOWS} ${(ppls.reduce((a, x) => a + x, 0) / ppls.length).toFixed(4)}`);
      }
    }
  }
}

main().catch((e: unknown) => {
  console.error(`crepe: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
