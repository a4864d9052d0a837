// The one lab module: namespaces, processes and vipnat runs for the integration tests, the soak and the benchmarks.
import { spawn, type ChildProcess } from 'node:child_process';
import { VIPNAT } from './lab.js';
import { readdirSync, readFileSync } from 'node:fs';
import { sh } from './process.js';

export { ROOT } from './root.js';
export { BACKEND, BACKEND6, LAB_PREFIX, LAB_SH, Lab, labsUp, sweepLabs, VIPNAT, type Snapshot } from './lab.js';
export { parseJson, VipnatRun, type SessionEvent, type Summary, type SummaryStats, type VipnatEnd } from './vipnat.js';
export {
  alive,
  Child,
  detachChildren,
  finish,
  log,
  run,
  runSync,
  sh,
  sleep,
  sleepSync,
  start,
  stopAll,
  waitFor,
  type Exit,
  type RunResult,
} from './process.js';
export { asDriver, cleanup, onCleanup } from './driver.js';

/** What a client command printed, and its status. */
export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs a vipnat client command against the gateways of `runDir` (from this
 * namespace: the control socket is all it needs); `wrap` goes in front (ip
 * netns exec, setpriv).
 */
export function cli(runDir: string, args: string[], opts: { input?: string; wrap?: string[] } = {}): Promise<CliResult> {
  const argv = [...(opts.wrap ?? []), process.execPath, VIPNAT, ...args];
  return new Promise((resolve) => {
    const c = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, VIPNAT_RUN_DIR: runDir }, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    c.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    c.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    c.stdin.end(opts.input ?? '');
    c.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

export function isRoot(): boolean {
  return process.getuid?.() === 0;
}

/** Waits until `cond()` holds, polling. */
export async function until(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Calls `fn` until it stops throwing, or rethrows its last error after the timeout. */
export async function retry<T>(fn: () => T | Promise<T>, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** Resolves once a fixture server prints its "listening" line. */
export async function listening(child: ChildProcess): Promise<void> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await until(() => out.includes('listening'));
}

/** Whether something listens on TCP `port` in namespace `ns`. */
export function tcpListening(ns: string, port: number): boolean {
  try {
    return sh('ip', ['netns', 'exec', ns, 'ss', '-Hltn', `sport = :${port}`]).trim() !== '';
  } catch {
    return false;
  }
}

/** A link's kernel counters (`ip -s -j link`): rx and tx packets, bytes, dropped... */
export interface LinkStats {
  rx: { packets: number; bytes: number; dropped: number };
  tx: { packets: number; bytes: number; dropped: number };
}

export function linkStats(ns: string, dev: string): LinkStats {
  const j = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev])) as { stats64: LinkStats }[];
  return j[0]!.stats64;
}

/** The parent of every process, from /proc: pid -> children. */
function childrenByParent(): Map<number, number[]> {
  const kids = new Map<number, number[]>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      const list = kids.get(ppid);
      if (list) list.push(Number(d));
      else kids.set(ppid, [Number(d)]);
    } catch {
      // gone meanwhile
    }
  }
  return kids;
}

/** VmRSS in bytes of `pid` and its descendants, leaving out the subtrees of `exclude`; and how many processes that is. */
/**
 * The proportional set size (shared pages divided among the processes that
 * share them) of `pid`'s descendants, not `pid` itself and not `exclude`:
 * what many small helpers really cost, which summing their RSS would count
 * once per process for the C library they all map.
 */
export function treePss(pid: number, exclude: ReadonlySet<number> = new Set()): { bytes: number; processes: number } {
  const kids = childrenByParent();
  let bytes = 0;
  let processes = 0;
  const todo = [...(kids.get(pid) ?? [])];
  while (todo.length) {
    const p = todo.pop()!;
    if (exclude.has(p)) continue;
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, 'utf8'));
      if (m) bytes += Number(m[1]) * 1024;
      processes++;
    } catch {
      // gone meanwhile
    }
    todo.push(...(kids.get(p) ?? []));
  }
  return { bytes, processes };
}

/** The children of `pid`. */
export function childrenOf(pid: number): number[] {
  return childrenByParent().get(pid) ?? [];
}

export function treeRss(pid: number, exclude: ReadonlySet<number> = new Set()): { bytes: number; processes: number } {
  const kids = childrenByParent();
  let bytes = 0;
  let processes = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop()!;
    if (exclude.has(p)) continue;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) bytes += Number(m[1]) * 1024;
      processes++;
    } catch {
      // gone meanwhile
    }
    todo.push(...(kids.get(p) ?? []));
  }
  return { bytes, processes };
}
