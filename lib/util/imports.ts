/**
 * The import graph of the project's own TypeScript sources: which files a file imports
 * (static imports, `import type`, re-exports, `import()` and `require()`, as the TypeScript
 * compiler's own pre-processor reads them), and the transitive closure of a set of files. Only
 * relative imports are followed (packages are not the project's code).
 *
 * TypeScript is loaded lazily, only when sources are read: an installed package (dist/ only,
 * no devDependencies) never needs it.
 */
import * as fs from 'fs';
import * as path from 'path';

type PreProcess = (source: string, readImportFiles: boolean, detectJavaScriptImports: boolean) => { importedFiles: { fileName: string }[] };

let preProcess: PreProcess | null | undefined;

function preProcessor(): PreProcess | null {
  if (preProcess === undefined) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      preProcess = (require('typescript') as { preProcessFile: PreProcess }).preProcessFile;
    } catch {
      preProcess = null;
    }
  }
  return preProcess;
}

/** Whether the import graph can be read here (the TypeScript compiler is installed). */
export function importGraphAvailable(): boolean {
  return preProcessor() !== null;
}

/**
 * The project files (root-relative, posix, with `.ts`) that `source`, the text of `fileRel`,
 * imports with a relative specifier: `./x` is `x.ts` or `x/index.ts`, whichever exists under `root`.
 */
export function relativeImports(root: string, fileRel: string, source: string): string[] {
  const pre = preProcessor();
  if (!pre) throw new Error('the TypeScript compiler (typescript) is not installed: cannot read imports');
  const out: string[] = [];
  for (const { fileName } of pre(source, true, true).importedFiles) {
    if (!fileName.startsWith('.')) continue;
    const base = path.posix.normalize(path.posix.join(path.posix.dirname(fileRel), fileName)).replace(/\.(js|ts)$/, '');
    const hit = [`${base}.ts`, `${base}/index.ts`].find((f) => fs.existsSync(path.join(root, f)));
    if (hit) out.push(hit);
  }
  return out;
}

/**
 * Every file reachable from `entries` (root-relative `.ts` paths) through relative imports,
 * entries included, sorted. An entry that does not exist is left out.
 */
export function importClosure(root: string, entries: readonly string[]): string[] {
  const seen = new Set<string>();
  const stack = entries.filter((f) => fs.existsSync(path.join(root, f)));
  while (stack.length) {
    const f = stack.pop()!;
    if (seen.has(f)) continue;
    seen.add(f);
    for (const g of relativeImports(root, f, fs.readFileSync(path.join(root, f), 'utf8'))) if (!seen.has(g)) stack.push(g);
  }
  return [...seen].sort();
}
