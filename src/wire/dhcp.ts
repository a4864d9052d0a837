// DHCP messages (RFC 2131, options RFC 2132): the BOOTP header, the magic cookie and the options, and the IPv4/UDP packet that carries one.
import { finish, pseudoSum4, sum } from './checksum.js';
import { read16, read32, write16, write32 } from './bytes.js';
import { PROTO_UDP } from './ipv4.js';

export const DHCP_SERVER_PORT = 67;
export const DHCP_CLIENT_PORT = 68;
export const BOOTREQUEST = 1;
export const BOOTREPLY = 2;

/** Option 53's values. */
export const DHCPDISCOVER = 1;
export const DHCPOFFER = 2;
export const DHCPREQUEST = 3;
export const DHCPDECLINE = 4;
export const DHCPACK = 5;
export const DHCPNAK = 6;
export const DHCPRELEASE = 7;

/** Option codes (RFC 2132). */
export const OPT_PAD = 0;
export const OPT_SUBNET_MASK = 1;
export const OPT_ROUTER = 3;
export const OPT_REQUESTED_IP = 50;
export const OPT_LEASE_TIME = 51;
export const OPT_MESSAGE_TYPE = 53;
export const OPT_SERVER_ID = 54;
export const OPT_PARAMETERS = 55;
export const OPT_MESSAGE = 56;
export const OPT_RENEWAL_TIME = 58;
export const OPT_REBINDING_TIME = 59;
export const OPT_CLIENT_ID = 61;
export const OPT_END = 255;

export const enum DhcpField {
  OP = 0,
  HTYPE = 1,
  HLEN = 2,
  HOPS = 3,
  XID = 4,
  SECS = 8,
  FLAGS = 10,
  CIADDR = 12,
  YIADDR = 16,
  SIADDR = 20,
  GIADDR = 24,
  CHADDR = 28,
  SNAME = 44,
  FILE = 108,
  COOKIE = 236,
  OPTIONS = 240,
}

const MAGIC_COOKIE = 0x63825363;
/** The broadcast bit of the flags field: answer to 255.255.255.255, the client has no address yet. */
const FLAG_BROADCAST = 0x8000;
/** The least BOOTP message (RFC 1542 2.1): some relays and servers drop shorter ones. */
const MIN_MESSAGE = 300;

/** A DHCP message; addresses are unsigned numbers, options raw bytes by code (53 is `type`). */
export interface DhcpMessage {
  op: number;
  xid: number;
  secs: number;
  broadcast: boolean;
  ciaddr: number;
  yiaddr: number;
  siaddr: number;
  giaddr: number;
  chaddr: Uint8Array;
  type: number;
  options: Map<number, Uint8Array>;
}

/** Writes `m` at buf[off] (padded to 300 bytes); returns its length. */
export function writeDhcp(buf: Uint8Array, off: number, m: DhcpMessage): number {
  buf.fill(0, off, off + MIN_MESSAGE);
  buf[off + DhcpField.OP] = m.op;
  buf[off + DhcpField.HTYPE] = 1;
  buf[off + DhcpField.HLEN] = 6;
  write32(buf, off + DhcpField.XID, m.xid);
  write16(buf, off + DhcpField.SECS, m.secs);
  write16(buf, off + DhcpField.FLAGS, m.broadcast ? FLAG_BROADCAST : 0);
  write32(buf, off + DhcpField.CIADDR, m.ciaddr);
  write32(buf, off + DhcpField.YIADDR, m.yiaddr);
  write32(buf, off + DhcpField.SIADDR, m.siaddr);
  write32(buf, off + DhcpField.GIADDR, m.giaddr);
  buf.set(m.chaddr.subarray(0, 16), off + DhcpField.CHADDR);
  write32(buf, off + DhcpField.COOKIE, MAGIC_COOKIE);
  let o = off + DhcpField.OPTIONS;
  buf[o++] = OPT_MESSAGE_TYPE;
  buf[o++] = 1;
  buf[o++] = m.type;
  for (const [code, value] of m.options) {
    if (code === OPT_MESSAGE_TYPE || code === OPT_PAD || code === OPT_END) continue;
    if (value.length > 255) throw new RangeError(`DHCP option ${code}: ${value.length} bytes, at most 255`);
    buf[o++] = code;
    buf[o++] = value.length;
    buf.set(value, o);
    o += value.length;
  }
  buf[o++] = OPT_END;
  return Math.max(MIN_MESSAGE, o - off);
}

/** Reads a DHCP message at buf[off], `len` bytes; null if it is not one (no cookie, no message type, options past the end). */
export function readDhcp(buf: Uint8Array, off: number, len: number): DhcpMessage | null {
  if (len < DhcpField.OPTIONS + 3 || read32(buf, off + DhcpField.COOKIE) !== MAGIC_COOKIE) return null;
  if (buf[off + DhcpField.HTYPE] !== 1 || buf[off + DhcpField.HLEN] !== 6) return null;
  const options = new Map<number, Uint8Array>();
  const end = off + len;
  for (let o = off + DhcpField.OPTIONS; o < end;) {
    const code = buf[o]!;
    if (code === OPT_PAD) {
      o++;
      continue;
    }
    if (code === OPT_END) break;
    if (o + 2 > end) return null;
    const n = buf[o + 1]!;
    if (o + 2 + n > end) return null;
    // RFC 3396: an option given more than once is the concatenation of its parts.
    const prev = options.get(code);
    const part = buf.slice(o + 2, o + 2 + n);
    options.set(code, prev ? Uint8Array.from([...prev, ...part]) : part);
    o += 2 + n;
  }
  const type = options.get(OPT_MESSAGE_TYPE);
  if (!type || type.length !== 1) return null;
  options.delete(OPT_MESSAGE_TYPE);
  return {
    op: buf[off + DhcpField.OP]!,
    xid: read32(buf, off + DhcpField.XID),
    secs: read16(buf, off + DhcpField.SECS),
    broadcast: (read16(buf, off + DhcpField.FLAGS) & FLAG_BROADCAST) !== 0,
    ciaddr: read32(buf, off + DhcpField.CIADDR),
    yiaddr: read32(buf, off + DhcpField.YIADDR),
    siaddr: read32(buf, off + DhcpField.SIADDR),
    giaddr: read32(buf, off + DhcpField.GIADDR),
    chaddr: buf.slice(off + DhcpField.CHADDR, off + DhcpField.CHADDR + 6),
    type: type[0]!,
    options,
  };
}

/** A 4-byte option as an unsigned number (an address, a time), or null when absent or of another length. */
export function optionU32(m: DhcpMessage, code: number): number | null {
  const v = m.options.get(code);
  return v && v.length === 4 ? read32(v, 0) : null;
}

/** A 4-byte option's value. */
export function u32Option(v: number): Uint8Array {
  const b = new Uint8Array(4);
  write32(b, 0, v);
  return b;
}

/**
 * Writes the IPv4 and UDP headers (28 bytes) at buf[0] in front of the
 * `payload` bytes already at buf[28], with both checksums; returns the
 * packet's length.
 */
export function writeUdp4(buf: Uint8Array, src: number, sport: number, dst: number, dport: number, payload: number): number {
  const total = 28 + payload;
  buf[0] = 0x45;
  buf[1] = 0x10; // low delay, as DHCP clients send
  write16(buf, 2, total);
  write32(buf, 4, 0); // identification, flags, fragment offset
  buf[8] = 64;
  buf[9] = PROTO_UDP;
  write16(buf, 10, 0);
  write32(buf, 12, src);
  write32(buf, 16, dst);
  write16(buf, 10, finish(sum(buf, 0, 20, 0)));
  write16(buf, 20, sport);
  write16(buf, 22, dport);
  write16(buf, 24, 8 + payload);
  write16(buf, 26, 0);
  const c = finish(sum(buf, 20, 8 + payload, pseudoSum4(src, dst, PROTO_UDP, 8 + payload)));
  write16(buf, 26, c === 0 ? 0xffff : c);
  return total;
}

/** The UDP payload of the IPv4 packet at buf[0] from port `sport` to `dport` (header checksum right, not a fragment), or null. */
export function udp4Payload(buf: Uint8Array, len: number, sport: number, dport: number): { off: number; len: number; src: number } | null {
  if (len < 28 || buf[0]! >>> 4 !== 4 || buf[9] !== PROTO_UDP) return null;
  const ihl = (buf[0]! & 0x0f) * 4;
  const total = read16(buf, 2);
  if (ihl < 20 || total > len || total < ihl + 8 || (read16(buf, 6) & 0x3fff) !== 0) return null;
  if (finish(sum(buf, 0, ihl, 0)) !== 0) return null;
  if (read16(buf, ihl) !== sport || read16(buf, ihl + 2) !== dport) return null;
  const ulen = read16(buf, ihl + 4);
  if (ulen < 8 || ihl + ulen > total) return null;
  return { off: ihl + 8, len: ulen - 8, src: read32(buf, 12) };
}
