/**
 * Number options: an empty, missing, non-numeric, non-finite or repeated value is refused in one
 * line (the parser used to read `--sparsity ""` as 0 and a value-less `--sparsity` as 0.5).
 */
import * as fs from 'fs';
import * as cellModule from '../lib/experiments/cell';
import { planSweep } from '../lib/experiments/sweep';
import * as os from 'os';
import * as path from 'path';
import { checkNumberTokens } from '../lib/cli/common';
import { CrepeError } from '../lib/errors';
import { runCli } from './helpers';

const prune = ['prune', '--model', 'stories260K', '--method', 'magnitude', '--nsamples', '2'];
const evalCmd = ['eval', '--model', 'stories260K', '--dataset', 'tinystories', '--max-windows', '1'];

const cases: [string, string[], RegExp][] = [
  ['--sparsity ""', [...prune, '--sparsity', ''], /--sparsity must be a finite number, got ''/],
  ['--sparsity without a value', [...prune, '--sparsity'], /--sparsity needs a number/],
  ['--sparsity followed by another flag', [...prune, '--sparsity', '--json'], /--sparsity needs a number/],
  ['--sparsity=', [...prune, '--sparsity='], /--sparsity must be a finite number/],
  ['--seed ""', [...prune, '--seed', ''], /--seed must be a finite number/],
  ['--owl-lambda ""', [...prune, '--allocation', 'owl', '--owl-lambda', ''], /--owl-lambda must be a finite number/],
  ['--dsnot-threshold " "', [...prune, '--refine', 'dsnot', '--dsnot-threshold', ' '], /--dsnot-threshold must be a finite number/],
  ['--calibSeqlen "" (camel case)', [...prune, '--calibSeqlen', ''], /--calib-seqlen must be a finite number/],
  ['--nsamples 1e400', ['prune', '--model', 'stories260K', '--method', 'magnitude', '--nsamples', '1e400'], /--nsamples must be a finite number/],
  ['--sparsity given twice', [...prune, '--sparsity', '0.5', '--sparsity', '0.6'], /--sparsity is given more than once/],
  ['eval --seqlen abc', [...evalCmd, '--seqlen', 'abc'], /--seqlen must be a finite number, got 'abc'/],
  ['eval --jobs ""', [...evalCmd, '--jobs', ''], /--jobs must be a finite number/],
  ['generate --steps ""', ['generate', '--model', 'stories260K', '--steps', ''], /--steps must be a finite number/],
  ['generate --steps 1.8e308 (used to run away)', ['generate', '--model', 'stories260K', '--steps', '1.7976931348623133e+308'], /--steps .* does not fit: the context holds 512 tokens .*at most --steps 511/],
  ['crepe with every coefficient 0', [...prune.map((a) => (a === 'magnitude' ? 'crepe' : a)), '--param', 'alpha=0', '--param', 'beta=0', '--param', 'gamma=0'], /alpha = beta = gamma = 0 scores every weight 0/],
  ['--group with an N:M structure', [...prune, '--structure', '2:4', '--group', 'row'], /--group applies to unstructured pruning only/],
  ['generate with a prompt longer than the context', ['generate', '--model', 'stories260K', '--prompt', 'Once upon a time '.repeat(200)], /the prompt has \d+ tokens, no room left in the model's context of 512/],
];

test.each(cases)('%s is refused', (_name, args, message) => {
  const r = runCli(args);
  expect(r.code).toBe(2);
  expect(r.stdout).toBe('');
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(/^crepe: /);
  expect(r.stderr).toMatch(message);
});

test('negative numbers and --flag=value still parse', () => {
  expect(() => checkNumberTokens(['--seed', '-1', '--sparsity=0.3', '--json'], new Set(['seed', 'sparsity']))).not.toThrow();
  expect(() => checkNumberTokens(['--model', '', '--x', '1'], new Set(['x']))).not.toThrow(); // not a number option
  expect(() => checkNumberTokens(['--x', 'Infinity'], new Set(['x']))).toThrow(CrepeError);
  expect(() => checkNumberTokens(['--', '--x', ''], new Set(['x']))).not.toThrow(); // after -- nothing is an option
});

test('a sweep grid of millions of cells is refused at once, before it is expanded', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-grid-'));
  try {
    const cfg = {
      models: ['stories260K'],
      methods: Array.from({ length: 240 }, (_, k) => ({ name: 'crepe', label: `c${k}`, params: { gamma: k / 1000 } })),
      sparsities: Array.from({ length: 5000 }, (_, k) => k / 5000),
      structures: ['unstructured'],
      groups: ['row', 'matrix'],
      eval: [{ dataset: 'tinystories' }],
    };
    fs.writeFileSync(path.join(dir, 'grid.json'), JSON.stringify(cfg));
    const r = runCli(['sweep', '--config', path.join(dir, 'grid.json'), '--dry-run']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/the grid has up to 2400000 cells .* above the limit of 100000/);
    // Refused from the lists' lengths: no model is opened and no cell is expanded (counted, not timed).
    const expand = jest.spyOn(cellModule, 'planCells');
    try {
      expect(() => planSweep(path.join(dir, 'grid.json'))).toThrow(/the grid has up to 2400000 cells/);
      expect(expand).not.toHaveBeenCalled();
      // the spy does see an expansion (a config of a normal size)
      planSweep(path.join(__dirname, '..', 'experiments', 'smoke.json'));
      expect(expand).toHaveBeenCalledTimes(1);
    } finally {
      expand.mockRestore();
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('the default sparsity is reported when --sparsity is not given', () => {
  const r = runCli([...prune, '--json']);
  expect(r.code).toBe(0);
  expect(JSON.parse(r.stdout).sparsity).toBe(0.5);
});
