/**
 * The comparison's journal: every finished row (and calibration) is appended to
 * `search-comparison-runs.jsonl` in the output folder as soon as it exists, so a run killed
 * midway loses at most the unit in progress, and a rerun of the same config skips every unit
 * already there. The first line records a fingerprint of the config; a journal written for a
 * different config is refused (rerun with --fresh to start over). A last line cut short by a
 * kill is dropped.
 */
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../../errors';
import { writeFileAtomic } from '../../io/atomic';
import { SearchCompareConfig } from '../search-config';
import { CalibrationRecord, RunRow } from './rows';

export const JOURNAL = 'search-comparison-runs.jsonl';

type Line = { type: 'config'; fingerprint: string } | { type: 'row'; row: RunRow } | { type: 'calibration'; record: CalibrationRecord };

/**
 * What the rows depend on: everything in the config except its file name, description and the
 * projection cost file (which only changes how the report reads the rows).
 */
export function configFingerprint(config: SearchCompareConfig): string {
  const { file: _file, description: _description, projection: _projection, ...rest } = config;
  return crypto.createHash('sha256').update(JSON.stringify(rest)).digest('hex').slice(0, 16);
}

export class Journal {
  readonly rows = new Map<string, RunRow>();
  readonly calibrations: CalibrationRecord[] = [];
  /** Rows found on disk when opened (a resumed run). */
  readonly resumedRows: number;

  private constructor(readonly file: string) {
    this.resumedRows = 0;
  }

  static open(out: string, config: SearchCompareConfig, fresh: boolean): Journal {
    const file = path.join(out, JOURNAL);
    const fingerprint = configFingerprint(config);
    const j = new Journal(file);
    if (fresh || !fs.existsSync(file)) {
      writeFileAtomic(file, `${JSON.stringify({ type: 'config', fingerprint })}\n`);
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
      if (i === 0) {
        if (line.type !== 'config') throw new CrepeError(`${file} does not start with a config fingerprint: rerun with --fresh`);
        if (line.fingerprint !== fingerprint) {
          throw new CrepeError(`${file} was written for a different config (fingerprint ${line.fingerprint}, now ${fingerprint}): rerun with --fresh to start over`);
        }
      } else if (line.type === 'row') j.rows.set(line.row.key, line.row);
      else if (line.type === 'calibration') j.replaceCalibration(line.record);
      complete.push(raw);
    });
    if (complete.length === 0) throw new CrepeError(`${file} is empty: rerun with --fresh`);
    // Rewrite without a cut-short tail, so appends start on a fresh line.
    if (complete.length !== lines.filter((l) => l.trim() !== '').length) writeFileAtomic(file, `${complete.join('\n')}\n`);
    (j as { resumedRows: number }).resumedRows = j.rows.size;
    return j;
  }

  addRow(row: RunRow): void {
    this.rows.set(row.key, row);
    fs.appendFileSync(this.file, `${JSON.stringify({ type: 'row', row })}\n`);
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
