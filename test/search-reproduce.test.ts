/**
 * The "reproduce" command `crepe search` prints carries every flag that changes the result: run
 * as printed, it gives the search's full-evaluation PPL exactly (it used to drop
 * --calib-seqlen, giving 20.02 instead of 21.10).
 */
import { runCli } from './helpers';

test('running the printed reproduce command gives the same PPL (non-default calibration)', () => {
  const search = runCli(['search', '--model', 'stories260K', '--method', 'crepe', '--sparsity', '0.5', '--search', 'pho', '--budget', '3', '--nsamples', '4', '--calib-seqlen', '64', '--calib-seed', '3', '--json'], { timeoutMs: 300_000 });
  expect(search.code).toBe(0);
  const s = JSON.parse(search.stdout);
  expect(s.reproduce).toMatch(/^crepe prune /);
  expect(s.reproduce).toContain('--calib-seqlen 64');
  const argv = s.reproduce.split(/\s+/).slice(1);
  const prune = runCli([...argv, '--json'], { timeoutMs: 300_000 });
  expect(prune.code).toBe(0);
  const p = JSON.parse(prune.stdout);
  expect(p.eval[0].dataset).toBe(s.full_eval.dataset);
  expect(p.eval[0].windows).toBe(s.full_eval.windows);
  expect(p.eval[0].pruned_ppl).toBe(s.full_eval.ppl);
}, 600_000);
