#!/usr/bin/env node
import yargs, { Argv } from 'yargs';
import { hideBin } from 'yargs/helpers';
import { BACKEND_CHOICES, allCores, defaultBackendChoice, setThreads } from '../lib/backend';
import { convertCommand } from '../lib/cli/convert';
import { ParserView, checkNames, checkNumberTokens, commaList, parserFailure, runCommand, setQuietPipedStages } from '../lib/cli/common';
import { evalCommand } from '../lib/cli/eval';
import { generateCommand } from '../lib/cli/generate';
import { proxyStudyCommand } from '../lib/cli/proxy-study';
import { pruneCommand } from '../lib/cli/prune';
import { reportCommand } from '../lib/cli/report';
import { runCommand as runRecipeCommand } from '../lib/cli/run';
import { sweepCommand } from '../lib/cli/sweep';
import { PROXY_HELP, searchCommand, spaceOptions } from '../lib/cli/search';
import { searchCompareCommand } from '../lib/cli/search-compare';
import { tokenizeCommand } from '../lib/cli/tokenize';
import { zeroshotCommand } from '../lib/cli/zeroshot';
import { TASKS, taskListValues } from '../lib/eval/zeroshot/tasks';
import { DATASET_HELP } from '../lib/data/datasets';
import { CrepeError } from '../lib/errors';
import { guardStdout } from '../lib/io/stdout';
import { listStrategies } from '../lib/prune/strategy';
import { PHO_PRESETS } from '../lib/search/presets';
import '../lib/prune/strategies';

const MODEL_HELP = 'stories260K, babyllama-char (in the assets folder, $CREPE_ASSETS), a HF directory, or a llama2.c .bin';

function common<T>(y: Argv<T>) {
  return y
    .option('backend', { choices: BACKEND_CHOICES, default: defaultBackendChoice(), describe: 'engine: auto picks tfjs-node(-gpu) if installed, else wasm with matrix products in a native BLAS (blas; OpenBLAS, or $CREPE_BLAS_LIB), else plain wasm; the default is $CREPE_BACKEND when set' })
    .option('threads', { type: 'number', describe: `BLAS threads for the matrix products (default: all cores, ${allCores()} here; the rest of wasm runs on one; --jobs N workers share them, threads/N each)` })
    .option('json', { type: 'boolean', default: false, describe: 'print one JSON object' });
}

function modelOpts<T>(y: Argv<T>) {
  return common(y)
    .option('model', { type: 'string', demandOption: true, describe: MODEL_HELP })
    .option('tokenizer', { type: 'string', describe: 'tokenizer file (default: found beside the model)' });
}

/**
 * Examples at full width, the command first and its description below as a shell comment:
 * yargs' two-column layout broke long example commands mid-word (`hellasw` / `ag:/data/...`).
 * Every command's builder gets this same instance.
 */
function fullWidthExamples<T>(y: Argv<T>): Argv<T> {
  const add = y.example.bind(y) as (cmd: string, desc: string) => Argv<T>;
  return Object.assign(y, { example: (cmd: string, desc = '') => add(desc ? `${cmd}\n# ${desc}` : cmd, '') });
}

/** The memory planner's flags (lib/plan): budget, where activations live, which evaluator, dry run. */
function memoryOpts<T>(y: Argv<T>) {
  return y
    .option('max-memory', { type: 'string', describe: 'host memory budget in GiB (e.g. 6, 512M; default 80% of RAM): the plan refuses what needs more, and picks F16 or on-disk activations to fit' })
    .option('activations', { choices: ['auto', 'f32', 'f16', 'disk'] as const, default: 'auto' as const, describe: 'where calibration activations and evaluation hidden states live between blocks (auto: by the plan)' })
    .option('evaluator', { choices: ['auto', 'resident', 'streaming'] as const, default: 'auto' as const, describe: 'resident: every block on the device; streaming: one block at a time (auto: streaming for large models)' })
    .option('spill-dir', { type: 'string', describe: 'folder for spill files (activations, pruned blocks; default the temporary folder)' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'print the memory plan and stop' });
}

/** The planner's budget flags for commands that only get planned (generate, zeroshot, searches). */
function budgetOpts<T>(y: Argv<T>) {
  return y
    .option('max-memory', { type: 'string', describe: 'host memory budget in GiB (e.g. 6, 512M; default 80% of RAM): a request whose memory plan needs more is refused before any work' })
    .option('dry-run', { type: 'boolean', default: false, describe: 'print the memory plan and stop' });
}

guardStdout();
const cli = fullWidthExamples(yargs(hideBin(process.argv)));
/** The number options of the command being parsed (getOptions is public in yargs but missing from its types). */
const numberOptions = () => new Set((cli as unknown as { getOptions(): { number: string[] } }).getOptions().number);
/** yargs internals that are public at run time but missing from its types (yargs is pinned). */
interface YargsInternals {
  getOptions(): { number: string[]; key: Record<string, boolean>; alias: Record<string, string[]> };
  getInternalMethods(): { getContext(): { commands: string[] }; getCommandInstance(): { getCommands(): string[] } };
}
/** What the parser knew when it refused the command line: the command, its flags, the positionals. */
function parserView(): ParserView {
  const y = cli as unknown as YargsInternals;
  const options = y.getOptions();
  const tokens = hideBin(process.argv);
  const end = tokens.indexOf('--');
  return {
    command: y.getInternalMethods().getContext().commands[0],
    commands: y.getInternalMethods().getCommandInstance().getCommands(),
    flags: [...Object.keys(options.key), ...Object.values(options.alias).flat()],
    positionals: (end < 0 ? tokens : tokens.slice(0, end)).filter((t) => !t.startsWith('-')),
  };
}
void cli
  .scriptName('crepe')
  .usage('$0 <command> [options]\n\nPost-training pruning of LLaMA-family models in TensorFlow.js.')
  .command(
    'eval',
    'perplexity of a model on a dataset (Wanda/SparseGPT protocol)',
    (y) =>
      memoryOpts(modelOpts(y))
        .option('dataset', { type: 'string', array: true, alias: 'eval', demandOption: true, coerce: commaList, describe: `evaluation datasets, comma separated or repeated (--eval is the same flag, as in prune): ${DATASET_HELP}` })
        .option('seqlen', { type: 'number', describe: "window length (default: the model's context)" })
        .option('max-windows', { type: 'number', describe: 'evaluate only the first N windows of each dataset' })
        .option('jobs', { type: 'number', default: 1, describe: 'worker processes, each with threads/N BLAS threads (on plain wasm, which is single-threaded, use one per core)' })
        .example('$0 eval --model stories260K --dataset tinystories', 'dense PPL on the TinyStories evaluation split')
        .example('$0 eval --model stories260K --dataset tinystories --jobs 2', 'the same on both cores, bit-identical PPL')
        .example('$0 eval --model babyllama-char --dataset wikitext2,tinystories --max-windows 20 --json', 'a quick look at two datasets, as JSON')
        .example('$0 eval --model /models/llama-2-7b-hf --dataset wikitext2 --dry-run', 'the memory plan only'),
    (a) => runCommand(() => evalCommand(a as never)),
  )
  .command(
    'zeroshot',
    'zero-shot task accuracy as lm-evaluation-harness scores it (ARC, OpenBookQA, PIQA, WinoGrande, BoolQ, HellaSwag, RTE, LAMBADA)',
    (y) =>
      budgetOpts(modelOpts(y))
        .option('tasks', { type: 'string', array: true, alias: 'zeroshot', demandOption: true, coerce: taskListValues, describe: `comma-separated: ${TASKS.map((t) => t.name).join(', ')}; NAME:PATH reads the task from that file (original format; a comma in PATH is written \\,)` })
        .option('limit', { type: 'number', alias: 'zeroshot-limit', describe: 'score only the first N documents of each task (the harness --limit; --zeroshot-limit is the same flag, as in prune)' })
        .option('jobs', { type: 'number', default: 1, describe: 'worker processes, each with threads/N BLAS threads (on plain wasm, which is single-threaded, use one per core)' })
        .option('bos', { type: 'boolean', describe: "prepend BOS (--bos) or not (--no-bos); default the tokenizer's own convention, as the harness (add_special_tokens=True): BOS for LLaMA tokenizers" })
        .option('bootstrap-iters', { type: 'number', default: 100000, describe: 'bootstrap replicates for the perplexity stderr (the harness default)' })
        .option('evaluator', { choices: ['auto', 'resident', 'streaming'] as const, default: 'auto' as const, describe: 'resident: every block on the device, --jobs workers; streaming: one block at a time, every document on the host, one process (auto: by the memory plan)' })
        .option('spill-dir', { type: 'string', describe: "folder for the streaming evaluator's spill file when the plan puts hidden states on disk (default the temporary folder)" })
        .option('output-path', { type: 'string', describe: "write lm-evaluation-harness's results file: a folder (FOLDER/MODEL/results_DATE.json) or FILE.json (FILE_DATE.json)" })
        .option('log-samples', { type: 'boolean', default: false, describe: "with --output-path: the harness's per-document records, samples_TASK_DATE.jsonl" })
        .option('force', { type: 'boolean', default: false, describe: 'replace an existing --output-path file that crepe did not write' })
        .example('$0 zeroshot --model stories260K --tasks arc_easy,arc_challenge,piqa --jobs 2', 'accuracy with stderr and item counts')
        .example('$0 zeroshot --model stories260K --tasks lambada_openai,tinystories_cloze --limit 500 --json', 'last-word accuracy and perplexity, first 500 documents')
        .example('$0 zeroshot --model stories260K --tasks hellaswag:/data/hellaswag_val.jsonl,rte:/data/RTE/dev.tsv', 'tasks from your own copies of the files')
        .example('$0 zeroshot --model stories260K --tasks arc_easy,piqa --output-path results/harness --log-samples', "lm-evaluation-harness's results and samples files"),
    (a) => runCommand(() => zeroshotCommand(a as never)),
  )
  .command(
    'tokenize',
    'print the token ids of a text',
    (y) =>
      modelOpts(y)
        .option('text', { type: 'string', demandOption: true, describe: 'the text to encode (quote it)' })
        .option('bos', { type: 'boolean', default: true, describe: 'prepend BOS' })
        .example('$0 tokenize --model stories260K --text "Once upon a time" --json', '{"ids":[1,403,407,261,378]}'),
    (a) => runCommand(() => tokenizeCommand(a as never)),
  )
  .command(
    'generate',
    'greedy decoding',
    (y) =>
      budgetOpts(modelOpts(y))
        .option('prompt', { type: 'string', default: '', describe: 'prompt text (default: start from BOS)' })
        .option('steps', { type: 'number', default: 64, describe: 'tokens to generate (stops early at BOS/EOS); prompt + steps must fit the context' })
        .example('$0 generate --model stories260K --steps 60', 'Once upon a time, there was a little girl named Lily...'),
    (a) => runCommand(() => generateCommand(a as never)),
  )
  .command(
    'convert',
    'write a model in another format',
    (y) =>
      modelOpts(y)
        .option('to', { choices: ['hf', 'llama2c'] as const, default: 'hf' as const, describe: 'output format: hf (config.json + model.safetensors) or llama2c (one .bin file, float32)' })
        .option('out', { type: 'string', demandOption: true, describe: 'output directory (hf) or .bin file (llama2c)' })
        .option('dtype', { choices: ['F32', 'BF16', 'F16'] as const, default: 'F32' as const, describe: 'weight dtype of an hf output (llama2c is F32 only)' })
        .option('force', { type: 'boolean', default: false, describe: 'replace an existing --out that crepe did not write' })
        .example('$0 convert --model stories260K --to hf --out /tmp/stories-hf --dtype BF16', 'HF directory (config.json + model.safetensors), rotary q/k rows permuted'),
    (a) => runCommand(() => convertCommand(a as never)),
  )
  .command(
    'prune',
    'prune a model layer by layer, optionally evaluate, save and dump artefacts',
    (y) =>
      memoryOpts(modelOpts(y))
        .option('method', { type: 'string', demandOption: true, describe: `scoring strategy: ${listStrategies().join(', ')}` })
        .option('param', { type: 'string', array: true, default: [] as string[], describe: 'strategy parameter k=v (repeatable); kernel=KHxKW for crepe' })
        .option('sparsity', { type: 'number', describe: 'fraction pruned, in [0, 1) (default 0.5 unstructured; with N:M it is 1 - N/M, and any other value is an error)' })
        .option('structure', { type: 'string', default: 'unstructured', describe: "'unstructured' or N:M = KEEP N of every M input weights (2:4 keeps 2; the Wanda/RIA code reads N:M as prune N)" })
        .option('group', { choices: ['row', 'matrix'] as const, describe: "unstructured comparison group (default: the method's reference: row for wanda, matrix for magnitude/ri/ria/crepe)" })
        .option('calib', { type: 'string', default: 'tinystories', describe: `calibration dataset: ${DATASET_HELP}` })
        .option('nsamples', { type: 'number', default: 128, describe: 'calibration windows' })
        .option('calib-seqlen', { type: 'number', describe: "calibration window length (default: the model's context)" })
        .option('calib-seed', { type: 'number', default: 0, alias: 'seed', describe: 'calibration sampling seed (--seed is the same flag: prune has no other seed)' })
        .option('propagate', { choices: ['pruned', 'dense'] as const, default: 'pruned' as const, describe: 'next block inputs from the pruned or the dense block' })
        .option('eval', { type: 'string', array: true, alias: 'dataset', coerce: commaList, describe: 'evaluate dense and pruned PPL on these datasets, comma separated or repeated (--dataset is the same flag, as in eval)' })
        .option('seqlen', { type: 'number', describe: "evaluation window length (default: the model's context)" })
        .option('max-windows', { type: 'number', describe: 'evaluate only the first N windows of each dataset' })
        .option('save', { type: 'string', describe: 'save the pruned model: a .bin path (llama2.c) or a directory (HF)' })
        .option('dtype', { choices: ['F32', 'BF16', 'F16'] as const, describe: 'dtype of a model saved as HF (--save DIR); default: the source checkpoint\'s dtype, else F32' })
        .option('dump', { type: 'string', describe: 'write calibration windows, statistics, masks and run.json here' })
        .option('force', { type: 'boolean', default: false, describe: 'replace an existing --save / --dump that crepe did not write' })
        .option('allocation', { type: 'string', default: 'uniform', describe: "per-block sparsity: 'uniform' or 'owl' (OWL: outlier-rich blocks pruned less, mean sparsity kept)" })
        .option('owl-m', { type: 'number', describe: 'OWL outlier threshold: scores above M x the block mean (default 5)' })
        .option('owl-lambda', { type: 'number', describe: 'OWL lambda: block sparsities span S +- lambda (default 0.08); for N:M the range of the rounded shift of N (default 2)' })
        .option('refine', { type: 'string', default: 'none', describe: "re-pruning after selection: 'none' or 'dsnot' (prune-and-grow swaps per row, count kept)" })
        .option('dsnot-cycles', { type: 'number', describe: 'DSnoT: most swaps per row (default 50)' })
        .option('dsnot-threshold', { type: 'number', describe: 'DSnoT: stop a row once |expected error| <= this (absolute, as the reference; default 0.1)' })
        .option('dsnot-skip', { choices: ['mlp', 'attn', 'none'] as const, describe: "DSnoT: layers left as selected (the reference's --skip_layer; default mlp = attention only)" })
        .option('permute', { type: 'boolean', default: false, describe: "RIA's channel permutation before N:M selection (N:M only)" })
        .option('permute-refine', { type: 'boolean', default: false, describe: 'refine the permutation with linear sum assignments (implies --permute)' })
        .option('zeroshot', { type: 'string', array: true, alias: 'tasks', coerce: taskListValues, describe: `zero-shot tasks scored on the dense and the pruned model (as crepe zeroshot --tasks), comma separated: ${TASKS.map((t) => t.name).join(', ')}` })
        .option('zeroshot-limit', { type: 'number', alias: 'limit', describe: 'score only the first N documents of each zero-shot task (--limit is the same flag, as in zeroshot)' })
        .option('zeroshot-jobs', { type: 'number', describe: 'worker processes for the zero-shot scoring (resident evaluator; default 1)' })
        .option('output-path', { type: 'string', describe: "with --zeroshot: lm-evaluation-harness's results files of the dense and the pruned model, in FOLDER/MODEL/results_DATE.json" })
        .option('log-samples', { type: 'boolean', default: false, describe: "with --output-path: the harness's per-document records, samples_TASK_DATE.jsonl" })
        .option('print-recipe', { type: 'boolean', default: false, describe: 'print the recipe this command line means (every default filled) and stop; crepe run FILE runs it' })
        .option('recipe-format', { choices: ['json', 'yaml'] as const, default: 'json' as const, describe: 'format of --print-recipe' })
        .example('$0 prune --model stories260K --method wanda --sparsity 0.5 --eval tinystories,wikitext2', 'Wanda 50% per row, with dense and pruned PPL on two datasets')
        .example('$0 prune --model stories260K --method crepe --param gamma=0.03 --param kernel=3x3 --structure 2:4 --eval tinystories --dump /tmp/run', 'CRePE at 2:4 with audit artefacts')
        .example('$0 prune --model stories260K --method wanda --allocation owl --refine dsnot --eval tinystories', 'Wanda with OWL block sparsities and DSnoT re-pruning')
        .example('$0 prune --model /models/llama-2-7b-hf --method wanda --nsamples 128 --max-memory 16 --dry-run', 'the memory plan of a 7B run, nothing computed')
        .example('$0 prune --model stories260K --method ria --structure 2:4 --permute --eval tinystories --print-recipe > ria-2of4.json', 'save the recipe of a command line (run it with crepe run ria-2of4.json)'),
    (a) => runCommand(() => pruneCommand(a as never)),
  )
  .command(
    'run <recipe>',
    'run a recipe file (JSON, or YAML for .yaml/.yml): the pruning run crepe prune --print-recipe describes',
    (y) =>
      common(y)
        .positional('recipe', { type: 'string', demandOption: true, describe: 'recipe file: model, method, params, structure, allocation, refine, permute, calibration, memory, eval, zeroshot, save, dump' })
        .option('force', { type: 'boolean', default: false, describe: "replace an existing save / dump output that crepe did not write" })
        .option('dry-run', { type: 'boolean', default: false, describe: 'print the memory plan (and the resolved recipe with --json) and stop' })
        .option('print-recipe', { type: 'boolean', default: false, describe: 'print the recipe with every default filled and stop' })
        .option('recipe-format', { choices: ['json', 'yaml'] as const, default: 'json' as const, describe: 'format of --print-recipe' })
        .example('$0 run experiments/recipes/ria-2of4-permute.json', 'RIA at 2:4 with channel permutation on stories260K, dense and pruned PPL')
        .example('$0 run my-recipe.yaml --json', 'a YAML recipe, result as one JSON object'),
    (a) => runCommand(() => runRecipeCommand(a as never)),
  )
  .command(
    'search',
    'search a method\'s hyperparameters: PPL hill climbing or PHO (proxy + CMA-ES), then one full evaluation',
    (y) =>
      budgetOpts(spaceOptions(modelOpts(y)))
        .option('search', { choices: ['hillclimb', 'pho', ...Object.keys(PHO_PRESETS)], demandOption: true, describe: `hillclimb: PPL on the search subset; pho: CMA-ES on a proxy; the search comparison's PHO variants: ${Object.entries(PHO_PRESETS).map(([n, p]) => `${n} = ${p.summary}`).join('; ')}` })
        .option('proxy', { type: 'string', describe: PROXY_HELP })
        .option('sign', { type: 'number', describe: "+1 minimizes the proxy, -1 maximizes it (default: the proxy's measured direction)" })
        .option('budget', { type: 'number', describe: 'evaluations: PPL for hillclimb, proxy for pho (default 40)' })
        .option('seconds', { type: 'number', describe: 'hillclimb: also stop after this many seconds' })
        .option('full-eval', { type: 'boolean', default: true, describe: 'prune the best configuration with the standard pipeline and evaluate every window' })
        .option('out', { type: 'string', describe: 'write the evaluation log (CSV) here' })
        .option('report-windows', { type: 'number', describe: 'full evaluation on the first N windows of the test split (default all)' })
        .option('save', { type: 'string', describe: "save the best configuration's pruned model (a .bin path or an HF directory) with its run record, as crepe prune --save" })
        .option('force', { type: 'boolean', default: false, describe: 'replace an existing --out or --save that crepe did not write' })
        .example('$0 search --model stories260K --search pho-pool --nsamples 32 --report-windows 128 --save /tmp/stories-pho-pool', "the search comparison's pho-pool (seed 0), its best model saved")
        .example('$0 search --model stories260K --search pho --budget 40 --out results/search-stories260K-pho.csv', 'PHO on the default proxy (energy-row), 50% unstructured, evaluation log as CSV')
        .example('$0 search --model stories260K --search hillclimb --budget 40 --search-windows 16', 'PPL hill climbing from RIA'),
    (a) => runCommand(() => searchCommand(a as never)),
  )
  .command(
    'search-compare',
    'the search cost comparison of a config: hill climbing vs PHO variants per model, structure and seed, baselines, transfer; resumable; CSV + Markdown',
    (y) =>
      budgetOpts(common(y))
        .option('config', { type: 'string', demandOption: true, describe: 'comparison config (JSON), e.g. experiments/search.json' })
        .option('out', { type: 'string', demandOption: true, describe: 'existing folder for search-comparison.{csv,md} and the search-*.csv evaluation logs' })
        .option('models', { type: 'string', array: true, describe: "only these of the config's models (comma separated or repeated)" })
        .option('structures', { type: 'string', array: true, describe: "only these of the config's structures, by name (e.g. u50), comma separated or repeated" })
        .option('runs', { type: 'string', array: true, describe: "only these runs ('hillclimb', PHO variant or baseline names), comma separated or repeated; the report still covers every run" })
        .option('fresh', { type: 'boolean', default: false, describe: 'start over instead of continuing the journal (search-comparison-runs.jsonl) in --out' })
        .option('report-only', { type: 'boolean', default: false, describe: 'run nothing: write the CSV and the report from the journal as it is' })
        .option('force', { type: 'boolean', default: false, describe: 'replace files in --out that crepe did not write' })
        .example('$0 search-compare --config experiments/search.json --out results', 'every table of results/search-comparison.md (npm run search-compare)')
        .example('$0 search-compare --config experiments/search.json --out /tmp/cmp --models stories260K --structures u50', 'one model and structure')
        .example('$0 search-compare --config experiments/search.json --out results --runs hillclimb', 'only the hill-climbing runs (e.g. started early, in the background)'),
    (a) => runCommand(() => searchCompareCommand(a as never)),
  )
  .command(
    'proxy-study',
    'rank correlation of every search proxy with PPL over seeded random configurations',
    (y) =>
      budgetOpts(spaceOptions(modelOpts(y)))
        .option('configs', { type: 'number', alias: 'samples', demandOption: true, describe: 'configurations drawn uniformly in the search space (--samples is the same flag; --nsamples is the calibration windows)' })
        .option('full', { type: 'boolean', default: false, describe: 'PPL on every evaluation window instead of --search-windows' })
        .option('proxies', { type: 'string', array: true, coerce: commaList, describe: 'proxies to study, comma separated (default all)' })
        .option('out', { type: 'string', default: 'results', describe: 'folder for proxy-study-*.csv, .md and .svg' })
        .option('force', { type: 'boolean', default: false, describe: 'replace study files in --out that crepe did not write' })
        .example('$0 proxy-study --model stories260K --configs 40 --seed 1', 'Spearman / Kendall per proxy, CSV + Markdown + SVG in results/'),
    (a) => runCommand(() => proxyStudyCommand(a as never)),
  )
  .command(
    'sweep',
    'run a grid of pruning experiments from a JSON config on worker processes, appending one CSV row per cell (resumable)',
    (y) =>
      common(y)
        .option('config', { type: 'string', demandOption: true, describe: 'sweep config (JSON): models x methods x sparsities x structures x groups, calibration, eval' })
        .option('jobs', { type: 'number', default: 1, describe: 'worker processes, each with threads/N BLAS threads (on plain wasm, which is single-threaded, use one per core)' })
        .option('out', { type: 'string', describe: 'results CSV (default results/<config name>.csv); cells already in it are skipped' })
        .option('dry-run', { type: 'boolean', default: false, describe: 'list the cells (done / to do) and exit' })
        .option('fresh', { type: 'boolean', default: false, describe: 'discard an existing CSV and recompute every cell (default: resume)' })
        .option('seed', { type: 'number', describe: "calibration sampling seed of every cell, in place of the config's calibration seed(s) (cell keys follow it)" })
        .option('force', { type: 'boolean', default: false, describe: 'with --fresh, discard --out even when it is not a crepe results CSV' })
        .option('shard', { type: 'string', describe: "K/N: run share K of N of the cells (chosen by a hash of each cell's key, so stable when the config is reordered or grown); default --out results/<config>.<K>of<N>.csv; merge with crepe report" })
        .option('output-path', { type: 'string', describe: "with a zeroshot field: lm-evaluation-harness's results file of every cell, FOLDER/<cell>/results_DATE.json" })
        .option('log-samples', { type: 'boolean', default: false, describe: "with --output-path: the harness's per-document records of every cell, samples_TASK_DATE.jsonl" })
        .example('$0 sweep --config experiments/smoke.json --out /tmp/smoke.csv', 'a 5-cell sweep in seconds')
        .example('$0 sweep --config experiments/main.json --shard $((SLURM_ARRAY_TASK_ID+1))/3', 'one task of a 3-task cluster job array (results/main.<K>of3.csv); then: crepe report results/main.*of3.csv --out results')
        .example('$0 sweep --config experiments/main.json --jobs 2 --out results/main.csv', 'the main job; rerun the same command to resume after a crash'),
    (a) => runCommand(() => sweepCommand(a as never)),
  )
  .command(
    'report <csv..>',
    'paper-style Markdown tables and SVG plots from a sweep CSV, or from the CSVs of its shards (merged)',
    (y) =>
      y
        .option('json', { type: 'boolean', default: false, describe: 'print the written files as one JSON object' })
        .positional('csv', { type: 'string', array: true, demandOption: true, describe: 'results CSV written by crepe sweep; several: the shards of one sweep, merged (a cell in two files is refused)' })
        .option('out', { type: 'string', describe: "output folder (default: the first CSV's folder); writes <name>.md and <name>_*.svg" })
        .option('name', { type: 'string', describe: "base name of the written files (default: the CSV's name; for several CSVs their common prefix)" })
        .option('force', { type: 'boolean', default: false, describe: 'replace files at the output names that crepe report did not write' })
        .example('$0 report results/main.csv --out results', 'results/main.md, results/main_tinystories_unstructured.svg, ...')
        .example('$0 report main.1of3.csv main.2of3.csv main.3of3.csv --out results', 'one report (results/main.md, ...) from the shards of one sweep'),
    (a) => runCommand(() => reportCommand(a as never)),
  )
  .middleware(() => runCommand(async () => checkNumberTokens(hideBin(process.argv), numberOptions())), true)
  .middleware((a) => setQuietPipedStages(a.json === true))
  .middleware((a) => runCommand(async () => checkNames(a)))
  .middleware((a) =>
    runCommand(async () => {
      if (a.threads !== undefined) setThreads(a.threads as number);
    }),
  )
  .demandCommand(1, 'name a command (see --help)')
  .strict()
  .fail((msg, err) => {
    if (err instanceof CrepeError) {
      process.stderr.write(`crepe: ${err.message}\n`);
      process.exit(err.exitCode);
    }
    // yargs' own refusals (and errors thrown by a coerce function, which yargs re-throws as YError)
    if (err && err.name !== 'YError') throw err;
    process.stderr.write(`crepe: ${parserFailure(msg ?? err?.message ?? '', parserView())}\n`);
    process.exit(2);
  })
  .help()
  // --help and --version return instead of exiting at once, so that a failed write of the help
  // (a full disk, a closed pipe) reaches guardStdout's one line and exit code 2 first
  .exitProcess(false)
  .wrap(Math.min(120, process.stdout.columns ?? 100))
  .parseAsync();
