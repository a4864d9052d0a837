// Test helper: builds and reads IPv4/TCP/UDP/ICMP packets byte by byte, with its own RFC 1071 checksum (independent of src/wire).

/** Seeded PRNG (mulberry32): deterministic streams of 32-bit values for random tests. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

/** A random source with the helpers tests keep needing. */
export class Rng {
  private readonly next: () => number;
  constructor(seed: number) {
    this.next = mulberry32(seed);
  }
  u32(): number {
    return this.next();
  }
  u16(): number {
    return this.next() & 0xffff;
  }
  u8(): number {
    return this.next() & 0xff;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor((this.next() / 0x100000000) * n);
  }
  bool(): boolean {
    return (this.next() & 1) === 1;
  }
  bytes(n: number): Uint8Array {
    const b = new Uint8Array(n);
    for (let i = 0; i < n; i++) b[i] = this.next() & 0xff;
    return b;
  }
  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]!;
  }
}

/** Bytes from hex text; whitespace is ignored. */
export function hex(text: string): Uint8Array {
  const clean = text.replace(/\s+/g, '');
  if (clean.length % 2 !== 0) throw new Error(`hex: odd number of digits in ${JSON.stringify(text)}`);
  const out = new Uint8Array(clean.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(clean.slice(i * 2, i * 2 + 2), 16);
  return out;
}

export function toHex(b: Uint8Array): string {
  return Array.from(b, (x) => x.toString(16).padStart(2, '0')).join('');
}

/** Dotted quad to an unsigned 32-bit number. */
export function addr(text: string): number {
  const p = text.split('.').map(Number);
  if (p.length !== 4 || p.some((x) => !(x >= 0 && x <= 255))) throw new Error(`addr: bad address ${text}`);
  return ((p[0]! << 24) | (p[1]! << 16) | (p[2]! << 8) | p[3]!) >>> 0;
}

export function u16(b: Uint8Array, o: number): number {
  return b[o]! * 256 + b[o + 1]!;
}

export function u32(b: Uint8Array, o: number): number {
  return b[o]! * 0x1000000 + b[o + 1]! * 0x10000 + b[o + 2]! * 0x100 + b[o + 3]!;
}

function put16(b: Uint8Array, o: number, v: number): void {
  b[o] = Math.floor(v / 256) & 0xff;
  b[o + 1] = v & 0xff;
}

function put32(b: Uint8Array, o: number, v: number): void {
  put16(b, o, Math.floor(v / 0x10000) & 0xffff);
  put16(b, o + 2, v & 0xffff);
}

/**
 * RFC 1071 the straightforward way: add 16-bit big-endian words, carrying
 * around after every addition; returns the folded (uncomplemented) sum.
 */
export function onesSum(chunks: readonly Uint8Array[]): number {
  let s = 0;
  // Concatenate first so an odd-length chunk does not shift the words of the next.
  let total = 0;
  for (const c of chunks) total += c.length;
  const all = new Uint8Array(total + 1);
  let o = 0;
  for (const c of chunks) {
    all.set(c, o);
    o += c.length;
  }
  for (let i = 0; i < total; i += 2) {
    s += all[i]! * 256 + all[i + 1]!;
    if (s > 0xffff) s = (s & 0xffff) + 1;
  }
  return s;
}

/** Internet checksum of the concatenated chunks. */
export function checksum(...chunks: Uint8Array[]): number {
  return 0xffff - onesSum(chunks);
}

export function pseudoHeader(src: number, dst: number, proto: number, len: number): Uint8Array {
  const p = new Uint8Array(12);
  put32(p, 0, src);
  put32(p, 4, dst);
  p[9] = proto;
  put16(p, 10, len);
  return p;
}

export const TCP = 6;
export const UDP = 17;
export const ICMP = 1;

export interface Ipv4Fields {
  src: number;
  dst: number;
  proto: number;
  ident?: number;
  ttl?: number;
  tos?: number;
  df?: boolean;
  mf?: boolean;
  /** Fragment offset in bytes (a multiple of 8). */
  fragOffset?: number;
  /** Option bytes; padded with zeros to a multiple of 4. */
  options?: readonly number[];
}

/** An IPv4 packet around `payload`, header checksum filled. */
export function ipv4(f: Ipv4Fields, payload: Uint8Array): Uint8Array {
  const opts = f.options ?? [];
  const optLen = Math.ceil(opts.length / 4) * 4;
  const hlen = 20 + optLen;
  const p = new Uint8Array(hlen + payload.length);
  p[0] = 0x40 | (hlen / 4);
  p[1] = f.tos ?? 0;
  put16(p, 2, p.length);
  put16(p, 4, f.ident ?? 0x1234);
  put16(p, 6, (f.df ? 0x4000 : 0) | (f.mf ? 0x2000 : 0) | ((f.fragOffset ?? 0) / 8));
  p[8] = f.ttl ?? 64;
  p[9] = f.proto;
  put32(p, 12, f.src);
  put32(p, 16, f.dst);
  p.set(opts, 20);
  put16(p, 10, checksum(p.subarray(0, hlen)));
  p.set(payload, hlen);
  return p;
}

export interface TcpFields {
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  flags: number;
  window?: number;
  urgent?: number;
  options?: readonly number[];
  data?: Uint8Array;
}

export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;

/** A TCP segment with its checksum over the IPv4 pseudo-header of src/dst. */
export function tcpSegment(src: number, dst: number, f: TcpFields): Uint8Array {
  const opts = f.options ?? [];
  const optLen = Math.ceil(opts.length / 4) * 4;
  const hlen = 20 + optLen;
  const data = f.data ?? new Uint8Array(0);
  const s = new Uint8Array(hlen + data.length);
  put16(s, 0, f.sport);
  put16(s, 2, f.dport);
  put32(s, 4, f.seq ?? 1000);
  put32(s, 8, f.ack ?? 0);
  s[12] = (hlen / 4) << 4;
  s[13] = f.flags;
  put16(s, 14, f.window ?? 65535);
  put16(s, 18, f.urgent ?? 0);
  s.set(opts, 20);
  s.set(data, hlen);
  put16(s, 16, checksum(pseudoHeader(src, dst, TCP, s.length), s));
  return s;
}

export interface UdpFields {
  sport: number;
  dport: number;
  data?: Uint8Array;
  /** False: send checksum 0 ("none"). */
  checksum?: boolean;
}

/** A UDP datagram; a computed checksum of 0 is sent as 0xffff (RFC 768). */
export function udpDatagram(src: number, dst: number, f: UdpFields): Uint8Array {
  const data = f.data ?? new Uint8Array(0);
  const d = new Uint8Array(8 + data.length);
  put16(d, 0, f.sport);
  put16(d, 2, f.dport);
  put16(d, 4, d.length);
  d.set(data, 8);
  if (f.checksum !== false) {
    const c = checksum(pseudoHeader(src, dst, UDP, d.length), d);
    put16(d, 6, c === 0 ? 0xffff : c);
  }
  return d;
}

/** An ICMP message of type/code with a 4-byte rest-of-header and data, checksum filled (no pseudo-header). */
export function icmpMessage(type: number, code: number, rest: number, data: Uint8Array): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m[0] = type;
  m[1] = code;
  put32(m, 4, rest);
  m.set(data, 8);
  put16(m, 2, checksum(m));
  return m;
}

export function icmpEcho(type: 0 | 8, ident: number, seq: number, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  return icmpMessage(type, 0, ident * 0x10000 + seq, data);
}

export type IpOpts = Omit<Ipv4Fields, 'src' | 'dst' | 'proto'>;

export function tcpPacket(src: number, dst: number, f: TcpFields, ip: IpOpts = {}): Uint8Array {
  return ipv4({ ...ip, src, dst, proto: TCP }, tcpSegment(src, dst, f));
}

export function udpPacket(src: number, dst: number, f: UdpFields, ip: IpOpts = {}): Uint8Array {
  return ipv4({ ...ip, src, dst, proto: UDP }, udpDatagram(src, dst, f));
}

export function echoPacket(src: number, dst: number, type: 0 | 8, ident: number, seq: number, data?: Uint8Array, ip: IpOpts = {}): Uint8Array {
  return ipv4({ ...ip, src, dst, proto: ICMP }, icmpEcho(type, ident, seq, data));
}

/** An ICMP error (e.g. type 3 code 3, port unreachable) from src to dst quoting the first `quoteLen` bytes of `original`. */
export function icmpErrorPacket(src: number, dst: number, type: number, code: number, original: Uint8Array, quoteLen = original.length, ip: IpOpts = {}): Uint8Array {
  return ipv4({ ...ip, src, dst, proto: ICMP }, icmpMessage(type, code, 0, original.subarray(0, quoteLen)));
}

/** An IPv6 header with a payload, for "other family" inputs (no checksum needed). */
export function ipv6Packet(nextHeader: number, payload: Uint8Array): Uint8Array {
  const p = new Uint8Array(40 + payload.length);
  p[0] = 0x60;
  put16(p, 4, payload.length);
  p[6] = nextHeader;
  p[7] = 255;
  p[8] = 0xfe;
  p[9] = 0x80;
  p[23] = 1;
  p[24] = 0xff;
  p[25] = 0x02;
  p[39] = 2;
  p.set(payload, 40);
  return p;
}

/** What a test needs to know about an IPv4 packet, read without src/wire. */
export interface Parsed {
  ihl: number;
  totalLength: number;
  proto: number;
  src: number;
  dst: number;
  fragOffset: number;
  mf: boolean;
  /** Offset of the transport header. */
  l4: number;
}

export function parse(p: Uint8Array): Parsed {
  const ihl = (p[0]! & 0x0f) * 4;
  return {
    ihl,
    totalLength: u16(p, 2),
    proto: p[9]!,
    src: u32(p, 12),
    dst: u32(p, 16),
    fragOffset: (u16(p, 6) & 0x1fff) * 8,
    mf: (u16(p, 6) & 0x2000) !== 0,
    l4: ihl,
  };
}

export function ipHeaderOk(p: Uint8Array): boolean {
  const ihl = (p[0]! & 0x0f) * 4;
  return onesSum([p.subarray(0, ihl)]) === 0xffff;
}

/**
 * True when the transport checksum of an unfragmented packet verifies from
 * scratch: TCP/UDP over the pseudo-header (UDP 0 = none), ICMP over the message.
 */
export function l4Ok(p: Uint8Array): boolean {
  const h = parse(p);
  const seg = p.subarray(h.ihl, h.totalLength);
  if (h.proto === ICMP) return onesSum([seg]) === 0xffff;
  if (h.proto === UDP && u16(seg, 6) === 0) return true;
  return onesSum([pseudoHeader(h.src, h.dst, h.proto, seg.length), seg]) === 0xffff;
}

/** IP header and transport checksums both right. */
export function allOk(p: Uint8Array): boolean {
  return ipHeaderOk(p) && l4Ok(p);
}

/** Copies `p` into a bigger buffer at `off` with random junk around it (to catch offset bugs). */
export function embed(p: Uint8Array, off: number, tail = 7, fill = 0xa5): Uint8Array {
  const b = new Uint8Array(off + p.length + tail).fill(fill);
  b.set(p, off);
  return b;
}
