/**
 * Mask selection: turn a score matrix into a keep/prune mask, separately from how scores are made.
 *
 * Scores are a row-major Float32Array of a weight of shape [rows = out, cols = in]; a mask is a
 * Uint8Array of the same length, 1 = keep, 0 = prune. Plain typed-array loops: on these machines
 * they are 2-10x faster than tfjs topk (DESIGN.md section 5).
 *
 * Order (exact and deterministic): the LOWEST scores are pruned, in ascending order of
 * (score, flat index), i.e. among equal scores the lower index is pruned first. This is the
 * order of a stable ascending sort (Wanda's torch.sort(stable=True)). NaN scores count as
 * -Infinity, so they are pruned first (a NaN score means the weight carries no usable signal).
 * -0 and +0 are equal.
 *
 * No full sorts: each group's cut-off value is found by quickselect (median-of-three pivot, so no
 * randomness; falls back to a sort of the remaining range if partitioning degenerates), then one
 * pass prunes everything below it and exactly as many ties as still needed, in index order.
 */
import { CrepeError } from '../errors';

export type Structure =
  | { kind: 'unstructured'; group: 'row' | 'matrix'; sparsity: number }
  /** N:M = KEEP n of every m consecutive input columns in each row (Wanda/RIA code says "prune n"). */
  | { kind: 'nm'; n: number; m: number };

/**
 * Parse a structure flag: 'unstructured' or 'N:M' (keep N of every M). `sparsity` must be in
 * [0, 1) either way; for N:M it is not used (N:M fixes the sparsity at 1 - N/M).
 */
export function parseStructure(text: string, sparsity: number, group: 'row' | 'matrix'): Structure {
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
  } else if (s.group === 'matrix') {
    pruneLowest(scores, 0, scores.length, Math.floor(rows * cols * s.sparsity), mask, new Float32Array(scores.length));
  } else {
    // Same expression as Wanda's int(in * s): the float product is floored, not rounded.
    const perRow = Math.floor(cols * s.sparsity);
    const scratch = new Float32Array(cols);
    for (let r = 0; r < rows; r++) pruneLowest(scores, r * cols, cols, perRow, mask, scratch);
  }
  return mask;
}

/** Fraction of zeros in a mask (0 for an empty mask). */
export function maskSparsity(mask: Uint8Array): number {
  let pruned = 0;
  for (let i = 0; i < mask.length; i++) if (mask[i] === 0) pruned++;
  return mask.length === 0 ? 0 : pruned / mask.length;
}

/** A new array with the pruned weights set to 0 (set, not multiplied, so NaN/Inf weights go too). */
export function applyMask(weight: Float32Array, mask: Uint8Array): Float32Array {
  if (weight.length !== mask.length) throw new Error(`applyMask: ${weight.length} weights, ${mask.length} mask entries`);
  const out = new Float32Array(weight.length);
  for (let i = 0; i < weight.length; i++) out[i] = mask[i] === 0 ? 0 : weight[i];
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

/** Score with NaN mapped to -Infinity (the order used everywhere here). */
function key(v: number): number {
  return v !== v ? -Infinity : v;
}

/**
 * Set mask to 0 for the k lowest of scores[start, start + len) in (score, index) order.
 * `scratch` holds at least len values and is overwritten.
 */
function pruneLowest(
  scores: Float32Array, start: number, len: number, k: number, mask: Uint8Array, scratch: Float32Array,
): void {
  if (k <= 0) return;
  const end = start + len;
  if (k >= len) {
    mask.fill(0, start, end);
    return;
  }
  for (let i = 0; i < len; i++) scratch[i] = key(scores[start + i]);
  // The k-th lowest value: everything below it goes, and of the values equal to it, the first
  // (k - below) in index order.
  const cut = selectKth(scratch, len, k - 1);
  let below = 0;
  for (let i = 0; i < len; i++) if (scratch[i] < cut) below++;
  let ties = k - below;
  for (let i = start; i < end; i++) {
    const v = key(scores[i]);
    if (v < cut) mask[i] = 0;
    else if (v === cut && ties > 0) {
      mask[i] = 0;
      ties--;
    }
  }
}

/**
 * The value that would sit at position `kth` if a[0, len) were sorted ascending (a has no NaN).
 * Reorders a. Hoare partition around a median-of-three pivot: equal values split evenly, so runs
 * of ties stay O(n). If the range is not shrinking fast enough (an adversarial order), the rest
 * is sorted, which bounds the worst case at O(n log n).
 */
function selectKth(a: Float32Array, len: number, kth: number): number {
  let lo = 0;
  let hi = len - 1;
  let budget = 3 * Math.ceil(Math.log2(len + 1)) + 8; // ~2x the steps a typical run needs
  while (hi - lo > 16) {
    if (budget-- === 0) {
      a.subarray(lo, hi + 1).sort();
      return a[kth];
    }
    const mid = (lo + hi) >>> 1;
    // Median of three, left in a[mid].
    if (a[mid] < a[lo]) swap(a, mid, lo);
    if (a[hi] < a[lo]) swap(a, hi, lo);
    if (a[hi] < a[mid]) swap(a, hi, mid);
    const pivot = a[mid];
    let i = lo - 1;
    let j = hi + 1;
    for (;;) {
      do i++; while (a[i] < pivot);
      do j--; while (a[j] > pivot);
      if (i >= j) break;
      swap(a, i, j);
    }
    // Now a[lo..j] <= pivot <= a[j+1..hi].
    if (kth <= j) hi = j;
    else lo = j + 1;
  }
  // Small range: insertion sort.
  for (let i = lo + 1; i <= hi; i++) {
    const v = a[i];
    let j = i - 1;
    while (j >= lo && a[j] > v) {
      a[j + 1] = a[j];
      j--;
    }
    a[j + 1] = v;
  }
  return a[kth];
}

function swap(a: Float32Array, i: number, j: number): void {
  const t = a[i];
  a[i] = a[j];
  a[j] = t;
}

/** N:M: in each row, each block of m consecutive columns keeps its n highest. */
function selectNM(scores: Float32Array, n: number, m: number, mask: Uint8Array): void {
  const prune = m - n;
  if (m > 8) {
    const scratch = new Float32Array(m);
    for (let b = 0; b < scores.length; b += m) pruneLowest(scores, b, m, prune, mask, scratch);
    return;
  }
  // Small blocks: insertion-sort the block's offsets by (score, offset) and prune the first
  // `prune`. Starting from offset order and moving only past strictly greater values keeps
  // ties in index order.
  const order = new Int32Array(m);
  const vals = new Float64Array(m);
  for (let b = 0; b < scores.length; b += m) {
    for (let i = 0; i < m; i++) {
      const v = key(scores[b + i]);
      let j = i - 1;
      while (j >= 0 && vals[j] > v) {
        vals[j + 1] = vals[j];
        order[j + 1] = order[j];
        j--;
      }
      vals[j + 1] = v;
      order[j + 1] = i;
    }
    for (let i = 0; i < prune; i++) mask[b + order[i]] = 0;
  }
}
