// ICMPv4 messages (RFC 792) over the shared ICMP header view (icmp.ts): the type numbers, and a checksum over the message alone.
//
// The ICMPv4 checksum covers the message only: no pseudo-header, so address
// translation of the outer IP header leaves it alone.

import { write16 } from './bytes.js';
import { finish, sum } from './checksum.js';
import { IcmpField, ICMP_HEADER, IcmpHeader } from './icmp.js';

export const ICMP4_HEADER = ICMP_HEADER;
export const ICMP4_ECHO_REPLY = 0;
export const ICMP4_DEST_UNREACHABLE = 3;
export const ICMP4_SOURCE_QUENCH = 4;
export const ICMP4_REDIRECT = 5;
export const ICMP4_ECHO_REQUEST = 8;
export const ICMP4_TIME_EXCEEDED = 11;
export const ICMP4_PARAMETER_PROBLEM = 12;
/** Destination unreachable code 13: communication administratively prohibited (RFC 1812 5.2.7.1). */
export const ICMP4_CODE_PROHIBITED = 13;

export class Icmp4 extends IcmpHeader {
  get isEcho(): boolean {
    const t = this.buf[this.off + IcmpField.TYPE]!;
    return t === ICMP4_ECHO_REQUEST || t === ICMP4_ECHO_REPLY;
  }
  /** True for the error messages that quote the offending packet. */
  get isError(): boolean {
    const t = this.buf[this.off + IcmpField.TYPE]!;
    return t === ICMP4_DEST_UNREACHABLE || t === ICMP4_TIME_EXCEEDED || t === ICMP4_PARAMETER_PROBLEM;
  }

  verifyChecksum(): boolean {
    return finish(sum(this.buf, this.off, this.len, 0)) === 0;
  }

  fillChecksum(): void {
    write16(this.buf, this.off + IcmpField.CHECKSUM, 0);
    write16(this.buf, this.off + IcmpField.CHECKSUM, finish(sum(this.buf, this.off, this.len, 0)));
  }
}
