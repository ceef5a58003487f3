/**
 * The search space of a scoring strategy's numeric parameters, and its mapping to the plain
 * vectors the optimizers (CMA-ES, hill climbing) work on.
 *
 * Each searched parameter becomes one coordinate:
 *   - 'log10'      x = log10(v)          for parameters marked `log` (coefficients whose natural
 *                                        scales differ by orders of magnitude, docs/methods.md);
 *   - 'odd-index'  x = k with v = 2k + 1 for odd integers (kernel sizes), so every integer
 *                                        coordinate is a valid value;
 *   - 'integer'    x = v                 for other integers;
 *   - 'linear'     x = v                 otherwise.
 * Parameters that are not searched keep a fixed value (the strategy's default or the user's).
 */
import { CrepeError } from '../errors';
import { ParamSpec, Params, Strategy, resolveParams } from '../prune/strategy';
import { Rng } from '../util/random';

export type Scale = 'log10' | 'odd-index' | 'integer' | 'linear';

export interface SearchDim {
  name: string;
  scale: Scale;
  /** Bounds in parameter units (inclusive). */
  min: number;
  max: number;
  /** Bounds in coordinate units (inclusive). */
  lower: number;
  upper: number;
  integer: boolean;
}

export interface SearchSpace {
  method: string;
  dims: SearchDim[];
  /** Values of the parameters that are not searched. */
  fixed: Params;
  /** The strategy's defaults of the searched parameters. */
  defaults: Params;
  /** The strategy's declared start values of the searched parameters (see searchStart). */
  starts: Params;
}

/** Lower bound used for a log-scaled parameter whose own range starts at 0. */
const LOG_FLOOR = 1e-3;

export interface SpaceOptions {
  /** Names of the searched parameters (default: those the strategy's ParamSpecs do not mark `searched: false`). */
  searched?: readonly string[];
  /** Bounds in parameter units, per name. */
  bounds?: Record<string, readonly [number, number]>;
  /** Values of the parameters that are not searched (strings as from the CLI are fine). */
  fixed?: Record<string, string | number>;
}

export function buildSpace(strategy: Strategy, opts: SpaceOptions = {}): SearchSpace {
  const known = Object.keys(strategy.params);
  if (known.length === 0) throw new CrepeError(`method ${strategy.name} has no numeric parameters to search`);
  const searched = [...(opts.searched ?? known.filter((name) => strategy.params[name].search?.searched !== false))];
  if (searched.length === 0) throw new CrepeError('no parameters to search');
  for (const name of searched) {
    if (!strategy.params[name]) throw new CrepeError(`cannot search '${name}': method ${strategy.name} has ${known.join(', ')}`);
  }
  if (new Set(searched).size !== searched.length) throw new CrepeError(`searched parameters repeat a name: ${searched.join(', ')}`);
  for (const name of Object.keys(opts.bounds ?? {})) {
    if (!searched.includes(name)) throw new CrepeError(`bounds given for '${name}', which is not searched (searched: ${searched.join(', ')})`);
  }
  for (const name of Object.keys(opts.fixed ?? {})) {
    if (searched.includes(name)) throw new CrepeError(`parameter '${name}' is both searched and fixed`);
  }
  const fixed = resolveParams(strategy, opts.fixed ?? {});
  for (const name of searched) delete fixed[name];
  const dims = searched.map((name) => makeDim(strategy, name, strategy.params[name], opts.bounds?.[name]));
  const defaults = Object.fromEntries(searched.map((name) => [name, strategy.params[name].default]));
  const starts = Object.fromEntries(searched.map((name) => [name, strategy.params[name].search?.start ?? strategy.params[name].default]));
  return { method: strategy.name, dims, fixed, defaults, starts };
}

function makeDim(strategy: Strategy, name: string, spec: ParamSpec, given?: readonly [number, number]): SearchDim {
  const [min, max] = given ?? defaultBounds(spec);
  const what = `bounds of ${name}`;
  if (!(min <= max)) throw new CrepeError(`${what}: ${min} is not <= ${max}`);
  // The bounds themselves must be legal values (range, integer); oddness is checked below.
  resolveParams(strategy, { [name]: spec.odd ? smallestOddAtLeast(min) : min });
  resolveParams(strategy, { [name]: spec.odd ? largestOddAtMost(max) : max });
  if (spec.log) {
    if (!(min > 0)) throw new CrepeError(`${what}: ${name} is searched in log10 space, so its lower bound must be > 0, got ${min}`);
    return { name, scale: 'log10', min, max, lower: Math.log10(min), upper: Math.log10(max), integer: false };
  }
  if (spec.odd) {
    const lower = Math.ceil((min - 1) / 2);
    const upper = Math.floor((max - 1) / 2);
    if (lower > upper) throw new CrepeError(`${what}: no odd value in [${min}, ${max}]`);
    return { name, scale: 'odd-index', min: 2 * lower + 1, max: 2 * upper + 1, lower, upper, integer: true };
  }
  if (spec.integer) {
    const lower = Math.ceil(min);
    const upper = Math.floor(max);
    if (lower > upper) throw new CrepeError(`${what}: no integer in [${min}, ${max}]`);
    return { name, scale: 'integer', min: lower, max: upper, lower, upper, integer: true };
  }
  if (spec.exclusiveMin && min <= spec.min) throw new CrepeError(`${what}: ${name} must be > ${spec.min}`);
  return { name, scale: 'linear', min, max, lower: min, upper: max, integer: false };
}

function smallestOddAtLeast(v: number): number {
  return 2 * Math.ceil((v - 1) / 2) + 1;
}

function largestOddAtMost(v: number): number {
  return 2 * Math.floor((v - 1) / 2) + 1;
}

/** The strategy's declared search bounds, or the parameter's whole range (log ranges from LOG_FLOOR). */
function defaultBounds(spec: ParamSpec): [number, number] {
  let [lo, hi] = spec.search?.bounds ?? [spec.min, spec.max];
  if (spec.log && !(lo > 0)) lo = LOG_FLOOR;
  return [lo, Math.max(lo, hi)];
}

/** Parameter values (searched and fixed) of a coordinate vector; integer coordinates are rounded. */
export function toParams(space: SearchSpace, x: readonly number[]): Params {
  if (x.length !== space.dims.length) throw new Error(`toParams: vector of ${x.length} for ${space.dims.length} dimensions`);
  const out: Params = { ...space.fixed };
  space.dims.forEach((d, i) => {
    const c = clamp(d.integer ? Math.round(x[i]) : x[i], d.lower, d.upper);
    const v = d.scale === 'log10' ? 10 ** c : d.scale === 'odd-index' ? 2 * c + 1 : c;
    out[d.name] = clamp(v, d.min, d.max); // 10 ** log10(max) can exceed max by an ulp
  });
  return out;
}

/** Coordinate vector of parameter values (each must lie within the space's bounds). */
export function toVector(space: SearchSpace, params: Params): number[] {
  return space.dims.map((d) => {
    const v = params[d.name];
    if (v === undefined) throw new CrepeError(`no value for searched parameter '${d.name}'`);
    if (!(v >= d.min && v <= d.max)) throw new CrepeError(`${d.name}=${v} lies outside the search bounds [${d.min}, ${d.max}]`);
    if (d.scale === 'log10') return Math.log10(v);
    if (d.scale === 'odd-index') {
      if (Math.abs(v % 2) !== 1) throw new CrepeError(`${d.name}=${v} must be odd`);
      return (v - 1) / 2;
    }
    if (d.integer && !Number.isInteger(v)) throw new CrepeError(`${d.name}=${v} must be an integer`);
    return v;
  });
}

/** Clamp parameter values into the space's bounds (e.g. a start point given in parameter units). */
export function clampParams(space: SearchSpace, params: Params): Params {
  const out: Params = { ...params };
  for (const d of space.dims) {
    let v = clamp(params[d.name], d.min, d.max);
    if (d.scale === 'odd-index') v = 2 * Math.round((v - 1) / 2) + 1;
    else if (d.integer) v = Math.round(v);
    out[d.name] = clamp(v, d.min, d.max);
  }
  return out;
}

/**
 * Where searches start: each searched parameter's declared `search.start` (default: its
 * default value), clamped into the bounds (CRePE declares RIA's values, so its searches begin
 * from the published baseline).
 */
export function searchStart(space: SearchSpace): Params {
  const start: Params = { ...space.fixed };
  for (const d of space.dims) start[d.name] = space.starts[d.name] ?? space.defaults[d.name];
  return clampParams(space, start);
}

/** A point drawn uniformly in coordinate space (log-uniform for log10 dims, uniform over the integers). */
export function sampleUniform(space: SearchSpace, rng: Rng): number[] {
  return space.dims.map((d) => (d.integer ? d.lower + rng.int(d.upper - d.lower + 1) : d.lower + rng.next() * (d.upper - d.lower)));
}

/**
 * Parse `name=lo:hi` bound flags, e.g. `gamma=1e-4:10`. Values are in parameter units.
 */
export function parseBounds(pairs: readonly string[]): Record<string, [number, number]> {
  const out: Record<string, [number, number]> = {};
  for (const p of pairs) {
    const m = /^([A-Za-z_][\w-]*)=([^:]+):(.+)$/.exec(p.trim());
    const lo = m ? Number(m[2]) : NaN;
    const hi = m ? Number(m[3]) : NaN;
    if (!m || !Number.isFinite(lo) || !Number.isFinite(hi)) throw new CrepeError(`bad --bound '${p}' (expected name=lo:hi, e.g. gamma=1e-4:10)`);
    out[m[1]] = [lo, hi];
  }
  return out;
}

/** Short human form of a parameter set: `alpha=0.5 beta=2 gamma=0.001 kh=3 kw=5`. */
export function formatParams(params: Params): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${Number.isInteger(v) ? v : Number(v.toPrecision(4))}`)
    .join(' ');
}

/** The same set as `--param k=v` flags for `crepe prune` (full precision, so it reproduces). */
export function paramFlags(params: Params): string {
  return Object.entries(params)
    .map(([k, v]) => `--param ${k}=${v}`)
    .join(' ');
}

function clamp(x: number, lo: number, hi: number): number {
  return Math.min(hi, Math.max(lo, x));
}
