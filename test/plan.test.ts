/**
 * The memory planner: its estimates of the big buffers against sizes computed by hand for the
 * LLaMA-2-7B shape, its choices (evaluator, activation storage, block spilling) under budgets,
 * and the one-line refusals of the CLI before any work: a calibration set that does not fit,
 * a window whose attention would overflow the wasm heap, a checkpoint whose header claims a
 * 256 GiB embedding (a sparse file: nothing is read).
 */
import * as fs from 'fs';
import * as path from 'path';
import { hfConfigJson, hfTensors } from '../lib/model/hf';
import { LlamaConfig } from '../lib/model/types';
import { GiB, WASM_HEAP_LIMIT, blockParams, blockDeviceBytes, forwardActivationBytes, forwardHeapBytes, parseMemoryFlag, windowTableBytes, planMemory, PlanRequest, residentDeviceBytes, scoringCopies } from '../lib/plan/memory';
import { removeStaleSpills } from '../lib/plan/spill';
import { MODELS, lines, makeTmp, rmTmp, runCli } from './helpers';

const LLAMA2_7B: LlamaConfig = {
  architecture: 'llama', dim: 4096, hiddenDim: 11008, nLayers: 32, nHeads: 32, nKvHeads: 32, headDim: 128,
  vocabSize: 32000, maxSeqLen: 4096, normEps: 1e-5, ropeTheta: 10000, ropeLayout: 'half', tiedEmbeddings: false,
};

const base = (over: Partial<PlanRequest> = {}): PlanRequest => ({
  config: LLAMA2_7B, limit: 20 * GiB, storage: 'auto', evaluator: 'auto', wasm: true, diskFree: 1000 * GiB, ...over,
});

let tmp: string;
beforeAll(() => (tmp = makeTmp('crepe-plan-')));
afterAll(() => rmTmp(tmp));

describe('estimates and choices', () => {
  test('7B block: 202,383,360 floats (4 x 4096^2 + 3 x 4096 x 11008 + 2 norms), q and k twice on the device', () => {
    expect(blockParams(LLAMA2_7B)).toBe(4 * 4096 * 4096 + 3 * 4096 * 11008 + 2 * 4096);
    expect(blockDeviceBytes(LLAMA2_7B)).toBe(4 * (blockParams(LLAMA2_7B) + 2 * 4096 * 4096));
    // 6.7e9 parameters in F32 do not fit a 4 GiB heap: evaluation streams
    expect(residentDeviceBytes(LLAMA2_7B)).toBeGreaterThan(26 * GiB);
  });

  test('7B at 2048 tokens on wasm: fits (attention head by head, heap factors measured); 4096 tokens refused', () => {
    const at = (seqlen: number, method: string) =>
      planMemory(base({ prune: { nsamples: 128, seqlen, gram: false, calibrates: true, propagate: 'pruned', scoreCopies: scoringCopies(method) } }));
    // one block: 0.88 GiB of tensors x 2.2 (XNNPACK's packed copy); a 2048-token forward's intermediates 0.92 GiB x 1.25
    expect(forwardActivationBytes(LLAMA2_7B, 2048) / GiB).toBeCloseTo(0.92, 2);
    const wanda = at(2048, 'wanda');
    expect(wanda.fits).toBe(true);
    expect(wanda.deviceBytes).toBeCloseTo(2.2 * blockDeviceBytes(LLAMA2_7B) + forwardHeapBytes(LLAMA2_7B, 2048, { activations: 1.25, scores: 2.5 }) + windowTableBytes(LLAMA2_7B, 2048), 0);
    expect(wanda.deviceBytes).toBeLessThan(WASM_HEAP_LIMIT);
    // CRePE's scoring holds 9 copies of the 11008 x 4096 linear: 9 x 172 MiB x 2.0 = 3.0 GiB, a turn of its own
    const crepe = at(128, 'crepe');
    expect(crepe.deviceBytes).toBeCloseTo(2.0 * 9 * 11008 * 4096 * 4, 0);
    // the scale bench's measured heaps (4 blocks, 2 x 128 calibration) are below the estimates
    expect(crepe.deviceBytes).toBeGreaterThan(2.80 * GiB);
    expect(at(128, 'wanda').deviceBytes).toBeGreaterThan(1.96 * GiB);
    const long = at(4096, 'wanda');
    expect(long.fits).toBe(false);
    expect(long.refusal).toMatch(/^needs ~\d(\.\d)? GiB of wasm heap, limit 3\.2 GiB .*--calib-seqlen \(now 4096\)/);
  });

  test('7B, wanda 128 x 2048 + wikitext2 (native backend): 4 GiB of activations in F32, streaming evaluator, spilled blocks', () => {
    const plan = planMemory(base({ wasm: false, prune: { nsamples: 128, seqlen: 2048, gram: false, calibrates: true, propagate: 'pruned' }, eval: { windows: 83, seqlen: 2048, jobs: 1 } }));
    expect(plan.fits).toBe(true);
    expect(plan.evaluator).toBe('streaming');
    expect(plan.storage).toBe('f32');
    expect(plan.spillBlocks).toBe(true); // 26 GiB of pruned blocks > a quarter of 20 GiB
    const act = plan.items.find((i) => i.what.startsWith('calibration activations'))!;
    expect(act.host).toBe(128 * 2048 * 4096 * 4 + 2048 * 4096 * 4);
    expect(plan.deviceLimitBytes).toBeNull(); // no wasm cap on a native backend
  });

  test('a smaller budget picks F16 calibration activations, then disk; evaluation hidden states never F16', () => {
    const req = { prune: { nsamples: 128, seqlen: 2048, gram: false, calibrates: true, propagate: 'pruned' as const }, eval: { windows: 83, seqlen: 2048, jobs: 1 } };
    const f16 = planMemory(base({ ...req, wasm: false, limit: 8 * GiB }));
    expect([f16.storage, f16.evalStorage, f16.fits]).toEqual(['f16', 'disk', true]);
    const disk = planMemory(base({ ...req, wasm: false, limit: 6 * GiB }));
    expect([disk.storage, disk.fits]).toEqual(['disk', true]);
    expect(disk.hostBytes).toBeLessThan(6 * GiB);
    expect(disk.diskBytes).toBeGreaterThan(4 * GiB);
    const tooSmall = planMemory(base({ ...req, wasm: false, limit: 2 * GiB }));
    expect(tooSmall.fits).toBe(false);
    expect(tooSmall.refusal).toMatch(/^needs ~\d+(\.\d)? GiB of memory, limit 2\.0 GiB; try /);
    const noDisk = planMemory(base({ ...req, wasm: false, limit: 6 * GiB, diskFree: 8 * GiB }));
    expect(noDisk.fits).toBe(false);
  });

  test('SparseGPT adds the X^T X accumulators: 3 x 4096^2 + 11008^2 doubles, and two Hessian factors of the largest', () => {
    const p = { nsamples: 8, seqlen: 128, calibrates: true, propagate: 'pruned' as const };
    const plan = planMemory(base({ prune: { ...p, gram: true } }));
    const gram = plan.items.find((i) => i.what.startsWith('SparseGPT'))!;
    expect(gram.host).toBe(8 * (3 * 4096 ** 2 + 11008 ** 2) + 2 * 8 * 11008 ** 2);
    expect(planMemory(base({ prune: { ...p, gram: false } })).items.some((i) => i.what.startsWith('SparseGPT'))).toBe(false);
  });

  test('an 8192-token window would need more wasm heap than allowed: refused, pointing at --seqlen', () => {
    const plan = planMemory(base({ eval: { windows: 4, seqlen: 8192, jobs: 1 } }));
    expect(plan.fits).toBe(false);
    expect(plan.refusal).toMatch(/^needs ~\d+(\.\d)? GiB of wasm heap, limit 3\.2 GiB .*--seqlen \(now 8192\)/);
    // a native backend has no wasm cap
    expect(planMemory(base({ eval: { windows: 4, seqlen: 8192, jobs: 1 }, wasm: false, limit: 100 * GiB })).fits).toBe(true);
  });

  test('--max-memory values', () => {
    expect(parseMemoryFlag('6')).toBe(6 * GiB);
    expect(parseMemoryFlag('1.5G')).toBe(1.5 * GiB);
    expect(parseMemoryFlag('512M')).toBe(512 * 2 ** 20);
    for (const bad of ['', 'abc', '-1', '0', '6T']) expect(() => parseMemoryFlag(bad)).toThrow(/--max-memory must be a positive size/);
  });

  test('stale spill folders of dead processes are removed, live ones kept', () => {
    const dead = path.join(tmp, 'crepe-spill-999999999-abc');
    const live = path.join(tmp, `crepe-spill-${process.pid}-def`);
    const other = path.join(tmp, 'unrelated');
    for (const d of [dead, live, other]) fs.mkdirSync(d);
    expect(removeStaleSpills(tmp)).toEqual(['crepe-spill-999999999-abc']);
    expect([fs.existsSync(dead), fs.existsSync(live), fs.existsSync(other)]).toEqual([false, true, true]);
  });
});

/**
 * An HF checkpoint of `cfg` whose safetensors header claims every tensor but whose data is a
 * sparse hole (nothing on disk, nothing read), with babyllama-char's 105-piece tokenizer.
 */
function sparseCheckpoint(name: string, cfg: LlamaConfig): string {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(hfConfigJson(cfg, 'BF16')));
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of hfTensors(cfg)) {
    const bytes = t.shape.reduce((a, d) => a * d, 1) * 2;
    header[t.name] = { dtype: 'BF16', shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const file = path.join(dir, 'model.safetensors');
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([len, Buffer.from(json)]));
  fs.truncateSync(file, 8 + json.length + offset);
  fs.copyFileSync(MODELS['babyllama-char'].tokenizer(), path.join(dir, 'tokenizer.model')); // knows its own size (105)
  return dir;
}

describe('CLI: refused in one line before any work', () => {
  // The refusals below are the memory planner's message, and the planner runs before any weight
  // or text is read: the message itself shows that no work was done (no wall-time bound needed).
  test('prune with a calibration set larger than the budget', () => {
    const r = runCli(['prune', '--model', 'stories260K', '--method', 'wanda', '--nsamples', '300000', '--max-memory', '6', '--eval', 'tinystories']);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toEqual([expect.stringMatching(/^crepe: needs ~37 GiB of memory, limit 6\.0 GiB; try --nsamples \d+ or --max-memory 37/)]);
  });

  test('--dry-run prints the plan and computes nothing; --json has it as an object', () => {
    const r = runCli(['prune', '--model', 'stories260K', '--method', 'sparsegpt', '--eval', 'tinystories', '--dry-run']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^memory plan: peak host ~[\d.]+ GiB of [\d.]+ GiB allowed; wasm heap/);
    expect(r.stdout).toMatch(/SparseGPT X\^T X/);
    expect(r.stdout).not.toMatch(/PPL/);
    const j = runCli(['eval', '--model', 'babyllama-char', '--dataset', 'tinystories', '--dry-run', '--json', '--evaluator', 'streaming', '--activations', 'disk']);
    const plan = JSON.parse(j.stdout).memory_plan;
    expect([plan.evaluator, plan.eval_activations, plan.fits]).toEqual(['streaming', 'disk', true]);
    expect(plan.disk_bytes).toBe(778 * 256 * 128 * 4);
  });

  test('a header claiming a 256 GiB embedding (sparse file): refused at once, nothing read', () => {
    const dir = sparseCheckpoint('huge', { ...LLAMA2_7B, nLayers: 1, vocabSize: 1 << 24, maxSeqLen: 512 });
    const r = runCli(['eval', '--model', dir, '--dataset', 'tinystories', '--max-windows', '1', '--seqlen', '64']);
    // the classifier alone (2^24 x 4096 floats) is 256 GiB: the heap check or the memory check refuses
    expect(lines(r.stderr)).toEqual([expect.stringMatching(/^crepe: needs ~([2-9]\d\d|\d{4,}) GiB of (memory|wasm heap), limit [\d.]+ GiB/)]);
    expect(r.code).toBe(2);
  });

  test('every command that loads a model is planned: a LLaMA-2-7B-shaped checkpoint (sparse) refused in one line before any work', () => {
    const dir = sparseCheckpoint('llama7b', LLAMA2_7B);
    const budget = ['--max-memory', '6'];
    const oneLine = /^crepe: needs ~\d+(\.\d)? GiB of (memory|wasm heap), limit \d+(\.\d)? GiB[^;]*; try /;
    const cases: [string, string[], RegExp][] = [
      // generate keeps every block on the device: 7B in F32 cannot be resident on wasm
      ['generate', ['generate', '--model', dir, '--steps', '8', ...budget], /wasm heap.*try a native backend/],
      // zeroshot streams it (below), but not within 1 GiB: one streamed 7B block takes more
      ['zeroshot', ['zeroshot', '--model', dir, '--tasks', 'arc_easy', '--limit', '1', '--max-memory', '1'], /GiB of memory, limit 1\.0 GiB; try --max-memory/],
      ['search', ['search', '--model', dir, '--method', 'crepe', '--search', 'hillclimb', '--sparsity', '0.5', '--nsamples', '2', '--calib-seqlen', '64', ...budget], /wasm heap/],
      ['proxy-study', ['proxy-study', '--model', dir, '--method', 'crepe', '--sparsity', '0.5', '--nsamples', '2', '--calib-seqlen', '64', '--samples', '3', '--out', tmp, ...budget], /wasm heap/],
    ];
    for (const [name, args, hint] of cases) {
      const r = runCli(args);
      expect([name, r.code]).toEqual([name, 2]);
      expect(lines(r.stderr)).toEqual([expect.stringMatching(oneLine)]);
      expect(r.stderr).toMatch(hint);
      expect(r.stderr).not.toMatch(/--evaluator streaming/); // these commands have no streaming path
    }
    // zero-shot scoring streams a model that cannot be resident
    const zs = runCli(['zeroshot', '--model', dir, '--tasks', 'arc_easy', '--limit', '1', '--dry-run', '--json', ...budget]);
    expect(zs.code).toBe(0);
    expect(JSON.parse(zs.stdout).memory_plan).toMatchObject({ evaluator: 'streaming', fits: true });
    // --dry-run prints the plan instead, exit 2 when it does not fit
    const dry = runCli(['generate', '--model', dir, '--steps', '8', '--dry-run', '--json']);
    expect(dry.code).toBe(2);
    const plan = JSON.parse(dry.stdout).memory_plan;
    expect([plan.evaluator, plan.fits]).toEqual(['resident', false]);
    // a search keeps raw calibration inputs for the recon proxies: counted
    const recon = JSON.parse(runCli(['search', '--model', 'stories260K', '--method', 'crepe', '--search', 'pho', '--proxy', 'recon', '--sparsity', '0.5', '--dry-run', '--json']).stdout).memory_plan;
    expect(recon.items.map((i: { what: string }) => i.what)).toContainEqual(expect.stringMatching(/^kept calibration inputs: 4 windows/));
  }, 120_000);

  test('search-compare plans each model of its config before any work', () => {
    const dir = sparseCheckpoint('llama7b-compare', LLAMA2_7B);
    const config = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'experiments', 'search.json'), 'utf8'));
    config.models = [dir];
    const file = path.join(tmp, 'compare.json');
    fs.writeFileSync(file, JSON.stringify(config));
    const out = fs.mkdtempSync(path.join(tmp, 'compare-out-'));
    const r = runCli(['search-compare', '--config', file, '--out', out, '--max-memory', '6']);
    expect(r.code).toBe(2);
    expect(lines(r.stderr)).toEqual([expect.stringMatching(/^crepe: needs ~\d+(\.\d)? GiB of (memory|wasm heap), limit/)]);
    expect(fs.readdirSync(out)).toEqual([]);
  }, 60_000);
});

test('a run killed with spill files (SIGTERM, kill -9) dies at once; the next run removes its folder', async () => {
  const { spawn } = await import('child_process');
  const spill = fs.mkdtempSync(path.join(tmp, 'spill-'));
  const cli = path.join(__dirname, '..', 'dist', 'scripts', 'cli.js');
  const args = ['prune', '--model', 'babyllama-char', '--method', 'wanda', '--activations', 'disk', '--spill-dir', spill];
  for (const signal of ['SIGTERM', 'SIGKILL'] as const) {
    const child = spawn(process.execPath, [cli, ...args, '--nsamples', '64'], { stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) => child.on('exit', (_code, sig) => resolve(sig)));
    const deadline = Date.now() + 60_000;
    while (fs.readdirSync(spill).length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(fs.readdirSync(spill)).toEqual([expect.stringMatching(new RegExp(`^crepe-spill-${child.pid}-`))]);
    child.kill(signal);
    let timer: NodeJS.Timeout | undefined;
    const how = await Promise.race([exited, new Promise<'hang'>((r) => (timer = setTimeout(() => r('hang'), 10_000)))]);
    clearTimeout(timer);
    if (how === 'hang') child.kill('SIGKILL');
    expect(how).toBe(signal);
    // the next run with the same spill folder removes the dead run's files, then its own
    expect(runCli([...args, '--nsamples', '2']).code).toBe(0);
    expect(fs.readdirSync(spill)).toEqual([]);
  }
}, 180_000);
