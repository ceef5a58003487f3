/**
 * The memory plan against the measured wasm heap at long windows: a synthetic long-context model
 * (seeded random weights, a 16384-token context, small width so attention's [T, T] scores
 * dominate) is evaluated by `crepe eval` in a child process at each window length, with the
 * resident and the streaming evaluator, and the planned heap (the plan in its --json) is set
 * beside the heap the process reached (the wasm memory only grows: its size at exit is its peak).
 * A length the plan refuses is reported as refused (its planned heap from --dry-run); with
 * --plan-only the planned heaps are printed without running anything.
 *
 *   npm run build && node dist/scripts/long-window-heap.js [--lengths 2048,4096,...] [--evaluators resident,streaming] [--out FILE.md]
 *   node dist/scripts/long-window-heap.js --plan-only
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { assetPath, projectRoot } from '../lib/assets';
import { writeFileAtomic } from '../lib/io/atomic';
import { writeHfModel } from '../lib/model/convert';
import { LlamaConfig } from '../lib/model/types';
import { Evaluator, GiB, planMemory } from '../lib/plan/memory';
import { gitVersion } from '../lib/version';
import { SyntheticSource } from './bench/scale';
import { PEAK_ENV, PEAK_MARKER } from './bench/peak-memory';

/** Long context, small width: a window's heap is mostly attention's [T, T] buffers and the masks. */
export const LONG_CONTEXT: LlamaConfig = {
  architecture: 'llama',
  dim: 256,
  hiddenDim: 688,
  nLayers: 1,
  nHeads: 4,
  nKvHeads: 4,
  headDim: 64,
  vocabSize: 105,
  maxSeqLen: 16384,
  normEps: 1e-5,
  ropeTheta: 10000,
  ropeLayout: 'half',
  tiedEmbeddings: false,
};

interface Row {
  evaluator: string;
  seqlen: number;
  plannedHeap: number | null;
  measuredHeap: number | null;
  maxRss: number | null;
  exit: number | null;
  outcome: string;
  seconds: number;
}

function arg(name: string, fallback: string): string {
  const k = process.argv.indexOf(`--${name}`);
  return k >= 0 ? process.argv[k + 1] : fallback;
}

/** The plan's wasm heap for each evaluator and length, computed here (nothing run). */
function planOnly(lengths: number[], evaluators: string[]): void {
  const lines = ['| evaluator | seqlen | planned heap (GiB) | plan |', '|---|---:|---:|---|'];
  for (const evaluator of evaluators) {
    for (const T of lengths) {
      const plan = planMemory({ config: LONG_CONTEXT, limit: 100 * GiB, storage: 'auto', evaluator: evaluator as Evaluator, wasm: true, diskFree: Number.MAX_SAFE_INTEGER, eval: { windows: 1, seqlen: T, jobs: 1 } });
      lines.push(`| ${evaluator} | ${T} | ${(plan.deviceBytes / GiB).toFixed(2)} | ${plan.fits ? 'fits' : 'refused'} |`);
    }
  }
  process.stdout.write(`Planned at code ${gitVersion()} (\`node dist/scripts/long-window-heap.js --plan-only --lengths ${lengths.join(',')}\`):\n\n${lines.join('\n')}\n`);
}

function main(): void {
  const lengths = arg('lengths', '2048,4096,8192,10240,12288,14336,16384').split(',').map(Number);
  const evaluators = arg('evaluators', 'resident,streaming').split(',');
  const out = arg('out', '');
  if (process.argv.includes('--plan-only')) return planOnly(lengths, evaluators);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-long-'));
  const model = path.join(dir, 'model');
  writeHfModel(new SyntheticSource(LONG_CONTEXT, 0), model, { dtype: 'F32', tokenizer: assetPath('models', 'babyllama-char', 'tok105.model') });
  const cli = path.join(projectRoot(), 'dist', 'scripts', 'cli.js');
  const preload = path.join(projectRoot(), 'dist', 'scripts', 'bench', 'peak-memory.js');
  const rows: Row[] = [];
  try {
    for (const evaluator of evaluators) {
      for (const T of lengths) {
        const args = ['eval', '--model', model, '--dataset', 'wikitext2', '--seqlen', String(T), '--max-windows', '1', '--evaluator', evaluator, '--backend', 'wasm', '--json'];
        const t0 = Date.now();
        const r = spawnSync(process.execPath, ['-r', preload, cli, ...args], { encoding: 'utf8', maxBuffer: 64 << 20, env: { ...process.env, [PEAK_ENV]: '1' } });
        const seconds = (Date.now() - t0) / 1000;
        const peakLine = r.stderr.split('\n').find((l) => l.startsWith(PEAK_MARKER));
        const peak = peakLine ? (JSON.parse(peakLine.slice(PEAK_MARKER.length)) as { max_rss_bytes: number; wasm_heap_bytes: number | null }) : null;
        let planned: number | null = null;
        let outcome: string;
        if (r.status === 0) {
          const j = JSON.parse(r.stdout.trim().split('\n').pop()!);
          planned = j.memory_plan.device_bytes;
          outcome = `PPL ${Number(j.ppl).toFixed(2)}`;
        } else {
          outcome = r.stderr.split('\n').filter((l) => l.startsWith('crepe:') || /Aborted|RuntimeError|out of bounds/.test(l)).join(' ').slice(0, 160) || `signal ${r.signal}`;
        }
        // the plan of a refused or crashed run: --dry-run prints it
        if (planned === null) {
          const d = spawnSync(process.execPath, [cli, ...args, '--dry-run'], { encoding: 'utf8' });
          if (d.status === 0) planned = JSON.parse(d.stdout.trim().split('\n').pop()!).memory_plan?.device_bytes ?? null;
        }
        const row: Row = { evaluator, seqlen: T, plannedHeap: planned, measuredHeap: peak?.wasm_heap_bytes ?? null, maxRss: peak?.max_rss_bytes ?? null, exit: r.status, outcome, seconds };
        rows.push(row);
        process.stderr.write(`${JSON.stringify(row)}\n`);
      }
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  const g = (b: number | null) => (b === null ? '-' : (b / GiB).toFixed(2));
  const md = [
    '# Memory plan against the measured wasm heap at long windows',
    '',
    `Written by \`node dist/scripts/long-window-heap.js --lengths ${lengths.join(',')}\` at code ${gitVersion()} on ${os.cpus().length} x ${os.cpus()[0]?.model ?? 'CPU'} (backend wasm).`,
    `Model: synthetic (seed 0), ${LONG_CONTEXT.nLayers} block, dim ${LONG_CONTEXT.dim}, ${LONG_CONTEXT.nHeads} heads of ${LONG_CONTEXT.headDim}, context ${LONG_CONTEXT.maxSeqLen}, babyllama-char's 105-piece tokenizer;`,
    '`crepe eval --dataset wikitext2 --max-windows 1 --seqlen T`. Planned: the plan\'s wasm heap (`memory_plan.device_bytes`); measured: the wasm memory at exit (it only grows).',
    '',
    '| evaluator | seqlen | planned heap (GiB) | measured heap (GiB) | peak RSS (GiB) | exit | outcome | wall s |',
    '|---|---:|---:|---:|---:|---:|---|---:|',
    ...rows.map((r) => `| ${r.evaluator} | ${r.seqlen} | ${g(r.plannedHeap)} | ${g(r.measuredHeap)} | ${g(r.maxRss)} | ${r.exit ?? '-'} | ${r.outcome.replace(/\|/g, '/')} | ${r.seconds.toFixed(1)} |`),
    '',
  ].join('\n');
  if (out) writeFileAtomic(out, md, { kind: 'text', opening: /^# Memory plan against the measured wasm heap/ });
  process.stdout.write(md);
}

if (require.main === module) main();
