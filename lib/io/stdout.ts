/**
 * Standard output that fails (a full disk, a closed pipe, a read-only file) ends the command
 * with one line naming where it went and the cause, instead of Node's unhandled 'error' event
 * and its stack trace.
 */
import * as fs from 'fs';
import { osCause } from './atomic';

/** Exit code of a command whose output could not be written (crepe's exit code for user errors). */
const EXIT_OUTPUT = 2;

/** Where standard output goes, for messages: its path (Linux /proc), else a description. */
export function stdoutTarget(): string {
  try {
    return fs.readlinkSync('/proc/self/fd/1');
  } catch {
    return 'standard output';
  }
}

/** Install the handler once per process (the CLI entry point calls it first). */
export function guardStdout(): void {
  if (process.stdout.listenerCount('error') > 0) return;
  process.stdout.on('error', (e: NodeJS.ErrnoException) => {
    const where = stdoutTarget();
    try {
      process.stderr.write(`crepe: cannot write standard output${where === 'standard output' ? '' : ` (${where})`}: ${osCause(e)}\n`);
    } catch {
      // stderr failing as well: the exit code still says it
    }
    process.exit(EXIT_OUTPUT);
  });
}
