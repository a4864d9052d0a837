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

export function etcNetnsExists(): boolean {
  return existsSync(NETNS_ETC_DIR);
}

/**
 * Writes /etc/netns/NAME/hosts, which `ip netns exec NAME` bind-mounts over
 * /etc/hosts, so the session resolves this machine's hostname to its own address.
 */
export function writeNetnsHosts(name: string, hostsText: string): void {
  mkdirSync(`${NETNS_ETC_DIR}/${name}`, { recursive: true });
  writeFileSync(`${NETNS_ETC_DIR}/${name}/hosts`, hostsText, { mode: 0o644 });
}

/** Removes /etc/netns/NAME. */
export function removeNetnsEtc(name: string): void {
  rmSync(`${NETNS_ETC_DIR}/${name}`, { recursive: true, force: true });
}

/** Removes /etc/netns if it is empty (for a caller that found it absent). */
export function removeEtcNetnsIfEmpty(): void {
  try {
    rmdirSync(NETNS_ETC_DIR);
  } catch {
    // Not empty (another tool's files) or already gone.
  }
}
