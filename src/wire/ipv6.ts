// Zero-copy view over an IPv6 header (RFC 8200) and the chain of extension headers behind it.
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |Version| Traffic Class |              Flow Label               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |         Payload Length        |  Next Header  |   Hop Limit   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                                                               |
//   +                                                               +
//   |                                                               |
//   +                        Source Address                         +
//   |                                                               |
//   +                                                               +
//   |                                                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                                                               |
//   +                                                               +
//   |                                                               |
//   +                      Destination Address                      +
//   |                                                               |
//   +                                                               +
//   |                                                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Extension headers walked by attach (RFC 8200 section 4):
//
//   Hop-by-Hop Options (0), Routing (43), Destination Options (60):
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  Next Header  |  Hdr Ext Len  |                               |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//   |     options or routing data: (Hdr Ext Len + 1) * 8 bytes      |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
//   Fragment (44), always 8 bytes:
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                        Identification                         |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// IPv6 has no header checksum: rewriting an address only changes the
// transport checksums, which callers update with update128.

import { read16, read32, write32 } from './bytes.js';
import { formatIpv4, parseIpv4 } from './ipv4.js';

/** Field offsets from the start of the header (smoltcp's `mod field`; a const enum, as Ipv4Field is). */
export const enum Ipv6Field {
  VER_TC_FL = 0,
  PAYLOAD_LENGTH = 4,
  NEXT_HEADER = 6,
  HOP_LIMIT = 7,
  SRC = 8,
  DST = 24,
}

/** Field offsets within an extension header, and a Fragment header's. */
export const enum Ipv6ExtField {
  NEXT = 0,
  LEN = 1,
  FRAG_OFFSET_FLAGS = 2,
  FRAG_IDENT = 4,
}
const EXT_MIN = 8;
const FRAG_HEADER = 8;
const FRAG_OFFSET_MASK = 0xfff8; // 13-bit offset in 8-byte units, already in bytes when masked in place
const FRAG_M = 0x0001;

export const IPV6_HEADER = 40;
export const IPV6_HOP_BY_HOP = 0;
export const IPV6_ROUTING = 43;
export const IPV6_FRAGMENT = 44;
export const IPV6_NO_NEXT_HEADER = 59;
export const IPV6_DEST_OPTIONS = 60;
export const PROTO_ESP = 50;
export const PROTO_AH = 51;
/** Longest extension chain attach accepts, so a hostile packet cannot keep it walking. */
export const IPV6_MAX_EXTENSIONS = 8;

/**
 * RFC 5952 text of an address held as four unsigned 32-bit words w[o..o+3]
 * (not for the hot path): lowercase, no leading zeros, the longest run of two
 * or more zero groups (the first of equals) as "::", and ::ffff:a.b.c.d for
 * IPv4-mapped addresses (section 5).
 */
export function formatIpv6(w: Uint32Array, o: number): string {
  const g: number[] = [];
  for (let i = 0; i < 4; i++) {
    const v = w[o + i]!;
    g.push(v >>> 16, v & 0xffff);
  }
  if (w[o] === 0 && w[o + 1] === 0 && w[o + 2] === 0xffff) return `::ffff:${formatIpv4(w[o + 3]!)}`;
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const text = (from: number, to: number): string =>
    g
      .slice(from, to)
      .map((x) => x.toString(16))
      .join(':');
  if (bestAt < 0) return text(0, 8);
  return `${text(0, bestAt)}::${text(bestAt + bestLen, 8)}`;
}

/** Appends the groups of `s` ("a:b:c", maybe ending in a dotted quad) to `into`; false on junk. */
function parseGroups(s: string, allowIpv4: boolean, into: number[]): boolean {
  if (s === '') return true;
  const parts = s.split(':');
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i]!;
    if (allowIpv4 && i === parts.length - 1 && p.includes('.')) {
      const v = parseIpv4(p);
      if (v < 0) return false;
      into.push(v >>> 16, v & 0xffff);
    } else {
      if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return false;
      into.push(parseInt(p, 16));
    }
  }
  return true;
}

/**
 * Parses RFC 4291 text (full, "::"-compressed, or with a trailing dotted quad)
 * into four unsigned 32-bit words out[o..o+3]. Returns false and leaves `out`
 * alone on anything else, zone ids ("%eth0") and prefixes ("/64") included.
 */
export function parseIpv6(text: string, out: Uint32Array, o: number): boolean {
  const g: number[] = [];
  const gap = text.indexOf('::');
  if (gap < 0) {
    if (!parseGroups(text, true, g) || g.length !== 8) return false;
  } else {
    if (text.indexOf('::', gap + 1) >= 0) return false;
    const tail: number[] = [];
    if (!parseGroups(text.slice(0, gap), false, g) || !parseGroups(text.slice(gap + 2), true, tail)) return false;
    // "::" stands for at least one zero group (RFC 4291 section 2.2).
    if (g.length + tail.length > 7) return false;
    while (g.length + tail.length < 8) g.push(0);
    g.push(...tail);
  }
  for (let i = 0; i < 4; i++) out[o + i] = g[2 * i]! * 0x10000 + g[2 * i + 1]!;
  return true;
}

export class Ipv6 {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  /** 40 plus the Payload Length field (trailing bytes in the buffer are ignored). */
  len = 0;
  /** The Next Header value that ends the walk: 6, 17, 58, 59 (no next header), 50 (ESP), 51 (AH)... */
  transportProtocol = 0;
  /** Absolute offset in `buf` where the header named by transportProtocol starts. */
  transportOffset = 0;
  /** How many extension headers attach walked. */
  extensionCount = 0;
  /** A Fragment header is present (also an atomic one, offset 0 and M clear: RFC 6946). */
  hasFragmentHeader = false;
  /** A real fragment, first or later: a Fragment header with M set or a non-zero offset. */
  isFragment = false;
  /** Fragment offset in bytes; 0 without a Fragment header. */
  fragmentOffset = 0;
  moreFragments = false;
  /** The Fragment header's 32-bit Identification; 0 without one. */
  fragmentIdent = 0;

  /**
   * Points the view at buf[off, off+avail) and walks the extension headers.
   * Returns false, leaving the view as it was, if the bytes are not a
   * well-formed IPv6 packet: short, wrong version, a Payload Length beyond the
   * bytes there, an extension header running past the packet, Hop-by-Hop
   * anywhere but first, a second Fragment header, or more than
   * IPV6_MAX_EXTENSIONS extension headers.
   *
   * The walk stops at the first Next Header that is not 0/43/44/60 (ESP and AH
   * are not walked), and right after the Fragment header of a later fragment
   * (offset > 0), whose bytes are data, not headers. Payload Length 0 with a
   * Jumbo Payload option (RFC 2675) is not supported: it reads as a 40-byte
   * packet, so the Hop-by-Hop header runs past it and attach says false.
   */
  attach(buf: Uint8Array, off: number, avail: number): boolean {
    if (avail < IPV6_HEADER) return false;
    const len = IPV6_HEADER + read16(buf, off + Ipv6Field.PAYLOAD_LENGTH);
    return len <= avail && this.walk(buf, off, len, false);
  }

  /**
   * As attach, for a packet quoted in an ICMPv6 error (RFC 4443: as much of
   * it as fits), which may stop short of its Payload Length: the view covers
   * the `avail` bytes there (`len` = avail). Only where the transport header
   * starts is asked of a quote, so the chain is walked as it stands:
   * Hop-by-Hop past the first place and a second Fragment header are walked,
   * not refused. The transport header itself may be cut short or missing.
   */
  attachQuote(buf: Uint8Array, off: number, avail: number): boolean {
    return avail >= IPV6_HEADER && this.walk(buf, off, avail, true);
  }

  /** The walk of attach over the packet buf[off, off+len); `quote` lifts the two ordering rules (see attachQuote). */
  private walk(buf: Uint8Array, off: number, len: number, quote: boolean): boolean {
    if (buf[off + Ipv6Field.VER_TC_FL]! >>> 4 !== 6) return false;
    const end = off + len;
    let nh = buf[off + Ipv6Field.NEXT_HEADER]!;
    let pos = off + IPV6_HEADER;
    let count = 0;
    let hasFrag = false;
    let fragOff = 0;
    let more = false;
    let ident = 0;
    for (;;) {
      if (nh === IPV6_HOP_BY_HOP) {
        if (count !== 0 && !quote) return false;
      } else if (nh !== IPV6_ROUTING && nh !== IPV6_DEST_OPTIONS && nh !== IPV6_FRAGMENT) {
        break;
      }
      if (count === IPV6_MAX_EXTENSIONS) return false;
      if (pos + EXT_MIN > end) return false;
      count++;
      const next = buf[pos + Ipv6ExtField.NEXT]!;
      if (nh === IPV6_FRAGMENT) {
        if (hasFrag && !quote) return false;
        hasFrag = true;
        const f = read16(buf, pos + Ipv6ExtField.FRAG_OFFSET_FLAGS);
        fragOff = f & FRAG_OFFSET_MASK;
        more = (f & FRAG_M) !== 0;
        ident = read32(buf, pos + Ipv6ExtField.FRAG_IDENT);
        pos += FRAG_HEADER;
        nh = next;
        if (fragOff !== 0) break;
      } else {
        const hlen = (buf[pos + Ipv6ExtField.LEN]! + 1) << 3;
        if (pos + hlen > end) return false;
        pos += hlen;
        nh = next;
      }
    }
    this.buf = buf;
    this.off = off;
    this.len = len;
    this.transportProtocol = nh;
    this.transportOffset = pos;
    this.extensionCount = count;
    this.hasFragmentHeader = hasFrag;
    this.isFragment = fragOff !== 0 || more;
    this.fragmentOffset = fragOff;
    this.moreFragments = more;
    this.fragmentIdent = ident;
    return true;
  }

  get trafficClass(): number {
    return ((this.buf[this.off + Ipv6Field.VER_TC_FL]! & 0x0f) << 4) | (this.buf[this.off + Ipv6Field.VER_TC_FL + 1]! >>> 4);
  }
  get flowLabel(): number {
    const o = this.off + Ipv6Field.VER_TC_FL;
    return ((this.buf[o + 1]! & 0x0f) << 16) | (this.buf[o + 2]! << 8) | this.buf[o + 3]!;
  }
  get payloadLength(): number {
    return read16(this.buf, this.off + Ipv6Field.PAYLOAD_LENGTH);
  }
  /** The Next Header field of the fixed header (the first extension header, if any). */
  get nextHeader(): number {
    return this.buf[this.off + Ipv6Field.NEXT_HEADER]!;
  }
  get hopLimit(): number {
    return this.buf[this.off + Ipv6Field.HOP_LIMIT]!;
  }
  /** Bytes from transportOffset to the end of the packet. */
  get transportLength(): number {
    return this.off + this.len - this.transportOffset;
  }

  /** Word i (0..3, most significant first) of the source address, unsigned. */
  srcWord(i: number): number {
    return read32(this.buf, this.off + Ipv6Field.SRC + (i << 2));
  }
  /** Word i (0..3, most significant first) of the destination address, unsigned. */
  dstWord(i: number): number {
    return read32(this.buf, this.off + Ipv6Field.DST + (i << 2));
  }

  /** Copies the source address into out[o..o+3]. */
  readSrc(out: Uint32Array, o: number): void {
    this.readAddress(Ipv6Field.SRC, out, o);
  }
  readDst(out: Uint32Array, o: number): void {
    this.readAddress(Ipv6Field.DST, out, o);
  }

  /** Rewrites the source address from w[o..o+3]; transport checksums are the caller's (update128). */
  writeSrc(w: Uint32Array, o: number): void {
    this.writeAddress(Ipv6Field.SRC, w, o);
  }
  writeDst(w: Uint32Array, o: number): void {
    this.writeAddress(Ipv6Field.DST, w, o);
  }

  srcEquals(w: Uint32Array, o: number): boolean {
    return this.addressEquals(Ipv6Field.SRC, w, o);
  }
  dstEquals(w: Uint32Array, o: number): boolean {
    return this.addressEquals(Ipv6Field.DST, w, o);
  }

  private readAddress(field: number, out: Uint32Array, o: number): void {
    const at = this.off + field;
    for (let i = 0; i < 4; i++) out[o + i] = read32(this.buf, at + (i << 2));
  }

  private writeAddress(field: number, w: Uint32Array, o: number): void {
    const at = this.off + field;
    for (let i = 0; i < 4; i++) write32(this.buf, at + (i << 2), w[o + i]!);
  }

  private addressEquals(field: number, w: Uint32Array, o: number): boolean {
    const at = this.off + field;
    for (let i = 0; i < 4; i++) if (read32(this.buf, at + (i << 2)) !== w[o + i]) return false;
    return true;
  }
}
