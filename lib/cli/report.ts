import { writeReport } from '../experiments/report';
import { emit } from './common';

export interface ReportArgs {
  /** One results CSV, or the CSVs of a sweep's shards (merged). */
  csv: string[];
  json: boolean;
  out?: string;
  name?: string;
  force?: boolean;
}

/** `crepe report`: Markdown tables and SVG plots from a sweep CSV, or from the merged CSVs of its shards. */
export async function reportCommand(args: ReportArgs): Promise<void> {
  const files = await writeReport(args.csv, { out: args.out, name: args.name, force: args.force });
  emit(args.json, { ...files }, () => [`wrote ${files.markdown}`, ...files.svgs.map((s) => `wrote ${s}`)].join('\n'));
}
