import { CrepeError } from '../lib/errors';
import {
  applyMask, maskSparsity, nmSparsity, parseStructure, selectMask, Structure, validateStructureFor,
} from '../lib/prune/select';
import { mulberry32 as rng } from './helpers';


/** Random scores; `levels` > 0 quantizes them so that ties are common; some NaN if asked. */
function randomScores(rows: number, cols: number, seed: number, levels = 0, nanRate = 0): Float32Array {
  const next = rng(seed);
  const out = new Float32Array(rows * cols);
  for (let i = 0; i < out.length; i++) {
    const u = next() * 2 - 0.5; // some negatives
    out[i] = next() < nanRate ? NaN : levels > 0 ? Math.floor(u * levels) : u;
  }
  return out;
}

/** Reference: full stable sort of (score with NaN = -Infinity, index) in each group, prune the first k. */
function referenceMask(scores: Float32Array, rows: number, cols: number, s: Structure): Uint8Array {
  const mask = new Uint8Array(scores.length).fill(1);
  const key = Float64Array.from(scores, (v) => (Number.isNaN(v) ? -Infinity : v));
  const pruneGroup = (indices: number[], k: number) => {
    const sorted = indices.sort((a, b) => (key[a] < key[b] ? -1 : key[a] > key[b] ? 1 : a - b));
    for (const i of sorted.slice(0, k)) mask[i] = 0;
  };
  const range = (start: number, len: number) => Array.from({ length: len }, (_, i) => start + i);
  if (s.kind === 'nm') {
    for (let b = 0; b < scores.length; b += s.m) pruneGroup(range(b, s.m), s.m - s.n);
  } else if (s.group === 'matrix') {
    pruneGroup(range(0, scores.length), Math.floor(rows * cols * s.sparsity));
  } else {
    for (let r = 0; r < rows; r++) pruneGroup(range(r * cols, cols), Math.floor(cols * s.sparsity));
  }
  return mask;
}

/** First index where two masks differ, -1 when equal (jest's toEqual on big typed arrays is slow). */
function firstDifference(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) return Math.min(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return i;
  return -1;
}

const row = (sparsity: number): Structure => ({ kind: 'unstructured', group: 'row', sparsity });
const matrix = (sparsity: number): Structure => ({ kind: 'unstructured', group: 'matrix', sparsity });
const nm = (n: number, m: number): Structure => ({ kind: 'nm', n, m });
const f32 = (values: number[]) => Float32Array.from(values);
const list = (mask: Uint8Array) => Array.from(mask);

describe('selectMask on hand-computed examples', () => {
  // Row 0 has a tie (1 at columns 1 and 3); row 1 has a negative and a NaN.
  const scores = f32([3, 1, 2, 1, 0, -5, NaN, 7]);

  test('per row: ties pruned lower index first, NaN first, negatives below zero', () => {
    expect(list(selectMask(scores, 2, 4, row(0.5)))).toEqual([1, 0, 1, 0, 1, 0, 0, 1]);
  });

  test('per matrix: one ranking over all entries', () => {
    // Order: NaN(6), -5(5), 0(4), 1(1), 1(3), 2(2), 3(0), 7(7); prune the first 4.
    expect(list(selectMask(scores, 2, 4, matrix(0.5)))).toEqual([1, 0, 1, 1, 0, 0, 0, 1]);
    expect(list(selectMask(scores, 2, 4, matrix(0.4)))).toEqual([1, 1, 1, 1, 0, 0, 0, 1]); // floor(3.2) = 3
    expect(list(selectMask(scores, 2, 4, matrix(0.3)))).toEqual([1, 1, 1, 1, 1, 0, 0, 1]); // floor(2.4) = 2
  });

  test('N:M keeps the n highest of each block of m', () => {
    expect(list(selectMask(scores, 2, 4, nm(2, 4)))).toEqual([1, 0, 1, 0, 1, 0, 0, 1]);
    expect(list(selectMask(scores, 2, 4, nm(1, 4)))).toEqual([1, 0, 0, 0, 0, 0, 0, 1]);
    expect(list(selectMask(scores, 2, 4, nm(3, 4)))).toEqual([1, 0, 1, 1, 1, 1, 0, 1]);
    expect(list(selectMask(scores, 1, 8, nm(1, 2)))).toEqual([1, 0, 1, 0, 1, 0, 0, 1]);
  });

  test('all-equal scores: the lowest indices go', () => {
    expect(list(selectMask(f32([5, 5, 5, 5, 5, 5]), 1, 6, row(0.5)))).toEqual([0, 0, 0, 1, 1, 1]);
    expect(list(selectMask(f32([5, 5, 5, 5, 5, 5]), 2, 3, matrix(0.5)))).toEqual([0, 0, 0, 1, 1, 1]);
    expect(list(selectMask(f32([1, 1, 1, 1]), 1, 4, nm(2, 4)))).toEqual([0, 0, 1, 1]);
    expect(list(selectMask(f32([2, 2, 2, 2]), 1, 4, nm(1, 4)))).toEqual([0, 0, 0, 1]);
    expect(list(selectMask(f32([2, 2, 2, 2]), 1, 4, nm(3, 4)))).toEqual([0, 1, 1, 1]);
  });

  test('NaN ties with -Infinity (index order); -0 equals +0', () => {
    expect(list(selectMask(f32([Infinity, NaN, -Infinity, 1]), 1, 4, row(0.5)))).toEqual([1, 0, 0, 1]);
    expect(list(selectMask(f32([Infinity, -Infinity, NaN, 1]), 1, 4, row(0.25)))).toEqual([1, 0, 1, 1]);
    expect(list(selectMask(f32([0, -0, 0, -0]), 1, 4, row(0.5)))).toEqual([0, 0, 1, 1]);
    expect(list(selectMask(f32([-0, 0, 1, 2]), 1, 4, nm(2, 4)))).toEqual([0, 0, 1, 1]);
  });

  test('sparsity 0 keeps everything; per-row count is floor(cols * s)', () => {
    expect(list(selectMask(scores, 2, 4, row(0)))).toEqual([1, 1, 1, 1, 1, 1, 1, 1]);
    expect(list(selectMask(scores, 2, 4, row(0.74)))).toEqual([1, 0, 1, 0, 1, 0, 0, 1]); // floor(2.96) = 2
    expect(list(selectMask(scores, 2, 4, row(0.75)))).toEqual([1, 0, 0, 0, 0, 0, 0, 1]);
  });

  test('does not modify the scores', () => {
    const copy = scores.slice();
    selectMask(scores, 2, 4, matrix(0.5));
    selectMask(scores, 2, 4, row(0.5));
    selectMask(scores, 2, 4, nm(2, 4));
    expect(list(new Uint8Array(scores.buffer))).toEqual(list(new Uint8Array(copy.buffer)));
  });
});

describe('selectMask on random 300 x 517 matrices', () => {
  const rows = 300;
  const cols = 517;
  const inputs: [string, Float32Array][] = [
    ['continuous', randomScores(rows, cols, 1)],
    ['many ties + NaN', randomScores(rows, cols, 2, 7, 0.01)],
  ];
  for (const [name, scores] of inputs) {
    for (const sparsity of [0, 0.1, 0.5, 0.7, 0.999]) {
      test(`${name}, per row, s = ${sparsity}: exact counts, equal to the stable-sort reference`, () => {
        const mask = selectMask(scores, rows, cols, row(sparsity));
        const prunedPerRow = new Set<number>();
        for (let r = 0; r < rows; r++) {
          let pruned = 0;
          for (let c = 0; c < cols; c++) pruned += 1 - mask[r * cols + c];
          prunedPerRow.add(pruned);
        }
        expect([...prunedPerRow]).toEqual([Math.floor(cols * sparsity)]);
        expect(firstDifference(mask, referenceMask(scores, rows, cols, row(sparsity)))).toBe(-1);
      });
      test(`${name}, per matrix, s = ${sparsity}: exact count, equal to the stable-sort reference`, () => {
        const mask = selectMask(scores, rows, cols, matrix(sparsity));
        expect(Math.round(maskSparsity(mask) * rows * cols)).toBe(Math.floor(rows * cols * sparsity));
        expect(firstDifference(mask, referenceMask(scores, rows, cols, matrix(sparsity)))).toBe(-1);
      });
    }
  }
});

describe('N:M on random matrices', () => {
  const rows = 300;
  const cols = 512;
  const continuous = randomScores(rows, cols, 3);
  const tied = randomScores(rows, cols, 4, 3, 0.02);
  for (const [n, m] of [[1, 4], [2, 4], [3, 4], [4, 8], [2, 8], [1, 2], [5, 16]]) {
    test(`${n}:${m}: n kept per block, equal to the reference`, () => {
      for (const scores of [continuous, tied]) {
        const mask = selectMask(scores, rows, cols, nm(n, m));
        const keptPerBlock = new Set<number>();
        for (let b = 0; b < mask.length; b += m) {
          let kept = 0;
          for (let i = 0; i < m; i++) kept += mask[b + i];
          keptPerBlock.add(kept);
        }
        expect([...keptPerBlock]).toEqual([n]);
        expect(maskSparsity(mask)).toBeCloseTo(nmSparsity(n, m), 12);
        expect(firstDifference(mask, referenceMask(scores, rows, cols, nm(n, m)))).toBe(-1);
      }
    });
  }
});

describe('orders and value layouts that stress the selection', () => {
  const n = 20000;
  const orders: [string, (i: number) => number][] = [
    ['ascending', (i) => i],
    ['descending', (i) => -i],
    ['constant', () => 1],
    ['organ pipe', (i) => Math.min(i, n - i)],
    ['two values', (i) => i % 2],
    ['sawtooth', (i) => i % 100],
    // Many distinct values sharing their top bits (one radix bucket), in scrambled order.
    ['one bucket', (i) => 1 + ((i * 7919) % n) * 2 ** -23],
    ['mixed signs, zeros, denormals, huge', (i) => [-(i % 13), 0, -0, 1e-42 * (i % 5), 3e38 - i * 1e32, -1e-39 * (i % 3)][i % 6]],
  ];
  for (const [name, f] of orders) {
    test(`${name}: equal to the reference`, () => {
      const scores = Float32Array.from({ length: n }, (_, i) => f(i));
      for (const s of [matrix(0.5), matrix(0.01), row(0.9), row(0.333)]) {
        expect(firstDifference(selectMask(scores, 1, n, s), referenceMask(scores, 1, n, s))).toBe(-1);
        expect(firstDifference(selectMask(scores, 100, n / 100, s), referenceMask(scores, 100, n / 100, s))).toBe(-1);
      }
    });
  }
});

test('deterministic: same input, same mask', () => {
  const scores = randomScores(64, 256, 5, 4);
  for (const s of [row(0.5), matrix(0.6), nm(2, 4), nm(4, 8)]) {
    expect(firstDifference(selectMask(scores, 64, 256, s), selectMask(scores.slice(), 64, 256, s))).toBe(-1);
  }
});

test('a view into a larger buffer selects from its own entries', () => {
  const scores = randomScores(64, 256, 6, 5);
  const padded = new Float32Array(scores.length + 7).fill(-1);
  padded.set(scores, 3);
  const view = padded.subarray(3, 3 + scores.length);
  for (const s of [row(0.5), matrix(0.3), nm(2, 4), nm(5, 16)]) {
    expect(firstDifference(selectMask(view, 64, 256, s), selectMask(scores, 64, 256, s))).toBe(-1);
  }
});

describe('parseStructure / validateStructureFor', () => {
  test('parses', () => {
    expect(parseStructure('unstructured', 0.5, 'row')).toEqual(row(0.5));
    expect(parseStructure(' Unstructured ', 0, 'matrix')).toEqual(matrix(0));
    expect(parseStructure('2:4', 0.5, 'row')).toEqual(nm(2, 4));
    expect(parseStructure('4:8', undefined, 'matrix')).toEqual(nm(4, 8));
    expect(parseStructure('1:4', 0.75, 'row')).toEqual(nm(1, 4));
    expect(parseStructure('unstructured', undefined, 'row')).toEqual(row(0.5));
  });

  test('a sparsity given with N:M must equal 1 - N/M (it is never silently ignored)', () => {
    expect(() => parseStructure('4:8', 0, 'matrix')).toThrow(/sparsity 0 contradicts N:M 4:8, which prunes exactly 1 - 4\/8 = 0.5/);
    expect(() => parseStructure('2:4', 0.6, 'row')).toThrow(CrepeError);
    expect(() => parseStructure('1:4', 0.5, 'row')).toThrow(/0.75/);
    expect(() => parseStructure('3:4', 0.5, 'row')).toThrow(CrepeError);
    expect(parseStructure('3:4', 0.25, 'row')).toEqual(nm(3, 4));
    expect(parseStructure('1:3', 2 / 3, 'row')).toEqual(nm(1, 3));
  });

  test.each(['2:2', '5:4', '0:4', '-1:4', '2:0', '2:4:8', 'abc', '', '2.5:4', ':4', '2:'])('rejects %p', (text) => {
    expect(() => parseStructure(text, 0.5, 'row')).toThrow(CrepeError);
  });

  test.each([1, -0.1, 1.5, NaN])('rejects sparsity %p', (sparsity) => {
    expect(() => parseStructure('unstructured', sparsity, 'row')).toThrow(CrepeError);
    expect(() => selectMask(new Float32Array(4), 1, 4, row(sparsity))).toThrow(CrepeError);
  });

  test('rejects a bad group', () => {
    expect(() => parseStructure('unstructured', 0.5, 'column' as 'row')).toThrow(CrepeError);
  });

  test('N:M needs M to divide the input width', () => {
    expect(() => validateStructureFor(nm(2, 4), 3, 130)).toThrow(
      new CrepeError('N:M 2:4 needs the input width 130 to be a multiple of 4'),
    );
    expect(() => selectMask(new Float32Array(6), 1, 6, nm(2, 4))).toThrow(CrepeError);
    expect(() => validateStructureFor(nm(2, 4), 3, 128)).not.toThrow();
    expect(() => validateStructureFor(nm(4, 4), 3, 128)).toThrow(CrepeError);
  });

  test('messages are one line', () => {
    for (const f of [() => parseStructure('x', 0.5, 'row'), () => parseStructure('4:2', 0.5, 'row'), () => parseStructure('unstructured', 2, 'row')]) {
      expect(f).toThrow(/^[^\n]+$/);
    }
  });

  test('a score array of the wrong size is a bug, not a user error', () => {
    expect(() => selectMask(new Float32Array(5), 2, 4, row(0.5))).toThrow(Error);
    expect(() => selectMask(new Float32Array(5), 2, 4, row(0.5))).not.toThrow(CrepeError);
  });
});

describe('helpers', () => {
  test('nmSparsity', () => {
    expect(nmSparsity(2, 4)).toBe(0.5);
    expect(nmSparsity(1, 4)).toBe(0.75);
    expect(nmSparsity(4, 8)).toBe(0.5);
  });

  test('maskSparsity', () => {
    expect(maskSparsity(Uint8Array.from([1, 0, 0, 1]))).toBe(0.5);
    expect(maskSparsity(new Uint8Array(0))).toBe(0);
  });

  test('applyMask zeroes pruned weights (NaN and Infinity too) and returns a new array', () => {
    const weight = f32([1, NaN, -2, Infinity, -3, -0]);
    const out = applyMask(weight, Uint8Array.from([1, 0, 1, 0, 0, 1]));
    expect(Array.from(out)).toEqual([1, 0, -2, 0, 0, -0]); // toEqual tells +0 from -0: pruned is +0
    expect(out).not.toBe(weight);
    expect(Number.isNaN(weight[1])).toBe(true);
    expect(() => applyMask(weight, new Uint8Array(3))).toThrow();
    expect(Array.from(applyMask(weight.subarray(2, 4), Uint8Array.from([1, 1])))).toEqual([-2, Infinity]); // views work
  });
});
