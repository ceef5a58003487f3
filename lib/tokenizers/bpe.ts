/**
 * Score-ordered pair merging, shared by the llama2.c and sentencepiece BPE tokenizers.
 *
 * Semantics are those of llama2.c's run.c `encode()` (and sentencepiece's bpe_model.cc): while
 * some adjacent pair (a, b) has a merged token, replace the pair with the highest score,
 * leftmost first on ties. run.c rescans the whole sequence per merge (O(n^2)); here the tokens
 * sit in a doubly linked list and candidate pairs in a max-heap. Entries are never removed from
 * the heap: a popped entry whose pair is no longer adjacent with the same tokens is stale and
 * skipped (lazy invalidation). Node indices are the original positions and merging keeps the
 * left node, so list order equals index order and "leftmost" is "smaller left index".
 */

/** Merged id for the adjacent pair (a, b), or -1 when the pair does not merge. */
export type MergeFn = (a: number, b: number) => number;

export function mergePairs(initial: ArrayLike<number>, mergeOf: MergeFn, scoreOf: (id: number) => number): Int32Array {
  const n = initial.length;
  if (n < 2) return Int32Array.from(initial);

  const tok = Int32Array.from(initial);
  const prev = new Int32Array(n);
  const next = new Int32Array(n);
  const dead = new Uint8Array(n);
  for (let i = 0; i < n; i++) {
    prev[i] = i - 1;
    next[i] = i + 1 < n ? i + 1 : -1;
  }

  // Heap entries live in parallel arrays. At most n-1 initial pairs plus 2 per merge (n-1
  // merges at most), so 3n slots never overflow.
  const cap = 3 * n;
  const eScore = new Float64Array(cap);
  const eLeft = new Int32Array(cap);
  const eRight = new Int32Array(cap);
  const eLeftTok = new Int32Array(cap);
  const eRightTok = new Int32Array(cap);
  const eMerged = new Int32Array(cap);
  const heap = new Int32Array(cap); // entry indices, heap-ordered
  let entries = 0;
  let size = 0;

  // a outranks b: higher score, then smaller (leftmost) position.
  const above = (a: number, b: number): boolean =>
    eScore[a] > eScore[b] || (eScore[a] === eScore[b] && eLeft[a] < eLeft[b]);

  const push = (left: number, right: number): void => {
    const merged = mergeOf(tok[left], tok[right]);
    if (merged < 0) return;
    const e = entries++;
    eScore[e] = scoreOf(merged);
    eLeft[e] = left;
    eRight[e] = right;
    eLeftTok[e] = tok[left];
    eRightTok[e] = tok[right];
    eMerged[e] = merged;
    let i = size++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!above(e, heap[parent])) break;
      heap[i] = heap[parent];
      i = parent;
    }
    heap[i] = e;
  };

  const pop = (): number => {
    const top = heap[0];
    const last = heap[--size];
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= size) break;
      if (child + 1 < size && above(heap[child + 1], heap[child])) child++;
      if (!above(heap[child], last)) break;
      heap[i] = heap[child];
      i = child;
    }
    heap[i] = last;
    return top;
  };

  for (let i = 0; i + 1 < n; i++) push(i, i + 1);

  let remaining = n;
  while (size > 0) {
    const e = pop();
    const l = eLeft[e];
    const r = eRight[e];
    if (dead[l] || next[l] !== r || tok[l] !== eLeftTok[e] || tok[r] !== eRightTok[e]) continue; // stale
    tok[l] = eMerged[e];
    dead[r] = 1;
    const rn = next[r];
    next[l] = rn;
    if (rn >= 0) prev[rn] = l;
    remaining--;
    if (prev[l] >= 0) push(prev[l], l);
    if (rn >= 0) push(l, rn);
  }

  const out = new Int32Array(remaining);
  for (let i = 0, k = 0; i >= 0; i = next[i]) out[k++] = tok[i];
  return out;
}
