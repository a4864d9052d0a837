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
  /** A random subset of 0..n-1 (each kept with odds 2 in 3), in a random order. */
  someInOrder(n: number): number[] {
    const xs = Array.from({ length: n }, (_, i) => i).filter(() => this.int(3) !== 0);
    for (let k = xs.length - 1; k > 0; k--) {
      const j = this.int(k + 1);
      [xs[k], xs[j]] = [xs[j]!, xs[k]!];
    }
    return xs;
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

/** RFC 1071 a third way, with end-around carry at every step, over buf[off, off+len) from the sum `acc` (folded first). */
export function naiveFolded(buf: Uint8Array, off: number, len: number, acc = 0): number {
  let s = acc;
  while (s > 0xffff) s = (s % 0x10000) + Math.floor(s / 0x10000);
  for (let i = 0; i < len; i += 2) {
    const hi = buf[off + i]!;
    const lo = i + 1 < len ? buf[off + i + 1]! : 0;
    s += hi * 256 + lo;
    if (s > 0xffff) s -= 0xffff;
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

/** Header and data of a TCP segment, checksum field 0. */
function tcpBytes(f: TcpFields): Uint8Array {
  const opts = f.options ?? [];
  const hlen = 20 + Math.ceil(opts.length / 4) * 4;
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
  return s;
}

/** A TCP segment with its checksum over the IPv4 pseudo-header of src/dst. */
export function tcpSegment(src: number, dst: number, f: TcpFields): Uint8Array {
  const s = tcpBytes(f);
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

export function echoPacket(
  src: number,
  dst: number,
  type: 0 | 8,
  ident: number,
  seq: number,
  data?: Uint8Array,
  ip: IpOpts = {},
): Uint8Array {
  return ipv4({ ...ip, src, dst, proto: ICMP }, icmpEcho(type, ident, seq, data));
}

/** An ICMP error (e.g. type 3 code 3, port unreachable) from src to dst quoting the first `quoteLen` bytes of `original`. */
export function icmpErrorPacket(
  src: number,
  dst: number,
  type: number,
  code: number,
  original: Uint8Array,
  quoteLen = original.length,
  ip: IpOpts = {},
): Uint8Array {
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

// ---- IPv6 (RFC 8200), with its own pseudo-header and extension headers, still independent of src/wire ----

/** IPv6 text to 16 bytes, the plain way: expand "::", allow a trailing dotted quad. */
export function addr6(text: string): Uint8Array {
  let t = text;
  const groups: number[] = [];
  const quad = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(t);
  if (quad) {
    const a = addr(quad[0]);
    t = `${t.slice(0, quad.index)}${(a >>> 16).toString(16)}:${(a & 0xffff).toString(16)}`;
  }
  const halves = t.split('::');
  if (halves.length > 2) throw new Error(`addr6: more than one "::" in ${text}`);
  const side = (s: string): number[] =>
    s === ''
      ? []
      : s.split(':').map((x) => {
          if (!/^[0-9a-f]{1,4}$/i.test(x)) throw new Error(`addr6: bad group ${JSON.stringify(x)} in ${text}`);
          return parseInt(x, 16);
        });
  const head = side(halves[0]!);
  if (halves.length === 2) {
    const tail = side(halves[1]!);
    groups.push(...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail);
  } else {
    groups.push(...head);
  }
  if (groups.length !== 8) throw new Error(`addr6: ${text} is not 8 groups`);
  const b = new Uint8Array(16);
  groups.forEach((g, i) => put16(b, i * 2, g));
  return b;
}

/** 16 address bytes as four unsigned 32-bit words (what the views take). */
export function words6(a: Uint8Array): Uint32Array {
  const w = new Uint32Array(4);
  for (let i = 0; i < 4; i++) w[i] = u32(a, i * 4);
  return w;
}

/** The RFC 8200 section 8.1 pseudo-header: src, dst, 32-bit upper-layer length, 3 zero bytes, next header. */
export function pseudoHeader6(src: Uint8Array, dst: Uint8Array, nextHeader: number, len: number): Uint8Array {
  const p = new Uint8Array(40);
  p.set(src, 0);
  p.set(dst, 16);
  put32(p, 32, len);
  p[39] = nextHeader;
  return p;
}

export const ICMP6 = 58;
export const HOP_BY_HOP = 0;
export const ROUTING = 43;
export const FRAGMENT = 44;
export const DEST_OPTIONS = 60;
export const NO_NEXT = 59;

/**
 * One extension header. Hop-by-Hop/Destination Options: option bytes, padded to
 * a multiple of 8 with Pad1/PadN. Routing: type, segments left and type-specific
 * data, zero-padded. Fragment: offset in bytes (a multiple of 8), M, ident.
 * Raw: anything else, `type` being the Next Header value that names it and
 * `bytes` everything after its own Next Header byte.
 */
export type Ext6 =
  | { kind: 'hbh' | 'dst'; options?: readonly number[] }
  | { kind: 'routing'; routingType?: number; segmentsLeft?: number; data?: readonly number[] }
  | { kind: 'frag'; offset?: number; more?: boolean; ident?: number }
  | { kind: 'raw'; type: number; bytes: readonly number[] };

function extType(e: Ext6): number {
  switch (e.kind) {
    case 'hbh':
      return HOP_BY_HOP;
    case 'dst':
      return DEST_OPTIONS;
    case 'routing':
      return ROUTING;
    case 'frag':
      return FRAGMENT;
    case 'raw':
      return e.type;
  }
}

/** Option area padded to 8n-2 bytes with Pad1 (one byte) or PadN (RFC 8200 section 4.2). */
function padOptions(opts: readonly number[]): number[] {
  const out = [...opts];
  const need = (8 - ((out.length + 2) % 8)) % 8;
  if (need === 1) out.push(0);
  else if (need >= 2) out.push(1, need - 2, ...new Array<number>(need - 2).fill(0));
  return out;
}

/** The bytes of one extension header whose Next Header is `next`. */
export function extHeader(e: Ext6, next: number): Uint8Array {
  let body: number[]; // everything after the Next Header / Hdr Ext Len bytes
  if (e.kind === 'frag') {
    const h = new Uint8Array(8);
    h[0] = next;
    put16(h, 2, (e.offset ?? 0) | (e.more ? 1 : 0)); // offset in bytes, a multiple of 8, sits in bits 15..3
    put32(h, 4, e.ident ?? 0);
    return h;
  }
  if (e.kind === 'raw') return Uint8Array.from([next, ...e.bytes]);
  if (e.kind === 'routing') {
    body = [e.routingType ?? 0, e.segmentsLeft ?? 0, ...(e.data ?? [0, 0, 0, 0])];
    while ((body.length + 2) % 8 !== 0) body.push(0);
  } else {
    body = padOptions(e.options ?? []);
  }
  return Uint8Array.from([next, (body.length + 2) / 8 - 1, ...body]);
}

export interface Ipv6Fields {
  src: Uint8Array;
  dst: Uint8Array;
  /** The upper-layer protocol, after any extension headers. */
  proto: number;
  trafficClass?: number;
  flowLabel?: number;
  hopLimit?: number;
  ext?: readonly Ext6[];
  /** Override the Payload Length field (default: the real one). */
  payloadLength?: number;
}

/** An IPv6 packet: fixed header, extension headers chained in order, then `payload`. */
export function ipv6(f: Ipv6Fields, payload: Uint8Array): Uint8Array {
  const ext = f.ext ?? [];
  const parts: Uint8Array[] = [];
  for (let i = 0; i < ext.length; i++) {
    const next = i + 1 < ext.length ? extType(ext[i + 1]!) : f.proto;
    parts.push(extHeader(ext[i]!, next));
  }
  parts.push(payload);
  let plen = 0;
  for (const x of parts) plen += x.length;
  const p = new Uint8Array(40 + plen);
  put32(p, 0, 6 * 0x10000000 + (f.trafficClass ?? 0) * 0x100000 + (f.flowLabel ?? 0));
  put16(p, 4, f.payloadLength ?? plen);
  p[6] = ext.length > 0 ? extType(ext[0]!) : f.proto;
  p[7] = f.hopLimit ?? 64;
  p.set(f.src, 8);
  p.set(f.dst, 24);
  let o = 40;
  for (const x of parts) {
    p.set(x, o);
    o += x.length;
  }
  return p;
}

/** A TCP segment with its checksum over the IPv6 pseudo-header of src/dst. */
export function tcp6Segment(src: Uint8Array, dst: Uint8Array, f: TcpFields): Uint8Array {
  const s = tcpBytes(f);
  put16(s, 16, checksum(pseudoHeader6(src, dst, TCP, s.length), s));
  return s;
}

/** A UDP datagram over IPv6: checksum mandatory, a computed 0 sent as 0xffff; `checksum: false` writes 0 (invalid). */
export function udp6Datagram(src: Uint8Array, dst: Uint8Array, f: UdpFields): Uint8Array {
  const data = f.data ?? new Uint8Array(0);
  const d = new Uint8Array(8 + data.length);
  put16(d, 0, f.sport);
  put16(d, 2, f.dport);
  put16(d, 4, d.length);
  d.set(data, 8);
  if (f.checksum !== false) {
    const c = checksum(pseudoHeader6(src, dst, UDP, d.length), d);
    put16(d, 6, c === 0 ? 0xffff : c);
  }
  return d;
}

/** An ICMPv6 message with a 4-byte rest-of-header and data, checksum over the pseudo-header. */
export function icmp6Message(src: Uint8Array, dst: Uint8Array, type: number, code: number, rest: number, data: Uint8Array): Uint8Array {
  const m = new Uint8Array(8 + data.length);
  m[0] = type;
  m[1] = code;
  put32(m, 4, rest);
  m.set(data, 8);
  put16(m, 2, checksum(pseudoHeader6(src, dst, ICMP6, m.length), m));
  return m;
}

export type Ip6Opts = Omit<Ipv6Fields, 'src' | 'dst' | 'proto'>;

export function tcp6Packet(src: Uint8Array, dst: Uint8Array, f: TcpFields, ip: Ip6Opts = {}): Uint8Array {
  return ipv6({ ...ip, src, dst, proto: TCP }, tcp6Segment(src, dst, f));
}

export function udp6Packet(src: Uint8Array, dst: Uint8Array, f: UdpFields, ip: Ip6Opts = {}): Uint8Array {
  return ipv6({ ...ip, src, dst, proto: UDP }, udp6Datagram(src, dst, f));
}

export function echo6Packet(
  src: Uint8Array,
  dst: Uint8Array,
  type: 128 | 129,
  ident: number,
  seq: number,
  data: Uint8Array = new Uint8Array(0),
  ip: Ip6Opts = {},
): Uint8Array {
  return ipv6({ ...ip, src, dst, proto: ICMP6 }, icmp6Message(src, dst, type, 0, ident * 0x10000 + seq, data));
}

/**
 * Offset of the upper-layer header of an IPv6 packet and its protocol, found
 * the plain way (for tests that must not trust src/wire's walk).
 */
export function parse6(p: Uint8Array): { proto: number; l4: number; end: number } {
  let nh = p[6]!;
  let o = 40;
  for (;;) {
    if (nh === FRAGMENT) {
      const later = (u16(p, o + 2) & 0xfff8) !== 0;
      nh = p[o]!;
      o += 8;
      if (later) break;
    } else if (nh === HOP_BY_HOP || nh === ROUTING || nh === DEST_OPTIONS) {
      const len = (p[o + 1]! + 1) * 8;
      nh = p[o]!;
      o += len;
    } else break;
  }
  return { proto: nh, l4: o, end: 40 + u16(p, 4) };
}

/** True when the upper-layer checksum of an unfragmented IPv6 packet verifies from scratch (UDP 0 is invalid). */
export function l4Ok6(p: Uint8Array): boolean {
  const h = parse6(p);
  const seg = p.subarray(h.l4, h.end);
  if (h.proto === UDP && u16(seg, 6) === 0) return false;
  return onesSum([pseudoHeader6(p.subarray(8, 24), p.subarray(24, 40), h.proto, seg.length), seg]) === 0xffff;
}

/**
 * An ICMPv6 error (e.g. type 1 code 4, port unreachable; type 2, Packet Too Big
 * with the MTU in `rest`) from src to dst quoting the first `quoteLen` bytes of
 * `original`, checksum over the pseudo-header filled.
 */
export function icmp6ErrorPacket(
  src: Uint8Array,
  dst: Uint8Array,
  type: number,
  code: number,
  original: Uint8Array,
  quoteLen = original.length,
  rest = 0,
  ip: Ip6Opts = {},
): Uint8Array {
  return ipv6({ ...ip, src, dst, proto: ICMP6 }, icmp6Message(src, dst, type, code, rest, original.subarray(0, quoteLen)));
}
