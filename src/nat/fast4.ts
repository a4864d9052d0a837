// The IPv4 fast path: the common packet of a flow that exists, in one pass over its bytes, without the header views.
//
// It takes an IPv4 TCP or UDP packet with a 20-byte header, not a fragment,
// well formed as the general path (translate4.ts) checks it, of a flow that
// exists, to or from a session with a VIP of its own (address or NAT mode),
// not hairpinned; and gives the same result, counters and flow state as the
// general path would. Anything else gets SLOW, with nothing changed, and
// takes the general path. test/unit/fastpath.test.ts and the fuzz hold the
// two to each other.
//
// Kept small on purpose: the facade (translate.ts) calls it first, and V8
// inlines it, with what it calls, into the caller's packet loop; the general
// path is a call away. So: no views, no counters of its own, reads straight
// off the bytes at the named offsets, and flows found by hash in one probe.

import { type FlowTable, NO_FLOW, portsWord } from './flows.js';
import type { Sessions4 } from './registry.js';
import { advance, TO_UPLINK, type Timeouts } from './state.js';
import { NO_SESSION } from './vips.js';
import {
  Ipv4Field,
  Ipv4Bits,
  PROTO_TCP,
  PROTO_UDP,
  read16,
  read32,
  TcpField,
  UdpField,
  update32,
  updatePartial32,
  write16,
  write32,
} from '../wire/index.js';

/**
 * The fast path's answer for a packet it leaves, unchanged, to the general
 * path. Every other answer is a verdict of 0 or more (TO_UPLINK or a session
 * id), so the facade tests for those rather than import this.
 */
const SLOW = -2;

// Header lengths as numbers: a 20-byte IPv4 header, the least TCP and UDP
// headers. (Module consts are folded by V8; the enums are offsets.)
const IP_HEADER: number = Ipv4Field.OPTIONS;
const TCP_HEADER: number = TcpField.OPTIONS;
const UDP_HEADER: number = UdpField.PAYLOAD;

export class Fast4 {
  constructor(
    private readonly flows: FlowTable,
    private readonly sessions: Sessions4,
    private readonly timeouts: Timeouts,
  ) {}

  /** A packet from session `id` (see Nat.fromSession): TO_UPLINK, or SLOW. */
  fromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    const s = this.sessions;
    const flags = fastCheck(buf, off, len);
    if (flags < 0 || !s.active[id] || s.onShared[id]) return SLOW;
    const inner = read32(buf, off + Ipv4Field.SRC);
    const remote = read32(buf, off + Ipv4Field.DST);
    if (inner !== s.innerOf[id] || s.hairpins(remote)) return SLOW;
    const proto = buf[off + Ipv4Field.PROTOCOL]!;
    const p = off + IP_HEADER;
    // UDP's ports sit where TCP's do.
    const ports = portsWord(read16(buf, p + TcpField.SRC_PORT), read16(buf, p + TcpField.DST_PORT));
    const flows = this.flows;
    const f = flows.findInner(flows.innerHash(id, proto, inner, remote, ports), id, proto, inner, remote, ports);
    if (f === NO_FLOW) return SLOW;
    advance(flows, f, proto, flags, true, now, this.timeouts);
    const outer = s.vipOf[id]!;
    if (inner !== outer) rewrite(buf, off, Ipv4Field.SRC, proto, inner, outer, csumAt);
    return TO_UPLINK;
  }

  /** A packet from the uplink (see Nat.fromUplink): the session's id, or SLOW. */
  fromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    const flags = fastCheck(buf, off, len);
    if (flags < 0) return SLOW;
    const s = this.sessions;
    const outer = read32(buf, off + Ipv4Field.DST);
    const id = s.byVip.get(outer);
    if (id === NO_SESSION) return SLOW;
    const remote = read32(buf, off + Ipv4Field.SRC);
    const proto = buf[off + Ipv4Field.PROTOCOL]!;
    const p = off + IP_HEADER;
    const lport = read16(buf, p + TcpField.DST_PORT);
    const ports = portsWord(lport, read16(buf, p + TcpField.SRC_PORT));
    const flows = this.flows;
    const f = flows.findOuter(flows.outerHash(proto, outer, remote, ports), proto, outer, remote, ports);
    // A flow whose inner port is not its outer one needs a port rewrite: the general path's.
    if (f === NO_FLOW || flows.innerPortOf(f) !== lport) return SLOW;
    advance(flows, f, proto, flags, false, now, this.timeouts);
    const inner = s.innerOf[id]!;
    if (inner !== outer) rewrite(buf, off, Ipv4Field.DST, proto, outer, inner, csumAt);
    return id;
  }
}

/** The TCP flags (0 for UDP) of a packet the fast path can take, or -1. */
function fastCheck(buf: Uint8Array, off: number, len: number): number {
  // At least a 20-byte IPv4 header and a UDP header (the shorter transport).
  if (len < IP_HEADER + UDP_HEADER || buf[off + Ipv4Field.VER_IHL] !== Ipv4Bits.VER_IHL_5) return -1;
  const total = read16(buf, off + Ipv4Field.TOTAL_LENGTH);
  // Not a fragment: no More Fragments flag, offset 0.
  if (total > len || (read16(buf, off + Ipv4Field.FLAGS_FRAG) & (Ipv4Bits.MF | Ipv4Bits.FRAG_OFFSET_MASK)) !== 0) return -1;
  const p = off + IP_HEADER;
  const plen = total - IP_HEADER;
  const proto = buf[off + Ipv4Field.PROTOCOL];
  if (proto === PROTO_TCP) {
    if (plen < TCP_HEADER) return -1;
    const hlen = (buf[p + TcpField.DATA_OFFSET]! >>> 4) << 2;
    return hlen < TCP_HEADER || hlen > plen ? -1 : buf[p + TcpField.FLAGS]!;
  }
  if (proto === PROTO_UDP) {
    if (plen < UDP_HEADER) return -1;
    const ulen = read16(buf, p + UdpField.LENGTH);
    return ulen < UDP_HEADER || ulen > plen ? -1 : 0;
  }
  return -1;
}

/**
 * Rewrites the address at buf[off + at] (Ipv4Field.SRC or Ipv4Field.DST) from `from`
 * to `to`, with every checksum over it: the header's, and the transport's,
 * which is a partial sum when the device will finish it (`csumAt`, its
 * offset, else -1). A UDP checksum of 0 (none) stays 0.
 */
function rewrite(buf: Uint8Array, off: number, at: number, proto: number, from: number, to: number, csumAt: number): void {
  write16(buf, off + Ipv4Field.CHECKSUM, update32(read16(buf, off + Ipv4Field.CHECKSUM), from, to));
  write32(buf, off + at, to);
  if (csumAt >= 0) {
    write16(buf, csumAt, updatePartial32(read16(buf, csumAt), from, to));
  } else if (proto === PROTO_TCP) {
    const ck = off + IP_HEADER + TcpField.CHECKSUM;
    write16(buf, ck, update32(read16(buf, ck), from, to));
  } else {
    const ck = off + IP_HEADER + UdpField.CHECKSUM;
    const c = read16(buf, ck);
    if (c === 0) return; // no UDP checksum
    const n = update32(c, from, to);
    write16(buf, ck, n === 0 ? 0xffff : n);
  }
}
