/**
 * Rotary position embedding frequencies and angles.
 *
 * HF checkpoints (rotate_half layout) follow transformers: modeling_rope_utils computes inv_freq
 * in float32 (`1 / base ** (arange(0, dim, 2).float() / dim)`, then the scaling of the rope
 * type in float32 tensor arithmetic) and the rotary embedding multiplies positions by inv_freq in
 * float32, so every step here is rounded to float32 the same way (Math.fround). llama2.c
 * checkpoints keep the float64 angles crepe has always used for them (their golden fixtures and
 * published numbers were made that way; the two differ by ~1e-7 relative).
 */
import { LlamaConfig, RopeScaling } from './types';

const f32 = Math.fround;

/** inv_freq[i] for i in [0, headDim/2): the angle of rotary pair i at position t is t * inv_freq[i]. */
export function ropeInverseFrequencies(cfg: Pick<LlamaConfig, 'headDim' | 'ropeTheta' | 'ropeLayout' | 'ropeScaling'>): Float64Array {
  const half = cfg.headDim / 2;
  const inv = new Float64Array(half);
  if (cfg.ropeLayout === 'adjacent') {
    for (let i = 0; i < half; i++) inv[i] = 1 / Math.pow(cfg.ropeTheta, (2 * i) / cfg.headDim);
    return cfg.ropeScaling ? scale(inv, cfg.ropeScaling, (x) => x) : inv;
  }
  const base = f32(cfg.ropeTheta);
  for (let i = 0; i < half; i++) inv[i] = f32(1 / f32(Math.pow(base, f32((2 * i) / cfg.headDim))));
  return cfg.ropeScaling ? scale(inv, cfg.ropeScaling, f32) : inv;
}

/** The rope type's rescaling of inv_freq, as transformers' _compute_{linear_scaling,llama3}_parameters. */
function scale(inv: Float64Array, s: RopeScaling, round: (x: number) => number): Float64Array {
  const out = new Float64Array(inv.length);
  if (s.type === 'linear') {
    for (let i = 0; i < inv.length; i++) out[i] = round(inv[i] / s.factor);
    return out;
  }
  const old = s.originalMaxPositionEmbeddings;
  const lowFreqWavelen = round(old / s.lowFreqFactor);
  const highFreqWavelen = round(old / s.highFreqFactor);
  // torch casts a python scalar to the tensor's float32 before the op: round every constant too
  const twoPi = round(2 * Math.PI);
  const span = round(s.highFreqFactor - s.lowFreqFactor);
  for (let i = 0; i < inv.length; i++) {
    const wavelen = round(twoPi / inv[i]);
    // wavelen < highFreqWavelen: kept; wavelen > lowFreqWavelen: divided by factor; else smoothed.
    const llama = wavelen > lowFreqWavelen ? round(inv[i] / s.factor) : inv[i];
    const smooth = round((round(old / wavelen) - s.lowFreqFactor) / span);
    const smoothed = round(round(round((1 - smooth) * llama) / s.factor) + round(smooth * llama));
    const medium = !(wavelen < highFreqWavelen) && !(wavelen > lowFreqWavelen);
    out[i] = medium ? smoothed : llama;
  }
  return out;
}

/** The rotary angle at position t for frequency inv (float32 product for HF, float64 for llama2.c). */
export function ropeAngle(layout: LlamaConfig['ropeLayout'], t: number, inv: number): number {
  return layout === 'adjacent' ? t * inv : f32(t * inv);
}
