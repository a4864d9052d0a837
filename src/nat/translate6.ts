// The IPv6 translator: the same policy as the IPv4 general path (translate4.ts), for sessions' IPv6 inner addresses and VIPs.
//
// IPv6 has no header checksum, but every upper-layer checksum (TCP, UDP and
// ICMPv6 alike) covers a pseudo-header holding both addresses, so each
// address rewrite updates it (RFC 1624 over 128 bits). An ICMPv6 error quotes
// the offending packet; its addresses and checksum are translated too
// (icmp.ts), and the ICMPv6 checksum is then recomputed whole after the
// outer rewrite (RFC 5508 applies the same way). There is no fast path and
// no shared fallback: every IPv6 session has a VIP of its own.
// A session's kernel also sends neighbour discovery, router solicitations and
// MLD reports from link-local addresses: a TUN needs none of them, so they are
// counted and dropped. With blockLocal, packets to the uplink's own
// addresses are answered with ICMPv6 "administratively prohibited" (see
// translate4.ts).

import { FlowTable6, NO_FLOW } from './flows.js';
import { Icmp6Errors } from './icmp.js';
import { FlowKey, HAS_PORTS, IS_ERROR, NO_PORTS, QUOTED } from './key.js';
import { NO_SESSION as EMPTY, Vip6Index } from './vips.js';
import { advance, DROP, type NatCounters, REPLY, type Reply, roomForFlow, STATE_FREE, TO_UPLINK, type Timeouts } from './state.js';
import {
  IcmpField,
  ICMP_HEADER,
  Icmp6,
  ICMP6_CODE_PROHIBITED,
  ICMP6_DEST_UNREACHABLE,
  ICMP6_ECHO_REQUEST,
  ICMP6_INFO_FIRST,
  Ipv6,
  Ipv6Field,
  IPV6_HEADER,
  PROTO_ICMP6,
  PROTO_TCP,
  PROTO_UDP,
  read16,
  Tcp,
  Udp,
  updatePartial128,
  write16,
  write32,
} from '../wire/index.js';

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
  /** The current packet's remote address (scratch, passed on explicitly). */
  private readonly remote = new Uint32Array(4);
  /** The packet's flow key and flags, read by readTransport(). */
  private readonly key = new FlowKey();
  private readonly errors: Icmp6Errors;
  /** The uplink's own IPv6 addresses (blocked when blockLocal). */
  private local6 = new Vip6Index(1);

  constructor(
    maxSession: number,
    flowCapacity: number,
    /** Live IPv6 flows a session may hold. */
    private readonly flowLimit: number,
    private readonly blockLocal: boolean,
    private readonly counters: NatCounters,
    private readonly timeouts: Timeouts,
    /** Where prohibit() writes the length of its reply. */
    private readonly reply: Reply,
    seed?: number,
    memory?: SharedArrayBuffer,
  ) {
    this.flows = new FlowTable6(flowCapacity, seed, memory, maxSession);
    this.inner = new Uint32Array((maxSession + 1) * 4);
    this.vip = new Uint32Array((maxSession + 1) * 4);
    this.active = new Uint8Array(maxSession + 1);
    this.byVip = new Vip6Index(maxSession);
    this.errors = new Icmp6Errors(this.flows, this.inner, this.vip, counters);
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
    return t.removeIf((f) => this.local6.get(t.addr, t.remoteAt(f)) !== EMPTY);
  }

  /**
   * An IPv6 packet from session `id`: TO_UPLINK, a session id (hairpin),
   * REPLY (blockLocal: `reply` says how long it is) or DROP. `csumAt`:
   * where the transport checksum is when the device will finish it, else -1.
   */
  fromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt = -1): number {
    const c = this.counters;
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
    const remote = this.remote;
    ip.readDst(remote, 0);
    if (this.isLocal(remote)) return this.prohibit(io, remote);
    const proto = ip.transportProtocol;
    let t = this.readTransport(true);
    if (t === IS_ERROR) t = this.errors.translate(this.icmp, ip, id, true);
    if (t === DROP) return DROP;
    if (t === HAS_PORTS) {
      const k = this.key;
      let f = this.flows.lookupInner(id, proto, this.inner, io, k.localPort, remote, 0, k.remotePort);
      if (f === NO_FLOW) f = this.newFlow(id, proto, k.localPort, remote, k.remotePort);
      if (f !== NO_FLOW) advance(this.flows, f, proto, k.tcpFlags, true, now, this.timeouts);
    }
    if (!ip.srcEquals(this.vip, io)) {
      if (t !== QUOTED) this.updateUpper(proto, this.inner, io, this.vip, io, csumAt);
      ip.writeSrc(this.vip, io);
    }
    if (t === QUOTED) this.icmp.fillChecksum6(buf, off);
    if (this.byVip.get(remote, 0) !== EMPTY) {
      c.hairpin++;
      return this.fromUplink(buf, off, len, now, csumAt);
    }
    return TO_UPLINK;
  }

  /** An IPv6 packet from the uplink: the session id to deliver it to, or DROP. `csumAt` as for fromSession. */
  fromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt = -1): number {
    const c = this.counters;
    const ip = this.ip;
    if (!ip.attach(buf, off, len)) {
      c.malformed++;
      return DROP;
    }
    const remote = this.remote;
    ip.readDst(remote, 0); // the VIP, for the index lookup
    const id = this.byVip.get(remote, 0);
    if (id === EMPTY) {
      // Multicast (the uplink kernel's own router solicitations, MLD) is link business too.
      if (ip.dstWord(0) >>> 24 === 0xff) c.linkControl++;
      else c.noSession++;
      return DROP;
    }
    const io = id * 4;
    ip.readSrc(remote, 0);
    const proto = ip.transportProtocol;
    let t = this.readTransport(false);
    if (t === IS_ERROR) t = this.errors.translate(this.icmp, ip, id, false);
    if (t === DROP) return DROP;
    if (t === HAS_PORTS) {
      const k = this.key;
      let f = this.flows.lookupOuter(proto, this.vip, io, k.localPort, remote, 0, k.remotePort);
      if (f === NO_FLOW && k.opens && !this.isLocal(remote)) f = this.newFlow(id, proto, k.localPort, remote, k.remotePort);
      if (f !== NO_FLOW) advance(this.flows, f, proto, k.tcpFlags, false, now, this.timeouts);
    }
    if (!ip.dstEquals(this.inner, io)) {
      if (t !== QUOTED) this.updateUpper(proto, this.vip, io, this.inner, io, csumAt);
      ip.writeDst(this.inner, io);
    }
    if (t === QUOTED) this.icmp.fillChecksum6(buf, off);
    return id;
  }

  private isLocal(w: Uint32Array): boolean {
    return this.blockLocal && this.local6.get(w, 0) !== EMPTY;
  }

  /**
   * Turns the packet at `this.ip`, from the session whose inner address is at
   * inner[io] to the blocked address `blocked` (four words), into ICMPv6 type 1
   * code 1 (communication administratively prohibited) back to it, in place,
   * quoting as much as fits 1280 bytes. ICMPv6 errors and later fragments
   * get none (RFC 4443 2.4 (e)): DROP.
   */
  private prohibit(io: number, blocked: Uint32Array): number {
    this.counters.toLocal++;
    const ip = this.ip;
    const b = ip.buf;
    const o = ip.off;
    if (ip.fragmentOffset !== 0) return DROP;
    if (ip.transportProtocol === PROTO_ICMP6) {
      const p = ip.transportOffset;
      // Errors are not answered; nor is a message too short to say what it is.
      if (p >= o + ip.len || b[p]! < ICMP6_INFO_FIRST) return DROP;
    }
    const head = IPV6_HEADER + ICMP_HEADER;
    const quote = Math.min(ip.len, REPLY_MAX - head);
    b.copyWithin(o + head, o, o + quote);
    write32(b, o + Ipv6Field.VER_TC_FL, 0x60000000); // version 6, traffic class and flow label 0
    write16(b, o + Ipv6Field.PAYLOAD_LENGTH, ICMP_HEADER + quote);
    b[o + Ipv6Field.NEXT_HEADER] = PROTO_ICMP6;
    b[o + Ipv6Field.HOP_LIMIT] = 64;
    for (let k = 0; k < 4; k++) {
      write32(b, o + Ipv6Field.SRC + 4 * k, blocked[k]!);
      write32(b, o + Ipv6Field.DST + 4 * k, this.inner[io + k]!);
    }
    const icmp = this.icmp;
    icmp.attach(b, o + IPV6_HEADER, ICMP_HEADER + quote);
    b[icmp.off + IcmpField.TYPE] = ICMP6_DEST_UNREACHABLE;
    b[icmp.off + IcmpField.CODE] = ICMP6_CODE_PROHIBITED;
    write32(b, icmp.off + IcmpField.IDENT, 0); // unused
    icmp.fillChecksum6(b, o);
    this.reply.length = head + quote;
    return REPLY;
  }

  /** Adds a flow of session `id` with `remote` (four words): the session's side at `lport`, the remote's at `rport`. */
  private newFlow(id: number, proto: number, lport: number, remote: Uint32Array, rport: number): number {
    const io = id * 4;
    if (!roomForFlow(this.flows, id, this.flowLimit, this.counters)) return NO_FLOW;
    return this.flows.insert(id, proto, this.inner, io, lport, this.vip, io, lport, remote, 0, rport, STATE_FREE, 0);
  }

  /**
   * Folds an outer address change into the upper-layer checksum (all of them
   * cover the pseudo-header); a checksum the device will finish (at `csumAt`,
   * else -1) holds a partial sum instead.
   */
  private updateUpper(proto: number, oldW: Uint32Array, oo: number, newW: Uint32Array, no: number, csumAt: number): void {
    const ip = this.ip;
    if (ip.fragmentOffset !== 0) return; // no header here
    if (csumAt >= 0) {
      write16(ip.buf, csumAt, updatePartial128(read16(ip.buf, csumAt), oldW, oo, newW, no));
      return;
    }
    if (proto === PROTO_TCP) this.tcp.updateAddress128(oldW, oo, newW, no);
    else if (proto === PROTO_UDP) this.udp.updateAddress128(oldW, oo, newW, no);
    else if (proto === PROTO_ICMP6) this.icmp.updateAddress128(oldW, oo, newW, no);
  }

  /**
   * As Nat4's readTransport, for the packet at `this.ip`: HAS_PORTS,
   * NO_PORTS, IS_ERROR (an ICMPv6 error, at `this.icmp`) or DROP.
   */
  private readTransport(out: boolean): number {
    const ip = this.ip;
    const buf = ip.buf;
    const poff = ip.transportOffset;
    const plen = ip.off + ip.len - poff;
    const proto = ip.transportProtocol;
    this.key.clear();
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
      if (icmp.isError) return IS_ERROR;
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
}
