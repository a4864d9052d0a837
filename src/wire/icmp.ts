// Zero-copy view over the 8-byte message header that ICMPv4 (RFC 792) and ICMPv6 (RFC 4443) share.
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Type      |     Code      |          Checksum             |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Identifier (echo)         |     Sequence Number (echo)    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Data ... (errors: the offending packet, or what fits)     |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The two families differ in their type numbers and in what the checksum
// covers (icmp4.ts, icmp6.ts), not in this layout.

import { read16, write16 } from './bytes.js';
import { update16 } from './checksum.js';

/** Field offsets from the start of the header (smoltcp's `mod field`; a const enum, as Ipv4Field is). */
export const enum IcmpField {
  TYPE = 0,
  CODE = 1,
  CHECKSUM = 2,
  IDENT = 4,
  SEQ = 6,
}

export const ICMP_HEADER = 8;

export class IcmpHeader {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  /** Points the view at a message of `len` bytes; false if shorter than the 8-byte header. */
  attach(buf: Uint8Array, off: number, len: number): boolean {
    if (len < ICMP_HEADER) return false;
    this.buf = buf;
    this.off = off;
    this.len = len;
    return true;
  }

  get type(): number {
    return this.buf[this.off + IcmpField.TYPE]!;
  }
  get code(): number {
    return this.buf[this.off + IcmpField.CODE]!;
  }
  get checksum(): number {
    return read16(this.buf, this.off + IcmpField.CHECKSUM);
  }
  /** Echo identifier (meaningful for echo request/reply). */
  get ident(): number {
    return read16(this.buf, this.off + IcmpField.IDENT);
  }
  get seq(): number {
    return read16(this.buf, this.off + IcmpField.SEQ);
  }

  /** Writes the identifier without touching the checksum (for a checksum the device will finish). */
  writeIdent(id: number): void {
    write16(this.buf, this.off + IcmpField.IDENT, id);
  }

  /** Rewrites the identifier, updating the checksum incrementally (RFC 1624). */
  setIdent(id: number): void {
    const o = this.off;
    write16(
      this.buf,
      o + IcmpField.CHECKSUM,
      update16(read16(this.buf, o + IcmpField.CHECKSUM), read16(this.buf, o + IcmpField.IDENT), id),
    );
    write16(this.buf, o + IcmpField.IDENT, id);
  }
}
