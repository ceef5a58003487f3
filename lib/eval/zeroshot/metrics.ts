/**
 * Per-document metrics and their aggregation with standard errors, as lm-evaluation-harness
 * computes them (lm_eval/api/task.py `process_results`, lm_eval/api/metrics.py).
 */
import { MetricName, TaskDoc } from './tasks';
import { RequestScore } from './loglikelihood';

/** Python's sum() of floats (3.12+: Neumaier-compensated; earlier versions differ in the last bits). */
export function pySum(xs: ArrayLike<number>): number {
  let s = 0;
  let c = 0;
  for (let i = 0; i < xs.length; i++) {
    const x = xs[i];
    const t = s + x;
    c += Math.abs(s) >= Math.abs(x) ? s - t + x : x - t + s;
    s = t;
  }
  return s + c;
}

/** The harness's `mean`: sum(arr) / len(arr). */
export function pyMean(xs: ArrayLike<number>): number {
  return pySum(xs) / xs.length;
}

/** The harness's sample_stddev (n - 1 in the denominator). */
export function sampleStddev(xs: ArrayLike<number>): number {
  const mu = pyMean(xs);
  const sq = Float64Array.from(Array.from(xs, (x) => (x - mu) ** 2));
  return Math.sqrt(pySum(sq) / (xs.length - 1));
}

/** mean_stderr: the harness's standard error of `acc` and `acc_norm`; null for fewer than 2 items. */
export function meanStderr(xs: ArrayLike<number>): number | null {
  return xs.length < 2 ? null : sampleStddev(xs) / Math.sqrt(xs.length);
}

/** np.argmax: the first maximum. */
function argmax(xs: readonly number[]): number {
  let best = 0;
  for (let i = 1; i < xs.length; i++) if (xs[i] > xs[best]) best = i;
  return best;
}

/** One document's metric values. */
export type DocMetrics = Partial<Record<MetricName, number>>;

export function docMetrics(doc: TaskDoc, scores: readonly RequestScore[], metrics: readonly MetricName[]): DocMetrics {
  const out: DocMetrics = {};
  if (doc.kind === 'loglikelihood') {
    if (metrics.includes('perplexity')) out.perplexity = scores[0].ll;
    if (metrics.includes('acc')) out.acc = scores[0].greedy ? 1 : 0;
    return out;
  }
  const lls = scores.map((s) => s.ll);
  // acc_norm: divided by len(choice), Python's length in code points of the choice string
  const norm = lls.map((ll, i) => ll / Array.from(doc.choices[i]).length);
  if (metrics.includes('acc')) out.acc = argmax(lls) === doc.gold ? 1 : 0;
  if (metrics.includes('acc_norm')) out.acc_norm = argmax(norm) === doc.gold ? 1 : 0;
  return out;
}

/**
 * MT19937 as CPython's random module: seed(int) by init_by_array of the integer's 32-bit
 * words, random() from two outputs (53-bit), so that choices() draws what Python draws.
 */
export class PyRandom {
  private mt = new Uint32Array(624);
  private mti = 625;

  constructor(seed: number) {
    if (!(Number.isInteger(seed) && seed >= 0 && seed < 2 ** 32)) throw new Error(`PyRandom seed must be a 32-bit integer, got ${seed}`);
    this.initByArray([seed]);
  }

  private initGenrand(s: number): void {
    const mt = this.mt;
    mt[0] = s >>> 0;
    for (let i = 1; i < 624; i++) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = (Math.imul(1812433253, prev) + i) >>> 0;
    }
    this.mti = 624;
  }

  private initByArray(key: number[]): void {
    const mt = this.mt;
    this.initGenrand(19650218);
    let i = 1;
    let j = 0;
    for (let k = Math.max(624, key.length); k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1664525)) + key[j] + j) >>> 0;
      i++;
      j++;
      if (i >= 624) {
        mt[0] = mt[623];
        i = 1;
      }
      if (j >= key.length) j = 0;
    }
    for (let k = 623; k > 0; k--) {
      const prev = mt[i - 1] ^ (mt[i - 1] >>> 30);
      mt[i] = ((mt[i] ^ Math.imul(prev, 1566083941)) - i) >>> 0;
      i++;
      if (i >= 624) {
        mt[0] = mt[623];
        i = 1;
      }
    }
    mt[0] = 0x80000000;
  }

  private next32(): number {
    const mt = this.mt;
    if (this.mti >= 624) {
      for (let k = 0; k < 624; k++) {
        const y = (mt[k] & 0x80000000) | (mt[(k + 1) % 624] & 0x7fffffff);
        mt[k] = mt[(k + 397) % 624] ^ (y >>> 1) ^ (y & 1 ? 0x9908b0df : 0);
      }
      this.mti = 0;
    }
    let y = mt[this.mti++];
    y ^= y >>> 11;
    y ^= (y << 7) & 0x9d2c5680;
    y ^= (y << 15) & 0xefc60000;
    y ^= y >>> 18;
    return y >>> 0;
  }

  /** random.random(): genrand_res53. */
  random(): number {
    const a = this.next32() >>> 5;
    const b = this.next32() >>> 6;
    return (a * 67108864 + b) / 9007199254740992;
  }
}

/** The harness's `perplexity` aggregation: exp(-mean(per-document log-likelihoods)). */
export function perplexityOf(lls: ArrayLike<number>): number {
  return Math.exp(-pyMean(lls));
}

/**
 * The harness's bootstrap_stderr for `perplexity`: iters // chunk replicates-chunks, chunk i
 * drawn by random.Random(i).choices(xs, k=len(xs)) (chunk = min(1000, iters)), and the sample
 * standard deviation of the replicates. Default iters: the harness's 100000.
 */
export function perplexityBootstrapStderr(lls: ArrayLike<number>, iters = 100_000): number | null {
  const n = lls.length;
  if (n < 1 || iters < 2) return null;
  const chunk = Math.min(1000, iters);
  const chunks = Math.floor(iters / chunk);
  const reps = new Float64Array(chunks * chunk);
  const sample = new Float64Array(n);
  let r = 0;
  for (let i = 0; i < chunks; i++) {
    const rnd = new PyRandom(i);
    for (let c = 0; c < chunk; c++) {
      for (let k = 0; k < n; k++) sample[k] = lls[Math.floor(rnd.random() * n)];
      reps[r++] = perplexityOf(sample);
    }
  }
  return sampleStddev(reps);
}

/** One metric of one task over its documents. */
export interface MetricSummary {
  value: number;
  stderr: number | null;
}

export function aggregate(metric: MetricName, values: readonly number[], bootstrapIters: number): MetricSummary {
  if (metric === 'perplexity') return { value: perplexityOf(values), stderr: perplexityBootstrapStderr(values, bootstrapIters) };
  return { value: pyMean(values), stderr: meanStderr(values) };
}
