/**
 * Log-likelihood requests as lm-evaluation-harness's HF causal model computes them
 * (lm_eval/api/model.py `loglikelihood`/`_encode_pair`, lm_eval/models/huggingface.py
 * `_loglikelihood_tokens`), and the packed forward that scores them.
 */
import { CrepeError } from '../../errors';
import { LlamaModel, makePackedTables, disposeWindowTables } from '../../model/runtime';
import { Tokenizer } from '../../tokenizers/types';
import { pyRstrip, StringRequest } from './tasks';

/** One request in tokens: the model input and the continuation scored at its end. */
export interface TokenRequest {
  /** (context + continuation)[-(maxLength + 1):][:-1]: what the model reads. */
  input: Int32Array;
  /** The continuation tokens: predicted at the last `cont.length` positions of `input`. */
  cont: Int32Array;
}

export interface EncodeOptions {
  /**
   * Prepend BOS to what is encoded. The harness calls the HF tokenizer with its default
   * add_special_tokens=True, i.e. the tokenizer's own convention (Tokenizer.addBos: BOS for
   * LLaMA tokenizers, none for e.g. Qwen2); add_bos_token overrides it.
   */
  addBos: boolean;
}

/**
 * Context and continuation ids. Whitespace at the end of the context is moved to the start of
 * the continuation; context + continuation is encoded whole and split at the length of the
 * context's own encoding (so a token merged across the boundary counts as continuation). An
 * empty context becomes the prefix token (BOS, else EOS), as the harness's `loglikelihood` does.
 */
export function encodePair(tok: Tokenizer, req: StringRequest, opts: EncodeOptions): { context: Int32Array; continuation: Int32Array } {
  let { context, continuation } = req;
  if (context === '') {
    const prefix = tok.bosId >= 0 ? tok.bosId : tok.eosId;
    if (prefix < 0) throw new CrepeError('an empty context needs a BOS or EOS token, and the tokenizer has neither');
    const c = tok.encode(continuation, { bos: false });
    return c.length > 0 && c[0] === prefix ? { context: c.slice(0, 1), continuation: c.slice(1) } : { context: Int32Array.of(prefix), continuation: c };
  }
  const trimmed = pyRstrip(context);
  if (trimmed.length < context.length) {
    continuation = context.slice(trimmed.length) + continuation;
    context = trimmed;
  }
  const whole = tok.encode(context + continuation, { bos: opts.addBos });
  const ctx = tok.encode(context, { bos: opts.addBos });
  return { context: ctx, continuation: whole.slice(ctx.length) };
}

/**
 * The model input of a pair, truncated from the left to the context window as the harness does.
 * A continuation longer than the window, which the harness refuses (an assertion), keeps its
 * last `maxLength` tokens: those are scored, the window holding nothing else (docs/zeroshot.md).
 */
export function tokenRequest(context: Int32Array, continuation: Int32Array, maxLength: number, what: string): TokenRequest {
  if (context.length === 0) throw new CrepeError(`${what}: the context encodes to no tokens`);
  if (continuation.length === 0) throw new CrepeError(`${what}: the continuation encodes to no tokens`);
  const all = new Int32Array(context.length + continuation.length);
  all.set(context, 0);
  all.set(continuation, context.length);
  const frame = all.subarray(Math.max(0, all.length - (maxLength + 1)));
  return { input: frame.slice(0, frame.length - 1), cont: continuation.slice(Math.max(0, continuation.length - maxLength)) };
}

/** Result of one request: summed log-probability and whether greedy decoding reproduces it. */
export interface RequestScore {
  ll: number;
  greedy: boolean;
}

/** Several items' requests laid out as one packed sequence. */
export interface Pack {
  tokens: Int32Array;
  positions: Int32Array;
  /** Additive attention mask [T, T]: 0 where a row sees another, -1e9 elsewhere. */
  mask: Float32Array;
  /** Per item, per request: the packed rows whose logits predict the continuation tokens. */
  rows: Int32Array[][];
}

const HIDDEN = -1e9;

function commonPrefix(seqs: readonly Int32Array[]): number {
  let n = Math.min(...seqs.map((s) => s.length));
  for (let i = 1; i < seqs.length; i++) {
    let k = 0;
    while (k < n && seqs[i][k] === seqs[0][k]) k++;
    n = k;
  }
  return n;
}

/**
 * Pack items (each a list of requests) into one sequence. Within an item the requests' common
 * prefix (the shared context) is laid down once and each request's remainder follows it; a row
 * sees exactly the rows of its own request up to itself (makePackedTables narrows that to the
 * sliding window of a model that has one), at its own rotary position. So each
 * request's log-probabilities are those of its own forward, while the shared context is
 * computed once, and different items never see each other.
 */
export function packItems(items: readonly (readonly TokenRequest[])[]): Pack {
  const layouts = items.map((reqs) => {
    const P = reqs.length > 1 ? commonPrefix(reqs.map((r) => r.input)) : reqs[0].input.length;
    return { reqs, P, length: P + reqs.reduce((a, r) => a + r.input.length - P, 0) };
  });
  const T = layouts.reduce((a, l) => a + l.length, 0);
  const tokens = new Int32Array(T);
  const positions = new Int32Array(T);
  const mask = new Float32Array(T * T).fill(HIDDEN);
  const rows: Int32Array[][] = [];
  let base = 0;
  for (const { reqs, P, length } of layouts) {
    const itemRows: Int32Array[] = [];
    let seg = base + P;
    for (const r of reqs) {
      const n = r.input.length;
      // packed row of position p of this request
      const rowOf = new Int32Array(n);
      for (let p = 0; p < n; p++) rowOf[p] = p < P ? base + p : seg + (p - P);
      for (let p = 0; p < n; p++) {
        const row = rowOf[p];
        tokens[row] = r.input[p];
        positions[row] = p;
        for (let q = 0; q <= p; q++) mask[row * T + rowOf[q]] = 0;
      }
      const c = r.cont.length;
      itemRows.push(rowOf.slice(n - c, n));
      seg += n - P;
    }
    rows.push(itemRows);
    base += length;
  }
  return { tokens, positions, mask, rows };
}

/** Score every request of `items` in one forward of the packed sequence. */
export function scorePacked(model: LlamaModel, items: readonly (readonly TokenRequest[])[]): RequestScore[][] {
  const pack = packItems(items);
  const tables = makePackedTables(model.config, pack.positions, pack.mask);
  const x = model.hidden(pack.tokens, tables);
  let logits: Float32Array;
  try {
    logits = model.logitsAt(x, continuationRows(pack));
  } finally {
    x.dispose();
    disposeWindowTables(tables);
  }
  return scoresFromLogits(items, pack, logits, model.config.vocabSize);
}

/** Every packed row whose logits predict a continuation token, item by item, request by request. */
export function continuationRows(pack: Pack): Int32Array {
  return Int32Array.from(pack.rows.flatMap((item) => item.flatMap((r) => Array.from(r))));
}

/**
 * Each request's summed log-probability (float64 log-softmax of float32 logits) and whether
 * every continuation token is the argmax, from the logits at continuationRows(pack) (row-major,
 * `V` per row). Shared by the resident and the streaming evaluator.
 */
export function scoresFromLogits(items: readonly (readonly TokenRequest[])[], pack: Pack, logits: Float32Array, V: number): RequestScore[][] {
  let k = 0;
  return items.map((reqs, i) =>
    reqs.map((req, j) => {
      let ll = 0;
      let greedy = true;
      for (let t = 0; t < pack.rows[i][j].length; t++, k++) {
        const off = k * V;
        let max = -Infinity;
        let arg = 0;
        for (let v = 0; v < V; v++) {
          // first maximum, as torch.argmax
          if (logits[off + v] > max) {
            max = logits[off + v];
            arg = v;
          }
        }
        let s = 0;
        for (let v = 0; v < V; v++) s += Math.exp(logits[off + v] - max);
        ll += logits[off + req.cont[t]] - max - Math.log(s);
        if (arg !== req.cont[t]) greedy = false;
      }
      return { ll, greedy };
    }),
  );
}

/** Rows one item takes in a pack: the shared context once, then each request's remainder. */
export function packedLength(reqs: readonly TokenRequest[]): number {
  const P = reqs.length > 1 ? commonPrefix(reqs.map((r) => r.input)) : reqs[0].input.length;
  return P + reqs.reduce((a, r) => a + r.input.length - P, 0);
}

/**
 * Deterministic batches of item indices: consecutive items until adding one would pass
 * `budget` packed tokens (an item larger than the budget goes alone). The batching does not
 * depend on the number of workers, so results are identical for any --jobs.
 */
export function packBatches(items: readonly (readonly TokenRequest[])[], budget: number): number[][] {
  const batches: number[][] = [];
  let cur: number[] = [];
  let used = 0;
  items.forEach((reqs, i) => {
    const len = packedLength(reqs);
    if (cur.length > 0 && used + len > budget) {
      batches.push(cur);
      cur = [];
      used = 0;
    }
    cur.push(i);
    used += len;
  });
  if (cur.length > 0) batches.push(cur);
  return batches;
}
