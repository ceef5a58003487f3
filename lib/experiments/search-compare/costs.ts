/**
 * Cost accounting of the search comparison: per model, structure and PHO variant, hill climbing
 * against PHO over the search seeds (full PPL mean and spread, loop wall and CPU ratios), hill
 * climbing's convergence curve from its evaluation logs, transfer between models, and the
 * projection of both searches' wall time to a large model from measured per-weight costs.
 */
import * as fs from 'fs';
import * as path from 'path';
import { z } from 'zod';
import { CrepeError } from '../../errors';
import { parseCsv } from '../../util/csv';
import { HILLCLIMB_RUN, SearchCompareConfig } from '../search-config';
import { RunRow } from './rows';

/** The acceptance test: PHO within 1% of hill climbing at >= 20x less search-loop time. */
export const WITHIN_PCT = 1;
export const SPEEDUP = 20;

export interface Spread {
  mean: number;
  /** Sample standard deviation (n - 1); 0 for one value. */
  std: number;
  n: number;
}

export function spread(values: readonly number[]): Spread {
  const n = values.length;
  if (n === 0) return { mean: NaN, std: NaN, n: 0 };
  const mean = values.reduce((a, v) => a + v, 0) / n;
  const std = n > 1 ? Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (n - 1)) : 0;
  return { mean, std, n };
}

export interface CostRow {
  model: string;
  structure: string;
  structureLabel: string;
  /** The PHO variant's run name, and its proxies. */
  pho: string;
  proxies: string;
  hillclimbPpl: Spread;
  phoPpl: Spread;
  /** mean PHO full PPL / mean hill-climbing full PPL - 1, in percent. */
  phoVsHillclimbPct: number;
  /** Ratios of the mean loop seconds over the seeds. */
  loopWallRatio: number;
  loopCpuRatio: number;
  /** (calibration + mean hill-climbing loop) / (calibration + mean PHO loop), wall seconds. */
  withCalibrationRatio: number;
  hillclimbLoopSeconds: number;
  phoLoopSeconds: number;
  hillclimbEvals: Spread;
  hillclimbWindowEvals: Spread;
  phoProxyEvals: Spread;
  phoPplEvals: Spread;
  phoWindowEvals: Spread;
  /** PHO's sequential-pipeline prunes in the loop (final measurements) and the calibration windows of each (0: none). */
  phoSequentialPrunes: Spread;
  phoSequentialWindows: number;
  within1Pct: boolean;
  loopAtLeast20x: boolean;
}

const mean = (v: readonly number[]): number => spread(v).mean;

export function searchRows(rows: readonly RunRow[], model: string, structure: string, run: string): RunRow[] {
  return rows.filter((r) => r.kind === 'search' && r.model === model && r.structure === structure && r.run === run).sort((a, b) => a.seed! - b.seed!);
}

export function costRows(config: SearchCompareConfig, rows: readonly RunRow[]): CostRow[] {
  const out: CostRow[] = [];
  for (const model of config.models) {
    for (const entry of config.structures) {
      for (const variant of config.pho) {
        const pho = searchRows(rows, model, entry.name, variant.name);
        // against hill climbing on the same seeds
        const hc = searchRows(rows, model, entry.name, HILLCLIMB_RUN).filter((r) => pho.some((p) => p.seed === r.seed));
        if (pho.length === 0 || hc.length === 0) continue;
        const hcPpl = spread(hc.map((r) => r.fullPpl));
        const phoPpl = spread(pho.map((r) => r.fullPpl));
        const hcLoop = mean(hc.map((r) => r.loopWallSeconds!));
        const phoLoop = mean(pho.map((r) => r.loopWallSeconds!));
        const loopWallRatio = hcLoop / phoLoop;
        const pct = (phoPpl.mean / hcPpl.mean - 1) * 100;
        out.push({
          model,
          structure: entry.name,
          structureLabel: entry.label,
          pho: variant.name,
          proxies: pho[0].proxies ?? '',
          hillclimbPpl: hcPpl,
          phoPpl,
          phoVsHillclimbPct: pct,
          loopWallRatio,
          loopCpuRatio: mean(hc.map((r) => r.loopCpuSeconds!)) / mean(pho.map((r) => r.loopCpuSeconds!)),
          withCalibrationRatio: (mean(hc.map((r) => r.calibrationSeconds!)) + hcLoop) / (mean(pho.map((r) => r.calibrationSeconds!)) + phoLoop),
          hillclimbLoopSeconds: hcLoop,
          phoLoopSeconds: phoLoop,
          hillclimbEvals: spread(hc.map((r) => r.pplEvals!)),
          hillclimbWindowEvals: spread(hc.map((r) => r.windowEvals ?? r.pplEvals! * config.hillclimb.searchWindows)),
          phoProxyEvals: spread(pho.map((r) => r.proxyEvals!)),
          phoPplEvals: spread(pho.map((r) => r.pplEvals!)),
          phoWindowEvals: spread(pho.map((r) => r.windowEvals ?? 0)),
          phoSequentialPrunes: spread(pho.map((r) => r.sequentialPrunes ?? 0)),
          phoSequentialWindows: Math.max(0, ...pho.map((r) => r.sequentialCalibrationWindows ?? 0)),
          within1Pct: pct <= WITHIN_PCT,
          loopAtLeast20x: loopWallRatio >= SPEEDUP,
        });
      }
    }
  }
  return out;
}

export interface ConvergenceCurve {
  model: string;
  structure: string;
  structureLabel: string;
  /** Per seed: evaluations made, and why the climb stopped. */
  seeds: { seed: number; evals: number; stopReason: string }[];
  /** Mean over seeds of the best search-subset PPL after k evaluations (a finished climb keeps its best). */
  bestAfter: { evals: number; ppl: number }[];
}

/** Evaluation counts at which the curve is tabulated (plus each climb's last). */
export const CURVE_POINTS = [1, 5, 10, 15, 20, 30, 40, 60, 80, 100, 150, 200];

/** Hill climbing's best-so-far curve from its evaluation logs in the output folder. */
export function convergenceCurves(config: SearchCompareConfig, rows: readonly RunRow[], out: string): ConvergenceCurve[] {
  const curves: ConvergenceCurve[] = [];
  for (const model of config.models) {
    for (const entry of config.structures) {
      const hc = searchRows(rows, model, entry.name, HILLCLIMB_RUN).filter((r) => r.evalLog && fs.existsSync(path.join(out, r.evalLog)));
      if (hc.length === 0) continue;
      const bests = hc.map((r) => {
        const file = path.join(out, r.evalLog!);
        // the climb's own evaluations (a final choice logs its re-measurements under another measure)
        const climb = `ppl@${config.hillclimb.searchWindows}`;
        return parseCsv(fs.readFileSync(file, 'utf8'), file).rows.filter((x) => x.measure === climb).map((x) => Number(x.best_objective));
      });
      const longest = Math.max(...bests.map((b) => b.length));
      const points = [...new Set([...CURVE_POINTS.filter((p) => p < longest), longest])];
      curves.push({
        model,
        structure: entry.name,
        structureLabel: entry.label,
        seeds: hc.map((r, i) => ({ seed: r.seed!, evals: bests[i].length, stopReason: r.stopReason ?? '' })),
        bestAfter: points.map((k) => ({ evals: k, ppl: mean(bests.map((b) => b[Math.min(k, b.length) - 1])) })),
      });
    }
  }
  return curves;
}

export interface TransferRow {
  structure: string;
  structureLabel: string;
  run: string;
  fromModel: string;
  toModel: string;
  /** Full PPL of the source's configurations (one per seed) on the target model. */
  transferred: Spread;
  /** The target model's own search of the same run (same seeds). */
  own: Spread;
  /** The target model's own hill climbing. */
  ownHillclimb: Spread;
}

export function transferRows(config: SearchCompareConfig, rows: readonly RunRow[]): TransferRow[] {
  const out: TransferRow[] = [];
  for (const entry of config.structures.filter((s) => config.transfer.includes(s.name))) {
    for (const to of config.models) {
      for (const from of config.models.filter((m) => m !== to)) {
        for (const run of [HILLCLIMB_RUN, config.pho[0].name]) {
          const t = rows.filter((r) => r.kind === 'transfer' && r.model === to && r.fromModel === from && r.structure === entry.name && r.run === run);
          if (t.length === 0) continue;
          out.push({
            structure: entry.name,
            structureLabel: entry.label,
            run,
            fromModel: from,
            toModel: to,
            transferred: spread(t.map((r) => r.fullPpl)),
            own: spread(searchRows(rows, to, entry.name, run).map((r) => r.fullPpl)),
            ownHillclimb: spread(searchRows(rows, to, entry.name, HILLCLIMB_RUN).map((r) => r.fullPpl)),
          });
        }
      }
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// projection to a large model

const costFileSchema = z
  .object({
    description: z.string(),
    command: z.string(),
    model: z.string(),
    /** Weights in the model's pruned linears, and its layers / context. */
    linearWeights: z.number().positive(),
    blocks: z.number().int().positive(),
    seqlen: z.number().int().positive(),
    /** Seconds per weight for one configuration's scoring + selection + proxy (measured). */
    proxySecondsPerWeight: z.number().positive(),
    /** Seconds per weight for one configuration's scoring + selection + masking (a PPL evaluation's pruning). */
    pruneSecondsPerWeight: z.number().positive(),
    /** Seconds per weight per token of the forward pass (measured matMul throughput on the block's shapes). */
    forwardSecondsPerWeightToken: z.number().positive(),
    backend: z.string(),
    load: z.string(),
  })
  .strict();

export type ProjectionCosts = z.infer<typeof costFileSchema>;

export function readProjectionCosts(file: string): ProjectionCosts {
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    throw new CrepeError(`cannot read projection costs ${file}: ${(e as Error).message}`);
  }
  const parsed = costFileSchema.safeParse(json);
  if (!parsed.success) throw new CrepeError(`${file}: ${parsed.error.issues[0].path.join('.')}: ${parsed.error.issues[0].message}`);
  return parsed.data;
}

export interface Projection {
  costs: ProjectionCosts;
  /** Whether the calibration includes a sequential pass for 'pruned' statistics (a final measurement uses them). */
  prunedStatistics: boolean;
  /** Per model and structure of our runs: both searches' evaluation counts, projected to the large model. */
  rows: {
    model: string;
    structureLabel: string;
    pho: string;
    hillclimbSeconds: number;
    phoSeconds: number;
    ratio: number;
    /** The one-time calibration both searches share (statistics and caches; 'pruned' statistics when a final measurement needs them). */
    calibrationSeconds: number;
    /** (calibration + hill climbing) / (calibration + PHO). */
    withCalibrationRatio: number;
    hillclimbEvals: number;
    searchWindows: number;
    phoProxyEvals: number;
    phoPplEvals: number;
    phoWindowEvals: number;
    phoSequentialPrunes: number;
    proxyRows: number;
  }[];
}

/**
 * Wall time at the large model for the evaluation counts our runs made: a PPL evaluation = one
 * pruning of every linear + a forward over windows x seqlen tokens; a proxy evaluation = one
 * scoring + selection + proxy pass over every linear; a sequential-pipeline prune (a final
 * measurement) = one pruning + its calibration forward, two passes over every block but the last
 * (statistics from the block, then the pruned block's outputs); the calibration = one dense
 * forward over the calibration windows and one scoring pass (the evaluator's caches), plus one
 * sequential prune when a final measurement uses 'pruned' statistics. Final-measurement windows
 * are in the window counts.
 */
export function projectCosts(config: SearchCompareConfig, costs: CostRow[], c: ProjectionCosts): Projection {
  const pplEval = (windows: number): number => c.linearWeights * (c.pruneSecondsPerWeight + c.forwardSecondsPerWeightToken * windows * c.seqlen);
  /** The calibration forward of a sequential-pipeline prune (its pruning is charged with its PPL evaluation). */
  const calibrationForward = (calibrationWindows: number): number => c.linearWeights * c.forwardSecondsPerWeightToken * calibrationWindows * c.seqlen * ((2 * c.blocks - 1) / c.blocks);
  const nsamples = config.calibration.nsamples;
  const prunedStats = config.hillclimb.final?.measure === 'pruned' || config.pho.some((v) => v.verify?.final === 'pruned');
  const calibrationSeconds = c.linearWeights * (c.forwardSecondsPerWeightToken * nsamples * c.seqlen + c.pruneSecondsPerWeight) + (prunedStats ? c.linearWeights * c.pruneSecondsPerWeight + calibrationForward(nsamples) : 0);
  // hill climbing's final choice (if any): its finalists are among its PPL evaluations, measured on the final windows
  const hcFinal = config.hillclimb.final;
  const hcFinalists = hcFinal?.candidates ?? 0;
  const hcFinalEach = hcFinal ? pplEval(hcFinal.windows) + (hcFinal.measure === 'sequential' ? calibrationForward(hcFinal.calibrationWindows ?? nsamples) : 0) : 0;
  const rows = costs.map((k) => {
    const variant = config.pho.find((v) => v.name === k.pho)!;
    const finalists = Math.min(hcFinalists, k.hillclimbEvals.mean);
    const hillclimbSeconds = (k.hillclimbEvals.mean - finalists) * pplEval(config.hillclimb.searchWindows) + finalists * hcFinalEach;
    // A row-sampled proxy still scores whole layers (only selection and the proxy see the sample):
    // charged as a whole-layer proxy evaluation, an upper bound.
    const phoSeconds =
      k.phoProxyEvals.mean * c.linearWeights * c.proxySecondsPerWeight +
      k.phoPplEvals.mean * c.linearWeights * c.pruneSecondsPerWeight +
      k.phoWindowEvals.mean * c.linearWeights * c.forwardSecondsPerWeightToken * c.seqlen +
      k.phoSequentialPrunes.mean * calibrationForward(k.phoSequentialWindows);
    return {
      model: k.model,
      structureLabel: k.structureLabel,
      pho: k.pho,
      hillclimbSeconds,
      phoSeconds,
      ratio: hillclimbSeconds / phoSeconds,
      calibrationSeconds,
      withCalibrationRatio: (calibrationSeconds + hillclimbSeconds) / (calibrationSeconds + phoSeconds),
      hillclimbEvals: k.hillclimbEvals.mean,
      searchWindows: config.hillclimb.searchWindows,
      phoProxyEvals: k.phoProxyEvals.mean,
      phoPplEvals: k.phoPplEvals.mean,
      phoWindowEvals: k.phoWindowEvals.mean,
      phoSequentialPrunes: k.phoSequentialPrunes.mean,
      proxyRows: variant.proxyRows,
    };
  });
  return { costs: c, prunedStatistics: prunedStats, rows };
}
