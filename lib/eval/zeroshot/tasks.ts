/**
 * Zero-shot task definitions, following lm-evaluation-harness's task YAMLs (see
 * docs/zeroshot.md for the harness commit and each task's version). Each task reads its
 * public file in its original format and turns every document into the harness's requests:
 * (context, continuation) string pairs, plus what the metrics need.
 */
import * as fs from 'fs';
import * as path from 'path';
import { assetsDir } from '../../assets';
import { TINYSTORIES_TEST, loadDataset } from '../../data/datasets';
import { CrepeError } from '../../errors';
import { unknownName } from '../../util/suggest';

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
  question: { stem: string; choices: { text: string; label: string }[] };
  answerKey: string;
}

/** Python's str.isspace() characters, which str.strip()/rstrip()/lstrip() remove (JS \\s differs: it has U+FEFF, lacks 0x1c-0x1f and U+0085). */
const PY_WS = '\\t\\n\\u000b\\f\\r\\u001c-\\u001f \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const PY_LSTRIP = new RegExp(`^[${PY_WS}]+`);
const PY_RSTRIP = new RegExp(`[${PY_WS}]+$`);
export const pyStrip = (s: string): string => s.replace(PY_LSTRIP, '').replace(PY_RSTRIP, '');
export const pyRstrip = (s: string): string => s.replace(PY_RSTRIP, '');
const pyLstrip = (s: string): string => s.replace(PY_LSTRIP, '');

function taskFile(name: string, file: string | undefined, rel: string): string {
  const p = file ?? path.join(assetsDir(), 'tasks', rel);
  if (!fs.existsSync(p)) {
    throw new CrepeError(
      file
        ? `task file not found for ${name}: ${p}`
        : `task file not found for ${name}: ${p} (give one with --tasks ${name}:PATH, or set CREPE_ASSETS)`,
    );
  }
  return p;
}

/** JSON lines of a file, with the line number in the message of a bad line. */
function readJsonl<T>(file: string): T[] {
  const out: T[] = [];
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.trim().length === 0) return;
    try {
      out.push(JSON.parse(line) as T);
    } catch {
      throw new CrepeError(`${file}:${i + 1}: not valid JSON`);
    }
  });
  if (out.length === 0) throw new CrepeError(`${file}: no documents`);
  return out;
}

function readLabels(file: string, count: number): number[] {
  const labels = fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((l) => l.trim().length > 0)
    .map((l, i) => {
      const v = Number(l.trim());
      if (!Number.isInteger(v)) throw new CrepeError(`${file}:${i + 1}: label '${l.trim()}' is not an integer`);
      return v;
    });
  if (labels.length !== count) throw new CrepeError(`${file} has ${labels.length} labels for ${count} documents`);
  return labels;
}

function fieldError(file: string, i: number, what: string): CrepeError {
  return new CrepeError(`${file}: document ${i + 1}: ${what}`);
}

function str(v: unknown, file: string, i: number, field: string): string {
  if (typeof v !== 'string') throw fieldError(file, i, `field '${field}' is missing or not a string`);
  return v;
}

/** A multiple-choice doc whose choices are continuations of one context (target_delimiter " "). */
function mcDoc(context: string, choices: string[], gold: number, file: string, i: number): TaskDoc {
  if (!(Number.isInteger(gold) && gold >= 0 && gold < choices.length)) throw fieldError(file, i, `answer index ${gold} is not one of ${choices.length} choices`);
  return { kind: 'multiple_choice', choices, gold, requests: choices.map((c) => ({ context, continuation: ` ${c}` })) };
}

/** AI2 question files (ARC, OpenBookQA): one multiple-choice doc per line, context and answer label per task. */
function ai2Docs(f: string, contextOf: (stem: string) => string, answerLabel: (key: string) => string): TaskDoc[] {
  return readJsonl<ArcDoc>(f).map((d, i) => {
    const q = d.question;
    if (!q || typeof q.stem !== 'string' || !Array.isArray(q.choices)) throw fieldError(f, i, 'expected question.stem and question.choices');
    const choices = q.choices.map((c, k) => str(c.text, f, i, `choices[${k}].text`));
    return mcDoc(contextOf(q.stem), choices, q.choices.map((c) => c.label).indexOf(answerLabel(str(d.answerKey, f, i, 'answerKey'))), f, i);
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
    const labelFile = f.replace(/\.jsonl$/, '-labels.lst');
    if (!fs.existsSync(labelFile)) throw new CrepeError(`PIQA labels not found: ${labelFile} (expected beside ${f})`);
    const raw = readJsonl<{ goal: string; sol1: string; sol2: string }>(f);
    const labels = readLabels(labelFile, raw.length);
    const docs = raw.map((d, i) =>
      mcDoc(`Question: ${str(d.goal, f, i, 'goal')}\nAnswer:`, [str(d.sol1, f, i, 'sol1'), str(d.sol2, f, i, 'sol2')], labels[i], f, i),
    );
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
    const docs = readJsonl<{ sentence: string; option1: string; option2: string; answer: string }>(f).map((d, i): TaskDoc => {
      const s = str(d.sentence, f, i, 'sentence');
      const idx = s.indexOf('_');
      if (idx < 0) throw fieldError(f, i, "sentence has no '_' blank");
      const gold = ({ '1': 0, '2': 1 } as Record<string, number>)[String(d.answer)];
      if (gold === undefined) throw fieldError(f, i, `answer '${String(d.answer)}' is not "1" or "2"`);
      // harness preprocess_winogrande: contexts = sentence[:idx] + option, target = sentence[idx+1:].strip()
      const choices = [str(d.option1, f, i, 'option1'), str(d.option2, f, i, 'option2')].map((o) => s.slice(0, idx) + o);
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
    const docs = readJsonl<{ passage: string; question: string; label: unknown }>(f).map((d, i) => {
      // SuperGLUE has JSON booleans; some copies have "true"/"false" strings or 0/1
      const l = d.label;
      const gold = l === true || l === 'true' || l === 1 ? 1 : l === false || l === 'false' || l === 0 ? 0 : -1;
      if (gold < 0) throw fieldError(f, i, `label ${JSON.stringify(l)} is not a boolean`);
      return mcDoc(`${str(d.passage, f, i, 'passage')}\nQuestion: ${str(d.question, f, i, 'question')}?\nAnswer:`, ['no', 'yes'], gold, f, i);
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
    const raw = readJsonl<{ activity_label: string; ctx_a: string; ctx_b: string; endings: string[]; label: unknown }>(f);
    const docs = raw.map((d, i) => {
      const ctx = `${str(d.ctx_a, f, i, 'ctx_a')} ${pyCapitalize(str(d.ctx_b, f, i, 'ctx_b'))}`;
      if (!Array.isArray(d.endings)) throw fieldError(f, i, "field 'endings' is missing");
      const gold = typeof d.label === 'number' ? d.label : typeof d.label === 'string' && /^\d+$/.test(d.label) ? Number(d.label) : NaN;
      if (Number.isNaN(gold)) throw fieldError(f, i, `label ${JSON.stringify(d.label)} is not an index (test files have no labels)`);
      return mcDoc(hellaswagPreprocess(`${str(d.activity_label, f, i, 'activity_label')}: ${ctx}`), d.endings.map((e) => hellaswagPreprocess(e)), gold, f, i);
    });
    return { docs, source: f };
  },
};

/** RTE: GLUE's dev.tsv (index, sentence1, sentence2, label) or SuperGLUE's val.jsonl (premise, hypothesis, label). */
function loadRte(f: string): TaskDoc[] {
  const labelIndex = (l: unknown, i: number): number => {
    if (l === 'entailment' || l === 0) return 0;
    if (l === 'not_entailment' || l === 1) return 1;
    throw fieldError(f, i, `label ${JSON.stringify(l)} is not entailment/not_entailment`);
  };
  const doc = (s1: string, s2: string, label: unknown, i: number): TaskDoc =>
    mcDoc(`${s1}\nQuestion: ${s2} True or False?\nAnswer:`, ['True', 'False'], labelIndex(label, i), f, i);
  if (f.endsWith('.tsv')) {
    const lines = fs.readFileSync(f, 'utf8').split('\n').filter((l) => l.length > 0);
    const header = (lines.shift() ?? '').replace(/\r$/, '').split('\t');
    const col = (name: string): number => {
      const k = header.indexOf(name);
      if (k < 0) throw new CrepeError(`${f}: no '${name}' column in the header (GLUE RTE has index, sentence1, sentence2, label)`);
      return k;
    };
    const [c1, c2, cl] = [col('sentence1'), col('sentence2'), col('label')];
    return lines.map((line, i) => {
      const cells = line.replace(/\r$/, '').split('\t');
      return doc(cells[c1], cells[c2], cells[cl], i);
    });
  }
  return readJsonl<{ premise: string; hypothesis: string; label: unknown }>(f).map((d, i) =>
    doc(str(d.premise, f, i, 'premise'), str(d.hypothesis, f, i, 'hypothesis'), d.label, i),
  );
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
    const docs = readJsonl<{ text: string }>(f).map((d, i): TaskDoc => ({ kind: 'loglikelihood', requests: [lastWordRequest(str(d.text, f, i, 'text'))] }));
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
];

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

/** Parse `arc_easy,boolq:/data/val.jsonl` (a list or one comma-separated string). */
export function parseTaskList(specs: readonly string[] | string): TaskSpec[] {
  const parts = (typeof specs === 'string' ? [specs] : specs).flatMap((s) => s.split(',')).map((s) => s.trim());
  if (parts.length === 0 || parts.some((p) => p.length === 0)) throw new CrepeError('--tasks needs a comma-separated list of task names');
  const out = parts.map((p) => {
    const k = p.indexOf(':');
    return k < 0 ? { task: findTask(p) } : { task: findTask(p.slice(0, k)), file: p.slice(k + 1) };
  });
  const names = out.map((s) => s.task.name);
  const dup = names.find((n, i) => names.indexOf(n) !== i);
  if (dup) throw new CrepeError(`task '${dup}' is listed twice`);
  return out;
}
