// Test helper: IPv4 and IPv6 behind one interface, for the translator tests that are the same in both families (describe.each over FAMILIES).
import { type FlowTableBase, Nat, type NatOptions } from '../../src/nat/index.js';
import {
  ICMP,
  ICMP6,
  type TcpFields,
  type UdpFields,
  addr,
  addr6,
  allOk,
  echo6Packet,
  echoPacket,
  icmp6ErrorPacket,
  icmpErrorPacket,
  ipHeaderOk,
  ipv4,
  ipv6,
  l4Ok6,
  tcp6Packet,
  tcpPacket,
  toHex,
  udp6Packet,
  udpPacket,
  words6,
} from './packets.js';

/** An address as a family's builders take it: a number (IPv4) or 16 bytes (IPv6). */
export type Addr = number | Uint8Array;

export interface Family {
  readonly name: 'IPv4' | 'IPv6';
  /** The inner address sessions 1-3 share (NAT mode); session 4 holds vip(4) itself (address mode). */
  readonly inner: Addr;
  vip(k: number): Addr;
  readonly remote: Addr;
  readonly remote2: Addr;
  readonly router: Addr;
  /** ICMP or ICMPv6: the protocol number, the echo types, port unreachable and time exceeded. */
  readonly icmp: number;
  readonly echoRequest: number;
  readonly echoReply: number;
  readonly portUnreachable: readonly [number, number];
  readonly timeExceeded: readonly [number, number];
  /** Bytes of the fixed IP header: a plain packet's transport header starts there. */
  readonly ipHeader: number;
  /** The NatOptions that give this family's flow table `n` flows. */
  capacity(n: number): Partial<NatOptions>;
  /** Sessions 1-3 in NAT mode at `inner`, session 4 in address mode (IPv6: and session 5 with IPv4 only). */
  makeNat(opts?: Partial<NatOptions>): Nat;
  flows(nat: Nat): FlowTableBase;
  /** The flow of session `id` for a packet it sends inner:sport -> remote:dport, or NO_FLOW. */
  flowIn(nat: Nat, id: number, proto: number, sport: number, remote: Addr, dport: number, inner?: Addr): number;
  /** The flow of a packet remote:rport -> vip:port from the uplink, or NO_FLOW. */
  flowOut(nat: Nat, proto: number, vip: Addr, port: number, remote: Addr, rport: number): number;
  /** A flow's inner and outer addresses, as hex. */
  addressesOf(nat: Nat, f: number): { inner: string; outer: string };
  tcp(src: Addr, dst: Addr, f: TcpFields): Uint8Array;
  udp(src: Addr, dst: Addr, f: UdpFields): Uint8Array;
  echo(src: Addr, dst: Addr, request: boolean, ident: number, seq: number, data?: Uint8Array): Uint8Array;
  /** An ICMP(v6) error quoting the first `cut` bytes of `quote`. */
  error(src: Addr, dst: Addr, type: number, code: number, quote: Uint8Array, cut?: number): Uint8Array;
  /** A packet of protocol `proto` around `payload` (for protocols without ports, and raw cases). */
  ip(src: Addr, dst: Addr, proto: number, payload: Uint8Array): Uint8Array;
  /** The checksums verify from scratch: IPv4's header and transport, IPv6's transport (packets.ts, never src/wire). */
  ok(p: Uint8Array): boolean;
  /** The IP header checksum verifies (IPv6 has none: always true). */
  headerOk(p: Uint8Array): boolean;
  srcOf(p: Uint8Array): string;
  dstOf(p: Uint8Array): string;
  hex(a: Addr): string;
}

/** An IPv4 address given as Addr (for tables written for one family). */
export const as4 = (a: Addr): number => a as number;
/** An IPv6 address given as Addr. */
export const as6 = (a: Addr): Uint8Array => a as Uint8Array;
const v4 = as4;
const v6 = as6;

function addrHex4(a: number): string {
  return toHex(new Uint8Array([a >>> 24, (a >>> 16) & 0xff, (a >>> 8) & 0xff, a & 0xff]));
}

export const IPV4: Family = {
  name: 'IPv4',
  inner: addr('10.0.2.100'),
  vip: (k) => addr(`198.19.0.${k}`),
  remote: addr('203.0.113.5'),
  remote2: addr('203.0.113.6'),
  router: addr('192.0.2.1'),
  icmp: ICMP,
  echoRequest: 8,
  echoReply: 0,
  portUnreachable: [3, 3],
  timeExceeded: [11, 0],
  ipHeader: 20,
  capacity: (n) => ({ flowCapacity: n }),
  makeNat(opts = {}) {
    const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1, ...opts });
    for (const k of [1, 2, 3]) nat.addSession(k, v4(this.inner), v4(this.vip(k)));
    nat.addSession(4, v4(this.vip(4)), v4(this.vip(4)));
    return nat;
  },
  flows: (nat) => nat.flows,
  flowIn(nat, id, proto, sport, remote, dport, inner) {
    return nat.flows.lookupInner(id, proto, v4(inner ?? this.inner), sport, v4(remote), dport);
  },
  flowOut(nat, proto, vip, port, remote, rport) {
    return nat.flows.lookupOuter(proto, v4(vip), port, v4(remote), rport);
  },
  addressesOf: (nat, f) => ({ inner: addrHex4(nat.flows.innerAddrOf(f)), outer: addrHex4(nat.flows.outerAddrOf(f)) }),
  tcp: (src, dst, f) => tcpPacket(v4(src), v4(dst), f),
  udp: (src, dst, f) => udpPacket(v4(src), v4(dst), f),
  echo: (src, dst, request, ident, seq, data) => echoPacket(v4(src), v4(dst), request ? 8 : 0, ident, seq, data),
  error: (src, dst, type, code, quote, cut) => icmpErrorPacket(v4(src), v4(dst), type, code, quote, cut),
  ip: (src, dst, proto, payload) => ipv4({ src: v4(src), dst: v4(dst), proto }, payload),
  ok: allOk,
  headerOk: ipHeaderOk,
  srcOf: (p) => toHex(p.subarray(12, 16)),
  dstOf: (p) => toHex(p.subarray(16, 20)),
  hex: (a) => addrHex4(v4(a)),
};

export const IPV6: Family = {
  name: 'IPv6',
  inner: addr6('fd00:2::100'),
  vip: (k) => addr6(`fd00:19:7::${k.toString(16)}`),
  remote: addr6('2001:db8:5::5'),
  remote2: addr6('2001:db8:5::6'),
  router: addr6('2001:db8:ff::1'),
  icmp: ICMP6,
  echoRequest: 128,
  echoReply: 129,
  portUnreachable: [1, 4],
  timeExceeded: [3, 0],
  ipHeader: 40,
  capacity: (n) => ({ flowCapacity6: n }),
  makeNat(opts = {}) {
    const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1, ...opts });
    for (const k of [1, 2, 3]) nat.addSession6(k, words6(v6(this.inner)), words6(v6(this.vip(k))));
    nat.addSession6(4, words6(v6(this.vip(4))), words6(v6(this.vip(4))));
    nat.addSession(5, addr('10.0.2.100'), addr('198.19.0.5'));
    return nat;
  },
  flows: (nat) => nat.v6.flows,
  flowIn(nat, id, proto, sport, remote, dport, inner) {
    return nat.v6.flows.lookupInner(id, proto, words6(v6(inner ?? this.inner)), 0, sport, words6(v6(remote)), 0, dport);
  },
  flowOut: (nat, proto, vip, port, remote, rport) =>
    nat.v6.flows.lookupOuter(proto, words6(v6(vip)), 0, port, words6(v6(remote)), 0, rport),
  addressesOf(nat, f) {
    const t = nat.v6.flows;
    const hex = (at: number): string => this.hex(wordsBytes(t.addr.subarray(at, at + 4)));
    return { inner: hex(t.innerAt(f)), outer: hex(t.outerAt(f)) };
  },
  tcp: (src, dst, f) => tcp6Packet(v6(src), v6(dst), f),
  udp: (src, dst, f) => udp6Packet(v6(src), v6(dst), f),
  echo: (src, dst, request, ident, seq, data) => echo6Packet(v6(src), v6(dst), request ? 128 : 129, ident, seq, data),
  error: (src, dst, type, code, quote, cut) => icmp6ErrorPacket(v6(src), v6(dst), type, code, quote, cut),
  ip: (src, dst, proto, payload) => ipv6({ src: v6(src), dst: v6(dst), proto }, payload),
  ok: l4Ok6,
  headerOk: () => true,
  srcOf: (p) => toHex(p.subarray(8, 24)),
  dstOf: (p) => toHex(p.subarray(24, 40)),
  hex: (a) => toHex(v6(a)),
};

/** The 16 bytes of four address words. */
function wordsBytes(w: Uint32Array): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 0; i < 4; i++) {
    const x = w[i]!;
    b.set([x >>> 24, (x >>> 16) & 0xff, (x >>> 8) & 0xff, x & 0xff], i * 4);
  }
  return b;
}

export const FAMILIES: readonly Family[] = [IPV4, IPV6];
