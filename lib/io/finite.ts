/**
 * Checks on weight values, made once as each tensor is read (by every loader) or written.
 * NaN/Inf weights make every PPL NaN; absurdly large ones overflow activations into the same,
 * or silently into a uniform distribution (PPL = vocabulary size). Both are refused by name.
 */
import { CrepeError } from '../errors';

/** Largest |weight| accepted: far above any trained LLaMA-family weight, far below float32 overflow in a matMul. */
export const MAX_ABS_WEIGHT = 1e6;
/** Largest finite float16. */
export const F16_MAX = 65504;

/** The largest finite |v| of `data` and the index of the first value outside ±limit (-1 when none). */
function scan(data: Float32Array, limit: number): { maxAbs: number; bad: number } {
  let maxAbs = 0;
  let bad = -1;
  for (let i = 0; i < data.length; i++) {
    const a = Math.abs(data[i]);
    if (!(a <= limit)) {
      if (bad < 0) bad = i;
      if (a !== a) continue; // NaN: no magnitude
    }
    if (a > maxAbs) maxAbs = a;
  }
  return { maxAbs, bad };
}

/** Refuse a tensor read from `origin` that holds NaN, ±Inf or |w| > MAX_ABS_WEIGHT; returns `data`. */
export function checkWeights(data: Float32Array, name: string, origin: string): Float32Array {
  const { bad } = scan(data, MAX_ABS_WEIGHT);
  if (bad >= 0) {
    const v = data[bad];
    const what = Number.isNaN(v) ? 'NaN' : Number.isFinite(v) ? `the value ${Number(v.toPrecision(6))} (|w| above ${MAX_ABS_WEIGHT})` : String(v);
    throw new CrepeError(`tensor ${name} in ${origin} holds ${what} at index ${bad}: a corrupt checkpoint?`);
  }
  return data;
}

/** Refuse to store a tensor as float16 when it holds values float16 cannot represent (they would become Inf). */
export function checkF16Range(data: Float32Array, name: string): void {
  const { maxAbs, bad } = scan(data, F16_MAX);
  if (bad >= 0) throw new CrepeError(`tensor ${name} holds |w| up to ${Number(maxAbs.toPrecision(6))}, above float16's largest ${F16_MAX}: use --dtype BF16 or F32`);
}
