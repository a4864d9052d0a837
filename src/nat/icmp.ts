// ICMP errors through the translator, both families: the packet an error quotes is matched to its session and translated as the error's own header is.
//
// An error quotes the packet it is about, which went the other way: an error
// a session sends quotes a packet it received (remote -> inner:port), to read
// remote -> outer:port once out; one from the network quotes a packet a
// session sent (outer:port -> remote), to read inner:port -> remote for the
// session (RFC 5508). A quote is truncated, so its length fields are not
// trusted; 8 bytes of its transport header must be there. The error's
// checksum must be right before it is recomputed over the translated quote:
// recomputing would launder a bad one.
//
// A session with a VIP of its own needs no flow: its translation is
// one-to-one with the same ports, so without one (expired, or the table was
// full) the quote is translated by address alone, and an error about a
// datagram sent while the table was full still gives ECONNREFUSED or a path
// MTU. A shared session's ports are the flow's: no flow, no translation.

import { FlowKey, NO_PORTS, QUOTED } from './key.js';
import { type FlowTable, type FlowTable6, NO_FLOW, sameAddress6 as same } from './flows.js';
import type { Sessions4 } from './registry.js';
import { DROP, type NatCounters } from './state.js';
import {
  applyDelta,
  delta128,
  delta16,
  delta32,
  IcmpField,
  ICMP_HEADER,
  type Icmp4,
  type Icmp6,
  Ipv4,
  IPV4_MIN_HEADER,
  Ipv6,
  PROTO_ICMP,
  PROTO_ICMP6,
  PROTO_TCP,
  PROTO_UDP,
  read16,
  TcpField,
  UdpField,
  write16,
} from '../wire/index.js';

/** Bytes of the quoted transport header that must be there: ports (or an echo's identifier) and, for UDP and ICMP, the checksum. */
const QUOTED_TRANSPORT = 8;

/** The least an ICMPv4 error quotes: an IPv4 header and 8 bytes. */
const QUOTE4_MIN = IPV4_MIN_HEADER + QUOTED_TRANSPORT;

/**
 * The rewrite both families make in the quoted transport header at b[t]
 * (the quote ends at `end`): the port (or echo identifier) at b[portAt]
 * becomes `port`, unless portAt is -1 (IPv6 translates no ports); and the
 * checksum, when the quote holds it, takes that change and `delta`, the
 * change of the pseudo-header's addresses (checksum.ts; 0 for ICMPv4, which
 * has none). A UDP checksum of 0 (none) stays 0; a computed 0 goes out as
 * 0xffff.
 */
function rewriteQuotedTransport(b: Uint8Array, t: number, end: number, proto: number, delta: number, portAt: number, port: number): void {
  let d = delta;
  if (portAt >= 0) {
    d += delta16(read16(b, portAt), port);
    write16(b, portAt, port);
  }
  // ICMP and ICMPv6 keep their checksum in the same place.
  const ck = proto === PROTO_TCP ? t + TcpField.CHECKSUM : proto === PROTO_UDP ? t + UdpField.CHECKSUM : t + IcmpField.CHECKSUM;
  if (ck + 2 > end) return;
  const cur = read16(b, ck);
  if (proto === PROTO_UDP && cur === 0) return;
  const n = applyDelta(cur, d);
  write16(b, ck, n === 0 && proto === PROTO_UDP ? 0xffff : n);
}

function dropped(c: NatCounters): number {
  c.icmpErrorsDropped++;
  return DROP;
}

/** ICMPv4 errors, over the IPv4 flow table and session registry. */
export class Icmp4Errors {
  /** The packet quoted in the error, and its ports as a flow key sees them. */
  private readonly qip = new Ipv4();
  private readonly qkey = new FlowKey();

  constructor(
    private readonly flows: FlowTable,
    private readonly sessions: Sessions4,
    private readonly counters: NatCounters,
  ) {}

  /**
   * The error at `icmp`, sent by session `id` (at `inner`, leaving as
   * `outer`), about a packet it received. Returns NO_PORTS (it goes on, its
   * quote translated) or DROP: no flow for a shared session, or a quote of
   * another address.
   */
  fromSession(icmp: Icmp4, id: number, inner: number, outer: number): number {
    const q = this.open(icmp, false);
    if (q < 0) return DROP;
    const qip = this.qip;
    const k = this.qkey;
    const c = this.counters;
    if (qip.dst !== inner) return dropped(c);
    const f = this.flows.lookupInner(id, qip.protocol, inner, k.localPort, qip.src, k.remotePort);
    if (f === NO_FLOW && this.sessions.onShared[id]) return dropped(c);
    const port = f === NO_FLOW ? k.localPort : this.flows.outerPortOf(f);
    return (inner === outer && port === k.localPort) || this.rewrite(icmp, false, outer, port, q) ? NO_PORTS : DROP;
  }

  /**
   * The error at `icmp` from the network, to `outer`, about a packet a
   * session sent. `id` is the session holding `outer` (its VIP), or 0 for
   * the shared address (the flow says which session). Returns the session,
   * or DROP.
   */
  fromUplink(icmp: Icmp4, id: number, outer: number): number {
    const q = this.open(icmp, true);
    if (q < 0) return DROP;
    const qip = this.qip;
    const k = this.qkey;
    const c = this.counters;
    if (qip.src !== outer) return dropped(c);
    const flows = this.flows;
    const f = flows.lookupOuter(qip.protocol, outer, k.localPort, qip.dst, k.remotePort);
    if (f === NO_FLOW ? id === 0 : id !== 0 && flows.sessionOf(f) !== id) return dropped(c);
    const sid = f === NO_FLOW ? id : flows.sessionOf(f);
    const inner = this.sessions.innerOf[sid]!;
    const port = f === NO_FLOW ? k.localPort : flows.innerPortOf(f);
    return (inner === outer && port === k.localPort) || this.rewrite(icmp, true, inner, port, q) ? sid : DROP;
  }

  /**
   * Counts the error at `icmp`, attaches `qip` to the packet it quotes and
   * reads that packet's ports into `qkey` (`sessionSent`: a packet the
   * session sent). Returns the offset of the quoted transport header, or
   * DROP (counted) for a quote short, not IPv4, of a later fragment (no
   * transport header), or of a packet of no flow.
   */
  private open(icmp: Icmp4, sessionSent: boolean): number {
    const c = this.counters;
    c.icmpErrors++;
    const o = icmp.off + ICMP_HEADER;
    const avail = icmp.len - ICMP_HEADER;
    const qip = this.qip;
    if (avail < QUOTE4_MIN || !qip.attachQuote(icmp.buf, o, avail)) return dropped(c);
    const t = o + qip.headerLength;
    if (t + QUOTED_TRANSPORT > o + avail || qip.fragmentOffset !== 0) return dropped(c);
    if (!this.qkey.readQuoted(icmp.buf, t, qip.protocol, sessionSent, PROTO_ICMP)) return dropped(c);
    return t;
  }

  /**
   * Rewrites the quoted packet's source (`srcField`: an error from the
   * network) or destination (from a session) to `addr` and its port on that
   * side to `port` (an echo's identifier), fixing the quoted header checksum
   * and the transport checksum when quoted; then recomputes the ICMP
   * checksum, which covers the quote. False (dropped, counted) if that
   * checksum was wrong to begin with.
   */
  private rewrite(icmp: Icmp4, srcField: boolean, addr: number, port: number, t: number): boolean {
    if (!icmp.verifyChecksum()) {
      this.counters.malformed++;
      dropped(this.counters);
      return false;
    }
    const qip = this.qip;
    const proto = qip.protocol;
    const oldAddr = srcField ? qip.src : qip.dst;
    if (srcField) qip.setSrc(addr);
    else qip.setDst(addr);
    // TCP and UDP cover the pseudo-header (addresses); ICMP only itself.
    const delta = proto === PROTO_ICMP ? 0 : delta32(oldAddr, addr);
    const portAt = proto === PROTO_ICMP ? t + IcmpField.IDENT : srcField ? t + TcpField.SRC_PORT : t + TcpField.DST_PORT;
    rewriteQuotedTransport(icmp.buf, t, icmp.off + icmp.len, proto, delta, portAt, port);
    icmp.fillChecksum();
    return true;
  }
}

/** ICMPv6 errors, over the IPv6 flow table and the sessions' addresses (four words a session, at id * 4). */
export class Icmp6Errors {
  private readonly qip = new Ipv6();
  private readonly qkey = new FlowKey();
  /** The quoted packet's addresses (scratch). */
  private readonly qsrc = new Uint32Array(4);
  private readonly qdst = new Uint32Array(4);

  constructor(
    private readonly flows: FlowTable6,
    private readonly inner: Uint32Array,
    private readonly vip: Uint32Array,
    private readonly counters: NatCounters,
  ) {}

  /**
   * The error at `icmp` in the packet at `ip`, from session `id` (`out`:
   * about a packet it received, remote -> inner) or from the network (about
   * one it sent, VIP -> remote). The quote must hold the session's own
   * address there, and the checksum must be right. Returns DROP, NO_PORTS
   * (address mode: nothing to translate) or QUOTED (translated: the caller
   * recomputes the ICMPv6 checksum after the outer rewrite).
   */
  translate(icmp: Icmp6, ip: Ipv6, id: number, out: boolean): number {
    const c = this.counters;
    c.icmpErrors++;
    const b = icmp.buf;
    const q = icmp.off + ICMP_HEADER;
    const end = icmp.off + icmp.len;
    const qip = this.qip;
    const k = this.qkey;
    // The quote: an IPv6 header, its extension headers, then 8 bytes of the transport header (a later fragment has none).
    if (!qip.attachQuote(b, q, end - q) || qip.fragmentOffset !== 0) return dropped(c);
    const t = qip.transportOffset;
    const proto = qip.transportProtocol;
    if (t + QUOTED_TRANSPORT > end || !k.readQuoted(b, t, proto, !out, PROTO_ICMP6)) return dropped(c);
    qip.readSrc(this.qsrc, 0);
    qip.readDst(this.qdst, 0);
    const io = id * 4;
    if (out) {
      if (!same(this.qdst, 0, this.inner, io)) return dropped(c);
    } else {
      if (!same(this.qsrc, 0, this.vip, io)) return dropped(c);
      // A flow there of another session (a former holder of the VIP, not yet purged) is not this one's.
      const f = this.flows.lookupOuter(proto, this.vip, io, k.localPort, this.qdst, 0, k.remotePort);
      if (f !== NO_FLOW && this.flows.sessionOf(f) !== id) return dropped(c);
    }
    if (same(this.inner, io, this.vip, io)) return NO_PORTS;
    if (!icmp.verifyChecksum6(ip.buf, ip.off)) {
      c.malformed++;
      return dropped(c);
    }
    // The quoted destination inner -> VIP (from a session), or the source VIP -> inner.
    const from = out ? this.inner : this.vip;
    const to = out ? this.vip : this.inner;
    if (out) qip.writeDst(to, io);
    else qip.writeSrc(to, io);
    rewriteQuotedTransport(b, t, end, proto, delta128(from, io, to, io), -1, 0);
    return QUOTED;
  }
}
