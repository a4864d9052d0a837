// The Gateway: an uplink, a dataplane and a pool that sessions join and leave at any time, then close.
//
// open() checks everything it can before it changes anything, undoes what a
// dead vipnat left (the journal), then sets up the uplink (vipnat0, routes,
// sysctls, the shared fallback's rules) and starts the dataplane. Sessions
// come and go with startSession() and stopSession(); a session whose program
// exits is torn down by itself (a logoff) and its VIP goes back to the pool.
// close() stops every session and leaves the machine as it found it.
//
// A Gateway owns no process-wide state: no signal handlers, no environment
// reads, no exit codes. The CLI and the API's users own those.
import { Dataplane, type DataplaneStats } from '../dataplane/index.js';
import {
  etcNetnsExists,
  localAddresses,
  readSysctl,
  netnsOfPid,
  pidsByNetns,
  removeEtcNetnsIfEmpty,
  watchAddresses,
  which,
} from '../linux/index.js';
import {
  formatAddress,
  loopbackFor,
  loopbackNumber,
  MAX_SESSION_ID,
  NO_VIP_MESSAGE,
  parseAddress,
  parseRanges,
  PoolError,
  VipPool,
  type AddressRange,
  type Family,
} from '../pool/index.js';
import type { ChildProcess } from 'node:child_process';
import { exitOf, identityOf, initHelperExists, primaryVip, type RunAs, Session, type Stdio } from '../session/index.js';
import { parseIpv4 } from '../wire/index.js';
import { checkMtu, checkPoolUnused, loopbackInUse, parseInnerAddresses, parseUser, preflight, resolveProgram } from './checks.js';
import { ConflictError, EXIT_NO_VIP, EXIT_USAGE, NotFoundError, UserError } from './errors.js';
import { Journal, recover, type Recovered } from './journal.js';
import { sharedPortRange, Uplink, uplinkAddress } from './uplink.js';
import { dhcpLink, findLanLink, Lan } from './onlink.js';
import { duidFor, Leases } from '../lease/index.js';

import { DEFAULT_MAX_FLOWS, MAX_LIVE_SESSIONS } from './limits.js';
import { LOOPBACK_PORT_HI, LOOPBACK_PORT_LO, type FlowCount, type FlowView } from '../nat/index.js';
import { chmodSync, createWriteStream, statSync, type WriteStream } from 'node:fs';
import { ip, namespaceSockets, type KernelSocket } from '../linux/index.js';
import { Capture, Captures, DEFAULT_SNAPLEN, MAX_SNAPLEN, type CaptureOptions, type CaptureSink } from './capture.js';
export { DEFAULT_MAX_FLOWS, MAX_LIVE_SESSIONS };
/** The inner address of shared sessions when the options give none (slirp's 10.0.2.x convention). */
export const DEFAULT_SHARED_INNER = '10.0.2.100';
const DEFAULT_DRAIN_MS = 3000;
const DEFAULT_KILL_GRACE_MS = 5000;

export interface GatewayOptions {
  /**
   * The VIPs: comma-separated CIDRs, START-END ranges or addresses, IPv4,
   * IPv6 or both; or `dhcp` (`dhcp:DEV`): each session leases its IPv4 VIP
   * from the DHCP server on the link (DEV, else the default route's).
   */
  pool: string;
  /** NAT mode: every session's eth0 holds this address (one per family, comma-separated), translated to its VIP. */
  innerAddress?: string;
  /** What a session without a VIP does: not start (refuse, the default), or run on the uplink's own address (shared). */
  onExhausted?: 'refuse' | 'shared';
  /** MTU of the sessions' eth0 and of vipnat0 (default 1500). */
  mtu?: number;
  /** IPv4 flow table capacity (default DEFAULT_MAX_FLOWS). */
  flowCapacity?: number;
  /** Dataplane worker threads (default 1); every TUN gets a queue per worker. */
  workers?: number;
  /** TUNs with offloads (virtio-net header, TSO, checksum offload). Default true. */
  offload?: boolean;
  /** Run session programs as this user (USER[:GROUP]), without capabilities. */
  user?: string;
  /** Most sessions alive at once (default: as many as the pool has VIPs, or MAX_LIVE_SESSIONS with the shared fallback). */
  maxSessions?: number;
  /** Grace period between SIGTERM and SIGKILL when stopping a session (default 5 s). */
  killGraceMs?: number;
  /** How long a session's TCP data in flight may take to drain after its program exits (default 3 s). */
  drainMs?: number;
  /** Where the journal lives (default /run/vipnat); only vipnats sharing it undo each other's. */
  runDir?: string;
  /** Most flows one session may hold in each family's table (default defaultSessionFlowLimit(capacity)). */
  sessionFlowLimit?: number;
  /** Outer ports of the shared address one session may hold per protocol (default DEFAULT_SHARED_PORT_QUOTA). */
  sharedPortQuota?: number;
  /** Answer sessions' packets to this namespace's own addresses with ICMP "administratively prohibited". Default false. */
  blockLocal?: boolean;
  /**
   * The virtual loopback: 127.0.0.1 + id, from this namespace and from
   * session id itself, reaches session id's 127.0.0.1 on every port. Default true.
   */
  loopback?: boolean;
  /**
   * The interface that faces the network. A pool range inside its subnet is
   * on-link: vipnat answers for each VIP there (proxy ARP and NDP), probes an
   * address before handing it out and announces it when taken. Default: the
   * interface whose subnet holds the pool, if any (else routed, as without it).
   */
  uplink?: string;
  /** The gateway's name (`up --name`; default `run`): part of its sessions' DHCP client identifiers. */
  name?: string;
  /** Capture every packet from the start to this pcapng file (mode 0600), as `vipnat capture uplink` would. */
  pcap?: string;
  /** vipnat's version, written into captures' headers. */
  version?: string;
}

/** How a program ended: its exit code, or the signal that killed it. */
export interface ExitStatus {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export type SessionState = 'starting' | 'running' | 'stopping' | 'exited';

export interface StartOptions {
  /** The session id (1-MAX_SESSION_ID); default the lowest free one. */
  id?: number;
  /** A VIP of the pool to take instead of the lowest free one (IPv4 or IPv6). */
  vip?: string;
  program: string;
  args?: string[];
  /** The program's environment (vipnat adds VIPNAT_*). Default: empty. */
  env?: NodeJS.ProcessEnv;
  labels?: Record<string, string>;
  /**
   * Launch the program only once this settles: sessions prepared side by
   * side (namespaces and TUNs take a while) still start in the order wanted.
   */
  after?: Promise<unknown>;
  /** The program's standard input, output and error: this process's (default), or pipes on `session.process`. */
  stdio?: Stdio;
  /**
   * Attach: no namespace of the session's own and no program (`program` is
   * ignored). The VIP goes on a TUN in this existing namespace, for traffic
   * to `routes` alone; the session ends when the namespace does, or on stop.
   */
  attach?: AttachTarget;
}

/** An existing network namespace to give a VIP to (`vipnat attach`). */
export interface AttachTarget {
  /** Its file: /proc/PID/ns/net, /run/netns/NAME, a bind mount. */
  path: string;
  /** What ls shows for the session (container:NAME, pid:PID, the path). */
  name: string;
  /** The process whose namespace it is, if any (ls lists the namespace's processes by it). */
  pid?: number;
  /** CIDRs that leave through the VIP (default: the networks this namespace routes to, but its default route). */
  routes?: string[];
}

/** A second program running in a session (`exec`). */
export interface ExecProcess {
  /** Its helper process: with stdio 'pipe', its stdin, stdout and stderr are the program's. */
  child: ChildProcess;
  /** The program's pid, as the gateway's namespace sees it. */
  pid: number;
  exited: Promise<ExitStatus>;
}

export type GatewayEvent =
  | {
      event: 'session';
      id: number;
      vip: string;
      vip6?: string;
      shared?: boolean;
      loopback: string | null;
      pid: number;
      netns: string;
      /** Attached to an existing namespace (`netns` names it). */
      attached?: boolean;
    }
  /** A session found no DHCP lease (no server answered, none left, every offer in use). */
  | { event: 'lease-failed'; id: number; dev: string; why: string }
  /** A session's lease ended without being extended: the session is stopped. */
  | { event: 'lease-lost'; id: number; address: string; why: string }
  /** An on-link VIP that something on the link answered for: skipped, and tried again later. */
  | { event: 'vip-in-use'; id: number; address: string; dev: string; by: string; leased?: boolean }
  /** A session's virtual loopback that this namespace already uses: it stays this namespace's, and the session is not reachable at it from here. */
  | { event: 'loopback-in-use'; id: number; address: string; reason: string }
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

/** A session's traffic since it started: packets and bytes each way, and its packets dropped. */
export interface SessionCounters {
  packets: { in: number; out: number };
  bytes: { in: number; out: number };
  dropped: number;
}

/** What `vipnat sockets` shows of one session: its kernel's sockets and the translator's flows. */
export interface SessionSockets {
  id: number;
  vip: string;
  vip6: string | null;
  netns: string;
  kernel: KernelSocket[];
  flows: FlowView[];
  /** Why its kernel's sockets could not be read (the session is going). */
  error?: string;
}

/** What `pool` shows: see PoolInfo in the control protocol, which is this. */
export interface PoolReport {
  ranges: { range: string; family: Family; total: number; used: number; free: number; holders: { address: string; session: number }[] }[];
  families: { family: Family; total: number; used: number; free: number }[];
  shared: { address: string; sessions: number[] } | null;
}

function capped(n: bigint): number {
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
}

/** The pool had no VIP for a session (and the gateway has no shared fallback). */
export class NoVipError extends UserError {
  constructor() {
    super(NO_VIP_MESSAGE, EXIT_NO_VIP);
    this.name = 'NoVipError';
  }
}

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

/** One session of a gateway, as its users see it. */
export class GatewaySession {
  state: SessionState = 'starting';
  readonly startedAt = new Date();
  /** Resolves when the program has exited and the session is torn down (its VIP back in the pool). */
  readonly exited: Promise<ExitStatus>;
  private settle: (s: ExitStatus) => void = () => undefined;
  private killTimer: NodeJS.Timeout | null = null;

  constructor(
    /** @internal */ readonly inner: Session,
    readonly labels: Record<string, string>,
    private readonly killGraceMs: number,
    private readonly runAs: RunAs | null,
    /** @internal What the gateway holds for it: its dataplane slot, VIPs, journal entry. */
    readonly own: {
      slot: number;
      vips: { v4: string | null; v6: string | null } | null;
      seq?: number;
      attached?: boolean;
      /** Its virtual loopback has a route of its own (see Gateway.reachLoopback). */
      loopbackRouted?: boolean;
      /** Its teardown has begun: no new capture of it (its slot is about to serve another session). */
      tearingDown?: boolean;
    },
  ) {
    this.exited = new Promise((resolve) => (this.settle = resolve));
  }

  get id(): number {
    return this.inner.spec.id;
  }
  /** The session's main VIP (its IPv4 one when it has both; the shared address for a shared session). */
  get vip(): string {
    return primaryVip(this.inner.spec);
  }
  get vip6(): string | null {
    return this.inner.spec.v6?.vip ?? null;
  }
  get shared(): boolean {
    return this.inner.spec.shared;
  }
  /** The session's virtual loopback (127.0.0.1 + id); null with the loopback off. */
  get loopback(): string | null {
    return this.inner.spec.loopback ? loopbackFor(this.id) : null;
  }
  get netns(): string {
    return this.inner.netns;
  }
  /** Attached to an existing namespace (`vipnat attach`) rather than one of its own. */
  get attached(): boolean {
    return this.inner.spec.attach !== undefined;
  }
  /** The program's pid, as the gateway's namespace sees it. */
  get pid(): number {
    return this.inner.pid;
  }

  /** The program's helper process (vipnat-init): with stdio 'pipe', its stdin, stdout and stderr are the program's. */
  get process(): ChildProcess | null {
    return this.inner.child;
  }

  /** Programs running in the session besides its own, by pid. */
  readonly execs = new Map<number, ExecProcess>();

  /** Runs another program in this session: its VIP, its namespaces, its user; it dies with the session. */
  async exec(program: string, args: string[] = [], opts: { env?: NodeJS.ProcessEnv; stdio?: Stdio } = {}): Promise<ExecProcess> {
    if (this.state !== 'running') throw new UserError(`session ${this.id} is ${this.state}`);
    resolveProgram(program, this.runAs);
    const { child, pid } = await this.inner.exec(program, args, opts.env ?? {}, this.runAs, opts.stdio ?? 'inherit');
    if (this.inner.spawnError) throw new UserError(`session ${this.id}: cannot run ${program}: ${this.inner.spawnError.message}`);
    const exited = exitOf(child);
    const e: ExecProcess = { child, pid, exited };
    this.execs.set(pid, e);
    void exited.then(() => this.execs.delete(pid));
    return e;
  }

  /**
   * Runs another program in this session to its end and collects what it
   * printed (its standard input is empty): handy in tests.
   */
  async run(
    program: string,
    args: string[] = [],
    opts: { env?: NodeJS.ProcessEnv } = {},
  ): Promise<ExitStatus & { stdout: string; stderr: string }> {
    const e = await this.exec(program, args, { ...opts, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    e.child.stdin?.end();
    e.child.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    e.child.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    const closed = new Promise((resolve) => e.child.once('close', resolve));
    const st = await e.exited;
    await closed;
    return { ...st, stdout, stderr };
  }

  /** A logoff: SIGTERM once, SIGKILL after the grace period; resolves with how the program ended, once torn down. */
  stop(): Promise<ExitStatus> {
    if (this.state === 'starting') {
      // Its program gets the SIGTERM once it exists (see Gateway.startSession).
      this.state = 'stopping';
    } else if (this.state === 'running' || (this.state === 'stopping' && !this.killTimer)) {
      this.state = 'stopping';
      this.inner.stop();
      this.killTimer = setTimeout(() => this.inner.kill(), this.killGraceMs);
    }
    return this.exited;
  }

  /** @internal Ends the program at once. */
  kill(): void {
    this.inner.kill();
  }

  /** @internal The session is gone. */
  ended(status: ExitStatus): void {
    if (this.killTimer) clearTimeout(this.killTimer);
    this.state = 'exited';
    this.settle(status);
  }
}

/** Why a gateway cannot go on: a dataplane worker died. */
export type FailureListener = (e: Error) => void;

export class Gateway implements AsyncDisposable {
  /** Called with every event: sessions started and exited, sessions refused, recoveries. */
  onEvent: (e: GatewayEvent) => void = () => undefined;
  /** Called once if the dataplane fails; the gateway then stops every session. */
  onFailure: FailureListener | null = null;

  /** Stops following the namespace's addresses (--block-local). */
  private unwatch: (() => void) | null = null;
  /** The virtual loopback's routes from this namespace (null when it is off): ids 1-maxId routed, and the addresses left out. */
  private loopbackRoutes: LoopbackRoutes | null = null;
  /** On-link VIPs' proxies and probes (null: the pool is routed). */
  private lan: Lan | null = null;
  /** With --pool dhcp: the sessions' DHCP clients, and the address each holds. */
  private leases: Leases | null = null;
  private readonly leased = new Map<number, string>();
  /** Ids of sessions whose VIPs are being probed or leased (not yet in `all`). */
  private readonly reserved = new Set<number>();
  /** Those probes and leases, which close() waits for before it takes the link's state down. */
  private readonly inFlight = new Set<Promise<unknown>>();
  /** On-link VIPs found in use, each back in the pool when its timer fires. */
  private readonly quarantined = new Map<string, NodeJS.Timeout>();
  /** Namespaces being checked for an attach (by identity), not yet sessions. */
  private readonly attaching = new Set<string>();
  /** Every session from the moment its start is asked for until it is torn down. */
  private readonly all = new Map<number, GatewaySession>();
  private closing: Promise<DataplaneStats | null> | null = null;
  private failure: Error | null = null;
  /** Running captures (null once the dataplane is gone). */
  private captures: Captures | null = null;
  /** The --pcap capture, and the file it writes. */
  private pcap: { capture: Capture; file: WriteStream } | null = null;
  /** Sessions started and exited since the gateway opened (for metrics). */
  readonly counts = { started: 0, exited: 0 };

  private constructor(
    private readonly opts: Required<Pick<GatewayOptions, 'mtu' | 'offload' | 'killGraceMs' | 'drainMs'>> & GatewayOptions,
    private readonly pool: VipPool,
    private readonly ranges: AddressRange[],
    private readonly inner: { v4: string | null; v6: string | null },
    private readonly runAs: RunAs | null,
    private readonly slots: Slots,
    private readonly journal: Journal,
    private readonly uplink: Uplink,
    private readonly workers: number,
    private readonly etcNetnsWasThere: boolean,
    private dataplane: Dataplane | null,
    private readonly sharedAddr: { address: string; portLo: number; portHi: number } | null,
  ) {}

  /**
   * Opens a gateway in the network namespace this process runs in. Checks
   * come first (a bad pool or flag throws a UserError before anything
   * changes); `onEvent` hears of what a dead vipnat left and was undone.
   */
  /**
   * The checks of open() that need nothing of the machine (pool, addresses,
   * MTU, user): a UserError with exit status 2 for what is wrong.
   */
  static check(options: GatewayOptions): {
    pool: VipPool;
    ranges: AddressRange[];
    inner: { v4: string | null; v6: string | null };
    runAs: RunAs | null;
  } {
    const dhcp = dhcpPool(options.pool);
    const { pool, ranges } = dhcp ? { pool: new VipPool([]), ranges: [] } : parsePool(options.pool);
    const inner = dhcp ? { v4: dhcpInner(options.innerAddress), v6: null } : parseInnerAddresses(options.innerAddress, pool);
    if (!dhcp) checkMtu(options.mtu ?? 1500, pool);
    const runAs = options.user === undefined ? null : parseUser(options.user);
    return { pool, ranges, inner, runAs };
  }

  static async open(options: GatewayOptions, onEvent: (e: GatewayEvent) => void = () => undefined): Promise<Gateway> {
    const opts = { mtu: 1500, offload: true, killGraceMs: DEFAULT_KILL_GRACE_MS, drainMs: DEFAULT_DRAIN_MS, ...options };
    const { pool, ranges, inner, runAs } = Gateway.check(opts);
    preflight();
    const workers = opts.workers ?? 1;
    if (workers > 1 && !which('tc')) {
      throw new UserError(
        "the 'tc' command (iproute2) was not found in PATH: install iproute2 (apt-get install iproute2), or use 1 worker",
      );
    }
    if (runAs && !which('setpriv')) throw new UserError("--user needs the 'setpriv' command (util-linux) in PATH: install util-linux");
    if (!initHelperExists()) {
      throw new UserError('vipnat-init is missing next to the compiled code: run `make build` in the vipnat checkout (it needs cc)');
    }
    const shared = opts.onExhausted === 'shared';
    const vips = Math.min(...pool.families().map((f) => pool.size(f)));
    const slots = new Slots(Math.max(1, Math.min(opts.maxSessions ?? (shared ? MAX_LIVE_SESSIONS : vips), MAX_LIVE_SESSIONS)));

    const journal = Journal.open(opts.runDir);
    const uplink = new Uplink(journal);
    const etcNetnsWasThere = etcNetnsExists();
    let dataplane: Dataplane | null = null;
    let lan: Lan | null = null;
    let leases: Leases | null = null;
    try {
      for (const r of await recover(opts.runDir)) onEvent({ event: 'recovered', ...r });
      const dhcp = dhcpPool(opts.pool);
      const lanLink = dhcp ? await dhcpLink(dhcp.dev ?? opts.uplink) : await findLanLink(opts.uplink, ranges);
      await checkPoolUnused(opts.pool, ranges, lanLink?.dev ?? null);
      if (!etcNetnsWasThere) journal.record({ op: 'etc-netns' });
      await uplink.open(opts.mtu, pool.routes(), pool.families().includes(6), opts.offload, workers);
      if (lanLink) {
        lan = new Lan(lanLink, journal);
        lan.open(uplink, readSysctl);
      }
      if (dhcp && lanLink)
        leases = new Leases(lanLink.dev, lanLink.mac, duidFor(`${opts.name ?? 'run'}/${journal.netnsName ?? ''}/${lanLink.dev}`));
      let sharedAddr: { address: string; portLo: number; portHi: number } | null = null;
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
        offload: opts.offload,
        shared: sharedAddr && { address: parseIpv4(sharedAddr.address), portLo: sharedAddr.portLo, portHi: sharedAddr.portHi },
        ...(opts.sessionFlowLimit !== undefined ? { sessionFlowLimit: opts.sessionFlowLimit } : {}),
        ...(opts.sharedPortQuota !== undefined ? { sharedPortQuota: opts.sharedPortQuota } : {}),
        blockLocal: opts.blockLocal ?? false,
        loopback: opts.loopback ?? true,
      });
      const loopback = (opts.loopback ?? true) ? await openLoopback(uplink, slots.count) : null;
      // The namespace's own addresses, kept current as they come and go (netlink events, not polling).
      const unwatch = opts.blockLocal ? await watchLocal(dataplane) : null;
      const gw = new Gateway(opts, pool, ranges, inner, runAs, slots, journal, uplink, workers, etcNetnsWasThere, dataplane, sharedAddr);
      gw.unwatch = unwatch;
      gw.onEvent = onEvent;
      gw.loopbackRoutes = loopback;
      gw.lan = lan;
      gw.leases = leases;
      dataplane.onFailure = (e) => gw.fail(e);
      gw.captures = new Captures(dataplane.tap!, dataplane.rings);
      if (opts.pcap !== undefined) await gw.startPcap(opts.pcap);
      return gw;
    } catch (e) {
      if (dataplane) await dataplane.stop().catch(() => null);
      leases?.close();
      await lan?.close();
      await uplink.close(dataplane !== null);
      if (!etcNetnsWasThere) removeEtcNetnsIfEmpty();
      journal.close();
      throw e;
    }
  }

  /**
   * The pool as Citrix's monitor shows it: per range and per family, total,
   * used and free addresses, and which session holds each used one.
   */
  poolInfo(): PoolReport {
    const held: { family: Family; value: bigint; address: string; session: number }[] = [];
    const sharedIds: number[] = [];
    for (const s of this.sessions()) {
      if (s.shared) sharedIds.push(s.id);
      for (const a of [s.shared ? null : s.inner.spec.v4?.vip, s.inner.spec.v6?.vip]) {
        const p = a ? parseAddress(a) : null;
        if (p && a) held.push({ family: p.family, value: p.value, address: a, session: s.id });
      }
    }
    if (this.leases) {
      // Leased: the server holds the pool; here are the addresses it gave.
      const n = held.length;
      const holders = held.map((h) => ({ address: h.address, session: h.session }));
      return {
        ranges: [{ range: `dhcp:${this.leases.dev}`, family: 4, total: n, used: n, free: 0, holders }],
        families: [{ family: 4, total: n, used: n, free: 0 }],
        shared: this.sharedAddr ? { address: this.sharedAddr.address, sessions: sharedIds } : null,
      };
    }
    const ranges = this.ranges.map((r) => {
      const holders = held.filter((h) => h.family === r.family && h.value >= r.first && h.value <= r.last);
      const total = capped(r.last - r.first + 1n);
      return {
        range: r.text,
        family: r.family,
        total,
        used: holders.length,
        free: total - holders.length,
        holders: holders.map((h) => ({ address: h.address, session: h.session })),
      };
    });
    const families = this.pool
      .families()
      .map((f) => ({ family: f, total: this.pool.size(f), used: this.pool.size(f) - this.pool.free(f), free: this.pool.free(f) }));
    return { ranges, families, shared: this.sharedAddr ? { address: this.sharedAddr.address, sessions: sharedIds } : null };
  }

  /** Whether every family of the pool has a VIP left. */
  hasFreeVip(): boolean {
    // The DHCP server knows; every start asks it.
    if (this.leases) return true;
    return this.pool.families().every((f) => this.pool.free(f) > 0);
  }

  /** Whether sessions without a VIP run on the uplink's own address. */
  get sharedFallback(): boolean {
    return this.sharedAddr !== null;
  }

  /** Set once the dataplane failed: the gateway stops every session and should be closed. */
  get error(): Error | null {
    return this.failure;
  }

  session(id: number): GatewaySession | undefined {
    return this.all.get(id);
  }

  /** Every session (starting, running or stopping), in id order. */
  sessions(): GatewaySession[] {
    return [...this.all.values()].sort((a, b) => a.id - b.id);
  }

  /**
   * A logon: takes a VIP, makes the session's namespace and TUN, hands them
   * to the dataplane and starts the program. Throws NoVipError when the pool
   * is empty (unless the gateway has the shared fallback), a UserError for a
   * bad id, VIP or program. The returned session tears itself down when its
   * program exits; `exited` says how it ended.
   */
  async startSession(o: StartOptions): Promise<GatewaySession> {
    if (this.closing) throw new UserError('the gateway is closing');
    if (this.failure) throw new UserError(`the gateway failed: ${this.failure.message}`);
    const id = o.id ?? this.freeId();
    if (!Number.isInteger(id) || id < 1 || id > MAX_SESSION_ID) {
      throw new UserError(`session id ${id}: must be 1-${MAX_SESSION_ID}`, EXIT_USAGE);
    }
    if (this.all.has(id) || this.reserved.has(id)) throw new ConflictError(`session ${id} already exists`);
    let attach: Session['spec']['attach'];
    if (o.attach) {
      // Checking the namespace waits on ip: the id is held meanwhile, as for a VIP being probed.
      this.reserved.add(id);
      try {
        attach = await this.attachSpec(o.attach);
      } catch (e) {
        this.reserved.delete(id);
        throw e;
      }
    } else {
      resolveProgram(o.program, this.runAs);
    }
    // Two starts at once never share an id or a VIP: VIPs leave the pool synchronously, and the id is reserved while
    // on-link VIPs are probed; from then on to the session's entry in `all`, everything is synchronous.
    if (this.leases && o.vip !== undefined) throw new UserError(`--vip ${o.vip}: the pool is leased from DHCP`, EXIT_USAGE);
    let vips: { v4: string | null; v6: string | null } | null;
    try {
      vips = this.leases
        ? await this.reserve(id, () => this.leaseVips(id))
        : this.lan
          ? await this.reserve(id, () => this.takeVipsOnLink(id, o.vip))
          : this.takeVips(o.vip);
    } catch (e) {
      if (attach) {
        this.attaching.delete(attach.identity);
        this.reserved.delete(id);
      }
      throw e;
    }
    // The namespace being attached stays held (attaching) until its session is in `all`.
    if (attach && (vips === null || this.closing)) this.attaching.delete(attach.identity);
    if (vips === null && !this.sharedAddr) {
      this.reserved.delete(id);
      throw new NoVipError();
    }
    const slot = this.slots.take();
    if (slot < 0 || this.closing) {
      if (attach) this.attaching.delete(attach.identity);
      await this.returnVips(id, vips);
      this.reserved.delete(id);
      if (this.closing) throw new UserError('the gateway is closing');
      throw new UserError(`session ${id}: ${this.slots.count} sessions are running, the most this gateway takes at once`);
    }
    const spec = this.specFor(id, vips);
    // Attached: the namespace holds the VIP itself (address mode), and its loopback stays its own.
    const s = new Session(
      attach
        ? {
            ...spec,
            v4: spec.v4 && { vip: spec.v4.vip, inner: spec.v4.vip },
            v6: spec.v6 && { vip: spec.v6.vip, inner: spec.v6.vip },
            loopback: null,
            attach,
          }
        : spec,
    );
    const gs = new GatewaySession(s, { ...o.labels }, this.opts.killGraceMs, this.runAs, { slot, vips });
    this.all.set(id, gs);
    this.reserved.delete(id);
    if (attach) this.attaching.delete(attach.identity);
    // Journaled before it exists, so that a vipnat killed half-way through still has it removed. (An attached
    // session's TUN goes with vipnat's fds, its routes with the TUN: nothing of it outlives vipnat but one rule.)
    if (!attach) gs.own.seq = this.journal.record({ op: 'netns', name: s.netns });
    try {
      await this.attach(gs);
      if (o.after) await o.after.catch(() => undefined);
      if (this.closing || this.failure) throw new UserError('the gateway is closing');
      await s.start(o.program, o.args ?? [], o.env ?? {}, this.runAs, o.stdio ?? 'inherit');
      if (s.spawnError) throw new UserError(`session ${id}: cannot start ${o.program}: ${s.spawnError.message}`);
    } catch (e) {
      s.kill();
      await this.teardown(gs);
      this.all.delete(id);
      gs.ended({ code: null, signal: null });
      throw e;
    }
    const child = s.child!;
    const wasStopped = gs.state === 'stopping';
    gs.state = 'running';
    // A stop asked for while it was starting: the program gets its SIGTERM now.
    if (wasStopped) void gs.stop();
    const status = exitOf(child);
    this.counts.started++;
    void status.then((st) => this.logoff(gs, st));
    this.onEvent({
      event: 'session',
      id,
      vip: gs.vip,
      ...(s.spec.v4 && s.spec.v6 ? { vip6: s.spec.v6.vip } : {}),
      ...(s.spec.shared ? { shared: true } : {}),
      loopback: gs.loopback,
      pid: s.pid,
      netns: s.netns,
      ...(attach ? { attached: true } : {}),
    });
    return gs;
  }

  /** Makes the session's namespace and TUN and hands its queues to the dataplane. */
  private async attach(gs: GatewaySession): Promise<void> {
    const s = gs.inner;
    await s.create();
    const fds = s.fds;
    s.fds = []; // the dataplane owns them from here, whether adding succeeds or not
    gs.own.attached = true;
    await this.dataplane!.addSession(gs.own.slot, fds, {
      shared: s.spec.shared,
      inner4: s.spec.v4 ? parseIpv4(s.spec.v4.inner) : null,
      vip4: s.spec.v4 ? parseIpv4(s.spec.v4.vip) : null,
      inner6: s.spec.v6 ? ipv6Words(s.spec.v6.inner) : null,
      vip6: s.spec.v6 ? ipv6Words(s.spec.v6.vip) : null,
      loopbackId: s.spec.loopback ? gs.id : 0,
    });
    if (!s.spec.attach) await this.reachLoopback(gs);
  }

  /** Checks an attach target and says where the session's routes go. */
  private async attachSpec(t: AttachTarget): Promise<NonNullable<Session['spec']['attach']>> {
    let identity: string;
    try {
      const st = statSync(t.path);
      identity = `${st.dev}:${st.ino}`;
    } catch (e) {
      throw new NotFoundError(
        `${t.name}: no network namespace at ${t.path} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`,
      );
    }
    const own = statSync('/proc/thread-self/ns/net');
    if (identity === `${own.dev}:${own.ino}`) throw new UserError(`${t.name}: that is the gateway's own network namespace`, EXIT_USAGE);
    for (const s of this.all.values()) {
      const other = s.inner.spec.attach?.identity ?? (s.pid > 0 ? identityOf(`/proc/${s.pid}/ns/net`) : null);
      if (other === identity) throw new ConflictError(`${t.name}: that namespace is session ${s.id}'s already`);
    }
    if (this.attaching.has(identity)) throw new ConflictError(`${t.name}: that namespace is being attached already`);
    this.attaching.add(identity);
    try {
      return await this.attachRoutes(t, identity);
    } catch (e) {
      this.attaching.delete(identity);
      throw e;
    }
  }

  private async attachRoutes(t: AttachTarget, identity: string): Promise<NonNullable<Session['spec']['attach']>> {
    const routes = t.routes && t.routes.length > 0 ? t.routes : await this.backendNetworks(t.path);
    if (routes.length === 0) {
      throw new UserError(`${t.name}: this gateway routes to no network but its default route: say which with --route CIDR`, EXIT_USAGE);
    }
    for (const r of routes) {
      if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(r)) throw new UserError(`--route "${r}": must be a CIDR, e.g. 198.18.0.0/24`, EXIT_USAGE);
    }
    return { path: t.path, name: t.name, pid: t.pid ?? -1, identity, routes };
  }

  /**
   * The networks this namespace routes to, its default route, vipnat0's and
   * link-local ones left out: where backends are. Those on-link in the
   * namespace being attached (its own subnets) are left out too: its own
   * neighbours stay reached as they were.
   */
  private async backendNetworks(target: string): Promise<string[]> {
    const families = this.leases ? [4] : this.pool.families();
    const out: string[] = [];
    const routes = async (f: number, ns?: string): Promise<{ dst?: string; dev?: string }[]> =>
      JSON.parse(await ip([`-${f}`, '-j', 'route', 'show', 'table', 'main'], ns).catch(() => '[]')) as { dst?: string; dev?: string }[];
    for (const f of families) {
      const full = (d: string): string => (d.includes('/') ? d : `${d}/${f === 4 ? 32 : 128}`);
      const theirs = new Set((await routes(f, target)).filter((r) => r.dst && r.dst !== 'default').map((r) => full(r.dst!)));
      for (const r of await routes(f)) {
        if (!r.dst || r.dst === 'default' || r.dev === 'vipnat0' || r.dev === 'lo' || r.dst.startsWith('fe80')) continue;
        if (!theirs.has(full(r.dst))) out.push(full(r.dst));
      }
    }
    return out;
  }

  /** Routes a session's virtual loopback from this namespace when the range routed at open() leaves it out, or says why not. */
  private async reachLoopback(gs: GatewaySession): Promise<void> {
    const lb = this.loopbackRoutes;
    if (!lb) return;
    const address = loopbackFor(gs.id);
    const why = lb.inUse.get(loopbackNumber(gs.id));
    if (why !== undefined) {
      this.onEvent({ event: 'loopback-in-use', id: gs.id, address, reason: why });
    } else if (gs.id > lb.maxId) {
      await this.uplink.routeLoopback(gs.id, true);
      gs.own.loopbackRouted = true;
    }
  }

  /** A logoff of session `id`; resolves with how its program ended. */
  stopSession(id: number): Promise<ExitStatus> {
    const s = this.all.get(id);
    if (!s) return Promise.reject(new NotFoundError(`no session ${id}`));
    return s.stop();
  }

  /** Stops every session (one SIGTERM each, SIGKILL after the grace period). */
  stopAll(): void {
    for (const s of this.all.values()) void s.stop();
  }

  /** The processes of each session (its namespace's), from one pass over /proc. */
  sessionPids(sessions: GatewaySession[]): Map<number, number[]> {
    // By the namespace of each session's program: its name may live in another mount namespace (see linux/mounts.ts).
    const inodes = sessions.map((s) => (s.pid > 0 ? netnsOfPid(s.pid) : -1));
    const byNetns = pidsByNetns(inodes);
    return new Map(sessions.map((s, k) => [s.id, inodes[k]! > 0 ? (byNetns.get(inodes[k]!) ?? []) : []]));
  }

  /** Each session's packets and bytes in and out, as a function of the session (zeros once the dataplane is gone). */
  sessionCounters(): (s: GatewaySession) => SessionCounters {
    const dp = this.dataplane;
    return (s) =>
      dp && s.own.attached ? dp.sessionCounters(s.own.slot) : { packets: { in: 0, out: 0 }, bytes: { in: 0, out: 0 }, dropped: 0 };
  }

  /**
   * Copies session `id`'s packets (or, with 'uplink', every packet) to
   * `sink` as pcapng, both sides of the translation as two interfaces,
   * until stopped, `count` packets, or the session's end. Packets the sink
   * cannot take in time are left out and counted, never waited for.
   */
  capture(target: number | 'uplink', sink: CaptureSink, o: Omit<CaptureOptions, 'version'> = {}): Capture {
    const caps = this.captures;
    if (!caps || this.closing) throw new UserError('the gateway is closing');
    const snaplen = o.snaplen ?? DEFAULT_SNAPLEN;
    if (!Number.isInteger(snaplen) || snaplen < 1 || snaplen > MAX_SNAPLEN) {
      throw new UserError(`--snaplen ${o.snaplen}: must be 1-${MAX_SNAPLEN}`, EXIT_USAGE);
    }
    if (o.count !== undefined && !(Number.isInteger(o.count) && o.count >= 1)) {
      throw new UserError(`--count ${o.count}: must be a whole number of 1 or more`, EXIT_USAGE);
    }
    const opts = { snaplen, ...(o.count !== undefined ? { count: o.count } : {}), version: this.opts.version ?? '' };
    if (target === 'uplink') return caps.start('uplink', sink, opts, { inner: 'sessions', outer: 'vipnat0' });
    const gs = this.all.get(target);
    if (!gs || !gs.own.attached || gs.own.tearingDown || gs.state === 'exited') throw new NotFoundError(`no session ${target}`);
    return caps.start({ session: target, slot: gs.own.slot }, sink, opts, { inner: `eth0@session${target}`, outer: 'vipnat0' });
  }

  /** The translator's live flows of these sessions (every session's: null), by session id, at most `limit`. */
  async flows(ids: number[] | null, limit?: number): Promise<FlowView[]> {
    const dp = this.dataplane;
    if (!dp) return [];
    const idOf = new Map<number, number>();
    for (const s of this.all.values()) if (s.own.attached && (ids === null || ids.includes(s.id))) idOf.set(s.own.slot, s.id);
    if (ids !== null && idOf.size === 0) return [];
    const flows = await dp.flows([...idOf.keys()], limit);
    return flows.filter((f) => idOf.has(f.session)).map((f) => ({ ...f, session: idOf.get(f.session)! }));
  }

  /**
   * Each session's sockets as its kernel holds them (sock_diag, in its
   * namespace, no subprocess) and its flows as the translator holds them,
   * for the sessions in `ids` (every session: null; an unknown id throws).
   */
  async sockets(ids: number[] | null): Promise<SessionSockets[]> {
    const list = ids === null ? this.sessions() : ids.map((id) => this.session(id) ?? null);
    const missing = ids?.find((_, k) => list[k] === null);
    if (missing !== undefined) throw new NotFoundError(`no session ${missing}`);
    const sessions = list as GatewaySession[];
    const flows = await this.flows(sessions.map((s) => s.id));
    return sessions.map((s) => {
      // By its program's namespace file: the name may live in another mount namespace (linux/mounts.ts).
      const ns = s.inner.spec.attach ? s.inner.spec.attach.path : s.pid > 0 ? `/proc/${s.pid}/ns/net` : `/run/netns/${s.netns}`;
      let kernel: KernelSocket[] = [];
      let error: string | undefined;
      try {
        kernel = namespaceSockets(ns);
      } catch (e) {
        error = (e as Error).message;
      }
      return {
        id: s.id,
        vip: s.vip,
        vip6: s.vip6,
        netns: s.netns,
        kernel,
        flows: flows.filter((f) => f.session === s.id),
        ...(error !== undefined ? { error } : {}),
      };
    });
  }

  /** Live flows by family, protocol and state, and each session's (by id). */
  async flowStats(byState = false): Promise<{ byState: FlowCount[]; perSession: Map<number, number> }> {
    const dp = this.dataplane;
    if (!dp) return { byState: [], perSession: new Map() };
    const fs = await dp.flowStats(byState);
    const perSession = new Map<number, number>();
    for (const s of this.all.values()) if (s.own.attached) perSession.set(s.id, fs.perSession[s.own.slot] ?? 0);
    return { byState: fs.byState, perSession };
  }

  /** Ends every capture now, each with its statistics (before the control server's connections close). */
  async endCaptures(): Promise<void> {
    await this.captures?.close();
  }

  /** How busy the captures are: how many run. */
  get capturesRunning(): number {
    return this.captures?.running ?? 0;
  }

  private async startPcap(path: string): Promise<void> {
    const file = createWriteStream(path, { mode: 0o600 });
    await new Promise<void>((resolve, reject) => {
      file.once('open', () => resolve());
      file.once('error', (e) => reject(new UserError(`--pcap ${path}: ${e.message}`)));
    });
    // An existing file keeps its mode through open(): make it the owner's only.
    chmodSync(path, 0o600);
    this.pcap = { capture: this.capture('uplink', file), file };
  }

  /** The dataplane's counters now. */
  async stats(): Promise<DataplaneStats | null> {
    return this.dataplane ? this.dataplane.stats().catch(() => null) : null;
  }

  /** Stops every session, then takes the uplink and dataplane down; resolves with the dataplane's last counters. */
  close(): Promise<DataplaneStats | null> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }

  private async shutdown(): Promise<DataplaneStats | null> {
    this.unwatch?.();
    this.stopAll();
    // Sessions still being set up see `closing` and tear themselves down; the others end.
    await Promise.all([...this.all.values()].map((s) => s.exited));
    // Starts still probing or leasing see `closing` when they are done, and give their VIPs back.
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight]);
    await Promise.all([...this.all.values()].map((s) => s.exited));
    await this.captures?.close();
    this.captures = null;
    if (this.pcap) await new Promise<void>((resolve) => this.pcap!.file.end(() => resolve()));
    const stats = this.dataplane ? await this.dataplane.stop().catch(() => null) : null;
    for (const t of this.quarantined.values()) clearTimeout(t);
    this.leases?.close();
    await this.lan?.close();
    await this.uplink.close(this.dataplane !== null);
    this.dataplane = null;
    // /etc/netns goes if vipnat made it and nothing else put files in it since.
    if (!this.etcNetnsWasThere) removeEtcNetnsIfEmpty();
    this.journal.close();
    return stats;
  }

  private fail(e: Error): void {
    if (this.failure) return;
    this.failure = e;
    this.stopAll();
    this.onFailure?.(e);
  }

  /** After the program exited: drain, tear down, give the VIP back, tell. */
  private async logoff(gs: GatewaySession, st: ExitStatus): Promise<void> {
    // Let TCP data the program left in flight reach its peer first (not when stopping).
    if (gs.state !== 'stopping' && !this.closing) await gs.inner.drain(this.opts.drainMs);
    await this.teardown(gs);
    this.all.delete(gs.id);
    this.counts.exited++;
    this.onEvent({ event: 'exit', id: gs.id, vip: gs.vip, ...(gs.shared ? { shared: true } : {}), code: st.code, signal: st.signal });
    gs.ended(st);
  }

  private async teardown(gs: GatewaySession): Promise<void> {
    const own = gs.own;
    own.tearingDown = true;
    if (own.loopbackRouted) await this.uplink.routeLoopback(gs.id, false).catch(() => undefined);
    if (own.attached) this.captures?.endSlot(own.slot);
    try {
      if (this.dataplane && own.attached) await this.dataplane.removeSession(own.slot);
    } catch {
      // A dead dataplane has closed nothing; the process exit closes the fd.
    }
    for (const e of gs.execs.values()) e.child.kill('SIGKILL');
    await gs.inner.destroy().catch(() => undefined);
    if (own.seq !== undefined) this.journal.done(own.seq);
    this.slots.release(own.slot);
    await this.returnVips(gs.id, own.vips);
  }

  /** A session's VIPs go back: a lease to its server, an on-link VIP off the link, a static one to the pool. */
  private async returnVips(id: number, vips: { v4: string | null; v6: string | null } | null): Promise<void> {
    const address = this.leased.get(id);
    if (this.leases && address !== undefined) {
      this.leased.delete(id);
      await this.lan?.release(address);
      await this.uplink.routeVip(address, false).catch(() => undefined);
      this.leases.release(id);
      return;
    }
    await this.releaseOnLink(vips);
    this.giveBack(vips);
  }

  /**
   * With --pool dhcp: leases session `id`'s IPv4 VIP (the client checks an
   * acknowledged address on the link and declines one in use), routes it to
   * vipnat0 and answers for it on the link. Null when no lease could be had.
   */
  private async leaseVips(id: number): Promise<{ v4: string | null; v6: string | null } | null> {
    const leases = this.leases!;
    const lan = this.lan!;
    const r = await leases.lease(id, {
      inUse: async (a) => {
        const address = formatAddress(4, BigInt(a));
        // An address off the link, this namespace's own, or one a session here holds already is not taken, whatever the server says.
        const bad = lan.unusable(address, this.leased.values());
        if (bad !== null) {
          this.onEvent({ event: 'vip-in-use', id, address, dev: lan.link.dev, by: bad, leased: true });
          return true;
        }
        const by = await lan.probe(address);
        if (by !== null) this.onEvent({ event: 'vip-in-use', id, address, dev: lan.link.dev, by, leased: true });
        return by !== null;
      },
      lost: (why) => this.leaseLost(id, why),
    });
    if ('failed' in r) {
      this.onEvent({ event: 'lease-failed', id, dev: leases.dev, why: r.failed });
      return null;
    }
    const address = formatAddress(4, BigInt(r.lease.address));
    this.leased.set(id, address);
    try {
      await this.uplink.routeVip(address, true);
      await lan.claim(address);
    } catch (e) {
      await this.returnVips(id, { v4: address, v6: null });
      throw e;
    }
    return { v4: address, v6: null };
  }

  /** A session's lease ended: it stops, as a Remote Desktop session whose address went would lose its network. */
  private leaseLost(id: number, why: string): void {
    const address = this.leased.get(id) ?? '?';
    this.onEvent({ event: 'lease-lost', id, address, why });
    this.stopSession(id).catch(() => undefined);
  }

  /**
   * Runs `fn` with session id `id` reserved: no other start takes it
   * meanwhile. The reservation stays when `fn` succeeds (startSession drops it
   * once the session is in `all`); the gateway's close waits for `fn`.
   */
  private async reserve<T>(id: number, fn: () => Promise<T>): Promise<T> {
    this.reserved.add(id);
    const p = fn();
    this.inFlight.add(p);
    try {
      return await p;
    } catch (e) {
      this.reserved.delete(id);
      throw e;
    } finally {
      this.inFlight.delete(p);
    }
  }

  /**
   * takeVips() for a pool with on-link ranges: each on-link VIP is first
   * asked for on the link; one that something answers for is reported, kept
   * out of the pool for a while, and another taken. The VIPs it returns are
   * answered for (proxy entries) and announced.
   */
  private async takeVipsOnLink(id: number, want?: string): Promise<{ v4: string | null; v6: string | null } | null> {
    const lan = this.lan!;
    for (let tries = 0; ; tries++) {
      const vips = this.takeVips(want);
      if (vips === null) return null;
      const covered = [vips.v4, vips.v6].filter((a): a is string => a !== null && lan.covers(a));
      const answers = await Promise.all(covered.map((a) => lan.probe(a)));
      const busy = covered.filter((_, k) => answers[k] !== null);
      if (busy.length === 0) {
        try {
          for (const a of covered) await lan.claim(a);
        } catch (e) {
          for (const a of covered) await lan.release(a);
          this.giveBack(vips);
          throw e;
        }
        return vips;
      }
      for (const [k, a] of covered.entries()) {
        const by = answers[k];
        if (!by) continue;
        this.onEvent({ event: 'vip-in-use', id, address: a, dev: lan.link.dev, by });
        this.quarantine(a);
      }
      for (const a of [vips.v4, vips.v6]) if (a && !busy.includes(a)) this.pool.release(a);
      if (lan.collided) {
        // Another gateway probed the same address at the same moment: both skip it; a random wait keeps them apart next time.
        lan.collided = false;
        await new Promise((r) => setTimeout(r, 50 + Math.random() * 400));
      }
      if (want !== undefined) throw new ConflictError(`--vip ${want}: in use on ${lan.link.dev} (answered by ${answers.find((x) => x)})`);
      if (this.closing || tries >= 64) return null;
    }
  }

  /** Keeps an on-link VIP found in use out of the pool for IN_USE_RETRY_MS, then gives it back to be tried again. */
  private quarantine(address: string): void {
    const t = setTimeout(() => {
      this.quarantined.delete(address);
      this.pool.release(address);
    }, IN_USE_RETRY_MS);
    t.unref();
    this.quarantined.set(address, t);
  }

  /** Stops answering for a session's on-link VIPs. */
  private async releaseOnLink(vips: { v4: string | null; v6: string | null } | null): Promise<void> {
    const lan = this.lan;
    if (!lan || !vips) return;
    for (const a of [vips.v4, vips.v6]) if (a && lan.covers(a)) await lan.release(a);
  }

  private freeId(): number {
    for (let id = 1; id <= MAX_SESSION_ID; id++) if (!this.all.has(id) && !this.reserved.has(id)) return id;
    throw new UserError(`every session id (1-${MAX_SESSION_ID}) is in use`);
  }

  /** One VIP of every family the pool has (`want`, if given, for its family), or null when a family is empty. */
  private takeVips(want?: string): { v4: string | null; v6: string | null } | null {
    const families = this.pool.families();
    let wanted: { family: Family; text: string } | null = null;
    if (want !== undefined) {
      const a = parseAddress(want.trim());
      if (!a || !this.pool.contains(want)) throw new UserError(`--vip ${want}: not an address of the pool (${this.opts.pool})`, EXIT_USAGE);
      if (!this.pool.takeAddress(want)) throw new ConflictError(`--vip ${want}: already taken by another session`);
      wanted = { family: a.family, text: want.trim() };
    }
    const take = (f: Family): string | null => (wanted?.family === f ? wanted.text : families.includes(f) ? this.pool.take(f) : null);
    const v4 = take(4);
    const v6 = take(6);
    if ((families.includes(4) && v4 === null) || (families.includes(6) && v6 === null)) {
      this.giveBack({ v4, v6 });
      return null;
    }
    return { v4, v6 };
  }

  private giveBack(vips: { v4: string | null; v6: string | null } | null): void {
    if (vips?.v4) this.pool.release(vips.v4);
    if (vips?.v6) this.pool.release(vips.v6);
  }

  private specFor(id: number, vips: { v4: string | null; v6: string | null } | null): Session['spec'] {
    const loopback = this.loopbackRoutes ? { portLo: LOOPBACK_PORT_LO, portHi: LOOPBACK_PORT_HI } : null;
    const common = { id, mtu: this.opts.mtu, offload: this.opts.offload, queues: this.workers, loopback };
    if (vips === null) {
      // Shared fallback: IPv4 only, from the uplink's own address.
      return { ...common, v4: { vip: this.sharedAddr!.address, inner: this.inner.v4 ?? DEFAULT_SHARED_INNER }, v6: null, shared: true };
    }
    return {
      ...common,
      v4: vips.v4 === null ? null : { vip: vips.v4, inner: this.inner.v4 ?? vips.v4 },
      v6: vips.v6 === null ? null : { vip: vips.v6, inner: this.inner.v6 ?? vips.v6 },
      shared: false,
    };
  }
}

/** How long an on-link VIP found in use stays out of the pool before it is tried again. */
const IN_USE_RETRY_MS = 60_000;

interface LoopbackRoutes {
  maxId: number;
  /** Addresses of 127/8 this namespace uses (as numbers), with what uses them. */
  inUse: Map<number, string>;
}

/** Routes the virtual loopback of sessions 1-maxId from this namespace, but for the addresses it already uses. */
async function openLoopback(uplink: Uplink, maxId: number): Promise<LoopbackRoutes> {
  const inUse = await loopbackInUse();
  await uplink.enableLoopback(maxId, new Set(inUse.keys()));
  return { maxId, inUse };
}

/** Gives the dataplane this namespace's addresses now and whenever they change; returns the function that stops it. */
async function watchLocal(dp: Dataplane): Promise<() => void> {
  const push = async (): Promise<void> => {
    const a = await localAddresses();
    await dp.setLocalAddresses(a.v4.map(parseIpv4), a.v6.map(ipv6Words));
  };
  // Watch first: an address added between the first reading and the watch is not missed.
  const stop = watchAddresses(() => void push().catch(() => undefined));
  await push();
  return stop;
}

/** `dhcp` or `dhcp:DEV` as --pool: the interface named, if any; null for a static pool. */
function dhcpPool(spec: string): { dev: string | undefined } | null {
  const m = /^\s*dhcp(?::(\S+))?\s*$/.exec(spec);
  return m ? { dev: m[1] } : null;
}

/** --inner-address with --pool dhcp: one IPv4 address (leases are IPv4). */
function dhcpInner(text: string | undefined): string | null {
  if (text === undefined) return null;
  const a = parseAddress(text.trim());
  if (!a || a.family !== 4) throw new UserError(`--inner-address ${text}: with --pool dhcp, one IPv4 address`, EXIT_USAGE);
  return text.trim();
}

function parsePool(spec: string): { pool: VipPool; ranges: AddressRange[] } {
  try {
    const ranges = parseRanges(spec);
    return { pool: new VipPool(ranges), ranges };
  } catch (e) {
    if (e instanceof PoolError) throw new UserError(e.message, EXIT_USAGE);
    throw e;
  }
}

/** An IPv6 address as four unsigned 32-bit words, the dataplane's form. */
function ipv6Words(text: string): number[] {
  const a = parseAddress(text);
  if (!a || a.family !== 6) throw new Error(`not an IPv6 address: ${text}`);
  return [3, 2, 1, 0].map((k) => Number((a.value >> BigInt(32 * k)) & 0xffffffffn));
}
