// The IPv6 translator: the same policy as translate.ts, for sessions' IPv6 inner addresses and VIPs.
//
// IPv6 has no header checksum, but every upper-layer checksum (TCP, UDP and
// ICMPv6 alike) covers a pseudo-header holding both addresses, so each
// address rewrite updates it (RFC 1624 over 128 bits). An ICMPv6 error quotes
// the offending packet; its addresses and checksum are translated too, and
// the ICMPv6 checksum is then recomputed whole (RFC 5508 applies the same way).
// A session's kernel also sends neighbour discovery, router solicitations and
// MLD reports from link-local addresses: a TUN needs none of them, so they are
// counted and dropped. With blockLocal, packets to the uplink's own
// addresses are answered with ICMPv6 "administratively prohibited" (see
// translate.ts).

import { FlowTable6, NO_FLOW, ROOM_EVICTED, ROOM_FREE, ROOM_TABLE_FULL, sameAddress6 as same } from './flows.js';
import { FlowKey } from './key.js';
import { NO_SESSION as EMPTY, Vip6Index } from './vips.js';
import { advance, DROP, type NatCounters, REPLY, STATE_FREE, TO_UPLINK, type Timeouts } from './state.js';
import {
  Icmp6,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  Ipv6,
  IPV6_DEST_OPTIONS,
  IPV6_FRAGMENT,
  IPV6_HOP_BY_HOP,
  IPV6_MAX_EXTENSIONS,
  IPV6_ROUTING,
  PROTO_ICMP6,
  PROTO_TCP,
  PROTO_UDP,
  finish,
  pseudoSum6,
  read16,
  sum,
  read32,
  Tcp,
  Udp,
  update128,
  updatePartial128,
  write16,
  write32,
} from '../wire/index.js';

const NO_PORTS = 0;
const HAS_PORTS = 1;

/** An ICMPv6 error about a blocked packet fits the minimum MTU (RFC 4443 2.4 (c)). */
const REPLY_MAX = 1280;

export class Nat6 {
  readonly flows: FlowTable6;
  private readonly inner: Uint32Array;
  private readonly vip: Uint32Array;
  private readonly active: Uint8Array;
  private readonly byVip: Vip6Index;
  private readonly ip = new Ipv6();
  private readonly tcp = new Tcp();
  private readonly udp = new Udp();
  private readonly icmp = new Icmp6();
  /** The current packet's remote address (scratch). */
  private readonly remote = new Uint32Array(4);
  /** The quoted packet's addresses (scratch). */
  private readonly qsrc = new Uint32Array(4);
  private readonly qdst = new Uint32Array(4);
  /** The packet's flow key and flags, set by readTransport(). */
  private readonly key = new FlowKey();
  /** Where the transport checksum field is when the device will finish it (partial), else -1. */
  private csumAt = -1;
  /** Set when the packet is an ICMPv6 error whose checksum must be recomputed after the outer rewrite. */
  private refill = false;
  /** The uplink's own IPv6 addresses (blocked when blockLocal). */
  private local6 = new Vip6Index(1);
  /** Bytes of the reply written in place when fromSession returns REPLY. */
  replyLength = 0;

  constructor(
    maxSession: number,
    flowCapacity: number,
    /** Live IPv6 flows a session may hold. */
    private readonly flowLimit: number,
    private readonly blockLocal: boolean,
    private readonly counters: NatCounters,
    private readonly timeouts: Timeouts,
    seed?: number,
    memory?: SharedArrayBuffer,
  ) {
    this.flows = new FlowTable6(flowCapacity, seed, memory, maxSession);
    this.inner = new Uint32Array((maxSession + 1) * 4);
    this.vip = new Uint32Array((maxSession + 1) * 4);
    this.active = new Uint8Array(maxSession + 1);
    this.byVip = new Vip6Index(maxSession);
  }

  addSession(id: number, inner: ArrayLike<number>, vip: ArrayLike<number>): void {
    if (!(id >= 1 && id < this.active.length)) throw new RangeError(`session id ${id}: must be 1-${this.active.length - 1}`);
    if (this.active[id]) throw new Error(`session ${id} already has an IPv6 address`);
    for (let k = 0; k < 4; k++) {
      this.inner[id * 4 + k] = inner[k]!;
      this.vip[id * 4 + k] = vip[k]!;
    }
    if (this.byVip.get(this.vip, id * 4) !== EMPTY) throw new Error(`an IPv6 VIP of session ${id} is already held`);
    this.active[id] = 1;
    this.byVip.set(this.vip, id * 4, id);
  }

  /** Ends session `id`'s IPv6; with `dropFlows` false its flows stay (for Nat.dropFlows() later). */
  removeSession(id: number, dropFlows = true): void {
    if (!this.active[id]) return;
    this.active[id] = 0;
    this.byVip.delete(this.vip, id * 4);
    if (dropFlows) this.flows.removeSession(id);
  }

  hasSession(id: number): boolean {
    return this.active[id] === 1;
  }

  /** The uplink's own IPv6 addresses, four words each (see Nat.setLocalAddresses). */
  setLocalAddresses(v6: readonly (readonly number[])[]): void {
    const index = new Vip6Index(Math.max(1, v6.length));
    const w = new Uint32Array(4);
    for (const a of v6) {
      for (let k = 0; k < 4; k++) w[k] = a[k]! >>> 0;
      index.set(w, 0, 1);
    }
    this.local6 = index;
  }

  /** Drops every flow with a blocked address; returns how many. */
  dropLocalFlows(): number {
    if (!this.blockLocal) return 0;
    const t = this.flows;
    let dropped = 0;
    for (let f = 0; f < t.capacity; f++) {
      if (t.stateOf(f) !== 0 && this.local6.get(t.addr, t.remoteAt(f)) !== EMPTY) {
        t.remove(f);
        dropped++;
      }
    }
    return dropped;
  }

  /** An IPv6 packet from session `id`: TO_UPLINK, a session id (hairpin) or DROP. */
  fromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt = -1): number {
    const c = this.counters;
    this.csumAt = csumAt;
    const ip = this.ip;
    if (!ip.attach(buf, off, len)) {
      c.malformed++;
      return DROP;
    }
    if (!this.active[id]) {
      c.otherFamily++;
      return DROP;
    }
    const io = id * 4;
    if (!ip.srcEquals(this.inner, io)) {
      // The kernel's own link traffic comes from fe80::/10 or ::; anything else is spoofing.
      const hi = ip.srcWord(0);
      if (hi >>> 22 === 0x3fa || (hi === 0 && ip.srcWord(1) === 0 && ip.srcWord(2) === 0 && ip.srcWord(3) === 0)) c.linkControl++;
      else c.spoofed++;
      return DROP;
    }
    if (ip.dstWord(0) >>> 24 === 0xff) {
      c.linkControl++; // multicast (MLD, solicited-node): nothing to route
      return DROP;
    }
    ip.readDst(this.remote, 0);
    if (this.blockLocal && this.local6.get(this.remote, 0) !== EMPTY) return this.prohibit(io);
    const proto = ip.transportProtocol;
    const t = this.readTransport(id, true);
    if (t === DROP) return DROP;
    if (t === HAS_PORTS) {
      let f = this.flows.lookupInner(id, proto, this.inner, io, this.key.localPort, this.remote, 0, this.key.remotePort);
      if (f === NO_FLOW) f = this.newFlow(id, proto);
      if (f !== NO_FLOW) advance(this.flows, f, proto, this.key.tcpFlags, true, now, this.timeouts);
    }
    if (!ip.srcEquals(this.vip, io)) {
      this.updateUpper(proto, this.inner, io, this.vip, io);
      ip.writeSrc(this.vip, io);
    }
    if (this.refill) this.icmp.fillChecksum6(buf, off);
    if (this.byVip.get(this.remote, 0) !== EMPTY) {
      c.hairpin++;
      return this.fromUplink(buf, off, len, now);
    }
    return TO_UPLINK;
  }

  /** An IPv6 packet from the uplink: the session id to deliver it to, or DROP. */
  fromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt = this.csumAt): number {
    const c = this.counters;
    this.csumAt = csumAt;
    const ip = this.ip;
    if (!ip.attach(buf, off, len)) {
      c.malformed++;
      return DROP;
    }
    ip.readDst(this.remote, 0); // the VIP, for the index lookup
    const id = this.byVip.get(this.remote, 0);
    if (id === EMPTY) {
      // Multicast (the uplink kernel's own router solicitations, MLD) is link business too.
      if (ip.dstWord(0) >>> 24 === 0xff) c.linkControl++;
      else c.noSession++;
      return DROP;
    }
    const io = id * 4;
    ip.readSrc(this.remote, 0);
    const proto = ip.transportProtocol;
    const t = this.readTransport(id, false);
    if (t === DROP) return DROP;
    if (t === HAS_PORTS) {
      let f = this.flows.lookupOuter(proto, this.vip, io, this.key.localPort, this.remote, 0, this.key.remotePort);
      if (f === NO_FLOW && this.key.opens && !(this.blockLocal && this.local6.get(this.remote, 0) !== EMPTY)) f = this.newFlow(id, proto);
      if (f !== NO_FLOW) advance(this.flows, f, proto, this.key.tcpFlags, false, now, this.timeouts);
    }
    if (!ip.dstEquals(this.inner, io)) {
      this.updateUpper(proto, this.vip, io, this.inner, io);
      ip.writeDst(this.inner, io);
    }
    if (this.refill) this.icmp.fillChecksum6(buf, off);
    return id;
  }

  /**
   * Turns the packet at `this.ip`, from the session whose inner address is at
   * inner[io] to the blocked address in `this.remote`, into ICMPv6 type 1
   * code 1 (communication administratively prohibited) back to it, in place,
   * quoting as much as fits 1280 bytes. ICMPv6 errors and later fragments
   * get none (RFC 4443 2.4 (e)): DROP.
   */
  private prohibit(io: number): number {
    this.counters.toLocal++;
    const ip = this.ip;
    const b = ip.buf;
    const o = ip.off;
    if (ip.fragmentOffset !== 0) return DROP;
    if (ip.transportProtocol === PROTO_ICMP6) {
      const p = ip.transportOffset;
      // Types below 128 are errors; a message too short to say is not answered either.
      if (p >= o + ip.len || b[p]! < 128) return DROP;
    }
    const quote = Math.min(ip.len, REPLY_MAX - 48);
    b.copyWithin(o + 48, o, o + quote);
    write32(b, o, 0x60000000);
    write16(b, o + 4, 8 + quote);
    b[o + 6] = PROTO_ICMP6;
    b[o + 7] = 64;
    for (let k = 0; k < 4; k++) {
      write32(b, o + 8 + 4 * k, this.remote[k]!);
      write32(b, o + 24 + 4 * k, this.inner[io + k]!);
    }
    write32(b, o + 40, (1 << 24) | (1 << 16)); // type, code, checksum 0
    write32(b, o + 44, 0);
    write16(b, o + 42, finish(sum(b, o + 40, 8 + quote, pseudoSum6(b, o, 8 + quote, PROTO_ICMP6))));
    this.replyLength = 48 + quote;
    return REPLY;
  }

  /** Adds the flow of the current packet (key and remote address as read) for session `id`. */
  private newFlow(id: number, proto: number): number {
    const io = id * 4;
    const k = this.key;
    const c = this.counters;
    const room = this.flows.makeRoom(id, this.flowLimit);
    if (room < ROOM_FREE) {
      if (room === ROOM_TABLE_FULL) c.tableFull++;
      else c.sessionFlowLimit++;
      return NO_FLOW;
    }
    if (room === ROOM_EVICTED) c.flowsEvicted++;
    c.flowsCreated++;
    return this.flows.insert(
      id,
      proto,
      this.inner,
      io,
      k.localPort,
      this.vip,
      io,
      k.localPort,
      this.remote,
      0,
      k.remotePort,
      STATE_FREE,
      0,
    );
  }

  /**
   * Folds an outer address change into the upper-layer checksum (all of them
   * cover the pseudo-header); a checksum the device will finish (`csumAt`)
   * holds a partial sum instead.
   */
  private updateUpper(proto: number, oldW: Uint32Array, oo: number, newW: Uint32Array, no: number): void {
    const ip = this.ip;
    if (ip.fragmentOffset !== 0 || this.refill) return; // no header here / recomputed whole
    const at = this.csumAt;
    if (at >= 0) {
      write16(ip.buf, at, updatePartial128(read16(ip.buf, at), oldW, oo, newW, no));
      return;
    }
    if (proto === PROTO_TCP) this.tcp.updateAddress128(oldW, oo, newW, no);
    else if (proto === PROTO_UDP) this.udp.updateAddress128(oldW, oo, newW, no);
    else if (proto === PROTO_ICMP6) this.icmp.updateAddress128(oldW, oo, newW, no);
  }

  /** As Nat's readTransport, for the packet at `this.ip`. */
  private readTransport(id: number, out: boolean): number {
    const ip = this.ip;
    const buf = ip.buf;
    const poff = ip.transportOffset;
    const plen = ip.off + ip.len - poff;
    const proto = ip.transportProtocol;
    this.key.clear();
    this.refill = false;
    if (ip.fragmentOffset !== 0) {
      this.counters.fragments++;
      return NO_PORTS;
    }
    if (proto === PROTO_TCP) return this.key.readTcp(this.tcp, buf, poff, plen, out) ? HAS_PORTS : this.malformed();
    if (proto === PROTO_UDP) return this.key.readUdp(this.udp, buf, poff, plen, ip.moreFragments, out) ? HAS_PORTS : this.malformed();
    if (proto === PROTO_ICMP6) {
      const icmp = this.icmp;
      if (!icmp.attach(buf, poff, plen)) return this.malformed();
      if (icmp.isEcho) {
        this.key.setEcho(icmp.ident, icmp.type === ICMP6_ECHO_REQUEST);
        return HAS_PORTS;
      }
      if (icmp.isError) return this.error(id, out) ? NO_PORTS : DROP;
      // Neighbour discovery, router solicitations, MLD and the like: link business.
      this.counters.linkControl++;
      return DROP;
    }
    return NO_PORTS;
  }

  private malformed(): number {
    this.counters.malformed++;
    return DROP;
  }

  /**
   * An ICMPv6 error. From a session (`out`), it quotes a packet the session
   * received (remote -> inner); from the network, one the session sent
   * (VIP -> remote). The quote must hold the session's own address there,
   * and the checksum must be valid; the quote is then translated and the
   * checksum recomputed after the outer rewrite. Every IPv6 session has a VIP
   * of its own, one-to-one with the same ports, so a quote with no flow
   * (expired, or the table was full) is translated by address alone.
   */
  private error(id: number, out: boolean): boolean {
    const c = this.counters;
    c.icmpErrors++;
    const icmp = this.icmp;
    const ip = this.ip;
    const b = icmp.buf;
    const q = icmp.off + 8;
    const end = icmp.off + icmp.len;
    // The quote: an IPv6 header, its extension headers, then 8 bytes of the transport header.
    if (q + 48 > end || b[q]! >>> 4 !== 6) return this.errorDropped();
    let proto = b[q + 6]!;
    let t = q + 40;
    for (
      let n = 0;
      n < IPV6_MAX_EXTENSIONS &&
      (proto === IPV6_HOP_BY_HOP || proto === IPV6_ROUTING || proto === IPV6_DEST_OPTIONS || proto === IPV6_FRAGMENT);
      n++
    ) {
      if (t + 8 > end) return this.errorDropped();
      // A later fragment quotes no transport header: nothing to match.
      if (proto === IPV6_FRAGMENT && (read16(b, t + 2) & 0xfff8) !== 0) return this.errorDropped();
      const next = b[t]!;
      t += proto === IPV6_FRAGMENT ? 8 : (b[t + 1]! + 1) << 3;
      proto = next;
    }
    if (t + 8 > end) return this.errorDropped();
    for (let k = 0; k < 4; k++) {
      this.qsrc[k] = read32(b, q + 8 + 4 * k);
      this.qdst[k] = read32(b, q + 24 + 4 * k);
    }
    const io = id * 4;
    let local: number;
    let remote: number;
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      const sp = read16(b, t);
      const dp = read16(b, t + 2);
      local = out ? dp : sp;
      remote = out ? sp : dp;
    } else if (proto === PROTO_ICMP6 && (b[t] === ICMP6_ECHO_REQUEST || b[t] === ICMP6_ECHO_REPLY)) {
      local = read16(b, t + 4);
      remote = 0;
    } else {
      return this.errorDropped();
    }
    if (out) {
      if (!same(this.qdst, 0, this.inner, io)) return this.errorDropped();
    } else {
      if (!same(this.qsrc, 0, this.vip, io)) return this.errorDropped();
      // A flow there of another session (a former holder of the VIP, not yet purged) is not this one's.
      const f = this.flows.lookupOuter(proto, this.vip, io, local, this.qdst, 0, remote);
      if (f !== NO_FLOW && this.flows.sessionOf(f) !== id) return this.errorDropped();
    }
    if (same(this.inner, io, this.vip, io)) return true; // address mode: nothing to translate
    if (!icmp.verifyChecksum6(ip.buf, ip.off)) {
      c.malformed++;
      return this.errorDropped();
    }
    // Quoted address: the destination inner -> VIP (from a session) or the source VIP -> inner.
    const field = out ? q + 24 : q + 8;
    const from = out ? this.inner : this.vip;
    const to = out ? this.vip : this.inner;
    for (let k = 0; k < 4; k++) write32(b, field + 4 * k, to[io + k]!);
    const ck = proto === PROTO_TCP ? t + 16 : proto === PROTO_UDP ? t + 6 : t + 2;
    if (ck + 2 <= end) {
      const cur = read16(b, ck);
      if (!(proto === PROTO_UDP && cur === 0)) {
        let n = update128(cur, from, io, to, io);
        if (n === 0 && proto === PROTO_UDP) n = 0xffff;
        write16(b, ck, n);
      }
    }
    this.refill = true;
    return true;
  }

  private errorDropped(): boolean {
    this.counters.icmpErrorsDropped++;
    return false;
  }
}
