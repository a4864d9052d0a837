// ICMPv6 messages (RFC 4443) over the shared ICMP header view (icmp.ts): the type numbers, and a checksum over the IPv6 pseudo-header.
//
// Unlike ICMPv4, the ICMPv6 checksum covers the IPv6 pseudo-header, so an
// address rewrite of the outer header must update it (updateAddress128).
// A checksum of 0 is an ordinary value here: no "none" rule as in UDP.

import { read16, write16 } from './bytes.js';
import { finish, pseudoSum6, sum, update128 } from './checksum.js';
import { IcmpField, ICMP_HEADER, IcmpHeader } from './icmp.js';

export const ICMP6_HEADER = ICMP_HEADER;
export const PROTO_ICMP6 = 58;
export const ICMP6_DEST_UNREACHABLE = 1;
export const ICMP6_PACKET_TOO_BIG = 2;
export const ICMP6_TIME_EXCEEDED = 3;
export const ICMP6_PARAMETER_PROBLEM = 4;
export const ICMP6_ECHO_REQUEST = 128;
export const ICMP6_ECHO_REPLY = 129;
/** Destination unreachable code 1: communication with destination administratively prohibited. */
export const ICMP6_CODE_PROHIBITED = 1;
/** Types below 128 are errors (RFC 4443 2.1). */
export const ICMP6_INFO_FIRST = 128;

// Neighbor Discovery (RFC 4861): router solicitation (133) .. redirect (137).
const ND_FIRST = 133;
const ND_LAST = 137;

export class Icmp6 extends IcmpHeader {
  get isEcho(): boolean {
    const t = this.buf[this.off + IcmpField.TYPE]!;
    return t === ICMP6_ECHO_REQUEST || t === ICMP6_ECHO_REPLY;
  }
  /** True for the error messages (types 1-4) that quote the offending packet. */
  get isError(): boolean {
    const t = this.buf[this.off + IcmpField.TYPE]!;
    return t >= ICMP6_DEST_UNREACHABLE && t <= ICMP6_PARAMETER_PROBLEM;
  }
  /** Router/neighbor solicitation and advertisement, redirect: link-local business, not for translation. */
  get isNeighborDiscovery(): boolean {
    const t = this.buf[this.off + IcmpField.TYPE]!;
    return t >= ND_FIRST && t <= ND_LAST;
  }

  /** True when the checksum over the pseudo-header of the IPv6 header at ipBuf[ipOff] and the message is right. */
  verifyChecksum6(ipBuf: Uint8Array, ipOff: number): boolean {
    return finish(sum(this.buf, this.off, this.len, pseudoSum6(ipBuf, ipOff, this.len, PROTO_ICMP6))) === 0;
  }

  /** Computes the checksum from scratch, with the pseudo-header of the IPv6 header at ipBuf[ipOff]. */
  fillChecksum6(ipBuf: Uint8Array, ipOff: number): void {
    write16(this.buf, this.off + IcmpField.CHECKSUM, 0);
    write16(
      this.buf,
      this.off + IcmpField.CHECKSUM,
      finish(sum(this.buf, this.off, this.len, pseudoSum6(ipBuf, ipOff, this.len, PROTO_ICMP6))),
    );
  }

  /** Folds a change of a pseudo-header address (four words each) into the checksum (RFC 1624). */
  updateAddress128(oldW: Uint32Array, oldOff: number, newW: Uint32Array, newOff: number): void {
    const o = this.off + IcmpField.CHECKSUM;
    write16(this.buf, o, update128(read16(this.buf, o), oldW, oldOff, newW, newOff));
  }
}
