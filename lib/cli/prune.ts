import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { writeFileAtomic } from '../io/atomic';
import { EvalRecord, checkSeqlen, evaluateSource } from '../eval/evaluate';
import { openModel } from '../model/resolve';
import { saveModel } from '../model/save';
import { PruneOutcome, pruneModel } from '../prune/pipeline';
import { parseStructure } from '../prune/select';
import { getStrategy, parseParamPairs, resolveParams } from '../prune/strategy';
import { CommonArgs, emit, numberFlag, positiveIntFlag, progressBar, startBackend, versionInfo } from './common';

export interface PruneArgs extends CommonArgs {
  model: string;
  tokenizer?: string;
  method: string;
  param: string[];
  sparsity: number;
  structure: string;
  group?: 'row' | 'matrix';
  calib: string;
  nsamples: number;
  calibSeqlen?: number;
  seed: number;
  propagate: 'pruned' | 'dense';
  eval?: string[];
  seqlen?: number;
  maxWindows?: number;
  save?: string;
  dump?: string;
}

function fmtPpl(r: EvalRecord): string {
  return `${r.dataset}: PPL ${r.ppl.toFixed(4)} (${r.windows} x ${r.seqlen})`;
}

export async function pruneCommand(args: PruneArgs): Promise<void> {
  // Validate everything before any work, so bad input never leaves a partial output behind.
  const strategy = getStrategy(args.method);
  const params = resolveParams(strategy, parseParamPairs(args.param ?? []));
  const sparsity = numberFlag('sparsity', args.sparsity);
  const group = args.group ?? strategy.defaultGroup;
  const structure = parseStructure(args.structure, sparsity, group);
  const nsamples = positiveIntFlag('nsamples', args.nsamples);
  const seed = numberFlag('seed', args.seed);
  if (args.save && fs.existsSync(args.save) && fs.statSync(args.save).isDirectory() && args.save.endsWith('.bin')) {
    throw new CrepeError(`--save ${args.save} is a directory`);
  }
  if (args.save && !fs.existsSync(path.dirname(path.resolve(args.save)))) {
    throw new CrepeError(`cannot save to ${args.save}: its folder does not exist`);
  }
  const backend = await startBackend(args.backend);
  const model = openModel(args.model, args.tokenizer);
  const cfg = model.source.config;
  const calibSeqlen = args.calibSeqlen ?? cfg.maxSeqLen;
  checkSeqlen(calibSeqlen, cfg.maxSeqLen);
  const evalSets = args.eval ?? [];
  if (args.seqlen !== undefined) checkSeqlen(args.seqlen, cfg.maxSeqLen);

  const dense = evalSets.length ? evaluateSource(model, model.source, evalSets, { seqlen: args.seqlen, maxWindows: args.maxWindows }) : [];
  const bar = progressBar(`prune ${args.method}`, 'blocks');
  bar.start(cfg.nLayers, 0, { rate: '' });
  let outcome: PruneOutcome;
  const dumpTmp = args.dump ? `${path.resolve(args.dump)}.${process.pid}.tmp` : undefined;
  try {
    outcome = pruneModel(
      model,
      {
        method: args.method,
        params,
        structure,
        calibration: { dataset: args.calib, nsamples, seqlen: calibSeqlen, seed },
        propagate: args.propagate,
        dumpDir: dumpTmp,
      },
      { onBlock: (done) => bar.update(done, { rate: '' }) },
    );
  } catch (e) {
    if (dumpTmp) fs.rmSync(dumpTmp, { recursive: true, force: true });
    throw e;
  } finally {
    bar.stop();
  }
  const pruned = evalSets.length
    ? evaluateSource(model, outcome.source, evalSets, { seqlen: args.seqlen, maxWindows: args.maxWindows })
    : [];
  const settings = {
    model: args.model,
    method: args.method,
    params,
    structure: args.structure,
    group: structure.kind === 'unstructured' ? group : null,
    sparsity: structure.kind === 'unstructured' ? sparsity : 1 - structure.n / structure.m,
    calibration: outcome.calibration && { ...outcome.calibration, starts: undefined },
    propagate: args.propagate,
    backend,
    code_version: versionInfo(),
  };
  if (dumpTmp && args.dump) {
    writeFileAtomic(path.join(dumpTmp, 'run.json'), JSON.stringify({ ...settings, report: outcome.report, argv: process.argv.slice(2) }, null, 2));
    if (fs.existsSync(args.dump)) fs.rmSync(args.dump, { recursive: true, force: true });
    fs.renameSync(dumpTmp, args.dump);
  }
  if (args.save) saveModel(outcome.source, args.save, { tokenizer: model.tokenizerPath });
  model.source.close();
  const result = {
    ...settings,
    achieved_sparsity: outcome.report.sparsity,
    pruned_params: outcome.report.pruned,
    prunable_params: outcome.report.total,
    prune_seconds: outcome.seconds,
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
    })),
    saved: args.save ?? null,
    dump: args.dump ?? null,
  };
  emit(args.json, result, () => {
    const lines = [
      `${args.model} pruned with ${args.method} ${JSON.stringify(params)}, ${args.structure}${structure.kind === 'unstructured' ? ` ${sparsity} per ${group}` : ''}; backend ${backend}`,
      `sparsity ${(outcome.report.sparsity * 100).toFixed(4)}% of ${outcome.report.total} prunable weights; pruning took ${outcome.seconds.toFixed(2)} s`,
    ];
    for (const l of outcome.report.layers) lines.push(`  ${l.key.padEnd(22)} [${l.shape.join(' x ')}] ${(l.sparsity * 100).toFixed(2)}%`);
    evalSets.forEach((_, k) => lines.push(`dense  ${fmtPpl(dense[k])}`, `pruned ${fmtPpl(pruned[k])}`));
    if (args.save) lines.push(`saved to ${args.save}`);
    if (args.dump) lines.push(`artefacts in ${args.dump}`);
    return lines.join('\n');
  });
}
