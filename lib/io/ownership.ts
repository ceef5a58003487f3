/**
 * How crepe recognises a folder it wrote (so that a rerun may replace it) without a hidden file
 * inside it: each folder kind has a visible JSON record that the output carries anyway (a model
 * folder's `crepe-recipe.json`, a dump's `run.json`), and crepe adds to it an `output` entry with
 * the kind and every other top-level entry's size and modification time. A folder is crepe's
 * when its record names the kind and lists exactly what is there, unchanged: a folder that was
 * edited, grown or copied (new times) is not replaced without --force.
 *
 * Folders written by earlier versions carry a hidden `.crepe-output` marker with the kind; they
 * are still recognised.
 */
import * as fs from 'fs';
import * as path from 'path';

/** The kinds of folder outputs; a record names the kind so that only a rerun of the same kind replaces it. */
export type FolderKind = string;

/** The hidden marker earlier versions wrote inside a folder output (read, never written). */
export const LEGACY_DIR_MARKER = '.crepe-output';

/** The record file of each folder kind; kinds not listed use crepe-output.json. */
const RECORD_FILES: Record<string, string> = {
  'hf-model': 'crepe-recipe.json',
  'prune-dump': 'run.json',
};
const DEFAULT_RECORD_FILE = 'crepe-output.json';

/** The key of the ownership entry inside the record. */
export const OWNERSHIP_KEY = 'output';

/** The visible file that records ownership of a folder of `kind`. */
export function ownershipFile(kind: FolderKind): string {
  return RECORD_FILES[kind] ?? DEFAULT_RECORD_FILE;
}

interface EntryStamp {
  /** Bytes of a file; -1 for a folder. */
  size: number;
  mtime_ms: number;
}

interface OwnershipEntry {
  kind: string;
  entries: Record<string, EntryStamp>;
}

function stamp(p: string): EntryStamp {
  const st = fs.lstatSync(p);
  return { size: st.isDirectory() ? -1 : st.size, mtime_ms: st.mtimeMs };
}

function readRecord(file: string): Record<string, unknown> | null {
  try {
    const v: unknown = JSON.parse(fs.readFileSync(file, 'utf8'));
    return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : null;
  } catch {
    return null;
  }
}

/**
 * Add the ownership entry to `dir`'s record (creating the record when the output has none): the
 * kind and the stamp of every other top-level entry. Call when the folder is complete.
 */
export function recordOwnership(dir: string, kind: FolderKind): void {
  const name = ownershipFile(kind);
  const file = path.join(dir, name);
  const record = fs.existsSync(file) ? readRecord(file) : {};
  if (record === null) throw new Error(`${file} is not a JSON object: cannot record ownership in it`);
  const entries: Record<string, EntryStamp> = {};
  for (const e of fs.readdirSync(dir).sort()) if (e !== name) entries[e] = stamp(path.join(dir, e));
  const entry: OwnershipEntry = { kind, entries };
  record[OWNERSHIP_KEY] = entry;
  fs.writeFileSync(file, JSON.stringify(record, null, 2) + '\n');
}

/**
 * Who `dir` (an existing folder) belongs to: 'owned' when it is an unchanged crepe output of
 * `kind`, 'changed' when its record says crepe wrote it but entries were added, removed or
 * rewritten since, else 'foreign'.
 */
export function folderOwnership(dir: string, kind: FolderKind): 'owned' | 'changed' | 'foreign' {
  const names = fs.readdirSync(dir);
  if (names.includes(LEGACY_DIR_MARKER) && readRecord(path.join(dir, LEGACY_DIR_MARKER))?.kind === kind) return 'owned';
  const name = ownershipFile(kind);
  if (!names.includes(name)) return 'foreign';
  const entry = readRecord(path.join(dir, name))?.[OWNERSHIP_KEY] as Partial<OwnershipEntry> | undefined;
  if (!entry || entry.kind !== kind || typeof entry.entries !== 'object' || entry.entries === null) return 'foreign';
  const listed = entry.entries as Record<string, EntryStamp>;
  const present = names.filter((n) => n !== name);
  if (present.length !== Object.keys(listed).length) return 'changed';
  const same = present.every((n) => {
    const want = listed[n];
    if (!want) return false;
    const now = stamp(path.join(dir, n));
    return now.size === want.size && now.mtime_ms === want.mtime_ms;
  });
  return same ? 'owned' : 'changed';
}
