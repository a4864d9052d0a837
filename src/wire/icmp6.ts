// Zero-copy view over an ICMPv6 message header (RFC 4443).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Type      |     Code      |          Checksum             |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Identifier (echo)         |     Sequence Number (echo)    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  Data ... (errors: as much of the offending packet as fits)   |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Unlike ICMPv4, the ICMPv6 checksum covers the IPv6 pseudo-header, so an
// address rewrite of the outer header must update it (updateAddress128).
// A checksum of 0 is an ordinary value here: no "none" rule as in UDP.

import { finish, pseudoSum6, sum, update128, update16 } from './checksum.js';
import { read16, write16 } from './ipv4.js';

const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const IDENT = 4;
const SEQ = 6;

export const ICMP6_HEADER = 8;
export const PROTO_ICMP6 = 58;
export const ICMP6_DEST_UNREACHABLE = 1;
export const ICMP6_PACKET_TOO_BIG = 2;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_PARAMETER_PROBLEM = 4;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;

// Neighbor Discovery (RFC 4861): router solicitation (133) .. redirect (137).
const ND_FIRST = 133;
const ND_LAST = 137;

export class Icmp6 {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  /** Points the view at a message of `len` bytes; false if shorter than the 8-byte header. */
  attach(buf: Uint8Array, off: number, len: number): boolean {
    if (len < ICMP6_HEADER) return false;
    this.buf = buf;
    this.off = off;
    this.len = len;
    return true;
  }

  get type(): number {
    return this.buf[this.off + TYPE]!;
  }
  get code(): number {
    return this.buf[this.off + CODE]!;
  }
  get checksum(): number {
    return read16(this.buf, this.off + CHECKSUM);
  }
  /** Echo identifier (meaningful for echo request/reply). */
  get ident(): number {
    return read16(this.buf, this.off + IDENT);
  }
  get seq(): number {
    return read16(this.buf, this.off + SEQ);
  }
  get isEcho(): boolean {
    const t = this.buf[this.off + TYPE]!;
    return t === ICMP6_ECHO_REQUEST || t === ICMP6_ECHO_REPLY;
  }
  /** True for the error messages (types 1-4) that quote the offending packet. */
  get isError(): boolean {
    const t = this.buf[this.off + TYPE]!;
    return t >= ICMP6_DEST_UNREACHABLE && t <= ICMP6_PARAMETER_PROBLEM;
  }
  /** Router/neighbor solicitation and advertisement, redirect: link-local business, not for translation. */
  get isNeighborDiscovery(): boolean {
    const t = this.buf[this.off + TYPE]!;
    return t >= ND_FIRST && t <= ND_LAST;
  }

  /** True when the checksum over the pseudo-header of the IPv6 header at ipBuf[ipOff] and the message is right. */
  verifyChecksum6(ipBuf: Uint8Array, ipOff: number): boolean {
    return finish(sum(this.buf, this.off, this.len, pseudoSum6(ipBuf, ipOff, this.len, PROTO_ICMP6))) === 0;
  }

  /** Computes the checksum from scratch, with the pseudo-header of the IPv6 header at ipBuf[ipOff]. */
  fillChecksum6(ipBuf: Uint8Array, ipOff: number): void {
    write16(this.buf, this.off + CHECKSUM, 0);
    write16(this.buf, this.off + CHECKSUM, finish(sum(this.buf, this.off, this.len, pseudoSum6(ipBuf, ipOff, this.len, PROTO_ICMP6))));
  }

  /** Folds a change of a pseudo-header address (four words each) into the checksum (RFC 1624). */
  updateAddress128(oldW: Uint32Array, oldOff: number, newW: Uint32Array, newOff: number): void {
    const o = this.off + CHECKSUM;
    write16(this.buf, o, update128(read16(this.buf, o), oldW, oldOff, newW, newOff));
  }

  setIdent(id: number): void {
    const o = this.off;
    write16(this.buf, o + CHECKSUM, update16(read16(this.buf, o + CHECKSUM), read16(this.buf, o + IDENT), id));
    write16(this.buf, o + IDENT, id);
  }
}
