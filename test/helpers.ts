/**
 * Shared test helpers: running the built CLI as a child process, temporary folders, a tiny
 * random in-memory model, and the asset paths of the built-in models.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { assetPath } from '../lib/assets';
import { CrepeError } from '../lib/errors';
import { BlockWeights, LinearName, LlamaConfig, WeightSource, linearNames, linearShape } from '../lib/model/types';

export const ROOT = path.resolve(__dirname, '..');
export const CLI = path.join(ROOT, 'dist', 'scripts', 'cli.js');

// ---------------------------------------------------------------------------------------------
// the CLI as a child process

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Run `node dist/scripts/cli.js ...args` and collect its output. `npm test` builds dist/ first;
 * when running one test file with `npx jest`, build with `npx tsc -p tsconfig.json` before.
 */
export function runCli(args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {}): CliResult {
  if (!fs.existsSync(CLI)) throw new Error(`${CLI} is missing: run \`npm run build\` (npm test does it) first`);
  const r = spawnSync(process.execPath, [CLI, ...args], {
    cwd: opts.cwd ?? ROOT,
    env: { ...process.env, CREPE_DEBUG: '', ...opts.env },
    encoding: 'utf8',
    timeout: opts.timeoutMs ?? 60_000,
    maxBuffer: 64 << 20,
  });
  if (r.error) throw r.error;
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Lines of a text without the final newline's empty remainder. */
export function lines(text: string): string[] {
  const l = text.split('\n');
  if (l[l.length - 1] === '') l.pop();
  return l;
}

// ---------------------------------------------------------------------------------------------
// temporary folders

/** A fresh temporary folder; remove it with `rmTmp` (or let afterAll do it). */
export function makeTmp(prefix = 'crepe-test-'): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function rmTmp(dir: string | undefined): void {
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------------------------------------
// built-in models

export const MODELS = {
  stories260K: { bin: () => assetPath('models', 'stories260K', 'stories260K.bin'), tokenizer: () => assetPath('models', 'stories260K', 'tok512.bin') },
  'babyllama-char': {
    bin: () => assetPath('models', 'babyllama-char', 'model5000.bin'),
    tokenizer: () => assetPath('models', 'babyllama-char', 'tok105.model'),
  },
} as const;
export type BuiltinName = keyof typeof MODELS;

/** The opening of stories260K's greedy story from BOS, as the README quotes it. */
export const LILY = 'Once upon a time, there was a little girl named Lily. She loved to play outside in the park.';

/** A golden fixture written by test/fixtures/regenerate-golden.sh (numpy reference, float64). */
export interface Golden {
  model: string;
  ids: number[];
  logprobs: number[];
}

export function readGolden(name: BuiltinName): Golden {
  return JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', `golden-${name}.json`), 'utf8')) as Golden;
}

// ---------------------------------------------------------------------------------------------
// a tiny random model in memory

/** A small but complete LLaMA config (GQA, even head dim > 4 so the RoPE permutation is not trivial). */
export function tinyConfig(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    architecture: 'llama',
    dim: 32,
    hiddenDim: 40,
    nLayers: 2,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 8,
    vocabSize: 37,
    maxSeqLen: 64,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: 'adjacent',
    tiedEmbeddings: true,
    ...over,
  };
}

/** mulberry32: a tiny seeded generator in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function randomArray(n: number, rng: () => number, scale = 1, offset = 0): Float32Array {
  return Float32Array.from({ length: n }, () => offset + scale * (rng() * 2 - 1));
}

/**
 * An in-memory WeightSource with random weights (norm gains near 1, linears scaled like a
 * trained model's so activations stay moderate). Reads return copies, as a file source does.
 */
export class MemorySource implements WeightSource {
  readonly format = 'llama2c' as const;
  readonly origin = 'memory';
  embedding: Float32Array;
  classifier: Float32Array;
  finalNorm: Float32Array;
  blocks: BlockWeights[];

  constructor(
    readonly config: LlamaConfig,
    seed = 1,
  ) {
    const rng = mulberry32(seed);
    const { vocabSize, dim } = config;
    this.embedding = randomArray(vocabSize * dim, rng);
    this.classifier = config.tiedEmbeddings ? this.embedding : randomArray(vocabSize * dim, rng);
    this.finalNorm = randomArray(dim, rng, 0.2, 1);
    this.blocks = Array.from({ length: config.nLayers }, () => {
      const linears = {} as Record<LinearName, Float32Array>;
      for (const l of linearNames(config)) {
        const [o, i] = linearShape(config, l);
        linears[l] = randomArray(o * i, rng, 1 / Math.sqrt(i));
      }
      return { norms: { attnNorm: randomArray(dim, rng, 0.2, 1), ffnNorm: randomArray(dim, rng, 0.2, 1) }, linears };
    });
  }

  readEmbedding(): Float32Array {
    return this.embedding.slice();
  }
  readClassifier(): Float32Array {
    return this.classifier.slice();
  }
  readFinalNorm(): Float32Array {
    return this.finalNorm.slice();
  }
  readBlock(i: number): BlockWeights {
    const b = this.blocks[i];
    const linears = {} as Record<LinearName, Float32Array>;
    for (const l of linearNames(this.config)) linears[l] = b.linears[l].slice();
    return { norms: { attnNorm: b.norms.attnNorm.slice(), ffnNorm: b.norms.ffnNorm.slice() }, linears };
  }
  close(): void {}
}

/** Random token ids in [0, vocab). */
export function randomTokens(n: number, vocab: number, seed: number): Int32Array {
  const rng = mulberry32(seed);
  return Int32Array.from({ length: n }, () => Math.floor(rng() * vocab));
}

/** Largest |a[i] - b[i]|. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]));
  return worst;
}

/** The largest deviation of `a` from `ref`, and the largest |ref| to judge it by (a relative error no single near-zero entry inflates). */
export function maxDeviation(a: ArrayLike<number>, ref: ArrayLike<number>): { worst: number; scale: number } {
  if (a.length !== ref.length) throw new Error(`length ${a.length} != ${ref.length}`);
  let scale = 0;
  for (let i = 0; i < ref.length; i++) scale = Math.max(scale, Math.abs(ref[i]));
  return { worst: maxAbsDiff(a, ref), scale };
}

/**
 * Run `fn`, expect it to throw a CrepeError whose message is one line (the bad-input contract),
 * and return the message for further checks.
 */
export function oneLineCrepeError(fn: () => unknown): string {
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(CrepeError);
  const message = (err as Error).message;
  expect(message).not.toContain('\n');
  return message;
}

/** The .ts files under `dir` (repository-relative, e.g. 'lib'), as repository-relative paths. */
export function sourceFiles(dir: string): string[] {
  return fs.readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(rel);
    return e.name.endsWith('.ts') ? [rel] : [];
  });
}
