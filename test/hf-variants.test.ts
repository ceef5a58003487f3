/**
 * Real-world checkpoint variants (test/fixtures/hf-variants: configs written by transformers 4.x
 * and 5.x config classes, weights by the safetensors library, reference log-probs by the
 * independent numpy implementation scripts/reference/hf_llama_numpy.py): crepe computes what
 * the reference computes, round-trips them through its HF writer, prunes and saves Qwen2 with
 * its biases, and refuses what it does not compute in one line that says what the file is.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { initBackend } from '../lib/backend';
import { loadDataset, tokenizeDataset } from '../lib/data/datasets';
import { openHfModel, parseHfConfig } from '../lib/model/hf';
import { ropeInverseFrequencies } from '../lib/model/rope';
import { disposeWindowTables, makePackedTables, makeWindowTables } from '../lib/model/runtime';
import { SafetensorsFile } from '../lib/model/safetensors';
import { LlamaConfig, WeightSource } from '../lib/model/types';
import { OpenedModel } from '../lib/model/resolve';
import { gradForwardLogProbs } from '../lib/search/fisher';
import { loadTokenizer } from '../lib/tokenizers';
import { VARIANTS_DIR, VariantRow, readReference, variantRows, windowLogProbs } from '../scripts/hf-variants';
import { makeTmp, rmTmp } from './helpers';

const CLI = path.resolve(__dirname, '..', 'dist', 'scripts', 'cli.js');
const fixture = (name: string) => path.join(VARIANTS_DIR, name);

let tmp: string;
let rows: VariantRow[];
beforeAll(async () => {
  await initBackend('wasm');
  tmp = makeTmp('crepe-variants-test-');
  rows = variantRows();
});
afterAll(() => rmTmp(tmp));

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

describe('supported variants match the numpy reference', () => {
  test('every fixture loads and agrees to 1e-4; an F32 HF round trip keeps config.json and the log-probs', () => {
    const supported = rows.filter((r) => r.maxAbsError !== undefined);
    expect(supported.map((r) => r.variant)).toEqual(
      expect.arrayContaining(['llama2-4x-f32', 'llama31-4x-llama3-f16', 'llama31-5x-llama3-f32', 'mistral-4x-window-f32', 'qwen2-4x-bf16', 'qwen2-5x-f32', 'llama2c-v1']),
    );
    for (const r of supported) {
      expect({ variant: r.variant, ok: r.maxAbsError! < 1e-4 }).toEqual({ variant: r.variant, ok: true });
      expect({ variant: r.variant, kept: r.roundTrip!.configKept }).toEqual({ variant: r.variant, kept: true });
      // HF → HF F32 is bit-identical; llama2.c → HF changes the RoPE angle precision (see rope.ts)
      expect(r.roundTrip!.maxAbsDiff).toBeLessThanOrEqual(r.variant.startsWith('llama2c') ? 1e-4 : 0);
    }
  });

  test('inv_freq equals transformers\' float32 computation (reference) for default, linear and llama3 rope, to float32 pow\'s last bit', () => {
    for (const name of fs.readdirSync(VARIANTS_DIR).filter((d) => !d.startsWith('llama2c') && fs.existsSync(path.join(fixture(d), 'config.json')))) {
      const cfg = parseHfConfig(JSON.parse(fs.readFileSync(path.join(fixture(name), 'config.json'), 'utf8')), name);
      const expected = readReference(fixture(name)).inv_freq!;
      const inv = ropeInverseFrequencies(cfg);
      expect(inv.length).toBe(expected.length);
      // float32 powf differs between libms by an ulp (numpy vs V8 here): relative 2^-22
      inv.forEach((v, i) => expect({ name, i, close: Math.abs(v - expected[i]) <= Math.abs(expected[i]) * 2 ** -22 }).toEqual({ name, i, close: true }));
    }
  });

  test('the fixtures catch the old bugs: no llama3 scaling, theta 10000 for a 5.x config, no sliding window, no biases', () => {
    const errorWith = (name: string, change: (c: LlamaConfig) => LlamaConfig): number => {
      const src = openHfModel(fixture(name));
      const changed: WeightSource = Object.assign(Object.create(Object.getPrototypeOf(src)), src, { config: change(src.config) });
      const ref = readReference(fixture(name));
      const err = maxAbs(windowLogProbs(changed, ref.ids), ref.logprobs);
      src.close();
      return err;
    };
    expect(errorWith('llama31-5x-llama3-f32', (c) => ({ ...c, ropeScaling: undefined }))).toBeGreaterThan(1e-2);
    expect(errorWith('llama-5x-bf16-sharded', (c) => ({ ...c, ropeTheta: 10000 }))).toBeGreaterThan(1e-2);
    expect(errorWith('llama-4x-linear-f32', (c) => ({ ...c, ropeScaling: undefined }))).toBeGreaterThan(1e-2);
    expect(errorWith('mistral-4x-window-f32', (c) => ({ ...c, slidingWindow: undefined }))).toBeGreaterThan(1e-2);
  });
});

test('packed tables (zero-shot) apply the sliding window like window tables', () => {
  const cfg = openHfModel(fixture('mistral-4x-window-f32'));
  const T = 40;
  const causal = new Float32Array(T * T);
  for (let r = 0; r < T; r++) for (let c = r + 1; c < T; c++) causal[r * T + c] = -1e9;
  const packed = makePackedTables(cfg.config, Array.from({ length: T }, (_, t) => t), causal);
  const plain = makeWindowTables(cfg.config, T);
  expect(Array.from(packed.causal.dataSync())).toEqual(Array.from(plain.causal.dataSync()));
  expect(plain.causal.dataSync()[(T - 1) * T]).toBe(-1e9); // the window (16) hides position 0 from position 39
  disposeWindowTables(packed);
  disposeWindowTables(plain);
  cfg.close();
});

describe('the Fisher proxies\' differentiable forward computes the same variants', () => {
  test.each(['qwen2-4x-bf16', 'llama-4x-biases-f32', 'mistral-4x-window-f32', 'llama31-4x-llama3-f16'])('%s', (name) => {
    const source = openHfModel(fixture(name));
    const ref = readReference(fixture(name));
    // the gradient forward reads only the weights
    const lp = gradForwardLogProbs({ name, source } as OpenedModel, Int32Array.from(ref.ids));
    source.close();
    expect(maxAbs(lp, ref.logprobs)).toBeLessThan(1e-4);
  });
});

describe('refusals name the problem in one line', () => {
  const expected: [string, RegExp][] = [
    ['rope dynamic (4.x rope_scaling)', /unsupported rope type "dynamic" .*config.json \(rope_scaling\)/],
    ['rope yarn (5.x rope_parameters)', /unsupported rope type "yarn" .*\(rope_parameters\)/],
    ['rope longrope', /unsupported rope type "longrope"/],
    ['unknown config key', /unsupported config key "quantization_config"/],
    ['partial rotary', /unsupported partial_rotary_factor 0.5/],
    ['Qwen2 per-layer sliding window', /unsupported per-layer sliding window/],
    ['unused tensor', /unexpected tensor model.layers.0.self_attn.o_proj.bias in .*model.safetensors/],
    ['Git LFS pointer', /model.safetensors is a Git LFS pointer, not the file itself: run git lfs pull/],
    ['PyTorch weights', /pytorch_model.bin holds PyTorch \(pickle\) weights.*convert the model to safetensors/],
    ['tiktoken tokenizer.model', /tokenizer.model is a tiktoken BPE file .*use the model's tokenizer.json/],
    ['llama2.c version 2', /llama2.c version 2 file \(int8 Q8_0 weights\)/],
  ];
  test.each(expected)('%s', (variant, pattern) => {
    const row = rows.find((r) => r.variant === variant)!;
    expect(row.loads).toBe(false);
    expect(row.message).toMatch(pattern);
    expect(row.message).not.toContain('\n');
  });
});

/** A tiny character tokenizer in the Qwen2 convention: no BOS token, no post-processor. */
function writeQwenStyleTokenizer(dir: string): void {
  const chars = [...'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,\n"\'!?-:'];
  const vocab: Record<string, number> = { '<|endoftext|>': 0, '<unk>': 1 };
  chars.forEach((c, i) => (vocab[c] = i + 2));
  expect(Object.keys(vocab).length).toBeLessThanOrEqual(64);
  const special = { id: 0, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true };
  fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify({
    version: '1.0', truncation: null, padding: null, added_tokens: [special], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null,
    model: { type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: false, vocab, merges: [] },
  }));
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: null, eos_token: '<|endoftext|>', add_bos_token: false }));
  fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify({ eos_token_id: 0, max_new_tokens: 8 }));
  fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify({ eos_token: '<|endoftext|>' }));
}

describe('Qwen2: BOS convention, pruning with biases, save back to HF', () => {
  let model: string;
  beforeAll(() => {
    model = path.join(tmp, 'qwen2');
    fs.cpSync(fixture('qwen2-4x-bf16'), model, { recursive: true });
    writeQwenStyleTokenizer(model);
  });

  test('the tokenizer has no BOS and evaluation text does not start with one; Llama-2 style ones do', () => {
    const qwen = loadTokenizer(path.join(model, 'tokenizer.json'));
    expect([qwen.bosId, qwen.addBos]).toEqual([-1, false]);
    const ds = loadDataset('tinystories', 'eval');
    const ids = tokenizeDataset(ds, qwen, 'qwen-style');
    expect(ids[0]).toBe(qwen.encode(ds.text[0])[0]); // the text's first character, no BOS
    const llama = loadTokenizer(path.join(__dirname, 'fixtures', 'spm-feff', 'tokenizer.json'));
    expect([llama.bosId, llama.addBos]).toEqual([1, true]);
    expect(loadTokenizer(path.join(__dirname, 'fixtures', 'spm-feff', 'tokenizer.model')).addBos).toBe(true);
  });

  test('prune --save keeps biases, zeros, dtype, config.json and the tokenizer/generation files', () => {
    const out = path.join(tmp, 'qwen2-pruned');
    const r = spawnSync('node', [CLI, 'prune', '--model', model, '--method', 'wanda', '--sparsity', '0.5', '--nsamples', '4', '--calib-seqlen', '32', '--save', out, '--json'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const result = JSON.parse(r.stdout);
    expect(result.saved_model).toMatchObject({ format: 'hf', dtype: 'BF16' });
    expect(result.saved_model.sparsity).toBeGreaterThanOrEqual(result.achieved_sparsity);
    expect(result.achieved_sparsity).toBeCloseTo(0.5, 2);

    for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json', 'special_tokens_map.json']) {
      expect(fs.readFileSync(path.join(out, f), 'utf8')).toBe(fs.readFileSync(path.join(model, f), 'utf8'));
    }
    expect(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'))).toEqual(JSON.parse(fs.readFileSync(path.join(model, 'config.json'), 'utf8')));

    const src = SafetensorsFile.open(path.join(model, 'model.safetensors'));
    const dst = SafetensorsFile.open(path.join(out, 'model.safetensors'));
    expect(dst.names().sort()).toEqual(src.names().sort());
    for (const name of src.names()) {
      expect(dst.info(name).dtype).toBe('BF16');
      const a = src.readFloat32(name);
      const b = dst.readFloat32(name);
      if (name.endsWith('.bias') || name.includes('norm') || name.includes('embed')) {
        expect({ name, same: a.every((v, i) => v === b[i]) }).toEqual({ name, same: true });
      } else {
        // every weight is either kept exactly (BF16 in, BF16 out) or pruned to zero, about half of each
        let zeros = 0;
        a.forEach((v, i) => {
          if (b[i] === 0) zeros++;
          else expect(b[i]).toBe(v);
        });
        expect(zeros / a.length).toBeCloseTo(0.5, 1);
      }
    }
    src.close();
    dst.close();
  });

  test('convert --to hf keeps Mistral\'s sliding window and every config field', () => {
    const out = path.join(tmp, 'mistral-converted');
    const dir = path.join(tmp, 'mistral');
    fs.cpSync(fixture('mistral-4x-window-f32'), dir, { recursive: true });
    writeQwenStyleTokenizer(dir);
    const r = spawnSync('node', [CLI, 'convert', '--model', dir, '--to', 'hf', '--out', out, '--dtype', 'BF16'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    const src = JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'));
    const written = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8'));
    expect(written).toEqual({ ...src, torch_dtype: 'bfloat16' });
    expect(written.sliding_window).toBe(16);
    expect(openHfModel(out).config.slidingWindow).toBe(16);
  });
});
