/**
 * CPU seconds of a search loop, including the work of any child process it starts (evaluation
 * pool workers, forked helpers): a loop whose evaluations run in workers must not look cheap
 * because this process only waits. process.cpuUsage() covers this process's threads only.
 *
 * On Linux the children come from /proc: the finished, reaped ones from this process's
 * cutime + cstime, the live ones from each direct child's own utime + stime, so that a child
 * alive at both readings counts the difference, one started in between counts all of its time,
 * and one that ended in between moves from "live" to "reaped" without being counted twice.
 * Elsewhere only this process is counted (`includesChildren` says which).
 */
import * as fs from 'fs';

/** Linux reports /proc times in USER_HZ, which the kernel fixes at 100 for user space. */
const USER_HZ = 100;

/** utime + stime (+ cutime + cstime when `reaped`) of a /proc/<pid>/stat line, in seconds. */
export function statCpuSeconds(stat: string, reaped: boolean): number {
  // the command name (field 2) may hold spaces and parentheses: fields count from the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // fields[0] is field 3 (state); utime .. cstime are fields 14 .. 17
  const at = (field: number): number => Number(fields[field - 3]);
  const ticks = at(14) + at(15) + (reaped ? at(16) + at(17) : 0);
  return ticks / USER_HZ;
}

/** The parent pid of a /proc/<pid>/stat line. */
function statParent(stat: string): number {
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
}

function readStat(pid: number | 'self'): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null; // gone between the listing and the read, or no /proc
  }
}

/** CPU seconds of every live direct child of this process. */
function liveChildrenSeconds(): number {
  let total = 0;
  let entries: string[];
  try {
    entries = fs.readdirSync('/proc');
  } catch {
    return 0;
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    const stat = readStat(Number(e));
    if (stat && statParent(stat) === process.pid) total += statCpuSeconds(stat, false);
  }
  return total;
}

export const includesChildren = readStat('self') !== null;

/** Children's CPU seconds so far: reaped children plus live ones (0 without /proc). */
export function childrenCpuSeconds(): number {
  if (!includesChildren) return 0;
  const self = readStat('self');
  if (!self) return 0;
  const fields = self.slice(self.lastIndexOf(')') + 2).split(' ');
  const reaped = (Number(fields[16 - 3]) + Number(fields[17 - 3])) / USER_HZ;
  return reaped + liveChildrenSeconds();
}

/** A running CPU clock: `seconds()` is this process's plus its children's CPU time since start. */
export class CpuClock {
  private readonly self0 = process.cpuUsage();
  private readonly children0 = childrenCpuSeconds();

  /** This process alone (user + system) since the clock started. */
  selfSeconds(): number {
    const d = process.cpuUsage(this.self0);
    return (d.user + d.system) / 1e6;
  }

  /** Child processes alone since the clock started (0 where /proc is missing). */
  childSeconds(): number {
    return Math.max(0, childrenCpuSeconds() - this.children0);
  }

  seconds(): number {
    return this.selfSeconds() + this.childSeconds();
  }
}
