/**
 * Recognises files that sit where a checkpoint or tokenizer is expected but are something else,
 * so that the refusal says what the file is and what to do instead of a parser's confusion
 * ("header length 2336927755350992246 exceeds the file size 135", "unsupported wire type 6").
 */
import * as fs from 'fs';
import { CrepeError } from '../errors';

const LFS_POINTER = 'version https://git-lfs.github.com/spec/v1';
/** tiktoken's BPE file (Llama-3's original tokenizer.model): "<base64 token> <rank>" per line. */
const TIKTOKEN_LINE = /^[A-Za-z0-9+/]+=* \d+\r?\n/;

/** What `head` (a file's first bytes) is, when it is a known foreign format; else null. */
export function foreignFormat(head: Uint8Array, file: string): string | null {
  const text = Buffer.from(head.subarray(0, 256)).toString('latin1');
  if (text.startsWith(LFS_POINTER)) return `${file} is a Git LFS pointer, not the file itself: run git lfs pull in its repository`;
  // torch.save writes a zip archive (PK\x03\x04) since PyTorch 1.6, before that a pickle: PROTO 2-5
  // then LONG1 (torch's magic number) or FRAME. A llama2.c header with dim 640 also starts
  // 0x80 0x02, but continues 0x00 0x00.
  const pickle = head[0] === 0x80 && head[1] >= 2 && head[1] <= 5 && (head[2] === 0x8a || head[2] === 0x95);
  if (text.startsWith('PK\x03\x04') || pickle) {
    return `${file} holds PyTorch (pickle) weights, which crepe does not read: convert the model to safetensors (model.safetensors)`;
  }
  if (TIKTOKEN_LINE.test(text)) {
    return `${file} is a tiktoken BPE file (as in Llama-3's original release), not a sentencepiece model: use the model's tokenizer.json`;
  }
  return null;
}

/** Refuse `file` if it is a known foreign format (reads its first 256 bytes). */
export function refuseForeignFile(file: string): void {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return; // the caller's own open reports a missing or unreadable file
  }
  try {
    const head = new Uint8Array(256);
    const n = fs.readSync(fd, head, 0, head.length, 0);
    const what = foreignFormat(head.subarray(0, n), file);
    if (what) throw new CrepeError(what);
  } finally {
    fs.closeSync(fd);
  }
}

/** Formats a file handed to crepe can be in, as far as its first bytes tell. */
export type SniffedFormat =
  | 'safetensors'
  | 'gguf'
  | 'ggml'
  | 'pytorch'
  | 'git-lfs-pointer'
  | 'tokenizer-json'
  | 'hf-config'
  | 'safetensors-index'
  | 'json'
  | 'sentencepiece'
  | 'llama2c-tokenizer';

/** How many bytes `sniffFormat` looks at (a JSON file's keys may come late in a big object). */
export const SNIFF_BYTES = 64 << 10;

/**
 * What a file is, from its first bytes (`size`: its length, for the safetensors header check);
 * null when none of these formats (a llama2.c checkpoint, for instance, has no magic number).
 */
export function sniffFormat(head: Uint8Array, size: number): SniffedFormat | null {
  const buf = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  const text = buf.subarray(0, 256).toString('latin1');
  if (text.startsWith(LFS_POINTER)) return 'git-lfs-pointer';
  if (text.startsWith('GGUF')) return 'gguf';
  // the older llama.cpp files: the magic 'ggml'/'ggmf'/'ggjt' as a little-endian uint32
  if (['lmgg', 'fmgg', 'tjgg'].includes(text.slice(0, 4))) return 'ggml';
  const pickle = head[0] === 0x80 && head[1] >= 2 && head[1] <= 5 && (head[2] === 0x8a || head[2] === 0x95);
  if (text.startsWith('PK\x03\x04') || pickle) return 'pytorch';
  // safetensors: an 8-byte little-endian header length, then the JSON header
  if (buf.length >= 10) {
    const n = Number(buf.readBigUInt64LE(0));
    if (n >= 2 && n + 8 <= size && buf[8] === 0x7b && (buf[9] === 0x22 || buf[9] === 0x7d || buf[9] === 0x20)) return 'safetensors';
  }
  const json = buf.toString('utf8').trimStart();
  if (json.startsWith('{')) {
    if (/"(added_tokens|normalizer|pre_tokenizer)"\s*:/.test(json) && /"model"\s*:/.test(json)) return 'tokenizer-json';
    if (/"(architectures|model_type)"\s*:/.test(json)) return 'hf-config';
    if (/"weight_map"\s*:/.test(json)) return 'safetensors-index';
    return 'json';
  }
  if (isSentencepiece(buf)) return 'sentencepiece';
  if (isLlama2cTokenizer(buf)) return 'llama2c-tokenizer';
  return null;
}

/** A protobuf varint at `at`: [value, next offset], or null when it runs off the buffer. */
function varint(buf: Buffer, at: number): [number, number] | null {
  let v = 0;
  for (let shift = 0, i = at; i < buf.length && shift < 35; i++, shift += 7) {
    v += (buf[i] & 0x7f) * 2 ** shift;
    if (buf[i] < 0x80) return [v, i + 1];
  }
  return null;
}

/** sentencepiece's ModelProto starts with its first piece: field 1 {field 1 piece (UTF-8), field 2 score (float)}. */
function isSentencepiece(buf: Buffer): boolean {
  if (buf[0] !== 0x0a) return false;
  const outer = varint(buf, 1);
  if (!outer || buf[outer[1]] !== 0x0a) return false;
  const inner = varint(buf, outer[1] + 1);
  if (!inner || inner[0] === 0 || inner[0] > 64 || inner[1] + inner[0] >= buf.length) return false;
  const piece = buf.subarray(inner[1], inner[1] + inner[0]);
  return !piece.includes(0) && Buffer.from(piece.toString('utf8'), 'utf8').equals(piece) && buf[inner[1] + inner[0]] === 0x15;
}

/**
 * llama2.c's tokenizer.bin: int32 max_token_length, then per token float32 score, int32 length
 * and the bytes. Three well-formed tokens (lengths within the maximum, no NUL bytes) are taken as
 * the format; a llama2.c checkpoint header (seven int32 sizes) fails the NUL test.
 */
function isLlama2cTokenizer(buf: Buffer): boolean {
  if (buf.length < 4) return false;
  const maxLen = buf.readInt32LE(0);
  if (!(maxLen >= 1 && maxLen <= 1024)) return false;
  let at = 4;
  for (let k = 0; k < 3; k++) {
    if (at + 8 > buf.length) return false;
    const len = buf.readInt32LE(at + 4);
    if (!(len >= 1 && len <= maxLen) || at + 8 + len > buf.length) return false;
    if (buf.subarray(at + 8, at + 8 + len).includes(0)) return false;
    at += 8 + len;
  }
  return true;
}

/** The first `SNIFF_BYTES` of a file and its size, or null when it cannot be read. */
export function readHead(file: string): { head: Uint8Array; size: number } | null {
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch {
    return null;
  }
  try {
    const size = fs.fstatSync(fd).size;
    const head = new Uint8Array(Math.min(SNIFF_BYTES, size));
    const n = fs.readSync(fd, head, 0, head.length, 0);
    return { head: head.subarray(0, n), size };
  } finally {
    fs.closeSync(fd);
  }
}
