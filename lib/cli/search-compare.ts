import * as os from 'os';
import * as path from 'path';
import { CrepeError } from '../errors';
import { statPath } from '../io/atomic';
import { OutputTarget, checkOutputs } from '../io/outputs';
import { openModel } from '../model/resolve';
import { CSV_COLUMNS, ComparePlan, JOURNAL, RESULTS_CSV, RESULTS_MD, comparisonJson, evalLogName, planComparison, planUnits, runComparison } from '../experiments/search-compare';
import { CommonArgs, emit, inputPaths, progressBar, startBackend, versionInfo } from './common';
import { EVAL_LOG_OPENING } from './search';
import { BudgetArgs, planComparisonMemory } from './memory';

export interface SearchCompareArgs extends CommonArgs, BudgetArgs {
  config: string;
  out: string;
  models?: string[];
  structures?: string[];
  runs?: string[];
  fresh?: boolean;
  reportOnly?: boolean;
  /** Replace files in --out that crepe did not write. */
  force?: boolean;
  dryRun?: boolean;
  maxMemory?: string;
}

/** Flag pairs that contradict each other, or a flag that --report-only would ignore: one line each. */
function checkFlagPairs(args: SearchCompareArgs): void {
  if (!args.reportOnly) return;
  if (args.fresh) throw new CrepeError('--fresh and --report-only contradict each other: --fresh discards the journal that --report-only reports from');
  if (args.runs?.length) throw new CrepeError('--runs chooses what to run and --report-only runs nothing: give one of them');
  if (args.dryRun) throw new CrepeError('--dry-run prints the memory plan of the runs and --report-only runs nothing: give one of them');
  if (args.maxMemory !== undefined) throw new CrepeError('--max-memory budgets the runs and --report-only runs nothing: give one of them');
}

/**
 * The openings of the files crepe writes in --out (the journal's first line, the CSV header, the
 * report's title, an evaluation log's header): an existing file that starts so is crepe's own.
 */
const OPENINGS = {
  journal: /^\{"type":"(?:journal|config)"/,
  csv: new RegExp(`^${CSV_COLUMNS.join(',')}\r?\n`),
  md: /^# \S+ hyperparameter search: PPL hill climbing versus PHO/,
};

/** Every file the comparison may write in --out, checked before any work. */
function comparisonOutputs(plan: ComparePlan, reportOnly: boolean): OutputTarget[] {
  const file = (name: string, opening: RegExp): OutputTarget => ({ flag: '--out', path: path.join(plan.out, name), kind: 'text', isDir: false, opening });
  const outputs = [file(JOURNAL, OPENINGS.journal), file(RESULTS_CSV, OPENINGS.csv), file(RESULTS_MD, OPENINGS.md)];
  if (!reportOnly) {
    for (const u of planUnits(plan.config)) if (u.kind === 'search') outputs.push(file(evalLogName(u.model, u.structure, u.run, u.seed!), EVAL_LOG_OPENING));
  }
  return outputs;
}

/** The files the comparison reads: its config, the models' weights and tokenizers, the calibration text. */
function comparisonInputs(plan: ComparePlan, configFile: string): string[] {
  const inputs = [configFile];
  for (const name of plan.config.models) {
    const model = openModel(name);
    try {
      inputs.push(...inputPaths(model, [plan.config.calibration.dataset]));
    } finally {
      model.source.close();
    }
  }
  return inputs;
}

/** `--models a,b --models c` -> [a, b, c]; undefined when not given. */
function listFlag(values: string[] | undefined): string[] | undefined {
  const out = values?.flatMap((v) => String(v).split(',')).map((v) => v.trim()).filter((v) => v);
  return out && out.length ? out : undefined;
}

/** The command line as typed again: crepe plus the arguments, quoted where the shell needs it. */
function commandLine(argv: readonly string[]): string {
  const quote = (a: string): string => (/^[\w@%+=:,./-]+$/.test(a) ? a : `'${a.replace(/'/g, `'\\''`)}'`);
  return ['crepe', ...argv.map(quote)].join(' ');
}

/** `crepe search-compare`: the whole search cost comparison of a config, in this process. */
export async function searchCompareCommand(args: SearchCompareArgs): Promise<void> {
  // Config, subset, output folder, datasets and models are all checked before any work.
  checkFlagPairs(args);
  const plan = planComparison(args.config, { out: args.out, models: listFlag(args.models), structures: listFlag(args.structures), runs: listFlag(args.runs) });
  if (args.reportOnly && !statPath(path.join(plan.out, JOURNAL))) throw new CrepeError(`--report-only: ${path.join(plan.out, JOURNAL)} does not exist, there is nothing to report`);
  // Before any work: no output is an input, and every file already in --out is one crepe wrote (or --force).
  checkOutputs(comparisonOutputs(plan, !!args.reportOnly), comparisonInputs(plan, args.config), { force: args.force });
  for (const w of plan.config.warnings) process.stderr.write(`crepe: warning: ${w}\n`);
  const backend = await startBackend(args.backend);
  if (!args.reportOnly && !planComparisonMemory(plan, args, backend.startsWith('wasm'))) return;
  const result = runComparison(
    plan,
    {
      backend,
      codeVersion: versionInfo(),
      command: commandLine(process.argv.slice(2)),
      fresh: args.fresh ?? false,
      reportOnly: args.reportOnly ?? false,
      load: () => `load average ${os.loadavg().map((v) => v.toFixed(1)).join(' / ')} (1 / 5 / 15 min) on ${os.cpus().length} cores at the end of the run`,
    },
    {
      progress: (label, unit, total) => {
        const bar = progressBar(label, unit);
        bar.start(total, 0, { rate: '' });
        return {
          update: (done, v) => bar.update(done, { rate: `last ${v.toPrecision(5)}` }),
          stop: () => bar.stop(),
        };
      },
      log: (line) => process.stderr.write(`${line}\n`),
    },
  );
  emit(args.json, comparisonJson(result), () =>
    [
      ...result.costs.map(
        (c) =>
          `${c.model} ${c.structure} ${c.pho}: hillclimb ${c.hillclimbPpl.mean.toFixed(4)}, PHO ${c.phoPpl.mean.toFixed(4)} (${c.phoVsHillclimbPct >= 0 ? '+' : ''}${c.phoVsHillclimbPct.toFixed(2)}%, mean of ${c.phoPpl.n} seeds), loop ${c.loopWallRatio.toFixed(1)}x wall, ${c.loopCpuRatio.toFixed(1)}x CPU`,
      ),
      `${result.rows.length} rows (${result.ranUnits} run now, ${result.resumedUnits} resumed) in ${result.totalWallSeconds.toFixed(1)} s (backend ${backend}); wrote ${result.files.slice(-3).join(', ')} and the evaluation logs`,
    ].join('\n'),
  );
}
