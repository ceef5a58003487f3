/**
 * Successive halving (Jamieson and Talwalkar 2016; Li et al.'s Hyperband uses it as its inner
 * loop): measure every candidate on a small budget, keep the best 1/eta, measure the survivors on
 * a larger budget, and so on. Here a budget is a number of evaluation windows, and a rung extends
 * a survivor's measurement with the windows it has not seen yet, so every window is evaluated at
 * most once per candidate. Candidates are compared on the same windows (the sums of their
 * per-window losses), so the ranking at a rung is the ranking by perplexity on those windows.
 */

export interface HalvingOptions {
  /** Cumulative windows per rung, increasing: [2, 8] = 2 windows for all, then up to 8 for the survivors. */
  windows: readonly number[];
  /** Keep ceil(n / eta) candidates after each rung but the last (eta >= 2). */
  eta: number;
  /**
   * The last rung measures its survivors afresh on all of its windows (the earlier rungs' sums
   * are dropped): for a last rung that measures something else than the earlier ones.
   */
  remeasureLast?: boolean;
}

export interface HalvingEntry<C> {
  candidate: C;
  /** Position in the input list. */
  index: number;
  /** Windows measured so far. */
  windows: number;
  /** Sum of the per-window losses over those windows. */
  lossSum: number;
  /** The last rung the candidate was measured at (0-based). */
  rung: number;
}

export interface HalvingResult<C> {
  /** Lowest loss sum at the last rung (ties: the earlier candidate). */
  best: HalvingEntry<C>;
  /** Every candidate with what was measured for it. */
  entries: HalvingEntry<C>[];
  /** Window evaluations made in all (the cost). */
  windowEvals: number;
}

/** Validate a rung list: positive whole numbers, strictly increasing. */
export function checkRungs(windows: readonly number[]): string | null {
  if (windows.length === 0) return 'list at least one rung';
  for (let i = 0; i < windows.length; i++) {
    if (!(Number.isInteger(windows[i]) && windows[i] > 0)) return `rung ${i} must be a positive whole number of windows, got ${windows[i]}`;
    if (i > 0 && windows[i] <= windows[i - 1]) return `rungs must increase, got ${windows.join(', ')}`;
  }
  return null;
}

/**
 * Run successive halving over `candidates`. `measure(c, index, from, to, rung)` returns the
 * per-window losses of windows [from, to) for candidate `c` at rung `rung` (NaN counts as
 * +Infinity, i.e. it loses).
 */
export function successiveHalving<C>(
  candidates: readonly C[],
  opts: HalvingOptions,
  measure: (c: C, index: number, from: number, to: number, rung: number) => number[],
): HalvingResult<C> {
  const problem = checkRungs(opts.windows);
  if (problem) throw new Error(`successive halving: ${problem}`);
  if (!(opts.eta >= 2)) throw new Error(`successive halving: eta must be at least 2, got ${opts.eta}`);
  if (candidates.length === 0) throw new Error('successive halving: no candidates');
  const entries: HalvingEntry<C>[] = candidates.map((candidate, index) => ({ candidate, index, windows: 0, lossSum: 0, rung: -1 }));
  let alive = entries.slice();
  let windowEvals = 0;
  const key = (e: HalvingEntry<C>): number => (Number.isNaN(e.lossSum) ? Infinity : e.lossSum);
  for (let rung = 0; rung < opts.windows.length; rung++) {
    const to = opts.windows[rung];
    const afresh = !!opts.remeasureLast && rung > 0 && rung === opts.windows.length - 1;
    for (const e of alive) {
      if (afresh) {
        e.windows = 0;
        e.lossSum = 0;
      }
      const losses = measure(e.candidate, e.index, e.windows, to, rung);
      if (losses.length !== to - e.windows) throw new Error(`successive halving: measure returned ${losses.length} losses for windows [${e.windows}, ${to})`);
      windowEvals += losses.length;
      for (const l of losses) e.lossSum += l;
      e.windows = to;
      e.rung = rung;
    }
    // stable: equal sums keep the input order
    alive = alive.slice().sort((a, b) => key(a) - key(b) || a.index - b.index);
    if (rung < opts.windows.length - 1) alive = alive.slice(0, Math.max(1, Math.ceil(alive.length / opts.eta)));
    if (alive.length === 1) break;
  }
  return { best: alive[0], entries, windowEvals };
}
