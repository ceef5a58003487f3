/** The one CSV path (lib/util/csv.ts): RFC 4180 text with known answers, and refusals. */
import * as fs from 'fs';
import * as path from 'path';
import * as ts from 'typescript';
import { CrepeError } from '../lib/errors';
import { csvHeader, csvLine, csvText, parseCsv, parseCsvLine } from '../lib/util/csv';
import { ROOT, sourceFiles } from './helpers';

describe('csv', () => {
  test('writes RFC 4180: quotes fields with a comma, quote or line break; numbers in full precision', () => {
    const text = csvText(['name', 'value', 'flag', 'empty'], [
      ['a,b', 0.1 + 0.2, true, null],
      ['say "hi"', 1e-7, false, undefined],
      ['cr\rlf\n', -0, 'x', ''],
    ]);
    expect(text).toBe('name,value,flag,empty\n"a,b",0.30000000000000004,true,\n"say ""hi""",1e-7,false,\n"cr\rlf\n",0,x,\n');
  });

  test('parse inverts write, including quoted line breaks', () => {
    const rows = [
      ['a,b', '0.5', 'x'],
      ['say "hi"', '', 'two\nlines'],
    ];
    const table = parseCsv(csvText(['p', 'q', 'r'], rows), 'f.csv');
    expect(table.columns).toEqual(['p', 'q', 'r']);
    expect(table.rows).toEqual(rows.map(([p, q, r]) => ({ p, q, r })));
    expect(parseCsv('', 'empty.csv')).toEqual({ columns: [], rows: [] });
  });

  test('object rows: one line per row in column order, line breaks refused', () => {
    const columns = ['key', 'model', 'ppl'];
    expect(csvHeader(columns)).toBe('key,model,ppl\n');
    expect(csvLine(columns, { ppl: 1.5, key: 'k', model: 'a "b", c' })).toBe('k,"a ""b"", c",1.5\n');
    expect(csvLine(columns, { key: 'k' })).toBe('k,,\n');
    expect(() => csvLine(columns, { key: 'a\rb' })).toThrow(/column key contains a line break/);
    expect(parseCsvLine('k,"a ""b"", c",1.5')).toEqual(['k', 'a "b", c', '1.5']);
  });

  test('malformed input is a CrepeError naming the file', () => {
    expect(() => parseCsv('a,b\n1,2,3\n', 'bad.csv')).toThrow(CrepeError);
    expect(() => parseCsv('a,b\n1,2,3\n', 'bad.csv')).toThrow(/^bad\.csv: .*line 2/);
    expect(() => parseCsv('a,b\n"1,2\n', 'open.csv')).toThrow(/^open\.csv: /);
    expect(() => parseCsvLine('a\nb')).toThrow(/one CSV line/);
  });
});

describe('one CSV path', () => {
  test('only lib/util/csv.ts imports a CSV library', () => {
    // imports read with the compiler's pre-processor, as test/layering.test.ts reads them
    const importers = [...sourceFiles('lib'), ...sourceFiles('scripts')].filter((rel) =>
      ts
        .preProcessFile(fs.readFileSync(path.join(ROOT, rel), 'utf8'), true, true)
        .importedFiles.some((f) => /^(csv-|papaparse|csv$)/.test(f.fileName)),
    );
    expect(importers).toEqual(['lib/util/csv.ts']);
  });
});
