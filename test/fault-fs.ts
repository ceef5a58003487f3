/**
 * A fault-injecting fs for tests that check OS errors without root or a mount: the n-th call of
 * one method (from `failCall` on) throws an OS error with the given code; every other call goes to
 * the real fs. A test file installs it with
 *   jest.mock('fs', () => jest.requireActual('./fault-fs').faultyFs());
 * (jest.requireActual shares the module registry, so the file's `failCall` drives that same fs).
 */
import type * as FsModule from 'fs';

/** The fs methods that can be made to fail. */
export type FaultMethod = 'writeSync' | 'openSync' | 'mkdirSync' | 'renameSync' | 'fsyncSync';

const fault: { method?: FaultMethod; n: number; code: string; calls: number } = { n: 0, code: '', calls: 0 };

/** Make the `n`-th call of fs[method] from now fail with `code`; undone by clearFault. */
export function failCall(method: FaultMethod, n: number, code: string): void {
  Object.assign(fault, { method, n, code, calls: 0 });
}

export function clearFault(): void {
  fault.method = undefined;
}

/** The real fs with the fault-capable methods wrapped (the jest.mock factory's result). */
export function faultyFs(): typeof FsModule {
  const real = jest.requireActual<typeof FsModule>('fs');
  const wrap =
    (name: FaultMethod) =>
    (...a: unknown[]) => {
      if (fault.method === name && ++fault.calls === fault.n) throw Object.assign(new Error(`${fault.code}: injected`), { code: fault.code });
      return (real[name] as (...args: unknown[]) => unknown)(...a);
    };
  return { ...real, writeSync: wrap('writeSync'), openSync: wrap('openSync'), mkdirSync: wrap('mkdirSync'), renameSync: wrap('renameSync'), fsyncSync: wrap('fsyncSync') } as typeof FsModule;
}
