/** Runs test/fixtures/zeroshot/harness_reader.py (plain python3) on crepe's harness files. */
import { execFileSync } from 'child_process';
import * as path from 'path';
import { ROOT } from './helpers';

export interface HarnessRead {
  tasks: string[];
  /** make_table's rows: task, version, filter, n-shot, metric, higher_is_better, value, stderr. */
  rows: (string | number | boolean | null)[][];
  samples: Record<string, { records: number; metrics: Record<string, number> }>;
}

/** Read a results file (and samples files) as the harness's code does; throws with python's message when a check fails. */
export function readHarness(results: string, samples: readonly string[]): HarnessRead {
  const script = path.join(ROOT, 'test', 'fixtures', 'zeroshot', 'harness_reader.py');
  return JSON.parse(execFileSync('python3', [script, results, ...samples], { encoding: 'utf8' })) as HarnessRead;
}
