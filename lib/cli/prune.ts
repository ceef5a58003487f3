import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { StagedDir, stageDir, writeFileAtomic } from '../io/atomic';
import { OutputTarget, checkOutputs } from '../io/outputs';
import { EvalOptions, EvalRecord, checkSeqlen, datasetWindows, evaluateSource } from '../eval/evaluate';
import { openModel } from '../model/resolve';
import { prunedModelCard } from '../model/card';
import { configDtype } from '../model/hf';
import { FloatDtype } from '../model/safetensors';
import { formatForPath, saveModel, savedSparsity } from '../model/save';
import { DsnotRowStats, dsnotRefiner } from '../prune/addons/dsnot';
import { OwlAllocation, OWL_DEFAULTS, checkOwlOptions, owlAllocation } from '../prune/addons/owl';
import { PruneOutcome, pruneModel } from '../prune/pipeline';
import { parseStructure } from '../prune/select';
import { getStrategy, parseParamPairs, resolveParams } from '../prune/strategy';
import { planJson, scoringCopies } from '../plan/memory';
import { checkTaskFiles, parseTaskList } from '../eval/zeroshot/tasks';
import { zeroshotMarkdown } from '../eval/zeroshot/table';
import { ZeroshotResult } from '../eval/zeroshot/evaluate';
import { harnessFilesJson, pruneZeroshot, runZeroshot, writeHarness, zeroshotJson, zeroshotOptions } from './zeroshot';
import { PruneTargetArgs, checkPpl, emit, inputPaths, numberFlag, positiveIntFlag, progressBar, startBackend, versionInfo, withEvalProgress, withPublishedProgress } from './common';
import { MemoryArgs, memoryChoices, planOrRefuse } from './memory';

export interface PruneArgs extends PruneTargetArgs, MemoryArgs {
  calibSeed: number;
  propagate: 'pruned' | 'dense';
  eval?: string[];
  seqlen?: number;
  maxWindows?: number;
  save?: string;
  /** dtype of an HF --save; default the source config's dtype, else F32. */
  dtype?: FloatDtype;
  dump?: string;
  /** Replace existing outputs crepe did not write. */
  force?: boolean;
  /** Add-ons: OWL allocation, DSnoT re-pruning, RIA channel permutation. */
  allocation?: string;
  owlM?: number;
  owlLambda?: number;
  refine?: string;
  dsnotCycles?: number;
  dsnotThreshold?: number;
  dsnotSkip?: 'mlp' | 'attn' | 'none';
  permute?: boolean;
  permuteRefine?: boolean;
  /** Zero-shot tasks scored on the dense and the pruned model (as `crepe zeroshot`). */
  zeroshot?: string[];
  zeroshotLimit?: number;
  zeroshotJobs?: number;
  /** lm-evaluation-harness results files of the zero-shot scoring (a folder), and per-document samples. */
  outputPath?: string;
  logSamples?: boolean;
}

/**
 * A flag that only applies with another is refused when that other is absent (it would be
 * ignored without a word): one line naming the flag and what it needs.
 */
function checkFlagDependencies(args: PruneArgs): void {
  const needs: [string, unknown, string, boolean][] = [
    ['--zeroshot-limit', args.zeroshotLimit, '--zeroshot', !!args.zeroshot?.length],
    ['--zeroshot-jobs', args.zeroshotJobs, '--zeroshot', !!args.zeroshot?.length],
    ['--owl-m', args.owlM, '--allocation owl', args.allocation === 'owl'],
    ['--owl-lambda', args.owlLambda, '--allocation owl', args.allocation === 'owl'],
    ['--dsnot-cycles', args.dsnotCycles, '--refine dsnot', args.refine === 'dsnot'],
    ['--dsnot-threshold', args.dsnotThreshold, '--refine dsnot', args.refine === 'dsnot'],
    ['--dsnot-skip', args.dsnotSkip, '--refine dsnot', args.refine === 'dsnot'],
    ['--seqlen', args.seqlen, '--eval', !!args.eval?.length],
    ['--max-windows', args.maxWindows, '--eval', !!args.eval?.length],
    ['--dtype', args.dtype, '--save', args.save !== undefined],
  ];
  for (const [flag, value, needed, present] of needs) {
    if (value !== undefined && !present) throw new CrepeError(`${flag} only applies with ${needed}`);
  }
}

function fmtPpl(r: EvalRecord): string {
  return `${r.dataset}: PPL ${r.ppl.toFixed(4)} (${r.windows} x ${r.seqlen})`;
}

export async function pruneCommand(args: PruneArgs): Promise<void> {
  // Validate everything before any work, so bad input never leaves a partial output behind.
  checkFlagDependencies(args);
  const strategy = getStrategy(args.method);
  const params = resolveParams(strategy, parseParamPairs(args.param ?? [], strategy));
  const sparsity = args.sparsity === undefined ? undefined : numberFlag('sparsity', args.sparsity);
  const group = args.group ?? strategy.defaultGroup;
  const structure = parseStructure(args.structure, sparsity, group);
  if (structure.kind === 'nm' && args.group !== undefined) throw new CrepeError(`--group applies to unstructured pruning only; ${args.structure} keeps N of every M in each row`);
  const nsamples = positiveIntFlag('nsamples', args.nsamples);
  const seed = numberFlag('calib-seed', args.calibSeed);
  const allocation = args.allocation ?? 'uniform';
  if (allocation !== 'uniform' && allocation !== 'owl') throw new CrepeError(`--allocation must be 'uniform' or 'owl', got '${allocation}'`);
  const owlM = numberFlag('owl-m', args.owlM ?? OWL_DEFAULTS.m);
  const owlLambda = numberFlag('owl-lambda', args.owlLambda ?? (structure.kind === 'nm' ? OWL_DEFAULTS.lambdaNM : OWL_DEFAULTS.lambda));
  checkOwlOptions(owlM, owlLambda);
  const refine = args.refine ?? 'none';
  if (refine !== 'none' && refine !== 'dsnot') throw new CrepeError(`--refine must be 'none' or 'dsnot', got '${refine}'`);
  const dsnotCycles = numberFlag('dsnot-cycles', args.dsnotCycles ?? 50);
  const dsnotThreshold = numberFlag('dsnot-threshold', args.dsnotThreshold ?? 0.1);
  if (!Number.isInteger(dsnotCycles) || dsnotCycles < 0) throw new CrepeError(`--dsnot-cycles must be a whole number >= 0, got ${dsnotCycles}`);
  if (dsnotThreshold < 0) throw new CrepeError(`--dsnot-threshold must be >= 0, got ${dsnotThreshold}`);
  const permute = !!(args.permute || args.permuteRefine);
  if (permute && structure.kind !== 'nm') throw new CrepeError('--permute applies to N:M structures only (e.g. --structure 2:4)');
  // DSnoT's N:M swaps stay inside groups of m consecutive columns; a permuted mask has its groups elsewhere.
  if (permute && refine !== 'none') throw new CrepeError('--refine dsnot cannot follow --permute (its N:M groups are in the original column order)');
  if (strategy.pruneLayer && (permute || refine !== 'none')) {
    throw new CrepeError(`${args.method} updates weights itself: --permute and --refine do not apply to it`);
  }
  if (args.save && formatForPath(args.save) === 'llama2c' && args.dtype !== undefined && args.dtype !== 'F32') {
    throw new CrepeError('llama2.c files are float32 only (--dtype F32)');
  }
  const memory = memoryChoices(args);
  const zeroshotTasks = args.zeroshot?.length ? parseTaskList(args.zeroshot) : [];
  checkTaskFiles(zeroshotTasks);
  const zsOpts = zeroshotOptions({ limit: args.zeroshotLimit, jobs: args.zeroshotJobs ?? 1, backend: args.backend });
  if ((args.outputPath !== undefined || args.logSamples) && !zeroshotTasks.length) throw new CrepeError('--output-path and --log-samples write zero-shot results: add --zeroshot TASKS');
  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  const cfg = model.source.config;
  // Outputs are checked before any work: never an input, the working directory or each other.
  const outputs: OutputTarget[] = [];
  if (args.save) outputs.push({ flag: '--save', path: args.save, kind: formatForPath(args.save) === 'hf' ? 'hf-model' : 'llama2c-model', isDir: formatForPath(args.save) === 'hf' });
  if (args.dump) outputs.push({ flag: '--dump', path: args.dump, kind: 'prune-dump', isDir: true });
  checkOutputs(outputs, inputPaths(model, [args.calib, ...(args.eval ?? [])]), { force: args.force });
  const calibSeqlen = args.calibSeqlen ?? cfg.maxSeqLen;
  checkSeqlen(calibSeqlen, cfg.maxSeqLen);
  const evalSets = args.eval ?? [];
  if (args.seqlen !== undefined) checkSeqlen(args.seqlen, cfg.maxSeqLen);

  // The memory plan, before any model compute: refuse what cannot fit, choose where activations,
  // pruned blocks and the evaluator live.
  const evalWindows = evalSets.reduce((n, d) => n + datasetWindows(model, d, { seqlen: args.seqlen, maxWindows: args.maxWindows }).windows.length, 0);
  const plan = planOrRefuse(
    {
      config: cfg,
      prune: {
        nsamples,
        seqlen: calibSeqlen,
        gram: !!strategy.statsNeeds?.gram,
        calibrates: strategy.usesActivations || refine !== 'none' || allocation === 'owl',
        scoreCopies: scoringCopies(args.method),
        propagate: args.propagate,
      },
      eval: evalSets.length ? { windows: evalWindows, seqlen: args.seqlen ?? cfg.maxSeqLen, jobs: 1 } : undefined,
      ...memory,
      wasm: backend.startsWith('wasm'),
    },
    args,
    { model: args.model, method: args.method },
  );
  if (!plan) return model.source.close();
  // Zero-shot: tasks tokenized, scoring planned beside the pruned blocks, harness outputs checked.
  const structureLabel = structure.kind === 'unstructured' ? `${args.structure}-${structure.sparsity}` : args.structure;
  const zs = zeroshotTasks.length
    ? pruneZeroshot(
        model,
        zeroshotTasks,
        zsOpts,
        args,
        { name: `${args.model}-${args.method}-${structureLabel}`, args: `pretrained=${args.model},method=${args.method},structure=${structureLabel},params=${JSON.stringify(params)}`, blocksHeld: !plan.spillBlocks },
        backend.startsWith('wasm'),
        [...inputPaths(model, [args.calib, ...(args.eval ?? [])]), ...zeroshotTasks.map((t) => t.file).filter((f): f is string => f !== undefined)],
      )
    : null;
  const evalOpts: EvalOptions = {
    seqlen: args.seqlen,
    maxWindows: args.maxWindows,
    evaluator: plan.evaluator ?? undefined,
    storage: plan.evalStorage,
    spillDir: memory.spillDir,
  };

  const calibration = { dataset: args.calib, nsamples, seqlen: calibSeqlen, seed, storage: plan.storage, spillDir: memory.spillDir };
  // OWL measures its outlier ratios on the dense model first (one extra calibration pass).
  const owl: OwlAllocation | null = allocation === 'owl' ? withPublishedProgress({ calibration: 'owl dense pass' }, () => owlAllocation(model, calibration, structure, { m: owlM, lambda: owlLambda })) : null;
  const dsnotTotals: DsnotRowStats = { swaps: 0, errorBefore: 0, errorAfter: 0 };
  const dense = evalSets.length ? await withEvalProgress('eval dense', evalWindows, (onProgress) => evaluateSource(model, model.source, evalSets, { ...evalOpts, onProgress })) : [];
  for (const r of dense) checkPpl(r.ppl, `dense ${args.model} on ${r.dataset}`);
  const denseZs: ZeroshotResult | null = zeroshotTasks.length ? await runZeroshot(model, model.source, zeroshotTasks, zs!.run, 'zeroshot dense') : null;
  const bar = progressBar(`prune ${args.method}`, 'blocks');
  bar.start(cfg.nLayers, 0, { rate: '' });
  let outcome: PruneOutcome;
  const dump: StagedDir | undefined = args.dump ? stageDir(args.dump, 'prune-dump', { force: args.force }) : undefined;
  const dumpTmp = dump?.tmp;
  try {
    outcome = pruneModel(
      model,
      {
        method: args.method,
        params,
        structure,
        calibration,
        propagate: args.propagate,
        activationStorage: plan.storage,
        spillBlocks: plan.spillBlocks,
        spillDir: memory.spillDir,
        dumpDir: dumpTmp,
        blockStructures: owl?.structures,
        permute: permute ? { refine: !!args.permuteRefine } : undefined,
        refine:
          refine === 'dsnot'
            ? dsnotRefiner({ maxCycles: dsnotCycles, threshold: dsnotThreshold, skip: args.dsnotSkip ?? 'mlp' }, (t) => {
                dsnotTotals.swaps += t.swaps;
                dsnotTotals.errorBefore += t.errorBefore;
                dsnotTotals.errorAfter += t.errorAfter;
              })
            : undefined,
      },
      { onBlock: (done) => bar.update(done, { rate: '' }) },
    );
  } catch (e) {
    dump?.abort();
    throw e;
  } finally {
    bar.stop();
  }
  let pruned: EvalRecord[];
  let prunedZs: ZeroshotResult | null;
  try {
    pruned = evalSets.length ? await withEvalProgress('eval pruned', evalWindows, (onProgress) => evaluateSource(model, outcome.source, evalSets, { ...evalOpts, onProgress })) : [];
    for (const r of pruned) checkPpl(r.ppl, `${args.model} pruned with ${args.method} on ${r.dataset}`);
    prunedZs = zeroshotTasks.length ? await runZeroshot(model, outcome.source, zeroshotTasks, zs!.run, 'zeroshot pruned') : null;
  } catch (e) {
    dump?.abort();
    throw e;
  }
  if (zs && denseZs && prunedZs) {
    const run = { backend, evaluator: zs.run.evaluator, jobs: zsOpts.jobs };
    if (zs.dense) writeHarness(zs.dense, model, denseZs, run);
    if (zs.pruned) writeHarness(zs.pruned, model, prunedZs, { ...run, pruned: { method: args.method, params, structure: args.structure, sparsity: structure.kind === 'unstructured' ? structure.sparsity : 1 - structure.n / structure.m } });
  }
  const settings = {
    model: args.model,
    method: args.method,
    params,
    structure: args.structure,
    group: structure.kind === 'unstructured' ? group : null,
    sparsity: structure.kind === 'unstructured' ? structure.sparsity : 1 - structure.n / structure.m,
    calibration: outcome.calibration && { ...outcome.calibration, starts: undefined },
    propagate: args.propagate,
    allocation: owl ? { method: 'owl', m: owlM, lambda: owlLambda, outlier_ratios: owl.outlierRatios, block_targets: owl.blockSparsities } : { method: 'uniform' },
    refine: refine === 'dsnot' ? { method: 'dsnot', max_cycles: dsnotCycles, threshold: dsnotThreshold, skip: args.dsnotSkip ?? 'mlp' } : null,
    permute: permute ? { refine: !!args.permuteRefine } : null,
    backend,
    code_version: versionInfo(),
  };
  if (dump) {
    writeFileAtomic(path.join(dump.tmp, 'run.json'), JSON.stringify({ ...settings, report: outcome.report, argv: process.argv.slice(2) }, null, 2));
    dump.commit();
  }
  let saved: { format: string; dtype: FloatDtype; sparsity: number; zeros: number } | null = null;
  if (args.save) {
    const format = formatForPath(args.save);
    const dtype = format === 'hf' ? args.dtype ?? configDtype(cfg) ?? 'F32' : 'F32';
    const card = prunedModelCard({ model: args.model, recipe: settings, sparsity: outcome.report.sparsity, dtype, codeVersion: settings.code_version, dense, pruned, zeroshot: denseZs && prunedZs ? { dense: denseZs, pruned: prunedZs } : null, command: `crepe ${process.argv.slice(2).join(' ')}` });
    saveModel(outcome.source, args.save, { tokenizer: model.tokenizerPath, dtype, force: args.force, card });
    // Read back: every pruned weight must be zero in the file, whatever the dtype.
    const check = savedSparsity(args.save, outcome.report.layers);
    saved = { format, dtype, ...check };
  }
  outcome.source.close(); // the spill file and the model
  const result = {
    ...settings,
    achieved_sparsity: outcome.report.sparsity,
    pruned_params: outcome.report.pruned,
    prunable_params: outcome.report.total,
    prune_seconds: outcome.seconds,
    prune_timing: {
      read_seconds: outcome.timing.readSeconds,
      calibration_seconds: outcome.timing.calibrationSeconds,
      scoring_seconds: outcome.timing.scoringSeconds,
      calib_forwards: outcome.timing.calibForwards,
      cpu_read_seconds: outcome.timing.cpu.readSeconds,
      cpu_calibration_seconds: outcome.timing.cpu.calibrationSeconds,
      cpu_scoring_seconds: outcome.timing.cpu.scoringSeconds,
    },
    block_sparsities: blockSparsities(outcome.report.layers),
    dsnot: refine === 'dsnot' ? { swaps: dsnotTotals.swaps, abs_error_before: dsnotTotals.errorBefore, abs_error_after: dsnotTotals.errorAfter } : null,
    layers: outcome.report.layers,
    eval: evalSets.map((d, k) => ({
      dataset: d,
      slice: dense[k].slice,
      seqlen: dense[k].seqlen,
      windows: dense[k].windows,
      tokens: dense[k].tokens,
      dense_ppl: dense[k].ppl,
      pruned_ppl: pruned[k].ppl,
      eval_seconds: pruned[k].seconds,
      eval_blocks_seconds: pruned[k].stages?.blocksSeconds ?? null,
      eval_head_seconds: pruned[k].stages?.headSeconds ?? null,
      eval_blocks_cpu_seconds: pruned[k].stages?.blocksCpuSeconds ?? null,
      eval_head_cpu_seconds: pruned[k].stages?.headCpuSeconds ?? null,
    })),
    zeroshot: denseZs && prunedZs ? { dense: zeroshotJson(denseZs), pruned: zeroshotJson(prunedZs), evaluator: zs!.run.evaluator, harness_files: { dense: harnessFilesJson(zs!.dense), pruned: harnessFilesJson(zs!.pruned) } } : null,
    saved: args.save ?? null,
    saved_model: saved,
    dump: args.dump ?? null,
    memory_plan: planJson(plan),
  };
  emit(args.json, result, () => {
    const lines = [
      `${args.model} pruned with ${args.method} ${JSON.stringify(params)}, ${args.structure}${structure.kind === 'unstructured' ? ` ${structure.sparsity} per ${group}` : ''}; backend ${backend}`,
      `sparsity ${(outcome.report.sparsity * 100).toFixed(4)}% of ${outcome.report.total} prunable weights; pruning took ${outcome.seconds.toFixed(2)} s`,
    ];
    if (owl) {
      lines.push(`OWL allocation (M ${owlM}, lambda ${owlLambda}); target mean ${(mean(owl.blockSparsities) * 100).toFixed(4)}%:`);
      blockSparsities(outcome.report.layers).forEach((s, b) =>
        lines.push(`  block ${b}: outlier ratio ${owl.outlierRatios[b].toFixed(3)}%, target ${(owl.blockSparsities[b] * 100).toFixed(3)}%, achieved ${(s * 100).toFixed(3)}%`),
      );
    }
    if (refine === 'dsnot') {
      lines.push(`DSnoT: ${dsnotTotals.swaps} swaps; sum over rows of |expected error| ${dsnotTotals.errorBefore.toPrecision(5)} -> ${dsnotTotals.errorAfter.toPrecision(5)}`);
    }
    for (const l of outcome.report.layers) lines.push(`  ${l.key.padEnd(22)} [${l.shape.join(' x ')}] ${(l.sparsity * 100).toFixed(2)}%`);
    evalSets.forEach((_, k) => lines.push(`dense  ${fmtPpl(dense[k])}`, `pruned ${fmtPpl(pruned[k])}`));
    if (denseZs && prunedZs) {
      lines.push(
        zeroshotMarkdown([
          { label: 'dense', result: denseZs },
          { label: `${args.method} ${args.structure}${structure.kind === 'unstructured' ? ` ${sparsity}` : ''}`, result: prunedZs },
        ]),
      );
    }
    if (saved) lines.push(`saved to ${args.save} (${saved.format}, ${saved.dtype}; sparsity read back ${(saved.sparsity * 100).toFixed(4)}%)`);
    if (args.dump) lines.push(`artefacts in ${args.dump}`);
    return lines.join('\n');
  });
}

/** Achieved sparsity per decoder block, from the per-layer report (keys `blocks.<b>.…`). */
function blockSparsities(layers: PruneOutcome['report']['layers']): number[] {
  const pruned: number[] = [];
  const total: number[] = [];
  for (const l of layers) {
    const b = Number(l.key.split('.')[1]);
    pruned[b] = (pruned[b] ?? 0) + l.pruned;
    total[b] = (total[b] ?? 0) + l.total;
  }
  return total.map((t, b) => pruned[b] / t);
}

function mean(v: readonly number[]): number {
  return v.reduce((a, b) => a + b, 0) / v.length;
}
