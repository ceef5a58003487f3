/**
 * Folders crepe writes in the HF format load with transformers' AutoModelForCausalLM and
 * AutoTokenizer: checked here without transformers, by the rules its loaders apply
 * (configuration_llama.py's typed fields and head check, modeling_utils' safetensors metadata
 * check and state-dict names and shapes of LlamaForCausalLM, the safetensors header rules,
 * AutoTokenizer's tokenizer_config.json -> tokenizer.json path), and with the HF tokenizers
 * library reading tokenizer.json back against the source tokenizer's own ids.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Tokenizer as HfLibTokenizer } from '@huggingface/tokenizers';
import { loadTokenizer } from '../lib/tokenizers';
import { tokenizerToHf } from '../lib/tokenizers/export';
import { writeHfModel } from '../lib/model/convert';
import { openModel } from '../lib/model/resolve';
import { WeightSource } from '../lib/model/types';
import { RECIPE_FILE, convertedModelCard } from '../lib/model/card';
import { ownershipFile } from '../lib/io/ownership';
import { makeTmp, oneLineCrepeError, rmTmp, runCli } from './helpers';

let tmp: string;
const saved: Record<string, { dir: string; json: Record<string, any> }> = {};

const SPECIAL_TEXT = /<s>|<\/s>|<unk>/;

/**
 * The string corpus of the tokenizer tests (test/fixtures/spm-feff: TinyStories and WikiText
 * lines, words, edge cases), plus strings aimed at these tokenizers' normalization: literal
 * U+2581, runs of spaces, leading/trailing whitespace, characters outside the vocabularies.
 */
function corpus(): string[] {
  const fixture = JSON.parse(fs.readFileSync(path.join(__dirname, 'fixtures', 'spm-feff', 'expected-ids.json'), 'utf8')) as { cases: { text: string }[] };
  return [
    ...fixture.cases.map((c) => c.text),
    '\u2581', 'a\u2581', '\u2581\u2581b', ' \u2581 ', '   ', 'x   y', '  lead', 'trail  ', '\n lead', 'tail \n', ' \t ', 'a\n\nb  c',
    'Lily and Ben went to the park. "Look!" she said.', '\u00e9\u00e8\u00ea \u4e2d\u6587 \ud83d\ude00', '\u0000nul', '~`|\\^',
  ];
}

beforeAll(() => {
  tmp = makeTmp('crepe-hf-export-');
  const runs: Record<string, string[]> = {
    stories260K: ['--method', 'wanda', '--nsamples', '4', '--calib-seqlen', '64', '--eval', 'tinystories', '--seqlen', '64', '--max-windows', '4'],
    'babyllama-char': ['--method', 'magnitude', '--structure', '2:4'],
  };
  for (const [model, args] of Object.entries(runs)) {
    const dir = path.join(tmp, model);
    const r = runCli(['prune', '--model', model, ...args, '--save', dir, '--json']);
    if (r.code !== 0) throw new Error(`prune ${model} failed: ${r.stderr}`);
    saved[model] = { dir, json: JSON.parse(r.stdout) };
  }
}, 120_000);
afterAll(() => rmTmp(tmp));

describe('tokenizer.json reproduces the source tokenizer', () => {
  test.each(['stories260K', 'babyllama-char'])('%s: the HF tokenizers library gives the source ids on the corpus, BOS by its template', (model) => {
    const { dir } = saved[model];
    const source = openModel(model);
    source.source.close();
    const src = source.tokenizer;
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const config = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8'));
    const lib = new HfLibTokenizer(json, config);
    const texts = corpus();
    const unkId = lib.token_to_id('<unk>') ?? -1;
    let compared = 0;
    let idsCompared = 0;
    let decoded = 0;
    for (const text of texts) {
      const ids = Array.from(src.encode(text));
      const hfIds = lib.encode(text, { add_special_tokens: false }).ids;
      if (SPECIAL_TEXT.test(text)) {
        // The one intended difference: HF tokenizers (like transformers) read a special token's
        // text as that token; llama2.c and sentencepiece spell it out.
        continue;
      }
      expect({ text, ids: hfIds }).toEqual({ text, ids });
      expect({ text, ids: lib.encode(text).ids }).toEqual({ text, ids: [src.bosId, ...ids] });
      // Decoding agrees too, except for unk (sentencepiece shows its unk_surface, HF skips it as
      // special), a literal U+2581 at the start (sentencepiece drops every leading space piece
      // when it squeezes whitespace, LlamaConverter's decoder one space) and U+FEFF (the JS
      // library decodes bytes with TextDecoder, which drops it as a byte-order mark).
      if (ids.length > 0 && !ids.includes(unkId) && !/^\s*\u2581|\ufeff/.test(text)) {
        expect({ text, decoded: lib.decode(hfIds, { skip_special_tokens: true }) }).toEqual({ text, decoded: src.decode(ids) });
        decoded++;
      }
      compared++;
      idsCompared += ids.length;
    }
    expect(compared).toBeGreaterThanOrEqual(340);
    expect(idsCompared).toBeGreaterThan(10_000);
    expect(lib.encode('<s>', { add_special_tokens: false }).ids).toEqual([src.bosId]);
    // crepe reads the folder back with the same convention (tokenizer.json is found first).
    const back = loadTokenizer(path.join(dir, 'tokenizer.json'));
    expect([back.bosId, back.eosId, back.addBos, back.vocabSize]).toEqual([src.bosId, src.eosId, src.addBos, src.vocabSize]);
    expect(decoded).toBeGreaterThan(250);
    console.log(`${model}: ${compared} of ${texts.length} strings, ${idsCompared} ids equal (strings naming a special token skipped: ${texts.length - compared}); ${decoded} decoded equal`);
  });

  test('a sentencepiece BPE model with merges (test/fixtures/spm-feff): transformers\' LlamaConverter\'s vocabulary, merges and normalizer, and the sentencepiece library\'s ids', () => {
    const dir = path.join(__dirname, 'fixtures', 'spm-feff');
    const src = loadTokenizer(path.join(dir, 'tokenizer.model'));
    const files = tokenizerToHf(src, { modelMaxLength: 512 })!;
    const reference = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer.json'), 'utf8'));
    const model = files.tokenizer.model as { vocab: Record<string, number>; merges: string[] };
    expect(model.vocab).toEqual(reference.model.vocab);
    expect(model.merges).toEqual(reference.model.merges.map((m: string | string[]) => (Array.isArray(m) ? m.join(' ') : m)));
    expect(model.merges.length).toBeGreaterThan(700);
    expect(files.tokenizer.normalizer).toEqual(reference.normalizer);
    const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected-ids.json'), 'utf8')) as { cases: { text: string; ids: number[] }[] };
    const lib = new HfLibTokenizer(files.tokenizer, files.tokenizerConfig);
    let compared = 0;
    for (const { text, ids } of expected.cases) {
      if (SPECIAL_TEXT.test(text)) continue;
      expect({ text, ids: lib.encode(text, { add_special_tokens: false }).ids }).toEqual({ text, ids });
      compared++;
    }
    expect(compared).toBe(330);
  });

  test('the saved folder evaluates to the perplexity prune measured on the pruned model', () => {
    const { dir, json } = saved.stories260K;
    const r = runCli(['eval', '--model', dir, '--dataset', 'tinystories', '--seqlen', '64', '--max-windows', '4', '--json']);
    expect(r.code).toBe(0);
    const back = JSON.parse(r.stdout);
    // Same tokens through tokenizer.json; the PPL agrees to float32 summation order (the saved
    // q/k rows are in HF's rotate_half order, so the matmuls add in another order).
    expect([back.tokens, back.windows, back.slice]).toEqual([json.eval[0].tokens, json.eval[0].windows, json.eval[0].slice]);
    expect(Math.abs(back.ppl / json.eval[0].pruned_ppl - 1)).toBeLessThan(1e-5);
  });
});

// ---------------------------------------------------------------------------------------------
// transformers' loading rules

const DTYPE_BYTES: Record<string, number> = { F32: 4, F16: 2, BF16: 2 };
const TORCH_DTYPES = ['float32', 'float16', 'bfloat16'];

/** The safetensors header, or a problem: 8-byte little-endian length, a JSON object, offsets that tile the data exactly. */
function safetensorsHeader(file: string, problems: string[]): Record<string, { dtype: string; shape: number[] }> {
  const buf = fs.readFileSync(file);
  const tensors: Record<string, { dtype: string; shape: number[] }> = {};
  if (buf.length < 8) {
    problems.push(`${file}: shorter than its length prefix`);
    return tensors;
  }
  const n = Number(buf.readBigUInt64LE(0));
  if (8 + n > buf.length) {
    problems.push(`${file}: header length ${n} beyond the file`);
    return tensors;
  }
  const text = buf.subarray(8, 8 + n).toString('utf8');
  if (!text.startsWith('{')) problems.push(`${file}: header does not start with {`);
  const header = JSON.parse(text) as Record<string, any>;
  const meta = header.__metadata__;
  if (!meta || typeof meta !== 'object') problems.push(`${file}: no __metadata__ (transformers reads metadata.get("format"))`);
  else {
    if (!['pt', 'tf', 'flax', 'mlx'].includes(meta.format)) problems.push(`${file}: metadata format ${meta.format} is not one transformers accepts`);
    for (const [k, v] of Object.entries(meta)) if (typeof v !== 'string') problems.push(`${file}: metadata ${k} is not a string`);
  }
  const spans: [number, number, string][] = [];
  for (const [name, t] of Object.entries(header)) {
    if (name === '__metadata__') continue;
    if (!(t.dtype in DTYPE_BYTES)) problems.push(`${name}: dtype ${t.dtype}`);
    if (!Array.isArray(t.shape) || !t.shape.every((d: unknown) => Number.isInteger(d) && (d as number) >= 0)) problems.push(`${name}: bad shape`);
    const [b, e] = t.data_offsets;
    const count = (t.shape as number[]).reduce((a, d) => a * d, 1);
    if (e - b !== count * (DTYPE_BYTES[t.dtype] ?? NaN)) problems.push(`${name}: ${e - b} bytes for ${count} ${t.dtype} values`);
    spans.push([b, e, name]);
    tensors[name] = { dtype: t.dtype, shape: t.shape };
  }
  spans.sort((x, y) => x[0] - y[0]);
  let at = 0;
  for (const [b, e, name] of spans) {
    if (b !== at) problems.push(`${name}: data starts at ${b}, expected ${at} (gap or overlap)`);
    at = e;
  }
  if (at !== buf.length - 8 - n) problems.push(`${file}: tensors cover ${at} bytes of ${buf.length - 8 - n}`);
  return tensors;
}

/**
 * Everything in `dir` that would make AutoModelForCausalLM / AutoTokenizer (transformers 4.x or
 * 5.x) refuse or misread the folder, as a list of problems (empty: it loads).
 */
function transformersLoadProblems(dir: string): string[] {
  const problems: string[] = [];
  const read = (name: string): any => {
    const p = path.join(dir, name);
    if (!fs.existsSync(p)) {
      problems.push(`missing ${name}`);
      return {};
    }
    try {
      return JSON.parse(fs.readFileSync(p, 'utf8'));
    } catch (e) {
      problems.push(`${name}: ${(e as Error).message}`);
      return {};
    }
  };
  const hidden = fs.readdirSync(dir).filter((f) => f.startsWith('.'));
  if (hidden.length) problems.push(`hidden files ${hidden.join(', ')}`);

  // config.json as LlamaConfig reads it (typed fields of the @strict dataclass in 5.x).
  const c = read('config.json');
  const isInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v);
  if (JSON.stringify(c.architectures) !== '["LlamaForCausalLM"]' || c.model_type !== 'llama') problems.push('config.json: not a LlamaForCausalLM / llama config');
  for (const k of ['vocab_size', 'hidden_size', 'intermediate_size', 'num_hidden_layers', 'num_attention_heads', 'num_key_value_heads', 'max_position_embeddings']) {
    if (!isInt(c[k]) || c[k] <= 0) problems.push(`config.json: ${k} must be a positive int, is ${JSON.stringify(c[k])}`);
  }
  if (c.head_dim != null && !isInt(c.head_dim)) problems.push('config.json: head_dim must be an int');
  for (const k of ['rms_norm_eps', 'rope_theta']) if (typeof c[k] !== 'number' || !(c[k] > 0)) problems.push(`config.json: ${k} must be a positive float`);
  for (const k of ['tie_word_embeddings', 'attention_bias', 'mlp_bias']) if (c[k] !== undefined && typeof c[k] !== 'boolean') problems.push(`config.json: ${k} must be a bool`);
  if (c.hidden_act !== 'silu') problems.push(`config.json: hidden_act ${c.hidden_act}`);
  if (c.rope_scaling !== undefined && c.rope_scaling !== null && typeof c.rope_scaling !== 'object') problems.push('config.json: rope_scaling must be null or an object');
  if (c.hidden_size % c.num_attention_heads !== 0) problems.push('config.json: hidden_size is not a multiple of num_attention_heads (LlamaConfig.validate_architecture)');
  if (c.num_attention_heads % c.num_key_value_heads !== 0) problems.push('config.json: num_attention_heads is not a multiple of num_key_value_heads');
  if (!TORCH_DTYPES.includes(c.torch_dtype ?? c.dtype)) problems.push(`config.json: dtype ${c.torch_dtype ?? c.dtype}`);
  for (const k of ['bos_token_id', 'eos_token_id', 'pad_token_id']) {
    if (c[k] != null && !(isInt(c[k]) && c[k] >= 0 && c[k] < c.vocab_size)) problems.push(`config.json: ${k} ${c[k]} is not a token id`);
  }
  if (!isInt(c.bos_token_id) || !isInt(c.eos_token_id)) problems.push('config.json: bos_token_id / eos_token_id missing');

  // LlamaForCausalLM's state dict: names and shapes, derived here from the config alone.
  const H = c.hidden_size;
  const I = c.intermediate_size;
  const hd = c.head_dim ?? H / c.num_attention_heads;
  const expected: Record<string, number[]> = { 'model.embed_tokens.weight': [c.vocab_size, H], 'model.norm.weight': [H] };
  for (let l = 0; l < c.num_hidden_layers; l++) {
    const p = `model.layers.${l}.`;
    Object.assign(expected, {
      [`${p}input_layernorm.weight`]: [H],
      [`${p}post_attention_layernorm.weight`]: [H],
      [`${p}self_attn.q_proj.weight`]: [c.num_attention_heads * hd, H],
      [`${p}self_attn.k_proj.weight`]: [c.num_key_value_heads * hd, H],
      [`${p}self_attn.v_proj.weight`]: [c.num_key_value_heads * hd, H],
      [`${p}self_attn.o_proj.weight`]: [H, c.num_attention_heads * hd],
      [`${p}mlp.gate_proj.weight`]: [I, H],
      [`${p}mlp.up_proj.weight`]: [I, H],
      [`${p}mlp.down_proj.weight`]: [H, I],
    });
  }
  if (!c.tie_word_embeddings) expected['lm_head.weight'] = [c.vocab_size, H];
  const files = fs.existsSync(path.join(dir, 'model.safetensors.index.json'))
    ? [...new Set(Object.values(read('model.safetensors.index.json').weight_map as Record<string, string>))]
    : ['model.safetensors'];
  const found: Record<string, { dtype: string; shape: number[] }> = {};
  for (const f of files) {
    if (!fs.existsSync(path.join(dir, f))) problems.push(`missing ${f}`);
    else Object.assign(found, safetensorsHeader(path.join(dir, f), problems));
  }
  const wantDtype = { float32: 'F32', float16: 'F16', bfloat16: 'BF16' }[(c.torch_dtype ?? c.dtype) as string];
  for (const [name, shape] of Object.entries(expected)) {
    if (!found[name]) problems.push(`missing tensor ${name}`);
    else if (found[name].shape.join() !== shape.join()) problems.push(`${name}: shape [${found[name].shape}] not [${shape}]`);
    else if (found[name].dtype !== wantDtype) problems.push(`${name}: ${found[name].dtype}, config says ${wantDtype}`);
  }
  for (const name of Object.keys(found)) {
    if (!(name in expected) && !(name === 'lm_head.weight' && c.tie_word_embeddings)) problems.push(`unexpected tensor ${name}`);
  }

  // AutoTokenizer: tokenizer_config.json names a class whose loader runs tokenizer.json; the
  // special tokens exist there with the ids config.json and generation_config.json give.
  const tc = read('tokenizer_config.json');
  const tj = read('tokenizer.json');
  const sm = read('special_tokens_map.json');
  const gen = read('generation_config.json');
  if (tc.tokenizer_class !== 'PreTrainedTokenizerFast' && tc.tokenizer_class !== 'LlamaTokenizerFast') problems.push(`tokenizer_class ${tc.tokenizer_class}`);
  try {
    new HfLibTokenizer(tj, tc);
  } catch (e) {
    problems.push(`tokenizer.json does not load: ${(e as Error).message}`);
  }
  const vocab: Record<string, number> = tj.model?.vocab ?? {};
  const added = new Map<string, number>(((tj.added_tokens ?? []) as { content: string; id: number; special: boolean }[]).filter((t) => t.special).map((t) => [t.content, t.id]));
  const maxId = Math.max(...Object.values(vocab), ...added.values());
  if (!(maxId < c.vocab_size)) problems.push(`tokenizer id ${maxId} has no embedding row (vocab_size ${c.vocab_size})`);
  const idOf = (token: unknown) => (typeof token === 'string' ? added.get(token) : undefined);
  for (const [k, cfgKey] of [['bos_token', 'bos_token_id'], ['eos_token', 'eos_token_id']] as const) {
    const id = idOf(tc[k]);
    if (id === undefined) problems.push(`tokenizer_config.json ${k} ${JSON.stringify(tc[k])} is not a special token of tokenizer.json`);
    else if (id !== c[cfgKey]) problems.push(`${k}: id ${id} in tokenizer.json, ${c[cfgKey]} in config.json`);
    if (gen[cfgKey] !== c[cfgKey]) problems.push(`generation_config.json ${cfgKey} ${gen[cfgKey]} differs from config.json's ${c[cfgKey]}`);
    if (sm[k]?.content !== tc[k]) problems.push(`special_tokens_map.json ${k} differs from tokenizer_config.json`);
  }
  if (tc.unk_token !== undefined && idOf(tc.unk_token) === undefined) problems.push('unk_token is not a special token of tokenizer.json');
  for (const [id, entry] of Object.entries((tc.added_tokens_decoder ?? {}) as Record<string, { content: string }>)) {
    if (added.get(entry.content) !== Number(id)) problems.push(`added_tokens_decoder ${id} ${entry.content} disagrees with tokenizer.json`);
  }
  if (!(isInt(tc.model_max_length) && tc.model_max_length <= c.max_position_embeddings)) problems.push('model_max_length beyond the context');
  if (tc.add_bos_token === true) {
    const first = tj.post_processor?.single?.[0]?.SpecialToken?.id;
    if (first !== tc.bos_token) problems.push('add_bos_token is true but the post-processor does not start with BOS');
  }
  return problems;
}

describe('a folder crepe writes passes the checks transformers applies when loading', () => {
  test.each(['stories260K', 'babyllama-char'])('%s pruned with --save', (model) => {
    expect(transformersLoadProblems(saved[model].dir)).toEqual([]);
  });

  test('a sharded BF16 conversion with its own classifier, and each kind of fault the checks catch', () => {
    const m = openModel('babyllama-char');
    const dir = path.join(tmp, 'sharded');
    const s = m.source;
    const untied: WeightSource = {
      config: { ...s.config, tiedEmbeddings: false },
      format: s.format,
      origin: s.origin,
      readEmbedding: () => s.readEmbedding(),
      readBlock: (b) => s.readBlock(b),
      readFinalNorm: () => s.readFinalNorm(),
      readClassifier: () => s.readClassifier(),
      close: () => s.close(),
    };
    writeHfModel(untied, dir, { dtype: 'BF16', shardBytes: 200_000, tokenizer: m.tokenizerPath });
    m.source.close();
    expect(fs.existsSync(path.join(dir, 'model.safetensors.index.json'))).toBe(true);
    expect(transformersLoadProblems(dir)).toEqual([]);

    // Each fault, in a copy of the stories260K folder, is reported.
    const faults: [string, (d: string) => void, RegExp][] = [
      ['config type', (d) => edit(d, 'config.json', (j) => ({ ...j, hidden_size: 64.5 })), /hidden_size must be a positive int/],
      ['bos id', (d) => edit(d, 'config.json', (j) => ({ ...j, bos_token_id: 2 })), /bos_token: id 1 in tokenizer.json, 2 in config.json/],
      ['metadata', (d) => rewriteHeader(d, (h) => ({ ...h, __metadata__: { format: 'np' } })), /metadata format np/],
      ['tensor shape', (d) => rewriteHeader(d, (h) => ({ ...h, 'model.norm.weight': { ...h['model.norm.weight'], shape: [32, 2] } })), /model.norm.weight: shape/],
      ['missing tensor', (d) => rewriteHeader(d, (h) => { const { ['model.layers.4.mlp.down_proj.weight']: _, ...rest } = h; return rest; }), /missing tensor model.layers.4.mlp.down_proj.weight/],
      ['tokenizer class', (d) => edit(d, 'tokenizer_config.json', (j) => ({ ...j, bos_token: '<bos>' })), /bos_token "<bos>" is not a special token/],
      ['hidden file', (d) => fs.writeFileSync(path.join(d, '.crepe-output'), '{}'), /hidden files/],
    ];
    for (const [name, breakIt, message] of faults) {
      const copy = path.join(tmp, `fault-${name.replace(/ /g, '-')}`);
      fs.cpSync(saved.stories260K.dir, copy, { recursive: true });
      breakIt(copy);
      expect({ name, problems: transformersLoadProblems(copy).join('; ') }).toEqual({ name, problems: expect.stringMatching(message) });
    }
  });
});

function edit(dir: string, file: string, f: (j: Record<string, unknown>) => Record<string, unknown>): void {
  const p = path.join(dir, file);
  fs.writeFileSync(p, JSON.stringify(f(JSON.parse(fs.readFileSync(p, 'utf8')))));
}

/** Rewrite model.safetensors' header (the data stays; offsets are not adjusted). */
function rewriteHeader(dir: string, f: (h: Record<string, any>) => Record<string, any>): void {
  const p = path.join(dir, 'model.safetensors');
  const buf = fs.readFileSync(p);
  const n = Number(buf.readBigUInt64LE(0));
  const header = Buffer.from(JSON.stringify(f(JSON.parse(buf.subarray(8, 8 + n).toString('utf8')))));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(header.length));
  fs.writeFileSync(p, Buffer.concat([len, header, buf.subarray(8 + n)]));
}

describe('model card and recipe', () => {
  test('README.md has the Hub front matter, the recipe and the measured perplexities; crepe-recipe.json holds the same record', () => {
    const { dir, json } = saved.stories260K;
    const card = fs.readFileSync(path.join(dir, 'README.md'), 'utf8');
    const front = /^---\n([\s\S]*?)\n---\n/.exec(card)![1].split('\n');
    expect(front).toEqual(expect.arrayContaining(['base_model: karpathy/tinyllamas', 'library_name: transformers', 'license: mit', 'tags:', '- pruned', '- sparsity-50', '- wanda', '- crepe']));
    const recipe = JSON.parse(fs.readFileSync(path.join(dir, RECIPE_FILE), 'utf8'));
    expect(recipe.format).toBe('crepe-recipe/1');
    expect(recipe.recipe).toMatchObject({ method: 'wanda', structure: 'unstructured', sparsity: 0.5, calibration: { dataset: 'tinystories', nsamples: 4, seqlen: 64, seed: 0 } });
    expect(recipe.code_version).toBe(json.code_version);
    expect(recipe.results.perplexity).toEqual([{ dataset: 'tinystories', slice: json.eval[0].slice, seqlen: 64, windows: 4, dense_ppl: json.eval[0].dense_ppl, pruned_ppl: json.eval[0].pruned_ppl }]);
    expect(card).toContain(`| tinystories | ${json.eval[0].slice} | 64 | 4 | ${json.eval[0].dense_ppl.toFixed(4)} | ${json.eval[0].pruned_ppl.toFixed(4)} |`);
    expect(card).toContain(json.code_version);

    // Converting the pruned folder (here to BF16) keeps its record and notes the conversion.
    const m = openModel(dir);
    const bf16 = path.join(tmp, 'pruned-bf16');
    try {
      writeHfModel(m.source, bf16, { dtype: 'BF16', tokenizer: m.tokenizerPath, card: convertedModelCard(dir, 'BF16', 'abc123') });
    } finally {
      m.source.close();
    }
    const again = JSON.parse(fs.readFileSync(path.join(bf16, RECIPE_FILE), 'utf8'));
    expect(again).toMatchObject({ kind: 'pruned', dtype: 'BF16', recipe: recipe.recipe, results: recipe.results, base_model: recipe.base_model, code_version: json.code_version });
    expect(again.notes).toEqual([expect.stringMatching(/^converted to BF16 by crepe at code version abc123/)]);
    expect(fs.readFileSync(path.join(bf16, 'README.md'), 'utf8')).toMatch(/^- sparsity-50$/m);
    expect(transformersLoadProblems(bf16)).toEqual([]);

    // babyllama-char is not on the Hub: no base_model, its licence and where it comes from; 2:4 tags.
    const baby = fs.readFileSync(path.join(saved['babyllama-char'].dir, 'README.md'), 'utf8');
    expect(baby).not.toMatch(/^base_model:/m);
    expect(baby).toMatch(/^license: mit$/m);
    expect(baby).toMatch(/^- semi-structured-2-4$/m);
    expect(baby).toContain('https://github.com/EN10/BabyLlama');
  });
});

describe('ownership without hidden files', () => {
  test('a rerun replaces crepe\'s folder; a changed one, or a user\'s, is refused; a folder of the old version is still crepe\'s', () => {
    expect(ownershipFile('hf-model')).toBe(RECIPE_FILE);
    const out = path.join(tmp, 'conv');
    const m = openModel('stories260K');
    const convert = () => writeHfModel(m.source, out, { dtype: 'F32', tokenizer: m.tokenizerPath });
    try {
      convert();
      expect(fs.readdirSync(out).filter((f) => f.startsWith('.'))).toEqual([]);
      convert();

      fs.appendFileSync(path.join(out, 'config.json'), '\n');
      expect(oneLineCrepeError(convert)).toMatch(/written by crepe but has changed since/);

      // A folder an earlier crepe wrote: weights, config and the hidden marker.
      fs.rmSync(out, { recursive: true });
      fs.mkdirSync(out);
      fs.writeFileSync(path.join(out, 'config.json'), '{}');
      fs.writeFileSync(path.join(out, 'tok512.bin'), 'x');
      fs.writeFileSync(path.join(out, '.crepe-output'), JSON.stringify({ kind: 'hf-model' }) + '\n');
      convert();
      expect(fs.existsSync(path.join(out, '.crepe-output'))).toBe(false);
      expect(fs.existsSync(path.join(out, 'tokenizer.json'))).toBe(true);

      const mine = path.join(tmp, 'mine');
      fs.mkdirSync(mine);
      fs.writeFileSync(path.join(mine, RECIPE_FILE), '{"format":"crepe-recipe/1"}');
      expect(oneLineCrepeError(() => writeHfModel(m.source, mine, { dtype: 'F32' }))).toMatch(/crepe did not write/);
    } finally {
      m.source.close();
    }
  });
});
