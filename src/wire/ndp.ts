// IPv6 neighbour discovery (RFC 4861): neighbour solicitations and advertisements with their link-layer address option, whole IPv6 packets with their checksum.
import { finish, pseudoSum6, sum } from './checksum.js';
import { write16 } from './bytes.js';
import { PROTO_ICMP6 } from './icmp6.js';

export const ICMP6_NEIGHBOR_SOLICIT = 135;
export const ICMP6_NEIGHBOR_ADVERT = 136;
/** Neighbour advertisement flags (the first byte after the checksum): router, solicited, override. */
export const NA_ROUTER = 0x80;
export const NA_SOLICITED = 0x40;
export const NA_OVERRIDE = 0x20;
/** Options: source and target link-layer address (RFC 4861 4.6.1), 8 bytes for Ethernet. */
const OPT_SOURCE_LLA = 1;
const OPT_TARGET_LLA = 2;
const IPV6_HEADER = 40;
/** ICMPv6 header, reserved or flags, and target: 24 bytes; then an 8-byte option. */
const NDP_BODY = 24;
export const NDP_LEN = IPV6_HEADER + NDP_BODY + 8;

/** The solicited-node multicast address of `target` (ff02::1:ffXX:XXXX, RFC 4291 2.7.1). */
export function solicitedNode(target: Uint8Array): Uint8Array {
  const a = new Uint8Array(16);
  a.set([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff]);
  a.set(target.subarray(13, 16), 13);
  return a;
}

/** The Ethernet multicast address of an IPv6 multicast address (33:33 and its last 32 bits, RFC 2464 7). */
export function multicastMac(group: Uint8Array): Uint8Array {
  return Uint8Array.from([0x33, 0x33, group[12]!, group[13]!, group[14]!, group[15]!]);
}

/**
 * Writes at buf[0] an IPv6 packet (hop limit 255, as RFC 4861 requires) from
 * `src` to `dst` carrying a neighbour solicitation for `target`, with a
 * source link-layer address option (`mac`), or, with `naFlags` not null, an
 * advertisement with those flags and a target link-layer address option.
 * Returns its length.
 */
export function writeNdp(
  buf: Uint8Array,
  src: Uint8Array,
  dst: Uint8Array,
  target: Uint8Array,
  mac: Uint8Array,
  naFlags: number | null,
): number {
  const upper = NDP_BODY + 8;
  buf.fill(0, 0, NDP_LEN);
  buf[0] = 0x60;
  write16(buf, 4, upper);
  buf[6] = PROTO_ICMP6;
  buf[7] = 255;
  buf.set(src.subarray(0, 16), 8);
  buf.set(dst.subarray(0, 16), 24);
  const t = IPV6_HEADER;
  buf[t] = naFlags === null ? ICMP6_NEIGHBOR_SOLICIT : ICMP6_NEIGHBOR_ADVERT;
  if (naFlags !== null) buf[t + 4] = naFlags;
  buf.set(target.subarray(0, 16), t + 8);
  buf[t + 24] = naFlags === null ? OPT_SOURCE_LLA : OPT_TARGET_LLA;
  buf[t + 25] = 1; // in units of 8 bytes
  buf.set(mac.subarray(0, 6), t + 26);
  write16(buf, t + 2, finish(sum(buf, t, upper, pseudoSum6(buf, 0, upper, PROTO_ICMP6))));
  return NDP_LEN;
}

/** An advertisement read off the wire: its target and flags. */
export interface NeighborAdvert {
  target: Uint8Array;
  flags: number;
}

/** Reads a neighbour advertisement from the IPv6 packet at buf[0], `len` bytes (hop limit 255, checksum right); null if it is not one. */
export function readNeighborAdvert(buf: Uint8Array, len: number): NeighborAdvert | null {
  if (len < IPV6_HEADER + NDP_BODY || buf[0]! >>> 4 !== 6 || buf[6] !== PROTO_ICMP6 || buf[7] !== 255) return null;
  const upper = Math.min(len - IPV6_HEADER, (buf[4]! << 8) | buf[5]!);
  const t = IPV6_HEADER;
  if (upper < NDP_BODY || buf[t] !== ICMP6_NEIGHBOR_ADVERT || buf[t + 1] !== 0) return null;
  if (finish(sum(buf, t, upper, pseudoSum6(buf, 0, upper, PROTO_ICMP6))) !== 0) return null;
  return { target: buf.slice(t + 8, t + 24), flags: buf[t + 4]! };
}
