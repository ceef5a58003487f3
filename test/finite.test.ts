/**
 * Non-finite and absurd weights are refused by name as they are read (llama2.c and safetensors
 * loaders), a non-finite PPL is an error, --json never writes null for a number, and float16
 * output refuses values it cannot hold.
 */
import * as fs from 'fs';
import * as path from 'path';
import { checkPpl, emit } from '../lib/cli/common';
import { CrepeError } from '../lib/errors';
import { F16_MAX, MAX_ABS_WEIGHT, checkF16Range, checkWeights } from '../lib/io/finite';
import { writeHfModel } from '../lib/model/convert';
import { openHfModel } from '../lib/model/hf';
import { Llama2cSource } from '../lib/model/llama2c';
import { MODELS, MemorySource, makeTmp, rmTmp, runCli, tinyConfig } from './helpers';

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-finite-');
});
afterAll(() => rmTmp(tmp));

/** stories260K with one float replaced at a byte offset; the tokenizer beside it. */
function poked(name: string, offset: number, value: number): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  const bin = path.join(dir, 'model.bin');
  const buf = fs.readFileSync(MODELS.stories260K.bin());
  buf.writeFloatLE(value, offset);
  fs.writeFileSync(bin, buf);
  fs.copyFileSync(MODELS.stories260K.tokenizer(), path.join(dir, 'tok512.bin'));
  return bin;
}

/** Byte offsets of tensors in stories260K.bin, from its header (llama2.c order). */
function offsets() {
  const h = new Int32Array(fs.readFileSync(MODELS.stories260K.bin()).buffer.slice(0, 28));
  const [dim, , layers, , , vocabSigned] = h;
  const vocab = Math.abs(vocabSigned);
  const embedding = 28;
  const attnNorm = embedding + vocab * dim * 4;
  const wq = attnNorm + layers * dim * 4;
  return { embedding, attnNorm, wq, dim };
}

function expectRefusal(r: { code: number | null; stderr: string; stdout: string }, message: RegExp): void {
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toHaveLength(1);
  expect(r.stderr).toMatch(message);
  expect(r.stdout).toBe('');
}

describe('weights are checked as they are read', () => {
  test('eval / prune / ria 2:4 --permute / sparsegpt on a NaN weight refuse naming the tensor', () => {
    const o = offsets();
    const nan = poked('nan', o.wq + 4 * (o.dim + 3), NaN);
    expectRefusal(runCli(['eval', '--model', nan, '--dataset', 'tinystories', '--max-windows', '2']), /tensor blocks\.0\.attn\.q .* holds NaN at index 67/);
    expectRefusal(runCli(['prune', '--model', nan, '--method', 'wanda', '--nsamples', '2', '--eval', 'tinystories', '--max-windows', '2']), /blocks\.0\.attn\.q .*NaN/);
    expectRefusal(runCli(['prune', '--model', nan, '--method', 'ria', '--structure', '2:4', '--permute', '--nsamples', '2']), /blocks\.0\.attn\.q .*NaN/);
    // SparseGPT used to blame the damping ("raise percdamp") for a NaN weight
    const sgpt = runCli(['prune', '--model', nan, '--method', 'sparsegpt', '--nsamples', '2']);
    expectRefusal(sgpt, /blocks\.0\.attn\.q .*NaN/);
    expect(sgpt.stderr).not.toMatch(/percdamp/);
  });

  test('Inf in the embedding and a huge norm gain are refused by name', () => {
    const o = offsets();
    expectRefusal(runCli(['eval', '--model', poked('inf', o.embedding + 40, Infinity), '--dataset', 'tinystories', '--max-windows', '2']), /token_embedding .*Infinity at index 10/);
    expectRefusal(runCli(['eval', '--model', poked('huge', o.attnNorm + 8, 1e30), '--dataset', 'tinystories', '--max-windows', '2']), /blocks\.0\.attn_norm .*1e\+30/);
  });

  test('safetensors (HF) tensors are checked, in F32 and BF16', () => {
    const src = new MemorySource(tinyConfig({ tiedEmbeddings: false }));
    src.blocks[1].linears.down[5] = NaN;
    for (const dtype of ['F32', 'BF16'] as const) {
      const dir = path.join(tmp, `hf-nan-${dtype}`);
      writeHfModel(src, dir, { dtype });
      const hf = openHfModel(dir);
      expect(() => hf.readBlock(0)).not.toThrow();
      expect(() => hf.readBlock(1)).toThrow(/tensor model\.layers\.1\.mlp\.down_proj\.weight in .*model\.safetensors holds NaN at index 5/);
      hf.close();
    }
  });

  test('checkWeights: the limits are what they say (independent scan)', () => {
    const ok = Float32Array.from([0, -MAX_ABS_WEIGHT, MAX_ABS_WEIGHT, 1e-30]);
    expect(checkWeights(ok, 't', 'f')).toBe(ok);
    for (const bad of [NaN, Infinity, -Infinity, MAX_ABS_WEIGHT * 1.01, -3.4e38]) {
      const a = new Float32Array(10);
      a[7] = bad;
      expect(() => checkWeights(a, 'layer.x', 'file.bin')).toThrow(/tensor layer\.x in file\.bin holds .* at index 7/);
    }
  });

  test('the real checkpoints pass (no false alarm)', () => {
    for (const name of ['stories260K', 'babyllama-char'] as const) {
      const src = Llama2cSource.open(MODELS[name].bin());
      for (let b = 0; b < src.config.nLayers; b++) src.readBlock(b);
      src.readEmbedding();
      src.readClassifier();
      src.close();
    }
  });
});

describe('float16 output', () => {
  test('convert --dtype F16 refuses a weight above 65504, naming the tensor and its max; BF16 keeps it', () => {
    const src = new MemorySource(tinyConfig());
    src.blocks[0].linears.up[3] = 70000;
    expect(() => writeHfModel(src, path.join(tmp, 'f16'), { dtype: 'F16' })).toThrow(/tensor model\.layers\.0\.mlp\.up_proj\.weight holds \|w\| up to 70000, above float16's largest 65504/);
    expect(fs.existsSync(path.join(tmp, 'f16'))).toBe(false);
    writeHfModel(src, path.join(tmp, 'bf16'), { dtype: 'BF16' });
    expect(openHfModel(path.join(tmp, 'bf16')).readBlock(0).linears.up[3]).toBe(70144); // bfloat16 rounding of 70000
    expect(() => checkF16Range(Float32Array.from([F16_MAX, -F16_MAX]), 'x')).not.toThrow();
  });
});

describe('perplexity values', () => {
  test('a non-finite PPL is an error', () => {
    for (const v of [NaN, Infinity]) expect(() => checkPpl(v, 'm on d')).toThrow(CrepeError);
    expect(checkPpl(12.5, 'm on d')).toBe(12.5);
  });

  test('--json writes non-finite numbers as strings, never null', () => {
    const out: string[] = [];
    const spy = jest.spyOn(process.stdout, 'write').mockImplementation((s) => {
      out.push(String(s));
      return true;
    });
    try {
      emit(true, { ppl: Infinity, nll: NaN, low: -Infinity, ok: 1.5, nested: [{ v: Infinity }] }, () => '');
    } finally {
      spy.mockRestore();
    }
    expect(out.join('')).not.toContain('null');
    expect(JSON.parse(out.join(''))).toEqual({ ppl: 'Infinity', nll: 'NaN', low: '-Infinity', ok: 1.5, nested: [{ v: 'Infinity' }] });
  });
});
