/**
 * Which real-world checkpoint variants crepe loads, and how closely it computes them.
 *
 *   npm run build && node dist/scripts/hf-variants.js [--json]
 *
 * For every fixture in test/fixtures/hf-variants (small random checkpoints written by
 * transformers' config classes and the safetensors library, see regenerate.sh there): crepe's
 * log-probabilities of the fixture's 48-token window against the independent numpy reference
 * (max abs difference), and a `convert --to hf --dtype F32` round trip (config.json fields kept,
 * log-probs identical). Then variants crepe must refuse, made by editing copies of the fixtures,
 * with the one-line message each gives. Prints the Markdown table the README quotes.
 */
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { initBackend } from '../lib/backend';
import { CrepeError } from '../lib/errors';
import { writeHfModel } from '../lib/model/convert';
import { openHfModel } from '../lib/model/hf';
import { Llama2cSource } from '../lib/model/llama2c';
import { LlamaModel } from '../lib/model/runtime';
import { SafetensorsFile, writeSafetensors } from '../lib/model/safetensors';
import { WeightSource } from '../lib/model/types';
import { loadTokenizer } from '../lib/tokenizers';

/** The repository root, from scripts/ (ts-jest) or dist/scripts/ (built). */
const REPO = [path.join(__dirname, '..'), path.join(__dirname, '..', '..')].find((d) => fs.existsSync(path.join(d, 'package.json')))!;
export const VARIANTS_DIR = path.join(REPO, 'test', 'fixtures', 'hf-variants');

export interface VariantRow {
  variant: string;
  notes: string;
  loads: boolean;
  /** max |crepe log p - reference log p| over the window (supported variants). */
  maxAbsError?: number;
  /** Round trip through writeHfModel F32: config fields kept (all but the dtype) and max |Δ log p|. */
  roundTrip?: { configKept: boolean; maxAbsDiff: number };
  /** The refusal (unsupported variants). */
  message?: string;
}

interface Reference {
  notes: string;
  ids: number[];
  logprobs: number[];
  inv_freq?: number[];
}

function fixtureDirs(root: string): string[] {
  return fs
    .readdirSync(root)
    .filter((d) => fs.existsSync(path.join(root, d, 'reference.json')))
    .sort();
}

export function readReference(dir: string): Reference {
  return JSON.parse(fs.readFileSync(path.join(dir, 'reference.json'), 'utf8')) as Reference;
}

export function windowLogProbs(src: WeightSource, ids: number[]): Float32Array {
  const model = LlamaModel.fromSource(src);
  try {
    return model.windowLogProbs(Int32Array.from(ids));
  } finally {
    model.dispose();
  }
}

function maxAbs(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

function withoutDtype(c: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const { dtype: _d, torch_dtype: _t, ...rest } = c;
  return rest;
}

/** Supported variants: load, compare with the reference, round-trip through an F32 HF write. */
function supportedRow(dir: string, tmp: string): VariantRow {
  const name = path.basename(dir);
  const ref = readReference(dir);
  const src = name.startsWith('llama2c') ? Llama2cSource.open(path.join(dir, 'model.bin')) : openHfModel(dir);
  try {
    const lp = windowLogProbs(src, ref.ids);
    const row: VariantRow = { variant: name, notes: ref.notes, loads: true, maxAbsError: maxAbs(lp, ref.logprobs) };
    const out = path.join(tmp, `${name}-roundtrip`);
    writeHfModel(src, out, { dtype: 'F32' });
    const back = openHfModel(out);
    try {
      const written = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      const configKept = src.config.sourceConfig
        ? JSON.stringify(withoutDtype(written)) === JSON.stringify(withoutDtype(src.config.sourceConfig))
        : true;
      row.roundTrip = { configKept, maxAbsDiff: maxAbs(windowLogProbs(back, ref.ids), lp) };
    } finally {
      back.close();
    }
    return row;
  } finally {
    src.close();
  }
}

/** A copy of fixture `from` under tmp/`name`, then `edit` applied to it. */
function variantOf(root: string, tmp: string, from: string, name: string, edit: (dir: string) => void): string {
  const dir = path.join(tmp, name);
  fs.cpSync(path.join(root, from), dir, { recursive: true });
  edit(dir);
  return dir;
}

function editConfig(dir: string, edit: (c: Record<string, unknown>) => void): void {
  const file = path.join(dir, 'config.json');
  const c = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  edit(c);
  fs.writeFileSync(file, JSON.stringify(c, null, 2));
}

/** Variants crepe refuses: [name, notes, how to make it, how crepe is asked to open it]. */
function refusals(root: string, tmp: string): { variant: string; notes: string; open: () => unknown }[] {
  const hf = (dir: string) => () => openHfModel(dir).close();
  const v = (from: string, name: string, edit: (dir: string) => void) => variantOf(root, tmp, from, name, edit);
  return [
    {
      variant: 'rope dynamic (4.x rope_scaling)',
      notes: 'dynamic NTK scaling',
      open: hf(v('llama2-4x-f32', 'dynamic', (d) => editConfig(d, (c) => (c.rope_scaling = { type: 'dynamic', factor: 2.0 })))),
    },
    {
      variant: 'rope yarn (5.x rope_parameters)',
      notes: 'YaRN',
      open: hf(v('llama-5x-bf16-sharded', 'yarn', (d) =>
        editConfig(d, (c) => (c.rope_parameters = { rope_type: 'yarn', rope_theta: 500000.0, factor: 4.0, original_max_position_embeddings: 32 })))),
    },
    {
      variant: 'rope longrope',
      notes: 'Phi-3 style LongRoPE',
      open: hf(v('llama2-4x-f32', 'longrope', (d) =>
        editConfig(d, (c) => (c.rope_scaling = { rope_type: 'longrope', long_factor: [1, 1, 1, 1], short_factor: [1, 1, 1, 1] })))),
    },
    {
      variant: 'unknown config key',
      notes: 'a bitsandbytes quantization_config',
      open: hf(v('llama2-4x-f32', 'quantized', (d) => editConfig(d, (c) => (c.quantization_config = { quant_method: 'bitsandbytes', load_in_4bit: true })))),
    },
    {
      variant: 'partial rotary',
      notes: 'partial_rotary_factor 0.5',
      open: hf(v('llama2-4x-f32', 'partial', (d) => editConfig(d, (c) => (c.partial_rotary_factor = 0.5)))),
    },
    {
      variant: 'Qwen2 per-layer sliding window',
      notes: 'use_sliding_window with max_window_layers 1',
      open: hf(v('qwen2-4x-bf16', 'qwen-window', (d) =>
        editConfig(d, (c) => ((c.use_sliding_window = true), (c.sliding_window = 16), (c.max_window_layers = 1), delete c.layer_types)))),
    },
    {
      variant: 'unused tensor',
      notes: 'Qwen2 checkpoint with an o_proj.bias',
      open: hf(v('qwen2-4x-bf16', 'extra-tensor', (d) => {
        const file = path.join(d, 'model.safetensors');
        const st = SafetensorsFile.open(file);
        const tensors = st.names().map((n) => ({ name: n, shape: st.info(n).shape, data: st.readFloat32(n) }));
        st.close();
        tensors.push({ name: 'model.layers.0.self_attn.o_proj.bias', shape: [32], data: new Float32Array(32) });
        writeSafetensors(file, tensors, 'BF16', { format: 'pt' });
      })),
    },
    {
      variant: 'Git LFS pointer',
      notes: 'model.safetensors not pulled',
      open: hf(v('llama2-4x-f32', 'lfs', (d) =>
        fs.writeFileSync(path.join(d, 'model.safetensors'), 'version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n'))),
    },
    {
      variant: 'PyTorch weights',
      notes: 'pytorch_model.bin only',
      open: hf(v('llama2-4x-f32', 'torch', (d) => {
        fs.rmSync(path.join(d, 'model.safetensors'));
        fs.writeFileSync(path.join(d, 'pytorch_model.bin'), Buffer.concat([Buffer.from('PK\x03\x04', 'latin1'), Buffer.alloc(60)]));
      })),
    },
    {
      variant: 'tiktoken tokenizer.model',
      notes: "Llama-3's original tokenizer file",
      open: () => {
        const file = path.join(tmp, 'tiktoken', 'tokenizer.model');
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, 'IQ== 0\nIg== 1\nIw== 2\n');
        return loadTokenizer(file);
      },
    },
    {
      variant: 'llama2.c version 2',
      notes: 'export.py --version 2 (int8 Q8_0)',
      open: () => Llama2cSource.open(path.join(root, 'llama2c-v2', 'model.bin')).close(),
    },
  ];
}

/** Every row of the table: supported fixtures first, then the refusals. */
export function variantRows(root = VARIANTS_DIR): VariantRow[] {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'crepe-variants-'));
  try {
    const rows = fixtureDirs(root).map((d) => supportedRow(path.join(root, d), tmp));
    for (const r of refusals(root, tmp)) {
      try {
        r.open();
        rows.push({ variant: r.variant, notes: r.notes, loads: true, message: 'loaded (expected a refusal)' });
      } catch (e) {
        if (!(e instanceof CrepeError)) throw e;
        rows.push({ variant: r.variant, notes: r.notes, loads: false, message: e.message.split(tmp).join('…').split(root).join('…') });
      }
    }
    return rows;
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
}

export function variantTable(rows: VariantRow[]): string {
  const lines = [
    '| variant | what | loads? | max abs log-prob error vs reference | F32 round trip (config kept, max abs Δ) or refusal |',
    '|---|---|---|---:|---|',
  ];
  for (const r of rows) {
    if (r.loads && r.maxAbsError !== undefined) {
      const kept = r.variant.startsWith('llama2c') ? 'new config' : r.roundTrip?.configKept ? 'config kept' : 'CONFIG CHANGED';
      const rt = r.roundTrip ? `${kept}, ${r.roundTrip.maxAbsDiff.toExponential(1)}` : '';
      lines.push(`| ${r.variant} | ${r.notes} | yes | ${r.maxAbsError.toExponential(2)} | ${rt} |`);
    } else {
      lines.push(`| ${r.variant} | ${r.notes} | ${r.loads ? 'YES' : 'no'} | – | \`${r.message}\` |`);
    }
  }
  return lines.join('\n');
}

async function main(): Promise<void> {
  await initBackend('wasm');
  const rows = variantRows();
  process.stdout.write(process.argv.includes('--json') ? JSON.stringify(rows, null, 2) + '\n' : variantTable(rows) + '\n');
}

if (require.main === module) {
  main().catch((e) => {
    process.stderr.write(`crepe: ${(e as Error).message}\n`);
    process.exit(1);
  });
}
