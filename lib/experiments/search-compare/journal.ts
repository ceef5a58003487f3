/**
 * The comparison's journal: every finished row (and calibration) is appended to
 * `search-comparison-runs.jsonl` in the output folder as soon as it exists, so a run killed
 * midway loses at most the unit in progress, and a rerun skips every unit whose row is there
 * and still current. A last line cut short by a kill is dropped.
 *
 * A row is current when its fingerprint equals the unit's fingerprint now: a hash of the parts of
 * the config the row depends on (model, structure, calibration, space, report windows, and the
 * run's own settings: hill climbing's budget and windows, or the PHO variant) and of the source
 * of the code that decides its numbers (`CODE_PATHS`). Changing one PHO variant therefore reruns
 * that variant's rows only, and a change in the scoring, selection or search code reruns the rows
 * it can change; rows that are not current stay in the file but are not read (the report says
 * how many). A transfer row depends on its source search's fingerprint as well.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { projectRoot } from '../../assets';
import { CrepeError } from '../../errors';
import { writeFileAtomic } from '../../io/atomic';
import { HILLCLIMB_RUN, SearchCompareConfig } from '../search-config';
import { Unit, unitKey } from './plan';
import { CalibrationRecord, RunRow } from './rows';

export const JOURNAL = 'search-comparison-runs.jsonl';

type Line = { type: 'journal' } | { type: 'config'; fingerprint: string } | { type: 'row'; row: RunRow } | { type: 'calibration'; record: CalibrationRecord };

/**
 * Source files (relative to the project root; a folder means every .ts file under it) whose
 * change can change a row's numbers. Every row depends on the scoring, the mask selection, the
 * statistics, the datasets and the search evaluator; hill climbing's rows on hill climbing; PHO's
 * on the rest of lib/search. Not listed: the forward pass and the pruning pipeline's memory paths
 * (lib/model, lib/prune/pipeline.ts), held to their numbers by their own tests, and everything
 * that only reads or reports rows.
 */
export const CODE_PATHS = {
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
  /** Every other file of lib/search except the Fisher pass and the proxy study. */
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
    .flatMap((f) => tsFilesUnder(root, path.join(rel, f)))
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

/** The fingerprint a current row of `unit` carries (see the file comment). */
export function unitFingerprint(config: SearchCompareConfig, unit: Unit): string {
  const entry = config.structures.find((s) => s.name === unit.structure);
  const common = {
    model: unit.model,
    method: config.method,
    structure: entry,
    calibration: config.calibration,
    space: config.spaceGiven,
    reportWindows: config.reportWindows ?? null,
    code: sourceFingerprint(CODE_PATHS.common),
  };
  // the searches' validation windows; absent for the default, so rows made before the option existed keep their fingerprints
  const sample = config.searchSample === 'first' ? {} : { searchSample: config.searchSample };
  if (unit.kind === 'baseline') return hash({ ...common, baseline: config.baselines.find((b) => b.name === unit.run) });
  if (unit.kind === 'transfer') {
    const source: Unit = { kind: 'search', model: unit.fromModel!, structure: unit.structure, run: unit.run, seed: unit.seed, fromModel: null };
    return hash({ ...common, from: unitFingerprint(config, source) });
  }
  if (unit.run === HILLCLIMB_RUN) {
    return hash({ ...common, ...sample, seed: unit.seed, hillclimb: config.hillclimb, code: [common.code, sourceFingerprint(CODE_PATHS.hillclimb)] });
  }
  const { seeds: _seeds, ...variant } = config.pho.find((v) => v.name === unit.run)!;
  return hash({ ...common, ...sample, seed: unit.seed, variant, code: [common.code, sourceFingerprint(CODE_PATHS.pho, CODE_PATHS.phoExcept)] });
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

  /** The unit's row if the journal has one that is current. */
  row(unit: Unit): RunRow | undefined {
    const r = this.all.get(unitKey(unit));
    return r && r.fingerprint === unitFingerprint(this.config, unit) ? r : undefined;
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

  /** Append a row; it carries the unit's current fingerprint. */
  addRow(unit: Unit, row: Omit<RunRow, 'fingerprint'>): RunRow {
    const full: RunRow = { ...row, fingerprint: unitFingerprint(this.config, unit) };
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
