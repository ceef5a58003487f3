/**
 * The block description (lib/model/block.ts) against checkpoints written by others: every
 * tensor a transformers-written HF fixture holds (names and shapes read straight from the
 * safetensors headers, not through crepe's reader) is one the description predicts for its
 * config.json, and none is missing; llama2.c files have exactly as many floats as the
 * description's norms and linears imply.
 */
import * as fs from 'fs';
import * as path from 'path';
import { assetPath } from '../lib/assets';
import { initBackend } from '../lib/backend';
import { LLAMA_LINEARS, LLAMA_NORMS, blockOf, blockTensorOrder, inputGroups, linearNames, linearShape, registerBlockFamily } from '../lib/model/block';
import { writeHfModel } from '../lib/model/convert';
import { hfTensors, parseHfConfig, registerHfFamily } from '../lib/model/hf';
import { Llama2cSource } from '../lib/model/llama2c';
import { openModel } from '../lib/model/resolve';
import { LlamaModel } from '../lib/model/runtime';
import { saveModel } from '../lib/model/save';
import { BlockWeights, LinearName, LlamaConfig, WeightSource } from '../lib/model/types';
import { pruneModel } from '../lib/prune/pipeline';
import { parseStructure } from '../lib/prune/select';
import { gradForwardLogProbs } from '../lib/search/fisher';
import { VARIANTS_DIR } from '../scripts/hf-variants';
import { MODELS, MemorySource, makeTmp, maxAbsDiff, mulberry32, randomArray, randomTokens, rmTmp } from './helpers';

/** name → shape of every tensor in a folder's .safetensors files, from the raw JSON headers. */
function rawTensorShapes(dir: string): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const f of fs.readdirSync(dir).filter((n) => n.endsWith('.safetensors'))) {
    const buf = fs.readFileSync(path.join(dir, f));
    const len = Number(buf.readBigUInt64LE(0));
    const header = JSON.parse(buf.subarray(8, 8 + len).toString('utf8')) as Record<string, { shape: number[] }>;
    for (const [name, t] of Object.entries(header)) if (name !== '__metadata__') out.set(name, t.shape);
  }
  return out;
}

const hfFixtures = fs
  .readdirSync(VARIANTS_DIR)
  .filter((d) => fs.existsSync(path.join(VARIANTS_DIR, d, 'config.json')))
  .sort();

describe('HF checkpoints written by transformers', () => {
  test('the fixtures cover every registered HF family', () => {
    const families = new Set(hfFixtures.map((d) => (JSON.parse(fs.readFileSync(path.join(VARIANTS_DIR, d, 'config.json'), 'utf8')) as { model_type: string }).model_type));
    expect([...families].sort()).toEqual(['llama', 'mistral', 'qwen2']);
  });

  test.each(hfFixtures)('%s: the description names every tensor with its shape', (dir) => {
    const file = path.join(VARIANTS_DIR, dir, 'config.json');
    const cfg = parseHfConfig(JSON.parse(fs.readFileSync(file, 'utf8')), file);
    const actual = rawTensorShapes(path.join(VARIANTS_DIR, dir));
    // tied models may also store lm_head (transformers ignores it); old exports the rotary buffer
    for (const n of [...actual.keys()]) if ((cfg.tiedEmbeddings && n === 'lm_head.weight') || n.endsWith('rotary_emb.inv_freq')) actual.delete(n);
    const predicted = new Map(hfTensors(cfg).map((t) => [t.name, t.shape]));
    expect([...predicted.keys()].sort()).toEqual([...actual.keys()].sort());
    for (const [name, shape] of predicted) expect([name, shape]).toEqual([name, actual.get(name)]);
    // per block: 2 norms + 7 linears + the family's biases (Qwen2: q/k/v always)
    const perBlock = [...actual.keys()].filter((n) => n.startsWith('model.layers.0.')).length;
    const biases = [...actual.keys()].filter((n) => n.startsWith('model.layers.0.') && n.endsWith('.bias')).length;
    expect(perBlock).toBe(2 + 7 + biases);
    if (cfg.architecture === 'qwen2') expect(cfg.biases).toEqual(['q', 'k', 'v']);
  });
});

describe('llama2.c checkpoints', () => {
  const files = [
    ['stories260K', assetPath('models', 'stories260K', 'stories260K.bin')],
    ['babyllama-char', assetPath('models', 'babyllama-char', 'model5000.bin')],
    ['llama2c-v1 fixture', path.join(VARIANTS_DIR, 'llama2c-v1', 'model.bin')],
  ];
  test.each(files)('%s: the file size is the description\'s floats', (_label, file) => {
    const src = Llama2cSource.open(file);
    const cfg = src.config;
    src.close();
    let blockFloats = blockOf(cfg).norms.length * cfg.dim;
    for (const l of linearNames(cfg)) blockFloats += linearShape(cfg, l)[0] * linearShape(cfg, l)[1];
    // embedding, final norm, classifier when not shared; legacy files add RoPE tables and a 28-byte header, version 1 a 256-byte one
    const v1 = fs.readFileSync(file).readUInt32LE(0) === 0x616b3432;
    const other = cfg.vocabSize * cfg.dim * (cfg.tiedEmbeddings ? 1 : 2) + cfg.dim + (v1 ? 0 : cfg.maxSeqLen * cfg.headDim);
    const bytes = (v1 ? 256 : 28) + 4 * (cfg.nLayers * blockFloats + other);
    expect(fs.statSync(file).size).toBe(bytes);
    // an independent count for the LLaMA block: 4 attention projections, 3 MLP ones
    const q = cfg.nHeads * cfg.headDim;
    const kv = cfg.nKvHeads * cfg.headDim;
    expect(blockFloats).toBe(2 * cfg.dim + cfg.dim * (2 * q + 2 * kv) + 3 * cfg.dim * cfg.hiddenDim);
  });
});

describe('the description itself', () => {
  const cfg: LlamaConfig = {
    architecture: 'llama', dim: 8, hiddenDim: 12, nLayers: 1, nHeads: 4, nKvHeads: 2, headDim: 2, vocabSize: 10,
    maxSeqLen: 16, normEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: true, biases: ['q', 'o'],
  };
  test('input groups and execution order', () => {
    expect(inputGroups(cfg)).toEqual([['q', 'k', 'v'], ['o'], ['gate', 'up'], ['down']]);
    const order = blockTensorOrder(cfg).map((t) => ('norm' in t ? t.norm.name : t.bias ? `${t.linear.name}+b` : t.linear.name));
    expect(order).toEqual(['attnNorm', 'q+b', 'k', 'v', 'o+b', 'ffnNorm', 'gate', 'up', 'down']);
  });
  test('an unknown family is refused by name', () => {
    expect(() => linearNames({ architecture: 'gpt2' })).toThrow(/unknown model family "gpt2"/);
  });
});

// ---------------------------------------------------------------------------------------------
// The design test: a family that differs from LLaMA by its biases and its tensor names is one
// block description and one loader mapping; the runtime, the Fisher pass, the pruning pipeline
// and the HF writer/reader run it unchanged.

const TOY_FAMILY = 'toy-biased';
registerBlockFamily({
  family: TOY_FAMILY,
  linears: LLAMA_LINEARS.map((l) => ({ ...l, hf: `mix.${l.name}_lin` })),
  norms: LLAMA_NORMS.map((n) => ({ ...n, hf: `${n.name}_gain` })),
  biases: { always: ['q', 'o', 'up', 'down'] },
});
registerHfFamily({ modelType: TOY_FAMILY, architecture: 'ToyBiasedForCausalLM', defaults: { maxPositions: 64, normEps: 1e-6, slidingWindow: null } });

const TOY_CONFIG_JSON = {
  architectures: ['ToyBiasedForCausalLM'], model_type: TOY_FAMILY, hidden_size: 32, intermediate_size: 40, num_hidden_layers: 2,
  num_attention_heads: 4, num_key_value_heads: 2, vocab_size: 512, max_position_embeddings: 64, rms_norm_eps: 1e-6,
  rope_theta: 10000, tie_word_embeddings: false,
};

/** MemorySource plus random output biases on the config's biased linears. */
class BiasedSource extends MemorySource {
  readonly biases: Partial<Record<LinearName, Float32Array>>[];
  constructor(config: LlamaConfig) {
    super(config, 7);
    const rng = mulberry32(99);
    this.biases = this.blocks.map(() => Object.fromEntries((config.biases ?? []).map((l) => [l, randomArray(linearShape(config, l)[0], rng, 0.5)])));
  }
  override readBlock(i: number): BlockWeights {
    return { ...super.readBlock(i), biases: Object.fromEntries(Object.entries(this.biases[i]).map(([k, v]) => [k, v!.slice()])) };
  }
}

/**
 * log p(tokens[t+1] | tokens[..t]) in float64 by the textbook LLaMA block with output biases,
 * written from the definitions (rotate_half RoPE, grouped-query causal attention, SwiGLU),
 * independent of crepe's runtime.
 */
function referenceLogProbs(src: WeightSource, tokens: Int32Array): Float64Array {
  const c = src.config;
  const { dim, headDim: hd, nHeads, nKvHeads, hiddenDim } = c;
  const T = tokens.length;
  const emb = src.readEmbedding();
  const lin = (x: Float64Array[], w: Float32Array, b: Float32Array | undefined, out: number, inF: number): Float64Array[] =>
    x.map((row) => Float64Array.from({ length: out }, (_, o) => {
      let s = b ? b[o] : 0;
      for (let i = 0; i < inF; i++) s += w[o * inF + i] * row[i];
      return s;
    }));
  const norm = (x: Float64Array[], g: Float32Array): Float64Array[] =>
    x.map((row) => {
      const r = 1 / Math.sqrt(row.reduce((a, v) => a + v * v, 0) / row.length + c.normEps);
      return row.map((v, i) => v * r * g[i]);
    });
  const rope = (v: Float64Array, t: number): Float64Array => {
    const out = new Float64Array(v.length);
    for (let h = 0; h < v.length / hd; h++) {
      for (let i = 0; i < hd / 2; i++) {
        const a = t / Math.pow(c.ropeTheta, (2 * i) / hd);
        const [x1, x2] = [v[h * hd + i], v[h * hd + i + hd / 2]];
        out[h * hd + i] = x1 * Math.cos(a) - x2 * Math.sin(a);
        out[h * hd + i + hd / 2] = x2 * Math.cos(a) + x1 * Math.sin(a);
      }
    }
    return out;
  };
  let x = Array.from(tokens, (tok) => Float64Array.from(emb.subarray(tok * dim, (tok + 1) * dim)));
  for (let bi = 0; bi < c.nLayers; bi++) {
    const w = src.readBlock(bi);
    const bias = w.biases ?? {};
    const xn = norm(x, w.norms.attnNorm);
    const q = lin(xn, w.linears.q, bias.q, nHeads * hd, dim).map(rope);
    const k = lin(xn, w.linears.k, bias.k, nKvHeads * hd, dim).map(rope);
    const v = lin(xn, w.linears.v, bias.v, nKvHeads * hd, dim);
    const att = Array.from({ length: T }, () => new Float64Array(nHeads * hd));
    for (let h = 0; h < nHeads; h++) {
      const kvh = Math.floor(h / (nHeads / nKvHeads));
      for (let t = 0; t < T; t++) {
        const s = Array.from({ length: t + 1 }, (_, u) => {
          let d = 0;
          for (let e = 0; e < hd; e++) d += q[t][h * hd + e] * k[u][kvh * hd + e];
          return d / Math.sqrt(hd);
        });
        const m = Math.max(...s);
        const p = s.map((z) => Math.exp(z - m));
        const z = p.reduce((a2, b2) => a2 + b2, 0);
        for (let u = 0; u <= t; u++) for (let e = 0; e < hd; e++) att[t][h * hd + e] += (p[u] / z) * v[u][kvh * hd + e];
      }
    }
    const o = lin(att, w.linears.o, bias.o, dim, nHeads * hd);
    const x1 = x.map((row, t) => row.map((val, i) => val + o[t][i]));
    const xn2 = norm(x1, w.norms.ffnNorm);
    const gate = lin(xn2, w.linears.gate, bias.gate, hiddenDim, dim);
    const up = lin(xn2, w.linears.up, bias.up, hiddenDim, dim);
    const hidden = gate.map((row, t) => row.map((g, i) => (g / (1 + Math.exp(-g))) * up[t][i]));
    const down = lin(hidden, w.linears.down, bias.down, dim, hiddenDim);
    x = x1.map((row, t) => row.map((val, i) => val + down[t][i]));
  }
  const logits = lin(norm(x, src.readFinalNorm()), src.readClassifier(), undefined, c.vocabSize, dim);
  return Float64Array.from({ length: T - 1 }, (_, t) => {
    const m = Math.max(...logits[t]);
    const lse = m + Math.log(logits[t].reduce((a, v) => a + Math.exp(v - m), 0));
    return logits[t][tokens[t + 1]] - lse;
  });
}

describe(`a test-only family (${TOY_FAMILY}): biases on q, o, up, down and its own tensor names`, () => {
  let tmp: string;
  let dir: string;
  let src: BiasedSource;
  const tokens = randomTokens(24, 512, 5);
  beforeAll(async () => {
    await initBackend('wasm');
    tmp = makeTmp('crepe-family-');
    dir = path.join(tmp, 'toy');
    const cfg = parseHfConfig(TOY_CONFIG_JSON, 'config.json');
    expect(cfg.biases).toEqual(['q', 'o', 'up', 'down']);
    src = new BiasedSource(cfg);
    writeHfModel(src, dir, { dtype: 'F32', tokenizer: MODELS.stories260K.tokenizer() });
  });
  afterAll(() => rmTmp(tmp));

  test('the HF writer names its tensors from the description and the reader reads them back', () => {
    const names = [...rawTensorShapes(dir).keys()];
    expect(names).toContain('model.layers.1.mix.o_lin.bias');
    expect(names).toContain('model.layers.0.ffnNorm_gain.weight');
    expect(names.filter((n) => n.endsWith('.bias')).length).toBe(2 * 4);
    const hf = openModel(dir);
    const back = hf.source.readBlock(1);
    hf.source.close();
    expect(back).toEqual(src.readBlock(1));
  });

  test('runtime and Fisher pass: the reference log-probabilities (1e-4)', () => {
    const hf = openModel(dir);
    const want = referenceLogProbs(src, tokens);
    const lm = LlamaModel.fromSource(hf.source);
    const got = lm.windowLogProbs(tokens);
    lm.dispose();
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-4);
    expect(maxAbsDiff(gradForwardLogProbs(hf, tokens), want)).toBeLessThan(1e-4);
    // the biases matter: without them the numbers are far off
    const plain = new MemorySource(src.config, 7);
    expect(maxAbsDiff(referenceLogProbs(plain, tokens), want)).toBeGreaterThan(0.01);
    hf.source.close();
  });

  test('pruned and saved: 50% of every linear, biases kept, the saved file computes what the pruned model does', () => {
    const hf = openModel(dir);
    const out = pruneModel(hf, {
      method: 'wanda', params: {}, structure: parseStructure('unstructured', 0.5, 'row'),
      calibration: { dataset: 'tinystories', nsamples: 4, seqlen: 32, seed: 0 }, propagate: 'pruned',
    });
    const saved = path.join(tmp, 'pruned');
    saveModel(out.source, saved, { format: 'hf' });
    const re = openModel(saved, MODELS.stories260K.tokenizer());
    for (let b = 0; b < src.config.nLayers; b++) {
      const w = re.source.readBlock(b);
      expect(w.biases).toEqual(src.readBlock(b).biases);
      for (const l of linearNames(src.config)) expect(w.linears[l].filter((v) => v === 0).length).toBe(w.linears[l].length / 2);
    }
    expect(maxAbsDiff(referenceLogProbs(re.source, tokens), referenceLogProbs(out.source, tokens))).toBe(0);
    const lm = LlamaModel.fromSource(re.source);
    expect(maxAbsDiff(lm.windowLogProbs(tokens), referenceLogProbs(out.source, tokens))).toBeLessThan(1e-4);
    lm.dispose();
    re.source.close();
    out.source.close();
  });
});
