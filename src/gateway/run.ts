// `vipnat run`: N sessions of one program through one Gateway, from its opening to the last exit and the summary.
import { availableParallelism, constants } from 'node:os';
import type { DataplaneStats } from '../dataplane/index.js';
import { IpError, SysError } from '../linux/index.js';
import { NO_VIP_MESSAGE } from '../pool/index.js';
import { resolveProgram } from './checks.js';
import { EXIT_NO_VIP, UserError } from './errors.js';
import { type ExitStatus, Gateway, type GatewayEvent, type GatewayOptions, type GatewaySession, NoVipError } from './gateway.js';

export interface RunOptions extends GatewayOptions {
  sessions: number;
  program: string;
  args: string[];
  /** The programs' environment (the caller's, usually). */
  env: NodeJS.ProcessEnv;
  onEvent: (e: GatewayEvent) => void;
  /**
   * Called once the gateway is open, before any session starts (the CLI
   * serves its control socket and metrics here); what it returns is called
   * once every program has exited, before the gateway closes.
   */
  serve?: (gw: Gateway) => Promise<() => Promise<void>>;
}

import { MAX_DEFAULT_WORKERS, MAX_WORKERS } from './limits.js';
export { MAX_DEFAULT_WORKERS, MAX_WORKERS };
/** Sessions without a VIP that get a line each; the rest of a run of them is reported as a count. */
const NO_VIP_LINES = 3;
/** How many sessions are set up at once (their ip commands overlap). */
const SETUP_WINDOW = 8;

/**
 * Dataplane workers when --workers is not given: one per two CPUs, at least
 * one, up to MAX_DEFAULT_WORKERS. The sessions' programs (load generators,
 * simulated agents) run on the same machine and need the other half: on 2
 * CPUs, a second worker gained 6-16% on 4-stream TCP bulk but cost 5-17% of
 * new connections/s, as it took CPU from the clients and servers.
 */
export function defaultWorkers(): number {
  return Math.max(1, Math.min(Math.floor(availableParallelism() / 2), MAX_DEFAULT_WORKERS));
}

/** Lets the event loop run (signals, child exits) during long stretches of work that never wait. */
function breathe(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** What `run` keeps of its sessions: how each ended, and how many had no VIP. */
class Tally {
  readonly results = new Map<number, ExitStatus>();
  noVip = 0;
  private shown = 0;

  constructor(private readonly emit: (e: GatewayEvent) => void) {}

  /** Sessions `from` to `to` got no VIP: a line each for the first few, then one line with a count. */
  noVipFor(from: number, to: number): void {
    this.noVip += to - from + 1;
    let id = from;
    for (; id <= to && this.shown < NO_VIP_LINES; id++, this.shown++) this.emit({ event: 'no-vip', id, message: NO_VIP_MESSAGE });
    if (id <= to) this.emit({ event: 'no-vip', id, to, count: to - id + 1, message: NO_VIP_MESSAGE });
  }

  /** Session `id` got no VIP and runs on the shared address: a line for the first few (its session line says the rest). */
  sharedFor(id: number): void {
    this.noVip++;
    if (this.shown < NO_VIP_LINES) {
      this.shown++;
      this.emit({ event: 'no-vip', id, message: NO_VIP_MESSAGE });
    }
  }

  /** The summary's counts and vipnat's exit status. */
  outcome(stopSignal: NodeJS.Signals | null, refuse: boolean): { failed: number; exitCode: number } {
    let failed = 0;
    let firstFailure = 0;
    for (const id of [...this.results.keys()].sort((a, b) => a - b)) {
      const r = this.results.get(id)!;
      const status = r.signal ? 128 + signalNumber(r.signal) : (r.code ?? 1);
      if (status !== 0) {
        failed++;
        if (firstFailure === 0) firstFailure = status;
      }
    }
    const refused = refuse ? this.noVip : 0;
    const exitCode = stopSignal ? 128 + signalNumber(stopSignal) : firstFailure !== 0 ? firstFailure : refused > 0 ? EXIT_NO_VIP : 0;
    return { failed, exitCode };
  }
}

/** Runs the sessions to completion; resolves with vipnat's exit status. */
export async function run(opts: RunOptions): Promise<number> {
  const started = Date.now();
  const tally = new Tally(opts.onEvent);
  // A shared session (no VIP of its own) is reported as such before its session line.
  const onEvent = (e: GatewayEvent): void => {
    if (e.event === 'session' && e.shared) tally.sharedFor(e.id);
    opts.onEvent(e);
  };
  // Checked before the gateway opens (and again per session): a bad program changes nothing on the machine.
  const { runAs } = Gateway.check(opts);
  resolveProgram(opts.program, runAs);
  const gw = await Gateway.open({ ...opts, workers: opts.workers ?? defaultWorkers() }, onEvent);
  let unserve: (() => Promise<void>) | null = null;
  try {
    if (opts.serve) unserve = await opts.serve(gw);
  } catch (e) {
    await gw.close();
    throw e;
  }
  const r = new Runner(gw, opts, tally, unserve);
  const stats = await r.runToEnd();
  const outcome = tally.outcome(r.stopSignal, !gw.sharedFallback);
  // A failure (a dataplane worker died, a session could not be set up) still ends with the counters.
  const exitCode = r.fatal ? 1 : outcome.exitCode;
  opts.onEvent({
    event: 'summary',
    sessions: opts.sessions,
    started: tally.results.size,
    noVip: tally.noVip,
    failed: outcome.failed,
    exitCode,
    durationMs: Date.now() - started,
    dataplane: stats,
  });
  if (r.fatal) throw asUserError(r.fatal);
  return exitCode;
}

/** One `run` over an open gateway: its signals, its start loop, and its wait for the last program. */
class Runner {
  stopSignal: NodeJS.Signals | null = null;
  fatal: Error | null = null;
  private wake: () => void = () => undefined;
  private readonly exits: Promise<void>[] = [];
  /** Starts in flight, by session id (null: no VIP): at most SETUP_WINDOW. */
  private readonly window = new Map<number, Promise<GatewaySession | null>>();
  /** The previous session's start: programs start, and are reported, in id order. */
  private previous: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly gw: Gateway,
    private readonly opts: RunOptions,
    private readonly tally: Tally,
    private readonly unserve: (() => Promise<void>) | null,
  ) {}

  /** Starts every session, waits for every program, closes the gateway; resolves with its last counters. */
  async runToEnd(): Promise<DataplaneStats | null> {
    const sigint = (): void => this.onSignal('SIGINT');
    const sigterm = (): void => this.onSignal('SIGTERM');
    process.on('SIGINT', sigint);
    process.on('SIGTERM', sigterm);
    this.gw.onFailure = (e) => {
      this.fatal ??= e;
      this.wake();
    };
    try {
      await this.startAll().catch((e: unknown) => void (this.fatal ??= e as Error));
      if (this.stopSignal || this.fatal) this.gw.stopAll();
      // Wait for every program, or for a failure that makes us stop them.
      await new Promise<void>((resolve) => {
        this.wake = resolve;
        void Promise.all(this.exits).then(() => resolve());
      });
      this.gw.stopAll();
      await Promise.allSettled(this.window.values());
      await Promise.all(this.exits);
    } finally {
      process.off('SIGINT', sigint);
      process.off('SIGTERM', sigterm);
    }
    // Reached on every path: the loop's errors are kept in `fatal`, and the waits above never reject.
    await this.gw.endCaptures();
    await this.unserve?.().catch(() => undefined);
    return this.gw.close();
  }

  private onSignal(sig: NodeJS.Signals): void {
    if (this.stopSignal) return;
    this.stopSignal = sig;
    this.opts.onEvent({ event: 'stopping', signal: sig });
    this.gw.stopAll();
    this.wake();
  }

  private begin(id: number): Promise<GatewaySession | null> {
    const o = this.opts;
    const p = this.gw.startSession({ id, program: o.program, args: o.args, env: o.env, after: this.previous }).catch((e: unknown) => {
      if (e instanceof NoVipError) return null;
      throw e;
    });
    this.previous = p.catch(() => undefined);
    return p;
  }

  /**
   * Sessions 1..N, set up SETUP_WINDOW at a time (their ip commands run in
   * parallel). Once the pool is empty, the sessions left are reported at
   * once, with a count, not one by one.
   */
  private async startAll(): Promise<void> {
    const { gw, tally, window } = this;
    const n = this.opts.sessions;
    let next = 1;
    let lastBreath = Date.now();
    for (let id = 1; id <= n && !this.stopSignal && !this.fatal; id++) {
      // Start ahead while there are VIPs to start with (the shared fallback always has one).
      while (next <= n && next < id + SETUP_WINDOW && (gw.sharedFallback || gw.hasFreeVip())) window.set(next, this.begin(next++));
      let pending = window.get(id);
      if (pending === undefined) {
        // Not started: the pool was empty. If it still is, so it is for every session left.
        if (!gw.hasFreeVip()) return tally.noVipFor(id, n);
        pending = this.begin(id);
        next = id + 1;
      }
      window.delete(id);
      const s = await pending;
      if (Date.now() - lastBreath > 50) {
        await breathe();
        lastBreath = Date.now();
      }
      if (s === null) tally.noVipFor(id, id);
      else this.exits.push(s.exited.then((st) => void tally.results.set(id, st)));
    }
  }
}

/** What the CLI can say in one line: errors of iproute2 and syscalls are the user's to act on. */
function asUserError(e: Error): Error {
  if (e instanceof UserError) return e;
  if (e instanceof IpError || e instanceof SysError) return new UserError(e.message);
  return e;
}

function signalNumber(sig: string): number {
  return (constants.signals as Record<string, number>)[sig] ?? 1;
}
