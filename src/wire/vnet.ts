// Zero-copy view over the virtio-net header (struct virtio_net_hdr) that a TUN opened with offloads puts in front of every packet.
//
//    0               1               2               3
//    0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 4 5 6 7
//   +---------------+---------------+-------------------------------+
//   |     flags     |   gso_type    |            hdr_len            |
//   +---------------+---------------+-------------------------------+
//   |            gso_size           |          csum_start           |
//   +-------------------------------+-------------------------------+
//   |          csum_offset          |
//   +-------------------------------+
//
// The 16-bit fields are little-endian on every Linux vipnat runs on (a TUN
// writes them in the host's byte order). With NEEDS_CSUM the transport
// checksum is left for the device to finish: its field, at csum_start +
// csum_offset from the packet's start, holds the uncomplemented pseudo-header
// sum (checksum.ts, updatePartial32). gso_size > 0 means the packet is a
// TSO/USO segment of up to 64 KiB, cut to gso_size on the wire. As
// wireguard-go's virtioNetHdr.decode, the view reads what the header says;
// whether that fits the packet behind it is the caller's to check.

import { readLe16 } from './bytes.js';

/** Field offsets from the start of the header (smoltcp's `mod field`; a const enum, as Ipv4Field is). */
export const enum VnetField {
  FLAGS = 0,
  GSO_TYPE = 1,
  /** hdr_len: bytes of headers to copy into each segment (GSO). */
  HDR_LEN = 2,
  GSO_SIZE = 4,
  CSUM_START = 6,
  CSUM_OFFSET = 8,
}

/** Bytes of the header (without the num_buffers of VIRTIO_NET_F_MRG_RXBUF, which TUN does not use). */
export const VNET_HEADER = 10;

/** Bits of the flags byte. */
export const enum VnetFlags {
  NEEDS_CSUM = 1,
  DATA_VALID = 2,
}

/** gso_type values (the ECN bit may be or'ed in). */
export const enum VnetGso {
  NONE = 0,
  TCPV4 = 1,
  UDP = 3,
  TCPV6 = 4,
  UDP_L4 = 5,
  ECN = 0x80,
}

export class VirtioNetHdr {
  buf: Uint8Array = new Uint8Array(0);
  off = 0;

  /** Points the view at the header at buf[off]; false if fewer than its 10 bytes are there. */
  attach(buf: Uint8Array, off: number, avail: number): boolean {
    if (avail < VNET_HEADER) return false;
    this.buf = buf;
    this.off = off;
    return true;
  }

  get flags(): number {
    return this.buf[this.off + VnetField.FLAGS]!;
  }
  get needsCsum(): boolean {
    return (this.buf[this.off + VnetField.FLAGS]! & VnetFlags.NEEDS_CSUM) !== 0;
  }
  get gsoType(): number {
    return this.buf[this.off + VnetField.GSO_TYPE]!;
  }
  get hdrLen(): number {
    return readLe16(this.buf, this.off + VnetField.HDR_LEN);
  }
  get gsoSize(): number {
    return readLe16(this.buf, this.off + VnetField.GSO_SIZE);
  }
  /** Where the checksummed bytes start, from the packet's start (after this header). */
  get csumStart(): number {
    return readLe16(this.buf, this.off + VnetField.CSUM_START);
  }
  /** Where the checksum field is, from csumStart. */
  get csumOffset(): number {
    return readLe16(this.buf, this.off + VnetField.CSUM_OFFSET);
  }
}
