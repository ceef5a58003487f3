import * as fs from 'fs';
import { CrepeError } from '../errors';
import { checkWeights } from '../io/finite';
import { refuseForeignFile } from '../io/sniff';
import { blockOf, normKey } from './block';
import { BlockWeights, LinearName, LlamaConfig, NormName, WeightSource, linearKey, linearShape } from './types';

const HEADER_BYTES = 7 * 4;
/** export.py version 1 and 2 files start with uint32 "ak42" and int32 version in a 256-byte header. */
const MAGIC_AK42 = 0x616b3432;
const VERSIONED_HEADER_BYTES = 256;

/**
 * export.py's per-layer tensors in file order: the legacy layout (version 0) stores them after the
 * embedding; version 1 stores the norms first, then the embedding, then the linears. The block
 * description (block.ts) says which norm or linear each name is.
 */
const V0_BLOCK_ORDER = ['rms_att_weight', 'wq', 'wk', 'wv', 'wo', 'rms_ffn_weight', 'w1', 'w2', 'w3'];
const V1_NORM_ORDER = ['rms_att_weight', 'rms_ffn_weight'];
const V1_LINEAR_ORDER = ['wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'];

/** Byte layout of a llama2.c checkpoint: each per-layer tensor is stored for all layers in turn. */
interface Llama2cLayout {
  embedding: number;
  /** llama2.c name → byte offset of layer 0's tensor and the floats per layer. */
  perLayer: Map<string, { offset: number; floats: number }>;
  finalNorm: number;
  classifier: number; // equals embedding when shared
  totalBytes: number;
}

/** The norms and linears of a llama2.c block, by their export.py names. */
function llama2cTensors(cfg: LlamaConfig): Map<string, { norm: NormName } | { linear: LinearName }> {
  const fam = blockOf(cfg);
  const out = new Map<string, { norm: NormName } | { linear: LinearName }>();
  for (const n of fam.norms) out.set(n.llama2c, { norm: n.name });
  for (const l of fam.linears) out.set(l.llama2c, { linear: l.name });
  const names = [...out.keys()].sort().join(',');
  if (names !== [...V0_BLOCK_ORDER].sort().join(',')) throw new Error(`the ${cfg.architecture} block does not have llama2.c's tensors (${names})`);
  return out;
}

function layoutOf(cfg: LlamaConfig, version: 0 | 1 = 0): Llama2cLayout {
  const f = 4;
  const L = cfg.nLayers;
  let off = version === 0 ? HEADER_BYTES : VERSIONED_HEADER_BYTES;
  const take = (count: number): number => {
    const at = off;
    off += count * f;
    return at;
  };
  const tensors = llama2cTensors(cfg);
  const perLayer = new Map<string, { offset: number; floats: number }>();
  const takeLayers = (name: string): void => {
    const t = tensors.get(name)!;
    const floats = 'norm' in t ? cfg.dim : linearShape(cfg, t.linear)[0] * linearShape(cfg, t.linear)[1];
    perLayer.set(name, { offset: take(L * floats), floats });
  };
  if (version === 1) {
    // export.py version1_export: norms first, then the embedding, then each linear for all
    // layers, no RoPE tables, classifier last when not shared.
    V1_NORM_ORDER.forEach(takeLayers);
    const finalNorm = take(cfg.dim);
    const embedding = take(cfg.vocabSize * cfg.dim);
    V1_LINEAR_ORDER.forEach(takeLayers);
    const classifier = cfg.tiedEmbeddings ? embedding : take(cfg.vocabSize * cfg.dim);
    return { embedding, perLayer, finalNorm, classifier, totalBytes: off };
  }
  const embedding = take(cfg.vocabSize * cfg.dim);
  V0_BLOCK_ORDER.forEach(takeLayers);
  const finalNorm = take(cfg.dim);
  take(cfg.maxSeqLen * (cfg.headDim / 2)); // RoPE cos table: recomputed, not read
  take(cfg.maxSeqLen * (cfg.headDim / 2)); // RoPE sin table
  const classifier = cfg.tiedEmbeddings ? embedding : take(cfg.vocabSize * cfg.dim);
  return { embedding, perLayer, finalNorm, classifier, totalBytes: off };
}

/** Parse and sanity-check the 7-int header; every failure names the file. */
function parseHeader(header: Int32Array, file: string, sharedFlag?: number): LlamaConfig {
  const [dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabRaw, seqLen] = Array.from(header);
  const vocabSize = Math.abs(vocabRaw);
  const bad = (what: string): never => {
    throw new CrepeError(`corrupt llama2.c header in ${file}: ${what}`);
  };
  for (const [name, v] of Object.entries({ dim, hiddenDim, nLayers, nHeads, nKvHeads, vocabSize, seqLen })) {
    if (!(v > 0 && v < 1 << 24)) bad(`${name} = ${v}`);
  }
  if (dim % nHeads !== 0) bad(`dim ${dim} is not a multiple of n_heads ${nHeads}`);
  if (nHeads % nKvHeads !== 0) bad(`n_heads ${nHeads} is not a multiple of n_kv_heads ${nKvHeads}`);
  const headDim = dim / nHeads;
  if (headDim % 2 !== 0) bad(`head dimension ${headDim} is odd`);
  return {
    architecture: 'llama',
    dim,
    hiddenDim,
    nLayers,
    nHeads,
    nKvHeads,
    headDim,
    vocabSize,
    maxSeqLen: seqLen,
    normEps: 1e-5,
    ropeTheta: 10000,
    ropeLayout: 'adjacent',
    // legacy files flag an unshared classifier by a negative vocab size; versioned ones by a byte
    tiedEmbeddings: sharedFlag === undefined ? vocabRaw > 0 : sharedFlag !== 0,
  };
}

/** Reads a llama2.c legacy `.bin` lazily: each call reads only the bytes it returns. */
export class Llama2cSource implements WeightSource {
  readonly format = 'llama2c' as const;
  private readonly layout: Llama2cLayout;

  private constructor(
    readonly origin: string,
    readonly config: LlamaConfig,
    private fd: number,
    /** 0: the legacy layout; 1: export.py version 1 (magic ak42). */
    readonly version: 0 | 1,
  ) {
    this.layout = layoutOf(config, version);
  }

  static open(file: string): Llama2cSource {
    if (!fs.existsSync(file)) throw new CrepeError(`model file not found: ${file}`);
    const stat = fs.statSync(file);
    if (!stat.isFile()) throw new CrepeError(`not a file: ${file}`);
    if (stat.size < HEADER_BYTES) {
      throw new CrepeError(`truncated llama2.c file ${file}: ${stat.size} bytes, shorter than the 28-byte header`);
    }
    refuseForeignFile(file);
    const fd = fs.openSync(file, 'r');
    const buf = Buffer.alloc(Math.min(stat.size, VERSIONED_HEADER_BYTES));
    fs.readSync(fd, buf, 0, buf.length, 0);
    let config: LlamaConfig;
    let version: 0 | 1 = 0;
    try {
      if (buf.readUInt32LE(0) === MAGIC_AK42) {
        const v = buf.length >= 37 ? buf.readInt32LE(4) : -1;
        if (v === 2) {
          throw new CrepeError(`${file} is a llama2.c version 2 file (int8 Q8_0 weights), which crepe does not read: export it with export.py --version 1 (float32) or --version 0`);
        }
        if (v !== 1) throw new CrepeError(`unsupported llama2.c file ${file}: magic ak42 with version ${v} (crepe reads versions 0 and 1)`);
        version = 1;
        config = parseHeader(new Int32Array(buf.buffer.slice(buf.byteOffset + 8, buf.byteOffset + 36)), file, buf[36]);
      } else {
        config = parseHeader(new Int32Array(buf.buffer.slice(buf.byteOffset, buf.byteOffset + HEADER_BYTES)), file);
      }
      const expected = layoutOf(config, version).totalBytes;
      if (stat.size !== expected) {
        const what = stat.size < expected ? 'truncated' : 'oversized';
        throw new CrepeError(
          `${what} llama2.c file ${file}: header implies ${expected} bytes, file has ${stat.size}`,
        );
      }
    } catch (e) {
      fs.closeSync(fd);
      throw e;
    }
    return new Llama2cSource(file, config, fd, version);
  }

  private read(offsetBytes: number, count: number, name: string): Float32Array {
    const out = new Float32Array(count);
    const bytes = new Uint8Array(out.buffer);
    let done = 0;
    while (done < bytes.length) {
      const n = fs.readSync(this.fd, bytes, done, bytes.length - done, offsetBytes + done);
      if (n <= 0) throw new CrepeError(`unexpected end of file reading ${this.origin}`);
      done += n;
    }
    return checkWeights(out, name, this.origin);
  }

  readEmbedding(): Float32Array {
    return this.read(this.layout.embedding, this.config.vocabSize * this.config.dim, 'token_embedding');
  }

  readBlock(index: number): BlockWeights {
    const cfg = this.config;
    if (!(index >= 0 && index < cfg.nLayers)) throw new CrepeError(`block ${index} out of range`);
    const linears = {} as Record<LinearName, Float32Array>;
    const norms = {} as Record<NormName, Float32Array>;
    for (const [name, t] of llama2cTensors(cfg)) {
      const { offset, floats } = this.layout.perLayer.get(name)!;
      const at = offset + index * floats * 4;
      if ('norm' in t) norms[t.norm] = this.read(at, floats, normKey(index, t.norm));
      else linears[t.linear] = this.read(at, floats, linearKey(index, t.linear));
    }
    return { norms, linears };
  }

  readFinalNorm(): Float32Array {
    return this.read(this.layout.finalNorm, this.config.dim, 'final_norm');
  }

  readClassifier(): Float32Array {
    return this.read(this.layout.classifier, this.config.vocabSize * this.config.dim, 'classifier');
  }

  close(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }
}

/**
 * Write a llama2.c legacy checkpoint from any source, one block at a time per tensor kind
 * (the format stores each kind for all layers contiguously). RoPE tables are recomputed as
 * llama2.c's export writes them. Sources in HF layout must be converted to adjacent-pair
 * rotary order first; this writer refuses them rather than silently producing a wrong model.
 */
export function writeLlama2c(src: WeightSource, file: string, write: (chunks: Iterable<Uint8Array>) => void): void {
  const cfg = src.config;
  if (cfg.ropeLayout !== 'adjacent') {
    throw new CrepeError(`cannot write ${file} as llama2.c: the model uses the HF rotary layout`);
  }
  if (cfg.biases?.length) throw new CrepeError(`cannot write ${file} as llama2.c: the format has no place for the ${cfg.biases.join('/')} biases`);
  const header = new Int32Array([
    cfg.dim,
    cfg.hiddenDim,
    cfg.nLayers,
    cfg.nHeads,
    cfg.nKvHeads,
    cfg.tiedEmbeddings ? cfg.vocabSize : -cfg.vocabSize,
    cfg.maxSeqLen,
  ]);
  const bytes = (a: Float32Array | Int32Array): Uint8Array => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  function* chunks(): Iterable<Uint8Array> {
    yield bytes(header);
    yield bytes(src.readEmbedding());
    const perBlock = (pick: (b: BlockWeights) => Float32Array): Iterable<Uint8Array> =>
      (function* () {
        for (let l = 0; l < cfg.nLayers; l++) yield bytes(pick(src.readBlock(l)));
      })();
    const tensors = llama2cTensors(cfg);
    for (const name of V0_BLOCK_ORDER) {
      const t = tensors.get(name)!;
      yield* perBlock((b) => ('norm' in t ? b.norms[t.norm] : b.linears[t.linear]));
    }
    yield bytes(src.readFinalNorm());
    const half = cfg.headDim / 2;
    const cos = new Float32Array(cfg.maxSeqLen * half);
    const sin = new Float32Array(cfg.maxSeqLen * half);
    for (let t = 0; t < cfg.maxSeqLen; t++) {
      for (let i = 0; i < half; i++) {
        const freq = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim);
        cos[t * half + i] = Math.cos(t * freq);
        sin[t * half + i] = Math.sin(t * freq);
      }
    }
    yield bytes(cos);
    yield bytes(sin);
    if (!cfg.tiedEmbeddings) yield bytes(src.readClassifier());
  }
  write(chunks());
}
