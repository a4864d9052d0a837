// The README's TypeScript API example, run as written: extracted from the README into a test project that imports 'vipnat', in a lab.
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { isRoot, Lab, ROOT } from './lab.js';

/** The fenced block of the README whose first line names the file. */
function readmeBlock(firstLine: string): string {
  const readme = readFileSync(`${ROOT}README.md`, 'utf8');
  const m = new RegExp('```ts\\n(' + firstLine.replace(/[.*+?^${}()|[\]\\]/g, '\\$&') + '[\\s\\S]*?)```').exec(readme);
  if (!m) throw new Error(`no \`\`\`ts block starting with "${firstLine}" in README.md`);
  return m[1]!;
}

describe.skipIf(!isRoot())("the README's API example", () => {
  let lab: Lab;
  // Inside the package, so that `import ... from 'vipnat'` resolves to it as to an installed one (its exports).
  const dir = `${ROOT}test/.api-example-${process.pid}`;
  afterEach(() => {
    lab?.down();
    rmSync(dir, { recursive: true, force: true });
  });

  it('passes, run with vitest in a lab namespace as the gateway’s uplink', () => {
    lab = Lab.up();
    const before = lab.snapshot();
    mkdirSync(dir, { recursive: true });
    writeFileSync(`${dir}/agents.test.ts`, readmeBlock('// agents.test.ts'));
    writeFileSync(`${dir}/vitest.config.mjs`, "export default { test: { include: ['agents.test.ts'], testTimeout: 60000 } };\n");
    const r = spawnSync(
      'nsenter',
      [`--net=/run/netns/${lab.gw}`, `${ROOT}node_modules/.bin/vitest`, 'run', '--root', dir, '--config', `${dir}/vitest.config.mjs`],
      {
        encoding: 'utf8',
        timeout: 90_000,
      },
    );
    const out = `${r.stdout}\n${r.stderr}`;
    expect(r.status, out).toBe(0);
    expect(out).toMatch(/1 passed/);
    // `await using` closed the gateway: nothing of it is left in the lab.
    expect(lab.snapshot()).toEqual(before);
  });
});
