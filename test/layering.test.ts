/**
 * Layering: no module imports from a layer above its own. The order, lowest first, is the
 * table below (docs/architecture.md explains it); a module may import from its own layer and
 * from any layer below. Imports are read with the TypeScript compiler's own pre-processor
 * (static imports, `import type`, re-exports, dynamic import() and require()), so the check
 * sees what the compiler sees.
 */
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import { ROOT, sourceFiles } from './helpers';

/**
 * Units are the folders under lib/ (lib/model, lib/search, ...) and the files directly in lib/
 * (lib/errors.ts -> 'errors'); scripts/ is one unit above all of lib.
 */
export const LAYERS: readonly (readonly string[])[] = [
  ['errors', 'util', 'io', 'assets', 'backend', 'version'], // foundation: no crepe concepts
  ['tokenizers'],
  ['model', 'data', 'plan'], // checkpoints and runtime; datasets; memory planning
  ['prune', 'eval'], // pruning pipeline and strategies; perplexity evaluation
  ['search'], // hyperparameter search over the pruning pipeline
  ['recipe'], // one run description (schema, resolution, runRecipe): what the CLI, sweeps and searches run
  ['experiments'], // sweeps, reports, search comparisons (configs + runners)
  ['cli'], // yargs commands: argument parsing and printing only
  ['index'], // lib/index.ts: the package's public API
  ['scripts'], // executables: the CLI entry, benchmarks
];

function layerOf(unit: string): number {
  const i = LAYERS.findIndex((layer) => layer.includes(unit));
  if (i < 0) throw new Error(`'${unit}' is not in the layer table of test/layering.test.ts: add it to the layer it belongs to`);
  return i;
}

/** The unit of a repository-relative path: 'lib/search/pho.ts' -> 'search', 'scripts/x.ts' -> 'scripts'. */
export function unitOf(rel: string): string | null {
  const parts = rel.split('/');
  if (parts[0] === 'scripts') return 'scripts';
  if (parts[0] !== 'lib') return null; // test/, node_modules/: outside the layering
  return parts.length === 2 ? parts[1].replace(/\.ts$/, '') : parts[1];
}

/** Relative imports of one source text, as repository-relative paths (extension-less). */
function relativeImports(fileRel: string, source: string): string[] {
  const info = ts.preProcessFile(source, true, true);
  return info.importedFiles
    .map((f) => f.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => path.posix.normalize(path.posix.join(path.posix.dirname(fileRel), spec)));
}

/** Every import that goes from a lower layer to a higher one, as 'from -> to' lines. */
export function layerViolations(files: { rel: string; source: string }[]): string[] {
  const out: string[] = [];
  for (const { rel, source } of files) {
    const from = unitOf(rel);
    if (from === null) continue;
    const fromLayer = layerOf(from);
    for (const target of relativeImports(rel, source)) {
      const to = unitOf(target);
      if (to === null) {
        out.push(`${rel} -> ${target} (outside lib/ and scripts/)`);
        continue;
      }
      if (layerOf(to) > fromLayer) out.push(`${rel} -> ${target} (${from} is below ${to})`);
    }
  }
  return out;
}

describe('layering', () => {
  test('the checker flags an upward import and passes a downward one', () => {
    const files = [
      { rel: 'lib/data/datasets.ts', source: "import { Rng } from '../search/random';\nimport { CrepeError } from '../errors';" },
      { rel: 'lib/experiments/x.ts', source: "export { DEFAULT_PROXY } from '../cli/search';\nconst m = require('../model/types');" },
      { rel: 'lib/search/pho.ts', source: "import type { ProxyName } from './proxies';\nimport { Rng } from '../util/random';" },
      { rel: 'lib/prune/y.ts', source: "import '../../scripts/bench';" },
    ];
    expect(layerViolations(files)).toEqual([
      'lib/data/datasets.ts -> lib/search/random (data is below search)',
      'lib/experiments/x.ts -> lib/cli/search (experiments is below cli)',
      'lib/prune/y.ts -> scripts/bench (prune is below scripts)',
    ]);
    expect(() => layerViolations([{ rel: 'lib/newthing/a.ts', source: '' }])).toThrow(/not in the layer table/);
  });

  test('no module in lib/ or scripts/ imports from a higher layer', () => {
    const files = [...sourceFiles('lib'), ...sourceFiles('scripts')].map((rel) => ({
      rel,
      source: fs.readFileSync(path.join(ROOT, rel), 'utf8'),
    }));
    expect(files.length).toBeGreaterThan(50);
    expect(layerViolations(files)).toEqual([]);
  });
});
