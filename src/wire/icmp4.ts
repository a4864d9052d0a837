// Zero-copy view over an ICMPv4 message header (RFC 792).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Type      |     Code      |          Checksum             |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Identifier (echo)         |     Sequence Number (echo)    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |     Data ... (errors: the offending IP header + 8 bytes)      |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The ICMPv4 checksum covers the message only: no pseudo-header, so address
// translation of the outer IP header leaves it alone.

import { finish, sum, update16 } from './checksum.js';
import { read16, write16 } from './ipv4.js';

const TYPE = 0;
const CODE = 1;
const CHECKSUM = 2;
const IDENT = 4;
const SEQ = 6;

export const ICMP4_HEADER = 8;
export const ICMP4_ECHO_REPLY = 0;
export const ICMP4_DEST_UNREACHABLE = 3;
export const ICMP4_ECHO_REQUEST = 8;
export const ICMP4_TIME_EXCEEDED = 11;
export const ICMP4_PARAMETER_PROBLEM = 12;

export class Icmp4 {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  len = 0;

  /** Points the view at a message of `len` bytes; false if shorter than the 8-byte header. */
  attach(buf: Uint8Array, off: number, len: number): boolean {
    if (len < ICMP4_HEADER) return false;
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
    return t === ICMP4_ECHO_REQUEST || t === ICMP4_ECHO_REPLY;
  }
  /** True for the error messages that quote the offending packet. */
  get isError(): boolean {
    const t = this.buf[this.off + TYPE]!;
    return t === ICMP4_DEST_UNREACHABLE || t === ICMP4_TIME_EXCEEDED || t === ICMP4_PARAMETER_PROBLEM;
  }

  verifyChecksum(): boolean {
    return finish(sum(this.buf, this.off, this.len, 0)) === 0;
  }

  fillChecksum(): void {
    write16(this.buf, this.off + CHECKSUM, 0);
    write16(this.buf, this.off + CHECKSUM, finish(sum(this.buf, this.off, this.len, 0)));
  }

  /** Writes the identifier without touching the checksum (for a checksum the device will finish). */
  writeIdent(id: number): void {
    write16(this.buf, this.off + IDENT, id);
  }

  setIdent(id: number): void {
    const o = this.off;
    write16(this.buf, o + CHECKSUM, update16(read16(this.buf, o + CHECKSUM), read16(this.buf, o + IDENT), id));
    write16(this.buf, o + IDENT, id);
  }
}
