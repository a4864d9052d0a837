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

import { finish, sum, update32 } from './checksum.js';

const VER_IHL = 0;
const DSCP_ECN = 1;
const TOTAL_LENGTH = 2;
const IDENT = 4;
const FLAGS_FRAG = 6;
const TTL = 8;
const PROTOCOL = 9;
const CHECKSUM = 10;
const SRC = 12;
const DST = 16;

export const IPV4_MIN_HEADER = 20;
export const PROTO_ICMP = 1;
export const PROTO_TCP = 6;
export const PROTO_UDP = 17;

const FLAG_DF = 0x4000;
const FLAG_MF = 0x2000;
const FRAG_OFFSET_MASK = 0x1fff;

/** Reads a big-endian unsigned 32-bit number. */
export function read32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export function write32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

export function read16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

export function write16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

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
    if (avail < IPV4_MIN_HEADER) return false;
    const vi = buf[off + VER_IHL]!;
    if (vi >>> 4 !== 4) return false;
    const hlen = (vi & 0x0f) << 2;
    if (hlen < IPV4_MIN_HEADER) return false;
    const total = read16(buf, off + TOTAL_LENGTH);
    if (total < hlen || total > avail) return false;
    this.buf = buf;
    this.off = off;
    this.len = total;
    return true;
  }

  get headerLength(): number {
    return (this.buf[this.off + VER_IHL]! & 0x0f) << 2;
  }
  get dscpEcn(): number {
    return this.buf[this.off + DSCP_ECN]!;
  }
  get totalLength(): number {
    return read16(this.buf, this.off + TOTAL_LENGTH);
  }
  get ident(): number {
    return read16(this.buf, this.off + IDENT);
  }
  get dontFragment(): boolean {
    return (read16(this.buf, this.off + FLAGS_FRAG) & FLAG_DF) !== 0;
  }
  get moreFragments(): boolean {
    return (read16(this.buf, this.off + FLAGS_FRAG) & FLAG_MF) !== 0;
  }
  /** Fragment offset in bytes. */
  get fragmentOffset(): number {
    return (read16(this.buf, this.off + FLAGS_FRAG) & FRAG_OFFSET_MASK) << 3;
  }
  /** True for any fragment, first or later. */
  get isFragment(): boolean {
    return (read16(this.buf, this.off + FLAGS_FRAG) & (FLAG_MF | FRAG_OFFSET_MASK)) !== 0;
  }
  get ttl(): number {
    return this.buf[this.off + TTL]!;
  }
  get protocol(): number {
    return this.buf[this.off + PROTOCOL]!;
  }
  get checksum(): number {
    return read16(this.buf, this.off + CHECKSUM);
  }
  get src(): number {
    return read32(this.buf, this.off + SRC);
  }
  get dst(): number {
    return read32(this.buf, this.off + DST);
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
    write16(this.buf, this.off + CHECKSUM, 0);
    write16(this.buf, this.off + CHECKSUM, finish(sum(this.buf, this.off, this.headerLength, 0)));
  }

  /** Rewrites the source address, updating the header checksum incrementally. */
  setSrc(a: number): void {
    const o = this.off;
    write16(this.buf, o + CHECKSUM, update32(read16(this.buf, o + CHECKSUM), read32(this.buf, o + SRC), a));
    write32(this.buf, o + SRC, a);
  }

  /** Rewrites the destination address, updating the header checksum incrementally. */
  setDst(a: number): void {
    const o = this.off;
    write16(this.buf, o + CHECKSUM, update32(read16(this.buf, o + CHECKSUM), read32(this.buf, o + DST), a));
    write32(this.buf, o + DST, a);
  }
}
