/**
 * Summary statistics and rank correlations for comparing pruning scores and search results.
 * All accumulation is in Float64, whatever the input array type.
 */
import { CrepeError } from '../errors';
import { Rng } from '../util/random';

/** Arithmetic mean. */
export function mean(values: ArrayLike<number>): number {
  if (values.length === 0) throw new CrepeError('mean of an empty array');
  let s = 0;
  for (let i = 0; i < values.length; i++) s += values[i];
  return s / values.length;
}

/**
 * Standard deviation with `ddof` delta degrees of freedom: 0 (default) for the population
 * form, 1 for the sample form. Two-pass, so a large common offset does not cost precision.
 */
export function std(values: ArrayLike<number>, ddof = 0): number {
  const n = values.length;
  if (n - ddof <= 0) throw new CrepeError(`std needs more than ${ddof} values, got ${n}`);
  const m = mean(values);
  let ss = 0;
  for (let i = 0; i < n; i++) ss += (values[i] - m) ** 2;
  return Math.sqrt(ss / (n - ddof));
}

/**
 * Spearman's rank correlation: the Pearson correlation of the ranks, tied values sharing the
 * average of their ranks. NaN when either input is constant (the correlation is undefined).
 */
export function spearman(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPaired(x, y, 'spearman');
  return pearson(averageRanks(x), averageRanks(y));
}

/**
 * Percentile-bootstrap interval of Spearman's rho: resample the (x, y) pairs with replacement
 * `resamples` times with a seeded generator, take the (1-level)/2 and (1+level)/2 quantiles of
 * the resampled rhos (resamples where either side is constant are skipped, as rho is undefined
 * there). [NaN, NaN] with fewer than 3 pairs. Deterministic for a given seed.
 */
export function spearmanBootstrap(
  x: ArrayLike<number>,
  y: ArrayLike<number>,
  opts: { resamples?: number; level?: number; seed?: number } = {},
): [number, number] {
  checkPaired(x, y, 'spearmanBootstrap');
  const n = x.length;
  if (n < 3) return [NaN, NaN];
  const resamples = opts.resamples ?? 2000;
  const level = opts.level ?? 0.95;
  const rng = new Rng(opts.seed ?? 0);
  const rhos: number[] = [];
  const bx = new Float64Array(n);
  const by = new Float64Array(n);
  for (let r = 0; r < resamples; r++) {
    for (let i = 0; i < n; i++) {
      const j = rng.int(n);
      bx[i] = x[j];
      by[i] = y[j];
    }
    const rho = spearman(bx, by);
    if (Number.isFinite(rho)) rhos.push(rho);
  }
  if (rhos.length === 0) return [NaN, NaN];
  rhos.sort((a, b) => a - b);
  const at = (q: number): number => rhos[Math.min(rhos.length - 1, Math.max(0, Math.floor(q * rhos.length)))];
  return [at((1 - level) / 2), at((1 + level) / 2)];
}

/**
 * Kendall's tau-b: (concordant - discordant) / sqrt((pairs untied in x) (pairs untied in y)),
 * which corrects tau for ties. O(n^2), meant for n up to a few thousand. NaN when either input
 * is constant.
 */
export function kendallTau(x: ArrayLike<number>, y: ArrayLike<number>): number {
  checkPaired(x, y, 'kendallTau');
  let concordantMinusDiscordant = 0;
  let untiedX = 0;
  let untiedY = 0;
  for (let i = 0; i < x.length; i++) {
    for (let j = i + 1; j < x.length; j++) {
      const dx = compare(x[i], x[j]);
      const dy = compare(y[i], y[j]);
      concordantMinusDiscordant += dx * dy;
      untiedX += dx * dx;
      untiedY += dy * dy;
    }
  }
  return concordantMinusDiscordant / Math.sqrt(untiedX * untiedY);
}

/**
 * Gini coefficient of non-negative values: 0 when all are equal, (n-1)/n when one holds
 * everything. From the ascending sort: G = sum_i (2i - n - 1) x_(i) / (n sum x), i from 1.
 * O(n log n); copies the input once into a Float64Array, fine for millions of values.
 */
export function gini(values: ArrayLike<number>): number {
  const n = values.length;
  if (n === 0) throw new CrepeError('gini of an empty array');
  const sorted = Float64Array.from(values).sort(); // typed-array sort is numeric, NaN last
  if (Number.isNaN(sorted[n - 1])) throw new CrepeError('gini of values containing NaN');
  if (sorted[0] < 0) throw new CrepeError(`gini needs non-negative values, got ${sorted[0]}`);
  return giniOfSorted(sorted);
}

/** Gini of values already sorted ascending and checked non-negative (shared with the O(n) proxy path). */
export function giniOfSorted(sorted: ArrayLike<number>): number {
  const n = sorted.length;
  // Exact 0 for equal values (all zeros included), which the sum below only reaches up to rounding.
  if (sorted[0] === sorted[n - 1]) return 0;
  let weighted = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    weighted += (2 * (i + 1) - n - 1) * sorted[i];
    total += sorted[i];
  }
  return weighted / (n * total);
}

function checkPaired(x: ArrayLike<number>, y: ArrayLike<number>, name: string): void {
  if (x.length !== y.length) throw new CrepeError(`${name}: lengths differ (${x.length} vs ${y.length})`);
  if (x.length < 2) throw new CrepeError(`${name} needs at least 2 pairs, got ${x.length}`);
  for (let i = 0; i < x.length; i++) {
    if (Number.isNaN(x[i]) || Number.isNaN(y[i])) throw new CrepeError(`${name}: NaN at index ${i}`);
  }
}

/** 1-based ranks; each run of tied values gets the mean of the ranks it spans. */
function averageRanks(values: ArrayLike<number>): Float64Array {
  const n = values.length;
  const order = Array.from({ length: n }, (_, i) => i).sort((i, j) => compare(values[i], values[j]));
  const ranks = new Float64Array(n);
  for (let start = 0; start < n; ) {
    let end = start + 1;
    while (end < n && values[order[end]] === values[order[start]]) end++;
    const averageRank = (start + 1 + end) / 2; // mean of start+1 .. end
    for (let k = start; k < end; k++) ranks[order[k]] = averageRank;
    start = end;
  }
  return ranks;
}

/** -1, 0 or 1; unlike a - b, also right for equal infinities. */
function compare(a: number, b: number): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

function pearson(x: Float64Array, y: Float64Array): number {
  const mx = mean(x);
  const my = mean(y);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < x.length; i++) {
    sxy += (x[i] - mx) * (y[i] - my);
    sxx += (x[i] - mx) ** 2;
    syy += (y[i] - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}
