import * as os from 'os';
import { comparisonJson, planComparison, runComparison } from '../experiments/search-compare';
import { CommonArgs, emit, progressBar, startBackend, versionInfo } from './common';
import { BudgetArgs, planComparisonMemory } from './memory';

export interface SearchCompareArgs extends CommonArgs, BudgetArgs {
  config: string;
  out: string;
  models?: string[];
  structures?: string[];
  runs?: string[];
  fresh?: boolean;
  reportOnly?: boolean;
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
  const plan = planComparison(args.config, { out: args.out, models: listFlag(args.models), structures: listFlag(args.structures), runs: listFlag(args.runs) });
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
