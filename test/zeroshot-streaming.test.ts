/**
 * The streaming zero-shot evaluator (one block on the device, every pack's hidden states on the
 * host or in a spill file) against the resident one on both embedded models and real task files:
 * the same packs, kernels and order, so every request's log-likelihood and greedy flag must be
 * bit-identical; plus the memory plan that picks it for a 1B-shaped model.
 */
import { initBackend } from '../lib/backend';
import { evaluateZeroshot, prepareTasks, zeroshotLayout } from '../lib/eval/zeroshot/evaluate';
import { PAGE_ROWS, scoreStreaming, streamingLayout } from '../lib/eval/zeroshot/streaming';
import { packBatches, packedLength, scorePacked } from '../lib/eval/zeroshot/loglikelihood';
import { parseTaskList } from '../lib/eval/zeroshot/tasks';
import { openModel } from '../lib/model/resolve';
import { LlamaModel } from '../lib/model/runtime';
import { LlamaConfig } from '../lib/model/types';
import { GiB, planMemory, residentDeviceBytes, zeroshotPlanRequest } from '../lib/plan/memory';
import { MemorySource, tinyConfig } from './helpers';
import { pruneModel } from '../lib/prune/pipeline';
import { parseStructure } from '../lib/prune/select';
import '../lib/prune/strategies';

beforeAll(async () => {
  await initBackend('wasm');
});

describe.each([
  ['stories260K', 'arc_easy,piqa,lambada_openai', 12],
  ['babyllama-char', 'winogrande,boolq,arc_challenge', 6],
] as const)('%s: streaming scores equal resident scores bit for bit', (name, tasks, limit) => {
  const model = openModel(name);
  afterAll(() => model.source.close());
  const specs = parseTaskList(tasks);

  test.each(['f32', 'disk'] as const)('hidden states %s, every request', async (storage) => {
    const resident = await evaluateZeroshot(model, model.source, specs, { limit, evaluator: 'resident', bootstrapIters: 0 });
    const streaming = await evaluateZeroshot(model, model.source, specs, { limit, evaluator: 'streaming', storage, bootstrapIters: 0 });
    let requests = 0;
    resident.tasks.forEach((t, i) => {
      t.perDoc.forEach((d, k) => {
        const s = streaming.tasks[i].perDoc[k];
        d.scores.forEach((r, j) => {
          expect(Object.is(s.scores[j].ll, r.ll)).toBe(true);
          expect(s.scores[j].greedy).toBe(r.greedy);
          requests++;
        });
        expect(s.metrics).toEqual(d.metrics);
      });
      expect(streaming.tasks[i].metrics).toEqual(t.metrics);
    });
    expect(requests).toBeGreaterThan(3 * limit);
  });
});

test("pruned weights (the pipeline's overlay source) stream to the resident scores too", async () => {
  const model = openModel('stories260K');
  try {
    const pruned = pruneModel(model, {
      method: 'wanda',
      params: {},
      structure: parseStructure('unstructured', 0.5, 'row'),
      calibration: { dataset: 'tinystories', nsamples: 2, seqlen: 64, seed: 0 },
      propagate: 'pruned',
    }).source;
    const specs = parseTaskList('winogrande,lambada_openai');
    const resident = await evaluateZeroshot(model, pruned, specs, { limit: 5, evaluator: 'resident', bootstrapIters: 0 });
    const streaming = await evaluateZeroshot(model, pruned, specs, { limit: 5, evaluator: 'streaming', bootstrapIters: 0 });
    const dense = await evaluateZeroshot(model, model.source, specs, { limit: 5, evaluator: 'streaming', bootstrapIters: 0 });
    const lls = (r: typeof resident) => r.tasks.flatMap((t) => t.perDoc.flatMap((d) => d.scores.map((x) => x.ll)));
    expect(lls(streaming)).toEqual(lls(resident));
    // the pruned weights were used, not the dense ones
    expect(lls(streaming)).not.toEqual(lls(dense));
  } finally {
    model.source.close();
  }
});

test('a pack longer than the page size and packs of one item each go through the streaming path unchanged', () => {
  // a random tiny model with grouped kv heads and tied embeddings; items longer than PAGE_ROWS
  const cfg: LlamaConfig = tinyConfig({ nLayers: 3, nKvHeads: 2 });
  const src = new MemorySource(cfg, 7);
  const item = (len: number, choices: number, seed: number) =>
    Array.from({ length: choices }, (_, c) => {
      const input = Int32Array.from({ length: len + c }, (_, t) => (seed * 31 + t * 7 + c * 3) % cfg.vocabSize);
      return { input, cont: Int32Array.from([(seed + c) % cfg.vocabSize, input[input.length - 1]]) };
    });
  const items = [item(PAGE_ROWS + 5, 3, 1), item(4, 2, 2), item(2 * PAGE_ROWS, 1, 3), item(9, 4, 4)];
  const runtime = LlamaModel.fromSource(src);
  for (const budget of [1, 64, 10_000]) {
    const batches = packBatches(items, budget);
    const expected = new Array(items.length);
    for (const b of batches) scorePacked(runtime, b.map((i) => items[i])).forEach((s, k) => (expected[b[k]] = s));
    expect(scoreStreaming(src, items, batches)).toEqual(expected);
    const layout = streamingLayout(items, batches);
    const rows = batches.map((b) => b.reduce((a, i) => a + packedLength(items[i]), 0));
    expect(layout.longestPack).toBe(Math.max(...rows));
    expect(layout.storedRows).toBe(rows.reduce((a, r) => a + Math.ceil(r / PAGE_ROWS) * PAGE_ROWS, 0));
  }
  runtime.dispose();
});

describe('memory plan', () => {
  // TinyLlama-1.1B's shape
  const tiny1b: LlamaConfig = { ...tinyConfig(), dim: 2048, hiddenDim: 5632, nLayers: 22, nHeads: 32, nKvHeads: 4, headDim: 64, vocabSize: 32000, maxSeqLen: 2048, tiedEmbeddings: false };

  test('the 1B shape does not fit resident in the wasm heap; the plan streams it within 3.2 GiB', () => {
    expect(residentDeviceBytes(tiny1b)).toBeGreaterThan(3.2 * GiB);
    const base = { storedRows: 100_000, longestPack: 512, jobs: 1, limit: 16 * GiB, storage: 'auto' as const, wasm: true, diskFree: 100 * GiB };
    const auto = planMemory(zeroshotPlanRequest(tiny1b, { ...base, evaluator: 'auto' }));
    expect(auto.fits).toBe(true);
    expect(auto.evaluator).toBe('streaming');
    expect(auto.evalStorage).toBe('f32');
    const resident = planMemory(zeroshotPlanRequest(tiny1b, { ...base, evaluator: 'resident' }));
    expect(resident.fits).toBe(false);
    expect(resident.refusal).toMatch(/wasm heap.*--evaluator streaming/);
    // hidden states: 100k rows x 2048 floats = 0.76 GiB in memory; a small budget spills them
    const tight = planMemory(zeroshotPlanRequest(tiny1b, { ...base, evaluator: 'auto', limit: auto.hostBytes - 0.5 * GiB }));
    expect(tight.fits).toBe(true);
    expect(tight.evalStorage).toBe('disk');
    expect(tight.diskBytes).toBeGreaterThanOrEqual(100_000 * 2048 * 4);
  });

  test('the small models stay resident; the plan counts the stored rows of the real tasks', () => {
    const model = openModel('stories260K');
    try {
      const prepared = prepareTasks(model, parseTaskList('arc_easy'), { limit: 20 });
      const layout = zeroshotLayout(prepared);
      expect(layout.items).toBe(20);
      expect(layout.storedRows % PAGE_ROWS).toBe(0);
      const plan = planMemory(zeroshotPlanRequest(model.source.config, { ...layout, jobs: 1, limit: 8 * GiB, storage: 'auto', evaluator: 'auto', wasm: true }));
      expect(plan.evaluator).toBe('resident');
    } finally {
      model.source.close();
    }
  });
});
