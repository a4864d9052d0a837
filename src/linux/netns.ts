// Named network namespaces (/run/netns, as `ip netns` keeps them) and their per-namespace /etc files.
import { existsSync, mkdirSync, readdirSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { ip } from './ip.js';
import { inMachineMounts } from './mounts.js';

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

// TCP states (include/net/tcp_states.h) in which a closed socket may still hold data to deliver.
const TCP_FIN_WAIT1 = 0x04;
const TCP_LAST_ACK = 0x09;
const TCP_CLOSING = 0x0b;

/**
 * How many TCP sockets in namespace `name` still have data on its way out
 * (a send queue, or a close not yet acknowledged), read from its
 * /proc/net/tcp and tcp6. -1 if they cannot be read.
 */
export function pendingTcp(name: string): Promise<number> {
  return new Promise((resolve) => {
    const [bin, ...rest] = inMachineMounts(['ip', 'netns', 'exec', name, 'cat', '/proc/net/tcp', '/proc/net/tcp6']);
    execFile(bin!, rest, { encoding: 'utf8' }, (err, out) => {
      if (err) {
        resolve(-1);
        return;
      }
      let n = 0;
      for (const line of out.split('\n')) {
        // "  sl  local_address rem_address   st tx_queue:rx_queue ..."
        const f = line.trim().split(/\s+/);
        if (f.length < 5 || !/^\d+:$/.test(f[0]!)) continue;
        const st = parseInt(f[3]!, 16);
        const tx = parseInt(f[4]!.split(':')[0]!, 16);
        if (tx > 0 || st === TCP_FIN_WAIT1 || st === TCP_LAST_ACK || st === TCP_CLOSING) n++;
      }
      resolve(n);
    });
  });
}

/** The inode of the network namespace of process `pid` (what a namespace is known by), or -1. */
export function netnsOfPid(pid: number): number {
  try {
    return statSync(`/proc/${pid}/ns/net`).ino;
  } catch {
    return -1;
  }
}

/**
 * The processes in each of the network namespaces given by inode, from one
 * pass over /proc (what `ip netns pids` does for one name), keyed by inode.
 */
export function pidsByNetns(inodes: number[]): Map<number, number[]> {
  const byInode = new Set(inodes.filter((i) => i > 0));
  const out = new Map<number, number[]>(inodes.map((n) => [n, []]));
  if (byInode.size === 0) return out;
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const e of entries) {
    if (e.charCodeAt(0) < 48 || e.charCodeAt(0) > 57) continue;
    let ino: number;
    try {
      ino = statSync(`/proc/${e}/ns/net`).ino;
    } catch {
      continue;
    }
    if (byInode.has(ino)) out.get(ino)!.push(Number(e));
  }
  return out;
}
