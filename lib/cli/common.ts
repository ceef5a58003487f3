import * as cliProgress from 'cli-progress';
import { BackendChoice, backendDescription, initBackend } from '../backend';
import { CrepeError } from '../errors';
import { assetPath } from '../assets';
import { BUILTIN_MODELS, OpenedModel } from '../model/resolve';
import { gitVersion } from '../version';

/** Options every command takes. */
export interface CommonArgs {
  backend: BackendChoice;
  json: boolean;
}

/** The flags that say what to prune and how to calibrate, shared by `prune`, `search` and `proxy-study`. */
export interface PruneTargetArgs extends CommonArgs {
  model: string;
  tokenizer?: string;
  method: string;
  param: string[];
  /** Undefined when not given (unstructured then uses 0.5; N:M fixes it). */
  sparsity?: number;
  structure: string;
  group?: 'row' | 'matrix';
  calib: string;
  nsamples: number;
  calibSeqlen?: number;
}

/**
 * Run a command body with crepe's error contract: a CrepeError prints one line and exits with
 * its code (2); anything else is a bug and prints one line too (the stack only with CREPE_DEBUG).
 */
export async function runCommand(body: () => Promise<void>): Promise<void> {
  try {
    await body();
  } catch (e) {
    if (e instanceof CrepeError) {
      process.stderr.write(`crepe: ${oneLine(e.message)}\n`);
      process.exit(e.exitCode);
    }
    const err = e as Error;
    if (process.env.CREPE_DEBUG) process.stderr.write(`${err.stack}\n`);
    else process.stderr.write(`crepe: internal error: ${oneLine(String(err?.message))} (set CREPE_DEBUG=1 for details)\n`);
    process.exit(1);
  }
}

/** The one-line contract holds whatever a message quotes (file content, engine output). */
function oneLine(message: string): string {
  return message.replace(/\s*[\r\n]+\s*/g, ' ');
}

export async function startBackend(choice: BackendChoice): Promise<string> {
  await initBackend(choice);
  return backendDescription();
}

/** A progress bar on stderr that stays silent when stderr is not a terminal (logs, CI, --json). */
export function progressBar(label: string, unit: string): cliProgress.SingleBar {
  return new cliProgress.SingleBar(
    {
      format: `${label} [{bar}] {value}/{total} ${unit} | {rate} | ETA {eta_formatted}`,
      stream: process.stderr,
      hideCursor: true,
      clearOnComplete: true,
      noTTYOutput: false,
    },
    cliProgress.Presets.shades_classic,
  );
}

/**
 * Print a JSON object (one line) or a human summary. JSON has no NaN or Infinity (JSON.stringify
 * writes them as null, indistinguishable from "absent"): they are written as the strings
 * "NaN", "Infinity" and "-Infinity".
 */
export function emit(json: boolean, obj: Record<string, unknown>, human: () => string): void {
  process.stdout.write(json ? `${JSON.stringify(obj, nonFiniteAsString)}\n` : `${human()}\n`);
}

function nonFiniteAsString(_key: string, v: unknown): unknown {
  return typeof v === 'number' && !Number.isFinite(v) ? String(v) : v;
}

/** A perplexity that is NaN or infinite is an error, not a result: it names the model and dataset. */
export function checkPpl(ppl: number, what: string): number {
  if (!Number.isFinite(ppl)) {
    throw new CrepeError(`${what}: the perplexity is ${ppl} (the model's outputs overflowed or are not numbers); no result is reported`);
  }
  return ppl;
}

export function versionInfo(): string {
  return gitVersion();
}

/**
 * Check the raw command-line tokens of number options before the parser turns them into
 * numbers: the parser reads `--sparsity ""` as 0 and a value-less `--sparsity` as its default,
 * so an empty, missing, non-numeric, non-finite or repeated value is refused here.
 */
export function checkNumberTokens(tokens: readonly string[], numberOptions: ReadonlySet<string>): void {
  const seen = new Set<string>();
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === '--') break;
    const m = /^--([^=]+)(?:=([\s\S]*))?$/.exec(tokens[i]);
    if (!m) continue;
    const name = m[1].replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`); // --calibSeqlen is --calib-seqlen
    if (!numberOptions.has(name)) continue;
    if (seen.has(name)) throw new CrepeError(`--${name} is given more than once`);
    seen.add(name);
    let value = m[2];
    if (value === undefined) {
      const next = tokens[i + 1];
      if (next === undefined || /^--./.test(next)) throw new CrepeError(`--${name} needs a number`);
      value = next;
      i++;
    }
    if (value.trim() === '' || !Number.isFinite(Number(value))) throw new CrepeError(`--${name} must be a finite number, got '${value}'`);
  }
}

/** Parse a finite number flag or fail with a message naming the flag. */
export function numberFlag(name: string, v: unknown): number {
  const n = typeof v === 'number' ? v : Number(v);
  if (!Number.isFinite(n)) throw new CrepeError(`--${name} must be a number, got '${String(v)}'`);
  return n;
}

export function positiveIntFlag(name: string, v: unknown): number {
  const n = numberFlag(name, v);
  if (!Number.isInteger(n) || n <= 0) throw new CrepeError(`--${name} must be a positive integer, got ${String(v)}`);
  return n;
}

/** The files a run reads: the model's weights and tokenizer and the datasets on disk (outputs must spare them). */
export function inputPaths(model: OpenedModel, datasets: readonly string[] = []): string[] {
  const builtin = BUILTIN_MODELS[model.name];
  const paths = [builtin ? assetPath(...builtin.weights) : model.name, model.tokenizerPath];
  for (const d of datasets) {
    const file = datasetFile(d);
    if (file) paths.push(file);
  }
  return paths;
}

/** The file a dataset spec reads (text:PATH, c4:PATH); undefined for built-in datasets. */
export function datasetFile(spec: string): string | undefined {
  return /^(?:text|c4):(.+)$/.exec(spec)?.[1];
}
