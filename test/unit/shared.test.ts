// Unit tests for the shared fallback: sessions without a VIP leave from the shared address, port-translated (EIM), and get their replies and errors back.
import { describe, it, expect } from 'vitest';
import {
  DEFAULT_TIMEOUTS,
  DROP,
  ICMP_ACTIVE,
  NO_FLOW,
  Nat,
  TCP_CLOSED,
  TCP_CLOSING,
  TCP_ESTABLISHED,
  TCP_FIN_OUT,
  TCP_SYN_ACK_IN,
  TCP_SYN_OUT,
  TO_UPLINK,
  UDP_ACTIVE,
  type NatOptions,
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
  parse,
  tcpPacket,
  toHex,
  u16,
  udpPacket,
} from './packets.js';
import { NOW, recv, send, type Result } from './harness.js';

const SHARED = addr('198.18.0.1');
const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const REMOTE = addr('203.0.113.5');
const REMOTE2 = addr('203.0.113.6');
const ROUTER = addr('192.0.2.1');
const LO = 61000;
const HI = 65534;

/**
 * Sessions 1 and 2 are shared, both with inner address 10.0.2.100; session 3
 * is a NAT-mode session with its own VIP (same inner address); session 4 is
 * an address-mode session.
 */
function makeNat(opts: Partial<NatOptions> = {}): Nat {
  const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1, shared: { address: SHARED, portLo: LO, portHi: HI }, ...opts });
  nat.addSharedSession(1, INNER);
  nat.addSharedSession(2, INNER);
  nat.addSession(3, INNER, VIP(3));
  nat.addSession(4, VIP(4), VIP(4));
  return nat;
}

const sport = (p: Uint8Array): number => u16(p, parse(p).l4);
const dport = (p: Uint8Array): number => u16(p, parse(p).l4 + 2);
const ident = (p: Uint8Array): number => u16(p, parse(p).l4 + 4);
const l4cksum = (p: Uint8Array): number => u16(p, parse(p).l4 + (parse(p).proto === TCP ? 16 : parse(p).proto === UDP ? 6 : 2));
/** Everything after the transport header's ports (TCP/UDP) or identifier (echo): must come through untouched. */
const tail = (p: Uint8Array): string => {
  const h = parse(p);
  return toHex(
    p.subarray(h.l4 + (h.proto === ICMP ? 6 : h.proto === TCP ? 4 : 8)).filter((_, i) => !(h.proto === TCP && (i === 12 || i === 13))),
  );
};
/** The packet quoted in an ICMP error. */
const quote = (p: Uint8Array): Uint8Array => p.subarray(parse(p).l4 + 8, parse(p).totalLength);

/** Ports in use on the shared address, by protocol: [TCP, UDP, ICMP]. */
const inUse = (nat: Nat): number[] => nat.sharedPortsInUse();

function expectTranslatedOut(r: Result, src: number, dst: number): void {
  expect(r.v).toBe(TO_UPLINK);
  expect(r.clean).toBe(true);
  const h = parse(r.out);
  expect(h.src).toBe(src);
  expect(h.dst).toBe(dst);
  expect(allOk(r.out)).toBe(true);
}

function expectDelivered(r: Result, id: number, dst: number): void {
  expect(r.v).toBe(id);
  expect(r.clean).toBe(true);
  expect(parse(r.out).dst).toBe(dst);
  expect(allOk(r.out)).toBe(true);
}

const enc = new TextEncoder();

describe('shared sessions: setup', () => {
  it('addSharedSession needs a shared address and checks ids; sharedPortsInUse starts at zero', () => {
    const plain = new Nat({ maxSession: 4, flowCapacity: 16, seed: 1 });
    expect(() => plain.addSharedSession(1, INNER)).toThrow(/no shared address configured/);
    expect(plain.sharedPortsInUse()).toEqual([0, 0, 0]);

    const nat = makeNat();
    expect(() => nat.addSharedSession(0, INNER)).toThrow(/session id 0: must be 1-8/);
    expect(() => nat.addSharedSession(9, INNER)).toThrow(RangeError);
    expect(() => nat.addSharedSession(1, INNER)).toThrow(/session 1 is already active/);
    expect(() => nat.addSharedSession(3, INNER)).toThrow(/already active/);
    expect(() => nat.addSession(2, INNER, VIP(2))).toThrow(/already active/);
    // The shared address is nobody's VIP; more shared sessions can be added freely.
    expect(nat.sessionOf(SHARED)).toBe(0);
    nat.addSharedSession(5, INNER);
    nat.addSharedSession(6, addr('10.0.2.101'));
    expect(nat.sharedPortsInUse()).toEqual([0, 0, 0]);
    expect(() => new Nat({ maxSession: 1, flowCapacity: 16, shared: { address: SHARED, portLo: 0, portHi: 5 } })).toThrow(RangeError);
  });

  it('a session id can go from shared to VIP and back', () => {
    const nat = makeNat();
    const u = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 });
    expect(sport(send(nat, 1, u).out)).not.toBe(5000);
    nat.removeSession(1);
    nat.addSession(1, INNER, VIP(1));
    const r = send(nat, 1, u);
    expectTranslatedOut(r, VIP(1), REMOTE);
    expect(sport(r.out)).toBe(5000); // a VIP session keeps its ports
    expect(inUse(nat)).toEqual([0, 0, 0]);
    expect(nat.sessionOf(VIP(1))).toBe(1);
    nat.removeSession(1);
    expect(nat.sessionOf(VIP(1))).toBe(0);
    nat.addSharedSession(1, INNER);
    expectTranslatedOut(send(nat, 1, u), SHARED, REMOTE);
    expect(inUse(nat)).toEqual([0, 1, 0]);
  });

  it('sessions with a VIP take no shared ports', () => {
    const nat = makeNat();
    for (const [k, src] of [
      [3, INNER],
      [4, VIP(4)],
    ] as const) {
      expect(send(nat, k, udpPacket(src, REMOTE, { sport: 5000, dport: 53 })).v).toBe(TO_UPLINK);
      expect(send(nat, k, tcpPacket(src, REMOTE, { sport: 5000, dport: 80, flags: SYN })).v).toBe(TO_UPLINK);
      expect(send(nat, k, echoPacket(src, REMOTE, 8, 7, 1)).v).toBe(TO_UPLINK);
    }
    expect(nat.flows.count).toBe(6);
    expect(inUse(nat)).toEqual([0, 0, 0]);
  });

  it('anti-spoofing holds for shared sessions, and they have no IPv6 here', () => {
    const nat = makeNat();
    expect(send(nat, 1, udpPacket(addr('10.0.2.101'), REMOTE, { sport: 5000, dport: 53 })).v).toBe(DROP);
    expect(send(nat, 1, udpPacket(SHARED, REMOTE, { sport: 5000, dport: 53 })).v).toBe(DROP);
    expect(nat.counters.spoofed).toBe(2);
    expect(send(nat, 1, ipv6Packet(17, new Uint8Array(8))).v).toBe(DROP);
    expect(nat.counters.otherFamily).toBe(1);
    expect(inUse(nat)).toEqual([0, 0, 0]);
    expect(nat.flows.count).toBe(0);
  });
});

describe('outbound from a shared session and the replies', () => {
  it('UDP: source becomes the shared address and an outer port; replies come back to the inner address and port', () => {
    const nat = makeNat();
    const data = enc.encode('hello, shared world');
    const out = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data });
    const r = send(nat, 1, out);
    expectTranslatedOut(r, SHARED, REMOTE);
    const p = sport(r.out);
    expect(p).toBeGreaterThanOrEqual(LO);
    expect(p).toBeLessThanOrEqual(HI);
    expect(dport(r.out)).toBe(53);
    expect(tail(r.out)).toBe(tail(out));
    expect(inUse(nat)).toEqual([0, 1, 0]);
    const f = nat.flows.lookupOuter(UDP, SHARED, p, REMOTE, 53);
    expect(f).not.toBe(NO_FLOW);
    expect(nat.flows.stateOf(f)).toBe(UDP_ACTIVE);
    expect(nat.flows.deadlineOf(f)).toBe(NOW + DEFAULT_TIMEOUTS.udp);
    expect(nat.flows.innerAddrOf(f)).toBe(INNER);
    expect(nat.flows.outerAddrOf(f)).toBe(SHARED);

    const reply = udpPacket(REMOTE, SHARED, { sport: 53, dport: p, data });
    const back = recv(nat, reply);
    expectDelivered(back, 1, INNER);
    expect(parse(back.out).src).toBe(REMOTE);
    expect(sport(back.out)).toBe(53);
    expect(dport(back.out)).toBe(5000);
    expect(tail(back.out)).toBe(tail(reply));
    // Translated back, the reply is exactly what the session's own peer would have sent it.
    expect(toHex(back.out)).toBe(toHex(udpPacket(REMOTE, INNER, { sport: 53, dport: 5000, data })));
    expect(nat.counters.reflected).toBe(0);
  });

  it('endpoint-independent mapping: the same inner port to other remotes and remote ports uses the same outer port', () => {
    const nat = makeNat();
    const p = sport(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })).out);
    for (const [rem, rp] of [
      [REMOTE, 54],
      [REMOTE2, 53],
      [REMOTE2, 9999],
      [VIP(9), 1],
    ] as const) {
      const r = send(nat, 1, udpPacket(INNER, rem, { sport: 5000, dport: rp }));
      expectTranslatedOut(r, SHARED, rem);
      expect(sport(r.out)).toBe(p);
    }
    expect(nat.flows.count).toBe(5);
    expect(inUse(nat)).toEqual([0, 1, 0]);
    // Each remote's replies reach the session.
    for (const [rem, rp] of [
      [REMOTE, 53],
      [REMOTE, 54],
      [REMOTE2, 53],
      [REMOTE2, 9999],
    ] as const) {
      const b = recv(nat, udpPacket(rem, SHARED, { sport: rp, dport: p }));
      expectDelivered(b, 1, INNER);
      expect(dport(b.out)).toBe(5000);
    }
    // Another inner port is another mapping.
    const q = sport(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5001, dport: 53 })).out);
    expect(q).not.toBe(p);
    expect(inUse(nat)).toEqual([0, 2, 0]);
  });

  it('keeps an inner port that is in the shared range and free (port preservation)', () => {
    const nat = makeNat();
    const r1 = send(nat, 1, udpPacket(INNER, REMOTE, { sport: 62000, dport: 53 }));
    expect(sport(r1.out)).toBe(62000);
    expectTranslatedOut(r1, SHARED, REMOTE);
    const r2 = send(nat, 2, udpPacket(INNER, REMOTE, { sport: 62000, dport: 53 }));
    expect(sport(r2.out)).not.toBe(62000);
    expectTranslatedOut(r2, SHARED, REMOTE);
    // Preservation is per protocol: TCP 62000 is free.
    expect(sport(send(nat, 2, tcpPacket(INNER, REMOTE, { sport: 62000, dport: 80, flags: SYN })).out)).toBe(62000);
  });

  it('UDP checksum 0 ("none") stays 0 both ways while the port changes', () => {
    const nat = makeNat();
    const data = enc.encode('no checksum');
    const r = send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data, checksum: false }));
    expectTranslatedOut(r, SHARED, REMOTE);
    const p = sport(r.out);
    expect(p).not.toBe(5000);
    expect(l4cksum(r.out)).toBe(0);
    const b = recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: p, data, checksum: false }));
    expectDelivered(b, 1, INNER);
    expect(dport(b.out)).toBe(5000);
    expect(l4cksum(b.out)).toBe(0);
    // The same flow with a checksum gets one that verifies.
    const c = send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data }));
    expect(l4cksum(c.out)).not.toBe(0);
    expect(allOk(c.out)).toBe(true);
  });

  it('UDP checksums that become 0 on the way are sent as 0xffff, and every payload/port pair verifies', () => {
    // Many random datagrams: whatever the arithmetic lands on, the result verifies from scratch and is never 0.
    const rng = new Rng(0x5aed);
    // About 1000 mappings per session: past the default port quota, which this test is not about.
    const nat = makeNat({ flowCapacity: 4096, sharedPortQuota: HI - LO + 1 });
    for (let i = 0; i < 2000; i++) {
      const data = rng.bytes(rng.int(20));
      const ip = rng.u16();
      const r = send(nat, 1 + rng.int(2), udpPacket(INNER, REMOTE, { sport: ip, dport: 53, data }), NOW + i);
      expect(r.v).toBe(TO_UPLINK);
      expect(allOk(r.out)).toBe(true);
      expect(l4cksum(r.out)).not.toBe(0);
    }
  });

  it('TCP SYN / SYN-ACK / ACK / FIN / FIN / ACK through a shared mapping: ports, checksums and flow states', () => {
    const nat = makeNat();
    const T = DEFAULT_TIMEOUTS;
    const data = enc.encode('GET / HTTP/1.0\r\n\r\n');
    const out = (flags: number, now: number, d?: Uint8Array): Result => {
      const pkt = tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags, seq: 7, ack: 9, data: d });
      const r = send(nat, 1, pkt, now);
      expectTranslatedOut(r, SHARED, REMOTE);
      expect(tail(r.out)).toBe(tail(pkt));
      return r;
    };
    const syn = out(SYN, NOW);
    const p = sport(syn.out);
    expect(p).toBeGreaterThanOrEqual(LO);
    const f = nat.flows.lookupOuter(TCP, SHARED, p, REMOTE, 80);
    expect(f).not.toBe(NO_FLOW);
    expect(nat.flows.sessionOf(f)).toBe(1);
    expect(nat.flows.innerPortOf(f)).toBe(40000);
    expect(nat.flows.stateOf(f)).toBe(TCP_SYN_OUT);
    expect(nat.flows.deadlineOf(f)).toBe(NOW + T.tcpTransitory);
    const inn = (flags: number, now: number, d?: Uint8Array): Result => {
      const pkt = tcpPacket(REMOTE, SHARED, { sport: 80, dport: p, flags, seq: 9, ack: 8, data: d });
      const r = recv(nat, pkt, now);
      expectDelivered(r, 1, INNER);
      expect(dport(r.out)).toBe(40000);
      expect(sport(r.out)).toBe(80);
      expect(tail(r.out)).toBe(tail(pkt));
      return r;
    };
    inn(SYN | ACK, NOW + 1);
    expect(nat.flows.stateOf(f)).toBe(TCP_SYN_ACK_IN);
    expect(nat.flows.deadlineOf(f)).toBe(NOW + 1 + T.tcpTransitory);
    expect(sport(out(ACK | PSH, NOW + 2, data).out)).toBe(p);
    expect(nat.flows.stateOf(f)).toBe(TCP_ESTABLISHED);
    expect(nat.flows.deadlineOf(f)).toBe(NOW + 2 + T.tcpEstablished);
    inn(ACK, NOW + 3, data);
    out(FIN | ACK, NOW + 4);
    expect(nat.flows.stateOf(f)).toBe(TCP_FIN_OUT);
    inn(FIN | ACK, NOW + 5);
    expect(nat.flows.stateOf(f)).toBe(TCP_CLOSING);
    out(ACK, NOW + 6);
    expect(nat.flows.deadlineOf(f)).toBe(NOW + 6 + T.tcpTransitory);
    expect(inUse(nat)).toEqual([1, 0, 0]);
    expect(nat.flows.count).toBe(1);
  });

  it('TCP RST either way closes the flow; the port goes back after tcpClosed, and a new SYN gets one again', () => {
    const nat = makeNat();
    const T = DEFAULT_TIMEOUTS;
    const syn = send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN }));
    const p = sport(syn.out);
    // The remote refuses: RST|ACK from outside reaches the session.
    const rst = recv(nat, tcpPacket(REMOTE, SHARED, { sport: 80, dport: p, flags: RST | ACK }), NOW + 1);
    expectDelivered(rst, 1, INNER);
    expect(dport(rst.out)).toBe(40000);
    const f = nat.flows.lookupOuter(TCP, SHARED, p, REMOTE, 80);
    expect(nat.flows.stateOf(f)).toBe(TCP_CLOSED);
    expect(nat.flows.deadlineOf(f)).toBe(NOW + 1 + T.tcpClosed);
    nat.expire(NOW + 1 + T.tcpClosed);
    expect(inUse(nat)).toEqual([1, 0, 0]);
    nat.expire(NOW + 2 + T.tcpClosed);
    expect(inUse(nat)).toEqual([0, 0, 0]);
    expect(nat.flows.count).toBe(0);
    // A late segment to the old port is no flow's now: handed back to the uplink.
    const late = tcpPacket(REMOTE, SHARED, { sport: 80, dport: p, flags: ACK });
    const lr = recv(nat, late, NOW + 20);
    expect(lr.v).toBe(TO_UPLINK);
    expect(toHex(lr.out)).toBe(toHex(late));

    // A RST from the session itself, on another connection.
    const s2 = send(nat, 2, tcpPacket(INNER, REMOTE2, { sport: 40001, dport: 443, flags: SYN }), NOW + 30);
    const q = sport(s2.out);
    const rr = send(nat, 2, tcpPacket(INNER, REMOTE2, { sport: 40001, dport: 443, flags: RST }), NOW + 31);
    expectTranslatedOut(rr, SHARED, REMOTE2);
    expect(sport(rr.out)).toBe(q);
    expect(nat.flows.stateOf(nat.flows.lookupOuter(TCP, SHARED, q, REMOTE2, 443))).toBe(TCP_CLOSED);
    // A new SYN on the closed flow reuses it (and its port).
    const again = send(nat, 2, tcpPacket(INNER, REMOTE2, { sport: 40001, dport: 443, flags: SYN }), NOW + 32);
    expect(sport(again.out)).toBe(q);
    expect(nat.flows.stateOf(nat.flows.lookupOuter(TCP, SHARED, q, REMOTE2, 443))).toBe(TCP_SYN_OUT);
    expect(inUse(nat)).toEqual([1, 0, 0]);
  });

  it('a segment from outside that is not a reply opens nothing on the shared address', () => {
    const nat = makeNat();
    const syn = tcpPacket(REMOTE, SHARED, { sport: 1234, dport: 62000, flags: SYN });
    const r = recv(nat, syn);
    expect(r.v).toBe(TO_UPLINK);
    expect(toHex(r.out)).toBe(toHex(syn));
    expect(nat.flows.count).toBe(0);
    expect(nat.counters.reflected).toBe(1);
  });

  it('ICMP echo: the identifier is mapped out and back; checksums verify', () => {
    const nat = makeNat();
    const data = enc.encode('abcdefghijklmnop');
    const req = echoPacket(INNER, REMOTE, 8, 4242, 1, data);
    const r = send(nat, 1, req);
    expectTranslatedOut(r, SHARED, REMOTE);
    const id = ident(r.out);
    expect(id).toBeGreaterThanOrEqual(LO);
    expect(u16(r.out, parse(r.out).l4 + 6)).toBe(1); // sequence untouched
    expect(tail(r.out)).toBe(tail(req));
    expect(inUse(nat)).toEqual([0, 0, 1]);
    const f = nat.flows.lookupOuter(ICMP, SHARED, id, REMOTE, 0);
    expect(nat.flows.stateOf(f)).toBe(ICMP_ACTIVE);
    const reply = recv(nat, echoPacket(REMOTE, SHARED, 0, id, 1, data));
    expectDelivered(reply, 1, INNER);
    expect(toHex(reply.out)).toBe(toHex(echoPacket(REMOTE, INNER, 0, 4242, 1, data)));
    // The same identifier to another remote: same outer identifier (EIM).
    expect(ident(send(nat, 1, echoPacket(INNER, REMOTE2, 8, 4242, 1, data)).out)).toBe(id);
    expect(inUse(nat)).toEqual([0, 0, 1]);
    // An echo reply with an identifier nobody holds goes back to the uplink.
    const stray = echoPacket(REMOTE, SHARED, 0, id + 1, 1, data);
    expect(recv(nat, stray).v).toBe(TO_UPLINK);
  });

  it('a packet with IP options and trailing bytes past Total Length is translated, the options kept', () => {
    const nat = makeNat();
    const pkt = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data: enc.encode('opt') }, { options: [0x94, 0x04, 0, 0] });
    const padded = new Uint8Array(pkt.length + 4);
    padded.set(pkt);
    const r = send(nat, 1, padded);
    expect(r.v).toBe(TO_UPLINK);
    const out = r.out.subarray(0, pkt.length);
    expect(parse(out).ihl).toBe(24);
    expect(toHex(out.subarray(20, 24))).toBe('94040000');
    expect(allOk(out)).toBe(true);
    expect(toHex(r.out.subarray(pkt.length))).toBe('00000000');
  });
});

describe('two shared sessions with the same inner address', () => {
  it('the same inner port / identifier to the same remote gets different outer ports, and each its own replies', () => {
    const nat = makeNat();
    const mk = [
      (k: number): Uint8Array => udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data: enc.encode(`udp ${k}`) }),
      (k: number): Uint8Array => tcpPacket(INNER, REMOTE, { sport: 5000, dport: 80, flags: SYN, seq: k }),
      (k: number): Uint8Array => echoPacket(INNER, REMOTE, 8, 5000, k, enc.encode(`ping ${k}`)),
    ];
    const outer = new Map<string, number>();
    for (const [i, build] of mk.entries()) {
      for (const k of [1, 2]) {
        const r = send(nat, k, build(k));
        expectTranslatedOut(r, SHARED, REMOTE);
        outer.set(`${i}/${k}`, i === 2 ? ident(r.out) : sport(r.out));
      }
      expect(outer.get(`${i}/1`)).not.toBe(outer.get(`${i}/2`));
    }
    expect(inUse(nat)).toEqual([2, 2, 2]);
    // Replies, interleaved, each to its own session, with the session's payload marker intact.
    for (let round = 0; round < 3; round++) {
      for (const k of [2, 1]) {
        const pu = outer.get(`0/${k}`)!;
        const u = recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: pu, data: enc.encode(`udp ${k}`) }), NOW + round);
        expectDelivered(u, k, INNER);
        expect(dport(u.out)).toBe(5000);
        const pt = outer.get(`1/${k}`)!;
        const t = recv(nat, tcpPacket(REMOTE, SHARED, { sport: 80, dport: pt, flags: SYN | ACK, ack: k + 1 }), NOW + round);
        expectDelivered(t, k, INNER);
        expect(dport(t.out)).toBe(5000);
        const pe = outer.get(`2/${k}`)!;
        const e = recv(nat, echoPacket(REMOTE, SHARED, 0, pe, k, enc.encode(`ping ${k}`)), NOW + round);
        expectDelivered(e, k, INNER);
        expect(ident(e.out)).toBe(5000);
        // And the sessions' next packets keep their own ports.
        expect(sport(send(nat, k, mk[0]!(k), NOW + round).out)).toBe(pu);
      }
    }
    expect(nat.counters.reflected).toBe(0);
    expect(nat.flows.count).toBe(6);
  });
});

describe("reflection: packets to the shared address that are no session's", () => {
  it('go back to the uplink unchanged (TO_UPLINK) and count in counters.reflected', () => {
    const nat = makeNat();
    const p = sport(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })).out);
    const e = ident(send(nat, 1, echoPacket(INNER, REMOTE, 8, 77, 1)).out);
    const before = nat.counters.fromUplink;
    const stray: [string, Uint8Array][] = [
      ['TCP SYN to the machine (e.g. its sshd)', tcpPacket(REMOTE, SHARED, { sport: 50000, dport: 22, flags: SYN })],
      ['UDP to a mapped port from another remote', udpPacket(REMOTE2, SHARED, { sport: 53, dport: p })],
      ['UDP to a mapped port from another remote port', udpPacket(REMOTE, SHARED, { sport: 54, dport: p })],
      ['TCP to a port mapped only for UDP', tcpPacket(REMOTE, SHARED, { sport: 53, dport: p, flags: ACK })],
      ['echo request to the machine', echoPacket(REMOTE, SHARED, 8, 1, 1)],
      ['echo reply from another remote', echoPacket(REMOTE2, SHARED, 0, e, 1)],
      ['GRE (no ports)', ipv4({ src: REMOTE, dst: SHARED, proto: 47 }, new Uint8Array(12))],
      ['a later fragment', ipv4({ src: REMOTE, dst: SHARED, proto: UDP, fragOffset: 1480 }, new Uint8Array(16))],
      ['port unreachable quoting no flow', icmpErrorPacket(ROUTER, SHARED, 3, 3, udpPacket(SHARED, REMOTE, { sport: 1234, dport: 53 }))],
      ['an ICMP timestamp request', ipv4({ src: REMOTE, dst: SHARED, proto: ICMP }, new Uint8Array([13, 0, 0xf2, 0xff, 0, 0, 0, 0]))],
    ];
    stray.forEach(([what, pkt], i) => {
      const r = recv(nat, pkt);
      expect(r.v, what).toBe(TO_UPLINK);
      expect(toHex(r.out), what).toBe(toHex(pkt));
      expect(r.clean, what).toBe(true);
      expect(nat.counters.reflected, what).toBe(i + 1);
    });
    expect(nat.counters.fromUplink - before).toBe(stray.length);
    expect(nat.flows.count).toBe(2); // nothing opened
    // Not reflected: malformed packets are dropped, and addresses that are neither a VIP nor shared are no one's.
    expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: p }).subarray(0, 24)).v).toBe(DROP);
    expect(recv(nat, udpPacket(REMOTE, addr('198.18.0.2'), { sport: 53, dport: p })).v).toBe(DROP);
    expect(nat.counters.noSession).toBe(1);
    expect(nat.counters.reflected).toBe(stray.length);
  });

  // An echo request is never a reply: the machine answers pings to its own address.
  it("an echo request from a remote is the machine's, even when its identifier is a shared session's mapped one", () => {
    const nat = makeNat();
    const e = ident(send(nat, 1, echoPacket(INNER, REMOTE, 8, 77, 1)).out);
    const req = echoPacket(REMOTE, SHARED, 8, e, 1);
    const r = recv(nat, req);
    expect(r.v).toBe(TO_UPLINK);
    expect(toHex(r.out)).toBe(toHex(req));
  });

  it('a Nat without a shared address reflects nothing (address 0 is not special)', () => {
    const nat = new Nat({ maxSession: 2, flowCapacity: 16, seed: 1 });
    nat.addSession(1, INNER, VIP(1));
    expect(recv(nat, udpPacket(REMOTE, 0, { sport: 53, dport: 5000 })).v).toBe(DROP);
    expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: 5000 })).v).toBe(DROP);
    expect(nat.counters.reflected).toBe(0);
    expect(send(nat, 1, udpPacket(INNER, 0, { sport: 1, dport: 2 })).v).toBe(TO_UPLINK);
    expect(nat.counters.hairpin).toBe(0);
  });
});

describe('ICMP errors and the shared address', () => {
  /** Session `k` sends `pkt`; returns it as it left (from the shared address). */
  const leave = (nat: Nat, k: number, pkt: Uint8Array): Uint8Array => {
    const r = send(nat, k, pkt);
    expect(r.v).toBe(TO_UPLINK);
    return r.out;
  };

  /** Every checksum of a delivered error, from scratch: outer IP, ICMP (covers the quote), quoted IP header, quoted transport when whole. */
  function expectErrorOk(out: Uint8Array, wholeQuote: boolean): void {
    expect(allOk(out)).toBe(true);
    const q = quote(out);
    expect(ipHeaderOk(q)).toBe(true);
    if (wholeQuote) expect(l4Ok(q)).toBe(true);
  }

  it('port unreachable quoting a whole UDP datagram: to the owning session, quoted source address and port back to inner', () => {
    const nat = makeNat();
    const orig = udpPacket(INNER, REMOTE, { sport: 5000, dport: 9999, data: enc.encode('anyone there?') });
    const sent = leave(nat, 1, orig);
    expect(sport(sent)).not.toBe(5000);
    const err = icmpErrorPacket(REMOTE, SHARED, 3, 3, sent);
    const r = recv(nat, err);
    expectDelivered(r, 1, INNER);
    expect(parse(r.out).src).toBe(REMOTE);
    expectErrorOk(r.out, true);
    // The quote is exactly what the session sent.
    expect(toHex(quote(r.out))).toBe(toHex(orig));
    expect(nat.counters.icmpErrors).toBe(1);
    expect(nat.counters.icmpErrorsDropped).toBe(0);
  });

  it("a quote cut to IP header + 8 bytes: address and port restored, the quoted UDP checksum is the original's", () => {
    const nat = makeNat();
    const orig = udpPacket(INNER, REMOTE, { sport: 5000, dport: 9999, data: enc.encode('a longer payload, cut from the quote') });
    const sent = leave(nat, 1, orig);
    const r = recv(nat, icmpErrorPacket(ROUTER, SHARED, 3, 1, sent, 28));
    expectDelivered(r, 1, INNER);
    expectErrorOk(r.out, false);
    expect(toHex(quote(r.out))).toBe(toHex(orig.subarray(0, 28)));
  });

  it('a quoted UDP checksum of 0 stays 0', () => {
    const nat = makeNat();
    const orig = udpPacket(INNER, REMOTE, { sport: 5000, dport: 9999, data: enc.encode('x'), checksum: false });
    const sent = leave(nat, 1, orig);
    const r = recv(nat, icmpErrorPacket(REMOTE, SHARED, 3, 3, sent));
    expectDelivered(r, 1, INNER);
    expectErrorOk(r.out, true);
    expect(toHex(quote(r.out))).toBe(toHex(orig));
    expect(u16(quote(r.out), 26)).toBe(0);
  });

  it('quoted TCP, whole (the TCP checksum is fixed) and cut to 8 bytes (left alone)', () => {
    const nat = makeNat();
    const orig = tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN, seq: 123456 });
    const sent = leave(nat, 1, orig);
    const whole = recv(nat, icmpErrorPacket(ROUTER, SHARED, 3, 4, sent, sent.length, { tos: 0xc0 }));
    expectDelivered(whole, 1, INNER);
    expectErrorOk(whole.out, true);
    expect(toHex(quote(whole.out))).toBe(toHex(orig));
    const cut = recv(nat, icmpErrorPacket(ROUTER, SHARED, 11, 0, sent, 28));
    expectDelivered(cut, 1, INNER);
    expectErrorOk(cut.out, false);
    expect(toHex(quote(cut.out))).toBe(toHex(orig.subarray(0, 28)));
  });

  it('time exceeded quoting an echo request: the quoted identifier and its checksum are restored', () => {
    const nat = makeNat();
    const orig = echoPacket(INNER, REMOTE, 8, 4242, 3, enc.encode('traceroute'));
    const sent = leave(nat, 1, orig);
    expect(ident(sent)).not.toBe(4242);
    const r = recv(nat, icmpErrorPacket(ROUTER, SHARED, 11, 0, sent));
    expectDelivered(r, 1, INNER);
    expectErrorOk(r.out, true);
    expect(toHex(quote(r.out))).toBe(toHex(orig));
    // Cut to 8 bytes of the echo: identifier restored, quoted checksum fixed by the same arithmetic.
    const cut = recv(nat, icmpErrorPacket(ROUTER, SHARED, 11, 0, sent, 28));
    expectDelivered(cut, 1, INNER);
    expect(toHex(quote(cut.out))).toBe(toHex(orig.subarray(0, 28)));
  });

  it('with two shared sessions on the same inner address and port, each error goes to the session whose flow it quotes', () => {
    const nat = makeNat();
    const origs = [1, 2].map((k) => udpPacket(INNER, REMOTE, { sport: 5000, dport: 9999, data: enc.encode(`s${k}`) }));
    const sent = [1, 2].map((k) => leave(nat, k, origs[k - 1]!));
    expect(sport(sent[0]!)).not.toBe(sport(sent[1]!));
    for (const k of [2, 1, 2]) {
      const r = recv(nat, icmpErrorPacket(REMOTE, SHARED, 3, 3, sent[k - 1]!));
      expectDelivered(r, k, INNER);
      expectErrorOk(r.out, true);
      expect(toHex(quote(r.out))).toBe(toHex(origs[k - 1]!));
    }
    // Echo too: same identifier in both sessions.
    const echoes = [1, 2].map((k) => leave(nat, k, echoPacket(INNER, REMOTE, 8, 1, k)));
    for (const k of [2, 1]) {
      const r = recv(nat, icmpErrorPacket(ROUTER, SHARED, 11, 0, echoes[k - 1]!));
      expectDelivered(r, k, INNER);
      expect(ident(quote(r.out))).toBe(1);
    }
  });

  it('errors that quote no shared flow, or not the shared address, or carry a bad checksum, are not delivered', () => {
    const nat = makeNat();
    const sent = leave(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 9999 }));
    const p = sport(sent);
    const bad: [string, Uint8Array][] = [
      ['another remote port', icmpErrorPacket(REMOTE, SHARED, 3, 3, udpPacket(SHARED, REMOTE, { sport: p, dport: 9998 }))],
      ['another outer port', icmpErrorPacket(REMOTE, SHARED, 3, 3, udpPacket(SHARED, REMOTE, { sport: p + 1, dport: 9999 }))],
      [
        'the quoted source is not the shared address',
        icmpErrorPacket(REMOTE, SHARED, 3, 3, udpPacket(VIP(3), REMOTE, { sport: p, dport: 9999 })),
      ],
      [
        'TCP where the flow is UDP',
        icmpErrorPacket(REMOTE, SHARED, 3, 3, tcpPacket(SHARED, REMOTE, { sport: p, dport: 9999, flags: SYN })),
      ],
      ['a quote too short', icmpErrorPacket(REMOTE, SHARED, 3, 3, sent, 27)],
    ];
    for (const [what, pkt] of bad) {
      const r = recv(nat, pkt);
      expect(r.v, what).toBe(TO_UPLINK); // reflected: maybe the machine's own
      expect(toHex(r.out), what).toBe(toHex(pkt));
    }
    expect(nat.counters.reflected).toBe(bad.length);
    expect(nat.counters.icmpErrorsDropped).toBe(bad.length);
    // Right quote, wrong ICMP checksum: counted malformed and not laundered into a delivery.
    const err = icmpErrorPacket(REMOTE, SHARED, 3, 3, sent);
    err[parse(err).l4 + 2]! ^= 0x01;
    const r = recv(nat, err);
    expect(r.v).toBeLessThanOrEqual(0);
    expect(toHex(r.out)).toBe(toHex(err));
    expect(nat.counters.malformed).toBe(1);
  });

  it('an error a shared session sends about a packet it received: quoted destination becomes the shared address and outer port', () => {
    const nat = makeNat();
    // Session 1 talks to REMOTE:53 from 5000; session 2 the same, to get a different outer port.
    const p1 = sport(leave(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })));
    const p2 = sport(leave(nat, 2, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })));
    for (const [k, p] of [
      [1, p1],
      [2, p2],
    ] as const) {
      // A reply arrives, the session's socket is gone, its kernel sends port unreachable quoting the reply.
      const arrived = udpPacket(REMOTE, SHARED, { sport: 53, dport: p, data: enc.encode(`late ${k}`) });
      const got = recv(nat, arrived);
      expect(got.v).toBe(k);
      const err = icmpErrorPacket(INNER, REMOTE, 3, 3, got.out);
      const r = send(nat, k, err);
      expectTranslatedOut(r, SHARED, REMOTE);
      expectErrorOk(r.out, true);
      // The remote sees its own packet quoted, as it sent it.
      expect(toHex(quote(r.out))).toBe(toHex(arrived));
      // Cut to 28 bytes as well.
      const cut = send(nat, k, icmpErrorPacket(INNER, REMOTE, 3, 3, got.out, 28));
      expectTranslatedOut(cut, SHARED, REMOTE);
      expect(toHex(quote(cut.out))).toBe(toHex(arrived.subarray(0, 28)));
    }
    // TCP: an error about a SYN-ACK the session received.
    const pt = sport(leave(nat, 1, tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN })));
    const synack = tcpPacket(REMOTE, SHARED, { sport: 80, dport: pt, flags: SYN | ACK });
    const got = recv(nat, synack);
    expect(got.v).toBe(1);
    const r = send(nat, 1, icmpErrorPacket(INNER, REMOTE, 3, 2, got.out));
    expectTranslatedOut(r, SHARED, REMOTE);
    expectErrorOk(r.out, true);
    expect(toHex(quote(r.out))).toBe(toHex(synack));
    // Echo: an error about an echo reply it received.
    const pe = ident(leave(nat, 2, echoPacket(INNER, REMOTE, 8, 9, 1)));
    const reply = echoPacket(REMOTE, SHARED, 0, pe, 1, enc.encode('pong'));
    const gotE = recv(nat, reply);
    expect(gotE.v).toBe(2);
    const re = send(nat, 2, icmpErrorPacket(INNER, REMOTE, 3, 3, gotE.out));
    expectTranslatedOut(re, SHARED, REMOTE);
    expectErrorOk(re.out, true);
    expect(toHex(quote(re.out))).toBe(toHex(reply));
    // Quoting nothing the session has a flow for: dropped.
    const none = send(nat, 1, icmpErrorPacket(INNER, REMOTE, 3, 3, udpPacket(REMOTE, INNER, { sport: 53, dport: 5999 })));
    expect(none.v).toBe(DROP);
    // Session 1 has 5000 <-> REMOTE:53 of its own (session 2 has the same inner flow): its own outer port goes in the quote.
    const other = send(nat, 1, icmpErrorPacket(INNER, REMOTE, 3, 3, udpPacket(REMOTE, INNER, { sport: 53, dport: 5000 })));
    expect(other.v).toBe(TO_UPLINK);
    expect(u16(quote(other.out), 22)).toBe(p1);
    expect(nat.counters.icmpErrorsDropped).toBe(1);
  });
});

describe('hairpin through the shared address', () => {
  it('a shared session reaching a VIP session, and that session answering to the shared address and outer port', () => {
    for (const [k, addrK] of [
      [3, INNER],
      [4, VIP(4)],
    ] as const) {
      const nat = makeNat();
      const dst = k === 3 ? VIP(3) : VIP(4);
      const data = enc.encode(`to ${k}`);
      const r = send(nat, 1, udpPacket(INNER, dst, { sport: 5000, dport: 7000, data }));
      expect(r.v).toBe(k);
      expect(r.clean).toBe(true);
      const h = parse(r.out);
      expect(h.src).toBe(SHARED);
      expect(h.dst).toBe(addrK);
      const p = sport(r.out);
      expect(p).toBeGreaterThanOrEqual(LO);
      expect(dport(r.out)).toBe(7000);
      expect(allOk(r.out)).toBe(true);
      // The answer, to the shared address on the session's outer port, goes to session 1.
      const a = send(nat, k, udpPacket(addrK, SHARED, { sport: 7000, dport: p, data }));
      expect(a.v).toBe(1);
      expect(parse(a.out).src).toBe(dst);
      expect(parse(a.out).dst).toBe(INNER);
      expect(sport(a.out)).toBe(7000);
      expect(dport(a.out)).toBe(5000);
      expect(allOk(a.out)).toBe(true);
      expect(nat.counters.hairpin).toBe(2);
      expect(nat.counters.reflected).toBe(0);
      // TCP and echo the same way.
      const syn = send(nat, 1, tcpPacket(INNER, dst, { sport: 40000, dport: 8080, flags: SYN }));
      expect(syn.v).toBe(k);
      const synack = send(nat, k, tcpPacket(addrK, SHARED, { sport: 8080, dport: sport(syn.out), flags: SYN | ACK }));
      expect(synack.v).toBe(1);
      expect(dport(synack.out)).toBe(40000);
      expect(allOk(synack.out)).toBe(true);
      const ping = send(nat, 1, echoPacket(INNER, dst, 8, 3, 1));
      expect(ping.v).toBe(k);
      const pong = send(nat, k, echoPacket(addrK, SHARED, 0, ident(ping.out), 1));
      expect(pong.v).toBe(1);
      expect(ident(pong.out)).toBe(3);
      expect(allOk(pong.out)).toBe(true);
    }
  });

  it("between two shared sessions: once each has sent to the other's outer port, both directions are delivered", () => {
    const nat = makeNat();
    // Each session has a mapping from inner port 5000, made by talking to a remote.
    const p1 = sport(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 3478 })).out);
    const p2 = sport(send(nat, 2, udpPacket(INNER, REMOTE, { sport: 5000, dport: 3478 })).out);
    expect(p1).not.toBe(p2);
    // Session 1 sends first: session 2 has no flow towards it yet, so, like any unsolicited packet to
    // the shared address, it goes to the uplink's own stack (translated: it left from the shared address).
    const first = send(nat, 1, udpPacket(INNER, SHARED, { sport: 5000, dport: p2, data: enc.encode('punch') }));
    expect(first.v).toBe(TO_UPLINK);
    expect(parse(first.out).src).toBe(SHARED);
    expect(sport(first.out)).toBe(p1); // the same mapping (EIM)
    expect(allOk(first.out)).toBe(true);
    expect(nat.counters.reflected).toBe(1);
    // Session 2 sends to session 1's outer port: session 1 has the flow now.
    const b = send(nat, 2, udpPacket(INNER, SHARED, { sport: 5000, dport: p1, data: enc.encode('hello 1') }));
    expect(b.v).toBe(1);
    expect(parse(b.out).src).toBe(SHARED);
    expect(parse(b.out).dst).toBe(INNER);
    expect(sport(b.out)).toBe(p2);
    expect(dport(b.out)).toBe(5000);
    expect(allOk(b.out)).toBe(true);
    // And back.
    const c = send(nat, 1, udpPacket(INNER, SHARED, { sport: 5000, dport: p2, data: enc.encode('hello 2') }));
    expect(c.v).toBe(2);
    expect(sport(c.out)).toBe(p1);
    expect(dport(c.out)).toBe(5000);
    expect(allOk(c.out)).toBe(true);
    expect(inUse(nat)).toEqual([0, 2, 0]);
    expect(nat.counters.reflected).toBe(1);
  });
});

describe('expiry, session removal and exhaustion release and reuse ports', () => {
  const T = DEFAULT_TIMEOUTS;

  it('each kind of flow gives its port back after its timeout (DEFAULT_TIMEOUTS), not before', () => {
    const cases: [string, (k: number) => Uint8Array, number, number][] = [
      ['udp', (k) => udpPacket(INNER, REMOTE, { sport: 5000 + k, dport: 53 }), T.udp, 1],
      ['icmp', (k) => echoPacket(INNER, REMOTE, 8, 5000 + k, 1), T.icmp, 2],
      ['tcp syn', (k) => tcpPacket(INNER, REMOTE, { sport: 5000 + k, dport: 80, flags: SYN }), T.tcpTransitory, 0],
      ['tcp mid-stream', (k) => tcpPacket(INNER, REMOTE, { sport: 5000 + k, dport: 80, flags: ACK }), T.tcpEstablished, 0],
      ['tcp rst', (k) => tcpPacket(INNER, REMOTE, { sport: 5000 + k, dport: 80, flags: RST }), T.tcpClosed, 0],
    ];
    for (const [what, mk, timeout, slot] of cases) {
      const nat = makeNat();
      for (const k of [1, 2]) expect(send(nat, k, mk(k)).v, what).toBe(TO_UPLINK);
      expect(inUse(nat)[slot], what).toBe(2);
      nat.expire(NOW + timeout);
      expect(inUse(nat)[slot], what).toBe(2);
      nat.expire(NOW + timeout + 1);
      expect(inUse(nat), what).toEqual([0, 0, 0]);
      expect(nat.flows.count, what).toBe(0);
      expect(nat.counters.flowsExpired, what).toBe(2);
    }
  });

  it('the port stays while any flow of the mapping lives, and goes with the last one', () => {
    const nat = makeNat();
    const p = sport(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }), NOW).out);
    expect(sport(send(nat, 1, udpPacket(INNER, REMOTE2, { sport: 5000, dport: 53 }), NOW + 200).out)).toBe(p);
    nat.expire(NOW + T.udp + 1);
    expect(nat.flows.count).toBe(1);
    expect(inUse(nat)).toEqual([0, 1, 0]);
    // The first remote's flow is gone: its replies are no one's now; the second's still arrive.
    expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: p }), NOW + T.udp + 2).v).toBe(TO_UPLINK);
    expect(recv(nat, udpPacket(REMOTE2, SHARED, { sport: 53, dport: p }), NOW + T.udp + 2).v).toBe(1);
    // That reply refreshed the second flow.
    nat.expire(NOW + 200 + T.udp + 1);
    expect(inUse(nat)).toEqual([0, 1, 0]);
    nat.expire(NOW + T.udp + 2 + T.udp + 1);
    expect(inUse(nat)).toEqual([0, 0, 0]);
    expect(nat.flows.count).toBe(0);
  });

  it('port exhaustion drops new mappings (counters.portsExhausted); expiry frees the ports and new flows reuse them', () => {
    const nat = makeNat({ shared: { address: SHARED, portLo: 61000, portHi: 61001 } });
    /** Session `_k`'s datagram from inner port `ip` (the session is only for the reader). */
    const u = (_k: number, ip: number, rem = REMOTE): Uint8Array => udpPacket(INNER, rem, { sport: ip, dport: 53 });
    const a = sport(send(nat, 1, u(1, 1)).out);
    const b = sport(send(nat, 2, u(2, 1)).out);
    expect([a, b].sort()).toEqual([61000, 61001]);
    expect(inUse(nat)).toEqual([0, 2, 0]);
    const flowsBefore = nat.flows.count;
    for (const [k, ip] of [
      [1, 2],
      [2, 2],
      [1, 61000],
    ] as const) {
      const r = send(nat, k, u(k, ip));
      expect(r.v).toBe(DROP);
    }
    expect(nat.counters.portsExhausted).toBe(3);
    expect(nat.flows.count).toBe(flowsBefore);
    expect(inUse(nat)).toEqual([0, 2, 0]);
    // Existing mappings need no new port: a new remote still works (EIM).
    const again = send(nat, 1, u(1, 1, REMOTE2));
    expectTranslatedOut(again, SHARED, REMOTE2);
    expect(sport(again.out)).toBe(a);
    // Other protocols have their own ports.
    expect(send(nat, 1, echoPacket(INNER, REMOTE, 8, 2, 1)).v).toBe(TO_UPLINK);
    expect(send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 2, dport: 80, flags: SYN })).v).toBe(TO_UPLINK);
    expect(inUse(nat)).toEqual([1, 2, 1]);
    expect(nat.counters.portsExhausted).toBe(3);

    nat.expire(NOW + T.udp + 1);
    expect(inUse(nat)).toEqual([0, 0, 0]);
    expect(nat.flows.count).toBe(0);
    // The freed ports serve new mappings.
    const later = NOW + T.udp + 2;
    const c = send(nat, 1, u(1, 2), later);
    const d = send(nat, 2, u(2, 2), later);
    expectTranslatedOut(c, SHARED, REMOTE);
    expectTranslatedOut(d, SHARED, REMOTE);
    expect([sport(c.out), sport(d.out)].sort()).toEqual([61000, 61001]);
    expect(send(nat, 2, u(2, 3), later).v).toBe(DROP);
    expect(nat.counters.portsExhausted).toBe(4);
    // Replies reach the new owners.
    expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: sport(c.out) }), later).v).toBe(1);
    expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: sport(d.out) }), later).v).toBe(2);
  });

  it("removeSession releases the session's ports (all protocols) and no one else's", () => {
    const nat = makeNat();
    const mine = [
      sport(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })).out),
      sport(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5001, dport: 53 })).out),
      sport(send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 5000, dport: 80, flags: SYN })).out),
      ident(send(nat, 1, echoPacket(INNER, REMOTE, 8, 5000, 1)).out),
    ];
    const theirs = sport(send(nat, 2, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })).out);
    send(nat, 3, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
    expect(inUse(nat)).toEqual([1, 3, 1]);
    expect(nat.flows.count).toBe(6);
    nat.removeSession(1);
    expect(inUse(nat)).toEqual([0, 1, 0]);
    expect(nat.flows.count).toBe(2);
    // Replies to the old ports are no one's now.
    expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: mine[0]! })).v).toBe(TO_UPLINK);
    expect(recv(nat, echoPacket(REMOTE, SHARED, 0, mine[3]!, 1)).v).toBe(TO_UPLINK);
    expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: theirs })).v).toBe(2);
    // A removed session sends nothing.
    expect(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })).v).toBe(DROP);
    nat.removeSession(1); // no-op
    expect(inUse(nat)).toEqual([0, 1, 0]);
    // Back as a shared session: ports again.
    nat.addSharedSession(1, INNER);
    expect(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })).v).toBe(TO_UPLINK);
    expect(inUse(nat)).toEqual([0, 2, 0]);
    nat.removeSession(2);
    nat.removeSession(1);
    nat.removeSession(3);
    expect(inUse(nat)).toEqual([0, 0, 0]);
    expect(nat.flows.count).toBe(0);
  });

  it('a flow table full of assured flows: the new shared flow is dropped (counters.tableFull) and its port not kept', () => {
    const nat = makeNat({ flowCapacity: 2 });
    /** A datagram out and its answer, so that the flow is assured (never evicted). */
    const answered = (id: number, p: number, now = NOW): void => {
      const o = send(nat, id, udpPacket(INNER, REMOTE, { sport: p, dport: 53 }), now);
      expect(o.v).toBe(TO_UPLINK);
      expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: sport(o.out) }), now).v).toBe(id);
    };
    answered(1, 1);
    answered(1, 2);
    expect(inUse(nat)).toEqual([0, 2, 0]);
    // A new mapping and an existing mapping to a new remote: neither fits, neither leaves, no port leaks.
    expect(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 3, dport: 53 })).v).toBe(DROP);
    expect(send(nat, 1, udpPacket(INNER, REMOTE2, { sport: 1, dport: 53 })).v).toBe(DROP);
    expect(nat.counters.tableFull).toBe(2);
    expect(inUse(nat)).toEqual([0, 2, 0]);
    nat.expire(NOW + T.udp + 1);
    expect(inUse(nat)).toEqual([0, 0, 0]);
    // With the table full again, a VIP session still leaves without a flow (its mapping is one-to-one); a shared one cannot.
    const later = NOW + T.udp + 2;
    answered(2, 1, later);
    answered(2, 2, later);
    expect(send(nat, 3, udpPacket(INNER, REMOTE, { sport: 3, dport: 53 }), later).v).toBe(TO_UPLINK);
    expect(send(nat, 2, udpPacket(INNER, REMOTE, { sport: 3, dport: 53 }), later).v).toBe(DROP);
    expect(nat.counters.tableFull).toBe(4);
    expect(inUse(nat)).toEqual([0, 2, 0]);
  });
});

describe('churn: seeded random traffic against a model of mappings and flows', () => {
  it('ports in use, outer ports, replies and reflections match the model over 6000 steps', () => {
    const rng = new Rng(0x5ba4ed);
    const PLO = 61000;
    const PHI = 61015;
    const SIZE = PHI - PLO + 1;
    const nat = new Nat({ maxSession: 8, flowCapacity: 4096, seed: 7, shared: { address: SHARED, portLo: PLO, portHi: PHI } });
    const SESSIONS = [1, 2, 3, 4, 5];
    const active = new Set<number>();
    for (const s of SESSIONS) {
      nat.addSharedSession(s, INNER);
      active.add(s);
    }
    const PROTOS = [TCP, UDP, ICMP];
    const slotOf = (proto: number): number => (proto === TCP ? 0 : proto === UDP ? 1 : 2);
    const INNER_PORTS = [1000, 1001, 1002, 1003, 1004, 1005, 61000, 61001, 61002, 61010, 61015, 65000];
    const REMOTES = [REMOTE, REMOTE2, ROUTER];
    const RPORTS = [53, 80];

    type St = 'syn' | 'half' | 'est' | 'closed' | 'udp' | 'icmp';
    interface MFlow {
      s: number;
      proto: number;
      ip: number;
      r: number;
      rp: number;
      st: St;
      deadline: number;
    }
    const flows = new Map<string, MFlow>();
    const maps = new Map<string, { port: number; refs: number }>();
    const owners = [new Map<number, string>(), new Map<number, string>(), new Map<number, string>()];
    const fkey = (s: number, proto: number, ip: number, r: number, rp: number): string => `${s}/${proto}/${ip}/${r}/${rp}`;
    const mkey = (s: number, proto: number, ip: number): string => `${s}/${proto}/${ip}`;
    const T = DEFAULT_TIMEOUTS;
    const timeout = (st: St): number =>
      st === 'syn' || st === 'half'
        ? T.tcpTransitory
        : st === 'est'
          ? T.tcpEstablished
          : st === 'closed'
            ? T.tcpClosed
            : st === 'udp'
              ? T.udp
              : T.icmp;
    /** The TCP transitions this test drives (SYN, ACK, RST out; SYN-ACK, ACK, RST in), written out independently of state.ts. */
    const nextTcp = (st: St | null, flags: number, out: boolean): St => {
      if (flags & RST) return 'closed';
      const bareSyn = (flags & (SYN | ACK)) === SYN;
      if (st === null) return bareSyn ? 'syn' : 'est';
      if (st === 'syn') return !out && flags & SYN ? 'half' : 'syn';
      if (st === 'half') return out && flags & ACK ? 'est' : 'half';
      if (st === 'closed') return bareSyn ? 'syn' : 'closed';
      return st;
    };
    const drop = (f: MFlow): void => {
      flows.delete(fkey(f.s, f.proto, f.ip, f.r, f.rp));
      const mk = mkey(f.s, f.proto, f.ip);
      const m = maps.get(mk)!;
      if (--m.refs === 0) {
        maps.delete(mk);
        owners[slotOf(f.proto)]!.delete(m.port);
      }
    };
    const build = (proto: number, src: number, dst: number, sp: number, dp: number, flags: number, out: boolean): Uint8Array =>
      proto === TCP
        ? tcpPacket(src, dst, { sport: sp, dport: dp, flags })
        : proto === UDP
          ? udpPacket(src, dst, { sport: sp, dport: dp, data: rng.bytes(rng.int(8)), checksum: rng.int(8) !== 0 })
          : echoPacket(src, dst, out ? 8 : 0, out ? sp : dp, rng.u16());

    let now = NOW;
    let reflected = 0;
    let exhausted = 0;
    let deliveredIn = 0;
    const problems: string[] = [];
    for (let i = 0; i < 6000 && problems.length === 0; i++) {
      now += rng.int(20) === 0 ? rng.int(60) : rng.int(3);
      const op = rng.int(100);
      if (op < 50 && active.size > 0) {
        // A session sends.
        const s = rng.pick([...active]);
        const proto = rng.pick(PROTOS);
        const ip = rng.pick(INNER_PORTS);
        const r = rng.pick(REMOTES);
        const rp = proto === ICMP ? 0 : rng.pick(RPORTS);
        const flags = proto === TCP ? rng.pick([SYN, SYN, ACK, RST]) : 0;
        const v = send(nat, s, build(proto, INNER, r, ip, rp, flags, true), now);
        const k = fkey(s, proto, ip, r, rp);
        const mk = mkey(s, proto, ip);
        let f = flows.get(k);
        if (!f) {
          const m = maps.get(mk);
          const o = owners[slotOf(proto)]!;
          if (m) {
            m.refs++;
          } else if (o.size === SIZE) {
            exhausted++;
            if (v.v !== DROP) problems.push(`${i}: ${k} with every port taken: verdict ${v.v}`);
            continue;
          } else {
            const p = proto === ICMP ? ident(v.out) : sport(v.out);
            if (v.v !== TO_UPLINK) problems.push(`${i}: ${k} new mapping: verdict ${v.v}`);
            if (!(p >= PLO && p <= PHI)) problems.push(`${i}: ${k} got ${p}, outside the range`);
            if (o.has(p)) problems.push(`${i}: ${k} got ${p}, held by ${o.get(p)}`);
            if (ip >= PLO && ip <= PHI && !o.has(ip) && p !== ip) problems.push(`${i}: ${k} got ${p}, inner port ${ip} was free`);
            maps.set(mk, { port: p, refs: 1 });
            o.set(p, mk);
          }
          f = { s, proto, ip, r, rp, st: proto === UDP ? 'udp' : proto === ICMP ? 'icmp' : nextTcp(null, flags, true), deadline: 0 };
          flows.set(k, f);
        } else if (proto === TCP) {
          f.st = nextTcp(f.st, flags, true);
        }
        f.deadline = now + timeout(f.st);
        const want = maps.get(mk)!.port;
        const got = proto === ICMP ? ident(v.out) : sport(v.out);
        if (v.v !== TO_UPLINK || got !== want || parse(v.out).src !== SHARED || !allOk(v.out)) {
          problems.push(`${i}: ${k} out: verdict ${v.v}, port ${got} (want ${want}), ok ${allOk(v.out)}`);
        }
      } else if (op < 80) {
        // Something arrives at the shared address: mostly replies to live flows, sometimes strays.
        const live = [...flows.values()];
        let proto: number;
        let r: number;
        let rp: number;
        let p: number;
        if (live.length > 0 && rng.int(5) !== 0) {
          const f = rng.pick(live);
          proto = f.proto;
          r = f.r;
          rp = f.rp;
          p = maps.get(mkey(f.s, f.proto, f.ip))!.port;
        } else {
          proto = rng.pick(PROTOS);
          r = rng.pick(REMOTES);
          rp = proto === ICMP ? 0 : rng.pick(RPORTS);
          p = PLO + rng.int(SIZE + 2) - 1;
        }
        const flags = proto === TCP ? rng.pick([SYN | ACK, ACK, RST]) : 0;
        const pkt = build(proto, r, SHARED, rp, p, flags, false);
        const v = recv(nat, pkt, now);
        const f = [...flows.values()].find(
          (x) => x.proto === proto && x.r === r && x.rp === rp && maps.get(mkey(x.s, x.proto, x.ip))!.port === p,
        );
        if (f) {
          deliveredIn++;
          if (proto === TCP) f.st = nextTcp(f.st, flags, false);
          f.deadline = now + timeout(f.st);
          const got = proto === ICMP ? ident(v.out) : dport(v.out);
          if (v.v !== f.s || got !== f.ip || parse(v.out).dst !== INNER || !allOk(v.out)) {
            problems.push(`${i}: reply for ${fkey(f.s, f.proto, f.ip, f.r, f.rp)}: verdict ${v.v}, port ${got}, ok ${allOk(v.out)}`);
          }
        } else {
          reflected++;
          if (v.v !== TO_UPLINK || toHex(v.out) !== toHex(pkt)) problems.push(`${i}: stray ${proto}/${r}:${rp} -> ${p}: verdict ${v.v}`);
        }
      } else if (op < 92) {
        nat.expire(now);
        for (const f of [...flows.values()]) if (f.deadline < now) drop(f);
      } else if (op < 96) {
        const s = rng.pick(SESSIONS);
        nat.removeSession(s);
        active.delete(s);
        for (const f of [...flows.values()]) if (f.s === s) drop(f);
      } else {
        const s = rng.pick(SESSIONS);
        if (!active.has(s)) {
          nat.addSharedSession(s, INNER);
          active.add(s);
        }
      }
      const want = owners.map((o) => o.size);
      const got = nat.sharedPortsInUse();
      if (got.join() !== want.join()) problems.push(`${i}: sharedPortsInUse ${got.join()}, model ${want.join()}`);
      if (nat.flows.count !== flows.size) problems.push(`${i}: ${nat.flows.count} flows, model ${flows.size}`);
      if (i % 100 === 0) {
        for (const f of flows.values()) {
          const n = nat.flows.lookupInner(f.s, f.proto, INNER, f.ip, f.r, f.rp);
          const port = maps.get(mkey(f.s, f.proto, f.ip))!.port;
          if (n === NO_FLOW || nat.flows.outerPortOf(n) !== port || nat.flows.deadlineOf(n) !== f.deadline) {
            problems.push(
              `${i}: flow ${fkey(f.s, f.proto, f.ip, f.r, f.rp)}: table ${n}, port ${n === NO_FLOW ? '-' : nat.flows.outerPortOf(n)} (${port}), deadline ${n === NO_FLOW ? '-' : nat.flows.deadlineOf(n)} (${f.deadline})`,
            );
          }
        }
      }
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(nat.counters.reflected).toBe(reflected);
    expect(nat.counters.portsExhausted).toBe(exhausted);
    // The run really went through every regime.
    expect(exhausted).toBeGreaterThan(20);
    expect(reflected).toBeGreaterThan(100);
    expect(deliveredIn).toBeGreaterThan(1000);
    expect(nat.counters.flowsExpired).toBeGreaterThan(100);
  });
});

describe('fuzz: random and mutated packets to the shared address never throw', () => {
  function mutate(rng: Rng, p: Uint8Array): Uint8Array {
    const q = p.slice();
    const n = 1 + rng.int(3);
    for (let i = 0; i < n; i++) {
      const at = rng.int(4) === 0 ? rng.int(q.length) : rng.int(Math.min(q.length, 64));
      q[at] = rng.bool() ? rng.u8() : q[at]! ^ (1 << rng.int(8));
    }
    if (rng.int(5) === 0) return q.slice(0, rng.int(q.length + 1));
    return q;
  }

  /** Checksum validity (IP header; transport for unfragmented TCP/UDP/ICMP) as a string, to compare before and after. */
  function validity(p: Uint8Array): string {
    if (p.length < 20) return 'short';
    const h = parse(p);
    const l4 = h.fragOffset === 0 && !h.mf && [TCP, UDP, ICMP].includes(h.proto) && h.totalLength <= p.length && h.totalLength >= h.ihl + 8;
    return `${ipHeaderOk(p)}/${l4 ? l4Ok(p.subarray(0, h.totalLength)) : '-'}`;
  }

  it('10000 random buffers and 10000 mutations, both ways; reflected packets are untouched; ports stay consistent', () => {
    const rng = new Rng(0x54a2ed);
    const nat = makeNat({ shared: { address: SHARED, portLo: 61000, portHi: 61063 } });
    // Live shared flows to aim at, and valid packets to mutate.
    const inn: Uint8Array[] = [];
    const out: [number, Uint8Array][] = [];
    for (const k of [1, 2]) {
      const data = rng.bytes(rng.int(24));
      const u = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data });
      const t = tcpPacket(INNER, REMOTE, { sport: 5000, dport: 80, flags: SYN, data });
      const e = echoPacket(INNER, REMOTE, 8, 5000, 1, data);
      const su = send(nat, k, u).out;
      const st = send(nat, k, t).out;
      const se = send(nat, k, e).out;
      inn.push(
        udpPacket(REMOTE, SHARED, { sport: 53, dport: sport(su), data }),
        tcpPacket(REMOTE, SHARED, { sport: 80, dport: sport(st), flags: SYN | ACK, data }),
        echoPacket(REMOTE, SHARED, 0, ident(se), 1, data),
        icmpErrorPacket(REMOTE, SHARED, 3, 3, su),
        icmpErrorPacket(ROUTER, SHARED, 11, 0, st, 28),
        icmpErrorPacket(ROUTER, SHARED, 11, 0, se),
        ipv4({ src: REMOTE, dst: SHARED, proto: UDP, fragOffset: 64 }, data),
      );
      out.push(
        [k, u],
        [k, t],
        [k, e],
        [k, udpPacket(INNER, SHARED, { sport: 5000, dport: sport(su), data })],
        [k, icmpErrorPacket(INNER, REMOTE, 3, 3, udpPacket(REMOTE, INNER, { sport: 53, dport: 5000, data }))],
        [k, ipv4({ src: INNER, dst: REMOTE, proto: UDP, fragOffset: 64 }, data)],
      );
    }
    out.push(
      [3, udpPacket(INNER, SHARED, { sport: 7, dport: 61000 })],
      [4, tcpPacket(VIP(4), SHARED, { sport: 7, dport: 61001, flags: ACK })],
    );

    const problems: string[] = [];
    const run = (what: string, id: number, p: Uint8Array, now: number, fromSession: boolean): void => {
      try {
        const r = fromSession ? send(nat, id, p, now) : recv(nat, p, now);
        if (!(r.v === DROP || r.v === TO_UPLINK || (r.v >= 1 && r.v <= 8))) problems.push(`${what}: verdict ${r.v}`);
        if (!r.clean) problems.push(`${what}: wrote outside the packet`);
        if (r.v !== DROP && validity(p) !== validity(r.out))
          problems.push(`${what}: checksum validity ${validity(p)} -> ${validity(r.out)}: ${toHex(p)}`);
        // From the uplink, a packet handed back must be exactly what came in.
        if (!fromSession && r.v === TO_UPLINK && toHex(r.out) !== toHex(p)) problems.push(`${what}: reflected but changed: ${toHex(p)}`);
      } catch (e) {
        problems.push(`${what}: threw ${String(e)} on ${toHex(p)}`);
      }
    };
    for (let i = 0; i < 10000; i++) {
      const len = rng.int(100);
      const p = rng.bytes(len);
      if (len > 0 && rng.int(3) !== 0) p[0] = 0x45;
      if (len >= 20 && rng.int(3) !== 0) {
        p[2] = len >>> 8;
        p[3] = len & 0xff;
        p[9] = rng.pick([1, 6, 17, 1, 6, 17, rng.u8()]);
        if (rng.bool()) p[6] = p[7] = 0;
        p.set([198, 18, 0, 1], 16); // to the shared address
        if (rng.bool()) p.set([10, 0, 2, 100], 12);
        // Often aim the destination port (or echo identifier) into the shared range.
        if (len >= 28 && rng.bool()) {
          const port = 61000 + rng.int(64);
          const o = p[9] === 1 ? 24 : 22;
          p[o] = port >>> 8;
          p[o + 1] = port & 0xff;
        }
      }
      const fromSession = rng.int(3) === 0;
      run(`random ${i}`, fromSession ? rng.pick([0, 1, 2, 3, 4, 9]) : 0, p, i, fromSession);
      if (i % 500 === 0) nat.expire(i);
    }
    for (let i = 0; i < 10000; i++) {
      const fromSession = rng.int(3) === 0;
      const [id, base] = fromSession ? rng.pick(out) : [0, rng.pick(inn)];
      run(`mutation ${i}`, id, mutate(rng, base), 10000 + i, fromSession);
      if (i % 1000 === 0) nat.expire(10000 + i);
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(nat.counters.reflected).toBeGreaterThan(1000);
    expect(nat.counters.malformed).toBeGreaterThan(500);

    // The flow table and the port allocator agree: one outer port per live mapping, none shared between mappings.
    const t = nat.flows;
    const mapping = [new Map<string, number>(), new Map<string, number>(), new Map<string, number>()];
    const portOwner = [new Map<number, string>(), new Map<number, string>(), new Map<number, string>()];
    let live = 0;
    for (let f = 0; f < t.capacity; f++) {
      if (t.stateOf(f) === 0) continue;
      live++;
      if (t.lookupInner(t.sessionOf(f), t.protoOf(f), t.innerAddrOf(f), t.innerPortOf(f), t.remoteAddrOf(f), t.remotePortOf(f)) !== f)
        problems.push(`flow ${f}: not found from inside`);
      if (t.lookupOuter(t.protoOf(f), t.outerAddrOf(f), t.outerPortOf(f), t.remoteAddrOf(f), t.remotePortOf(f)) !== f)
        problems.push(`flow ${f}: not found from outside`);
      if (t.outerAddrOf(f) !== SHARED) continue;
      const slot = t.protoOf(f) === TCP ? 0 : t.protoOf(f) === UDP ? 1 : 2;
      const key = `${t.sessionOf(f)}/${t.innerPortOf(f)}`;
      const port = t.outerPortOf(f);
      if (mapping[slot]!.has(key) && mapping[slot]!.get(key) !== port)
        problems.push(`mapping ${slot}/${key}: ports ${mapping[slot]!.get(key)} and ${port}`);
      if (portOwner[slot]!.has(port) && portOwner[slot]!.get(port) !== key)
        problems.push(`port ${slot}/${port}: ${portOwner[slot]!.get(port)} and ${key}`);
      mapping[slot]!.set(key, port);
      portOwner[slot]!.set(port, key);
    }
    expect(live).toBe(t.count);
    expect(nat.sharedPortsInUse()).toEqual(mapping.map((m) => m.size));
    expect(problems.slice(0, 10)).toEqual([]);
    // Everything expires and every port comes back.
    nat.expire(1e9);
    expect(nat.sharedPortsInUse()).toEqual([0, 0, 0]);
    expect(nat.flows.count).toBe(0);
  });
});
