/**
 * The model card (`README.md` in the Hub's format: YAML front matter, then Markdown) and the
 * recipe file (`crepe-recipe.json`) of every HF folder crepe writes. Both are rendered from one
 * plain JSON record, `ModelCardInfo`, so that whatever describes a run (the prune command's
 * settings, a recipe object) can fill it and a reader can rebuild the card from the file alone.
 */
import * as fs from 'fs';
import * as path from 'path';

/** The recipe file beside the weights: crepe's name, so it cannot collide with HF's or llm-compressor's (recipe.yaml) files. */
export const RECIPE_FILE = 'crepe-recipe.json';
export const MODEL_CARD_FILE = 'README.md';
/** `format` of the recipe file; bump when a field changes meaning. */
export const RECIPE_FORMAT = 'crepe-recipe/1';

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
/** A JSON object: what a recipe or settings record must be. */
export type JsonObject = { [key: string]: Json };

/** Where the weights came from. */
export interface BaseModelInfo {
  /** The name or path the user gave (e.g. stories260K, ./llama-7b). */
  name: string;
  /** Its Hugging Face Hub id, when known (the card's base_model). */
  hub_id: string | null;
  /** The licence the source states (an SPDX-style id as the Hub uses: mit, apache-2.0, ...); null when it states none. */
  license: string | null;
  /** Where the source can be obtained, when it is not on the Hub. */
  url: string | null;
}

/** Perplexity of one dataset, dense and (for a pruned model) pruned, on the same windows. */
export interface PerplexityResult {
  dataset: string;
  /** The slice of the dataset the windows come from (e.g. "test", "first 60000 bytes"). */
  slice: string;
  seqlen: number;
  windows: number;
  dense_ppl: number | null;
  pruned_ppl: number | null;
}

export interface ZeroshotResultRow {
  task: string;
  metric: string;
  dense: number | null;
  pruned: number | null;
}

/** Everything the card and the recipe file say: a plain JSON-able record. */
export interface ModelCardInfo {
  /** 'pruned': crepe pruned the base model; 'converted': the same weights in another format or dtype. */
  kind: 'pruned' | 'converted';
  base_model: BaseModelInfo;
  /**
   * The settings that reproduce the model (method, parameters, structure, sparsity, calibration
   * data and seed, add-ons); null for a plain conversion. Any JSON object: a recipe fills it.
   */
  recipe: JsonObject | null;
  results: {
    /** Fraction of the prunable weights that are zero. */
    sparsity: number | null;
    perplexity: PerplexityResult[];
    zeroshot: ZeroshotResultRow[];
  };
  /** Storage dtype of the weights (F32, BF16, F16). */
  dtype: string;
  /** The git commit of the crepe code that wrote the folder (lib/version.ts). */
  code_version: string;
  /** The command line, when a command wrote the folder. */
  command: string | null;
  /** What could not be carried over (e.g. a tokenizer that could not be converted), one line each. */
  notes: string[];
}

/** The built-in models' provenance (their assets README): Hub id, licence, where to get them. */
const KNOWN_SOURCES: Record<string, Omit<BaseModelInfo, 'name'>> = {
  stories260K: { hub_id: 'karpathy/tinyllamas', license: 'mit', url: 'https://huggingface.co/karpathy/tinyllamas/tree/main/stories260K' },
  'babyllama-char': { hub_id: null, license: 'mit', url: 'https://github.com/EN10/BabyLlama' },
};

/**
 * What is known about a model name or path: a built-in model's provenance, or for an HF folder
 * the Hub id and licence its own card's front matter states (base_model is kept only when the
 * folder is itself a crepe output of a Hub model).
 */
export function baseModelInfo(name: string): BaseModelInfo {
  const known = KNOWN_SOURCES[name];
  if (known) return { name, ...known };
  const info: BaseModelInfo = { name, hub_id: null, license: null, url: null };
  if (!fs.statSync(name, { throwIfNoEntry: false })?.isDirectory()) return info;
  const card = path.join(name, MODEL_CARD_FILE);
  if (fs.statSync(card, { throwIfNoEntry: false })?.isFile()) {
    const meta = frontMatter(fs.readFileSync(card, 'utf8'));
    if (meta.license) info.license = meta.license;
  }
  const recipe = path.join(name, RECIPE_FILE);
  if (fs.statSync(recipe, { throwIfNoEntry: false })?.isFile()) {
    try {
      const prior = JSON.parse(fs.readFileSync(recipe, 'utf8')) as Partial<ModelCardInfo>;
      if (typeof prior.base_model?.hub_id === 'string') info.hub_id = prior.base_model.hub_id;
      if (!info.license && typeof prior.base_model?.license === 'string') info.license = prior.base_model.license;
    } catch {
      // not ours to interpret
    }
  }
  return info;
}

/** Top-level `key: value` scalars of a card's YAML front matter (enough for license). */
function frontMatter(text: string): Record<string, string> {
  const m = /^---\r?\n([\s\S]*?)\r?\n---/.exec(text);
  const out: Record<string, string> = {};
  if (!m) return out;
  for (const line of m[1].split(/\r?\n/)) {
    const kv = /^([A-Za-z_][\w-]*):\s*(\S.*)$/.exec(line);
    if (kv) out[kv[1]] = kv[2].replace(/^["']|["']$/g, '');
  }
  return out;
}

/** A YAML scalar that reads back as the same string. */
function yamlString(s: string): string {
  return /^[A-Za-z0-9][A-Za-z0-9._/-]*$/.test(s) ? s : JSON.stringify(s);
}

/** Hub tags: crepe, pruned, sparsity-50, the method and the structure. */
export function cardTags(info: ModelCardInfo): string[] {
  const tags = ['crepe'];
  if (info.kind === 'pruned') {
    tags.push('pruned');
    const r = info.recipe ?? {};
    const sparsity = typeof r.sparsity === 'number' ? r.sparsity : info.results.sparsity;
    if (typeof sparsity === 'number') tags.push(`sparsity-${Math.round(sparsity * 100)}`);
    if (typeof r.method === 'string') tags.push(r.method.toLowerCase());
    if (typeof r.structure === 'string') {
      const nm = /^(\d+):(\d+)$/.exec(r.structure);
      tags.push(nm ? `semi-structured-${nm[1]}-${nm[2]}` : r.structure.toLowerCase());
    }
  }
  return [...new Set(tags.map((t) => t.replace(/[^a-z0-9.-]+/g, '-')))];
}

const fmt = (x: number | null, digits = 4): string => (x === null || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits));

/** The card's Markdown (front matter included). */
export function renderModelCard(info: ModelCardInfo): string {
  const b = info.base_model;
  const front = ['---'];
  if (b.hub_id) front.push(`base_model: ${yamlString(b.hub_id)}`);
  front.push('library_name: transformers', 'pipeline_tag: text-generation');
  if (b.license) front.push(`license: ${yamlString(b.license)}`);
  front.push('tags:', ...cardTags(info).map((t) => `- ${yamlString(t)}`), '---', '');

  const title = info.kind === 'pruned' ? `${b.name}, pruned with crepe` : `${b.name}, converted by crepe`;
  const body = [`# ${title}`, ''];
  const source = b.hub_id ? `[${b.hub_id}](https://huggingface.co/${b.hub_id})` : b.url ? `[${b.name}](${b.url})` : `\`${b.name}\``;
  if (info.kind === 'pruned') {
    const r = info.recipe ?? {};
    const what = [r.method, r.structure, typeof r.sparsity === 'number' ? `${fmt(r.sparsity * 100, 1)}% sparsity` : null].filter((x) => typeof x === 'string' && x.length > 0);
    body.push(`The weights of ${source} with ${what.length ? what.join(', ') : 'a pruning recipe'} applied by crepe (post-training pruning, no retraining). Pruned weights are stored as zeros: the folder loads with \`AutoModelForCausalLM\` and \`AutoTokenizer\` like the base model.`, '');
  } else {
    body.push(`The weights of ${source}, unchanged, in the Hugging Face format (written by crepe).`, '');
  }
  body.push(`- weights: ${info.dtype}`, `- code version: \`${info.code_version}\``);
  if (info.command) body.push(`- command: \`${info.command}\``);
  if (b.license) body.push(`- licence: ${b.license}, as the base model states`);
  body.push('');

  if (info.recipe) {
    body.push('## Recipe', '', `The settings that reproduce this model, as in [${RECIPE_FILE}](${RECIPE_FILE}):`, '', '```json', JSON.stringify(info.recipe, null, 2), '```', '');
  }
  const res = info.results;
  if (res.sparsity !== null || res.perplexity.length || res.zeroshot.length) {
    body.push('## Results', '');
    if (res.sparsity !== null) body.push(`Measured sparsity of the prunable weights: ${fmt(res.sparsity * 100, 2)}%.`, '');
    if (res.perplexity.length) {
      body.push('| dataset | slice | context | windows | dense PPL | pruned PPL |', '|---|---|---:|---:|---:|---:|');
      for (const p of res.perplexity) body.push(`| ${p.dataset} | ${p.slice} | ${p.seqlen} | ${p.windows} | ${fmt(p.dense_ppl)} | ${fmt(p.pruned_ppl)} |`);
      body.push('');
    }
    if (res.zeroshot.length) {
      body.push('| task | metric | dense | pruned |', '|---|---|---:|---:|');
      for (const z of res.zeroshot) body.push(`| ${z.task} | ${z.metric} | ${fmt(z.dense)} | ${fmt(z.pruned)} |`);
      body.push('');
    }
  }
  if (info.notes.length) body.push('## Notes', '', ...info.notes.map((n) => `- ${n}`), '');
  return [...front, ...body].join('\n');
}

/** The recipe file's content: the record itself, tagged with its format. */
export function recipeFileJson(info: ModelCardInfo): Record<string, unknown> {
  return { format: RECIPE_FORMAT, ...info };
}

/** Write README.md and crepe-recipe.json into `dir` (a folder being built: the caller makes it atomic). */
export function writeModelCard(dir: string, info: ModelCardInfo): void {
  fs.writeFileSync(path.join(dir, MODEL_CARD_FILE), renderModelCard(info));
  fs.writeFileSync(path.join(dir, RECIPE_FILE), JSON.stringify(recipeFileJson(info), null, 2) + '\n');
}

/** A JSON copy of a settings object (undefined fields dropped, non-finite numbers as null). */
export function toJsonObject(value: object): JsonObject {
  return JSON.parse(JSON.stringify(value, (_k, v: unknown) => (typeof v === 'number' && !Number.isFinite(v) ? null : v))) as JsonObject;
}

/** What a perplexity evaluation reports (crepe's EvalRecord has these fields). */
interface PerplexityRecord {
  dataset: string;
  slice: string;
  seqlen: number;
  windows: number;
  ppl: number;
}

/** What a zero-shot run reports per task (crepe's ZeroshotResult has these fields). */
interface ZeroshotRecord {
  tasks: readonly { task: string; metrics: Record<string, { value: number }> }[];
}

/** The card of a pruned model, from the prune command's settings and measurements. */
export function prunedModelCard(run: {
  /** The model name or path the user gave. */
  model: string;
  /** The settings (method, params, structure, sparsity, calibration, ...): the recipe. */
  recipe: object;
  sparsity: number;
  dtype: string;
  codeVersion: string;
  dense?: readonly PerplexityRecord[];
  pruned?: readonly PerplexityRecord[];
  zeroshot?: { dense: ZeroshotRecord; pruned: ZeroshotRecord } | null;
  command?: string | null;
}): ModelCardInfo {
  const perplexity = (run.pruned ?? []).map((p, k): PerplexityResult => ({
    dataset: p.dataset,
    slice: p.slice,
    seqlen: p.seqlen,
    windows: p.windows,
    dense_ppl: run.dense?.[k]?.ppl ?? null,
    pruned_ppl: p.ppl,
  }));
  const zeroshot: ZeroshotResultRow[] = [];
  for (const t of run.zeroshot?.pruned.tasks ?? []) {
    const dense = run.zeroshot?.dense.tasks.find((d) => d.task === t.task);
    for (const [metric, m] of Object.entries(t.metrics)) zeroshot.push({ task: t.task, metric, dense: dense?.metrics[metric]?.value ?? null, pruned: m.value });
  }
  return {
    kind: 'pruned',
    base_model: baseModelInfo(run.model),
    recipe: toJsonObject(run.recipe),
    results: { sparsity: run.sparsity, perplexity, zeroshot },
    dtype: run.dtype,
    code_version: run.codeVersion,
    command: run.command ?? null,
    notes: [],
  };
}

/**
 * The card of a conversion of `model` (a name or path). A folder crepe pruned keeps its card's
 * record (base model, recipe, results, the code that pruned it), with the conversion noted.
 */
export function convertedModelCard(model: string, dtype: string, codeVersion: string, command: string | null = null): ModelCardInfo {
  const prior = priorCard(model);
  if (prior?.kind === 'pruned') {
    return { ...prior, dtype, command, notes: [...prior.notes, `converted to ${dtype} by crepe at code version ${codeVersion}${command ? ` (\`${command}\`)` : ''}`] };
  }
  return {
    kind: 'converted',
    base_model: baseModelInfo(model),
    recipe: null,
    results: { sparsity: null, perplexity: [], zeroshot: [] },
    dtype,
    code_version: codeVersion,
    command,
    notes: [],
  };
}

/** The record of a folder's crepe-recipe.json, when it is one crepe wrote in this format. */
function priorCard(dir: string): ModelCardInfo | null {
  if (!fs.statSync(dir, { throwIfNoEntry: false })?.isDirectory()) return null;
  const file = path.join(dir, RECIPE_FILE);
  if (!fs.statSync(file, { throwIfNoEntry: false })?.isFile()) return null;
  try {
    const { format, output: _output, ...rest } = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
    if (format !== RECIPE_FORMAT) return null;
    const info = rest as unknown as ModelCardInfo;
    return info.base_model && info.results && Array.isArray(info.notes) ? info : null;
  } catch {
    return null;
  }
}
