// Saving a run: bench/results/<UTC date>-<commit>.json and latest.md, and the README's table between <!-- bench:start --> and <!-- bench:end --> rewritten.
import fs from 'node:fs';
import path from 'node:path';
import { log, ROOT } from '../test/lab/index.js';
import type { RunInfo } from './report.js';
import type { Results } from './results.js';

const RESULTS = path.join(ROOT, 'bench/results');
const README = path.join(ROOT, 'README.md');
const START = '<!-- bench:start -->';
const END = '<!-- bench:end -->';

/** `text` with what lies between the bench markers replaced by `md`, or null when the markers are missing. */
export function replaceTable(text: string, md: string): string | null {
  const a = text.indexOf(START),
    b = text.indexOf(END);
  if (a < 0 || b < a) return null;
  return `${text.slice(0, a)}${START}\n${md}\n${text.slice(b)}`;
}

export function save(info: RunInfo, results: Results, md: string): void {
  fs.mkdirSync(RESULTS, { recursive: true });
  const stamp = info.date.replace(/:\d\d\.\d+Z$/, 'Z').replace(/:/g, '');
  const file = path.join(RESULTS, `${stamp}-${info.commit.replace('+dirty', '-dirty')}.json`);
  fs.writeFileSync(file, `${JSON.stringify({ ...info, ...results }, null, 2)}\n`);
  fs.writeFileSync(path.join(RESULTS, 'latest.md'), `${md}\n`);
  log(`\nwrote ${path.relative(ROOT, file)} and bench/results/latest.md`);
  const readme = replaceTable(fs.readFileSync(README, 'utf8'), md);
  if (readme === null) {
    log(`README.md has no ${START} ... ${END} markers: not updated`);
    return;
  }
  fs.writeFileSync(README, readme);
  log('updated the benchmark table in README.md');
}
