/**
 * Results CSV rows read back (sweep resume, dry run, report) are validated: a damaged row is
 * reported and recomputed, never used; Windows line endings are accepted; two datasets mapping
 * to one CSV column are refused.
 */
import * as fs from 'fs';
import * as path from 'path';
import { resultColumns } from '../lib/experiments/cell';
import { checkRows } from '../lib/experiments/row-check';
import { parseCsv } from '../lib/util/csv';
import { makeTmp, rmTmp, runCli } from './helpers';

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-rows-');
});
afterAll(() => rmTmp(tmp));

const config = {
  description: 'two cells: dense and magnitude 50%',
  models: ['stories260K'],
  methods: [{ name: 'magnitude' }],
  sparsities: [0.5],
  structures: ['unstructured'],
  calibration: { dataset: 'tinystories', nsamples: 2, seqlen: 64, seed: 0 },
  eval: [{ dataset: 'tinystories', seqlen: 64, maxWindows: 2 }],
};

function rows(file: string) {
  return parseCsv(fs.readFileSync(file, 'utf8'), file).rows;
}

describe('sweep resume validates every row it reads', () => {
  const cfgFile = () => path.join(tmp, 'two.json');
  const csv = () => path.join(tmp, 'two.csv');
  let reference: Record<string, string>[];
  beforeAll(() => {
    fs.writeFileSync(cfgFile(), JSON.stringify(config));
    const r = runCli(['sweep', '--config', cfgFile(), '--out', csv()]);
    expect(r.code).toBe(0);
    reference = rows(csv());
    expect(reference).toHaveLength(2);
  });

  test.each([
    ['an empty dense PPL', (t: string) => t.replace(/(,64,2,)([0-9.]+),([0-9.]+)(,)/, '$1$2,$4')],
    ["a PPL of 'abc'", (t: string) => t.replace(/(,64,2,)([0-9.]+),([0-9.]+)(,)/, '$1abc,$3$4')],
    ['a PPL below 1', (t: string) => t.replace(/(,64,2,)([0-9.]+),([0-9.]+)(,)/, '$1$2,0.5$4')],
    ['a zero window count', (t: string) => t.replace(/,64,2,/, ',64,0,')],
  ])('%s in the dense row is reported and the cell recomputed', (_name, damage) => {
    const text = fs.readFileSync(csv(), 'utf8');
    const lines = text.split('\n');
    const dense = lines.findIndex((l) => l.includes(',dense,'));
    const damaged = damage(lines[dense]);
    expect(damaged).not.toBe(lines[dense]);
    lines[dense] = damaged;
    fs.writeFileSync(csv(), lines.join('\n'));
    const r = runCli(['sweep', '--config', cfgFile(), '--out', csv(), '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(new RegExp(`two\\.csv line ${dense + 1}: .* is not .*; the row is dropped and its cell recomputed`));
    expect(JSON.parse(r.stdout).ran).toBe(1);
    const now = rows(csv());
    expect(now).toHaveLength(2);
    // the recomputed row has the same numbers as the first run (deterministic), and the pruned row kept them too
    const strip = (r: Record<string, string>) => ({ ...r, timestamp: '', prune_seconds: '', eval_seconds: '', cpu_seconds: '' });
    const byKey = (rs: Record<string, string>[]) => Object.fromEntries(rs.map((x) => [x.key, strip(x)]));
    expect(byKey(now)).toEqual(byKey(reference));
  });

  test('a CSV with Windows line endings resumes (no "other columns"), and is rewritten with \\n', () => {
    fs.writeFileSync(csv(), fs.readFileSync(csv(), 'utf8').replace(/\n/g, '\r\n'));
    const r = runCli(['sweep', '--config', cfgFile(), '--out', csv(), '--json']);
    expect(r.stderr).not.toMatch(/other columns/);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/Windows line endings/);
    expect(JSON.parse(r.stdout).ran).toBe(0);
    expect(fs.readFileSync(csv(), 'utf8')).not.toContain('\r');
    expect(rows(csv())).toHaveLength(2);
  });

  test('a row written twice: the note says the cell is done, and nothing is recomputed', () => {
    const text = fs.readFileSync(csv(), 'utf8');
    const pruned = text.split('\n').find((l) => l.includes(',magnitude,'))!;
    fs.writeFileSync(csv(), text + pruned + '\n');
    const r = runCli(['sweep', '--config', cfgFile(), '--out', csv(), '--json']);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/two\.csv line \d: key [0-9a-f]+ appears again on line 4, which is used instead; the earlier row is dropped \(the cell is done and not recomputed\)/);
    expect(r.stderr).not.toMatch(/recomputed\n/);
    expect(JSON.parse(r.stdout).ran).toBe(0);
    expect(rows(csv())).toHaveLength(2);
  });

  test('the report leaves damaged and duplicate rows out and says so', () => {
    const text = fs.readFileSync(csv(), 'utf8');
    const lines = text.trimEnd().split('\n');
    const pruned = lines.find((l) => l.includes(',magnitude,'))!;
    fs.writeFileSync(path.join(tmp, 'dup.csv'), [...lines, pruned, pruned.replace(/,64,2,/, ',64,x,')].join('\n') + '\n');
    const r = runCli(['report', path.join(tmp, 'dup.csv'), '--out', path.join(tmp, 'rep')]);
    expect(r.code).toBe(0);
    expect(r.stderr).toMatch(/dup\.csv line [23]: key [0-9a-f]+ appears again on line 4/);
    expect(r.stderr).toMatch(/dup\.csv line 5: tinystories_windows 'x' is not a positive whole number/);
  });
});

describe('CSV column names are unique', () => {
  test('two datasets mapping to one column are refused, naming both', () => {
    expect(() => resultColumns(['text:/x/a/b.txt', 'text:/x/a_b.txt'])).toThrow(/'text:\/x\/a\/b\.txt' and 'text:\/x\/a_b\.txt' both map to the CSV column 'text_x_a_b_txt'/);
    expect(new Set(resultColumns(['tinystories', 'wikitext2', 'text:/x/a.txt'])).size).toBe(resultColumns(['tinystories', 'wikitext2', 'text:/x/a.txt']).length);
  });

  test('crepe sweep refuses such a config before running', () => {
    fs.mkdirSync(path.join(tmp, 'a'));
    fs.writeFileSync(path.join(tmp, 'a', 'b.txt'), 'Once upon a time. '.repeat(400));
    fs.writeFileSync(path.join(tmp, 'a_b.txt'), 'There was a dog. '.repeat(400));
    const cfg = { ...config, eval: [{ dataset: `text:${path.join(tmp, 'a', 'b.txt')}` }, { dataset: `text:${path.join(tmp, 'a_b.txt')}` }] };
    fs.writeFileSync(path.join(tmp, 'cols.json'), JSON.stringify(cfg));
    const r = runCli(['sweep', '--config', path.join(tmp, 'cols.json'), '--out', path.join(tmp, 'cols.csv')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/both map to the CSV column/);
    expect(fs.existsSync(path.join(tmp, 'cols.csv'))).toBe(false);
  });
});

describe('checkRows', () => {
  test('each rule against hand-made rows', () => {
    const columns = ['key', 'sparsity', 'd_seqlen', 'd_windows', 'd_dense_ppl', 'd_ppl', 'prune_seconds'];
    const good = { key: 'ab12', sparsity: '0.5', d_seqlen: '64', d_windows: '2', d_dense_ppl: '4.2', d_ppl: '5', prune_seconds: '0' };
    const table = {
      columns,
      rows: [good, { ...good, key: 'cd34', d_ppl: 'NaN' }, { ...good, key: 'ef56', sparsity: '1.5' }, { ...good, key: '', }, { ...good, key: 'aa11', d_seqlen: '6.5' }, { ...good, key: 'bb22', prune_seconds: '-1' }],
    };
    const checked = checkRows(table, 'f.csv');
    expect(checked.rows.map((r) => r.key)).toEqual(['ab12']);
    expect(checked.problems).toEqual([
      "f.csv line 3: d_ppl 'NaN' is not a perplexity (a finite number >= 1)",
      "f.csv line 4: sparsity '1.5' is not a fraction in [0, 1]",
      "f.csv line 5: key '' is not a cell key",
      "f.csv line 6: d_seqlen '6.5' is not a positive whole number",
      "f.csv line 7: prune_seconds '-1' is not a number of seconds",
    ]);
  });
});
