// The translator's facade: the Nat class the dataplane drives, holding the sessions and dispatching each packet by family and path.
//
// A packet from a session or from the uplink goes first to the IPv4 fast
// path (fast4.ts), which takes the common packet of a flow that exists, and
// otherwise to the general path of its family: translate4.ts for IPv4,
// translate6.ts for IPv6. ICMP errors (icmp.ts) and the shared fallback
// (shared.ts) sit behind the general paths. Flow states and timeouts are in
// state.ts. Every path shares the facade's flow tables and counters; the
// facade counts packets in, and keeps the options and the shared memory
// several threads' translators work over.

import { FlowTable, FlowTable6, randomSeed } from './flows.js';
import { Fast4 } from './fast4.js';
import { Sessions4 } from './registry.js';
import { SharedFallback } from './shared.js';
import { DEFAULT_TIMEOUTS, DROP, NatCounters, Reply, type Timeouts } from './state.js';
import { Nat4 } from './translate4.js';
import { Nat6 } from './translate6.js';
import { DEFAULT_LOOPBACK_FLOWS, Loopback4 } from './loopback.js';
import { DEFAULT_SHARED_PORT_QUOTA, PortAllocator } from './ports.js';

export interface NatOptions {
  /** Highest session id that will be added. */
  maxSession: number;
  flowCapacity: number;
  /** IPv6 flow table capacity (default: a quarter of flowCapacity, at least 1024). */
  flowCapacity6?: number;
  timeouts?: Timeouts;
  seed?: number;
  /**
   * The shared fallback: sessions added with addSharedSession leave from
   * this uplink address, with outer ports from portLo-portHi.
   */
  shared?: { address: number; portLo: number; portHi: number };
  /**
   * Flow tables and port allocator in shared memory (from natMemory()), so
   * that translators in several threads keep one state. Its seed and
   * capacities win over `seed`, `flowCapacity` and `flowCapacity6`. The
   * translator does not lock: threads must serialize their calls into it.
   */
  memory?: NatMemory;
  /** false: every packet takes the general path (for tests that hold the fast path to it). Default true. */
  fastPath?: boolean;
  /**
   * The most live flows one session may hold in each family's table (default
   * defaultSessionFlowLimit of that table's capacity). A session at its limit
   * evicts its own oldest evictable flow for a new one; with none, the new
   * flow is refused (counters.sessionFlowLimit).
   */
  sessionFlowLimit?: number;
  /**
   * Outer ports of the shared address one shared session may hold, per
   * protocol (TCP ports, UDP ports, echo identifiers; default
   * DEFAULT_SHARED_PORT_QUOTA). A new mapping past it is refused
   * (counters.portQuota).
   */
  sharedPortQuota?: number;
  /**
   * Packets from sessions to the uplink's own addresses (setLocalAddresses)
   * are answered with ICMP "administratively prohibited" instead of being
   * forwarded (REPLY). Default false.
   */
  blockLocal?: boolean;
  /**
   * The virtual loopback (loopback.ts): packets from the uplink to 127.0.0.1
   * + id reach session id's 127.0.0.1, and so do a session's own to its
   * 127.0.0.1 + id. Default false: 127/8 packets are dropped as before.
   */
  loopback?: boolean;
  /** Flows the virtual loopback tracks (default DEFAULT_LOOPBACK_FLOWS). */
  loopbackFlows?: number;
}

/** The per-session flow limit of a table of `capacity` flows unless NatOptions.sessionFlowLimit says otherwise. */
export function defaultSessionFlowLimit(capacity: number): number {
  return Math.max(1024, Math.floor(capacity / 16));
}

function checkLimit(name: string, v: number | undefined): void {
  if (v !== undefined && !(Number.isInteger(v) && v >= 1)) throw new RangeError(`${name} ${v}: must be a whole number of 1 or more`);
}

/** What translators in several threads share: the flow tables and the shared address's ports. */
export interface NatMemory {
  seed: number;
  flowCapacity: number;
  flowCapacity6: number;
  flows: SharedArrayBuffer;
  flows6: SharedArrayBuffer;
  ports: SharedArrayBuffer | null;
  loopbackFlows: number;
  /** The virtual loopback's flows; null without it. */
  loopback: SharedArrayBuffer | null;
}

function capacity6(opts: NatOptions): number {
  return opts.flowCapacity6 ?? Math.max(1024, opts.flowCapacity >> 2);
}

/** Allocates (and sets up) the shared state for translators built with these options in several threads. */
export function natMemory(opts: NatOptions): NatMemory {
  const flowCapacity6 = capacity6(opts);
  const m: NatMemory = {
    seed: opts.seed ?? randomSeed(),
    flowCapacity: opts.flowCapacity,
    flowCapacity6,
    flows: new SharedArrayBuffer(FlowTable.bytesFor(opts.flowCapacity, opts.maxSession)),
    flows6: new SharedArrayBuffer(FlowTable6.bytesFor(flowCapacity6, opts.maxSession)),
    ports: opts.shared ? new SharedArrayBuffer(PortAllocator.bytesFor(opts.maxSession)) : null,
    loopbackFlows: opts.loopbackFlows ?? DEFAULT_LOOPBACK_FLOWS,
    loopback: opts.loopback
      ? new SharedArrayBuffer(Loopback4.bytesFor(opts.loopbackFlows ?? DEFAULT_LOOPBACK_FLOWS, opts.maxSession))
      : null,
  };
  // Constructing a translator over the memory sets it up.
  new Nat({ ...opts, memory: m });
  return m;
}

export class Nat {
  readonly flows: FlowTable;
  readonly counters = new NatCounters();
  /** The IPv6 half: sessions' IPv6 addresses and flows. */
  readonly v6: Nat6;
  /**
   * Packets the fast path took from start to end, of those counted in
   * counters.fromSession and counters.fromUplink (the rest took the general
   * path). Not a NatCounters field: the dataplane's counters say what
   * happened to packets, and this says only how.
   */
  fastPathPackets = 0;
  private readonly reply = new Reply();
  private readonly sessions: Sessions4;
  private readonly shared: SharedFallback | null;
  private readonly v4: Nat4;
  /** null when NatOptions.fastPath is false. */
  private readonly fast: Fast4 | null;
  /** The virtual loopback; null without it. */
  readonly loopback: Loopback4 | null;

  constructor(opts: NatOptions) {
    checkLimit('sessionFlowLimit', opts.sessionFlowLimit);
    checkLimit('sharedPortQuota', opts.sharedPortQuota);
    const blockLocal = opts.blockLocal ?? false;
    const mem = opts.memory;
    this.flows = mem
      ? new FlowTable(mem.flowCapacity, mem.seed, mem.flows, opts.maxSession)
      : new FlowTable(opts.flowCapacity, opts.seed, undefined, opts.maxSession);
    const timeouts = opts.timeouts ?? DEFAULT_TIMEOUTS;
    const cap6 = mem ? mem.flowCapacity6 : capacity6(opts);
    const limit6 = opts.sessionFlowLimit ?? defaultSessionFlowLimit(cap6);
    this.v6 = new Nat6(
      opts.maxSession,
      cap6,
      limit6,
      blockLocal,
      this.counters,
      timeouts,
      this.reply,
      mem ? mem.seed : opts.seed,
      mem?.flows6,
    );
    if (opts.shared && mem && !mem.ports) throw new Error("shared memory without the shared address's ports");
    const quota = opts.sharedPortQuota ?? DEFAULT_SHARED_PORT_QUOTA;
    this.shared = opts.shared
      ? new SharedFallback(opts.shared, opts.maxSession, quota, mem?.ports ?? undefined, this.flows, this.counters)
      : null;
    this.sessions = new Sessions4(opts.maxSession, this.shared ? this.shared.address : -1);
    const limit = opts.sessionFlowLimit ?? defaultSessionFlowLimit(this.flows.capacity);
    if (opts.loopback && mem && !mem.loopback) throw new Error("shared memory without the virtual loopback's flows");
    this.loopback = opts.loopback
      ? new Loopback4(
          opts.maxSession,
          mem ? mem.loopbackFlows : (opts.loopbackFlows ?? DEFAULT_LOOPBACK_FLOWS),
          mem ? mem.seed : opts.seed,
          mem?.loopback ?? undefined,
          this.counters,
          this.reply,
        )
      : null;
    this.v4 = new Nat4(this.flows, this.sessions, this.shared, this.counters, timeouts, limit, blockLocal, this.reply, this.loopback);
    this.fast = (opts.fastPath ?? true) ? new Fast4(this.flows, this.sessions, timeouts) : null;
  }

  /**
   * Makes session `id`'s 127.0.0.1 reachable at 127.0.0.1 + `loopbackId`
   * (the gateway's id of the session, which its slot `id` here need not be),
   * with NatOptions.loopback; else nothing.
   */
  addLoopback(id: number, loopbackId: number = id): void {
    this.loopback?.add(id, loopbackId);
  }

  /** Adds a session without a VIP of its own: its IPv4 flows leave from the shared address, port-translated. */
  addSharedSession(id: number, inner: number): void {
    if (!this.shared) throw new Error('no shared address configured');
    this.sessions.addShared(id, inner);
  }

  /** Outer ports in use on the shared address, per protocol (TCP, UDP, ICMP). */
  sharedPortsInUse(): number[] {
    return this.shared ? this.shared.inUse() : [0, 0, 0];
  }

  addSession(id: number, inner: number, vip: number): void {
    this.sessions.add(id, inner, vip);
  }

  /** Gives session `id` an IPv6 inner address and VIP (four 32-bit words each). */
  addSession6(id: number, inner: ArrayLike<number>, vip: ArrayLike<number>): void {
    this.v6.addSession(id, inner, vip);
  }

  /**
   * Ends session `id`: its packets are dropped from now on. With `dropFlows`
   * false its flows stay until dropFlows(id): translators in several threads
   * all forget the session first, then one of them drops its flows, so that
   * no thread can create a flow for it after they are gone.
   */
  removeSession(id: number, dropFlows = true): void {
    this.v6.removeSession(id, false);
    this.sessions.remove(id);
    this.loopback?.remove(id);
    if (dropFlows) this.dropFlows(id);
  }

  /** Drops every flow (both families) of a session that was removed; shared ports go back through onRemove. */
  dropFlows(id: number): void {
    this.flows.removeSession(id);
    this.v6.flows.removeSession(id);
    this.loopback?.dropFlows(id);
  }

  /**
   * The uplink's own addresses: IPv4 as numbers, IPv6 as four 32-bit words
   * each. With blockLocal, sessions' packets to them are refused, and (with
   * `dropFlows`) the flows with them are dropped now; translators in several
   * threads each take the addresses, then one drops the flows (dropLocalFlows).
   */
  setLocalAddresses(v4: readonly number[], v6: readonly (readonly number[])[], dropFlows = true): void {
    for (const w of v6) {
      if (w.length !== 4) throw new RangeError(`local IPv6 address [${w.join(', ')}]: must be four 32-bit words`);
    }
    this.v4.setLocalAddresses(v4);
    this.v6.setLocalAddresses(v6);
    if (dropFlows) this.dropLocalFlows();
  }

  /** Drops every flow (both families) with a blocked address; returns how many. Nothing without blockLocal. */
  dropLocalFlows(): number {
    return this.v4.dropLocalFlows() + this.v6.dropLocalFlows();
  }

  /** Bytes of the reply written in place when a call returns REPLY. */
  get replyLength(): number {
    return this.reply.length;
  }

  /** Live flows, both families. */
  get flowCount(): number {
    return this.flows.count + this.v6.flows.count + (this.loopback?.flows.count ?? 0);
  }

  /** The session holding `vip`, or 0. */
  sessionOf(vip: number): number {
    return this.sessions.byVip.get(vip);
  }

  /** Drops idle flows; call about once a second with a slice budget. */
  expire(now: number, budget?: number): void {
    this.counters.flowsExpired += this.flows.expire(now, budget) + this.v6.flows.expire(now, budget);
    if (this.loopback !== null) this.counters.flowsExpired += this.loopback.expire(now, budget);
  }

  /**
   * Translates a packet that session `id` sent. Returns TO_UPLINK, another
   * session's id (hairpin: the packet is already translated for it), REPLY
   * (blockLocal: see replyLength) or DROP. `csumAt` is where the transport
   * checksum is when the device will finish it (TUN offload), else -1.
   */
  fromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt = -1): number {
    // Kept small so the compiler inlines the fast path into the caller's loop. The general path is
    // a call away and stays one: IPv4's is straight behind this and too big for V8 to inline (over
    // its 460 bytes of bytecode), every other family behind a call of its own.
    this.counters.fromSession++;
    if (this.fast !== null) {
      const v = this.fast.fromSession(id, buf, off, len, now, csumAt);
      // A verdict of 0 or more: the fast path took it (it says SLOW, negative, for what it leaves).
      if (v >= 0) {
        this.fastPathPackets++;
        return v;
      }
    }
    if (len > 0 && buf[off]! >>> 4 === 4) return this.v4.fromSession(id, buf, off, len, now, csumAt);
    return this.otherFromSession(id, buf, off, len, now, csumAt);
  }

  /**
   * Translates a packet from the uplink. Returns the id of the session to
   * deliver it to, DROP, TO_UPLINK for a packet to the shared address that
   * belongs to no session's flow (it goes back to the uplink's own stack), or
   * REPLY: the buffer holds an answer for the uplink (a reset or ICMP error
   * for the virtual loopback of a session that is not running).
   * `csumAt` as for fromSession.
   */
  fromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt = -1): number {
    // As fromSession.
    this.counters.fromUplink++;
    if (this.fast !== null) {
      const v = this.fast.fromUplink(buf, off, len, now, csumAt);
      if (v >= 0) {
        this.fastPathPackets++;
        return v;
      }
    }
    if (len > 0 && buf[off]! >>> 4 === 4) return this.v4.fromUplink(buf, off, len, now, csumAt);
    return this.otherFromUplink(buf, off, len, now, csumAt);
  }

  /** The general path of a session's packet that is not IPv4. */
  private otherFromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    if (len < 1) return this.malformed();
    if (buf[off]! >>> 4 === 6) return this.v6.fromSession(id, buf, off, len, now, csumAt);
    this.counters.otherFamily++;
    return DROP;
  }

  /** The general path of an uplink packet that is not IPv4. */
  private otherFromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    if (len < 1) return this.malformed();
    if (buf[off]! >>> 4 === 6) return this.v6.fromUplink(buf, off, len, now, csumAt);
    this.counters.otherFamily++;
    return DROP;
  }

  private malformed(): number {
    this.counters.malformed++;
    return DROP;
  }
}
