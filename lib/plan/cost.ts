/**
 * The cost model: what pruning and evaluating the full model at the standard settings would take,
 * from a small run's measured per-block costs.
 *
 * A block's time at small settings is NOT proportional to its FLOPs: reading and decoding the
 * weights, transposing and uploading them (and XNNPACK packing them on first use), scoring and
 * selection are paid once per block whatever the number of tokens. Only the forward passes grow
 * with the tokens. So the model keeps the two apart:
 *  - the window cost w(T): seconds for one window of T tokens through one block, fitted as
 *    a + b T + c T^2 (c: attention's T x T scores) to forward passes timed at several T on a
 *    block of the target shape (fitForwardCost);
 *  - a stage's fixed per-block cost: its measured seconds minus its forwards' share,
 *    (window forwards) x w(T);
 * and extrapolates only the forwards: fixed + (window forwards at the target) x w(T_target).
 * The head is the same with h(T) = a + b T per window and a fixed part (reading and uploading
 * the classifier). GPU times are FLOPs / a stated sustained throughput (a lower bound).
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

/** A timed forward: one window of `tokens` tokens took `seconds`. */
export interface TimedWindow {
  tokens: number;
  seconds: number;
}

/** Seconds of one window as a polynomial in its tokens: perWindow + perToken T + perTokenSq T^2. */
export interface WindowCost {
  perWindow: number;
  perToken: number;
  perTokenSq: number;
  /** The timings it was fitted to. */
  points: TimedWindow[];
}

/**
 * Least-squares polynomial of `degree` through (x, y) (normal equations in float64, x scaled to
 * [0, 1] for conditioning); coefficients lowest power first.
 */
export function polyFit(xs: readonly number[], ys: readonly number[], degree: number): number[] {
  const n = degree + 1;
  if (xs.length < n) throw new Error(`a degree-${degree} fit needs at least ${n} points, got ${xs.length}`);
  const scale = Math.max(...xs.map(Math.abs)) || 1;
  const a = Array.from({ length: n }, () => new Float64Array(n + 1));
  xs.forEach((x0, k) => {
    const x = x0 / scale;
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) a[i][j] += x ** (i + j);
      a[i][n] += x ** i * ys[k];
    }
  });
  // Gaussian elimination with partial pivoting
  for (let c = 0; c < n; c++) {
    let p = c;
    for (let r = c + 1; r < n; r++) if (Math.abs(a[r][c]) > Math.abs(a[p][c])) p = r;
    [a[c], a[p]] = [a[p], a[c]];
    for (let r = c + 1; r < n; r++) {
      const f = a[r][c] / a[c][c];
      for (let j = c; j <= n; j++) a[r][j] -= f * a[c][j];
    }
  }
  const coef = new Array<number>(n).fill(0);
  for (let r = n - 1; r >= 0; r--) {
    let s = a[r][n];
    for (let j = r + 1; j < n; j++) s -= a[r][j] * coef[j];
    coef[r] = s / a[r][r];
  }
  return coef.map((c, i) => c / scale ** i);
}

/**
 * Fit w(T) = a + b T + c T^2 to timed windows (at least three lengths). Timings are noisy: a
 * negative T^2 or constant term is not physical, so that term is dropped and the rest refitted.
 */
export function fitWindowCost(points: readonly TimedWindow[], withSquare = true): WindowCost {
  const xs = points.map((p) => p.tokens);
  const ys = points.map((p) => p.seconds);
  if (withSquare) {
    const [a, b, c] = polyFit(xs, ys, 2);
    if (c >= 0 && a >= 0 && b >= 0) return { perWindow: a, perToken: b, perTokenSq: c, points: [...points] };
  }
  const [a, b] = polyFit(xs, ys, 1);
  if (a >= 0) return { perWindow: a, perToken: b, perTokenSq: 0, points: [...points] };
  // through the origin
  const b0 = xs.reduce((s, x, k) => s + x * ys[k], 0) / xs.reduce((s, x) => s + x * x, 0);
  return { perWindow: 0, perToken: b0, perTokenSq: 0, points: [...points] };
}

export function windowSeconds(w: WindowCost, tokens: number): number {
  return w.perWindow + w.perToken * tokens + w.perTokenSq * tokens * tokens;
}

/** Seconds per decoder block measured on one run, with the settings they were measured at. */
export interface MeasuredBlockCosts {
  /** Reading (and decoding) one block from the checkpoint. */
  readSeconds: number;
  /** Calibration: the dense statistics pass and the pruned propagation, uploads included. */
  calibrationSeconds: number;
  /** Scoring + mask selection of the block's linears. */
  scoringSeconds: number;
  /** One evaluation pass through the block (reading and upload included), the head apart. */
  evalSeconds: number;
  /** The evaluation head (classifier read + upload, final norm, log-softmax) of one pass, once per model. */
  evalHeadSeconds: number;
  nsamples: number;
  calibSeqlen: number;
  /** Forward passes per calibration window and block (2 with --propagate pruned: statistics + pruned outputs). */
  calibForwards: number;
  /** Window forwards per block in calibration, averaged over blocks (the last block propagates nothing). */
  calibWindowForwards: number;
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
  /** Fixed per-block parts (not extrapolated): measured stage seconds minus their forwards. */
  fixed: { read: number; calibration: number; scoring: number; eval: number; head: number };
  /** One window through one block at the target lengths. */
  windowSeconds: { calibration: number; eval: number };
  calibrationSecondsPerBlock: number;
  scoringSecondsPerBlock: number;
  evalSecondsPerBlock: number;
  evalHeadSeconds: number;
  /** Prune (read + calibration + scoring) of every block. */
  pruneSeconds: number;
  /** One full evaluation. */
  evalSeconds: number;
  totalSeconds: number;
  flops: { calibration: number; eval: number };
}

/**
 * Extrapolate measured per-block costs to `target` on the machine they were measured on, given
 * the block's window cost w(T) and the head's per-window cost h(T) (both measured there too).
 */
export function projectCosts(m: MeasuredBlockCosts, block: WindowCost, head: WindowCost, target: TargetSettings): CostProjection {
  const cfg = target.config;
  const L = cfg.nLayers;
  const fixed = {
    read: m.readSeconds,
    calibration: Math.max(0, m.calibrationSeconds - m.calibWindowForwards * windowSeconds(block, m.calibSeqlen)),
    scoring: m.scoringSeconds,
    eval: Math.max(0, m.evalSeconds - m.evalWindows * windowSeconds(block, m.evalSeqlen)),
    head: Math.max(0, m.evalHeadSeconds - m.evalWindows * windowSeconds(head, m.evalSeqlen)),
  };
  const calWindow = windowSeconds(block, target.calibSeqlen);
  const evalWindow = windowSeconds(block, target.evalSeqlen);
  // the full model's calibration forwards per block, averaged like the measured ones
  const targetForwards = target.nsamples * (m.calibForwards > 1 ? m.calibForwards - 1 / L : m.calibForwards);
  const calibrationSecondsPerBlock = fixed.calibration + targetForwards * calWindow;
  const evalSecondsPerBlock = fixed.eval + target.evalWindows * evalWindow;
  const evalHeadSeconds = fixed.head + target.evalWindows * windowSeconds(head, target.evalSeqlen);
  const pruneSeconds = L * (fixed.read + calibrationSecondsPerBlock + fixed.scoring);
  const evalSeconds = L * evalSecondsPerBlock + evalHeadSeconds;
  return {
    fixed,
    windowSeconds: { calibration: calWindow, eval: evalWindow },
    calibrationSecondsPerBlock,
    scoringSecondsPerBlock: fixed.scoring,
    evalSecondsPerBlock,
    evalHeadSeconds,
    pruneSeconds,
    evalSeconds,
    totalSeconds: pruneSeconds + evalSeconds,
    flops: {
      calibration: L * (targetForwards / target.nsamples) * blockForwardFlops(cfg, target.nsamples, target.calibSeqlen),
      eval: L * blockForwardFlops(cfg, target.evalWindows, target.evalSeqlen) + headFlops(cfg, target.evalWindows, target.evalSeqlen),
    },
  };
}

/** Seconds of `flops` at a sustained throughput (FLOP/s). */
export function gpuSeconds(flops: number, flopsPerSecond: number): number {
  return flops / flopsPerSecond;
}
