// A running vipnat in a lab: its output lines and JSON events as they come, its sessions, its stop and what it left.
import type { ChildProcess } from 'node:child_process';
import type { DataplaneStats } from '../../src/dataplane/index.js';
import { alive, sh } from './process.js';

/** The summary's dataplane counters as --json prints them: named counters, and `workerKPackets` per worker. */
export type SummaryStats = Omit<DataplaneStats, 'workerPackets' | 'workerBusyMs'> & { [perWorker: `worker${number}Packets`]: number };

export interface Summary {
  event: 'summary';
  exitCode: number;
  dataplane: SummaryStats;
}

/** A --json `session` event (the fields the tests and drivers read). */
export interface SessionEvent {
  id: number;
  vip: string;
  vip6?: string;
  /** The session's namespace, vipnat-PID-ID. */
  netns?: string;
  /** The session runs on the shared address (--on-exhausted shared). */
  shared?: boolean;
}

/** What stop() found: vipnat's exit, its summary, and the session namespaces it left behind. */
export interface VipnatEnd {
  exit: number | string | null;
  summary: Summary | null;
  dataplane: SummaryStats | null;
  leftNamespaces: string[];
  stderr: string;
}

/** A running vipnat: its output lines as they come, and its end. */
export class VipnatRun {
  readonly lines: string[] = [];
  stderr = '';
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void }[] = [];
  private listeners: ((line: string) => void)[] = [];

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
    for (const f of this.listeners) f(line);
    this.waiters = this.waiters.filter((w) => {
      const m = line.match(w.re);
      if (m) w.resolve(m);
      return !m;
    });
  }

  get pid(): number {
    return this.child.pid ?? -1;
  }

  /** vipnat has not exited yet. */
  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** Calls `f` with every line from now on. */
  onLine(f: (line: string) => void): void {
    this.listeners.push(f);
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

  /** Session lines seen so far (text output): id -> vip. */
  sessions(): Map<number, string> {
    const m = new Map<number, string>();
    for (const l of this.lines) {
      const r = /^session (\d+) vip (\S+) loopback (\S+) pid (\d+)$/.exec(l);
      if (r) m.set(Number(r[1]), r[2]!);
    }
    return m;
  }

  /** The --json events seen so far. */
  events(): { event: string }[] {
    return this.lines.filter((l) => l.startsWith('{"event"')).map((l) => JSON.parse(l) as { event: string });
  }

  /** The --json session events seen so far, by id. */
  sessionEvents(): SessionEvent[] {
    return this.events()
      .filter((e) => e.event === 'session')
      .map((e) => e as unknown as SessionEvent)
      .sort((a, b) => a.id - b.id);
  }

  /** Waits for `n` session events (--json); throws, with vipnat's output, if it exits first. */
  async waitSessions(n: number, timeoutMs = 120_000): Promise<SessionEvent[]> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (!this.running) throw new Error(`vipnat exited: ${this.stderr.trim() || this.lines.join('\n').slice(-500)}`);
      const s = this.sessionEvents();
      if (s.length >= n) return s;
      if (Date.now() > end) throw new Error(`timed out waiting for ${n} vipnat sessions (${s.length} so far)`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /**
   * Stops vipnat with SIGTERM (SIGKILL after `graceMs`), or just waits for its end if it has
   * exited: its exit, the summary's counters and the session namespaces it left.
   */
  async stop(graceMs = 30_000): Promise<VipnatEnd> {
    if (this.running) this.child.kill('SIGTERM');
    const t = setTimeout(() => {
      if (this.child.pid && alive(this.child.pid)) this.child.kill('SIGKILL');
    }, graceMs);
    const r = await this.done;
    clearTimeout(t);
    const summary = (this.events().find((e) => e.event === 'summary') as Summary | undefined) ?? null;
    const left = sh('ip', ['netns', 'list'])
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => n && n.startsWith(`vipnat-${this.pid}-`));
    return { exit: r.signal ?? r.code, summary, dataplane: summary?.dataplane ?? null, leftNamespaces: left, stderr: this.stderr.trim() };
  }
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
