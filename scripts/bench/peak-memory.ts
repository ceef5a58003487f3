/**
 * Preloaded into a child process by the scale bench (`node -r .../peak-memory.js cli.js ...`):
 * at exit, prints the process's peak resident set size (getrusage) and the size of the tfjs-wasm
 * heap (wasm memory only grows, so its size at exit is its peak) and its own CPU seconds (user +
 * system) as one line on stderr.
 */
import * as fs from 'fs';

export const PEAK_MARKER = 'CREPE_PEAK_MEMORY ';

/** The environment variable that turns the report on (set by the bench for its child only). */
export const PEAK_ENV = 'CREPE_PEAK_MEMORY_REPORT';

function report(): void {
  let wasmHeap: number | null = null;
  try {
    // the same module instance the CLI loaded (resolved from the same node_modules)
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const tf = require('@tensorflow/tfjs') as { getBackend(): string; backend(): { wasm?: { HEAPU8: Uint8Array } } };
    if (tf.getBackend() === 'wasm') wasmHeap = tf.backend().wasm?.HEAPU8.length ?? null;
  } catch {
    /* no tfjs loaded: nothing to report */
  }
  const u = process.resourceUsage();
  const cpuSeconds = (u.userCPUTime + u.systemCPUTime) / 1e6;
  fs.writeSync(2, `${PEAK_MARKER}${JSON.stringify({ max_rss_bytes: u.maxRSS * 1024, wasm_heap_bytes: wasmHeap, cpu_seconds: cpuSeconds })}\n`);
}

if (process.env[PEAK_ENV] === '1') process.on('exit', report);
