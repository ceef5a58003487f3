/**
 * Zero-shot evaluation of a model (its own weights or pruned ones) on harness tasks: documents
 * to requests, requests to tokens, packed batches scored in this process or on worker
 * processes, per-document metrics, aggregates with the harness's standard errors.
 */
import { BackendChoice } from '../../backend';
import { secondsSince } from '../../util/time';
import { CrepeError } from '../../errors';
import { OpenedModel } from '../../model/resolve';
import { LlamaModel } from '../../model/runtime';
import { WeightSource } from '../../model/types';
import { Evaluator } from '../../plan/memory';
import { defaultEvaluator } from '../evaluate';
import { EvalPool, sourceForWorkers } from '../pool';
import { RequestScore, TokenRequest, encodePair, packBatches, scorePacked, tokenRequest } from './loglikelihood';
import { scoreStreaming, streamingLayout } from './streaming';
import { DocMetrics, MetricSummary, aggregate, docMetrics } from './metrics';
import { MetricName, TaskDoc, TaskSpec } from './tasks';

export interface ZeroshotOptions {
  /** Score only the first `limit` documents of each task (the harness's --limit). */
  limit?: number;
  /** Prepend BOS when encoding; default the tokenizer's own convention, as the harness (docs/zeroshot.md). */
  addBos?: boolean;
  /** The harness's bootstrap_iters for the perplexity stderr (default 100000). */
  bootstrapIters?: number;
  /** Packed tokens per forward (default 256: more items per forward saves per-call overhead, but block-diagonal attention wastes T^2 work). */
  packTokens?: number;
  /** Context window; default the model's. */
  maxLength?: number;
  jobs?: number;
  backend?: BackendChoice;
  /**
   * Resident (every block on the device, packs scored one after another, on `jobs` workers) or
   * streaming (one block on the device at a time, every pack's hidden states on the host; one
   * process). Default: by model size, as `eval`. Both give the same scores bit for bit.
   */
  evaluator?: Evaluator;
  /** Where the streaming evaluator keeps hidden states between blocks (default f32 in memory). */
  storage?: 'f32' | 'disk';
  spillDir?: string;
  /** Tasks already prepared (prepareTasks) with the same options, e.g. to plan memory first. */
  prepared?: PreparedTask[];
  onProgress?: (done: number, total: number, itemsPerSecond: number) => void;
}

/** What was scored for one task: its documents (after --limit) as token requests. */
export interface PreparedTask {
  spec: TaskSpec;
  source: string;
  totalDocs: number;
  docs: TaskDoc[];
  tokens: TokenRequest[][];
  /** Requests whose context + continuation did not fit the window and lost tokens on the left. */
  truncated: number;
  /** Requests whose continuation alone is longer than the window (only its last tokens are scored). */
  overlong: number;
  maxLength: number;
  addBos: boolean;
}

export interface DocScores {
  scores: RequestScore[];
  metrics: DocMetrics;
}

export interface TaskResult {
  task: string;
  harness: string;
  source: string;
  /** Documents scored (after --limit) and in the file. */
  items: number;
  totalItems: number;
  requests: number;
  truncated: number;
  overlong: number;
  metrics: Partial<Record<MetricName, MetricSummary>>;
  /** The documents scored, in file order, and their scores and metrics. */
  docs: TaskDoc[];
  perDoc: DocScores[];
}

export interface ZeroshotResult {
  tasks: TaskResult[];
  addBos: boolean;
  maxLength: number;
  limit: number | null;
  bootstrapIters: number;
  seconds: number;
  items: number;
  itemsPerSecond: number;
}

export const DEFAULT_PACK_TOKENS = 256;

export function prepareTask(model: OpenedModel, spec: TaskSpec, opts: ZeroshotOptions = {}): PreparedTask {
  const { docs: all, source } = spec.task.load(spec.file);
  if (opts.limit !== undefined && !(Number.isInteger(opts.limit) && opts.limit > 0)) throw new CrepeError(`--limit must be a positive integer, got ${opts.limit}`);
  const docs = opts.limit !== undefined ? all.slice(0, opts.limit) : all;
  const maxLength = opts.maxLength ?? model.source.config.maxSeqLen;
  const addBos = opts.addBos ?? model.tokenizer.addBos;
  let truncated = 0;
  let overlong = 0;
  const tokens = docs.map((d, i) =>
    d.requests.map((r, k) => {
      const pair = encodePair(model.tokenizer, r, { addBos });
      if (pair.context.length + pair.continuation.length > maxLength + 1) truncated++;
      if (pair.continuation.length > maxLength) overlong++;
      return tokenRequest(pair.context, pair.continuation, maxLength, `${spec.task.name} document ${i + 1} request ${k + 1}`);
    }),
  );
  return { spec, source, totalDocs: all.length, docs, tokens, truncated, overlong, maxLength, addBos };
}

/** Every task's documents as token requests (what evaluateZeroshot scores). */
export function prepareTasks(model: OpenedModel, specs: readonly TaskSpec[], opts: ZeroshotOptions = {}): PreparedTask[] {
  return specs.map((s) => prepareTask(model, s, opts));
}

/** What the memory planner needs of prepared tasks: rows the streaming evaluator stores, and the longest pack. */
export function zeroshotLayout(prepared: readonly PreparedTask[], opts: ZeroshotOptions = {}): { storedRows: number; longestPack: number; items: number } {
  const items = prepared.flatMap((p) => p.tokens);
  return { ...streamingLayout(items, packBatches(items, opts.packTokens ?? DEFAULT_PACK_TOKENS)), items: items.length };
}

/** Deterministic batches and a progress counter over them. */
function batching(items: TokenRequest[][], opts: ZeroshotOptions): { batches: number[][]; progress: (batch: number[]) => void } {
  const batches = packBatches(items, opts.packTokens ?? DEFAULT_PACK_TOKENS);
  const t0 = process.hrtime.bigint();
  let done = 0;
  const progress = (batch: number[]): void => {
    done += batch.length;
    opts.onProgress?.(done, items.length, done / secondsSince(t0));
  };
  return { batches, progress };
}

/** Scores of all items in this process, by the evaluator the options (or the model's size) choose. */
function scoreInProcess(source: WeightSource, items: TokenRequest[][], opts: ZeroshotOptions): RequestScore[][] {
  const { batches, progress } = batching(items, opts);
  if ((opts.evaluator ?? defaultEvaluator(source)) === 'streaming') {
    const t0 = process.hrtime.bigint();
    return scoreStreaming(source, items, batches, {
      storage: opts.storage,
      spillDir: opts.spillDir,
      // progress in items: the share of (block, pack) steps done
      onStep: (done, total) => {
        const n = Math.floor((items.length * done) / total);
        opts.onProgress?.(n, items.length, n / secondsSince(t0));
      },
    });
  }
  const out = new Array<RequestScore[]>(items.length);
  const runtime = LlamaModel.fromSource(source);
  try {
    for (const b of batches) {
      scorePacked(runtime, b.map((i) => items[i])).forEach((s, k) => (out[b[k]] = s));
      progress(b);
    }
  } finally {
    runtime.dispose();
  }
  return out;
}

/** Scores of all items of all tasks (in task order), batched deterministically, on `jobs` workers. */
async function scoreAll(
  model: OpenedModel,
  source: WeightSource,
  items: TokenRequest[][],
  opts: ZeroshotOptions,
): Promise<RequestScore[][]> {
  const { batches, progress } = batching(items, opts);
  const jobs = Math.min(opts.jobs ?? 1, batches.length);
  if (jobs <= 1) return scoreInProcess(source, items, opts);
  if ((opts.evaluator ?? defaultEvaluator(source)) === 'streaming') {
    throw new CrepeError(`zero-shot's streaming evaluator runs in one process: use --jobs 1 (now ${opts.jobs}) or --evaluator resident`);
  }
  const out = new Array<RequestScore[]>(items.length);
  const shared = sourceForWorkers(source, model.source.origin, source === model.source);
  try {
    const pool = await EvalPool.start(shared.path, model.tokenizerPath, jobs, opts.backend ?? 'auto');
    try {
      const res = await pool.scoreBatches(
        batches.map((b) => b.map((i) => items[i])),
        (index) => progress(batches[index]),
      );
      res.forEach((scores, bi) => scores.forEach((s, k) => (out[batches[bi][k]] = s)));
    } finally {
      pool.close();
    }
  } finally {
    shared.cleanup();
  }
  return out;
}

/** Zero-shot results of `source` (the model's own weights or pruned ones) on `specs`. */
export async function evaluateZeroshot(
  model: OpenedModel,
  source: WeightSource,
  specs: readonly TaskSpec[],
  opts: ZeroshotOptions = {},
): Promise<ZeroshotResult> {
  const t0 = process.hrtime.bigint();
  const prepared = opts.prepared ?? prepareTasks(model, specs, opts);
  const items = prepared.flatMap((p) => p.tokens);
  return summarize(prepared, await scoreAll(model, source, items, opts), opts, t0);
}

/** evaluateZeroshot in this process only (no workers): for callers that are workers themselves (sweeps). */
export function evaluateZeroshotInProcess(model: OpenedModel, source: WeightSource, specs: readonly TaskSpec[], opts: ZeroshotOptions = {}): ZeroshotResult {
  const t0 = process.hrtime.bigint();
  const prepared = opts.prepared ?? prepareTasks(model, specs, opts);
  return summarize(prepared, scoreInProcess(source, prepared.flatMap((p) => p.tokens), opts), opts, t0);
}

function summarize(prepared: PreparedTask[], scores: RequestScore[][], opts: ZeroshotOptions, t0: bigint): ZeroshotResult {
  const bootstrapIters = opts.bootstrapIters ?? 100_000;
  let at = 0;
  const tasks = prepared.map((p): TaskResult => {
    const metricsWanted = p.spec.task.metrics;
    const perDoc = p.docs.map((d) => {
      const s = scores[at++];
      return { scores: s, metrics: docMetrics(d, s, metricsWanted) };
    });
    const metrics: Partial<Record<MetricName, MetricSummary>> = {};
    for (const m of metricsWanted) metrics[m] = aggregate(m, perDoc.map((d) => d.metrics[m]!), bootstrapIters);
    return {
      task: p.spec.task.name,
      harness: p.spec.task.harness,
      source: p.source,
      items: p.docs.length,
      totalItems: p.totalDocs,
      requests: p.tokens.reduce((a, r) => a + r.length, 0),
      truncated: p.truncated,
      overlong: p.overlong,
      metrics,
      docs: p.docs,
      perDoc,
    };
  });
  const seconds = secondsSince(t0);
  return {
    tasks,
    addBos: prepared[0]?.addBos ?? opts.addBos ?? true,
    maxLength: prepared[0]?.maxLength ?? 0,
    limit: opts.limit ?? null,
    bootstrapIters,
    seconds,
    items: scores.length,
    itemsPerSecond: scores.length / seconds,
  };
}
