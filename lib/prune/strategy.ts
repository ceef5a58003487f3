import * as tf from '@tensorflow/tfjs';
import { CrepeError } from '../errors';
import { adjacentToHalfOrder } from '../model/convert';
import { LinearName, LlamaConfig, rotaryHeads } from '../model/types';
import { Structure } from './select';
import { InputStats, StatsOptions } from './stats';

/** What a scoring strategy sees of one linear layer. */
export interface LayerContext {
  /** The weight [out, in] on the device. Owned by the caller: do not dispose. */
  weight: tf.Tensor2D;
  /** The same weight on the host. */
  weightData: Float32Array;
  shape: [number, number];
  /** Calibration statistics of the layer's input (shared by linears with the same input). */
  stats: InputStats;
  name: LinearName;
  block: number;
  kind: 'attn' | 'mlp';
  /** Canonical key, e.g. `blocks.0.attn.q`. */
  key: string;
  /**
   * Set when the rows of `weight` are not in the canonical (Hugging Face) order, i.e. q and k of
   * a llama2.c file (RoPE pairs (2i, 2i+1) instead of rotate_half's (i, i + headDim/2)):
   * canonical row r is row canonicalRows[r] of `weight`. Scores that depend on which rows are
   * neighbours (CRePE's window sums) are computed in canonical order, so a model gives the same
   * masks whichever file layout it is loaded from.
   */
  canonicalRows?: Int32Array;
}

/** The canonicalRows of a linear (see LayerContext): q/k of an adjacent-RoPE file, else undefined. */
export function canonicalRowOrder(cfg: LlamaConfig, name: LinearName): Int32Array | undefined {
  const heads = rotaryHeads(cfg, name);
  if (cfg.ropeLayout !== 'adjacent' || heads === 0) return undefined;
  return adjacentToHalfOrder(heads, cfg.headDim);
}

/** A numeric parameter: typed, bounded, with a default; `log` marks it for log-space search. */
export interface ParamSpec {
  default: number;
  min: number;
  max: number;
  integer?: boolean;
  odd?: boolean;
  /** Strictly greater than min. */
  exclusiveMin?: boolean;
  log?: boolean;
  description: string;
  /**
   * How `crepe search` treats the parameter, declared by the strategy so a new strategy needs no
   * edit in the search code. `searched: false` keeps it fixed unless the user asks for it;
   * `bounds` (parameter units, within [min, max]) default to [min, max] (a log parameter whose
   * min is 0 starts its range at 1e-3); `start` is where searches begin (default: `default`).
   */
  search?: { searched?: boolean; bounds?: readonly [number, number]; start?: number };
}

export type ParamSpecs = Record<string, ParamSpec>;
export type Params = Record<string, number>;

/**
 * A scoring strategy: a tfjs function from a layer to a score tensor of the weight's shape
 * (higher = more important). Mask selection, structures, the pipeline, sweeps and search all
 * work through this interface, so a new strategy is one file plus one `registerStrategy` line.
 */
export interface Strategy {
  name: string;
  description: string;
  params: ParamSpecs;
  /** Why a combination of valid values is still meaningless (e.g. every score 0), or null. */
  checkParams?: (params: Params) => string | null;
  /** Comparison group the reference implementation uses for unstructured sparsity. */
  defaultGroup: 'row' | 'matrix';
  /** Whether the score uses calibration activations (false: calibration can be skipped). */
  usesActivations: boolean;
  score(ctx: LayerContext, params: Params): tf.Tensor2D;
  /**
   * Shorthands for the command line's `--param k=v`, expanding one pair into several (CRePE's
   * `kernel=3x5` = kh=3, kw=5); throw a CrepeError on a bad value.
   */
  paramAliases?: Record<string, (value: string) => Record<string, string>>;
  /**
   * Optional fast path for searches that score the same layer under many parameter sets: cache
   * what does not depend on the parameters and return host-side scores, equal to `score` up to
   * float32 rounding (the strategy contract tests check it). Without it, searches call `score`.
   * With `rows` (increasing row indices) the scorer returns only those rows' scores,
   * [rows.length, cols], equal to those rows of the whole score: what a proxy estimated from a
   * row sample needs, at the sample's cost.
   */
  prepare?(ctx: LayerContext): (params: Params, rows?: Int32Array) => Float32Array;
  /** Statistics needed beyond per-channel sums (SparseGPT: the Gram matrix X^T X). */
  statsNeeds?: StatsOptions;
  /**
   * Methods that also update the kept weights (SparseGPT) replace score-then-select with this;
   * `score` then serves proxies and reports only.
   */
  pruneLayer?(ctx: LayerContext, structure: Structure, params: Params): { weight: Float32Array; mask: Uint8Array };
}

const registry = new Map<string, Strategy>();

export function registerStrategy(s: Strategy): void {
  if (registry.has(s.name)) throw new Error(`strategy '${s.name}' registered twice`);
  for (const [k, spec] of Object.entries(s.params)) {
    const err = checkParam(s.name, k, spec.default, spec);
    if (err) throw new Error(`default of ${err}`);
    const [lo, hi] = spec.search?.bounds ?? [spec.min, spec.max];
    if (!(spec.min <= lo && lo <= hi && hi <= spec.max)) throw new Error(`search bounds [${lo}, ${hi}] of ${s.name}.${k} are outside [${spec.min}, ${spec.max}]`);
    const start = spec.search?.start;
    if (start !== undefined && checkParam(s.name, k, start, spec)) throw new Error(`search start of ${checkParam(s.name, k, start, spec)}`);
  }
  registry.set(s.name, s);
}

export function getStrategy(name: string): Strategy {
  const s = registry.get(name);
  if (!s) throw new CrepeError(`unknown method '${name}' (known: ${listStrategies().join(', ')})`);
  return s;
}

export function listStrategies(): string[] {
  return [...registry.keys()];
}

function checkParam(method: string, key: string, v: number, spec: ParamSpec): string | null {
  const what = `parameter ${key}=${v} of ${method}`;
  if (!Number.isFinite(v)) return `${what} is not a finite number`;
  if (spec.integer && !Number.isInteger(v)) return `${what} must be an integer`;
  if (spec.odd && Math.abs(v % 2) !== 1) return `${what} must be odd`;
  const lowOk = spec.exclusiveMin ? v > spec.min : v >= spec.min;
  if (!lowOk || v > spec.max) {
    return `${what} is out of range ${spec.exclusiveMin ? '(' : '['}${spec.min}, ${spec.max}]`;
  }
  return null;
}

/**
 * Merge user parameters (strings from the CLI or numbers from a config) over the defaults,
 * rejecting unknown names and out-of-range values with one-line messages.
 */
export function resolveParams(s: Strategy, given: Record<string, string | number> = {}): Params {
  const out: Params = {};
  for (const [k, spec] of Object.entries(s.params)) out[k] = spec.default;
  for (const [k, raw] of Object.entries(given)) {
    const spec = s.params[k];
    if (!spec) {
      const known = Object.keys(s.params);
      throw new CrepeError(
        `unknown parameter '${k}' for method ${s.name} (${known.length ? `known: ${known.join(', ')}` : 'it takes none'})`,
      );
    }
    const v = typeof raw === 'number' ? raw : Number(raw);
    if (typeof raw === 'string' && raw.trim() === '') throw new CrepeError(`parameter ${k} of ${s.name} has no value`);
    const err = checkParam(s.name, k, v, spec);
    if (err) throw new CrepeError(err);
    out[k] = v;
  }
  const err = s.checkParams?.(out);
  if (err) throw new CrepeError(err);
  return out;
}

/**
 * Parse `k=v` pairs from the command line, expanding the strategy's own shorthands
 * (`paramAliases`, e.g. CRePE's `kernel=3x5` for kh=3, kw=5).
 */
export function parseParamPairs(pairs: readonly string[], strategy?: Strategy): Record<string, string> {
  const out: Record<string, string> = {};
  for (const p of pairs) {
    const eq = p.indexOf('=');
    if (eq <= 0) throw new CrepeError(`bad --param '${p}' (expected name=value)`);
    const k = p.slice(0, eq).trim();
    const v = p.slice(eq + 1).trim();
    const alias = strategy?.paramAliases?.[k];
    if (alias) Object.assign(out, alias(v));
    else out[k] = v;
  }
  return out;
}
