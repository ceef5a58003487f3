/**
 * The search loops' CPU clock counts child processes: a child's burnt CPU time (read by the
 * parent from /proc, checked against the child's own process.cpuUsage()) is counted while the
 * child lives and after it has exited, and not twice.
 */
import { spawn, spawnSync } from 'child_process';
import { CpuClock, includesChildren, statCpuSeconds } from '../lib/search/cpu';

/** A node child that burns `ms` of CPU, prints its own CPU seconds, then waits for stdin to close. */
const BURN = (ms: number): string =>
  // burn CPU time, not wall time: under load a wall-clock loop gets less CPU
  `const c=()=>{const u=process.cpuUsage();return (u.user+u.system)/1e3};const t=c();let x=0;while(c()-t<${ms})x+=Math.sqrt(x+1);const u=process.cpuUsage();` +
  `process.stdout.write(String((u.user+u.system)/1e6)+'\\n');process.stdin.resume();process.stdin.on('end',()=>process.exit(0));`;

test('statCpuSeconds reads utime + stime (+ cutime + cstime) after a command name with spaces and parentheses', () => {
  const line = '1234 (a b) c)) S 1 2 3 4 5 6 7 8 9 10 250 50 300 100 20 0 1 0';
  expect(statCpuSeconds(line, false)).toBeCloseTo(3.0, 10);
  expect(statCpuSeconds(line, true)).toBeCloseTo(7.0, 10);
});

(includesChildren ? test : test.skip)('a live child and an exited child are counted once, as their own clocks say', async () => {
  const clock = new CpuClock();
  const child = spawn(process.execPath, ['-e', BURN(600)], { stdio: ['pipe', 'pipe', 'inherit'] });
  const own = await new Promise<number>((resolve) => child.stdout.once('data', (d: Buffer) => resolve(Number(d.toString()))));
  expect(own).toBeGreaterThan(0.3);
  // alive: counted from /proc/<pid>/stat (10 ms ticks, plus start-up work before the child's clock)
  const live = clock.childSeconds();
  expect(live).toBeGreaterThanOrEqual(own - 0.05);
  expect(live).toBeLessThan(own + 0.5);
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  child.stdin.end();
  await exited;
  // exited and reaped: counted from this process's cutime + cstime, not twice
  const after = clock.childSeconds();
  expect(after).toBeGreaterThanOrEqual(own - 0.05);
  expect(after).toBeLessThan(own + 0.5);
  expect(clock.seconds()).toBeGreaterThanOrEqual(clock.selfSeconds() + own - 0.05);
}, 60_000);

(includesChildren ? test : test.skip)('a child that ran before the clock started does not count', () => {
  spawnSync(process.execPath, ['-e', BURN(300).replace(/process\.stdin.*$/, '')]);
  const clock = new CpuClock();
  expect(clock.childSeconds()).toBeLessThan(0.05);
}, 60_000);
