/**
 * CMA-ES (covariance matrix adaptation evolution strategy) for minimization, with the default
 * settings of N. Hansen, "The CMA Evolution Strategy: A Tutorial" (arXiv:1604.00772), for the
 * (mu/mu_w, lambda) strategy with positive recombination weights.
 *
 * Written here, eigensolver included, because no CMA-ES package on npm is well kept, and the
 * whole algorithm is small. Everything random comes from the seeded `Rng`, and evaluations are
 * strictly sequential, so a run is reproducible bit for bit from its seed, sync or async.
 *
 * Box constraints: the search distribution lives in an unbounded space, and each sample is
 * mirrored into the box before the objective sees it (reflection at the bounds, periodic with
 * twice the box width). The objective is therefore never evaluated outside the box, and an
 * optimum on the boundary is a fixed point of the mirror, which CMA-ES converges to.
 *
 * Integer coordinates: the objective sees the (mirrored) value rounded to the nearest integer in
 * the box; the distribution keeps the continuous value.
 */
import { CrepeError } from '../errors';
import { Rng } from '../util/random';

export interface CmaesEval {
  /** The point the objective saw (inside the bounds, integer coordinates rounded). */
  x: number[];
  f: number;
  /** 0-based count of evaluations before this one. */
  evalIndex: number;
  /** 0-based generation the evaluation belongs to. */
  generation: number;
}

export interface CmaesOptions {
  x0: number[];
  /** Initial step size, in the units of x; about a quarter of the search range is typical. */
  sigma0: number;
  seed: number;
  /** Hard budget of objective evaluations. */
  maxEvals: number;
  /** Population size; default 4 + floor(3 ln n). */
  lambda?: number;
  /** Per-coordinate bounds; ±Infinity (or omitting the array) leaves that side open. */
  lower?: number[];
  upper?: number[];
  integer?: boolean[];
  /** Stop as soon as an evaluation reaches f <= targetF. Default -Infinity. */
  targetF?: number;
  /**
   * Stop when the best values of the last 10 + ceil(30 n / lambda) generations and all values of
   * the current one lie within tolFun of each other. Default 1e-12; 0 disables.
   */
  tolFun?: number;
  onEval?: (e: CmaesEval) => void;
}

export interface CmaesResult {
  xBest: number[];
  fBest: number;
  evals: number;
  generations: number;
  /** 'maxEvals' | 'targetF' | 'tolFun' | 'tolX' | 'conditionCov' */
  stopReason: string;
}

/** Minimize `f` with CMA-ES. NaN values rank as worst (like +Infinity). */
export function cmaes(f: (x: number[]) => number, opts: CmaesOptions): CmaesResult {
  const run = cmaesSteps(opts);
  let step = run.next();
  while (!step.done) step = run.next(f(step.value));
  return step.value;
}

/** Same as `cmaes`, awaiting each evaluation in turn (no concurrency), so equally deterministic. */
export async function cmaesAsync(
  f: (x: number[]) => Promise<number>,
  opts: CmaesOptions,
): Promise<CmaesResult> {
  const run = cmaesSteps(opts);
  let step = run.next();
  while (!step.done) step = run.next(await f(step.value));
  return step.value;
}

/**
 * The algorithm as a generator: it yields each point to evaluate and is resumed with its value,
 * so the sync and async drivers above share one implementation.
 */
function* cmaesSteps(opts: CmaesOptions): Generator<number[], CmaesResult, number> {
  const n = opts.x0.length;
  const box = validate(opts);
  const lambda = opts.lambda ?? 4 + Math.floor(3 * Math.log(n));
  if (!Number.isInteger(lambda) || lambda < 2) throw new CrepeError(`cmaes: lambda must be an integer >= 2, got ${lambda}`);
  const targetF = opts.targetF ?? -Infinity;
  const tolFun = opts.tolFun ?? 1e-12;
  const rng = new Rng(opts.seed);

  // Selection and recombination: log-decreasing weights over the best half.
  const mu = Math.floor(lambda / 2);
  const rawWeights = Array.from({ length: mu }, (_, i) => Math.log((lambda + 1) / 2) - Math.log(i + 1));
  const weightSum = sum(rawWeights);
  const weights = rawWeights.map((w) => w / weightSum);
  const mueff = 1 / sum(weights.map((w) => w * w));

  // Adaptation constants (tutorial, Table 1).
  const cc = (4 + mueff / n) / (n + 4 + (2 * mueff) / n);
  const cs = (mueff + 2) / (n + mueff + 5);
  const c1 = 2 / ((n + 1.3) ** 2 + mueff);
  const cmu = Math.min(1 - c1, (2 * (mueff - 2 + 1 / mueff)) / ((n + 2) ** 2 + mueff));
  const damps = 1 + 2 * Math.max(0, Math.sqrt((mueff - 1) / (n + 1)) - 1) + cs;
  const chiN = Math.sqrt(n) * (1 - 1 / (4 * n) + 1 / (21 * n * n)); // E||N(0, I)||
  // The eigendecomposition costs O(n^3); refreshing it this rarely keeps the cost per
  // generation O(n^2) while C changes too little in between to matter (tutorial, B.2).
  const eigenEvery = Math.max(1, Math.floor(1 / (10 * n * (c1 + cmu))));
  const historyLength = 10 + Math.ceil((30 * n) / lambda);
  const tolX = 1e-12 * opts.sigma0;

  let mean = opts.x0.slice();
  let sigma = opts.sigma0;
  const C = identity(n);
  let B = identity(n); // eigenvectors of C, as columns
  let D = new Array<number>(n).fill(1); // square roots of the eigenvalues of C
  let invSqrtC = identity(n); // C^(-1/2) = B diag(1/D) B^T
  let ps = new Array<number>(n).fill(0);
  let pc = new Array<number>(n).fill(0);

  let evals = 0;
  let generation = 0;
  let xBest = box.toFeasible(mean);
  let fBest = Infinity;
  const bestHistory: number[] = [];
  const result = (stopReason: string): CmaesResult => ({ xBest, fBest, evals, generations: generation, stopReason });

  for (;;) {
    // Sample and evaluate one generation.
    const ys: number[][] = [];
    const fs: number[] = [];
    for (let k = 0; k < lambda; k++) {
      if (evals >= opts.maxEvals) return result('maxEvals');
      const scaledNormal = Array.from({ length: n }, (_, i) => D[i] * rng.normal());
      const y = matVec(B, scaledNormal); // ~ N(0, C)
      const x = box.toFeasible(mean.map((m, i) => m + sigma * y[i]));
      const value = yield x.slice();
      const fx = Number.isNaN(value) ? Infinity : value;
      opts.onEval?.({ x: x.slice(), f: value, evalIndex: evals, generation });
      evals++;
      ys.push(y);
      fs.push(fx);
      if (fx < fBest) {
        fBest = fx;
        xBest = x;
      }
      if (fx <= targetF) return result('targetF');
    }

    // Selection: the mu best steps, weighted. yMean = (newMean - mean) / sigma.
    const order = fs.map((_, i) => i).sort((i, j) => fs[i] - fs[j] || i - j);
    const selected = order.slice(0, mu).map((i) => ys[i]);
    const yMean = new Array<number>(n).fill(0);
    selected.forEach((y, r) => y.forEach((yi, i) => (yMean[i] += weights[r] * yi)));
    mean = mean.map((m, i) => m + sigma * yMean[i]);

    // Cumulation: evolution paths for step size (in isotropic coordinates) and for C.
    const whitened = matVec(invSqrtC, yMean);
    const psScale = Math.sqrt(cs * (2 - cs) * mueff);
    ps = ps.map((p, i) => (1 - cs) * p + psScale * whitened[i]);
    const psNorm = norm(ps);
    // Stall pc's update while ||ps|| is large, so C does not grow too fast in a fast sigma increase.
    const hsig = psNorm / Math.sqrt(1 - (1 - cs) ** (2 * (generation + 1))) / chiN < 1.4 + 2 / (n + 1) ? 1 : 0;
    const pcScale = hsig * Math.sqrt(cc * (2 - cc) * mueff);
    pc = pc.map((p, i) => (1 - cc) * p + pcScale * yMean[i]);

    // Covariance: rank-one update from pc plus rank-mu update from the selected steps.
    const lostVariance = (1 - hsig) * cc * (2 - cc); // compensates for the stalled pc
    const keep = 1 - c1 - cmu + c1 * lostVariance;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let rankMu = 0;
        for (let r = 0; r < mu; r++) rankMu += weights[r] * selected[r][i] * selected[r][j];
        const cij = keep * C[i][j] + c1 * pc[i] * pc[j] + cmu * rankMu;
        C[i][j] = cij;
        C[j][i] = cij;
      }
    }

    sigma *= Math.exp((cs / damps) * (psNorm / chiN - 1));
    generation++;

    if (generation % eigenEvery === 0) {
      const eig = symmetricEigen(C);
      if (!eig.values.every((v) => v > 0) || Math.max(...eig.values) > 1e14 * Math.min(...eig.values)) {
        return result('conditionCov');
      }
      B = eig.vectors;
      D = eig.values.map(Math.sqrt);
      invSqrtC = C.map((row, i) =>
        row.map((_, j) => {
          let s = 0;
          for (let k = 0; k < n; k++) s += (B[i][k] * B[j][k]) / D[k];
          return s;
        }),
      );
    }

    // Stopping criteria (tutorial, B.3).
    bestHistory.push(fs[order[0]]);
    if (bestHistory.length > historyLength) bestHistory.shift();
    if (bestHistory.length === historyLength) {
      const recent = [...bestHistory, ...fs];
      if (Math.max(...recent) - Math.min(...recent) < tolFun) return result('tolFun');
    }
    if (C.every((row, i) => sigma * Math.sqrt(row[i]) < tolX)) return result('tolX');
  }
}

interface Box {
  /** Mirror x into the box and round integer coordinates. */
  toFeasible(x: number[]): number[];
}

function validate(opts: CmaesOptions): Box {
  const n = opts.x0.length;
  if (n === 0) throw new CrepeError('cmaes: x0 must not be empty');
  if (!opts.x0.every(Number.isFinite)) throw new CrepeError('cmaes: x0 must be finite');
  if (!(opts.sigma0 > 0 && Number.isFinite(opts.sigma0))) throw new CrepeError(`cmaes: sigma0 must be positive, got ${opts.sigma0}`);
  if (!(Number.isInteger(opts.maxEvals) && opts.maxEvals > 0)) throw new CrepeError(`cmaes: maxEvals must be a positive integer, got ${opts.maxEvals}`);
  for (const [name, arr] of [['lower', opts.lower], ['upper', opts.upper], ['integer', opts.integer]] as const) {
    if (arr && arr.length !== n) throw new CrepeError(`cmaes: ${name} has length ${arr.length}, x0 has ${n}`);
  }
  const lower = opts.lower ?? new Array<number>(n).fill(-Infinity);
  const upper = opts.upper ?? new Array<number>(n).fill(Infinity);
  const integer = opts.integer ?? new Array<boolean>(n).fill(false);
  for (let i = 0; i < n; i++) {
    if (Number.isNaN(lower[i]) || Number.isNaN(upper[i]) || lower[i] > upper[i]) {
      throw new CrepeError(`cmaes: coordinate ${i} has bounds [${lower[i]}, ${upper[i]}]`);
    }
    if (opts.x0[i] < lower[i] || opts.x0[i] > upper[i]) {
      throw new CrepeError(`cmaes: x0[${i}] = ${opts.x0[i]} lies outside [${lower[i]}, ${upper[i]}]`);
    }
    if (integer[i] && Math.ceil(lower[i]) > Math.floor(upper[i])) {
      throw new CrepeError(`cmaes: integer coordinate ${i} has no integer in [${lower[i]}, ${upper[i]}]`);
    }
  }
  return {
    toFeasible: (x) =>
      x.map((xi, i) => {
        const v = mirror(xi, lower[i], upper[i]);
        return integer[i] ? clamp(Math.round(v), Math.ceil(lower[i]), Math.floor(upper[i])) : v;
      }),
  };
}

/** Reflect x at the bounds until it lies in [lo, hi] (either may be infinite). */
function mirror(x: number, lo: number, hi: number): number {
  const loOpen = lo === -Infinity;
  const hiOpen = hi === Infinity;
  if (loOpen && hiOpen) return x;
  if (hiOpen) return x >= lo ? x : 2 * lo - x;
  if (loOpen) return x <= hi ? x : 2 * hi - x;
  const width = hi - lo;
  if (width === 0) return lo;
  const period = 2 * width;
  let t = (x - lo) % period;
  if (t < 0) t += period;
  if (t > width) t = period - t;
  return clamp(lo + t, lo, hi); // lo + t can round past hi
}

/**
 * Eigendecomposition of a symmetric matrix by the cyclic Jacobi method: plane rotations zero each
 * off-diagonal entry in turn until the matrix is diagonal to machine precision. O(n^3) per sweep
 * and slower than QR-based solvers, but simple, robust and accurate for the small, well-scaled
 * covariance matrices CMA-ES needs. Returns the eigenvalues (unsorted) and the matching
 * orthonormal eigenvectors as the columns of `vectors`.
 */
export function symmetricEigen(matrix: number[][]): { values: number[]; vectors: number[][] } {
  const n = matrix.length;
  const a = matrix.map((row) => row.slice());
  const v = identity(n);
  for (let sweep = 0; sweep < 100; sweep++) {
    let offDiagonal = 0;
    let diagonal = 0;
    for (let p = 0; p < n; p++) {
      diagonal += a[p][p] * a[p][p];
      for (let q = p + 1; q < n; q++) offDiagonal += a[p][q] * a[p][q];
    }
    if (offDiagonal <= 1e-32 * diagonal) break;
    for (let p = 0; p < n - 1; p++) {
      for (let q = p + 1; q < n; q++) {
        const apq = a[p][q];
        if (apq === 0) continue;
        // Rotation angle phi with t = tan(phi) the smaller root of t^2 + 2 t theta - 1 = 0.
        const theta = (a[q][q] - a[p][p]) / (2 * apq);
        const t =
          Math.abs(theta) > 1e150
            ? 1 / (2 * theta)
            : Math.sign(theta || 1) / (Math.abs(theta) + Math.sqrt(theta * theta + 1));
        const c = 1 / Math.sqrt(t * t + 1);
        const s = t * c;
        for (let k = 0; k < n; k++) {
          if (k === p || k === q) continue;
          const akp = a[k][p];
          const akq = a[k][q];
          a[k][p] = a[p][k] = c * akp - s * akq;
          a[k][q] = a[q][k] = s * akp + c * akq;
        }
        a[p][p] -= t * apq;
        a[q][q] += t * apq;
        a[p][q] = a[q][p] = 0;
        for (let k = 0; k < n; k++) {
          const vkp = v[k][p];
          const vkq = v[k][q];
          v[k][p] = c * vkp - s * vkq;
          v[k][q] = s * vkp + c * vkq;
        }
      }
    }
  }
  return { values: a.map((row, i) => row[i]), vectors: v };
}

function identity(n: number): number[][] {
  return Array.from({ length: n }, (_, i) => Array.from({ length: n }, (_, j) => (i === j ? 1 : 0)));
}

function matVec(m: number[][], x: number[]): number[] {
  return m.map((row) => {
    let s = 0;
    for (let j = 0; j < x.length; j++) s += row[j] * x[j];
    return s;
  });
}

function sum(xs: number[]): number {
  return xs.reduce((s, x) => s + x, 0);
}

function norm(xs: number[]): number {
  return Math.sqrt(xs.reduce((s, x) => s + x * x, 0));
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
