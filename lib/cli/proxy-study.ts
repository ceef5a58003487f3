import * as path from 'path';
import { CrepeError } from '../errors';
import { statPath, writeFileAtomic } from '../io/atomic';
import { OutputTarget, checkOutputs } from '../io/outputs';
import { openModel } from '../model/resolve';
import { Structure } from '../prune/select';
import { SEARCH_DATASET, calibrateOnce, setupOptionsFor } from '../search/objective';
import { checkWindowCount } from '../eval/evaluate';
import { listProxies, ProxyName, parseProxy } from '../search/proxies';
import { correlations, runProxyStudy, scatterSvg, studyCsv, studyMarkdown } from '../search/study';
import { formatParams } from '../search/space';
import { emit, inputPaths, positiveIntFlag, progressBar, startBackend, versionInfo, withPublishedProgress } from './common';
import { planSearch } from './memory';
import { SpaceArgs, calibrationSpec, closeOnError, setupOverrides, spaceSettings, structureLabel } from './search';

export interface ProxyStudyArgs extends SpaceArgs {
  samples: number;
  full: boolean;
  proxies?: string[];
  out: string;
  /** Replace existing study files that crepe did not write. */
  force?: boolean;
}

/**
 * The openings of a study's files as crepe writes them (studyCsv's header, studyMarkdown's
 * title, a vega SVG): an existing file that starts so is a previous study and may be replaced.
 */
const OPENINGS = { csv: /^index,(?:.*,)?ppl,seconds\r?\n/, md: /^# Proxy study: /, svg: /^<svg [^>]*class="marks"/ };

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
  if (!statPath(args.out)?.isDirectory()) throw new CrepeError(`--out ${args.out} is not an existing folder`);
  const stem = path.join(args.out, studyStem(args.model, strategy.name, structure));
  const outputs: OutputTarget[] = [
    { flag: '--out', path: `${stem}.csv`, kind: 'text', isDir: false, opening: OPENINGS.csv },
    { flag: '--out', path: `${stem}.md`, kind: 'text', isDir: false, opening: OPENINGS.md },
    ...proxies.map((p): OutputTarget => ({ flag: '--out', path: `${stem}-${p}.svg`, kind: 'text', isDir: false, opening: OPENINGS.svg })),
  ];
  const write = (o: OutputTarget, text: string): void => writeFileAtomic(o.path, text, { kind: 'text', opening: o.opening, force: args.force });
  const setupOptions = { ...setupOptionsFor(settings.statsKind, proxies, setupOverrides(args, proxies)), windowSample: settings.windowSample };
  const keepInputs = setupOptions.keepInputs;

  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  // Every file of the study is checked before any work (never an input, never a file crepe did not write without --force).
  closeOnError(model, () => checkOutputs(outputs, inputPaths(model, [args.calib]), { force: args.force }));
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
  // Every file is rendered before the first is written, so a failed render leaves the old study whole.
  const texts = [studyCsv(rows, proxies), studyMarkdown(ctx, corr, rows)];
  for (const p of proxies) {
    texts.push(await scatterSvg(rows, p, `${args.model} ${structureLabel(args, structure)}: ${p} vs PPL (n=${corr.find((c) => c.proxy === p)!.n})`));
  }
  outputs.forEach((o, k) => write(o, texts[k]));
  const svgs = outputs.slice(2).map((o) => o.path);
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
