/**
 * The sweep runner (parent side): plan the cells of a config, skip those already in the results
 * CSV, hand the rest to worker processes, and append one row per finished cell.
 *
 * Crash safety: every row is one line written with a single write() and fsync'd, so after a kill
 * the file holds complete rows plus at most one partial last line, which the next start cuts
 * off. Only this process writes the file. Resume is by key: a cell whose key is in the file is
 * done, including the dense baselines, whose PPL is read back instead of recomputed.
 */
import { fork } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { BackendChoice } from '../backend';
import { CrepeError } from '../errors';
import { makeDirs, writeFileAtomic } from '../io/atomic';
import { checkRows } from './row-check';
import { csvHeader, csvLine, parseCsv } from '../util/csv';
import { gitVersion } from '../version';
import {
  Cell, CellResult, EvalOutcome, Row, denseFromRow, describeCell, planCells, resultColumns, resultRow,
} from './cell';
import { parseTaskList } from '../eval/zeroshot/tasks';
import { SweepConfig, loadSweepConfig } from './config';
import { FromWorker, ToWorker } from './worker';

// ---------------------------------------------------------------------------------------------
// the results file

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
        `${file} has other columns than this sweep writes (different evaluation datasets?): use another --out`,
      );
    }
    const repairedBytes = Buffer.byteLength(text) - Buffer.byteLength(complete);
    const checked = checkRows(table, file);
    for (const p of checked.problems) process.stderr.write(`crepe: ${p}; the row is dropped and its cell recomputed\n`);
    if (crlf || checked.problems.length > 0) {
      if (crlf) process.stderr.write(`crepe: ${file} had Windows line endings; rewritten with \\n\n`);
      writeFileAtomic(abs, csvHeader(columns) + checked.rows.map((r) => csvLine(columns, r)).join(''));
    } else if (repairedBytes > 0) fs.truncateSync(abs, Buffer.byteLength(complete));
    let fd: number;
    try {
      fd = fs.openSync(abs, 'a');
    } catch (e) {
      throw new CrepeError(`cannot write ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
    const results = new ResultsFile(file, columns, fd, new Map(checked.rows.map((r) => [r.key, r])), repairedBytes);
    if (table.columns.length === 0) results.writeLine(csvHeader(columns));
    return results;
  }

  append(row: Row): void {
    this.writeLine(csvLine(this.columns, row));
  }

  private writeLine(line: string): void {
    // One write per line: a kill leaves at most one partial line, which open() repairs.
    fs.writeSync(this.fd, Buffer.from(line, 'utf8'));
    fs.fsyncSync(this.fd);
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
export function runOnWorkers(cells: Cell[], jobs: number, backend: BackendChoice, onResult: (r: CellResult) => void): Promise<void> {
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
      const child = fork(workerFile, [backend], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      alive++;
      let current: Cell | undefined;
      const next = () => {
        current = failure ? undefined : queue.shift();
        if (current) child.send({ type: 'run', cell: current } satisfies ToWorker);
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
  cells: Cell[];
  /** (model, N:M structure) pairs the model's widths rule out, with the reason. */
  skipped: string[];
  out: string;
  columns: string[];
}

/** Most cells one sweep config may expand to. */
export const MAX_SWEEP_CELLS = 100_000;

/** Load, validate and expand a config (no output touched). */
export function planSweep(configFile: string, out?: string): SweepPlan {
  const config = loadSweepConfig(configFile);
  // A grid of millions of cells took minutes and GBs just to plan; no sweep here needs that many.
  const bound = [config.models, config.methods, config.sparsities, config.structures, config.groups].reduce((a, l) => a * l.length, 1);
  if (bound > MAX_SWEEP_CELLS) {
    throw new CrepeError(`${configFile}: the grid has up to ${bound} cells (models x methods x sparsities x structures x groups), above the limit of ${MAX_SWEEP_CELLS}: split the config`);
  }
  const { cells, skipped } = planCells(config);
  const columns = resultColumns(
    config.eval.map((e) => e.dataset),
    config.zeroshot ? parseTaskList(config.zeroshot.tasks).map((s) => s.task.name) : [],
  );
  return { config, cells, skipped, columns, out: out ?? defaultOut(configFile) };
}

/** results/<config name>.csv */
export function defaultOut(configFile: string): string {
  return path.join('results', `${path.basename(configFile, path.extname(configFile))}.csv`);
}

/** Keys already present in `out` (for --dry-run; reads only). */
export function doneKeys(out: string): Set<string> {
  if (!fs.existsSync(out) || !fs.statSync(out).isFile()) return new Set();
  const text = fs.readFileSync(out, 'utf8').replace(/\r\n/g, '\n');
  return new Set(checkRows(parseCsv(text.slice(0, text.lastIndexOf('\n') + 1), out), out).rows.map((r) => r.key));
}

export interface SweepEvents {
  /** Once, before work starts. */
  onStart?: (info: { total: number; skipped: number; toRun: number; repairedBytes: number }) => void;
  /** After each row is written. */
  onRow?: (cell: Cell, row: Row) => void;
}

export interface SweepSummary {
  out: string;
  total: number;
  skipped: number;
  ran: number;
  seconds: number;
}

/**
 * Run every cell of `plan` not yet in its CSV on `jobs` workers. A pruned cell's row needs its
 * model's dense PPL: rows whose dense baseline is still running wait for it (in memory; a kill
 * loses them and the rerun redoes those cells).
 */
export async function runSweep(plan: SweepPlan, jobs: number, backend: BackendChoice, events: SweepEvents = {}): Promise<SweepSummary> {
  const t0 = Date.now();
  if (plan.out === defaultOut(plan.config.file)) makeDirs(path.dirname(plan.out));
  const results = ResultsFile.open(plan.out, plan.columns);
  const dense = new Map<string, EvalOutcome[]>();
  for (const c of plan.cells) {
    const row = results.existing.get(c.key);
    if (!c.prune && row) dense.set(c.model, denseFromRow(row, c.eval));
  }
  const todo = plan.cells.filter((c) => !results.existing.has(c.key));
  events.onStart?.({ total: plan.cells.length, skipped: plan.cells.length - todo.length, toRun: todo.length, repairedBytes: results.repairedBytes });
  const byKey = new Map(todo.map((c) => [c.key, c]));
  const waiting = new Map<string, { cell: Cell; result: CellResult }[]>();
  const ctx = { codeVersion: gitVersion(), config: plan.config.file };
  const write = (cell: Cell, result: CellResult, denseEvals: EvalOutcome[]) => {
    const row = resultRow(cell, result, denseEvals, { ...ctx, timestamp: new Date().toISOString() });
    results.append(row);
    events.onRow?.(cell, row);
  };
  try {
    await runOnWorkers(todo, jobs, backend, (result) => {
      const cell = byKey.get(result.key);
      if (!cell) throw new Error(`a worker returned an unknown cell ${result.key}`);
      if (!cell.prune) {
        dense.set(cell.model, result.evals);
        write(cell, result, result.evals);
        for (const w of waiting.get(cell.model) ?? []) write(w.cell, w.result, result.evals);
        waiting.delete(cell.model);
        return;
      }
      const d = dense.get(cell.model);
      if (d) write(cell, result, d);
      else waiting.set(cell.model, [...(waiting.get(cell.model) ?? []), { cell, result }]);
    });
  } finally {
    results.close();
  }
  return { out: plan.out, total: plan.cells.length, skipped: plan.cells.length - todo.length, ran: todo.length, seconds: (Date.now() - t0) / 1000 };
}
