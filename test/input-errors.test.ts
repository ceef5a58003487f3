/**
 * Operating-system conditions on inputs and outputs are one-line refusals (exit 2), not internal
 * errors: folders where files are expected, devices, oversized files, a JSON null C4 line,
 * binary text, permission denied on --save (found before pruning), sweep --fresh on a folder or
 * a file that is not a results CSV.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { MAX_TEXT_BYTES } from '../lib/io/input';
import { SafetensorsFile, writeSafetensors } from '../lib/model/safetensors';
import { MODELS, ROOT, makeTmp, rmTmp, runCli } from './helpers';

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-input-');
  fs.mkdirSync(path.join(tmp, 'dir'));
  expect(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', path.join(tmp, 'hf-folder')]).code).toBe(0);
  fs.rmSync(path.join(tmp, 'hf-folder', 'model.safetensors'));
  fs.mkdirSync(path.join(tmp, 'hf-folder', 'model.safetensors'));
  fs.writeFileSync(path.join(tmp, 'c4.json'), '{"text":"Once upon a time."}\nnull\n');
  fs.writeFileSync(path.join(tmp, 'binary.txt'), Buffer.from([0x4f, 0x6e, 0x63, 0x65, 0x00, 0x01, 0x02]));
  fs.writeFileSync(path.join(tmp, 'latin1.txt'), Buffer.from('caf\xe9 au lait, '.repeat(100), 'latin1'));
  fs.writeFileSync(path.join(tmp, 'mine.csv'), 'my,own\n1,2\n');
  // tok512.bin with every score NaN (layout: max_token_len, then per token: float score, int32 length, bytes)
  const tok = Buffer.from(fs.readFileSync(MODELS.stories260K.tokenizer()));
  for (let off = 4; off < tok.length; off += 8 + tok.readInt32LE(off + 4)) tok.writeFloatLE(NaN, off);
  fs.writeFileSync(path.join(tmp, 'nan-scores.bin'), tok);
  // a sparse file just above the text cap: no disk space used
  fs.writeFileSync(path.join(tmp, 'huge.txt'), '');
  fs.truncateSync(path.join(tmp, 'huge.txt'), MAX_TEXT_BYTES + 1);
});
afterAll(() => rmTmp(tmp));

const t = (f: string) => path.join(tmp, f);
const evalOn = (dataset: string) => ['eval', '--model', 'stories260K', '--dataset', dataset, '--max-windows', '1'];
const smoke = path.join(ROOT, 'experiments', 'smoke.json');

const cases: [string, () => string[], RegExp][] = [
  ['text:FOLDER', () => evalOn(`text:${t('dir')}`), /dataset file .*dir is a folder, a file is expected/],
  ['text:/dev/zero (never ends)', () => evalOn('text:/dev/zero'), /\/dev\/zero is not a regular file/],
  ['text over 512 MiB', () => evalOn(`text:${t('huge.txt')}`), /is 512\.0 MiB, above the 512 MiB limit/],
  ['binary text', () => evalOn(`text:${t('binary.txt')}`), /binary\.txt is binary, not text \(a NUL byte at offset 4\)/],
  ['non-UTF-8 text', () => evalOn(`text:${t('latin1.txt')}`), /latin1\.txt is not UTF-8 text/],
  ['a C4 line that is JSON null', () => evalOn(`c4:${t('c4.json')}`), /line 2 of .*c4\.json has no "text" string/],
  ['model.safetensors is a folder', () => ['eval', '--model', t('hf-folder'), '--dataset', 'tinystories'], /safetensors file .*model\.safetensors is a folder/],
  ['a tokenizer whose scores are NaN', () => ['eval', '--model', 'stories260K', '--tokenizer', t('nan-scores.bin'), '--dataset', 'tinystories'], /nan-scores\.bin: token 0 has score NaN/],
  ['a tokenizer of another model (more tokens than the vocabulary)', () => ['eval', '--model', 'babyllama-char', '--tokenizer', MODELS.stories260K.tokenizer(), '--dataset', 'tinystories'], /holds more tokens than the model's vocabulary of 105 .*belongs to another model/],
  ['sweep --config /dev/zero', () => ['sweep', '--config', '/dev/zero'], /config file \/dev\/zero is not a regular file/],
  ['sweep --fresh --out FOLDER', () => ['sweep', '--config', smoke, '--fresh', '--out', t('dir')], /is a folder, a file is expected/],
  ['sweep --fresh --out a file that is not a results CSV', () => ['sweep', '--config', smoke, '--fresh', '--out', t('mine.csv')], /not a crepe results CSV; refusing to discard it/],
  ['sweep --out the config itself', () => ['sweep', '--config', smoke, '--fresh', '--out', smoke], /is the input/],
];

test.each(cases)('%s', (_name, args, message) => {
  const r = runCli(args(), { timeoutMs: 30_000 });
  expect(r.stderr).not.toMatch(/internal error/);
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(message);
  expect(fs.readFileSync(t('mine.csv'), 'utf8')).toBe('my,own\n1,2\n');
});

/**
 * A folder the current user cannot write into. Permission bits do not stop root (CI runs as
 * root), but the immutable attribute does, for root too: access(2) then answers EPERM. Returns
 * an undo function, or null where neither way is available (root on a file system without
 * chattr support).
 */
function unwritableFolder(dir: string): (() => void) | null {
  fs.mkdirSync(dir);
  if (process.getuid?.() !== 0) {
    fs.chmodSync(dir, 0o555);
    return () => fs.chmodSync(dir, 0o755);
  }
  try {
    execFileSync('chattr', ['+i', dir], { stdio: 'ignore' });
  } catch {
    return null;
  }
  return () => execFileSync('chattr', ['-i', dir], { stdio: 'ignore' });
}

test('permission denied on --save is found before pruning', () => {
  const undo = unwritableFolder(t('ro'));
  if (!undo) {
    console.warn('skipped: neither permission bits nor chattr can make a folder unwritable here');
    return;
  }
  try {
    const r = runCli(['prune', '--model', 'stories260K', '--method', 'sparsegpt', '--nsamples', '128', '--save', path.join(t('ro'), 'x.bin')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/permission denied (on|in) folder .*ro/);
    // Found before pruning: the one-line refusal and no pruning progress or PPL.
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stdout).not.toMatch(/ppl/i);
  } finally {
    undo();
  }
});

test('a safetensors file whose tensors overlap is refused, naming both', () => {
  const file = t('overlap.safetensors');
  writeSafetensors(file, [
    { name: 'a', shape: [4], data: Float32Array.of(1, 2, 3, 4) },
    { name: 'b', shape: [4], data: Float32Array.of(5, 6, 7, 8) },
  ], 'F32');
  const buf = fs.readFileSync(file);
  const n = Number(buf.readBigUInt64LE(0));
  const header = JSON.parse(buf.subarray(8, 8 + n).toString('utf8'));
  header.b.data_offsets = [8, 24]; // shares a's last 8 bytes
  const json = Buffer.from(JSON.stringify(header).padEnd(n, ' '));
  expect(json.length).toBe(n);
  fs.writeFileSync(file, Buffer.concat([buf.subarray(0, 8), json, buf.subarray(8 + n)]));
  expect(() => SafetensorsFile.open(file)).toThrow(/tensors a and b overlap/);
});
