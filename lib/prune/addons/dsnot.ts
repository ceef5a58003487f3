/**
 * DSnoT (zyxxmu/DSnoT, lib/prune.py `prune_DSnoT`): training-free prune-and-grow on top of any
 * initial mask, reimplemented from the reference's behaviour.
 *
 * Per output row i, with mu_j = sum over calibration tokens of x_j / windows (the reference's
 * `sum_metric_row`: the per-window SUM, i.e. window length x the mean) and metric_ij = W_ij mu_j,
 * the expected output error of the pruned row is
 *     e_i = sum over pruned j of metric_ij.
 * Each cycle swaps one pruned weight back in and prunes one kept weight:
 *   - regrow: pruned entries ranked by metric / var_j^pow (var = per-channel variance, pow 1);
 *     e > 0 takes the highest remaining, otherwise the lowest (two pointers into one sorted list);
 *   - prune, unstructured: kept entries with metric < 0 (taken when e >= 0) or > 0 (when e < 0),
 *     each in ascending Wanda score |W| sqrt(scaler);
 *   - prune, N:M: the kept entry with the lowest Wanda score in the regrown entry's group of m,
 *     so every group keeps exactly n (the reference's structured branch);
 *   - the swap happens while |e| > threshold (ABSOLUTE, on the scale of mu above, as the
 *     reference) and, when the sign check is on, sign(e after) == sign(e initially); the first
 *     cycle that fails stops the row for good; at most maxCycles cycles.
 * The sign check: the reference's structured branch always applies it; its unstructured branch
 * applies it only without `--without_same_sign`, whose default (True) turns it off. We follow
 * both defaults; `sameSign` overrides the unstructured one. Like the reference's default
 * (--skip_layer mlp), the MLP linears keep their initial mask: the refiner reads each layer's
 * kind, and `skip` chooses which kind it leaves alone ('mlp', 'attn' or 'none').
 *
 * Differences from the reference, all in corner cases it never reaches on LLaMA widths:
 *   - a row stops when a pointer runs out of candidates (the reference would walk on into the
 *     other sign's candidates or past the row end); regrow candidates are pruned entries only;
 *   - kept entries whose metric is exactly 0 are never prune candidates (the reference's
 *     reordering collides on them);
 *   - var is the variance over all calibration tokens (channelMoments); the reference averages
 *     per-window variances, which leaves out the spread of the per-window means;
 * Rows are independent; typed-array loops; ties broken by column index, so results are
 * deterministic. Every row keeps its count of kept weights (and N:M groups their n).
 */
import { CrepeError } from '../../errors';
import { MaskRefiner, RefineInput } from '../pipeline';
import { channelMoments, scalerRow } from '../stats';

export interface DsnotOptions {
  /** Most swaps per row (the reference's max_cycle_time, default 50). */
  maxCycles?: number;
  /** Stop a row once |e| <= threshold (the reference's update_threshold, default 0.1). */
  threshold?: number;
  /** Exponent of the variance in the regrow ranking (pow_of_var_regrowing, default 1). */
  powVar?: number;
  /** Require the error to keep its initial sign (unstructured; default false as the reference; N:M always does). */
  sameSign?: boolean;
  /** Layers left as selected: the reference's --skip_layer, default 'mlp' (attention only). */
  skip?: 'mlp' | 'attn' | 'none';
}

export interface DsnotRowStats {
  /** Swaps made over all rows. */
  swaps: number;
  /** Sum over rows of |e| before and after. */
  errorBefore: number;
  errorAfter: number;
}

/** A MaskRefiner running DSnoT; `onLayer` receives each layer's swap count and error totals. */
export function dsnotRefiner(opts: DsnotOptions = {}, onLayer?: (s: DsnotRowStats) => void): MaskRefiner {
  const o = resolveOptions(opts);
  return (layer) => {
    if (o.skip === layer.kind) return layer.mask;
    const r = dsnot(layer, o);
    onLayer?.(r.stats);
    return r.mask;
  };
}

function resolveOptions(opts: DsnotOptions): Required<DsnotOptions> {
  const o = { maxCycles: 50, threshold: 0.1, powVar: 1, sameSign: false, skip: 'mlp' as const, ...opts };
  if (!Number.isInteger(o.maxCycles) || o.maxCycles < 0) throw new CrepeError(`DSnoT max cycles must be a whole number >= 0, got ${o.maxCycles}`);
  if (!(o.threshold >= 0)) throw new CrepeError(`DSnoT threshold must be >= 0, got ${o.threshold}`);
  if (!Number.isFinite(o.powVar)) throw new CrepeError(`DSnoT variance power must be finite, got ${o.powVar}`);
  return o;
}

/** Expected output error of each row under `mask`: sum over pruned j of W_ij * mu_j. */
export function expectedRowErrors(layer: Pick<RefineInput, 'weight' | 'shape' | 'stats'>, mask: Uint8Array): Float64Array {
  const [rows, cols] = layer.shape;
  const mu = windowSums(layer.stats);
  const out = new Float64Array(rows);
  for (let r = 0; r < rows; r++) {
    let e = 0;
    for (let j = 0; j < cols; j++) if (!mask[r * cols + j]) e += layer.weight[r * cols + j] * mu[j];
    out[r] = e;
  }
  return out;
}

/** DSnoT on one layer: the refined keep mask and totals. */
export function dsnot(layer: RefineInput, opts: DsnotOptions = {}): { mask: Uint8Array; stats: DsnotRowStats } {
  const o = resolveOptions(opts);
  const [rows, cols] = layer.shape;
  const { weight, stats, structure } = layer;
  const mu = windowSums(stats);
  const { variance } = channelMoments(stats);
  const scaler = scalerRow(stats);
  const varPow = Float64Array.from(variance, (v) => Math.pow(v, o.powVar));
  const nm = structure.kind === 'nm' ? structure : null;
  const sameSign = nm ? true : o.sameSign;

  const mask = layer.mask.slice();
  const metric = new Float64Array(cols);
  const wanda = new Float64Array(cols);
  const regrowKey = new Float64Array(cols);
  const regrowList = new Int32Array(cols);
  const keptList = new Int32Array(cols);
  const negatives = new Int32Array(cols);
  const positives = new Int32Array(cols);
  const removable = new Uint8Array(cols); // N:M: initially kept and not yet pruned by a swap
  const totals: DsnotRowStats = { swaps: 0, errorBefore: 0, errorAfter: 0 };

  for (let r = 0; r < rows; r++) {
    const base = r * cols;
    let e = 0;
    let nRegrow = 0;
    for (let j = 0; j < cols; j++) {
      const w = weight[base + j];
      metric[j] = w * mu[j];
      wanda[j] = Math.abs(w) * Math.sqrt(scaler[j]);
      if (!mask[base + j]) {
        e += metric[j];
        const key = metric[j] / varPow[j];
        regrowKey[j] = key !== key ? Infinity : key; // 0/0 sorts last, as NaN does in torch.sort
        regrowList[nRegrow++] = j;
      }
    }
    totals.errorBefore += Math.abs(e);
    const initialSign = Math.sign(e);
    const regrow = sortedBy(regrowList.subarray(0, nRegrow), regrowKey);
    let lo = 0;
    let hi = nRegrow - 1;

    let nNeg = 0;
    let nPos = 0;
    if (!nm) {
      let nKept = 0;
      for (let j = 0; j < cols; j++) if (mask[base + j]) keptList[nKept++] = j;
      for (const j of sortedBy(keptList.subarray(0, nKept), wanda)) {
        if (metric[j] < 0) negatives[nNeg++] = j;
        else if (metric[j] > 0) positives[nPos++] = j;
      }
    } else for (let j = 0; j < cols; j++) removable[j] = mask[base + j];
    let negAt = 0;
    let posAt = 0;

    for (let cycle = 0; cycle < o.maxCycles && Math.abs(e) > o.threshold && lo <= hi; cycle++) {
      const grow = e > 0 ? regrow[hi] : regrow[lo];
      let cut: number;
      if (nm) {
        cut = lowestRemovableInGroup(grow - (grow % nm.m), nm.m, removable, wanda);
        if (cut < 0) break;
      } else if (e < 0) {
        if (posAt >= nPos) break;
        cut = positives[posAt];
      } else {
        if (negAt >= nNeg) break;
        cut = negatives[negAt];
      }
      const after = e + metric[cut] - metric[grow];
      if (sameSign && Math.sign(after) !== initialSign) break;
      if (e > 0) hi--;
      else lo++;
      if (nm) removable[cut] = 0;
      else if (e < 0) posAt++;
      else negAt++;
      mask[base + cut] = 0;
      mask[base + grow] = 1;
      e = after;
      totals.swaps++;
    }
    totals.errorAfter += Math.abs(e);
  }
  return { mask, stats: totals };
}

/** mu_j: sum of x_j over the calibration tokens divided by the number of windows. */
function windowSums(stats: RefineInput['stats']): Float64Array {
  const n = Math.max(1, stats.samples);
  return Float64Array.from(stats.sum, (s) => s / n);
}

/** The indices in ascending key order, ties by index (a stable sort of ascending indices). */
function sortedBy(indices: Int32Array, key: Float64Array): Int32Array {
  return indices.slice().sort((a, b) => key[a] - key[b] || a - b);
}

/** Index of the lowest Wanda score among the removable entries of group [start, start + m), or -1. */
function lowestRemovableInGroup(start: number, m: number, removable: Uint8Array, wanda: Float64Array): number {
  let best = -1;
  for (let j = start; j < start + m; j++) {
    if (removable[j] && (best < 0 || wanda[j] < wanda[best])) best = j;
  }
  return best;
}
