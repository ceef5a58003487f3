/**
 * Checks on output paths made before any work starts: an output must not be (or contain) an
 * input or the working directory, two outputs must not overlap, its folder must exist and be
 * writable, and what is already there must be replaceable (see replaceRefusal).
 */
import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../errors';
import { OutputKind, canonicalPath, osCause, replaceRefusal, statPath } from './atomic';

export { canonicalPath };

export interface OutputTarget {
  /** The flag that names it, for messages (e.g. '--save'). */
  flag: string;
  path: string;
  kind: OutputKind;
  /** A folder (true) or a file (false). */
  isDir: boolean;
  /** A 'text' output: what the opening of a previous output of the same kind matches (see replaceRefusal). */
  opening?: RegExp;
}

/** `inner` is `outer` or lies inside it. */
function within(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/**
 * Refuse outputs that would destroy an input, the working directory or another output, or that
 * cannot be written; `force` allows replacing existing content crepe did not write, nothing else.
 */
export function checkOutputs(outputs: OutputTarget[], inputs: string[], opts: { force?: boolean } = {}): void {
  const cwd = canonicalPath(process.cwd());
  const ins = inputs.map((p) => ({ p, c: canonicalPath(p) }));
  outputs.forEach((o, k) => {
    const c = canonicalPath(o.path);
    for (const other of outputs.slice(0, k)) {
      const oc = canonicalPath(other.path);
      if (within(c, oc) || within(oc, c)) throw new CrepeError(`${o.flag} ${o.path} and ${other.flag} ${other.path} overlap: give them different paths`);
    }
    if (within(cwd, c)) throw new CrepeError(`${o.flag} ${o.path} is the working directory or one of its parents: refusing to replace it`);
    for (const i of ins) {
      if (within(i.c, c)) {
        throw new CrepeError(`${o.flag} ${o.path} ${i.c === c ? 'is' : 'contains'} the input ${i.p}: refusing to replace it`);
      }
      // A file inside an input folder (a checkpoint's config.json, shards, tokenizer) is an input too.
      if (within(c, i.c) && statPath(i.c)?.isDirectory() && statPath(c, { follow: false })) {
        throw new CrepeError(`${o.flag} ${o.path} is part of the input ${i.p}: refusing to replace it`);
      }
    }
  });
  for (const o of outputs) {
    const c = canonicalPath(o.path);
    const parent = path.dirname(c);
    const st = statPath(parent);
    if (!st) throw new CrepeError(`cannot write ${o.flag} ${o.path}: folder ${parent} does not exist`);
    if (!st.isDirectory()) throw new CrepeError(`cannot write ${o.flag} ${o.path}: ${parent} is not a folder`);
    probeWritable(parent, `${o.flag} ${o.path}`);
    const refusal = replaceRefusal(c, o.kind, o.isDir, !!opts.force, o.opening);
    if (refusal) throw new CrepeError(`${o.flag}: ${refusal}`);
  }
}

/**
 * Create and remove a file in `dir`: the only check that holds for every reason a folder cannot
 * be written (permissions, a read-only file system, a pseudo file system such as /proc), root included.
 */
export function probeWritable(dir: string, what: string): void {
  const probe = path.join(dir, `.crepe-probe-${process.pid}-${Date.now().toString(36)}`);
  try {
    fs.closeSync(fs.openSync(probe, 'wx'));
  } catch (e) {
    throw new CrepeError(`cannot write ${what}: ${osCause(e)} in folder ${dir}`);
  }
  fs.rmSync(probe, { force: true });
}
