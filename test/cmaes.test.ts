import { CrepeError } from '../lib/errors';
import { cmaes, cmaesAsync, CmaesEval, symmetricEigen } from '../lib/search/cmaes';
import { Rng } from '../lib/util/random';

const sphere = (x: number[]) => x.reduce((s, xi) => s + xi * xi, 0);

const rosenbrock = (x: number[]) => {
  let s = 0;
  for (let i = 0; i + 1 < x.length; i++) s += 100 * (x[i + 1] - x[i] * x[i]) ** 2 + (1 - x[i]) ** 2;
  return s;
};

/** Random orthogonal matrix: Gram-Schmidt on a Gaussian matrix. */
function randomRotation(n: number, rng: Rng): number[][] {
  const rows: number[][] = [];
  while (rows.length < n) {
    const v = Array.from({ length: n }, () => rng.normal());
    for (const r of rows) {
      const dot = r.reduce((s, ri, i) => s + ri * v[i], 0);
      r.forEach((ri, i) => (v[i] -= dot * ri));
    }
    const len = Math.sqrt(v.reduce((s, vi) => s + vi * vi, 0));
    rows.push(v.map((vi) => vi / len));
  }
  return rows;
}

describe('Rng', () => {
  it('is deterministic per seed and differs across seeds', () => {
    const draw = (seed: number) => {
      const rng = new Rng(seed);
      return Array.from({ length: 5 }, () => rng.next());
    };
    expect(draw(42)).toEqual(draw(42));
    expect(draw(42)).not.toEqual(draw(43));
    expect(draw(2 ** 40)).not.toEqual(draw(0)); // high bits of the seed matter
  });

  it('draws uniforms in [0, 1), ints in range, and standard normals', () => {
    const rng = new Rng(7);
    const m = 20000;
    const uniforms = Array.from({ length: m }, () => rng.next());
    const ints = Array.from({ length: m }, () => rng.int(6));
    const normals = Array.from({ length: m }, () => rng.normal());
    expect(uniforms.every((u) => u >= 0 && u < 1)).toBe(true);
    expect(ints.every((k) => Number.isInteger(k) && k >= 0 && k < 6)).toBe(true);
    expect(new Set(ints).size).toBe(6);
    const mean = normals.reduce((s, z) => s + z, 0) / m;
    const sq = normals.reduce((s, z) => s + z * z, 0) / m;
    expect(Math.abs(mean)).toBeLessThan(0.03);
    expect(Math.abs(sq - 1)).toBeLessThan(0.05);
  });

  it('shuffles into a permutation, reproducibly', () => {
    const a = new Rng(1).shuffle([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect([...a].sort((x, y) => x - y)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(new Rng(1).shuffle([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])).toEqual(a);
  });

  it('rejects non-integer seeds', () => {
    expect(() => new Rng(0.5)).toThrow(CrepeError);
  });
});

describe('symmetricEigen', () => {
  it('decomposes a random symmetric matrix', () => {
    const rng = new Rng(3);
    const n = 7;
    const a = Array.from({ length: n }, () => new Array<number>(n).fill(0));
    for (let i = 0; i < n; i++) for (let j = 0; j <= i; j++) a[i][j] = a[j][i] = rng.normal();
    const { values, vectors } = symmetricEigen(a);
    for (let k = 0; k < n; k++) {
      for (let i = 0; i < n; i++) {
        const av = a[i].reduce((s, aij, j) => s + aij * vectors[j][k], 0);
        expect(av).toBeCloseTo(values[k] * vectors[i][k], 12);
      }
      for (let l = 0; l < n; l++) {
        const dot = vectors.reduce((s, row) => s + row[k] * row[l], 0);
        expect(dot).toBeCloseTo(k === l ? 1 : 0, 12);
      }
    }
  });
});

describe('cmaes', () => {
  it('minimizes the 10-D sphere', () => {
    const r = cmaes(sphere, { x0: new Array(10).fill(3), sigma0: 2, seed: 1, maxEvals: 10000 });
    expect(r.fBest).toBeLessThan(1e-8);
    expect(r.evals).toBeLessThanOrEqual(10000);
  });

  it('minimizes the 5-D Rosenbrock function', () => {
    const r = cmaes(rosenbrock, { x0: new Array(5).fill(0), sigma0: 0.5, seed: 1, maxEvals: 20000, targetF: 1e-10 });
    expect(r.fBest).toBeLessThan(1e-6);
    r.xBest.forEach((xi) => expect(xi).toBeCloseTo(1, 3));
  });

  it('minimizes an 8-D rotated ellipsoid with condition 1e4', () => {
    const n = 8;
    const rotation = randomRotation(n, new Rng(99));
    const scales = Array.from({ length: n }, (_, i) => 1e4 ** (i / (n - 1)));
    const ellipsoid = (x: number[]) =>
      rotation.reduce((s, row, i) => s + scales[i] * row.reduce((d, rij, j) => d + rij * x[j], 0) ** 2, 0);
    const r = cmaes(ellipsoid, { x0: new Array(n).fill(1), sigma0: 1, seed: 2, maxEvals: 20000, targetF: 1e-10 });
    expect(r.fBest).toBeLessThan(1e-8);
  });

  it('ends on the boundary when the optimum lies outside the box, never evaluating outside', () => {
    const lower = [-1, -1, -Infinity, 0];
    const upper = [2, 2, 0.5, Infinity];
    const optimum = [5, -3, 4, -2]; // nearest feasible point: [2, -1, 0.5, 0]
    const seen: number[][] = [];
    const r = cmaes((x) => x.reduce((s, xi, i) => s + (xi - optimum[i]) ** 2, 0), {
      x0: [0, 0, 0, 1],
      sigma0: 1,
      seed: 5,
      maxEvals: 5000,
      lower,
      upper,
      onEval: (e) => seen.push(e.x),
    });
    for (const x of seen) x.forEach((xi, i) => expect(xi >= lower[i] && xi <= upper[i]).toBe(true));
    [2, -1, 0.5, 0].forEach((b, i) => expect(r.xBest[i]).toBeCloseTo(b, 6));
  });

  it('shows integer coordinates to the objective as integers only', () => {
    const seen: number[][] = [];
    const r = cmaes((x) => (x[0] - 3.3) ** 2 + (x[1] - 1.7) ** 2 + (x[2] - 0.4) ** 2, {
      x0: [0, 0, 5],
      sigma0: 2,
      seed: 4,
      maxEvals: 3000,
      integer: [true, false, true],
      lower: [-10, -10, 0.5], // the only integers allowed for x[2] are 1..9
      upper: [10, 10, 9.6],
      onEval: (e) => seen.push(e.x),
    });
    for (const x of seen) {
      expect(Number.isInteger(x[0])).toBe(true);
      expect(Number.isInteger(x[2]) && x[2] >= 1 && x[2] <= 9).toBe(true);
    }
    expect(r.xBest[0]).toBe(3);
    expect(r.xBest[1]).toBeCloseTo(1.7, 5);
    expect(r.xBest[2]).toBe(1);
  });

  it('is deterministic per seed, sync and async alike, and differs across seeds', async () => {
    const log = (seed: number) => {
      const evals: CmaesEval[] = [];
      cmaes(rosenbrock, { x0: [0, 0, 0], sigma0: 0.5, seed, maxEvals: 300, onEval: (e) => evals.push(e) });
      return evals;
    };
    const a = log(11);
    expect(a).toHaveLength(300);
    expect(log(11)).toEqual(a);
    expect(log(12)).not.toEqual(a);
    const asyncEvals: CmaesEval[] = [];
    const r = await cmaesAsync(async (x) => rosenbrock(x), {
      x0: [0, 0, 0], sigma0: 0.5, seed: 11, maxEvals: 300, onEval: (e) => asyncEvals.push(e),
    });
    expect(asyncEvals).toEqual(a);
    expect(r.evals).toBe(300);
    expect(r.stopReason).toBe('maxEvals');
    expect(a.map((e) => e.evalIndex)).toEqual(a.map((_, i) => i));
  });

  it('rejects bad options', () => {
    const base = { x0: [0, 0], sigma0: 1, seed: 0, maxEvals: 10 };
    expect(() => cmaes(sphere, { ...base, x0: [] })).toThrow(CrepeError);
    expect(() => cmaes(sphere, { ...base, sigma0: 0 })).toThrow(CrepeError);
    expect(() => cmaes(sphere, { ...base, lower: [1, 1] })).toThrow(CrepeError); // x0 outside
    expect(() => cmaes(sphere, { ...base, upper: [1] })).toThrow(CrepeError);
    expect(() => cmaes(sphere, { ...base, lambda: 1 })).toThrow(CrepeError);
  });
});
