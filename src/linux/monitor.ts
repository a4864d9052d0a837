// Watching this namespace's addresses change, through `ip monitor` (netlink events, nothing polled).
import { spawn } from 'node:child_process';
import { ip } from './ip.js';

/** Every address of this network namespace's interfaces (both families, any scope but host), as text. */
export async function localAddresses(): Promise<{ v4: string[]; v6: string[] }> {
  type Link = { ifname: string; addr_info?: { family: string; local: string; scope?: string }[] };
  const links = JSON.parse(await ip(['-j', 'addr', 'show'])) as Link[];
  const out = { v4: [] as string[], v6: [] as string[] };
  for (const l of links) {
    for (const a of l.addr_info ?? []) {
      if (a.family === 'inet') out.v4.push(a.local);
      else if (a.family === 'inet6' && a.scope !== 'link') out.v6.push(a.local);
    }
  }
  return out;
}

/**
 * Calls `onChange` whenever an address of this namespace is added or
 * removed (after `ip monitor address` reports it; bursts are taken
 * together). Returns a function that stops watching.
 */
export function watchAddresses(onChange: () => void): () => void {
  const child = spawn('ip', ['-o', 'monitor', 'address'], { stdio: ['ignore', 'pipe', 'ignore'] });
  let timer: NodeJS.Timeout | null = null;
  child.stdout.on('data', () => {
    timer ??= setTimeout(() => {
      timer = null;
      onChange();
    }, 20);
  });
  child.on('error', () => undefined);
  return () => {
    if (timer) clearTimeout(timer);
    child.kill('SIGKILL');
  };
}
