/**
 * Successive halving (lib/search/halving.ts) on synthetic objectives with known answers: the
 * window budget it spends, the candidate it keeps, ties and NaN, bad rung lists.
 */
import { checkRungs, successiveHalving } from '../lib/search/halving';
import { Rng } from '../lib/util/random';

/** Per-window loss of candidate `c` at window `w`: its true mean plus seeded noise in [-noise, noise]. */
function noisy(means: readonly number[], noise: number, seed: number): (c: number, w: number) => number {
  const table = means.map((m, c) => {
    const rng = new Rng(seed * 1000 + c);
    return Array.from({ length: 64 }, () => m + noise * (2 * rng.next() - 1));
  });
  return (c, w) => table[c][w];
}

test('spends n x w0 + survivors x (w1 - w0) windows and keeps the true best when the noise is small', () => {
  const means = [5, 3, 4, 2.5, 6, 3.2, 7];
  const loss = noisy(means, 0.1, 1);
  const seen: [number, number, number][] = [];
  const r = successiveHalving(means.map((_, i) => i), { windows: [2, 8], eta: 3 }, (c, index, from, to) => {
    expect(index).toBe(c);
    seen.push([c, from, to]);
    return Array.from({ length: to - from }, (_, k) => loss(c, from + k));
  });
  // 7 candidates x 2 windows, then ceil(7 / 3) = 3 survivors x 6 more windows
  expect(r.windowEvals).toBe(7 * 2 + 3 * 6);
  expect(r.best.candidate).toBe(3);
  expect(r.best.windows).toBe(8);
  // the survivors are the three lowest after rung 0, each extended from window 2, never re-measured
  expect(seen.filter(([, from]) => from === 2).map(([c]) => c).sort()).toEqual([1, 3, 5]);
  expect(new Set(seen.map(([c, from]) => `${c}:${from}`)).size).toBe(seen.length);
  // the loss sum is the sum over exactly the windows measured
  let expected = 0;
  for (let w = 0; w < 8; w++) expected += loss(3, w);
  expect(r.best.lossSum).toBeCloseTo(expected, 12);
  expect(r.entries.find((e) => e.index === 0)).toMatchObject({ windows: 2, rung: 0 });
});

test('more windows overturn a lucky first rung: the true best wins at the last rung', () => {
  // candidate 0 looks best on window 0 only; candidate 1 is better on average
  const table = [
    [1, 9, 9, 9],
    [4, 4, 4, 4],
    [8, 8, 8, 8],
  ];
  const r = successiveHalving([0, 1, 2], { windows: [1, 4], eta: 2 }, (c, _i, from, to) => table[c].slice(from, to));
  expect(r.best.candidate).toBe(1);
  expect(r.windowEvals).toBe(3 + 2 * 3);
});

test('one rung is a plain comparison; ties keep the input order; NaN loses; one survivor stops early', () => {
  const flat = successiveHalving(['a', 'b', 'c'], { windows: [2], eta: 3 }, (c) => (c === 'a' ? [NaN, 1] : [1, 1]));
  expect(flat.best.candidate).toBe('b');
  expect(flat.windowEvals).toBe(6);
  // eta 3 on 2 candidates leaves one: the next rung is not measured
  const early = successiveHalving(['x', 'y'], { windows: [1, 16], eta: 3 }, (c, _i, from, to) => Array(to - from).fill(c === 'x' ? 2 : 1));
  expect(early.best.candidate).toBe('y');
  expect(early.windowEvals).toBe(2);
});

test('bad rung lists and eta are refused', () => {
  expect(checkRungs([2, 8])).toBeNull();
  expect(checkRungs([])).toMatch(/at least one/);
  expect(checkRungs([4, 4])).toMatch(/increase/);
  expect(checkRungs([0])).toMatch(/positive whole/);
  expect(() => successiveHalving([1], { windows: [2], eta: 1 }, () => [0, 0])).toThrow(/eta/);
  expect(() => successiveHalving([], { windows: [2], eta: 2 }, () => [0, 0])).toThrow(/no candidates/);
  expect(() => successiveHalving([1], { windows: [2], eta: 2 }, () => [0])).toThrow(/returned 1 losses/);
});
