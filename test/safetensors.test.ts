import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { CrepeError } from '../lib/errors';
import {
  FloatDtype,
  SafetensorsFile,
  SafetensorsWriter,
  f16ToNumber,
  numberToF16,
  writeSafetensors,
} from '../lib/model/safetensors';
import { oneLineCrepeError } from './helpers';

let dir: string;
beforeAll(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-st-'))));
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function randomFloats(n: number, seed: number): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2 ** 32 - 0.5) * 4;
  }
  return out;
}

function readBack(file: string, name: string): Float32Array {
  const f = SafetensorsFile.open(file);
  try {
    return f.readFloat32(name);
  } finally {
    f.close();
  }
}

/** float32 → bfloat16 bits and back via the public API. */
function roundTrip(values: number[], dtype: FloatDtype): Float32Array {
  const file = path.join(dir, `rt-${dtype}.safetensors`);
  writeSafetensors(file, [{ name: 'x', shape: [values.length], data: Float32Array.from(values) }], dtype);
  return readBack(file, 'x');
}

/** A hand-made file: header object (or raw string) and data bytes; headerLen overrides the length field. */
function rawFile(name: string, header: unknown, dataBytes: number, headerLen?: bigint): string {
  const json = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(headerLen ?? BigInt(json.length));
  const file = path.join(dir, name);
  fs.writeFileSync(file, Buffer.concat([len, json, Buffer.alloc(dataBytes)]));
  return file;
}

describe('round trips', () => {
  const tensors = [
    { name: 'a.weight', shape: [3, 5], data: randomFloats(15, 1) },
    { name: 'b', shape: [7], data: randomFloats(7, 2) },
    { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
  ];

  test('F32 is exact, with metadata, names, shapes and 8-byte header alignment', () => {
    const file = path.join(dir, 'f32.safetensors');
    writeSafetensors(file, tensors, 'F32', { format: 'pt' });
    const f = SafetensorsFile.open(file);
    expect(f.names()).toEqual(['a.weight', 'b', 'empty']);
    expect(f.info('a.weight')).toEqual({ dtype: 'F32', shape: [3, 5] });
    expect(f.metadata()).toEqual({ format: 'pt' });
    for (const t of tensors) expect(f.readFloat32(t.name)).toEqual(t.data);
    f.close();
    const headerLen = Number(fs.readFileSync(file).readBigUInt64LE(0));
    expect(headerLen % 8).toBe(0);
    expect(fs.statSync(file).size).toBe(8 + headerLen + (15 + 7) * 4);
  });

  test('the streaming writer produces the same bytes as writeSafetensors', () => {
    for (const dtype of ['F32', 'F16', 'BF16'] as const) {
      const a = path.join(dir, `whole-${dtype}.safetensors`);
      const b = path.join(dir, `stream-${dtype}.safetensors`);
      writeSafetensors(a, tensors, dtype, { format: 'pt' });
      const w = new SafetensorsWriter(b, tensors, dtype, { format: 'pt' });
      for (const t of tensors) w.write(t.name, t.data);
      w.finish();
      expect(fs.readFileSync(b).equals(fs.readFileSync(a))).toBe(true);
    }
  });

  test('the streaming writer enforces the declared order and completeness', () => {
    const w = new SafetensorsWriter(path.join(dir, 'order.safetensors'), tensors, 'F32');
    expect(() => w.write('b', tensors[1].data)).toThrow(/expected tensor a.weight/);
    w.write('a.weight', tensors[0].data);
    expect(() => w.finish()).toThrow(/not written/);
    w.abort();
  });

  test('reading a tensor reads only its bytes, not the file', () => {
    const big = randomFloats(100_000, 3);
    const file = path.join(dir, 'lazy.safetensors');
    writeSafetensors(file, [{ name: 'big', shape: [big.length], data: big }, { name: 'small', shape: [7], data: tensors[1].data }], 'F32');
    const f = SafetensorsFile.open(file);
    // The `fs` import is a getter-only namespace copy; spy on the module object itself.
    const spy = jest.spyOn(require('fs') as typeof fs, 'readSync');
    try {
      expect(f.readFloat32('small')).toEqual(tensors[1].data);
      const bytes = spy.mock.calls.reduce((a, c) => a + ((c as unknown[])[3] as number), 0);
      expect(bytes).toBe(7 * 4);
    } finally {
      spy.mockRestore();
      f.close();
    }
  });

  test('F16: representable values (subnormals, inf, nan, signed zero) are exact', () => {
    const values = [0, -0, 1, -2.5, 65504, -65504, 2 ** -14, 2 ** -24, 3 * 2 ** -24, 1023 * 2 ** -24, Infinity, -Infinity];
    const back = roundTrip([...values, NaN], 'F16');
    expect(Array.from(back.slice(0, values.length))).toEqual(values);
    expect(Object.is(back[1], -0)).toBe(true);
    expect(back[values.length]).toBeNaN();
  });

  test('F16: rounding is to nearest even, overflow to inf, underflow to zero', () => {
    const back = roundTrip(
      [1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -11 + 2 ** -20, 65520, 70000, 2 ** -25, 2 ** -25 + 2 ** -35, 2 ** -26, 1.5 * 2 ** -24, 2.5 * 2 ** -24],
      'F16',
    );
    expect(Array.from(back)).toEqual([1, 1 + 2 ** -9, 1 + 2 ** -10, Infinity, Infinity, 0, 2 ** -24, 0, 2 * 2 ** -24, 2 * 2 ** -24]);
    // Random values: within half an ulp (relative 2^-11) of the original.
    const r = randomFloats(1000, 4);
    const rb = roundTrip(Array.from(r), 'F16');
    r.forEach((v, i) => expect(Math.abs(rb[i] - v)).toBeLessThanOrEqual(Math.abs(v) * 2 ** -11 + 2 ** -25));
  });

  test('F16: encode and decode agree on every finite half value', () => {
    const mismatches: number[] = [];
    for (let h = 0; h < 0x10000; h++) {
      const v = f16ToNumber(h);
      if (!Number.isNaN(v) && numberToF16(v) !== h) mismatches.push(h);
    }
    expect(mismatches).toEqual([]);
  });

  test('BF16: representable values are exact, rounding is to nearest even', () => {
    const exact = [0, -0, 1, -1.5, 0.15625, 3.140625, 2 ** -130, 1.7014118346046923e38, Infinity, -Infinity];
    const back = roundTrip([...exact, NaN], 'BF16');
    expect(Array.from(back.slice(0, exact.length))).toEqual(exact);
    expect(back[exact.length]).toBeNaN();

    const bits = Uint32Array.of(0x3f808000, 0x3f818000, 0x3f808001, 0x7f7fffff);
    const rounded = roundTrip(Array.from(new Float32Array(bits.buffer)), 'BF16');
    expect(Array.from(new Uint32Array(rounded.buffer))).toEqual([0x3f800000, 0x3f820000, 0x3f810000, 0x7f800000]);
  });
});

describe('corrupt or unsupported files', () => {
  const good = { w: { dtype: 'F32', shape: [2, 2], data_offsets: [0, 16] } };

  function expectError(file: string, pattern: RegExp): void {
    const message = oneLineCrepeError(() => SafetensorsFile.open(file).close());
    expect(message).toMatch(pattern);
    expect(message).toContain(file);
  }

  test('a well-formed hand-made file opens', () => {
    const file = rawFile('ok.safetensors', good, 16);
    expect(readBack(file, 'w')).toEqual(new Float32Array(4));
  });

  test('missing file, too short, header length beyond the file, header not JSON', () => {
    expectError(path.join(dir, 'absent.safetensors'), /cannot open/);
    const short = path.join(dir, 'short.safetensors');
    fs.writeFileSync(short, Buffer.alloc(5));
    expectError(short, /shorter than the 8-byte header length/);
    expectError(rawFile('hlen.safetensors', good, 16, 10_000n), /header length 10000 exceeds the file size/);
    expectError(rawFile('hlen64.safetensors', good, 16, 2n ** 63n), /exceeds the file size/);
    expectError(rawFile('nojson.safetensors', '{"w": {"dtype": "F32",', 16), /header is not valid JSON/);
    expectError(rawFile('array.safetensors', '[1, 2]', 0), /not a JSON object/);
  });

  test('offsets out of range, end before begin, size not matching the shape', () => {
    expectError(rawFile('range.safetensors', { w: { ...good.w, data_offsets: [0, 32] } }, 16), /beyond the 16 data bytes/);
    expectError(rawFile('order.safetensors', { w: { ...good.w, data_offsets: [16, 0] } }, 16), /ends \(0\) before it begins \(16\)/);
    expectError(rawFile('size.safetensors', { w: { ...good.w, shape: [3, 2] } }, 16), /has 16 bytes but F32\[3, 2\] needs 24/);
    expectError(rawFile('neg.safetensors', { w: { ...good.w, data_offsets: [-4, 12] } }, 16), /invalid data_offsets/);
    expectError(rawFile('shape.safetensors', { w: { ...good.w, shape: [2, 'x'] } }, 16), /invalid shape/);
  });

  test('unknown dtypes are refused by name', () => {
    for (const dtype of ['I8', 'Q4', 'F64']) {
      const file = rawFile(`dtype-${dtype}.safetensors`, { w: { ...good.w, dtype } }, 16);
      expectError(file, new RegExp(`unsupported dtype ${dtype} for tensor w in`));
    }
  });

  test('asking for a tensor that is not there', () => {
    const file = rawFile('ok2.safetensors', good, 16);
    const f = SafetensorsFile.open(file);
    expect(() => f.readFloat32('nope')).toThrow(CrepeError);
    expect(() => f.info('nope')).toThrow(/missing tensor nope in .*ok2.safetensors/);
    f.close();
  });
});
