// ARP for IPv4 over Ethernet (RFC 826): the 28-byte message after the Ethernet header, as a probe (RFC 5227), a request or an announcement.
import { read16, read32, write16, write32 } from './bytes.js';

/** The EtherType of ARP. */
export const ETH_P_ARP = 0x0806;
export const ARP_LEN = 28;
export const ARP_REQUEST = 1;
export const ARP_REPLY = 2;
const HTYPE_ETHERNET = 1;
const PTYPE_IPV4 = 0x0800;

export const enum ArpField {
  HTYPE = 0,
  PTYPE = 2,
  HLEN = 4,
  PLEN = 5,
  OP = 6,
  SHA = 8,
  SPA = 14,
  THA = 18,
  TPA = 24,
}

/** An ARP message over Ethernet: IPv4 addresses as unsigned numbers. */
export interface Arp {
  op: number;
  sha: Uint8Array;
  spa: number;
  tha: Uint8Array;
  tpa: number;
}

/**
 * Writes an ARP message at buf[off]; `tha` null is all zeroes (a request's).
 * A probe has `spa` 0, an announcement (gratuitous ARP) `spa` = `tpa`.
 * Returns its length.
 */
export function writeArp(
  buf: Uint8Array,
  off: number,
  op: number,
  sha: Uint8Array,
  spa: number,
  tha: Uint8Array | null,
  tpa: number,
): number {
  write16(buf, off + ArpField.HTYPE, HTYPE_ETHERNET);
  write16(buf, off + ArpField.PTYPE, PTYPE_IPV4);
  buf[off + ArpField.HLEN] = 6;
  buf[off + ArpField.PLEN] = 4;
  write16(buf, off + ArpField.OP, op);
  buf.set(sha.subarray(0, 6), off + ArpField.SHA);
  write32(buf, off + ArpField.SPA, spa);
  if (tha) buf.set(tha.subarray(0, 6), off + ArpField.THA);
  else buf.fill(0, off + ArpField.THA, off + ArpField.THA + 6);
  write32(buf, off + ArpField.TPA, tpa);
  return ARP_LEN;
}

/** Reads an ARP message for IPv4 over Ethernet at buf[off], `len` bytes; null if it is not one. */
export function readArp(buf: Uint8Array, off: number, len: number): Arp | null {
  if (len < ARP_LEN) return null;
  if (read16(buf, off + ArpField.HTYPE) !== HTYPE_ETHERNET || read16(buf, off + ArpField.PTYPE) !== PTYPE_IPV4) return null;
  if (buf[off + ArpField.HLEN] !== 6 || buf[off + ArpField.PLEN] !== 4) return null;
  return {
    op: read16(buf, off + ArpField.OP),
    sha: buf.slice(off + ArpField.SHA, off + ArpField.SHA + 6),
    spa: read32(buf, off + ArpField.SPA),
    tha: buf.slice(off + ArpField.THA, off + ArpField.THA + 6),
    tpa: read32(buf, off + ArpField.TPA),
  };
}
