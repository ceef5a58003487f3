/** What the search comparison records: one row per unit of work, one record per calibration. */
import { Params } from '../../prune/strategy';
import { SetupOptions } from '../../search/objective';
import { ProxyName } from '../../search/proxies';
import { RunKind } from './plan';

/** One full evaluation and, for searches, what the search cost. */
export interface RunRow {
  key: string;
  model: string;
  /** The structure's name in the config (u50, 2of4). */
  structure: string;
  structureLabel: string;
  kind: RunKind;
  /** 'hillclimb', a PHO variant's name, or a baseline's name. */
  run: string;
  seed: number | null;
  method: string;
  search: 'hillclimb' | 'pho' | null;
  /** PHO: the proxies, comma separated. */
  proxies: string | null;
  /** Transfer: the model whose search found the configuration. */
  fromModel: string | null;
  params: Params;
  fullPpl: number;
  pplEvals: number | null;
  /** Window evaluations in all (a PPL evaluation on W windows counts W). */
  windowEvals: number | null;
  proxyEvals: number | null;
  /**
   * Sequential-pipeline prunes inside the search loop (a final measurement) and the calibration
   * windows each used; absent in rows written before they were recorded (none were made).
   */
  sequentialPrunes?: number | null;
  sequentialCalibrationWindows?: number | null;
  /** Search-subset PPL (hill climbing, verified PHO) or the raw proxy (PHO) at the best point. */
  bestSearchValue: number | null;
  stopReason: string | null;
  calibrationSeconds: number | null;
  loopWallSeconds: number | null;
  loopCpuSeconds: number | null;
  pruneSeconds: number;
  evalSeconds: number;
  evalDataset: string;
  evalWindows: number;
  evalSeqlen: number;
  /** The evaluation log written for this search (file name in the output folder), if any. */
  evalLog: string | null;
  note: string;
  /** 1-minute load average of the machine when the row finished (what else competed for the cores). */
  loadAverage: number;
  /** The code version (git commit) that produced the row. */
  codeVersion: string;
  /** What the row depends on (journal.ts): a row whose fingerprint differs from its unit's now is rerun. */
  fingerprint: string;
  /** A hash per source file of the code that decided the row's numbers (journal.ts); absent in rows written before it was recorded. */
  sources?: Record<string, string>;
}

export interface CalibrationRecord {
  model: string;
  /** null: one calibration shared by every structure (dense statistics). */
  structure: string | null;
  /** The statistics plus the search evaluator's caches (what every search of the model needs). */
  seconds: number;
  /** Wall seconds of the whole calibrateOnce call, extras some proxies need included. */
  setupSeconds: number;
  /** The Fisher pass alone (0 without a Fisher proxy). */
  fisherSeconds: number;
  options: SetupOptions;
  nsamples: number;
  seqlen: number;
}

/** Parameters in full precision (`alpha=750.0000000001 ...`), so a row reproduces exactly. */
export function paramsText(params: Params): string {
  return Object.entries(params)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
}

/** Proxies of a PHO variant as one cell. */
export function proxiesText(proxies: readonly { proxy: ProxyName }[]): string {
  return proxies.map((p) => p.proxy).join('+');
}
