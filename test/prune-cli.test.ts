/** `crepe prune` input validation: one line on stderr, exit code 2, nothing written. */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { assetPath } from '../lib/assets';

const CLI = path.resolve(__dirname, '..', 'dist', 'scripts', 'cli.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-prune-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const shortText = path.join(tmp, 'short.txt');
fs.writeFileSync(shortText, 'Once upon a time there was a cat.\n');

const cases: [string, string[], RegExp][] = [
  ['unknown method', ['--method', 'foo'], /unknown method 'foo'/],
  ['unknown parameter', ['--method', 'crepe', '--param', 'delta=2'], /unknown parameter 'delta' for method crepe/],
  ['out-of-range value', ['--method', 'crepe', '--param', 'kh=4'], /kh=4 .*odd/],
  ['sparsity 1', ['--method', 'wanda', '--sparsity', '1'], /sparsity must be in \[0, 1\)/],
  ['negative sparsity', ['--method', 'wanda', '--sparsity', '-0.1'], /sparsity must be in \[0, 1\)/],
  ['N >= M', ['--method', 'wanda', '--structure', '4:4'], /0 < N < M/],
  ['sparsity contradicting N:M', ['--method', 'wanda', '--structure', '2:4', '--sparsity', '0.6'], /sparsity 0.6 contradicts N:M 2:4, which prunes exactly .* = 0.5/],
  ['M not dividing the width', ['--method', 'wanda', '--structure', '3:8'], /multiple of 8/],
  ['nsamples 0', ['--method', 'wanda', '--nsamples', '0'], /nsamples must be a positive integer/],
  ['calibration text shorter than a window', ['--method', 'wanda', '--calib', `text:${shortText}`], /shorter than one window/],
  ['calibration seqlen above the context', ['--method', 'wanda', '--calib-seqlen', '4096'], /larger than the model's context/],
];

test.each(cases)('%s', (_name, extra, message) => {
  const save = path.join(tmp, `out-${_name.replace(/\W+/g, '_')}.bin`);
  const dump = path.join(tmp, `dump-${_name.replace(/\W+/g, '_')}`);
  const base: string[] = [];
  if (!extra.includes('--nsamples')) base.push('--nsamples', '4');
  if (!extra.includes('--calib-seqlen')) base.push('--calib-seqlen', '64');
  const r = spawnSync('node', [CLI, 'prune', '--model', 'stories260K', ...base, ...extra, '--save', save, '--dump', dump], {
    encoding: 'utf8',
  });
  expect(r.status).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^crepe: /);
  expect(lines[0]).toMatch(message);
  expect(r.stderr).not.toMatch(/\n\s+at /);
  expect(fs.existsSync(save)).toBe(false);
  expect(fs.existsSync(dump)).toBe(false);
  expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp'))).toEqual([]);
});

test('a valid run saves a llama2.c file that loads and has the reported sparsity', () => {
  const save = path.join(tmp, 'pruned.bin');
  const r = spawnSync('node', [CLI, 'prune', '--model', 'stories260K', '--method', 'magnitude', '--sparsity', '0.6', '--save', save, '--json'], { encoding: 'utf8' });
  expect(r.status).toBe(0);
  const out = JSON.parse(r.stdout);
  expect(out.achieved_sparsity).toBeCloseTo(0.6, 3);
  const e = spawnSync('node', [CLI, 'eval', '--model', save, '--tokenizer', assetPath('models', 'stories260K', 'tok512.bin'), '--dataset', 'tinystories', '--max-windows', '2', '--json'], { encoding: 'utf8' });
  expect(e.stderr).toBe('');
  expect(JSON.parse(e.stdout).ppl).toBeGreaterThan(1);
});
