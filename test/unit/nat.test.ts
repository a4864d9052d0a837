// Unit tests for the translator: address and NAT mode, inbound flows, spoofing, hairpin, ICMP errors, fragments, TCP states, expiry, fuzz.
import { describe, it, expect } from 'vitest';
import {
  DEFAULT_TIMEOUTS,
  DROP,
  ICMP_ACTIVE,
  NO_FLOW,
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
  Rng,
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
  udpDatagram,
  udpPacket,
} from './packets.js';
import { NOW, recv, send } from './harness.js';

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

const tcpFlow = (nat: Nat, id: number, inner: number, sport: number, remote: number, dport: number): number =>
  nat.flows.lookupInner(id, TCP, inner, sport, remote, dport);

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

describe('address mode (inner == VIP)', () => {
  it('leaves every byte unchanged both ways, for TCP, UDP and ICMP', () => {
    const nat = makeNat();
    const outs = [
      tcpPacket(VIP(4), REMOTE, { sport: 40000, dport: 80, flags: SYN }),
      udpPacket(VIP(4), REMOTE, { sport: 5353, dport: 53, data: enc.encode('q') }),
      udpPacket(VIP(4), REMOTE, { sport: 5354, dport: 53, checksum: false }),
      echoPacket(VIP(4), REMOTE, 8, 7, 1, enc.encode('ping')),
    ];
    const ins = [
      tcpPacket(REMOTE, VIP(4), { sport: 80, dport: 40000, flags: SYN | ACK }),
      udpPacket(REMOTE, VIP(4), { sport: 53, dport: 5353, data: enc.encode('a') }),
      udpPacket(REMOTE, VIP(4), { sport: 53, dport: 5354, checksum: false }),
      echoPacket(REMOTE, VIP(4), 0, 7, 1, enc.encode('ping')),
    ];
    for (const p of outs) {
      const r = send(nat, 4, p);
      expect(r.v).toBe(TO_UPLINK);
      expect(toHex(r.out)).toBe(toHex(p));
      expect(r.clean).toBe(true);
    }
    for (const p of ins) {
      const r = recv(nat, p);
      expect(r.v).toBe(4);
      expect(toHex(r.out)).toBe(toHex(p));
    }
    expect(nat.flows.count).toBe(4);
    // Half-open until the session acknowledges the SYN-ACK.
    expect(nat.flows.stateOf(tcpFlow(nat, 4, VIP(4), 40000, REMOTE, 80))).toBe(TCP_SYN_ACK_IN);
    const ack = tcpPacket(VIP(4), REMOTE, { sport: 40000, dport: 80, flags: ACK });
    expect(toHex(send(nat, 4, ack).out)).toBe(toHex(ack));
    expect(nat.flows.stateOf(tcpFlow(nat, 4, VIP(4), 40000, REMOTE, 80))).toBe(TCP_ESTABLISHED);
  });
});

describe('NAT mode (shared inner address, distinct VIPs)', () => {
  it('rewrites the source out and the destination in; all checksums verify from scratch', () => {
    const nat = makeNat();
    for (const k of [1, 2, 3]) {
      const data = enc.encode(`session ${k} says hi`);
      const cases: [Uint8Array, Uint8Array, Uint8Array, Uint8Array][] = [
        [
          tcpPacket(INNER, REMOTE, { sport: 40000, dport: 443, flags: SYN, options: [2, 4, 5, 0xb4] }),
          tcpPacket(VIP(k), REMOTE, { sport: 40000, dport: 443, flags: SYN, options: [2, 4, 5, 0xb4] }),
          tcpPacket(REMOTE, VIP(k), { sport: 443, dport: 40000, flags: SYN | ACK, ack: 1001 }),
          tcpPacket(REMOTE, INNER, { sport: 443, dport: 40000, flags: SYN | ACK, ack: 1001 }),
        ],
        [
          tcpPacket(INNER, REMOTE, { sport: 40000, dport: 443, flags: ACK | PSH, data }),
          tcpPacket(VIP(k), REMOTE, { sport: 40000, dport: 443, flags: ACK | PSH, data }),
          tcpPacket(REMOTE, VIP(k), { sport: 443, dport: 40000, flags: ACK, data }),
          tcpPacket(REMOTE, INNER, { sport: 443, dport: 40000, flags: ACK, data }),
        ],
        [
          udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data }),
          udpPacket(VIP(k), REMOTE, { sport: 5000, dport: 53, data }),
          udpPacket(REMOTE, VIP(k), { sport: 53, dport: 5000, data }),
          udpPacket(REMOTE, INNER, { sport: 53, dport: 5000, data }),
        ],
        [
          udpPacket(INNER, REMOTE, { sport: 5001, dport: 53, data, checksum: false }),
          udpPacket(VIP(k), REMOTE, { sport: 5001, dport: 53, data, checksum: false }),
          udpPacket(REMOTE, VIP(k), { sport: 53, dport: 5001, data, checksum: false }),
          udpPacket(REMOTE, INNER, { sport: 53, dport: 5001, data, checksum: false }),
        ],
        [
          echoPacket(INNER, REMOTE, 8, 0x100 + k, 1, data),
          echoPacket(VIP(k), REMOTE, 8, 0x100 + k, 1, data),
          echoPacket(REMOTE, VIP(k), 0, 0x100 + k, 1, data),
          echoPacket(REMOTE, INNER, 0, 0x100 + k, 1, data),
        ],
        [
          // IPv4 options in the header.
          udpPacket(INNER, REMOTE, { sport: 6000, dport: 7000, data }, { options: [0x94, 4, 0, 0] }),
          udpPacket(VIP(k), REMOTE, { sport: 6000, dport: 7000, data }, { options: [0x94, 4, 0, 0] }),
          udpPacket(REMOTE, VIP(k), { sport: 7000, dport: 6000, data }, { options: [0x94, 4, 0, 0] }),
          udpPacket(REMOTE, INNER, { sport: 7000, dport: 6000, data }, { options: [0x94, 4, 0, 0] }),
        ],
      ];
      for (const [out, outWant, inn, innWant] of cases) {
        const o = send(nat, k, out);
        expect(o.v).toBe(TO_UPLINK);
        expect(o.clean).toBe(true);
        expect(parse(o.out).src).toBe(VIP(k));
        expect(allOk(o.out)).toBe(true);
        expect(toHex(o.out)).toBe(toHex(outWant));
        const i = recv(nat, inn);
        expect(i.v).toBe(k);
        expect(i.clean).toBe(true);
        expect(parse(i.out).dst).toBe(INNER);
        expect(allOk(i.out)).toBe(true);
        expect(toHex(i.out)).toBe(toHex(innWant));
      }
    }
    // Each session has its own flows even with identical inner tuples.
    for (const k of [1, 2, 3]) {
      const f = tcpFlow(nat, k, INNER, 40000, REMOTE, 443);
      expect(f).not.toBe(NO_FLOW);
      expect(nat.flows.sessionOf(f)).toBe(k);
      expect(nat.flows.outerAddrOf(f)).toBe(VIP(k));
      expect(nat.flows.lookupOuter(TCP, VIP(k), 40000, REMOTE, 443)).toBe(f);
      expect(nat.flows.stateOf(f)).toBe(TCP_ESTABLISHED);
      const u = nat.flows.lookupInner(k, UDP, INNER, 5000, REMOTE, 53);
      expect(nat.flows.stateOf(u)).toBe(UDP_ACTIVE);
      const e = nat.flows.lookupInner(k, ICMP, INNER, 0x100 + k, REMOTE, 0);
      expect(nat.flows.stateOf(e)).toBe(ICMP_ACTIVE);
    }
    expect(nat.counters.fromSession).toBe(18);
    expect(nat.counters.fromUplink).toBe(18);
    expect(nat.counters.malformed + nat.counters.spoofed + nat.counters.noSession).toBe(0);
  });

  it('UDP with checksum 0 keeps 0 both ways', () => {
    const nat = makeNat();
    const o = send(nat, 1, udpPacket(INNER, REMOTE, { sport: 1, dport: 2, data: new Uint8Array(33), checksum: false }));
    expect(u16(o.out, 26)).toBe(0);
    expect(ipHeaderOk(o.out)).toBe(true);
    const i = recv(nat, udpPacket(REMOTE, VIP(1), { sport: 2, dport: 1, data: new Uint8Array(33), checksum: false }));
    expect(u16(i.out, 26)).toBe(0);
    expect(ipHeaderOk(i.out)).toBe(true);
  });

  it('translates protocols without ports (e.g. GRE) by address only, without a flow', () => {
    const nat = makeNat();
    const payload = new Uint8Array([0, 0, 0x08, 0, 1, 2, 3, 4]);
    const o = send(nat, 2, ipv4({ src: INNER, dst: REMOTE, proto: 47 }, payload));
    expect(o.v).toBe(TO_UPLINK);
    expect(toHex(o.out)).toBe(toHex(ipv4({ src: VIP(2), dst: REMOTE, proto: 47 }, payload)));
    const i = recv(nat, ipv4({ src: REMOTE, dst: VIP(2), proto: 47 }, payload));
    expect(i.v).toBe(2);
    expect(toHex(i.out)).toBe(toHex(ipv4({ src: REMOTE, dst: INNER, proto: 47 }, payload)));
    expect(nat.flows.count).toBe(0);
  });

  it('still translates when the flow table is full of assured flows (counters.tableFull)', () => {
    const nat = makeNat({ flowCapacity: 2 });
    for (let p = 1; p <= 3; p++) {
      const o = send(nat, 1, udpPacket(INNER, REMOTE, { sport: p, dport: 53 }));
      expect(o.v).toBe(TO_UPLINK);
      expect(toHex(o.out)).toBe(toHex(udpPacket(VIP(1), REMOTE, { sport: p, dport: 53 })));
      // Answered, so assured: not evicted to make room for the next.
      if (p < 3) expect(recv(nat, udpPacket(REMOTE, VIP(1), { sport: 53, dport: p })).v).toBe(1);
    }
    expect(nat.flows.count).toBe(2);
    expect(nat.counters.flowsCreated).toBe(2);
    expect(nat.counters.flowsEvicted).toBe(0);
    expect(nat.counters.tableFull).toBe(1);
    // A reply for the flow that did not fit is still delivered by VIP.
    const i = recv(nat, udpPacket(REMOTE, VIP(1), { sport: 53, dport: 3 }));
    expect(i.v).toBe(1);
    expect(allOk(i.out)).toBe(true);
    expect(nat.counters.tableFull).toBe(2);
  });
});

describe('inbound connections', () => {
  it('a SYN to a VIP opens a flow to the session that holds it', () => {
    const nat = makeNat();
    const syn = tcpPacket(REMOTE, VIP(2), { sport: 51000, dport: 8080, flags: SYN });
    const i = recv(nat, syn);
    expect(i.v).toBe(2);
    expect(toHex(i.out)).toBe(toHex(tcpPacket(REMOTE, INNER, { sport: 51000, dport: 8080, flags: SYN })));
    const f = nat.flows.lookupOuter(TCP, VIP(2), 8080, REMOTE, 51000);
    expect(f).not.toBe(NO_FLOW);
    expect(nat.flows.sessionOf(f)).toBe(2);
    expect(nat.flows.stateOf(f)).toBe(TCP_SYN_IN);
    expect(tcpFlow(nat, 2, INNER, 8080, REMOTE, 51000)).toBe(f);
    expect(nat.counters.flowsCreated).toBe(1);

    // The listener answers; same flow, half-open until the remote's ACK (RFC 5382), then established.
    const o = send(nat, 2, tcpPacket(INNER, REMOTE, { sport: 8080, dport: 51000, flags: SYN | ACK }));
    expect(o.v).toBe(TO_UPLINK);
    expect(toHex(o.out)).toBe(toHex(tcpPacket(VIP(2), REMOTE, { sport: 8080, dport: 51000, flags: SYN | ACK })));
    expect(nat.flows.stateOf(f)).toBe(TCP_SYN_ACK_OUT);
    expect(recv(nat, tcpPacket(REMOTE, VIP(2), { sport: 51000, dport: 8080, flags: ACK })).v).toBe(2);
    expect(nat.flows.stateOf(f)).toBe(TCP_ESTABLISHED);
    expect(nat.flows.count).toBe(1);
  });

  it('only a bare SYN opens a TCP flow from outside; other segments are delivered without one', () => {
    const nat = makeNat();
    for (const flags of [ACK, SYN | ACK, RST, SYN | RST, FIN | ACK, 0]) {
      const i = recv(nat, tcpPacket(REMOTE, VIP(1), { sport: 51000, dport: 8080, flags }));
      expect(i.v).toBe(1);
      expect(allOk(i.out)).toBe(true);
    }
    expect(nat.flows.count).toBe(0);
    // An echo reply opens nothing; an echo request does.
    expect(recv(nat, echoPacket(REMOTE, VIP(1), 0, 9, 1)).v).toBe(1);
    expect(nat.flows.count).toBe(0);
    expect(recv(nat, echoPacket(REMOTE, VIP(1), 8, 9, 1)).v).toBe(1);
    expect(nat.flows.count).toBe(1);
    // UDP opens a flow (a listener may be there).
    expect(recv(nat, udpPacket(REMOTE, VIP(1), { sport: 1, dport: 2 })).v).toBe(1);
    expect(nat.flows.count).toBe(2);
    const o = send(nat, 1, echoPacket(INNER, REMOTE, 0, 9, 1));
    expect(o.v).toBe(TO_UPLINK);
    expect(nat.flows.count).toBe(2); // the reply used the request's flow
  });

  it('drops packets to an address no session holds (counters.noSession)', () => {
    const nat = makeNat();
    for (const dst of [INNER, VIP(5), REMOTE, addr('198.19.0.0'), 0xffffffff]) {
      const r = recv(nat, tcpPacket(REMOTE, dst, { sport: 1, dport: 2, flags: SYN }));
      expect(r.v).toBe(DROP);
    }
    expect(nat.counters.noSession).toBe(5);
    expect(nat.flows.count).toBe(0);
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

describe('hairpin', () => {
  it('delivers session to session, translated for the receiver', () => {
    const nat = makeNat();
    const syn = send(nat, 1, tcpPacket(INNER, VIP(2), { sport: 41000, dport: 80, flags: SYN }));
    expect(syn.v).toBe(2);
    // The receiver sees the sender's VIP as source and its own inner address as destination.
    expect(toHex(syn.out)).toBe(toHex(tcpPacket(VIP(1), INNER, { sport: 41000, dport: 80, flags: SYN })));
    expect(allOk(syn.out)).toBe(true);
    expect(nat.counters.hairpin).toBe(1);
    expect(nat.counters.fromSession).toBe(1);
    expect(nat.counters.fromUplink).toBe(0);

    const synack = send(nat, 2, tcpPacket(INNER, VIP(1), { sport: 80, dport: 41000, flags: SYN | ACK }));
    expect(synack.v).toBe(1);
    expect(toHex(synack.out)).toBe(toHex(tcpPacket(VIP(2), INNER, { sport: 80, dport: 41000, flags: SYN | ACK })));
    expect(nat.counters.hairpin).toBe(2);

    // The handshake's last ACK.
    expect(send(nat, 1, tcpPacket(INNER, VIP(2), { sport: 41000, dport: 80, flags: ACK })).v).toBe(2);

    // One flow per side: session 1's (out) and session 2's (in), both established.
    expect(nat.flows.count).toBe(2);
    const f1 = tcpFlow(nat, 1, INNER, 41000, VIP(2), 80);
    const f2 = tcpFlow(nat, 2, INNER, 80, VIP(1), 41000);
    expect(nat.flows.stateOf(f1)).toBe(TCP_ESTABLISHED);
    expect(nat.flows.stateOf(f2)).toBe(TCP_ESTABLISHED);
  });

  it('works for UDP and ICMP, and to/from an address-mode session', () => {
    const nat = makeNat();
    const u = send(nat, 3, udpPacket(INNER, VIP(4), { sport: 7, dport: 9, data: enc.encode('x') }));
    expect(u.v).toBe(4);
    expect(toHex(u.out)).toBe(toHex(udpPacket(VIP(3), VIP(4), { sport: 7, dport: 9, data: enc.encode('x') })));
    const back = send(nat, 4, udpPacket(VIP(4), VIP(3), { sport: 9, dport: 7 }));
    expect(back.v).toBe(3);
    expect(toHex(back.out)).toBe(toHex(udpPacket(VIP(4), INNER, { sport: 9, dport: 7 })));
    const e = send(nat, 1, echoPacket(INNER, VIP(3), 8, 5, 5));
    expect(e.v).toBe(3);
    expect(toHex(e.out)).toBe(toHex(echoPacket(VIP(1), INNER, 8, 5, 5)));
    const z = send(nat, 1, udpPacket(INNER, VIP(2), { sport: 1, dport: 2, checksum: false }));
    expect(z.v).toBe(2);
    expect(toHex(z.out)).toBe(toHex(udpPacket(VIP(1), INNER, { sport: 1, dport: 2, checksum: false })));
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

  it('in address mode an error is delivered unchanged', () => {
    const nat = makeNat();
    const orig = udpPacket(VIP(4), REMOTE, { sport: 5000, dport: 53 });
    expect(send(nat, 4, orig).v).toBe(TO_UPLINK);
    const err = icmpErrorPacket(REMOTE, VIP(4), 3, 3, orig);
    const r = recv(nat, err);
    expect(r.v).toBe(4);
    expect(toHex(r.out)).toBe(toHex(err));
  });

  it('an error with a bad ICMP checksum is counted malformed and dropped, not laundered', () => {
    const nat = makeNat();
    const { wire } = udpOut(nat);
    const err = icmpErrorPacket(REMOTE, VIP(1), 3, 3, wire);
    err[22] = err[22]! ^ 0xff; // ICMP checksum
    const before = nat.counters.malformed;
    const dropped = nat.counters.icmpErrorsDropped;
    const r = recv(nat, err);
    expect(r.v).toBe(DROP);
    expect(nat.counters.malformed).toBe(before + 1);
    expect(nat.counters.icmpErrorsDropped).toBe(dropped + 1);
  });
});

describe('fragments', () => {
  /** A UDP datagram split into a first fragment (MF, 8+40 bytes of UDP) and a later one (offset 48). */
  function fragments(
    src: number,
    dst: number,
    sport: number,
    dport: number,
    data: Uint8Array,
  ): { whole: Uint8Array; first: Uint8Array; rest: Uint8Array } {
    const whole = udpDatagram(src, dst, { sport, dport, data });
    return {
      whole,
      first: ipv4({ src, dst, proto: UDP, mf: true, ident: 77 }, whole.subarray(0, 48)),
      rest: ipv4({ src, dst, proto: UDP, fragOffset: 48, ident: 77 }, whole.subarray(48)),
    };
  }

  it('outbound: the first fragment gets port-aware translation, a later one IP-only; reassembly verifies', () => {
    const nat = makeNat();
    const data = new Rng(48).bytes(100);
    const f = fragments(INNER, REMOTE, 4000, 4001, data);
    const want = fragments(VIP(3), REMOTE, 4000, 4001, data);
    // The later fragment may come first.
    const b = send(nat, 3, f.rest);
    expect(b.v).toBe(TO_UPLINK);
    expect(nat.counters.fragments).toBe(1);
    expect(nat.flows.count).toBe(0); // no ports in a later fragment
    expect(toHex(b.out)).toBe(toHex(want.rest)); // only the IP header changed
    expect(toHex(b.out.subarray(20))).toBe(toHex(f.rest.subarray(20)));
    const a = send(nat, 3, f.first);
    expect(a.v).toBe(TO_UPLINK);
    expect(toHex(a.out)).toBe(toHex(want.first));
    expect(nat.flows.count).toBe(1);
    // Reassembled, the UDP checksum verifies against the VIP.
    const re = new Uint8Array(want.whole.length);
    re.set(a.out.subarray(20), 0);
    re.set(b.out.subarray(20), 48);
    expect(l4Ok(ipv4({ src: VIP(3), dst: REMOTE, proto: UDP }, re))).toBe(true);
  });

  it('inbound: same, towards the inner address', () => {
    const nat = makeNat();
    const data = new Rng(49).bytes(77);
    const f = fragments(REMOTE, VIP(1), 53, 5353, data);
    const want = fragments(REMOTE, INNER, 53, 5353, data);
    const a = recv(nat, f.first);
    expect(a.v).toBe(1);
    expect(toHex(a.out)).toBe(toHex(want.first));
    const b = recv(nat, f.rest);
    expect(b.v).toBe(1);
    expect(toHex(b.out)).toBe(toHex(want.rest));
    expect(nat.counters.fragments).toBe(1);
  });

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

  it('flow state and deadline follow an outbound SYN/SYN-ACK/ACK/FIN/FIN/ACK exchange, RST and reuse', () => {
    const nat = makeNat();
    const T = DEFAULT_TIMEOUTS;
    const out = (flags: number, now: number) => send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 44000, dport: 80, flags }), now).v;
    const inn = (flags: number, now: number) => recv(nat, tcpPacket(REMOTE, VIP(1), { sport: 80, dport: 44000, flags }), now).v;
    const st = (): [string, number] => {
      const f = tcpFlow(nat, 1, INNER, 44000, REMOTE, 80);
      return [STATE_NAMES[nat.flows.stateOf(f)]!, nat.flows.deadlineOf(f)];
    };
    expect(out(SYN, 100)).toBe(TO_UPLINK);
    expect(st()).toEqual(['syn-out', 100 + T.tcpTransitory]);
    expect(inn(SYN | ACK, 101)).toBe(1);
    expect(st()).toEqual(['syn-ack-in', 101 + T.tcpTransitory]);
    expect(out(ACK, 102)).toBe(TO_UPLINK);
    expect(st()).toEqual(['established', 102 + T.tcpEstablished]);
    expect(inn(ACK | PSH, 103)).toBe(1);
    expect(st()).toEqual(['established', 103 + T.tcpEstablished]);
    expect(out(FIN | ACK, 104)).toBe(TO_UPLINK);
    expect(st()).toEqual(['fin-out', 104 + T.tcpTransitory]);
    expect(inn(FIN | ACK, 105)).toBe(1);
    expect(st()).toEqual(['closing', 105 + T.tcpTransitory]);
    expect(out(ACK, 106)).toBe(TO_UPLINK);
    expect(st()).toEqual(['closing', 106 + T.tcpTransitory]);
    // The port is reused for a new connection.
    expect(out(SYN, 200)).toBe(TO_UPLINK);
    expect(st()).toEqual(['syn-out', 200 + T.tcpTransitory]);
    expect(inn(RST | ACK, 201)).toBe(1);
    expect(st()).toEqual(['closed', 201 + T.tcpClosed]);
    expect(nat.flows.count).toBe(1);
  });

  it('flow state follows an inbound connection to a listener, closed from outside first', () => {
    const nat = makeNat();
    const out = (flags: number) => send(nat, 3, tcpPacket(INNER, REMOTE, { sport: 9000, dport: 55000, flags })).v;
    const inn = (flags: number) => recv(nat, tcpPacket(REMOTE, VIP(3), { sport: 55000, dport: 9000, flags })).v;
    const st = (): number => nat.flows.stateOf(nat.flows.lookupOuter(TCP, VIP(3), 9000, REMOTE, 55000));
    expect(inn(SYN)).toBe(3);
    expect(st()).toBe(TCP_SYN_IN);
    expect(out(SYN | ACK)).toBe(TO_UPLINK);
    expect(st()).toBe(TCP_SYN_ACK_OUT);
    expect(inn(ACK)).toBe(3);
    expect(st()).toBe(TCP_ESTABLISHED);
    expect(inn(FIN | ACK)).toBe(3);
    expect(st()).toBe(TCP_FIN_IN);
    expect(out(ACK)).toBe(TO_UPLINK);
    expect(st()).toBe(TCP_FIN_IN);
    expect(out(FIN | ACK)).toBe(TO_UPLINK);
    expect(st()).toBe(TCP_CLOSING);
  });

  it('a connection first seen mid-stream is taken as established', () => {
    const nat = makeNat();
    expect(send(nat, 2, tcpPacket(INNER, REMOTE, { sport: 1, dport: 2, flags: ACK })).v).toBe(TO_UPLINK);
    expect(nat.flows.stateOf(tcpFlow(nat, 2, INNER, 1, REMOTE, 2))).toBe(TCP_ESTABLISHED);
  });
});

describe('expiry', () => {
  it('drops each kind of flow after its timeout (DEFAULT_TIMEOUTS), not before', () => {
    const nat = makeNat();
    const T = DEFAULT_TIMEOUTS;
    const t0 = 5000;
    // UDP, ICMP, TCP established, TCP transitory (SYN only), TCP closed (RST).
    send(nat, 1, udpPacket(INNER, REMOTE, { sport: 1, dport: 53 }), t0);
    send(nat, 1, echoPacket(INNER, REMOTE, 8, 1, 1), t0);
    send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 2, dport: 80, flags: SYN }), t0);
    recv(nat, tcpPacket(REMOTE, VIP(1), { sport: 80, dport: 2, flags: SYN | ACK }), t0);
    send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 2, dport: 80, flags: ACK }), t0);
    send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 3, dport: 80, flags: SYN }), t0);
    send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 4, dport: 80, flags: SYN }), t0);
    recv(nat, tcpPacket(REMOTE, VIP(1), { sport: 80, dport: 4, flags: RST }), t0);
    expect(nat.flows.count).toBe(5);

    const alive = () => ({
      udp: nat.flows.lookupInner(1, UDP, INNER, 1, REMOTE, 53) !== NO_FLOW,
      icmp: nat.flows.lookupInner(1, ICMP, INNER, 1, REMOTE, 0) !== NO_FLOW,
      est: tcpFlow(nat, 1, INNER, 2, REMOTE, 80) !== NO_FLOW,
      syn: tcpFlow(nat, 1, INNER, 3, REMOTE, 80) !== NO_FLOW,
      closed: tcpFlow(nat, 1, INNER, 4, REMOTE, 80) !== NO_FLOW,
    });
    nat.expire(t0 + T.tcpClosed);
    expect(alive()).toEqual({ udp: true, icmp: true, est: true, syn: true, closed: true });
    nat.expire(t0 + T.tcpClosed + 1);
    expect(alive()).toEqual({ udp: true, icmp: true, est: true, syn: true, closed: false });
    nat.expire(t0 + T.icmp + 1);
    expect(alive()).toEqual({ udp: true, icmp: false, est: true, syn: true, closed: false });
    nat.expire(t0 + T.tcpTransitory);
    expect(alive().syn).toBe(true);
    nat.expire(t0 + T.tcpTransitory + 1);
    expect(alive()).toEqual({ udp: true, icmp: false, est: true, syn: false, closed: false });
    nat.expire(t0 + T.udp);
    expect(alive().udp).toBe(true);
    nat.expire(t0 + T.udp + 1);
    expect(alive()).toEqual({ udp: false, icmp: false, est: true, syn: false, closed: false });
    nat.expire(t0 + T.tcpEstablished);
    expect(alive().est).toBe(true);
    nat.expire(t0 + T.tcpEstablished + 1);
    expect(alive().est).toBe(false);
    expect(nat.flows.count).toBe(0);
    expect(nat.counters.flowsExpired).toBe(5);
  });

  it('traffic either way refreshes the deadline', () => {
    const nat = makeNat();
    send(nat, 2, udpPacket(INNER, REMOTE, { sport: 1, dport: 53 }), 1000);
    recv(nat, udpPacket(REMOTE, VIP(2), { sport: 53, dport: 1 }), 1200);
    nat.expire(1400);
    expect(nat.flows.count).toBe(1);
    send(nat, 2, udpPacket(INNER, REMOTE, { sport: 1, dport: 53 }), 1450);
    nat.expire(1700);
    expect(nat.flows.count).toBe(1);
    nat.expire(1751);
    expect(nat.flows.count).toBe(0);
  });

  it('custom timeouts and a scan budget', () => {
    const nat = makeNat({ timeouts: { tcpEstablished: 50, tcpTransitory: 5, tcpClosed: 1, udp: 20, icmp: 2 } });
    for (let p = 1; p <= 10; p++) send(nat, 1, udpPacket(INNER, REMOTE, { sport: p, dport: 53 }), 0);
    nat.expire(21, 4);
    expect(nat.flows.count).toBe(6);
    nat.expire(21, 4);
    expect(nat.flows.count).toBe(2);
    nat.expire(21);
    expect(nat.flows.count).toBe(0);
    expect(nat.counters.flowsExpired).toBe(10);
  });

  it('after expiry a late TCP segment from outside is still delivered but opens nothing', () => {
    const nat = makeNat();
    send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 2, dport: 80, flags: SYN }), 0);
    nat.expire(10_000);
    expect(nat.flows.count).toBe(0);
    const r = recv(nat, tcpPacket(REMOTE, VIP(1), { sport: 80, dport: 2, flags: SYN | ACK }), 10_001);
    expect(r.v).toBe(1);
    expect(nat.flows.count).toBe(0);
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

  it('every truncation of valid packets is dropped from either side without throwing', () => {
    const nat = makeNat();
    const pkts = [
      tcpPacket(INNER, REMOTE, { sport: 1, dport: 2, flags: SYN, options: [2, 4, 5, 0xb4] }),
      udpPacket(INNER, REMOTE, { sport: 1, dport: 2, data: new Uint8Array(11) }),
      echoPacket(INNER, REMOTE, 8, 1, 1, new Uint8Array(5)),
      icmpErrorPacket(INNER, REMOTE, 3, 3, udpPacket(REMOTE, INNER, { sport: 9, dport: 9 })),
    ];
    for (const p of pkts) {
      const q = p.slice();
      q.set([203, 0, 113, 5], 12);
      q.set([198, 19, 0, 1], 16);
      for (let n = 0; n < p.length; n++) {
        expect(nat.fromSession(1, p.slice(0, n), 0, n, NOW)).toBe(DROP);
        expect(nat.fromUplink(q.slice(0, n), 0, n, NOW)).toBe(DROP);
      }
    }
  });
});

describe('fuzz: never throws on garbage', () => {
  const sessions = [0, 1, 2, 3, 4, 5, 9];

  /** Valid packets both ways for every session, as seeds for mutation. */
  function seeds(rng: Rng): { out: [number, Uint8Array][]; inn: Uint8Array[] } {
    const out: [number, Uint8Array][] = [];
    const inn: Uint8Array[] = [];
    for (const k of [1, 2, 3, 4]) {
      const src = k === 4 ? VIP(4) : INNER;
      const data = rng.bytes(rng.int(30));
      out.push(
        [k, tcpPacket(src, REMOTE, { sport: 100 + k, dport: 80, flags: SYN, data })],
        [k, udpPacket(src, REMOTE, { sport: 100 + k, dport: 53, data })],
        [k, udpPacket(src, VIP(1 + (k % 4)), { sport: 100 + k, dport: 53, data })],
        [k, echoPacket(src, REMOTE, 8, k, 1, data)],
        [k, icmpErrorPacket(src, REMOTE, 3, 3, udpPacket(REMOTE, src, { sport: 7000, dport: 9999, data }))],
        [k, ipv4({ src, dst: REMOTE, proto: UDP, fragOffset: 64 }, data)],
      );
      inn.push(
        tcpPacket(REMOTE, VIP(k), { sport: 80, dport: 100 + k, flags: SYN | ACK, data }),
        udpPacket(REMOTE, VIP(k), { sport: 7000, dport: 9999, data }),
        echoPacket(REMOTE, VIP(k), 0, k, 1, data),
        icmpErrorPacket(ROUTER, VIP(k), 3, 3, udpPacket(VIP(k), REMOTE, { sport: 100 + k, dport: 53, data })),
        icmpErrorPacket(ROUTER, VIP(k), 11, 0, tcpPacket(VIP(k), REMOTE, { sport: 100 + k, dport: 80, flags: SYN }), 28),
      );
    }
    return { out, inn };
  }

  function mutate(rng: Rng, p: Uint8Array): Uint8Array {
    const q = p.slice();
    const n = 1 + rng.int(3);
    for (let i = 0; i < n; i++) {
      // Mostly the headers, where the parsing decisions are.
      const at = rng.int(4) === 0 ? rng.int(q.length) : rng.int(Math.min(q.length, 60));
      q[at] = rng.bool() ? rng.u8() : q[at]! ^ (1 << rng.int(8));
    }
    if (rng.int(5) === 0) return q.slice(0, rng.int(q.length + 1));
    return q;
  }

  /** Checksum validity (IP header; transport for unfragmented TCP/UDP/ICMP) is the same before and after translation. */
  function validity(p: Uint8Array): string {
    const h = parse(p);
    const l4 = h.fragOffset === 0 && !h.mf && [TCP, UDP, ICMP].includes(h.proto) && h.totalLength <= p.length && h.totalLength >= h.ihl + 8;
    return `${ipHeaderOk(p)}/${l4 ? l4Ok(p.subarray(0, h.totalLength)) : '-'}`;
  }

  it('10000 random buffers and 10000 mutations of valid packets through fromSession and fromUplink', () => {
    const rng = new Rng(0xf00d);
    const nat = makeNat();
    const { out, inn } = seeds(rng);
    const problems: string[] = [];
    const check = (what: string, v: number, before: Uint8Array, after: Uint8Array, fromSession: boolean): void => {
      if (!(v === DROP || v === TO_UPLINK || (v >= 1 && v <= 8)) || (!fromSession && v === TO_UPLINK))
        problems.push(`${what}: verdict ${v}`);
      if (v !== DROP && validity(before) !== validity(after))
        problems.push(`${what}: checksum validity ${validity(before)} -> ${validity(after)}: ${toHex(before)}`);
    };
    const run = (what: string, id: number, p: Uint8Array, now: number): void => {
      try {
        const a = send(nat, id, p, now);
        check(`${what} from session ${id}`, a.v, p, a.out, true);
        if (!a.clean) problems.push(`${what}: wrote outside the packet`);
        const b = recv(nat, p, now);
        check(`${what} from uplink`, b.v, p, b.out, false);
        if (!b.clean) problems.push(`${what}: wrote outside the packet`);
      } catch (e) {
        problems.push(`${what}: threw ${String(e)} on ${toHex(p)}`);
      }
    };
    for (let i = 0; i < 10000; i++) {
      const len = rng.int(100);
      const p = rng.bytes(len);
      // Make many of them look like IPv4 so they get past the first checks.
      if (len > 0 && rng.int(3) !== 0) p[0] = 0x45;
      if (len >= 20 && rng.int(3) !== 0) {
        p[2] = len >>> 8;
        p[3] = len & 0xff;
        p[9] = rng.pick([1, 6, 17, 1, 6, 17, rng.u8()]);
        if (rng.bool()) p[6] = p[7] = 0;
        if (rng.bool()) p.set([198, 19, 0, 1 + rng.int(4)], 16);
        else if (rng.int(2) === 0) p.set([10, 0, 2, 100], 12);
      }
      run(`random ${i}`, rng.pick(sessions), p, i);
      if (i % 500 === 0) nat.expire(i);
    }
    for (let i = 0; i < 10000; i++) {
      const fromSession = rng.bool();
      const [id, base] = fromSession ? rng.pick(out) : [rng.pick([1, 2, 3, 4]), rng.pick(inn)];
      run(`mutation ${i}`, id, mutate(rng, base), 20000 + i);
      if (i % 500 === 0) nat.expire(20000 + i);
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(nat.counters.fromSession).toBe(20000);
    expect(nat.counters.malformed).toBeGreaterThan(1000);

    // The flow table is still consistent: every live flow findable from both sides.
    const t = nat.flows;
    let live = 0;
    for (let f = 0; f < t.capacity; f++) {
      if (t.stateOf(f) === 0) continue;
      live++;
      const a = t.lookupInner(t.sessionOf(f), t.protoOf(f), t.innerAddrOf(f), t.innerPortOf(f), t.remoteAddrOf(f), t.remotePortOf(f));
      const b = t.lookupOuter(t.protoOf(f), t.outerAddrOf(f), t.outerPortOf(f), t.remoteAddrOf(f), t.remotePortOf(f));
      if (a !== f || b !== f) problems.push(`flow ${f}: inner ${a} outer ${b}`);
    }
    expect(live).toBe(t.count);
    expect(problems.slice(0, 10)).toEqual([]);
  });
});
