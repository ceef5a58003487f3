/**
 * The proxy contract every registered proxy must pass, and the worked example of
 * docs/extending-search.md: a proxy added in one file plus one registration line is offered by
 * `crepe search --proxy`, `crepe proxy-study` and the search comparison with no other edit.
 */
import * as fs from 'fs';
import * as path from 'path';
import { initBackend } from '../lib/backend';
import { CrepeError } from '../lib/errors';
import { parseSearchCompareConfig } from '../lib/experiments/search-config';
import { openModel } from '../lib/model/resolve';
import { InputStats, emptyStats } from '../lib/prune/stats';
import { getStrategy } from '../lib/prune/strategy';
import '../lib/prune/strategies';
import { calibrateOnce, evaluateConfiguration } from '../lib/search/objective';
import { phoSearch } from '../lib/search/pho';
import { LayerSample, ProxyAccumulator, getProxy, listProxies, parseProxy, registerProxy } from '../lib/search/proxies';
import { buildSpace } from '../lib/search/space';
import { runProxyStudy } from '../lib/search/study';
import { keptMagnitudeProxy, keptMagnitudeShare } from './fixtures/proxies/kept-magnitude';
import { ROOT } from './helpers';

beforeAll(async () => {
  await initBackend('wasm');
});

/** A deterministic pseudo-random layer with everything any proxy may read. */
function syntheticLayer(rows: number, cols: number, seed: number, withExtras: boolean): LayerSample {
  let s = seed;
  const next = (): number => ((s = (s * 1103515245 + 12345) % 2147483648) / 2147483648);
  const weight = Float32Array.from({ length: rows * cols }, () => next() * 2 - 1);
  const scores = weight.map((w) => Math.abs(w) * (0.5 + next()));
  const mask = Uint8Array.from(scores, (v, k) => (v > 0.5 || k % 5 === 0 ? 1 : 0));
  const stats: InputStats = emptyStats(cols, { keepInputs: withExtras ? 1 : 0 });
  for (let j = 0; j < cols; j++) stats.sumSq[j] = 0.1 + next();
  stats.tokens = 8;
  stats.samples = 1;
  if (withExtras) stats.inputs = [Float32Array.from({ length: 8 * cols }, () => next() - 0.5)];
  const layer: LayerSample = { weight, scores, mask, stats, rows, cols };
  if (withExtras) {
    layer.fisher = Float32Array.from({ length: rows * cols }, () => next());
    layer.outputFisher = Float32Array.from({ length: rows }, () => next());
    layer.fisherTokens = { g: Float32Array.from({ length: 4 * rows }, () => next() - 0.5), x: Float32Array.from({ length: 4 * cols }, () => next() - 0.5), count: 4 };
  }
  return layer;
}

const layers = (withExtras: boolean): LayerSample[] => [syntheticLayer(6, 8, 1, withExtras), syntheticLayer(8, 6, 2, withExtras), syntheticLayer(4, 8, 3, withExtras)];

function valueOf(name: string, ls: readonly LayerSample[]): number {
  const acc = new ProxyAccumulator([name]);
  for (const l of ls) acc.add(l);
  return acc.values()[name];
}

// The worked example registers itself once for the whole file, as its index.ts line would.
registerProxy(keptMagnitudeProxy);

describe('every registered proxy', () => {
  test('at least the built-in ten and the example are registered, names unique', () => {
    const names = listProxies();
    expect(new Set(names).size).toBe(names.length);
    for (const n of ['gini-pruned-scores', 'energy', 'energy-row', 'recon', 'fisher', 'kept-magnitude']) expect(names).toContain(n);
  });

  for (const name of listProxies()) {
    describe(name, () => {
      const def = getProxy(name);
      test('describes itself: name, one-line description, sign +1 or -1', () => {
        expect(def.name).toBe(name);
        expect(def.description.length).toBeGreaterThan(10);
        expect(def.description).not.toMatch(/\n/);
        expect([1, -1]).toContain(def.sign);
        expect(parseProxy(name)).toBe(name);
      });

      test('a finite value, the same when computed again, accumulated layer by layer', () => {
        const ls = layers(true);
        const v = valueOf(name, ls);
        expect(Number.isFinite(v)).toBe(true);
        expect(valueOf(name, layers(true))).toBe(v);
        // the accumulator is finish(accumulate of each layer), in order
        expect(def.finish(ls.map((l) => def.accumulate(l)))).toBe(v);
      });

      test('depends on the mask (pruning everything else changes it)', () => {
        const ls = layers(true);
        const flipped = ls.map((l) => ({ ...l, mask: l.mask.map((m) => 1 - m) }));
        expect(valueOf(name, flipped)).not.toBe(valueOf(name, ls));
      });

      test('what it needs from calibration is declared: without it, a one-line CrepeError', () => {
        const bare = layers(false);
        if (def.needs?.inputs || def.needs?.fisher) {
          expect(() => valueOf(name, bare)).toThrow(CrepeError);
          try {
            valueOf(name, bare);
          } catch (e) {
            expect((e as Error).message).not.toMatch(/\n/);
          }
        } else {
          expect(Number.isFinite(valueOf(name, bare))).toBe(true);
        }
      });
    });
  }

  test('unknown names are a CrepeError listing the registered ones', () => {
    expect(() => parseProxy('no-such-proxy')).toThrow(/unknown proxy 'no-such-proxy' \(known: .*kept-magnitude/);
    expect(() => registerProxy(keptMagnitudeProxy)).toThrow(/registered twice/);
  });
});

describe('the worked example of docs/extending-search.md', () => {
  test('the docs show exactly the fixture file (apart from its import path) and its registration line', () => {
    const docs = fs.readFileSync(path.join(ROOT, 'docs', 'extending-search.md'), 'utf8');
    const blocks = [...docs.matchAll(/```ts\n([\s\S]*?)```/g)].map((m) => m[1]);
    const fixture = fs.readFileSync(path.join(ROOT, 'test', 'fixtures', 'proxies', 'kept-magnitude.ts'), 'utf8');
    expect(blocks[0]).toBe(fixture.replace("from '../../../lib/search/proxy'", "from '../proxy'"));
    expect(blocks[1].trim()).toBe('registerProxy(keptMagnitudeProxy);');
  });

  test('its value on a hand-checked layer: kept |W| share', () => {
    const l = syntheticLayer(2, 2, 7, false);
    const w = Array.from(l.weight, Math.abs);
    const kept = w.reduce((a, v, k) => a + (l.mask[k] ? v : 0), 0);
    expect(keptMagnitudeShare(l)).toBeCloseTo(kept / w.reduce((a, v) => a + v, 0), 12);
  });

  test('offered by crepe search --proxy, crepe proxy-study and the search comparison, and it runs', () => {
    // `--proxy` goes through parseProxy; proxy-study's default list is listProxies()
    expect(parseProxy('kept-magnitude')).toBe('kept-magnitude');
    const proxyStudyCli = fs.readFileSync(path.join(ROOT, 'lib', 'cli', 'proxy-study.ts'), 'utf8');
    expect(proxyStudyCli).toMatch(/\?\? \[\.\.\.listProxies\(\)\]/);
    const config = parseSearchCompareConfig(
      { models: ['stories260K'], structures: [{ name: 'u50', structure: 'unstructured' }], pho: [{ name: 'pho-km', proxies: ['kept-magnitude'], budget: 3 }] },
      'inline.json',
    );
    expect(config.pho[0].proxies).toEqual([{ proxy: 'kept-magnitude', sign: -1 }]);

    const model = openModel('stories260K');
    try {
      const strategy = getStrategy('crepe');
      const structure = { kind: 'unstructured' as const, group: 'matrix' as const, sparsity: 0.5 };
      const setup = calibrateOnce(model, strategy, structure, { dataset: 'tinystories', nsamples: 2, seqlen: 64, seed: 0 }, { statsKind: 'dense', keepInputs: 0 });
      const space = buildSpace(strategy);
      const outcome = phoSearch(setup, space, { proxy: 'kept-magnitude', sign: -1, budget: 3, seed: 0 });
      expect(outcome.log.map((e) => e.measure)).toEqual(['kept-magnitude', 'kept-magnitude', 'kept-magnitude']);
      const [sample] = runProxyStudy(setup, space, { samples: 1, seed: 0, windows: 1, proxies: ['kept-magnitude', 'energy'] });
      expect(sample.proxies['kept-magnitude']).toBeGreaterThan(0.5); // the larger half of |W|-like scores is kept
      expect(evaluateConfiguration(setup, sample.params, { proxies: ['kept-magnitude'] }).proxies['kept-magnitude']).toBe(sample.proxies['kept-magnitude']);
    } finally {
      model.source.close();
    }
  });
});
