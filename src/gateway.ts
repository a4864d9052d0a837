// The gateway: composes the pool, the uplink TUN, the dataplane and the sessions into one run.
import { existsSync, readFileSync } from 'node:fs';
import { availableParallelism, constants } from 'node:os';
import { Dataplane, type DataplaneStats } from './dataplane/index.js';
import {
  close,
  EBUSY,
  etcNetnsExists,
  geteuid,
  ip,
  ipBatch,
  IpError,
  noQueueDiscipline,
  openTunQueues,
  readSysctl,
  removeEtcNetnsIfEmpty,
  SysError,
  TUN_PATH,
  which,
  writeSysctl,
} from './linux/index.js';
import { parseIpv4 } from './wire/index.js';
import { NO_VIP_MESSAGE, parseAddress, parseRanges, VipPool, PoolError } from './pool/index.js';
import { primaryVip, Session, sweepStale, TXQUEUELEN } from './session/index.js';

export { PoolError, NO_VIP_MESSAGE, MAX_SESSION_ID, parseRanges } from './pool/index.js';
export type { DataplaneStats } from './dataplane/index.js';

export const UPLINK_NAME = 'vipnat0';

/** An error the user can fix; the CLI prints its message on one line and exits with `exitCode`. */
export class UserError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = 'UserError';
  }
}

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
  | { event: 'no-vip'; id: number; message: string }
  | { event: 'exit'; id: number; vip: string; shared?: boolean; code: number | null; signal: string | null }
  | { event: 'stopping'; signal: string }
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
/** IPv4 flow table capacity unless --max-flows says otherwise (52 bytes a flow). */
export const DEFAULT_MAX_FLOWS = 1 << 18;
/** Most dataplane workers by default, however many CPUs there are. */
export const MAX_DEFAULT_WORKERS = 4;
export const MAX_WORKERS = 64;

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
/** The routing table of the shared fallback ("vi"). */
const SHARED_TABLE = 0x7669;
/** The inner address of shared sessions when --inner-address gives none (slirp's 10.0.2.x convention). */
export const DEFAULT_SHARED_INNER = '10.0.2.100';

/** Exit status when every program succeeded but some sessions got no VIP. */
export const EXIT_NO_VIP = 3;

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;

/** Checks what vipnat needs from the machine; throws a UserError naming what is missing. */
export function preflight(): void {
  if (geteuid() !== 0 && !hasCapabilities([CAP_NET_ADMIN, CAP_SYS_ADMIN])) {
    throw new UserError(
      'vipnat needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create namespaces and TUN devices: run it as root or with sudo',
    );
  }
  if (!existsSync(TUN_PATH)) {
    throw new UserError(`${TUN_PATH} is missing: load the tun module (modprobe tun) or, in a container, pass --device ${TUN_PATH}`);
  }
  if (!which('ip')) {
    throw new UserError("the 'ip' command (iproute2) was not found in PATH: install iproute2 (apt-get install iproute2)");
  }
}

function hasCapabilities(caps: number[]): boolean {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    if (!m) return false;
    const eff = BigInt(`0x${m[1]}`);
    return caps.every((c) => (eff >> BigInt(c)) & 1n);
  } catch {
    return false;
  }
}

/** The uplink: vipnat0 in the namespace vipnat runs in, with the pool routed to it. */
class Uplink {
  /** vipnat0's queues, one per dataplane worker. */
  fds: number[] = [];
  /** sysctls changed, with the values to put back. */
  private readonly restore = new Map<string, string>();

  async open(mtu: number, routes: string[], ipv6: boolean, offload: boolean, queues: number): Promise<void> {
    const exists = await ip(['link', 'show', 'dev', UPLINK_NAME]).then(
      () => true,
      () => false,
    );
    if (exists) {
      throw new UserError(`an interface named ${UPLINK_NAME} already exists in this namespace: is another vipnat running here?`);
    }
    try {
      this.fds = openTunQueues(UPLINK_NAME, offload, queues);
    } catch (e) {
      if (e instanceof SysError && e.errno === EBUSY) throw new UserError(`${UPLINK_NAME} is busy: is another vipnat running here?`);
      throw e;
    }
    if (queues > 1) await noQueueDiscipline(UPLINK_NAME);
    await ipBatch([`link set dev ${UPLINK_NAME} mtu ${mtu} txqueuelen ${TXQUEUELEN} up`]);
    try {
      await ipBatch(routes.map((r) => `route add ${r} dev ${UPLINK_NAME}`));
    } catch (e) {
      throw new UserError(
        `cannot route the pool to ${UPLINK_NAME} (${(e as Error).message.replace(/^ip -batch: /, '')}): does a route to part of it already exist here?`,
      );
    }
    // The namespace's kernel forwards between vipnat0 and the real interfaces.
    this.set('net.ipv4.ip_forward', '1');
    if (ipv6) this.set('net.ipv6.conf.all.forwarding', '1');
  }

  private set(key: string, value: string): void {
    let was: string;
    try {
      was = readSysctl(key);
    } catch {
      throw new UserError(`cannot read ${key}: ${key.includes('ipv6') ? 'is IPv6 disabled in this namespace?' : 'is /proc mounted?'}`);
    }
    if (was === value) return;
    writeSysctl(key, value);
    this.restore.set(key, was);
  }

  /** ip rule lines that undo what enableShared() did, in order. */
  private undoRules: string[] = [];

  /**
   * The shared fallback: sends the uplink's return traffic for the shared
   * ports (and ICMP) to vipnat0 instead of the local stack, with policy
   * routing. The kernel looks up its `local` table first (rule 0), so that
   * rule moves to preference 6, below vipnat's own five:
   *
   *   1  iif vipnat0 lookup local     packets vipnat hands back reach the local stack
   *   2  iif lo lookup local          the uplink's own traffic as before
   *   3  to ADDR tcp dport LO-HI  lookup T  (T: default dev vipnat0)
   *   4  to ADDR udp dport LO-HI  lookup T
   *   5  to ADDR icmp             lookup T   (vipnat hands back what is not a session's)
   *   6  lookup local
   *
   * Undone on exit; if vipnat dies without undoing it, table T is empty (it
   * went with vipnat0) and the moved local rule behaves as before.
   */
  async enableShared(address: string, portLo: number, portHi: number): Promise<void> {
    const rules = JSON.parse(await ip(['-4', '-j', 'rule', 'show'])) as { priority: number; table?: string }[];
    const taken = rules.filter((r) => r.priority >= 1 && r.priority <= 6);
    if (taken.length > 0) {
      throw new UserError(
        `--on-exhausted shared needs ip rule preferences 1-6, but ${taken.map((r) => r.priority).join(', ')} are in use here`,
      );
    }
    const localAt0 = rules.some((r) => r.priority === 0 && r.table === 'local');
    // The uplink must accept packets from vipnat0 that carry its own address.
    writeSysctl(`net.ipv4.conf.${UPLINK_NAME}.accept_local`, '1');
    writeSysctl(`net.ipv4.conf.${UPLINK_NAME}.rp_filter`, '0');
    if (readSysctl('net.ipv4.conf.all.rp_filter') === '1') this.set('net.ipv4.conf.all.rp_filter', '2');
    const table = SHARED_TABLE;
    const to = `to ${address}/32`;
    const add = [
      `rule add pref 1 iif ${UPLINK_NAME} lookup local`,
      `rule add pref 2 iif lo lookup local`,
      `rule add pref 3 ${to} ipproto tcp dport ${portLo}-${portHi} lookup ${table}`,
      `rule add pref 4 ${to} ipproto udp dport ${portLo}-${portHi} lookup ${table}`,
      `rule add pref 5 ${to} ipproto icmp lookup ${table}`,
      `rule add pref 6 lookup local`,
      `route add default dev ${UPLINK_NAME} table ${table}`,
    ];
    // Set before adding: a batch that fails half-way leaves some rules to undo.
    this.undoRules = ['rule del pref 6', 'rule del pref 5', 'rule del pref 4', 'rule del pref 3', 'rule del pref 2', 'rule del pref 1'];
    await ipBatch(add);
    if (localAt0) {
      await ipBatch(['rule del pref 0 lookup local']);
      this.undoRules.unshift('rule add pref 0 lookup local');
    }
  }

  /** Undoes open(): the routes go with the device, which goes with the fd. */
  async close(fdsOwnedElsewhere: boolean): Promise<void> {
    if (this.undoRules.length > 0) {
      // One line at a time: a rule already gone must not stop the others.
      for (const line of this.undoRules) await ipBatch([line]).catch(() => undefined);
      this.undoRules = [];
    }
    if (!fdsOwnedElsewhere) for (const fd of this.fds) close(fd);
    this.fds = [];
    for (const [key, was] of this.restore) {
      try {
        writeSysctl(key, was);
      } catch {
        // Best effort: the namespace may be going away.
      }
    }
    this.restore.clear();
  }
}

/** Runs the sessions to completion; resolves with vipnat's exit status. */
export async function run(opts: RunOptions): Promise<number> {
  const started = Date.now();
  let pool: VipPool;
  try {
    pool = new VipPool(parseRanges(opts.pool));
  } catch (e) {
    if (e instanceof PoolError) throw new UserError(e.message, 2);
    throw e;
  }
  const families = pool.families();
  const inner = parseInnerAddresses(opts.innerAddress, pool);
  preflight();
  const workers = opts.workers ?? defaultWorkers();
  if (workers > 1 && !which('tc')) {
    throw new UserError(
      "the 'tc' command (iproute2) was not found in PATH: install iproute2 (apt-get install iproute2), or run with --workers 1",
    );
  }
  if (!which(opts.program)) throw new UserError(`program not found: ${opts.program}`, 127);
  const etcNetnsWasThere = etcNetnsExists();
  await sweepStale();

  const uplink = new Uplink();
  let dataplane: Dataplane | null = null;
  const live = new Map<number, Session>();
  const results = new Map<number, { code: number | null; signal: string | null }>();
  let noVip = 0;
  let stopSignal: NodeJS.Signals | null = null;
  let fatal: Error | null = null;
  let wake: () => void = () => undefined;
  let killTimer: NodeJS.Timeout | null = null;

  const stopAll = (): void => {
    for (const s of live.values()) s.child?.kill('SIGTERM');
    if (!killTimer) {
      killTimer = setTimeout(() => {
        for (const s of live.values()) s.child?.kill('SIGKILL');
      }, opts.killGraceMs ?? 5000);
    }
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

  /** Sessions whose TUN queues were handed to the dataplane (which owns them from then on). */
  const attached = new Set<number>();
  const endSession = async (s: Session): Promise<void> => {
    live.delete(s.spec.id);
    try {
      if (dataplane && attached.delete(s.spec.id)) await dataplane.removeSession(s.spec.id);
    } catch {
      // A dead dataplane has closed nothing; the process exit closes the fd.
    }
    await s.destroy();
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

  // Offloads are on unless VIPNAT_OFFLOAD=0 (for comparing, and for kernels without them).
  const offload = process.env['VIPNAT_OFFLOAD'] !== '0';
  let dpStats: DataplaneStats | null = null;
  const preparing: Promise<Prepared>[] = [];
  let shared: { address: string; portLo: number; portHi: number } | null = null;
  try {
    await uplink.open(opts.mtu, pool.routes(), families.includes(6), offload, workers);
    if (opts.onExhausted === 'shared') {
      const address = await uplinkAddress();
      const [portLo, portHi] = sharedPortRange();
      await uplink.enableShared(address, portLo, portHi);
      shared = { address, portLo, portHi };
    }
    dataplane = await Dataplane.start({
      uplinkFds: uplink.fds,
      maxSession: opts.sessions,
      flowCapacity: opts.flowCapacity ?? DEFAULT_MAX_FLOWS,
      offload,
      shared: shared && { address: parseIpv4(shared.address), portLo: shared.portLo, portHi: shared.portHi },
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
      if (vips === null && !shared) return Promise.resolve({ ok: true, s: null, noVip: true });
      const s = new Session(
        vips === null
          ? // Shared fallback: IPv4 only, from the uplink's own address.
            {
              id,
              v4: { vip: shared!.address, inner: inner.v4 ?? DEFAULT_SHARED_INNER },
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
      return s
        .create()
        .then(() => {
          // The dataplane owns the queues from here, whether adding succeeds or not.
          const fds = s.fds;
          s.fds = [];
          attached.add(id);
          return dataplane!.addSession(id, fds, {
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
    for (let id = 1; id <= opts.sessions && !stopSignal && !fatal; id++) {
      while (next <= opts.sessions && next < id + SETUP_WINDOW) {
        const p = prepare(next++);
        preparing.push(p);
      }
      const p = await preparing[id - 1]!;
      if (!p.ok) throw p.e;
      if (p.noVip) {
        noVip++;
        opts.onEvent({ event: 'no-vip', id, message: NO_VIP_MESSAGE });
      }
      const s = p.s;
      if (s === null || stopSignal || fatal) continue;
      const child = s.start(opts.program, opts.args, process.env);
      const vip = primaryVip(s.spec);
      exits.push(
        new Promise<void>((resolve) => {
          child.once('error', (e) => {
            results.set(id, { code: 127, signal: null });
            fatal ??= new UserError(`session ${id}: cannot start ${opts.program}: ${e.message}`);
            resolve();
          });
          child.once('exit', (code, signal) => {
            results.set(id, { code, signal });
            resolve();
          });
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
        pid: child.pid ?? -1,
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
    await Promise.allSettled(preparing);
    // Whatever went wrong above, leave nothing behind.
    for (const s of [...live.values()]) {
      s.child?.kill('SIGKILL');
      await endSession(s).catch(() => undefined);
    }
    if (dataplane) {
      dpStats = await dataplane.stop().catch(() => null);
    }
    await uplink.close(dataplane !== null);
    if (!etcNetnsWasThere) removeEtcNetnsIfEmpty();
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
  const refused = opts.onExhausted === 'shared' ? 0 : noVip;
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

/**
 * The uplink's own IPv4 address, for the shared fallback: the preferred source
 * of the default route, else the first global address of its interface, else
 * the first global address of any interface but vipnat0.
 */
async function uplinkAddress(): Promise<string> {
  type Route = { dev?: string; prefsrc?: string };
  type Link = { ifname: string; operstate?: string; addr_info?: { local: string }[] };
  const routes = JSON.parse(await ip(['-4', '-j', 'route', 'show', 'default'])) as Route[];
  const links = (JSON.parse(await ip(['-4', '-j', 'addr', 'show', 'scope', 'global'])) as Link[]).filter(
    (l) => l.ifname !== UPLINK_NAME && (l.addr_info?.length ?? 0) > 0,
  );
  for (const r of routes) {
    if (r.prefsrc) return r.prefsrc;
    const l = links.find((x) => x.ifname === r.dev);
    if (l) return l.addr_info![0]!.local;
  }
  const any = links.find((l) => l.operstate !== 'DOWN') ?? links[0];
  if (!any) throw new UserError('--on-exhausted shared: this namespace has no IPv4 address of its own to share');
  return any.addr_info![0]!.local;
}

/** Outer ports for shared flows: above the uplink's ephemeral range, so they never meet its own sockets. */
function sharedPortRange(): [number, number] {
  const [, hi] = readSysctl('net.ipv4.ip_local_port_range').split(/\s+/).map(Number) as [number, number];
  const lo = Math.max(61000, hi + 1);
  if (lo > 65534 - 1023) {
    throw new UserError(
      `--on-exhausted shared: net.ipv4.ip_local_port_range ends at ${hi}, leaving too few ports for shared sessions; lower it below 64500`,
    );
  }
  // 65535 stays out: iproute2 refuses it as the top of an ip rule port range.
  return [lo, 65534];
}

/**
 * Parses --inner-address: one address per family, comma-separated
 * (`10.0.2.100,fd00:2::100`). A family without one runs in address mode.
 */
function parseInnerAddresses(text: string | undefined, pool: VipPool): { v4: string | null; v6: string | null } {
  const out: { v4: string | null; v6: string | null } = { v4: null, v6: null };
  if (text === undefined) return out;
  for (const part of text.split(',').map((p) => p.trim())) {
    const a = parseAddress(part);
    if (!a) throw new UserError(`--inner-address "${part}": not an IPv4 or IPv6 address`, 2);
    const key = a.family === 4 ? 'v4' : 'v6';
    if (out[key] !== null) throw new UserError(`--inner-address "${text}": give at most one IPv${a.family} address`, 2);
    if (!pool.families().includes(a.family)) {
      throw new UserError(`--inner-address ${part}: the pool has no IPv${a.family} addresses to translate it to`, 2);
    }
    if (a.family === 4) {
      const first = Number(a.value >> 24n);
      if (first === 0 || first === 127 || first >= 224) {
        throw new UserError(`--inner-address ${part}: must be a unicast address outside 0/8 and 127/8 (e.g. 10.0.2.100)`, 2);
      }
    } else if (a.value <= 1n || a.value >> 120n === 0xffn || a.value >> 118n === 0x3fan) {
      throw new UserError(`--inner-address ${part}: must be a global or unique-local unicast address (e.g. fd00:2::100)`, 2);
    }
    if (pool.contains(part)) throw new UserError(`--inner-address ${part}: is inside the pool; pick an address outside it`, 2);
    out[key] = part;
  }
  return out;
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
