/**
 * The streaming evaluator against the resident one on the real models, activation and block
 * spilling (exact round trips, F16 rounding against known half-precision values), and the
 * pruning pipeline with spilled blocks and activations giving the in-memory results.
 */
import { initBackend } from '../lib/backend';
import { evaluateSource } from '../lib/eval/evaluate';
import { openModel } from '../lib/model/resolve';
import { BlockWeights } from '../lib/model/types';
import { BlockSpill, createActivationStore, floatToHalf, halfToFloat } from '../lib/plan/spill';
import { pruneModel } from '../lib/prune/pipeline';
import { parseStructure } from '../lib/prune/select';
import { MemorySource, mulberry32, randomArray, tinyConfig } from './helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

describe.each(['stories260K', 'babyllama-char'])('%s: streaming = resident', (name) => {
  test('PPL on tinystories and wikitext2 to 1e-6 relative (f32 and disk hidden states)', () => {
    const model = openModel(name);
    try {
      const opts = { maxWindows: 12 };
      const resident = evaluateSource(model, model.source, ['tinystories', 'wikitext2'], { ...opts, evaluator: 'resident' });
      const streamed = evaluateSource(model, model.source, ['tinystories', 'wikitext2'], { ...opts, evaluator: 'streaming' });
      const disk = evaluateSource(model, model.source, ['tinystories', 'wikitext2'], { ...opts, evaluator: 'streaming', storage: 'disk' });
      for (let k = 0; k < 2; k++) {
        expect(resident[k].windows).toBe(12);
        expect(streamed[k].windows).toBe(12);
        expect(Math.abs(streamed[k].ppl / resident[k].ppl - 1)).toBeLessThan(1e-6);
        expect(Math.abs(disk[k].ppl / resident[k].ppl - 1)).toBeLessThan(1e-6);
      }
      // F16 hidden states round: close, not equal (the planner never picks them for a PPL by itself)
      const half = evaluateSource(model, model.source, ['tinystories'], { ...opts, evaluator: 'streaming', storage: 'f16' });
      expect(Math.abs(half[0].ppl / resident[0].ppl - 1)).toBeLessThan(2e-2);
    } finally {
      model.source.close();
    }
  });
});

/** Wanda 50% per row, 8 x 128 calibration windows, next-block inputs from the pruned block. */
const WANDA_SPEC = {
  method: 'wanda',
  params: {},
  structure: parseStructure('unstructured', 0.5, 'row'),
  calibration: { dataset: 'tinystories', nsamples: 8, seqlen: 128, seed: 0 },
  propagate: 'pruned' as const,
};

test('pruning with spilled blocks and disk activations = in memory (masks, pruned PPL streamed)', () => {
  const model = openModel('stories260K');
  try {
    const inMemory = pruneModel(model, WANDA_SPEC);
    const spilled = pruneModel(model, { ...WANDA_SPEC, spillBlocks: true, activationStorage: 'disk' });
    for (let b = 0; b < model.source.config.nLayers; b++) {
      const a = inMemory.source.readBlock(b);
      const s = spilled.source.readBlock(b);
      for (const l of Object.keys(a.linears) as (keyof BlockWeights['linears'])[]) expect(s.linears[l]).toEqual(a.linears[l]);
      expect(s.norms).toEqual(a.norms);
    }
    const r1 = evaluateSource(model, inMemory.source, ['tinystories'], { maxWindows: 6, evaluator: 'resident' });
    const r2 = evaluateSource(model, spilled.source, ['tinystories'], { maxWindows: 6, evaluator: 'streaming' });
    expect(Math.abs(r2[0].ppl / r1[0].ppl - 1)).toBeLessThan(1e-6);
    expect(r1[0].ppl).toBeGreaterThan(4.5); // pruned, not dense (dense is ~4.2)
  } finally {
    model.source.close();
  }
});

test('F16 activations for calibration: masks within 2% of the F32 ones', () => {
  const model = openModel('stories260K');
  try {
    const a = pruneModel(model, WANDA_SPEC).source.readBlock(4).linears.down;
    const b = pruneModel(model, { ...WANDA_SPEC, activationStorage: 'f16' }).source.readBlock(4).linears.down;
    let differ = 0;
    for (let k = 0; k < a.length; k++) if ((a[k] === 0) !== (b[k] === 0)) differ++;
    expect(differ / a.length).toBeLessThan(0.02);
  } finally {
    model.source.close();
  }
});

test('half precision: known encodings, round to nearest even, subnormals, overflow', () => {
  const cases: [number, number][] = [
    [1, 0x3c00], [-2, 0xc000], [65504, 0x7bff], [65520, 0x7c00], [1e9, 0x7c00], [2 ** -24, 0x0001], [2 ** -14, 0x0400],
    [0.1, 0x2e66], [1 + 2 ** -11, 0x3c00], [1 + 3 * 2 ** -11, 0x3c02], [0, 0], [Infinity, 0x7c00], [2 ** -26, 0],
  ];
  const enc = floatToHalf(Float32Array.from(cases.map((c) => c[0])));
  expect(Array.from(enc)).toEqual(cases.map((c) => c[1]));
  expect(Number.isNaN(halfToFloat(floatToHalf(Float32Array.of(NaN)))[0])).toBe(true);
  const dec = halfToFloat(Uint16Array.of(0x3c00, 0xc000, 0x7bff, 0x0001, 0x2e66));
  expect(Array.from(dec)).toEqual([1, -2, 65504, 2 ** -24, Math.fround(0.0999755859375)]);
});

test('activation stores: disk round trip is exact, in place updates, unknown record refused', () => {
  const rng = mulberry32(3);
  const data = [randomArray(1000, rng), randomArray(1000, rng), randomArray(1000, rng)];
  for (const kind of ['f32', 'disk'] as const) {
    const s = createActivationStore(kind, 3, 1000);
    expect(() => s.get(1)).toThrow(/never stored/);
    data.forEach((d, i) => s.set(i, d));
    s.set(1, data[2]);
    expect(s.get(0)).toEqual(data[0]);
    expect(s.get(1)).toEqual(data[2]);
    s.dispose();
  }
});

test('block spill carries every field generically (e.g. biases a model family adds)', () => {
  const src = new MemorySource(tinyConfig(), 5);
  const block = { ...src.readBlock(1), biases: { q: Float32Array.of(1, 2, 3), v: Float32Array.of(4) }, note: null } as unknown as BlockWeights;
  const spill = new BlockSpill();
  spill.put(7, block);
  spill.put(2, src.readBlock(0));
  expect(spill.get(7)).toEqual(block);
  expect(spill.get(2)).toEqual(src.readBlock(0));
  expect(() => spill.get(3)).toThrow(/not in the spill file/);
  spill.close();
});
