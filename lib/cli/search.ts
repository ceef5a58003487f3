import { Argv } from 'yargs';
import { CrepeError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { checkOutputs } from '../io/outputs';
import { checkSeqlen, checkWindowCount } from '../eval/evaluate';
import { OpenedModel, openModel } from '../model/resolve';
import { CalibrationSpec } from '../prune/pipeline';
import { Structure, nmSparsity, parseStructure } from '../prune/select';
import { Strategy, getStrategy, parseParamPairs } from '../prune/strategy';
import { DEFAULT_BUDGET, DEFAULT_PROXY, SEARCHES, SearchName } from '../search/defaults';
import { PHO_PRESETS, isPhoPreset } from '../search/presets';
import { parseRecipe } from '../recipe/schema';
import { RecipeOutcome, runRecipe } from '../recipe/run';
import { hillClimbSearch } from '../search/hillclimb';
import { DEFAULT_FISHER_WINDOWS, DEFAULT_KEEP_INPUTS, REPORT_DATASET, SEARCH_DATASET, SearchOutcome, StatsKind, calibrateOnce, evalLogCsv, proxySign, setupOptionsFor } from '../search/objective';
import { WindowSample } from '../search/evaluator';
import { phoSearch, verifyRungs } from '../search/pho';
import { formatForPath } from '../model/save';
import { getProxy, listProxies, ProxyName, parseProxy } from '../search/proxies';
import { SearchSpace, buildSpace, formatParams, paramFlags, parseBounds } from '../search/space';
import { PruneTargetArgs, emit, inputPaths, numberFlag, positiveIntFlag, progressBar, startBackend, versionInfo, withPublishedProgress } from './common';
import { BudgetArgs, planSearch } from './memory';

export const STATS_KINDS: readonly StatsKind[] = ['dense', 'pruned'];
export const WINDOW_SAMPLES: readonly WindowSample[] = ['first', 'spread'];

export const PROXY_HELP = `PHO proxy: ${listProxies().join(', ')} (default ${DEFAULT_PROXY}: the most consistently PPL-correlated in our proxy studies)`;

/** Options shared by `search` and `proxy-study`. */
export interface SpaceArgs extends PruneTargetArgs, BudgetArgs {
  searched?: string[];
  bound: string[];
  /** Undefined when not given: --seed, else 0. */
  calibSeed?: number;
  /** The default of --calib-seed and --search-seed. */
  seed?: number;
  stats: string;
  keepInputs?: number;
  fisherWindows?: number;
  searchWindows: number;
  /** 'first' | 'spread' (validated); absent = 'first'. */
  searchSample?: string;
  /** Undefined when not given: --seed, else 0. */
  searchSeed?: number;
}

export interface SearchArgs extends SpaceArgs {
  /** hillclimb, pho, or a built-in PHO variant (pho-pool, pho-sh, pho-seq, pho-gini). */
  search: string;
  /** Save the best configuration's pruned model here (a .bin file or an HF directory), with its run record. */
  save?: string;
  /** The full evaluation on the first N test windows (default all). */
  reportWindows?: number;
  proxy?: string;
  sign?: number;
  budget?: number;
  seconds?: number;
  fullEval: boolean;
  out?: string;
  /** Replace an existing --out that crepe did not write. */
  force?: boolean;
}

/** The opening of an evaluation log (evalLogCsv's header): a file that starts so is crepe's own and may be replaced. */
export const EVAL_LOG_OPENING = /^index,kind,measure,/;

/** What `search` and `proxy-study` validate before any work. */
export interface SpaceSettings {
  strategy: Strategy;
  space: SearchSpace;
  structure: Structure;
  group: 'row' | 'matrix';
  sparsity: number;
  statsKind: StatsKind;
  searchWindows: number;
  windowSample: WindowSample;
  seed: number;
}

export function spaceSettings(args: SpaceArgs): SpaceSettings {
  const strategy = getStrategy(args.method);
  const space = buildSpace(strategy, {
    searched: args.searched?.flatMap((s) => s.split(',')).map((s) => s.trim()).filter((s) => s),
    bounds: parseBounds(args.bound ?? []),
    fixed: parseParamPairs(args.param ?? [], strategy),
  });
  const group = args.group ?? strategy.defaultGroup;
  const structure = parseStructure(args.structure, args.sparsity === undefined ? undefined : numberFlag('sparsity', args.sparsity), group);
  const sparsity = structure.kind === 'unstructured' ? structure.sparsity : nmSparsity(structure.n, structure.m);
  if (!STATS_KINDS.includes(args.stats as StatsKind)) throw new CrepeError(`--stats must be dense or pruned, got '${args.stats}'`);
  const windowSample = (args.searchSample ?? 'first') as WindowSample;
  if (!WINDOW_SAMPLES.includes(windowSample)) throw new CrepeError(`--search-sample must be first or spread, got '${args.searchSample}'`);
  return {
    strategy,
    space,
    structure,
    group,
    sparsity,
    statsKind: args.stats as StatsKind,
    searchWindows: positiveIntFlag('search-windows', args.searchWindows),
    windowSample,
    seed: args.searchSeed !== undefined ? integerFlag('search-seed', args.searchSeed) : integerFlag('seed', args.seed ?? 0),
  };
}

function integerFlag(name: string, v: unknown): number {
  const n = numberFlag(name, v);
  if (!Number.isSafeInteger(n)) throw new CrepeError(`--${name} must be an integer, got ${String(v)}`);
  return n;
}

/**
 * --keep-inputs / --fisher-windows, validated against the proxies the run computes: each only
 * feeds the proxies that need it (raw inputs: recon*; the Fisher pass: fisher*), so given without
 * one it would change nothing, and is refused rather than ignored.
 */
export function setupOverrides(args: SpaceArgs, proxies: readonly ProxyName[]): { keepInputs?: number; fisherWindows?: number } {
  const needing = (need: 'inputs' | 'fisher') => listProxies().filter((p) => !!getProxy(p).needs?.[need]);
  const check = (flag: string, given: unknown, need: 'inputs' | 'fisher'): number | undefined => {
    if (given === undefined) return undefined;
    const n = positiveIntFlag(flag, given);
    if (!proxies.some((p) => !!getProxy(p).needs?.[need])) {
      const used = proxies.length ? `this run computes ${proxies.join(', ')}` : 'this run computes no proxy';
      throw new CrepeError(`--${flag} only applies with a proxy that needs it (${needing(need).join(', ')}); ${used}`);
    }
    return n;
  };
  return { keepInputs: check('keep-inputs', args.keepInputs, 'inputs'), fisherWindows: check('fisher-windows', args.fisherWindows, 'fisher') };
}

export function calibrationSpec(args: SpaceArgs, model: OpenedModel): CalibrationSpec {
  const seqlen = args.calibSeqlen ?? model.source.config.maxSeqLen;
  checkSeqlen(seqlen, model.source.config.maxSeqLen);
  return { dataset: args.calib, nsamples: positiveIntFlag('nsamples', args.nsamples), seqlen, seed: args.calibSeed !== undefined ? integerFlag('calib-seed', args.calibSeed) : integerFlag('seed', args.seed ?? 0) };
}

/** Run `check`, closing the model when it refuses. */
export function closeOnError(model: OpenedModel, check: () => void): void {
  try {
    check();
  } catch (e) {
    model.source.close();
    throw e;
  }
}

export function structureLabel(args: { structure: string }, s: Structure): string {
  return s.kind === 'unstructured' ? `unstructured ${s.sparsity} per ${s.group}` : args.structure;
}

export async function searchCommand(args: SearchArgs): Promise<void> {
  // Validate everything before any work.
  const settings = spaceSettings(args);
  const { strategy, space, structure } = settings;
  const preset = isPhoPreset(args.search) ? PHO_PRESETS[args.search] : undefined;
  if (!preset && !(SEARCHES as readonly string[]).includes(args.search)) {
    throw new CrepeError(`unknown search '${args.search}' (known: ${[...SEARCHES, ...Object.keys(PHO_PRESETS)].join(', ')})`);
  }
  const search: SearchName = preset ? 'pho' : (args.search as SearchName);
  if (preset && (args.proxy !== undefined || args.budget !== undefined)) throw new CrepeError(`--search ${args.search} fixes its proxies and budget: --proxy and --budget apply to --search pho`);
  const proxy = parseProxy(args.proxy ?? DEFAULT_PROXY);
  if (args.proxy !== undefined && search !== 'pho') throw new CrepeError('--proxy only applies to --search pho');
  if (args.sign !== undefined && search !== 'pho') throw new CrepeError('--sign only applies to --search pho');
  if (args.sign !== undefined && args.sign !== 1 && args.sign !== -1) throw new CrepeError(`--sign must be 1 or -1, got ${args.sign}`);
  if (preset && args.sign !== undefined) throw new CrepeError(`--search ${args.search} uses each proxy's measured direction: --sign applies to --search pho`);
  const sign = proxySign(proxy, args.sign);
  // every proxy run of the search, in order: one for pho, the variant's for a built-in variant
  const runs = preset ? preset.proxies.map((p) => ({ proxy: p, sign: proxySign(p) })) : [{ proxy, sign }];
  const reportWindows = args.reportWindows === undefined ? undefined : positiveIntFlag('report-windows', args.reportWindows);
  if (args.save && !args.fullEval) throw new CrepeError('--save writes the model of the full evaluation: drop --no-full-eval');
  const budget = preset ? preset.budget : positiveIntFlag('budget', args.budget ?? DEFAULT_BUDGET[search]);
  if (args.seconds !== undefined && !(numberFlag('seconds', args.seconds) > 0)) throw new CrepeError(`--seconds must be positive, got ${args.seconds}`);
  if (args.force && args.out === undefined) throw new CrepeError('--force only applies with --out');
  if (args.seconds !== undefined && search === 'pho') throw new CrepeError('--seconds only applies to --search hillclimb (PHO is bounded by --budget)');
  const runProxies = search === 'pho' ? runs.map((r) => r.proxy) : [];
  const setupOptions = { ...setupOptionsFor(settings.statsKind, runProxies, setupOverrides(args, runProxies)), windowSample: settings.windowSample };
  const keepInputs = setupOptions.keepInputs;

  const t0 = process.hrtime.bigint();
  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  // The log is checked before any work: never an input, never a file crepe did not write (without --force).
  const logOutput = { flag: '--out', path: args.out ?? '', kind: 'text' as const, isDir: false, opening: EVAL_LOG_OPENING };
  if (args.out !== undefined) closeOnError(model, () => checkOutputs([logOutput], inputPaths(model, [args.calib]), { force: args.force }));
  const calibration = calibrationSpec(args, model);
  if (search === 'hillclimb') checkWindowCount(model, SEARCH_DATASET, settings.searchWindows, '--search-windows');
  if (preset?.verify) checkWindowCount(model, SEARCH_DATASET, Math.max(...verifyRungs(preset.verify)), `--search ${args.search} verification windows`);
  if (args.save) {
    const hf = formatForPath(args.save) === 'hf';
    checkOutputs([{ flag: '--save', path: args.save, kind: hf ? 'hf-model' : 'llama2c-model', isDir: hf }], inputPaths(model, [calibration.dataset, REPORT_DATASET]), { force: args.force });
  }
  // memory: refused (or printed with --dry-run) before calibrating
  if (!planSearch(model, strategy, { ...calibration, keepInputs, fisherWindows: setupOptions.fisherWindows, evalWindows: settings.searchWindows }, args, backend.startsWith('wasm'), { model: args.model, method: args.method })) return model.source.close();
  const setup = withPublishedProgress({ calibration: 'calibration', prune: 'calibration' }, () => calibrateOnce(model, strategy, structure, calibration, setupOptions));

  const bar = progressBar(`search ${search}`, search === 'pho' ? 'proxy evals' : 'PPL evals');
  bar.start(budget * (search === 'pho' ? runs.length : 1), 0, { rate: '' });
  let outcome: SearchOutcome;
  try {
    const onEval = (done: number, v: number): void => bar.update(done, { rate: `last ${v.toPrecision(5)}` });
    outcome =
      search === 'pho'
        ? phoSearch(setup, space, { ...runs[0], portfolio: runs.slice(1), budget, seed: settings.seed, verify: preset?.verify, proxyRows: preset?.proxyRows, onEval })
        : hillClimbSearch(setup, space, { budget, seconds: args.seconds, windows: settings.searchWindows, seed: settings.seed, onEval });
  } finally {
    bar.stop();
  }
  if (args.out !== undefined) writeFileAtomic(args.out, evalLogCsv(outcome.log), { kind: 'text', opening: EVAL_LOG_OPENING, force: args.force });
  model.source.close();
  // The best configuration as a recipe: the full evaluation (and --save) is exactly `crepe run` of it.
  const recipe = parseRecipe(
    {
      model: args.model,
      ...(args.tokenizer !== undefined ? { tokenizer: args.tokenizer } : {}),
      method: strategy.name,
      params: outcome.best,
      structure: args.structure,
      ...(structure.kind === 'unstructured' ? { sparsity: settings.sparsity, group: settings.group } : {}),
      calibration: { dataset: calibration.dataset, nsamples: calibration.nsamples, seqlen: calibration.seqlen, seed: calibration.seed },
      propagate: 'pruned',
      eval: args.fullEval ? [{ dataset: REPORT_DATASET, ...(reportWindows !== undefined ? { maxWindows: reportWindows } : {}) }] : [],
      compareDense: false,
      ...(args.save ? { save: { path: args.save } } : {}),
    },
    'the best configuration',
  );
  const full: RecipeOutcome | null = args.fullEval ? await runRecipe(recipe, { force: args.force, fieldName: (f) => (f === 'save' ? '--save' : f) }) : null;
  const searchWall = setup.calibrationSeconds + setup.fisherSeconds + outcome.seconds;
  // Every flag that changes the result (the full evaluation's pipeline is prune's, defaults included).
  const reproduce = `crepe prune --model ${args.model}${args.tokenizer ? ` --tokenizer ${args.tokenizer}` : ''} --method ${strategy.name} ${paramFlags(outcome.best)} --structure ${args.structure}${
    structure.kind === 'unstructured' ? ` --sparsity ${settings.sparsity} --group ${settings.group}` : ''
  } --calib ${calibration.dataset} --nsamples ${calibration.nsamples} --calib-seqlen ${calibration.seqlen} --calib-seed ${calibration.seed} --propagate pruned --eval ${REPORT_DATASET}${
    reportWindows !== undefined ? ` --max-windows ${reportWindows}` : ''
  }`;
  const result = {
    model: args.model,
    method: strategy.name,
    structure: args.structure,
    group: structure.kind === 'unstructured' ? settings.group : null,
    sparsity: structure.kind === 'unstructured' ? settings.sparsity : 1 - structure.n / structure.m,
    search: args.search,
    proxy: search === 'pho' ? runs.map((r) => r.proxy).join('+') : null,
    proxy_sign: search === 'pho' ? (runs.length === 1 ? runs[0].sign : runs.map((r) => r.sign)) : null,
    seed: settings.seed,
    budget,
    seconds_budget: args.seconds ?? null,
    search_windows: search === 'hillclimb' ? settings.searchWindows : null,
    search_sample: search === 'hillclimb' ? settings.windowSample : null,
    stats: settings.statsKind,
    keep_inputs: keepInputs,
    fisher_windows: setupOptions.fisherWindows ?? 0,
    space: space.dims.map((d) => ({ name: d.name, scale: d.scale, min: d.min, max: d.max })),
    fixed: space.fixed,
    calibration: { ...setup.stats.calibration, starts: undefined },
    best: outcome.best,
    best_proxy: search === 'pho' ? outcome.bestValue : null,
    best_search_ppl: search === 'hillclimb' ? outcome.bestValue : null,
    proxy_evals: outcome.proxyEvals,
    ppl_evals: outcome.pplEvals,
    stop_reason: outcome.stopReason,
    calibration_seconds: setup.calibrationSeconds,
    fisher_seconds: setup.fisherSeconds,
    search_loop_seconds: outcome.seconds,
    search_loop_cpu_seconds: outcome.cpuSeconds,
    search_wall_seconds: searchWall,
    full_eval: full && {
      dataset: full.pruned[0].dataset,
      windows: full.pruned[0].windows,
      seqlen: full.pruned[0].seqlen,
      ppl: full.pruned[0].ppl,
      prune_seconds: full.pruneSeconds,
      eval_seconds: full.pruned[0].seconds,
      pipeline: 'sequential calibration, pruned propagation (as crepe prune)',
    },
    recipe: full ? full.record.recipe : recipe,
    saved: full?.saved ? { path: full.saved.path, format: full.saved.format, dtype: full.saved.dtype, sparsity: full.saved.sparsity, record: full.saved.record } : null,
    total_wall_seconds: Number(process.hrtime.bigint() - t0) / 1e9,
    reproduce,
    log: args.out ?? null,
    backend,
    code_version: versionInfo(),
  };
  emit(args.json, result, () =>
    [
      `${args.model} ${strategy.name} ${structureLabel(args, structure)}: ${search}${search === 'pho' ? ` on proxy ${proxy} (sign ${sign > 0 ? '+1' : '-1'})` : ` on PPL of ${settings.searchWindows} ${setup.dataset} windows`}, seed ${settings.seed}; backend ${backend}`,
      `statistics: ${settings.statsKind}, ${calibration.nsamples} x ${calibration.seqlen} ${calibration.dataset} tokens, ${setup.calibrationSeconds.toFixed(2)} s${
        setup.fisher ? `; Fisher diagonal from ${setup.fisher.windows} windows, ${setup.fisherSeconds.toFixed(2)} s` : ''
      }`,
      `best: ${formatParams(outcome.best)}`,
      search === 'pho' ? `best proxy ${proxy} = ${outcome.bestValue.toPrecision(6)}` : `best search PPL = ${outcome.bestValue.toFixed(4)}`,
      `evaluations: ${outcome.proxyEvals} proxy, ${outcome.pplEvals} PPL (stopped: ${outcome.stopReason}); search ${outcome.seconds.toFixed(2)} s wall (${outcome.cpuSeconds.toFixed(2)} s CPU), ${searchWall.toFixed(2)} s with calibration${setup.fisher ? ' and Fisher' : ''}`,
      full
        ? `full evaluation: ${full.pruned[0].dataset} PPL ${full.pruned[0].ppl.toFixed(4)} (${full.pruned[0].windows} x ${full.pruned[0].seqlen}; prune ${full.pruneSeconds.toFixed(2)} s + eval ${full.pruned[0].seconds.toFixed(2)} s)`
        : 'full evaluation skipped (--no-full-eval)',
      ...(full?.saved ? [`saved to ${full.saved.path} (${full.saved.format}, ${full.saved.dtype}); run record in ${full.saved.record}`] : []),
      `reproduce: ${reproduce}`,
      ...(args.out ? [`evaluation log: ${args.out}`] : []),
    ].join('\n'),
  );
}

/** yargs options shared by `search` and `proxy-study` (the model options come from the CLI). */
export function spaceOptions<T>(y: Argv<T>) {
  return y
    .option('method', { type: 'string', default: 'crepe', describe: 'scoring strategy whose numeric parameters are searched' })
    .option('param', { type: 'string', array: true, default: [] as string[], describe: 'fix a parameter that is not searched, k=v (repeatable)' })
    .option('searched', { type: 'string', array: true, describe: 'parameters to search, comma separated or repeated (default crepe: alpha,beta,gamma,kh,kw; add a to search the exponent)' })
    .option('bound', { type: 'string', array: true, default: [] as string[], describe: 'search bounds name=lo:hi in parameter units (default alpha/beta/gamma 1e-3:1e3 in log10, kh/kw 1:9 odd, a 0:1)' })
    .option('sparsity', { type: 'number', describe: 'fraction pruned, in [0, 1) (default 0.5 unstructured; with N:M it is 1 - N/M, and any other value is an error)' })
    .option('structure', { type: 'string', default: 'unstructured', describe: "'unstructured' or N:M = KEEP N of every M (2:4 keeps 2)" })
    .option('group', { choices: ['row', 'matrix'] as const, describe: "unstructured comparison group (default: the method's reference)" })
    .option('calib', { type: 'string', default: 'tinystories', describe: 'calibration dataset (as prune --calib)' })
    .option('nsamples', { type: 'number', default: 128, describe: 'calibration windows' })
    .option('calib-seqlen', { type: 'number', describe: "calibration window length (default: the model's context)" })
    .option('seed', { type: 'number', describe: 'seed of every sampling step: the default of --calib-seed and --search-seed (default 0)' })
    .option('calib-seed', { type: 'number', describe: 'calibration sampling seed (default --seed)' })
    .option('stats', { choices: STATS_KINDS, default: 'dense' as StatsKind, describe: 'statistics computed once: dense block inputs, or inputs of one sequential pruned pass with default parameters' })
    .option('keep-inputs', { type: 'number', describe: `raw calibration windows kept per layer for the recon proxy (default ${DEFAULT_KEEP_INPUTS})` })
    .option('fisher-windows', { type: 'number', describe: `calibration windows for the fisher proxy's backward passes (default ${DEFAULT_FISHER_WINDOWS})` })
    .option('search-windows', { type: 'number', default: 16, describe: 'search-subset PPL on N windows of tinystories-val (the validation split)' })
    .option('search-sample', { choices: WINDOW_SAMPLES, default: 'first' as WindowSample, describe: 'which N windows: the first N, or N spread over the whole split (van der Corput order)' })
    .option('search-seed', { type: 'number', describe: 'search seed: sampling, CMA-ES, hill-climbing order (default --seed); the calibration seed is --calib-seed' });
}
