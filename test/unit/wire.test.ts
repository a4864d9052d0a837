// Unit tests for the wire views: IPv4 reference packets read back, rewrites, malformed input, the virtio header, quotes;
// then what the views of both families do alike (describe.each over IPv4 and IPv6).
import { describe, it, expect } from 'vitest';
import {
  Icmp4,
  Icmp6,
  type IcmpHeader,
  ICMP4_DEST_UNREACHABLE,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP4_PARAMETER_PROBLEM,
  ICMP4_TIME_EXCEEDED,
  Ipv4,
  Ipv6,
  IPV4_MIN_HEADER,
  IPV6_HEADER,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  Tcp,
  TCP_ACK,
  TCP_FIN,
  TCP_MIN_HEADER,
  TCP_PSH,
  TCP_RST,
  TCP_SYN,
  Udp,
  UDP_HEADER,
  formatIpv4,
  parseIpv4,
  read16,
  read32,
  readLe16,
  VirtioNetHdr,
  VNET_HEADER,
  VnetField,
  VnetFlags,
  VnetGso,
  write16,
  write32,
} from '../../src/wire/index.js';
import {
  Rng,
  addr,
  addr6,
  echo6Packet,
  ipv6,
  l4Ok6,
  pseudoHeader6,
  udp6Datagram,
  udp6Packet,
  allOk,
  checksum,
  embed,
  hex,
  icmpMessage,
  ipHeaderOk,
  ipv4,
  l4Ok,
  pseudoHeader,
  tcpPacket,
  tcpSegment,
  toHex,
  udpDatagram,
  udpPacket,
} from './packets.js';
import { REBUILT, REF6_UDP, REF_ICMP, REF_OPTS, REF_TCP_SYN, REF_UDP } from './refs.js';

describe('byte helpers', () => {
  it('read16/read32/write16/write32 are big-endian and unsigned', () => {
    const b = new Uint8Array(8);
    write32(b, 1, 0xfedcba98);
    expect(toHex(b)).toBe('00fedcba98000000');
    expect(read32(b, 1)).toBe(0xfedcba98);
    write16(b, 5, 0xabcd);
    expect(read16(b, 5)).toBe(0xabcd);
    write16(b, 0, 0x12345); // only 16 bits kept
    expect(read16(b, 0)).toBe(0x2345);
    write32(b, 0, 0xffffffff);
    expect(read32(b, 0)).toBe(0xffffffff);
    // The virtio header's fields are little-endian.
    expect(readLe16(new Uint8Array([0x34, 0x12, 0xa8, 0x05]), 0)).toBe(0x1234);
    expect(readLe16(new Uint8Array([0x34, 0x12, 0xa8, 0x05]), 2)).toBe(1448);
  });

  it('parseIpv4/formatIpv4 round-trip and reject junk', () => {
    expect(parseIpv4('192.168.1.10')).toBe(0xc0a8010a);
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4('0.0.0.0')).toBe(0);
    expect(formatIpv4(0xc0a8010a)).toBe('192.168.1.10');
    expect(formatIpv4(0xffffffff)).toBe('255.255.255.255');
    for (const bad of [
      '',
      '1.2.3',
      '1.2.3.4.5',
      '256.1.1.1',
      '01.2.3.4',
      '1.2.3.-4',
      'a.b.c.d',
      '1..2.3',
      ' 1.2.3.4',
      '1.2.3.4 ',
      '1e2.1.1.1',
    ]) {
      expect(parseIpv4(bad), bad).toBe(-1);
    }
    const rng = new Rng(11);
    for (let i = 0; i < 1000; i++) {
      const a = rng.u32();
      expect(parseIpv4(formatIpv4(a))).toBe(a);
    }
  });
});

describe('reference IPv4+TCP SYN', () => {
  it('reads back field by field', () => {
    const buf = embed(REF_TCP_SYN, 5);
    const ip = new Ipv4();
    expect(ip.attach(buf, 5, REF_TCP_SYN.length)).toBe(true);
    expect(ip.off).toBe(5);
    expect(ip.len).toBe(44);
    expect(ip.headerLength).toBe(20);
    expect(ip.dscpEcn).toBe(0);
    expect(ip.totalLength).toBe(44);
    expect(ip.ident).toBe(0x1c46);
    expect(ip.dontFragment).toBe(true);
    expect(ip.moreFragments).toBe(false);
    expect(ip.fragmentOffset).toBe(0);
    expect(ip.isFragment).toBe(false);
    expect(ip.ttl).toBe(64);
    expect(ip.protocol).toBe(PROTO_TCP);
    expect(ip.checksum).toBe(0x26f9);
    expect(ip.src).toBe(addr('192.168.1.10'));
    expect(ip.dst).toBe(addr('93.184.216.34'));
    expect(ip.payloadOffset).toBe(25);
    expect(ip.payloadLength).toBe(24);
    expect(ip.verifyChecksum()).toBe(true);

    const tcp = new Tcp();
    expect(tcp.attach(buf, ip.payloadOffset, ip.payloadLength)).toBe(true);
    expect(tcp.srcPort).toBe(49152);
    expect(tcp.dstPort).toBe(80);
    expect(tcp.seq).toBe(0x12345678);
    expect(tcp.ack).toBe(0);
    expect(tcp.headerLength).toBe(24);
    expect(tcp.flags).toBe(TCP_SYN);
    expect(tcp.window).toBe(64240);
    expect(tcp.checksum).toBe(0x7cab);
    expect(tcp.verifyChecksum4(ip.src, ip.dst)).toBe(true);
    expect(tcp.verifyChecksum4(ip.src, ip.dst + 1)).toBe(false);
  });

  it('fillChecksum/fillChecksum4 recompute the reference checksums', () => {
    const b = REF_TCP_SYN.slice();
    b[10] = b[11] = 0;
    b[36] = 0xde;
    b[37] = 0xad;
    const ip = new Ipv4();
    const tcp = new Tcp();
    expect(ip.attach(b, 0, b.length)).toBe(true);
    expect(ip.verifyChecksum()).toBe(false);
    ip.fillChecksum();
    expect(tcp.attach(b, ip.payloadOffset, ip.payloadLength)).toBe(true);
    expect(tcp.verifyChecksum4(ip.src, ip.dst)).toBe(false);
    tcp.fillChecksum4(ip.src, ip.dst);
    expect(toHex(b)).toBe(toHex(REF_TCP_SYN));
  });
});

describe('reference IPv4+UDP', () => {
  it('reads back field by field', () => {
    const buf = embed(REF_UDP, 3);
    const ip = new Ipv4();
    expect(ip.attach(buf, 3, buf.length - 3)).toBe(true); // trailing junk ignored
    expect(ip.len).toBe(40);
    expect(ip.ident).toBe(0xbeef);
    expect(ip.dontFragment).toBe(false);
    expect(ip.ttl).toBe(128);
    expect(ip.protocol).toBe(PROTO_UDP);
    expect(ip.checksum).toBe(0x5f62);
    expect(ip.src).toBe(addr('10.0.2.100'));
    expect(ip.dst).toBe(addr('8.8.8.8'));
    expect(ip.payloadLength).toBe(20);
    expect(ip.verifyChecksum()).toBe(true);

    const udp = new Udp();
    expect(udp.attach(buf, ip.payloadOffset, ip.payloadLength)).toBe(true);
    expect(udp.srcPort).toBe(5353);
    expect(udp.dstPort).toBe(53);
    expect(udp.length).toBe(20);
    expect(udp.len).toBe(20);
    expect(udp.checksum).toBe(0x41f6);
    expect(udp.verifyChecksum4(ip.src, ip.dst)).toBe(true);
    expect(udp.verifyChecksum4(ip.dst, ip.src)).toBe(true); // the pseudo-header sum is symmetric in src/dst
    expect(udp.verifyChecksum4(ip.src, ip.dst ^ 0x100)).toBe(false);
    expect(new TextDecoder().decode(buf.subarray(ip.payloadOffset + 8, ip.payloadOffset + udp.len))).toBe('hello vipnat');
  });

  it('fillChecksum4 recomputes the reference checksum; checksum 0 verifies as "none"', () => {
    const b = REF_UDP.slice();
    const ip = new Ipv4();
    const udp = new Udp();
    ip.attach(b, 0, b.length);
    udp.attach(b, ip.payloadOffset, ip.payloadLength);
    write16(b, ip.payloadOffset + 6, 0);
    expect(udp.checksum).toBe(0);
    expect(udp.verifyChecksum4(ip.src, ip.dst)).toBe(true);
    udp.fillChecksum4(ip.src, ip.dst);
    expect(toHex(b)).toBe(toHex(REF_UDP));
  });
});

describe('reference ICMP echo', () => {
  it('reads back field by field', () => {
    const buf = embed(REF_ICMP, 1);
    const ip = new Ipv4();
    expect(ip.attach(buf, 1, REF_ICMP.length)).toBe(true);
    expect(ip.protocol).toBe(PROTO_ICMP);
    expect(ip.ident).toBe(0x42);
    expect(ip.dontFragment).toBe(true);
    expect(ip.src).toBe(addr('10.0.2.100'));
    expect(ip.dst).toBe(addr('1.1.1.1'));
    expect(ip.verifyChecksum()).toBe(true);
    const icmp = new Icmp4();
    expect(icmp.attach(buf, ip.payloadOffset, ip.payloadLength)).toBe(true);
    expect(icmp.type).toBe(ICMP4_ECHO_REQUEST);
    expect(icmp.code).toBe(0);
    expect(icmp.checksum).toBe(0x5435);
    expect(icmp.ident).toBe(0x1234);
    expect(icmp.seq).toBe(1);
    expect(icmp.isEcho).toBe(true);
    expect(icmp.isError).toBe(false);
    expect(icmp.verifyChecksum()).toBe(true);
  });

  it('classifies types', () => {
    const icmp = new Icmp4();
    const cases: [number, boolean, boolean][] = [
      [ICMP4_ECHO_REPLY, true, false],
      [ICMP4_ECHO_REQUEST, true, false],
      [ICMP4_DEST_UNREACHABLE, false, true],
      [ICMP4_TIME_EXCEEDED, false, true],
      [ICMP4_PARAMETER_PROBLEM, false, true],
      [5, false, false], // redirect
      [13, false, false], // timestamp
    ];
    for (const [type, echo, error] of cases) {
      const m = icmpMessage(type, 0, 0, new Uint8Array(4));
      expect(icmp.attach(m, 0, m.length)).toBe(true);
      expect(icmp.type).toBe(type);
      expect(icmp.isEcho, `type ${type}`).toBe(echo);
      expect(icmp.isError, `type ${type}`).toBe(error);
      expect(icmp.verifyChecksum()).toBe(true);
    }
  });
});

describe('IPv4 options (IHL > 5)', () => {
  it('reads the reference packet with a Router Alert option', () => {
    const ip = new Ipv4();
    expect(ip.attach(REF_OPTS, 0, REF_OPTS.length)).toBe(true);
    expect(ip.headerLength).toBe(24);
    expect(ip.payloadOffset).toBe(24);
    expect(ip.payloadLength).toBe(11);
    expect(ip.ttl).toBe(1);
    expect(ip.verifyChecksum()).toBe(true);
    const udp = new Udp();
    expect(udp.attach(REF_OPTS, ip.payloadOffset, ip.payloadLength)).toBe(true);
    expect(udp.srcPort).toBe(1234);
    expect(udp.dstPort).toBe(4321);
    expect(udp.len).toBe(11);
    expect(udp.verifyChecksum4(ip.src, ip.dst)).toBe(true);
  });

  it('header checksum covers the options; rewrites keep it right with IHL up to 15', () => {
    const rng = new Rng(77);
    const ip = new Ipv4();
    for (let words = 0; words <= 10; words++) {
      const options = Array.from(rng.bytes(words * 4));
      const p = udpPacket(rng.u32(), rng.u32(), { sport: rng.u16(), dport: rng.u16(), data: rng.bytes(5) }, { options });
      expect(ip.attach(p, 0, p.length)).toBe(true);
      expect(ip.headerLength).toBe(20 + words * 4);
      expect(ip.verifyChecksum()).toBe(true);
      const last = 20 + words * 4 - 1; // last header byte
      p[last] = p[last]! ^ 1;
      expect(ip.verifyChecksum()).toBe(false);
      p[last] = p[last] ^ 1;
      const a = rng.u32();
      ip.setSrc(a);
      expect(ipHeaderOk(p)).toBe(true);
    }
  });
});

describe('rewrites equal full recomputation', () => {
  it('Ipv4.setSrc/setDst + Tcp/Udp.updateAddress + setSrcPort/setDstPort on seeded random packets', () => {
    const rng = new Rng(2024);
    const ip = new Ipv4();
    const tcp = new Tcp();
    const udp = new Udp();
    for (let i = 0; i < 600; i++) {
      const isTcp = rng.bool();
      const src = rng.u32();
      const dst = rng.u32();
      const sport = rng.u16();
      const dport = rng.u16();
      const data = rng.bytes(rng.int(64));
      const options = rng.int(4) === 0 ? Array.from(rng.bytes(4 * (1 + rng.int(3)))) : [];
      const ipo = { ident: rng.u16(), ttl: rng.u8(), tos: rng.u8(), options };
      const tf = { sport, dport, seq: rng.u32(), ack: rng.u32(), flags: rng.u8(), window: rng.u16(), data };
      const build = (s: number, d: number, sp: number, dp: number): Uint8Array =>
        isTcp ? tcpPacket(s, d, { ...tf, sport: sp, dport: dp }, ipo) : udpPacket(s, d, { sport: sp, dport: dp, data }, ipo);
      const p = build(src, dst, sport, dport);
      const off = rng.int(9);
      const buf = embed(p, off);
      expect(ip.attach(buf, off, p.length)).toBe(true);
      const l4 = isTcp ? tcp : udp;
      expect(l4.attach(buf, ip.payloadOffset, ip.payloadLength)).toBe(true);

      const nsrc = rng.u32();
      const ndst = rng.u32();
      const nsport = rng.u16();
      const ndport = rng.u16();
      ip.setSrc(nsrc);
      l4.updateAddress(src, nsrc);
      ip.setDst(ndst);
      l4.updateAddress(dst, ndst);
      l4.setSrcPort(nsport);
      l4.setDstPort(ndport);

      expect(ip.src).toBe(nsrc);
      expect(ip.dst).toBe(ndst);
      expect(l4.srcPort).toBe(nsport);
      expect(l4.dstPort).toBe(ndport);
      expect(toHex(buf.subarray(off, off + p.length))).toBe(toHex(build(nsrc, ndst, nsport, ndport)));
      // Bytes around the packet untouched.
      expect(buf.subarray(0, off).every((x) => x === 0xa5)).toBe(true);
      expect(buf.subarray(off + p.length).every((x) => x === 0xa5)).toBe(true);
      expect(ip.verifyChecksum()).toBe(true);
      expect(isTcp ? tcp.verifyChecksum4(nsrc, ndst) : udp.verifyChecksum4(nsrc, ndst)).toBe(true);
    }
  });
});

describe('malformed and truncated input', () => {
  const refs: [string, Uint8Array][] = [
    ['tcp', REF_TCP_SYN],
    ['udp', REF_UDP],
    ['icmp', REF_ICMP],
    ['opts', REF_OPTS],
  ];

  it('every truncation of every reference packet is refused by attach (or parses without throwing)', () => {
    const ip = new Ipv4();
    const tcp = new Tcp();
    const udp = new Udp();
    const icmp = new Icmp4();
    for (const [name, ref] of refs) {
      for (let n = 0; n < ref.length; n++) {
        // The buffer really ends at n: reads past it would be undefined.
        const cut = ref.slice(0, n);
        expect(ip.attach(cut, 0, n), `${name} cut at ${n}`).toBe(false);
        // The transport views on a cut payload, with the IP header taken as given.
        const hl = (ref[0]! & 0x0f) * 4;
        if (n >= hl) {
          const plen = n - hl;
          const proto = ref[9];
          if (proto === PROTO_TCP) {
            expect(tcp.attach(cut, hl, plen)).toBe(false); // data offset 6 words = 24 > any cut
          } else if (proto === PROTO_UDP) {
            expect(udp.attach(cut, hl, plen)).toBe(false);
            expect(udp.attachHeader(cut, hl, plen)).toBe(plen >= 8);
          } else {
            expect(icmp.attach(cut, hl, plen)).toBe(plen >= 8);
            if (plen >= 8) expect(() => icmp.verifyChecksum()).not.toThrow();
          }
        }
      }
      expect(ip.attach(ref, 0, ref.length)).toBe(true);
    }
  });

  it('refuses IHL < 5 and an IHL longer than the packet', () => {
    const ip = new Ipv4();
    for (let ihl = 0; ihl < 16; ihl++) {
      const b = REF_UDP.slice();
      b[0] = 0x40 | ihl;
      // Total length is 40: IHL 5..10 fit, 11.. (44+ bytes) exceed it.
      expect(ip.attach(b, 0, b.length), `ihl ${ihl}`).toBe(ihl >= 5 && ihl * 4 <= 40);
    }
  });

  it('refuses Total Length < IHL*4 or > the bytes there; accepts trailing bytes', () => {
    const ip = new Ipv4();
    const b = embed(REF_UDP, 0, 10);
    for (const total of [0, 1, 19, 20, 21, 39, 40, 41, 50, 51, 0xffff]) {
      write16(b, 2, total);
      const ok = ip.attach(b, 0, 50);
      expect(ok, `total ${total}`).toBe(total >= 20 && total <= 50);
      if (ok) {
        expect(ip.len).toBe(total);
        expect(ip.payloadLength).toBe(total - 20);
      }
    }
    // With options, total must cover the 24-byte header.
    const o = REF_OPTS.slice();
    write16(o, 2, 23);
    expect(ip.attach(o, 0, o.length)).toBe(false);
    write16(o, 2, 24);
    expect(ip.attach(o, 0, o.length)).toBe(true);
    expect(ip.payloadLength).toBe(0);
  });

  it('TCP: data offset < 5 or beyond the segment is refused', () => {
    const tcp = new Tcp();
    const seg = REF_TCP_SYN.slice(20);
    for (let doff = 0; doff < 16; doff++) {
      const s = seg.slice();
      s[12] = (doff << 4) | (s[12]! & 0x0f);
      expect(tcp.attach(s, 0, s.length), `data offset ${doff}`).toBe(doff >= 5 && doff * 4 <= s.length);
    }
    expect(tcp.attach(seg, 0, TCP_MIN_HEADER - 1)).toBe(false);
    const bare = tcpSegment(1, 2, { sport: 1, dport: 2, flags: 0 });
    expect(tcp.attach(bare, 0, TCP_MIN_HEADER)).toBe(true);
    expect(tcp.headerLength).toBe(20);
  });

  it('TCP flag bits read back', () => {
    const tcp = new Tcp();
    for (const f of [TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK, TCP_SYN | TCP_ACK, 0xff]) {
      const s = tcpSegment(1, 2, { sport: 1, dport: 2, flags: f });
      tcp.attach(s, 0, s.length);
      expect(tcp.flags).toBe(f);
    }
  });

  it('UDP: Length < 8 or beyond the bytes is refused; shorter Length than bytes is honoured', () => {
    const udp = new Udp();
    const d = embed(REF_UDP.slice(20), 0, 4); // 20-byte datagram + 4 trailing bytes
    for (const l of [0, 1, 7, 8, 9, 20, 21, 24, 25, 0xffff]) {
      write16(d, 4, l);
      const ok = udp.attach(d, 0, 24);
      expect(ok, `length ${l}`).toBe(l >= UDP_HEADER && l <= 24);
      if (ok) expect(udp.len).toBe(l);
    }
    expect(udp.attach(d, 0, 7)).toBe(false);
  });

  it('UDP attachHeader takes the first fragment of a larger datagram', () => {
    const rng = new Rng(8);
    const src = rng.u32();
    const dst = rng.u32();
    const whole = udpDatagram(src, dst, { sport: 4000, dport: 5000, data: rng.bytes(100) });
    const first = ipv4({ src, dst, proto: 17, mf: true, ident: 9 }, whole.subarray(0, 48));
    const ip = new Ipv4();
    const udp = new Udp();
    expect(ip.attach(first, 0, first.length)).toBe(true);
    expect(ip.moreFragments).toBe(true);
    expect(ip.isFragment).toBe(true);
    expect(ip.fragmentOffset).toBe(0);
    expect(udp.attach(first, ip.payloadOffset, ip.payloadLength)).toBe(false); // Length 108 > 48
    expect(udp.attachHeader(first, ip.payloadOffset, ip.payloadLength)).toBe(true);
    expect(udp.len).toBe(48);
    expect(udp.length).toBe(108);
    expect(udp.srcPort).toBe(4000);
    expect(udp.dstPort).toBe(5000);
    expect(udp.attachHeader(first, ip.payloadOffset, 7)).toBe(false);
    // Rewrites on the first fragment still give the checksum of the whole datagram.
    const nsrc = rng.u32();
    ip.setSrc(nsrc);
    udp.updateAddress(src, nsrc);
    udp.setSrcPort(4001);
    const expected = udpDatagram(nsrc, dst, { sport: 4001, dport: 5000, data: whole.subarray(8) });
    expect(toHex(first.subarray(20, 28))).toBe(toHex(expected.subarray(0, 8)));
    expect(ipHeaderOk(first)).toBe(true);
  });

  it('fragment fields: offset in bytes, MF, DF, isFragment', () => {
    const ip = new Ipv4();
    const p = ipv4({ src: 1, dst: 2, proto: 17, fragOffset: 1480, mf: true, df: false }, new Uint8Array(8));
    ip.attach(p, 0, p.length);
    expect(ip.fragmentOffset).toBe(1480);
    expect(ip.moreFragments).toBe(true);
    expect(ip.dontFragment).toBe(false);
    expect(ip.isFragment).toBe(true);
    const last = ipv4({ src: 1, dst: 2, proto: 17, fragOffset: 0x1fff * 8 }, new Uint8Array(8));
    ip.attach(last, 0, last.length);
    expect(ip.fragmentOffset).toBe(0x1fff * 8);
    expect(ip.moreFragments).toBe(false);
    expect(ip.isFragment).toBe(true);
    const df = ipv4({ src: 1, dst: 2, proto: 17, df: true }, new Uint8Array(8));
    ip.attach(df, 0, df.length);
    expect(ip.isFragment).toBe(false);
    expect(ip.dontFragment).toBe(true);
  });

  it('seeded random bytes never make a view throw', () => {
    const rng = new Rng(99);
    const ip = new Ipv4();
    const tcp = new Tcp();
    const udp = new Udp();
    const icmp = new Icmp4();
    for (let i = 0; i < 3000; i++) {
      const b = rng.bytes(rng.int(80));
      if (rng.bool() && b.length > 0) b[0] = 0x40 | (b[0]! & 0x0f);
      if (rng.bool() && b.length > 3) write16(b, 2, rng.int(b.length + 4));
      expect(() => {
        if (ip.attach(b, 0, b.length)) {
          expect(ip.headerLength).toBeGreaterThanOrEqual(IPV4_MIN_HEADER);
          expect(ip.payloadOffset + ip.payloadLength).toBeLessThanOrEqual(b.length);
          ip.verifyChecksum();
          if (tcp.attach(b, ip.payloadOffset, ip.payloadLength)) {
            expect(tcp.headerLength).toBeLessThanOrEqual(tcp.len);
            tcp.verifyChecksum4(ip.src, ip.dst);
          }
          if (udp.attach(b, ip.payloadOffset, ip.payloadLength)) {
            expect(udp.off + udp.len).toBeLessThanOrEqual(b.length);
            udp.verifyChecksum4(ip.src, ip.dst);
          }
          if (icmp.attach(b, ip.payloadOffset, ip.payloadLength)) icmp.verifyChecksum();
        }
      }).not.toThrow();
    }
  });
});

describe('the builder itself', () => {
  it('produces packets whose checksums the views accept', () => {
    const rng = new Rng(4);
    const ip = new Ipv4();
    const tcp = new Tcp();
    for (let i = 0; i < 100; i++) {
      const p = tcpPacket(rng.u32(), rng.u32(), { sport: rng.u16(), dport: rng.u16(), flags: rng.u8(), data: rng.bytes(rng.int(50)) });
      expect(allOk(p)).toBe(true);
      ip.attach(p, 0, p.length);
      tcp.attach(p, 20, ip.payloadLength);
      expect(ip.verifyChecksum() && tcp.verifyChecksum4(ip.src, ip.dst)).toBe(true);
    }
  });
});

describe('virtio-net header', () => {
  it('reads every field of the header a TUN puts before a TSO segment, little-endian, at an offset', () => {
    const h = new VirtioNetHdr();
    // NEEDS_CSUM, GSO TCPv4 with ECN, hdr_len 54, gso_size 1448, csum_start 34, csum_offset 16, then the packet.
    const b = embed(hex('01 81 3600 a805 2200 1000 45'), 3);
    expect(h.attach(b, 3, 11)).toBe(true);
    expect(h.flags).toBe(VnetFlags.NEEDS_CSUM);
    expect(h.needsCsum).toBe(true);
    expect(h.gsoType).toBe(VnetGso.TCPV4 | VnetGso.ECN);
    expect(h.hdrLen).toBe(54);
    expect(h.gsoSize).toBe(1448);
    expect(h.csumStart).toBe(34);
    expect(h.csumOffset).toBe(16);
    const plain = new Uint8Array(VNET_HEADER);
    plain[VnetField.FLAGS] = VnetFlags.DATA_VALID;
    expect(h.attach(plain, 0, VNET_HEADER)).toBe(true);
    expect(h.needsCsum).toBe(false);
    expect(h.gsoType).toBe(VnetGso.NONE);
  });

  it('refuses fewer than its 10 bytes, and leaves the view where it was', () => {
    const h = new VirtioNetHdr();
    const b = new Uint8Array(VNET_HEADER);
    b[VnetField.CSUM_START] = 7;
    expect(h.attach(b, 0, VNET_HEADER)).toBe(true);
    for (let n = 0; n < VNET_HEADER; n++) expect(h.attach(new Uint8Array(n), 0, n)).toBe(false);
    expect(h.csumStart).toBe(7);
  });
});

describe('a packet quoted in an ICMP error (Ipv4.attachQuote)', () => {
  it('takes a quote cut to the header and 8 bytes, which attach refuses; len is still the Total Length', () => {
    const ip = new Ipv4();
    for (const ref of [REF_UDP, REF_TCP_SYN, REF_OPTS]) {
      const hl = (ref[0]! & 0x0f) * 4;
      const q = ref.slice(0, hl + 8);
      expect(ip.attach(q, 0, q.length)).toBe(false);
      expect(ip.attachQuote(q, 0, q.length)).toBe(true);
      expect(ip.len).toBe(ref.length);
      expect(ip.headerLength).toBe(hl);
      expect(ip.src).toBe(read32(ref, 12));
      // Whole, it reads as attach reads it.
      expect(ip.attachQuote(ref, 0, ref.length)).toBe(true);
      expect(ip.len).toBe(ref.length);
    }
  });

  it('refuses a wrong version, an IHL below 5 or beyond the bytes there, and a Total Length shorter than the header', () => {
    const ip = new Ipv4();
    const q = REF_OPTS.slice(0, 28); // IHL 6: a 24-byte header and 4 bytes
    expect(ip.attachQuote(q, 0, 28)).toBe(true);
    expect(ip.attachQuote(q, 0, 23)).toBe(false);
    expect(ip.attachQuote(q, 0, 24)).toBe(true);
    const v = q.slice();
    v[0] = 0x66;
    expect(ip.attachQuote(v, 0, v.length)).toBe(false);
    const ihl = q.slice();
    ihl[0] = 0x44;
    expect(ip.attachQuote(ihl, 0, ihl.length)).toBe(false);
    const short = q.slice();
    write16(short, 2, 23);
    expect(ip.attachQuote(short, 0, short.length)).toBe(false);
    write16(short, 2, 24);
    expect(ip.attachQuote(short, 0, short.length)).toBe(true);
    expect(ip.attachQuote(q, 0, 19)).toBe(false);
  });
});

// ---- What the views of both families do alike (describe.each over IPv4 and IPv6) ----

const FAMILY_NAMES = ['IPv4', 'IPv6'] as const;
type FamilyName = (typeof FAMILY_NAMES)[number];

describe.each(FAMILY_NAMES)('%s reference packets', (name) => {
  it.each(REBUILT[name])('%s is built again byte for byte', (_what, ref, build) => {
    expect(toHex(build())).toBe(toHex(ref));
  });
});

/** Per family: a reference packet, its version, and an attach of the IP view to a buffer. */
const HEADERS: Record<FamilyName, { ref: Uint8Array; version: number; attach(b: Uint8Array): boolean }> = {
  IPv4: { ref: REF_UDP, version: 4, attach: (b) => new Ipv4().attach(b, 0, b.length) },
  IPv6: { ref: REF6_UDP, version: 6, attach: (b) => new Ipv6().attach(b, 0, b.length) },
};

/**
 * Per family: a random echo message (IPv4: the ICMP message alone; IPv6: the
 * packet, whose pseudo-header the checksum covers) with a given identifier,
 * where its ICMP header starts, and the checksum recomputation and check.
 */
const ECHOES: Record<
  FamilyName,
  {
    seed: number;
    view: IcmpHeader;
    sample(rng: Rng): { make(ident: number): Uint8Array; at: number };
    fill(icmp: IcmpHeader, buf: Uint8Array, base: number): void;
    verify(icmp: IcmpHeader, buf: Uint8Array, base: number): boolean;
  }
> = {
  IPv4: {
    seed: 5,
    view: new Icmp4(),
    sample(rng) {
      const data = rng.bytes(rng.int(40));
      const type = rng.bool() ? 0 : 8;
      const seq = rng.u16();
      return { make: (ident) => icmpMessage(type, 0, ident * 0x10000 + seq, data), at: 0 };
    },
    fill: (icmp) => (icmp as Icmp4).fillChecksum(),
    verify: (icmp) => (icmp as Icmp4).verifyChecksum(),
  },
  IPv6: {
    seed: 4443,
    view: new Icmp6(),
    sample(rng) {
      const src = rng.bytes(16);
      const dst = rng.bytes(16);
      const data = rng.bytes(rng.int(40));
      const type = rng.bool() ? 128 : 129;
      const seq = rng.u16();
      return { make: (ident) => echo6Packet(src, dst, type, ident, seq, data), at: IPV6_HEADER };
    },
    fill: (icmp, buf, base) => (icmp as Icmp6).fillChecksum6(buf, base),
    verify: (icmp, buf, base) => (icmp as Icmp6).verifyChecksum6(buf, base),
  },
};

/**
 * Per family: a UDP datagram's builders, the pseudo-header its checksum
 * covers, the views' fill and check, and whether a checksum of 0 verifies
 * (IPv4: it means "none"; IPv6: it is invalid).
 */
const UDP_ZERO: Record<
  FamilyName,
  {
    pseudo(len: number): Uint8Array;
    datagram(f: { sport: number; dport: number; data: Uint8Array; checksum?: boolean }): Uint8Array;
    packet(d: Uint8Array): Uint8Array;
    built(f: { sport: number; dport: number; data: Uint8Array }): Uint8Array;
    transportAt(p: Uint8Array): number;
    fill(udp: Udp, p: Uint8Array): void;
    verify(udp: Udp, p: Uint8Array): boolean;
    ok(p: Uint8Array): boolean;
    zeroVerifies: boolean;
  }
> = {
  IPv4: {
    pseudo: (len) => pseudoHeader(addr('10.0.2.100'), addr('8.8.8.8'), 17, len),
    datagram: (f) => udpDatagram(addr('10.0.2.100'), addr('8.8.8.8'), f),
    packet: (d) => ipv4({ src: addr('10.0.2.100'), dst: addr('8.8.8.8'), proto: 17 }, d),
    built: (f) => udpPacket(addr('10.0.2.100'), addr('8.8.8.8'), f),
    transportAt: () => IPV4_MIN_HEADER,
    fill: (udp) => udp.fillChecksum4(addr('10.0.2.100'), addr('8.8.8.8')),
    verify: (udp) => udp.verifyChecksum4(addr('10.0.2.100'), addr('8.8.8.8')),
    ok: l4Ok,
    zeroVerifies: true,
  },
  IPv6: {
    pseudo: (len) => pseudoHeader6(addr6('fd00::64'), addr6('2001:db8::35'), 17, len),
    datagram: (f) => udp6Datagram(addr6('fd00::64'), addr6('2001:db8::35'), f),
    packet: (d) => ipv6({ src: addr6('fd00::64'), dst: addr6('2001:db8::35'), proto: 17 }, d),
    built: (f) => udp6Packet(addr6('fd00::64'), addr6('2001:db8::35'), f),
    transportAt: () => IPV6_HEADER,
    fill: (udp, p) => udp.fillChecksum6(p, 0),
    verify: (udp, p) => udp.verifyChecksum6(p, 0),
    ok: l4Ok6,
    zeroVerifies: false,
  },
};

describe.each(FAMILY_NAMES)('%s views alike', (name) => {
  it('the IP view refuses a wrong version', () => {
    const h = HEADERS[name];
    for (let v = 0; v < 16; v++) {
      const b = h.ref.slice();
      b[0] = (v << 4) | (b[0]! & 0x0f);
      expect(h.attach(b), `version ${v}`).toBe(v === h.version);
    }
  });

  it('ICMP: messages shorter than 8 bytes are refused', () => {
    const icmp = ECHOES[name].view;
    for (let n = 0; n < 8; n++) expect(icmp.attach(new Uint8Array(8), 0, n)).toBe(false);
    expect(icmp.attach(new Uint8Array(8), 0, 8)).toBe(true);
  });

  it('ICMP setIdent and the full checksum recomputation equal a fresh build', () => {
    const e = ECHOES[name];
    const rng = new Rng(e.seed);
    const icmp = e.view;
    for (let i = 0; i < 500; i++) {
      const s = e.sample(rng);
      const id = rng.u16();
      const newId = rng.u16();
      const p = s.make(id);
      const buf = embed(p, 2);
      icmp.attach(buf, 2 + s.at, p.length - s.at);
      icmp.setIdent(newId);
      expect(icmp.ident).toBe(newId);
      const want = toHex(s.make(newId));
      expect(toHex(buf.subarray(2, 2 + p.length))).toBe(want);
      buf[2 + s.at + 2] = buf[2 + s.at + 3] = 0x77;
      e.fill(icmp, buf, 2);
      expect(e.verify(icmp, buf, 2)).toBe(true);
      expect(toHex(buf.subarray(2, 2 + p.length))).toBe(want);
    }
  });

  it('UDP: the full checksum recomputation sends a computed 0 as 0xffff, which verifies', () => {
    const u = UDP_ZERO[name];
    // Choose the payload word so that the checksum comes out 0: make the sum 0xffff.
    const d = u.datagram({ sport: 1, dport: 2, data: new Uint8Array(2), checksum: false });
    const s = 0xffff - checksum(u.pseudo(d.length), d); // folded sum so far
    const need = 0xffff - s; // adding this word brings the sum to 0xffff
    d[8] = need >>> 8;
    d[9] = need & 0xff;
    expect(checksum(u.pseudo(d.length), d)).toBe(0);
    const p = u.packet(d);
    const udp = new Udp();
    expect(udp.attach(p, u.transportAt(p), p.length - u.transportAt(p))).toBe(true);
    // The field is 0 and the sum adds up: "none" over IPv4, refused all the same over IPv6.
    expect(udp.checksum).toBe(0);
    expect(u.verify(udp, p)).toBe(u.zeroVerifies);
    u.fill(udp, p);
    expect(udp.checksum).toBe(0xffff);
    expect(u.verify(udp, p)).toBe(true);
    expect(u.ok(p)).toBe(true);
    expect(toHex(p)).toBe(toHex(u.built({ sport: 1, dport: 2, data: d.subarray(8) })));
  });
});
