// Named network namespaces (/run/netns, as `ip netns` keeps them) and their per-namespace /etc files.
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { ip } from './ip.js';

export const NETNS_RUN_DIR = '/run/netns';
export const NETNS_ETC_DIR = '/etc/netns';

export function listNetns(): string[] {
  try {
    return readdirSync(NETNS_RUN_DIR);
  } catch {
    return [];
  }
}

/** PIDs of processes whose network namespace is `name`. */
export async function netnsPids(name: string): Promise<number[]> {
  try {
    const out = await ip(['netns', 'pids', name]);
    return out
      .split('\n')
      .map((l) => Number(l.trim()))
      .filter((n) => Number.isInteger(n) && n > 0);
  } catch {
    return [];
  }
}

/** Kills every process left in a namespace (a session's logoff). */
export async function killNetnsProcesses(name: string, signal: NodeJS.Signals = 'SIGKILL'): Promise<number> {
  const pids = await netnsPids(name);
  for (const pid of pids) {
    try {
      process.kill(pid, signal);
    } catch {
      // Already gone.
    }
  }
  return pids.length;
}

/**
 * Writes /etc/netns/NAME/hosts, which `ip netns exec NAME` bind-mounts over
 * /etc/hosts, so the session resolves this machine's hostname to its own address.
 * Returns true if it had to create /etc/netns itself.
 */
export function writeNetnsHosts(name: string, hostsText: string): boolean {
  const created = !existsSync(NETNS_ETC_DIR);
  mkdirSync(`${NETNS_ETC_DIR}/${name}`, { recursive: true });
  writeFileSync(`${NETNS_ETC_DIR}/${name}/hosts`, hostsText, { mode: 0o644 });
  return created;
}

/** Removes /etc/netns/NAME, and /etc/netns too when `removeParent` and it is empty. */
export function removeNetnsEtc(name: string, removeParent: boolean): void {
  rmSync(`${NETNS_ETC_DIR}/${name}`, { recursive: true, force: true });
  if (removeParent) {
    try {
      rmdirSync(NETNS_ETC_DIR); // fails (kept) when another tool has files there
    } catch {
      // Not empty or already gone.
    }
  }
}
