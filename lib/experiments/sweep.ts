/**
 * The sweep runner (parent side): plan the cells of a config, skip those already in the results
 * CSV, hand the rest to worker processes, and append one row per finished cell.
 *
 * Crash safety: every row is one line written with a single write() and fsync'd, so after a kill
 * the file holds complete rows plus at most one partial last line, which the next start cuts
 * off. Only this process writes the file: it holds `<out>.lock` (lib/io/lock.ts) while it runs, and a
 * second sweep on the same file refuses. Resume is by key: a cell whose key is in the file is
 * done, including the dense baselines, whose PPL is read back instead of recomputed.
 */
import { fork } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { BackendChoice, workerEnv } from '../backend';
import { CrepeError } from '../errors';
import { makeDirs, osError, writeFileAtomic } from '../io/atomic';
import { CheckedRows, checkRows } from './row-check';
import { csvHeader, csvLine, parseCsv } from '../util/csv';
import { gitVersion } from '../version';
import {
  Cell, CellResult, EvalOutcome, Row, canonicalJson, denseFromRow, describeCell, planCells, resultColumns, resultRow,
} from './cell';
import { parseTaskList } from '../eval/zeroshot/tasks';
import { SweepConfig, fieldError, loadSweepConfig } from './config';
import { FileLock, lockFile, lockRefusal } from '../io/lock';
import { FromWorker, HarnessRequest, ToWorker } from './worker';

// ---------------------------------------------------------------------------------------------
// the results file

/** What a results CSV holds, read without changing it (resume, dry run). */
export interface ResultsFileContents {
  /** The file has a header line (false: new or empty). */
  hasHeader: boolean;
  /** Usable rows, damaged ones and repeated keys. */
  checked: CheckedRows;
  /** Windows line endings (the file is rewritten with \n on opening). */
  crlf: boolean;
  /** Bytes of an interrupted last line (cut off on opening), and the bytes before it. */
  repairedBytes: number;
  completeBytes: number;
}

/**
 * Check that `file` can be a sweep's results CSV (its folder exists, it is a regular writable
 * file or absent, its header is `columns`) and read its rows, changing nothing. The real run and
 * --dry-run both call this, so a dry run refuses exactly what the run refuses.
 */
export function readResultsFile(file: string, columns: readonly string[]): ResultsFileContents {
  const abs = path.resolve(file);
  const dir = path.dirname(abs);
  if (!fs.existsSync(dir) || !fs.statSync(dir).isDirectory()) throw new CrepeError(`cannot write ${file}: folder ${dir} does not exist`);
  let text = '';
  if (fs.existsSync(abs)) {
    if (!fs.statSync(abs).isFile()) throw new CrepeError(`cannot write ${file}: it is not a regular file`);
    text = fs.readFileSync(abs, 'utf8');
  }
  try {
    fs.accessSync(fs.existsSync(abs) ? abs : dir, fs.constants.W_OK);
  } catch {
    throw new CrepeError(`cannot write ${file}: permission denied`);
  }
  // Windows line endings (a CSV saved by a spreadsheet) become \n, so appended rows match.
  const crlf = text.includes('\r\n');
  if (crlf) text = text.replace(/\r\n/g, '\n');
  const complete = text.slice(0, text.lastIndexOf('\n') + 1);
  const table = parseCsv(complete, file);
  if (table.columns.length > 0 && table.columns.join(',') !== columns.join(',')) {
    throw new CrepeError(
      `${file} has other columns than this sweep writes (different evaluation datasets, or written by another version of crepe?): use another --out`,
    );
  }
  const completeBytes = Buffer.byteLength(complete);
  return { hasHeader: table.columns.length > 0, checked: checkRows(table, file), crlf, repairedBytes: Buffer.byteLength(text) - completeBytes, completeBytes };
}

/** An append-only results CSV, opened (and repaired) once, before any cell runs. */
export class ResultsFile {
  private constructor(
    readonly file: string,
    readonly columns: string[],
    private readonly fd: number,
    /** Rows already in the file, by key. */
    readonly existing: Map<string, Record<string, string>>,
    /** Bytes of an interrupted last line that were cut off on opening (0 when none). */
    readonly repairedBytes: number,
  ) {}

  /**
   * Check that `file` can be written (its folder exists, it is not a directory, its header
   * matches `columns`), cut off a partial last line, and write the header when it is new.
   * Fails before changing anything.
   */
  static open(file: string, columns: string[]): ResultsFile {
    const abs = path.resolve(file);
    const read = readResultsFile(file, columns);
    for (const p of read.checked.problems) process.stderr.write(`crepe: ${p}; the row is dropped and its cell recomputed\n`);
    for (const p of read.checked.duplicates) process.stderr.write(`crepe: ${p}; the earlier row is dropped (the cell is done and not recomputed)\n`);
    const rewrite = read.crlf || read.checked.problems.length > 0 || read.checked.duplicates.length > 0;
    if (rewrite) {
      if (read.crlf) process.stderr.write(`crepe: ${file} had Windows line endings; rewritten with \\n\n`);
      writeFileAtomic(abs, csvHeader(columns) + read.checked.rows.map((r) => csvLine(columns, r)).join(''));
    } else if (read.repairedBytes > 0) fs.truncateSync(abs, read.completeBytes);
    let fd: number;
    try {
      fd = fs.openSync(abs, 'a');
    } catch (e) {
      throw new CrepeError(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const results = new ResultsFile(file, columns, fd, new Map(read.checked.rows.map((r) => [r.key, r])), read.repairedBytes);
    if (!read.hasHeader) {
      try {
        results.writeLine(csvHeader(columns));
      } catch (e) {
        // a header that cannot be written leaves no file behind (an empty one would hold no rows)
        results.close();
        if (read.completeBytes === 0 && read.repairedBytes === 0) fs.rmSync(abs, { force: true });
        throw e;
      }
    }
    return results;
  }

  append(row: Row): void {
    this.writeLine(csvLine(this.columns, row));
  }

  private writeLine(line: string): void {
    // One write per line: a kill leaves at most one partial line, which open() repairs (so does
    // the next run after a full disk cut one short).
    try {
      fs.writeSync(this.fd, Buffer.from(line, 'utf8'));
      fs.fsyncSync(this.fd);
    } catch (e) {
      throw osError(path.resolve(this.file), e);
    }
  }

  close(): void {
    fs.closeSync(this.fd);
  }
}

// ---------------------------------------------------------------------------------------------
// worker pool

/**
 * Run `cells` on `jobs` worker processes. `onResult` is called in this process for each
 * finished cell. On the first failure no further cells are handed out; cells already running
 * finish (and are reported), then the promise rejects.
 */
export function runOnWorkers(cells: Cell[], jobs: number, backend: BackendChoice, onResult: (r: CellResult) => void, harness?: HarnessRequest): Promise<void> {
  const queue = [...cells];
  const workerFile = path.join(__dirname, 'worker.js');
  if (!fs.existsSync(workerFile)) throw new Error(`${workerFile} is missing: build with \`npm run build\``);
  return new Promise((resolve, reject) => {
    let failure: Error | null = null;
    let alive = 0;
    const fail = (e: Error) => {
      failure ??= e;
    };
    const start = () => {
      const child = fork(workerFile, [backend], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'], env: workerEnv(jobs) });
      alive++;
      let current: Cell | undefined;
      const next = () => {
        current = failure ? undefined : queue.shift();
        if (current) child.send({ type: 'run', cell: current, ...(harness ? { harness } : {}) } satisfies ToWorker);
        else if (child.connected) child.disconnect();
      };
      child.on('message', (msg: FromWorker) => {
        if (msg.type === 'result') {
          current = undefined;
          try {
            onResult(msg.result);
          } catch (e) {
            fail(e as Error);
          }
        } else if (msg.type === 'failed') {
          const where = current ? `${describeCell(current)} [${current.key}]: ` : 'worker start-up: ';
          current = undefined;
          fail(msg.userError ? new CrepeError(`${where}${msg.message}`) : new Error(`${where}${msg.message}`));
        }
        next();
      });
      child.on('error', (e) => fail(e));
      child.on('exit', (code, signal) => {
        alive--;
        if (current) fail(new Error(`worker ${child.pid} died (${signal ?? `exit code ${code}`}) while running ${describeCell(current)}`));
        else if (code !== 0) fail(new Error(`worker ${child.pid} exited with ${signal ?? `code ${code}`}`));
        if (alive > 0) return;
        if (!failure && queue.length > 0) failure = new Error(`workers stopped with ${queue.length} cells left`);
        if (failure) reject(failure);
        else resolve();
      });
    };
    const n = Math.min(jobs, queue.length);
    if (n === 0) resolve();
    for (let i = 0; i < n; i++) start();
  });
}

// ---------------------------------------------------------------------------------------------
// the sweep

export interface SweepPlan {
  config: SweepConfig;
  /** The cells this run writes (with --shard: its share). */
  cells: Cell[];
  /** (model, N:M structure) pairs the model's widths rule out, with the reason. */
  skipped: string[];
  out: string;
  columns: string[];
  /** This run's share of the sweep; absent: the whole sweep. */
  shard?: Shard;
  /** Every cell of the sweep (equal to `cells` without --shard). */
  allCells: Cell[];
}

/** Share K of N of a sweep's cells (1 <= K <= N). */
export interface Shard {
  k: number;
  n: number;
}

/** Most shards a sweep may be split into. */
export const MAX_SHARDS = 10_000;

/** `--shard K/N` as given on the command line. */
export function parseShard(text: string): Shard {
  const m = /^\s*(\d+)\s*\/\s*(\d+)\s*$/.exec(text);
  const k = m ? Number(m[1]) : NaN;
  const n = m ? Number(m[2]) : NaN;
  if (!m || !(n >= 1 && n <= MAX_SHARDS) || !(k >= 1 && k <= n)) {
    throw new CrepeError(`--shard must be K/N with 1 <= K <= N <= ${MAX_SHARDS} (e.g. 2/3), got '${text}'`);
  }
  return { k, n };
}

/**
 * The shard (1..n) a cell belongs to: its key (a sha256 prefix of its settings) read as a
 * number, modulo n, plus one. It depends on the cell's settings alone, not on its position in
 * the config, so reordering a config's lists, or adding models, methods or seeds to it, moves no
 * existing cell to another shard, and every shard's CSV stays valid for resuming. The shares are
 * random-like: close to equal for sweeps of many cells, uneven for tiny ones.
 */
export function shardOf(key: string, n: number): number {
  return (parseInt(key.slice(0, 12), 16) % n) + 1;
}

/** results/<config name>.csv, or results/<config name>.<K>of<N>.csv for a shard. */
export function defaultOut(configFile: string, shard?: Shard): string {
  const name = path.basename(configFile, path.extname(configFile));
  return path.join('results', shard ? `${name}.${shard.k}of${shard.n}.csv` : `${name}.csv`);
}

/** Most cells one sweep config may expand to. */
export const MAX_SWEEP_CELLS = 100_000;

/**
 * Two method entries that differ only in their label would run the same cells: the key leaves
 * the label out (relabelling must not recompute), so one entry's rows would silently stand for
 * both. Refused, naming both entries.
 */
function checkLabelOnlyTwins(config: SweepConfig): void {
  const seen = new Map<string, number>();
  config.methods.forEach((m, i) => {
    const id = canonicalJson({ ...m, label: undefined });
    const twin = seen.get(id);
    if (twin !== undefined) {
      throw fieldError(config.file, ['methods', i], `runs the same cells as methods[${twin}] ('${config.methods[twin].label}'), differing only in its label '${m.label}': remove one, or change a parameter`);
    }
    seen.set(id, i);
  });
}

/**
 * Load, validate and expand a config (no output touched); with `shard`, keep that share of the
 * cells; `overrides.seed` replaces the config's calibration seed(s) in every cell (--seed).
 */
export function planSweep(configFile: string, out?: string, shard?: Shard, overrides: { seed?: number } = {}): SweepPlan {
  const loaded = loadSweepConfig(configFile);
  const config = overrides.seed === undefined ? loaded : { ...loaded, calibration: { ...loaded.calibration, seeds: [overrides.seed] } };
  // A grid of millions of cells took minutes and GBs just to plan; no sweep here needs that many.
  const bound = [config.models, config.methods, config.sparsities, config.structures, config.groups].reduce((a, l) => a * l.length, 1);
  if (bound > MAX_SWEEP_CELLS) {
    throw new CrepeError(`${configFile}: the grid has up to ${bound} cells (models x methods x sparsities x structures x groups), above the limit of ${MAX_SWEEP_CELLS}: split the config`);
  }
  checkLabelOnlyTwins(config);
  const { cells, skipped } = planCells(config);
  const columns = resultColumns(
    config.eval.map((e) => e.dataset),
    config.zeroshot ? parseTaskList(config.zeroshot.tasks).map((s) => s.task.name) : [],
  );
  const mine = shard ? cells.filter((c) => shardOf(c.key, shard.n) === shard.k) : cells;
  return { config, cells: mine, allCells: cells, skipped, columns, out: out ?? defaultOut(configFile, shard), ...(shard ? { shard } : {}) };
}

/**
 * The rows already in `plan.out`, by key, read without changing anything (for --dry-run). Refuses
 * exactly what the run refuses: a file of other columns (another version's CSV), a file holding
 * another shard's cells, a file another sweep is writing.
 */
export function existingRows(plan: SweepPlan): Map<string, Record<string, string>> {
  const refusal = lockRefusal(plan.out);
  if (refusal) throw new CrepeError(refusal);
  // The default results/ folder is created by the run.
  if (plan.out === defaultOut(plan.config.file, plan.shard) && !fs.existsSync(path.dirname(plan.out))) return new Map();
  const rows = new Map(readResultsFile(plan.out, plan.columns).checked.rows.map((r) => [r.key, r]));
  checkShardRows(plan, rows);
  return rows;
}

/** A shard's CSV must not hold cells of other shards (e.g. a file written with another N): they would be merged twice. */
function checkShardRows(plan: SweepPlan, rows: ReadonlyMap<string, unknown>): void {
  if (!plan.shard) return;
  const { k, n } = plan.shard;
  const foreign = plan.allCells.find((c) => rows.has(c.key) && shardOf(c.key, n) !== k);
  if (foreign) {
    throw new CrepeError(`${plan.out} holds cell ${foreign.key} (${describeCell(foreign)}) of shard ${shardOf(foreign.key, n)}/${n}, not of this shard ${k}/${n}: give each shard its own --out`);
  }
}

export interface SweepEvents {
  /** Once, before work starts. */
  onStart?: (info: { total: number; skipped: number; toRun: number; repairedBytes: number; helpers: number }) => void;
  /** After each row is written. */
  onRow?: (cell: Cell, row: Row) => void;
}

export interface SweepSummary {
  out: string;
  total: number;
  skipped: number;
  ran: number;
  seconds: number;
  /** With --shard: 'K/N' and the number of cells of the whole sweep. */
  shard?: string;
  sweepTotal?: number;
}

/**
 * Run every cell of `plan` not yet in its CSV on `jobs` workers. A pruned cell's row needs its
 * model's dense PPL: rows whose dense baseline is still running wait for it (in memory; a kill
 * loses them and the rerun redoes those cells). A shard whose pruned cells need a dense baseline
 * that another shard writes evaluates it too, without writing its row (rows are merged by key).
 *
 * The CSV is locked for the whole run (`<out>.lock`, lib/io/lock.ts): a second sweep on the
 * same file refuses with one line naming the first one's pid. Pass `lock` when the caller took it
 * earlier (the CLI does, before --fresh removes the old file).
 */
export async function runSweep(plan: SweepPlan, jobs: number, backend: BackendChoice, events: SweepEvents = {}, lock?: FileLock, harness?: HarnessRequest): Promise<SweepSummary> {
  const t0 = Date.now();
  if (plan.out === defaultOut(plan.config.file, plan.shard)) makeDirs(path.dirname(plan.out));
  const held = lock ?? lockFile(plan.out, 'crepe sweep');
  try {
    return await runLocked(plan, jobs, backend, events, t0, harness);
  } finally {
    if (!lock) held.release();
  }
}

async function runLocked(plan: SweepPlan, jobs: number, backend: BackendChoice, events: SweepEvents, t0: number, harness?: HarnessRequest): Promise<SweepSummary> {
  checkShardRows(plan, readResultsFile(plan.out, plan.columns).checked.rows.reduce((m, r) => m.set(r.key, r), new Map<string, unknown>()));
  const results = ResultsFile.open(plan.out, plan.columns);
  const dense = new Map<string, EvalOutcome[]>();
  for (const c of plan.cells) {
    const row = results.existing.get(c.key);
    if (!c.prune && row) dense.set(c.model, denseFromRow(row, c.eval));
  }
  const todo = plan.cells.filter((c) => !results.existing.has(c.key));
  // Dense baselines this shard needs but does not own: evaluated first, never written.
  const owned = new Set(plan.cells.map((c) => c.key));
  const needed = new Set(todo.filter((c) => c.prune && !dense.has(c.model)).map((c) => c.model));
  const helpers = plan.allCells.filter((c) => !c.prune && needed.has(c.model) && !owned.has(c.key));
  const helperKeys = new Set(helpers.map((c) => c.key));
  events.onStart?.({ total: plan.cells.length, skipped: plan.cells.length - todo.length, toRun: todo.length, repairedBytes: results.repairedBytes, helpers: helpers.length });
  const byKey = new Map([...helpers, ...todo].map((c) => [c.key, c]));
  const waiting = new Map<string, { cell: Cell; result: CellResult }[]>();
  const ctx = { codeVersion: gitVersion(), config: plan.config.file };
  const write = (cell: Cell, result: CellResult, denseEvals: EvalOutcome[]) => {
    const row = resultRow(cell, result, denseEvals, { ...ctx, timestamp: new Date().toISOString() });
    results.append(row);
    events.onRow?.(cell, row);
  };
  try {
    await runOnWorkers([...helpers, ...todo], jobs, backend, (result) => {
      const cell = byKey.get(result.key);
      if (!cell) throw new Error(`a worker returned an unknown cell ${result.key}`);
      if (!cell.prune) {
        dense.set(cell.model, result.evals);
        if (!helperKeys.has(cell.key)) write(cell, result, result.evals);
        for (const w of waiting.get(cell.model) ?? []) write(w.cell, w.result, result.evals);
        waiting.delete(cell.model);
        return;
      }
      const d = dense.get(cell.model);
      if (d) write(cell, result, d);
      else waiting.set(cell.model, [...(waiting.get(cell.model) ?? []), { cell, result }]);
    }, harness);
  } finally {
    results.close();
  }
  return { out: plan.out, total: plan.cells.length, skipped: plan.cells.length - todo.length, ran: todo.length, seconds: (Date.now() - t0) / 1000, ...(plan.shard ? { shard: `${plan.shard.k}/${plan.shard.n}`, sweepTotal: plan.allCells.length } : {}) };
}
