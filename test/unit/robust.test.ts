// Unit tests for a gateway that survives its users' worst day (issue 9): TCP state follows the handshake, eviction, per-session flow limits, ICMP errors without a flow, shared port quotas, blockLocal.
import { describe, it, expect } from 'vitest';
import {
  DEFAULT_TIMEOUTS,
  DROP,
  NO_FLOW,
  Nat,
  REPLY,
  STATE_NAMES,
  TO_UPLINK,
  DEFAULT_SHARED_PORT_QUOTA,
  defaultSessionFlowLimit,
  type NatOptions,
} from '../../src/nat/index.js';
import {
  ACK,
  FIN,
  ICMP,
  ICMP6,
  RST,
  SYN,
  TCP,
  UDP,
  addr,
  addr6,
  allOk,
  echo6Packet,
  echoPacket,
  icmp6ErrorPacket,
  icmpErrorPacket,
  icmpMessage,
  ipHeaderOk,
  ipv4,
  l4Ok,
  l4Ok6,
  parse,
  tcp6Packet,
  tcpPacket,
  toHex,
  u16,
  udp6Packet,
  udpPacket,
  words6,
} from './packets.js';
import { NOW, recv, send } from './harness.js';

const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const REMOTE = addr('203.0.113.5');
const INNER6 = addr6('fd00:2::100');
const VIP6 = (k: number): Uint8Array => addr6(`fd00:19:7::${k.toString(16)}`);
const REMOTE6 = addr6('2001:db8:5::5');
const T = DEFAULT_TIMEOUTS;

/** Sessions 1-3: NAT mode (inner 10.0.2.100 / fd00:2::100), session 4: address mode; both families. */
function makeNat(opts: Partial<NatOptions> = {}): Nat {
  const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1, ...opts });
  for (const k of [1, 2, 3]) {
    nat.addSession(k, INNER, VIP(k));
    nat.addSession6(k, words6(INNER6), words6(VIP6(k)));
  }
  nat.addSession(4, VIP(4), VIP(4));
  nat.addSession6(4, words6(VIP6(4)), words6(VIP6(4)));
  return nat;
}

/**
 * One TCP connection of session `id` with the remote, in either family: `out`
 * and `inn` send a segment each way, `state` names the flow's state and
 * `timeout` is its deadline less the clock.
 */
function conn(nat: Nat, id: number, v6: boolean, lport = 40000, rport = 80) {
  let now = NOW;
  const inner4 = id === 4 ? VIP(4) : INNER;
  const inner6 = id === 4 ? VIP6(4) : INNER6;
  const flow = (): number =>
    v6
      ? nat.v6.flows.lookupOuter(TCP, words6(VIP6(id)), 0, lport, words6(REMOTE6), 0, rport)
      : nat.flows.lookupOuter(TCP, VIP(id), lport, REMOTE, rport);
  const table = v6 ? nat.v6.flows : nat.flows;
  return {
    out(flags: number): void {
      now++;
      const p = v6
        ? tcp6Packet(inner6, REMOTE6, { sport: lport, dport: rport, flags })
        : tcpPacket(inner4, REMOTE, { sport: lport, dport: rport, flags });
      expect(send(nat, id, p, now).v).toBe(TO_UPLINK);
    },
    inn(flags: number): void {
      now++;
      const p = v6
        ? tcp6Packet(REMOTE6, VIP6(id), { sport: rport, dport: lport, flags })
        : tcpPacket(REMOTE, VIP(id), { sport: rport, dport: lport, flags });
      expect(recv(nat, p, now).v).toBe(id);
    },
    state(): string {
      const f = flow();
      return f < 0 ? 'none' : STATE_NAMES[table.stateOf(f)]!;
    },
    timeout(): number {
      return table.deadlineOf(flow()) - now;
    },
  };
}

describe('TCP state follows the handshake (RFC 5382, conntrack)', () => {
  for (const v6 of [false, true]) {
    const fam = v6 ? 'IPv6' : 'IPv4';
    for (const id of [1, 4]) {
      const mode = id === 4 ? 'address mode' : 'NAT mode';
      it(`${fam}, ${mode}: an unsolicited inbound SYN answered by the SYN-ACK is half-open until the remote's ACK`, () => {
        const c = conn(makeNat(), id, v6, 8080, 51000);
        c.inn(SYN);
        expect([c.state(), c.timeout()]).toEqual(['syn-in', T.tcpTransitory]);
        c.out(SYN | ACK);
        expect([c.state(), c.timeout()]).toEqual(['syn-ack-out', T.tcpTransitory]);
        c.inn(SYN); // a retransmitted SYN completes nothing
        c.out(SYN | ACK);
        c.out(ACK); // nor does an ACK from the responder
        expect([c.state(), c.timeout()]).toEqual(['syn-ack-out', T.tcpTransitory]);
        c.inn(ACK);
        expect([c.state(), c.timeout()]).toEqual(['established', T.tcpEstablished]);
      });

      it(`${fam}, ${mode}: an outbound SYN answered by the remote's SYN-ACK is half-open until the session's ACK`, () => {
        const c = conn(makeNat(), id, v6);
        c.out(SYN);
        expect([c.state(), c.timeout()]).toEqual(['syn-out', T.tcpTransitory]);
        c.inn(SYN | ACK);
        expect([c.state(), c.timeout()]).toEqual(['syn-ack-in', T.tcpTransitory]);
        c.inn(ACK);
        c.out(SYN);
        expect(c.state()).toBe('syn-ack-in');
        c.out(ACK);
        expect([c.state(), c.timeout()]).toEqual(['established', T.tcpEstablished]);
      });
    }

    it(`${fam}: simultaneous open, and RST during the handshake`, () => {
      const nat = makeNat();
      const c = conn(nat, 2, v6);
      c.out(SYN);
      c.inn(SYN);
      expect(c.state()).toBe('syn-both');
      c.out(SYN | ACK);
      expect([c.state(), c.timeout()]).toEqual(['syn-ack-out', T.tcpTransitory]);
      c.inn(SYN | ACK); // the remote's SYN-ACK acknowledges the session's SYN
      expect([c.state(), c.timeout()]).toEqual(['established', T.tcpEstablished]);

      const d = conn(nat, 2, v6, 40001);
      d.out(SYN);
      d.inn(SYN);
      d.inn(SYN | ACK);
      expect(d.state()).toBe('syn-ack-in');
      d.out(SYN | ACK);
      expect(d.state()).toBe('established');

      for (const [who, flags] of [
        ['out', RST],
        ['inn', RST | ACK],
      ] as const) {
        const e = conn(nat, 3, v6, who === 'out' ? 40002 : 40003);
        e.inn(SYN);
        e.out(SYN | ACK);
        e[who](flags);
        expect([e.state(), e.timeout()]).toEqual(['closed', T.tcpClosed]);
      }
    });

    it(`${fam}: the ACK that completes the handshake may carry a FIN`, () => {
      const c = conn(makeNat(), 1, v6);
      c.out(SYN);
      c.inn(SYN | ACK);
      c.out(FIN | ACK);
      expect(c.state()).toBe('fin-out');
      c.inn(FIN | ACK);
      expect(c.state()).toBe('closing');
    });
  }
});

/** Drives session `id`'s flows in one family; `udp` sends a datagram out (and its reply when `reply`). */
function driver(nat: Nat, v6: boolean) {
  let now = NOW;
  const vip4 = (id: number): number => (id === 4 ? VIP(4) : VIP(id));
  const in4 = (id: number): number => (id === 4 ? VIP(4) : INNER);
  const in6 = (id: number): Uint8Array => (id === 4 ? VIP6(4) : INNER6);
  const table = v6 ? nat.v6.flows : nat.flows;
  return {
    table,
    tick(): number {
      return ++now;
    },
    /** A UDP datagram from session `id`; the verdict. */
    udpOut(id: number, lport: number, rport = 53): number {
      const p = v6
        ? udp6Packet(in6(id), REMOTE6, { sport: lport, dport: rport })
        : udpPacket(in4(id), REMOTE, { sport: lport, dport: rport });
      return send(nat, id, p, ++now).v;
    },
    udpIn(id: number, lport: number, rport = 53): number {
      const p = v6
        ? udp6Packet(REMOTE6, VIP6(id), { sport: rport, dport: lport })
        : udpPacket(REMOTE, vip4(id), { sport: rport, dport: lport });
      return recv(nat, p, ++now).v;
    },
    tcpOut(id: number, lport: number, flags: number, rport = 80): number {
      const p = v6
        ? tcp6Packet(in6(id), REMOTE6, { sport: lport, dport: rport, flags })
        : tcpPacket(in4(id), REMOTE, { sport: lport, dport: rport, flags });
      return send(nat, id, p, ++now).v;
    },
    tcpIn(id: number, lport: number, flags: number, rport = 80): number {
      const p = v6
        ? tcp6Packet(REMOTE6, VIP6(id), { sport: rport, dport: lport, flags })
        : tcpPacket(REMOTE, vip4(id), { sport: rport, dport: lport, flags });
      return recv(nat, p, ++now).v;
    },
    /** Session `id`'s flow with the remote, or NO_FLOW. */
    flow(id: number, proto: number, lport: number, rport: number): number {
      return v6
        ? nat.v6.flows.lookupInner(id, proto, words6(in6(id)), 0, lport, words6(REMOTE6), 0, rport)
        : nat.flows.lookupInner(id, proto, in4(id), lport, REMOTE, rport);
    },
    has(id: number, proto: number, lport: number, rport: number): boolean {
      return this.flow(id, proto, lport, rport) !== NO_FLOW;
    },
  };
}

describe('eviction when the table is full (conntrack early drop)', () => {
  for (const v6 of [false, true]) {
    const fam = v6 ? 'IPv6' : 'IPv4';
    it(`${fam}: the oldest evictable flow goes first, in the order flows became evictable; assured flows stay`, () => {
      const nat = makeNat({ flowCapacity: 8, flowCapacity6: 8 });
      const d = driver(nat, v6);
      // Session 1: a TCP connection through its handshake, two replied UDP flows: assured.
      d.tcpOut(1, 1, SYN);
      d.tcpIn(1, 1, SYN | ACK);
      d.tcpOut(1, 1, ACK);
      for (const p of [2, 3]) {
        d.udpOut(1, p);
        d.udpIn(1, p);
      }
      // Session 2: four datagrams nobody answers: evictable, oldest first.
      for (const p of [10, 11, 12, 13]) d.udpOut(2, p);
      // Session 1 closes its connection: evictable from now, after port 13.
      d.tcpOut(1, 1, FIN | ACK);
      d.udpOut(2, 14);
      expect(d.table.count).toBe(8);
      // Each new flow of session 3 evicts the oldest evictable one.
      const evicted: string[] = [];
      const before = (): string[] => [
        ...[10, 11, 12, 13, 14].filter((p) => d.has(2, UDP, p, 53)).map((p) => `udp ${p}`),
        ...(d.has(1, TCP, 1, 80) ? ['tcp 1'] : []),
      ];
      let left = before();
      for (let k = 0; k < 5; k++) {
        expect(d.udpOut(3, 100 + k)).toBe(TO_UPLINK);
        const now = before();
        evicted.push(...left.filter((x) => !now.includes(x)));
        left = now;
      }
      expect(evicted).toEqual(['udp 10', 'udp 11', 'udp 12', 'udp 13', 'tcp 1']);
      expect(nat.counters.flowsEvicted).toBe(5);
      expect(nat.counters.tableFull).toBe(0);
      expect(d.table.count).toBe(8);
      expect(d.has(1, UDP, 2, 53) && d.has(1, UDP, 3, 53) && d.has(2, UDP, 14, 53)).toBe(true);
      for (let k = 0; k < 5; k++) expect(d.has(3, UDP, 100 + k, 53)).toBe(true);

      // Once every flow is assured, a new one is refused as before; a VIP session still gets through.
      d.udpIn(2, 14);
      for (let k = 0; k < 5; k++) d.udpIn(3, 100 + k);
      expect(d.udpOut(3, 200)).toBe(TO_UPLINK);
      expect(nat.counters.tableFull).toBe(1);
      expect(nat.counters.flowsEvicted).toBe(5);
      expect(d.has(3, UDP, 200, 53)).toBe(false);
    });

    it(`${fam}: unreplied, half-open, FIN and RST-closed flows are evictable; replied UDP/echo and established TCP are not`, () => {
      const nat = makeNat({ flowCapacity: 16, flowCapacity6: 16 });
      const d = driver(nat, v6);
      const t = d.table;
      const ev = (id: number, proto: number, lport: number, rport: number): boolean => {
        const f = d.flow(id, proto, lport, rport);
        expect(f).not.toBe(NO_FLOW);
        return t.evictable(f);
      };
      d.udpOut(1, 1);
      expect(ev(1, UDP, 1, 53)).toBe(true); // unreplied
      d.udpIn(1, 1);
      expect(ev(1, UDP, 1, 53)).toBe(false); // replied: assured
      d.udpIn(1, 2); // unsolicited, to a listener maybe
      expect(ev(1, UDP, 2, 53)).toBe(true);
      d.udpOut(1, 2);
      expect(ev(1, UDP, 2, 53)).toBe(false);
      d.tcpIn(1, 3, SYN);
      expect(ev(1, TCP, 3, 80)).toBe(true); // SYN in
      d.tcpOut(1, 3, SYN | ACK);
      expect(ev(1, TCP, 3, 80)).toBe(true); // half-open
      d.tcpIn(1, 3, ACK);
      expect(ev(1, TCP, 3, 80)).toBe(false); // established
      d.tcpIn(1, 3, FIN | ACK);
      expect(ev(1, TCP, 3, 80)).toBe(true); // FIN in
      d.tcpOut(1, 4, ACK); // picked up mid-stream: established, but seen one way only
      expect(STATE_NAMES[t.stateOf(d.flow(1, TCP, 4, 80))]).toBe('established');
      expect(ev(1, TCP, 4, 80)).toBe(true);
      d.tcpIn(1, 4, ACK);
      expect(ev(1, TCP, 4, 80)).toBe(false); // now both ways
      d.tcpIn(1, 4, RST);
      expect(ev(1, TCP, 4, 80)).toBe(true); // closed by RST
      d.tcpOut(1, 5, SYN);
      expect(ev(1, TCP, 5, 80)).toBe(true); // SYN out
      const icmp = v6 ? ICMP6 : ICMP;
      send(nat, 1, v6 ? echo6Packet(INNER6, REMOTE6, 128, 77, 1) : echoPacket(INNER, REMOTE, 8, 77, 1));
      expect(ev(1, icmp, 77, 0)).toBe(true); // an unanswered ping
      recv(nat, v6 ? echo6Packet(REMOTE6, VIP6(1), 129, 77, 1) : echoPacket(REMOTE, VIP(1), 0, 77, 1));
      expect(ev(1, icmp, 77, 0)).toBe(false);
      expect(t.evictableCount).toBe(3); // FIN, RST and SYN
    });
  }

  it("a shared session's evicted flow gives its port back", () => {
    const SHARED = addr('198.18.0.1');
    const nat = new Nat({ maxSession: 8, flowCapacity: 2, seed: 1, shared: { address: SHARED, portLo: 61000, portHi: 61009 } });
    nat.addSharedSession(1, INNER);
    const out = (p: number): Uint8Array => send(nat, 1, udpPacket(INNER, REMOTE, { sport: p, dport: 53 })).out;
    const first = u16(out(5001), 20);
    u16(out(5002), 20);
    expect(nat.sharedPortsInUse()).toEqual([0, 2, 0]);
    expect(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 5003, dport: 53 })).v).toBe(TO_UPLINK);
    expect(nat.counters.flowsEvicted).toBe(1);
    expect(nat.sharedPortsInUse()).toEqual([0, 2, 0]);
    // The evicted mapping is gone: a late reply to its port is no session's.
    expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: first })).v).toBe(TO_UPLINK);
    expect(nat.counters.reflected).toBe(1);
  });
});

describe('per-session flow limit', () => {
  it('defaultSessionFlowLimit: max(1024, capacity / 16)', () => {
    expect(defaultSessionFlowLimit(1)).toBe(1024);
    expect(defaultSessionFlowLimit(16384)).toBe(1024);
    expect(defaultSessionFlowLimit(262144)).toBe(16384);
    expect(defaultSessionFlowLimit(262150)).toBe(16384);
    expect(() => makeNat({ sessionFlowLimit: 0 })).toThrow(/sessionFlowLimit 0/);
    expect(() => makeNat({ sessionFlowLimit: 1.5 })).toThrow(RangeError);
  });

  for (const v6 of [false, true]) {
    const fam = v6 ? 'IPv6' : 'IPv4';
    it(`${fam}: a session at its limit evicts its own oldest evictable flow; with none, the flow is refused but a VIP session still gets through`, () => {
      const nat = makeNat({ flowCapacity: 64, flowCapacity6: 64, sessionFlowLimit: 4 });
      const d = driver(nat, v6);
      d.udpOut(2, 900); // another session's unanswered flow: older than all of session 1's
      for (const p of [1, 2, 3, 4]) d.udpOut(1, p);
      expect(d.table.sessionFlows(1)).toBe(4);
      d.udpOut(1, 5);
      expect([1, 2, 3, 4, 5].map((p) => d.has(1, UDP, p, 53))).toEqual([false, true, true, true, true]);
      expect(d.has(2, UDP, 900, 53)).toBe(true);
      expect(nat.counters.flowsEvicted).toBe(1);
      expect(d.table.sessionFlows(1)).toBe(4);
      // Answered, all four are assured: a fifth is refused (counted), and leaves anyway, without a flow.
      for (const p of [2, 3, 4, 5]) d.udpIn(1, p);
      expect(d.udpOut(1, 6)).toBe(TO_UPLINK);
      expect(d.udpIn(1, 6)).toBe(1);
      expect(d.has(1, UDP, 6, 53)).toBe(false);
      expect(nat.counters.sessionFlowLimit).toBe(2);
      expect(nat.counters.tableFull).toBe(0);
      expect(d.table.sessionFlows(1)).toBe(4);
      // Other sessions are not held to session 1's count.
      for (const p of [1, 2, 3, 4]) d.udpOut(3, p);
      expect(d.table.sessionFlows(3)).toBe(4);
      // A flow that ends frees a place.
      d.tcpOut(1, 7, SYN);
      expect(d.has(1, TCP, 7, 80)).toBe(false);
      nat.expire(NOW + 100000);
      expect(d.table.sessionFlows(1)).toBe(0);
    });

    for (const limit of [undefined, 64]) {
      it(`${fam}: 3000 SYNs flooding one session of a 1024-flow table (limit ${limit ?? 'default'}) cannot stop others' new flows, and their established flows survive`, () => {
        const nat = makeNat({ flowCapacity: 1024, flowCapacity6: 1024, ...(limit ? { sessionFlowLimit: limit } : {}) });
        const d = driver(nat, v6);
        const max = limit ?? defaultSessionFlowLimit(1024);
        // Sessions 2 and 3 hold established connections.
        const connect = (id: number, p: number): void => {
          expect(d.tcpOut(id, p, SYN)).toBe(TO_UPLINK);
          expect(d.tcpIn(id, p, SYN | ACK)).toBe(id);
          expect(d.tcpOut(id, p, ACK)).toBe(TO_UPLINK);
        };
        for (let p = 1; p <= 30; p++) connect(2, p);
        for (let p = 1; p <= 30; p++) connect(3, p);
        // Session 2 also has connections still in their handshake (SYN sent), started before the flood.
        for (let p = 500; p < 510; p++) d.tcpOut(2, p, SYN);
        let opened = 0;
        for (let k = 0; k < 3000; k++) {
          // Half-open floods: each SYN from a new port is answered by session 1's kernel.
          expect(d.tcpIn(1, 8080, SYN, 10000 + k)).toBe(1);
          expect(d.tcpOut(1, 8080, SYN | ACK, 10000 + k)).toBe(TO_UPLINK);
          expect(d.table.sessionFlows(1)).toBeLessThanOrEqual(max);
          expect(d.table.count).toBeLessThanOrEqual(1024);
          if (k % 100 === 0) {
            // Session 3 keeps opening connections through the flood.
            connect(3, 1000 + k);
            expect(STATE_NAMES[d.table.stateOf(d.flow(3, TCP, 1000 + k, 80))]).toBe('established');
            opened++;
          }
        }
        expect(opened).toBe(30);
        for (let p = 1; p <= 30; p++) {
          expect(STATE_NAMES[d.table.stateOf(d.flow(2, TCP, p, 80))]).toBe('established');
          expect(STATE_NAMES[d.table.stateOf(d.flow(3, TCP, p, 80))]).toBe('established');
        }
        for (let k = 0; k < 3000; k += 100) expect(d.has(3, TCP, 1000 + k, 80)).toBe(true);
        // With a limit below the table's room, the flood only ever evicts its own: session 2's handshakes in progress survive.
        if (limit) for (let p = 500; p < 510; p++) expect(STATE_NAMES[d.table.stateOf(d.flow(2, TCP, p, 80))]).toBe('syn-out');
        expect(nat.counters.flowsEvicted).toBeGreaterThan(3000 - max - 1);
        expect(nat.counters.sessionFlowLimit + nat.counters.tableFull).toBe(0);
      });
    }
  }

  it('a shared session at its limit with nothing to evict is refused (counted), not sent without a port', () => {
    const SHARED = addr('198.18.0.1');
    const nat = new Nat({
      maxSession: 8,
      flowCapacity: 64,
      seed: 1,
      sessionFlowLimit: 2,
      shared: { address: SHARED, portLo: 61000, portHi: 61009 },
    });
    nat.addSharedSession(1, INNER);
    for (const p of [1, 2]) {
      const o = send(nat, 1, udpPacket(INNER, REMOTE, { sport: p, dport: 53 }));
      expect(recv(nat, udpPacket(REMOTE, SHARED, { sport: 53, dport: u16(o.out, 20) })).v).toBe(1);
    }
    expect(send(nat, 1, udpPacket(INNER, REMOTE, { sport: 3, dport: 53 })).v).toBe(DROP);
    expect(nat.counters.sessionFlowLimit).toBe(1);
    expect(nat.sharedPortsInUse()).toEqual([0, 2, 0]);
  });
});

describe('ICMP errors without a flow, for sessions with a VIP', () => {
  /** A Nat whose tables (both families) are full of session 3's assured flows. */
  function fullNat(): Nat {
    const nat = makeNat({ flowCapacity: 2, flowCapacity6: 2 });
    for (const v6 of [false, true]) {
      const d = driver(nat, v6);
      for (const p of [1, 2]) {
        d.udpOut(3, p);
        d.udpIn(3, p);
      }
      expect(d.table.count).toBe(2);
      expect(d.table.evictableCount).toBe(0);
    }
    return nat;
  }
  const ROUTER = addr('192.0.2.1');
  const ROUTER6 = addr6('2001:db8:ff::1');
  const data = new TextEncoder().encode('is anyone there?');

  it('IPv4, table full: port unreachable and packet too big reach the session, translated, every checksum valid', () => {
    const nat = fullNat();
    const orig = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data });
    const wire = send(nat, 1, orig);
    expect(wire.v).toBe(TO_UPLINK);
    expect(nat.counters.tableFull).toBe(1);
    expect(nat.flows.lookupInner(1, UDP, INNER, 5000, REMOTE, 53)).toBe(NO_FLOW);
    const errors: [number, number, number, Uint8Array][] = [
      [3, 3, 0, wire.out], // port unreachable, the whole datagram quoted
      [3, 4, 1400, wire.out.subarray(0, 28)], // fragmentation needed (PMTU), 28 bytes quoted
      [11, 0, 0, wire.out], // time exceeded
    ];
    for (const [type, code, rest, quote] of errors) {
      const err = ipv4({ src: ROUTER, dst: VIP(1), proto: ICMP }, icmpMessage(type, code, rest, quote));
      const r = recv(nat, err);
      expect(r.v, `type ${type} code ${code}`).toBe(1);
      expect(toHex(r.out)).toBe(
        toHex(ipv4({ src: ROUTER, dst: INNER, proto: ICMP }, icmpMessage(type, code, rest, orig.subarray(0, quote.length)))),
      );
      expect(allOk(r.out)).toBe(true);
      const q = r.out.subarray(28);
      expect(ipHeaderOk(q)).toBe(true);
      if (quote.length === wire.out.length) expect(l4Ok(q)).toBe(true);
    }
    expect(nat.counters.icmpErrorsDropped).toBe(0);
    // A TCP segment and an echo request quoted alike.
    const syn = tcpPacket(INNER, REMOTE, { sport: 43000, dport: 22, flags: SYN });
    const synWire = send(nat, 1, syn).out;
    const r = recv(nat, icmpErrorPacket(REMOTE, VIP(1), 3, 3, synWire));
    expect([r.v, toHex(r.out)]).toEqual([1, toHex(icmpErrorPacket(REMOTE, INNER, 3, 3, syn))]);
    const ping = echoPacket(INNER, REMOTE, 8, 0x4242, 1, data, { ttl: 1 });
    const pingWire = send(nat, 1, ping).out;
    const t = recv(nat, icmpErrorPacket(ROUTER, VIP(1), 11, 0, pingWire, 28));
    expect([t.v, toHex(t.out)]).toEqual([1, toHex(icmpErrorPacket(ROUTER, INNER, 11, 0, ping, 28))]);
  });

  it('IPv4: an error a session sends about a packet it got without a flow goes out translated', () => {
    const nat = fullNat();
    const orig = udpPacket(REMOTE, VIP(2), { sport: 7000, dport: 9999, data });
    const delivered = recv(nat, orig);
    expect(delivered.v).toBe(2);
    const r = send(nat, 2, icmpErrorPacket(INNER, REMOTE, 3, 3, delivered.out));
    expect(r.v).toBe(TO_UPLINK);
    expect(toHex(r.out)).toBe(toHex(icmpErrorPacket(VIP(2), REMOTE, 3, 3, orig)));
    expect(allOk(r.out) && l4Ok(r.out.subarray(28))).toBe(true);
    // Address mode: nothing to translate, delivered as it is.
    const o4 = udpPacket(VIP(4), REMOTE, { sport: 1, dport: 2 });
    send(nat, 4, o4);
    const e4 = icmpErrorPacket(REMOTE, VIP(4), 3, 3, o4);
    expect(toHex(recv(nat, e4).out)).toBe(toHex(e4));
  });

  it("IPv4: a quote that is not the session's address is still dropped, and a bad checksum is not laundered", () => {
    const nat = fullNat();
    const dropped = (): number => nat.counters.icmpErrorsDropped;
    const otherVip = udpPacket(VIP(2), REMOTE, { sport: 5000, dport: 53 });
    const inner = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 });
    expect(recv(nat, icmpErrorPacket(REMOTE, VIP(1), 3, 3, otherVip)).v).toBe(DROP);
    expect(recv(nat, icmpErrorPacket(REMOTE, VIP(1), 3, 3, inner)).v).toBe(DROP);
    expect(dropped()).toBe(2);
    // From the session: the quoted packet must have been to its inner address.
    const toVip = udpPacket(REMOTE, VIP(1), { sport: 7, dport: 9 });
    expect(send(nat, 1, icmpErrorPacket(INNER, REMOTE, 3, 3, toVip)).v).toBe(DROP);
    expect(dropped()).toBe(3);
    const bad = icmpErrorPacket(REMOTE, VIP(1), 3, 3, udpPacket(VIP(1), REMOTE, { sport: 5000, dport: 53 }));
    bad[22] = bad[22]! ^ 0xff;
    const malformed = nat.counters.malformed;
    expect(recv(nat, bad).v).toBe(DROP);
    expect([nat.counters.malformed, dropped()]).toEqual([malformed + 1, 4]);
  });

  it('a shared session still needs a flow', () => {
    const SHARED = addr('198.18.0.1');
    const nat = new Nat({ maxSession: 8, flowCapacity: 16, seed: 1, shared: { address: SHARED, portLo: 61000, portHi: 61009 } });
    nat.addSharedSession(1, INNER);
    const quote = udpPacket(SHARED, REMOTE, { sport: 61000, dport: 53 });
    expect(recv(nat, icmpErrorPacket(REMOTE, SHARED, 3, 3, quote)).v).toBe(TO_UPLINK); // no session's: the machine's own
    expect(nat.counters.reflected).toBe(1);
    const got = udpPacket(REMOTE, INNER, { sport: 53, dport: 5000 });
    expect(send(nat, 1, icmpErrorPacket(INNER, REMOTE, 3, 3, got)).v).toBe(DROP);
    expect(nat.counters.icmpErrorsDropped).toBe(2);
  });

  it('IPv6, table full: packet too big, port unreachable and time exceeded reach the session, translated', () => {
    const nat = fullNat();
    const orig = udp6Packet(INNER6, REMOTE6, { sport: 5000, dport: 53, data });
    const wire = send(nat, 1, orig);
    expect(wire.v).toBe(TO_UPLINK);
    expect(nat.v6.flows.lookupInner(1, UDP, words6(INNER6), 0, 5000, words6(REMOTE6), 0, 53)).toBe(NO_FLOW);
    for (const [type, code, rest] of [
      [2, 0, 1280],
      [1, 4, 0],
      [3, 0, 0],
    ] as const) {
      const r = recv(nat, icmp6ErrorPacket(ROUTER6, VIP6(1), type, code, wire.out, wire.out.length, rest));
      expect(r.v, `type ${type}`).toBe(1);
      expect(toHex(r.out)).toBe(toHex(icmp6ErrorPacket(ROUTER6, INNER6, type, code, orig, orig.length, rest)));
      expect(l4Ok6(r.out)).toBe(true);
    }
    // From the session, about a datagram it got without a flow.
    const inb = udp6Packet(REMOTE6, VIP6(2), { sport: 7000, dport: 9999, data });
    const delivered = recv(nat, inb);
    expect(delivered.v).toBe(2);
    const s = send(nat, 2, icmp6ErrorPacket(INNER6, REMOTE6, 1, 4, delivered.out));
    expect(s.v).toBe(TO_UPLINK);
    expect(toHex(s.out)).toBe(toHex(icmp6ErrorPacket(VIP6(2), REMOTE6, 1, 4, inb)));
    expect(l4Ok6(s.out)).toBe(true);
    // Not the session's address in the quote: dropped.
    const other = udp6Packet(VIP6(2), REMOTE6, { sport: 5000, dport: 53 });
    const dropped = nat.counters.icmpErrorsDropped;
    expect(recv(nat, icmp6ErrorPacket(ROUTER6, VIP6(1), 2, 0, other, other.length, 1280)).v).toBe(DROP);
    expect(send(nat, 1, icmp6ErrorPacket(INNER6, REMOTE6, 1, 4, udp6Packet(REMOTE6, VIP6(1), { sport: 1, dport: 2 }))).v).toBe(DROP);
    expect(nat.counters.icmpErrorsDropped).toBe(dropped + 2);
    // A bad ICMPv6 checksum is not laundered.
    const bad = icmp6ErrorPacket(ROUTER6, VIP6(1), 2, 0, wire.out, wire.out.length, 1280);
    bad[42] = bad[42]! ^ 0xff;
    const malformed = nat.counters.malformed;
    expect(recv(nat, bad).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(malformed + 1);
  });
});

describe('per-session port quota on the shared address (RFC 6888 REQ-4)', () => {
  const SHARED = addr('198.18.0.1');
  it('one shared session exhausting its quota leaves ports for another (counters.portQuota)', () => {
    const nat = new Nat({
      maxSession: 8,
      flowCapacity: 1024,
      seed: 1,
      sharedPortQuota: 4,
      shared: { address: SHARED, portLo: 61000, portHi: 61009 },
    });
    nat.addSharedSession(1, INNER);
    nat.addSharedSession(2, INNER);
    const udp = (id: number, p: number): number => send(nat, id, udpPacket(INNER, REMOTE, { sport: p, dport: 53 })).v;
    const verdicts = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((p) => udp(1, p));
    expect(verdicts).toEqual([0, 0, 0, 0, DROP, DROP, DROP, DROP, DROP, DROP]);
    expect(nat.counters.portQuota).toBe(6);
    expect(nat.counters.portsExhausted).toBe(0);
    expect(udp(1, 2)).toBe(TO_UPLINK); // an existing mapping, to the same remote
    // TCP and echo identifiers have quotas of their own; the other session gets its ports.
    expect(send(nat, 1, tcpPacket(INNER, REMOTE, { sport: 1, dport: 80, flags: SYN })).v).toBe(TO_UPLINK);
    expect([1, 2, 3, 4].map((p) => udp(2, p))).toEqual([0, 0, 0, 0]);
    expect(nat.sharedPortsInUse()).toEqual([1, 8, 0]);
    // The default quota: one session cannot take all of 61000-65534.
    expect(DEFAULT_SHARED_PORT_QUOTA).toBe(512);
    const big = new Nat({ maxSession: 8, flowCapacity: 8192, seed: 1, shared: { address: SHARED, portLo: 61000, portHi: 65534 } });
    big.addSharedSession(1, INNER);
    big.addSharedSession(2, INNER);
    for (let p = 1; p <= 600; p++) send(big, 1, udpPacket(INNER, REMOTE, { sport: p, dport: 53 }));
    expect(big.sharedPortsInUse()).toEqual([0, 512, 0]);
    expect(big.counters.portQuota).toBe(88);
    expect(send(big, 2, udpPacket(INNER, REMOTE, { sport: 1, dport: 53 })).v).toBe(TO_UPLINK);
  });
});

describe('blockLocal: sessions cannot reach the uplink namespace own addresses', () => {
  const LOCAL = addr('192.168.7.1');
  const LOCAL2 = addr('10.99.0.1');
  const LOCAL6 = addr6('2001:db8:7::1');
  const SHARED = addr('198.18.0.1');
  const OFF = 6;
  /** fromSession over a buffer with the dataplane's room after the packet; the verdict and the reply (or the packet) as written. */
  function sendRoom(nat: Nat, id: number, pkt: Uint8Array, now = NOW): { v: number; out: Uint8Array } {
    const buf = new Uint8Array(OFF + 65536 + 256).fill(0xa5);
    buf.set(pkt, OFF);
    const v = nat.fromSession(id, buf, OFF, pkt.length, now);
    return { v, out: buf.slice(OFF, OFF + (v === REPLY ? nat.replyLength : pkt.length)) };
  }
  function blockingNat(opts: Partial<NatOptions> = {}): Nat {
    const nat = makeNat({ blockLocal: true, shared: { address: SHARED, portLo: 61000, portHi: 61009 }, ...opts });
    nat.addSharedSession(5, INNER);
    nat.setLocalAddresses([LOCAL, LOCAL2, SHARED], [Array.from(words6(LOCAL6))]);
    return nat;
  }
  /** What the reply must be: administratively prohibited from `from` to `to`, quoting the first bytes of `orig`. */
  const prohibited = (from: number, to: number, orig: Uint8Array): Uint8Array =>
    ipv4({ src: from, dst: to, proto: ICMP, ident: 0 }, icmpMessage(3, 13, 0, orig.subarray(0, 548)));

  it('IPv4: a packet to a blocked address comes back as ICMP "communication administratively prohibited" (REPLY)', () => {
    const nat = blockingNat();
    const cases: [number, number, Uint8Array][] = [
      [1, INNER, tcpPacket(INNER, LOCAL, { sport: 40000, dport: 22, flags: SYN })], // NAT mode
      [4, VIP(4), udpPacket(VIP(4), LOCAL2, { sport: 5353, dport: 53, data: new Uint8Array(30) })], // address mode
      [5, INNER, udpPacket(INNER, LOCAL, { sport: 5000, dport: 53 })], // shared
      [5, INNER, tcpPacket(INNER, SHARED, { sport: 5000, dport: 22, flags: SYN })], // the shared address is the machine's own
      [1, INNER, echoPacket(INNER, LOCAL, 8, 7, 1)], // an echo request
      [2, INNER, ipv4({ src: INNER, dst: LOCAL, proto: 47 }, new Uint8Array(12))], // no ports
      [2, INNER, udpPacket(INNER, LOCAL, { sport: 1, dport: 2, data: new Uint8Array(1400) })], // long: the quote is cut
    ];
    let n = 0;
    for (const [id, to, p] of cases) {
      const r = sendRoom(nat, id, p);
      expect(r.v, `case ${n}`).toBe(REPLY);
      const want = prohibited(parse(p).dst, to, p);
      expect(toHex(r.out), `case ${n}`).toBe(toHex(want));
      expect(allOk(r.out)).toBe(true);
      expect(nat.replyLength).toBeLessThanOrEqual(576);
      expect(nat.counters.toLocal).toBe(++n);
    }
    expect(nat.replyLength).toBe(576);
    expect(nat.flowCount).toBe(0);
    expect(nat.sharedPortsInUse()).toEqual([0, 0, 0]);
    // An ICMP error or a later fragment to a blocked address gets no error back (RFC 1122), only the count.
    const err = icmpErrorPacket(INNER, LOCAL, 3, 3, udpPacket(LOCAL, INNER, { sport: 53, dport: 5000 }));
    const frag = ipv4({ src: INNER, dst: LOCAL, proto: UDP, fragOffset: 8 }, new Uint8Array(16));
    for (const p of [err, frag]) expect(sendRoom(nat, 1, p).v).toBe(DROP);
    expect(nat.counters.toLocal).toBe(n + 2);
    // Not blocked: other addresses, and every address with blockLocal off.
    expect(sendRoom(nat, 1, udpPacket(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(TO_UPLINK);
    const open = makeNat();
    open.setLocalAddresses([LOCAL], []);
    expect(sendRoom(open, 1, udpPacket(INNER, LOCAL, { sport: 1, dport: 2 })).v).toBe(TO_UPLINK);
    expect(open.counters.toLocal).toBe(0);
    // A spoofed packet is spoofed first.
    expect(sendRoom(nat, 1, udpPacket(REMOTE, LOCAL, { sport: 1, dport: 2 })).v).toBe(DROP);
    expect(nat.counters.spoofed).toBe(1);
  });

  it('IPv6: ICMPv6 type 1 code 1 back to the session, quoting as much as fits 1280 bytes', () => {
    const nat = blockingNat();
    for (const [id, inner, p] of [
      [1, INNER6, tcp6Packet(INNER6, LOCAL6, { sport: 40000, dport: 22, flags: SYN })],
      [4, VIP6(4), udp6Packet(VIP6(4), LOCAL6, { sport: 1, dport: 2, data: new Uint8Array(2000) })],
      [2, INNER6, echo6Packet(INNER6, LOCAL6, 128, 9, 1)],
    ] as const) {
      const r = sendRoom(nat, id, p);
      expect(r.v).toBe(REPLY);
      const want = icmp6ErrorPacket(LOCAL6, inner, 1, 1, p, Math.min(p.length, 1232));
      expect(toHex(r.out)).toBe(toHex(want));
      expect(l4Ok6(r.out)).toBe(true);
      expect(nat.replyLength).toBe(Math.min(48 + p.length, 1280));
    }
    expect(nat.counters.toLocal).toBe(3);
    const err = icmp6ErrorPacket(INNER6, LOCAL6, 1, 4, udp6Packet(LOCAL6, INNER6, { sport: 1, dport: 2 }));
    expect(sendRoom(nat, 1, err).v).toBe(DROP);
    expect(nat.counters.toLocal).toBe(4);
    expect(nat.v6.flows.count).toBe(0);
  });

  it('setLocalAddresses drops the flows to newly blocked addresses (their ports go back), and nothing from them opens a flow', () => {
    const nat = makeNat({ blockLocal: true, shared: { address: SHARED, portLo: 61000, portHi: 61009 } });
    nat.addSharedSession(5, INNER);
    expect(sendRoom(nat, 1, udpPacket(INNER, LOCAL, { sport: 1, dport: 53 })).v).toBe(TO_UPLINK);
    expect(sendRoom(nat, 5, udpPacket(INNER, LOCAL, { sport: 1, dport: 53 })).v).toBe(TO_UPLINK);
    expect(sendRoom(nat, 1, udpPacket(INNER, REMOTE, { sport: 1, dport: 53 })).v).toBe(TO_UPLINK);
    expect(sendRoom(nat, 1, udp6Packet(INNER6, LOCAL6, { sport: 1, dport: 53 })).v).toBe(TO_UPLINK);
    expect([nat.flows.count, nat.v6.flows.count, nat.sharedPortsInUse()[1]]).toEqual([3, 1, 1]);
    nat.setLocalAddresses([LOCAL], [Array.from(words6(LOCAL6))]);
    expect([nat.flows.count, nat.v6.flows.count, nat.sharedPortsInUse()[1]]).toEqual([1, 0, 0]);
    // The fast path has no flow to take: the next packet is blocked.
    expect(sendRoom(nat, 1, udpPacket(INNER, LOCAL, { sport: 1, dport: 53 })).v).toBe(REPLY);
    // From a blocked address the packet is delivered, but opens no flow (the session's answer is blocked too).
    expect(recv(nat, tcpPacket(LOCAL, VIP(1), { sport: 50000, dport: 80, flags: SYN })).v).toBe(1);
    expect(recv(nat, udpPacket(LOCAL, VIP(1), { sport: 53, dport: 9 })).v).toBe(1);
    expect(recv(nat, udp6Packet(LOCAL6, VIP6(1), { sport: 53, dport: 9 })).v).toBe(1);
    expect([nat.flows.count, nat.v6.flows.count]).toEqual([1, 0]);
    // Unblocking lets them through again.
    nat.setLocalAddresses([], []);
    expect(sendRoom(nat, 1, udpPacket(INNER, LOCAL, { sport: 1, dport: 53 })).v).toBe(TO_UPLINK);
    expect(() => nat.setLocalAddresses([], [[1, 2, 3]])).toThrow(/four/);
  });
});
