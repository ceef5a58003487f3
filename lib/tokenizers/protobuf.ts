/**
 * A minimal protobuf wire-format reader: enough to walk the fields of a sentencepiece
 * ModelProto. Hand-written rather than a dependency because only four wire types and a few
 * fields are needed, and a schema compiler would be heavier than the whole reader.
 * Malformed input throws ProtoError, which callers turn into a CrepeError naming the file.
 */

export class ProtoError extends Error {}

export interface ProtoField {
  field: number;
  /** 0 varint, 1 fixed64, 2 length-delimited, 5 fixed32. */
  wireType: number;
  /** Varint value as a signed 32-bit int (protobuf int32/enum/bool; negative int32 are 10-byte varints). */
  int: number;
  /** Payload of a length-delimited field, or the raw 4/8 bytes of a fixed field. */
  bytes: Uint8Array;
}

/** All fields of one message, in file order. */
export function readFields(buf: Uint8Array): ProtoField[] {
  const fields: ProtoField[] = [];
  let pos = 0;

  const varint = (): number => {
    let low32 = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      if (pos >= buf.length) throw new ProtoError(`varint runs past the end (byte ${pos})`);
      const b = buf[pos++];
      if (shift < 32) low32 |= (b & 0x7f) << shift; // bits above 32 are dropped by the shift
      if ((b & 0x80) === 0) return low32 | 0;
    }
    throw new ProtoError(`varint longer than 10 bytes (byte ${pos})`);
  };
  const take = (len: number): Uint8Array => {
    if (len < 0 || pos + len > buf.length) throw new ProtoError(`field of ${len} bytes runs past the end (byte ${pos} of ${buf.length})`);
    const out = buf.subarray(pos, pos + len);
    pos += len;
    return out;
  };

  while (pos < buf.length) {
    const key = varint() >>> 0;
    const field = key >>> 3;
    const wireType = key & 7;
    if (field === 0) throw new ProtoError(`field number 0 at byte ${pos}`);
    const f: ProtoField = { field, wireType, int: 0, bytes: new Uint8Array(0) };
    switch (wireType) {
      case 0: f.int = varint(); break;
      case 1: f.bytes = take(8); break;
      case 2: f.bytes = take(varint()); break;
      case 5: f.bytes = take(4); break;
      default: throw new ProtoError(`unsupported wire type ${wireType} for field ${field}`);
    }
    fields.push(f);
  }
  return fields;
}

// ignoreBOM: a piece may be exactly U+FEFF (Llama-2 and Mistral vocabularies have one); by
// default TextDecoder strips a leading BOM, which would leave that piece empty.
const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

export function fieldString(f: ProtoField): string {
  if (f.wireType !== 2) throw new ProtoError(`field ${f.field} should be a string`);
  try {
    return utf8.decode(f.bytes);
  } catch {
    throw new ProtoError(`field ${f.field} is not valid UTF-8`);
  }
}

export function fieldFloat(f: ProtoField): number {
  if (f.wireType !== 5) throw new ProtoError(`field ${f.field} should be a float`);
  return new DataView(f.bytes.buffer, f.bytes.byteOffset, 4).getFloat32(0, true);
}

export function fieldInt(f: ProtoField): number {
  if (f.wireType !== 0) throw new ProtoError(`field ${f.field} should be a varint`);
  return f.int;
}

export function fieldMessage(f: ProtoField): ProtoField[] {
  if (f.wireType !== 2) throw new ProtoError(`field ${f.field} should be a message`);
  return readFields(f.bytes);
}
