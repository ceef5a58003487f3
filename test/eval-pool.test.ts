/**
 * The evaluation pool under faults, with real child processes: a worker killed mid-run makes
 * `crepe eval --jobs 2` fail within seconds with one line naming the worker and its windows,
 * and killing the parent makes its workers exit.
 */
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import { windowRanges } from '../lib/eval/pool';
import { CLI, ROOT, lines, runCli } from './helpers';

/** Direct children of a process (Linux /proc). */
function childPids(pid: number): number[] {
  try {
    const text = fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim();
    return text ? text.split(/\s+/).map(Number) : [];
  } catch {
    return [];
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** CPU seconds a process has used (utime + stime from /proc/PID/stat). */
function cpuSeconds(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100;
  } catch {
    return 0;
  }
}

/** Every process a test started, killed at the end whatever happened (no orphans from a failing test). */
const started = new Set<number>();
afterAll(() => {
  for (const pid of started) if (alive(pid)) process.kill(pid, 'SIGKILL');
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(cond: () => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await sleep(20);
  }
  return true;
}

/** `crepe eval --jobs 2` on babyllama-char's 778 TinyStories windows (tens of seconds of work per worker). */
function startEval(extra: string[] = []): { child: ChildProcess; stderr: () => string; exited: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, 'eval', '--model', 'babyllama-char', '--dataset', 'tinystories', '--jobs', '2', ...extra], {
    cwd: ROOT,
    env: { ...process.env, CREPE_DEBUG: '' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  started.add(child.pid!);
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return { child, stderr: () => err, exited };
}

/** Wait until the eval has two workers that are past loading and computing windows. */
async function workersComputing(parent: number): Promise<number[]> {
  expect(await until(() => childPids(parent).length === 2, 30_000)).toBe(true);
  const workers = childPids(parent);
  for (const w of workers) started.add(w);
  expect(await until(() => workers.every((w) => cpuSeconds(w) > 1.5), 60_000)).toBe(true);
  return workers;
}

test('windowRanges: contiguous, covering, as even as possible', () => {
  expect(windowRanges(7, 2)).toEqual([[0, 3], [3, 7]]);
  expect(windowRanges(2, 3)).toEqual([[0, 0], [0, 1], [1, 2]]);
  const r = windowRanges(778, 4);
  expect(r[0][0]).toBe(0);
  expect(r[3][1]).toBe(778);
  for (let k = 1; k < 4; k++) expect(r[k][0]).toBe(r[k - 1][1]);
});

test.each([['resident'], ['streaming']])('a worker killed mid-run (%s evaluator): eval --jobs 2 exits non-zero within seconds, one line naming it and its windows', async (evaluator) => {
  const ev = startEval(['--evaluator', evaluator]);
  const workers = await workersComputing(ev.child.pid!);
  const killedAt = Date.now();
  process.kill(workers[1], 'SIGKILL');
  let timer: NodeJS.Timeout | undefined;
  const code = await Promise.race([ev.exited, new Promise<'hang'>((r) => (timer = setTimeout(() => r('hang'), 10_000)))]);
  clearTimeout(timer);
  const seconds = (Date.now() - killedAt) / 1000;
  if (code === 'hang') ev.child.kill('SIGKILL');
  expect(code).not.toBe('hang');
  expect(code).not.toBe(0);
  expect(seconds).toBeLessThan(10);
  const err = lines(ev.stderr().replace(/\r/g, '\n')).filter((l) => l.startsWith('crepe:') || /error|at /i.test(l));
  expect(err).toEqual([
    expect.stringMatching(new RegExp(`^crepe: evaluation worker 2 of 2 \\(pid ${workers[1]}\\) died \\(SIGKILL.*\\) while evaluating windows 389-777 of 778$`)),
  ]);
  // the surviving worker was stopped too, not left computing its batch
  expect(await until(() => !alive(workers[0]), 5_000)).toBe(true);
  process.stdout.write(`eval pool (${evaluator}): worker killed -> parent exited after ${seconds.toFixed(2)} s\n`);
}, 120_000);

test('the parent killed mid-run (kill -9): its eval workers exit within seconds', async () => {
  const ev = startEval();
  const workers = await workersComputing(ev.child.pid!);
  const killedAt = Date.now();
  ev.child.kill('SIGKILL');
  await ev.exited;
  const gone = await until(() => workers.every((w) => !alive(w)), 10_000);
  for (const w of workers) if (alive(w)) process.kill(w, 'SIGKILL');
  expect(gone).toBe(true);
  process.stdout.write(`eval pool: parent killed -> workers gone after ${((Date.now() - killedAt) / 1000).toFixed(2)} s\n`);
}, 120_000);

test('--jobs 3 over 9 windows (uneven ranges) gives the bit-identical PPL of --jobs 1', () => {
  const run = (jobs: string) => {
    const r = runCli(['eval', '--model', 'stories260K', '--dataset', 'tinystories', '--max-windows', '9', '--jobs', jobs, '--json']);
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as { ppl: number; nll: number; windows: number };
  };
  const one = run('1');
  expect(one.windows).toBe(9);
  expect(run('3').nll).toBe(one.nll);
});

test('the streaming evaluator in worker processes: --jobs 2 and 3 give the bit-identical NLL of one process and of the resident evaluator', () => {
  const run = (jobs: string, evaluator: string) => {
    const r = runCli(['eval', '--model', 'stories260K', '--dataset', 'tinystories', '--max-windows', '9', '--jobs', jobs, '--evaluator', evaluator, '--json']);
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as { nll: number; windows: number; jobs: number; evaluator: string; memory_plan: { host_bytes: number } };
  };
  const one = run('1', 'streaming');
  expect(one.windows).toBe(9);
  const two = run('2', 'streaming');
  expect([two.jobs, two.evaluator]).toEqual([2, 'streaming']);
  expect(two.nll).toBe(one.nll);
  expect(run('3', 'streaming').nll).toBe(one.nll);
  expect(run('1', 'resident').nll).toBe(one.nll);
  // the plan counts each worker's runtime and block
  expect(two.memory_plan.host_bytes).toBeGreaterThan(one.memory_plan.host_bytes);
});
