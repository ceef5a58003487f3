/**
 * Outputs never destroy what crepe did not write (issue: data loss, atomic replacement, stale
 * temporaries, mkdir hangs). CLI cases run the built CLI as a child process.
 */
import * as fs from 'fs';
import * as path from 'path';
import { cleanStaleTemporaries, makeDirs, writeDirAtomic, writeFileAtomic } from '../lib/io/atomic';
import { ownershipFile } from '../lib/io/ownership';
import { checkOutputs } from '../lib/io/outputs';
import { CrepeError } from '../lib/errors';
import { MODELS, makeTmp, rmTmp, runCli } from './helpers';

/** fs with rmSync that can simulate a crash halfway through deleting a folder (see the atomic test). */
const crash = { duringRemove: false };
jest.mock('fs', () => {
  const real = jest.requireActual('fs');
  return {
    ...real,
    rmSync: (p: string, opts?: object) => {
      if (crash.duringRemove && real.statSync(p, { throwIfNoEntry: false })?.isDirectory()) {
        const entries: string[] = real.readdirSync(p);
        for (const e of entries.slice(0, entries.length >> 1)) real.rmSync(`${p}/${e}`, { recursive: true, force: true });
        throw new Error('simulated crash halfway through a recursive delete');
      }
      return real.rmSync(p, opts);
    },
  };
});

let tmp: string;
beforeEach(() => {
  tmp = makeTmp('crepe-outputs-');
});
afterEach(() => rmTmp(tmp));

/** Every file under `dir` with its content, for before/after comparisons. */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) walk(p);
      else out[path.relative(dir, p)] = fs.readFileSync(p).toString('base64');
    }
  };
  walk(dir);
  return out;
}

function expectRefusal(r: { code: number | null; stderr: string }, message: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/^crepe: /);
  expect(r.stderr).toMatch(message);
}

function userFolder(): string {
  const dir = path.join(tmp, 'mine');
  fs.mkdirSync(path.join(dir, 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'notes.txt'), 'precious');
  fs.writeFileSync(path.join(dir, 'sub', 'data.csv'), 'a,b\n1,2\n');
  return dir;
}

const prune = ['prune', '--model', 'stories260K', '--method', 'magnitude', '--sparsity', '0.5'];

describe('outputs never delete what crepe did not write', () => {
  test('convert --out . refuses to replace the working directory', () => {
    const dir = userFolder();
    const before = snapshot(dir);
    expectRefusal(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', '.'], { cwd: dir }), /working directory/);
    expectRefusal(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', '..'], { cwd: path.join(dir, 'sub') }), /working directory/);
    expect(snapshot(dir)).toEqual(before);
  });

  test('--dump onto the input checkpoint, and --out a parent of the input, are refused', () => {
    const model = path.join(tmp, 'models', 'm.bin');
    fs.mkdirSync(path.dirname(model));
    fs.copyFileSync(MODELS.stories260K.bin(), model);
    fs.copyFileSync(MODELS.stories260K.tokenizer(), path.join(tmp, 'models', 'tok512.bin'));
    const before = snapshot(tmp);
    expectRefusal(runCli(['prune', '--model', model, '--method', 'magnitude', '--dump', model]), /is the input/);
    expectRefusal(runCli(['prune', '--model', model, '--method', 'magnitude', '--save', model]), /is the input/);
    expectRefusal(runCli(['convert', '--model', model, '--to', 'hf', '--out', path.join(tmp, 'models')]), /contains the input/);
    expectRefusal(runCli(['convert', '--model', model, '--to', 'hf', '--out', path.join(tmp, 'models', 'tok512.bin')]), /is the input/);
    // a symbolic link is the same file
    fs.symlinkSync(path.join(tmp, 'models'), path.join(tmp, 'alias'));
    expectRefusal(runCli(['convert', '--model', model, '--to', 'hf', '--out', path.join(tmp, 'alias')]), /contains the input/);
    fs.unlinkSync(path.join(tmp, 'alias'));
    expect(snapshot(tmp)).toEqual(before);
  });

  test('--dump X --save X overlap and are refused before pruning', () => {
    const x = path.join(tmp, 'x');
    expectRefusal(runCli([...prune, '--dump', x, '--save', x]), /overlap/);
    expectRefusal(runCli([...prune, '--dump', x, '--save', path.join(x, 'inside')]), /overlap/);
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('a folder crepe did not write is kept unless --force; a previous crepe output is replaced', () => {
    const dir = userFolder();
    const before = snapshot(dir);
    expectRefusal(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', dir]), /crepe did not write .*--force/);
    expectRefusal(runCli([...prune, '--dump', dir]), /crepe did not write/);
    expect(snapshot(dir)).toEqual(before);
    // a previous crepe output of the same kind is replaced without --force ...
    const hf = path.join(tmp, 'hf');
    expect(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', hf]).code).toBe(0);
    expect(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', hf, '--dtype', 'BF16']).code).toBe(0);
    expect(JSON.parse(fs.readFileSync(path.join(hf, 'config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    // ... but not one of another kind
    expectRefusal(runCli([...prune, '--dump', hf]), /crepe did not write/);
    // --force replaces the user's folder
    expect(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', dir, '--force']).code).toBe(0);
    expect(fs.existsSync(path.join(dir, 'notes.txt'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'model.safetensors'))).toBe(true);
  });

  test('a regular file where a folder is expected, and a folder where a file is expected, are refused', () => {
    const file = path.join(tmp, 'out');
    fs.writeFileSync(file, 'mine');
    expectRefusal(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', file, '--force']), /not a folder/);
    expectRefusal(runCli([...prune, '--dump', file]), /not a folder/);
    const dir = path.join(tmp, 'd.bin');
    fs.mkdirSync(dir);
    expectRefusal(runCli(['convert', '--model', 'stories260K', '--to', 'llama2c', '--out', dir]), /is a folder, a file is expected/);
    expectRefusal(runCli([...prune, '--save', dir]), /is a folder, a file is expected/);
    expect(fs.readFileSync(file, 'utf8')).toBe('mine');
    expect(fs.readdirSync(tmp).sort()).toEqual(['d.bin', 'out']);
  });

  test('a llama2.c file crepe did not write is kept unless --force; its own output is replaced', () => {
    const bin = path.join(tmp, 'model.bin');
    fs.writeFileSync(bin, 'not a model of crepe');
    expectRefusal(runCli(['convert', '--model', 'stories260K', '--to', 'llama2c', '--out', bin]), /not a previous crepe output/);
    expect(fs.readFileSync(bin, 'utf8')).toBe('not a model of crepe');
    expect(runCli(['convert', '--model', 'stories260K', '--to', 'llama2c', '--out', bin, '--force']).code).toBe(0);
    expect(fs.readFileSync(bin).subarray(0, 28).equals(fs.readFileSync(MODELS.stories260K.bin()).subarray(0, 28))).toBe(true);
    expect(runCli(['convert', '--model', 'stories260K', '--to', 'llama2c', '--out', bin]).code).toBe(0);
    // edited by someone else since: no longer crepe's
    fs.appendFileSync(bin, 'x');
    expectRefusal(runCli(['convert', '--model', 'stories260K', '--to', 'llama2c', '--out', bin]), /not a previous crepe output/);
  });

  test('library callers are refused too (writeDirAtomic, checkOutputs)', () => {
    const dir = userFolder();
    expect(() => writeDirAtomic(dir, () => undefined, 'hf-model')).toThrow(/crepe did not write/);
    expect(() => checkOutputs([{ flag: '--out', path: path.join(dir, 'sub'), kind: 'hf-model', isDir: true }], [path.join(dir, 'sub', 'data.csv')])).toThrow(CrepeError);
    expect(fs.readFileSync(path.join(dir, 'notes.txt'), 'utf8')).toBe('precious');
  });
});

describe('atomic folder replacement', () => {
  test('a crash halfway through deleting the old folder leaves the final name complete', () => {
    const out = path.join(tmp, 'hf');
    const fill = (v: string) => (t: string) => {
      for (let i = 0; i < 10; i++) fs.writeFileSync(path.join(t, `f${i}`), v);
    };
    writeDirAtomic(out, fill('old'), 'hf-model');
    crash.duringRemove = true;
    try {
      expect(() => writeDirAtomic(out, fill('new'), 'hf-model')).toThrow(/simulated crash/);
    } finally {
      crash.duringRemove = false;
    }
    const names = fs.readdirSync(out).filter((f) => f !== ownershipFile('hf-model'));
    expect(names).toHaveLength(10);
    expect(new Set(names.map((f) => fs.readFileSync(path.join(out, f), 'utf8')))).toEqual(new Set(['new']));
    // the half-deleted old tree is left under a recognisable name (removed by a later run once this process is gone)
    expect(fs.readdirSync(tmp).filter((f) => f !== 'hf')).toEqual([expect.stringMatching(new RegExp(`^\\.hf\\.crepe-${process.pid}-[0-9a-z]+\\.old$`))]);
  });

});

describe('stale temporaries', () => {
  /** A pid that is not running (the highest pid numbers are rarely in use; checked). */
  function deadPid(): number {
    for (let pid = 4_000_000; pid > 3_000_000; pid -= 7919) {
      try {
        process.kill(pid, 0);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ESRCH') return pid;
      }
    }
    throw new Error('no free pid found');
  }

  test('temporaries of killed runs are removed on the next run of the same target, and it says so', () => {
    const pid = deadPid();
    const out = path.join(tmp, 'pruned.bin');
    const stale = [`.pruned.bin.crepe-${pid}-abc1.tmp`, `.pruned.bin.crepe-${pid}-abc2.old`, `pruned.bin.${pid}.tmp`, `.pruned.bin.${pid}.17000.tmp`];
    for (const s of stale) fs.writeFileSync(path.join(tmp, s), 'x'.repeat(1000));
    fs.mkdirSync(path.join(tmp, `.other.bin.crepe-${pid}-abc3.tmp`)); // another target's: kept
    fs.writeFileSync(path.join(tmp, `.pruned.bin.crepe-${process.pid}-abc4.tmp`), 'live'); // a running process's: kept
    const r = runCli([...prune, '--nsamples', '2', '--save', out]);
    expect(r.code).toBe(0);
    for (const s of stale) expect(r.stderr).toContain(`removed ${path.join(tmp, s)}`);
    expect(fs.readdirSync(tmp).sort()).toEqual(
      // pruned.bin.recipe.json: the run record written beside a llama2.c save
      ['.other.bin.crepe-' + pid + '-abc3.tmp', `.pruned.bin.crepe-${process.pid}-abc4.tmp`, '.pruned.bin.crepe-output', 'pruned.bin', 'pruned.bin.recipe.json'].sort(),
    );
  });

  test('cleanStaleTemporaries handles folders and names with regex characters', () => {
    const pid = deadPid();
    const target = path.join(tmp, 'a+b (1).hf');
    fs.mkdirSync(path.join(tmp, `.a+b (1).hf.crepe-${pid}-z9.tmp`, 'deep'), { recursive: true });
    fs.writeFileSync(path.join(tmp, `.aab (1).hf.crepe-${pid}-z9.tmp`), 'not a match');
    const stderr = jest.spyOn(process.stderr, 'write').mockImplementation(() => true);
    try {
      expect(cleanStaleTemporaries(target)).toEqual([path.join(tmp, `.a+b (1).hf.crepe-${pid}-z9.tmp`)]);
    } finally {
      stderr.mockRestore();
    }
    expect(fs.readdirSync(tmp)).toEqual([`.aab (1).hf.crepe-${pid}-z9.tmp`]);
  });
});

describe('paths where mkdir returns ENOENT do not hang', () => {
  test.each([
    ['convert --out', ['convert', '--model', 'stories260K', '--to', 'hf', '--out', '/proc/crepe-x']],
    ['prune --dump', [...prune, '--nsamples', '2', '--dump', '/proc/crepe-x']],
    ['report --out', ['report', path.join(__dirname, '..', 'results', 'main.csv'), '--out', '/proc/crepe-x/y']],
  ])('%s /proc/...', (_name, args) => {
    const r = runCli(args as string[], { timeoutMs: 30_000 });
    expectRefusal(r, /crepe-x/);
  });

  test('makeDirs creates nested folders and refuses a file in the way', () => {
    makeDirs(path.join(tmp, 'a', 'b', 'c'));
    expect(fs.statSync(path.join(tmp, 'a', 'b', 'c')).isDirectory()).toBe(true);
    fs.writeFileSync(path.join(tmp, 'f'), '');
    expect(() => makeDirs(path.join(tmp, 'f', 'g'))).toThrow(/not a folder/);
    expect(() => makeDirs('/proc/crepe-x/y')).toThrow(CrepeError);
  });
});

describe('writeFileAtomic', () => {
  test('a folder at a file path is a one-line refusal, not an OS error', () => {
    fs.mkdirSync(path.join(tmp, 'x.csv'));
    expect(() => writeFileAtomic(path.join(tmp, 'x.csv'), 'a')).toThrow(/is a folder, a file is expected/);
    expect(() => writeFileAtomic(path.join(tmp, 'missing', 'x.csv'), 'a')).toThrow(/does not exist/);
  });
});
