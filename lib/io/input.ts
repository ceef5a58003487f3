/**
 * Reading input files with one-line refusals instead of OS errors: a missing path, a folder, a
 * device or pipe (e.g. /dev/zero, which never ends), or a file above a size cap.
 */
import * as fs from 'fs';
import { CrepeError } from '../errors';

const MiB = 1 << 20;
/** Largest text read whole (datasets): also about V8's largest string. */
export const MAX_TEXT_BYTES = 512 * MiB;
/** Largest JSON config or tokenizer file read whole. */
export const MAX_SMALL_FILE_BYTES = 64 * MiB;

/** Refuse unless `file` is a regular file (symbolic links followed) of at most `maxBytes`; returns its size. */
export function assertRegularFile(file: string, what: string, maxBytes = Infinity): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') throw new CrepeError(`${what} not found: ${file}`);
    throw new CrepeError(`cannot read ${what} ${file}: ${code ?? (e as Error).message}`);
  }
  if (st.isDirectory()) throw new CrepeError(`${what} ${file} is a folder, a file is expected`);
  if (!st.isFile()) throw new CrepeError(`${what} ${file} is not a regular file (a device, pipe or socket)`);
  if (st.size > maxBytes) {
    throw new CrepeError(`${what} ${file} is ${(st.size / MiB).toFixed(1)} MiB, above the ${maxBytes / MiB} MiB limit`);
  }
  return st.size;
}

/** The bytes of a regular file of at most `maxBytes`. */
export function readInputFile(file: string, what: string, maxBytes: number): Buffer {
  assertRegularFile(file, what, maxBytes);
  try {
    return fs.readFileSync(file);
  } catch (e) {
    throw new CrepeError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Bytes as UTF-8 text; binary data (NUL bytes) and invalid UTF-8 are refused, naming `file`. */
export function decodeText(bytes: Uint8Array, file: string, what: string): string {
  const nul = bytes.indexOf(0);
  if (nul >= 0) throw new CrepeError(`${what} ${file} is binary, not text (a NUL byte at offset ${nul})`);
  try {
    return utf8.decode(bytes);
  } catch {
    throw new CrepeError(`${what} ${file} is not UTF-8 text`);
  }
}

/** A UTF-8 text file of at most MAX_TEXT_BYTES. */
export function readTextFile(file: string, what: string): string {
  return decodeText(readInputFile(file, what, MAX_TEXT_BYTES), file, what);
}
