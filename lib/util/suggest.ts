/**
 * "Did you mean" hints for misspelled names (commands, flags, models, methods, datasets, tasks,
 * config keys): the candidates closest to what was typed, by Damerau-Levenshtein distance.
 *
 * Hand-written rather than fastest-levenshtein or leven: those count a swap of two neighbouring
 * letters ('purne' for 'prune', the most common typo) as two edits, which would need a looser
 * threshold and then suggest unrelated names.
 */

/**
 * Damerau-Levenshtein distance (insertions, deletions, substitutions and transpositions of
 * adjacent characters, each costing 1; a transposed pair may be edited again), over code points.
 * This is the true edit distance with adjacent swaps (Lowrance and Wagner's algorithm), not the
 * "optimal string alignment" variant, so it satisfies the triangle inequality.
 */
export function editDistance(a: string, b: string): number {
  const s = [...a];
  const t = [...b];
  const n = s.length;
  const m = t.length;
  const far = n + m;
  // d[i + 1][j + 1] is the distance between s[0, i) and t[0, j); row and column 0 are sentinels.
  const d: number[][] = Array.from({ length: n + 2 }, () => new Array<number>(m + 2).fill(0));
  d[0][0] = far;
  for (let i = 0; i <= n; i++) [d[i + 1][0], d[i + 1][1]] = [far, i];
  for (let j = 0; j <= m; j++) [d[0][j + 1], d[1][j + 1]] = [far, j];
  /** The last row (1-based) of s where each character was seen. */
  const lastRow = new Map<string, number>();
  for (let i = 1; i <= n; i++) {
    let lastMatchCol = 0;
    for (let j = 1; j <= m; j++) {
      const k = lastRow.get(t[j - 1]) ?? 0;
      const l = lastMatchCol;
      const cost = s[i - 1] === t[j - 1] ? 0 : 1;
      if (cost === 0) lastMatchCol = j;
      d[i + 1][j + 1] = Math.min(
        d[i][j] + cost, // substitution (or match)
        d[i + 1][j] + 1, // insertion
        d[i][j + 1] + 1, // deletion
        d[k][l] + (i - k - 1) + 1 + (j - l - 1), // transposition of s[k-1] and s[i-1], with what lies between deleted/inserted
      );
    }
    lastRow.set(s[i - 1], i);
  }
  return d[n + 1][m + 1];
}

/**
 * The candidates closest to `input`, best first (ties in the candidates' order; empty when none
 * is close). Case is ignored, and a candidate equal to the input but for case wins outright. A
 * candidate is close when at most max(1, floor(length / 3)) edits away, or (for an input of 3 or
 * more characters) when it starts with the input.
 */
export function closestNames(input: string, candidates: Iterable<string>): string[] {
  const names = [...new Set(candidates)];
  const typed = input.toLowerCase();
  const sameButCase = names.filter((c) => c.toLowerCase() === typed);
  if (sameButCase.length) return sameButCase;
  const limit = Math.max(1, Math.floor([...input].length / 3));
  let best = Infinity;
  let closest: string[] = [];
  for (const c of names) {
    const d = editDistance(typed, c.toLowerCase());
    if (d < best) [best, closest] = [d, [c]];
    else if (d === best) closest.push(c);
  }
  if (best <= limit) return closest;
  return typed.length >= 3 ? names.filter((c) => c.toLowerCase().startsWith(typed)) : [];
}

/** "'a'", "'a' or 'b'", "'a', 'b' or 'c'" (with `quote` around each name). */
function alternatives(names: readonly string[], quote: (n: string) => string): string {
  const q = names.map(quote);
  return q.length <= 1 ? q.join('') : `${q.slice(0, -1).join(', ')} or ${q[q.length - 1]}`;
}

/**
 * "; did you mean 'x'?" for the closest candidates, or '' when none is close. `quote` formats each
 * name (default: in single quotes; flags are shown as --name).
 */
export function didYouMean(input: string, candidates: Iterable<string>, quote: (n: string) => string = (n) => `'${n}'`): string {
  const close = closestNames(input, candidates);
  return close.length ? `; did you mean ${alternatives(close.slice(0, 3), quote)}?` : '';
}

/**
 * The one-line refusal of an unknown name: "unknown method 'Wanda'; did you mean 'wanda'?", or,
 * when nothing is close, "unknown method 'x' (known: a, b, c)" (or `help` in place of the list).
 */
export function unknownName(kind: string, input: string, candidates: readonly string[], help?: string): string {
  const hint = didYouMean(input, candidates);
  return `unknown ${kind} '${input}'${hint || ` (${help ?? `known: ${candidates.join(', ')}`})`}`;
}
