import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { openModel } from '../model/resolve';
import { Structure } from '../prune/select';
import { SEARCH_DATASET, calibrateOnce, setupOptionsFor } from '../search/objective';
import { checkWindowCount } from '../eval/evaluate';
import { listProxies, ProxyName, parseProxy } from '../search/proxies';
import { correlations, runProxyStudy, scatterSvg, studyCsv, studyMarkdown } from '../search/study';
import { formatParams } from '../search/space';
import { emit, positiveIntFlag, progressBar, startBackend, versionInfo, withPublishedProgress } from './common';
import { planSearch } from './memory';
import { SpaceArgs, calibrationSpec, setupOverrides, spaceSettings, structureLabel } from './search';

export interface ProxyStudyArgs extends SpaceArgs {
  samples: number;
  full: boolean;
  proxies?: string[];
  out: string;
}

/** File-name stem of a study: proxy-study-<model>-<method>-<structure>. */
function studyStem(model: string, method: string, s: Structure): string {
  const structure = s.kind === 'unstructured' ? `u${Math.round(s.sparsity * 100)}` : `${s.n}of${s.m}`;
  return `proxy-study-${path.basename(model).replace(/[^\w.-]+/g, '_')}-${method}-${structure}`;
}

export async function proxyStudyCommand(args: ProxyStudyArgs): Promise<void> {
  const settings = spaceSettings(args);
  const { strategy, space, structure } = settings;
  const samples = positiveIntFlag('configs', args.samples);
  if (samples < 3) throw new CrepeError(`--configs must be at least 3 to rank anything, got ${samples}`);
  const proxies: ProxyName[] = (args.proxies?.flatMap((p) => p.split(',')).filter((p) => p) ?? [...listProxies()]).map(parseProxy);
  if (!fs.existsSync(args.out) || !fs.statSync(args.out).isDirectory()) throw new CrepeError(`--out ${args.out} is not an existing folder`);
  const setupOptions = { ...setupOptionsFor(settings.statsKind, proxies, setupOverrides(args)), windowSample: settings.windowSample };
  const keepInputs = setupOptions.keepInputs;

  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  const calibration = calibrationSpec(args, model);
  if (!args.full) checkWindowCount(model, SEARCH_DATASET, settings.searchWindows, '--search-windows');
  // memory: refused (or printed with --dry-run) before calibrating
  if (!planSearch(model, strategy, { ...calibration, keepInputs, fisherWindows: setupOptions.fisherWindows, evalWindows: settings.searchWindows }, args, backend.startsWith('wasm'), { model: args.model, method: args.method })) return model.source.close();
  const setup = withPublishedProgress({ calibration: 'calibration', prune: 'calibration' }, () => calibrateOnce(model, strategy, structure, calibration, setupOptions));
  const windows = args.full ? 'all' : settings.searchWindows;
  const bar = progressBar('proxy study', 'configurations');
  bar.start(samples, 0, { rate: '' });
  let rows;
  try {
    rows = runProxyStudy(setup, space, { samples, seed: settings.seed, windows, proxies, onSample: (d) => bar.update(d, { rate: '' }) });
  } finally {
    bar.stop();
  }
  model.source.close();
  const corr = correlations(rows, proxies, settings.seed);
  const stem = path.join(args.out, studyStem(args.model, strategy.name, structure));
  const pplOn = windows === 'all' ? `every ${setup.dataset} evaluation window` : `the first ${windows} ${setup.dataset} evaluation windows`;
  const spaceText = space.dims.map((d) => `${d.name} ${d.scale} [${d.min}, ${d.max}]`).join(', ');
  const ctx = {
    model: args.model,
    method: strategy.name,
    structure: args.structure,
    sparsity: settings.sparsity,
    statsKind: settings.statsKind,
    pplOn,
    seed: settings.seed,
    space: `${spaceText}${Object.keys(space.fixed).length ? `; fixed ${formatParams(space.fixed)}` : ''}`,
  };
  writeFileAtomic(`${stem}.csv`, studyCsv(rows, proxies));
  writeFileAtomic(`${stem}.md`, studyMarkdown(ctx, corr, rows));
  const svgs: string[] = [];
  for (const p of proxies) {
    const file = `${stem}-${p}.svg`;
    const title = `${args.model} ${structureLabel(args, structure)}: ${p} vs PPL (n=${corr.find((c) => c.proxy === p)!.n})`;
    writeFileAtomic(file, await scatterSvg(rows, p, title));
    svgs.push(file);
  }
  const result = {
    model: args.model,
    method: strategy.name,
    structure: args.structure,
    sparsity: settings.sparsity,
    group: structure.kind === 'unstructured' ? settings.group : null,
    samples,
    seed: settings.seed,
    stats: settings.statsKind,
    keep_inputs: keepInputs,
    fisher_windows: setupOptions.fisherWindows ?? 0,
    fisher_seconds: setup.fisherSeconds,
    ppl_on: pplOn,
    calibration_seconds: setup.calibrationSeconds,
    correlations: corr,
    files: [`${stem}.csv`, `${stem}.md`, ...svgs],
    backend,
    code_version: versionInfo(),
  };
  emit(args.json, result, () =>
    [
      `${args.model} ${strategy.name} ${structureLabel(args, structure)}: ${samples} configurations (seed ${settings.seed}), PPL on ${pplOn}; backend ${backend}`,
      'proxy                 n   Spearman  95% CI (bootstrap)   Kendall  sign',
      ...corr.map(
        (c) =>
          `${c.proxy.padEnd(20)} ${String(c.n).padStart(3)}  ${c.spearman.toFixed(3).padStart(8)}  [${c.spearmanCi95[0].toFixed(3).padStart(6)}, ${c.spearmanCi95[1].toFixed(3).padStart(6)}]  ${c.kendall.toFixed(3).padStart(8)}  ${c.sign > 0 ? '+1' : '-1'}`,
      ),
      `wrote ${stem}.{csv,md} and ${svgs.length} SVG plots`,
    ].join('\n'),
  );
}
