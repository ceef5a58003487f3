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
