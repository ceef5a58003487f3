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
import { blockOf, blockTensorOrder, inputGroups, linearNames, linearShape } from '../lib/model/block';
import { hfTensors, parseHfConfig } from '../lib/model/hf';
import { Llama2cSource } from '../lib/model/llama2c';
import { LlamaConfig } from '../lib/model/types';
import { VARIANTS_DIR } from '../scripts/hf-variants';

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
