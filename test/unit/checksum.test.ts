// Unit tests for the RFC 1071 checksum and the RFC 1624 incremental update, against naive recomputation; the IPv4
// rewrites, and the UDP checksum 0 of both families (describe.each).
import { describe, it, expect } from 'vitest';
import {
  applyDelta,
  delta128,
  delta16,
  delta32,
  finish,
  fold,
  Ipv4,
  Ipv6,
  pseudoSum4,
  sum,
  Tcp,
  Udp,
  update16,
  update32,
} from '../../src/wire/index.js';
import {
  Rng,
  addr,
  allOk,
  checksum,
  l4Ok6,
  naiveFolded,
  onesSum,
  pseudoHeader,
  tcpPacket,
  toHex,
  u16,
  u32,
  udp6Packet,
  udpPacket,
} from './packets.js';

describe('sum / fold / finish', () => {
  it('RFC 1071 section 3 example: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2', () => {
    const b = new Uint8Array([0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]);
    expect(fold(sum(b, 0, 8, 0))).toBe(0xddf2);
    expect(finish(sum(b, 0, 8, 0))).toBe(0x220d);
    expect(onesSum([b])).toBe(0xddf2);
  });

  it('matches a naive implementation on seeded random buffers, odd lengths and offsets included', () => {
    const rng = new Rng(1071);
    for (let i = 0; i < 3000; i++) {
      const n = rng.int(i < 100 ? 8 : 1600);
      const off = rng.int(5);
      const buf = rng.bytes(off + n + rng.int(3));
      // Sometimes all-ones or all-zero, to hit the folding corners.
      if (i % 50 === 0) buf.fill(0xff);
      if (i % 50 === 1) buf.fill(0);
      const acc = rng.int(4) === 0 ? rng.u32() * 4 : 0;
      const s = sum(buf, off, n, acc);
      expect(fold(s), `n=${n} off=${off}`).toBe(naiveFolded(buf, off, n, acc));
      expect(finish(s)).toBe(~naiveFolded(buf, off, n, acc) & 0xffff);
      if (acc === 0) expect(finish(s)).toBe(checksum(buf.subarray(off, off + n)));
    }
  });

  it('an odd last byte is padded with zero, not joined with the byte after it', () => {
    const b = new Uint8Array([0x12, 0x34, 0x56, 0x78]);
    expect(sum(b, 0, 3, 0)).toBe(0x1234 + 0x5600);
    expect(sum(b, 1, 3, 0)).toBe(0x3456 + 0x7800);
    expect(sum(b, 0, 0, 5)).toBe(5);
  });

  it('fold is the end-around-carry reduction for sums far past 32 bits', () => {
    const rng = new Rng(7);
    expect(fold(0)).toBe(0);
    expect(fold(0xffff)).toBe(0xffff);
    expect(fold(0x10000)).toBe(1);
    expect(fold(0x1fffe)).toBe(0xffff);
    expect(fold(0xffffffff)).toBe(0xffff);
    // 2^16 = 1 (mod 0xffff), so 2^53 - 1 = 2^5 - 1.
    expect(fold(2 ** 53 - 1)).toBe(31);
    for (let i = 0; i < 2000; i++) {
      const acc = rng.u32() * 0x100000 + (rng.u32() % 0x100000); // up to ~2^52
      const f = fold(acc);
      expect(f).toBeGreaterThanOrEqual(acc === 0 ? 0 : 1);
      expect(f).toBeLessThanOrEqual(0xffff);
      // x ≡ fold(x) (mod 0xffff), and a non-zero x never folds to 0.
      expect(f % 0xffff).toBe(acc % 0xffff);
    }
  });

  it('pseudoSum4 equals the sum of the 12-byte pseudo-header', () => {
    const rng = new Rng(12);
    for (let i = 0; i < 500; i++) {
      const src = rng.u32();
      const dst = rng.u32();
      const proto = rng.pick([1, 6, 17]);
      const len = rng.u16();
      const ph = pseudoHeader(src, dst, proto, len);
      expect(fold(pseudoSum4(src, dst, proto, len))).toBe(naiveFolded(ph, 0, 12));
    }
  });
});

describe('RFC 1624 incremental update', () => {
  it("the RFC 1624 section 4 example: HC=0xDD2F, m=0x5555, m'=0x3285 gives 0x0000", () => {
    expect(update16(0xdd2f, 0x5555, 0x3285)).toBe(0x0000);
  });

  it('update16 equals full recomputation on random buffers', () => {
    const rng = new Rng(1624);
    for (let i = 0; i < 2000; i++) {
      const words = 2 + rng.int(40);
      const b = rng.bytes(words * 2);
      if (i % 100 === 0) b.fill(0xff);
      const at = rng.int(words) * 2;
      const before = checksum(b);
      const old = u16(b, at);
      const nv = i % 7 === 0 ? rng.pick([0, 0xffff, old]) : rng.u16();
      b[at] = nv >>> 8;
      b[at + 1] = nv & 0xff;
      const after = checksum(b);
      const inc = update16(before, old, nv);
      // 0x0000 and 0xffff are the two zeros of one's complement; the packet verifies either way.
      if (inc !== after) expect([inc, after].sort((x, y) => x - y)).toEqual([0, 0xffff]);
      else expect(inc).toBe(after);
    }
  });

  it('update32 equals two update16 steps and full recomputation', () => {
    const rng = new Rng(32);
    for (let i = 0; i < 2000; i++) {
      const b = rng.bytes(8 + rng.int(30) * 2);
      const before = checksum(b);
      const old = (b[0]! * 0x1000000 + b[1]! * 0x10000 + b[2]! * 0x100 + b[3]!) >>> 0;
      const nv = rng.u32();
      b[0] = nv >>> 24;
      b[1] = (nv >>> 16) & 0xff;
      b[2] = (nv >>> 8) & 0xff;
      b[3] = nv & 0xff;
      const inc = update32(before, old, nv);
      expect(inc).toBe(checksum(b));
      expect(inc).toBe(update16(update16(before, old >>> 16, nv >>> 16), old & 0xffff, nv & 0xffff));
    }
  });

  it('deltas summed over several fields and applied once equal the updates one after another', () => {
    const rng = new Rng(1624_3);
    const edge = [0, 1, 0x7fff, 0x8000, 0xfffe, 0xffff];
    const r16 = (): number => (rng.int(4) === 0 ? rng.pick(edge) : rng.u16());
    const r32 = (): number => (rng.int(4) === 0 ? rng.pick([0, 0xffffffff, 0xffff0000, 0xffff]) : rng.u32());
    const w = new Uint32Array(8);
    for (let i = 0; i < 20000; i++) {
      const c = r16();
      const [a, b, p, q] = [r32(), r32(), r16(), r16()];
      expect(applyDelta(c, delta32(a, b) + delta16(p, q))).toBe(update16(update32(c, a, b), p, q));
      expect(applyDelta(c, delta16(p, q))).toBe(update16(c, p, q));
      for (let k = 0; k < 8; k++) w[k] = r32();
      expect(applyDelta(c, delta128(w, 0, w, 4))).toBe(
        update32(update32(update32(update32(c, w[0]!, w[4]!), w[1]!, w[5]!), w[2]!, w[6]!), w[3]!, w[7]!),
      );
    }
    // No change: the delta is 0 and the checksum stays as it was, even 0xffff (update16 with m = m' would give 0).
    expect(applyDelta(0xffff, 0)).toBe(0xffff);
    expect(update16(0xffff, 5, 5)).toBe(0);
  });

  it('view rewrites equal full recomputation on 1500 seeded random TCP/UDP packets', () => {
    const rng = new Rng(20240601);
    const ip = new Ipv4();
    const tcp = new Tcp();
    const udp = new Udp();
    let tcpCount = 0;
    let udpCount = 0;
    for (let i = 0; i < 1500; i++) {
      const isTcp = rng.bool();
      const src = rng.u32();
      const dst = rng.u32();
      const sport = rng.u16();
      const dport = rng.u16();
      const data = rng.bytes(rng.int(200));
      const ipo = { ident: rng.u16(), ttl: rng.u8(), df: rng.bool() };
      const tf = { seq: rng.u32(), ack: rng.u32(), flags: rng.u8(), window: rng.u16(), data };
      const build = (s: number, d: number, sp: number, dp: number): Uint8Array =>
        isTcp ? tcpPacket(s, d, { ...tf, sport: sp, dport: dp }, ipo) : udpPacket(s, d, { sport: sp, dport: dp, data }, ipo);
      const p = build(src, dst, sport, dport);
      ip.attach(p, 0, p.length);
      const l4 = isTcp ? tcp : udp;
      l4.attach(p, ip.payloadOffset, ip.payloadLength);
      if (isTcp) tcpCount++;
      else udpCount++;

      // A random subset of the four rewrites, in a random order, like NAT in either direction.
      let s = src;
      let d = dst;
      let sp = sport;
      let dp = dport;
      const ops = rng.someInOrder(4);
      for (const op of ops) {
        if (op === 0) {
          const n = rng.u32();
          ip.setSrc(n);
          l4.updateAddress(s, n);
          s = n;
        } else if (op === 1) {
          const n = rng.u32();
          ip.setDst(n);
          l4.updateAddress(d, n);
          d = n;
        } else if (op === 2) {
          sp = rng.u16();
          l4.setSrcPort(sp);
        } else {
          dp = rng.u16();
          l4.setDstPort(dp);
        }
      }
      expect(toHex(p), `packet ${i} ${isTcp ? 'tcp' : 'udp'} ops ${ops.join(',')}`).toBe(toHex(build(s, d, sp, dp)));
      expect(allOk(p)).toBe(true);
    }
    expect(tcpCount).toBeGreaterThan(600);
    expect(udpCount).toBeGreaterThan(600);
  });

  it('a UDP address rewrite whose result would be 0 is sent as 0xffff (and still verifies)', () => {
    const rng = new Rng(65535);
    const ip = new Ipv4();
    const udp = new Udp();
    let hits = 0;
    for (let i = 0; i < 200; i++) {
      const src = rng.u32();
      const dst = rng.u32();
      const sport = rng.u16();
      const dport = rng.u16();
      const data = rng.bytes(rng.int(40));
      const p = udpPacket(src, dst, { sport, dport, data });
      ip.attach(p, 0, p.length);
      udp.attach(p, 20, ip.payloadLength);
      // Solve for a new source address whose incremental update yields exactly 0:
      // pick the high half at random, then the low half that brings the sum to 0xffff.
      const c = udp.checksum;
      const hi = rng.u16();
      const partial = fold((~c & 0xffff) + (~(src >>> 16) & 0xffff) + (~src & 0xffff) + hi);
      const lo = 0xffff - partial;
      const nsrc = ((hi << 16) | lo) >>> 0;
      expect(update32(c, src, nsrc)).toBe(0);
      ip.setSrc(nsrc);
      udp.updateAddress(src, nsrc);
      expect(udp.checksum).toBe(0xffff);
      expect(udp.verifyChecksum4(nsrc, dst)).toBe(true);
      expect(allOk(p)).toBe(true);
      // Full recomputation sends it as 0xffff too: same bytes.
      expect(toHex(p)).toBe(toHex(udpPacket(nsrc, dst, { sport, dport, data })));
      hits++;
    }
    expect(hits).toBe(200);
  });

  it('a UDP port rewrite whose result would be 0 is sent as 0xffff, found by seeded random search', () => {
    const rng = new Rng(4242);
    const ip = new Ipv4();
    const udp = new Udp();
    // A fixed datagram; search random new source ports until update16 hits 0.
    const src = addr('10.0.2.100');
    const dst = addr('198.19.0.7');
    const data = rng.bytes(13);
    const base = udpPacket(src, dst, { sport: 1000, dport: 53, data });
    const c = u16(base, 26);
    let found = -1;
    for (let tries = 0; tries < 1_000_000 && found < 0; tries++) {
      const port = rng.u16();
      if (update16(c, 1000, port) === 0) found = port;
    }
    expect(found).toBeGreaterThanOrEqual(0);
    const p = base.slice();
    ip.attach(p, 0, p.length);
    udp.attach(p, 20, ip.payloadLength);
    udp.setSrcPort(found);
    expect(udp.srcPort).toBe(found);
    expect(udp.checksum).toBe(0xffff);
    expect(udp.verifyChecksum4(src, dst)).toBe(true);
    expect(toHex(p)).toBe(toHex(udpPacket(src, dst, { sport: found, dport: 53, data })));
  });

  it('a TCP rewrite whose result is 0 keeps 0 (0 is a valid TCP checksum)', () => {
    const rng = new Rng(6);
    const ip = new Ipv4();
    const tcp = new Tcp();
    const src = rng.u32();
    const dst = rng.u32();
    const p = tcpPacket(src, dst, { sport: 1, dport: 2, flags: 0x10, data: rng.bytes(9) });
    ip.attach(p, 0, p.length);
    tcp.attach(p, 20, ip.payloadLength);
    const c = tcp.checksum;
    const partial = fold((~c & 0xffff) + (~(src >>> 16) & 0xffff) + (~src & 0xffff) + 0x0a00);
    const nsrc = ((0x0a00 << 16) | (0xffff - partial)) >>> 0;
    ip.setSrc(nsrc);
    tcp.updateAddress(src, nsrc);
    expect(tcp.checksum).toBe(0);
    expect(tcp.verifyChecksum4(nsrc, dst)).toBe(true);
    expect(onesSum([pseudoHeader(nsrc, dst, 6, p.length - 20), p.subarray(20)])).toBe(0xffff);
  });
});

/**
 * Per family: a UDP datagram with checksum 0 from a random address, its
 * source rewritten by the views as the translator does, and whether a 0
 * verifies (IPv4: it means "none" and must stay 0; IPv6: it is invalid, and
 * is left for the receiver to drop rather than given a made-up checksum).
 */
const UDP_ZERO: Record<
  'IPv4' | 'IPv6',
  {
    seed: number;
    packet(rng: Rng, f: { sport: number; dport: number; data: Uint8Array; checksum: false }): Uint8Array;
    attach(p: Uint8Array, udp: Udp): void;
    rewriteSource(rng: Rng, p: Uint8Array, udp: Udp): void;
    headerOk(p: Uint8Array): boolean;
    verify(udp: Udp, p: Uint8Array): boolean;
    ok(p: Uint8Array): boolean;
    zeroVerifies: boolean;
  }
> = {
  IPv4: {
    seed: 0,
    packet: (rng, f) => udpPacket(rng.u32(), rng.u32(), f),
    attach(p, udp) {
      const ip = new Ipv4();
      ip.attach(p, 0, p.length);
      udp.attach(p, ip.payloadOffset, ip.payloadLength);
    },
    rewriteSource(rng, p, udp) {
      const ip = new Ipv4();
      ip.attach(p, 0, p.length);
      const old = ip.src;
      const n = rng.u32();
      ip.setSrc(n);
      udp.updateAddress(old, n);
    },
    headerOk: (p) => {
      const ip = new Ipv4();
      return ip.attach(p, 0, p.length) && ip.verifyChecksum();
    },
    verify: (udp, p) => udp.verifyChecksum4(u32(p, 12), u32(p, 16)),
    ok: allOk,
    zeroVerifies: true,
  },
  IPv6: {
    seed: 0,
    packet: (rng, f) => udp6Packet(rng.bytes(16), rng.bytes(16), f),
    attach(p, udp) {
      const ip = new Ipv6();
      ip.attach(p, 0, p.length);
      udp.attach(p, ip.transportOffset, ip.transportLength);
    },
    rewriteSource(rng, p, udp) {
      const ip = new Ipv6();
      ip.attach(p, 0, p.length);
      const w = new Uint32Array(8);
      ip.readSrc(w, 0);
      for (let k = 4; k < 8; k++) w[k] = rng.u32();
      ip.writeSrc(w, 4);
      udp.updateAddress128(w, 0, w, 4);
    },
    headerOk: () => true, // IPv6 has no header checksum
    verify: (udp, p) => udp.verifyChecksum6(p, 0),
    ok: l4Ok6,
    zeroVerifies: false,
  },
};

describe.each(['IPv4', 'IPv6'] as const)('%s UDP checksum 0', (name) => {
  it('stays 0 through address and port rewrites', () => {
    const z = UDP_ZERO[name];
    const rng = new Rng(z.seed);
    const udp = new Udp();
    for (let i = 0; i < 300; i++) {
      const p = z.packet(rng, { sport: rng.u16(), dport: rng.u16(), data: rng.bytes(rng.int(40)), checksum: false });
      z.attach(p, udp);
      expect(udp.checksum).toBe(0);
      expect(z.verify(udp, p)).toBe(z.zeroVerifies);
      z.rewriteSource(rng, p, udp);
      udp.setSrcPort(rng.u16());
      udp.setDstPort(rng.u16());
      expect(udp.checksum).toBe(0);
      expect(z.headerOk(p)).toBe(true);
      expect(z.verify(udp, p)).toBe(z.zeroVerifies);
      expect(z.ok(p)).toBe(z.zeroVerifies);
    }
  });
});
