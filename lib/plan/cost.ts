/**
 * The cost model: per-block costs measured on a (small) run, extrapolated to a full model at
 * standard settings. Compute in a decoder block's forward pass is counted in FLOPs (linears
 * 2 x tokens x parameters, attention 4 x T^2 x heads x headDim per window for QK^T and AV), so a
 * time measured at one (windows, seqlen) scales to another by the FLOP ratio on the same
 * machine; scoring + selection depends on the weights only and does not scale. GPU times are the
 * FLOPs divided by a stated sustained throughput (a lower bound: no memory traffic, no kernel
 * launch costs). Used by the scale bench and by the search cost projection.
 */
import { LlamaConfig, linearNames, linearShape } from '../model/types';

/** FLOPs of one decoder block's forward pass over `windows` windows of `seqlen` tokens. */
export function blockForwardFlops(cfg: LlamaConfig, windows: number, seqlen: number): number {
  let params = 0;
  for (const l of linearNames(cfg)) {
    const [o, i] = linearShape(cfg, l);
    params += o * i;
  }
  const linears = 2 * seqlen * params;
  const attention = 4 * seqlen * seqlen * cfg.nHeads * cfg.headDim;
  return windows * (linears + attention);
}

/** FLOPs of the classifier head (final norm ignored) over `windows` windows. */
export function headFlops(cfg: LlamaConfig, windows: number, seqlen: number): number {
  return windows * 2 * seqlen * cfg.dim * cfg.vocabSize;
}

/** Seconds per decoder block measured on one run, with the settings they were measured at. */
export interface MeasuredBlockCosts {
  /** Calibration forwards (dense statistics pass + pruned propagation) per block. */
  calibrationSeconds: number;
  /** Scoring + mask selection of the block's seven linears. */
  scoringSeconds: number;
  /** Evaluation forward per block (the head apart). */
  evalSeconds: number;
  /** Evaluation head (classifier + log-softmax) for all windows, once per model. */
  evalHeadSeconds: number;
  nsamples: number;
  calibSeqlen: number;
  /** Forward passes per calibration window and block (2 with --propagate pruned: statistics + pruned outputs). */
  calibForwards: number;
  evalWindows: number;
  evalSeqlen: number;
}

/** The standard settings of the pruning papers: 128 x 2048 calibration, full WikiText-2 at 2048. */
export interface TargetSettings {
  config: LlamaConfig;
  nsamples: number;
  calibSeqlen: number;
  evalWindows: number;
  evalSeqlen: number;
}

export interface CostProjection {
  calibrationSecondsPerBlock: number;
  scoringSecondsPerBlock: number;
  evalSecondsPerBlock: number;
  evalHeadSeconds: number;
  /** Prune (calibration + scoring) of every block. */
  pruneSeconds: number;
  /** One full evaluation. */
  evalSeconds: number;
  totalSeconds: number;
  flops: { calibration: number; eval: number };
}

/** Extrapolate measured per-block costs to `target` on the machine they were measured on. */
export function projectCosts(m: MeasuredBlockCosts, target: TargetSettings): CostProjection {
  const cfg = target.config;
  const calibScale =
    blockForwardFlops(cfg, target.nsamples, target.calibSeqlen) / blockForwardFlops(cfg, m.nsamples, m.calibSeqlen);
  const evalScale = blockForwardFlops(cfg, target.evalWindows, target.evalSeqlen) / blockForwardFlops(cfg, m.evalWindows, m.evalSeqlen);
  const headScale = headFlops(cfg, target.evalWindows, target.evalSeqlen) / headFlops(cfg, m.evalWindows, m.evalSeqlen);
  const calibrationSecondsPerBlock = m.calibrationSeconds * calibScale;
  const evalSecondsPerBlock = m.evalSeconds * evalScale;
  const evalHeadSeconds = m.evalHeadSeconds * headScale;
  const pruneSeconds = cfg.nLayers * (calibrationSecondsPerBlock + m.scoringSeconds);
  const evalSeconds = cfg.nLayers * evalSecondsPerBlock + evalHeadSeconds;
  return {
    calibrationSecondsPerBlock,
    scoringSecondsPerBlock: m.scoringSeconds,
    evalSecondsPerBlock,
    evalHeadSeconds,
    pruneSeconds,
    evalSeconds,
    totalSeconds: pruneSeconds + evalSeconds,
    flops: {
      calibration: cfg.nLayers * m.calibForwards * blockForwardFlops(cfg, target.nsamples, target.calibSeqlen),
      eval: cfg.nLayers * blockForwardFlops(cfg, target.evalWindows, target.evalSeqlen) + headFlops(cfg, target.evalWindows, target.evalSeqlen),
    },
  };
}

/** Seconds of `flops` at a sustained throughput (FLOP/s). */
export function gpuSeconds(flops: number, flopsPerSecond: number): number {
  return flops / flopsPerSecond;
}
