/**
 * The bench command's framework (not its timings: benchmarks are scripts, not tests): every
 * registered section is listed and selectable, unknown sections are refused, tables render
 * aligned.
 */
import { spawnSync } from 'child_process';
import * as path from 'path';
import { SECTIONS, median, renderTable } from '../scripts/bench/framework';
import '../scripts/bench/sections';
import { ROOT } from './helpers';

const BENCH = path.join(ROOT, 'dist', 'scripts', 'bench.js');
const bench = (args: string[]) => spawnSync(process.execPath, [BENCH, ...args], { cwd: ROOT, encoding: 'utf8', timeout: 60_000 });

describe('bench', () => {
  test('--list names every registered section, once', () => {
    const names = SECTIONS.map((s) => s.name);
    expect(names).toEqual(expect.arrayContaining(['eval', 'prune']));
    expect(new Set(names).size).toBe(names.length);
    const r = bench(['--list']);
    expect(r.status).toBe(0);
    const listed = r.stdout.trim().split('\n').map((l) => l.split(/\s+/)[0]);
    expect(listed).toEqual(names);
  });

  test('an unknown --only section is refused with exit 2, naming the known ones', () => {
    const r = bench(['--only', 'no-such-section']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('unknown section no-such-section');
    for (const s of SECTIONS) expect(r.stderr).toContain(s.name);
  });

  test('median and table rendering', () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    const text = renderTable({
      title: 'T',
      columns: [
        { key: 'name', header: 'name' },
        { key: 'n', header: 'tok/s' },
        { key: 'r', header: 'ratio', digits: 2 },
      ],
      rows: [
        { name: 'a', n: 12345.6, r: 1.5 },
        { name: 'longer', n: 7, r: null },
      ],
      notes: ['note'],
    });
    expect(text.split('\n')).toEqual(['T', 'name     tok/s  ratio', '------  ------  -----', 'a       12,346   1.50', 'longer       7      -', '  note']);
  });
});
