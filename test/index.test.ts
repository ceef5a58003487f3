/**
 * The package's public API (package.json "main" -> lib/index.ts): the built entry exists and
 * exports what lib/index.ts declares, and the documented example runs end to end.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as api from '../lib/index';
import { ROOT } from './helpers';

beforeAll(async () => {
  await api.initBackend('wasm');
});

describe('public API', () => {
  test('package.json main is the build of lib/index.ts and exports the same names', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { main: string };
    expect(pkg.main).toBe('dist/lib/index.js');
    const main = path.join(ROOT, pkg.main);
    expect(fs.existsSync(main)).toBe(true); // npm test builds first
    const built = require(main) as Record<string, unknown>;
    expect(Object.keys(built).sort()).toEqual(Object.keys(api).sort());
    for (const name of ['openModel', 'pruneModel', 'evaluateSource', 'registerStrategy', 'saveModel', 'Rng', 'CrepeError']) {
      expect(typeof built[name]).toBe('function');
    }
  });

  test('the documented example: open, prune with Wanda at 50% per row, evaluate', () => {
    const model = api.openModel('stories260K');
    try {
      expect(api.listStrategies()).toEqual(expect.arrayContaining(['magnitude', 'wanda', 'ria', 'crepe', 'sparsegpt']));
      const structure = api.parseStructure('unstructured', 0.5, 'row');
      const pruned = api.pruneModel(model, {
        method: 'wanda',
        params: api.resolveParams(api.getStrategy('wanda')),
        structure,
        propagate: 'pruned',
        calibration: { dataset: 'tinystories', nsamples: 4, seqlen: 128, seed: 0 },
      });
      expect(pruned.report.sparsity).toBe(0.5); // rows 64 and 172 wide: floor(in / 2) is exactly half
      const opts = { seqlen: 128, maxWindows: 2 };
      const [dense] = api.evaluateSource(model, model.source, ['tinystories'], opts);
      const [after] = api.evaluateSource(model, pruned.source, ['tinystories'], opts);
      expect(Number.isFinite(after.ppl)).toBe(true);
      expect(after.ppl).toBeGreaterThan(dense.ppl);
    } finally {
      model.source.close();
    }
  });

  test('the documented recipe example gives what the same run through pruneModel and evaluateSource gives', async () => {
    const calibration = { dataset: 'tinystories', nsamples: 4, seqlen: 128, seed: 0 };
    const outcome = await api.runRecipe(api.parseRecipe({ model: 'stories260K', method: 'wanda', calibration, eval: [{ dataset: 'tinystories', seqlen: 128, maxWindows: 2 }] }));
    const model = api.openModel('stories260K');
    try {
      const pruned = api.pruneModel(model, { method: 'wanda', params: api.resolveParams(api.getStrategy('wanda')), structure: api.parseStructure('unstructured', 0.5, 'row'), propagate: 'pruned', calibration });
      const [dense] = api.evaluateSource(model, model.source, ['tinystories'], { seqlen: 128, maxWindows: 2 });
      const [after] = api.evaluateSource(model, pruned.source, ['tinystories'], { seqlen: 128, maxWindows: 2 });
      expect(outcome.record.results.eval[0]).toMatchObject({ densePpl: dense.ppl, ppl: after.ppl, windows: 2, seqlen: 128 });
      expect(outcome.report.layers).toEqual(pruned.report.layers);
      expect(outcome.record.recipe.group).toBe('row');
    } finally {
      model.source.close();
    }
  });
});
