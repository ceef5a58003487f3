/**
 * One model, two file layouts: stories260K as llama2.c (RoPE pairs (2i, 2i+1) in the rows of q
 * and k) and as its Hugging Face conversion (rotate_half order). Pruning must give the same
 * masks either way, for every method and structure; CRePE's window sums are the one score that
 * sees row neighbours, so it scores q/k in the canonical HF order.
 */
import { initBackend } from '../lib/backend';
import { halfToAdjacentOrder, permuteRows, writeHfModel } from '../lib/model/convert';
import { openModel } from '../lib/model/resolve';
import { pruneModel } from '../lib/prune/pipeline';
import { Structure } from '../lib/prune/select';
import { getStrategy, listStrategies, resolveParams } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { makeTmp, rmTmp } from './helpers';

let tmp: string;
let hfDir: string;
beforeAll(async () => {
  await initBackend('wasm');
  tmp = makeTmp('crepe-layout-');
  hfDir = `${tmp}/stories260K-hf`;
  const m = openModel('stories260K');
  writeHfModel(m.source, hfDir, { dtype: 'F32', tokenizer: m.tokenizerPath });
  m.source.close();
});
afterAll(() => rmTmp(tmp));

const calibration = { dataset: 'tinystories', nsamples: 4, seqlen: 128, seed: 0 };

/** Every linear's keep mask, with q/k of an HF file put back into llama2.c row order. */
function masksOf(spec: string, method: string, params: Record<string, number>, structure: Structure): Map<string, Uint8Array> {
  const model = openModel(spec);
  const cfg = model.source.config;
  const masks = new Map<string, Uint8Array>();
  pruneModel(
    model,
    { method, params: resolveParams(getStrategy(method), params), structure, calibration, propagate: 'pruned' },
    {
      onLayer: ({ block, name, mask }) => {
        const qk = name === 'q' || name === 'k';
        const back = cfg.ropeLayout === 'half' && qk ? halfToAdjacentOrder(name === 'q' ? cfg.nHeads : cfg.nKvHeads, cfg.headDim) : null;
        masks.set(`${block}.${name}`, back ? permuteRows(mask, cfg.dim, back) : mask);
      },
    },
  );
  model.source.close();
  return masks;
}

test('the HF conversion really reorders the q/k rows (so the comparison below is not trivial)', () => {
  const ll = openModel('stories260K');
  const hf = openModel(hfDir);
  expect([ll.source.config.ropeLayout, hf.source.config.ropeLayout]).toEqual(['adjacent', 'half']);
  const q = ll.source.readBlock(0).linears.q;
  const qHf = hf.source.readBlock(0).linears.q;
  const { nHeads, headDim, dim } = hf.source.config;
  expect(Buffer.from(qHf.buffer).equals(Buffer.from(q.buffer))).toBe(false);
  expect(Array.from(permuteRows(qHf, dim, halfToAdjacentOrder(nHeads, headDim)))).toEqual(Array.from(q));
  ll.source.close();
  hf.source.close();
});

const STRUCTURES: Structure[] = [
  { kind: 'unstructured', group: 'matrix', sparsity: 0.5 },
  { kind: 'unstructured', group: 'row', sparsity: 0.5 },
  { kind: 'nm', n: 2, m: 4 },
];

// Every registered method at its defaults (crepe's are gamma 0.03, 3x3), plus CRePE with a
// strong, tall window where the row order matters most.
const RUNS: [string, Record<string, number>][] = [...listStrategies().map((m): [string, Record<string, number>] => [m, {}]), ['crepe', { gamma: 0.3, kh: 5, kw: 3 }]];

describe.each(RUNS)('%s %j', (method, params) => {
  test.each(STRUCTURES)('llama2.c and HF layouts give identical masks: %j', (structure) => {
    const a = masksOf('stories260K', method, params, structure);
    const b = masksOf(hfDir, method, params, structure);
    expect(a.size).toBe(35);
    const differing: string[] = [];
    for (const [k, m] of a) if (!Buffer.from(m).equals(Buffer.from(b.get(k)!))) differing.push(k);
    expect(differing).toEqual([]);
  });
});
