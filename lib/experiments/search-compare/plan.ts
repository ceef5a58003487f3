/**
 * Planning the search comparison: the config, the subset, the output folder, the datasets and
 * every model/structure pair are validated before any work (one-line CrepeError, nothing
 * written), and the work is listed as units, each producing one row, so a rerun can skip the
 * units whose rows are already in the journal (journal.ts).
 */
import * as fs from 'fs';
import { CrepeError } from '../../errors';
import { loadDataset } from '../../data/datasets';
import { OpenedModel, openModel } from '../../model/resolve';
import { linearNames, linearShape } from '../../model/types';
import { validateStructureFor } from '../../prune/select';
import { SEARCH_DATASET } from '../../search/objective';
import { checkWindowCount } from '../../eval/evaluate';
import { atField, fieldError } from '../config';
import { HILLCLIMB_RUN, SearchCompareConfig, loadSearchCompareConfig, selectSubset, structureFor } from '../search-config';

export interface ComparePlan {
  /** The config restricted to the chosen models and structures. */
  config: SearchCompareConfig;
  /** The whole config as loaded (the journal is keyed on it, so subsets of one config share a journal). */
  fullConfig: SearchCompareConfig;
  /** Existing output folder. */
  out: string;
  /** Run only these runs' units ('hillclimb', PHO variant or baseline names; default: all). */
  runs?: string[];
}

export interface PlanOptions {
  out: string;
  /** Restrict to these models / structure names (default: all in the config). */
  models?: readonly string[];
  structures?: readonly string[];
  /** Run only these runs (the report still covers every unit of the chosen models and structures). */
  runs?: readonly string[];
}

export function planComparison(configFile: string, opts: PlanOptions): ComparePlan {
  const full = loadSearchCompareConfig(configFile);
  const config = selectSubset(full, opts.models, opts.structures);
  checkOutFolder(opts.out);
  atField(configFile, ['calibration', 'dataset'], () => loadDataset(config.calibration.dataset, 'calib'));
  loadDataset(SEARCH_DATASET, 'eval');
  for (const name of config.models) {
    const model: OpenedModel = atField(configFile, ['models', full.models.indexOf(name)], () => openModel(name));
    try {
      atField(configFile, ['hillclimb', 'searchWindows'], () => checkWindowCount(model, SEARCH_DATASET, config.hillclimb.searchWindows, `${name}: searchWindows`));
      for (const entry of config.structures) {
        const at = full.structures.findIndex((s) => s.name === entry.name);
        for (const linear of linearNames(model.source.config)) {
          const [rows, cols] = linearShape(model.source.config, linear);
          try {
            validateStructureFor(structureFor(entry, config.method), rows, cols);
          } catch (e) {
            if (e instanceof CrepeError) throw fieldError(configFile, ['structures', at, 'structure'], `${name} (${linear}): ${e.message}`);
            throw e;
          }
        }
      }
    } finally {
      model.source.close();
    }
  }
  let runs: string[] | undefined;
  if (opts.runs && opts.runs.length) {
    const known = [HILLCLIMB_RUN, ...config.pho.map((v) => v.name), ...config.baselines.map((b) => b.name)];
    for (const r of opts.runs) if (!known.includes(r)) throw new CrepeError(`--runs: '${r}' is not a run of ${configFile} (${known.join(', ')})`);
    runs = [...opts.runs];
  }
  return { config, fullConfig: full, out: opts.out, runs };
}

function checkOutFolder(out: string): void {
  if (!fs.existsSync(out) || !fs.statSync(out).isDirectory()) throw new CrepeError(`--out ${out} is not an existing folder`);
  try {
    fs.accessSync(out, fs.constants.W_OK);
  } catch {
    throw new CrepeError(`--out ${out}: permission denied`);
  }
}

export type RunKind = 'baseline' | 'search' | 'transfer';

/** One unit of work: it produces exactly one row, identified by `key`. */
export interface Unit {
  kind: RunKind;
  /** The model the row is about (for a transfer: the model the configuration is applied to). */
  model: string;
  structure: string;
  /** 'hillclimb', a PHO variant's name, or a baseline's name. */
  run: string;
  /** Search seed (null for baselines). */
  seed: number | null;
  /** Transfer: the model whose search found the configuration. */
  fromModel: string | null;
}

export function unitKey(u: Unit): string {
  return [u.kind, u.model, u.structure, u.run, u.seed ?? '', u.fromModel ?? ''].join('\u0000');
}

/** Every unit of the plan, in execution order. */
export function planUnits(config: SearchCompareConfig): Unit[] {
  const units: Unit[] = [];
  for (const model of config.models) {
    for (const entry of config.structures) {
      for (const seed of config.seeds) {
        units.push({ kind: 'search', model, structure: entry.name, run: HILLCLIMB_RUN, seed, fromModel: null });
        for (const v of config.pho.filter((x) => x.seeds.includes(seed))) units.push({ kind: 'search', model, structure: entry.name, run: v.name, seed, fromModel: null });
      }
      for (const b of config.baselines) units.push({ kind: 'baseline', model, structure: entry.name, run: b.name, seed: null, fromModel: null });
    }
  }
  if (config.models.length > 1) {
    // Transfer: the hill-climbing and the headline PHO configurations of every seed.
    for (const model of config.models) {
      for (const entry of config.structures.filter((s) => config.transfer.includes(s.name))) {
        for (const from of config.models.filter((m) => m !== model)) {
          for (const seed of config.transferSeeds.filter((sd) => config.pho[0].seeds.includes(sd))) {
            for (const run of [HILLCLIMB_RUN, config.pho[0].name]) units.push({ kind: 'transfer', model, structure: entry.name, run, seed, fromModel: from });
          }
        }
      }
    }
  }
  return units;
}
