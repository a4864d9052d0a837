// Zero-copy view over a TCP header (RFC 9293).
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |          Source Port          |       Destination Port        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                        Sequence Number                        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Acknowledgment Number                      |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |  Data |       |C|E|U|A|P|R|S|F|                               |
//   | Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |           Checksum            |         Urgent Pointer        |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |                    Options                    |    Padding    |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+

import { finish, pseudoSum4, pseudoSum6, sum, update128, update16, update32 } from './checksum.js';
import { read16, read32, write16 } from './bytes.js';
import { PROTO_TCP } from './ipv4.js';

/** Field offsets from the start of the header (smoltcp's `mod field`; a const enum, as Ipv4Field is). */
export const enum TcpField {
  SRC_PORT = 0,
  DST_PORT = 2,
  SEQ = 4,
  ACK = 8,
  /** Data Offset in the high nibble: the header's length in 32-bit words. */
  DATA_OFFSET = 12,
  FLAGS = 13,
  WINDOW = 14,
  CHECKSUM = 16,
  URGENT = 18,
  /** Options: the end of the fixed header. */
  OPTIONS = 20,
}

export const TCP_MIN_HEADER: number = TcpField.OPTIONS;
export const TCP_FIN = 0x01;
export const TCP_SYN = 0x02;
export const TCP_RST = 0x04;
export const TCP_PSH = 0x08;
export const TCP_ACK = 0x10;

export class Tcp {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;
  /** Segment length: header plus data. */
  len = 0;

  /** Points the view at a segment of `len` bytes; false if it is short or its data offset is impossible. */
  attach(buf: Uint8Array, off: number, len: number): boolean {
    if (len < TCP_MIN_HEADER) return false;
    const hlen = (buf[off + TcpField.DATA_OFFSET]! >>> 4) << 2;
    if (hlen < TCP_MIN_HEADER || hlen > len) return false;
    this.buf = buf;
    this.off = off;
    this.len = len;
    return true;
  }

  get srcPort(): number {
    return read16(this.buf, this.off + TcpField.SRC_PORT);
  }
  get dstPort(): number {
    return read16(this.buf, this.off + TcpField.DST_PORT);
  }
  get seq(): number {
    return read32(this.buf, this.off + TcpField.SEQ);
  }
  get ack(): number {
    return read32(this.buf, this.off + TcpField.ACK);
  }
  get headerLength(): number {
    return (this.buf[this.off + TcpField.DATA_OFFSET]! >>> 4) << 2;
  }
  /** The eight flag bits (CWR..FIN). */
  get flags(): number {
    return this.buf[this.off + TcpField.FLAGS]!;
  }
  get window(): number {
    return read16(this.buf, this.off + TcpField.WINDOW);
  }
  get checksum(): number {
    return read16(this.buf, this.off + TcpField.CHECKSUM);
  }

  /** True when the checksum over the IPv4 pseudo-header and the segment is right. */
  verifyChecksum4(src: number, dst: number): boolean {
    return finish(sum(this.buf, this.off, this.len, pseudoSum4(src, dst, PROTO_TCP, this.len))) === 0;
  }

  /** Computes the checksum from scratch for the IPv4 pseudo-header. */
  fillChecksum4(src: number, dst: number): void {
    write16(this.buf, this.off + TcpField.CHECKSUM, 0);
    write16(this.buf, this.off + TcpField.CHECKSUM, finish(sum(this.buf, this.off, this.len, pseudoSum4(src, dst, PROTO_TCP, this.len))));
  }

  /** Folds a change of a pseudo-header address into the checksum (RFC 1624). */
  updateAddress(oldAddr: number, newAddr: number): void {
    const o = this.off + TcpField.CHECKSUM;
    write16(this.buf, o, update32(read16(this.buf, o), oldAddr, newAddr));
  }

  /** True when the checksum over the pseudo-header of the IPv6 header at ipBuf[ipOff] and the segment is right. */
  verifyChecksum6(ipBuf: Uint8Array, ipOff: number): boolean {
    return finish(sum(this.buf, this.off, this.len, pseudoSum6(ipBuf, ipOff, this.len, PROTO_TCP))) === 0;
  }

  /** Computes the checksum from scratch, with the pseudo-header of the IPv6 header at ipBuf[ipOff]. */
  fillChecksum6(ipBuf: Uint8Array, ipOff: number): void {
    write16(this.buf, this.off + TcpField.CHECKSUM, 0);
    write16(
      this.buf,
      this.off + TcpField.CHECKSUM,
      finish(sum(this.buf, this.off, this.len, pseudoSum6(ipBuf, ipOff, this.len, PROTO_TCP))),
    );
  }

  /** Folds a change of an IPv6 pseudo-header address (four words each) into the checksum (RFC 1624). */
  updateAddress128(oldW: Uint32Array, oldOff: number, newW: Uint32Array, newOff: number): void {
    const o = this.off + TcpField.CHECKSUM;
    write16(this.buf, o, update128(read16(this.buf, o), oldW, oldOff, newW, newOff));
  }

  /** Writes a port without touching the checksum: for partial checksums, which the device will sum over the port. */
  writeSrcPort(p: number): void {
    write16(this.buf, this.off + TcpField.SRC_PORT, p);
  }

  writeDstPort(p: number): void {
    write16(this.buf, this.off + TcpField.DST_PORT, p);
  }

  setSrcPort(p: number): void {
    const o = this.off;
    write16(this.buf, o + TcpField.CHECKSUM, update16(read16(this.buf, o + TcpField.CHECKSUM), read16(this.buf, o + TcpField.SRC_PORT), p));
    write16(this.buf, o + TcpField.SRC_PORT, p);
  }

  setDstPort(p: number): void {
    const o = this.off;
    write16(this.buf, o + TcpField.CHECKSUM, update16(read16(this.buf, o + TcpField.CHECKSUM), read16(this.buf, o + TcpField.DST_PORT), p));
    write16(this.buf, o + TcpField.DST_PORT, p);
  }
}
