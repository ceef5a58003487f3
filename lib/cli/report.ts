import { writeReport } from '../experiments/report';
import { emit } from './common';

export interface ReportArgs {
  csv: string;
  json: boolean;
  out?: string;
}

/** `crepe report`: Markdown tables and SVG plots from a sweep CSV. */
export async function reportCommand(args: ReportArgs): Promise<void> {
  const files = await writeReport(args.csv, args.out);
  emit(args.json, { ...files }, () => [`wrote ${files.markdown}`, ...files.svgs.map((s) => `wrote ${s}`)].join('\n'));
}
