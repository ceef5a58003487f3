/**
 * Cheap stand-ins for perplexity, computed from what pruning produces anyway (each layer's
 * weight, calibration statistics, scores and mask): no forward pass through the model.
 *
 * A proxy is one file in `proxies/` that describes itself (a `ProxyDef`: name, direction, the
 * statistics it needs, a per-layer `accumulate` and a `finish` that combines the layers) and
 * one `registerProxy` line in `proxies/index.ts`; `crepe search --proxy`, `crepe proxy-study`
 * and `crepe search-compare` then offer it, and test/proxy-contract.test.ts checks it. Whether
 * lower or higher predicts lower perplexity is not assumed: the proxy study measures it, and
 * `sign` records the measured direction, so searches minimize `sign * proxy`.
 */
import { CrepeError } from '../errors';
import { InputStats } from '../prune/stats';
import { gini, giniOfSorted } from './rank';

/** One pruned layer as the pipeline's onLayer hook reports it. */
export interface LayerSample {
  weight: Float32Array;
  scores: Float32Array;
  mask: Uint8Array;
  stats: InputStats;
  rows: number;
  cols: number;
  /** The layer's Fisher diagonal [rows, cols] (fisher.ts), when the setup collected it. */
  fisher?: Float32Array;
  /** Its output channels' sensitivity mean_t g_ti^2 [rows] (fisher.ts). */
  outputFisher?: Float32Array;
  /** Kept tokens' output gradients [S, rows] and inputs [S, cols] (fisher.ts). */
  fisherTokens?: { g: Float32Array; x: Float32Array; count: number };
}

/** A registered proxy name (any string a `registerProxy` call used). */
export type ProxyName = string;

export interface ProxyDef<T = unknown> {
  name: ProxyName;
  description: string;
  /**
   * +1: a lower proxy predicts a lower PPL, so searches minimize the proxy; -1: maximize it.
   * The built-in proxies carry the directions MEASURED by `crepe proxy-study`.
   */
  sign: 1 | -1;
  /** What calibration must collect: raw inputs (recon proxies), the Fisher pass (fisher.ts). */
  needs?: { inputs?: boolean; fisher?: boolean };
  /** One layer's contribution (layers arrive in pipeline order: block by block, q k v o gate up down). */
  accumulate(layer: LayerSample): T;
  /** The proxy's value from every layer's contribution. */
  finish(parts: readonly T[]): number;
}

const registry = new Map<ProxyName, ProxyDef>();

export function registerProxy<T>(def: ProxyDef<T>): void {
  if (registry.has(def.name)) throw new Error(`proxy '${def.name}' registered twice`);
  if (!/^[a-z][a-z0-9-]*$/.test(def.name)) throw new Error(`proxy name '${def.name}' must be lower-case letters, digits and dashes`);
  if (def.sign !== 1 && def.sign !== -1) throw new Error(`proxy '${def.name}': sign must be 1 or -1`);
  registry.set(def.name, def as ProxyDef);
}

export function getProxy(name: ProxyName): ProxyDef {
  const p = registry.get(name);
  if (!p) throw new CrepeError(`unknown proxy '${name}' (known: ${listProxies().join(', ')})`);
  return p;
}

/** Registered proxy names, in registration order. */
export function listProxies(): ProxyName[] {
  return [...registry.keys()];
}

export function parseProxy(name: string): ProxyName {
  return getProxy(name).name;
}

/** Mean of the defined (non-NaN) per-layer values; NaN when none is defined. */
export function meanOfLayers(parts: readonly number[]): number {
  const defined = parts.filter((v) => !Number.isNaN(v));
  return defined.length ? defined.reduce((a, v) => a + v, 0) / defined.length : NaN;
}

/** Sum of the defined per-layer values (for per-layer values already in loss units). */
export function sumOfLayers(parts: readonly number[]): number {
  const defined = parts.filter((v) => !Number.isNaN(v));
  return defined.length ? defined.reduce((a, v) => a + v, 0) : NaN;
}

/** Collects the requested proxies layer by layer (feed it from PruneHooks.onLayer). */
export class ProxyAccumulator {
  private readonly parts = new Map<ProxyName, unknown[]>();

  constructor(readonly names: readonly ProxyName[]) {
    for (const n of names) this.parts.set(n, []);
    for (const n of names) getProxy(n);
  }

  add(layer: LayerSample): void {
    for (const [name, parts] of this.parts) parts.push(getProxy(name).accumulate(layer));
  }

  values(): Record<ProxyName, number> {
    const out: Record<ProxyName, number> = {};
    for (const [name, parts] of this.parts) out[name] = getProxy(name).finish(parts);
    return out;
  }
}

/** Values at the pruned positions (mask 0), as float32 (plenty for a proxy, and half the memory). */
export function prunedValues(values: ArrayLike<number>, mask: Uint8Array): Float32Array {
  let n = 0;
  for (let k = 0; k < mask.length; k++) if (mask[k] === 0) n++;
  const out = new Float32Array(n);
  for (let k = 0, p = 0; k < mask.length; k++) if (mask[k] === 0) out[p++] = values[k];
  return out;
}

/**
 * Gini coefficient (as rank.ts `gini`) of non-negative float32 values in O(n). A proxy is
 * evaluated once per configuration on up to millions of pruned scores, where a comparison sort
 * costs more than the pruning itself; the bit patterns of non-negative IEEE-754 floats order like
 * their values, so a 3-pass LSD radix sort (11 bits per pass) of those patterns sorts them.
 * Anything negative or NaN goes to `gini`, which rejects it.
 */
export function giniNonNegative(values: Float32Array): number {
  const n = values.length;
  if (n === 0 || values.some((v) => !(v >= 0))) return gini(values);
  let keys: Uint32Array = new Uint32Array(Float32Array.from(values).buffer);
  for (let k = 0; k < n; k++) if (keys[k] === 0x80000000) keys[k] = 0; // -0 sorts as +0
  let scratch: Uint32Array = new Uint32Array(n);
  const counts = new Uint32Array(2048);
  for (let shift = 0; shift < 32; shift += 11) {
    counts.fill(0);
    for (let k = 0; k < n; k++) counts[(keys[k] >>> shift) & 2047]++;
    for (let d = 0, at = 0; d < 2048; d++) {
      const c = counts[d];
      counts[d] = at;
      at += c;
    }
    for (let k = 0; k < n; k++) scratch[counts[(keys[k] >>> shift) & 2047]++] = keys[k];
    [keys, scratch] = [scratch, keys];
  }
  return giniOfSorted(new Float32Array(keys.buffer));
}

