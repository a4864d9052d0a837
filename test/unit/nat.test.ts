// Unit tests for the IPv4 translator's own cases: sessions, anti-spoofing, ICMP errors and their quotes, a later TCP fragment,
// the TCP state table, other families and malformed packets. What both families share is in translate.test.ts.
import { describe, it, expect } from 'vitest';
import {
  DROP,
  ICMP_ACTIVE,
  Nat,
  STATE_FREE,
  STATE_NAMES,
  TCP_CLOSED,
  TCP_CLOSING,
  TCP_ESTABLISHED,
  TCP_FIN_IN,
  TCP_FIN_OUT,
  TCP_SYN_ACK_IN,
  TCP_SYN_ACK_OUT,
  TCP_SYN_BOTH,
  TCP_SYN_IN,
  TCP_SYN_OUT,
  TO_UPLINK,
  UDP_ACTIVE,
  nextTcpState,
} from '../../src/nat/index.js';
import {
  ACK,
  FIN,
  ICMP,
  PSH,
  RST,
  SYN,
  TCP,
  UDP,
  addr,
  allOk,
  echoPacket,
  icmpErrorPacket,
  ipHeaderOk,
  ipv4,
  ipv6Packet,
  l4Ok,
  onesSum,
  parse,
  tcpPacket,
  tcpSegment,
  toHex,
  u16,
  udpPacket,
} from './packets.js';
import { recv, send } from './harness.js';

const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const REMOTE = addr('203.0.113.5');
const ROUTER = addr('192.0.2.1');

/** Sessions 1-3 share inner address 10.0.2.100 (NAT mode); session 4 holds its VIP itself (address mode). */
function makeNat(opts: Partial<ConstructorParameters<typeof Nat>[0]> = {}): Nat {
  const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1, ...opts });
  nat.addSession(1, INNER, VIP(1));
  nat.addSession(2, INNER, VIP(2));
  nat.addSession(3, INNER, VIP(3));
  nat.addSession(4, VIP(4), VIP(4));
  return nat;
}

const enc = new TextEncoder();

describe('sessions', () => {
  it('addSession checks ids and VIPs; sessionOf and removeSession', () => {
    const nat = makeNat();
    expect(() => nat.addSession(0, INNER, VIP(9))).toThrow(/session id 0: must be 1-8/);
    expect(() => nat.addSession(9, INNER, VIP(9))).toThrow(RangeError);
    expect(() => nat.addSession(1, INNER, VIP(9))).toThrow(/already active/);
    expect(() => nat.addSession(5, INNER, VIP(1))).toThrow(/already held by session 1/);
    expect(nat.sessionOf(VIP(2))).toBe(2);
    expect(nat.sessionOf(VIP(4))).toBe(4);
    expect(nat.sessionOf(INNER)).toBe(0);
    expect(nat.sessionOf(VIP(8))).toBe(0);

    // A flow for session 2, then remove it: flows go, the VIP is free for another session.
    expect(send(nat, 2, udpPacket(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(TO_UPLINK);
    expect(nat.flows.count).toBe(1);
    nat.removeSession(2);
    expect(nat.flows.count).toBe(0);
    expect(nat.sessionOf(VIP(2))).toBe(0);
    nat.removeSession(2); // no-op
    nat.removeSession(7); // never added
    expect(send(nat, 2, udpPacket(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(DROP);
    expect(recv(nat, udpPacket(REMOTE, VIP(2), { sport: 2, dport: 1 })).v).toBe(DROP);
    nat.addSession(5, INNER, VIP(2));
    expect(nat.sessionOf(VIP(2))).toBe(5);
    expect(recv(nat, udpPacket(REMOTE, VIP(2), { sport: 2, dport: 1 })).v).toBe(5);
    nat.addSession(2, INNER, VIP(8)); // the id can be reused too
    expect(nat.sessionOf(VIP(8))).toBe(2);
  });

  it('STATE_NAMES names every state number', () => {
    expect(STATE_NAMES[STATE_FREE]).toBe('free');
    expect(STATE_NAMES[TCP_SYN_OUT]).toBe('syn-out');
    expect(STATE_NAMES[TCP_ESTABLISHED]).toBe('established');
    expect(STATE_NAMES[TCP_CLOSED]).toBe('closed');
    expect(STATE_NAMES[UDP_ACTIVE]).toBe('udp');
    expect(STATE_NAMES[ICMP_ACTIVE]).toBe('icmp');
    expect(STATE_NAMES[TCP_SYN_ACK_IN]).toBe('syn-ack-in');
    expect(STATE_NAMES[TCP_SYN_ACK_OUT]).toBe('syn-ack-out');
    expect(STATE_NAMES[TCP_SYN_BOTH]).toBe('syn-both');
  });
});

describe('anti-spoofing', () => {
  it("drops packets whose source is not the session's inner address (counters.spoofed)", () => {
    const nat = makeNat();
    const cases: [number, number][] = [
      [1, addr('10.0.2.101')],
      [1, VIP(1)], // NAT mode: the session must use its inner address
      [1, VIP(2)],
      [2, REMOTE],
      [4, INNER], // address mode: must be its VIP
      [4, VIP(1)],
    ];
    for (const [id, src] of cases) {
      const p = udpPacket(src, REMOTE, { sport: 1, dport: 2 });
      const r = send(nat, id, p);
      expect(r.v).toBe(DROP);
    }
    expect(nat.counters.spoofed).toBe(cases.length);
    expect(nat.flows.count).toBe(0);
  });
});

describe('ICMP errors', () => {
  /** Session 1 sends a UDP datagram out; returns the original and its translation. */
  function udpOut(nat: Nat, checksum = true): { orig: Uint8Array; wire: Uint8Array } {
    const orig = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data: enc.encode('where is vipnat?'), checksum });
    const r = send(nat, 1, orig);
    expect(r.v).toBe(TO_UPLINK);
    return { orig, wire: r.out };
  }

  it('port unreachable quoting a UDP datagram the session sent is translated back for the session', () => {
    const nat = makeNat();
    const { orig, wire } = udpOut(nat);
    const err = icmpErrorPacket(REMOTE, VIP(1), 3, 3, wire);
    const r = recv(nat, err);
    expect(r.v).toBe(1);
    expect(nat.counters.icmpErrors).toBe(1);
    // Outer destination and the quoted source are both the inner address.
    const outer = parse(r.out);
    expect(outer.dst).toBe(INNER);
    const quote = r.out.subarray(outer.ihl + 8);
    expect(parse(quote).src).toBe(INNER);
    expect(parse(quote).dst).toBe(REMOTE);
    // ICMP checksum, quoted IP header checksum and quoted UDP checksum all verify from scratch.
    expect(ipHeaderOk(r.out)).toBe(true);
    expect(onesSum([r.out.subarray(outer.ihl)])).toBe(0xffff);
    expect(ipHeaderOk(quote)).toBe(true);
    expect(l4Ok(quote)).toBe(true);
    // And the whole thing is what the network would have sent had the session used its inner address.
    expect(toHex(r.out)).toBe(toHex(icmpErrorPacket(REMOTE, INNER, 3, 3, orig)));
  });

  it('a quote cut to IP header + 8 bytes gets the quoted UDP checksum of the original', () => {
    const nat = makeNat();
    const { orig, wire } = udpOut(nat);
    const r = recv(nat, icmpErrorPacket(ROUTER, VIP(1), 11, 0, wire, 28));
    expect(r.v).toBe(1);
    expect(toHex(r.out)).toBe(toHex(icmpErrorPacket(ROUTER, INNER, 11, 0, orig, 28)));
    expect(u16(r.out, 28 + 26)).toBe(u16(orig, 26));
    expect(ipHeaderOk(r.out.subarray(28))).toBe(true);
  });

  it('a quoted UDP checksum of 0 stays 0', () => {
    const nat = makeNat();
    const { orig, wire } = udpOut(nat, false);
    const r = recv(nat, icmpErrorPacket(REMOTE, VIP(1), 3, 3, wire));
    expect(r.v).toBe(1);
    expect(u16(r.out, 28 + 26)).toBe(0);
    expect(toHex(r.out)).toBe(toHex(icmpErrorPacket(REMOTE, INNER, 3, 3, orig)));
  });

  it('quoted TCP: the TCP checksum is fixed when the quote holds it, left alone when cut to 8 bytes', () => {
    const nat = makeNat();
    const orig = tcpPacket(INNER, REMOTE, { sport: 43000, dport: 22, flags: SYN, options: [2, 4, 5, 0xb4] });
    const wire = send(nat, 1, orig).out;
    for (const cut of [wire.length, 40, 28]) {
      const r = recv(nat, icmpErrorPacket(ROUTER, VIP(1), 3, 1, wire, cut));
      expect(r.v).toBe(1);
      expect(toHex(r.out)).toBe(toHex(icmpErrorPacket(ROUTER, INNER, 3, 1, orig, cut)));
      if (cut === wire.length) expect(l4Ok(r.out.subarray(28))).toBe(true);
    }
  });

  it('time exceeded quoting an echo request the session sent', () => {
    const nat = makeNat();
    const orig = echoPacket(INNER, REMOTE, 8, 0x777, 3, enc.encode('traceroute'), { ttl: 1 });
    const wire = send(nat, 2, orig).out;
    const r = recv(nat, icmpErrorPacket(ROUTER, VIP(2), 11, 0, wire, 28));
    expect(r.v).toBe(2);
    expect(toHex(r.out)).toBe(toHex(icmpErrorPacket(ROUTER, INNER, 11, 0, orig, 28)));
  });

  it('an error the session sends about a packet it received is translated for the network', () => {
    const nat = makeNat();
    const orig = udpPacket(REMOTE, VIP(2), { sport: 7000, dport: 9999, data: enc.encode('anyone?') });
    const delivered = recv(nat, orig);
    expect(delivered.v).toBe(2);
    const err = icmpErrorPacket(INNER, REMOTE, 3, 3, delivered.out);
    const r = send(nat, 2, err);
    expect(r.v).toBe(TO_UPLINK);
    expect(toHex(r.out)).toBe(toHex(icmpErrorPacket(VIP(2), REMOTE, 3, 3, orig)));
    const quote = r.out.subarray(28);
    expect(parse(quote).dst).toBe(VIP(2));
    expect(ipHeaderOk(quote)).toBe(true);
    expect(l4Ok(quote)).toBe(true);
    expect(allOk(r.out)).toBe(true);
  });

  // An echo's identifier is the session-side key whichever side sent it, e.g. a
  // session's "fragment reassembly time exceeded" about a fragmented ping it received.
  it('an error the session sends about an echo request it received is translated', () => {
    const nat = makeNat();
    const orig = echoPacket(REMOTE, VIP(2), 8, 0x4321, 1, new Uint8Array(64));
    const delivered = recv(nat, orig);
    expect(delivered.v).toBe(2);
    const err = icmpErrorPacket(INNER, REMOTE, 11, 1, delivered.out, 28);
    const r = send(nat, 2, err);
    expect(nat.counters.icmpErrorsDropped).toBe(0);
    expect(r.v).toBe(TO_UPLINK);
    expect(toHex(r.out)).toBe(toHex(icmpErrorPacket(VIP(2), REMOTE, 11, 1, orig, 28)));
  });

  it("an error quoting no flow of the session's address, or nothing usable, is dropped (counters.icmpErrorsDropped)", () => {
    const nat = makeNat();
    const { wire } = udpOut(nat);
    const never = udpPacket(VIP(1), REMOTE, { sport: 1234, dport: 53 });
    const otherVip = udpPacket(VIP(2), REMOTE, { sport: 5000, dport: 53 });
    const notFromVip = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 });
    const gre = ipv4({ src: VIP(1), dst: REMOTE, proto: 47 }, new Uint8Array(8));
    const laterFragment = ipv4({ src: VIP(1), dst: REMOTE, proto: UDP, fragOffset: 8 }, wire.subarray(20, 28));
    const quotedError = ipv4({ src: VIP(1), dst: REMOTE, proto: ICMP }, new Uint8Array([3, 3, 0, 0, 0, 0, 0, 0]));
    // A session with a VIP needs no flow: an unknown port on its own address is translated by address alone.
    const flowless = recv(nat, icmpErrorPacket(REMOTE, VIP(1), 3, 3, never));
    expect(flowless.v).toBe(1);
    expect(toHex(flowless.out)).toBe(toHex(icmpErrorPacket(REMOTE, INNER, 3, 3, udpPacket(INNER, REMOTE, { sport: 1234, dport: 53 }))));
    const cases: [string, Uint8Array][] = [
      ["other session's VIP quoted", icmpErrorPacket(REMOTE, VIP(1), 3, 3, otherVip)],
      ['quote with the inner address', icmpErrorPacket(REMOTE, VIP(1), 3, 3, notFromVip)],
      ['protocol without ports', icmpErrorPacket(REMOTE, VIP(1), 3, 2, gre)],
      ['quote of a later fragment', icmpErrorPacket(REMOTE, VIP(1), 3, 3, laterFragment)],
      ['quote of an ICMP error', icmpErrorPacket(REMOTE, VIP(1), 3, 3, quotedError)],
      ['quote shorter than 28 bytes', icmpErrorPacket(REMOTE, VIP(1), 3, 3, wire, 27)],
      [
        'quote with bad version',
        icmpErrorPacket(
          REMOTE,
          VIP(1),
          3,
          3,
          (() => {
            const w = wire.slice();
            w[0] = 0x65;
            return w;
          })(),
        ),
      ],
      [
        'quote with IHL < 5',
        icmpErrorPacket(
          REMOTE,
          VIP(1),
          3,
          3,
          (() => {
            const w = wire.slice();
            w[0] = 0x44;
            return w;
          })(),
        ),
      ],
      [
        'quote with total length < IHL',
        icmpErrorPacket(
          REMOTE,
          VIP(1),
          3,
          3,
          (() => {
            const w = wire.slice();
            w[2] = 0;
            w[3] = 10;
            return w;
          })(),
        ),
      ],
    ];
    let dropped = 0;
    for (const [name, p] of cases) {
      expect(recv(nat, p).v, name).toBe(DROP);
      expect(nat.counters.icmpErrorsDropped, name).toBe(++dropped);
    }
    // From the session side: quoting a packet from a peer it has no flow with goes out by address alone;
    // one quoting a packet that was not to its inner address is dropped.
    const stray = udpPacket(REMOTE, INNER, { sport: 9, dport: 9 });
    const s = send(nat, 1, icmpErrorPacket(INNER, REMOTE, 3, 3, stray));
    expect(s.v).toBe(TO_UPLINK);
    expect(toHex(s.out)).toBe(toHex(icmpErrorPacket(VIP(1), REMOTE, 3, 3, udpPacket(REMOTE, VIP(1), { sport: 9, dport: 9 }))));
    expect(send(nat, 1, icmpErrorPacket(INNER, REMOTE, 3, 3, udpPacket(REMOTE, VIP(1), { sport: 9, dport: 9 }))).v).toBe(DROP);
    expect(nat.counters.icmpErrorsDropped).toBe(dropped + 1);
  });
});

describe('fragments', () => {
  it('a later TCP fragment with what looks like garbage is translated IP-only', () => {
    const nat = makeNat();
    const payload = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1]); // would be a bad TCP header
    const p = ipv4({ src: INNER, dst: REMOTE, proto: TCP, fragOffset: 1480 }, payload);
    const r = send(nat, 2, p);
    expect(r.v).toBe(TO_UPLINK);
    expect(toHex(r.out)).toBe(toHex(ipv4({ src: VIP(2), dst: REMOTE, proto: TCP, fragOffset: 1480 }, payload)));
    // A first TCP fragment too short for a TCP header is malformed.
    const tiny = ipv4(
      { src: INNER, dst: REMOTE, proto: TCP, mf: true },
      tcpSegment(INNER, REMOTE, { sport: 1, dport: 2, flags: SYN }).subarray(0, 16),
    );
    expect(send(nat, 2, tiny).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(1);
  });
});

describe('TCP state machine', () => {
  it('nextTcpState follows the documented transitions', () => {
    const S = SYN;
    const SA = SYN | ACK;
    const A = ACK;
    const F = FIN | ACK;
    const table: [number, number, boolean, number][] = [
      // new
      [STATE_FREE, S, true, TCP_SYN_OUT],
      [STATE_FREE, S, false, TCP_SYN_IN],
      [STATE_FREE, A, true, TCP_ESTABLISHED],
      [STATE_FREE, SA, false, TCP_ESTABLISHED],
      [STATE_FREE, F, true, TCP_ESTABLISHED],
      [STATE_FREE, RST, true, TCP_CLOSED],
      // SYN_OUT waits for the SYN-ACK from outside
      [TCP_SYN_OUT, SA, false, TCP_SYN_ACK_IN],
      [TCP_SYN_OUT, S, false, TCP_SYN_BOTH], // simultaneous open
      [TCP_SYN_OUT, S, true, TCP_SYN_OUT], // retransmission
      [TCP_SYN_OUT, SA, true, TCP_SYN_OUT],
      [TCP_SYN_OUT, A, false, TCP_SYN_OUT],
      [TCP_SYN_OUT, RST | ACK, false, TCP_CLOSED],
      // SYN_IN waits for the listener's SYN-ACK
      [TCP_SYN_IN, SA, true, TCP_SYN_ACK_OUT],
      [TCP_SYN_IN, S, true, TCP_SYN_BOTH],
      [TCP_SYN_IN, S, false, TCP_SYN_IN],
      [TCP_SYN_IN, SA, false, TCP_SYN_IN],
      [TCP_SYN_IN, A, true, TCP_SYN_IN],
      // half-open: only the originator's ACK completes the handshake
      [TCP_SYN_ACK_IN, A, true, TCP_ESTABLISHED],
      [TCP_SYN_ACK_IN, F, true, TCP_FIN_OUT],
      [TCP_SYN_ACK_IN, SA, true, TCP_ESTABLISHED], // simultaneous open: the session's SYN-ACK
      [TCP_SYN_ACK_IN, S, true, TCP_SYN_ACK_IN],
      [TCP_SYN_ACK_IN, SA, false, TCP_SYN_ACK_IN],
      [TCP_SYN_ACK_IN, A, false, TCP_SYN_ACK_IN],
      [TCP_SYN_ACK_OUT, A, false, TCP_ESTABLISHED],
      [TCP_SYN_ACK_OUT, F, false, TCP_FIN_IN],
      [TCP_SYN_ACK_OUT, S, false, TCP_SYN_ACK_OUT],
      [TCP_SYN_ACK_OUT, A, true, TCP_SYN_ACK_OUT],
      [TCP_SYN_ACK_OUT, SA, true, TCP_SYN_ACK_OUT],
      [TCP_SYN_ACK_OUT, RST, false, TCP_CLOSED],
      // simultaneous open waits for a SYN-ACK either way
      [TCP_SYN_BOTH, SA, true, TCP_SYN_ACK_OUT],
      [TCP_SYN_BOTH, SA, false, TCP_SYN_ACK_IN],
      [TCP_SYN_BOTH, S, true, TCP_SYN_BOTH],
      [TCP_SYN_BOTH, A, false, TCP_SYN_BOTH],
      // ESTABLISHED
      [TCP_ESTABLISHED, A, true, TCP_ESTABLISHED],
      [TCP_ESTABLISHED, A | PSH, false, TCP_ESTABLISHED],
      [TCP_ESTABLISHED, F, true, TCP_FIN_OUT],
      [TCP_ESTABLISHED, F, false, TCP_FIN_IN],
      [TCP_ESTABLISHED, RST, false, TCP_CLOSED],
      // half-closed
      [TCP_FIN_OUT, F, false, TCP_CLOSING],
      [TCP_FIN_OUT, F, true, TCP_FIN_OUT],
      [TCP_FIN_OUT, A, false, TCP_FIN_OUT],
      [TCP_FIN_IN, F, true, TCP_CLOSING],
      [TCP_FIN_IN, F, false, TCP_FIN_IN],
      [TCP_FIN_IN, A, true, TCP_FIN_IN],
      // closing / closed: only a new SYN reopens (port reuse)
      [TCP_CLOSING, A, true, TCP_CLOSING],
      [TCP_CLOSING, S, true, TCP_SYN_OUT],
      [TCP_CLOSING, S, false, TCP_SYN_IN],
      [TCP_CLOSING, SA, false, TCP_CLOSING],
      [TCP_CLOSING, RST, true, TCP_CLOSED],
      [TCP_CLOSED, A, true, TCP_CLOSED],
      [TCP_CLOSED, S, true, TCP_SYN_OUT],
      [TCP_CLOSED, S, false, TCP_SYN_IN],
      [TCP_CLOSED, RST, false, TCP_CLOSED],
      // non-TCP states are left alone
      [UDP_ACTIVE, S, true, UDP_ACTIVE],
      [ICMP_ACTIVE, F, false, ICMP_ACTIVE],
    ];
    for (const [s, flags, out, want] of table) {
      expect(nextTcpState(s, flags, out), `${STATE_NAMES[s]} flags ${flags.toString(16)} ${out ? 'out' : 'in'}`).toBe(want);
    }
    // RST wins over everything, in every state and direction.
    for (const s of [0, 1, 2, 3, 4, 5, 6, 7, 10, 11, 12])
      for (const out of [true, false]) expect(nextTcpState(s, RST | SYN | FIN | ACK, out)).toBe(TCP_CLOSED);
  });
});

describe('other families and malformed packets', () => {
  it('drops IPv6 for a session without an IPv6 address (otherFamily) and link control from outside', () => {
    const nat = makeNat();
    const rs = ipv6Packet(58, new Uint8Array([133, 0, 0, 0, 0, 0, 0, 0])); // router solicitation, fe80::1 -> ff02::2
    expect(send(nat, 1, rs).v).toBe(DROP);
    expect(nat.counters.otherFamily).toBe(1);
    expect(recv(nat, rs).v).toBe(DROP);
    expect(nat.counters.linkControl).toBe(1);
    expect(nat.counters.malformed).toBe(0);
  });

  it('counts other IP versions in counters.otherFamily', () => {
    const nat = makeNat();
    const p = udpPacket(INNER, REMOTE, { sport: 1, dport: 2 });
    p[0] = 0x55;
    expect(send(nat, 1, p).v).toBe(DROP);
    expect(recv(nat, p).v).toBe(DROP);
    expect(nat.counters.otherFamily).toBe(2);
  });

  it('drops empty, truncated and inconsistent packets as malformed', () => {
    const nat = makeNat();
    const bad: [string, Uint8Array][] = [
      ['empty', new Uint8Array(0)],
      [
        'ihl 4',
        (() => {
          const p = udpPacket(INNER, REMOTE, { sport: 1, dport: 2 });
          p[0] = 0x44;
          return p;
        })(),
      ],
      [
        'total length too big',
        (() => {
          const p = udpPacket(INNER, REMOTE, { sport: 1, dport: 2 });
          p[3] = p[3]! + 1;
          return p;
        })(),
      ],
      [
        'tcp data offset 4',
        (() => {
          const p = tcpPacket(INNER, REMOTE, { sport: 1, dport: 2, flags: SYN });
          p[32] = 0x40;
          return p;
        })(),
      ],
      [
        'tcp data offset past end',
        (() => {
          const p = tcpPacket(INNER, REMOTE, { sport: 1, dport: 2, flags: SYN });
          p[32] = 0xf0;
          return p;
        })(),
      ],
      [
        'udp length 7',
        (() => {
          const p = udpPacket(INNER, REMOTE, { sport: 1, dport: 2 });
          p[25] = 7;
          return p;
        })(),
      ],
      [
        'udp length past end',
        (() => {
          const p = udpPacket(INNER, REMOTE, { sport: 1, dport: 2 });
          p[25] = 9;
          return p;
        })(),
      ],
      ['icmp short', ipv4({ src: INNER, dst: REMOTE, proto: ICMP }, new Uint8Array([8, 0, 0, 0]))],
    ];
    for (const [name, p] of bad) {
      expect(send(nat, 1, p).v, name).toBe(DROP);
      // The same thing from outside, addressed to a VIP.
      const q = p.slice();
      if (q.length >= 20) {
        q.set([198, 19, 0, 1], 16);
        q.set([203, 0, 113, 5], 12);
      }
      expect(recv(nat, q).v, name).toBe(DROP);
    }
    expect(nat.counters.malformed).toBe(bad.length * 2);
    expect(nat.flows.count).toBe(0);
  });

  it('drops packets from an unknown or out-of-range session id', () => {
    const nat = makeNat();
    const p = udpPacket(INNER, REMOTE, { sport: 1, dport: 2 });
    for (const id of [0, 5, 8, 9, 1000, -1]) expect(send(nat, id, p).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(6);
  });
});
