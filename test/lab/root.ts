// The repository's root, found from this file whether it runs as source (vitest) or compiled into dist-tools/ (bench, soak).
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The nearest folder above this file that holds package.json; ends with a slash (`${ROOT}bin/vipnat`). */
function findRoot(): string {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!existsSync(path.join(dir, 'package.json'))) {
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = up;
  }
  return `${dir}/`;
}

export const ROOT = findRoot();
