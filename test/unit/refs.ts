// Test helper: the wire tests' reference packets, IPv4 and IPv6, and how packets.ts builds each of them again.
import { addr, addr6, echo6Packet, echoPacket, hex, tcp6Packet, tcpPacket, udp6Packet, udpPacket, type Ext6 } from './packets.js';

const te = new TextEncoder();

// Hand-written reference packets (checksums computed by hand/independent tool).

/** 192.168.1.10:49152 -> 93.184.216.34:80, SYN, seq 0x12345678, window 64240, MSS 1460 option; DF, TTL 64, id 0x1c46. */
export const REF_TCP_SYN = hex(`
  4500002c 1c464000 400626f9 c0a8010a 5db8d822
  c0000050 12345678 00000000 6002faf0 7cab0000 020405b4`);

/** 10.0.2.100:5353 -> 8.8.8.8:53, "hello vipnat"; TTL 128, id 0xbeef. */
export const REF_UDP = hex(`
  45000028 beef0000 80115f62 0a000264 08080808
  14e90035 001441f6 68656c6c 6f207669 706e6174`);

/** 10.0.2.100 -> 1.1.1.1 echo request id 0x1234 seq 1 "abcdefgh"; DF, TTL 64, id 0x0042. */
export const REF_ICMP = hex(`
  45000024 00424000 40012c32 0a000264 01010101
  08005435 12340001 61626364 65666768`);

/** 172.16.0.1:1234 -> 224.0.0.22:4321 with a Router Alert option (IHL 6), odd payload "abc"; TTL 1. */
export const REF_OPTS = hex(`
  46000023 00010000 0111989d ac100001 e0000016 94040000
  04d210e1 000b999a 616263`);

// Reference packets. Bytes and checksums were computed once, outside this
// project, by a small python3 script (struct.pack for the headers,
// ipaddress.IPv6Address(...).packed for the addresses, RFC 1071 over the RFC
// 8200 section 8.1 pseudo-header), and tcpdump -vv reported the TCP, UDP and
// ICMPv6 checksums of the first three as correct.

/** [2001:db8::a]:49152 -> [2606:4700:4700::1111]:443 SYN, seq 0x12345678, window 64800, MSS 1440; class 0x28, flow 0x12345, hop limit 64. */
export const REF6_TCP_SYN = hex(`
  62812345 00180640 20010db8 00000000 00000000 0000000a
  26064700 47000000 00000000 00001111
  c00001bb 12345678 00000000 6002fd20 7dd70000 020405a0`);

/** [fd00:0:0:2::64]:5353 -> [2001:4860:4860::8888]:53, "hello vipnat"; hop limit 128. */
export const REF6_UDP = hex(`
  60000000 00141180 fd000000 00000002 00000000 00000064
  20014860 48600000 00000000 00008888
  14e90035 001427b9 68656c6c 6f207669 706e6174`);

/** fd00:0:0:2::64 -> 2606:4700:4700::1111 echo request id 0x1234 seq 1 "abcdefgh"; flow 0xabcde, hop limit 64. */
export const REF6_ICMP = hex(`
  600abcde 00103a40 fd000000 00000002 00000000 00000064
  26064700 47000000 00000000 00001111
  8000196c 12340001 61626364 65666768`);

/**
 * [2001:db8::1]:1234 -> [2001:db8::2]:4321 "abc", hop limit 1, behind
 * Hop-by-Hop (Router Alert + PadN), Routing (type 4 SRH, segments left 0, one
 * segment), an atomic Fragment (ident 0xdeadbeef) and Destination Options (PadN).
 */
export const REF6_EXT_UDP = hex(`
  60000000 003b0001 20010db8 00000000 00000000 00000001
  20010db8 00000000 00000000 00000002
  2b000502 00000100
  2c020400 00000000 20010db8 00000000 00000000 00000002
  3c000000 deadbeef
  11000104 00000000
  04d210e1 000bca4d 616263`);

/** Routing header data of a type 4 SRH with one segment. */
export const SRH_ONE_SEGMENT = (seg: Uint8Array): number[] => [0, 0, 0, 0, ...seg];

/** Per family: each reference packet, and the same packet as packets.ts builds it. */
export const REBUILT: Record<'IPv4' | 'IPv6', [string, Uint8Array, () => Uint8Array][]> = {
  IPv4: [
    [
      'TCP SYN',
      REF_TCP_SYN,
      () =>
        tcpPacket(
          addr('192.168.1.10'),
          addr('93.184.216.34'),
          { sport: 49152, dport: 80, seq: 0x12345678, ack: 0, flags: 0x02, window: 64240, options: [0x02, 0x04, 0x05, 0xb4] },
          { ident: 0x1c46, df: true, ttl: 64 },
        ),
    ],
    [
      'UDP',
      REF_UDP,
      () =>
        udpPacket(
          addr('10.0.2.100'),
          addr('8.8.8.8'),
          { sport: 5353, dport: 53, data: te.encode('hello vipnat') },
          { ident: 0xbeef, ttl: 128 },
        ),
    ],
    [
      'ICMP echo',
      REF_ICMP,
      () => echoPacket(addr('10.0.2.100'), addr('1.1.1.1'), 8, 0x1234, 1, te.encode('abcdefgh'), { ident: 0x42, df: true, ttl: 64 }),
    ],
    [
      'UDP behind IPv4 options',
      REF_OPTS,
      () =>
        udpPacket(
          addr('172.16.0.1'),
          addr('224.0.0.22'),
          { sport: 1234, dport: 4321, data: te.encode('abc') },
          { ident: 1, ttl: 1, options: [0x94, 0x04, 0, 0] },
        ),
    ],
  ],
  IPv6: [
    [
      'TCP SYN',
      REF6_TCP_SYN,
      () =>
        tcp6Packet(
          addr6('2001:db8::a'),
          addr6('2606:4700:4700::1111'),
          { sport: 49152, dport: 443, seq: 0x12345678, ack: 0, flags: 0x02, window: 64800, options: [0x02, 0x04, 0x05, 0xa0] },
          { trafficClass: 0x28, flowLabel: 0x12345, hopLimit: 64 },
        ),
    ],
    [
      'UDP',
      REF6_UDP,
      () =>
        udp6Packet(
          addr6('fd00:0:0:2::64'),
          addr6('2001:4860:4860::8888'),
          { sport: 5353, dport: 53, data: te.encode('hello vipnat') },
          { hopLimit: 128 },
        ),
    ],
    [
      'ICMPv6 echo',
      REF6_ICMP,
      () =>
        echo6Packet(addr6('fd00:0:0:2::64'), addr6('2606:4700:4700::1111'), 128, 0x1234, 1, te.encode('abcdefgh'), {
          flowLabel: 0xabcde,
          hopLimit: 64,
        }),
    ],
    [
      'UDP behind the reference extension chain',
      REF6_EXT_UDP,
      () => {
        const src = addr6('2001:db8::1');
        const dst = addr6('2001:db8::2');
        const ext: Ext6[] = [
          { kind: 'hbh', options: [0x05, 0x02, 0x00, 0x00] },
          { kind: 'routing', routingType: 4, segmentsLeft: 0, data: SRH_ONE_SEGMENT(dst) },
          { kind: 'frag', offset: 0, more: false, ident: 0xdeadbeef },
          { kind: 'dst' },
        ];
        return udp6Packet(src, dst, { sport: 1234, dport: 4321, data: te.encode('abc') }, { hopLimit: 1, ext });
      },
    ],
  ],
};
