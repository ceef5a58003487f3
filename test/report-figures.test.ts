/**
 * The report's figures, checked on the geometry of the written SVG (what a reader sees after
 * rendering), from a synthetic sweep CSV with known spread over seeds: perplexity against
 * sparsity as one line per method with whiskers taller than the markers, methods side by side
 * (no marker on top of another), N:M as grouped bars of real width. A degenerate figure (bars a
 * fraction of a pixel wide, all methods at one x, whiskers shorter than the markers) fails here.
 */
import * as fs from 'fs';
import * as path from 'path';
import { Row, resultColumns } from '../lib/experiments/cell';
import { CAP_WIDTH, MARKER_AREA, isReportFile, writeReport } from '../lib/experiments/report';
import { csvHeader, csvLine } from '../lib/util/csv';
import { makeTmp, rmTmp } from './helpers';

let tmp: string;
beforeAll(() => {
  tmp = makeTmp('crepe-figures-');
});
afterAll(() => rmTmp(tmp));

// ---------------------------------------------------------------------------------------------
// reading marks back from a vega SVG

interface Mark {
  /** Index of the model's panel (left to right). */
  panel: number;
  /** 'point', 'bar', 'tick', 'rule mark', 'line mark', 'area mark'. */
  role: string;
  label: string;
  /** Left (rects) or centre (points, rules) and top, in panel pixels; width and height. */
  x: number;
  y: number;
  w: number;
  h: number;
  /** Polyline vertices (line and area marks). */
  vertices: [number, number][];
}

const attr = (el: string, name: string): string | undefined => new RegExp(`\\s${name}="([^"]*)"`).exec(el)?.[1];

/** Every graphics symbol of every panel (`concat_<panel>_layer_<k>_marks` groups). */
function readMarks(svg: string): Mark[] {
  const marks: Mark[] = [];
  const group = /<g class="mark-\w+ role-mark concat_(\d+)_layer_\d+_marks"[^>]*>([\s\S]*?)<\/g>/g;
  for (const g of svg.matchAll(group)) {
    const panel = Number(g[1]);
    for (const m of g[2].matchAll(/<(?:path|line)\b[^>]*role="graphics-symbol"[^>]*\/>/g)) {
      const el = m[0];
      const role = attr(el, 'aria-roledescription') ?? '';
      const label = attr(el, 'aria-label') ?? '';
      const t = /translate\(([-\d.e]+),([-\d.e]+)\)/.exec(attr(el, 'transform') ?? '');
      const [tx, ty] = t ? [Number(t[1]), Number(t[2])] : [0, 0];
      const d = attr(el, 'd') ?? '';
      const mark: Mark = { panel, role, label, x: tx, y: ty, w: 0, h: 0, vertices: [] };
      if (role === 'point') {
        const r = Number(/^M([\d.]+),0A/.exec(d)![1]);
        Object.assign(mark, { w: 2 * r, h: 2 * r });
      } else if (role === 'bar' || role === 'tick') {
        const rect = /^M([-\d.e]+),([-\d.e]+)h([-\d.e]+)v([-\d.e]+)/.exec(d)!;
        Object.assign(mark, { x: tx + Number(rect[1]), y: ty + Number(rect[2]), w: Number(rect[3]), h: Number(rect[4]) });
      } else if (role === 'rule mark') {
        Object.assign(mark, { w: Math.abs(Number(attr(el, 'x2') ?? 0)), h: Math.abs(Number(attr(el, 'y2') ?? 0)) });
      } else {
        mark.vertices = [...d.matchAll(/[ML]([-\d.e]+),([-\d.e]+)/g)].map((v) => [Number(v[1]), Number(v[2])]);
      }
      marks.push(mark);
    }
  }
  return marks;
}

// ---------------------------------------------------------------------------------------------
// a synthetic sweep: 2 models x 3 methods x 4 sparsities x 3 seeds, plus N:M

const columns = resultColumns(['tinystories']);
const SEEDS = [0, 1, 2];
/** Seed s multiplies the mean by 1 + SPREAD * (s - 1): sample std = SPREAD x mean. */
const SPREAD = 0.2;

function row(model: string, method: string, structure: string, sparsity: number, seed: number | '', ppl: number, dense: number): Row {
  return {
    key: `${model}-${method}-${structure}-${sparsity}-${seed}`.replace(/[^\w.-]/g, '_'), model, method, label: method, params: '{}', structure,
    group: structure === 'unstructured' ? 'row' : '', sparsity, achieved_sparsity: sparsity,
    calib_dataset: method === 'dense' ? '' : 'tinystories', calib_nsamples: 16, calib_seqlen: 128, calib_seed: seed, propagate: 'pruned',
    tinystories_split: 'test', tinystories_slice: 's', tinystories_seqlen: 128, tinystories_windows: 8, tinystories_dense_ppl: dense, tinystories_ppl: ppl,
    prune_seconds: 1, eval_seconds: 1, cpu_seconds: 1, backend: 'wasm', code_version: 'abc', config: 'x.json', timestamp: '2026-01-01T00:00:00.000Z',
  };
}

const METHODS = ['magnitude', 'wanda', 'ria'];
const LEVELS = [0.5, 0.6, 0.7, 0.8];

function syntheticRows(): Row[] {
  const rows: Row[] = [];
  for (const [model, dense, nm] of [['tiny', 4, ['2:4', '4:8']], ['other', 2, ['2:4']]] as const) {
    rows.push(row(model, 'dense', 'dense', 0, '', dense, dense));
    METHODS.forEach((method, k) => {
      for (const s of LEVELS) {
        // wanda and ria are equal at 50%: their markers must still not cover each other
        const mean = dense * Math.exp(12 * (s - 0.45)) * (s === 0.5 && k > 0 ? 1 : 1 + 0.3 * k);
        for (const seed of SEEDS) rows.push(row(model, method, 'unstructured', s, seed, mean * (1 + SPREAD * (seed - 1)), dense));
      }
      for (const structure of nm) {
        const mean = dense * (structure === '2:4' ? 12 : 8) * (1 + 0.2 * k);
        for (const seed of SEEDS) rows.push(row(model, method, structure, 0.5, seed, mean * (1 + SPREAD * (seed - 1)), dense));
      }
    });
  }
  return rows;
}

describe('report figures (geometry of the written SVG)', () => {
  let svgs: Record<string, string>;
  beforeAll(async () => {
    const csv = path.join(tmp, 'synthetic.csv');
    fs.writeFileSync(csv, csvHeader(columns) + syntheticRows().map((r) => csvLine(columns, r)).join(''));
    await writeReport(csv, { out: path.join(tmp, 'out') });
    // written again over itself: the rerun recognises its own files
    const files = await writeReport(csv, { out: path.join(tmp, 'out') });
    svgs = Object.fromEntries(files.svgs.map((f) => [path.basename(f), fs.readFileSync(f, 'utf8')]));
    expect(Object.keys(svgs).sort()).toEqual(['synthetic_tinystories_nm.svg', 'synthetic_tinystories_unstructured.svg']);
  });

  test('perplexity vs sparsity: a line per method over the levels, markers side by side, whiskers and caps larger than markers', () => {
    const marks = readMarks(svgs['synthetic_tinystories_unstructured.svg']);
    // vega sizes a symbol by the area of its bounding square: a circle of size A is sqrt(A) across
    const markerDiameter = Math.sqrt(MARKER_AREA);
    for (const panel of [0, 1]) {
      const mine = marks.filter((m) => m.panel === panel);
      const points = mine.filter((m) => m.role === 'point');
      expect(points).toHaveLength(METHODS.length * LEVELS.length);
      for (const p of points) expect(p.w).toBeCloseTo(markerDiameter, 1);
      // One polyline per method through its four levels, left to right.
      const lines = mine.filter((m) => m.role === 'line mark');
      expect(lines).toHaveLength(METHODS.length);
      for (const l of lines) {
        expect(l.vertices).toHaveLength(LEVELS.length);
        for (let i = 1; i < l.vertices.length; i++) expect(l.vertices[i][0]).toBeGreaterThan(l.vertices[i - 1][0] + 30);
      }
      // Markers at one level: distinct x, at least a marker apart, so none hides another.
      const levelOf = (m: Mark) => /(\d+)%:/.exec(m.label)![1];
      for (const level of ['50', '60', '70', '80']) {
        const xs = points.filter((p) => levelOf(p) === level).map((p) => p.x).sort((a, b) => a - b);
        expect(xs).toHaveLength(METHODS.length);
        for (let i = 1; i < xs.length; i++) expect(xs[i] - xs[i - 1]).toBeGreaterThanOrEqual(markerDiameter);
      }
      // Whiskers: one per point (every point has spread), each taller than a marker and
      // centred on its marker; caps wider than the marker.
      const rules = mine.filter((m) => m.role === 'rule mark' && m.h > 0);
      expect(rules).toHaveLength(points.length);
      for (const r of rules) {
        expect(r.h).toBeGreaterThan(markerDiameter);
        expect(points.some((p) => Math.abs(p.x - r.x) < 0.5 && p.y > r.y - r.h - 0.5 && p.y < r.y + 0.5)).toBe(true);
      }
      const caps = mine.filter((m) => m.role === 'tick');
      expect(caps).toHaveLength(2 * points.length);
      for (const c of caps) expect(c.w).toBe(CAP_WIDTH);
      expect(CAP_WIDTH).toBeGreaterThan(markerDiameter);
      // The band around each line has a real height.
      const bands = mine.filter((m) => m.role === 'area mark');
      expect(bands).toHaveLength(METHODS.length);
      for (const b of bands) {
        const ys = b.vertices.map((v) => v[1]);
        expect(Math.max(...ys) - Math.min(...ys)).toBeGreaterThan(markerDiameter);
      }
      // The dense model: one dashed rule across the panel.
      expect(mine.filter((m) => m.role === 'rule mark' && m.h === 0 && m.w > 200)).toHaveLength(1);
    }
  });

  test('N:M: grouped bars of real width, side by side, each with its whisker', () => {
    const marks = readMarks(svgs['synthetic_tinystories_nm.svg']);
    for (const [panel, structures] of [[0, ['2:4']], [1, ['2:4', '4:8']]] as const) {
      const bars = marks.filter((m) => m.panel === panel && m.role === 'bar');
      expect(bars).toHaveLength(METHODS.length * structures.length);
      for (const b of bars) {
        expect(b.w).toBeGreaterThanOrEqual(15);
        expect(b.h).toBeGreaterThan(20);
      }
      // No two bars overlap.
      const spans = bars.map((b) => [b.x, b.x + b.w]).sort((a, b) => a[0] - b[0]);
      for (let i = 1; i < spans.length; i++) expect(spans[i][0]).toBeGreaterThanOrEqual(spans[i - 1][1]);
      // Bars of one structure sit together (grouped), groups in order 2:4 then 4:8.
      const groupOf = (b: Mark) => /(\d+:\d+):/.exec(b.label)![1];
      const order = [...bars].sort((a, b) => a.x - b.x).map(groupOf);
      expect(order).toEqual(structures.flatMap((s) => METHODS.map(() => s)));
      const whiskers = marks.filter((m) => m.panel === panel && m.role === 'rule mark' && m.h > 0);
      expect(whiskers).toHaveLength(bars.length);
      for (const w of whiskers) {
        expect(w.h).toBeGreaterThan(5);
        expect(bars.filter((b) => b.x < w.x && w.x < b.x + b.w)).toHaveLength(1);
      }
    }
  });
});

test('a report file is recognised wherever its title sits (large figures put it past the first 64 KB)', async () => {
  const csv = path.join(tmp, 'big.csv');
  fs.writeFileSync(csv, csvHeader(columns) + syntheticRows().map((r) => csvLine(columns, r)).join(''));
  const files = await writeReport(csv, { out: path.join(tmp, 'big') });
  for (const f of [files.markdown, ...files.svgs]) expect(isReportFile(f)).toBe(true);
  const svg = files.svgs[0];
  const text = fs.readFileSync(svg, 'utf8');
  const open = text.indexOf('>') + 1;
  fs.writeFileSync(svg, `${text.slice(0, open)}<!--${' '.repeat(100_000)}-->${text.slice(open)}`);
  expect(isReportFile(svg)).toBe(true);
  // a drawing of someone else's is not
  fs.writeFileSync(svg, text.replace(/perplexity (vs unstructured sparsity|at N:M sparsity)/g, 'accuracy'));
  expect(isReportFile(svg)).toBe(false);
  fs.writeFileSync(files.markdown, '# My notes\n');
  expect(isReportFile(files.markdown)).toBe(false);
});
