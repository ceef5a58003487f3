/**
 * The CLI as users meet it, in child processes (`node dist/scripts/cli.js`; `npm test` builds
 * first). Every user error must print exactly one line on stderr ("crepe: ..."), no stack trace,
 * and exit with code 2; the positive cases check the documented outputs.
 */
import * as fs from 'fs';
import * as path from 'path';
import { writeHfModel } from '../lib/model/convert';
import { HF_CONFIG_FILE, HF_SINGLE_FILE } from '../lib/model/hf';
import { Llama2cSource } from '../lib/model/llama2c';
import { loadTokenizer } from '../lib/tokenizers';
import { CliResult, LILY, MODELS, lines, makeTmp, readGolden, rmTmp, runCli } from './helpers';

const tmp = makeTmp('crepe-cli-');
afterAll(() => rmTmp(tmp));
const at = (...p: string[]) => path.join(tmp, ...p);

// ---------------------------------------------------------------------------------------------
// broken inputs, built once

/** A copy of stories260K (with its tokenizer beside it) whose bytes `edit` may change. */
function llama2cCopy(name: string, edit: (bytes: Buffer) => Buffer): string {
  const dir = at(name);
  fs.mkdirSync(dir);
  fs.copyFileSync(MODELS.stories260K.tokenizer(), path.join(dir, 'tok512.bin'));
  const file = path.join(dir, 'model.bin');
  fs.writeFileSync(file, edit(fs.readFileSync(MODELS.stories260K.bin())));
  return file;
}

/** Set int32 header field `index` (0 dim, 1 hidden, 2 layers, 3 heads, 4 kv heads, 5 vocab, 6 seq_len). */
function setHeader(bytes: Buffer, index: number, value: number): Buffer {
  bytes.writeInt32LE(value, index * 4);
  return bytes;
}

/** An HF copy of stories260K in `name`, then `edit` applied to the directory. */
function hfCopy(name: string, edit: (dir: string) => void = () => {}): string {
  const dir = at(name);
  const src = Llama2cSource.open(MODELS.stories260K.bin());
  writeHfModel(src, dir, { dtype: 'F32', tokenizer: MODELS.stories260K.tokenizer() });
  src.close();
  edit(dir);
  return dir;
}

/** Rewrite the JSON header of a safetensors file (data bytes unchanged). */
function editSafetensorsHeader(file: string, edit: (header: Record<string, { dtype: string; shape: number[]; data_offsets: number[] }>) => void): void {
  const bytes = fs.readFileSync(file);
  const n = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8'));
  edit(header);
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, json, bytes.subarray(8 + n)]));
}

const EMB = 'model.embed_tokens.weight';

interface ErrorCase {
  what: string;
  args: () => string[];
  /** A fragment the one-line message must contain. */
  says: RegExp;
}

const evalArgs = (model: string, ...more: string[]) => ['eval', '--model', model, '--dataset', 'tinystories', '--max-windows', '1', ...more];

const ERROR_CASES: ErrorCase[] = [
  { what: 'missing model file', args: () => evalArgs(at('absent', 'model.bin')), says: /absent[/\\]model\.bin/ },
  { what: 'unknown model name', args: () => evalArgs('stories261K'), says: /unknown model 'stories261K'/ },
  {
    what: 'truncated .bin',
    args: () => evalArgs(llama2cCopy('truncated', (b) => b.subarray(0, b.length - 1000))),
    says: /truncated/,
  },
  { what: '.bin shorter than its header', args: () => evalArgs(llama2cCopy('stub', (b) => b.subarray(0, 20))), says: /truncated|header/ },
  {
    what: '.bin whose header (n_layers) does not match its size',
    args: () => evalArgs(llama2cCopy('layers', (b) => setHeader(b, 2, 4))),
    says: /header implies \d+ bytes, file has \d+/,
  },
  {
    what: '.bin whose header has an impossible field',
    args: () => evalArgs(llama2cCopy('heads', (b) => setHeader(b, 3, 7))),
    says: /corrupt llama2\.c header/,
  },
  {
    what: 'safetensors with a corrupt header',
    args: () =>
      evalArgs(
        hfCopy('st-json', (dir) => {
          const f = path.join(dir, HF_SINGLE_FILE);
          const b = fs.readFileSync(f);
          b.write('#', 8); // the JSON header's opening brace
          fs.writeFileSync(f, b);
        }),
      ),
    says: /corrupt safetensors file .*header is not valid JSON/,
  },
  {
    what: 'safetensors with a header length beyond the file',
    args: () =>
      evalArgs(
        hfCopy('st-len', (dir) => {
          const f = path.join(dir, HF_SINGLE_FILE);
          const b = fs.readFileSync(f);
          b.writeBigUInt64LE(BigInt(b.length) * 4n, 0);
          fs.writeFileSync(f, b);
        }),
      ),
    says: /corrupt safetensors file .*exceeds the file size/,
  },
  {
    what: 'safetensors with out-of-range offsets',
    args: () =>
      evalArgs(
        hfCopy('st-offsets', (dir) =>
          editSafetensorsHeader(path.join(dir, HF_SINGLE_FILE), (h) => {
            const [b, e] = h[EMB].data_offsets;
            h[EMB].data_offsets = [b + 1_000_000_000, e + 1_000_000_000];
          }),
        ),
      ),
    says: /corrupt safetensors file .*beyond the \d+ data bytes/,
  },
  {
    what: 'safetensors with an unknown dtype',
    args: () => evalArgs(hfCopy('st-dtype', (dir) => editSafetensorsHeader(path.join(dir, HF_SINGLE_FILE), (h) => (h[EMB].dtype = 'I32')))),
    says: /unsupported dtype I32/,
  },
  {
    what: 'config.json with an unsupported architecture',
    args: () =>
      evalArgs(
        hfCopy('gpt2', (dir) => {
          const f = path.join(dir, HF_CONFIG_FILE);
          const cfg = JSON.parse(fs.readFileSync(f, 'utf8'));
          fs.writeFileSync(f, JSON.stringify({ ...cfg, architectures: ['GPT2LMHeadModel'], model_type: 'gpt2' }));
        }),
      ),
    says: /unsupported architecture .*GPT2LMHeadModel/,
  },
  {
    what: 'empty dataset',
    args: () => {
      fs.writeFileSync(at('empty.txt'), '');
      return ['eval', '--model', 'stories260K', '--dataset', `text:${at('empty.txt')}`];
    },
    says: /empty/,
  },
  { what: 'unknown dataset', args: () => ['eval', '--model', 'stories260K', '--dataset', 'wikitext3'], says: /unknown dataset 'wikitext3'/ },
  { what: 'seqlen larger than the context', args: () => evalArgs('stories260K', '--seqlen', '1024'), says: /seqlen 1024 .*context 512/ },
  { what: 'max-windows 0', args: () => evalArgs('stories260K', '--max-windows', '0'), says: /max-windows/ },
  { what: 'max-windows not a number', args: () => evalArgs('stories260K', '--max-windows', 'abc'), says: /max-windows/ },
  { what: 'seqlen not an integer', args: () => evalArgs('stories260K', '--seqlen', '100.5'), says: /seqlen/ },
  {
    what: '.bin without a tokenizer beside it',
    args: () => {
      fs.mkdirSync(at('lonely'));
      fs.copyFileSync(MODELS.stories260K.bin(), at('lonely', 'model.bin'));
      return evalArgs(at('lonely', 'model.bin'));
    },
    says: /no tokenizer found/,
  },
  { what: 'unknown command', args: () => ['evaluate', '--model', 'stories260K'], says: /Unknown argument|evaluate/ },
  { what: 'unknown flag', args: () => evalArgs('stories260K', '--max-window', '3'), says: /^crepe: unknown flag --max-window; did you mean --max-windows\?$/ },
  { what: 'no command', args: () => [], says: /command/ },
  { what: 'missing required flag', args: () => ['eval', '--model', 'stories260K'], says: /dataset/ },
  { what: 'bad choice', args: () => ['convert', '--model', 'stories260K', '--out', at('x'), '--dtype', 'F64'], says: /F64|dtype/ },
];

describe('user errors: one line on stderr, exit code 2, no stack trace', () => {
  test.each(ERROR_CASES.map((c) => [c.what, c] as const))('%s', (_what, c) => {
    const r = runCli(c.args());
    expect({ code: r.code, stdout: r.stdout }).toEqual({ code: 2, stdout: '' });
    expect(r.stderr).not.toContain('    at ');
    const l = lines(r.stderr);
    expect(l).toHaveLength(1);
    expect(l[0]).toMatch(/^crepe: /);
    expect(l[0]).not.toMatch(/internal error/);
    expect(l[0]).toMatch(c.says);
  });
});

// ---------------------------------------------------------------------------------------------
// positive cases

function json(r: CliResult): Record<string, unknown> {
  expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
  const l = lines(r.stdout);
  expect(l).toHaveLength(1);
  return JSON.parse(l[0]) as Record<string, unknown>;
}

describe('eval', () => {
  test('--json prints one JSON object with the documented fields', () => {
    const o = json(runCli(['eval', '--model', 'stories260K', '--dataset', 'tinystories', '--max-windows', '4', '--json']));
    for (const k of ['ppl', 'nll', 'tokens', 'windows', 'seqlen', 'dataset', 'model', 'backend', 'seconds', 'tokens_per_second']) {
      expect(o).toHaveProperty(k);
    }
    expect(o).toMatchObject({ windows: 4, seqlen: 512, tokens: 4 * 511, dataset: 'tinystories', model: 'stories260K' });
    expect(o.backend).toMatch(/^(wasm|tensorflow)/);
    expect(o.ppl as number).toBeCloseTo(Math.exp(o.nll as number), 10);
    expect(o.nll as number).toBeGreaterThan(1); // ~1.37 nats/token at the head of the file
    expect(o.nll as number).toBeLessThan(1.8);
    expect(o.seconds as number).toBeGreaterThan(0);
    expect(o.tokens_per_second as number).toBeCloseTo((o.tokens as number) / (o.seconds as number), 3);
    expect(o.slice).toMatch(/tinystories_val_head\.txt chars \[0, \d+\)/);
  });

  test.each(['stories260K', 'babyllama-char'] as const)('%s: the NLL of the first window equals the numpy reference', (name) => {
    const golden = readGolden(name);
    const o = json(runCli(['eval', '--model', name, '--dataset', 'tinystories', '--seqlen', '256', '--max-windows', '1', '--json']));
    expect(o).toMatchObject({ windows: 1, seqlen: 256, tokens: 255 });
    const nll = -golden.logprobs.reduce((a, b) => a + b, 0) / golden.logprobs.length;
    expect(Math.abs((o.nll as number) - nll)).toBeLessThan(1e-5);
  });

  test('the human summary is one line naming the PPL and the slice', () => {
    const r = runCli(['eval', '--model', 'stories260K', '--dataset', 'tinystories', '--max-windows', '1']);
    expect(r.code).toBe(0);
    expect(lines(r.stdout)).toHaveLength(1);
    expect(r.stdout).toMatch(/PPL \d+\.\d+/);
    expect(r.stdout).toContain('tinystories_val_head.txt');
  });
});

describe('tokenize', () => {
  test('--json prints {"ids": [...]}, matching the help example and the tokenizer', () => {
    const o = json(runCli(['tokenize', '--model', 'stories260K', '--text', 'Once upon a time', '--json']));
    expect(Object.keys(o)).toEqual(['ids']);
    // `crepe tokenize --help` shows this output.
    expect(o.ids).toEqual([1, 403, 407, 261, 378]);
    const tok = loadTokenizer(MODELS.stories260K.tokenizer(), { vocabSize: 512 });
    expect(tok.decode(o.ids as number[]).trimStart()).toBe('Once upon a time');
    expect(json(runCli(['tokenize', '--model', 'stories260K', '--text', 'Once upon a time', '--no-bos', '--json'])).ids).toEqual([403, 407, 261, 378]);
  });

  test('babyllama-char is character-level', () => {
    const o = json(runCli(['tokenize', '--model', 'babyllama-char', '--text', 'Lily', '--json']));
    expect(o.ids).toHaveLength(1 + 1 + 4); // BOS, the dummy-prefix space, four characters
  });
});

describe('generate', () => {
  test('--steps 60 prints the Lily story opening', () => {
    const r = runCli(['generate', '--model', 'stories260K', '--steps', '60']);
    expect(r.code).toBe(0);
    expect(r.stdout.trimStart().startsWith(LILY)).toBe(true);
  });
});

describe('convert', () => {
  test.each(['F32', 'BF16'] as const)('to HF %s, then eval of the HF directory gives the llama2.c PPL', (dtype) => {
    const out = at(`convert-${dtype}`);
    const c = json(runCli(['convert', '--model', 'stories260K', '--to', 'hf', '--out', out, '--dtype', dtype, '--json']));
    expect(c).toMatchObject({ out, format: 'hf', dtype });
    expect(fs.existsSync(path.join(out, HF_CONFIG_FILE))).toBe(true);
    const args = ['--dataset', 'tinystories', '--seqlen', '128', '--max-windows', '3', '--json'];
    const ref = json(runCli(['eval', '--model', 'stories260K', ...args]));
    const hf = json(runCli(['eval', '--model', out, ...args]));
    const rel = Math.abs((hf.ppl as number) - (ref.ppl as number)) / (ref.ppl as number);
    expect(rel).toBeLessThan(dtype === 'F32' ? 1e-4 : 0.02);
  });
});

/** Flags with one name across commands: each shows its other name in help. */
const SHARED_FLAGS: Record<string, RegExp[]> = {
  eval: [/--dataset, --eval\s/],
  prune: [/--eval, --dataset\s/, /--zeroshot, --tasks\s/, /--zeroshot-limit, --limit\s/],
  zeroshot: [/--tasks, --zeroshot\s/, /--limit, --zeroshot-limit\s/],
  'proxy-study': [/--configs, --samples\s/, /--seed\s/],
  search: [/--seed\s/],
  sweep: [/--seed\s/],
};

/** Example arguments longer than the help's second column was: they must stay whole. */
const LONG_EXAMPLE_WORDS: Record<string, string[]> = {
  zeroshot: ['hellaswag:/data/hellaswag_val.jsonl,rte:/data/RTE/dev.tsv'],
  search: ['results/search-stories260K-pho.csv'],
};

describe('--help', () => {
  /** The commands yargs registered, as the top-level help lists them. */
  function listedCommands(): string[] {
    const r = runCli(['--help']);
    if (r.code !== 0) throw new Error(`crepe --help exited ${r.code}: ${r.stderr}`);
    const section = r.stdout.split('\nCommands:\n')[1]?.split('\n\n')[0] ?? '';
    return [...section.matchAll(/^ {2}crepe ([a-z][a-z-]*)/gm)].map((m) => m[1]);
  }
  const commands = listedCommands();

  test('the top-level help lists every command module of lib/cli (a file exporting <name>Command)', () => {
    const dir = path.join(__dirname, '..', 'lib', 'cli');
    const modules = fs
      .readdirSync(dir)
      .map((f) => f.replace(/\.ts$/, ''))
      .filter((name) => {
        const fn = `${name.replace(/-(\w)/g, (_, c: string) => c.toUpperCase())}Command`;
        return new RegExp(`export (async )?function ${fn}\\b`).test(fs.readFileSync(path.join(dir, `${name}.ts`), 'utf8'));
      });
    expect(modules.length).toBeGreaterThan(0);
    expect([...commands].sort()).toEqual([...modules].sort());
  });

  test('seed flags: prune has one calibration seed (--calib-seed, alias --seed); search has --calib-seed and --search-seed, both defaulting to --seed', () => {
    const prune = runCli(['prune', '--help']).stdout;
    expect(prune).toMatch(/--calib-seed, --seed\s+calibration sampling seed/);
    expect(prune).toMatch(/with N:M it is\s+1\s+-\s+N\/M,\s+and any other value is an error/);
    expect(prune).toContain('tinystories-val');
    const search = runCli(['search', '--help']).stdout;
    expect(search).toMatch(/--seed\s+seed of every sampling step: the default of --calib-seed and\s+--search-seed\s+\(default 0\)/);
    expect(search).toMatch(/--calib-seed\s+calibration sampling seed \(default --seed\)/);
    expect(search).toMatch(/--search-seed\s+search seed/);
    // In prune --seed and --calib-seed are one flag.
    const viaSeed = json(runCli(['prune', '--model', 'stories260K', '--method', 'wanda', '--nsamples', '2', '--calib-seqlen', '64', '--seed', '3', '--json']));
    const viaCalibSeed = json(runCli(['prune', '--model', 'stories260K', '--method', 'wanda', '--nsamples', '2', '--calib-seqlen', '64', '--calib-seed', '3', '--json']));
    expect(viaSeed.calibration).toEqual(viaCalibSeed.calibration);
    expect((viaSeed.calibration as { seed: number }).seed).toBe(3);
    expect(viaSeed.layers).toEqual(viaCalibSeed.layers);
  });

  test.each(commands)('%s --help exits 0, describes every flag and shows examples of that command, full width', (cmd) => {
    const r = runCli([cmd, '--help']);
    expect(r.code).toBe(0);
    const examples = r.stdout.split('\nExamples:\n')[1];
    expect(examples).toBeDefined();
    expect(examples).toMatch(new RegExp(`^ {2}crepe ${cmd} `));
    // each example: the command (wrapped only between words at the help width), then '# what it does'
    for (const l of lines(examples)) expect([cmd, l]).toEqual([cmd, expect.stringMatching(/^ {2}(crepe |# |[^\s#])/)]);
    expect(examples.match(/^ {2}crepe /gm)?.length).toBe(examples.match(/^ {2}# \S/gm)?.length);
    // a flag line: the flag column, then a description before any [type] / [default] bracket
    const options = r.stdout.split('\nOptions:\n')[1].split('\n\n')[0];
    const flagLines = options.split('\n').filter((l) => /^ {2}-/.test(l));
    expect(flagLines.length).toBeGreaterThanOrEqual(3);
    for (const l of flagLines) expect([cmd, l]).toEqual([cmd, expect.stringMatching(/^ {2}-[-\w, ]+? {2,}[^\s[]/)]);
    SHARED_FLAGS[cmd]?.forEach((f) => expect(r.stdout).toMatch(f));
    LONG_EXAMPLE_WORDS[cmd]?.forEach((w) => expect(r.stdout).toContain(w));
  });
});
