import { CrepeError } from '../errors';
import { mergePairs } from './bpe';
import { checkId, readTokenizerFile } from './files';
import type { Tokenizer } from './types';

/**
 * The llama2.c tokenizer (tokenizer.bin / tok512.bin), encoding and decoding exactly as
 * llama2.c's run.c does.
 *
 * File: int32 max_token_len, then per token float32 score, int32 byte length, bytes. The vocab
 * size is not stored (run.c takes it from the model header), so it is passed in; without it
 * tokens are read until the end of the file.
 *
 * Pieces are kept as latin1 strings, one char per byte, so that lookups and concatenations are
 * byte-exact like run.c's C strings, whatever the bytes are.
 */

const BOS_ID = 1; // hard-coded in run.c
const EOS_ID = 2;
/** run.c's byte fallback: byte b is token b + 3 (after <unk>, <s>, </s>). */
const BYTE_OFFSET = 3;
/** run.c starts its best-score search at -1e10: pairs scoring at or below it never merge. */
const MIN_MERGE_SCORE = -1e10;

export interface Llama2cOptions {
  /** Number of tokens to read (the model header's vocab_size); default: read to the end. */
  vocabSize?: number;
}

export class Llama2cTokenizer implements Tokenizer {
  readonly vocabSize: number;
  readonly bosId = BOS_ID;
  readonly eosId = EOS_ID;
  readonly addBos = true; // run.c always starts with BOS
  readonly maxTokenLength: number;
  /** Token pieces as byte strings (latin1). */
  readonly pieces: readonly string[];
  readonly scores: Float32Array;

  /** Piece -> id; for duplicate pieces the lowest id (run.c's bsearch leaves this unspecified). */
  private readonly idOfPiece = new Map<string, number>();
  /** (a * vocabSize + b) -> id of the piece pieces[a] + pieces[b], only for pairs run.c would merge. */
  private readonly pairMerges = new Map<number, number>();
  /** Token id of each single-byte piece, -1 if absent: the fast path for ASCII text. */
  private readonly idOfByte = new Int32Array(256).fill(-1);
  /** For byte tokens <0xNN> the byte NN, else -1. */
  private readonly byteOfId: Int16Array;
  /** Each piece's bytes, and the same without a leading space (decoded after BOS). */
  private readonly pieceBytes: Buffer[];
  private readonly pieceBytesNoSpace: Buffer[];
  /** The id of " ", run.c's dummy prefix; -1 if the vocab lacks it. */
  private readonly spaceId: number;

  constructor(readonly path: string, maxTokenLength: number, pieces: string[], scores: Float32Array) {
    this.vocabSize = pieces.length;
    this.maxTokenLength = maxTokenLength;
    this.pieces = pieces;
    this.scores = scores;
    this.byteOfId = new Int16Array(pieces.length).fill(-1);
    this.pieceBytes = pieces.map((p) => Buffer.from(p, 'latin1'));
    this.pieceBytesNoSpace = this.pieceBytes.map((b) => (b[0] === 0x20 ? b.subarray(1) : b));

    const idsOfPiece = new Map<string, number[]>();
    pieces.forEach((p, id) => {
      if (!this.idOfPiece.has(p)) this.idOfPiece.set(p, id);
      const ids = idsOfPiece.get(p);
      if (ids) ids.push(id);
      else idsOfPiece.set(p, [id]);
      if (p.length === 1) this.idOfByte[p.charCodeAt(0)] = this.idOfPiece.get(p)!;
      const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(p);
      if (m) this.byteOfId[id] = parseInt(m[1], 16);
    });
    this.spaceId = this.idOfPiece.get(' ') ?? -1;

    // Every pair (a, b) with pieces[a] + pieces[b] == pieces[p] comes from splitting pieces[p];
    // precomputing them replaces run.c's sprintf + lookup per candidate pair by one map read.
    for (const [p, merged] of this.idOfPiece) {
      if (!(scores[merged] > MIN_MERGE_SCORE)) continue;
      for (let k = 0; k <= p.length; k++) {
        const lefts = idsOfPiece.get(p.slice(0, k));
        const rights = idsOfPiece.get(p.slice(k));
        if (!lefts || !rights) continue;
        for (const a of lefts) for (const b of rights) this.pairMerges.set(a * this.vocabSize + b, merged);
      }
    }
  }

  encode(text: string, opts: { bos?: boolean } = {}): Int32Array {
    const bytes = Buffer.from(text, 'utf8');
    const ids = new Int32Array(bytes.length + 2);
    let n = 0;
    if (opts.bos) ids[n++] = BOS_ID;
    if (bytes.length > 0) {
      if (this.spaceId < 0) throw new CrepeError(`llama2.c tokenizer ${this.path} has no " " token for the dummy prefix`);
      ids[n++] = this.spaceId;
    }
    // run.c's loop: one lookup per UTF-8 code point (a lead byte plus up to 3 continuation
    // bytes), byte fallback for code points that are not tokens.
    let start = 0;
    for (let i = 0; i < bytes.length; i++) {
      if ((bytes[i] & 0xc0) !== 0x80) start = i;
      if (i + 1 < bytes.length && (bytes[i + 1] & 0xc0) === 0x80 && i - start + 1 < 4) continue;
      const id = i === start ? this.idOfByte[bytes[i]] : this.idOfPiece.get(bytes.toString('latin1', start, i + 1)) ?? -1;
      if (id >= 0) ids[n++] = id;
      else for (let j = start; j <= i; j++) ids[n++] = bytes[j] + BYTE_OFFSET;
      start = i + 1;
    }
    const V = this.vocabSize;
    return mergePairs(
      ids.subarray(0, n),
      (a, b) => this.pairMerges.get(a * V + b) ?? -1,
      (id) => this.scores[id],
    );
  }

  /**
   * As run.c's decode(): a piece right after BOS (or at the start) loses its leading space,
   * byte tokens <0xNN> are raw bytes, and the bytes are read as UTF-8 (bad bytes become U+FFFD).
   * Unlike run.c, which never prints them, BOS and EOS decode to nothing.
   */
  decode(ids: ArrayLike<number>): string {
    const parts: Buffer[] = [];
    let prev = BOS_ID;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      checkId(id, this.vocabSize, this.path);
      if (id !== BOS_ID && id !== EOS_ID) {
        const byte = this.byteOfId[id];
        if (byte >= 0) parts.push(Buffer.of(byte));
        else parts.push(prev === BOS_ID ? this.pieceBytesNoSpace[id] : this.pieceBytes[id]);
      }
      prev = id;
    }
    return Buffer.concat(parts).toString('utf8');
  }
}

/** Read a llama2.c tokenizer file; truncated or malformed files raise a CrepeError naming the path. */
export function loadLlama2cTokenizer(path: string, opts: Llama2cOptions = {}): Llama2cTokenizer {
  const { vocabSize } = opts;
  if (vocabSize !== undefined && !(Number.isInteger(vocabSize) && vocabSize > 0)) {
    throw new CrepeError(`vocab size for ${path} must be a positive integer, got ${vocabSize}`);
  }
  const buf = readTokenizerFile(path);
  const bad = (what: string): CrepeError => new CrepeError(`bad llama2.c tokenizer file ${path}: ${what}`);
  if (buf.length < 4) throw bad(`truncated: ${buf.length} bytes, no header`);
  const maxTokenLength = buf.readInt32LE(0);
  if (maxTokenLength <= 0) throw bad(`max_token_len is ${maxTokenLength}`);

  const pieces: string[] = [];
  const scores: number[] = [];
  let off = 4;
  while (vocabSize === undefined ? off < buf.length : pieces.length < vocabSize) {
    const i = pieces.length;
    const of = vocabSize === undefined ? '' : ` of ${vocabSize}`;
    if (off + 8 > buf.length) throw bad(`truncated at token ${i}${of} (byte ${off} of ${buf.length})`);
    const len = buf.readInt32LE(off + 4);
    if (len < 0) throw bad(`token ${i} has length ${len}`);
    if (off + 8 + len > buf.length) throw bad(`truncated at token ${i}${of} (needs ${off + 8 + len} bytes, file has ${buf.length})`);
    const score = buf.readFloatLE(off);
    if (!Number.isFinite(score)) throw bad(`token ${i} has score ${score}`); // merges compare scores
    scores.push(score);
    pieces.push(buf.toString('latin1', off + 8, off + 8 + len));
    off += 8 + len;
  }
  if (pieces.length <= EOS_ID) throw bad(`only ${pieces.length} tokens`);
  if (vocabSize !== undefined && off < buf.length) {
    // It used to fail later as 'no " " token' when the model's vocabulary was the smaller one.
    throw new CrepeError(`llama2.c tokenizer ${path} holds more tokens than the model's vocabulary of ${vocabSize} (${buf.length - off} bytes left): it belongs to another model`);
  }
  return new Llama2cTokenizer(path, maxTokenLength, pieces, Float32Array.from(scores));
}
