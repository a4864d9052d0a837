// Unit tests for the IPv6 wire views: reference packets read back, extension headers, quotes, text forms, malformed input
// (what the views of both families do alike is in wire.test.ts).
import { describe, it, expect } from 'vitest';
import {
  Icmp6,
  ICMP6_DEST_UNREACHABLE,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  ICMP6_PACKET_TOO_BIG,
  ICMP6_PARAMETER_PROBLEM,
  ICMP6_TIME_EXCEEDED,
  Ipv6,
  IPV6_DEST_OPTIONS,
  IPV6_FRAGMENT,
  IPV6_HEADER,
  IPV6_HOP_BY_HOP,
  IPV6_MAX_EXTENSIONS,
  IPV6_NO_NEXT_HEADER,
  IPV6_ROUTING,
  PROTO_AH,
  PROTO_ESP,
  PROTO_ICMP6,
  PROTO_TCP,
  PROTO_UDP,
  Tcp,
  TCP_SYN,
  Udp,
  formatIpv6,
  parseIpv6,
  write16,
} from '../../src/wire/index.js';
import {
  type Ext6,
  DEST_OPTIONS,
  FRAGMENT,
  ROUTING,
  Rng,
  addr6,
  echo6Packet,
  embed,
  icmp6Message,
  ipv6,
  l4Ok6,
  parse6,
  tcp6Packet,
  toHex,
  u16,
  udp6Datagram,
  udp6Packet,
  words6,
} from './packets.js';
import { REF6_EXT_UDP, REF6_ICMP, REF6_TCP_SYN, REF6_UDP } from './refs.js';

function w6(text: string): Uint32Array {
  return words6(addr6(text));
}

describe('IPv6 text (RFC 5952 / RFC 4291)', () => {
  it('formatIpv6 follows the RFC 5952 recommendations', () => {
    const cases: [string, string][] = [
      ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
      ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'], // 4.2.2: a single zero group is not "::"
      ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1'], // 4.2.3: the longest run
      ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'], // 4.2.3: the first of equal runs
      ['2001:DB8::ABCD:EF', '2001:db8::abcd:ef'], // 4.3: lowercase
      ['0:0:0:0:0:0:0:0', '::'],
      ['0:0:0:0:0:0:0:1', '::1'],
      ['1:0:0:0:0:0:0:0', '1::'],
      ['0:1:2:3:4:5:6:0', '0:1:2:3:4:5:6:0'],
      ['1:2:3:4:5:6:7:8', '1:2:3:4:5:6:7:8'],
      ['fe80:0:0:0:0:0:0:1', 'fe80::1'],
      ['0:0:0:0:0:ffff:c000:0201', '::ffff:192.0.2.1'], // section 5: IPv4-mapped in mixed notation
      ['0:0:0:0:0:ffff:0:0', '::ffff:0.0.0.0'],
      ['0:0:0:0:0:0:c000:0201', '::c000:201'], // IPv4-compatible (deprecated) stays hex
      ['0:0:0:0:1:ffff:c000:0201', '::1:ffff:c000:201'],
      ['fd00:0:0:2:0:0:0:64', 'fd00:0:0:2::64'],
    ];
    const w = new Uint32Array(6);
    for (const [input, text] of cases) {
      w.set(words6(addr6(input)), 1);
      expect(formatIpv6(w, 1), input).toBe(text);
    }
  });

  it('parseIpv6 reads every text form into words, at an offset', () => {
    const cases: [string, string][] = [
      ['::', '00000000000000000000000000000000'],
      ['::1', '00000000000000000000000000000001'],
      ['1::', '00010000000000000000000000000000'],
      ['2001:db8::a', '20010db800000000000000000000000a'],
      ['2001:0DB8:0000:0000:0000:0000:0000:000A', '20010db800000000000000000000000a'],
      ['1:2:3:4:5:6:7::', '00010002000300040005000600070000'],
      ['::2:3:4:5:6:7:8', '00000002000300040005000600070008'],
      ['1:2:3:4:5:6:7:8', '00010002000300040005000600070008'],
      ['::ffff:192.0.2.1', '00000000000000000000ffffc0000201'],
      ['::1.2.3.4', '00000000000000000000000001020304'],
      ['1:2:3:4:5:6:255.255.255.255', '000100020003000400050006ffffffff'],
      ['1::5:6:1.2.3.4', '00010000000000000005000601020304'],
    ];
    const out = new Uint32Array(7);
    for (const [text, want] of cases) {
      out.fill(0x5a5a5a5a);
      expect(parseIpv6(text, out, 2), text).toBe(true);
      expect(Array.from(out.subarray(2, 6), (x) => x.toString(16).padStart(8, '0')).join(''), text).toBe(want);
      expect(out[0]).toBe(0x5a5a5a5a);
      expect(out[6]).toBe(0x5a5a5a5a);
    }
  });

  it('parseIpv6 refuses junk and leaves the output alone', () => {
    const bad = [
      '',
      ':',
      ':::',
      '1::2::3',
      '1:2:3:4:5:6:7',
      '1:2:3:4:5:6:7:8:9',
      '1:2:3:4:5:6:7::8',
      '::1:2:3:4:5:6:7:8',
      '12345::',
      'g::',
      '::g',
      '1:2:3:4:5:6:7:8%eth0',
      'fe80::1%1',
      '::1/128',
      '[::1]',
      ' ::1',
      '::1 ',
      '1.2.3.4',
      '::1.2.3',
      '::256.1.1.1',
      '::01.2.3.4',
      '1.2.3.4::',
      '::1.2.3.4:5',
      ':1::',
      '1::2:',
      ':1:2:3:4:5:6:7:8',
      '1:2:3:4:5:6:7:8:',
      '1:2:3:4:5:6:7:1.2.3.4',
      '-1::',
      '+1::',
      '0x1::',
      '1 ::',
      '::ffff:1.2.3.4.5',
    ];
    const out = new Uint32Array(4).fill(7);
    for (const text of bad) {
      expect(parseIpv6(text, out, 0), JSON.stringify(text)).toBe(false);
      expect(Array.from(out)).toEqual([7, 7, 7, 7]);
    }
  });

  it('round-trips seeded random addresses and agrees with the WHATWG URL serializer', () => {
    const rng = new Rng(5952);
    const w = new Uint32Array(4);
    const back = new Uint32Array(4);
    for (let i = 0; i < 3000; i++) {
      // Many zero groups, so that runs of every length and position turn up.
      for (let k = 0; k < 4; k++) {
        const hi = rng.int(3) === 0 ? rng.u16() : 0;
        const lo = rng.int(3) === 0 ? rng.u16() : 0;
        w[k] = hi * 0x10000 + lo;
      }
      if (i % 10 === 0) {
        w[0] = 0;
        w[1] = 0;
        w[2] = 0xffff;
      }
      const text = formatIpv6(w, 0);
      expect(parseIpv6(text, back, 0), text).toBe(true);
      expect(Array.from(back), text).toEqual(Array.from(w));
      expect(toHex(addr6(text)), text).toBe(toHex(bytesOf(w)));
      const mapped = w[0] === 0 && w[1] === 0 && w[2] === 0xffff;
      if (!mapped) expect(`[${text}]`).toBe(new URL(`http://[${text}]/`).hostname);
    }
  });
});

/** The 16 address bytes of four words, big-endian. */
function bytesOf(w: Uint32Array): Uint8Array {
  const b = new Uint8Array(16);
  for (let i = 0; i < 4; i++) {
    const v = w[i]!;
    b[i * 4] = v >>> 24;
    b[i * 4 + 1] = (v >>> 16) & 0xff;
    b[i * 4 + 2] = (v >>> 8) & 0xff;
    b[i * 4 + 3] = v & 0xff;
  }
  return b;
}

describe('reference IPv6+TCP SYN', () => {
  it('reads back field by field', () => {
    const buf = embed(REF6_TCP_SYN, 5);
    const ip = new Ipv6();
    expect(ip.attach(buf, 5, REF6_TCP_SYN.length)).toBe(true);
    expect(ip.off).toBe(5);
    expect(ip.len).toBe(64);
    expect(ip.trafficClass).toBe(0x28);
    expect(ip.flowLabel).toBe(0x12345);
    expect(ip.payloadLength).toBe(24);
    expect(ip.nextHeader).toBe(PROTO_TCP);
    expect(ip.hopLimit).toBe(64);
    expect(ip.transportProtocol).toBe(PROTO_TCP);
    expect(ip.transportOffset).toBe(45);
    expect(ip.transportLength).toBe(24);
    expect(ip.extensionCount).toBe(0);
    expect(ip.hasFragmentHeader).toBe(false);
    expect(ip.isFragment).toBe(false);
    expect(ip.fragmentOffset).toBe(0);
    expect(ip.moreFragments).toBe(false);
    expect(ip.fragmentIdent).toBe(0);
    expect([0, 1, 2, 3].map((i) => ip.srcWord(i))).toEqual([0x20010db8, 0, 0, 0x0a]);
    expect([0, 1, 2, 3].map((i) => ip.dstWord(i))).toEqual([0x26064700, 0x47000000, 0, 0x1111]);

    const out = new Uint32Array(10).fill(9);
    ip.readSrc(out, 1);
    ip.readDst(out, 5);
    expect(Array.from(out)).toEqual([9, 0x20010db8, 0, 0, 0x0a, 0x26064700, 0x47000000, 0, 0x1111, 9]);
    expect(formatIpv6(out, 1)).toBe('2001:db8::a');
    expect(formatIpv6(out, 5)).toBe('2606:4700:4700::1111');
    expect(ip.srcEquals(out, 1)).toBe(true);
    expect(ip.dstEquals(out, 5)).toBe(true);
    expect(ip.srcEquals(out, 5)).toBe(false);
    expect(ip.dstEquals(out, 1)).toBe(false);
    for (let k = 0; k < 4; k++) {
      const other = out.slice(1, 5);
      other[k] = other[k]! ^ 0x80000000;
      expect(ip.srcEquals(other, 0)).toBe(false);
    }

    const tcp = new Tcp();
    expect(tcp.attach(buf, ip.transportOffset, ip.transportLength)).toBe(true);
    expect(tcp.srcPort).toBe(49152);
    expect(tcp.dstPort).toBe(443);
    expect(tcp.seq).toBe(0x12345678);
    expect(tcp.ack).toBe(0);
    expect(tcp.headerLength).toBe(24);
    expect(tcp.flags).toBe(TCP_SYN);
    expect(tcp.window).toBe(64800);
    expect(tcp.checksum).toBe(0x7dd7);
    expect(tcp.verifyChecksum6(buf, ip.off)).toBe(true);
    buf[5 + 39] = buf[5 + 39]! ^ 1; // last byte of the destination
    expect(tcp.verifyChecksum6(buf, ip.off)).toBe(false);
  });

  it('fillChecksum6 recomputes the reference checksum; the IPv6 header may sit in another buffer', () => {
    const b = embed(REF6_TCP_SYN, 3);
    b[3 + 56] = 0xde;
    b[3 + 57] = 0xad;
    const ip = new Ipv6();
    const tcp = new Tcp();
    expect(ip.attach(b, 3, REF6_TCP_SYN.length)).toBe(true);
    expect(tcp.attach(b, ip.transportOffset, ip.transportLength)).toBe(true);
    expect(tcp.verifyChecksum6(b, 3)).toBe(false);
    tcp.fillChecksum6(b, 3);
    expect(toHex(b.subarray(3, 3 + REF6_TCP_SYN.length))).toBe(toHex(REF6_TCP_SYN));
    // The segment alone, with the header elsewhere (e.g. a quoted packet or a scratch header).
    const seg = REF6_TCP_SYN.slice(40);
    const hdr = embed(REF6_TCP_SYN.subarray(0, 40), 11);
    expect(tcp.attach(seg, 0, seg.length)).toBe(true);
    expect(tcp.verifyChecksum6(hdr, 11)).toBe(true);
    expect(tcp.verifyChecksum6(hdr, 10)).toBe(false);
  });
});

describe('reference IPv6+UDP', () => {
  it('reads back field by field', () => {
    const buf = embed(REF6_UDP, 2);
    const ip = new Ipv6();
    expect(ip.attach(buf, 2, REF6_UDP.length)).toBe(true);
    expect(ip.len).toBe(60);
    expect(ip.trafficClass).toBe(0);
    expect(ip.flowLabel).toBe(0);
    expect(ip.payloadLength).toBe(20);
    expect(ip.nextHeader).toBe(PROTO_UDP);
    expect(ip.hopLimit).toBe(128);
    expect(ip.transportProtocol).toBe(PROTO_UDP);
    expect(ip.transportOffset).toBe(42);
    expect(ip.transportLength).toBe(20);
    const out = new Uint32Array(8);
    ip.readSrc(out, 0);
    ip.readDst(out, 4);
    expect(formatIpv6(out, 0)).toBe('fd00:0:0:2::64');
    expect(formatIpv6(out, 4)).toBe('2001:4860:4860::8888');
    expect(ip.srcEquals(w6('fd00:0:0:2::64'), 0)).toBe(true);
    expect(ip.dstEquals(w6('2001:4860:4860::8888'), 0)).toBe(true);

    const udp = new Udp();
    expect(udp.attach(buf, ip.transportOffset, ip.transportLength)).toBe(true);
    expect(udp.srcPort).toBe(5353);
    expect(udp.dstPort).toBe(53);
    expect(udp.length).toBe(20);
    expect(udp.checksum).toBe(0x27b9);
    expect(udp.verifyChecksum6(buf, 2)).toBe(true);
    expect(new TextDecoder().decode(buf.subarray(ip.transportOffset + 8, ip.transportOffset + udp.len))).toBe('hello vipnat');
    buf[2 + 8] = buf[2 + 8]! ^ 0x40; // first byte of the source
    expect(udp.verifyChecksum6(buf, 2)).toBe(false);
  });

  it('fillChecksum6 recomputes the reference checksum; a 0 checksum never verifies over IPv6', () => {
    const b = REF6_UDP.slice();
    const ip = new Ipv6();
    const udp = new Udp();
    ip.attach(b, 0, b.length);
    udp.attach(b, ip.transportOffset, ip.transportLength);
    write16(b, ip.transportOffset + 6, 0);
    expect(udp.checksum).toBe(0);
    expect(udp.verifyChecksum6(b, 0)).toBe(false);
    expect(udp.verifyChecksum4(0, 0)).toBe(true); // the IPv4 rule, for contrast
    udp.fillChecksum6(b, 0);
    expect(toHex(b)).toBe(toHex(REF6_UDP));
  });
});

describe('reference ICMPv6 echo', () => {
  it('reads back field by field', () => {
    const buf = embed(REF6_ICMP, 1);
    const ip = new Ipv6();
    expect(ip.attach(buf, 1, REF6_ICMP.length)).toBe(true);
    expect(ip.len).toBe(56);
    expect(ip.flowLabel).toBe(0xabcde);
    expect(ip.trafficClass).toBe(0);
    expect(ip.nextHeader).toBe(PROTO_ICMP6);
    expect(ip.transportProtocol).toBe(PROTO_ICMP6);
    expect(ip.transportOffset).toBe(41);
    expect(ip.transportLength).toBe(16);
    const icmp = new Icmp6();
    expect(icmp.attach(buf, ip.transportOffset, ip.transportLength)).toBe(true);
    expect(icmp.type).toBe(ICMP6_ECHO_REQUEST);
    expect(icmp.code).toBe(0);
    expect(icmp.checksum).toBe(0x196c);
    expect(icmp.ident).toBe(0x1234);
    expect(icmp.seq).toBe(1);
    expect(icmp.isEcho).toBe(true);
    expect(icmp.isError).toBe(false);
    expect(icmp.isNeighborDiscovery).toBe(false);
    expect(icmp.verifyChecksum6(buf, 1)).toBe(true);
    // Unlike ICMPv4, the checksum covers the addresses.
    buf[1 + 23] = buf[1 + 23]! ^ 1;
    expect(icmp.verifyChecksum6(buf, 1)).toBe(false);
  });

  it('fillChecksum6 recomputes the reference checksum', () => {
    const b = REF6_ICMP.slice();
    b[42] = b[43] = 0x77;
    const icmp = new Icmp6();
    icmp.attach(b, 40, 16);
    expect(icmp.verifyChecksum6(b, 0)).toBe(false);
    icmp.fillChecksum6(b, 0);
    expect(toHex(b)).toBe(toHex(REF6_ICMP));
  });

  it('classifies types', () => {
    const src = addr6('fe80::1');
    const dst = addr6('ff02::1');
    const icmp = new Icmp6();
    // [type, echo, error, neighbor discovery]
    const cases: [number, boolean, boolean, boolean][] = [
      [ICMP6_ECHO_REQUEST, true, false, false],
      [ICMP6_ECHO_REPLY, true, false, false],
      [ICMP6_DEST_UNREACHABLE, false, true, false],
      [ICMP6_PACKET_TOO_BIG, false, true, false],
      [ICMP6_TIME_EXCEEDED, false, true, false],
      [ICMP6_PARAMETER_PROBLEM, false, true, false],
      [0, false, false, false], // reserved
      [5, false, false, false], // unassigned error
      [127, false, false, false], // reserved for expansion of errors
      [130, false, false, false], // MLD query
      [133, false, false, true], // router solicitation
      [134, false, false, true],
      [135, false, false, true], // neighbor solicitation
      [136, false, false, true],
      [137, false, false, true], // redirect
      [138, false, false, false], // router renumbering
      [143, false, false, false], // MLDv2 report
      [255, false, false, false],
    ];
    for (const [type, echo, error, nd] of cases) {
      const m = icmp6Message(src, dst, type, 0, 0, new Uint8Array(4));
      const p = ipv6({ src, dst, proto: 58, hopLimit: 255 }, m);
      expect(icmp.attach(p, 40, m.length)).toBe(true);
      expect(icmp.type).toBe(type);
      expect(icmp.isEcho, `type ${type}`).toBe(echo);
      expect(icmp.isError, `type ${type}`).toBe(error);
      expect(icmp.isNeighborDiscovery, `type ${type}`).toBe(nd);
      expect(icmp.verifyChecksum6(p, 0)).toBe(true);
    }
  });
});

describe('IPv6 extension headers', () => {
  it('reads the reference chain: Hop-by-Hop, Routing, atomic Fragment, Destination Options, UDP', () => {
    const buf = embed(REF6_EXT_UDP, 4);
    const ip = new Ipv6();
    expect(ip.attach(buf, 4, REF6_EXT_UDP.length)).toBe(true);
    expect(ip.len).toBe(99);
    expect(ip.payloadLength).toBe(59);
    expect(ip.nextHeader).toBe(IPV6_HOP_BY_HOP);
    expect(ip.hopLimit).toBe(1);
    expect(ip.extensionCount).toBe(4);
    expect(ip.transportProtocol).toBe(PROTO_UDP);
    expect(ip.transportOffset).toBe(4 + 40 + 48);
    expect(ip.transportLength).toBe(11);
    expect(ip.hasFragmentHeader).toBe(true);
    expect(ip.isFragment).toBe(false); // atomic: offset 0, M clear (RFC 6946)
    expect(ip.fragmentOffset).toBe(0);
    expect(ip.moreFragments).toBe(false);
    expect(ip.fragmentIdent).toBe(0xdeadbeef);
    const udp = new Udp();
    expect(udp.attach(buf, ip.transportOffset, ip.transportLength)).toBe(true);
    expect(udp.srcPort).toBe(1234);
    expect(udp.dstPort).toBe(4321);
    expect(udp.checksum).toBe(0xca4d);
    expect(udp.verifyChecksum6(buf, 4)).toBe(true);
  });

  it('walks each kind alone, at every length its Hdr Ext Len allows', () => {
    const rng = new Rng(8200);
    const ip = new Ipv6();
    const udp = new Udp();
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    const kinds: [string, (n: number) => Ext6, number][] = [
      ['hop-by-hop', (n) => ({ kind: 'hbh', options: Array.from(rng.bytes(n)) }), IPV6_HOP_BY_HOP],
      ['destination options', (n) => ({ kind: 'dst', options: Array.from(rng.bytes(n)) }), IPV6_DEST_OPTIONS],
      ['routing', (n) => ({ kind: 'routing', routingType: rng.u8(), segmentsLeft: 0, data: Array.from(rng.bytes(n)) }), IPV6_ROUTING],
    ];
    for (const [name, make, type] of kinds) {
      for (const n of [0, 1, 4, 5, 6, 7, 13, 22, 100, 2032]) {
        const data = rng.bytes(rng.int(30));
        const p = udp6Packet(src, dst, { sport: 7, dport: 9, data }, { ext: [make(n)] });
        const extLen = (p[41]! + 1) * 8;
        expect(ip.attach(p, 0, p.length), `${name} ${n}`).toBe(true);
        expect(ip.nextHeader).toBe(type);
        expect(ip.extensionCount).toBe(1);
        expect(ip.transportProtocol).toBe(PROTO_UDP);
        expect(ip.transportOffset).toBe(40 + extLen);
        expect(ip.transportLength).toBe(8 + data.length);
        expect(ip.hasFragmentHeader).toBe(false);
        expect(udp.attach(p, ip.transportOffset, ip.transportLength)).toBe(true);
        expect(udp.verifyChecksum6(p, 0)).toBe(true);
      }
    }
    // The largest: Hdr Ext Len 255, 2048 bytes (of Pad1 options).
    const big = udp6Packet(src, dst, { sport: 7, dport: 9 }, { ext: [{ kind: 'dst', options: new Array<number>(2046).fill(0) }] });
    expect(big[41]).toBe(255);
    expect(ip.attach(big, 0, big.length)).toBe(true);
    expect(ip.transportOffset).toBe(40 + 2048);
  });

  it('walks a Fragment header alone: atomic, first, middle and last fragments', () => {
    const ip = new Ipv6();
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    const whole = udp6Datagram(src, dst, { sport: 4000, dport: 5000, data: new Uint8Array(100).fill(0x42) });
    // First fragment: the UDP header is there; the walk goes on past the Fragment header.
    const first = ipv6({ src, dst, proto: 17, ext: [{ kind: 'frag', offset: 0, more: true, ident: 0x01020304 }] }, whole.subarray(0, 56));
    expect(ip.attach(first, 0, first.length)).toBe(true);
    expect(ip.extensionCount).toBe(1);
    expect(ip.hasFragmentHeader).toBe(true);
    expect(ip.isFragment).toBe(true);
    expect(ip.fragmentOffset).toBe(0);
    expect(ip.moreFragments).toBe(true);
    expect(ip.fragmentIdent).toBe(0x01020304);
    expect(ip.transportProtocol).toBe(PROTO_UDP);
    expect(ip.transportOffset).toBe(48);
    expect(ip.transportLength).toBe(56);
    const udp = new Udp();
    expect(udp.attach(first, ip.transportOffset, ip.transportLength)).toBe(false); // Length 108 > 56
    expect(udp.attachHeader(first, ip.transportOffset, ip.transportLength)).toBe(true);
    expect(udp.srcPort).toBe(4000);

    // Middle and last fragments: the bytes after the Fragment header are data, whatever Next Header says.
    for (const [offset, more] of [
      [56, true],
      [0xfff8, false],
      [8, false],
    ] as const) {
      const later = ipv6(
        { src, dst, proto: DEST_OPTIONS, ext: [{ kind: 'frag', offset, more, ident: 0xffffffff }] },
        whole.subarray(56, 56 + 8),
      );
      expect(ip.attach(later, 0, later.length), `offset ${offset}`).toBe(true);
      expect(ip.isFragment).toBe(true);
      expect(ip.fragmentOffset).toBe(offset);
      expect(ip.moreFragments).toBe(more);
      expect(ip.fragmentIdent).toBe(0xffffffff);
      expect(ip.extensionCount).toBe(1);
      expect(ip.transportProtocol).toBe(IPV6_DEST_OPTIONS); // not walked: it is fragment data
      expect(ip.transportOffset).toBe(48);
      expect(ip.transportLength).toBe(8);
    }

    // The reserved bits around the offset are ignored.
    const odd = ipv6(
      { src, dst, proto: 17, ext: [{ kind: 'raw', type: FRAGMENT, bytes: [0xff, 0x00, 0x0e, 0, 0, 0, 1] }] },
      new Uint8Array(8),
    );
    expect(ip.attach(odd, 0, odd.length)).toBe(true);
    expect(ip.fragmentOffset).toBe(8);
    expect(ip.moreFragments).toBe(false);
    expect(ip.fragmentIdent).toBe(1);
  });

  it('walks seeded random chains of up to 8 headers to the same place as a plain walk', () => {
    const rng = new Rng(60);
    const ip = new Ipv6();
    const tcp = new Tcp();
    const udp = new Udp();
    const icmp = new Icmp6();
    for (let i = 0; i < 1000; i++) {
      const ext: Ext6[] = [];
      const n = rng.int(IPV6_MAX_EXTENSIONS + 1);
      let frag = false;
      for (let k = 0; k < n; k++) {
        const r = rng.int(k === 0 ? 4 : 3);
        if (r === 3) ext.push({ kind: 'hbh', options: Array.from(rng.bytes(rng.int(20))) });
        else if (r === 0) ext.push({ kind: 'dst', options: Array.from(rng.bytes(rng.int(20))) });
        else if (r === 1)
          ext.push({ kind: 'routing', routingType: rng.u8(), segmentsLeft: 0, data: Array.from(rng.bytes(4 + 16 * rng.int(3))) });
        else if (!frag) {
          frag = true;
          ext.push({ kind: 'frag', offset: 0, more: false, ident: rng.u32() });
        } else ext.push({ kind: 'dst' });
      }
      const src = rng.bytes(16);
      const dst = rng.bytes(16);
      const proto = rng.pick([6, 17, 58]);
      const data = rng.bytes(rng.int(40));
      const p =
        proto === 6
          ? tcp6Packet(src, dst, { sport: rng.u16(), dport: rng.u16(), flags: rng.u8(), data }, { ext })
          : proto === 17
            ? udp6Packet(src, dst, { sport: rng.u16(), dport: rng.u16(), data }, { ext })
            : echo6Packet(src, dst, 128, rng.u16(), rng.u16(), data, { ext });
      const off = rng.int(9);
      const buf = embed(p, off);
      expect(ip.attach(buf, off, p.length), `chain ${ext.map((e) => e.kind).join(',')}`).toBe(true);
      const plain = parse6(p);
      expect(ip.extensionCount).toBe(n);
      expect(ip.hasFragmentHeader).toBe(frag);
      expect(ip.isFragment).toBe(false);
      expect(ip.transportProtocol).toBe(proto);
      expect(ip.transportOffset).toBe(off + plain.l4);
      expect(ip.transportOffset + ip.transportLength).toBe(off + p.length);
      const ok =
        proto === 6
          ? tcp.attach(buf, ip.transportOffset, ip.transportLength) && tcp.verifyChecksum6(buf, off)
          : proto === 17
            ? udp.attach(buf, ip.transportOffset, ip.transportLength) && udp.verifyChecksum6(buf, off)
            : icmp.attach(buf, ip.transportOffset, ip.transportLength) && icmp.verifyChecksum6(buf, off);
      expect(ok).toBe(true);
    }
  });

  it('stops at ESP, AH, No Next Header and unknown headers without walking them', () => {
    const ip = new Ipv6();
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    for (const proto of [PROTO_ESP, PROTO_AH, IPV6_NO_NEXT_HEADER, 135, 139, 253, 0xff]) {
      const body = new Uint8Array(24).fill(IPV6_DEST_OPTIONS); // would read as a chain if walked
      const bare = ipv6({ src, dst, proto }, body);
      expect(ip.attach(bare, 0, bare.length)).toBe(true);
      expect(ip.transportProtocol).toBe(proto);
      expect(ip.transportOffset).toBe(40);
      expect(ip.transportLength).toBe(24);
      expect(ip.extensionCount).toBe(0);
      const behind = ipv6({ src, dst, proto, ext: [{ kind: 'hbh' }, { kind: 'dst', options: [1, 6, 0, 0, 0, 0, 0, 0] }] }, body);
      expect(ip.attach(behind, 0, behind.length)).toBe(true);
      expect(ip.transportProtocol).toBe(proto);
      expect(ip.transportOffset).toBe(40 + 8 + 16);
      expect(ip.extensionCount).toBe(2);
    }
    // No Next Header with nothing after it.
    const empty = ipv6({ src, dst, proto: IPV6_NO_NEXT_HEADER, ext: [{ kind: 'dst' }] }, new Uint8Array(0));
    expect(ip.attach(empty, 0, empty.length)).toBe(true);
    expect(ip.transportLength).toBe(0);
  });

  it('accepts 8 extension headers and refuses 9 or more (a hostile chain cannot loop long)', () => {
    const ip = new Ipv6();
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    for (let n = 0; n <= 40; n++) {
      const ext: Ext6[] = [];
      for (let k = 0; k < n; k++) ext.push(k === 0 ? { kind: 'hbh' } : { kind: 'dst' });
      const p = udp6Packet(src, dst, { sport: 1, dport: 2 }, { ext });
      expect(ip.attach(p, 0, p.length), `${n} headers`).toBe(n <= IPV6_MAX_EXTENSIONS);
      if (n <= IPV6_MAX_EXTENSIONS) expect(ip.transportOffset).toBe(40 + 8 * n);
    }
    // A chain of 8000 empty Destination Options headers: refused after 8, quickly.
    const long = new Uint8Array(40 + 8 * 8000);
    long.set(REF6_UDP.subarray(0, 40));
    long[6] = IPV6_DEST_OPTIONS;
    write16(long, 4, 0xffff);
    for (let o = 40; o < long.length; o += 8) long[o] = IPV6_DEST_OPTIONS;
    expect(ip.attach(long, 0, long.length)).toBe(false);
  });

  it('refuses Hop-by-Hop anywhere but first, and a second Fragment header', () => {
    const ip = new Ipv6();
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    const cases: [Ext6[], boolean][] = [
      [[{ kind: 'hbh' }], true],
      [[{ kind: 'dst' }, { kind: 'hbh' }], false],
      [[{ kind: 'hbh' }, { kind: 'hbh' }], false],
      [[{ kind: 'routing' }, { kind: 'hbh' }], false],
      [[{ kind: 'frag' }, { kind: 'dst' }], true],
      [[{ kind: 'frag' }, { kind: 'frag' }], false],
      [[{ kind: 'frag', ident: 1 }, { kind: 'dst' }, { kind: 'frag', ident: 2 }], false],
      [[{ kind: 'dst' }, { kind: 'routing' }, { kind: 'frag' }, { kind: 'dst' }], true],
    ];
    for (const [ext, ok] of cases) {
      const p = udp6Packet(src, dst, { sport: 1, dport: 2, data: new Uint8Array(3) }, { ext });
      expect(ip.attach(p, 0, p.length), ext.map((e) => e.kind).join(',')).toBe(ok);
    }
  });

  it('refuses a chain that runs past the packet, at every Payload Length', () => {
    const ip = new Ipv6();
    const b = REF6_EXT_UDP.slice();
    // Headers end 48 bytes into the payload; anything shorter cuts one of them.
    for (let pl = 0; pl <= 59; pl++) {
      write16(b, 4, pl);
      const ok = ip.attach(b, 0, b.length);
      expect(ok, `payload length ${pl}`).toBe(pl >= 48);
      if (ok) {
        expect(ip.len).toBe(40 + pl);
        expect(ip.transportOffset).toBe(88);
        expect(ip.transportLength).toBe(pl - 48);
      }
    }
    // A Hdr Ext Len that claims more than is there.
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    for (const claimed of [1, 2, 100, 255]) {
      const p = udp6Packet(src, dst, { sport: 1, dport: 2 }, { ext: [{ kind: 'hbh' }, { kind: 'dst' }] });
      p[48 + 1] = claimed; // the Destination Options header: (claimed + 1) * 8 bytes, past the 16 left
      expect(ip.attach(p, 0, p.length), `hdr ext len ${claimed}`).toBe(claimed === 1); // 16 bytes: ends exactly at the end
    }
    // Payload Length 0 with a Hop-by-Hop header (a Jumbo Payload) is not supported.
    const jumbo = ipv6(
      { src, dst, proto: 17, ext: [{ kind: 'hbh', options: [0xc2, 4, 0, 0, 0x10, 0] }], payloadLength: 0 },
      new Uint8Array(0x1000),
    );
    expect(ip.attach(jumbo, 0, jumbo.length)).toBe(false);
    const zero = ipv6({ src, dst, proto: IPV6_NO_NEXT_HEADER }, new Uint8Array(0));
    expect(ip.attach(zero, 0, zero.length)).toBe(true);
    expect(ip.len).toBe(IPV6_HEADER);
    expect(ip.transportOffset).toBe(40);
    expect(ip.transportLength).toBe(0);
  });
});

describe('a packet quoted in an ICMPv6 error (Ipv6.attachQuote)', () => {
  it('walks a quote cut short of its Payload Length, which attach refuses; len is the bytes there', () => {
    const ip = new Ipv6();
    for (const [ref, l4] of [
      [REF6_UDP, 40],
      [REF6_TCP_SYN, 40],
      [REF6_EXT_UDP, 88],
    ] as const) {
      const q = ref.slice(0, l4 + 8);
      expect(ip.attach(q, 0, q.length)).toBe(false);
      expect(ip.attachQuote(q, 0, q.length)).toBe(true);
      expect(ip.len).toBe(q.length);
      expect(ip.transportOffset).toBe(l4);
      expect(ip.transportLength).toBe(8);
      expect(ip.attachQuote(ref, 0, ref.length)).toBe(true);
      expect(ip.transportOffset).toBe(l4);
    }
    expect(ip.fragmentIdent).toBe(0xdeadbeef);
    expect(ip.attachQuote(REF6_UDP, 0, IPV6_HEADER - 1)).toBe(false);
    expect(ip.attachQuote(REF6_UDP, 0, IPV6_HEADER)).toBe(true);
    expect(ip.transportLength).toBe(0);
  });

  it('walks the chain as it stands: Hop-by-Hop past the first place and a second Fragment header are walked, not refused', () => {
    const ip = new Ipv6();
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    for (const ext of [
      [{ kind: 'dst' }, { kind: 'hbh' }],
      [{ kind: 'frag' }, { kind: 'frag', ident: 2 }],
    ] as Ext6[][]) {
      const p = udp6Packet(src, dst, { sport: 1, dport: 2 }, { ext });
      expect(ip.attach(p, 0, p.length)).toBe(false);
      expect(ip.attachQuote(p, 0, p.length)).toBe(true);
      expect(ip.transportProtocol).toBe(PROTO_UDP);
      expect(ip.transportOffset).toBe(56);
    }
    expect(ip.fragmentIdent).toBe(2);
  });

  it('still refuses a wrong version, a header running past the quote and too long a chain; a later fragment stops the walk', () => {
    const ip = new Ipv6();
    const v = REF6_UDP.slice();
    v[0] = 0x45;
    expect(ip.attachQuote(v, 0, v.length)).toBe(false);
    expect(ip.attachQuote(REF6_EXT_UDP, 0, 60)).toBe(false); // inside the Routing header
    expect(ip.attachQuote(REF6_EXT_UDP, 0, 87)).toBe(false); // inside the Destination Options header
    expect(ip.attachQuote(REF6_EXT_UDP, 0, 88)).toBe(true); // every extension header there, the transport header not
    expect(ip.transportOffset).toBe(88);
    expect(ip.transportLength).toBe(0);
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    const nine = udp6Packet(src, dst, { sport: 1, dport: 2 }, { ext: Array.from({ length: 9 }, (): Ext6 => ({ kind: 'dst' })) });
    expect(ip.attachQuote(nine, 0, nine.length)).toBe(false);
    const later = ipv6({ src, dst, proto: PROTO_UDP, ext: [{ kind: 'frag', offset: 64, ident: 5 }] }, new Uint8Array(16));
    expect(ip.attachQuote(later, 0, later.length)).toBe(true);
    expect(ip.fragmentOffset).toBe(64);
  });
});

describe('malformed and truncated IPv6 input', () => {
  const refs: [string, Uint8Array][] = [
    ['tcp', REF6_TCP_SYN],
    ['udp', REF6_UDP],
    ['icmp', REF6_ICMP],
    ['ext', REF6_EXT_UDP],
  ];

  it('every truncation of every reference packet is refused by attach, and the views on it never throw', () => {
    const ip = new Ipv6();
    const tcp = new Tcp();
    const udp = new Udp();
    const icmp = new Icmp6();
    for (const [name, ref] of refs) {
      expect(ip.attach(ref, 0, ref.length)).toBe(true);
      const l4 = ip.transportOffset;
      const proto = ip.transportProtocol;
      for (let n = 0; n < ref.length; n++) {
        // The buffer really ends at n: reads past it would be undefined.
        const cut = ref.slice(0, n);
        expect(ip.attach(cut, 0, n), `${name} cut at ${n}`).toBe(false);
        expect(ip.attach(ref, 0, n), `${name} avail ${n}`).toBe(false);
        expect(() => {
          // The same cut with a Payload Length that agrees with it: the header chain decides.
          if (n >= IPV6_HEADER) {
            const fixed = cut.slice();
            write16(fixed, 4, n - IPV6_HEADER);
            if (ip.attach(fixed, 0, n)) {
              expect(ip.transportOffset).toBe(l4);
              expect(ip.transportOffset + ip.transportLength).toBe(n);
            } else {
              expect(n).toBeLessThan(l4);
            }
          }
          // The transport views on a cut payload, with the IPv6 header taken as given.
          if (n >= l4) {
            const plen = n - l4;
            if (proto === PROTO_TCP) {
              expect(tcp.attach(cut, l4, plen)).toBe(false); // data offset 6 words = 24 > any cut
            } else if (proto === PROTO_UDP) {
              expect(udp.attach(cut, l4, plen)).toBe(false);
              expect(udp.attachHeader(cut, l4, plen)).toBe(plen >= 8);
            } else {
              expect(icmp.attach(cut, l4, plen)).toBe(plen >= 8);
              if (plen >= 8) expect(icmp.verifyChecksum6(cut, 0)).toBe(false);
            }
          }
        }, `${name} cut at ${n}`).not.toThrow();
      }
    }
  });

  it('refuses a Payload Length beyond the bytes there; accepts trailing bytes', () => {
    const ip = new Ipv6();
    const b = embed(REF6_UDP, 0, 10); // 60 bytes of packet, 10 of junk after
    for (const pl of [0, 1, 7, 8, 20, 21, 29, 30, 31, 0xffff]) {
      write16(b, 4, pl);
      const ok = ip.attach(b, 0, 70);
      expect(ok, `payload length ${pl}`).toBe(pl <= 30);
      if (ok) {
        expect(ip.len).toBe(40 + pl);
        expect(ip.transportLength).toBe(pl);
      }
    }
  });

  it('a refused attach leaves the view on the packet it had', () => {
    const ip = new Ipv6();
    expect(ip.attach(REF6_EXT_UDP, 0, REF6_EXT_UDP.length)).toBe(true);
    const bad = REF6_TCP_SYN.slice();
    bad[6] = IPV6_DEST_OPTIONS;
    bad[41] = 200;
    expect(ip.attach(bad, 0, bad.length)).toBe(false);
    expect(ip.buf).toBe(REF6_EXT_UDP);
    expect(ip.len).toBe(99);
    expect(ip.transportOffset).toBe(88);
    expect(ip.fragmentIdent).toBe(0xdeadbeef);
    expect(ip.extensionCount).toBe(4);
  });

  it('seeded random bytes never make a view throw', () => {
    const rng = new Rng(666);
    const ip = new Ipv6();
    const tcp = new Tcp();
    const udp = new Udp();
    const icmp = new Icmp6();
    const chainy = [IPV6_HOP_BY_HOP, IPV6_ROUTING, IPV6_FRAGMENT, IPV6_DEST_OPTIONS, 6, 17, 58, 59];
    let attached = 0;
    let walked = 0;
    for (let i = 0; i < 5000; i++) {
      const b = rng.bytes(rng.int(160));
      const off = rng.int(Math.min(4, b.length + 1));
      // Mostly version 6 with a Payload Length near what is there, so that the walk gets exercised.
      if (rng.int(4) !== 0 && b.length > off) b[off] = 0x60 | (b[off]! & 0x0f);
      if (rng.int(4) !== 0 && b.length > off + 5) write16(b, off + 4, rng.int(Math.max(1, b.length - off - 36)));
      // Make chains likely: Next Header bytes, small Hdr Ext Lens.
      if (rng.bool() && b.length > off + 6) b[off + 6] = rng.pick(chainy);
      for (let o = off + 40; o + 1 < b.length; o += 8) {
        if (rng.bool()) b[o] = rng.pick(chainy);
        if (rng.bool()) b[o + 1] = rng.int(3);
      }
      expect(() => {
        if (ip.attach(b, off, b.length - off)) {
          attached++;
          if (ip.extensionCount > 0) walked++;
          expect(ip.len).toBeGreaterThanOrEqual(IPV6_HEADER);
          expect(ip.off + ip.len).toBeLessThanOrEqual(b.length);
          expect(ip.transportOffset).toBeGreaterThanOrEqual(off + IPV6_HEADER);
          expect(ip.transportLength).toBeGreaterThanOrEqual(0);
          expect(ip.extensionCount).toBeLessThanOrEqual(IPV6_MAX_EXTENSIONS);
          const w = new Uint32Array(4);
          ip.readSrc(w, 0);
          expect(ip.srcEquals(w, 0)).toBe(true);
          formatIpv6(w, 0);
          if (tcp.attach(b, ip.transportOffset, ip.transportLength)) {
            expect(tcp.headerLength).toBeLessThanOrEqual(tcp.len);
            tcp.verifyChecksum6(b, off);
          }
          if (udp.attach(b, ip.transportOffset, ip.transportLength)) {
            expect(udp.off + udp.len).toBeLessThanOrEqual(ip.off + ip.len);
            udp.verifyChecksum6(b, off);
          }
          if (icmp.attach(b, ip.transportOffset, ip.transportLength)) icmp.verifyChecksum6(b, off);
        }
      }).not.toThrow();
    }
    expect(attached).toBeGreaterThan(500);
    expect(walked).toBeGreaterThan(100);
  });

  it('seeded random mutations of valid chained packets never make a view throw', () => {
    const rng = new Rng(667);
    const ip = new Ipv6();
    const udp = new Udp();
    const src = addr6('2001:db8::1');
    const dst = addr6('2001:db8::2');
    for (let i = 0; i < 3000; i++) {
      const ext: Ext6[] = [
        { kind: 'hbh' },
        { kind: 'routing', data: Array.from(rng.bytes(20)) },
        { kind: 'frag', more: rng.bool() },
        { kind: 'dst' },
      ];
      const p = udp6Packet(src, dst, { sport: 1, dport: 2, data: rng.bytes(rng.int(30)) }, { ext: ext.slice(rng.int(4)) });
      for (let k = 1 + rng.int(4); k > 0; k--) p[rng.int(p.length)] = rng.u8();
      const n = rng.int(p.length + 1);
      expect(() => {
        if (ip.attach(p, 0, n) && udp.attach(p, ip.transportOffset, ip.transportLength)) udp.verifyChecksum6(p, 0);
      }).not.toThrow();
      if (ip.attach(p, 0, n)) expect(ip.off + ip.len).toBeLessThanOrEqual(n);
    }
  });
});

describe('the IPv6 builder itself', () => {
  it('produces packets whose checksums the views accept, and whose walk a plain parser agrees with', () => {
    const rng = new Rng(6);
    const ip = new Ipv6();
    const tcp = new Tcp();
    for (let i = 0; i < 100; i++) {
      const src = rng.bytes(16);
      const dst = rng.bytes(16);
      const p = tcp6Packet(
        src,
        dst,
        { sport: rng.u16(), dport: rng.u16(), flags: rng.u8(), data: rng.bytes(rng.int(50)) },
        { ext: rng.bool() ? [{ kind: 'dst' }] : [] },
      );
      expect(l4Ok6(p)).toBe(true);
      expect(ip.attach(p, 0, p.length)).toBe(true);
      expect(ip.transportOffset).toBe(parse6(p).l4);
      expect(tcp.attach(p, ip.transportOffset, ip.transportLength)).toBe(true);
      expect(tcp.verifyChecksum6(p, 0)).toBe(true);
      expect(u16(p, ip.transportOffset + 16)).toBe(tcp.checksum);
    }
    expect(toHex(addr6('::ffff:1.2.3.4'))).toBe('00000000000000000000ffff01020304');
    expect(ROUTING).toBe(IPV6_ROUTING);
  });
});
