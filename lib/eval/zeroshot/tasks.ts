/**
 * Zero-shot task definitions, following lm-evaluation-harness's task YAMLs (see
 * docs/zeroshot.md for the harness commit and each task's version). Each task reads its
 * public file in its original format and turns every document into the harness's requests:
 * (context, continuation) string pairs, plus what the metrics need.
 */
import * as path from 'path';
import { assetsDir } from '../../assets';
import { TINYSTORIES_TEST, loadDataset } from '../../data/datasets';
import { CrepeError } from '../../errors';
import { unknownName } from '../../util/suggest';
import { statPath } from '../../io/atomic';
import { MAX_TEXT_BYTES, assertRegularFile, readTextFile } from '../../io/input';

/** One (context, continuation) pair, exactly the strings the harness passes to loglikelihood. */
export interface StringRequest {
  context: string;
  continuation: string;
}

/** A document turned into requests. */
export type TaskDoc =
  | {
      kind: 'multiple_choice';
      requests: StringRequest[];
      /** The harness's doc_to_choice strings: acc_norm divides by their length in characters. */
      choices: string[];
      gold: number;
    }
  | { kind: 'loglikelihood'; requests: [StringRequest] };

export type MetricName = 'acc' | 'acc_norm' | 'perplexity';

export interface TaskDef {
  name: string;
  /** What the task is and which harness task definition it follows. */
  description: string;
  /** Harness task name and its metadata version, as docs/zeroshot.md records them. */
  harness: string;
  metrics: readonly MetricName[];
  /** Documents of the task from its file(s); `file` overrides the default (`task:PATH`). */
  load(file: string | undefined): { docs: TaskDoc[]; source: string };
}

/** ARC-Easy and ARC-Challenge: `Question: {{question}}\nAnswer:` and `" " + choice` (harness arc_easy.yaml). */
interface ArcDoc {
  id?: string;
  /** { stem, choices: [{ text, label }] }, checked field by field. */
  question: unknown;
  answerKey: unknown;
}

/** Python's str.isspace() characters, which str.strip()/rstrip()/lstrip() remove (JS \\s differs: it has U+FEFF, lacks 0x1c-0x1f and U+0085). */
const PY_WS = '\\t\\n\\u000b\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_LSTRIP = new RegExp(`^[${PY_WS}]+`);
const PY_RSTRIP = new RegExp(`[${PY_WS}]+$`);
export const pyStrip = (s: string): string => s.replace(PY_LSTRIP, '').replace(PY_RSTRIP, '');
export const pyRstrip = (s: string): string => s.replace(PY_RSTRIP, '');
const pyLstrip = (s: string): string => s.replace(PY_LSTRIP, '');

/**
 * The task's file: the given one or the default under the assets folder, refused (one line) when
 * it is missing, a folder, a device or pipe, or above the text size limit, as `text:` datasets are.
 */
function taskFile(name: string, file: string | undefined, rel: string): string {
  const p = file ?? path.join(assetsDir(), 'tasks', rel);
  if (!file && !statPath(p)) throw new CrepeError(`task file not found for ${name}: ${p} (give one with --tasks ${name}:PATH, or set CREPE_ASSETS)`);
  assertRegularFile(p, `task file for ${name}`, MAX_TEXT_BYTES);
  return p;
}

/** A task file's text: a regular UTF-8 file within the size limit (the checks `text:` datasets get). */
function readTaskText(file: string): string {
  return readTextFile(file, 'task file');
}

/** One parsed document and the line it came from, for messages. */
interface Located<T> {
  doc: T;
  line: number;
}

/** Where a document is, for messages: `FILE: document N (line L)`. */
function at(file: string, i: number, line: number): string {
  return `${file}: document ${i + 1} (line ${line})`;
}

/** JSON lines of a file: each a JSON object, with the document and line number in the message of a bad one. */
function readJsonl<T>(file: string): Located<T>[] {
  const out: Located<T>[] = [];
  readTaskText(file)
    .split('\n')
    .forEach((text, k) => {
      if (text.trim().length === 0) return;
      let doc: unknown;
      try {
        doc = JSON.parse(text);
      } catch {
        throw new CrepeError(`${at(file, out.length, k + 1)}: not valid JSON`);
      }
      if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) {
        throw new CrepeError(`${at(file, out.length, k + 1)}: ${doc === null ? 'null' : Array.isArray(doc) ? 'an array' : `a ${typeof doc}`}, not a JSON object`);
      }
      out.push({ doc: doc as T, line: k + 1 });
    });
  if (out.length === 0) throw new CrepeError(`${file}: no documents`);
  return out;
}

function readLabels(file: string, count: number): number[] {
  const labels: number[] = [];
  readTaskText(file)
    .split('\n')
    .forEach((l, k) => {
      if (l.trim().length === 0) return;
      const v = Number(l.trim());
      if (!Number.isInteger(v)) throw new CrepeError(`${file}: line ${k + 1}: label '${l.trim().slice(0, 40)}' is not an integer`);
      labels.push(v);
    });
  if (labels.length !== count) throw new CrepeError(`${file} has ${labels.length} labels for ${count} documents`);
  return labels;
}

/** A document's location, carried through its checks. */
interface DocAt {
  file: string;
  i: number;
  line: number;
}

function fieldError(d: DocAt, what: string): CrepeError {
  return new CrepeError(`${at(d.file, d.i, d.line)}: ${what}`);
}

/** What a JSON value is, for messages. */
function jsonType(v: unknown): string {
  return v === null ? 'null' : v === undefined ? 'missing' : Array.isArray(v) ? 'an array' : typeof v === 'object' ? 'an object' : `a ${typeof v}`;
}

function str(v: unknown, d: DocAt, field: string): string {
  if (typeof v !== 'string') throw fieldError(d, `field '${field}' is ${jsonType(v)}, not a string`);
  return v;
}

/** A field that must be an array of strings (choices, endings). */
function strings(v: unknown, d: DocAt, field: string): string[] {
  if (!Array.isArray(v)) throw fieldError(d, `field '${field}' is ${jsonType(v)}, not a list`);
  return v.map((x, k) => str(x, d, `${field}[${k}]`));
}

/** A field that must be a JSON object. */
function obj(v: unknown, d: DocAt, field: string): Record<string, unknown> {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw fieldError(d, `field '${field}' is ${jsonType(v)}, not an object`);
  return v as Record<string, unknown>;
}

/** Documents of a JSON-lines task file with their locations. */
function jsonlDocs<T>(file: string): { doc: T; at: DocAt }[] {
  return readJsonl<T>(file).map((x, i) => ({ doc: x.doc, at: { file, i, line: x.line } }));
}

/** A multiple-choice doc whose choices are continuations of one context (target_delimiter " "). */
function mcDoc(context: string, choices: string[], gold: number, d: DocAt): TaskDoc {
  if (!(Number.isInteger(gold) && gold >= 0 && gold < choices.length)) throw fieldError(d, `answer index ${gold} is not one of ${choices.length} choices`);
  return { kind: 'multiple_choice', choices, gold, requests: choices.map((c) => ({ context, continuation: ` ${c}` })) };
}

/** AI2 question files (ARC, OpenBookQA): one multiple-choice doc per line, context and answer label per task. */
function ai2Docs(f: string, contextOf: (stem: string) => string, answerLabel: (key: string) => string): TaskDoc[] {
  return jsonlDocs<ArcDoc>(f).map(({ doc, at: d }) => {
    const q = obj(doc.question, d, 'question');
    const stem = str(q.stem, d, 'question.stem');
    if (!Array.isArray(q.choices)) throw fieldError(d, `field 'question.choices' is ${jsonType(q.choices)}, not a list`);
    const choices = q.choices.map((c, k) => obj(c, d, `question.choices[${k}]`));
    const texts = choices.map((c, k) => str(c.text, d, `question.choices[${k}].text`));
    const labels = choices.map((c, k) => str(c.label, d, `question.choices[${k}].label`));
    return mcDoc(contextOf(stem), texts, labels.indexOf(answerLabel(str(doc.answerKey, d, 'answerKey'))), d);
  });
}

function arcTask(name: string, file: string, description: string): TaskDef {
  return {
    name,
    description,
    harness: `${name} (metadata version 1.0)`,
    metrics: ['acc', 'acc_norm'],
    load(override) {
      const f = taskFile(name, override, file);
      return { docs: ai2Docs(f, (stem) => `Question: ${stem}\nAnswer:`, (key) => key), source: f };
    },
  };
}

const openbookqa: TaskDef = {
  name: 'openbookqa',
  description: 'OpenBookQA main test: the question stem alone as context',
  harness: 'openbookqa (metadata version 1.0)',
  metrics: ['acc', 'acc_norm'],
  load(override) {
    const f = taskFile('openbookqa', override, 'openbookqa/test.jsonl');
    // harness: doc_to_text question_stem; gold choices.label.index(answerKey.lstrip())
    return { docs: ai2Docs(f, (stem) => stem, pyLstrip), source: f };
  },
};

const piqa: TaskDef = {
  name: 'piqa',
  description: 'PIQA validation: Question: goal / Answer: solution',
  harness: 'piqa (metadata version 1.0)',
  metrics: ['acc', 'acc_norm'],
  load(override) {
    const f = taskFile('piqa', override, 'piqa/valid.jsonl');
    // The labels sit beside the documents: X.jsonl and X-labels.lst, as the PIQA release has them.
    if (!f.endsWith('.jsonl')) throw new CrepeError(`PIQA task file ${f} must be named X.jsonl: its labels are read from X-labels.lst beside it`);
    const labelFile = f.replace(/\.jsonl$/, '-labels.lst');
    if (!statPath(labelFile)) throw new CrepeError(`PIQA labels not found: ${labelFile} (expected beside ${f})`);
    assertRegularFile(labelFile, 'PIQA labels file', MAX_TEXT_BYTES);
    const raw = jsonlDocs<{ goal: unknown; sol1: unknown; sol2: unknown }>(f);
    const labels = readLabels(labelFile, raw.length);
    const docs = raw.map(({ doc, at: d }, i) => mcDoc(`Question: ${str(doc.goal, d, 'goal')}\nAnswer:`, [str(doc.sol1, d, 'sol1'), str(doc.sol2, d, 'sol2')], labels[i], d));
    return { docs, source: `${f} + ${path.basename(labelFile)}` };
  },
};

const winogrande: TaskDef = {
  name: 'winogrande',
  description: 'WinoGrande (xl) dev: partial evaluation, the option fills the blank and the rest of the sentence is scored',
  harness: 'winogrande (metadata version 1.0)',
  metrics: ['acc'],
  load(override) {
    const f = taskFile('winogrande', override, 'winogrande/dev.jsonl');
    const docs = jsonlDocs<{ sentence: unknown; option1: unknown; option2: unknown; answer: unknown }>(f).map(({ doc, at: d }): TaskDoc => {
      const s = str(doc.sentence, d, 'sentence');
      const idx = s.indexOf('_');
      if (idx < 0) throw fieldError(d, "field 'sentence' has no '_' blank");
      const gold = ({ '1': 0, '2': 1 } as Record<string, number>)[String(doc.answer)];
      if (gold === undefined) throw fieldError(d, `field 'answer' is ${JSON.stringify(doc.answer) ?? 'missing'}, not "1" or "2"`);
      // harness preprocess_winogrande: contexts = sentence[:idx] + option, target = sentence[idx+1:].strip()
      const choices = [str(doc.option1, d, 'option1'), str(doc.option2, d, 'option2')].map((o) => s.slice(0, idx) + o);
      const target = pyStrip(s.slice(idx + 1));
      return { kind: 'multiple_choice', choices, gold, requests: choices.map((c) => ({ context: c, continuation: ` ${target}` })) };
    });
    return { docs, source: f };
  },
};

const boolq: TaskDef = {
  name: 'boolq',
  description: 'BoolQ (SuperGLUE) validation: passage, question, " no"/" yes"',
  harness: 'boolq (super_glue, metadata version 2.0)',
  metrics: ['acc'],
  load(override) {
    const f = taskFile('boolq', override, 'boolq/val.jsonl');
    const docs = jsonlDocs<{ passage: unknown; question: unknown; label: unknown }>(f).map(({ doc, at: d }) => {
      // SuperGLUE has JSON booleans; some copies have "true"/"false" strings or 0/1
      const l = doc.label;
      const gold = l === true || l === 'true' || l === 1 ? 1 : l === false || l === 'false' || l === 0 ? 0 : -1;
      if (gold < 0) throw fieldError(d, `field 'label' is ${JSON.stringify(l) ?? 'missing'}, not a boolean`);
      return mcDoc(`${str(doc.passage, d, 'passage')}\nQuestion: ${str(doc.question, d, 'question')}?\nAnswer:`, ['no', 'yes'], gold, d);
    });
    return { docs, source: f };
  },
};

/** Python's str.capitalize(): first character upper case, the rest lower case. */
function pyCapitalize(s: string): string {
  const cps = Array.from(s);
  if (cps.length === 0) return s;
  return cps[0].toUpperCase() + cps.slice(1).join('').toLowerCase();
}

/** harness hellaswag/utils.py preprocess. */
export function hellaswagPreprocess(text: string): string {
  let t = pyStrip(text);
  t = t.split(' [title]').join('. ');
  t = t.replace(/\[.*?\]/g, '');
  t = t.split('  ').join(' ');
  return t;
}

const hellaswag: TaskDef = {
  name: 'hellaswag',
  description: 'HellaSwag validation (rowanz/hellaswag jsonl): activity label + context, four endings',
  harness: 'hellaswag (metadata version 1.0)',
  metrics: ['acc', 'acc_norm'],
  load(override) {
    const f = taskFile('hellaswag', override, 'hellaswag/hellaswag_val.jsonl');
    const docs = jsonlDocs<{ activity_label: unknown; ctx_a: unknown; ctx_b: unknown; endings: unknown; label: unknown }>(f).map(({ doc, at: d }) => {
      const ctx = `${str(doc.ctx_a, d, 'ctx_a')} ${pyCapitalize(str(doc.ctx_b, d, 'ctx_b'))}`;
      const endings = strings(doc.endings, d, 'endings');
      const gold = typeof doc.label === 'number' ? doc.label : typeof doc.label === 'string' && /^\d+$/.test(doc.label) ? Number(doc.label) : NaN;
      if (Number.isNaN(gold)) throw fieldError(d, `field 'label' is ${JSON.stringify(doc.label) ?? 'missing'}, not an index (test files have no labels)`);
      return mcDoc(hellaswagPreprocess(`${str(doc.activity_label, d, 'activity_label')}: ${ctx}`), endings.map((e) => hellaswagPreprocess(e)), gold, d);
    });
    return { docs, source: f };
  },
};

/** RTE: GLUE's dev.tsv (index, sentence1, sentence2, label) or SuperGLUE's val.jsonl (premise, hypothesis, label). */
function loadRte(f: string): TaskDoc[] {
  const labelIndex = (l: unknown, d: DocAt): number => {
    if (l === 'entailment' || l === 0) return 0;
    if (l === 'not_entailment' || l === 1) return 1;
    throw fieldError(d, `field 'label' is ${JSON.stringify(l) ?? 'missing'}, not entailment/not_entailment`);
  };
  const doc = (s1: string, s2: string, label: unknown, d: DocAt): TaskDoc => mcDoc(`${s1}\nQuestion: ${s2} True or False?\nAnswer:`, ['True', 'False'], labelIndex(label, d), d);
  if (f.endsWith('.tsv')) {
    const lines = readTaskText(f)
      .split('\n')
      .map((text, k) => ({ text: text.replace(/\r$/, ''), line: k + 1 }))
      .filter((l) => l.text.length > 0);
    const header = (lines.shift()?.text ?? '').split('\t');
    const col = (name: string): number => {
      const k = header.indexOf(name);
      if (k < 0) throw new CrepeError(`${f}: no '${name}' column in the header (GLUE RTE has index, sentence1, sentence2, label)`);
      return k;
    };
    const [c1, c2, cl] = [col('sentence1'), col('sentence2'), col('label')];
    if (lines.length === 0) throw new CrepeError(`${f}: no documents (only a header)`);
    return lines.map(({ text, line }, i) => {
      const d: DocAt = { file: f, i, line };
      const cells = text.split('\t');
      if (cells.length !== header.length) throw fieldError(d, `${cells.length} tab-separated cells for the header's ${header.length}`);
      return doc(cells[c1], cells[c2], cells[cl], d);
    });
  }
  return jsonlDocs<{ premise: unknown; hypothesis: unknown; label: unknown }>(f).map(({ doc: x, at: d }) => doc(str(x.premise, d, 'premise'), str(x.hypothesis, d, 'hypothesis'), x.label, d));
}

const rte: TaskDef = {
  name: 'rte',
  description: 'RTE validation (GLUE dev.tsv or SuperGLUE val.jsonl): " True"/" False"',
  harness: 'rte (glue, metadata version 1.0; sglue_rte has the same prompt)',
  metrics: ['acc'],
  load(override) {
    const f = taskFile('rte', override, 'rte/dev.tsv');
    return { docs: loadRte(f), source: f };
  },
};

/** LAMBADA (OpenAI): all but the last space-separated word as context, " " + last word as target. */
export function lastWordRequest(text: string): StringRequest {
  const words = text.split(' ');
  return { context: words.slice(0, -1).join(' '), continuation: ` ${words[words.length - 1]}` };
}

const lambada: TaskDef = {
  name: 'lambada_openai',
  description: 'LAMBADA (OpenAI detokenized) test: last-word greedy accuracy and perplexity',
  harness: 'lambada_openai (metadata version 1.0)',
  metrics: ['perplexity', 'acc'],
  load(override) {
    const f = taskFile('lambada_openai', override, 'lambada/lambada_test.jsonl');
    const docs = jsonlDocs<{ text: unknown }>(f).map(({ doc, at: d }): TaskDoc => ({ kind: 'loglikelihood', requests: [lastWordRequest(str(doc.text, d, 'text'))] }));
    return { docs, source: f };
  },
};

/**
 * crepe's own in-domain cloze task (not a harness task): every paragraph of the TinyStories
 * evaluation split with at least 8 words, cut before its last word (trailing punctuation
 * dropped), scored as lambada_openai (greedy last-word accuracy and perplexity).
 */
export function tinystoriesClozeRequests(text: string): StringRequest[] {
  const out: StringRequest[] = [];
  for (const para of text.split(/\n\s*\n/)) {
    const p = para.replace(/\s+/g, ' ').trim();
    // the last word: letters (and inner apostrophes) before the closing punctuation
    const m = /^(.*\S) ([A-Za-z][A-Za-z']*[A-Za-z]|[A-Za-z])[.!?,;:"')\]]*$/.exec(p);
    if (!m || p.split(' ').length < 8) continue;
    out.push({ context: m[1], continuation: ` ${m[2]}` });
  }
  return out;
}

const tinystoriesCloze: TaskDef = {
  name: 'tinystories_cloze',
  description: "crepe's in-domain cloze (NOT a harness task): last word of each TinyStories evaluation-split paragraph, scored as lambada_openai",
  harness: 'none (crepe task, scored with lambada_openai rules)',
  metrics: ['perplexity', 'acc'],
  load(override) {
    const ds = loadDataset(override ? `text:${override}` : TINYSTORIES_TEST, 'eval');
    const docs = tinystoriesClozeRequests(ds.text).map((r): TaskDoc => ({ kind: 'loglikelihood', requests: [r] }));
    if (docs.length === 0) throw new CrepeError(`no paragraphs usable for tinystories_cloze in ${ds.slice}`);
    return { docs, source: ds.slice };
  },
};

/**
 * A task whose documents are read once per file version: a command checks its task files before
 * any work (checkTaskFiles) and scores them later without reading and validating them twice.
 */
function readOnce(def: TaskDef): TaskDef {
  let last: { key: string; value: ReturnType<TaskDef['load']> } | undefined;
  return {
    ...def,
    load(file) {
      const st = file === undefined ? undefined : statPath(file);
      const key = JSON.stringify([file ?? null, assetsDir(), st?.size, st?.mtimeMs, st?.ino]);
      if (last?.key !== key) last = { key, value: def.load(file) };
      return last.value;
    },
  };
}

export const TASKS: readonly TaskDef[] = [
  arcTask('arc_easy', 'arc_easy/ARC-Easy-Test.jsonl', 'ARC-Easy test: Question: ... / Answer: choice'),
  arcTask('arc_challenge', 'arc_challenge/ARC-Challenge-Test.jsonl', 'ARC-Challenge test: Question: ... / Answer: choice'),
  openbookqa,
  piqa,
  winogrande,
  boolq,
  hellaswag,
  rte,
  lambada,
  tinystoriesCloze,
].map(readOnce);

/** Read and validate every task's file(s) now, so a bad one is refused before any work. */
export function checkTaskFiles(specs: readonly TaskSpec[]): void {
  for (const s of specs) s.task.load(s.file);
}

/** The tasks papers average (Wanda/RIA/SparseGPT table 2), in their order, where present. */
export const PAPER_TASKS = ['boolq', 'rte', 'hellaswag', 'winogrande', 'arc_easy', 'arc_challenge', 'openbookqa'] as const;

export function findTask(name: string): TaskDef {
  const t = TASKS.find((x) => x.name === name);
  if (!t) throw new CrepeError(unknownName('zero-shot task', name, TASKS.map((x) => x.name)));
  return t;
}

/** A task spec: `name` or `name:PATH` (the task's file in its original format). */
export interface TaskSpec {
  task: TaskDef;
  file?: string;
}

/**
 * Split one --tasks value at its commas. A path holding a comma writes it as `\,`, and a
 * backslash before a comma or another backslash as `\\`; any other backslash is kept as it is
 * (so ordinary paths need no escaping).
 */
export function splitTaskList(value: string): string[] {
  const parts: string[] = [];
  let cur = '';
  for (let k = 0; k < value.length; k++) {
    const c = value[k];
    if (c === '\\' && (value[k + 1] === ',' || value[k + 1] === '\\')) cur += value[++k];
    else if (c === ',') {
      parts.push(cur);
      cur = '';
    } else cur += c;
  }
  parts.push(cur);
  return parts;
}

/**
 * The command line's --tasks values as given, for yargs' coerce: split at commas by
 * parseTaskList alone, which knows the `\,` escape (a plain comma split would cut an escaped path).
 */
export function taskListValues(values: unknown): string[] {
  return ([] as unknown[]).concat(values).map(String);
}

/** Parse `arc_easy,boolq:/data/val.jsonl` (a list or one comma-separated string; `\,` is a comma in a path). */
export function parseTaskList(specs: readonly string[] | string): TaskSpec[] {
  // empty items (a trailing comma) are dropped, as in the other comma-separated flags
  const parts = (typeof specs === 'string' ? [specs] : specs).flatMap(splitTaskList).map((s) => s.trim()).filter((s) => s.length > 0);
  if (parts.length === 0) throw new CrepeError('--tasks needs a comma-separated list of task names');
  const out = parts.map((p) => {
    const k = p.indexOf(':');
    if (k < 0) return { task: findTask(p) };
    const file = p.slice(k + 1);
    if (file.length === 0) throw new CrepeError(`--tasks ${p}: the path after '${p.slice(0, k)}:' is empty`);
    return { task: findTask(p.slice(0, k)), file };
  });
  const names = out.map((s) => s.task.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new CrepeError(`task '${dup}' is listed twice`);
  return out;
}
