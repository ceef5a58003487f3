/**
 * The package ships type declarations: a TypeScript project outside the repository that depends
 * on crepe (node_modules/crepe linked to the repository, dist built) type-checks a file using
 * the public API under `strict`, with no TS7016 ("could not find a declaration file"), and the
 * types are real (a wrong argument is an error, not `any`).
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { ROOT } from './helpers';

const USER_CODE = `import {
  openModel, pruneModel, evaluateSource, saveModel, parseStructure, resolveParams, getStrategy,
  evaluateZeroshot, parseTaskList, planSweep, runSweep, phoSearch, hillClimbSearch, calibrateOnce,
  writeModelCard, prunedModelCard, CrepeError,
  type ModelCardInfo, type EvalRecord, type PruneOutcome, type ZeroshotResult, type SweepSummary,
} from 'crepe';

export async function main(): Promise<number> {
  const model = openModel('stories260K');
  const outcome: PruneOutcome = pruneModel(model, {
    method: 'wanda',
    params: resolveParams(getStrategy('wanda')),
    structure: parseStructure('unstructured', 0.5, 'row'),
    propagate: 'pruned',
    calibration: { dataset: 'tinystories', nsamples: 4, seqlen: 64, seed: 0 },
  });
  const records: EvalRecord[] = evaluateSource(model, outcome.source, ['tinystories'], { seqlen: 64, maxWindows: 1 });
  const zs: ZeroshotResult = await evaluateZeroshot(model, outcome.source, parseTaskList('arc_easy'), { limit: 2 });
  const card: ModelCardInfo = prunedModelCard({ model: 'stories260K', recipe: { method: 'wanda' }, sparsity: outcome.report.sparsity, dtype: 'F32', codeVersion: 'x' });
  writeModelCard('/nonexistent', card);
  saveModel(outcome.source, '/nonexistent/out', { dtype: 'BF16', card });
  const summary: SweepSummary = await runSweep(planSweep('sweep.json'), 1, 'wasm');
  void [phoSearch, hillClimbSearch, calibrateOnce, zs, summary];
  // @ts-expect-error the sparsity of a structure is a number
  parseStructure('unstructured', '0.5', 'row');
  if (records[0].ppl > 0) throw new CrepeError('never');
  return records[0].ppl;
}
`;

test('a package outside the repository type-checks against crepe (strict, no TS7016)', () => {
  const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { types?: string };
  expect(pkg.types).toBe('dist/lib/index.d.ts');
  expect(fs.existsSync(path.join(ROOT, pkg.types!))).toBe(true); // npm test builds first

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-user-'));
  try {
    expect(path.relative(ROOT, dir).startsWith('..')).toBe(true);
    fs.mkdirSync(path.join(dir, 'node_modules'));
    fs.symlinkSync(ROOT, path.join(dir, 'node_modules', 'crepe'), 'dir');
    fs.writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'crepe-user', private: true, dependencies: { crepe: `file:${ROOT}` } }));
    fs.writeFileSync(path.join(dir, 'main.ts'), USER_CODE);
    fs.writeFileSync(
      path.join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: {
          strict: true,
          noEmit: true,
          target: 'ES2022',
          module: 'commonjs',
          moduleResolution: 'node',
          esModuleInterop: true,
          // As most projects (and crepe itself): declaration files are not re-checked (tfjs's
          // fail strict checks of their own). crepe's are emitted by a build that type-checks
          // them (a declaration tsc cannot write fails the build), and the use below is checked.
          skipLibCheck: true,
          // A Node project has @types/node; take crepe's copy rather than installing one.
          typeRoots: [path.join(ROOT, 'node_modules', '@types')],
          types: ['node'],
        },
        files: ['main.ts'],
      }),
    );
    const tsc = path.join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    const r = spawnSync(process.execPath, [tsc, '-p', dir, '--pretty', 'false'], { encoding: 'utf8', timeout: 120_000 });
    expect(r.error).toBeUndefined();
    expect({ code: r.status, diagnostics: `${r.stdout}${r.stderr}` }).toEqual({ code: 0, diagnostics: '' });
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 150_000);
