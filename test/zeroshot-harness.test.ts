/**
 * lm-evaluation-harness files from `crepe zeroshot --output-path [--log-samples]`: read back by a
 * plain-python reader that mimics the harness's make_table and checks its result schema
 * (test/fixtures/zeroshot/harness_reader.py: Python's own json.dumps must reproduce the file
 * byte for byte, hashes recomputed with hashlib, metrics recomputed from the per-document
 * records); float formatting against CPython's repr; the output policy; named means.
 */
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { checkHarnessFiles, harnessDateId, harnessFiles, pyFloatRepr, sanitizeModelName } from '../lib/eval/zeroshot/harness';
import { zeroshotTable } from '../lib/eval/zeroshot/table';
import { makeTmp, rmTmp, runCli } from './helpers';
import { readHarness } from './zeroshot-harness-reader';

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-zs-harness-');
});
afterAll(() => rmTmp(tmp));

test("floats are written as CPython's repr writes them", () => {
  const xs = [0.15, 0.1, 1, 2.5, -0, 0, 1e-4, 1e-5, 1.5e-7, 0.00012345, 123456789012345.6, 1e15, 1e16, 1.2345e16, 1e22, -3.14159, 8844265.699511554, 5e-324, 1.7976931348623157e308, 1 / 3, 100, 0.5 ** 40];
  const py = execFileSync('python3', ['-c', 'import sys, json; print("\\n".join(repr(float(x)) for x in json.loads(sys.argv[1])))', JSON.stringify(xs.map((x) => (Object.is(x, -0) ? '-0.0' : x)))], { encoding: 'utf8' })
    .trim()
    .split('\n');
  expect(xs.map(pyFloatRepr)).toEqual(py);
});

test('file names follow the harness tracker: FOLDER/<sanitized model>/results_<date>.json, or FILE_<date>.json', () => {
  const d = new Date(2026, 11, 6, 7, 5, 9, 42);
  expect(harnessDateId(d)).toBe('2026-12-06T07-05-09.042000');
  expect(harnessDateId(new Date(2026, 11, 6, 7, 5, 9, 0))).toBe('2026-12-06T07-05-09');
  expect(sanitizeModelName('/models/llama-2-7b-hf')).toBe('__models__llama-2-7b-hf');
  expect(sanitizeModelName('org/name:2:4 [x]')).toBe('org__name__2__4 __x__');
  const f = harnessFiles('/out', 'meta/llama', d, ['arc_easy', 'piqa'], true);
  expect(f.results).toBe('/out/meta__llama/results_2026-12-06T07-05-09.042000.json');
  expect(f.samples.piqa).toBe('/out/meta__llama/samples_piqa_2026-12-06T07-05-09.042000.jsonl');
  const j = harnessFiles('/out/run.json', 'meta/llama', d, ['piqa'], true);
  expect(j.results).toBe('/out/run_2026-12-06T07-05-09.042000.json');
  expect(j.samples.piqa).toBe('/out/samples_piqa_2026-12-06T07-05-09.042000.jsonl');
});

test('zeroshot --output-path --log-samples: the harness reads the results and one record per document', () => {
  const out = path.join(tmp, 'harness');
  const r = runCli(['zeroshot', '--model', 'babyllama-char', '--tasks', 'arc_easy,piqa,winogrande,lambada_openai', '--limit', '7', '--output-path', out, '--log-samples', '--json']);
  expect(r.code).toBe(0);
  const j = JSON.parse(r.stdout);
  // all four tasks run
  expect(j.tasks.map((t: { task: string }) => t.task)).toEqual(['arc_easy', 'piqa', 'winogrande', 'lambada_openai']);
  expect(path.dirname(j.harness_files.results)).toBe(path.join(out, 'babyllama-char'));
  const samples = Object.values(j.harness_files.samples) as string[];
  expect(samples).toHaveLength(4);
  const read = readHarness(j.harness_files.results, samples);
  expect(read.tasks).toEqual(['arc_easy', 'piqa', 'winogrande', 'lambada_openai']);
  // make_table's rows carry crepe's numbers (4 decimals), stderr beside each metric
  const fmt = (v: number) => v.toFixed(4);
  const byTask = Object.fromEntries(j.tasks.map((t: { task: string; metrics: Record<string, { value: number; stderr: number }> }) => [t.task, t.metrics]));
  const rows = read.rows;
  let task = '';
  for (const row of rows) {
    if (row[0]) task = String(row[0]);
    const m = byTask[task][String(row[4])];
    expect(row[6]).toBe(fmt(m.value));
    expect(row[7]).toBe(fmt(m.stderr));
  }
  expect(rows.map((x) => x[4])).toEqual(['acc', 'acc_norm', 'acc', 'perplexity', 'acc', 'acc_norm', 'acc']);
  for (const t of ['arc_easy', 'piqa', 'winogrande', 'lambada_openai']) expect(read.samples[t].records).toBe(7);
});

test('the mean names the tasks it averages', () => {
  const cell = (task: string, acc: number) => ({ task, items: 10, acc, accStderr: 0.1 });
  const same = zeroshotTable([
    { label: 'a', cells: [cell('arc_easy', 0.5), cell('piqa', 0.6), cell('winogrande', 0.7), cell('lambada_openai', 0.2)] },
    { label: 'b', cells: [cell('arc_easy', 0.3), cell('piqa', 0.6), cell('winogrande', 0.5), cell('lambada_openai', 0.2)] },
  ]);
  expect(same).toContain('| Mean acc over arc_easy, winogrande |');
  expect(same).toContain('| 60.00 |');
  const differ = zeroshotTable([
    { label: 'a', cells: [cell('arc_easy', 0.5), cell('boolq', 0.7)] },
    { label: 'b', cells: [cell('arc_easy', 0.5)] },
  ]);
  expect(differ).toContain('| 60.00 (over arc_easy, boolq) |');
  expect(differ).toContain('| 50.00 (over arc_easy) |');
});

describe('output policy', () => {
  test('an existing file is replaced only with --force; a file as the folder and an input are refused', () => {
    const d = new Date(2026, 0, 2, 3, 4, 5, 6);
    const files = harnessFiles(path.join(tmp, 'pol'), 'm', d, ['piqa'], true);
    fs.mkdirSync(path.dirname(files.results), { recursive: true });
    fs.writeFileSync(files.samples.piqa, 'mine');
    expect(() => checkHarnessFiles(path.join(tmp, 'pol'), files, [], false)).toThrow(/samples_piqa_.*exists; refusing to replace it \(pass --force/);
    expect(() => checkHarnessFiles(path.join(tmp, 'pol'), files, [], true)).not.toThrow();
    expect(() => checkHarnessFiles(path.join(tmp, 'pol'), files, [files.samples.piqa], true)).toThrow(/is an input/);
    const aFile = path.join(tmp, 'plain');
    fs.writeFileSync(aFile, 'x');
    expect(() => checkHarnessFiles(aFile, harnessFiles(aFile, 'm', d, [], false), [], false)).toThrow(/--output-path .*plain is a file; give a folder/);
  });

  test.each([
    [['zeroshot', '--model', 'stories260K', '--tasks', 'piqa', '--limit', '2', '--log-samples'], /^crepe: --log-samples needs --output-path/],
    [['zeroshot', '--model', 'stories260K', '--tasks', 'piqa', '--limit', '2', '--output-path', 'plain/sub'], /^crepe: cannot write --output-path plain\/sub: .*plain is not a folder/],
    [['prune', '--model', 'stories260K', '--method', 'magnitude', '--zeroshot', 'piqa', '--output-path', 'r.json'], /^crepe: --output-path r\.json: prune --zeroshot writes two results files/],
    [['prune', '--model', 'stories260K', '--method', 'magnitude', '--output-path', 'out'], /^crepe: --output-path and --log-samples write zero-shot results: add --zeroshot/],
    [['zeroshot', '--model', 'stories260K', '--tasks', 'piqa', '--limit', '2', '--jobs', '2', '--evaluator', 'streaming'], /^crepe: zero-shot's streaming evaluator runs in one process/],
  ])('%j: one line, exit 2, nothing written', (args, msg) => {
    fs.writeFileSync(path.join(tmp, 'plain'), 'x');
    const before = fs.readdirSync(tmp).sort();
    const r = runCli(args, { cwd: tmp });
    expect(fs.readdirSync(tmp).sort()).toEqual(before);
    expect(r.stderr).toMatch(msg);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.code).toBe(2);
  });
});
