// `vipnat run`: N sessions of one program through one gateway, from setup to the last exit and the summary.
import { availableParallelism, constants } from 'node:os';
import { Dataplane, type DataplaneStats } from '../dataplane/index.js';
import { etcNetnsExists, IpError, removeEtcNetnsIfEmpty, SysError, which } from '../linux/index.js';
import { NO_VIP_MESSAGE, parseAddress, parseRanges, PoolError, VipPool } from '../pool/index.js';
import { initHelperExists, primaryVip, type RunAs, Session } from '../session/index.js';
import { parseIpv4 } from '../wire/index.js';
import { checkMtu, checkPoolUnused, parseInnerAddresses, parseUser, preflight, resolveProgram } from './checks.js';
import { EXIT_NO_VIP, EXIT_USAGE, UserError } from './errors.js';
import { Journal, recover, type Recovered } from './journal.js';
import { sharedPortRange, Uplink, uplinkAddress } from './uplink.js';

export interface RunOptions {
  pool: string;
  /** NAT mode: every session's eth0 holds this address, translated to its VIP. */
  innerAddress?: string;
  /** What a session without a VIP does: not start (refuse), or run on the uplink's own address (shared). */
  onExhausted?: 'refuse' | 'shared';
  sessions: number;
  mtu: number;
  program: string;
  args: string[];
  /** The programs' environment (the caller's, usually). */
  env: NodeJS.ProcessEnv;
  /** Open every TUN with offloads (virtio-net header, TSO, checksum offload). Default true. */
  offload?: boolean;
  /** Run the programs as this user (USER[:GROUP]), without capabilities. */
  user?: string;
  /** Flow table capacity. */
  flowCapacity?: number;
  /** Dataplane worker threads (default: defaultWorkers()); every TUN gets a queue per worker. */
  workers?: number;
  /** Grace period between SIGTERM and SIGKILL for session programs when stopping. */
  killGraceMs?: number;
  /** How long a session's TCP data in flight may take to drain after its program exits. */
  drainMs?: number;
  onEvent: (e: GatewayEvent) => void;
}

export type GatewayEvent =
  | { event: 'session'; id: number; vip: string; vip6?: string; shared?: boolean; loopback: string; pid: number; netns: string }
  /** A session left without a VIP; with `to` and `count`, every session from `id` to `to` (a run too long to list). */
  | { event: 'no-vip'; id: number; to?: number; count?: number; message: string }
  | { event: 'exit'; id: number; vip: string; shared?: boolean; code: number | null; signal: string | null }
  | { event: 'stopping'; signal: string }
  /** What an earlier vipnat left behind when it died without cleaning up, undone at this start. */
  | ({ event: 'recovered' } & Recovered)
  | {
      event: 'summary';
      sessions: number;
      started: number;
      noVip: number;
      failed: number;
      exitCode: number;
      durationMs: number;
      /** Null when the dataplane could not report (it failed). */
      dataplane: DataplaneStats | null;
    };

const DEFAULT_DRAIN_MS = 3000;
const DEFAULT_KILL_GRACE_MS = 5000;
/** IPv4 flow table capacity unless --max-flows says otherwise (52 bytes a flow). */
export const DEFAULT_MAX_FLOWS = 1 << 18;
/** Most dataplane workers by default, however many CPUs there are. */
export const MAX_DEFAULT_WORKERS = 4;
export const MAX_WORKERS = 64;
/** Most sessions alive at once (each is a namespace, a TUN and processes): the dataplane's session slots. */
export const MAX_LIVE_SESSIONS = 65535;
/** Sessions without a VIP that get a line each; the rest of a run of them is reported as a count. */
const NO_VIP_LINES = 3;

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

/** A session set up and ready to start (null: refused for want of a VIP), or why it could not be. */
type Prepared = { ok: true; s: Session | null; noVip: boolean } | { ok: false; e: Error };

/** How many sessions are set up at once (their ip commands overlap). */
const SETUP_WINDOW = 8;
/** The inner address of shared sessions when --inner-address gives none (slirp's 10.0.2.x convention). */
export const DEFAULT_SHARED_INNER = '10.0.2.100';

/** Dataplane session numbers: a session id can be anything up to MAX_SESSION_ID; its slot is small and reused. */
class Slots {
  private readonly free: number[] = [];
  private next = 1;
  constructor(readonly count: number) {}
  take(): number {
    if (this.free.length > 0) return this.free.pop()!;
    return this.next <= this.count ? this.next++ : -1;
  }
  release(slot: number): void {
    this.free.push(slot);
  }
}

/** Lets the event loop run (signals, child exits) during long stretches of work that never wait. */
function breathe(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Runs the sessions to completion; resolves with vipnat's exit status. */
export async function run(opts: RunOptions): Promise<number> {
  const started = Date.now();
  let pool: VipPool;
  let ranges;
  try {
    ranges = parseRanges(opts.pool);
    pool = new VipPool(ranges);
  } catch (e) {
    if (e instanceof PoolError) throw new UserError(e.message, EXIT_USAGE);
    throw e;
  }
  const families = pool.families();
  const inner = parseInnerAddresses(opts.innerAddress, pool);
  checkMtu(opts.mtu, pool);
  const runAs: RunAs | null = opts.user === undefined ? null : parseUser(opts.user);
  preflight();
  const workers = opts.workers ?? defaultWorkers();
  if (workers > 1 && !which('tc')) {
    throw new UserError(
      "the 'tc' command (iproute2) was not found in PATH: install iproute2 (apt-get install iproute2), or run with --workers 1",
    );
  }
  if (runAs && !which('setpriv')) throw new UserError("--user needs the 'setpriv' command (util-linux) in PATH: install util-linux");
  resolveProgram(opts.program, runAs);
  if (!initHelperExists())
    throw new UserError('vipnat-init is missing next to the compiled code: run `make build` in the vipnat checkout (it needs cc)');
  const shared = opts.onExhausted === 'shared';
  // Slots: a session holds one while it lives. Without the shared fallback, no more can live than the pool has VIPs.
  const poolSize = Math.min(...families.map((f) => pool.size(f)));
  const slots = new Slots(Math.max(1, Math.min(opts.sessions, MAX_LIVE_SESSIONS, shared ? MAX_LIVE_SESSIONS : poolSize)));

  const journal = Journal.open();
  const uplink = new Uplink(journal);
  let dataplane: Dataplane | null = null;
  const live = new Map<number, Session>();
  const results = new Map<number, { code: number | null; signal: string | null }>();
  let noVip = 0;
  let noVipShown = 0;
  let stopSignal: NodeJS.Signals | null = null;
  let fatal: Error | null = null;
  let wake: () => void = () => undefined;
  let killTimer: NodeJS.Timeout | null = null;

  // Every session gets SIGTERM once (Session.stop), then SIGKILL after the grace period.
  const stopAll = (): void => {
    for (const s of live.values()) s.stop();
    killTimer ??= setTimeout(() => {
      for (const s of live.values()) s.kill();
    }, opts.killGraceMs ?? DEFAULT_KILL_GRACE_MS);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopSignal) return;
    stopSignal = sig;
    opts.onEvent({ event: 'stopping', signal: sig });
    stopAll();
    wake();
  };
  const sigint = (): void => onSignal('SIGINT');
  const sigterm = (): void => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);

  const reportNoVip = (from: number, to: number): void => {
    noVip += to - from + 1;
    let id = from;
    for (; id <= to && noVipShown < NO_VIP_LINES; id++, noVipShown++) opts.onEvent({ event: 'no-vip', id, message: NO_VIP_MESSAGE });
    if (id <= to) opts.onEvent({ event: 'no-vip', id, to, count: to - id + 1, message: NO_VIP_MESSAGE });
  };

  /** Sessions whose TUN queues were handed to the dataplane (which owns them from then on), by id. */
  const attached = new Set<number>();
  const slotOf = new Map<number, number>();
  const netnsSeq = new Map<number, number>();
  const endSession = async (s: Session): Promise<void> => {
    const id = s.spec.id;
    live.delete(id);
    const slot = slotOf.get(id);
    try {
      if (dataplane && slot !== undefined && attached.delete(id)) await dataplane.removeSession(slot);
    } catch {
      // A dead dataplane has closed nothing; the process exit closes the fd.
    }
    await s.destroy();
    const seq = netnsSeq.get(id);
    if (seq !== undefined) journal.done(seq);
    netnsSeq.delete(id);
    if (slot !== undefined) slots.release(slot);
    slotOf.delete(id);
    if (s.spec.v4 && !s.spec.shared) pool.release(s.spec.v4.vip);
    if (s.spec.v6) pool.release(s.spec.v6.vip);
  };

  /** One VIP of every family the pool has, or null (with nothing kept) when any family is empty. */
  const takeVips = (): { v4: string | null; v6: string | null } | null => {
    const v4 = families.includes(4) ? pool.take(4) : null;
    const v6 = families.includes(6) ? pool.take(6) : null;
    if ((families.includes(4) && v4 === null) || (families.includes(6) && v6 === null)) {
      if (v4 !== null) pool.release(v4);
      if (v6 !== null) pool.release(v6);
      return null;
    }
    return { v4, v6 };
  };
  const poolHasFree = (): boolean => families.every((f) => pool.free(f) > 0);

  const offload = opts.offload ?? true;
  let dpStats: DataplaneStats | null = null;
  /** Preparations in flight, by session id: at most SETUP_WINDOW. */
  const window = new Map<number, Promise<Prepared>>();
  let sharedAddr: { address: string; portLo: number; portHi: number } | null = null;
  const etcNetnsWasThere = etcNetnsExists();
  try {
    for (const r of await recover()) opts.onEvent({ event: 'recovered', ...r });
    await checkPoolUnused(opts.pool, ranges);
    if (!etcNetnsWasThere) journal.record({ op: 'etc-netns' });
    await uplink.open(opts.mtu, pool.routes(), families.includes(6), offload, workers);
    if (shared) {
      const address = await uplinkAddress();
      const [portLo, portHi] = sharedPortRange();
      await uplink.enableShared(address, portLo, portHi);
      sharedAddr = { address, portLo, portHi };
    }
    dataplane = await Dataplane.start({
      uplinkFds: uplink.fds,
      maxSession: slots.count,
      flowCapacity: opts.flowCapacity ?? DEFAULT_MAX_FLOWS,
      offload,
      shared: sharedAddr && { address: parseIpv4(sharedAddr.address), portLo: sharedAddr.portLo, portHi: sharedAddr.portHi },
    });
    dataplane.onFailure = (e) => {
      fatal ??= e;
      stopAll();
      wake();
    };

    const exits: Promise<void>[] = [];
    // Sessions are set up SETUP_WINDOW at a time (their ip commands run in
    // parallel), but started and reported in id order.
    const prepare = (id: number): Promise<Prepared> => {
      const vips = takeVips();
      if (vips === null && !sharedAddr) return Promise.resolve({ ok: true, s: null, noVip: true });
      const slot = slots.take();
      if (slot < 0) {
        if (vips?.v4) pool.release(vips.v4);
        if (vips?.v6) pool.release(vips.v6);
        return Promise.resolve({ ok: false, e: new UserError(`session ${id}: more than ${slots.count} sessions at once`) });
      }
      const s = new Session(
        vips === null
          ? // Shared fallback: IPv4 only, from the uplink's own address.
            {
              id,
              v4: { vip: sharedAddr!.address, inner: inner.v4 ?? DEFAULT_SHARED_INNER },
              v6: null,
              shared: true,
              mtu: opts.mtu,
              offload,
              queues: workers,
            }
          : {
              id,
              v4: vips.v4 === null ? null : { vip: vips.v4, inner: inner.v4 ?? vips.v4 },
              v6: vips.v6 === null ? null : { vip: vips.v6, inner: inner.v6 ?? vips.v6 },
              shared: false,
              mtu: opts.mtu,
              offload,
              queues: workers,
            },
      );
      live.set(id, s);
      slotOf.set(id, slot);
      // Journaled before it exists, so a vipnat killed half-way through still has it removed.
      netnsSeq.set(id, journal.record({ op: 'netns', name: s.netns }));
      return s
        .create()
        .then(() => {
          // The dataplane owns the queues from here, whether adding succeeds or not.
          const fds = s.fds;
          s.fds = [];
          attached.add(id);
          return dataplane!.addSession(slot, fds, {
            shared: s.spec.shared,
            inner4: s.spec.v4 ? parseIpv4(s.spec.v4.inner) : null,
            vip4: s.spec.v4 ? parseIpv4(s.spec.v4.vip) : null,
            inner6: s.spec.v6 ? ipv6Words(s.spec.v6.inner) : null,
            vip6: s.spec.v6 ? ipv6Words(s.spec.v6.vip) : null,
          });
        })
        .then(
          (): Prepared => ({ ok: true, s, noVip: vips === null }),
          async (e: Error): Promise<Prepared> => {
            await endSession(s);
            return { ok: false, e };
          },
        );
    };
    let next = 1;
    let lastBreath = Date.now();
    for (let id = 1; id <= opts.sessions && !stopSignal && !fatal; id++) {
      // Prepare ahead while there are VIPs to prepare with (the shared fallback always has one).
      while (next <= opts.sessions && next < id + SETUP_WINDOW && (sharedAddr || poolHasFree())) window.set(next, prepare(next++));
      let pending = window.get(id);
      if (pending === undefined) {
        // Not prepared: the pool was empty. If it still is, so it is for every session left:
        // they are reported at once, with a count, not one by one.
        if (!poolHasFree()) {
          reportNoVip(id, opts.sessions);
          break;
        }
        pending = prepare(id);
        next = id + 1;
      }
      window.delete(id);
      const p = await pending;
      if (Date.now() - lastBreath > 50) {
        await breathe();
        lastBreath = Date.now();
      }
      if (!p.ok) throw p.e;
      if (p.noVip) reportNoVip(id, id);
      const s = p.s;
      if (s === null || stopSignal || fatal) continue;
      const child = await s.start(opts.program, opts.args, opts.env, runAs);
      const vip = primaryVip(s.spec);
      exits.push(
        new Promise<void>((resolve) => {
          const settle = (r: { code: number | null; signal: string | null }): void => {
            if (!results.has(id)) results.set(id, r);
            resolve();
          };
          if (child.exitCode !== null || child.signalCode !== null) {
            settle({ code: child.exitCode, signal: child.signalCode });
            return;
          }
          const failed = (e: Error): void => {
            fatal ??= new UserError(`session ${id}: cannot start ${opts.program}: ${e.message}`);
            settle({ code: 127, signal: null });
          };
          if (s.spawnError) {
            failed(s.spawnError);
            return;
          }
          child.once('error', failed);
          child.once('exit', (code, signal) => settle({ code, signal }));
        }).then(async () => {
          const r = results.get(id)!;
          // Let TCP data the program left in flight reach its peer first (not when stopping).
          if (!stopSignal) await s.drain(opts.drainMs ?? DEFAULT_DRAIN_MS);
          await endSession(s);
          opts.onEvent({ event: 'exit', id, vip, ...(s.spec.shared ? { shared: true } : {}), code: r.code, signal: r.signal });
        }),
      );
      opts.onEvent({
        event: 'session',
        id,
        vip,
        ...(s.spec.v4 && s.spec.v6 ? { vip6: s.spec.v6.vip } : {}),
        ...(s.spec.shared ? { shared: true } : {}),
        loopback: s.loopback,
        pid: s.pid,
        netns: s.netns,
      });
    }
    if (stopSignal || fatal) stopAll();

    // Wait for every program, or for a failure that makes us stop them.
    await new Promise<void>((resolve) => {
      wake = resolve;
      void Promise.all(exits).then(() => resolve());
    });
    if (live.size > 0) {
      stopAll();
      await Promise.all(exits);
    }
  } catch (e) {
    fatal ??= e as Error;
  } finally {
    if (killTimer) clearTimeout(killTimer);
    // Sessions still being set up finish that first (then are torn down below).
    await Promise.allSettled(window.values());
    // Whatever went wrong above, leave nothing behind.
    for (const s of [...live.values()]) {
      s.kill();
      await endSession(s).catch(() => undefined);
    }
    if (dataplane) {
      dpStats = await dataplane.stop().catch(() => null);
    }
    await uplink.close(dataplane !== null);
    // /etc/netns goes if vipnat made it and nothing else put files in it since.
    if (!etcNetnsWasThere) removeEtcNetnsIfEmpty();
    journal.close();
    process.off('SIGINT', sigint);
    process.off('SIGTERM', sigterm);
  }

  if (fatal) {
    if (fatal instanceof UserError) throw fatal;
    if (fatal instanceof IpError || fatal instanceof SysError) throw new UserError(fatal.message);
    throw fatal;
  }

  let failed = 0;
  let firstFailure = 0;
  for (const id of [...results.keys()].sort((a, b) => a - b)) {
    const r = results.get(id)!;
    const status = r.signal ? 128 + signalNumber(r.signal) : (r.code ?? 1);
    if (status !== 0) {
      failed++;
      if (firstFailure === 0) firstFailure = status;
    }
  }
  const refused = shared ? 0 : noVip;
  const exitCode = stopSignal ? 128 + signalNumber(stopSignal) : firstFailure !== 0 ? firstFailure : refused > 0 ? EXIT_NO_VIP : 0;
  opts.onEvent({
    event: 'summary',
    sessions: opts.sessions,
    started: results.size,
    noVip,
    failed,
    exitCode,
    durationMs: Date.now() - started,
    dataplane: dpStats,
  });
  return exitCode;
}

/** An IPv6 address as four unsigned 32-bit words, the dataplane's form. */
function ipv6Words(text: string): number[] {
  const a = parseAddress(text);
  if (!a || a.family !== 6) throw new Error(`not an IPv6 address: ${text}`);
  return [3, 2, 1, 0].map((k) => Number((a.value >> BigInt(32 * k)) & 0xffffffffn));
}

function signalNumber(sig: string): number {
  return (constants.signals as Record<string, number>)[sig] ?? 1;
}
