/**
 * Zero-shot results in lm-evaluation-harness's own files: the results JSON that `lm_eval
 * --output_path` writes (lm_eval/evaluator_utils.py `_to_eval_results`, lm_eval/evaluator.py
 * `simple_evaluate`, lm_eval/loggers/evaluation_tracker.py `save_results_aggregated`) and the
 * per-document `samples_<task>_<date>.jsonl` of `--log_samples` (`save_results_samples`). The
 * harness commit followed is in docs/zeroshot.md. Written as Python's json.dumps writes them
 * (indent 2, non-ASCII as is, floats in Python's repr: 1.0, 1e-05), so a float stays a float
 * for the harness's own readers (make_table formats floats only).
 */
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { CrepeError } from '../../errors';
import { makeDirs, statPath, writeFileAtomic } from '../../io/atomic';
import { canonicalPath } from '../../io/outputs';
import { MetricName, StringRequest, TaskDoc } from './tasks';
import { RequestScore } from './loglikelihood';
import { DocMetrics } from './metrics';
import { DEFAULT_PACK_TOKENS, ZeroshotResult } from './evaluate';
import { OpenedModel } from '../../model/resolve';
import { blockParams } from '../../plan/memory';
import { gitVersion } from '../../version';

/** The harness version whose layout is written (docs/zeroshot.md). */
export const HARNESS_REFERENCE = { version: '0.4.13.dev0', commit: '4e7e0d47f33bc71070c1d38394bafbb52b117163' };

// ---------------------------------------------------------------------------------------------
// Python's json.dumps

/** A number Python holds as a float (json.dumps writes it with a decimal point or an exponent). */
export class PyFloat {
  constructor(readonly value: number) {}
}
export const pyFloat = (v: number): PyFloat => new PyFloat(v);

/** Python's repr of a float: the shortest round-trip digits, fixed notation for 1e-4 <= |x| < 1e16, else d.ddde+XX. */
export function pyFloatRepr(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (!Number.isFinite(x)) return x > 0 ? 'Infinity' : '-Infinity';
  if (x === 0) return Object.is(x, -0) ? '-0.0' : '0.0';
  const [mant, expStr] = Math.abs(x).toExponential().split('e');
  const digits = mant.replace('.', '');
  const exp = Number(expStr);
  const decpt = exp + 1; // position of the decimal point after the first `decpt` digits
  const sign = x < 0 ? '-' : '';
  if (decpt <= -4 || decpt > 16) {
    const e = Math.abs(exp).toString().padStart(2, '0');
    return `${sign}${digits[0]}${digits.length > 1 ? '.' + digits.slice(1) : ''}e${exp < 0 ? '-' : '+'}${e}`;
  }
  if (decpt <= 0) return `${sign}0.${'0'.repeat(-decpt)}${digits}`;
  if (decpt >= digits.length) return `${sign}${digits}${'0'.repeat(decpt - digits.length)}.0`;
  return `${sign}${digits.slice(0, decpt)}.${digits.slice(decpt)}`;
}

/** json.dumps(v, indent=indent, ensure_ascii=False): whole numbers as ints, PyFloat (and numbers with a fraction) as floats. */
export function pyJson(v: unknown, indent: number | null = 2, level = 0): string {
  if (v instanceof PyFloat) return pyFloatRepr(v.value);
  if (v === null || v === undefined) return 'null';
  // a whole JS number is written as a Python int; one with a fraction can only be a float
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : pyFloatRepr(v);
  if (typeof v === 'boolean') return v ? 'true' : 'false';
  if (typeof v === 'string') return JSON.stringify(v); // the same escapes as Python's with ensure_ascii=False
  const open = indent === null ? '' : '\n' + ' '.repeat(indent * (level + 1));
  const close = indent === null ? '' : '\n' + ' '.repeat(indent * level);
  const sep = indent === null ? ', ' : ',';
  if (Array.isArray(v)) {
    if (v.length === 0) return '[]';
    return `[${v.map((x) => open + pyJson(x, indent, level + 1)).join(sep)}${close}]`;
  }
  const entries = Object.entries(v as Record<string, unknown>);
  if (entries.length === 0) return '{}';
  return `{${entries.map(([k, x]) => `${open}${JSON.stringify(k)}: ${pyJson(x, indent, level + 1)}`).join(sep)}${close}}`;
}

/** The harness's hash_string: sha256 hex of the UTF-8 bytes. */
export function hashString(s: string): string {
  return createHash('sha256').update(s, 'utf8').digest('hex');
}

/** The harness's sanitize_model_name: runs of "<>:/|\?*[] become "__". */
export function sanitizeModelName(name: string): string {
  return name.replace(/["<>:/|\\?*[\]]+/g, '__');
}

/** datetime.now().isoformat().replace(":", "-") in local time, microseconds as Python prints them (none when zero). */
export function harnessDateId(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const base = `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}-${p(d.getMinutes())}-${p(d.getSeconds())}`;
  return d.getMilliseconds() === 0 ? base : `${base}.${p(d.getMilliseconds() * 1000, 6)}`;
}

// ---------------------------------------------------------------------------------------------
// task metadata as the harness's task YAMLs give it

interface HarnessTaskInfo {
  version: number | null;
  higherIsBetter: Partial<Record<MetricName, boolean>>;
  /** The task's config as TaskConfig.to_dict() dumps it (null fields left out). */
  config: Record<string, unknown>;
}

const accMetrics = (norm: boolean) => [
  { metric: 'acc', aggregation: 'mean', higher_is_better: true },
  ...(norm ? [{ metric: 'acc_norm', aggregation: 'mean', higher_is_better: true }] : []),
];

function taskConfig(c: Record<string, unknown>, version: number | null): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  // TaskConfig field order (lm_eval/config/task.py), with its defaults
  const defaults: Record<string, unknown> = { unsafe_code: false, description: '', target_delimiter: ' ', fewshot_delimiter: '\n\n', num_fewshot: 0, repeats: 1, should_decontaminate: false };
  const order = [
    'task', 'tag', 'dataset_path', 'dataset_name', 'training_split', 'validation_split', 'test_split', 'process_docs', 'doc_to_text', 'doc_to_target',
    'unsafe_code', 'doc_to_choice', 'description', 'target_delimiter', 'fewshot_delimiter', 'num_fewshot', 'metric_list', 'output_type', 'repeats',
    'should_decontaminate', 'doc_to_decontamination_query',
  ];
  for (const k of order) {
    const v = k in c ? c[k] : defaults[k];
    if (v !== undefined && v !== null) out[k] = v;
  }
  out.metadata = { version: version === null ? null : pyFloat(version) };
  return out;
}

const ARC = (task: string, name: string): HarnessTaskInfo => ({
  version: 1.0,
  higherIsBetter: { acc: true, acc_norm: true },
  config: taskConfig(
    {
      task, tag: ['ai2_arc'], dataset_path: 'allenai/ai2_arc', dataset_name: name, training_split: 'train', validation_split: 'validation', test_split: 'test',
      doc_to_text: 'Question: {{question}}\nAnswer:', doc_to_target: '{{choices.label.index(answerKey)}}', doc_to_choice: '{{choices.text}}',
      metric_list: accMetrics(true), output_type: 'multiple_choice', should_decontaminate: true, doc_to_decontamination_query: 'Question: {{question}}\nAnswer:',
    },
    1.0,
  ),
});

/** Per crepe task: what the harness's YAML says (tasks/arc, openbookqa, piqa, winogrande, super_glue/boolq, hellaswag, glue/rte, lambada). */
export const HARNESS_TASKS: Record<string, HarnessTaskInfo> = {
  arc_easy: ARC('arc_easy', 'ARC-Easy'),
  arc_challenge: ARC('arc_challenge', 'ARC-Challenge'),
  openbookqa: {
    version: 1.0,
    higherIsBetter: { acc: true, acc_norm: true },
    config: taskConfig(
      {
        task: 'openbookqa', dataset_path: 'allenai/openbookqa', dataset_name: 'main', training_split: 'train', validation_split: 'validation', test_split: 'test',
        doc_to_text: 'question_stem', doc_to_target: '{{choices.label.index(answerKey.lstrip())}}', doc_to_choice: '{{choices.text}}',
        metric_list: accMetrics(true), output_type: 'multiple_choice', should_decontaminate: true, doc_to_decontamination_query: 'question_stem',
      },
      1.0,
    ),
  },
  piqa: {
    version: 1.0,
    higherIsBetter: { acc: true, acc_norm: true },
    config: taskConfig(
      {
        task: 'piqa', dataset_path: 'baber/piqa', training_split: 'train', validation_split: 'validation',
        doc_to_text: 'Question: {{goal}}\nAnswer:', doc_to_target: 'label', doc_to_choice: '{{[sol1, sol2]}}',
        metric_list: accMetrics(true), output_type: 'multiple_choice', should_decontaminate: true, doc_to_decontamination_query: 'goal',
      },
      1.0,
    ),
  },
  winogrande: {
    version: 1.0,
    higherIsBetter: { acc: true },
    config: taskConfig(
      {
        task: 'winogrande', dataset_path: 'allenai/winogrande', dataset_name: 'winogrande_xl', training_split: 'train', validation_split: 'validation',
        // functions are dumped as their source by the harness; named here
        doc_to_text: 'preprocess_winogrande.doc_to_text', doc_to_target: 'preprocess_winogrande.doc_to_target', doc_to_choice: 'preprocess_winogrande.doc_to_choice',
        metric_list: accMetrics(false), output_type: 'multiple_choice', should_decontaminate: true, doc_to_decontamination_query: 'sentence',
      },
      1.0,
    ),
  },
  boolq: {
    version: 2.0,
    higherIsBetter: { acc: true },
    config: taskConfig(
      {
        task: 'boolq', tag: ['super-glue-lm-eval-v1'], dataset_path: 'aps/super_glue', dataset_name: 'boolq', training_split: 'train', validation_split: 'validation',
        doc_to_text: '{{passage}}\nQuestion: {{question}}?\nAnswer:', doc_to_target: 'label', doc_to_choice: ['no', 'yes'],
        metric_list: [{ metric: 'acc' }], output_type: 'multiple_choice', should_decontaminate: true, doc_to_decontamination_query: 'passage',
      },
      2.0,
    ),
  },
  hellaswag: {
    version: 1.0,
    higherIsBetter: { acc: true, acc_norm: true },
    config: taskConfig(
      {
        task: 'hellaswag', tag: ['multiple_choice'], dataset_path: 'Rowan/hellaswag', training_split: 'train', validation_split: 'validation',
        process_docs: 'utils.process_docs', doc_to_text: '{{query}}', doc_to_target: '{{label}}', doc_to_choice: 'choices',
        metric_list: accMetrics(true), output_type: 'multiple_choice',
      },
      1.0,
    ),
  },
  rte: {
    version: 1.0,
    higherIsBetter: { acc: true },
    config: taskConfig(
      {
        task: 'rte', tag: 'glue', dataset_path: 'nyu-mll/glue', dataset_name: 'rte', training_split: 'train', validation_split: 'validation',
        doc_to_text: '{{sentence1}}\nQuestion: {{sentence2}} True or False?\nAnswer:', doc_to_target: 'label', doc_to_choice: ['True', 'False'],
        metric_list: [{ metric: 'acc' }], output_type: 'multiple_choice',
      },
      1.0,
    ),
  },
  lambada_openai: {
    version: 1.0,
    higherIsBetter: { perplexity: false, acc: true },
    config: taskConfig(
      {
        task: 'lambada_openai', tag: ['lambada'], dataset_path: 'EleutherAI/lambada_openai', dataset_name: 'default', test_split: 'test',
        doc_to_text: "{{text.split(' ')[:-1]|join(' ')}}", doc_to_target: "{{' '+text.split(' ')[-1]}}",
        metric_list: [
          { metric: 'perplexity', aggregation: 'perplexity', higher_is_better: false },
          { metric: 'acc', aggregation: 'mean', higher_is_better: true },
        ],
        output_type: 'loglikelihood', should_decontaminate: true, doc_to_decontamination_query: '{{text}}',
      },
      1.0,
    ),
  },
  // crepe's own task (no harness YAML): lambada_openai's rules on TinyStories paragraphs
  tinystories_cloze: {
    version: null,
    higherIsBetter: { perplexity: false, acc: true },
    config: taskConfig(
      {
        task: 'tinystories_cloze', test_split: 'test', doc_to_text: 'paragraph up to its last word', doc_to_target: "' ' + last word",
        metric_list: [
          { metric: 'perplexity', aggregation: 'perplexity', higher_is_better: false },
          { metric: 'acc', aggregation: 'mean', higher_is_better: true },
        ],
        output_type: 'loglikelihood',
      },
      null,
    ),
  },
};

// ---------------------------------------------------------------------------------------------
// results and samples

/** What one task's scoring produced (evaluate.ts TaskResult, the parts the files need). */
export interface HarnessTaskInput {
  task: string;
  items: number;
  totalItems: number;
  docs: TaskDoc[];
  perDoc: { scores: RequestScore[]; metrics: DocMetrics }[];
  metrics: Partial<Record<MetricName, { value: number; stderr: number | null }>>;
}

/** The run's settings as the harness records them in `config` and around it. */
export interface HarnessRunInfo {
  /** The model's name (its --model, or a pruned model's label): model_name, and the folder it goes to. */
  modelName: string;
  /** "key=value,..." as the harness's --model_args. */
  modelArgs: string;
  numParameters: number;
  limit: number | null;
  bootstrapIters: number;
  /** crepe's settings beside the harness's (backend, evaluator, packing, BOS, context). */
  crepe: Record<string, unknown>;
  codeVersion: string;
  /** When scoring started (the harness's `date`) and how long it took. */
  start: Date;
  seconds: number;
  tokenizer: { bosId: number; eosId: number };
  maxLength: number;
}

/** One per-document record, as the harness's evaluate() builds it and save_results_samples writes it. */
export function sampleRecords(t: HarnessTaskInput): Record<string, unknown>[] {
  const metricsWanted = (Object.keys(t.metrics) as MetricName[]).slice();
  // process_results' order: multiple choice acc, acc_norm; loglikelihood perplexity, acc
  return t.docs.map((doc, i) => {
    const d = t.perDoc[i];
    const target = doc.kind === 'loglikelihood' ? doc.requests[0].continuation : targetOf(t.task, doc);
    const resp = (s: RequestScore) => [pyFloatRepr(s.ll), s.greedy ? 'True' : 'False'];
    const docJson = documentOf(doc);
    const metricValues: Record<string, unknown> = {};
    for (const m of metricOrder(doc.kind, metricsWanted)) {
      const v = d.metrics[m]!;
      // multiple choice: floats (1.0 / 0.0); loglikelihood: the ll (float) and int(is_greedy)
      metricValues[m] = doc.kind === 'loglikelihood' && m === 'acc' ? v : pyFloat(v);
    }
    return {
      doc_id: i,
      doc: docJson,
      target: String(target),
      arguments: Object.fromEntries(doc.requests.map((r, k) => [`gen_args_${k}`, { arg_0: r.context, arg_1: r.continuation }])),
      resps: d.scores.map((s) => [resp(s)]),
      filtered_resps: d.scores.map(resp),
      filter: 'none',
      metrics: Object.keys(metricValues),
      doc_hash: hashString(pyJson(docJson, 2)),
      prompt_hash: hashString(doc.requests[0].context),
      target_hash: hashString(String(target)),
      ...metricValues,
    };
  });
}

function metricOrder(kind: TaskDoc['kind'], wanted: readonly MetricName[]): MetricName[] {
  const order: MetricName[] = kind === 'loglikelihood' ? ['perplexity', 'acc'] : ['acc', 'acc_norm'];
  return order.filter((m) => wanted.includes(m));
}

/**
 * doc_to_target: the gold index for multiple-choice tasks whose YAML gives one; WinoGrande's
 * doc_to_target is the shared continuation without the delimiter.
 */
function targetOf(task: string, doc: Extract<TaskDoc, { kind: 'multiple_choice' }>): string | number {
  if (task === 'winogrande') return doc.requests[0].continuation.slice(1);
  return doc.gold;
}

/**
 * The document: crepe reads the original release files (not the HF datasets rows the harness
 * loads), so `doc` holds the document as crepe formatted it: its requests, choices and gold.
 */
function documentOf(doc: TaskDoc): Record<string, unknown> {
  const requests = doc.requests.map((r: StringRequest) => ({ context: r.context, continuation: r.continuation }));
  return doc.kind === 'multiple_choice' ? { requests, choices: doc.choices, gold: doc.gold } : { requests };
}

/** The aggregated results object, in the harness's key order. */
export function harnessResults(tasks: readonly HarnessTaskInput[], run: HarnessRunInfo, samples: Record<string, Record<string, unknown>[]> | null): Record<string, unknown> {
  const info = (t: string): HarnessTaskInfo => HARNESS_TASKS[t] ?? { version: null, higherIsBetter: {}, config: taskConfig({ task: t }, null) };
  const results: Record<string, unknown> = {};
  for (const t of tasks) {
    const entry: Record<string, unknown> = { name: t.task, alias: t.task, sample_len: t.items };
    const kind = t.docs[0]?.kind ?? 'multiple_choice';
    for (const m of metricOrder(kind, Object.keys(t.metrics) as MetricName[])) {
      const s = t.metrics[m]!;
      entry[`${m},none`] = pyFloat(s.value);
      // the harness: "N/A" when bootstrap_iters is 0 or there is one document
      entry[`${m}_stderr,none`] = run.bootstrapIters > 0 && t.items > 1 && s.stderr !== null ? pyFloat(s.stderr) : 'N/A';
    }
    results[t.task] = entry;
  }
  const sorted = <V>(f: (t: string) => V): Record<string, V> => Object.fromEntries([...tasks.map((t) => t.task)].sort().map((t) => [t, f(t)]));
  const taskHashes: Record<string, string> = {};
  if (samples) {
    for (const [task, recs] of Object.entries(samples)) taskHashes[task] = hashString(recs.map((r) => `${r.doc_hash}${r.prompt_hash}${r.target_hash}`).join(''));
  }
  return {
    results,
    group_subtasks: {},
    configs: sorted((t) => info(t).config),
    versions: sorted((t) => (info(t).version === null ? null : pyFloat(info(t).version!))),
    'n-shot': sorted(() => 0),
    higher_is_better: sorted((t) => info(t).higherIsBetter),
    'n-samples': Object.fromEntries(tasks.map((t) => [t.task, { original: t.totalItems, effective: t.items }])),
    config: {
      model: 'crepe',
      model_args: run.modelArgs,
      model_num_parameters: run.numParameters,
      model_dtype: 'float32',
      batch_size: null,
      batch_sizes: [],
      device: 'cpu',
      use_cache: null,
      limit: run.limit,
      bootstrap_iters: run.bootstrapIters,
      gen_kwargs: null,
      random_seed: null,
      numpy_seed: null,
      torch_seed: null,
      fewshot_seed: null,
      crepe: run.crepe,
    },
    git_hash: run.codeVersion,
    date: pyFloat(run.start.getTime() / 1000),
    pretty_env_info: `N/A (crepe on TensorFlow.js, Node ${process.version})`,
    transformers_version: 'N/A',
    lm_eval_version: `N/A (crepe scores as lm-evaluation-harness ${HARNESS_REFERENCE.version}, commit ${HARNESS_REFERENCE.commit})`,
    upper_git_hash: null,
    tokenizer_pad_token: [null, 'None'],
    tokenizer_eos_token: [null, String(run.tokenizer.eosId >= 0 ? run.tokenizer.eosId : 'None')],
    tokenizer_bos_token: [null, String(run.tokenizer.bosId >= 0 ? run.tokenizer.bosId : 'None')],
    eot_token_id: run.tokenizer.eosId >= 0 ? run.tokenizer.eosId : null,
    max_length: run.maxLength,
    task_hashes: taskHashes,
    model_source: 'crepe',
    model_name: run.modelName,
    model_name_sanitized: sanitizeModelName(run.modelName),
    system_instruction: null,
    system_instruction_sha: null,
    fewshot_as_multiturn: false,
    chat_template: null,
    chat_template_sha: null,
    total_evaluation_time_seconds: String(pyFloatRepr(run.seconds)),
  };
}

/** The files a run writes: as the harness's tracker names them (see docs/zeroshot.md). */
export interface HarnessFiles {
  results: string;
  /** Per task (when --log-samples): samples_<task>_<date>.jsonl. */
  samples: Record<string, string>;
}

/**
 * Where the harness puts its files for --output_path: a path ending in .json gives
 * `<stem>_<date>.json` beside it, samples in its folder; anything else is a folder, and the
 * files go to `<folder>/<model_name_sanitized>/results_<date>.json` and `samples_<task>_<date>.jsonl`.
 */
export function harnessFiles(outputPath: string, modelName: string, date: Date, tasks: readonly string[], logSamples: boolean): HarnessFiles {
  const id = harnessDateId(date);
  const p = path.resolve(outputPath);
  const json = path.extname(p) === '.json';
  const dir = json ? path.dirname(p) : path.join(p, sanitizeModelName(modelName));
  const results = json ? path.join(dir, `${path.basename(p, '.json')}_${id}.json`) : path.join(dir, `results_${id}.json`);
  const samples: Record<string, string> = {};
  if (logSamples) for (const t of tasks) samples[t] = path.join(dir, `samples_${t}_${id}.jsonl`);
  return { results, samples };
}

/**
 * The output policy for the harness files, before any work: the folders they go to must be
 * creatable (the nearest existing one a writable folder), a folder --output-path must not be a
 * file, no file may be an input, and a file already there (the same second and millisecond) is
 * replaced only with --force.
 */
export function checkHarnessFiles(outputPath: string, files: HarnessFiles, inputs: readonly string[], force: boolean): void {
  const all = [files.results, ...Object.values(files.samples)];
  const target = path.resolve(outputPath);
  if (path.extname(target) !== '.json' && statPath(target)?.isFile()) throw new CrepeError(`--output-path ${outputPath} is a file; give a folder, or a path ending in .json`);
  let head = path.dirname(files.results);
  while (!statPath(head)) head = path.dirname(head);
  if (!statPath(head)!.isDirectory()) throw new CrepeError(`cannot write --output-path ${outputPath}: ${head} is not a folder`);
  try {
    fs.accessSync(head, fs.constants.W_OK);
  } catch {
    throw new CrepeError(`cannot write --output-path ${outputPath}: permission denied on folder ${head}`);
  }
  const ins = inputs.map((i) => canonicalPath(i));
  for (const f of all) {
    if (ins.includes(canonicalPath(f))) throw new CrepeError(`--output-path: ${f} is an input; refusing to replace it`);
    const st = statPath(f);
    if (st && (st.isDirectory() || !force)) throw new CrepeError(`--output-path: ${f} exists${st.isDirectory() ? ' and is a folder' : '; refusing to replace it (pass --force to replace it anyway)'}`);
  }
}

/** Write the results file and (with samples) one samples file per task, each atomically; the folders are created. */
export function writeHarnessFiles(files: HarnessFiles, results: Record<string, unknown>, samples: Record<string, Record<string, unknown>[]> | null, force: boolean): void {
  makeDirs(path.dirname(files.results));
  if (samples) {
    for (const [task, recs] of Object.entries(samples)) {
      writeFileAtomic(files.samples[task], recs.map((r) => pyJson(r, null) + '\n').join(''), { force });
    }
  }
  writeFileAtomic(files.results, pyJson(results, 2), { force });
}

/** Where one scored model's harness files go and what names it (checked before any work). */
export interface HarnessOutput {
  files: HarnessFiles;
  modelName: string;
  modelArgs: string;
  start: Date;
  logSamples: boolean;
  force: boolean;
}

/** The harness files of a model named `modelName` under --output-path, checked (checkHarnessFiles). */
export function planHarnessOutput(
  outputPath: string,
  opts: { logSamples?: boolean; force?: boolean },
  modelName: string,
  modelArgs: string,
  tasks: readonly string[],
  inputs: readonly string[],
  start = new Date(),
): HarnessOutput {
  const files = harnessFiles(outputPath, modelName, start, tasks, !!opts.logSamples);
  checkHarnessFiles(outputPath, files, inputs, !!opts.force);
  return { files, modelName, modelArgs, start, logSamples: !!opts.logSamples, force: !!opts.force };
}

/** Write the harness results file (and samples) of a zero-shot result of `model` (its own or pruned weights). */
export function writeZeroshotHarness(out: HarnessOutput, model: OpenedModel, r: ZeroshotResult, crepe: Record<string, unknown>): void {
  const cfg = model.source.config;
  const params = cfg.nLayers * blockParams(cfg) + cfg.dim + cfg.vocabSize * cfg.dim * (cfg.tiedEmbeddings ? 1 : 2);
  const samples = out.logSamples ? Object.fromEntries(r.tasks.map((t) => [t.task, sampleRecords(t)])) : null;
  const results = harnessResults(
    r.tasks,
    {
      modelName: out.modelName,
      modelArgs: out.modelArgs,
      numParameters: params,
      limit: r.limit,
      bootstrapIters: r.bootstrapIters,
      crepe: { ...crepe, add_bos: r.addBos, max_length: r.maxLength, pack_tokens: DEFAULT_PACK_TOKENS },
      codeVersion: gitVersion(),
      start: out.start,
      seconds: r.seconds,
      tokenizer: { bosId: model.tokenizer.bosId, eosId: model.tokenizer.eosId },
      maxLength: r.maxLength,
    },
    samples,
  );
  writeHarnessFiles(out.files, results, samples, out.force);
}
