/**
 * RIA's channel permutation for N:M sparsity (docs/methods.md; reimplemented from the
 * description of biomedical-cybernetics/Relative-importance-and-activation-pruning, lib/prune.py,
 * "reallocation" + "lsa").
 *
 * Plain N:M keeps n of every m consecutive input columns, so important columns that happen to sit
 * in the same block compete with each other. Reordering the input channels first spreads them:
 *   1. column importance = sum of scores over rows; order columns by importance, descending
 *      (ties by column index);
 *   2. deal the ordered columns into m tiers of G = cols / m: tier k fills in-group position k of
 *      every group, odd tiers reversed (zig-zag), so each group gets a balanced mix;
 *   3. optionally refine: for each in-group position p, reassign the columns at position p among
 *      the groups with a linear sum assignment that maximizes the total kept score, the other
 *      m - 1 columns of every group held fixed (RIA's --lsa);
 *   4. N:M on the permuted scores (the ordering of lib/prune/select.ts, ties by permuted position).
 *
 * The returned mask is in the ORIGINAL column order. It is a valid N:M mask only in the permuted
 * order (columns perm[0], perm[1], ...): to run on N:M hardware, the layer's input channels
 * (this weight's columns and whatever produces its input) must be permuted by `perm`. Applied as
 * is to the original weight, it gives the same function as the permuted layer, which is how the
 * perplexity of a permuted model is measured.
 *
 * Scores should be finite. NaN counts as -Infinity, as in select.ts; for the sums above,
 * non-finite scores are replaced by values just outside the finite range, which keeps the order.
 */
import { selectMask, validateStructureFor } from './select';

export interface PermuteOptions {
  /** Refine the zig-zag permutation with linear sum assignments (RIA's --lsa). */
  refine: boolean;
  /** Sweeps over all m in-group positions (default 1, as RIA); stops early when a sweep gains nothing. */
  maxIters?: number;
  /**
   * Most groups in one assignment (default 256). Groups are split into contiguous chunks of at
   * most this many and each chunk is solved alone, like RIA's --fast. Cost per position is about
   * G * chunk * rows for the gain matrix plus chunk^3 per chunk for the assignment; Infinity
   * gives one assignment over all G groups (RIA's default, slow for wide layers).
   */
  maxAssignmentSize?: number;
}

export interface PermutedNM {
  /** perm[newPosition] = original column. */
  perm: Uint32Array;
  /** Keep mask [rows, cols] in the original column order (N:M when read in permuted order). */
  mask: Uint8Array;
  /** Sum of the scores the mask keeps. */
  keptScore: number;
}

export function permuteForNM(
  scores: Float32Array, rows: number, cols: number, n: number, m: number, opts: PermuteOptions,
): PermutedNM {
  validateStructureFor({ kind: 'nm', n, m }, rows, cols);
  if (scores.length !== rows * cols) throw new Error(`permuteForNM: ${scores.length} scores for shape [${rows}, ${cols}]`);
  const maxIters = opts.maxIters ?? 1;
  const maxAssignmentSize = opts.maxAssignmentSize ?? 256;
  if (!(maxAssignmentSize >= 2)) throw new Error(`permuteForNM: maxAssignmentSize must be >= 2, got ${maxAssignmentSize}`);

  const work = finiteScores(scores);
  const perm = zigZagPermutation(work, rows, cols, m);
  if (opts.refine) {
    const groups = cols / m;
    const chunks = Math.ceil(groups / Math.min(maxAssignmentSize, groups));
    for (let iter = 0; iter < maxIters; iter++) {
      let improved = false;
      for (let p = 0; p < m; p++) {
        for (let c = 0; c < chunks; c++) {
          const g0 = Math.floor((c * groups) / chunks);
          const g1 = Math.floor(((c + 1) * groups) / chunks);
          if (reassignPosition(work, rows, cols, n, m, perm, p, g0, g1)) improved = true;
        }
      }
      if (!improved) break;
    }
  }

  const permutedMask = selectMask(permuteColumns(work, rows, cols, perm), rows, cols, { kind: 'nm', n, m });
  const mask = new Uint8Array(rows * cols);
  let keptScore = 0;
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    for (let j = 0; j < cols; j++) {
      const keep = permutedMask[off + j];
      const i = off + perm[j];
      mask[i] = keep;
      keptScore += keep * work[i]; // a multiply, not a branch on a random mask (~5x faster)
    }
  }
  if (work !== scores) {
    // Some scores are not finite: report the sum of the real ones (NaN or Infinity if kept).
    keptScore = 0;
    for (let i = 0; i < mask.length; i++) if (mask[i] === 1) keptScore += scores[i];
  }
  return { perm, mask, keptScore };
}

/** out[r, j] = values[r, perm[j]]: the matrix with its columns in permuted order. */
export function permuteColumns(values: Float32Array, rows: number, cols: number, perm: Uint32Array): Float32Array {
  const out = new Float32Array(rows * cols);
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    for (let j = 0; j < cols; j++) out[off + j] = values[off + perm[j]];
  }
  return out;
}

/**
 * Maximum-weight perfect matching on a square `size` x `size` matrix (row-major, finite):
 * returns assign with assign[row] = column. Hungarian algorithm with potentials and shortest
 * augmenting paths, O(size^3). Written here rather than taken from npm: the packages found take
 * number[][] (a copy of up to millions of entries per call) or pull in a matrix library, and
 * this is ~30 lines on the flat Float64Array we already have.
 */
export function maxWeightAssignment(weight: Float64Array, size: number): Int32Array {
  for (let i = 0; i < size * size; i++) {
    if (!Number.isFinite(weight[i])) throw new Error('maxWeightAssignment: weights must be finite');
  }
  // Minimize cost = -weight. Index 0 is a virtual column; rows and columns are 1-based here.
  const u = new Float64Array(size + 1); // row potentials
  const v = new Float64Array(size + 1); // column potentials
  const rowOfCol = new Int32Array(size + 1); // 0 = unmatched
  const prevCol = new Int32Array(size + 1); // path back to the virtual column
  const minSlack = new Float64Array(size + 1);
  const visited = new Uint8Array(size + 1);
  for (let row = 1; row <= size; row++) {
    rowOfCol[0] = row;
    let col0 = 0;
    minSlack.fill(Infinity);
    visited.fill(0);
    do {
      visited[col0] = 1;
      const r0 = rowOfCol[col0];
      const base = (r0 - 1) * size - 1;
      let delta = Infinity;
      let col1 = 0;
      for (let j = 1; j <= size; j++) {
        if (visited[j]) continue;
        const slack = -weight[base + j] - u[r0] - v[j];
        if (slack < minSlack[j]) {
          minSlack[j] = slack;
          prevCol[j] = col0;
        }
        if (minSlack[j] < delta) {
          delta = minSlack[j];
          col1 = j;
        }
      }
      for (let j = 0; j <= size; j++) {
        if (visited[j]) {
          u[rowOfCol[j]] += delta;
          v[j] -= delta;
        } else {
          minSlack[j] -= delta;
        }
      }
      col0 = col1;
    } while (rowOfCol[col0] !== 0);
    do {
      const col1 = prevCol[col0];
      rowOfCol[col0] = rowOfCol[col1];
      col0 = col1;
    } while (col0 !== 0);
  }
  const assign = new Int32Array(size);
  for (let j = 1; j <= size; j++) assign[rowOfCol[j] - 1] = j - 1;
  return assign;
}

// ---------------------------------------------------------------------------------------------

/** Steps 1-2: importance order dealt zig-zag into m tiers. */
function zigZagPermutation(work: Float32Array, rows: number, cols: number, m: number): Uint32Array {
  const importance = new Float64Array(cols);
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    for (let c = 0; c < cols; c++) importance[c] += work[off + c];
  }
  const byImportance = new Uint32Array(cols);
  for (let c = 0; c < cols; c++) byImportance[c] = c;
  byImportance.sort((a, b) => importance[b] - importance[a] || a - b);
  const groups = cols / m;
  const perm = new Uint32Array(cols);
  for (let tier = 0; tier < m; tier++) {
    for (let g = 0; g < groups; g++) {
      perm[g * m + tier] = byImportance[tier * groups + (tier % 2 === 1 ? groups - 1 - g : g)];
    }
  }
  return perm;
}

/**
 * Step 3 for in-group position p and groups [g0, g1): moves the columns now at position p among
 * these groups to maximize the kept score; returns whether perm changed.
 *
 * With the other m - 1 columns of group g fixed, let t = their n-th highest score in a row.
 * Adding a column with score x to the group keeps the fixed top n plus max(0, x - t) (x displaces
 * the n-th if higher), so the kept score of group g given candidate c is base_g + gain[g][c],
 * gain[g][c] = sum over rows of max(0, x_c - t_g), and base_g does not depend on the choice.
 */
function reassignPosition(
  work: Float32Array, rows: number, cols: number, n: number, m: number,
  perm: Uint32Array, p: number, g0: number, g1: number,
): boolean {
  const size = g1 - g0;
  if (size < 2) return false;
  // Laid out [group][row] so the gain loop below reads both contiguously.
  const candidate = new Float32Array(size * rows); // score of the column at position p of group g
  const threshold = new Float32Array(size * rows); // n-th highest of the other m - 1 in the group
  const others = new Float64Array(m - 1);
  for (let r = 0; r < rows; r++) {
    const off = r * cols;
    for (let g = 0; g < size; g++) {
      const base = (g0 + g) * m;
      candidate[g * rows + r] = work[off + perm[base + p]];
      let count = 0; // insertion sort, descending
      for (let q = 0; q < m; q++) {
        if (q === p) continue;
        const x = work[off + perm[base + q]];
        let k = count++;
        while (k > 0 && others[k - 1] < x) {
          others[k] = others[k - 1];
          k--;
        }
        others[k] = x;
      }
      threshold[g * rows + r] = others[n - 1];
    }
  }
  const gain = new Float64Array(size * size); // gain[g * size + c]: group g takes candidate c
  for (let g = 0; g < size; g++) {
    const t = threshold.subarray(g * rows, (g + 1) * rows);
    for (let c = 0; c < size; c++) {
      const x = candidate.subarray(c * rows, (c + 1) * rows);
      // d + |d| = 2 max(d, 0) without a branch (an if on random data here is ~10x slower).
      let twiceGain = 0;
      for (let r = 0; r < rows; r++) {
        const d = x[r] - t[r];
        twiceGain += d + Math.abs(d);
      }
      gain[g * size + c] = 0.5 * twiceGain;
    }
  }
  const assign = maxWeightAssignment(gain, size);
  let best = 0;
  let current = 0;
  for (let g = 0; g < size; g++) {
    best += gain[g * size + assign[g]];
    current += gain[g * size + g];
  }
  // Keep the current columns unless the gain is more than rounding noise, so refinement never
  // lowers the kept score and equal-score reshuffles do not churn.
  if (!(best > current + 1e-12 * (Math.abs(best) + Math.abs(current)))) return false;
  const moved = new Uint32Array(size);
  for (let g = 0; g < size; g++) moved[g] = perm[(g0 + assign[g]) * m + p];
  for (let g = 0; g < size; g++) perm[(g0 + g) * m + p] = moved[g];
  return true;
}

/**
 * `scores` itself when all finite, else a copy with NaN and -Infinity just below the finite
 * range and +Infinity just above it: the (score, index) order stays that of select.ts (NaN ties
 * -Infinity) while sums and differences stay finite.
 */
function finiteScores(scores: Float32Array): Float32Array {
  let lo = Infinity;
  let hi = -Infinity;
  let allFinite = true;
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i];
    if (Number.isFinite(v)) {
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    } else {
      allFinite = false;
    }
  }
  if (allFinite) return scores;
  if (lo > hi) lo = hi = 0; // nothing finite
  const below = lo - 1 - Math.abs(lo);
  const above = hi + 1 + Math.abs(hi);
  const out = new Float32Array(scores.length);
  for (let i = 0; i < scores.length; i++) {
    const v = scores[i];
    out[i] = Number.isFinite(v) ? v : v === Infinity ? above : below;
  }
  return out;
}
