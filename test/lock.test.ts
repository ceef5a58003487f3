/**
 * The results lock (lib/io/lock.ts), in-process: a held lock refuses a second taker naming the
 * holder's pid, a dead holder's lock is taken over, a user's file under the lock's name and a
 * lock from another host are never removed, release removes only the caller's own lock.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { lockFile, lockFileOf, lockRefusal } from '../lib/io/lock';
import { makeTmp, rmTmp } from './helpers';

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-lock-');
});
afterAll(() => rmTmp(tmp));

const deadPid = (): number => Number(spawnSync(process.execPath, ['-e', 'process.stdout.write(String(process.pid))'], { encoding: 'utf8' }).stdout);

test('held: a second taker refuses in one line naming the pid; release frees it', () => {
  const file = path.join(tmp, 'a.csv');
  const held = lockFile(file, 'crepe sweep');
  expect(JSON.parse(fs.readFileSync(lockFileOf(file), 'utf8'))).toMatchObject({ pid: process.pid, host: os.hostname(), what: 'crepe sweep' });
  expect(() => lockFile(file, 'crepe sweep')).toThrow(new RegExp(`^${file.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')} is being written by crepe sweep \\(pid ${process.pid}, since .*\\): wait for it to finish, or give another --out$`));
  held.release();
  expect(fs.existsSync(lockFileOf(file))).toBe(false);
  expect(lockRefusal(file)).toBeNull();
  lockFile(file, 'crepe sweep').release();
});

test('a dead holder is taken over; release after a takeover by someone else leaves their lock', () => {
  const file = path.join(tmp, 'b.csv');
  const pid = deadPid();
  fs.writeFileSync(lockFileOf(file), JSON.stringify({ pid, host: os.hostname(), since: 'then', what: 'crepe sweep' }));
  const note = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    const held = lockFile(file, 'crepe sweep');
    expect(note).toHaveBeenCalledWith(`crepe: taking over ${lockFileOf(file)} from crepe sweep pid ${pid}, which is no longer running\n`);
    // someone else's lock now stands at the name: release does not remove it
    fs.writeFileSync(lockFileOf(file), JSON.stringify({ pid: pid + 1, host: os.hostname(), since: 'now', what: 'crepe sweep' }));
    held.release();
    expect(fs.existsSync(lockFileOf(file))).toBe(true);
  } finally {
    note.mockRestore();
  }
});

test('never removed: a lock from another host, a user file under the lock name, a lock being written', () => {
  const file = path.join(tmp, 'c.csv');
  fs.writeFileSync(lockFileOf(file), JSON.stringify({ pid: 1, host: 'elsewhere', since: 'then', what: 'crepe sweep' }));
  expect(() => lockFile(file, 'crepe sweep')).toThrow(/locked by crepe sweep \(pid 1 on host elsewhere, since then\): .* if that run is gone, remove .*c\.csv\.lock$/);
  fs.writeFileSync(lockFileOf(file), 'my notes');
  expect(() => lockFile(file, 'crepe sweep')).toThrow(/c\.csv\.lock exists and is not a crepe lock: remove or rename it$/);
  expect(fs.readFileSync(lockFileOf(file), 'utf8')).toBe('my notes');
  // empty and fresh: its owner may be writing it right now
  fs.writeFileSync(lockFileOf(file), '');
  expect(() => lockFile(file, 'crepe sweep')).toThrow(/is being locked by another run/);
  // empty and old: torn by a kill while it was created, taken over
  const old = new Date(Date.now() - 60_000);
  fs.utimesSync(lockFileOf(file), old, old);
  const quiet = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
  try {
    lockFile(file, 'crepe sweep').release();
  } finally {
    quiet.mockRestore();
  }
  expect(fs.existsSync(lockFileOf(file))).toBe(false);
});
