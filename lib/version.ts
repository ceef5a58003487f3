import { execFileSync } from 'child_process';
import { projectRoot } from './assets';

let cached: string | null = null;

/** The code version recorded with every result: git commit (+ "-dirty" when code is modified). */
export function gitVersion(): string {
  if (cached !== null) return cached;
  try {
    const opts = { cwd: projectRoot(), stdio: ['ignore', 'pipe', 'ignore'] as ('ignore' | 'pipe')[] };
    const head = execFileSync('git', ['rev-parse', '--short=12', 'HEAD'], opts).toString().trim();
    // results/ and Markdown are outputs and prose, not code: editing them must not mark a run dirty
    const dirty = execFileSync('git', ['status', '--porcelain', '--untracked-files=no', '--', '.', ':(exclude)results', ':(exclude)*.md'], opts)
      .toString()
      .trim();
    cached = dirty ? `${head}-dirty` : head;
  } catch {
    cached = 'unknown';
  }
  return cached;
}
