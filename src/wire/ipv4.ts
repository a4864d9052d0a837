// Zero-copy view over an IPv4 header (RFC 791).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |Version|  IHL  |    DSCP/ECN   |          Total Length         |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |         Identification        |Flags|      Fragment Offset    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  Time to Live |    Protocol   |         Header Checksum       |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                       Source Address                          |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Destination Address                        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Options                    |    Padding    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

import { read16, read32, write16, write32 } from './bytes.js';
import { finish, sum, update32 } from './checksum.js';

// Field offsets from the start of the header (smoltcp's `mod field`).
export const IPV4_VER_IHL = 0;
export const IPV4_DSCP_ECN = 1;
export const IPV4_TOTAL_LENGTH = 2;
export const IPV4_IDENT = 4;
export const IPV4_FLAGS_FRAG = 6;
export const IPV4_TTL = 8;
export const IPV4_PROTOCOL = 9;
export const IPV4_CHECKSUM = 10;
export const IPV4_SRC = 12;
export const IPV4_DST = 16;

/** Bits of the 16-bit word at IPV4_FLAGS_FRAG: Don't Fragment, More Fragments, and the offset in 8-byte units. */
export const IPV4_FLAG_DF = 0x4000;
export const IPV4_FLAG_MF = 0x2000;
export const IPV4_FRAG_OFFSET_MASK = 0x1fff;

export const IPV4_MIN_HEADER = 20;
/** The Version/IHL byte of a header without options: version 4, IHL 5. */
export const IPV4_VER_IHL_5 = 0x45;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

/** Dotted-quad text of an address held as an unsigned 32-bit number (not for the hot path). */
export function formatIpv4(a: number): string {
  return `${a >>> 24}.${(a >>> 16) & 0xff}.${(a >>> 8) & 0xff}.${a & 0xff}`;
}

/** Parses dotted-quad text into an unsigned 32-bit number, or -1 if it is not one. */
export function parseIpv4(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) return -1;
  let v = 0;
  for (const p of parts) {
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return -1;
    const n = Number(p);
    if (n > 255) return -1;
    v = v * 256 + n;
  }
  return v;
}

export class Ipv4 {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  /** The packet's length by its Total Length field (trailing bytes in the buffer are ignored). */
  len = 0;

  /**
   * Points the view at buf[off, off+avail). Returns false, leaving the view
   * unusable, if the bytes are not a well-formed IPv4 header: short, wrong
   * version, IHL < 5, or a Total Length that is shorter than the header or
   * longer than the bytes there.
   */
  attach(buf: Uint8Array, off: number, avail: number): boolean {
    return this.check(buf, off, avail, false);
  }

  /**
   * Points the view at a packet quoted in an ICMP error (RFC 792: its header
   * and the first 8 bytes of its data), whose bytes may stop short of its
   * Total Length: the header must be all there, and `len` is still what Total
   * Length says. False as attach, but for a Total Length beyond the bytes.
   */
  attachQuote(buf: Uint8Array, off: number, avail: number): boolean {
    return this.check(buf, off, avail, true);
  }

  private check(buf: Uint8Array, off: number, avail: number, quote: boolean): boolean {
    if (avail < IPV4_MIN_HEADER) return false;
    const vi = buf[off + IPV4_VER_IHL]!;
    if (vi >>> 4 !== 4) return false;
    const hlen = (vi & 0x0f) << 2;
    if (hlen < IPV4_MIN_HEADER || (quote && hlen > avail)) return false;
    const total = read16(buf, off + IPV4_TOTAL_LENGTH);
    // A whole packet's Total Length also bounds the header: total >= hlen and total <= avail.
    if (total < hlen || (!quote && total > avail)) return false;
    this.buf = buf;
    this.off = off;
    this.len = total;
    return true;
  }

  get headerLength(): number {
    return (this.buf[this.off + IPV4_VER_IHL]! & 0x0f) << 2;
  }
  get dscpEcn(): number {
    return this.buf[this.off + IPV4_DSCP_ECN]!;
  }
  get totalLength(): number {
    return read16(this.buf, this.off + IPV4_TOTAL_LENGTH);
  }
  get ident(): number {
    return read16(this.buf, this.off + IPV4_IDENT);
  }
  get dontFragment(): boolean {
    return (read16(this.buf, this.off + IPV4_FLAGS_FRAG) & IPV4_FLAG_DF) !== 0;
  }
  get moreFragments(): boolean {
    return (read16(this.buf, this.off + IPV4_FLAGS_FRAG) & IPV4_FLAG_MF) !== 0;
  }
  /** Fragment offset in bytes. */
  get fragmentOffset(): number {
    return (read16(this.buf, this.off + IPV4_FLAGS_FRAG) & IPV4_FRAG_OFFSET_MASK) << 3;
  }
  /** True for any fragment, first or later. */
  get isFragment(): boolean {
    return (read16(this.buf, this.off + IPV4_FLAGS_FRAG) & (IPV4_FLAG_MF | IPV4_FRAG_OFFSET_MASK)) !== 0;
  }
  get ttl(): number {
    return this.buf[this.off + IPV4_TTL]!;
  }
  get protocol(): number {
    return this.buf[this.off + IPV4_PROTOCOL]!;
  }
  get checksum(): number {
    return read16(this.buf, this.off + IPV4_CHECKSUM);
  }
  get src(): number {
    return read32(this.buf, this.off + IPV4_SRC);
  }
  get dst(): number {
    return read32(this.buf, this.off + IPV4_DST);
  }
  get payloadOffset(): number {
    return this.off + this.headerLength;
  }
  get payloadLength(): number {
    return this.len - this.headerLength;
  }

  /** True when the header checksum is right. */
  verifyChecksum(): boolean {
    return finish(sum(this.buf, this.off, this.headerLength, 0)) === 0;
  }

  /** Recomputes the header checksum from scratch. */
  fillChecksum(): void {
    write16(this.buf, this.off + IPV4_CHECKSUM, 0);
    write16(this.buf, this.off + IPV4_CHECKSUM, finish(sum(this.buf, this.off, this.headerLength, 0)));
  }

  /** Rewrites the source address, updating the header checksum incrementally. */
  setSrc(a: number): void {
    const o = this.off;
    write16(this.buf, o + IPV4_CHECKSUM, update32(read16(this.buf, o + IPV4_CHECKSUM), read32(this.buf, o + IPV4_SRC), a));
    write32(this.buf, o + IPV4_SRC, a);
  }

  /** Rewrites the destination address, updating the header checksum incrementally. */
  setDst(a: number): void {
    const o = this.off;
    write16(this.buf, o + IPV4_CHECKSUM, update32(read16(this.buf, o + IPV4_CHECKSUM), read32(this.buf, o + IPV4_DST), a));
    write32(this.buf, o + IPV4_DST, a);
  }
}
