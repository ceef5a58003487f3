/**
 * Every bench section, registered in the order `npm run bench` runs and prints them. A new
 * section is one file exporting a BenchSection plus one line here; `--only NAME` then selects
 * it and `--list` shows it.
 */
import { evalSection } from './eval';
import { registerSection } from './framework';
import { gemmSection } from './gemm';
import { pruneSection } from './prune';
import { rulesSection } from './rules';
import { scaleSection } from './scale';
import { selectSection } from './select';
import { tinyllamaSection } from './tinyllama';
import { zeroshotSection } from './zeroshot';

registerSection(evalSection);
registerSection(pruneSection);
registerSection(gemmSection);
registerSection(selectSection);
registerSection(scaleSection);
registerSection(rulesSection);
registerSection(zeroshotSection);
registerSection(tinyllamaSection);
