/**
 * Safetensors, hand-written. The format is small: an 8-byte little-endian u64 header length, a
 * JSON header `{name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__"?: {...}}`, then
 * the raw little-endian tensor data (offsets relative to the end of the header). No npm package
 * reads one tensor lazily from disk (they load the whole file into memory), and a shard of a 70B
 * model does not fit, so each tensor is read here with fs.readSync at its own offset.
 *
 * Raw bytes are reinterpreted as typed arrays directly: every platform Node 20 runs on is
 * little-endian, like the format.
 */
import * as fs from 'fs';
import { CrepeError } from '../errors';
import { refuseForeignFile } from '../io/sniff';
import { writeFileAtomic } from '../io/atomic';
import { assertRegularFile } from '../io/input';

/** The dtypes we convert to and from float32. */
export type FloatDtype = 'F32' | 'F16' | 'BF16';
const DTYPE_BYTES: Record<FloatDtype, number> = { F32: 4, F16: 2, BF16: 2 };

function isFloatDtype(x: unknown): x is FloatDtype {
  return x === 'F32' || x === 'F16' || x === 'BF16';
}

export function dtypeBytes(dtype: FloatDtype): number {
  return DTYPE_BYTES[dtype];
}

/** The reference implementation refuses headers above 100 MB; checking first avoids a huge allocation. */
const MAX_HEADER_BYTES = 100_000_000;
/** fs.readSync cannot read 2 GiB at once; chunks also bound the temporary buffer for F16/BF16. */
const CHUNK_BYTES = 1 << 26;

export interface TensorInfo {
  dtype: FloatDtype;
  shape: number[];
}

interface Entry extends TensorInfo {
  /** Absolute file offsets of the tensor's bytes. */
  begin: number;
  end: number;
}

/** A safetensors file opened for lazy, one-tensor-at-a-time reading. */
export class SafetensorsFile {
  private constructor(
    readonly path: string,
    private fd: number | null,
    private readonly entries: Map<string, Entry>,
    private readonly meta: Record<string, unknown> | undefined,
  ) {}

  /** Open `file` and validate its header (not the data, which is only read on demand). */
  static open(file: string): SafetensorsFile {
    if (fs.existsSync(file)) assertRegularFile(file, 'safetensors file'); // a folder or device: one line, not EISDIR
    refuseForeignFile(file);
    let fd: number;
    try {
      fd = fs.openSync(file, 'r');
    } catch (e) {
      throw new CrepeError(`cannot open safetensors file ${file}: ${(e as Error).message}`);
    }
    try {
      const { entries, meta } = parseHeader(fd, file);
      return new SafetensorsFile(file, fd, entries, meta);
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
  }

  names(): string[] {
    return [...this.entries.keys()];
  }

  has(name: string): boolean {
    return this.entries.has(name);
  }

  info(name: string): TensorInfo {
    const { dtype, shape } = this.entry(name);
    return { dtype, shape: [...shape] };
  }

  /** The header's `__metadata__` object, if any. */
  metadata(): Record<string, unknown> | undefined {
    return this.meta && { ...this.meta };
  }

  /** Read one tensor from disk and convert it to float32. */
  readFloat32(name: string): Float32Array {
    const e = this.entry(name);
    if (this.fd === null) throw new Error(`${this.path} is closed`);
    const fd = this.fd;
    const count = (e.end - e.begin) / DTYPE_BYTES[e.dtype];
    const out = new Float32Array(count);
    if (e.dtype === 'F32') {
      readExactly(fd, new Uint8Array(out.buffer), e.begin, this.path);
      return out;
    }
    const chunk = new Uint16Array(Math.min(count, CHUNK_BYTES / 2));
    const outBits = new Uint32Array(out.buffer);
    const f16 = e.dtype === 'F16' ? f16Table() : null;
    for (let start = 0; start < count; start += chunk.length) {
      const n = Math.min(chunk.length, count - start);
      readExactly(fd, new Uint8Array(chunk.buffer, 0, n * 2), e.begin + start * 2, this.path);
      if (f16) {
        for (let j = 0; j < n; j++) out[start + j] = f16[chunk[j]];
      } else {
        // bfloat16 is the upper half of a float32.
        for (let j = 0; j < n; j++) outBits[start + j] = chunk[j] << 16;
      }
    }
    return out;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private entry(name: string): Entry {
    const e = this.entries.get(name);
    if (!e) throw new CrepeError(`missing tensor ${name} in ${this.path}`);
    return e;
  }
}

function corrupt(file: string, what: string): CrepeError {
  return new CrepeError(`corrupt safetensors file ${file}: ${what}`);
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function isNonNegativeInt(x: unknown): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0;
}

function parseHeader(fd: number, file: string): { entries: Map<string, Entry>; meta?: Record<string, unknown> } {
  const size = fs.fstatSync(fd).size;
  if (size < 8) throw corrupt(file, `${size} bytes is shorter than the 8-byte header length`);
  const lenBytes = new Uint8Array(8);
  readExactly(fd, lenBytes, 0, file);
  const headerLen = Buffer.from(lenBytes).readBigUInt64LE(0);
  if (headerLen > BigInt(size - 8)) {
    throw corrupt(file, `header length ${headerLen} exceeds the file size ${size}`);
  }
  if (headerLen > BigInt(MAX_HEADER_BYTES)) {
    throw corrupt(file, `header length ${headerLen} exceeds the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const headerBytes = new Uint8Array(Number(headerLen));
  readExactly(fd, headerBytes, 8, file);
  let header: unknown;
  try {
    header = JSON.parse(Buffer.from(headerBytes).toString('utf8'));
  } catch {
    throw corrupt(file, 'header is not valid JSON');
  }
  if (!isObject(header)) throw corrupt(file, 'header is not a JSON object');

  const dataStart = 8 + headerBytes.length;
  const dataSize = size - dataStart;
  const entries = new Map<string, Entry>();
  let meta: Record<string, unknown> | undefined;
  for (const [name, raw] of Object.entries(header)) {
    if (name === '__metadata__') {
      if (!isObject(raw)) throw corrupt(file, '__metadata__ is not a JSON object');
      meta = raw;
      continue;
    }
    if (!isObject(raw)) throw corrupt(file, `entry for tensor ${name} is not a JSON object`);
    const { dtype, shape, data_offsets: offsets } = raw;
    if (!isFloatDtype(dtype)) {
      throw new CrepeError(`unsupported dtype ${String(dtype)} for tensor ${name} in ${file}`);
    }
    if (!Array.isArray(shape) || !shape.every(isNonNegativeInt)) {
      throw corrupt(file, `tensor ${name} has an invalid shape ${JSON.stringify(shape)}`);
    }
    if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isNonNegativeInt)) {
      throw corrupt(file, `tensor ${name} has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [begin, end] = offsets as [number, number];
    if (end < begin) throw corrupt(file, `tensor ${name} ends (${end}) before it begins (${begin})`);
    if (end > dataSize) {
      throw corrupt(file, `tensor ${name} data [${begin}, ${end}) lies beyond the ${dataSize} data bytes`);
    }
    const expected = shape.reduce((a: number, d: number) => a * d, 1) * DTYPE_BYTES[dtype];
    if (end - begin !== expected) {
      throw corrupt(file, `tensor ${name} has ${end - begin} bytes but ${dtype}[${shape.join(', ')}] needs ${expected}`);
    }
    entries.set(name, { dtype, shape, begin: dataStart + begin, end: dataStart + end });
  }
  // Two tensors sharing bytes would silently alias each other's weights.
  const spans = [...entries].filter(([, e]) => e.end > e.begin).sort((a, b) => a[1].begin - b[1].begin);
  for (let k = 1; k < spans.length; k++) {
    if (spans[k][1].begin < spans[k - 1][1].end) throw corrupt(file, `tensors ${spans[k - 1][0]} and ${spans[k][0]} overlap in the data`);
  }
  return { entries, meta };
}

/** Fill `into` from `position`, in chunks; a short read means the file is truncated. */
function readExactly(fd: number, into: Uint8Array, position: number, file: string): void {
  let done = 0;
  while (done < into.length) {
    const want = Math.min(CHUNK_BYTES, into.length - done);
    const got = fs.readSync(fd, into, done, want, position + done);
    if (got === 0) throw corrupt(file, `file ends at byte ${position + done}, inside a tensor`);
    done += got;
  }
}

// ---------------------------------------------------------------------------------------------
// float16 / bfloat16 conversions

let F16_TABLE: Float32Array | null = null;

/** All 65536 float16 values as float32: exact, and faster than decoding each element. */
function f16Table(): Float32Array {
  if (!F16_TABLE) {
    F16_TABLE = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) F16_TABLE[h] = f16ToNumber(h);
  }
  return F16_TABLE;
}

export function f16ToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24; // zero and subnormals
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

const f32 = new Float32Array(1);
const f32Bits = new Uint32Array(f32.buffer);

/** float32 values → float16 bits (numberToF16 each): F16 tensors and F16 activation storage. */
export function floatsToF16(data: Float32Array): Uint16Array {
  const out = new Uint16Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = numberToF16(data[i]);
  return out;
}

/** float16 bits → float32 values, exact (through a 65,536-entry table). */
export function f16ToFloats(data: Uint16Array): Float32Array {
  const table = f16Table();
  const out = new Float32Array(data.length);
  for (let i = 0; i < data.length; i++) out[i] = table[data[i]];
  return out;
}

/** float32 → float16 bits, round to nearest even; overflow gives ±inf, NaN stays NaN. */
export function numberToF16(x: number): number {
  f32[0] = x;
  const b = f32Bits[0];
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  const mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  const e = exp - 127 + 15; // float16 biased exponent
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    // Subnormal in float16: value = (mant | implicit one) >> (14 - e) units of 2^-24.
    if (e < -10) return sign; // below half the smallest subnormal
    return sign | roundShift(mant | 0x800000, 14 - e);
  }
  // The carry of rounding may overflow into the exponent, which is exactly right (up to inf).
  return sign | (((e << 10) | (mant >>> 13)) + roundBit(mant, 13, mant >>> 13));
}

function roundShift(v: number, shift: number): number {
  const q = v >>> shift;
  return q + roundBit(v, shift, q);
}

/** 1 when dropping the low `shift` bits of `v` must round `q` up (nearest, ties to even). */
function roundBit(v: number, shift: number, q: number): number {
  const rem = v & ((1 << shift) - 1);
  const half = 1 << (shift - 1);
  return rem > half || (rem === half && (q & 1) === 1) ? 1 : 0;
}

/** float32 bits → bfloat16 bits, round to nearest even; NaN stays a (quiet) NaN. */
function f32BitsToBf16(b: number): number {
  if ((b & 0x7fffffff) > 0x7f800000) return (b >>> 16) | 0x40;
  return (b + 0x7fff + ((b >>> 16) & 1)) >>> 16;
}

// ---------------------------------------------------------------------------------------------
// writing

export interface TensorSpec {
  name: string;
  shape: number[];
}

export interface NamedTensor extends TensorSpec {
  data: Float32Array;
}

function elementCount(shape: number[]): number {
  return shape.reduce((a, d) => a * d, 1);
}

/** The 8-byte length plus the JSON header, padded with spaces to 8-byte alignment as the format allows. */
function encodeHeader(specs: TensorSpec[], dtype: FloatDtype, metadata?: Record<string, string>): Uint8Array {
  const header: Record<string, unknown> = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const { name, shape } of specs) {
    if (name === '__metadata__' || name in header) throw new Error(`duplicate or reserved tensor name ${name}`);
    const bytes = elementCount(shape) * DTYPE_BYTES[dtype];
    header[name] = { dtype, shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const padded = Math.ceil(json.length / 8) * 8;
  const out = new Uint8Array(8 + padded).fill(0x20);
  Buffer.from(out.buffer).writeBigUInt64LE(BigInt(padded), 0);
  out.set(json, 8);
  return out;
}

function encodeTensor(data: Float32Array, dtype: FloatDtype): Uint8Array {
  if (dtype === 'F32') return new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
  if (dtype === 'F16') return new Uint8Array(floatsToF16(data).buffer);
  const out = new Uint16Array(data.length);
  const bits = new Uint32Array(data.buffer, data.byteOffset, data.length);
  for (let i = 0; i < data.length; i++) out[i] = f32BitsToBf16(bits[i]);
  return new Uint8Array(out.buffer);
}

function checkLength(t: NamedTensor): void {
  if (t.data.length !== elementCount(t.shape)) {
    throw new Error(`tensor ${t.name}: ${t.data.length} values for shape [${t.shape.join(', ')}]`);
  }
}

/** Write in-memory tensors to one safetensors file, atomically. */
export function writeSafetensors(
  file: string,
  tensors: NamedTensor[],
  dtype: FloatDtype,
  metadata?: Record<string, string>,
): void {
  tensors.forEach(checkLength);
  const parts = [encodeHeader(tensors, dtype, metadata), ...tensors.map((t) => encodeTensor(t.data, dtype))];
  writeFileAtomic(file, Buffer.concat(parts));
}

/**
 * Streams tensors into a new safetensors file one at a time, in the order declared up front (the
 * header, which holds every offset, comes first), so a shard never has to sit in memory. Not
 * atomic by itself: write into a directory built with writeDirAtomic.
 */
export class SafetensorsWriter {
  private fd: number | null;
  private next = 0;
  private position: number;

  constructor(
    readonly path: string,
    private readonly specs: TensorSpec[],
    private readonly dtype: FloatDtype,
    metadata?: Record<string, string>,
  ) {
    const header = encodeHeader(specs, dtype, metadata);
    this.fd = fs.openSync(path, 'w');
    this.position = 0;
    this.append(header);
  }

  /** Write the next tensor; names must come in the declared order. */
  write(name: string, data: Float32Array): void {
    const spec = this.specs[this.next];
    if (!spec || spec.name !== name) throw new Error(`${this.path}: expected tensor ${spec?.name ?? '(none)'}, got ${name}`);
    checkLength({ ...spec, data });
    this.append(encodeTensor(data, this.dtype));
    this.next++;
  }

  /** Flush and close; every declared tensor must have been written. */
  finish(): void {
    if (this.next !== this.specs.length) {
      throw new Error(`${this.path}: ${this.specs.length - this.next} declared tensors were not written`);
    }
    fs.fsyncSync(this.requireFd());
    this.abort();
  }

  /** Close without checking (after an error; the caller discards the file). */
  abort(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
  }

  private append(bytes: Uint8Array): void {
    const fd = this.requireFd();
    for (let done = 0; done < bytes.length; ) {
      done += fs.writeSync(fd, bytes, done, Math.min(CHUNK_BYTES, bytes.length - done), this.position + done);
    }
    this.position += bytes.length;
  }

  private requireFd(): number {
    if (this.fd === null) throw new Error(`${this.path} is closed`);
    return this.fd;
  }
}
