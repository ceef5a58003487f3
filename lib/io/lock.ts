/**
 * An exclusive lock on a file that a run appends to (a sweep's results CSV): `<file>.lock`,
 * created with O_EXCL and holding the owner's pid, host and start time. A second run refuses
 * with one line naming the holder; a lock whose process is gone (same host, pid not running) is
 * taken over with a note; a lock from another host is never taken over (its pid cannot be
 * checked from here), and the message says how to remove it.
 *
 * Hand-written rather than proper-lockfile: that package decides staleness by the lock's mtime,
 * which its holder must refresh on a timer (a holder paused longer than the stale time loses the
 * lock while it still writes), and it records no owner, so a refusal could not name the pid.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CrepeError } from '../errors';
import { processAlive } from './atomic';

export interface LockOwner {
  pid: number;
  host: string;
  /** ISO time the lock was taken. */
  since: string;
  /** What holds it, for messages ('crepe sweep'). */
  what: string;
}

export interface FileLock {
  file: string;
  lockFile: string;
  release(): void;
}

export const lockFileOf = (file: string): string => `${path.resolve(file)}.lock`;

/** The owner recorded in `lockFile`, or null when there is none or it cannot be read as one. */
export function readLockOwner(lockFile: string): LockOwner | null {
  try {
    const o = JSON.parse(fs.readFileSync(lockFile, 'utf8')) as Partial<LockOwner>;
    return typeof o.pid === 'number' && typeof o.host === 'string' ? { pid: o.pid, host: o.host, since: String(o.since ?? ''), what: String(o.what ?? 'crepe') } : null;
  } catch {
    return null;
  }
}

/** Why `file` cannot be locked now (a live holder, or one on another host), or null. Reads only. */
export function lockRefusal(file: string): string | null {
  const lockFile = lockFileOf(file);
  if (!fs.existsSync(lockFile)) return null;
  const owner = readLockOwner(lockFile);
  if (!owner) {
    let text = '';
    try {
      text = fs.readFileSync(lockFile, 'utf8');
    } catch {
      return null; // gone meanwhile
    }
    // Not a lock at all (a file of the user's under that name): never removed.
    if (text !== '' && !text.startsWith('{"pid":')) return `${lockFile} exists and is not a crepe lock: remove or rename it`;
    // A lock torn by a kill while it was created (taken over), unless it is so young that its
    // owner may still be writing it.
    const age = Date.now() - (fs.statSync(lockFile, { throwIfNoEntry: false })?.mtimeMs ?? 0);
    return age < 5000 ? `${file} is being locked by another run (${lockFile} is being written): try again, or give another --out` : null;
  }
  if (owner.host !== os.hostname()) {
    return `${file} is locked by ${owner.what} (pid ${owner.pid} on host ${owner.host}, since ${owner.since}): wait for it to finish, or give another --out; if that run is gone, remove ${lockFile}`;
  }
  if (owner.pid === process.pid || processAlive(owner.pid)) {
    return `${file} is being written by ${owner.what} (pid ${owner.pid}, since ${owner.since}): wait for it to finish, or give another --out`;
  }
  return null;
}

/** Take the lock on `file` or refuse with one line (see lockRefusal). */
export function lockFile(file: string, what: string): FileLock {
  const lock = lockFileOf(file);
  const owner: LockOwner = { pid: process.pid, host: os.hostname(), since: new Date().toISOString(), what };
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      const fd = fs.openSync(lock, 'wx');
      try {
        fs.writeSync(fd, JSON.stringify(owner) + '\n');
        fs.fsyncSync(fd);
      } finally {
        fs.closeSync(fd);
      }
      return {
        file,
        lockFile: lock,
        release: () => {
          // Only our own lock: never one another run took over after us.
          if (readLockOwner(lock)?.pid === process.pid) fs.rmSync(lock, { force: true });
        },
      };
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST') {
        const why: Record<string, string> = { EACCES: 'permission denied', EPERM: 'permission denied', EROFS: 'read-only file system', ENOSPC: 'no space left on the device' };
        throw new CrepeError(`cannot lock ${file} (${lock}): ${code ? why[code] ?? code : (e as Error).message}`);
      }
    }
    const refusal = lockRefusal(file);
    if (refusal) throw new CrepeError(refusal);
    const stale = readLockOwner(lock);
    process.stderr.write(`crepe: taking over ${lock}${stale ? ` from ${stale.what} pid ${stale.pid}, which is no longer running` : ', which holds no owner'}\n`);
    fs.rmSync(lock, { force: true });
  }
  throw new CrepeError(`cannot lock ${file}: ${lock} keeps reappearing (another run is starting on the same file?)`);
}
