// sysctl values of the caller's network namespace, read and written through /proc/sys.
import { readFileSync, writeFileSync } from 'node:fs';

function path(key: string): string {
  return `/proc/sys/${key.replace(/\./g, '/')}`;
}

export function readSysctl(key: string): string {
  return readFileSync(path(key), 'utf8').trim();
}

export function writeSysctl(key: string, value: string): void {
  writeFileSync(path(key), `${value}\n`);
}
