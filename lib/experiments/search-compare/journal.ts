/**
 * The comparison's journal: every finished row (and calibration) is appended to
 * `search-comparison-runs.jsonl` in the output folder as soon as it exists, so a run killed
 * midway loses at most the unit in progress, and a rerun skips every unit whose row is there
 * and still current. A last line cut short by a kill is dropped.
 *
 * A row is current when its fingerprint equals the unit's fingerprint now (a hash of the parts of
 * the config the row depends on: model, structure, calibration, space, report windows, and the
 * run's own settings: hill climbing's budget and windows, or the PHO variant) and every source
 * file of the code that decides its numbers is as it was when the row was made. Those files are
 * not listed by hand: they are the transitive imports (lib/util/imports.ts) of the entry points
 * in `CODE_ROOTS`, and each row records a hash per file (`sources`), so a change reruns exactly
 * the rows whose code it touches. Changing one PHO variant reruns that variant's rows only; rows
 * that are not current stay in the file but are not read (the report says how many). A transfer
 * row depends on its source search's fingerprint and sources as well.
 *
 * Rows written before per-file records carry one hash over a hand-kept file list
 * (`LEGACY_CODE_PATHS`); such a row stays current while that hash matches and every other file of
 * its closure is byte-identical to the file at the row's recorded commit (read with git), so
 * deriving the list reruns nothing that did not change.
 */
import { execFileSync } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { projectRoot } from '../../assets';
import { CrepeError } from '../../errors';
import { writeFileAtomic } from '../../io/atomic';
import { importClosure, importGraphAvailable } from '../../util/imports';
import { HILLCLIMB_RUN, SearchCompareConfig } from '../search-config';
import { Unit, unitKey } from './plan';
import { CalibrationRecord, RunRow } from './rows';

export const JOURNAL = 'search-comparison-runs.jsonl';

type Line = { type: 'journal' } | { type: 'config'; fingerprint: string } | { type: 'row'; row: RunRow } | { type: 'calibration'; record: CalibrationRecord };

/**
 * Entry points (project-relative; a folder means every .ts file directly or deeper under it) of
 * the code that decides a row's numbers. Every file they import, transitively, counts too: the
 * scoring (every strategy and its terms), the mask selection, the statistics, the datasets, the
 * seeded generator, the forward pass, the evaluator. Hill climbing's rows add hill climbing,
 * PHO's the rest of lib/search; the Fisher pass, the proxy study and the rank statistics are not
 * entry points (they enter only where something imports them).
 */
export const CODE_ROOTS = {
  common: [
    'lib/prune/strategies/index.ts',
    'lib/prune/select.ts',
    'lib/prune/stats.ts',
    'lib/data/datasets.ts',
    'lib/eval/perplexity.ts',
    'lib/search/space.ts',
    'lib/search/objective.ts',
    'lib/search/evaluator.ts',
    'lib/search/cpu.ts',
  ],
  hillclimb: ['lib/search/hillclimb.ts'],
  pho: ['lib/search'],
  phoExcept: ['lib/search/hillclimb.ts', 'lib/search/fisher.ts', 'lib/search/study.ts', 'lib/search/rank.ts'],
} as const;

/**
 * The hand-kept lists the fingerprints of rows written before per-file records were computed
 * from (kept only to recognise those rows; new rows never use them).
 */
export const LEGACY_CODE_PATHS = {
  common: [
    'lib/prune/strategies/crepe.ts',
    'lib/prune/strategy.ts',
    'lib/prune/select.ts',
    'lib/prune/stats.ts',
    'lib/data/datasets.ts',
    'lib/eval/perplexity.ts',
    'lib/search/space.ts',
    'lib/search/objective.ts',
    'lib/search/evaluator.ts',
    'lib/search/cpu.ts',
  ],
  hillclimb: ['lib/search/hillclimb.ts'],
  pho: ['lib/search'],
  phoExcept: ['lib/search/hillclimb.ts', 'lib/search/fisher.ts', 'lib/search/study.ts', 'lib/search/rank.ts'],
} as const;

function tsFilesUnder(root: string, rel: string): string[] {
  const abs = path.join(root, rel);
  if (!fs.existsSync(abs)) return [];
  if (fs.statSync(abs).isFile()) return [rel];
  return fs
    .readdirSync(abs)
    .sort()
    .flatMap((f) => tsFilesUnder(root, path.posix.join(rel, f)))
    .filter((f) => f.endsWith('.ts'));
}

const sourceHashes = new Map<string, string>();

/**
 * Hash of the named source files' contents (read from the project's lib/; 'no-source' when they
 * are not there, e.g. an installed dist/ only, and then no row is ever current).
 */
export function sourceFingerprint(paths: readonly string[], except: readonly string[] = []): string {
  const key = [...paths, '|', ...except].join('\u0000');
  const known = sourceHashes.get(key);
  if (known) return known;
  const root = projectRoot();
  const files = [...new Set(paths.flatMap((p) => tsFilesUnder(root, p)))].filter((f) => !except.includes(f)).sort();
  let value: string;
  if (files.length === 0) value = `no-source-${crypto.randomUUID()}`;
  else {
    const h = crypto.createHash('sha256');
    for (const f of files) h.update(f).update('\u0000').update(fs.readFileSync(path.join(root, f))).update('\u0000');
    value = h.digest('hex').slice(0, 16);
  }
  sourceHashes.set(key, value);
  return value;
}

const hash = (v: unknown): string => crypto.createHash('sha256').update(JSON.stringify(v)).digest('hex').slice(0, 16);
const fileHash = (bytes: Buffer): string => crypto.createHash('sha256').update(bytes).digest('hex').slice(0, 16);

/** The code a unit's numbers depend on, as lists of entry points (see CODE_ROOTS). */
function rootsOf(unit: Unit, roots: typeof CODE_ROOTS | typeof LEGACY_CODE_PATHS): { paths: string[]; except: string[] }[] {
  const search = unit.kind === 'transfer' || unit.kind === 'search' ? unit.run : null;
  const parts: { paths: string[]; except: string[] }[] = [{ paths: [...roots.common], except: [] }];
  if (search === HILLCLIMB_RUN) parts.push({ paths: [...roots.hillclimb], except: [] });
  else if (search !== null) parts.push({ paths: [...roots.pho], except: [...roots.phoExcept] });
  return parts;
}

const closures = new Map<string, string[] | null>();

/** The project files a unit's numbers depend on: the import closure of its entry points (null without sources or a TypeScript compiler). */
export function unitSourceFiles(unit: Unit): string[] | null {
  const root = projectRoot();
  const entries = [...new Set(rootsOf(unit, CODE_ROOTS).flatMap((r) => r.paths.flatMap((p) => tsFilesUnder(root, p)).filter((f) => !r.except.includes(f))))].sort();
  const key = entries.join('\u0000');
  if (!closures.has(key)) closures.set(key, entries.length && importGraphAvailable() ? importClosure(root, entries) : null);
  return closures.get(key)!;
}

const contentHashes = new Map<string, string>();

/** A hash per file of the unit's code (see unitSourceFiles); null when the sources cannot be read (no row is then current). */
export function unitSources(unit: Unit): Record<string, string> | null {
  const files = unitSourceFiles(unit);
  if (!files) return null;
  const root = projectRoot();
  const out: Record<string, string> = {};
  for (const f of files) {
    let h = contentHashes.get(f);
    if (h === undefined) contentHashes.set(f, (h = fileHash(fs.readFileSync(path.join(root, f)))));
    out[f] = h;
  }
  return out;
}

function sameSources(a: Record<string, string>, b: Record<string, string>): boolean {
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  return ka.length === kb.length && ka.every((k, i) => k === kb[i] && a[k] === b[k]);
}

/** The settings a unit's row depends on (see the file comment): config parts, seed, run settings; a transfer adds its source search's. */
function unitSettings(config: SearchCompareConfig, unit: Unit, code: (parts: { paths: string[]; except: string[] }[]) => unknown): Record<string, unknown> {
  const entry = config.structures.find((s) => s.name === unit.structure);
  const roots = rootsOf(unit, LEGACY_CODE_PATHS);
  // Key order matters (the hash is of JSON text): `code` sits after reportWindows, as it always has.
  const common = {
    model: unit.model,
    method: config.method,
    structure: entry,
    calibration: config.calibration,
    space: config.spaceGiven,
    reportWindows: config.reportWindows ?? null,
    code: code(roots.slice(0, 1)),
  };
  // the searches' validation windows; absent for the default, so rows made before the option existed keep their fingerprints
  const sample = config.searchSample === 'first' ? {} : { searchSample: config.searchSample };
  if (unit.kind === 'baseline') return { ...common, baseline: config.baselines.find((b) => b.name === unit.run) };
  if (unit.kind === 'transfer') {
    const source: Unit = { kind: 'search', model: unit.fromModel!, structure: unit.structure, run: unit.run, seed: unit.seed, fromModel: null };
    return { ...common, from: hash(unitSettings(config, source, code)) };
  }
  if (unit.run === HILLCLIMB_RUN) return { ...common, ...sample, seed: unit.seed, hillclimb: config.hillclimb, code: code(roots) };
  const { seeds: _seeds, ...variant } = config.pho.find((v) => v.name === unit.run)!;
  return { ...common, ...sample, seed: unit.seed, variant, code: code(roots) };
}

/** The fingerprint a current row of `unit` carries: a hash of its settings (the code is checked file by file, see unitSources). */
export function unitFingerprint(config: SearchCompareConfig, unit: Unit): string {
  return hash(unitSettings(config, unit, () => 'per-file'));
}

/** The fingerprint rows written before per-file records carry: settings plus one hash over LEGACY_CODE_PATHS. */
export function legacyUnitFingerprint(config: SearchCompareConfig, unit: Unit): string {
  return hash(unitSettings(config, unit, (parts) => {
    const [common, ...rest] = parts.map((p) => sourceFingerprint(p.paths, p.except));
    return rest.length ? [common, ...rest] : common;
  }));
}

const gitBlobs = new Map<string, string | null>();

/** The hash of `file` at git commit `commit` (null when git, the commit or the file is not there). */
function hashAtCommit(commit: string, file: string): string | null {
  const key = `${commit}:${file}`;
  if (!gitBlobs.has(key)) {
    try {
      gitBlobs.set(key, fileHash(execFileSync('git', ['show', key], { cwd: projectRoot(), stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20 })));
    } catch {
      gitBlobs.set(key, null);
    }
  }
  return gitBlobs.get(key)!;
}

/**
 * Whether a row written before per-file records is current: its hash over the legacy list matches,
 * and every other file of its closure is byte-identical to the file at the row's (clean) commit.
 */
function legacyCurrent(config: SearchCompareConfig, unit: Unit, row: RunRow): boolean {
  if (row.fingerprint !== legacyUnitFingerprint(config, unit)) return false;
  if (!/^[0-9a-f]{7,40}$/.test(row.codeVersion)) return false; // '-dirty' or 'unknown': the files it ran are not recorded
  const now = unitSources(unit);
  if (!now) return false;
  const root = projectRoot();
  const legacy = new Set(rootsOf(unit, LEGACY_CODE_PATHS).flatMap((r) => r.paths.flatMap((p) => tsFilesUnder(root, p)).filter((f) => !r.except.includes(f))));
  return Object.entries(now).every(([f, h]) => legacy.has(f) || hashAtCommit(row.codeVersion, f) === h);
}

export class Journal {
  /** Every row read or written, current or not, by unit key (the last one wins). */
  private readonly all = new Map<string, RunRow>();
  readonly calibrations: CalibrationRecord[] = [];

  private constructor(
    readonly file: string,
    private readonly config: SearchCompareConfig,
  ) {}

  static open(out: string, config: SearchCompareConfig, fresh: boolean): Journal {
    const file = path.join(out, JOURNAL);
    const j = new Journal(file, config);
    if (fresh || !fs.existsSync(file)) {
      writeFileAtomic(file, `${JSON.stringify({ type: 'journal' })}\n`);
      return j;
    }
    const text = fs.readFileSync(file, 'utf8');
    const lines = text.split('\n');
    const complete: string[] = [];
    lines.forEach((raw, i) => {
      if (raw.trim() === '') return;
      let line: Line;
      try {
        line = JSON.parse(raw) as Line;
      } catch {
        if (i >= lines.length - 2) return; // the last line, cut short by a kill: redo that unit
        throw new CrepeError(`${file} line ${i + 1} is not JSON: delete the file or rerun with --fresh`);
      }
      if (i === 0 && line.type !== 'journal' && line.type !== 'config') throw new CrepeError(`${file} is not a search-compare journal: rerun with --fresh`);
      if (line.type === 'row') j.all.set(line.row.key, line.row);
      else if (line.type === 'calibration') j.replaceCalibration(line.record);
      complete.push(raw);
    });
    if (complete.length === 0) throw new CrepeError(`${file} is empty: rerun with --fresh`);
    // Rewrite without a cut-short tail, so appends start on a fresh line.
    if (complete.length !== lines.filter((l) => l.trim() !== '').length) writeFileAtomic(file, `${complete.join('\n')}\n`);
    return j;
  }

  private readonly verdicts = new Map<RunRow, boolean>();

  /** The unit's row if the journal has one that is current. */
  row(unit: Unit): RunRow | undefined {
    const r = this.all.get(unitKey(unit));
    if (!r) return undefined;
    let current = this.verdicts.get(r);
    if (current === undefined) {
      if (r.sources) {
        const now = unitSources(unit);
        current = r.fingerprint === unitFingerprint(this.config, unit) && now !== null && sameSources(r.sources, now);
      } else current = legacyCurrent(this.config, unit, r);
      this.verdicts.set(r, current);
    }
    return current ? r : undefined;
  }

  has(unit: Unit): boolean {
    return this.row(unit) !== undefined;
  }

  /** Whether the journal has a row for the unit that is no longer current. */
  stale(unit: Unit): boolean {
    return this.all.has(unitKey(unit)) && !this.has(unit);
  }

  /** Current rows (in no particular order), e.g. to reuse their full evaluations. */
  currentRows(units: readonly Unit[]): RunRow[] {
    return units.map((u) => this.row(u)).filter((r): r is RunRow => r !== undefined);
  }

  /** Append a row; it carries the unit's current fingerprint and a hash per source file of its code. */
  addRow(unit: Unit, row: Omit<RunRow, 'fingerprint' | 'sources'>): RunRow {
    const full: RunRow = { ...row, fingerprint: unitFingerprint(this.config, unit), sources: unitSources(unit) ?? {} };
    this.all.set(full.key, full);
    fs.appendFileSync(this.file, `${JSON.stringify({ type: 'row', row: full })}\n`);
    return full;
  }

  addCalibration(record: CalibrationRecord): void {
    this.replaceCalibration(record);
    fs.appendFileSync(this.file, `${JSON.stringify({ type: 'calibration', record })}\n`);
  }

  private replaceCalibration(record: CalibrationRecord): void {
    const at = this.calibrations.findIndex((c) => c.model === record.model && c.structure === record.structure);
    if (at >= 0) this.calibrations[at] = record;
    else this.calibrations.push(record);
  }
}
