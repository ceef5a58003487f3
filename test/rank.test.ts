import { CrepeError } from '../lib/errors';
import { gini, kendallTau, mean, spearman, spearmanBootstrap, std } from '../lib/search/rank';
import { mulberry32 } from './helpers';

describe('mean and std', () => {
  it('match hand-computed values', () => {
    expect(mean([2, 4, 4, 4, 5, 5, 7, 9])).toBe(5);
    expect(std([2, 4, 4, 4, 5, 5, 7, 9])).toBe(2); // population form
    expect(std([1, 2, 3, 4], 1)).toBeCloseTo(Math.sqrt(5 / 3), 15);
    expect(mean(new Float32Array([0.5, 1.5]))).toBe(1);
  });

  it('keep precision under a large offset', () => {
    expect(std([1e9 + 1, 1e9 + 2, 1e9 + 3], 1)).toBeCloseTo(1, 9);
  });

  it('reject empty input', () => {
    expect(() => mean([])).toThrow(CrepeError);
    expect(() => std([1], 1)).toThrow(CrepeError);
  });
});

describe('spearman', () => {
  it('is 1 for monotone and -1 for reversed data', () => {
    expect(spearman([1, 2, 3, 4, 5], [2, 4, 8, 16, 1000])).toBeCloseTo(1, 15);
    expect(spearman([1, 2, 3, 4, 5], [5, 4, 3, 2, 1])).toBeCloseTo(-1, 15);
  });

  it('matches the textbook IQ vs. TV hours example (rho = -29/165)', () => {
    const iq = [106, 100, 86, 101, 99, 103, 97, 113, 112, 110];
    const tvHours = [7, 27, 2, 50, 28, 29, 20, 12, 6, 17];
    expect(spearman(iq, tvHours)).toBeCloseTo(-29 / 165, 14);
  });

  it('averages the ranks of ties', () => {
    // y ranks [1, 2, 3.5, 5, 3.5]: rho = 8 / sqrt(10 * 9.5)
    expect(spearman([1, 2, 3, 4, 5], [5, 6, 7, 8, 7])).toBeCloseTo(8 / Math.sqrt(95), 14);
    // x ranks [1, 2.5, 2.5, 4]: rho = 4.5 / sqrt(4.5 * 5)
    expect(spearman([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo(3 / Math.sqrt(10), 14);
  });

  it('is NaN for constant input and rejects mismatched input', () => {
    expect(spearman([1, 1, 1], [1, 2, 3])).toBeNaN();
    expect(() => spearman([1, 2], [1, 2, 3])).toThrow(CrepeError);
    expect(() => spearman([1], [1])).toThrow(CrepeError);
    expect(() => spearman([1, NaN], [1, 2])).toThrow(CrepeError);
  });
});

describe('kendallTau', () => {
  it('is 1 for monotone and -1 for reversed data', () => {
    expect(kendallTau([1, 2, 3, 4], [10, 20, 30, 40])).toBe(1);
    expect(kendallTau([1, 2, 3, 4], [4, 3, 2, 1])).toBe(-1);
  });

  it('counts concordant and discordant pairs', () => {
    // 6 concordant, 4 discordant of 10 pairs
    expect(kendallTau([1, 2, 3, 4, 5], [3, 4, 1, 2, 5])).toBeCloseTo(0.2, 15);
  });

  it('applies the tau-b tie correction', () => {
    // 5 concordant, 0 discordant; 5 pairs untied in x, 6 in y
    expect(kendallTau([1, 2, 2, 3], [1, 2, 3, 4])).toBeCloseTo(5 / Math.sqrt(30), 15);
    // 2 concordant, 6 discordant; 8 pairs untied in x, 9 in y (scipy: -0.47140452079103)
    expect(kendallTau([12, 2, 1, 12, 2], [1, 4, 7, 1, 0])).toBeCloseTo(-4 / Math.sqrt(72), 15);
  });

  it('treats equal infinities as ties', () => {
    expect(kendallTau([Infinity, Infinity, 1], [1, 2, 3])).toBeCloseTo(-2 / Math.sqrt(2 * 3), 15);
  });

  it('is NaN for constant input', () => {
    expect(kendallTau([1, 2, 3], [5, 5, 5])).toBeNaN();
  });
});

describe('gini', () => {
  it('matches hand-computed values', () => {
    expect(gini([1, 1, 1, 1])).toBe(0);
    expect(gini([0, 0, 0, 0])).toBe(0);
    expect(gini([0, 0, 0, 1])).toBeCloseTo(0.75, 15);
    expect(gini([1, 2, 3, 4])).toBeCloseTo(0.25, 15);
    expect(gini([4, 1, 3, 2])).toBeCloseTo(0.25, 15); // order does not matter
  });

  it('handles millions of Float32 values', () => {
    const n = 2 ** 21;
    // 0, 1, ..., n-1 (exact in float32) has Gini (n + 1) / (3n)
    const ramp = new Float32Array(n).map((_, i) => n - 1 - i);
    expect(gini(ramp)).toBeCloseTo((n + 1) / (3 * n), 12);
    const single = new Float32Array(n);
    single[12345] = 0.1;
    expect(gini(single)).toBeCloseTo((n - 1) / n, 12);
    expect(gini(new Float32Array(n).fill(0.1))).toBe(0);
  });

  it('rejects negative, NaN and empty input', () => {
    expect(() => gini([1, -1])).toThrow(CrepeError);
    expect(() => gini([1, NaN])).toThrow(CrepeError);
    expect(() => gini([])).toThrow(CrepeError);
  });
});

describe('spearmanBootstrap', () => {
  /** n pairs of a bivariate normal with correlation r (Box-Muller on an independent generator). */
  function correlatedPairs(n: number, r: number, seed: number): [number[], number[]] {
    const u = mulberry32(seed);
    const normal = (): number => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
    const x: number[] = [];
    const y: number[] = [];
    for (let i = 0; i < n; i++) {
      const a = normal();
      const b = normal();
      x.push(a);
      y.push(r * a + Math.sqrt(1 - r * r) * b);
    }
    return [x, y];
  }

  it('agrees with the Fisher-z interval for Spearman rho (Bonett-Wright standard error) on a large sample', () => {
    const [x, y] = correlatedPairs(400, 0.6, 7);
    const rho = spearman(x, y);
    const [lo, hi] = spearmanBootstrap(x, y, { seed: 3 });
    // Independent asymptotic interval: atanh(rho) +- 1.96 sqrt((1 + rho^2/2) / (n - 3)).
    const z = Math.atanh(rho);
    const se = Math.sqrt((1 + (rho * rho) / 2) / (400 - 3));
    expect(lo).toBeLessThan(rho);
    expect(hi).toBeGreaterThan(rho);
    expect(Math.abs(lo - Math.tanh(z - 1.96 * se))).toBeLessThan(0.03);
    expect(Math.abs(hi - Math.tanh(z + 1.96 * se))).toBeLessThan(0.03);
  });

  it('is narrower with more samples, degenerate for a perfect ranking, and reproducible from its seed', () => {
    const [xs, ys] = correlatedPairs(30, 0.6, 11);
    const [xl, yl] = correlatedPairs(300, 0.6, 11);
    const small = spearmanBootstrap(xs, ys, { seed: 1 });
    const large = spearmanBootstrap(xl, yl, { seed: 1 });
    expect(large[1] - large[0]).toBeLessThan(small[1] - small[0]);
    expect(spearmanBootstrap([1, 2, 3, 4, 5, 6], [2, 3, 5, 7, 11, 13], { seed: 5 })).toEqual([1, 1]);
    expect(spearmanBootstrap(xs, ys, { seed: 1 })).toEqual(small);
    expect(spearmanBootstrap(xs, ys, { seed: 2 })).not.toEqual(small);
    expect(spearmanBootstrap([1, 2], [2, 1])).toEqual([NaN, NaN]);
  });
});
