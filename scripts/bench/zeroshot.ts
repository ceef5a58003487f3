/**
 * Section "zeroshot": zero-shot scoring throughput (documents per second) of stories260K on the
 * first documents of each task in the assets. Three ways: one forward per request (what the
 * harness's HF model runs, no shared prefix), crepe's packed scoring in one process (a
 * multiple-choice item's shared context computed once, several items per forward), and the
 * packed batches on two worker processes in steady state (pool started and warmed up first).
 */
import { initBackend } from '../../lib/backend';
import { evaluateZeroshot, prepareTask } from '../../lib/eval/zeroshot/evaluate';
import { EvalPool } from '../../lib/eval/pool';
import { DEFAULT_PACK_TOKENS } from '../../lib/eval/zeroshot/evaluate';
import { packBatches, scorePacked } from '../../lib/eval/zeroshot/loglikelihood';
import { parseTaskList } from '../../lib/eval/zeroshot/tasks';
import { openModel } from '../../lib/model/resolve';
import { LlamaModel } from '../../lib/model/runtime';
import { secondsSince } from '../../lib/util/time';
import { BenchSection, median } from './framework';

const MODEL = 'stories260K';
const TASKS = ['arc_easy', 'piqa', 'winogrande', 'boolq', 'lambada_openai', 'tinystories_cloze'];

export const zeroshotSection: BenchSection = {
  name: 'zeroshot',
  description: `zero-shot scoring documents/s of ${MODEL}: one forward per request vs packed (shared context once), 1 process and 2 workers`,
  async run(opts) {
    await initBackend('wasm');
    const limit = opts.windows * 4;
    const m = openModel(MODEL);
    const rows: Record<string, string | number | null>[] = [];
    const pool = await EvalPool.start(m.source.origin, m.tokenizerPath, 2, 'wasm');
    try {
      const runtime = LlamaModel.fromSource(m.source);
      try {
        for (const spec of parseTaskList(TASKS)) {
          opts.log(`zeroshot: ${spec.task.name}, first ${limit} documents`);
          const p = prepareTask(m, spec, { limit });
          scorePacked(runtime, [p.tokens[0]]); // warm-up: XNNPACK packs weights on first use
          const perRequest: number[] = [];
          const packed: number[] = [];
          const workers: number[] = [];
          for (let r = 0; r < opts.repeats; r++) {
            let t0 = process.hrtime.bigint();
            for (const item of p.tokens) for (const req of item) scorePacked(runtime, [[req]]);
            perRequest.push(p.tokens.length / secondsSince(t0));
            t0 = process.hrtime.bigint();
            const one = await evaluateZeroshot(m, m.source, [spec], { limit, jobs: 1, bootstrapIters: 0 });
            packed.push(one.items / secondsSince(t0));
            const batches = packBatches(p.tokens, DEFAULT_PACK_TOKENS).map((b) => b.map((i) => p.tokens[i]));
            await pool.scoreBatches(batches.slice(0, 2)); // warm-up of both workers
            t0 = process.hrtime.bigint();
            await pool.scoreBatches(batches);
            workers.push(p.tokens.length / secondsSince(t0));
          }
          rows.push({
            task: spec.task.name,
            docs: p.docs.length,
            requests: p.tokens.reduce((a, x) => a + x.length, 0),
            perRequest: median(perRequest),
            packed: median(packed),
            workers: median(workers),
            speedup: median(workers) / median(perRequest),
          });
        }
      } finally {
        runtime.dispose();
      }
    } finally {
      pool.close();
      m.source.close();
    }
    return {
      tables: [
        {
          title: `zeroshot: documents/s, ${MODEL}, first ${limit} documents per task (median of ${opts.repeats})`,
          columns: [
            { key: 'task', header: 'task' },
            { key: 'docs', header: 'docs' },
            { key: 'requests', header: 'requests' },
            { key: 'perRequest', header: 'per-request docs/s', digits: 1 },
            { key: 'packed', header: 'packed 1 proc docs/s', digits: 1 },
            { key: 'workers', header: 'packed 2 workers docs/s', digits: 1 },
            { key: 'speedup', header: '2 workers / per-request', digits: 2 },
          ],
          rows,
          notes: [
            'per-request: one forward per (context, continuation) as the harness runs them; packed: crepe zeroshot (shared context once, up to 256 tokens per forward)',
            '1 proc: evaluateZeroshot end to end (tokenization included); 2 workers: the packed batches on an EvalPool already started and warmed up (tokenization not included)',
          ],
        },
      ],
      checks: [],
    };
  },
};
