// sysctl values of the caller's network namespace, read and written through /proc/sys.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { IpError } from './ip.js';
import { mount, MS_BIND, MS_NODEV, MS_NOEXEC, MS_NOSUID, MS_REMOUNT } from './libc.js';

/** Whether this process runs in a container (Docker's and podman's marks). */
function inContainer(): boolean {
  return existsSync('/.dockerenv') || existsSync('/run/.containerenv');
}

let remounted = false;

/**
 * A container's /proc/sys is read-only (a bind mount): with CAP_SYS_ADMIN
 * vipnat makes it writable in its own container, once, so that NET_ADMIN,
 * SYS_ADMIN and /dev/net/tun are all it needs there. Only in a container.
 */
function remountWritable(): boolean {
  if (remounted || !inContainer()) return false;
  remounted = true;
  // The bind mount's other flags stay (a remount that drops them is refused).
  return mount(null, '/proc/sys', null, MS_REMOUNT | MS_BIND | MS_NOSUID | MS_NODEV | MS_NOEXEC, null) === 0;
}

function path(key: string): string {
  return `/proc/sys/${key.replace(/\./g, '/')}`;
}

export function readSysctl(key: string): string {
  return readFileSync(path(key), 'utf8').trim();
}

/** Writes a sysctl; a /proc/sys mounted read-only (a container's, by default) is said in one line, with what to do. */
export function writeSysctl(key: string, value: string): void {
  try {
    writeFileSync(path(key), `${value}\n`);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EROFS') throw e;
    if (remountWritable()) {
      writeFileSync(path(key), `${value}\n`);
      return;
    }
    throw new IpError(
      `cannot set ${key}: /proc/sys is read-only here (in a container, give it --cap-add SYS_ADMIN, or --security-opt systempaths=unconfined)`,
    );
  }
}
