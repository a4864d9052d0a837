// A lab of namespaces for integration tests (scripts/lab.sh) and helpers to run the real CLI in it.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { DataplaneStats } from '../../src/dataplane/index.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
export const VIPNAT = `${ROOT}bin/vipnat`;
export const LAB_SH = `${ROOT}scripts/lab.sh`;
export const BACKEND = '198.18.0.2';
export const LAB_PREFIX = 'vnt-';

function run(cmd: string, args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

export function sh(cmd: string, args: string[]): string {
  const r = run(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout;
}

/** Everything vipnat might leave behind, as comparable text. */
export interface Snapshot {
  netns: string[];
  gwLinks: string;
  gwRoutes: string;
  gwRules: string;
  gwSysctls: string;
  gwForward: string;
  etcNetns: string[];
}

export class Lab {
  readonly gw: string;
  readonly be: string;
  /** The router between gateway and backend, in a routed lab. */
  readonly rt: string;
  private readonly children = new Set<ChildProcess>();
  /** PIDs of the vipnat runs started here: their session namespaces are vipnat-PID-ID. */
  private readonly vipnatPids = new Set<number>();

  private constructor(readonly name: string) {
    this.gw = `${name}-gw`;
    this.be = `${name}-be`;
    this.rt = `${name}-rt`;
  }

  /** Builds a lab; `routed` puts a router namespace between gateway and backend, with `mtu` on the gateway-router link. */
  static up(opts: { routed?: boolean; mtu?: number } = {}): Lab {
    // The test process's pid is in the name: sweepLabs() removes only labs whose test process is gone.
    const lab = new Lab(`${LAB_PREFIX}${process.pid}-${randomBytes(2).toString('hex')}`);
    sh(LAB_SH, ['up', lab.name, opts.routed ? 'routed' : 'direct', String(opts.mtu ?? 1500)]);
    return lab;
  }

  /** Runs a command to completion in one of the lab's namespaces. */
  exec(ns: string, cmd: string[], input?: string): { status: number; stdout: string; stderr: string } {
    return run('ip', ['netns', 'exec', ns, ...cmd], input);
  }

  /** Starts a long-running command in a namespace; killed at `down()`. */
  spawn(ns: string, cmd: string[]): ChildProcess {
    const c = spawn('ip', ['netns', 'exec', ns, ...cmd], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(c);
    c.once('exit', () => this.children.delete(c));
    return c;
  }

  /** Runs the real CLI with the gateway namespace as its uplink (nsenter keeps /run/netns shared). */
  vipnat(args: string[], env?: NodeJS.ProcessEnv): VipnatRun {
    const c = spawn('nsenter', [`--net=/run/netns/${this.gw}`, VIPNAT, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    this.children.add(c);
    if (c.pid) this.vipnatPids.add(c.pid); // nsenter execs vipnat: same pid
    c.once('exit', () => this.children.delete(c));
    return new VipnatRun(c);
  }

  /**
   * The state of this lab (and of the machine where vipnat touches it),
   * leaving out what other labs or runs on the machine do meanwhile, and the
   * kernel's own IPv6 link-local addresses, which appear on their own time.
   */
  snapshot(): Snapshot {
    const ours = (n: string): boolean =>
      n.startsWith(`${this.name}-`) || [...this.vipnatPids].some((pid) => n.startsWith(`vipnat-${pid}-`));
    const noLinkLocal = (text: string): string =>
      text
        .split('\n')
        .filter((l) => !l.includes('fe80:'))
        .join('\n');
    return {
      netns: sh('ip', ['netns', 'list'])
        .split('\n')
        .map((l) => l.split(' ')[0]!)
        .filter((n) => n && ours(n))
        .sort(),
      gwLinks: sh('ip', ['-n', this.gw, '-br', 'link'])
        .split('\n')
        .map((l) => l.split(/\s+/)[0])
        .sort()
        .join(' '),
      gwRoutes: noLinkLocal(sh('ip', ['-n', this.gw, 'route']) + sh('ip', ['-n', this.gw, '-6', 'route'])),
      gwRules: noLinkLocal(sh('ip', ['-n', this.gw, 'rule']) + sh('ip', ['-n', this.gw, 'route', 'show', 'table', 'all'])),
      gwSysctls: this.exec(this.gw, ['sysctl', 'net.ipv6.conf.all.forwarding', 'net.ipv4.conf.all.rp_filter']).stdout,
      gwForward: this.exec(this.gw, ['cat', '/proc/sys/net/ipv4/ip_forward']).stdout.trim(),
      // Only this lab's: other runs on the machine keep theirs in /etc/netns meanwhile.
      etcNetns: existsSync('/etc/netns') ? readdirSync('/etc/netns').filter(ours).sort() : [],
    };
  }

  /**
   * Stops what the lab started and removes it, also after a failed test: vipnat runs get
   * SIGTERM first, so that they remove their sessions themselves; whatever is still there after
   * 10 s is killed, and the session namespaces of a vipnat that could not clean up (killed, or
   * hung) are swept with what runs in them.
   */
  down(): void {
    const vipnats = [...this.children].filter((c) => c.pid && this.vipnatPids.has(c.pid) && running(c.pid));
    for (const c of vipnats) c.kill('SIGTERM');
    const end = Date.now() + 10_000;
    while (Date.now() < end && vipnats.some((c) => running(c.pid!))) sleepSync(100);
    for (const c of this.children) if (c.pid && running(c.pid)) c.kill('SIGKILL');
    for (const pid of this.vipnatPids) {
      sh(LAB_SH, ['sweep', `vipnat-${pid}-`]);
      removeEtcNetns(`vipnat-${pid}-`);
    }
    sh(LAB_SH, ['down', this.name]);
  }
}

/** A running vipnat: its output lines as they come, and its end. */
export class VipnatRun {
  readonly lines: string[] = [];
  stderr = '';
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];

  constructor(readonly child: ChildProcess) {
    let partial = '';
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (d: string) => {
      partial += d;
      const parts = partial.split('\n');
      partial = parts.pop()!;
      for (const l of parts) this.push(l);
    });
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => (this.stderr += d));
    this.done = new Promise((resolve) => {
      child.once('close', (code, signal) => {
        if (partial) this.push(partial);
        resolve({ code, signal });
      });
    });
  }

  private push(line: string): void {
    this.lines.push(line);
    this.waiters = this.waiters.filter((w) => {
      const m = line.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }

  /** Resolves with the first line (seen or to come) matching `re`. */
  waitFor(re: RegExp, timeoutMs = 20_000): Promise<RegExpMatchArray> {
    for (const l of this.lines) {
      const m = l.match(re);
      if (m) return Promise.resolve(m);
    }
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`timed out waiting for ${re}; output so far:\n${this.lines.join('\n')}\n${this.stderr}`)),
        timeoutMs,
      );
      this.waiters.push({
        re,
        resolve: (m) => {
          clearTimeout(t);
          resolve(m);
        },
      });
    });
  }

  /** Session lines seen so far: id -> vip. */
  sessions(): Map<number, string> {
    const m = new Map<number, string>();
    for (const l of this.lines) {
      const r = /^session (\d+) vip (\S+) loopback (\S+) pid (\d+)$/.exec(l);
      if (r) m.set(Number(r[1]), r[2]!);
    }
    return m;
  }
}

/**
 * Removes /etc/netns/PREFIX* (the hosts files of a vipnat's sessions): a vipnat that could not
 * clean up leaves them, and deleting its namespaces does not remove them.
 */
function removeEtcNetns(prefix: string): void {
  if (!existsSync('/etc/netns')) return;
  for (const n of readdirSync('/etc/netns')) if (n.startsWith(prefix)) rmSync(`/etc/netns/${n}`, { recursive: true, force: true });
}

/** Whether `pid` is running: not gone, and not a zombie waiting for its parent (us) to reap it. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * Removes labs left by test processes that died (vnt-PID-XXXX whose PID is
 * gone), never those of test runs still going on beside this one.
 */
export function sweepLabs(): void {
  const names = new Set(
    sh('ip', ['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .map((n) => /^(vnt-(\d+)-[0-9a-f]+)-(gw|be|rt)$/.exec(n))
      .filter((m): m is RegExpExecArray => m !== null && !processAlive(Number(m[2])))
      .map((m) => m[1]!),
  );
  for (const name of names) sh(LAB_SH, ['down', name]);
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
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
export async function retry<T>(fn: () => T, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    try {
      return fn();
    } catch (e) {
      if (Date.now() > end) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

/** The summary's dataplane counters as --json prints them: named counters, and `workerKPackets` per worker. */
export type SummaryStats = Omit<DataplaneStats, 'workerPackets'> & { [perWorker: `worker${number}Packets`]: number };

export interface Summary {
  event: 'summary';
  exitCode: number;
  dataplane: SummaryStats;
}

export interface SessionEvent {
  id: number;
  vip: string;
  vip6?: string;
}

/** A --json run's output split into vipnat's events and what the programs printed (stdout and stderr). */
export function parseJson(run: VipnatRun): { summary: Summary; sessions: SessionEvent[]; text: string } {
  const text: string[] = [];
  const sessions: SessionEvent[] = [];
  let summary: Summary | undefined;
  for (const l of run.lines) {
    if (!l.startsWith('{"event"')) {
      text.push(l);
      continue;
    }
    const e = JSON.parse(l) as { event: string };
    if (e.event === 'session') sessions.push(e as unknown as SessionEvent);
    if (e.event === 'summary') summary = e as unknown as Summary;
  }
  if (!summary) throw new Error(`no summary; stderr:\n${run.stderr}`);
  return { summary, sessions, text: `${text.join('\n')}\n${run.stderr}` };
}

/** Resolves once a fixture server prints its "listening" line. */
export async function listening(child: ChildProcess): Promise<void> {
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  await until(() => out.includes('listening'));
}
