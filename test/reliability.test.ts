/**
 * The newer surfaces get the guarantees the older ones have: search, proxy-study and
 * search-compare outputs follow the output policy (never an input, never a file crepe did not
 * write without --force, checked before any work); flags that only apply with another are
 * refused; zero-shot task files get the input checks of text datasets and a per-field check of
 * every document; tokenizer.json model types, WordLevel's unk token and token ids; OS errors
 * (a full disk, a read-only file system, a closed stdout) are one-line refusals that leave
 * nothing half-written; the memory plan counts a window's tables and caps --jobs at the windows.
 * CLI cases run the built CLI (npm run build first).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { assetPath, assetsDir } from '../lib/assets';
import { writeDirAtomic, writeFileAtomic } from '../lib/io/atomic';
import { ResultsFile } from '../lib/experiments/sweep';
import { parseTaskList, splitTaskList } from '../lib/eval/zeroshot/tasks';
import { writeHfModel } from '../lib/model/convert';
import { openHfModel } from '../lib/model/hf';
import { Llama2cSource } from '../lib/model/llama2c';
import { GiB, WASM_HEAP_LIMIT, fmtBytes, planMemory, windowTableBytes } from '../lib/plan/memory';
import { createActivationStore } from '../lib/plan/spill';
import { loadTokenizer } from '../lib/tokenizers';
import { clearFault, failCall } from './fault-fs';
import { CLI, MODELS, ROOT, lines, makeTmp, oneLineCrepeError, rmTmp, runCli, tinyConfig } from './helpers';

/** A fault-injecting fs (test/fault-fs.ts): failCall makes the n-th call of one method throw an OS error. */
jest.mock('fs', () => jest.requireActual('./fault-fs').faultyFs());

let tmp: string;
beforeEach(() => {
  tmp = makeTmp('crepe-reliability-');
});
afterEach(() => rmTmp(tmp));

function expectRefusal(r: { code: number | null; stderr: string }, message: RegExp): void {
  expect(lines(r.stderr)).toEqual([expect.stringMatching(/^crepe: /)]);
  expect(r.stderr).toMatch(message);
  expect(r.code).toBe(2);
}

function expectCrepeError(fn: () => unknown, message: RegExp): void {
  expect(oneLineCrepeError(fn)).toMatch(message);
}

/** A private copy of stories260K (weights and tokenizer) in `dir`. */
function modelCopy(dir: string): string {
  fs.mkdirSync(dir, { recursive: true });
  fs.copyFileSync(MODELS.stories260K.bin(), path.join(dir, 'stories260K.bin'));
  fs.copyFileSync(MODELS.stories260K.tokenizer(), path.join(dir, 'tok512.bin'));
  return path.join(dir, 'stories260K.bin');
}

// ---------------------------------------------------------------------------------------------
// the output policy

describe('search, proxy-study and search-compare outputs', () => {
  const search = ['search', '--search', 'pho', '--nsamples', '2', '--no-full-eval'];

  test('search --out never replaces an input or a user file; checked before any work (--dry-run)', () => {
    const model = modelCopy(path.join(tmp, 'm'));
    const tok = path.join(tmp, 'm', 'tok512.bin');
    const mine = path.join(tmp, 'mine.csv');
    fs.writeFileSync(mine, 'precious\n');
    const before = [fs.readFileSync(model), fs.readFileSync(tok)];
    expectRefusal(runCli([...search, '--model', model, '--out', model, '--force', '--dry-run']), /is the input/);
    expectRefusal(runCli([...search, '--model', model, '--out', tok, '--force', '--dry-run']), /is the input/);
    // a link to the input is the input
    fs.symlinkSync(tok, path.join(tmp, 'link.csv'));
    expectRefusal(runCli([...search, '--model', model, '--out', path.join(tmp, 'link.csv'), '--force', '--dry-run']), /is the input/);
    expectRefusal(runCli([...search, '--model', model, '--out', mine, '--dry-run']), /not a previous crepe output.*--force/);
    expectRefusal(runCli([...search, '--model', model, '--out', path.join(tmp, 'no', 'x.csv'), '--dry-run']), /folder .* does not exist/);
    expectRefusal(runCli([...search, '--model', model, '--out', '/proc/crepe-log.csv', '--dry-run']), /cannot write --out \/proc\/crepe-log.csv/);
    expectRefusal(runCli([...search, '--model', model, '--force', '--dry-run']), /--force only applies with --out/);
    expect([fs.readFileSync(model), fs.readFileSync(tok)]).toEqual(before);
    expect(fs.readFileSync(mine, 'utf8')).toBe('precious\n');
  });

  test('a file inside an HF checkpoint folder is part of the input', () => {
    const hf = path.join(tmp, 'hf');
    expect(runCli(['convert', '--model', 'stories260K', '--out', hf]).code).toBe(0);
    const config = fs.readFileSync(path.join(hf, 'config.json'));
    expectRefusal(runCli([...search, '--model', hf, '--out', path.join(hf, 'config.json'), '--force', '--dry-run']), /is part of the input/);
    expect(fs.readFileSync(path.join(hf, 'config.json'))).toEqual(config);
  });

  test('search --out writes its log, replaces its own log, and --force replaces a user file', () => {
    const log = path.join(tmp, 'log.csv');
    const r1 = runCli([...search, '--model', 'stories260K', '--out', log, '--budget', '2']);
    expect(r1.code).toBe(0);
    const first = fs.readFileSync(log, 'utf8');
    expect(first.split('\n')[0]).toMatch(/^index,kind,measure,/);
    expect(lines(first)).toHaveLength(3); // header + 2 evaluations
    expect(runCli([...search, '--model', 'stories260K', '--out', log, '--budget', '3']).code).toBe(0);
    expect(lines(fs.readFileSync(log, 'utf8'))).toHaveLength(4);
    const mine = path.join(tmp, 'mine.csv');
    fs.writeFileSync(mine, 'mine\n');
    expect(runCli([...search, '--model', 'stories260K', '--out', mine, '--force', '--budget', '2']).code).toBe(0);
    expect(fs.readFileSync(mine, 'utf8')).toMatch(/^index,kind,measure,/);
    expect(fs.readdirSync(tmp).filter((f) => f.startsWith('.'))).toEqual([]);
  }, 60_000);

  test('proxy-study refuses a study file it did not write, before any work', () => {
    const stem = path.join(tmp, 'proxy-study-stories260K-crepe-u50');
    fs.writeFileSync(`${stem}.md`, '# my notes\n');
    const args = ['proxy-study', '--model', 'stories260K', '--samples', '3', '--proxies', 'energy-row', '--out', tmp, '--dry-run'];
    expectRefusal(runCli(args), /proxy-study-stories260K-crepe-u50\.md exists and is not a previous crepe output/);
    fs.writeFileSync(`${stem}-energy-row.svg`, '<svg><!-- mine --></svg>');
    fs.writeFileSync(`${stem}.md`, '# Proxy study: an earlier one\n');
    expectRefusal(runCli(args), /energy-row\.svg exists and is not a previous crepe output/);
    expect(fs.readFileSync(`${stem}-energy-row.svg`, 'utf8')).toBe('<svg><!-- mine --></svg>');
  });

  test('search-compare: contradictory flags, a report without a journal, and user files in --out are refused', () => {
    const config = path.join(ROOT, 'experiments', 'search.json');
    const out = path.join(tmp, 'out');
    fs.mkdirSync(out);
    const base = ['search-compare', '--config', config, '--out', out, '--models', 'stories260K', '--structures', 'u50'];
    expectRefusal(runCli([...base, '--fresh', '--report-only']), /--fresh and --report-only contradict/);
    expectRefusal(runCli([...base, '--report-only', '--runs', 'hillclimb']), /--runs .* --report-only runs nothing/);
    expectRefusal(runCli([...base, '--report-only', '--dry-run']), /--dry-run .* --report-only runs nothing/);
    expectRefusal(runCli([...base, '--report-only']), /search-comparison-runs\.jsonl does not exist, there is nothing to report/);
    fs.writeFileSync(path.join(out, 'search-comparison-runs.jsonl'), 'my own log\n');
    expectRefusal(runCli([...base, '--fresh', '--dry-run']), /search-comparison-runs\.jsonl exists and is not a previous crepe output/);
    expect(fs.readFileSync(path.join(out, 'search-comparison-runs.jsonl'), 'utf8')).toBe('my own log\n');
    fs.writeFileSync(path.join(out, 'search-comparison-runs.jsonl'), '{"type":"journal"}\n');
    fs.writeFileSync(path.join(out, 'search-comparison.md'), 'my notes\n');
    expectRefusal(runCli([...base, '--dry-run']), /search-comparison\.md exists and is not a previous crepe output/);
    // the config itself as an output
    fs.rmSync(path.join(out, 'search-comparison.md'));
    fs.copyFileSync(config, path.join(out, 'search-comparison.csv'));
    expectRefusal(runCli([...base.slice(0, 2), path.join(out, 'search-comparison.csv'), ...base.slice(3), '--force', '--dry-run']), /is the input/);
  });

  test('prune --save through a link to its own earlier output writes through the link; a dangling link is refused up front', () => {
    const real = path.join(tmp, 'pruned.bin');
    const prune = ['prune', '--model', 'stories260K', '--method', 'magnitude', '--nsamples', '2'];
    expect(runCli([...prune, '--save', real]).code).toBe(0);
    fs.symlinkSync(real, path.join(tmp, 'latest.bin'));
    const before = fs.statSync(real).mtimeMs;
    expect(runCli([...prune, '--sparsity', '0.6', '--save', path.join(tmp, 'latest.bin')]).code).toBe(0);
    expect(fs.lstatSync(path.join(tmp, 'latest.bin')).isSymbolicLink()).toBe(true);
    expect(fs.statSync(real).mtimeMs).toBeGreaterThan(before);
    fs.symlinkSync(path.join(tmp, 'gone'), path.join(tmp, 'dangling'));
    expectRefusal(runCli([...prune, '--save', path.join(tmp, 'dangling'), '--dry-run']), /symbolic link to a path that does not exist/);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// flags that only apply with another

describe('a flag that would be ignored is refused in one line naming what it needs', () => {
  const prune = ['prune', '--model', 'stories260K', '--method', 'wanda'];
  test.each([
    [['--zeroshot-limit', '5'], /--zeroshot-limit only applies with --zeroshot/],
    [['--zeroshot-jobs', '2'], /--zeroshot-jobs only applies with --zeroshot/],
    [['--owl-lambda', '0.05'], /--owl-lambda only applies with --allocation owl/],
    [['--owl-m', '3'], /--owl-m only applies with --allocation owl/],
    [['--dsnot-cycles', '3'], /--dsnot-cycles only applies with --refine dsnot/],
    [['--dsnot-skip', 'attn'], /--dsnot-skip only applies with --refine dsnot/],
    [['--seqlen', '64'], /--seqlen only applies with --eval/],
    [['--max-windows', '2'], /--max-windows only applies with --eval/],
    [['--dtype', 'BF16'], /--dtype only applies with --save/],
  ])('prune %j', (extra, message) => {
    expectRefusal(runCli([...prune, ...extra]), message);
  });
  test('search --sign without pho', () => {
    expectRefusal(runCli(['search', '--model', 'stories260K', '--search', 'hillclimb', '--sign', '1']), /--sign only applies to --search pho/);
  });
  test('search --keep-inputs / --fisher-windows without a proxy that needs them; accepted with one', () => {
    const search = ['search', '--model', 'stories260K', '--budget', '3', '--nsamples', '2', '--calib-seqlen', '64', '--no-full-eval'];
    expectRefusal(runCli([...search, '--search', 'pho', '--keep-inputs', '4']), /crepe: --keep-inputs only applies with a proxy that needs it \(recon, recon-row\); this run computes energy-row\n/);
    expectRefusal(runCli([...search, '--search', 'hillclimb', '--fisher-windows', '2']), /crepe: --fisher-windows only applies with a proxy that needs it \(fisher, fisher-row, fisher-output\); this run computes no proxy\n/);
    expect(runCli([...search, '--search', 'pho', '--proxy', 'recon', '--keep-inputs', '4', '--json']).code).toBe(0);
  }, 60_000);
});

// ---------------------------------------------------------------------------------------------
// zero-shot task files

describe('zero-shot task files', () => {
  const load = (spec: string) => {
    const [s] = parseTaskList([spec]);
    return s.task.load(s.file);
  };
  test('a FIFO, a folder and invalid UTF-8 are refused like text datasets', () => {
    const fifo = path.join(tmp, 'fifo.jsonl');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    expectCrepeError(() => load(`arc_easy:${fifo}`), /not a regular file/);
    expectCrepeError(() => load(`arc_easy:${tmp}`), /is a folder/);
    fs.writeFileSync(path.join(tmp, 'bad.jsonl'), Buffer.from([0xff, 0xfe, 0x7b, 0x7d, 0x0a]));
    expectCrepeError(() => load(`arc_easy:${path.join(tmp, 'bad.jsonl')}`), /not UTF-8 text/);
  });

  test.each([
    ['arc_easy', '\nnull\n', /document 1 \(line 2\): null, not a JSON object/],
    ['arc_easy', '{"question":{"stem":"q","choices":[{"text":"a","label":"A"},null]},"answerKey":"A"}\n', /document 1 \(line 1\): field 'question\.choices\[1\]' is null, not an object/],
    ['hellaswag', '{"activity_label":"a","ctx_a":"b","ctx_b":"c","endings":["x",7],"label":0}\n', /field 'endings\[1\]' is a number, not a string/],
    ['winogrande', '{"sentence":"a _ b","option1":null,"option2":"y","answer":"1"}\n', /field 'option1' is null, not a string/],
    ['lambada_openai', '{"text":"ok then"}\n{"text":["no"]}\n', /document 2 \(line 2\): field 'text' is an array, not a string/],
    ['boolq', '{"passage":"p","question":"q","label":"maybe"}\n', /field 'label' is "maybe", not a boolean/],
  ])('%s: a bad document is named by file, document, line and field', (task, text, message) => {
    const file = path.join(tmp, `${task}.jsonl`);
    fs.writeFileSync(file, text);
    expectCrepeError(() => load(`${task}:${file}`), message);
  });

  test('RTE: a header-only file is an error, a short row is named', () => {
    const file = path.join(tmp, 'dev.tsv');
    fs.writeFileSync(file, 'index\tsentence1\tsentence2\tlabel\n');
    expectCrepeError(() => load(`rte:${file}`), /no documents \(only a header\)/);
    fs.writeFileSync(file, 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tonly\n');
    expectCrepeError(() => load(`rte:${file}`), /document 2 \(line 3\): 2 tab-separated cells for the header's 4/);
    fs.writeFileSync(file, 'index\tsentence1\tsentence2\tlabel\n0\ta\tb\tentailment\n1\tc\td\tnot_entailment\n');
    const docs = load(`rte:${file}`).docs;
    expect(docs.map((d) => (d.kind === 'multiple_choice' ? d.gold : -1))).toEqual([0, 1]);
  });

  test('piqa:PATH reads PATH and the labels beside it, never the task file as labels; a comma in a path is \\,', () => {
    const dir = path.join(tmp, 'a,b');
    fs.mkdirSync(dir);
    const src = path.join(assetsDir(), 'tasks', 'piqa');
    fs.copyFileSync(path.join(src, 'valid.jsonl'), path.join(dir, 'valid.jsonl'));
    fs.copyFileSync(path.join(src, 'valid-labels.lst'), path.join(dir, 'valid-labels.lst'));
    expect(splitTaskList('piqa:/x/a\\,b/v.jsonl,arc_easy')).toEqual(['piqa:/x/a,b/v.jsonl', 'arc_easy']);
    expect(splitTaskList('a:\\\\,b')).toEqual(['a:\\', 'b']);
    expect(splitTaskList('a:c:\\dir\\f.jsonl')).toEqual(['a:c:\\dir\\f.jsonl']);
    const specs = parseTaskList([`piqa:${dir.replace(/,/g, '\\,')}/valid.jsonl,arc_easy`]);
    expect(specs.map((s) => [s.task.name, s.file])).toEqual([['piqa', path.join(dir, 'valid.jsonl')], ['arc_easy', undefined]]);
    const mine = specs[0].task.load(specs[0].file);
    const asset = specs[0].task.load(undefined);
    expect(mine.docs).toEqual(asset.docs);
    fs.copyFileSync(path.join(dir, 'valid.jsonl'), path.join(tmp, 'piqa.txt'));
    expectCrepeError(() => load(`piqa:${path.join(tmp, 'piqa.txt')}`), /must be named X\.jsonl/);
  });

  test('prune --zeroshot refuses a bad task file before any work', () => {
    const file = path.join(tmp, 'arc.jsonl');
    fs.writeFileSync(file, 'null\n');
    expectRefusal(runCli(['prune', '--model', 'stories260K', '--method', 'magnitude', '--zeroshot', `arc_easy:${file}`, '--dry-run']), /arc\.jsonl: document 1 \(line 1\): null/);
  });
});

// ---------------------------------------------------------------------------------------------
// tokenizer.json and config vocabulary

describe('tokenizer.json models', () => {
  const write = (model: object): string => {
    const file = path.join(tmp, 'tokenizer.json');
    fs.writeFileSync(file, JSON.stringify({ version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, pre_tokenizer: { type: 'Whitespace' }, post_processor: null, decoder: null, model }));
    return file;
  };
  test("WordLevel: a word not in the vocabulary is the model's unk token (HF WordLevel), none without one", () => {
    const vocab = { hello: 1, world: 2, '[UNK]': 0 };
    const tok = loadTokenizer(write({ type: 'WordLevel', vocab, unk_token: '[UNK]' }));
    expect(Array.from(tok.encode('hello there world', { bos: false }))).toEqual([1, 0, 2]);
    // the default unk token is <unk>: absent here, so an unknown word cannot be encoded
    const noUnk = loadTokenizer(write({ type: 'WordLevel', vocab }));
    expect(Array.from(noUnk.encode('world hello', { bos: false }))).toEqual([2, 1]);
    expectCrepeError(() => noUnk.encode('hello there', { bos: false }), /cannot encode \(no unk token\)/);
  });
  test('an unknown model type, and a negative or fractional id, are refused at load', () => {
    expectCrepeError(() => loadTokenizer(write({ type: 'Nonsense', vocab: { a: 0 }, merges: [], continuing_subword_prefix: null, unk_token: null })), /model type "Nonsense" is not one crepe runs/);
    const bpe = { type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: false, byte_fallback: false, merges: [] };
    expectCrepeError(() => loadTokenizer(write({ ...bpe, vocab: { a: -1, b: 0 } })), /token "a" has id -1/);
    expectCrepeError(() => loadTokenizer(write({ ...bpe, vocab: { a: 0.5, b: 0 } })), /token "a" has id 0\.5/);
  });
  test('a config.json vocab_size larger than the embedding is blamed on config.json and the shard', () => {
    const dir = path.join(tmp, 'hf');
    const src = Llama2cSource.open(MODELS.stories260K.bin());
    writeHfModel(src, dir, { dtype: 'F32', tokenizer: MODELS.stories260K.tokenizer() });
    src.close();
    const cfg = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, vocab_size: 1000 }));
    expectCrepeError(() => openHfModel(dir), /model\.embed_tokens\.weight in .*model\.safetensors has shape \[512, 64\], config\.json implies \[1000, 64\]/);
    expectRefusal(runCli(['eval', '--model', dir, '--dataset', 'tinystories', '--max-windows', '1']), /config\.json implies \[1000, 64\]/);
  });
});

// ---------------------------------------------------------------------------------------------
// OS errors, injected (no root, no mount needed)


describe('OS errors are one-line refusals naming the path, with nothing half-written left', () => {
  afterEach(clearFault);
  test.each(['ENOSPC', 'EROFS', 'EACCES', 'EDQUOT', 'EIO'])('%s writing a file or a model folder', (code) => {
    const file = path.join(tmp, 'out.txt');
    failCall('writeSync', 1, code);
    expectCrepeError(() => writeFileAtomic(file, 'x'.repeat(100)), new RegExp(`cannot write ${file}: `));
    clearFault();
    const dir = path.join(tmp, 'model');
    expectCrepeError(() => writeDirAtomic(dir, (t) => {
      fs.writeFileSync(path.join(t, 'a'), 'a');
      throw Object.assign(new Error('injected'), { code });
    }, 'hf-model'), new RegExp(`cannot write ${dir}: `));
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('a sweep CSV: a header that cannot be written leaves no file, a row that cannot is one line', () => {
    const file = path.join(tmp, 'r.csv');
    failCall('writeSync', 1, 'ENOSPC');
    expectCrepeError(() => ResultsFile.open(file, ['key', 'a']), /cannot write .*r\.csv: no space left on the device/);
    expect(fs.existsSync(file)).toBe(false);
    clearFault();
    const results = ResultsFile.open(file, ['key', 'a']);
    failCall('writeSync', 1, 'EROFS');
    expectCrepeError(() => results.append({ key: 'k', a: '1' }), /cannot write .*r\.csv: read-only file system/);
    results.close();
  });

  test('spill files: a full disk while spilling names the spill file', () => {
    const store = createActivationStore('disk', 2, 4, tmp);
    failCall('writeSync', 1, 'ENOSPC');
    expectCrepeError(() => store.set(0, new Float32Array(4)), /cannot write spill file .*activations\.f32: no space left on the device; .*--spill-dir/);
    clearFault();
    store.dispose();
    expect(fs.readdirSync(tmp)).toEqual([]);
  });

  test('standard output on a full device or a closed pipe: one line, exit 2', () => {
    const full = fs.openSync('/dev/full', 'w');
    try {
      // a command's output, and the help and version text that yargs prints
      for (const args of [['tokenize', '--model', 'stories260K', '--text', 'Once upon a time'], ['--help'], ['prune', '--help'], ['--version']]) {
        const r = spawnSync(process.execPath, [CLI, ...args], { stdio: ['ignore', full, 'pipe'], encoding: 'utf8' });
        expect([args, lines(r.stderr)]).toEqual([args, ['crepe: cannot write standard output (/dev/full): no space left on the device']]);
        expect(r.status).toBe(2);
      }
    } finally {
      fs.closeSync(full);
    }
    const piped = spawnSync('sh', ['-c', `"${process.execPath}" "${CLI}" eval --model stories260K --dataset tinystories --max-windows 1 | true`], { encoding: 'utf8' });
    expect(piped.stderr).not.toMatch(/\n\s+at /);
  });

  test('the spill-space refusal gives sizes in units that show them', () => {
    expect(fmtBytes(300 * 1024)).toBe('300 KiB');
    expect(fmtBytes(1.5 * 2 ** 20)).toBe('1.50 MiB');
    expect(fmtBytes(12.25 * GiB)).toBe('12.3 GiB');
    expect(fmtBytes(512)).toBe('512 B');
  });
});

// ---------------------------------------------------------------------------------------------
// the memory plan at long windows

describe('memory plan', () => {
  const long = tinyConfig({ dim: 256, hiddenDim: 688, nLayers: 1, nHeads: 4, nKvHeads: 4, headDim: 64, vocabSize: 105, maxSeqLen: 16384 });
  const req = (over: object) => ({ config: long, limit: 100 * GiB, storage: 'auto' as const, evaluator: 'auto' as const, wasm: true, diskFree: 1000 * GiB, ...over });

  test("a window's tables are counted: the causal mask and the two split masks", () => {
    const T = 8192;
    // independent count: T^2 + (T/2)^2 + (T/2) T mask floats, 4 T hd rotary floats
    expect(windowTableBytes(long, T)).toBe(4 * (T * T + (T / 2) ** 2 + (T / 2) * T + 4 * T * 64));
    expect(windowTableBytes(long, 64)).toBe(4 * (64 * 64 + 4 * 64 * 64));
  });

  test('--jobs is capped at the windows before memory is multiplied', () => {
    const few = planMemory(req({ eval: { windows: 2, seqlen: 256, jobs: 1000 } }));
    const two = planMemory(req({ eval: { windows: 2, seqlen: 256, jobs: 2 } }));
    expect(few.hostBytes).toBe(two.hostBytes);
    const r = runCli(['eval', '--model', 'stories260K', '--dataset', 'tinystories', '--max-windows', '2', '--jobs', '1000', '--dry-run', '--json']);
    expect(r.code).toBe(0);
    expect(JSON.parse(r.stdout).memory_plan.host_bytes).toBeLessThan(4 * GiB);
  });

  test('a vocabulary too large for the heap is not blamed on --seqlen', () => {
    const huge = tinyConfig({ dim: 2048, hiddenDim: 64, nLayers: 1, nHeads: 16, nKvHeads: 16, headDim: 128, vocabSize: 256_000, maxSeqLen: 4096 });
    const plan = planMemory(req({ config: huge, eval: { windows: 1, seqlen: 4096, jobs: 1 }, evaluator: 'resident' }));
    expect(plan.fits).toBe(false);
    expect(plan.refusal).toMatch(/the vocabulary alone, 256000 tokens x 2048, takes ~[\d.]+ GiB whatever the window length/);
    expect(plan.refusal).not.toMatch(/--seqlen/);
    // where shorter windows do fit, they are suggested
    const longWindow = planMemory(req({ eval: { windows: 1, seqlen: 16384, jobs: 1 } }));
    expect(longWindow.fits).toBe(false);
    expect(longWindow.refusal).toMatch(/a shorter --seqlen \(now 16384\)/);
    expect(WASM_HEAP_LIMIT).toBeLessThan(4 * GiB);
  });
});
