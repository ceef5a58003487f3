/**
 * Validation probe for search methods: runs hill climbing and/or the named PHO variants of a
 * search-compare config (same calibration, statistics, space and seeds as `crepe search-compare`)
 * and measures each pick the way the comparison's final number is made, with the standard
 * sequential pipeline (`crepe prune`), but on held-out VALIDATION windows: `heldOut` windows
 * evenly spaced over the validation split, none of them one a search looked at.
 * So variants can be chosen without looking at the test split. Prints one line per run and the
 * mean per cell; loop CPU seconds are this process's (user + system).
 *
 *   node dist/scripts/search-probe.js <config.json> <run,...> [model,...] [structure,...]
 *
 * run: hillclimb or a PHO variant's name. Environment: CREPE_PROBE_HELDOUT=64 (held-out
 * windows), CREPE_PROBE_STATS=dense|pruned and CREPE_PROBE_SAMPLE=first|spread (override the
 * config's statistics and search windows), CREPE_PROBE_POOL=1 (also print the held-out PPL of
 * every configuration a PHO run measured by PPL: what an oracle selection would reach),
 * CREPE_PROBE_HC_FINALS=measure:candidates:windows[:calibrationWindows],... (hill climbing: also
 * the pick each of these final choices makes from the same climb, as `hillclimb.final` would
 * make it, with its held-out PPL and its seconds; the climb is run once).
 */
import { initBackend } from '../lib/backend';
import { datasetWindows } from '../lib/eval/evaluate';
import { perplexity } from '../lib/eval/perplexity';
import { LlamaModel } from '../lib/model/runtime';
import { loadSearchCompareConfig, structureFor } from '../lib/experiments/search-config';
import { calibrationFor } from '../lib/experiments/search-compare/run';
import { openModel } from '../lib/model/resolve';
import { pruneModel } from '../lib/prune/pipeline';
import { Params, getStrategy } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { hillClimbSearch } from '../lib/search/hillclimb';
import { SEARCH_DATASET, SearchOutcome, SearchSetup, StatsKind, calibrateOnce, setupOptionsFor } from '../lib/search/objective';
import { phoSearch } from '../lib/search/pho';
import { formatParams } from '../lib/search/space';
import { WindowSample, spreadWindowIndices } from '../lib/search/evaluator';
import { FINAL_MEASURES, FinalMeasure, chooseFinal, finalMeasureLabel, withPrunedEvaluator } from '../lib/search/final';
import { HillClimbFinal, bestDistinct } from '../lib/search/hillclimb';
import { EvalLog } from '../lib/search/objective';
import { needsPrunedStatistics } from '../lib/experiments/search-compare/run';

/** CREPE_PROBE_HC_FINALS: "sequential:3:6,pruned:3:16,sequential:2:6:8". */
function parseFinals(text: string | undefined): HillClimbFinal[] {
  if (!text) return [];
  return text.split(',').map((part) => {
    const [measure, candidates, windows, cal] = part.split(':');
    if (!(FINAL_MEASURES as readonly string[]).includes(measure) || !(Number(candidates) > 0) || !(Number(windows) > 0)) throw new Error(`CREPE_PROBE_HC_FINALS: cannot read '${part}' (measure:candidates:windows[:calibrationWindows])`);
    return { measure: measure as FinalMeasure, candidates: Number(candidates), windows: Number(windows), ...(cal ? { calibrationWindows: Number(cal) } : {}) };
  });
}

async function main(): Promise<void> {
  const [file, runs, models, structures] = process.argv.slice(2);
  if (!file || !runs) throw new Error('usage: search-probe <config.json> <run,...> [model,...] [structure,...]');
  const heldOut = Number(process.env.CREPE_PROBE_HELDOUT ?? 64);
  await initBackend('wasm');
  const loaded = loadSearchCompareConfig(file);
  const stats = (process.env.CREPE_PROBE_STATS ?? loaded.calibration.stats) as StatsKind;
  const sample = (process.env.CREPE_PROBE_SAMPLE ?? loaded.searchSample) as WindowSample;
  if (!['dense', 'pruned'].includes(stats) || !['first', 'spread'].includes(sample)) throw new Error(`CREPE_PROBE_STATS must be dense or pruned and CREPE_PROBE_SAMPLE first or spread`);
  const config = { ...loaded, calibration: { ...loaded.calibration, stats }, searchSample: sample };
  const searchWindows = config.hillclimb.searchWindows;
  const hcFinals = parseFinals(process.env.CREPE_PROBE_HC_FINALS);
  const needPruned = needsPrunedStatistics(config) || hcFinals.some((f) => f.measure === 'pruned');
  const chosen = runs.split(',');
  for (const name of chosen) {
    if (name !== 'hillclimb' && !config.pho.some((p) => p.name === name)) throw new Error(`no PHO variant '${name}' in ${file}`);
  }
  const strategy = getStrategy(config.method);
  const proxies = [...new Set(config.pho.flatMap((v) => v.proxies.map((p) => p.proxy)))];
  for (const name of models ? models.split(',') : config.models) {
    const model = openModel(name);
    const calibration = calibrationFor(model, config);
    // held-out windows: evenly spaced over the split, skipping any window a search subset uses
    const all = datasetWindows(model, SEARCH_DATASET).windows;
    const searched = new Set(config.searchSample === 'spread' ? spreadWindowIndices(all.length, searchWindows) : Array.from({ length: searchWindows }, (_, i) => i));
    const held: Int32Array[] = [];
    for (let j = 0; j < heldOut; j++) {
      let i = Math.floor(((j + 0.5) * all.length) / heldOut);
      while (searched.has(i)) i++;
      held.push(all[i]);
    }
    /** Held-out validation PPL of a configuration pruned by the standard pipeline. */
    const heldOutPpl = (params: Params): number => {
      const pruned = pruneModel(model, { method: config.method, params, structure: setup.structure, calibration, propagate: 'pruned' });
      const runtime = LlamaModel.fromSource(pruned.source);
      try {
        return perplexity(runtime, held).ppl;
      } finally {
        runtime.dispose();
      }
    };
    let base: SearchSetup | null = null;
    let setup!: SearchSetup;
    for (const entry of config.structures) {
      if (structures && !structures.split(',').includes(entry.name)) continue;
      const structure = structureFor(entry, config.method);
      if (config.calibration.stats === 'dense') {
        base ??= calibrateOnce(model, strategy, structure, calibration, { ...setupOptionsFor('dense', proxies), windowSample: config.searchSample });
        setup = { ...base, structure, evaluator: base.evaluator?.withStructure(structure) };
      } else setup = calibrateOnce(model, strategy, structure, calibration, { ...setupOptionsFor(config.calibration.stats, proxies), windowSample: config.searchSample });
      if (needPruned) {
        const extra = withPrunedEvaluator(setup);
        setup = extra.setup;
        console.log(`${name} ${entry.name}: 'pruned' statistics for the final measurement in ${extra.seconds.toFixed(2)} s (one-time)`);
      }
      for (const run of chosen) {
        const variant = config.pho.find((p) => p.name === run);
        const ppls: number[] = [];
        const walls: number[] = [];
        const finalRows = hcFinals.map(() => ({ ppls: [] as number[], walls: [] as number[] }));
        for (const seed of variant ? variant.seeds : config.seeds) {
          const cpu0 = process.cpuUsage();
          let r: SearchOutcome;
          if (variant) {
            const [first, ...rest] = variant.proxies;
            r = phoSearch(setup, config.space, { ...first, portfolio: rest, budget: variant.budget, seed, verify: variant.verify, proxyRows: variant.proxyRows });
          } else r = hillClimbSearch(setup, config.space, { budget: config.hillclimb.budget, windows: searchWindows, seed, final: config.hillclimb.final });
          const cpu = process.cpuUsage(cpu0);
          if (!variant) {
            // each final choice from this climb's log, as hillClimbSearch's `final` makes it
            hcFinals.forEach((f, k) => {
              const t = process.hrtime.bigint();
              const c0 = process.cpuUsage();
              const finalists = bestDistinct(r.log, `ppl@${searchWindows}`, f.candidates);
              const choice = chooseFinal(setup, finalists, f, f.windows, new EvalLog());
              const seconds = Number(process.hrtime.bigint() - t) / 1e9;
              const c1 = process.cpuUsage(c0);
              const pick = finalists[choice.index].params;
              const ppl = heldOutPpl(pick);
              finalRows[k].ppls.push(ppl);
              finalRows[k].walls.push(r.seconds + seconds);
              const which = finalists.map((c, i) => `${i === choice.index ? '*' : ''}${choice.ppls[i].toFixed(3)}`).join(' ');
              console.log(`${name} ${entry.name} hillclimb+${finalMeasureLabel(f, f.windows)}x${f.candidates} seed ${seed}: held-out val PPL ${ppl.toFixed(4)}; final choice ${seconds.toFixed(2)} s wall, ${((c1.user + c1.system) / 1e6).toFixed(2)} s CPU (finalists ${which}); ${formatParams(pick)}`);
            });
          }
          const ppl = heldOutPpl(r.best);
          ppls.push(ppl);
          walls.push(r.seconds);
          if (variant && process.env.CREPE_PROBE_POOL) {
            // every configuration the search measured by PPL, with its held-out value (oracle selection)
            const seen = new Map<string, { params: Params; measured: string }>();
            for (const e of r.log) if (e.kind === 'ppl') seen.set(formatParams(e.params), { params: e.params, measured: `${e.measure}=${e.value.toFixed(3)}` });
            for (const [text, c] of seen) console.log(`   pool: held-out ${heldOutPpl(c.params).toFixed(4)} last ${c.measured} ${text}`);
          }
          console.log(`${name} ${entry.name} ${run} seed ${seed}: held-out val PPL ${ppl.toFixed(4)}; ${r.pplEvals} PPL + ${r.proxyEvals} proxy evaluations; loop ${r.seconds.toFixed(2)} s wall, ${((cpu.user + cpu.system) / 1e6).toFixed(2)} s CPU; ${formatParams(r.best)}`);
        }
        const mean = (a: number[]): number => a.reduce((s, x) => s + x, 0) / a.length;
        console.log(`== ${name} ${entry.name} ${run} (${config.calibration.stats} statistics, ${config.searchSample} search windows): mean held-out val PPL ${mean(ppls).toFixed(4)} (${heldOut} held-out windows), mean loop ${mean(walls).toFixed(2)} s`);
        if (!variant) {
          hcFinals.forEach((f, k) => {
            console.log(`== ${name} ${entry.name} hillclimb+${finalMeasureLabel(f, f.windows)}x${f.candidates} (${config.calibration.stats} statistics, ${config.searchSample} search windows): mean held-out val PPL ${mean(finalRows[k].ppls).toFixed(4)} (${heldOut} held-out windows), mean loop ${mean(finalRows[k].walls).toFixed(2)} s`);
          });
        }
      }
    }
  }
}

main().catch((e: unknown) => {
  console.error(`crepe: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
