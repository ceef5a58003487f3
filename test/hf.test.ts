import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CrepeError } from '../lib/errors';
import { adjacentToHalfOrder, halfToAdjacentOrder, permuteRows, writeHfModel } from '../lib/model/convert';
import { hfName, openHfModel, parseHfConfig } from '../lib/model/hf';
import { SafetensorsFile, writeSafetensors } from '../lib/model/safetensors';
import { BlockWeights, LinearName, LlamaConfig, WeightSource, linearNames, linearShape } from '../lib/model/types';
import { mulberry32, oneLineCrepeError } from './helpers';

// ---------------------------------------------------------------------------------------------
// a tiny random model held in memory

function tinyConfig(over: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    architecture: 'llama',
    dim: 32,
    hiddenDim: 40,
    nLayers: 3,
    nHeads: 4,
    nKvHeads: 2,
    headDim: 8, // > 4: below that the adjacent → half permutation is its own inverse
    vocabSize: 11,
    maxSeqLen: 32,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: 'adjacent',
    tiedEmbeddings: true,
    ...over,
  };
}

function random(n: number, rng: () => number): Float32Array {
  return Float32Array.from({ length: n }, () => rng() * 2 - 1);
}


/** An in-memory WeightSource that records which blocks were read. */
class MemorySource implements WeightSource {
  readonly format = 'llama2c';
  readonly origin = 'memory';
  readonly embedding: Float32Array;
  readonly classifier: Float32Array;
  readonly finalNorm: Float32Array;
  readonly blocks: BlockWeights[];
  readonly blockReads: number[] = [];
  failAtBlock = -1;

  constructor(readonly config: LlamaConfig, seed = 1) {
    const rng = mulberry32(seed);
    const { vocabSize, dim } = config;
    this.embedding = random(vocabSize * dim, rng);
    this.classifier = config.tiedEmbeddings ? this.embedding : random(vocabSize * dim, rng);
    this.finalNorm = random(dim, rng);
    this.blocks = Array.from({ length: config.nLayers }, () => {
      const linears = {} as Record<LinearName, Float32Array>;
      for (const l of linearNames(config)) {
        const [o, i] = linearShape(config, l);
        linears[l] = random(o * i, rng);
      }
      return { norms: { attnNorm: random(dim, rng), ffnNorm: random(dim, rng) }, linears };
    });
  }

  readEmbedding = () => this.embedding.slice();
  readClassifier = () => this.classifier.slice();
  readFinalNorm = () => this.finalNorm.slice();
  readBlock(i: number): BlockWeights {
    if (i === this.failAtBlock) throw new Error('disk on fire');
    this.blockReads.push(i);
    const b = this.blocks[i];
    const linears = {} as Record<LinearName, Float32Array>;
    for (const l of linearNames(this.config)) linears[l] = b.linears[l].slice();
    return { norms: { attnNorm: b.norms.attnNorm.slice(), ffnNorm: b.norms.ffnNorm.slice() }, linears };
  }
  close(): void {}
}

// ---------------------------------------------------------------------------------------------

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-hf-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));
const out = (name: string) => path.join(tmp, name);

/** The source's q/k as HF stores them (rotate_half order), everything else unchanged. */
function expectedLinear(src: MemorySource, block: number, l: LinearName): Float32Array {
  const w = src.blocks[block].linears[l];
  const cfg = src.config;
  if (cfg.ropeLayout === 'half' || (l !== 'q' && l !== 'k')) return w;
  return permuteRows(w, cfg.dim, adjacentToHalfOrder(l === 'q' ? cfg.nHeads : cfg.nKvHeads, cfg.headDim));
}

/** Every tensor of `hf` against `src`, within `tol(expected)` (exact when omitted). */
function expectSameModel(hf: WeightSource, src: MemorySource, tol?: (x: number) => number): void {
  const same = (a: Float32Array, b: Float32Array) => {
    expect(a.length).toBe(b.length);
    if (!tol) return expect(a).toEqual(b);
    const worst = b.reduce((w, x, i) => Math.max(w, Math.abs(a[i] - x) - tol(x)), -Infinity);
    expect(worst).toBeLessThanOrEqual(0);
  };
  same(hf.readEmbedding(), src.embedding);
  same(hf.readClassifier(), src.classifier);
  same(hf.readFinalNorm(), src.finalNorm);
  for (let b = 0; b < src.config.nLayers; b++) {
    const blk = hf.readBlock(b);
    same(blk.norms.attnNorm, src.blocks[b].norms.attnNorm);
    same(blk.norms.ffnNorm, src.blocks[b].norms.ffnNorm);
    for (const l of linearNames(src.config)) same(blk.linears[l], expectedLinear(src, b, l));
  }
}

describe('RoPE row permutation', () => {
  test('matches HF convert_llama_weights_to_hf view/transpose/reshape, and the inverse inverts it', () => {
    const [nHeads, headDim] = [3, 8];
    const order = adjacentToHalfOrder(nHeads, headDim);
    // w.view(n_heads, hd/2, 2, dim2).transpose(1, 2): output (h, j, i) takes input (h, i, j).
    for (let h = 0; h < nHeads; h++)
      for (let j = 0; j < 2; j++)
        for (let i = 0; i < headDim / 2; i++) expect(order[h * headDim + j * (headDim / 2) + i]).toBe(h * headDim + 2 * i + j);
    const inverse = halfToAdjacentOrder(nHeads, headDim);
    const rows = Float32Array.from({ length: nHeads * headDim * 2 }, (_, i) => i);
    expect(permuteRows(permuteRows(rows, 2, order), 2, inverse)).toEqual(rows);
    expect(permuteRows(Uint8Array.from([0, 1, 2, 3]), 1, adjacentToHalfOrder(1, 4))).toEqual(Uint8Array.from([0, 2, 1, 3]));
  });

  test('rotate_half RoPE on permuted rows equals permuted adjacent RoPE', () => {
    const [headDim, theta, pos] = [8, 10000, 7];
    const half = headDim / 2;
    const x = random(headDim, mulberry32(5));
    const freq = (i: number) => pos * theta ** ((-2 * i) / headDim);
    const adjacent = new Float32Array(headDim);
    for (let i = 0; i < half; i++) {
      const [c, s] = [Math.cos(freq(i)), Math.sin(freq(i))];
      adjacent[2 * i] = x[2 * i] * c - x[2 * i + 1] * s;
      adjacent[2 * i + 1] = x[2 * i] * s + x[2 * i + 1] * c;
    }
    const order = adjacentToHalfOrder(1, headDim);
    const y = permuteRows(x, 1, order);
    const rotated = new Float32Array(headDim);
    for (let i = 0; i < half; i++) {
      const [c, s] = [Math.cos(freq(i)), Math.sin(freq(i))];
      rotated[i] = y[i] * c - y[i + half] * s;
      rotated[i + half] = y[i + half] * c + y[i] * s;
    }
    const expected = permuteRows(adjacent, 1, order);
    rotated.forEach((v, i) => expect(v).toBeCloseTo(expected[i], 6));
  });
});

describe('writeHfModel + openHfModel', () => {
  test('F32 round trip is exact, q/k rows permuted, one block read at a time', () => {
    const src = new MemorySource(tinyConfig());
    writeHfModel(src, out('f32'), { dtype: 'F32' });
    expect(src.blockReads).toEqual([0, 1, 2]);
    expect(fs.readdirSync(out('f32')).sort()).toEqual(['README.md', 'config.json', 'crepe-recipe.json', 'model.safetensors']);
    const hf = openHfModel(out('f32'));
    expect(hf.format).toBe('hf');
    expect({ ...hf.config, sourceConfig: undefined }).toEqual({ ...src.config, ropeLayout: 'half' });
    expectSameModel(hf, src);
    const st = SafetensorsFile.open(out('f32/model.safetensors'));
    expect(st.names()).not.toContain(hfName.classifier); // tied
    expect(st.metadata()).toEqual({ format: 'pt' });
    st.close();
    const json = JSON.parse(fs.readFileSync(out('f32/config.json'), 'utf8'));
    expect(json).toMatchObject({ architectures: ['LlamaForCausalLM'], model_type: 'llama', num_key_value_heads: 2, torch_dtype: 'float32' });
    hf.close();
  });

  test('a rotate_half source with its own classifier is written without permutation', () => {
    const src = new MemorySource(tinyConfig({ ropeLayout: 'half', tiedEmbeddings: false, architecture: 'mistral', nKvHeads: 4 }), 2);
    writeHfModel(src, out('half'), { dtype: 'F32' });
    const hf = openHfModel(out('half'));
    expect({ ...hf.config, sourceConfig: undefined }).toEqual(src.config);
    expectSameModel(hf, src);
    expect(hf.readClassifier()).not.toEqual(hf.readEmbedding());
    hf.close();
  });

  test('BF16 and F16 round trips are within rounding', () => {
    const src = new MemorySource(tinyConfig({ tiedEmbeddings: false }), 3);
    writeHfModel(src, out('bf16'), { dtype: 'BF16' });
    writeHfModel(src, out('f16'), { dtype: 'F16' });
    expect(JSON.parse(fs.readFileSync(out('bf16/config.json'), 'utf8')).torch_dtype).toBe('bfloat16');
    const bf16 = openHfModel(out('bf16'));
    expect(bf16.readEmbedding()).not.toEqual(src.embedding); // really rounded
    expectSameModel(bf16, src, (x) => Math.abs(x) * 2 ** -8);
    const f16 = openHfModel(out('f16'));
    expectSameModel(f16, src, (x) => Math.abs(x) * 2 ** -11 + 2 ** -25);
    bf16.close();
    f16.close();
  });

  test('sharded round trip, with shards opened only when needed', () => {
    const src = new MemorySource(tinyConfig({ tiedEmbeddings: false }), 4);
    writeHfModel(src, out('sharded'), { dtype: 'F32', shardBytes: 6000 });
    const files = fs.readdirSync(out('sharded')).sort();
    const shards = files.filter((f) => /^model-\d{5}-of-\d{5}\.safetensors$/.test(f));
    expect(shards.length).toBeGreaterThan(3);
    expect(files).toContain('model.safetensors.index.json');
    expect(files).not.toContain('model.safetensors');
    const index = JSON.parse(fs.readFileSync(out('sharded/model.safetensors.index.json'), 'utf8'));
    const total = shards.reduce((a, f) => a + SafetensorsFile.open(out(`sharded/${f}`)).names().length, 0);
    expect(Object.keys(index.weight_map)).toHaveLength(total);
    const { vocabSize: V, dim: D, hiddenDim: H } = src.config;
    expect(index.metadata.total_size).toBe(4 * (2 * V * D + D + 3 * (2 * D + D * D * 2 + (D / 2) * D * 2 + 3 * H * D)));

    const hf = openHfModel(out('sharded'));
    expectSameModel(hf, src);
    hf.close();

    // Remove the shard holding lm_head: everything before it still reads.
    const last = index.weight_map[hfName.classifier];
    expect(index.weight_map[hfName.embedding]).not.toBe(last);
    fs.rmSync(out(`sharded/${last}`));
    const lazy = openHfModel(out('sharded'));
    expect(lazy.readBlock(0).linears.q).toEqual(expectedLinear(src, 0, 'q'));
    expect(() => lazy.readClassifier()).toThrow(new RegExp(`missing shard .*${last}`));
    lazy.close();
  });

  test('copies the tokenizer and replaces an existing output atomically', () => {
    const tok = out('tok512.bin');
    fs.writeFileSync(tok, 'tokenizer bytes');
    const src = new MemorySource(tinyConfig());
    writeHfModel(src, out('tok'), { dtype: 'F32', tokenizer: tok });
    expect(fs.readFileSync(out('tok/tok512.bin'), 'utf8')).toBe('tokenizer bytes');

    // A failure half-way leaves the previous output untouched and no temporary directory.
    const failing = new MemorySource(tinyConfig(), 9);
    failing.failAtBlock = 2;
    expect(() => writeHfModel(failing, out('tok'), { dtype: 'F32' })).toThrow('disk on fire');
    expect(fs.readdirSync(out('tok')).sort()).toEqual(['README.md', 'config.json', 'crepe-recipe.json', 'model.safetensors', 'tok512.bin']);
    expect(fs.readdirSync(tmp).filter((f) => f.includes('.tmp'))).toEqual([]);
    expect(() => writeHfModel(src, out('x'), { dtype: 'F32', tokenizer: out('nope.model') })).toThrow(CrepeError);
  });
});

describe('bad HF inputs', () => {
  /** A fresh valid model directory to break. */
  function modelDir(name: string, cfg: Partial<LlamaConfig> = {}): string {
    writeHfModel(new MemorySource(tinyConfig(cfg)), out(name), { dtype: 'F32' });
    return out(name);
  }

  function expectCrepe(fn: () => unknown, pattern: RegExp): void {
    expect(oneLineCrepeError(fn)).toMatch(pattern);
  }

  function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
    const file = path.join(dir, 'config.json');
    const c = JSON.parse(fs.readFileSync(file, 'utf8'));
    edit(c);
    fs.writeFileSync(file, JSON.stringify(c));
  }

  /** Rewrite model.safetensors' header in place of the original one, keeping the data. */
  function editHeader(dir: string, edit: (h: Record<string, any>) => void): string {
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    const len = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + len).toString());
    edit(header);
    const json = Buffer.from(JSON.stringify(header));
    const lenBytes = Buffer.alloc(8);
    lenBytes.writeBigUInt64LE(BigInt(json.length));
    fs.writeFileSync(file, Buffer.concat([lenBytes, json, bytes.subarray(8 + len)]));
    return file;
  }

  test('missing directory, config.json, weights', () => {
    expectCrepe(() => openHfModel(out('does-not-exist')), /HF model directory not found: .*does-not-exist/);
    const dir = modelDir('noconfig');
    fs.rmSync(path.join(dir, 'config.json'));
    expectCrepe(() => openHfModel(dir), /missing config.json: .*noconfig\/config.json/);
    fs.writeFileSync(path.join(dir, 'config.json'), '{"model_type": ');
    expectCrepe(() => openHfModel(dir), /noconfig\/config.json is not valid JSON/);
    const noWeights = modelDir('noweights');
    fs.rmSync(path.join(noWeights, 'model.safetensors'));
    expectCrepe(() => openHfModel(noWeights), /no model.safetensors or model.safetensors.index.json in .*noweights/);
  });

  test('unsupported architectures and features', () => {
    const dir = modelDir('arch');
    editConfig(dir, (c) => ((c.architectures = ['GPT2LMHeadModel']), (c.model_type = 'gpt2')));
    expectCrepe(() => openHfModel(dir), /unsupported architecture \["GPT2LMHeadModel"\].*arch\/config.json/);
    editConfig(dir, (c) => ((c.architectures = ['LlamaForCausalLM']), (c.model_type = 'llama'), (c.rope_scaling = { rope_type: 'llama3', factor: 8 })));
    expectCrepe(() => openHfModel(dir), /arch\/config.json: rope_scaling.low_freq_factor must be a positive number, got null/);
    editConfig(dir, (c) => (c.rope_scaling = { type: 'dynamic', factor: 2 }));
    expectCrepe(() => openHfModel(dir), /unsupported rope type "dynamic" in .*arch\/config.json \(rope_scaling\)/);
    editConfig(dir, (c) => ((c.rope_scaling = null), (c.hidden_size = 0)));
    expectCrepe(() => openHfModel(dir), /hidden_size must be a positive integer/);
  });

  test('config defaults and the Mistral sliding window', () => {
    const base = { architectures: ['MistralForCausalLM'], model_type: 'mistral', hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, num_attention_heads: 8, vocab_size: 100 };
    const cfg = parseHfConfig({ ...base, max_position_embeddings: 32768, sliding_window: 4096 }, 'c.json');
    expect(cfg).toMatchObject({ architecture: 'mistral', nKvHeads: 8, headDim: 8, ropeTheta: 10000, normEps: 1e-6, maxSeqLen: 32768, slidingWindow: 4096, tiedEmbeddings: false, ropeLayout: 'half' });
    // transformers' MistralConfig: an absent sliding_window means 4096, null means none.
    expect(parseHfConfig(base, 'c.json')).toMatchObject({ slidingWindow: 4096, maxSeqLen: 131072 });
    expect(parseHfConfig({ ...base, sliding_window: null }, 'c.json').slidingWindow).toBeUndefined();
    expect(parseHfConfig({ ...base, head_dim: 16, num_key_value_heads: 2 }, 'c.json')).toMatchObject({ headDim: 16, nKvHeads: 2 });
    expect(() => parseHfConfig({ ...base, num_key_value_heads: 3 }, 'c.json')).toThrow(/not a multiple/);
  });

  test('corrupt safetensors header, out-of-range offsets, unknown dtype', () => {
    const dir = modelDir('corrupt');
    const file = path.join(dir, 'model.safetensors');
    const bytes = fs.readFileSync(file);
    fs.writeFileSync(file, Buffer.concat([bytes.subarray(0, 8), Buffer.from('not json at all'), bytes.subarray(23)]));
    expectCrepe(() => openHfModel(dir), /corrupt safetensors file .*corrupt\/model.safetensors: header is not valid JSON/);

    const dir2 = modelDir('offsets');
    editHeader(dir2, (h) => (h[hfName.finalNorm].data_offsets = [10 ** 9, 10 ** 9 + 64]));
    expectCrepe(() => openHfModel(dir2), /corrupt safetensors file .*offsets\/model.safetensors: tensor model.norm.weight data .* lies beyond/);

    const dir3 = modelDir('dtype');
    editHeader(dir3, (h) => (h[hfName.linear(1, 'up')].dtype = 'I8'));
    expectCrepe(() => openHfModel(dir3), /unsupported dtype I8 for tensor model.layers.1.mlp.up_proj.weight in .*dtype\/model.safetensors/);
  });

  test('missing tensor and wrong shape', () => {
    const dir = modelDir('missing');
    editHeader(dir, (h) => delete h[hfName.linear(1, 'k')]);
    const hf = openHfModel(dir);
    expect(hf.readBlock(0).linears.k.length).toBe(16 * 32); // other blocks still read
    expectCrepe(() => hf.readBlock(1), /missing tensor model.layers.1.self_attn.k_proj.weight in .*missing\/model.safetensors/);
    hf.close();

    const shape = modelDir('shape');
    const norm = new Float32Array(32);
    writeSafetensors(path.join(shape, 'model.safetensors'), [{ name: hfName.finalNorm, shape: [4, 8], data: norm }], 'F32');
    const hf2 = openHfModel(shape);
    expectCrepe(() => hf2.readFinalNorm(), /tensor model.norm.weight in .* has shape \[4, 8\], config.json implies \[32\]/);
    expectCrepe(() => hf2.readEmbedding(), /missing tensor model.embed_tokens.weight/);
    hf2.close();

    const sharded = out('sharded-missing');
    writeHfModel(new MemorySource(tinyConfig()), sharded, { dtype: 'F32', shardBytes: 8000 });
    const indexFile = path.join(sharded, 'model.safetensors.index.json');
    const index = JSON.parse(fs.readFileSync(indexFile, 'utf8'));
    delete index.weight_map[hfName.norm(2, 'ffnNorm')];
    fs.writeFileSync(indexFile, JSON.stringify(index));
    const hf3 = openHfModel(sharded);
    expectCrepe(() => hf3.readBlock(2), /missing tensor model.layers.2.post_attention_layernorm.weight in .*model.safetensors.index.json/);
    hf3.close();
  });
});
