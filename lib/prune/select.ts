/**
 * Mask selection: turn a score matrix into a keep/prune mask, separately from how scores are made.
 *
 * Scores are a row-major Float32Array of a weight of shape [rows = out, cols = in]; a mask is a
 * Uint8Array of the same length, 1 = keep, 0 = prune. Plain typed-array loops: on these machines
 * they are several times faster than tfjs topk (docs/performance.md).
 *
 * Order (exact and deterministic): the LOWEST scores are pruned, in ascending order of
 * (score, flat index), i.e. among equal scores the lower index is pruned first. This is the
 * order of a stable ascending sort (Wanda's torch.sort(stable=True)). NaN scores count as
 * -Infinity, so they are pruned first (a NaN score means the weight carries no usable signal).
 * -0 and +0 are equal.
 *
 * No sorts: each group's cut-off is found by radix select on the float bits (three histogram
 * passes of 11/11/10 bits, the later two over the cut-off's bucket only), then one branch-free
 * pass prunes everything below it, and, only when the cut-off value is tied, one more pass keeps
 * the surplus ties in index order. O(n) worst case and no pivots, so nothing depends on the
 * input order or on randomness; 2-3x faster here than median-of-three quickselect, whose
 * comparisons on random data mispredict. N:M blocks of m <= 8 rank their entries by m(m-1)/2
 * branch-free comparisons.
 */
import { CrepeError } from '../errors';

export type Structure =
  | { kind: 'unstructured'; group: 'row' | 'matrix'; sparsity: number }
  /** N:M = KEEP n of every m consecutive input columns in each row (Wanda/RIA code says "prune n"). */
  | { kind: 'nm'; n: number; m: number };

/** The unstructured sparsity when none is given. */
export const DEFAULT_SPARSITY = 0.5;

/**
 * Parse a structure flag: 'unstructured' or 'N:M' (keep N of every M). `sparsity` (undefined =
 * not given) must be in [0, 1); unstructured uses it (default DEFAULT_SPARSITY). N:M fixes the
 * sparsity at 1 - N/M, so a given sparsity must equal that: a different one is refused rather
 * than silently ignored.
 */
export function parseStructure(text: string, sparsityGiven: number | undefined, group: 'row' | 'matrix'): Structure {
  const sparsity = sparsityGiven ?? DEFAULT_SPARSITY;
  checkSparsity(sparsity);
  const t = text.trim().toLowerCase();
  if (t === 'unstructured') {
    if (group !== 'row' && group !== 'matrix') {
      throw new CrepeError(`comparison group must be 'row' or 'matrix', got '${group}'`);
    }
    return { kind: 'unstructured', group, sparsity };
  }
  const nm = /^(\d+):(\d+)$/.exec(t);
  if (!nm) throw new CrepeError(`structure must be 'unstructured' or N:M such as 2:4 (keep N of every M), got '${text}'`);
  const s: Structure = { kind: 'nm', n: Number(nm[1]), m: Number(nm[2]) };
  checkNM(s.n, s.m);
  if (sparsityGiven !== undefined && Math.abs(sparsityGiven - nmSparsity(s.n, s.m)) > 1e-9) {
    throw new CrepeError(
      `sparsity ${sparsityGiven} contradicts N:M ${s.n}:${s.m}, which prunes exactly 1 - ${s.n}/${s.m} = ${nmSparsity(s.n, s.m)} (give that sparsity or none)`,
    );
  }
  return s;
}

/** Check that `s` can be applied to a [rows, cols] weight; CrepeError when it cannot. */
export function validateStructureFor(s: Structure, rows: number, cols: number): void {
  if (!Number.isInteger(rows) || !Number.isInteger(cols) || rows <= 0 || cols <= 0) {
    throw new CrepeError(`weight shape must be positive integers, got [${rows}, ${cols}]`);
  }
  if (s.kind === 'unstructured') {
    checkSparsity(s.sparsity);
    return;
  }
  checkNM(s.n, s.m);
  if (cols % s.m !== 0) {
    throw new CrepeError(`N:M ${s.n}:${s.m} needs the input width ${cols} to be a multiple of ${s.m}`);
  }
}

/** Fraction of weights an N:M (keep n of m) mask prunes. */
export function nmSparsity(n: number, m: number): number {
  return (m - n) / m;
}

/** Choose the keep mask for `scores` ([rows, cols], row-major) under structure `s`. */
export function selectMask(scores: Float32Array, rows: number, cols: number, s: Structure): Uint8Array {
  validateStructureFor(s, rows, cols);
  if (scores.length !== rows * cols) {
    throw new Error(`selectMask: ${scores.length} scores for shape [${rows}, ${cols}]`);
  }
  const mask = new Uint8Array(scores.length).fill(1);
  if (s.kind === 'nm') {
    // m divides cols, so blocks of m consecutive flat entries never straddle two rows.
    selectNM(scores, s.n, s.m, mask);
    return mask;
  }
  const bits = new Int32Array(scores.buffer, scores.byteOffset, scores.length);
  if (s.group === 'matrix') {
    pruneLowest(bits, 0, scores.length, Math.floor(rows * cols * s.sparsity), mask);
  } else {
    // Same expression as Wanda's int(in * s): the float product is floored, not rounded.
    const perRow = Math.floor(cols * s.sparsity);
    for (let r = 0; r < rows; r++) pruneLowest(bits, r * cols, cols, perRow, mask);
  }
  return mask;
}

/** Fraction of zeros in a mask (0 for an empty mask). */
export function maskSparsity(mask: Uint8Array): number {
  let pruned = 0;
  for (let i = 0; i < mask.length; i++) pruned += bit(mask[i] === 0);
  return mask.length === 0 ? 0 : pruned / mask.length;
}

/**
 * A new array with the pruned weights set to +0. The bits are masked rather than the values
 * multiplied, so NaN/Infinity weights are zeroed too, and there is no branch on the mask.
 */
export function applyMask(weight: Float32Array, mask: Uint8Array): Float32Array {
  if (weight.length !== mask.length) throw new Error(`applyMask: ${weight.length} weights, ${mask.length} mask entries`);
  const out = new Float32Array(weight.length);
  const weightBits = new Int32Array(weight.buffer, weight.byteOffset, weight.length);
  const outBits = new Int32Array(out.buffer);
  for (let i = 0; i < weight.length; i++) outBits[i] = weightBits[i] & -bit(mask[i] !== 0);
  return out;
}

// ---------------------------------------------------------------------------------------------

function checkSparsity(sparsity: number): void {
  if (!(sparsity >= 0 && sparsity < 1)) throw new CrepeError(`sparsity must be in [0, 1), got ${sparsity}`);
}

function checkNM(n: number, m: number): void {
  if (!Number.isInteger(n) || !Number.isInteger(m) || n <= 0 || n >= m) {
    throw new CrepeError(`N:M needs whole numbers 0 < N < M (keep N of every M), got ${n}:${m}`);
  }
}

const NEG_INFINITY_BITS = 0xff800000 | 0;
const NEG_ZERO_BITS = 0x80000000 | 0;

/**
 * Unsigned 32-bit key of a float32 bit pattern (as int32) whose unsigned order is the number
 * order: positives get the sign bit set, negatives are inverted. NaN gets the key of -Infinity
 * and -0 the key of +0, so keys are equal exactly when the numbers compare equal (or both NaN).
 */
function sortKey(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) bits = NEG_INFINITY_BITS;
  else if (bits === NEG_ZERO_BITS) bits = 0;
  return (bits ^ ((bits >> 31) | 0x80000000)) >>> 0;
}

/** 1 or 0. `bool | 0` compiles to a flag move, not a branch, where a comparison of random data mispredicts. */
function bit(b: boolean): number {
  return (b as unknown as number) | 0;
}

// Histogram for radix select: 2048 buckets plus one that collects entries outside the prefix.
const histogram = new Int32Array(2049);
let bucketKeys = new Uint32Array(4097);

/**
 * Set mask to 0 for the k lowest of the scores (as float32 bits) in [start, start + len), in
 * (score, index) order; the mask is 1 there on entry.
 */
function pruneLowest(bits: Int32Array, start: number, len: number, k: number, mask: Uint8Array): void {
  if (k <= 0) return;
  const end = start + len;
  if (k >= len) {
    mask.fill(0, start, end);
    return;
  }
  const rank = k - 1; // 0-based position of the last pruned entry in sorted order
  // Digit 1 (bits 31..21) over the whole range.
  histogram.fill(0);
  for (let i = start; i < end; i++) histogram[sortKey(bits[i]) >>> 21]++;
  let below = 0; // entries whose key is below the cut-off's bucket
  let digit1 = 0;
  while (below + histogram[digit1] <= rank) below += histogram[digit1++];
  // Copy out that bucket's keys (branch-free: always store, advance only on a match), so digits
  // 2 (bits 20..10) and 3 (bits 9..0) scan only it.
  const inBucket = histogram[digit1];
  if (bucketKeys.length <= inBucket) bucketKeys = new Uint32Array(inBucket + 1);
  const keys = bucketKeys;
  let count = 0;
  for (let i = start; i < end; i++) {
    const key = sortKey(bits[i]);
    keys[count] = key;
    count += bit(key >>> 21 === digit1);
  }
  histogram.fill(0);
  for (let i = 0; i < count; i++) histogram[(keys[i] >>> 10) & 0x7ff]++;
  let digit2 = 0;
  while (below + histogram[digit2] <= rank) below += histogram[digit2++];
  const prefix = (digit1 << 11) | digit2;
  histogram.fill(0);
  for (let i = 0; i < count; i++) {
    const key = keys[i];
    histogram[key >>> 10 === prefix ? key & 0x3ff : 2048]++;
  }
  let digit3 = 0;
  while (below + histogram[digit3] <= rank) below += histogram[digit3++];
  const cut = ((prefix << 10) | digit3) >>> 0;
  const equal = histogram[digit3];

  // Keep what is above the cut-off.
  for (let i = start; i < end; i++) mask[i] = bit(sortKey(bits[i]) > cut);
  // All `equal` entries at the cut-off are pruned now, but only k - below of them should be:
  // keep the later ones.
  let tiesToPrune = k - below;
  if (tiesToPrune < equal) {
    for (let i = start; i < end; i++) {
      if (sortKey(bits[i]) !== cut) continue;
      if (tiesToPrune > 0) tiesToPrune--;
      else mask[i] = 1;
    }
  }
}

/** N:M: in each row, each block of m consecutive columns keeps its n highest. */
function selectNM(scores: Float32Array, n: number, m: number, mask: Uint8Array): void {
  const prune = m - n;
  if (m > 8) {
    const bits = new Int32Array(scores.buffer, scores.byteOffset, scores.length);
    for (let b = 0; b < scores.length; b += m) pruneLowest(bits, b, m, prune, mask);
    return;
  }
  // Rank of an entry in its block = how many entries precede it in (score, index) order; the
  // `prune` lowest ranks go. Entry j > i precedes i iff its score is strictly lower.
  const values = new Float64Array(m);
  const ranks = new Int32Array(m);
  for (let b = 0; b < scores.length; b += m) {
    for (let i = 0; i < m; i++) {
      const v = scores[b + i];
      values[i] = v !== v ? -Infinity : v;
      ranks[i] = 0;
    }
    for (let i = 0; i < m; i++) {
      const vi = values[i];
      for (let j = i + 1; j < m; j++) {
        const jFirst = bit(values[j] < vi);
        ranks[i] += jFirst;
        ranks[j] += 1 - jFirst;
      }
    }
    for (let i = 0; i < m; i++) mask[b + i] = bit(ranks[i] >= prune);
  }
}
