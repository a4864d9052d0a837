// The translator: per-packet policy between session TUNs and the uplink, over the flow table.
//
// Each session has an inner address (what its eth0 holds) and a VIP (what the
// network sees). In address mode they are equal and every rewrite below is
// skipped; in NAT mode the source is rewritten inner -> VIP on the way out and
// the destination VIP -> inner on the way in, with RFC 1624 checksum updates.
// Because the mapping is one-to-one per session, a packet can always be
// translated even without a flow (table full, a non-first fragment, a protocol
// without ports); flows add state, timeouts and accounting on top.
//
// Flow states and timeouts are in state.ts; IPv6 packets go to translate6.ts.
//
// With blockLocal, a packet from a session to one of the uplink's own
// addresses (setLocalAddresses) is not forwarded: the buffer is turned into
// an ICMP "communication administratively prohibited" for the session. Only
// the general path checks, for every packet: no flow to (or from) a blocked
// address is ever created, and setLocalAddresses drops those that were, so
// the fast path, which takes only packets of existing flows, never sees one.

import { FlowTable, FlowTable6, NO_FLOW, portsWord, randomSeed, ROOM_EVICTED, ROOM_SESSION_LIMIT, ROOM_TABLE_FULL } from './flows.js';
import { FlowKey } from './key.js';
import { NO_SESSION, Vip4Index } from './vips.js';
import { Nat6 } from './translate6.js';
import { advance, DEFAULT_TIMEOUTS, DROP, NatCounters, REPLY, STATE_FREE, TO_UPLINK, type Timeouts } from './state.js';
import {
  Icmp4,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  Ipv4,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  Tcp,
  Udp,
  finish,
  read16,
  sum,
  read32,
  update16,
  update32,
  updatePartial32,
  write16,
  write32,
} from '../wire/index.js';
import { DEFAULT_SHARED_PORT_QUOTA, PortAllocator, PORTS_QUOTA, portSlot } from './ports.js';

/** readTransport() results besides DROP. */
const NO_PORTS = 0;
const HAS_PORTS = 1;
const IS_ERROR = 2;

/** The fast path's answer for a packet it leaves, unchanged, to the general path. */
const SLOW = -2;

/** An ICMP error about a blocked packet fits 576 bytes (RFC 1812 4.3.2.3): IP header, ICMP header, quote. */
const REPLY_MAX = 576;

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
  private readonly timeouts: Timeouts;
  private readonly innerOf: Uint32Array;
  private readonly vipOf: Uint32Array;
  private readonly active: Uint8Array;
  /** 1 for sessions on the shared address (no VIP of their own). */
  private readonly sharedSession: Uint8Array;
  private readonly byVip: Vip4Index;
  /** The shared address (0 when there is no shared fallback) and its ports. */
  private readonly sharedAddr: number;
  private readonly ports: PortAllocator | null;
  private readonly ip = new Ipv4();
  private readonly tcp = new Tcp();
  private readonly udp = new Udp();
  private readonly icmp = new Icmp4();
  // Views for the packet quoted inside an ICMP error.
  private readonly qip = new Ipv4();
  /** The packet's flow key and flags, set by readTransport(). */
  private readonly key = new FlowKey();
  /** Where the transport checksum field is when the device will finish it (partial), else -1. */
  private csumAt = -1;
  /** Ports of the quoted packet, set by quotedPorts(). */
  private qLocal = 0;
  private qRemote = 0;
  private readonly fast: boolean;
  /** Live IPv4 flows a session may hold. */
  private readonly flowLimit: number;
  private readonly blockLocal: boolean;
  /** The uplink's own IPv4 addresses (blocked when blockLocal). */
  private local4 = new Vip4Index(1);
  /** Bytes of the reply written in place when a call returns REPLY. */
  replyLength = 0;

  constructor(opts: NatOptions) {
    checkLimit('sessionFlowLimit', opts.sessionFlowLimit);
    checkLimit('sharedPortQuota', opts.sharedPortQuota);
    this.fast = opts.fastPath ?? true;
    this.blockLocal = opts.blockLocal ?? false;
    const mem = opts.memory;
    this.flows = mem
      ? new FlowTable(mem.flowCapacity, mem.seed, mem.flows, opts.maxSession)
      : new FlowTable(opts.flowCapacity, opts.seed, undefined, opts.maxSession);
    this.timeouts = opts.timeouts ?? DEFAULT_TIMEOUTS;
    this.flowLimit = opts.sessionFlowLimit ?? defaultSessionFlowLimit(this.flows.capacity);
    const cap6 = mem ? mem.flowCapacity6 : capacity6(opts);
    const limit6 = opts.sessionFlowLimit ?? defaultSessionFlowLimit(cap6);
    this.v6 = new Nat6(
      opts.maxSession,
      cap6,
      limit6,
      this.blockLocal,
      this.counters,
      this.timeouts,
      mem ? mem.seed : opts.seed,
      mem?.flows6,
    );
    this.innerOf = new Uint32Array(opts.maxSession + 1);
    this.vipOf = new Uint32Array(opts.maxSession + 1);
    this.active = new Uint8Array(opts.maxSession + 1);
    this.byVip = new Vip4Index(opts.maxSession);
    this.sharedSession = new Uint8Array(opts.maxSession + 1);
    this.sharedAddr = opts.shared?.address ?? 0;
    if (opts.shared && mem && !mem.ports) throw new Error("shared memory without the shared address's ports");
    this.ports = opts.shared
      ? new PortAllocator(
          opts.shared.portLo,
          opts.shared.portHi,
          mem?.ports ?? undefined,
          opts.maxSession,
          opts.sharedPortQuota ?? DEFAULT_SHARED_PORT_QUOTA,
        )
      : null;
    if (this.ports) {
      const flows = this.flows;
      const ports = this.ports;
      const shared = this.sharedAddr;
      // A shared flow's outer port goes back with the flow (expiry, session
      // end). Only shared sessions' flows leave from the shared address; the
      // flow itself says so, whichever thread's translator removes it.
      flows.onRemove = (f) => {
        if (flows.outerAddrOf(f) === shared) ports.release(portSlot(flows.protoOf(f)), flows.outerPortOf(f));
      };
    }
  }

  /** Adds a session without a VIP of its own: its IPv4 flows leave from the shared address, port-translated. */
  addSharedSession(id: number, inner: number): void {
    if (!this.ports) throw new Error('no shared address configured');
    if (!(id >= 1 && id < this.active.length)) throw new RangeError(`session id ${id}: must be 1-${this.active.length - 1}`);
    if (this.active[id]) throw new Error(`session ${id} is already active`);
    this.innerOf[id] = inner;
    this.vipOf[id] = this.sharedAddr;
    this.sharedSession[id] = 1;
    this.active[id] = 1;
  }

  /** Outer ports in use on the shared address, per protocol (TCP, UDP, ICMP). */
  sharedPortsInUse(): number[] {
    return this.ports ? [...this.ports.used] : [0, 0, 0];
  }

  addSession(id: number, inner: number, vip: number): void {
    if (!(id >= 1 && id < this.active.length)) throw new RangeError(`session id ${id}: must be 1-${this.active.length - 1}`);
    if (this.active[id]) throw new Error(`session ${id} is already active`);
    if (this.byVip.get(vip) !== NO_SESSION) throw new Error(`VIP ${vip >>> 0} is already held by session ${this.byVip.get(vip)}`);
    this.innerOf[id] = inner;
    this.vipOf[id] = vip;
    this.active[id] = 1;
    this.byVip.set(vip, id);
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
    if (this.active[id]) {
      this.active[id] = 0;
      if (!this.sharedSession[id]) this.byVip.delete(this.vipOf[id]!);
      this.sharedSession[id] = 0;
    }
    if (dropFlows) this.dropFlows(id);
  }

  /** Drops every flow (both families) of a session that was removed; shared ports go back through onRemove. */
  dropFlows(id: number): void {
    this.flows.removeSession(id);
    this.v6.flows.removeSession(id);
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
    const index = new Vip4Index(Math.max(1, v4.length));
    for (const a of v4) index.set(a >>> 0, 1);
    this.local4 = index;
    this.v6.setLocalAddresses(v6);
    if (dropFlows) this.dropLocalFlows();
  }

  /** Drops every flow (both families) with a blocked address; returns how many. Nothing without blockLocal. */
  dropLocalFlows(): number {
    if (!this.blockLocal) return 0;
    const t = this.flows;
    let dropped = 0;
    for (let f = 0; f < t.capacity; f++) {
      if (t.stateOf(f) !== 0 && this.local4.get(t.remoteAddrOf(f)) !== NO_SESSION) {
        t.remove(f);
        dropped++;
      }
    }
    return dropped + this.v6.dropLocalFlows();
  }

  /** Live flows, both families. */
  get flowCount(): number {
    return this.flows.count + this.v6.flows.count;
  }

  /** The session holding `vip`, or 0. */
  sessionOf(vip: number): number {
    return this.byVip.get(vip);
  }

  /** Drops idle flows; call about once a second with a slice budget. */
  expire(now: number, budget?: number): void {
    this.counters.flowsExpired += this.flows.expire(now, budget) + this.v6.flows.expire(now, budget);
  }

  /**
   * Translates a packet that session `id` sent. Returns TO_UPLINK, another
   * session's id (hairpin: the packet is already translated for it), or DROP.
   */
  fromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt = -1): number {
    // Kept small so the compiler inlines the fast path into the caller's loop; the rest is a call away.
    // REPLY (blockLocal) comes from the general path only.
    this.counters.fromSession++;
    this.csumAt = csumAt;
    const fast = this.fast ? this.fastFromSession(id, buf, off, len, now) : SLOW;
    return fast !== SLOW ? fast : this.slowFromSession(id, buf, off, len, now, csumAt);
  }

  private slowFromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    const c = this.counters;
    const ip = this.ip;
    if (len < 1) return this.malformed();
    const version = buf[off]! >>> 4;
    if (version !== 4) {
      if (version === 6) {
        const v = this.v6.fromSession(id, buf, off, len, now, csumAt);
        if (v === REPLY) this.replyLength = this.v6.replyLength;
        return v;
      }
      c.otherFamily++;
      return DROP;
    }
    if (!ip.attach(buf, off, len) || !this.active[id]) {
      c.malformed++;
      return DROP;
    }
    const inner = this.innerOf[id]!;
    const outer = this.vipOf[id]!;
    if (ip.src !== inner) {
      // Anti-spoofing: a session can only ever appear as itself.
      c.spoofed++;
      return DROP;
    }
    const proto = ip.protocol;
    const remote = ip.dst;
    if (this.blockLocal && this.local4.get(remote) !== NO_SESSION) return this.prohibit(inner, remote);
    const t = this.readTransport(true);
    if (t === DROP) return DROP;
    if (t === IS_ERROR && !this.sessionError(id, inner, outer)) return DROP;
    let f = NO_FLOW;
    if (t === HAS_PORTS) {
      const lport = this.key.localPort;
      const rport = this.key.remotePort;
      f = this.flows.lookupInner(id, proto, inner, lport, remote, rport);
      if (f === NO_FLOW) {
        f = this.newFlow(id, proto, inner, lport, outer, remote, rport);
        // A shared session cannot leave without a port of its own.
        if (f === NO_FLOW && this.sharedSession[id]) return DROP;
      }
      if (f !== NO_FLOW) advance(this.flows, f, proto, this.key.tcpFlags, true, now, this.timeouts);
    }

    if (inner !== outer) {
      ip.setSrc(outer);
      this.updateTransport(t, proto, inner, outer);
    }
    if (f !== NO_FLOW && this.flows.outerPortOf(f) !== this.key.localPort) this.setLocalPort(proto, true, this.flows.outerPortOf(f));

    if (this.byVip.get(remote) !== NO_SESSION || (remote === this.sharedAddr && this.ports !== null)) {
      // Hairpin: deliver straight to the session holding the destination
      // (or, for the shared address, back to the uplink's own stack).
      c.hairpin++;
      c.fromUplink--; // counted once, as a session packet
      return this.fromUplink(buf, off, len, now);
    }
    return TO_UPLINK;
  }

  /**
   * Translates a packet from the uplink. Returns the id of the session to
   * deliver it to, DROP, or TO_UPLINK for a packet to the shared address that
   * belongs to no session's flow: it goes back to the uplink's own stack.
   */
  fromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt = this.csumAt): number {
    this.counters.fromUplink++;
    this.csumAt = csumAt;
    const fast = this.fast ? this.fastFromUplink(buf, off, len, now) : SLOW;
    return fast !== SLOW ? fast : this.slowFromUplink(buf, off, len, now, csumAt);
  }

  private slowFromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    const c = this.counters;
    const ip = this.ip;
    if (len < 1) return this.malformed();
    const version = buf[off]! >>> 4;
    if (version !== 4) {
      if (version === 6) return this.v6.fromUplink(buf, off, len, now, csumAt);
      c.otherFamily++;
      return DROP;
    }
    if (!ip.attach(buf, off, len)) return this.malformed();
    const outer = ip.dst;
    let id = this.byVip.get(outer);
    const toShared = id === 0 && outer === this.sharedAddr && this.ports !== null;
    if (id === 0 && !toShared) {
      c.noSession++;
      return DROP;
    }
    const proto = ip.protocol;
    const remote = ip.src;
    const t = this.readTransport(false);
    if (t === DROP) return DROP;
    let f = NO_FLOW;
    if (t === IS_ERROR) {
      id = this.uplinkError(id, outer);
      if (id === 0) return toShared ? this.reflect() : DROP;
    } else if (t === HAS_PORTS) {
      const lport = this.key.localPort;
      const rport = this.key.remotePort;
      f = this.flows.lookupOuter(proto, outer, lport, remote, rport);
      if (toShared) {
        // An echo request is never a reply to a session: the machine itself answers it.
        if (f === NO_FLOW || (proto === PROTO_ICMP && this.key.opens)) return this.reflect();
        id = this.flows.sessionOf(f);
      } else if (f === NO_FLOW && this.key.opens && !(this.blockLocal && this.local4.get(remote) !== NO_SESSION)) {
        // (A blocked address gets no flow: the session's answer must meet the general path.)
        f = this.newFlow(id, proto, this.innerOf[id]!, lport, outer, remote, rport);
      }
      if (f !== NO_FLOW) advance(this.flows, f, proto, this.key.tcpFlags, false, now, this.timeouts);
    } else if (toShared) {
      return this.reflect(); // nothing of ours without ports
    }

    const inner = this.innerOf[id]!;
    if (inner !== outer) {
      ip.setDst(inner);
      this.updateTransport(t, proto, outer, inner);
    }
    if (f !== NO_FLOW && this.flows.innerPortOf(f) !== this.key.localPort) this.setLocalPort(proto, false, this.flows.innerPortOf(f));
    return id;
  }

  // The fast path: the common packet in one pass over its bytes, without the
  // header views. It takes an IPv4 TCP or UDP packet with a 20-byte header,
  // not a fragment, well formed as the general path checks it, of a flow that
  // exists, to or from a session with a VIP of its own (address or NAT mode),
  // not hairpinned; and gives the same result, counters and flow state as the
  // general path would. Anything else gets SLOW, with nothing changed, and
  // takes the general path.

  /** The TCP flags (0 for UDP) of a packet the fast path can take, or -1. */
  private fastCheck(buf: Uint8Array, off: number, len: number): number {
    if (len < 28 || buf[off] !== 0x45) return -1;
    const total = (buf[off + 2]! << 8) | buf[off + 3]!;
    // Not a fragment: no More Fragments flag, offset 0.
    if (total > len || (buf[off + 6]! & 0x3f) !== 0 || buf[off + 7] !== 0) return -1;
    const p = off + 20;
    const plen = total - 20;
    const proto = buf[off + 9];
    if (proto === PROTO_TCP) {
      if (plen < 20) return -1;
      const hlen = (buf[p + 12]! >>> 4) << 2;
      return hlen < 20 || hlen > plen ? -1 : buf[p + 13]!;
    }
    if (proto === PROTO_UDP) {
      if (plen < 8) return -1;
      const ulen = (buf[p + 4]! << 8) | buf[p + 5]!;
      return ulen < 8 || ulen > plen ? -1 : 0;
    }
    return -1;
  }

  private fastFromSession(id: number, buf: Uint8Array, off: number, len: number, now: number): number {
    const flags = this.fastCheck(buf, off, len);
    if (flags < 0 || !this.active[id] || this.sharedSession[id]) return SLOW;
    const inner = read32(buf, off + 12);
    const remote = read32(buf, off + 16);
    if (inner !== this.innerOf[id] || this.byVip.get(remote) !== NO_SESSION || (remote === this.sharedAddr && this.ports !== null))
      return SLOW;
    const proto = buf[off + 9]!;
    const ports = portsWord(read16(buf, off + 20), read16(buf, off + 22));
    const flows = this.flows;
    const f = flows.findInner(flows.innerHash(id, proto, inner, remote, ports), id, proto, inner, remote, ports);
    if (f === NO_FLOW) return SLOW;
    advance(flows, f, proto, flags, true, now, this.timeouts);
    const outer = this.vipOf[id]!;
    if (inner !== outer) this.fastRewrite(buf, off, 12, proto, inner, outer);
    return TO_UPLINK;
  }

  private fastFromUplink(buf: Uint8Array, off: number, len: number, now: number): number {
    const flags = this.fastCheck(buf, off, len);
    if (flags < 0) return SLOW;
    const outer = read32(buf, off + 16);
    const id = this.byVip.get(outer);
    if (id === NO_SESSION) return SLOW;
    const remote = read32(buf, off + 12);
    const proto = buf[off + 9]!;
    const lport = read16(buf, off + 22);
    const ports = portsWord(lport, read16(buf, off + 20));
    const flows = this.flows;
    const f = flows.findOuter(flows.outerHash(proto, outer, remote, ports), proto, outer, remote, ports);
    if (f === NO_FLOW || flows.innerPortOf(f) !== lport) return SLOW;
    advance(flows, f, proto, flags, false, now, this.timeouts);
    const inner = this.innerOf[id]!;
    if (inner !== outer) this.fastRewrite(buf, off, 16, proto, outer, inner);
    return id;
  }

  /** Rewrites the address at buf[off + at] (12: source, 16: destination) from `from` to `to`, with every checksum over it. */
  private fastRewrite(buf: Uint8Array, off: number, at: number, proto: number, from: number, to: number): void {
    write16(buf, off + 10, update32(read16(buf, off + 10), from, to));
    write32(buf, off + at, to);
    const partial = this.csumAt;
    if (partial >= 0) {
      write16(buf, partial, updatePartial32(read16(buf, partial), from, to));
    } else if (proto === PROTO_TCP) {
      write16(buf, off + 36, update32(read16(buf, off + 36), from, to));
    } else {
      const c = read16(buf, off + 26);
      if (c === 0) return; // no UDP checksum
      const n = update32(c, from, to);
      write16(buf, off + 26, n === 0 ? 0xffff : n);
    }
  }

  /** Creates a session's flow with a remote; a shared session's gets an outer port of its own. */
  private newFlow(id: number, proto: number, inner: number, lport: number, outer: number, remote: number, rport: number): number {
    const c = this.counters;
    let oport = lport;
    if (this.sharedSession[id]) {
      oport = this.ports!.acquire(portSlot(proto), id, lport);
      if (oport < 0) {
        if (oport === PORTS_QUOTA) c.portQuota++;
        else c.portsExhausted++;
        return NO_FLOW;
      }
    }
    const room = this.flows.makeRoom(id, this.flowLimit);
    if (room === ROOM_TABLE_FULL || room === ROOM_SESSION_LIMIT) {
      if (room === ROOM_TABLE_FULL) c.tableFull++;
      else c.sessionFlowLimit++;
      if (this.sharedSession[id]) this.ports!.release(portSlot(proto), oport);
      return NO_FLOW;
    }
    if (room === ROOM_EVICTED) c.flowsEvicted++;
    c.flowsCreated++;
    return this.flows.insert(id, proto, inner, lport, outer, oport, remote, rport, STATE_FREE, 0);
  }

  /**
   * Folds an address change into the transport checksum: TCP and UDP cover
   * the pseudo-header (ICMPv4 does not). A checksum the device will finish
   * (`csumAt`, from the TUN's virtio header) holds a partial sum instead.
   */
  private updateTransport(t: number, proto: number, oldAddr: number, newAddr: number): void {
    if (t !== HAS_PORTS || proto === PROTO_ICMP) return;
    const at = this.csumAt;
    if (at >= 0) {
      const b = this.ip.buf;
      write16(b, at, updatePartial32(read16(b, at), oldAddr, newAddr));
    } else if (proto === PROTO_TCP) {
      this.tcp.updateAddress(oldAddr, newAddr);
    } else {
      this.udp.updateAddress(oldAddr, newAddr);
    }
  }

  /** Rewrites the session-side port (source when `out`, else destination), or an echo's identifier. */
  private setLocalPort(proto: number, out: boolean, port: number): void {
    // A partial checksum is summed over the ports by the device later: leave it.
    const partial = this.csumAt >= 0;
    if (proto === PROTO_TCP) {
      if (partial) {
        if (out) this.tcp.writeSrcPort(port);
        else this.tcp.writeDstPort(port);
      } else if (out) this.tcp.setSrcPort(port);
      else this.tcp.setDstPort(port);
    } else if (proto === PROTO_UDP) {
      if (partial) {
        if (out) this.udp.writeSrcPort(port);
        else this.udp.writeDstPort(port);
      } else if (out) this.udp.setSrcPort(port);
      else this.udp.setDstPort(port);
    } else if (proto === PROTO_ICMP) {
      if (partial) this.icmp.writeIdent(port);
      else this.icmp.setIdent(port);
    }
  }

  /**
   * Turns the packet at `this.ip`, from a session at `inner` to the blocked
   * address `blocked`, into ICMP type 3 code 13 (communication
   * administratively prohibited) from `blocked` to `inner`, in place, quoting
   * as much of the packet as fits 576 bytes (RFC 792, RFC 1812 4.3.2.3).
   * ICMP errors and later fragments get none (RFC 1122 3.2.2): DROP.
   */
  private prohibit(inner: number, blocked: number): number {
    this.counters.toLocal++;
    const ip = this.ip;
    const b = ip.buf;
    const o = ip.off;
    if (ip.fragmentOffset !== 0) return DROP;
    if (ip.protocol === PROTO_ICMP) {
      const p = ip.payloadOffset;
      // Types 3, 4, 5, 11, 12 are errors; a message too short to say is not answered either.
      const type = ip.payloadLength >= 1 ? b[p]! : 3;
      if (type === 3 || type === 4 || type === 5 || type === 11 || type === 12) return DROP;
    }
    const quote = Math.min(ip.len, REPLY_MAX - 28);
    b.copyWithin(o + 28, o, o + quote);
    const total = 28 + quote;
    b[o] = 0x45;
    b[o + 1] = 0;
    write16(b, o + 2, total);
    write32(b, o + 4, 0); // identification, flags, fragment offset
    b[o + 8] = 64;
    b[o + 9] = PROTO_ICMP;
    write16(b, o + 10, 0);
    write32(b, o + 12, blocked);
    write32(b, o + 16, inner);
    write16(b, o + 10, finish(sum(b, o, 20, 0)));
    write32(b, o + 20, (3 << 24) | (13 << 16)); // type, code, checksum 0
    write32(b, o + 24, 0);
    write16(b, o + 22, finish(sum(b, o + 20, 8 + quote, 0)));
    this.replyLength = total;
    return REPLY;
  }

  /** A packet to the shared address that is not ours: back to the uplink's own stack. */
  private reflect(): number {
    this.counters.reflected++;
    return TO_UPLINK;
  }

  /**
   * Reads the transport header of the packet at `this.ip` as a flow key:
   * localPort on the session's side, remotePort on the peer's (an echo's
   * identifier is the local "port", the remote one 0), the TCP flags, and
   * whether the packet may open a flow from outside. Returns HAS_PORTS,
   * IS_ERROR (an ICMP error, at `this.icmp`), NO_PORTS (translated by address
   * alone: later fragments, other protocols) or DROP. `out` is true for
   * packets from the session.
   */
  private readTransport(out: boolean): number {
    const ip = this.ip;
    const buf = ip.buf;
    const poff = ip.payloadOffset;
    const plen = ip.payloadLength;
    const proto = ip.protocol;
    this.key.clear();
    if (ip.fragmentOffset !== 0) {
      this.counters.fragments++;
      return NO_PORTS;
    }
    if (proto === PROTO_TCP) return this.key.readTcp(this.tcp, buf, poff, plen, out) ? HAS_PORTS : this.malformed();
    if (proto === PROTO_UDP) return this.key.readUdp(this.udp, buf, poff, plen, ip.moreFragments, out) ? HAS_PORTS : this.malformed();
    if (proto === PROTO_ICMP) {
      const icmp = this.icmp;
      if (!icmp.attach(buf, poff, plen)) return this.malformed();
      if (icmp.isEcho) {
        this.key.setEcho(icmp.ident, icmp.type === ICMP4_ECHO_REQUEST);
        return HAS_PORTS;
      }
      if (icmp.isError) return IS_ERROR;
    }
    return NO_PORTS;
  }

  private malformed(): number {
    this.counters.malformed++;
    return DROP;
  }

  /**
   * An ICMP error sent by session `id` about a packet it received: the quoted
   * packet went remote -> inner:port, and must read remote -> outer:port once
   * out. Without a flow, a session with a VIP of its own is translated by
   * address alone (its ports are its own); a shared session's error is
   * dropped (returns false), as is one quoting another address.
   */
  private sessionError(id: number, inner: number, outer: number): boolean {
    const c = this.counters;
    c.icmpErrors++;
    const q = this.quoted();
    if (q < 0 || this.qip.dst !== inner) return this.errorDropped();
    const proto = this.qip.protocol;
    if (!this.quotedPorts(proto, q, false)) return this.errorDropped();
    const f = this.flows.lookupInner(id, proto, inner, this.qLocal, this.qip.src, this.qRemote);
    if (f === NO_FLOW && this.sharedSession[id]) return this.errorDropped();
    const port = f === NO_FLOW ? this.qLocal : this.flows.outerPortOf(f);
    return (inner === outer && port === this.qLocal) || this.rewriteQuoted(false, outer, port, q);
  }

  /**
   * An ICMP error from the network about a packet a session sent: the quoted
   * packet went outer:port -> remote, and must read inner:port -> remote for
   * the session. `id` is the session holding the outer address (its VIP),
   * or 0 for the shared address (the flow says which session). A session
   * with a VIP needs no flow: its translation is one-to-one with the same
   * ports, so without one the quote is translated by address alone (an
   * error about a datagram sent while the table was full still gives
   * ECONNREFUSED or a path MTU). Returns the session, or 0 (dropped).
   */
  private uplinkError(id: number, outer: number): number {
    const c = this.counters;
    c.icmpErrors++;
    const q = this.quoted();
    if (q < 0 || this.qip.src !== outer) return this.uplinkErrorDropped();
    const proto = this.qip.protocol;
    if (!this.quotedPorts(proto, q, true)) return this.uplinkErrorDropped();
    const f = this.flows.lookupOuter(proto, outer, this.qLocal, this.qip.dst, this.qRemote);
    if (f === NO_FLOW ? id === 0 : id !== 0 && this.flows.sessionOf(f) !== id) return this.uplinkErrorDropped();
    const sid = f === NO_FLOW ? id : this.flows.sessionOf(f);
    const inner = this.innerOf[sid]!;
    const port = f === NO_FLOW ? this.qLocal : this.flows.innerPortOf(f);
    if ((inner === outer && port === this.qLocal) || this.rewriteQuoted(true, inner, port, q)) return sid;
    return 0;
  }

  private uplinkErrorDropped(): number {
    this.counters.icmpErrorsDropped++;
    return 0;
  }

  private errorDropped(): boolean {
    this.counters.icmpErrorsDropped++;
    return false;
  }

  /**
   * Attaches `qip` to the packet quoted in the ICMP error at `this.icmp`.
   * Returns the offset of the quoted transport header, or -1 if the quote is
   * unusable. A quote is truncated, so its Total Length is not checked
   * against the bytes present; 8 bytes of transport header must be there.
   */
  private quoted(): number {
    const icmp = this.icmp;
    const b = icmp.buf;
    const o = icmp.off + 8;
    const avail = icmp.len - 8;
    if (avail < 28) return -1;
    const vi = b[o]!;
    const hlen = (vi & 0x0f) << 2;
    if (vi >>> 4 !== 4 || hlen < 20 || hlen + 8 > avail) return -1;
    // attach() wants Total Length within the bytes; the quote is cut short, so
    // give it a window as long as the header claims when that is larger.
    const claimed = (b[o + 2]! << 8) | b[o + 3]!;
    if (!this.qip.attach(b, o, Math.max(avail, claimed))) return -1;
    if (this.qip.fragmentOffset !== 0) return -1;
    return o + hlen;
  }

  /**
   * Reads the quoted packet's ports as a flow key sees them: `qLocal` on the
   * session's side (the source when the session sent the quoted packet),
   * `qRemote` on the peer's. An echo's identifier is the session-side "port"
   * and the remote one is 0, whichever side sent it. False for a protocol
   * that has no flows.
   */
  private quotedPorts(proto: number, q: number, sessionSent: boolean): boolean {
    const b = this.icmp.buf;
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      const src = (b[q]! << 8) | b[q + 1]!;
      const dst = (b[q + 2]! << 8) | b[q + 3]!;
      this.qLocal = sessionSent ? src : dst;
      this.qRemote = sessionSent ? dst : src;
      return true;
    }
    if (proto === PROTO_ICMP) {
      const type = b[q]!;
      if (type !== ICMP4_ECHO_REQUEST && type !== ICMP4_ECHO_REPLY) return false;
      this.qLocal = (b[q + 4]! << 8) | b[q + 5]!;
      this.qRemote = 0;
      return true;
    }
    return false;
  }

  /**
   * Rewrites the quoted packet's source (`srcField`: for an error from the
   * network) or destination (for an error from a session) to `addr` and its
   * port on that side to `port` (an echo's identifier), fixing the quoted
   * header checksum and, when quoted, the transport checksum; then recomputes
   * the ICMP checksum, which covers the quote. False (dropped) if the ICMP
   * checksum was wrong to begin with: recomputing would launder it.
   */
  private rewriteQuoted(srcField: boolean, addr: number, port: number, q: number): boolean {
    const icmp = this.icmp;
    if (!icmp.verifyChecksum()) {
      this.counters.malformed++;
      return this.errorDropped();
    }
    const qip = this.qip;
    const b = icmp.buf;
    const end = icmp.off + icmp.len;
    const proto = qip.protocol;
    const oldAddr = srcField ? qip.src : qip.dst;
    if (srcField) qip.setSrc(addr);
    else qip.setDst(addr);
    // The port (or identifier) field and the checksum that covers it, when quoted.
    let pf: number;
    let ck: number;
    if (proto === PROTO_ICMP) {
      pf = q + 4;
      ck = q + 2;
    } else {
      pf = srcField ? q : q + 2;
      ck = proto === PROTO_TCP ? q + 16 : q + 6;
    }
    const oldPort = (b[pf]! << 8) | b[pf + 1]!;
    b[pf] = port >>> 8;
    b[pf + 1] = port & 0xff;
    if (ck + 2 <= end) {
      let cur = (b[ck]! << 8) | b[ck + 1]!;
      if (!(proto === PROTO_UDP && cur === 0)) {
        // TCP and UDP cover the pseudo-header (addresses); ICMP only itself.
        if (proto !== PROTO_ICMP) cur = update32(cur, oldAddr, addr);
        cur = update16(cur, oldPort, port);
        if (cur === 0 && proto === PROTO_UDP) cur = 0xffff;
        b[ck] = cur >>> 8;
        b[ck + 1] = cur & 0xff;
      }
    }
    icmp.fillChecksum();
    return true;
  }
}
