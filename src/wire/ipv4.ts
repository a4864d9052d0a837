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

/**
 * Field offsets from the start of the header (smoltcp's `mod field`). A const
 * enum: tsc writes each use as its number, where V8 would load an exported
 * `const` from its module cell at every use, on the packet path.
 */
export const enum Ipv4Field {
  VER_IHL = 0,
  DSCP_ECN = 1,
  TOTAL_LENGTH = 2,
  IDENT = 4,
  FLAGS_FRAG = 6,
  TTL = 8,
  PROTOCOL = 9,
  CHECKSUM = 10,
  SRC = 12,
  DST = 16,
  /** Options, or the payload of a header without them: the end of the fixed header. */
  OPTIONS = 20,
}

/** Values in the fields: the Version/IHL byte of a header without options (version 4, IHL 5), and the bits of the word at FLAGS_FRAG. */
export const enum Ipv4Bits {
  VER_IHL_5 = 0x45,
  DF = 0x4000,
  MF = 0x2000,
  /** The fragment offset, in 8-byte units. */
  FRAG_OFFSET_MASK = 0x1fff,
}

export const IPV4_MIN_HEADER: number = Ipv4Field.OPTIONS;
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
    const vi = buf[off + Ipv4Field.VER_IHL]!;
    if (vi >>> 4 !== 4) return false;
    const hlen = (vi & 0x0f) << 2;
    if (hlen < IPV4_MIN_HEADER || (quote && hlen > avail)) return false;
    const total = read16(buf, off + Ipv4Field.TOTAL_LENGTH);
    // A whole packet's Total Length also bounds the header: total >= hlen and total <= avail.
    if (total < hlen || (!quote && total > avail)) return false;
    this.buf = buf;
    this.off = off;
    this.len = total;
    return true;
  }

  get headerLength(): number {
    return (this.buf[this.off + Ipv4Field.VER_IHL]! & 0x0f) << 2;
  }
  get dscpEcn(): number {
    return this.buf[this.off + Ipv4Field.DSCP_ECN]!;
  }
  get totalLength(): number {
    return read16(this.buf, this.off + Ipv4Field.TOTAL_LENGTH);
  }
  get ident(): number {
    return read16(this.buf, this.off + Ipv4Field.IDENT);
  }
  get dontFragment(): boolean {
    return (read16(this.buf, this.off + Ipv4Field.FLAGS_FRAG) & Ipv4Bits.DF) !== 0;
  }
  get moreFragments(): boolean {
    return (read16(this.buf, this.off + Ipv4Field.FLAGS_FRAG) & Ipv4Bits.MF) !== 0;
  }
  /** Fragment offset in bytes. */
  get fragmentOffset(): number {
    return (read16(this.buf, this.off + Ipv4Field.FLAGS_FRAG) & Ipv4Bits.FRAG_OFFSET_MASK) << 3;
  }
  /** True for any fragment, first or later. */
  get isFragment(): boolean {
    return (read16(this.buf, this.off + Ipv4Field.FLAGS_FRAG) & (Ipv4Bits.MF | Ipv4Bits.FRAG_OFFSET_MASK)) !== 0;
  }
  get ttl(): number {
    return this.buf[this.off + Ipv4Field.TTL]!;
  }
  get protocol(): number {
    return this.buf[this.off + Ipv4Field.PROTOCOL]!;
  }
  get checksum(): number {
    return read16(this.buf, this.off + Ipv4Field.CHECKSUM);
  }
  get src(): number {
    return read32(this.buf, this.off + Ipv4Field.SRC);
  }
  get dst(): number {
    return read32(this.buf, this.off + Ipv4Field.DST);
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
    write16(this.buf, this.off + Ipv4Field.CHECKSUM, 0);
    write16(this.buf, this.off + Ipv4Field.CHECKSUM, finish(sum(this.buf, this.off, this.headerLength, 0)));
  }

  /** Rewrites the source address, updating the header checksum incrementally. */
  setSrc(a: number): void {
    const o = this.off;
    write16(this.buf, o + Ipv4Field.CHECKSUM, update32(read16(this.buf, o + Ipv4Field.CHECKSUM), read32(this.buf, o + Ipv4Field.SRC), a));
    write32(this.buf, o + Ipv4Field.SRC, a);
  }

  /** Rewrites the destination address, updating the header checksum incrementally. */
  setDst(a: number): void {
    const o = this.off;
    write16(this.buf, o + Ipv4Field.CHECKSUM, update32(read16(this.buf, o + Ipv4Field.CHECKSUM), read32(this.buf, o + Ipv4Field.DST), a));
    write32(this.buf, o + Ipv4Field.DST, a);
  }
}
