// Unit tests for the IPv6 pseudo-header sum and the 128-bit RFC 1624 update, against naive recomputation
// (the UDP checksum 0 of both families is in checksum.test.ts).
import { describe, it, expect } from 'vitest';
import { finish, fold, Icmp6, Ipv6, pseudoSum6, sum, Tcp, Udp, update128, update16, update32 } from '../../src/wire/index.js';
import {
  type Ext6,
  Rng,
  naiveFolded,
  addr6,
  checksum,
  echo6Packet,
  embed,
  l4Ok6,
  onesSum,
  pseudoHeader6,
  tcp6Packet,
  toHex,
  udp6Packet,
  words6,
} from './packets.js';

/** The 16 bytes of four words w[o..o+3], big-endian. */
function bytesOf(w: Uint32Array, o = 0): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 0; i < 4; i++) {
    const v = w[o + i]!;
    b[i * 4] = v >>> 24;
    b[i * 4 + 1] = (v >>> 16) & 0xff;
    b[i * 4 + 2] = (v >>> 8) & 0xff;
    b[i * 4 + 3] = v & 0xff;
  }
  return b;
}

/** A random address, often with zero or all-ones groups, sometimes a copy of `like`. */
function randomWords(rng: Rng, out: Uint32Array, o: number, like?: Uint32Array): void {
  const mode = rng.int(10);
  for (let i = 0; i < 4; i++) {
    if (mode === 0 && like) out[o + i] = like[i]!;
    else if (mode === 1) out[o + i] = rng.pick([0, 0xffffffff, 0xffff0000, 0x0000ffff]);
    else if (mode === 2) out[o + i] = rng.bool() ? 0 : rng.u32();
    else out[o + i] = rng.u32();
  }
}

/** Random extension headers that leave the checksum alone (no Routing with segments left). */
function randomExt(rng: Rng): Ext6[] {
  const ext: Ext6[] = [];
  if (rng.int(4) === 0) ext.push({ kind: 'hbh', options: Array.from(rng.bytes(rng.int(12))) });
  if (rng.int(4) === 0) ext.push({ kind: 'routing', routingType: 4, segmentsLeft: 0, data: Array.from(rng.bytes(20)) });
  if (rng.int(4) === 0) ext.push({ kind: 'frag', ident: rng.u32() });
  if (rng.int(4) === 0) ext.push({ kind: 'dst', options: Array.from(rng.bytes(rng.int(12))) });
  return ext;
}

describe('pseudoSum6', () => {
  it('equals the sum of the 40-byte RFC 8200 pseudo-header, read from the header wherever it sits', () => {
    const rng = new Rng(8200);
    for (let i = 0; i < 3000; i++) {
      const off = rng.int(7);
      const buf = rng.bytes(off + 40 + rng.int(5));
      if (i % 100 === 0) buf.fill(0xff);
      if (i % 100 === 1) buf.fill(0);
      const len = i < 40 ? [0, 1, 0xffff, 0x10000, 0x10001, 0xfffffffe, 0xffffffff, 40][i % 8]! : rng.bool() ? rng.u16() : rng.u32();
      const nh = rng.bool() ? rng.pick([6, 17, 58]) : rng.u8();
      const ph = pseudoHeader6(buf.subarray(off + 8, off + 24), buf.subarray(off + 24, off + 40), nh, len);
      const s = pseudoSum6(buf, off, len, nh);
      expect(fold(s), `i=${i} len=${len}`).toBe(naiveFolded(ph, 0, 40));
      // The rest of the header (version, class, flow, length, next header, hop limit) does not count.
      const before = s;
      for (let k = 0; k < 8; k++) buf[off + k] = rng.u8();
      expect(pseudoSum6(buf, off, len, nh)).toBe(before);
    }
  });

  it('with sum/finish gives the checksum of pseudo-header plus segment', () => {
    const rng = new Rng(81);
    for (let i = 0; i < 1000; i++) {
      const hdr = rng.bytes(40);
      const seg = rng.bytes(rng.int(300));
      const nh = rng.pick([6, 17, 58]);
      const c = finish(sum(seg, 0, seg.length, pseudoSum6(hdr, 0, seg.length, nh)));
      expect(c).toBe(checksum(pseudoHeader6(hdr.subarray(8, 24), hdr.subarray(24, 40), nh, seg.length), seg));
    }
  });

  it('the upper-layer length is 32 bits: 0x10000 differs from 0 only in the high half', () => {
    const hdr = new Uint8Array(40);
    expect(pseudoSum6(hdr, 0, 0x10000, 17)).toBe(1 + 17);
    expect(pseudoSum6(hdr, 0, 0xffffffff, 0)).toBe(0x1fffe);
    expect(pseudoSum6(hdr, 0, 0, 0)).toBe(0);
  });
});

describe('update128', () => {
  it('equals full recomputation after a 16-byte field changes, and 4 update32 or 8 update16 steps', () => {
    const rng = new Rng(1624128);
    const scratch = new Uint32Array(20); // old words somewhere in 0..8, new ones in 9..19
    for (let i = 0; i < 3000; i++) {
      const words = 8 + rng.int(60);
      const b = rng.bytes(words * 2);
      if (i % 100 === 0) b.fill(0xff);
      const at = rng.int(words - 7) * 2; // 16-bit aligned, as in every pseudo-header
      const before = checksum(b);
      const oo = rng.int(6);
      const no = 9 + rng.int(8);
      scratch.set(words6(b.subarray(at, at + 16)), oo);
      randomWords(rng, scratch, no, scratch.subarray(oo, oo + 4));
      b.set(bytesOf(scratch, no), at);
      const inc = update128(before, scratch, oo, scratch, no);
      expect(inc, `i=${i}`).toBe(checksum(b));
      let c32 = before;
      let c16 = before;
      for (let k = 0; k < 4; k++) {
        const o = scratch[oo + k]!;
        const n = scratch[no + k]!;
        c32 = update32(c32, o, n);
        c16 = update16(update16(c16, o >>> 16, n >>> 16), o & 0xffff, n & 0xffff);
      }
      expect(inc).toBe(c32);
      expect(inc).toBe(c16);
    }
  });

  it('reads the words as unsigned wherever they sit in their arrays', () => {
    const old = new Uint32Array([0, 0x80000000, 0xffffffff, 1, 2, 3]);
    const neu = new Uint32Array([7, 7, 0x80000001, 0xfffffffe, 2, 4]);
    const b = new Uint8Array(20);
    b.set(bytesOf(old, 1), 2);
    const before = checksum(b);
    b.set(bytesOf(neu, 2), 2);
    expect(update128(before, old, 1, neu, 2)).toBe(checksum(b));
  });
});

describe('view rewrites over IPv6 equal full recomputation', () => {
  it('Ipv6.writeSrc/writeDst + Tcp/Udp/Icmp6.updateAddress128 + port/ident rewrites on 1500 seeded random packets', () => {
    const rng = new Rng(20250101);
    const ip = new Ipv6();
    const tcp = new Tcp();
    const udp = new Udp();
    const icmp = new Icmp6();
    const w = new Uint32Array(12); // old address at 1, new at 7: offsets exercised too
    const counts = [0, 0, 0];
    for (let i = 0; i < 1500; i++) {
      const kind = rng.int(3); // 0 tcp, 1 udp, 2 icmpv6
      counts[kind]!++;
      const src = rng.bytes(16);
      const dst = rng.bytes(16);
      const sport = rng.u16();
      const dport = rng.u16();
      const data = rng.bytes(rng.int(200));
      const ipo = { trafficClass: rng.u8(), flowLabel: rng.int(0x100000), hopLimit: rng.u8(), ext: randomExt(rng) };
      const tf = { seq: rng.u32(), ack: rng.u32(), flags: rng.u8(), window: rng.u16(), data };
      const type = rng.bool() ? 128 : 129;
      const build = (s: Uint8Array, d: Uint8Array, sp: number, dp: number): Uint8Array =>
        kind === 0
          ? tcp6Packet(s, d, { ...tf, sport: sp, dport: dp }, ipo)
          : kind === 1
            ? udp6Packet(s, d, { sport: sp, dport: dp, data }, ipo)
            : echo6Packet(s, d, type, sp, dport, data, ipo);
      const p = build(src, dst, sport, dport);
      const off = rng.int(9);
      const buf = embed(p, off);
      expect(ip.attach(buf, off, p.length)).toBe(true);
      const l4 = kind === 0 ? tcp : kind === 1 ? udp : icmp;
      expect(l4.attach(buf, ip.transportOffset, ip.transportLength)).toBe(true);

      // A random subset of the rewrites, in a random order, like NAT in either direction.
      let s = src;
      let d = dst;
      let sp = sport;
      let dp = dport;
      const ops = rng.someInOrder(4);
      for (const op of ops) {
        if (op === 0 || op === 1) {
          if (op === 0) ip.readSrc(w, 1);
          else ip.readDst(w, 1);
          randomWords(rng, w, 7, w.subarray(1, 5));
          if (op === 0) ip.writeSrc(w, 7);
          else ip.writeDst(w, 7);
          l4.updateAddress128(w, 1, w, 7);
          if (op === 0) s = bytesOf(w, 7);
          else d = bytesOf(w, 7);
          expect(op === 0 ? ip.srcEquals(w, 7) : ip.dstEquals(w, 7)).toBe(true);
        } else if (op === 2) {
          sp = rng.u16();
          if (kind === 2) icmp.setIdent(sp);
          else (kind === 0 ? tcp : udp).setSrcPort(sp);
        } else if (kind !== 2) {
          dp = rng.u16();
          (kind === 0 ? tcp : udp).setDstPort(dp);
        }
      }
      expect(toHex(buf.subarray(off, off + p.length)), `packet ${i} kind ${kind} ops ${ops.join(',')}`).toBe(toHex(build(s, d, sp, dp)));
      expect(buf.subarray(0, off).every((x) => x === 0xa5)).toBe(true);
      expect(buf.subarray(off + p.length).every((x) => x === 0xa5)).toBe(true);
      expect(l4Ok6(buf.subarray(off, off + p.length))).toBe(true);
      const ok = kind === 0 ? tcp.verifyChecksum6(buf, off) : kind === 1 ? udp.verifyChecksum6(buf, off) : icmp.verifyChecksum6(buf, off);
      expect(ok).toBe(true);
    }
    for (const c of counts) expect(c).toBeGreaterThan(400);
  });

  it('fillChecksum6 of each view equals the builder on seeded random packets with extension headers', () => {
    const rng = new Rng(31);
    const ip = new Ipv6();
    const tcp = new Tcp();
    const udp = new Udp();
    const icmp = new Icmp6();
    for (let i = 0; i < 600; i++) {
      const kind = i % 3;
      const src = rng.bytes(16);
      const dst = rng.bytes(16);
      const data = rng.bytes(rng.int(100));
      const ipo = { ext: randomExt(rng) };
      const p =
        kind === 0
          ? tcp6Packet(src, dst, { sport: rng.u16(), dport: rng.u16(), flags: rng.u8(), data }, ipo)
          : kind === 1
            ? udp6Packet(src, dst, { sport: rng.u16(), dport: rng.u16(), data }, ipo)
            : echo6Packet(src, dst, 128, rng.u16(), rng.u16(), data, ipo);
      const want = toHex(p);
      expect(ip.attach(p, 0, p.length)).toBe(true);
      const at = ip.transportOffset + (kind === 0 ? 16 : kind === 1 ? 6 : 2);
      p[at] = rng.u8();
      p[at + 1] = rng.u8();
      const l4 = kind === 0 ? tcp : kind === 1 ? udp : icmp;
      expect(l4.attach(p, ip.transportOffset, ip.transportLength)).toBe(true);
      l4.fillChecksum6(p, 0);
      expect(toHex(p)).toBe(want);
    }
  });
});

describe('IPv6 zero-checksum rules', () => {
  /** A new address whose update128 from `old` turns checksum `c` into exactly 0: solve for the last 16 bits. */
  function addressGivingZero(rng: Rng, c: number, old: Uint32Array): Uint32Array {
    const n = new Uint32Array(4);
    for (let k = 0; k < 3; k++) n[k] = rng.u32();
    const hi = rng.u16();
    let acc = ~c & 0xffff;
    for (let k = 0; k < 4; k++) acc += (~(old[k]! >>> 16) & 0xffff) + (~old[k]! & 0xffff);
    for (let k = 0; k < 3; k++) acc += (n[k]! >>> 16) + (n[k]! & 0xffff);
    acc += hi;
    let partial = acc;
    while (partial > 0xffff) partial = (partial & 0xffff) + Math.floor(partial / 0x10000);
    n[3] = hi * 0x10000 + (0xffff - partial); // brings the folded sum to 0xffff, whose complement is 0
    return n;
  }

  it('a UDP address rewrite whose result would be 0 is sent as 0xffff (and still verifies)', () => {
    const rng = new Rng(65535);
    const ip = new Ipv6();
    const udp = new Udp();
    for (let i = 0; i < 300; i++) {
      const src = rng.bytes(16);
      const dst = rng.bytes(16);
      const f = { sport: rng.u16(), dport: rng.u16(), data: rng.bytes(rng.int(40)) };
      const p = udp6Packet(src, dst, f, { ext: randomExt(rng) });
      ip.attach(p, 0, p.length);
      udp.attach(p, ip.transportOffset, ip.transportLength);
      const old = words6(src);
      const nsrc = addressGivingZero(rng, udp.checksum, old);
      expect(update128(udp.checksum, old, 0, nsrc, 0)).toBe(0);
      ip.writeSrc(nsrc, 0);
      udp.updateAddress128(old, 0, nsrc, 0);
      expect(udp.checksum).toBe(0xffff);
      expect(udp.verifyChecksum6(p, 0)).toBe(true);
      expect(l4Ok6(p)).toBe(true);
      // Full recomputation gives 0 too, and sends it as 0xffff: same bytes.
      const fresh = udp6Packet(bytesOf(nsrc), dst, f, { ext: [] });
      expect(
        onesSum([
          pseudoHeader6(bytesOf(nsrc), dst, 17, udp.len),
          p.subarray(ip.transportOffset, ip.transportOffset + 6),
          p.subarray(ip.transportOffset + 8, ip.off + ip.len),
        ]),
      ).toBe(0xffff);
      expect(toHex(p.subarray(ip.transportOffset))).toBe(toHex(fresh.subarray(40)));
    }
  });

  it('a destination rewrite hits the 0 case the same way', () => {
    const rng = new Rng(7);
    const ip = new Ipv6();
    const udp = new Udp();
    const src = addr6('fd00::64');
    const dst = addr6('2001:db8::53');
    const f = { sport: 5353, dport: 53, data: rng.bytes(17) };
    const p = udp6Packet(src, dst, f);
    ip.attach(p, 0, p.length);
    udp.attach(p, 40, ip.transportLength);
    const old = new Uint32Array(4);
    ip.readDst(old, 0);
    const ndst = addressGivingZero(rng, udp.checksum, old);
    ip.writeDst(ndst, 0);
    udp.updateAddress128(old, 0, ndst, 0);
    expect(udp.checksum).toBe(0xffff);
    expect(toHex(p)).toBe(toHex(udp6Packet(src, bytesOf(ndst), f)));
  });

  it('a TCP or ICMPv6 rewrite whose result is 0 keeps 0 (0 is an ordinary checksum there)', () => {
    const rng = new Rng(6);
    const ip = new Ipv6();
    const tcp = new Tcp();
    const icmp = new Icmp6();
    for (let i = 0; i < 100; i++) {
      const src = rng.bytes(16);
      const dst = rng.bytes(16);
      const isTcp = i % 2 === 0;
      const p = isTcp
        ? tcp6Packet(src, dst, { sport: 1, dport: 2, flags: 0x10, data: rng.bytes(9) })
        : echo6Packet(src, dst, 128, rng.u16(), rng.u16(), rng.bytes(9));
      ip.attach(p, 0, p.length);
      const l4 = isTcp ? tcp : icmp;
      l4.attach(p, 40, ip.transportLength);
      const old = words6(src);
      const nsrc = addressGivingZero(rng, l4.checksum, old);
      ip.writeSrc(nsrc, 0);
      l4.updateAddress128(old, 0, nsrc, 0);
      expect(l4.checksum).toBe(0);
      expect(isTcp ? tcp.verifyChecksum6(p, 0) : icmp.verifyChecksum6(p, 0)).toBe(true);
      expect(l4Ok6(p)).toBe(true);
    }
  });
});
