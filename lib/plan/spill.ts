/**
 * Host storage that can leave memory: per-window hidden states (ActivationStore) and pruned
 * decoder blocks (BlockSpill). The memory planner chooses where they live; a 7B model's
 * calibration activations (128 x 2048 x 4096 floats = 4.3 GB per buffer) and its pruned blocks
 * (0.8 GB each in F32) do not fit in RAM together.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CrepeError } from '../errors';
import { osCause, processAlive } from '../io/atomic';
import { f16ToFloats, floatsToF16 } from '../model/safetensors';
import { BlockWeights } from '../model/types';

/** Where activations are kept: float32 in memory, float16 in memory (half the bytes, rounded), or on disk (exact). */
export type ActivationStorage = 'f32' | 'f16' | 'disk';
export const ACTIVATION_STORAGES: readonly ActivationStorage[] = ['f32', 'f16', 'disk'];

/** A fixed number of equally sized float32 records (one per window). */
export interface ActivationStore {
  readonly count: number;
  /** Floats per record. */
  readonly length: number;
  readonly storage: ActivationStorage;
  get(i: number): Float32Array;
  set(i: number, data: Float32Array): void;
  dispose(): void;
}

const SPILL_PREFIX = 'crepe-spill-';
const liveSpills = new Set<string>();
/** The exit listener that removes live spill folders is added once per process. */
let exitHook = false;

function removeLiveSpills(): void {
  for (const dir of liveSpills) fs.rmSync(dir, { recursive: true, force: true });
  liveSpills.clear();
}

/**
 * Spill folders of crepe processes that no longer run (killed with -9, or a crash): their names
 * carry the owner's pid. Returns the folders removed.
 */
export function removeStaleSpills(parent: string): string[] {
  const removed: string[] = [];
  for (const name of fs.readdirSync(parent)) {
    const m = new RegExp(`^${SPILL_PREFIX}(\\d+)-`).exec(name);
    if (!m || Number(m[1]) === process.pid || processAlive(Number(m[1]))) continue;
    fs.rmSync(path.join(parent, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * A temporary folder for spill files (they can be tens of GB), removed by the returned cleanup and
 * on exit; folders left by killed crepe processes (signals, kill -9) are removed by the next run.
 */
export function spillFolder(parent?: string): { dir: string; cleanup: () => void } {
  const root = parent ?? os.tmpdir();
  removeStaleSpills(root);
  let dir: string;
  try {
    dir = fs.mkdtempSync(path.join(root, `${SPILL_PREFIX}${process.pid}-`));
  } catch (e) {
    throw spillError(`a spill folder in ${root}`, e);
  }
  // No signal listeners: a listener defers SIGTERM/SIGINT until the synchronous pipeline yields,
  // which it may not do for hours. A killed run's folder is removed by the next run instead.
  if (!exitHook) process.on('exit', removeLiveSpills);
  exitHook = true;
  liveSpills.add(dir);
  const cleanup = () => {
    fs.rmSync(dir, { recursive: true, force: true });
    liveSpills.delete(dir);
  };
  return { dir, cleanup };
}

export function createActivationStore(storage: ActivationStorage, count: number, length: number, spillDir?: string): ActivationStore {
  if (storage === 'f32') return new MemoryStore<Float32Array>('f32', count, length, (x) => x, (x) => x);
  if (storage === 'f16') return new MemoryStore<Uint16Array>('f16', count, length, floatsToF16, f16ToFloats);
  return new DiskStore(count, length, spillDir);
}

/** Records in memory, as float32 (exact) or encoded (F16: half the bytes, rounded). */
class MemoryStore<T> implements ActivationStore {
  private readonly items: (T | undefined)[];
  constructor(
    readonly storage: 'f32' | 'f16',
    readonly count: number,
    readonly length: number,
    private readonly encode: (x: Float32Array) => T,
    private readonly decode: (v: T) => Float32Array,
  ) {
    this.items = new Array(count);
  }
  get(i: number): Float32Array {
    const v = this.items[i];
    if (v === undefined) throw new Error(`activation ${i} was never stored`);
    return this.decode(v);
  }
  set(i: number, data: Float32Array): void {
    this.items[i] = this.encode(data);
  }
  dispose(): void {
    this.items.fill(undefined);
  }
}

/** Records at fixed offsets of one file: only the record being used is in memory. */
class DiskStore implements ActivationStore {
  readonly storage = 'disk' as const;
  private fd: number | null;
  private readonly file: string;
  private readonly written: Uint8Array;
  private readonly cleanup: () => void;
  constructor(
    readonly count: number,
    readonly length: number,
    spillDir?: string,
  ) {
    const folder = spillFolder(spillDir);
    this.cleanup = folder.cleanup;
    this.file = path.join(folder.dir, 'activations.f32');
    this.fd = openSpill(this.file, folder.cleanup);
    this.written = new Uint8Array(count);
  }
  private offset(i: number): number {
    return i * this.length * 4;
  }
  get(i: number): Float32Array {
    if (this.fd === null || !this.written[i]) throw new Error(`activation ${i} was never stored`);
    const out = new Float32Array(this.length);
    readFully(this.fd, new Uint8Array(out.buffer), this.offset(i), this.file);
    return out;
  }
  set(i: number, data: Float32Array): void {
    if (this.fd === null) throw new Error('activation store disposed');
    if (data.length !== this.length) throw new Error(`activation ${i}: ${data.length} floats, expected ${this.length}`);
    writeFully(this.fd, new Uint8Array(data.buffer, data.byteOffset, data.byteLength), this.offset(i), this.file);
    this.written[i] = 1;
  }
  dispose(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    this.cleanup();
  }
}

/** fs.readSync/writeSync move at most 2 GiB per call. */
const IO_CHUNK = 1 << 30;

/**
 * An OS error on a spill file as a one-line refusal naming it and the cause (a full disk, a
 * read-only or vanished folder); the spill folder itself is removed on exit.
 */
function spillError(what: string, e: unknown): unknown {
  if (e instanceof CrepeError || !(e as NodeJS.ErrnoException)?.code) return e;
  return new CrepeError(`cannot write ${what}: ${osCause(e)}; free some space or give --spill-dir on a larger disk`);
}

function openSpill(file: string, cleanup: () => void): number {
  try {
    return fs.openSync(file, 'w+');
  } catch (e) {
    cleanup();
    throw spillError(`spill file ${file}`, e);
  }
}

function readFully(fd: number, into: Uint8Array, position: number, file: string): void {
  for (let done = 0; done < into.length; ) {
    let got: number;
    try {
      got = fs.readSync(fd, into, done, Math.min(IO_CHUNK, into.length - done), position + done);
    } catch (e) {
      throw (e as NodeJS.ErrnoException).code ? new CrepeError(`cannot read spill file ${file}: ${osCause(e)}`) : e;
    }
    if (got <= 0) throw new Error(`spill file ended early at byte ${position + done}`);
    done += got;
  }
}

function writeFully(fd: number, data: Uint8Array, position: number, file: string): void {
  try {
    for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, Math.min(IO_CHUNK, data.length - done), position + done);
  } catch (e) {
    throw spillError(`spill file ${file}`, e);
  }
}

// IEEE 754 half precision (round to nearest, ties to even) for F16 activation storage: the
// safetensors F16 codec, so a stored activation rounds exactly as an F16 checkpoint does.
export { f16ToFloats as halfToFloat, floatsToF16 as floatToHalf } from '../model/safetensors';

// ---------------------------------------------------------------------------------------------
// pruned blocks

/** Where each float array of a block sits in the spill file: its path in the object, offset, length. */
interface BlockLayout {
  arrays: { path: string[]; offset: number; length: number }[];
  /** Non-array leaves (e.g. a field set to null), kept as they are. */
  other: { path: string[]; value: unknown }[];
}

/**
 * Pruned decoder blocks written to one file as they are produced, read back one at a time. The
 * block object is walked generically, so fields a model family adds to BlockWeights (e.g.
 * biases) are carried without this code knowing them.
 */
export class BlockSpill {
  private fd: number | null;
  private end = 0;
  private readonly layouts = new Map<number, BlockLayout>();
  private readonly cleanup: () => void;
  private readonly file: string;

  constructor(spillDir?: string) {
    const folder = spillFolder(spillDir);
    this.cleanup = folder.cleanup;
    this.file = path.join(folder.dir, 'blocks.f32');
    this.fd = openSpill(this.file, folder.cleanup);
  }

  has(index: number): boolean {
    return this.layouts.has(index);
  }

  put(index: number, block: BlockWeights): void {
    if (this.fd === null) throw new Error('block spill closed');
    const layout: BlockLayout = { arrays: [], other: [] };
    const walk = (v: unknown, at: string[]) => {
      if (v instanceof Float32Array) {
        writeFully(this.fd!, new Uint8Array(v.buffer, v.byteOffset, v.byteLength), this.end, this.file);
        layout.arrays.push({ path: at, offset: this.end, length: v.length });
        this.end += v.byteLength;
      } else if (v !== null && typeof v === 'object' && !ArrayBuffer.isView(v)) {
        for (const [k, child] of Object.entries(v)) walk(child, [...at, k]);
      } else layout.other.push({ path: at, value: v });
    };
    walk(block, []);
    this.layouts.set(index, layout);
  }

  get(index: number): BlockWeights {
    const layout = this.layouts.get(index);
    if (!layout || this.fd === null) throw new Error(`block ${index} is not in the spill file`);
    const root: Record<string, unknown> = {};
    const place = (at: string[], value: unknown) => {
      let o = root;
      for (const k of at.slice(0, -1)) o = (o[k] ??= {}) as Record<string, unknown>;
      o[at[at.length - 1]] = value;
    };
    for (const a of layout.arrays) {
      const out = new Float32Array(a.length);
      readFully(this.fd, new Uint8Array(out.buffer), a.offset, this.file);
      place(a.path, out);
    }
    for (const o of layout.other) place(o.path, o.value);
    return root as unknown as BlockWeights;
  }

  close(): void {
    if (this.fd !== null) fs.closeSync(this.fd);
    this.fd = null;
    this.cleanup();
  }
}
