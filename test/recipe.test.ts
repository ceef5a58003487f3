/**
 * Recipes (lib/recipe): the schema and its one-line errors, resolution against a real model
 * (every default filled, the resolved recipe a fixed point), and the acceptance that `crepe
 * prune` and `crepe run` on the recipe that command line means give the same masks, weights and
 * perplexities byte for byte, with the run record beside a saved model.
 */
import * as fs from 'fs';
import * as path from 'path';
import { openModel } from '../lib/model/resolve';
import { formatRecipe, loadRecipe, parseRecipe } from '../lib/recipe/schema';
import { resolveRecipe } from '../lib/recipe/resolve';
import { MODELS, makeTmp, oneLineCrepeError, rmTmp, runCli } from './helpers';

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-recipe-');
});
afterAll(() => rmTmp(tmp));

const stories = () => {
  const m = openModel('stories260K');
  const cfg = m.source.config;
  m.source.close();
  return cfg;
};

describe('schema', () => {
  test('a minimal recipe gets the schema defaults; JSON and YAML files read alike', () => {
    const r = parseRecipe({ model: 'stories260K', method: 'wanda' });
    expect(r).toMatchObject({
      params: {},
      structure: 'unstructured',
      allocation: { method: 'uniform' },
      refine: { method: 'none' },
      permute: null,
      calibration: { dataset: 'tinystories', nsamples: 128, seed: 0 },
      propagate: 'pruned',
      memory: { activations: 'auto', evaluator: 'auto' },
      eval: [],
      compareDense: true,
    });
    const json = path.join(tmp, 'r.json');
    const yaml = path.join(tmp, 'r.yaml');
    const input = { model: 'stories260K', method: 'ria', structure: '2:4', permute: { refine: true }, eval: [{ dataset: 'tinystories', maxWindows: 2 }] };
    fs.writeFileSync(json, formatRecipe(input, 'json'));
    fs.writeFileSync(yaml, formatRecipe(input, 'yaml'));
    expect(fs.readFileSync(yaml, 'utf8')).toMatch(/^model: stories260K$/m);
    expect(loadRecipe(yaml)).toEqual(loadRecipe(json));
  });

  test.each<[string, unknown, RegExp]>([
    ['unknown key', { model: 'm', method: 'wanda', sparsty: 0.5 }, /^r\.json: unknown key 'sparsty'$/],
    ['missing method', { model: 'm' }, /^r\.json: method: missing$/],
    ['bad allocation', { model: 'm', method: 'wanda', allocation: { method: 'owls' } }, /^r\.json: allocation\.method: must be one of 'uniform', 'owl'$/],
    ['bad nested value', { model: 'm', method: 'wanda', calibration: { nsamples: 0 } }, /^r\.json: calibration\.nsamples: /],
    ['bad activations', { model: 'm', method: 'wanda', memory: { activations: 'f8' } }, /^r\.json: memory\.activations: must be one of 'auto', 'f32', 'f16', 'disk', got 'f8'$/],
  ])('%s is one line naming the field', (_name, json, message) => {
    expect(oneLineCrepeError(() => parseRecipe(json, 'r.json'))).toMatch(message);
  });

  test('a file that is not JSON is one line', () => {
    const bad = path.join(tmp, 'bad.json');
    fs.writeFileSync(bad, '{"model": ');
    expect(oneLineCrepeError(() => loadRecipe(bad))).toMatch(/bad\.json: invalid JSON: /);
  });
});

describe('resolution against the model', () => {
  test('every default is filled from the model and the method; the resolved recipe resolves to itself', () => {
    const cfg = stories();
    const crepe = resolveRecipe(parseRecipe({ model: 'stories260K', method: 'crepe', allocation: { method: 'owl' }, refine: { method: 'dsnot' }, eval: [{ dataset: 'tinystories' }] }), cfg).recipe;
    expect(crepe.group).toBe('matrix'); // CRePE's reference comparison group
    expect(crepe.sparsity).toBe(0.5);
    expect(crepe.params).toEqual({ alpha: 1, beta: 1, gamma: 0.03, kh: 3, kw: 3, a: 0.5 });
    expect(crepe.calibration.seqlen).toBe(cfg.maxSeqLen);
    expect(crepe.eval).toEqual([{ dataset: 'tinystories', seqlen: cfg.maxSeqLen }]);
    expect(crepe.allocation).toEqual({ method: 'owl', m: 5, lambda: 0.08 });
    expect(crepe.refine).toEqual({ method: 'dsnot', maxCycles: 50, threshold: 0.1, skip: 'mlp' });
    const nm = resolveRecipe(parseRecipe({ model: 'stories260K', method: 'wanda', structure: '2:4', allocation: { method: 'owl' } }), cfg).recipe;
    expect([nm.group, nm.sparsity, nm.allocation]).toEqual([undefined, 0.5, { method: 'owl', m: 5, lambda: 2 }]);
    for (const r of [crepe, nm]) expect(resolveRecipe(parseRecipe(JSON.parse(JSON.stringify(r))), cfg).recipe).toEqual(r);
  });

  test.each<[string, object, RegExp]>([
    ['permutation on unstructured', { method: 'ria', permute: {} }, /^permute applies to N:M structures only/],
    ['group with N:M', { method: 'ria', structure: '2:4', group: 'row' }, /^group applies to unstructured pruning only/],
    ['DSnoT after permutation', { method: 'ria', structure: '2:4', permute: {}, refine: { method: 'dsnot' } }, /^refine dsnot cannot follow permute/],
    ['add-ons on SparseGPT', { method: 'sparsegpt', refine: { method: 'dsnot' } }, /^sparsegpt updates weights itself/],
    ['4:8 on a 172-wide projection', { method: 'wanda', structure: '4:8' }, /multiple of 8/],
    ['a window above the context', { method: 'wanda', eval: [{ dataset: 'tinystories', seqlen: 4096 }] }, /larger than the model's context/],
    ['a spill folder that does not exist', { method: 'wanda', memory: { spillDir: '/no/such/dir' } }, /^memory\.spillDir \/no\/such\/dir is not an existing folder$/],
    ['parameters on the dense recipe', { method: 'dense', params: { a: 1 } }, /^params do not apply to method 'dense'$/],
  ])('%s is refused before any work', (_name, over, message) => {
    const cfg = stories();
    expect(oneLineCrepeError(() => resolveRecipe(parseRecipe({ model: 'stories260K', ...over }), cfg))).toMatch(message);
  });
});

describe('crepe prune and crepe run', () => {
  const FLAGS = ['--model', 'stories260K', '--nsamples', '8', '--calib-seqlen', '128', '--eval', 'tinystories', '--max-windows', '4'];

  test.each([
    ['RIA 2:4 with permutation', ['--method', 'ria', '--structure', '2:4', '--permute']],
    ['Wanda 60% with OWL and DSnoT', ['--method', 'wanda', '--sparsity', '0.6', '--allocation', 'owl', '--refine', 'dsnot']],
  ])('%s: the printed recipe runs to the same masks, saved weights and PPL', (name, method) => {
    const dir = path.join(tmp, name.replace(/\W+/g, '_'));
    fs.mkdirSync(dir);
    const [dumpA, dumpB, saveA, saveB, file] = ['dumpA', 'dumpB', 'a.bin', 'b.bin', 'recipe.yaml'].map((f) => path.join(dir, f));
    const printed = runCli(['prune', ...FLAGS, ...method, '--dump', dumpA, '--save', saveA, '--print-recipe', '--recipe-format', 'yaml']);
    expect(printed.stderr).toBe('');
    expect(printed.code).toBe(0);
    expect(fs.existsSync(dumpA)).toBe(false); // printing runs nothing
    fs.writeFileSync(file, printed.stdout.replace(dumpA, dumpB).replace(saveA, saveB));
    const a = runCli(['prune', ...FLAGS, ...method, '--dump', dumpA, '--save', saveA, '--json'], { timeoutMs: 120_000 });
    const b = runCli(['run', file, '--json'], { timeoutMs: 120_000 });
    expect(a.code).toBe(0);
    expect(b.code).toBe(0);
    const [ja, jb] = [JSON.parse(a.stdout), JSON.parse(b.stdout)];
    expect(jb.eval.map((e: { pruned_ppl: number; dense_ppl: number }) => [e.dense_ppl, e.pruned_ppl])).toEqual(ja.eval.map((e: { pruned_ppl: number; dense_ppl: number }) => [e.dense_ppl, e.pruned_ppl]));
    expect(jb.layers).toEqual(ja.layers);
    const blocks = fs.readdirSync(dumpA).filter((f) => f.startsWith('blocks.'));
    expect(blocks.length).toBe(5);
    for (const f of [...blocks, 'calibration.json']) expect(fs.readFileSync(path.join(dumpB, f)).equals(fs.readFileSync(path.join(dumpA, f)))).toBe(true);
    expect(fs.readFileSync(saveB).equals(fs.readFileSync(saveA))).toBe(true);
    // the run record beside the weights: the resolved recipe and what it measured
    const record = JSON.parse(fs.readFileSync(`${saveA}.recipe.json`, 'utf8'));
    expect(record.recipe).toEqual(ja.recipe);
    expect(record.recipe.calibration).toEqual({ dataset: 'tinystories', nsamples: 8, seqlen: 128, seed: 0 });
    expect(record.results.eval[0].ppl).toBe(ja.eval[0].pruned_ppl);
    expect(record.results.achievedSparsity).toBe(ja.achieved_sparsity);
    expect(record.codeVersion).toBe(ja.code_version);
    // the saved model itself gives the recorded PPL
    const e = runCli(['eval', '--model', saveA, '--tokenizer', MODELS.stories260K.tokenizer(), '--dataset', 'tinystories', '--max-windows', '4', '--json']);
    expect(JSON.parse(e.stdout).ppl).toBe(record.results.eval[0].ppl);
  });

  test('--dry-run shows the resolved recipe and the memory plan; a bad recipe file is one line, nothing written', () => {
    const d = runCli(['prune', '--model', 'stories260K', '--method', 'crepe', '--structure', '2:4', '--dry-run', '--json']);
    expect(d.code).toBe(0);
    const out = JSON.parse(d.stdout);
    expect(out.recipe).toMatchObject({ method: 'crepe', structure: '2:4', calibration: { nsamples: 128, seqlen: 512 } });
    expect(out.memory_plan).toBeDefined();
    const bad = path.join(tmp, 'bad-recipe.json');
    const save = path.join(tmp, 'never.bin');
    fs.writeFileSync(bad, JSON.stringify({ model: 'stories260K', method: 'ria', permute: {}, save: { path: save } }));
    const r = runCli(['run', bad]);
    expect(r.code).toBe(2);
    expect(r.stderr.trim().split('\n')).toEqual([expect.stringMatching(/^crepe: permute applies to N:M structures only/)]);
    expect(fs.existsSync(save)).toBe(false);
  });
});
