import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { assetPath } from '../lib/assets';
import {
  HfTokenizer,
  Llama2cTokenizer,
  SentencePieceTokenizer,
  loadLlama2cTokenizer,
  loadSentencePieceTokenizer,
  loadTokenizer,
} from '../lib/tokenizers';
import { mergePairs } from '../lib/tokenizers/bpe';
import { oneLineCrepeError } from './helpers';

const TOK512 = assetPath('models', 'stories260K', 'tok512.bin');
const TOK105 = assetPath('models', 'babyllama-char', 'tok105.model');
const TOK105_VOCAB = assetPath('models', 'babyllama-char', 'tok105.vocab');
const TINYSTORIES = assetPath('text', 'tinystories', 'tinystories_val_head.txt');

let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-tok-'));
});
afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

/** Expect `fn` to throw a CrepeError whose one-line message mentions `file` (and `text`, if given). */
function expectCrepeError(fn: () => unknown, file: string, text?: RegExp): void {
  const message = oneLineCrepeError(fn);
  expect(message).toContain(file);
  if (text) expect(message).toMatch(text);
}

/**
 * llama2.c run.c encode(), transcribed loop for loop: per-code-point lookup with byte fallback,
 * then rescan the whole sequence for the best pair until none merges (O(n^2)). Only str_lookup
 * of a concatenation is tabulated (V x V) so that the loop runs in seconds.
 */
function referenceEncode(pieces: readonly string[], scores: Float32Array, text: string, bos: boolean): number[] {
  const V = pieces.length;
  const strLookup = new Map<string, number>();
  pieces.forEach((p, i) => {
    if (!strLookup.has(p)) strLookup.set(p, i);
  });
  const concatLookup = new Int32Array(V * V);
  for (let a = 0; a < V; a++) for (let b = 0; b < V; b++) concatLookup[a * V + b] = strLookup.get(pieces[a] + pieces[b]) ?? -1;

  const tokens: number[] = [];
  if (bos) tokens.push(1);
  const bytes = Buffer.from(text, 'utf8');
  if (bytes.length > 0) tokens.push(strLookup.get(' ')!);
  let strBuffer: number[] = [];
  for (let c = 0; c < bytes.length; c++) {
    if ((bytes[c] & 0xc0) !== 0x80) strBuffer = [];
    strBuffer.push(bytes[c]);
    if (c + 1 < bytes.length && (bytes[c + 1] & 0xc0) === 0x80 && strBuffer.length < 4) continue;
    const id = strLookup.get(String.fromCharCode(...strBuffer));
    if (id !== undefined) tokens.push(id);
    else for (const b of strBuffer) tokens.push(b + 3);
    strBuffer = [];
  }
  for (;;) {
    let bestScore = -1e10;
    let bestId = -1;
    let bestIdx = -1;
    for (let i = 0; i < tokens.length - 1; i++) {
      const id = concatLookup[tokens[i] * V + tokens[i + 1]];
      if (id !== -1 && scores[id] > bestScore) {
        bestScore = scores[id];
        bestId = id;
        bestIdx = i;
      }
    }
    if (bestIdx === -1) break;
    tokens[bestIdx] = bestId;
    tokens.splice(bestIdx + 1, 1);
  }
  return tokens;
}

/** Write a llama2.c tokenizer file: int32 max_token_len, then (float32 score, int32 len, bytes). */
function writeLlama2cFile(file: string, entries: Array<[string, number]>): void {
  const parts = entries.map(([piece, score]) => {
    const bytes = Buffer.from(piece, 'latin1');
    const head = Buffer.alloc(8);
    head.writeFloatLE(score, 0);
    head.writeInt32LE(bytes.length, 4);
    return Buffer.concat([head, bytes]);
  });
  const max = Buffer.alloc(4);
  max.writeInt32LE(Math.max(...entries.map(([p]) => p.length)), 0);
  fs.writeFileSync(file, Buffer.concat([max, ...parts]));
}

describe('llama2.c tokenizer (stories260K tok512.bin)', () => {
  let tok: Llama2cTokenizer;
  beforeAll(() => {
    tok = loadLlama2cTokenizer(TOK512, { vocabSize: 512 });
  });

  test('header and special tokens', () => {
    expect(tok.vocabSize).toBe(512);
    expect(tok.maxTokenLength).toBe(7);
    expect([tok.bosId, tok.eosId]).toEqual([1, 2]);
    expect(tok.pieces.slice(0, 4)).toEqual(['<unk>', '\n<s>\n', '\n</s>\n', '<0x00>']);
    expect(loadLlama2cTokenizer(TOK512).vocabSize).toBe(512); // read to EOF
    expect(loadTokenizer(TOK512)).toBeInstanceOf(Llama2cTokenizer);
  });

  test('"Once upon a time" as run.c encodes it', () => {
    const ids = tok.encode('Once upon a time', { bos: true });
    expect(Array.from(ids).map((id) => tok.pieces[id])).toEqual(['\n<s>\n', ' Once', ' upon', ' a', ' time']);
    expect(Array.from(ids)).toEqual(referenceEncode(tok.pieces, tok.scores, 'Once upon a time', true));
    expect(tok.decode(ids)).toBe('Once upon a time');
    expect(Array.from(tok.encode(''))).toEqual([]);
    expect(Array.from(tok.encode('', { bos: true }))).toEqual([1]);
  });

  test('decode(encode(s)) === s, with unicode, newlines, leading spaces', () => {
    const samples = [
      'Once upon a time, there was a little girl named Lily.',
      'Line one.\nLine two.\n\n  Indented "quotes" and tabs\t!',
      ' starts with a space',
      '\nstarts with a newline',
      'Unicode: café, naïve, 日本語, emoji 🎉 and “smart quotes” — dash…',
      'x',
    ];
    for (const s of samples) {
      expect(tok.decode(tok.encode(s))).toBe(s);
      expect(tok.decode(tok.encode(s, { bos: true }))).toBe(s);
    }
  });

  test('byte fallback for code points missing from the vocab', () => {
    const ids = Array.from(tok.encode('日'));
    const utf8 = Array.from(Buffer.from('日', 'utf8'));
    expect(ids.slice(-3)).toEqual(utf8.map((b) => b + 3)); // <0xE6> <0x97> <0xA5>
    expect(tok.decode(ids)).toBe('日');
  });

  test('identical ids to the O(n^2) run.c loop on 20 KB of TinyStories', () => {
    const text = fs.readFileSync(TINYSTORIES, 'utf8');
    for (const start of [0, 400_000]) { // the second slice has garbled quote characters
      const slice = text.slice(start, start + 20_000);
      expect(Array.from(tok.encode(slice, { bos: true }))).toEqual(referenceEncode(tok.pieces, tok.scores, slice, true));
    }
  });

  test('merging is linear in the text: pair look-ups per token stay flat from 25 KB to 400 KB (run.c rescans: quadratic)', () => {
    // The encoder's merge loop (mergePairs), fed run.c's initial tokens of ASCII text (one token
    // per character after the dummy-prefix space), with a look-up that counts its calls.
    const ascii = fs.readFileSync(TINYSTORIES, 'utf8').slice(0, 450_000).replace(/[^\x20-\x7e\n]/g, '');
    const V = tok.pieces.length;
    const idOf = new Map<string, number>();
    tok.pieces.forEach((p, i) => {
      if (!idOf.has(p)) idOf.set(p, i);
    });
    const lookupsPerToken = (chars: number): number => {
      const text = ascii.slice(0, chars);
      // a character without a piece of its own is its byte token (<0xNN>, ids 3..258)
      const initial = [idOf.get(' ')!, ...Array.from(text, (ch) => idOf.get(ch) ?? ch.charCodeAt(0) + 3)];
      let lookups = 0;
      const merged = mergePairs(initial, (a, b) => {
        lookups++;
        return idOf.get(tok.pieces[a] + tok.pieces[b]) ?? -1;
      }, (id) => tok.scores[id]);
      // the same ids as the tokenizer itself (same merges, cross-checked)
      const encoded = tok.encode(text);
      expect(merged.length).toBe(encoded.length);
      expect(merged.every((id, i) => id === encoded[i])).toBe(true);
      expect(V).toBe(512);
      return lookups / initial.length;
    };
    const small = lookupsPerToken(25_000);
    const large = lookupsPerToken(400_000);
    // Each merge looks up at most its two new neighbour pairs: under 3 per initial token at any length.
    expect(small).toBeLessThan(3);
    expect(large).toBeLessThan(3);
    // 16 times the text, (about) the same work per token; a rescan per merge would grow it ~16-fold.
    expect(large / small).toBeLessThan(1.2);
  });

  test('ties go to the leftmost pair, pairs merge across spaces, BOS takes part like any token', () => {
    // Tiny vocab where many merges share a score, so tie-breaking decides the result.
    const bytes = Array.from({ length: 256 }, (_, b): [string, number] => [`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`, 0]);
    const merges: Array<[string, number]> = [];
    const letters = ['a', 'b', ' '];
    let seed = 7;
    const rand = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (const x of letters) for (const y of letters) {
      merges.push([x + y, -Math.floor(rand() * 3)]);
      for (const z of letters) if (rand() < 0.5) merges.push([x + y + z, -Math.floor(rand() * 3)]);
    }
    merges.push(['B a', -1]); // "B" is the BOS piece here: a BOS pair that can merge
    const file = path.join(tmp, 'ties.bin');
    writeLlama2cFile(file, [['<unk>', 0], ['B', 0], ['E', 0], ...bytes, ['a', -5], ['b', -5], [' ', -5], ...merges]);
    const small = loadLlama2cTokenizer(file);
    for (let k = 0; k < 200; k++) {
      const text = Array.from({ length: 1 + Math.floor(rand() * 40) }, () => 'ab c'[Math.floor(rand() * 4)]).join('');
      const bos = k % 2 === 0;
      expect([text, Array.from(small.encode(text, { bos }))]).toEqual([text, referenceEncode(small.pieces, small.scores, text, bos)]);
    }
  });

  test('mergePairs keeps the leftmost of equal-score pairs', () => {
    // tokens 0 0 0 with (0,0) -> 1: run.c merges positions 0-1 first, leaving [1, 0].
    expect(Array.from(mergePairs([0, 0, 0], (a, b) => (a === 0 && b === 0 ? 1 : -1), () => 0))).toEqual([1, 0]);
  });
});

describe('sentencepiece tokenizer (babyllama-char tok105.model)', () => {
  let tok: SentencePieceTokenizer;
  let vocab: Array<[string, number]>;
  beforeAll(() => {
    tok = loadSentencePieceTokenizer(TOK105);
    vocab = fs.readFileSync(TOK105_VOCAB, 'utf8').split('\n').filter((l) => l.length > 0).map((line) => {
      const [piece, score] = line.split('\t');
      return [piece, Number(score)];
    });
  });
  const idsOf = (tokens: string[]): number[] => tokens.map((t) => vocab.findIndex(([p]) => p === t));

  test('pieces and scores match tok105.vocab', () => {
    expect(tok.vocabSize).toBe(105);
    expect(vocab.length).toBe(105);
    expect(tok.model.pieces).toEqual(vocab.map(([p]) => p));
    expect(Array.from(tok.model.scores)).toEqual(vocab.map(([, s]) => s));
    expect(tok.model.pieces.slice(0, 4)).toEqual(['<unk>', '<s>', '</s>', '\u2581']);
    expect([tok.unkId, tok.bosId, tok.eosId]).toEqual([0, 1, 2]);
    expect(tok.model.byteFallback).toBe(false);
    expect(loadTokenizer(TOK105)).toBeInstanceOf(SentencePieceTokenizer);
  });

  test('"Once upon a time" encodes to its characters with a dummy-prefix space', () => {
    const expected = idsOf(['\u2581', ...'Once\u2581upon\u2581a\u2581time']);
    expect(expected).not.toContain(-1);
    expect(Array.from(tok.encode('Once upon a time'))).toEqual(expected);
    expect(Array.from(tok.encode('Once upon a time', { bos: true }))).toEqual([1, ...expected]);
    expect(tok.decode(tok.encode('Once upon a time', { bos: true }))).toBe('Once upon a time');
  });

  test('newline and unseen characters are unk (0); a run of them is one unk', () => {
    expect(Array.from(tok.encode('\n'))).toEqual([...idsOf(['\u2581']), 0]);
    expect(Array.from(tok.encode('a\nb'))).toEqual(idsOf(['\u2581', 'a', '<unk>', 'b']));
    expect(Array.from(tok.encode('a\n\n日b'))).toEqual(idsOf(['\u2581', 'a', '<unk>', 'b']));
  });

  test('normalization: extra spaces squeezed and trimmed (remove_extra_whitespaces defaults on)', () => {
    expect(Array.from(tok.encode('  a   b  '))).toEqual(Array.from(tok.encode('a b')));
    expect(Array.from(tok.encode('   '))).toEqual([]);
    expect(tok.decode(tok.encode('The cat sat. "Hi!" she said, 3 times.'))).toBe('The cat sat. "Hi!" she said, 3 times.');
  });

  test('decode drops control tokens and shows unk as the model\'s unk_surface', () => {
    const ids = tok.encode('a\nb', { bos: true });
    expect(tok.decode([...ids, 2])).toBe(`a${tok.model.unkSurface}b`);
  });
});

/** Protobuf writer for the few ModelProto fields the synthetic model below needs. */
const proto = {
  varint(n: number): number[] {
    const out: number[] = [];
    for (; n > 0x7f; n >>>= 7) out.push((n & 0x7f) | 0x80);
    return [...out, n];
  },
  int(field: number, v: number): number[] {
    return [...proto.varint(field << 3), ...proto.varint(v)];
  },
  bytes(field: number, payload: number[] | Buffer): number[] {
    return [...proto.varint((field << 3) | 2), ...proto.varint(payload.length), ...payload];
  },
  float(field: number, v: number): number[] {
    const b = Buffer.alloc(4);
    b.writeFloatLE(v, 0);
    return [...proto.varint((field << 3) | 5), ...b];
  },
};

describe('sentencepiece BPE model with merges, user-defined pieces and byte fallback', () => {
  // [piece, score, type]: 1 NORMAL, 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 6 BYTE
  const pieces: Array<[string, number, number]> = [
    ['<unk>', 0, 2], ['<s>', 0, 3], ['</s>', 0, 3],
    ['<0xE6>', 0, 6], ['<0x97>', 0, 6], ['<0xA5>', 0, 6],
    ['<sep>', 0, 4],
    ['\u2581', -3, 1], ['a', -4, 1], ['b', -5, 1], ['ab', -1, 1], ['\u2581a', -2, 1], ['\u2581b', -1, 1], ['ba', -1, 1],
  ];
  let tok: SentencePieceTokenizer;
  beforeAll(() => {
    const model = [
      ...pieces.flatMap(([p, score, type]) => proto.bytes(1, [...proto.bytes(1, Buffer.from(p, 'utf8')), ...proto.float(2, score), ...proto.int(3, type)])),
      ...proto.bytes(2, [...proto.int(3, 2), ...proto.int(35, 1)]), // TrainerSpec: BPE, byte_fallback
      ...proto.bytes(3, [...proto.bytes(1, Buffer.from('identity')), ...proto.int(4, 0)]), // keep extra spaces
    ];
    const file = path.join(tmp, 'bpe.model');
    fs.writeFileSync(file, Buffer.from(model));
    tok = loadSentencePieceTokenizer(file);
  });
  const piecesOf = (ids: Int32Array): string[] => Array.from(ids).map((id) => tok.model.pieces[id]);

  test('merges by score, leftmost first on ties', () => {
    // ▁ a b a: "ab" and "ba" both score -1 and beat "▁a" (-2); the leftmost, "ab", wins.
    expect(piecesOf(tok.encode('aba'))).toEqual(['\u2581', 'ab', 'a']);
    expect(piecesOf(tok.encode('a b'))).toEqual(['\u2581a', '\u2581b']);
    expect(piecesOf(tok.encode('ba', { bos: true }))).toEqual(['<s>', '\u2581b', 'a']);
  });

  test('user-defined pieces are matched whole and never merged', () => {
    expect(piecesOf(tok.encode('a<sep>b'))).toEqual(['\u2581a', '<sep>', 'b']);
  });

  test('byte fallback for unknown characters, and the round trip', () => {
    expect(piecesOf(tok.encode('日a'))).toEqual(['\u2581', '<0xE6>', '<0x97>', '<0xA5>', 'a']);
    for (const s of ['日a', 'ab  ba', ' a', 'a<sep>b']) expect(tok.decode(tok.encode(s, { bos: true }))).toBe(s);
  });
});

describe('Hugging Face tokenizer.json', () => {
  const special = (id: number, content: string): object => (
    { id, content, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true });
  /** A small Llama-style BPE tokenizer: "▁" prefix, spaces as "▁", merges learnt on "hello world". */
  const tokenizerJson = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [special(0, '<unk>'), special(1, '<s>'), special(2, '</s>')],
    normalizer: { type: 'Sequence', normalizers: [{ type: 'Prepend', prepend: '\u2581' }, { type: 'Replace', pattern: { String: ' ' }, content: '\u2581' }] },
    pre_tokenizer: null,
    post_processor: {
      type: 'TemplateProcessing',
      single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
      pair: [],
      special_tokens: { '<s>': { id: '<s>', ids: [1], tokens: ['<s>'] } },
    },
    decoder: {
      type: 'Sequence',
      decoders: [{ type: 'Replace', pattern: { String: '\u2581' }, content: ' ' }, { type: 'Fuse' }, { type: 'Strip', content: ' ', start: 1, stop: 0 }],
    },
    model: {
      type: 'BPE', dropout: null, unk_token: '<unk>', continuing_subword_prefix: null, end_of_word_suffix: null, fuse_unk: true, byte_fallback: false,
      vocab: { '<unk>': 0, '<s>': 1, '</s>': 2, '\u2581': 3, h: 4, e: 5, l: 6, o: 7, w: 8, r: 9, d: 10, he: 11, ll: 12, hell: 13, hello: 14, '\u2581hello': 15, or: 16, '\u2581w': 17, '\u2581wor': 18 },
      merges: ['h e', 'l l', 'he ll', 'hell o', '\u2581 hello', 'o r', '\u2581 w', '\u2581w or'],
    },
  };
  let file: string;
  beforeAll(() => {
    fs.mkdirSync(path.join(tmp, 'hf'));
    file = path.join(tmp, 'hf', 'tokenizer.json');
    fs.writeFileSync(file, JSON.stringify(tokenizerJson));
  });

  test('encodes with the BPE merges and decodes back', () => {
    const tok = loadTokenizer(file);
    expect(tok).toBeInstanceOf(HfTokenizer);
    expect([tok.vocabSize, tok.bosId, tok.eosId]).toEqual([19, 1, 2]);
    expect(Array.from(tok.encode('hello world'))).toEqual([15, 18, 6, 10]); // ▁hello ▁wor l d
    expect(Array.from(tok.encode('hello world', { bos: true }))).toEqual([1, 15, 18, 6, 10]);
    expect(Array.from(tok.encode('hello xyz'))).toEqual([15, 3, 0]); // unknown run fused into one <unk>
    expect(tok.decode(tok.encode('hello world', { bos: true }))).toBe('hello world');
    expect(tok.decode([])).toBe('');
  });

  test('the BOS convention: the post-processor template (also inside a Sequence), overridden by add_bos_token, off for a null bos_token', () => {
    const write = (name: string, json: object, config?: object): string => {
      const dir = path.join(tmp, name);
      fs.mkdirSync(dir);
      fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(json));
      if (config) fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
      return path.join(dir, 'tokenizer.json');
    };
    expect(loadTokenizer(write('bos-template', tokenizerJson)).addBos).toBe(true);
    const sequence = { ...tokenizerJson, post_processor: { type: 'Sequence', processors: [{ type: 'ByteLevel', add_prefix_space: false, trim_offsets: false, use_regex: false }, tokenizerJson.post_processor] } };
    expect(loadTokenizer(write('bos-sequence', sequence)).addBos).toBe(true);
    expect(loadTokenizer(write('bos-none', { ...tokenizerJson, post_processor: null })).addBos).toBe(false);
    expect(loadTokenizer(write('bos-config-off', tokenizerJson, { add_bos_token: false })).addBos).toBe(false);
    const qwen = loadTokenizer(write('bos-null', { ...tokenizerJson, post_processor: null }, { bos_token: null }));
    expect([qwen.bosId, qwen.addBos]).toEqual([-1, false]);
  });

  test('BOS/EOS names come from tokenizer_config.json when present', () => {
    const dir = path.join(tmp, 'hf-config');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'tokenizer.json'), JSON.stringify(tokenizerJson));
    fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: { content: '</s>' }, eos_token: '<unk>' }));
    const tok = loadTokenizer(path.join(dir, 'tokenizer.json'));
    expect([tok.bosId, tok.eosId]).toEqual([2, 0]);
  });
});

describe('bad input raises CrepeError naming the file', () => {
  test('missing files, any format', () => {
    for (const name of ['nope.bin', 'nope.model', 'tokenizer.json']) {
      const file = path.join(tmp, 'missing', name);
      expectCrepeError(() => loadTokenizer(file), file, /not found/);
    }
  });

  test('unknown extension', () => {
    const file = path.join(tmp, 'vocab.txt');
    expectCrepeError(() => loadTokenizer(file), file, /unknown tokenizer format/);
  });

  test('truncated tok512.bin', () => {
    const whole = fs.readFileSync(TOK512);
    for (const cut of [2, 4 + 5, 3000, whole.length - 1]) {
      const file = path.join(tmp, `tok512-cut${cut}.bin`);
      fs.writeFileSync(file, whole.subarray(0, cut));
      expectCrepeError(() => loadLlama2cTokenizer(file, { vocabSize: 512 }), file, /truncated/);
    }
    // The whole file, but a model header asking for more tokens than it holds.
    expectCrepeError(() => loadTokenizer(TOK512, { vocabSize: 32000 }), TOK512, /truncated at token 512 of 32000/);
  });

  test('corrupt .model', () => {
    const whole = fs.readFileSync(TOK105);
    const cases: Array<[string, Buffer]> = [
      ['garbage.model', Buffer.from('this is not a protobuf at all')],
      ['cut.model', whole.subarray(0, 500)],
      ['empty.model', Buffer.alloc(0)],
    ];
    for (const [name, bytes] of cases) {
      const file = path.join(tmp, name);
      fs.writeFileSync(file, bytes);
      expectCrepeError(() => loadTokenizer(file), file, /bad sentencepiece model/);
    }
  });

  test('bad tokenizer.json', () => {
    const dir = path.join(tmp, 'badjson');
    fs.mkdirSync(dir);
    const file = path.join(dir, 'tokenizer.json');
    fs.writeFileSync(file, '{"model": ');
    expectCrepeError(() => loadTokenizer(file), file, /bad JSON/);
    fs.writeFileSync(file, JSON.stringify({ model: { type: 'Nonsense' } }));
    expectCrepeError(() => loadTokenizer(file), file, /bad tokenizer file/);
  });

  test('decoding an id outside the vocabulary', () => {
    expectCrepeError(() => loadTokenizer(TOK512).decode([5, 512]), TOK512, /token id 512/);
    expectCrepeError(() => loadTokenizer(TOK105).decode([-1]), TOK105, /token id -1/);
  });
});

describe('a Llama-2-style sentencepiece model with a U+FEFF piece (test/fixtures/spm-feff)', () => {
  // Built by scripts/reference/make_sentencepiece_fixture.py with the sentencepiece library;
  // expected ids are the library's own, tokenizer.json is transformers' LlamaConverter output.
  const dir = path.join(__dirname, 'fixtures', 'spm-feff');
  const expected = JSON.parse(fs.readFileSync(path.join(dir, 'expected-ids.json'), 'utf8')) as {
    feff_ids: number[];
    vocab_size: number;
    cases: { text: string; ids: number[] }[];
  };

  test('the U+FEFF piece keeps its text (TextDecoder would strip it as a BOM)', () => {
    const tok = loadSentencePieceTokenizer(path.join(dir, 'tokenizer.model'));
    expect(tok.vocabSize).toBe(expected.vocab_size);
    expect(expected.feff_ids).toHaveLength(1);
    expect(tok.model.pieces[expected.feff_ids[0]]).toBe('\ufeff');
    expect(Array.from(tok.encode('\ufeff'))).toContain(expected.feff_ids[0]);
  });

  test('a hand-built model whose only normal piece is U+FEFF parses', () => {
    const model = [
      ...proto.bytes(1, [...proto.bytes(1, Buffer.from('<unk>')), ...proto.int(3, 2)]),
      ...proto.bytes(1, [...proto.bytes(1, Buffer.from('\ufeff', 'utf8')), ...proto.float(2, -1)]),
      ...proto.bytes(2, [...proto.int(3, 2)]),
    ];
    const file = path.join(tmp, 'feff.model');
    fs.writeFileSync(file, Buffer.from(model));
    const tok = loadSentencePieceTokenizer(file);
    expect(tok.model.pieces).toEqual(['<unk>', '\ufeff']);
  });

  test(`tokenizer.model and tokenizer.json give the sentencepiece library's ids on ${expected.cases.length} strings`, () => {
    const spTok = loadTokenizer(path.join(dir, 'tokenizer.model'));
    const hfTok = loadTokenizer(path.join(dir, 'tokenizer.json'));
    expect(expected.cases.length).toBeGreaterThanOrEqual(300);
    // HF tokenizers (like transformers) read special-token text in the input as that token;
    // sentencepiece spells it out. That is the one intended difference.
    const special = /<s>|<\/s>|<unk>/;
    for (const { text, ids } of expected.cases) {
      expect({ text, ids: Array.from(spTok.encode(text)) }).toEqual({ text, ids });
      if (!special.test(text)) expect({ text, ids: Array.from(hfTok.encode(text)) }).toEqual({ text, ids });
    }
    expect(Array.from(hfTok.encode('<s>'))).toEqual([1]);
  });
  describe('tokenizer_config.json beside the .model, as transformers\' LlamaTokenizer applies it', () => {
    /** A copy of the fixture's tokenizer.model with the given tokenizer_config.json (none when undefined). */
    const withConfig = (name: string, config?: object): string => {
      const d = path.join(tmp, `spm-config-${name}`);
      fs.mkdirSync(d);
      fs.copyFileSync(path.join(dir, 'tokenizer.model'), path.join(d, 'tokenizer.model'));
      if (config) fs.writeFileSync(path.join(d, 'tokenizer_config.json'), JSON.stringify(config));
      return path.join(d, 'tokenizer.model');
    };
    const shipped = JSON.parse(fs.readFileSync(path.join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;

    test('add_bos_token decides whether encoded text starts with BOS (default: yes)', () => {
      expect(loadTokenizer(withConfig('none')).addBos).toBe(true);
      expect(loadTokenizer(path.join(dir, 'tokenizer.model')).addBos).toBe(shipped.add_bos_token);
      const off = loadTokenizer(withConfig('bos-off', { ...shipped, add_bos_token: false }));
      expect(off.addBos).toBe(false);
      // Datasets and zero-shot encode with { bos: tok.addBos }: the ids are then the library's, unchanged.
      const { text, ids } = expected.cases[0];
      expect(Array.from(off.encode(text, { bos: off.addBos }))).toEqual(ids);
      const on = loadTokenizer(withConfig('bos-on', { ...shipped, add_bos_token: true }));
      expect(Array.from(on.encode(text, { bos: on.addBos }))).toEqual([on.bosId, ...ids]);
    });

    const nonLegacy = JSON.parse(fs.readFileSync(path.join(dir, 'expected-ids-nonlegacy.json'), 'utf8')) as {
      cases: { text: string; prefix: number[]; no_prefix: number[] }[];
    };
    test(`legacy false, with and without add_prefix_space: transformers' procedure redone with the sentencepiece library, ${nonLegacy.cases.length} strings`, () => {
      expect(nonLegacy.cases.length).toBeGreaterThanOrEqual(300);
      const prefixed = loadTokenizer(withConfig('nonlegacy', { ...shipped, legacy: false }));
      const bare = loadTokenizer(withConfig('nonlegacy-bare', { ...shipped, legacy: false, add_prefix_space: false }));
      let differs = 0;
      for (const c of nonLegacy.cases) {
        expect({ text: c.text, ids: Array.from(prefixed.encode(c.text)) }).toEqual({ text: c.text, ids: c.prefix });
        expect({ text: c.text, ids: Array.from(bare.encode(c.text)) }).toEqual({ text: c.text, ids: c.no_prefix });
        if (c.prefix.join() !== c.no_prefix.join()) differs++;
      }
      expect(differs).toBeGreaterThan(nonLegacy.cases.length / 2); // the prefix really changes the ids
    });

    test('what crepe cannot honour is refused in one line naming the file and the key', () => {
      const cases: [object, RegExp][] = [
        [{ ...shipped, add_eos_token: true }, /add_eos_token is true/],
        [{ ...shipped, bos_token: '</s>' }, /bos_token "<\/s>" is not the model's BOS piece/],
        [{ ...shipped, eos_token: { content: '<eos>' } }, /eos_token "<eos>" is not the model's EOS piece/],
        [{ ...shipped, tokenizer_class: 'T5Tokenizer' }, /tokenizer_class "T5Tokenizer"/],
        [{ ...shipped, sp_model_kwargs: { enable_sampling: true } }, /sp_model_kwargs/],
        [{ ...shipped, added_tokens_decoder: { 9999: { content: '<pad>' } } }, /added token 9999 "<pad>"/],
        [{ ...shipped, add_bos_token: 'yes' }, /add_bos_token must be true or false/],
        [{ ...shipped, do_lower_case: true }, /unknown key do_lower_case/],
      ];
      cases.forEach(([config, message], i) => {
        const file = withConfig(`bad-${i}`, config);
        expectCrepeError(() => loadTokenizer(file), 'tokenizer_config.json', message);
      });
    });
  });
});
