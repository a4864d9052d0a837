// Zero-copy view over a UDP header (RFC 768).
//
//    0      7 8     15 16    23 24    31
//   +--------+--------+--------+--------+
//   |     Source      |   Destination   |
//   |      Port       |      Port       |
//   +--------+--------+--------+--------+
//   |                 |                 |
//   |     Length      |    Checksum     |
//   +--------+--------+--------+--------+
//
// Over IPv4 a checksum of 0 means "not computed" and must stay 0 through
// translation; a computed checksum of 0 is sent as 0xffff. Over IPv6 the
// checksum is mandatory (RFC 8200 section 8.1): 0 is invalid, never "none".

import { finish, pseudoSum4, pseudoSum6, sum, update128, update16, update32 } from './checksum.js';
import { read16, write16 } from './bytes.js';
import { PROTO_UDP } from './ipv4.js';

/** Field offsets from the start of the header (smoltcp's `mod field`; a const enum, as Ipv4Field is). */
export const enum UdpField {
  SRC_PORT = 0,
  DST_PORT = 2,
  LENGTH = 4,
  CHECKSUM = 6,
  /** The data: the end of the header. */
  PAYLOAD = 8,
}

export const UDP_HEADER: number = UdpField.PAYLOAD;

export class Udp {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  /** Datagram length by the Length field (header plus data). */
  len = 0;

  /**
   * Points the view at a datagram within `avail` bytes; false if short or if
   * the Length field is below 8 or beyond the bytes there.
   */
  attach(buf: Uint8Array, off: number, avail: number): boolean {
    if (avail < UDP_HEADER) return false;
    const len = read16(buf, off + UdpField.LENGTH);
    if (len < UDP_HEADER || len > avail) return false;
    this.buf = buf;
    this.off = off;
    this.len = len;
    return true;
  }

  /**
   * Points the view at just the 8-byte header, for the first fragment of a
   * fragmented datagram, whose Length field describes bytes not all here.
   */
  attachHeader(buf: Uint8Array, off: number, avail: number): boolean {
    if (avail < UDP_HEADER) return false;
    this.buf = buf;
    this.off = off;
    this.len = avail;
    return true;
  }

  get srcPort(): number {
    return read16(this.buf, this.off + UdpField.SRC_PORT);
  }
  get dstPort(): number {
    return read16(this.buf, this.off + UdpField.DST_PORT);
  }
  get length(): number {
    return read16(this.buf, this.off + UdpField.LENGTH);
  }
  get checksum(): number {
    return read16(this.buf, this.off + UdpField.CHECKSUM);
  }

  /** True when the checksum is right or absent (0). */
  verifyChecksum4(src: number, dst: number): boolean {
    if (this.checksum === 0) return true;
    return finish(sum(this.buf, this.off, this.len, pseudoSum4(src, dst, PROTO_UDP, this.len))) === 0;
  }

  /** Computes the checksum from scratch for the IPv4 pseudo-header (0 is sent as 0xffff). */
  fillChecksum4(src: number, dst: number): void {
    write16(this.buf, this.off + UdpField.CHECKSUM, 0);
    const c = finish(sum(this.buf, this.off, this.len, pseudoSum4(src, dst, PROTO_UDP, this.len)));
    write16(this.buf, this.off + UdpField.CHECKSUM, c === 0 ? 0xffff : c);
  }

  /** Folds a change of a pseudo-header address into the checksum; an absent checksum stays absent. */
  updateAddress(oldAddr: number, newAddr: number): void {
    const o = this.off + UdpField.CHECKSUM;
    const c = read16(this.buf, o);
    if (c === 0) return;
    const n = update32(c, oldAddr, newAddr);
    write16(this.buf, o, n === 0 ? 0xffff : n);
  }

  /** True when the checksum over the pseudo-header of the IPv6 header at ipBuf[ipOff] is right; 0 is invalid over IPv6. */
  verifyChecksum6(ipBuf: Uint8Array, ipOff: number): boolean {
    if (this.checksum === 0) return false;
    return finish(sum(this.buf, this.off, this.len, pseudoSum6(ipBuf, ipOff, this.len, PROTO_UDP))) === 0;
  }

  /** Computes the checksum from scratch for the IPv6 header at ipBuf[ipOff] (0 is sent as 0xffff). */
  fillChecksum6(ipBuf: Uint8Array, ipOff: number): void {
    write16(this.buf, this.off + UdpField.CHECKSUM, 0);
    const c = finish(sum(this.buf, this.off, this.len, pseudoSum6(ipBuf, ipOff, this.len, PROTO_UDP)));
    write16(this.buf, this.off + UdpField.CHECKSUM, c === 0 ? 0xffff : c);
  }

  /**
   * Folds a change of an IPv6 pseudo-header address (four words each) into the
   * checksum. A 0 checksum, invalid over IPv6, is left as it is for the
   * receiver to drop; a result of 0 is sent as 0xffff.
   */
  updateAddress128(oldW: Uint32Array, oldOff: number, newW: Uint32Array, newOff: number): void {
    const o = this.off + UdpField.CHECKSUM;
    const c = read16(this.buf, o);
    if (c === 0) return;
    const n = update128(c, oldW, oldOff, newW, newOff);
    write16(this.buf, o, n === 0 ? 0xffff : n);
  }

  /** Writes a port without touching the checksum: for partial checksums, which the device will sum over the port. */
  writeSrcPort(p: number): void {
    write16(this.buf, this.off + UdpField.SRC_PORT, p);
  }

  writeDstPort(p: number): void {
    write16(this.buf, this.off + UdpField.DST_PORT, p);
  }

  setSrcPort(p: number): void {
    this.setPort(UdpField.SRC_PORT, p);
  }

  setDstPort(p: number): void {
    this.setPort(UdpField.DST_PORT, p);
  }

  private setPort(field: number, p: number): void {
    const o = this.off;
    const c = read16(this.buf, o + UdpField.CHECKSUM);
    if (c !== 0) {
      const n = update16(c, read16(this.buf, o + field), p);
      write16(this.buf, o + UdpField.CHECKSUM, n === 0 ? 0xffff : n);
    }
    write16(this.buf, o + field, p);
  }
}
