/**
 * OWL, Outlier Weighed Layerwise sparsity (luuyin/OWL, lib/prune_all.py `prune_wanda_outlier`
 * and, for N:M, `prune_wanda_outlier_structure`), reimplemented from the reference's behaviour.
 *
 * Per decoder block b, from the DENSE model's calibration statistics (the reference measures the
 * ratios in a separate pass over the unpruned model):
 *   LOD_b = 100 * #{Wanda scores > M * mean} / #scores, over the |W| sqrt(scaler) scores of the
 *           block's seven linears concatenated (one mean per block).
 * Unstructured, with target sparsity S:
 *   r_b = (LOD_b - min LOD) / (max LOD - min LOD) * 2 lambda      (min-max to [0, 2 lambda])
 *   density_b = r_b - mean(r) + (1 - S),  sparsity_b = 1 - density_b
 * so outlier-rich blocks are pruned less and the plain mean of the block sparsities is S. All
 * LLaMA blocks have the same parameter count, so the parameter-weighted mean is S too; what a
 * run achieves differs from it only by each row's floor(cols * sparsity_b).
 * Like the reference, a block sparsity <= 0 becomes 0.01 (which moves the mean off S); one >= 1
 * is an error here (the reference would prune the whole block). Equal ratios (max = min, where
 * the reference divides by zero) give the uniform S.
 *
 * N:M (keep n of m): r_b = min-max to [0, lambda] (not 2 lambda), shift_b = round(r_b - mean(r))
 * with numpy's round-half-to-even, keep_b = n + shift_b clamped to [1, m - 1]. The reference
 * subtracts the shift from its "prune n", which is the same move. Its README runs this variant
 * with lambda 2 (and M 6): with lambda 0.08 every shift rounds to 0, i.e. uniform N:M. The mean
 * of keep_b is n only when the rounded shifts cancel; report the achieved sparsity.
 */
import { CrepeError } from '../../errors';
import { OpenedModel } from '../../model/resolve';
import { linearNames, linearShape } from '../../model/types';
import { CalibrationSpec, CalibrationStats, collectDenseStats } from '../pipeline';
import { Structure } from '../select';
import { scalerRow } from '../stats';

export interface OwlOptions {
  /** Outlier threshold multiple M (Hyper_m; default 5). */
  m?: number;
  /** lambda (Lamda): half-width of the unstructured sparsity range; the N:M shift range. */
  lambda?: number;
}

export interface OwlAllocation {
  /** LOD per block, in percent. */
  outlierRatios: number[];
  /** Target sparsity per block (unstructured), or 1 - keep_b / m (N:M). */
  blockSparsities: number[];
  structures: Structure[];
}

export const OWL_DEFAULTS = { m: 5, lambda: 0.08, lambdaNM: 2 } as const;

/** Percentage of `scores` (all arrays together) above `m` times their mean. */
export function outlierRatio(scores: readonly Float32Array[], m: number): number {
  let sum = 0;
  let count = 0;
  for (const s of scores) {
    for (let k = 0; k < s.length; k++) sum += s[k];
    count += s.length;
  }
  if (count === 0) return 0;
  const cut = (sum / count) * m;
  let above = 0;
  for (const s of scores) for (let k = 0; k < s.length; k++) above += s[k] > cut ? 1 : 0;
  return (100 * above) / count;
}

/** LOD of every block: Wanda scores of its seven linears against the given (dense) statistics. */
export function blockOutlierRatios(model: OpenedModel, stats: CalibrationStats, m: number): number[] {
  const cfg = model.source.config;
  const ratios: number[] = [];
  for (let b = 0; b < cfg.nLayers; b++) {
    const block = model.source.readBlock(b);
    const scores = linearNames(cfg).map((name) => {
      const [rows, cols] = linearShape(cfg, name);
      const s = stats.blocks[b].get(name);
      if (!s) throw new Error(`owl: no statistics for block ${b} ${name}`);
      const norm = Float32Array.from(scalerRow(s), Math.sqrt);
      const w = block.linears[name];
      const out = new Float32Array(rows * cols);
      for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) out[r * cols + j] = Math.abs(w[r * cols + j]) * norm[j];
      return out;
    });
    ratios.push(outlierRatio(scores, m));
  }
  return ratios;
}

/** Min-max to [0, width]; all zeros when the ratios are all equal. */
function normalise(ratios: readonly number[], width: number): number[] {
  const lo = Math.min(...ratios);
  const hi = Math.max(...ratios);
  return ratios.map((r) => (hi > lo ? ((r - lo) / (hi - lo)) * width : 0));
}

function mean(v: readonly number[]): number {
  return v.reduce((a, b) => a + b, 0) / v.length;
}

/** Unstructured OWL: block sparsities from outlier ratios (mean S unless a block hits the 0.01 floor). */
export function owlSparsities(ratios: readonly number[], sparsity: number, lambda: number): number[] {
  checkSparsityAndLambda(sparsity, lambda);
  const r = normalise(ratios, 2 * lambda);
  const shift = mean(r);
  return r.map((ri, b) => {
    const s = 1 - (ri - shift + (1 - sparsity));
    if (s >= 1) throw new CrepeError(`OWL gives block ${b} sparsity ${s.toFixed(4)} >= 1: lower --owl-lambda or --sparsity`);
    return s <= 0 ? 0.01 : s;
  });
}

/** N:M OWL: kept n per block, n shifted by the rounded centred ratio, within [1, m - 1]. */
export function owlKeepCounts(ratios: readonly number[], n: number, m: number, lambda: number): number[] {
  const r = normalise(ratios, lambda);
  const shift = mean(r);
  return r.map((ri) => Math.min(m - 1, Math.max(1, n + roundHalfEven(ri - shift))));
}

/** numpy's np.round: halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d < 0.5) return f;
  if (d > 0.5) return f + 1;
  return f % 2 === 0 ? f : f + 1;
}

/** CrepeError unless M > 0 and lambda >= 0 (both finite). */
export function checkOwlOptions(m: number, lambda: number): void {
  if (!(m > 0) || !Number.isFinite(m)) throw new CrepeError(`--owl-m must be a positive number, got ${m}`);
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new CrepeError(`--owl-lambda must be a number >= 0, got ${lambda}`);
}

function checkSparsityAndLambda(sparsity: number, lambda: number): void {
  if (!(lambda >= 0) || !Number.isFinite(lambda)) throw new CrepeError(`--owl-lambda must be a number >= 0, got ${lambda}`);
  if (!(sparsity >= 0 && sparsity < 1)) throw new CrepeError(`sparsity must be in [0, 1), got ${sparsity}`);
}

/** OWL structures for PruneSpec.blockStructures, from dense statistics already collected. */
export function owlAllocationFromStats(model: OpenedModel, stats: CalibrationStats, structure: Structure, opts: OwlOptions = {}): OwlAllocation {
  const m = opts.m ?? OWL_DEFAULTS.m;
  const lambda = opts.lambda ?? (structure.kind === 'nm' ? OWL_DEFAULTS.lambdaNM : OWL_DEFAULTS.lambda);
  checkOwlOptions(m, lambda);
  if (structure.kind === 'unstructured') checkSparsityAndLambda(structure.sparsity, lambda);
  const outlierRatios = blockOutlierRatios(model, stats, m);
  if (structure.kind === 'unstructured') {
    const blockSparsities = owlSparsities(outlierRatios, structure.sparsity, lambda);
    return { outlierRatios, blockSparsities, structures: blockSparsities.map((s) => ({ ...structure, sparsity: s })) };
  }
  const keep = owlKeepCounts(outlierRatios, structure.n, structure.m, lambda);
  return {
    outlierRatios,
    blockSparsities: keep.map((n) => 1 - n / structure.m),
    structures: keep.map((n) => ({ kind: 'nm', n, m: structure.m })),
  };
}

/** OWL allocation: one dense calibration pass (collectDenseStats), then the structures. */
export function owlAllocation(model: OpenedModel, calibration: CalibrationSpec, structure: Structure, opts: OwlOptions = {}): OwlAllocation {
  return owlAllocationFromStats(model, collectDenseStats(model, calibration), structure, opts);
}
