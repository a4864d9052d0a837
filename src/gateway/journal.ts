// The journal: what vipnat changed on the machine, written before each change, so a later start can undo it after a SIGKILL.
//
// Every change vipnat makes outside its own process (a sysctl, a policy
// rule, a session's namespace, /etc/netns) is appended to a file
// /run/vipnat/PID-START.journal as one JSON line *before* it is made; when
// vipnat undoes a change itself it appends a `done` line naming it, and a
// clean exit deletes the file. What a TUN device carries (vipnat0, its
// routes and sysctls) needs no entry: the kernel removes the device with the
// last file descriptor, which a dying process closes.
//
// A file whose writer is gone (its pid is dead, or now belongs to a process
// with another start time) describes a vipnat that died without cleaning
// up. The next start, in any mode, claims it (an atomic rename, so two
// starts never undo it twice) and undoes exactly what it lists and did not
// mark done, newest first: a sysctl gets its recorded original value back, a
// rule its recorded undo, a namespace is emptied and deleted. Nothing is
// guessed from what the machine looks like now.
//
// Sysctls and rules belong to the network namespace the dead vipnat ran in.
// They are undone when that is this start's namespace, or a named one
// (/run/netns/NAME, as `ip netns` keeps them) that is still the same
// namespace; a namespace that is gone took them with it. A journal of a
// namespace that still lives but cannot be reached by name is left for the
// next vipnat that starts in it, after its namespaces are removed.
import { appendFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import {
  ip,
  ipBatch,
  killNetnsProcesses,
  listNetns,
  inMachineMounts,
  NETNS_RUN_DIR,
  removeEtcNetnsIfEmpty,
  removeNetnsEtc,
  writeSysctl,
} from '../linux/index.js';

import { RUN_DIR } from './limits.js';
export { RUN_DIR };
const SUFFIX = '.journal';
const VERSION = 1;

/** One change, as it is written before it is made. */
export type JournalEntry =
  /** A sysctl of the namespace vipnat runs in, and the value to put back. */
  | { op: 'sysctl'; key: string; was: string }
  /** Policy rules or routes: `ip -batch` lines that undo them, in order, each tried on its own. */
  | { op: 'ip'; undo: string[] }
  /** A neighbour proxy entry (proxy ARP or NDP) for an on-link VIP. */
  | { op: 'proxy'; dev: string; address: string }
  /** The `local` rule moved from preference 0 (shared fallback): put back unless it already is. */
  | { op: 'local-rule' }
  /** A session's named network namespace (and its /etc/netns/NAME). */
  | { op: 'netns'; name: string }
  /** /etc/netns itself, which vipnat had to create: removed when empty. */
  | { op: 'etc-netns' };

interface Header {
  op: 'open';
  v: number;
  pid: number;
  start: number;
  /** Inode of the network namespace vipnat ran in, and a name it has in /run/netns, if any. */
  netns: number;
  netnsName: string | null;
}

type Line = Header | JournalEntry | { op: 'done'; seq: number };

/**
 * Start time of a live process in clock ticks since boot (field 22 of
 * /proc/PID/stat), or -1 if there is none. A zombie is dead: its parent
 * has not reaped it yet (or never will, under an init that does not reap).
 */
export function processStart(pid: number | 'self'): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') return -1;
    return Number(fields[19]);
  } catch {
    return -1;
  }
}

function netnsInode(path: string): number {
  try {
    return statSync(path).ino;
  } catch {
    return -1;
  }
}

/** A name under /run/netns for the namespace with this inode, or null. */
function netnsNameOf(inode: number): string | null {
  for (const name of listNetns()) if (netnsInode(`${NETNS_RUN_DIR}/${name}`) === inode) return name;
  return null;
}

/** Whether any process, or any /run/netns name, still holds the namespace with this inode. */
function netnsAlive(inode: number): boolean {
  if (netnsNameOf(inode) !== null) return true;
  let pids: string[];
  try {
    pids = readdirSync('/proc').filter((p) => /^\d+$/.test(p));
  } catch {
    return true; // cannot tell: keep what we cannot undo
  }
  return pids.some((p) => netnsInode(`/proc/${p}/ns/net`) === inode);
}

/** The journal of this vipnat process. */
export class Journal {
  private seq = 0;
  private closed = false;

  /** The name of the namespace this vipnat runs in, when it is a named one (ip netns). */
  netnsName: string | null = null;

  private constructor(readonly path: string) {}

  /** Starts this process's journal (the directory is root's alone). */
  static open(dir: string = RUN_DIR): Journal {
    // Created 0700: only root reads what vipnat changed, and only root may leave a journal for it to undo.
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const start = processStart('self');
    const j = new Journal(`${dir}/${process.pid}-${start}${SUFFIX}`);
    const inode = netnsInode('/proc/self/ns/net');
    j.netnsName = netnsNameOf(inode);
    j.append({ op: 'open', v: VERSION, pid: process.pid, start, netns: inode, netnsName: j.netnsName });
    return j;
  }

  private append(line: Line): void {
    if (this.closed) throw new Error('journal: already closed');
    appendFileSync(this.path, `${JSON.stringify(line)}\n`, { mode: 0o600 });
  }

  /** Records a change about to be made; returns its number, for done(). */
  record(entry: JournalEntry): number {
    this.append(entry);
    return ++this.seq;
  }

  /** Records that change `seq` has been undone. */
  done(seq: number): void {
    if (!this.closed) this.append({ op: 'done', seq });
  }

  /** Everything was undone: the journal goes. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    rmSync(this.path, { force: true });
  }
}

/** What recovery undid for one dead vipnat. */
export interface Recovered {
  pid: number;
  /** sysctls put back, as KEY=VALUE. */
  sysctls: string[];
  rules: number;
  /** Neighbour proxy entries removed (on-link VIPs). */
  proxies: number;
  namespaces: number;
  /** Why its sysctls and rules were not undone here, if they were not. */
  skipped: string | null;
}

/** Reads a journal file into its header and the entries not marked done, in the order they were made. */
function parse(text: string): { header: Header; open: { seq: number; entry: JournalEntry }[] } | null {
  const lines: Line[] = [];
  for (const raw of text.split('\n')) {
    if (!raw.trim()) continue;
    try {
      lines.push(JSON.parse(raw) as Line);
    } catch {
      // A line cut short by the crash: it was being written, so its change was not made yet.
    }
  }
  const header = lines[0];
  if (!header || header.op !== 'open' || header.v !== VERSION) return null;
  const done = new Set<number>();
  const entries: { seq: number; entry: JournalEntry }[] = [];
  let seq = 0;
  for (const l of lines.slice(1)) {
    if (l.op === 'done') done.add(l.seq);
    else if (l.op !== 'open') entries.push({ seq: ++seq, entry: l });
  }
  return { header, open: entries.filter((e) => !done.has(e.seq)) };
}

/** Writes a sysctl of another namespace, from inside it. */
function writeSysctlIn(netnsName: string, key: string, value: string): void {
  const [bin, ...args] = inMachineMounts([
    'ip',
    'netns',
    'exec',
    netnsName,
    'sh',
    '-c',
    'printf "%s\\n" "$1" > "$2"',
    'sh',
    value,
    `/proc/sys/${key.replace(/\./g, '/')}`,
  ]);
  spawnSync(bin!, args, { stdio: 'ignore' });
}

/** Whether rule `pref 0 lookup local` exists in a namespace (here, or the named one). */
async function localRuleAt0(netnsName: string | null): Promise<boolean> {
  const rules = JSON.parse(await ip(['-4', '-j', 'rule', 'show'], netnsName ?? undefined)) as { priority: number; table?: string }[];
  return rules.some((r) => r.priority === 0 && r.table === 'local');
}

/** Where a dead vipnat's changes to its own namespace can be undone from here. */
interface Reach {
  /** Its namespace is this one, or a named one still the same: undo its sysctls and rules (by name, when named). */
  reachable: boolean;
  nsName: string | null;
  /** Its namespace is gone, and took its sysctls and rules with it. */
  gone: boolean;
}

function reachOf(header: Header): Reach {
  const here = netnsInode('/proc/self/ns/net') === header.netns;
  const named = !here && header.netnsName !== null && netnsInode(`${NETNS_RUN_DIR}/${header.netnsName}`) === header.netns;
  const reachable = here || named;
  return { reachable, nsName: named ? header.netnsName : null, gone: !reachable && !netnsAlive(header.netns) };
}

/** Tries each `ip -batch` line on its own (one already undone must not stop the others); counts those that worked. */
async function ipEach(lines: string[], nsName: string | null): Promise<number> {
  let n = 0;
  for (const line of lines) {
    await ipBatch([line], nsName ?? undefined).then(
      () => n++,
      () => undefined,
    );
  }
  return n;
}

/** Undoes one change of the namespace the dead vipnat ran in (a sysctl, rules); `out` counts what was done. */
async function undoInNamespace(entry: JournalEntry, nsName: string | null, out: Recovered): Promise<void> {
  switch (entry.op) {
    case 'sysctl':
      try {
        if (nsName) writeSysctlIn(nsName, entry.key, entry.was);
        else writeSysctl(entry.key, entry.was);
        out.sysctls.push(`${entry.key}=${entry.was}`);
      } catch {
        // The key went with its device or namespace.
      }
      return;
    case 'ip':
      out.rules += await ipEach(entry.undo, nsName);
      return;
    case 'proxy':
      out.proxies += await ipEach([`neigh del proxy ${entry.address} dev ${entry.dev}`], nsName);
      return;
    case 'local-rule':
      if (!(await localRuleAt0(nsName).catch(() => true))) out.rules += await ipEach(['rule add pref 0 lookup local'], nsName);
      return;
    case 'netns':
    case 'etc-netns':
      return;
  }
}

/** Undoes one dead vipnat's journal, claimed at `path`. */
async function undo(path: string): Promise<Recovered | null> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return null;
  }
  const parsed = parse(text);
  if (!parsed) {
    rmSync(path, { force: true });
    return null;
  }
  const { header, open } = parsed;
  const reach = reachOf(header);
  const out: Recovered = {
    pid: header.pid,
    sysctls: [],
    rules: 0,
    proxies: 0,
    namespaces: 0,
    skipped:
      reach.reachable || reach.gone
        ? null
        : `its namespace (inode ${header.netns}) has no name here; the next vipnat started in it undoes the rest`,
  };
  const left: JournalEntry[] = [];
  for (const { entry } of [...open].reverse()) {
    if (entry.op === 'netns') {
      // Session namespaces are the machine's, wherever the dead vipnat ran.
      await killNetnsProcesses(entry.name, 'SIGKILL');
      await ip(['netns', 'del', entry.name]).catch(() => undefined);
      removeNetnsEtc(entry.name);
      out.namespaces++;
    } else if (entry.op === 'etc-netns') {
      removeEtcNetnsIfEmpty();
    } else if (reach.reachable) {
      await undoInNamespace(entry, reach.nsName, out);
    } else if (!reach.gone) {
      left.push(entry);
    }
  }
  if (left.length > 0) {
    // Hand what only its own namespace can undo back, under the dead writer's name.
    const rest = [header, ...left.reverse()].map((l) => JSON.stringify(l)).join('\n');
    const back = path.replace(/\.recovering-\d+$/, '');
    appendFileSync(`${back}.tmp`, `${rest}\n`, { mode: 0o600 });
    renameSync(`${back}.tmp`, back);
  }
  rmSync(path, { force: true });
  return out;
}

/**
 * Undoes the journals of vipnat processes that died without cleaning up.
 * Returns what was undone, one record per dead vipnat.
 */
export async function recover(dir: string = RUN_DIR): Promise<Recovered[]> {
  let files: string[];
  try {
    files = readdirSync(dir);
  } catch {
    return [];
  }
  const out: Recovered[] = [];
  for (const f of files) {
    // PID-START.journal, or one a recovery claimed (PID-START.journal.recovering-RPID) and did not finish.
    const m = /^(\d+)-(-?\d+)\.journal(?:\.recovering-(\d+))?$/.exec(f);
    if (!m) continue;
    const pid = Number(m[1]);
    const start = Number(m[2]);
    if (pid === process.pid || processStart(pid) === start) continue; // alive
    const recoverer = m[3] === undefined ? 0 : Number(m[3]);
    if (recoverer !== 0 && (recoverer === process.pid || processStart(recoverer) >= 0)) continue; // being recovered
    // Claim it: of two vipnats starting at once, one renames it and the other finds it gone.
    const claimed = `${dir}/${f.replace(/\.recovering-\d+$/, '')}.recovering-${process.pid}`;
    try {
      renameSync(`${dir}/${f}`, claimed);
    } catch {
      continue;
    }
    const r = await undo(claimed);
    if (r) out.push(r);
  }
  return out;
}
