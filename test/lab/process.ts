// Child processes for labs and drivers: tracked starts, runs to completion, orderly stops (vipnat first), sleeps and waits.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';

/** How a child ended. */
export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  error?: Error;
}

/** A finished run: its end, its output, and whether it was killed for taking too long. */
export interface RunResult extends Exit {
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/** Every child started through spawnTracked() that has not exited: what a driver's cleanup stops. */
export const tracked = new Set<ChildProcess>();

let ownGroups = false;

/**
 * From now on, children start in process groups of their own, so a terminal's ^C reaches only
 * this process, which then stops them in order (vipnat first). For drivers (bench, soak), not
 * for tests: a test runner killed with ^C should take its children with it.
 */
export function detachChildren(): void {
  ownGroups = true;
}

export function log(s = ''): void {
  process.stdout.write(`${s}\n`);
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether `pid` is running: not gone, and not a zombie waiting for its parent to reap it. */
export function alive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** A synchronous command: its status and output. */
export function runSync(cmd: string, args: string[], input?: string): { status: number; stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', input });
  return { status: r.status ?? -1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
}

/** A synchronous command that must succeed; returns its stdout. */
export function sh(cmd: string, args: string[]): string {
  const r = runSync(cmd, args);
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.status}`}`);
  return r.stdout;
}

export interface SpawnOptions {
  /** 'ignore' for children whose output nobody reads (servers). Default 'pipe'. */
  stdout?: 'pipe' | 'ignore';
  env?: NodeJS.ProcessEnv;
  /** Written to the child's standard input, which is then closed (default: no input, stdin closed). */
  input?: string;
}

/** Spawns a child (stdin closed, or given `input`; stderr piped) and tracks it until it exits. */
export function spawnTracked(cmd: string, args: string[], opts: SpawnOptions = {}): ChildProcess {
  const c = spawn(cmd, args, {
    stdio: [opts.input === undefined ? 'ignore' : 'pipe', opts.stdout ?? 'pipe', 'pipe'],
    detached: ownGroups,
    ...(opts.env ? { env: opts.env } : {}),
  });
  if (opts.input !== undefined) c.stdin?.end(opts.input);
  tracked.add(c);
  c.once('exit', () => tracked.delete(c));
  c.once('error', () => tracked.delete(c));
  return c;
}

/** Whether a child has not exited yet (as far as Node has seen). */
export function running(c: ChildProcess): boolean {
  return c.exitCode === null && c.signalCode === null;
}

/** A tracked child whose output is collected (`out`, `err`; `keep: false` drops stdout) and whose end is `done`. */
export class Child {
  out = '';
  err = '';
  readonly done: Promise<Exit>;

  constructor(
    readonly proc: ChildProcess,
    keep = true,
  ) {
    proc.stdout?.setEncoding('utf8');
    proc.stdout?.on('data', (d: string) => {
      if (keep) this.out += d;
    });
    proc.stderr?.setEncoding('utf8');
    proc.stderr?.on('data', (d: string) => (this.err += d));
    this.done = new Promise((resolve) => {
      proc.once('close', (code, signal) => resolve({ code, signal }));
      proc.once('error', (error) => resolve({ code: -1, signal: null, error }));
    });
  }

  get pid(): number | undefined {
    return this.proc.pid;
  }

  get running(): boolean {
    return running(this.proc);
  }

  kill(signal: NodeJS.Signals = 'SIGTERM'): void {
    if (this.running) this.proc.kill(signal);
  }

  /** Stops the child: `signal`, then SIGKILL after `graceMs`; resolves with its end. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 10_000): Promise<Exit> {
    this.kill(signal);
    const t = setTimeout(() => this.kill('SIGKILL'), graceMs);
    const r = await this.done;
    clearTimeout(t);
    return r;
  }
}

/** Starts a tracked child outside any lab (e.g. a micro-benchmark process). */
export function start(cmd: string, args: string[], opts: SpawnOptions & { keep?: boolean } = {}): Child {
  return new Child(spawnTracked(cmd, args, opts), opts.keep ?? true);
}

/** Runs a child to completion; killed after `timeoutMs`. */
export async function finish(c: Child, timeoutMs: number): Promise<RunResult> {
  const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
  const r = await c.done;
  clearTimeout(t);
  return { ...r, stdout: c.out, stderr: c.err, timedOut: r.signal === 'SIGKILL' };
}

/** Runs a command to completion (tracked meanwhile); killed after `timeoutMs`. */
export function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<RunResult> {
  return finish(start(cmd, args), timeoutMs);
}

/** Polls `cond` every 100 ms until it holds; throws after `timeoutMs`, or whatever `cond` throws. */
export async function waitFor(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * Stops `children` synchronously (so it also works from signal handlers and at exit): the
 * vipnat runs among them (`vipnatPids`) get SIGTERM and up to `graceMs` to remove their
 * sessions themselves, then the others get SIGTERM, and whatever still runs 200 ms later SIGKILL.
 */
export function stopAll(children: Iterable<ChildProcess>, vipnatPids: ReadonlySet<number>, graceMs: number): void {
  const all = [...children].filter((c) => c.pid !== undefined && alive(c.pid));
  const vipnats = all.filter((c) => vipnatPids.has(c.pid!));
  for (const c of vipnats) c.kill('SIGTERM');
  const end = Date.now() + graceMs;
  while (Date.now() < end && vipnats.some((c) => alive(c.pid!))) sleepSync(100);
  const rest = all.filter((c) => alive(c.pid!));
  for (const c of rest) c.kill('SIGTERM');
  if (rest.length) {
    const soon = Date.now() + 200;
    while (Date.now() < soon && rest.some((c) => alive(c.pid!))) sleepSync(20);
  }
  for (const c of rest) if (alive(c.pid!)) c.kill('SIGKILL');
}
