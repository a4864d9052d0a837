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

import { FlowTable, NO_FLOW } from './flows.js';
import { Nat6 } from './translate6.js';
import { advance, DEFAULT_TIMEOUTS, DROP, NatCounters, STATE_FREE, TO_UPLINK, type Timeouts } from './state.js';
import {
  Icmp4,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  Ipv4,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  Tcp,
  TCP_ACK,
  TCP_RST,
  TCP_SYN,
  Udp,
  update32,
} from '../wire/index.js';

/** readTransport() results besides DROP. */
const NO_PORTS = 0;
const HAS_PORTS = 1;

export interface NatOptions {
  /** Highest session id that will be added. */
  maxSession: number;
  flowCapacity: number;
  /** IPv6 flow table capacity (default: a quarter of flowCapacity, at least 1024). */
  flowCapacity6?: number;
  timeouts?: Timeouts;
  seed?: number;
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
  private readonly byVip = new Map<number, number>();
  private readonly ip = new Ipv4();
  private readonly tcp = new Tcp();
  private readonly udp = new Udp();
  private readonly icmp = new Icmp4();
  // Views for the packet quoted inside an ICMP error.
  private readonly qip = new Ipv4();
  /** The packet's flow key and flags, set by readTransport(). */
  private localPort = 0;
  private remotePort = 0;
  private tcpFlags = 0;
  private opens = false;
  /** Ports of the quoted packet, set by quotedPorts(). */
  private qLocal = 0;
  private qRemote = 0;

  constructor(opts: NatOptions) {
    this.flows = new FlowTable(opts.flowCapacity, opts.seed);
    this.timeouts = opts.timeouts ?? DEFAULT_TIMEOUTS;
    this.v6 = new Nat6(opts.maxSession, opts.flowCapacity6 ?? Math.max(1024, opts.flowCapacity >> 2), this.counters, this.timeouts, opts.seed);
    this.innerOf = new Uint32Array(opts.maxSession + 1);
    this.vipOf = new Uint32Array(opts.maxSession + 1);
    this.active = new Uint8Array(opts.maxSession + 1);
  }

  addSession(id: number, inner: number, vip: number): void {
    if (!(id >= 1 && id < this.active.length)) throw new RangeError(`session id ${id}: must be 1-${this.active.length - 1}`);
    if (this.active[id]) throw new Error(`session ${id} is already active`);
    if (this.byVip.has(vip)) throw new Error(`VIP ${vip >>> 0} is already held by session ${this.byVip.get(vip)}`);
    this.innerOf[id] = inner;
    this.vipOf[id] = vip;
    this.active[id] = 1;
    this.byVip.set(vip, id);
  }

  /** Gives session `id` an IPv6 inner address and VIP (four 32-bit words each). */
  addSession6(id: number, inner: ArrayLike<number>, vip: ArrayLike<number>): void {
    this.v6.addSession(id, inner, vip);
  }

  removeSession(id: number): void {
    this.v6.removeSession(id);
    if (!this.active[id]) return;
    this.active[id] = 0;
    this.byVip.delete(this.vipOf[id]!);
    this.flows.removeSession(id);
  }

  /** Live flows, both families. */
  get flowCount(): number {
    return this.flows.count + this.v6.flows.count;
  }

  /** The session holding `vip`, or 0. */
  sessionOf(vip: number): number {
    return this.byVip.get(vip) ?? 0;
  }

  /** Drops idle flows; call about once a second with a slice budget. */
  expire(now: number, budget?: number): void {
    this.counters.flowsExpired += this.flows.expire(now, budget) + this.v6.flows.expire(now, budget);
  }

  /**
   * Translates a packet that session `id` sent. Returns TO_UPLINK, another
   * session's id (hairpin: the packet is already translated for it), or DROP.
   */
  fromSession(id: number, buf: Uint8Array, off: number, len: number, now: number): number {
    const c = this.counters;
    c.fromSession++;
    const ip = this.ip;
    if (len < 1) return this.malformed();
    const version = buf[off]! >>> 4;
    if (version !== 4) {
      if (version === 6) return this.v6.fromSession(id, buf, off, len, now);
      c.otherFamily++;
      return DROP;
    }
    if (!ip.attach(buf, off, len) || !this.active[id]) {
      c.malformed++;
      return DROP;
    }
    const inner = this.innerOf[id]!;
    const vip = this.vipOf[id]!;
    if (ip.src !== inner) {
      // Anti-spoofing: a session can only ever appear as itself.
      c.spoofed++;
      return DROP;
    }
    const proto = ip.protocol;
    const remote = ip.dst;
    const t = this.readTransport(id, inner, vip, true);
    if (t === DROP) return DROP;
    const ports = t === HAS_PORTS;
    if (ports) {
      const lport = this.localPort;
      const rport = this.remotePort;
      let f = this.flows.lookupInner(id, proto, inner, lport, remote, rport);
      if (f === NO_FLOW) {
        f = this.flows.insert(id, proto, inner, lport, vip, lport, remote, rport, STATE_FREE, 0);
        if (f === NO_FLOW) c.tableFull++;
        else c.flowsCreated++;
      }
      if (f !== NO_FLOW) advance(this.flows, f, proto, this.tcpFlags, true, now, this.timeouts);
    }

    if (inner !== vip) {
      ip.setSrc(vip);
      if (ports && proto === PROTO_TCP) this.tcp.updateAddress(inner, vip);
      else if (ports && proto === PROTO_UDP) this.udp.updateAddress(inner, vip);
    }

    if (this.byVip.has(remote)) {
      // Hairpin: deliver straight to the session holding the destination VIP.
      c.hairpin++;
      c.fromUplink--; // counted once, as a session packet
      return this.fromUplink(buf, off, len, now);
    }
    return TO_UPLINK;
  }

  /** Translates a packet from the uplink. Returns the id of the session to deliver it to, or DROP. */
  fromUplink(buf: Uint8Array, off: number, len: number, now: number): number {
    const c = this.counters;
    c.fromUplink++;
    const ip = this.ip;
    if (len < 1) return this.malformed();
    const version = buf[off]! >>> 4;
    if (version !== 4) {
      if (version === 6) return this.v6.fromUplink(buf, off, len, now);
      c.otherFamily++;
      return DROP;
    }
    if (!ip.attach(buf, off, len)) return this.malformed();
    const vip = ip.dst;
    const id = this.byVip.get(vip);
    if (id === undefined) {
      c.noSession++;
      return DROP;
    }
    const inner = this.innerOf[id]!;
    const proto = ip.protocol;
    const remote = ip.src;
    const t = this.readTransport(id, inner, vip, false);
    if (t === DROP) return DROP;
    const ports = t === HAS_PORTS;
    if (ports) {
      const lport = this.localPort;
      const rport = this.remotePort;
      let f = this.flows.lookupOuter(proto, vip, lport, remote, rport);
      if (f === NO_FLOW && this.opens) {
        f = this.flows.insert(id, proto, inner, lport, vip, lport, remote, rport, STATE_FREE, 0);
        if (f === NO_FLOW) c.tableFull++;
        else c.flowsCreated++;
      }
      if (f !== NO_FLOW) advance(this.flows, f, proto, this.tcpFlags, false, now, this.timeouts);
    }

    if (inner !== vip) {
      ip.setDst(inner);
      if (ports && proto === PROTO_TCP) this.tcp.updateAddress(vip, inner);
      else if (ports && proto === PROTO_UDP) this.udp.updateAddress(vip, inner);
    }
    return id;
  }

  /**
   * Reads the transport header of the packet at `this.ip` as a flow key:
   * localPort on the session's side, remotePort on the peer's (an echo's
   * identifier is the local "port", the remote one 0), the TCP flags, and
   * whether the packet may open a flow from outside. Returns HAS_PORTS,
   * NO_PORTS (translated by address alone: later fragments, ICMP errors,
   * other protocols) or DROP. `out` is true for packets from the session.
   */
  private readTransport(id: number, inner: number, vip: number, out: boolean): number {
    const ip = this.ip;
    const buf = ip.buf;
    const poff = ip.payloadOffset;
    const plen = ip.payloadLength;
    const proto = ip.protocol;
    this.tcpFlags = 0;
    this.opens = false;
    if (ip.fragmentOffset !== 0) {
      this.counters.fragments++;
      return NO_PORTS;
    }
    if (proto === PROTO_TCP) {
      const tcp = this.tcp;
      if (!tcp.attach(buf, poff, plen)) return this.malformed();
      this.localPort = out ? tcp.srcPort : tcp.dstPort;
      this.remotePort = out ? tcp.dstPort : tcp.srcPort;
      this.tcpFlags = tcp.flags;
      // Only a connection attempt may open a flow from outside (to a listener).
      this.opens = (this.tcpFlags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN;
      return HAS_PORTS;
    }
    if (proto === PROTO_UDP) {
      const udp = this.udp;
      if (!(ip.moreFragments ? udp.attachHeader(buf, poff, plen) : udp.attach(buf, poff, plen))) return this.malformed();
      this.localPort = out ? udp.srcPort : udp.dstPort;
      this.remotePort = out ? udp.dstPort : udp.srcPort;
      this.opens = true;
      return HAS_PORTS;
    }
    if (proto === PROTO_ICMP) {
      const icmp = this.icmp;
      if (!icmp.attach(buf, poff, plen)) return this.malformed();
      if (icmp.isEcho) {
        this.localPort = icmp.ident;
        this.remotePort = 0;
        this.opens = icmp.type === ICMP4_ECHO_REQUEST;
        return HAS_PORTS;
      }
      if (icmp.isError && !(out ? this.sessionError(id, inner, vip) : this.uplinkError(id, inner, vip))) return DROP;
    }
    return NO_PORTS;
  }

  private malformed(): number {
    this.counters.malformed++;
    return DROP;
  }

  /**
   * An ICMP error sent by session `id` about a packet it received: the quoted
   * packet went remote -> inner, and must read remote -> VIP once out.
   * Returns false (dropped) when it quotes no flow of the session.
   */
  private sessionError(id: number, inner: number, vip: number): boolean {
    const c = this.counters;
    c.icmpErrors++;
    const q = this.quoted();
    if (q < 0 || this.qip.dst !== inner) return this.errorDropped();
    const proto = this.qip.protocol;
    if (!this.quotedPorts(proto, q, false)) return this.errorDropped();
    const f = this.flows.lookupInner(id, proto, inner, this.qLocal, this.qip.src, this.qRemote);
    if (f === NO_FLOW) return this.errorDropped();
    return inner === vip || this.rewriteQuoted(false, vip);
  }

  /**
   * An ICMP error from the network about a packet a session sent: the quoted
   * packet went VIP -> remote, and must read inner -> remote for the session.
   */
  private uplinkError(id: number, inner: number, vip: number): boolean {
    const c = this.counters;
    c.icmpErrors++;
    const q = this.quoted();
    if (q < 0 || this.qip.src !== vip) return this.errorDropped();
    const proto = this.qip.protocol;
    if (!this.quotedPorts(proto, q, true)) return this.errorDropped();
    const f = this.flows.lookupOuter(proto, vip, this.qLocal, this.qip.dst, this.qRemote);
    if (f === NO_FLOW || this.flows.session[f] !== id) return this.errorDropped();
    return inner === vip || this.rewriteQuoted(true, inner);
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
   * Rewrites the quoted packet's source (`srcField`: VIP -> inner, for an error
   * from the network) or destination (inner -> VIP, for an error from a
   * session), its header checksum and its transport checksum when quoted, then
   * recomputes the ICMP checksum, which covers the quote. False (dropped) if
   * the ICMP checksum was wrong to begin with.
   */
  private rewriteQuoted(srcField: boolean, addr: number): boolean {
    const icmp = this.icmp;
    // Recomputing the checksum below would launder a corrupt message: drop it.
    if (!icmp.verifyChecksum()) {
      this.counters.malformed++;
      return this.errorDropped();
    }
    const qip = this.qip;
    const old = srcField ? qip.src : qip.dst;
    if (srcField) qip.setSrc(addr);
    else qip.setDst(addr);
    const q = qip.payloadOffset;
    const end = icmp.off + icmp.len;
    const proto = qip.protocol;
    // The transport checksum covers the pseudo-header: fix it when quoted.
    const ck = proto === PROTO_TCP ? q + 16 : proto === PROTO_UDP ? q + 6 : -1;
    if (ck > 0 && ck + 2 <= end) {
      const b = icmp.buf;
      const cur = (b[ck]! << 8) | b[ck + 1]!;
      if (!(proto === PROTO_UDP && cur === 0)) {
        let n = update32(cur, old, addr);
        if (n === 0 && proto === PROTO_UDP) n = 0xffff;
        b[ck] = n >>> 8;
        b[ck + 1] = n & 0xff;
      }
    }
    icmp.fillChecksum();
    return true;
  }
}
