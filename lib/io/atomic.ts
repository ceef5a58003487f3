/**
 * Atomic outputs that never destroy what they did not write.
 *
 * - Files and folders are built under a recognisable temporary name beside the target
 *   (`.<name>.crepe-<pid>-<n>.tmp`) and renamed into place, so the final name holds either the
 *   old or the complete new output.
 * - A folder is replaced by renaming the old one away (`.<name>.crepe-<pid>-<n>.old`), renaming
 *   the new one in, and only then deleting the old one: a kill at any moment leaves the old or
 *   the new tree under the final name, never a half-deleted one.
 * - What is at the target is replaced only when it is empty, or a previous crepe output of the
 *   same kind (for a folder its visible record says so, see ownership.ts; for a file a marker
 *   beside it), or `force` is set.
 * - Temporaries left by a killed run (their process is gone) are removed by the next write of
 *   the same target, with a note on stderr.
 */
import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { LEGACY_DIR_MARKER, folderOwnership, recordOwnership } from './ownership';

/**
 * The kinds of outputs crepe writes. A marker records the kind of a model or dump so a rerun may
 * replace it; a 'text' output (a CSV, a Markdown report, a log) is recognised by its opening
 * instead (see `opening`); a 'file' is replaced whatever it holds (files inside a staged folder).
 */
export type OutputKind = 'hf-model' | 'llama2c-model' | 'prune-dump' | 'text' | 'file';

/** How many bytes of an existing 'text' output are read to recognise it. */
const OPENING_BYTES = 4096;

/** The hidden marker earlier versions left inside an output folder (still recognised; folders now carry a visible record, see ownership.ts). */
export const DIR_MARKER = LEGACY_DIR_MARKER;
/** Marker beside a crepe output file: `.<name>.crepe-output` (records its size and mtime). */
export const fileMarker = (abs: string): string => path.join(path.dirname(abs), `.${path.basename(abs)}${DIR_MARKER}`);

let tmpCounter = 0;
const TMP_TAG = 'tmp';
const OLD_TAG = 'old';

/** `.<name>.crepe-<pid>-<n>.tmp` (being built) or `.old` (being replaced): recognisable, with the owner's pid. */
function sideName(abs: string, tag: string): string {
  return path.join(path.dirname(abs), `.${path.basename(abs)}.crepe-${process.pid}-${Date.now().toString(36)}${tmpCounter++}.${tag}`);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** Whether process `pid` still runs (EPERM: it runs as another user); owners of temporaries and spill folders. */
export function processAlive(pid: number): boolean {
  if (pid === process.pid) return true;
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Remove temporaries of `abs` left by killed runs: crepe's current names and the names earlier
 * versions used (`<name>.<pid>[.<time>].tmp`, `.<name>.<pid>.<time>.tmp`). A temporary whose
 * process still runs is left alone. Returns the removed paths (each also noted on stderr).
 */
export function cleanStaleTemporaries(abs: string): string[] {
  const dir = path.dirname(abs);
  const base = escapeRegExp(path.basename(abs));
  const patterns = [
    new RegExp(`^\\.${base}\\.crepe-(\\d+)-[0-9a-z]+\\.(?:${TMP_TAG}|${OLD_TAG})$`),
    new RegExp(`^${base}\\.(\\d+)(?:\\.\\d+)?\\.tmp$`),
    new RegExp(`^\\.${base}\\.(\\d+)\\.\\d+\\.tmp$`),
  ];
  let entries: string[];
  try {
    entries = fs.readdirSync(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of entries) {
    const pid = patterns.map((p) => p.exec(name)).find((m) => m)?.[1];
    if (pid === undefined || processAlive(Number(pid))) continue;
    const p = path.join(dir, name);
    try {
      fs.rmSync(p, { recursive: true, force: true });
      removed.push(p);
      process.stderr.write(`crepe: removed ${p}, a temporary left by an interrupted run (process ${pid})\n`);
    } catch {
      // not ours to remove (permissions): leave it
    }
  }
  return removed;
}

/** The path with symbolic links of its existing part resolved, so aliases compare equal and a link is written through. */
export function canonicalPath(p: string): string {
  const abs = path.resolve(p);
  let head = abs;
  const tail: string[] = [];
  for (;;) {
    try {
      return path.join(fs.realpathSync(head), ...tail);
    } catch {
      const parent = path.dirname(head);
      if (parent === head) return abs;
      tail.unshift(path.basename(head));
      head = parent;
    }
  }
}

/** stat/lstat that answers undefined for a path that does not exist or cannot (a file in the way). */
export function statPath(p: string, opts: { follow?: boolean } = {}): fs.Stats | undefined {
  try {
    return opts.follow === false ? fs.lstatSync(p) : fs.statSync(p);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw e;
  }
}

/** One version of a marked output file: its size and modification time. */
interface FileVersion {
  size: number;
  mtimeMs: number;
}

function readMarkerKind(file: string): { kind?: string; versions?: FileVersion[] } | null {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    return null;
  }
}

/** The first bytes of a file as text ('' when it cannot be read). */
function openingOf(abs: string): string {
  let fd: number | undefined;
  try {
    fd = fs.openSync(abs, 'r');
    const buf = Buffer.alloc(OPENING_BYTES);
    return buf.subarray(0, fs.readSync(fd, buf, 0, OPENING_BYTES, 0)).toString('utf8');
  } catch {
    return '';
  } finally {
    if (fd !== undefined) fs.closeSync(fd);
  }
}

/**
 * Why what is at `abs` may not be replaced by an output of `kind` (null when it may): it is of
 * the wrong type (file vs folder), or holds something crepe did not write and `force` is off. A
 * 'text' output counts as crepe's own when its first bytes match `opening` (e.g. the header line
 * crepe writes for that output); without `opening` an existing 'text' file is never crepe's.
 */
export function replaceRefusal(abs: string, kind: OutputKind, isDir: boolean, force: boolean, opening?: RegExp): string | null {
  const st = statPath(abs, { follow: false });
  if (!st) return null;
  // Paths reach here with their links resolved: a link left is one whose target is missing (or a loop).
  if (st.isSymbolicLink()) return `${abs} is a symbolic link to a path that does not exist; remove it or give the real path`;
  if (isDir) {
    if (!st.isDirectory()) return `${abs} exists and is not a folder`;
    if (force) return null;
    const entries = fs.readdirSync(abs);
    if (entries.length === 0) return null;
    const owner = folderOwnership(abs, kind);
    if (owner === 'owned') return null;
    if (owner === 'changed') return `${abs} was written by crepe but has changed since (files added, removed or rewritten); refusing to replace it (pass --force to replace it anyway)`;
    return `${abs} is a folder crepe did not write (${entries.length} entries); refusing to replace it (pass --force to replace it anyway)`;
  }
  if (st.isDirectory()) return `${abs} is a folder, a file is expected here`;
  if (!st.isFile()) return `${abs} is not a regular file`;
  if (force || kind === 'file') return null;
  if (kind === 'text') {
    if (st.size === 0 || (opening && opening.test(openingOf(abs)))) return null;
    return `${abs} exists and is not a previous crepe output of this kind; refusing to replace it (pass --force to replace it anyway)`;
  }
  const m = readMarkerKind(fileMarker(abs));
  if (m?.kind === kind && Array.isArray(m.versions) && m.versions.some((v) => v.size === st.size && v.mtimeMs === st.mtimeMs)) return null;
  return `${abs} exists and is not a previous crepe output; refusing to replace it (pass --force to replace it anyway)`;
}

function checkParent(abs: string): void {
  const parent = path.dirname(abs);
  const st = statPath(parent);
  if (!st) throw new CrepeError(`cannot write ${abs}: folder ${parent} does not exist`);
  if (!st.isDirectory()) throw new CrepeError(`cannot write ${abs}: ${parent} is not a folder`);
  try {
    fs.accessSync(parent, fs.constants.W_OK);
  } catch (e) {
    throw new CrepeError(`cannot write ${abs}: ${osCause(e)} on folder ${parent}`);
  }
}

/** What an OS error code means, in words (the code itself for one not listed). */
const OS_CAUSES: Record<string, string> = {
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOSPC: 'no space left on the device',
  EISDIR: 'a folder is in the way',
  ENOTDIR: 'a file is in the way',
  EROFS: 'read-only file system',
  EDQUOT: 'disk quota exceeded',
  EFBIG: 'file too large for the file system',
  EIO: 'input/output error on the device',
  EPIPE: 'the reader closed the pipe',
  EMFILE: 'too many open files',
  ENOENT: 'the system cannot create it there (ENOENT)',
};

/** The cause of an OS error in words; the message of anything else. */
export function osCause(e: unknown): string {
  const code = (e as NodeJS.ErrnoException)?.code;
  return code ? OS_CAUSES[code] ?? code : String((e as Error)?.message ?? e);
}

/** An OS error while writing `abs`, as a one-line refusal naming the path (other errors unchanged). */
export function osError(abs: string, e: unknown): unknown {
  const code = (e as NodeJS.ErrnoException)?.code;
  if (e instanceof CrepeError || !code) return e;
  return new CrepeError(`cannot write ${abs}: ${osCause(e)}`);
}

/**
 * The start every atomic output shares (file or folder): the parent folder exists and is
 * writable, what is at the target may be replaced (replaceRefusal), temporaries of killed runs
 * are gone. Returns the absolute target and a fresh temporary name beside it.
 */
function prepareTarget(target: string, kind: OutputKind, isDir: boolean, force: boolean, opening?: RegExp): { abs: string; tmp: string } {
  // A symbolic link is written through: its target is replaced, the link stays (as checkOutputs checked it).
  const abs = canonicalPath(target);
  checkParent(abs);
  const refusal = replaceRefusal(abs, kind, isDir, force, opening);
  if (refusal) throw new CrepeError(refusal);
  cleanStaleTemporaries(abs);
  return { abs, tmp: sideName(abs, TMP_TAG) };
}

export interface AtomicOptions {
  /** What is written; a marker records it so a rerun may replace the output (default 'file'). */
  kind?: OutputKind;
  /** Replace whatever is at the target. */
  force?: boolean;
  /** A 'text' output: what the opening of a previous output of the same kind matches. */
  opening?: RegExp;
}

/**
 * Write a file so that readers see either the old content or the complete new content, never a
 * half-written file: write beside it under a temporary name, fsync, then rename.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, opts: AtomicOptions = {}): void {
  writeFileStreamAtomic(file, (fd) => fs.writeSync(fd, typeof data === 'string' ? Buffer.from(data, 'utf8') : data), opts);
}

/** writeFileAtomic for content written in pieces: `write` gets the temporary file's descriptor. */
export function writeFileStreamAtomic(file: string, write: (fd: number) => void, opts: AtomicOptions = {}): void {
  const kind = opts.kind ?? 'file';
  const { abs, tmp } = prepareTarget(file, kind, false, !!opts.force, opts.opening);
  const marked = kind !== 'file' && kind !== 'text';
  if (marked) cleanStaleTemporaries(fileMarker(abs));
  try {
    const fd = fs.openSync(tmp, 'wx');
    try {
      write(fd);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    if (!marked) {
      fs.renameSync(tmp, abs);
      return;
    }
    // The marker lists the old and the new version while the rename happens, so a kill at any
    // moment leaves a file the next run recognises as its own (rename keeps the mtime).
    const st = fs.statSync(tmp);
    const fresh: FileVersion = { size: st.size, mtimeMs: st.mtimeMs };
    const old = fs.statSync(abs, { throwIfNoEntry: false });
    writeMarker(abs, kind, old ? [fresh, { size: old.size, mtimeMs: old.mtimeMs }] : [fresh]);
    fs.renameSync(tmp, abs);
    writeMarker(abs, kind, [fresh]);
  } catch (e) {
    fs.rmSync(tmp, { force: true });
    throw osError(abs, e);
  }
}

/** The marker beside a file output, itself replaced atomically. */
function writeMarker(abs: string, kind: OutputKind, versions: FileVersion[]): void {
  const marker = fileMarker(abs);
  const tmp = sideName(marker, TMP_TAG);
  fs.writeFileSync(tmp, JSON.stringify({ kind, versions }) + '\n');
  fs.renameSync(tmp, marker);
}

/** A folder being built under a temporary name: `commit` renames it into place, `abort` removes it. */
export interface StagedDir {
  tmp: string;
  commit(): void;
  abort(): void;
}

/**
 * Start building the folder `dir` under a temporary name beside it. Fails before creating
 * anything when the folder may not be replaced (see replaceRefusal) or its parent is missing.
 */
export function stageDir(dir: string, kind: OutputKind, opts: { force?: boolean } = {}): StagedDir {
  const { abs, tmp } = prepareTarget(dir, kind, true, !!opts.force);
  try {
    // Not recursive: the parent exists (checked), and a recursive mkdir loops forever where
    // mkdir returns ENOENT for other reasons (e.g. under /proc).
    fs.mkdirSync(tmp);
  } catch (e) {
    throw osError(abs, e);
  }
  return {
    tmp,
    abort: () => fs.rmSync(tmp, { recursive: true, force: true }),
    commit: () => {
      try {
        recordOwnership(tmp, kind);
        // Checked again: something may have appeared at the target while we worked.
        const late = replaceRefusal(abs, kind, true, !!opts.force);
        if (late) throw new CrepeError(late);
        if (fs.existsSync(abs)) {
          const old = sideName(abs, OLD_TAG);
          fs.renameSync(abs, old);
          fs.renameSync(tmp, abs);
          fs.rmSync(old, { recursive: true, force: true });
        } else {
          fs.renameSync(tmp, abs);
        }
      } catch (e) {
        fs.rmSync(tmp, { recursive: true, force: true });
        throw osError(abs, e);
      }
    },
  };
}

/**
 * Build a directory under a temporary name and rename it into place when `fill` succeeds, so a
 * failed save leaves nothing behind. An existing folder at `dir` is replaced only when it is
 * empty, a previous crepe output of the same kind, or `force` is set.
 */
export function writeDirAtomic(dir: string, fill: (tmpDir: string) => void, kind: OutputKind, opts: { force?: boolean } = {}): void {
  const staged = stageDir(dir, kind, opts);
  try {
    fill(staged.tmp);
  } catch (e) {
    staged.abort();
    throw osError(canonicalPath(dir), e);
  }
  staged.commit();
}

/**
 * `mkdir -p` that cannot hang: Node's recursive mkdirSync loops forever where mkdir returns
 * ENOENT for a reason other than a missing parent (e.g. under /proc). Each missing folder is
 * created on its own, from the deepest existing ancestor down; failures are one-line refusals.
 */
export function makeDirs(dir: string): void {
  const abs = path.resolve(dir);
  const missing: string[] = [];
  let head = abs;
  for (;;) {
    const st = statPath(head);
    if (st) {
      if (!st.isDirectory()) throw new CrepeError(`cannot create folder ${abs}: ${head} is not a folder`);
      break;
    }
    missing.unshift(head);
    const parent = path.dirname(head);
    if (parent === head) break;
    head = parent;
  }
  for (const d of missing) {
    try {
      fs.mkdirSync(d);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && fs.statSync(d).isDirectory()) continue;
      throw new CrepeError(`cannot create folder ${abs}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
    }
  }
}
