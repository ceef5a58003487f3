/**
 * Dense perplexity of the asset models on the evaluation datasets, full protocol (every window
 * at the model's context), written to results/dense.{json,md}.
 * Run: npm run build && node dist/scripts/dense-ppl.js [--out results] (two evaluation workers)
 */
import * as path from 'path';
import { backendDescription, initBackend } from '../lib/backend';
import { evaluateSourceJobs } from '../lib/eval/evaluate';
import { writeFileAtomic } from '../lib/io/atomic';
import { openModel } from '../lib/model/resolve';
import { gitVersion } from '../lib/version';

const MODELS = ['stories260K', 'babyllama-char'];
const DATASETS = ['tinystories', 'wikitext2'];

async function main(): Promise<void> {
  const outIdx = process.argv.indexOf('--out');
  const outDir = outIdx > 0 ? process.argv[outIdx + 1] : 'results';
  await initBackend('wasm');
  const backend = backendDescription();
  const rows = [];
  for (const name of MODELS) {
    const model = openModel(name);
    for (const r of await evaluateSourceJobs(model, model.source, DATASETS, { jobs: 2, backend: 'wasm' })) {
      rows.push({ model: name, dataset: r.dataset, slice: r.slice, seqlen: r.seqlen, windows: r.windows, tokens: r.tokens, ppl: r.ppl, nll: r.nll, seconds: r.seconds, tokens_per_second: r.tokensPerSecond });
      process.stderr.write(`${name} ${r.dataset}: PPL ${r.ppl.toFixed(4)} (${r.windows} x ${r.seqlen}, ${r.seconds.toFixed(1)} s)\n`);
    }
    model.source.close();
  }
  const meta = { command: 'node dist/scripts/dense-ppl.js', backend, code_version: gitVersion(), date: new Date().toISOString() };
  writeFileAtomic(path.join(outDir, 'dense.json'), JSON.stringify({ ...meta, rows }, null, 2) + '\n');
  const md = [
    '# Dense perplexity of the asset models',
    '',
    `Command: \`${meta.command}\` · backend ${backend} · code ${meta.code_version} · ${meta.date.slice(0, 10)}`,
    '',
    'Protocol: whole evaluation text tokenized once with BOS at the start, non-overlapping windows of the',
    "model's context, tail dropped, PPL = exp(total NLL / (windows x (seqlen - 1))).",
    '',
    '| model | dataset | slice | seqlen | windows | predicted tokens | NLL (nats/token) | PPL |',
    '|---|---|---|---:|---:|---:|---:|---:|',
    ...rows.map((r) => `| ${r.model} | ${r.dataset} | ${r.slice} | ${r.seqlen} | ${r.windows} | ${r.tokens} | ${r.nll.toFixed(4)} | ${r.ppl.toFixed(3)} |`),
    '',
  ].join('\n');
  writeFileAtomic(path.join(outDir, 'dense.md'), md);
}

void main();
