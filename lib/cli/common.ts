import * as cliProgress from 'cli-progress';
import * as fs from 'fs';
import { BackendChoice, backendDescription, initBackend } from '../backend';
import { CrepeError } from '../errors';
import { gitVersion } from '../version';
import { DATASET_HELP } from '../data/datasets';
import { listStrategies } from '../prune/strategy';
import { listProxies } from '../search/proxies';
import { ProgressEvent, subscribeProgress } from '../util/progress';
import { closestNames, didYouMean, unknownName } from '../util/suggest';

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

/** Piped progress lines are left out in --json mode (set once per command by the CLI). */
let quietPipedStages = false;

/** With `quiet`, a stage prints nothing when stderr is not a terminal (a --json run). */
export function setQuietPipedStages(quiet: boolean): void {
  quietPipedStages = quiet;
}

/**
 * Progress of one stage on stderr: a bar on a terminal; when stderr is piped (logs, CI, nohup),
 * one line as the stage ends ("eval dense: 12/12 windows in 3.1 s"), none in --json mode.
 */
export class StageBar {
  private readonly bar: cliProgress.SingleBar | null;
  private total = 0;
  private done = 0;
  private t0: bigint | null = null;

  constructor(
    private readonly label: string,
    private readonly unit: string,
  ) {
    this.bar = process.stderr.isTTY
      ? new cliProgress.SingleBar(
          {
            format: `${label} [{bar}] {value}/{total} ${unit} | {rate} | ETA {eta_formatted}`,
            stream: process.stderr,
            hideCursor: true,
            clearOnComplete: true,
            noTTYOutput: false,
          },
          cliProgress.Presets.shades_classic,
        )
      : null;
  }

  start(total: number, done = 0, payload: { rate: string } = { rate: '' }): void {
    this.total = total;
    this.done = done;
    this.t0 ??= process.hrtime.bigint();
    this.bar?.start(total, done, payload);
  }

  update(done: number, payload: { rate: string } = { rate: '' }): void {
    this.done = done;
    this.bar?.update(done, payload);
  }

  /** End the stage. Piped, only a finished stage prints its line: a failure says what happened itself. */
  stop(): void {
    if (this.bar) this.bar.stop();
    else if (this.t0 !== null && this.done >= this.total && !quietPipedStages) {
      const seconds = Number(process.hrtime.bigint() - this.t0) / 1e9;
      process.stderr.write(`${this.label}: ${this.done}/${this.total} ${this.unit} in ${seconds.toFixed(1)} s\n`);
    }
    this.t0 = null;
  }
}

/** A progress bar on stderr for one stage (see StageBar). */
export function progressBar(label: string, unit: string): StageBar {
  return new StageBar(label, unit);
}

/**
 * Run an evaluation stage with its progress shown: `run` gets the evaluators' onProgress callback
 * (done and total windows of the current dataset, tokens per second; each dataset starts again
 * at 1), and the bar counts `windows`, the windows of every dataset together.
 */
export async function withEvalProgress<T>(label: string, windows: number, run: (onProgress: (done: number, total: number, tps: number) => void) => T | Promise<T>): Promise<T> {
  const bar = progressBar(label, 'windows');
  let finished = 0; // windows of the datasets already evaluated
  let last = 0;
  let lastTotal = 0;
  bar.start(windows, 0);
  // the streaming evaluator runs every block over all windows before the first window is done
  const unsubscribe = subscribeProgress((e) => {
    if (e.pass === 'eval' && e.unit === 'blocks') bar.update(finished + last, { rate: e.done <= e.total - 1 ? `block ${e.done}/${e.total - 1}` : 'head' });
  });
  try {
    return await run((done, total, tps) => {
      if (done <= last) finished += lastTotal; // the next dataset (done rises within one)
      [last, lastTotal] = [done, total];
      bar.update(finished + done, { rate: `${Math.round(tps)} tok/s` });
    });
  } finally {
    unsubscribe();
    bar.stop();
  }
}

/**
 * Run `run` with the progress that library passes publish (lib/util/progress.ts) shown as stages:
 * one bar per pass and unit, labelled by `labels[pass]` (passes without a label are not shown).
 * For passes deep inside a library call, such as a search's calibration.
 */
export function withPublishedProgress<T>(labels: Partial<Record<ProgressEvent['pass'], string>>, run: () => T): T {
  const stage: { bar: StageBar | null; key: string; last: number } = { bar: null, key: '', last: 0 };
  const unsubscribe = subscribeProgress((e) => {
    const label = labels[e.pass];
    if (!label) return;
    const key = `${e.pass} ${e.unit}`;
    if (!stage.bar || stage.key !== key || e.done <= stage.last) {
      stage.bar?.stop();
      stage.bar = progressBar(label, e.unit);
      stage.bar.start(e.total, 0);
      stage.key = key;
    }
    stage.last = e.done;
    stage.bar.update(e.done);
  });
  try {
    return run();
  } finally {
    unsubscribe();
    stage.bar?.stop();
  }
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

export function nonNegativeIntFlag(name: string, v: unknown): number {
  const n = numberFlag(name, v);
  if (!Number.isSafeInteger(n) || n < 0) throw new CrepeError(`--${name} must be a whole number >= 0, got ${String(v)}`);
  return n;
}

export { datasetFile, inputPaths } from '../recipe/inputs';

/** What the parser knew when it refused the command line (for a message that helps). */
export interface ParserView {
  /** The command being parsed; undefined when none matched. */
  command?: string;
  /** Every command name. */
  commands: readonly string[];
  /** The flags the command (or the top level) takes, with their aliases, without dashes. */
  flags: readonly string[];
  /** Non-flag tokens of the command line, the command first. */
  positionals: readonly string[];
}

const kebab = (name: string): string => name.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
const dashed = (name: string): string => (name.length === 1 ? `-${name}` : `--${name}`);

/**
 * One line for a refusal by the argument parser (yargs), with the closest command, flag or
 * choice when one is near: "unknown command 'purne'; did you mean 'prune'?", "unknown flag
 * --max-window; did you mean --max-windows?". yargs lists an unknown `--max-window` twice (as
 * typed and camel-cased); it is named once.
 */
export function parserFailure(message: string, view: ParserView): string {
  const unknown = /^Unknown arguments?: ([\s\S]*)$/.exec(message);
  if (unknown) {
    const items = unknown[1].split(', ').map((s) => s.trim());
    if (view.command === undefined) {
      const typed = view.positionals[0];
      if (typed !== undefined) return unknownName('command', typed, view.commands, `commands: ${view.commands.join(', ')}`);
      const flag = items.find((i) => !view.positionals.includes(i)) ?? items[0];
      return `${dashed(flag)} needs a command before it (crepe <command> ${dashed(flag)} ...; commands: ${view.commands.join(', ')})`;
    }
    const flags = view.flags.filter((f) => f === kebab(f) || !view.flags.includes(kebab(f)));
    const parts = items
      .filter((i) => kebab(i) === i || !items.includes(kebab(i)))
      .map((i) =>
        view.positionals.includes(i)
          ? `unexpected argument '${i}' (flags start with --; see crepe ${view.command} --help)`
          : `unknown flag ${dashed(i)}${didYouMean(i, flags, dashed)}`,
      );
    return parts.join('; ');
  }
  const missing = /^Missing required arguments?: ([^\n]*)/.exec(message);
  if (missing) {
    const names = missing[1].split(', ').map((n) => dashed(n.trim()));
    return `missing required flag${names.length > 1 ? 's' : ''} ${names.join(', ')} (see crepe ${view.command ?? ''} --help)`.replace('crepe  ', 'crepe ');
  }
  const invalid = /Argument: ([^,]+), Given: ("(?:[^"\\]|\\.)*"|[^,]+), Choices: (.*)/.exec(message);
  if (invalid) {
    const given = invalid[2].startsWith('"') ? (JSON.parse(invalid[2]) as string) : invalid[2];
    const choices = [...invalid[3].matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => JSON.parse(`"${m[1]}"`) as string);
    return `--${invalid[1]} must be one of ${choices.join(', ')}, got '${given}'${didYouMean(given, choices)}`;
  }
  return oneLine(message);
}

/**
 * A yargs `coerce` for list flags: `--eval a,b --eval c` is [a, b, c] (repeated or comma
 * separated, as --tasks); empty names (a trailing comma) are dropped. It never throws (yargs
 * would report a coerce error as a crash): a list of nothing stays [''] for the command to refuse.
 */
export function commaList(values: unknown): string[] {
  const items = ([] as unknown[]).concat(values).flatMap((v) => String(v).split(',')).map((s) => s.trim());
  const names = items.filter((s) => s !== '');
  return names.length ? names : [''];
}

/** The built-in dataset names, as DATASET_HELP lists them (the entries outside its parentheses). */
export function builtinDatasets(): string[] {
  const names: string[] = [];
  let depth = 0;
  let entry = '';
  for (const ch of `${DATASET_HELP},`) {
    if (ch === '(') depth++;
    else if (ch === ')') depth--;
    else if (ch === ',' && depth === 0) {
      const name = entry.trim().split(/\s/)[0];
      if (name && !name.includes(':')) names.push(name);
      entry = '';
      continue;
    }
    if (depth === 0) entry += ch;
  }
  return names;
}

/** A dataset spec that names nothing, with the closest name or text:PATH for an existing file; null when fine or nothing is close. */
function datasetTypo(spec: string): string | null {
  if (/^(text|c4):/.test(spec) || builtinDatasets().includes(spec)) return null;
  let isFile = false;
  try {
    isFile = fs.statSync(spec).isFile();
  } catch {
    // not a file: a misspelled name, perhaps
  }
  if (isFile) return `unknown dataset '${spec}'; did you mean '${/\.json(\.gz)?$/.test(spec) ? 'c4' : 'text'}:${spec}'? (a file is read as text:PATH or c4:PATH)`;
  const hint = didYouMean(spec, builtinDatasets());
  return hint ? `unknown dataset '${spec}'${hint}` : null;
}

const asList = (v: unknown): string[] => (v === undefined || v === null ? [] : ([] as unknown[]).concat(v).map(String));

/**
 * Names a command takes, checked before any work with the closest known name when one is near:
 * --method, the dataset flags (--dataset, --eval, --calib), --proxy and --proxies. Unknown names
 * with nothing close are left to the library, whose refusal lists what it knows.
 */
export function checkNames(args: Record<string, unknown>): void {
  for (const m of asList(args.method)) if (!listStrategies().includes(m)) throw new CrepeError(unknownName('method', m, listStrategies()));
  for (const d of new Set([...asList(args.dataset), ...asList(args.eval), ...asList(args.calib)])) {
    const typo = datasetTypo(d);
    if (typo) throw new CrepeError(typo);
  }
  for (const p of [...asList(args.proxy), ...asList(args.proxies)]) {
    if (!(listProxies() as string[]).includes(p) && closestNames(p, listProxies()).length) throw new CrepeError(unknownName('proxy', p, listProxies()));
  }
}
