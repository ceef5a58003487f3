/**
 * Documentation that lives in the repository: docs/README.md links every document in docs/,
 * every relative link in the README and docs/ resolves, and nothing in the repository cites a
 * file outside it (the team's design notes, the shared assets folder by path, a workspace path).
 * The assets folder is reached only through its one setting, lib/assets.ts.
 */
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { ROOT } from './helpers';

const DOCS = path.join(ROOT, 'docs');

/** Markdown links [text](target) that are not URLs or in-page anchors, without their #fragment. */
export function relativeLinks(markdown: string): string[] {
  const out: string[] = [];
  for (const m of markdown.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = m[1];
    if (/^[a-z]+:/i.test(target) || target.startsWith('#')) continue;
    out.push(target.split('#')[0]);
  }
  return out;
}

/**
 * What no file may contain: a citation of the design notes kept beside the repository, a path
 * into the shared folder beside the checkout, a workspace path. Built from pieces so that this
 * file does not match itself.
 */
const OUTSIDE_CITATIONS: RegExp[] = [
  new RegExp(['DESIGN', 'md'].join('\\.')),
  new RegExp(['\\.\\.', 'shared'].join('/')),
  new RegExp(['', 'work', ''].join('/')),
  new RegExp(['TEAM', 'RULES'].join('-')),
];
/** The assets setting's own code names its default location. */
const ALLOWED = new Set(['lib/assets.ts']);

export function outsideCitations(files: { rel: string; text: string }[]): string[] {
  const hits: string[] = [];
  for (const { rel, text } of files) {
    if (ALLOWED.has(rel)) continue;
    text.split('\n').forEach((line, i) => {
      for (const re of OUTSIDE_CITATIONS) if (re.test(line)) hits.push(`${rel}:${i + 1}: ${line.trim().slice(0, 120)}`);
    });
  }
  return hits;
}

/** The repository's files: tracked plus new ones git does not ignore. */
function repositoryFiles(): string[] {
  const r = spawnSync('git', ['ls-files', '--cached', '--others', '--exclude-standard', '-z'], { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`git ls-files failed: ${r.stderr}`);
  return r.stdout.split('\0').filter((f) => f.length > 0 && fs.existsSync(path.join(ROOT, f)));
}

describe('docs', () => {
  test('docs/README.md links every document in docs/', () => {
    const docs = fs.readdirSync(DOCS).filter((f) => f.endsWith('.md') && f !== 'README.md');
    expect(docs.length).toBeGreaterThan(0);
    const linked = new Set(relativeLinks(fs.readFileSync(path.join(DOCS, 'README.md'), 'utf8')).map((l) => path.normalize(l)));
    expect(docs.filter((d) => !linked.has(d))).toEqual([]);
  });

  test('every relative link in README.md and docs/ points to a file or folder that exists', () => {
    const pages = ['README.md', ...fs.readdirSync(DOCS).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
    const broken: string[] = [];
    for (const page of pages) {
      for (const link of relativeLinks(fs.readFileSync(path.join(ROOT, page), 'utf8'))) {
        if (link && !fs.existsSync(path.join(ROOT, path.dirname(page), link))) broken.push(`${page} -> ${link}`);
      }
    }
    expect(broken).toEqual([]);
    expect(relativeLinks('[a](docs/x.md#s) [b](https://x.org) [c](#top) [d](y.md "t")')).toEqual(['docs/x.md', 'y.md']);
  });

  test('nothing in the repository cites a file outside it', () => {
    // the checker itself: it must catch each kind of citation
    const planted = `see ${['DESIGN', 'md'].join('.')} section 5, ${['..', 'shared', 'assets'].join('/')}, ${['', 'work', 'x'].join('/')}`;
    expect(outsideCitations([{ rel: 'x.ts', text: `// ${planted}` }])).toHaveLength(3);
    const files = repositoryFiles()
      .map((rel) => ({ rel, buf: fs.readFileSync(path.join(ROOT, rel)) }))
      .filter(({ buf }) => !buf.includes(0)) // text files only
      .map(({ rel, buf }) => ({ rel, text: buf.toString('utf8') }));
    expect(files.length).toBeGreaterThan(50);
    expect(outsideCitations(files)).toEqual([]);
  });
});
