// Unit tests for the translator that are the same in both families (describe.each over IPv4 and IPv6): address and
// NAT mode, inbound flows, TCP states, expiry, hairpin, fragments, ICMP errors, truncation, fuzz. Each family's own
// cases are in nat.test.ts and nat6.test.ts; checksums are checked from scratch with packets.ts, never with src/wire.
import { describe, it, expect } from 'vitest';
import {
  DEFAULT_TIMEOUTS,
  DROP,
  ICMP_ACTIVE,
  NO_FLOW,
  type Nat,
  STATE_NAMES,
  TCP_CLOSED,
  TCP_CLOSING,
  TCP_ESTABLISHED,
  TCP_FIN_IN,
  TCP_SYN_ACK_IN,
  TCP_SYN_ACK_OUT,
  TCP_SYN_IN,
  TO_UPLINK,
  UDP_ACTIVE,
} from '../../src/nat/index.js';
import {
  ACK,
  DEST_OPTIONS,
  FIN,
  FRAGMENT,
  HOP_BY_HOP,
  ICMP,
  ICMP6,
  NO_NEXT,
  PSH,
  ROUTING,
  RST,
  Rng,
  SYN,
  TCP,
  UDP,
  addr6,
  checksum,
  echo6Packet,
  echoPacket,
  type Ext6,
  type Ip6Opts,
  type IpOpts,
  type TcpFields,
  type UdpFields,
  icmp6ErrorPacket,
  icmp6Message,
  icmpErrorPacket,
  ipHeaderOk,
  ipv4,
  ipv6,
  l4Ok,
  l4Ok6,
  onesSum,
  parse,
  pseudoHeader6,
  tcp6Packet,
  tcpPacket,
  toHex,
  u16,
  udp6Datagram,
  udp6Packet,
  udpDatagram,
  udpPacket,
} from './packets.js';
import { FAMILIES, IPV4, IPV6, type Addr, type Family, as4, as6 } from './families.js';
import { NOW, recv, send } from './harness.js';

const enc = new TextEncoder();
const hx = toHex;

type Make = (src: Addr, dst: Addr) => Uint8Array;

/** Per family: the packets address mode must leave alone, out from session 4 (at V) and in to it. */
const ADDRESS_MODE: Record<Family['name'], (V: Addr, R: Addr) => { outs: Uint8Array[]; ins: Uint8Array[] }> = {
  IPv4: (V, R) => ({
    outs: [
      tcpPacket(as4(V), as4(R), { sport: 40000, dport: 80, flags: SYN }),
      udpPacket(as4(V), as4(R), { sport: 5353, dport: 53, data: enc.encode('q') }),
      udpPacket(as4(V), as4(R), { sport: 5354, dport: 53, checksum: false }),
      echoPacket(as4(V), as4(R), 8, 7, 1, enc.encode('ping')),
    ],
    ins: [
      tcpPacket(as4(R), as4(V), { sport: 80, dport: 40000, flags: SYN | ACK }),
      udpPacket(as4(R), as4(V), { sport: 53, dport: 5353, data: enc.encode('a') }),
      udpPacket(as4(R), as4(V), { sport: 53, dport: 5354, checksum: false }),
      echoPacket(as4(R), as4(V), 0, 7, 1, enc.encode('ping')),
    ],
  }),
  IPv6: (V, R) => ({
    outs: [
      tcp6Packet(as6(V), as6(R), { sport: 40000, dport: 80, flags: SYN, options: [2, 4, 5, 0xa0] }),
      udp6Packet(as6(V), as6(R), { sport: 5353, dport: 53, data: enc.encode('query') }),
      echo6Packet(as6(V), as6(R), 128, 7, 1, enc.encode('ping')),
      udp6Packet(
        as6(V),
        as6(R),
        { sport: 5354, dport: 53, data: enc.encode('q') },
        { ext: [{ kind: 'hbh', options: [0x1e, 2, 1, 2] }, { kind: 'dst' }] },
      ),
    ],
    ins: [
      tcp6Packet(as6(R), as6(V), { sport: 80, dport: 40000, flags: SYN | ACK, ack: 1001 }),
      udp6Packet(as6(R), as6(V), { sport: 53, dport: 5353, data: enc.encode('answer') }),
      echo6Packet(as6(R), as6(V), 129, 7, 1, enc.encode('ping')),
      udp6Packet(as6(R), as6(V), { sport: 53, dport: 5354, data: enc.encode('a') }, { ext: [{ kind: 'dst', options: [0x1e, 1, 9] }] }),
    ],
  }),
};

describe.each(FAMILIES)('$name address mode (inner == VIP)', (f) => {
  it('leaves every byte unchanged both ways, for TCP, UDP and ICMP echo, with flows', () => {
    const nat = f.makeNat();
    const V = f.vip(4);
    const R = f.remote;
    const { outs, ins } = ADDRESS_MODE[f.name](V, R);
    for (const p of outs) {
      const r = send(nat, 4, p);
      expect(r.v).toBe(TO_UPLINK);
      expect(hx(r.out)).toBe(hx(p));
      expect(r.clean).toBe(true);
    }
    for (const p of ins) {
      const r = recv(nat, p);
      expect(r.v).toBe(4);
      expect(hx(r.out)).toBe(hx(p));
      expect(r.clean).toBe(true);
    }
    const t = f.flows(nat);
    expect(t.count).toBe(4);
    // Half-open until the session acknowledges the SYN-ACK.
    expect(t.stateOf(f.flowIn(nat, 4, TCP, 40000, R, 80, V))).toBe(TCP_SYN_ACK_IN);
    const ack = f.tcp(V, R, { sport: 40000, dport: 80, flags: ACK });
    expect(hx(send(nat, 4, ack).out)).toBe(hx(ack));
    expect(t.stateOf(f.flowIn(nat, 4, TCP, 40000, R, 80, V))).toBe(TCP_ESTABLISHED);
    expect(t.stateOf(f.flowIn(nat, 4, UDP, 5353, R, 53, V))).toBe(UDP_ACTIVE);
    expect(t.stateOf(f.flowIn(nat, 4, f.icmp, 7, R, 0, V))).toBe(ICMP_ACTIVE);
    expect(nat.counters.flowsCreated).toBe(4);
  });
});

/**
 * Per family: packet pairs (out from the session, in to it) for session k, each
 * built from (source, destination) so that the expected translation is the same
 * builder with the other address; how many flows they make per session; and
 * flows to check besides TCP 40000->443, UDP 5000->53 and echo 0x100+k.
 */
const NAT_MODE: Record<
  Family['name'],
  { cases(k: number): [Make, Make][]; flows: number; more(k: number): [number, number, number, number][] }
> = {
  IPv4: {
    cases(k) {
      const data = enc.encode(`session ${k} says hi`);
      const t =
        (f: TcpFields): Make =>
        (s, d) =>
          tcpPacket(as4(s), as4(d), f);
      const u =
        (f: UdpFields, o: IpOpts = {}): Make =>
        (s, d) =>
          udpPacket(as4(s), as4(d), f, o);
      const e =
        (type: 0 | 8): Make =>
        (s, d) =>
          echoPacket(as4(s), as4(d), type, 0x100 + k, 1, data);
      const options = { options: [0x94, 4, 0, 0] }; // IPv4 options in the header (Router Alert)
      return [
        [
          t({ sport: 40000, dport: 443, flags: SYN, options: [2, 4, 5, 0xb4] }),
          t({ sport: 443, dport: 40000, flags: SYN | ACK, ack: 1001 }),
        ],
        [t({ sport: 40000, dport: 443, flags: ACK | PSH, data }), t({ sport: 443, dport: 40000, flags: ACK, data })],
        [u({ sport: 5000, dport: 53, data }), u({ sport: 53, dport: 5000, data })],
        [u({ sport: 5001, dport: 53, data, checksum: false }), u({ sport: 53, dport: 5001, data, checksum: false })],
        [e(8), e(0)],
        [u({ sport: 6000, dport: 7000, data }, options), u({ sport: 7000, dport: 6000, data }, options)],
      ];
    },
    flows: 5,
    more: () => [
      [UDP, 5001, 53, UDP_ACTIVE],
      [UDP, 6000, 7000, UDP_ACTIVE],
    ],
  },
  IPv6: {
    cases(k) {
      const data = enc.encode(`session ${k} says hi`);
      const odd = enc.encode(`odd ${k}`.padEnd(17, '!'));
      const hbhDst: Ext6[] = [
        { kind: 'hbh', options: [0x1e, 2, 0xab, 0xcd] },
        { kind: 'dst', options: [0x1f, 3, 1, 2, 3] },
      ];
      const t =
        (f: TcpFields, o: Ip6Opts = {}): Make =>
        (s, d) =>
          tcp6Packet(as6(s), as6(d), f, o);
      const u =
        (f: UdpFields, o: Ip6Opts = {}): Make =>
        (s, d) =>
          udp6Packet(as6(s), as6(d), f, o);
      const e =
        (type: 128 | 129, id: number, seq: number, d: Uint8Array, o: Ip6Opts = {}): Make =>
        (s, dst) =>
          echo6Packet(as6(s), as6(dst), type, id, seq, d, o);
      const routing: Ext6 = { kind: 'routing', routingType: 4, segmentsLeft: 0 };
      return [
        [
          t({ sport: 40000, dport: 443, flags: SYN, options: [2, 4, 5, 0xa0] }),
          t({ sport: 443, dport: 40000, flags: SYN | ACK, ack: 1001 }),
        ],
        [t({ sport: 40000, dport: 443, flags: ACK | PSH, data }), t({ sport: 443, dport: 40000, flags: ACK, data })],
        [u({ sport: 5000, dport: 53, data }), u({ sport: 53, dport: 5000, data })],
        [u({ sport: 5001, dport: 53, data: odd }), u({ sport: 53, dport: 5001, data: odd })],
        [e(128, 0x100 + k, 1, data), e(129, 0x100 + k, 1, data)],
        // Extension headers before the transport header.
        [u({ sport: 6000, dport: 7000, data }, { ext: hbhDst }), u({ sport: 7000, dport: 6000, data }, { ext: hbhDst })],
        [
          t({ sport: 6001, dport: 7001, flags: ACK, data }, { ext: [{ kind: 'dst' }] }),
          t({ sport: 7001, dport: 6001, flags: ACK, data: odd }, { ext: [{ kind: 'hbh' }] }),
        ],
        [
          e(128, 0x200 + k, 2, odd, { ext: [{ kind: 'hbh', options: [5, 2, 0, 0] }] }),
          e(129, 0x200 + k, 2, odd, { ext: [{ kind: 'dst' }] }),
        ],
        [
          u({ sport: 6002, dport: 7002, data }, { ext: [{ kind: 'hbh' }, routing, { kind: 'dst' }] }),
          u({ sport: 7002, dport: 6002, data }, { ext: [routing] }),
        ],
        // An atomic fragment (offset 0, M clear: RFC 6946) is a whole packet.
        [
          u({ sport: 6003, dport: 7003, data }, { ext: [{ kind: 'frag', ident: 9 }] }),
          t({ sport: 7003, dport: 6003, flags: SYN, data }, { ext: [{ kind: 'frag', ident: 10 }] }),
        ],
      ];
    },
    // Outbound creates every flow; the atomic-fragment TCP SYN opens one of its own from outside.
    flows: 10,
    more: (k) => [
      [UDP, 6000, 7000, UDP_ACTIVE],
      [TCP, 6001, 7001, TCP_ESTABLISHED],
      [ICMP6, 0x200 + k, 0, ICMP_ACTIVE],
    ],
  },
};

describe.each(FAMILIES)('$name NAT mode (shared inner address, distinct VIPs)', (f) => {
  it('rewrites the source out and the destination in; checksums verify from scratch', () => {
    const nat = f.makeNat();
    const { inner: I, remote: R } = f;
    const table = NAT_MODE[f.name];
    let pairs = 0;
    for (const k of [1, 2, 3]) {
      for (const [mkOut, mkIn] of table.cases(k)) {
        const o = send(nat, k, mkOut(I, R));
        expect(o.v).toBe(TO_UPLINK);
        expect(o.clean).toBe(true);
        expect(f.srcOf(o.out)).toBe(f.hex(f.vip(k)));
        expect(f.ok(o.out)).toBe(true);
        expect(hx(o.out)).toBe(hx(mkOut(f.vip(k), R)));
        const i = recv(nat, mkIn(R, f.vip(k)));
        expect(i.v).toBe(k);
        expect(i.clean).toBe(true);
        expect(f.dstOf(i.out)).toBe(f.hex(I));
        expect(f.ok(i.out)).toBe(true);
        expect(hx(i.out)).toBe(hx(mkIn(R, I)));
        pairs++;
      }
    }
    // Each session has its own flows even with identical inner tuples.
    const t = f.flows(nat);
    for (const k of [1, 2, 3]) {
      const fl = f.flowIn(nat, k, TCP, 40000, R, 443);
      expect(fl).not.toBe(NO_FLOW);
      expect(t.sessionOf(fl)).toBe(k);
      expect(f.addressesOf(nat, fl)).toEqual({ inner: f.hex(I), outer: f.hex(f.vip(k)) });
      expect(f.flowOut(nat, TCP, f.vip(k), 40000, R, 443)).toBe(fl);
      expect(t.stateOf(fl)).toBe(TCP_ESTABLISHED);
      expect(t.stateOf(f.flowIn(nat, k, UDP, 5000, R, 53))).toBe(UDP_ACTIVE);
      expect(t.stateOf(f.flowIn(nat, k, f.icmp, 0x100 + k, R, 0))).toBe(ICMP_ACTIVE);
      for (const [proto, sport, dport, state] of table.more(k)) expect(t.stateOf(f.flowIn(nat, k, proto, sport, R, dport))).toBe(state);
    }
    expect(nat.counters.fromSession).toBe(pairs);
    expect(nat.counters.fromUplink).toBe(pairs);
    const c = nat.counters;
    expect(c.malformed + c.spoofed + c.noSession + c.linkControl + c.fragments).toBe(0);
    expect(c.flowsCreated).toBe(3 * table.flows);
  });

  it('UDP with checksum 0 keeps 0 both ways (IPv4: "none"; IPv6: invalid, and not given a made-up one)', () => {
    const nat = f.makeNat();
    const at = f.ipHeader + 6;
    const o = send(nat, 1, f.udp(f.inner, f.remote, { sport: 1, dport: 2, data: new Uint8Array(33), checksum: false }));
    expect(o.v).toBe(TO_UPLINK);
    expect(u16(o.out, at)).toBe(0);
    expect(f.headerOk(o.out)).toBe(true);
    expect(f.srcOf(o.out)).toBe(f.hex(f.vip(1)));
    const i = recv(nat, f.udp(f.remote, f.vip(1), { sport: 2, dport: 1, data: new Uint8Array(33), checksum: false }));
    expect(i.v).toBe(1);
    expect(u16(i.out, at)).toBe(0);
    expect(f.headerOk(i.out)).toBe(true);
  });

  it('a UDP checksum that comes out as 0 is sent as 0xffff', () => {
    // Find data whose UDP checksum from VIP 1 computes to 0 (sent as 0xffff), then send it from the inner address.
    const nat = f.makeNat();
    for (let x = 0; x < 0x10000; x++) {
      const data = new Uint8Array([x >>> 8, x & 0xff]);
      if (u16(f.udp(f.vip(1), f.remote, { sport: 9, dport: 9, data }), f.ipHeader + 6) !== 0xffff) continue;
      const o = send(nat, 1, f.udp(f.inner, f.remote, { sport: 9, dport: 9, data }));
      expect(u16(o.out, f.ipHeader + 6)).toBe(0xffff);
      expect(f.ok(o.out)).toBe(true);
      return;
    }
    throw new Error('no such data');
  });

  it('translates protocols without ports by address only, without a flow', () => {
    const nat = f.makeNat();
    const payload = new Uint8Array([0, 0, 0x08, 0, 1, 2, 3, 4]);
    // GRE; over IPv6 also No Next Header and ESP.
    for (const proto of f === IPV4 ? [47] : [47, NO_NEXT, 50]) {
      const o = send(nat, 2, f.ip(f.inner, f.remote, proto, payload));
      expect(o.v).toBe(TO_UPLINK);
      expect(hx(o.out)).toBe(hx(f.ip(f.vip(2), f.remote, proto, payload)));
      const i = recv(nat, f.ip(f.remote, f.vip(2), proto, payload));
      expect(i.v).toBe(2);
      expect(hx(i.out)).toBe(hx(f.ip(f.remote, f.inner, proto, payload)));
    }
    expect(f.flows(nat).count).toBe(0);
  });

  it('still translates when the flow table is full of assured flows (counters.tableFull)', () => {
    const nat = f.makeNat(f.capacity(2));
    for (let p = 1; p <= 3; p++) {
      const o = send(nat, 1, f.udp(f.inner, f.remote, { sport: p, dport: 53 }));
      expect(o.v).toBe(TO_UPLINK);
      expect(hx(o.out)).toBe(hx(f.udp(f.vip(1), f.remote, { sport: p, dport: 53 })));
      // Answered, so assured: not evicted to make room for the next.
      if (p < 3) expect(recv(nat, f.udp(f.remote, f.vip(1), { sport: 53, dport: p })).v).toBe(1);
    }
    expect(f.flows(nat).count).toBe(2);
    expect(nat.counters.flowsCreated).toBe(2);
    expect(nat.counters.flowsEvicted).toBe(0);
    expect(nat.counters.tableFull).toBe(1);
    // A reply for the flow that did not fit is still delivered by VIP.
    const i = recv(nat, f.udp(f.remote, f.vip(1), { sport: 53, dport: 3 }));
    expect(i.v).toBe(1);
    expect(f.ok(i.out)).toBe(true);
    expect(nat.counters.tableFull).toBe(2);
  });
});

describe.each(FAMILIES)('$name inbound flows', (f) => {
  it('a SYN to a VIP opens a flow to the session that holds it', () => {
    const nat = f.makeNat();
    const { inner: I, remote: R } = f;
    const i = recv(nat, f.tcp(R, f.vip(2), { sport: 51000, dport: 8080, flags: SYN }));
    expect(i.v).toBe(2);
    expect(hx(i.out)).toBe(hx(f.tcp(R, I, { sport: 51000, dport: 8080, flags: SYN })));
    const t = f.flows(nat);
    const fl = f.flowOut(nat, TCP, f.vip(2), 8080, R, 51000);
    expect(fl).not.toBe(NO_FLOW);
    expect(t.sessionOf(fl)).toBe(2);
    expect(t.stateOf(fl)).toBe(TCP_SYN_IN);
    expect(f.flowIn(nat, 2, TCP, 8080, R, 51000)).toBe(fl);
    expect(nat.counters.flowsCreated).toBe(1);

    // The listener answers; same flow, half-open until the remote's ACK (RFC 5382), then established.
    const o = send(nat, 2, f.tcp(I, R, { sport: 8080, dport: 51000, flags: SYN | ACK }));
    expect(o.v).toBe(TO_UPLINK);
    expect(hx(o.out)).toBe(hx(f.tcp(f.vip(2), R, { sport: 8080, dport: 51000, flags: SYN | ACK })));
    expect(t.stateOf(fl)).toBe(TCP_SYN_ACK_OUT);
    expect(recv(nat, f.tcp(R, f.vip(2), { sport: 51000, dport: 8080, flags: ACK })).v).toBe(2);
    expect(t.stateOf(fl)).toBe(TCP_ESTABLISHED);
    expect(t.count).toBe(1);
  });

  it('only a bare SYN, UDP or an echo request opens a flow from outside; other segments are delivered without one', () => {
    const nat = f.makeNat();
    const { inner: I, remote: R } = f;
    const t = f.flows(nat);
    for (const flags of [ACK, SYN | ACK, RST, SYN | RST, FIN | ACK, 0]) {
      const i = recv(nat, f.tcp(R, f.vip(1), { sport: 51000, dport: 8080, flags }));
      expect(i.v).toBe(1);
      expect(f.ok(i.out)).toBe(true);
    }
    expect(t.count).toBe(0);
    // An echo reply opens nothing; an echo request does.
    expect(recv(nat, f.echo(R, f.vip(1), false, 9, 1)).v).toBe(1);
    expect(t.count).toBe(0);
    expect(recv(nat, f.echo(R, f.vip(1), true, 9, 1)).v).toBe(1);
    expect(t.count).toBe(1);
    expect(t.stateOf(f.flowOut(nat, f.icmp, f.vip(1), 9, R, 0))).toBe(ICMP_ACTIVE);
    // UDP opens a flow (a listener may be there).
    expect(recv(nat, f.udp(R, f.vip(1), { sport: 1, dport: 2 })).v).toBe(1);
    expect(t.count).toBe(2);
    const syn = recv(nat, f.tcp(R, f.vip(2), { sport: 51000, dport: 8080, flags: SYN }));
    expect(syn.v).toBe(2);
    expect(hx(syn.out)).toBe(hx(f.tcp(R, I, { sport: 51000, dport: 8080, flags: SYN })));
    expect(t.count).toBe(3);
    const fl = f.flowOut(nat, TCP, f.vip(2), 8080, R, 51000);
    expect(t.sessionOf(fl)).toBe(2);
    expect(f.flowIn(nat, 2, TCP, 8080, R, 51000)).toBe(fl);
    // The echo reply from the session uses the request's flow.
    const o = send(nat, 1, f.echo(I, R, false, 9, 1));
    expect(o.v).toBe(TO_UPLINK);
    expect(hx(o.out)).toBe(hx(f.echo(f.vip(1), R, false, 9, 1)));
    expect(t.count).toBe(3);
    expect(nat.counters.flowsCreated).toBe(3);
  });

  it('drops packets to an address no session holds (counters.noSession)', () => {
    const nat = f.makeNat();
    const dsts: Addr[] =
      f === IPV4
        ? [f.inner, f.vip(5), f.remote, 0xc6130000, 0xffffffff]
        : [f.vip(9), f.inner, f.remote, addr6('fd00:19:7::1:1'), addr6('fd00:19:8::1')];
    for (const dst of dsts) {
      expect(recv(nat, f.tcp(f.remote, dst, { sport: 1, dport: 2, flags: SYN })).v).toBe(DROP);
      expect(recv(nat, f.udp(f.remote, dst, { sport: 1, dport: 2 })).v).toBe(DROP);
    }
    expect(nat.counters.noSession).toBe(2 * dsts.length);
    expect(f.flows(nat).count).toBe(0);
  });
});

describe.each(FAMILIES)('$name TCP state machine', (f) => {
  const T = DEFAULT_TIMEOUTS;

  it('flow state and deadline follow an outbound SYN / SYN-ACK / ACK / FIN / FIN / ACK exchange, RST and port reuse', () => {
    const nat = f.makeNat();
    const { inner: I, remote: R } = f;
    const t = f.flows(nat);
    const out = (flags: number, now: number): number => send(nat, 1, f.tcp(I, R, { sport: 44000, dport: 80, flags }), now).v;
    const inn = (flags: number, now: number): number => recv(nat, f.tcp(R, f.vip(1), { sport: 80, dport: 44000, flags }), now).v;
    const st = (): [string, number] => {
      const fl = f.flowIn(nat, 1, TCP, 44000, R, 80);
      return [STATE_NAMES[t.stateOf(fl)]!, t.deadlineOf(fl)];
    };
    const steps: [(flags: number, now: number) => number, number, number, string, number][] = [
      [out, SYN, 100, 'syn-out', T.tcpTransitory],
      [inn, SYN | ACK, 101, 'syn-ack-in', T.tcpTransitory],
      [out, ACK, 102, 'established', T.tcpEstablished],
      [inn, ACK | PSH, 103, 'established', T.tcpEstablished],
      [out, FIN | ACK, 104, 'fin-out', T.tcpTransitory],
      [inn, ACK, 104, 'fin-out', T.tcpTransitory],
      [inn, FIN | ACK, 105, 'closing', T.tcpTransitory],
      [out, ACK, 106, 'closing', T.tcpTransitory],
      // The port is reused for a new connection.
      [out, SYN, 200, 'syn-out', T.tcpTransitory],
      [inn, RST | ACK, 201, 'closed', T.tcpClosed],
    ];
    for (const [dir, flags, now, state, timeout] of steps) {
      expect(dir(flags, now)).toBe(dir === out ? TO_UPLINK : 1);
      expect(st(), `${dir === out ? 'out' : 'in'} flags ${flags.toString(16)}`).toEqual([state, now + timeout]);
    }
    expect(t.count).toBe(1);
  });

  it('flow state follows an inbound connection to a listener, closed from outside first', () => {
    const nat = f.makeNat();
    const { inner: I, remote: R } = f;
    const t = f.flows(nat);
    const out = (flags: number): number => send(nat, 3, f.tcp(I, R, { sport: 9000, dport: 55000, flags })).v;
    const inn = (flags: number): number => recv(nat, f.tcp(R, f.vip(3), { sport: 55000, dport: 9000, flags })).v;
    const st = (): number => t.stateOf(f.flowOut(nat, TCP, f.vip(3), 9000, R, 55000));
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
    expect(out(RST)).toBe(TO_UPLINK);
    expect(st()).toBe(TCP_CLOSED);
  });

  it('a connection first seen mid-stream is taken as established', () => {
    const nat = f.makeNat();
    expect(send(nat, 2, f.tcp(f.inner, f.remote, { sport: 1, dport: 2, flags: ACK })).v).toBe(TO_UPLINK);
    expect(f.flows(nat).stateOf(f.flowIn(nat, 2, TCP, 1, f.remote, 2))).toBe(TCP_ESTABLISHED);
  });
});

describe.each(FAMILIES)('$name expiry', (f) => {
  it('drops each kind of flow after its timeout (DEFAULT_TIMEOUTS), not before', () => {
    const nat = f.makeNat();
    const { inner: I, remote: R } = f;
    const T = DEFAULT_TIMEOUTS;
    const t0 = 5000;
    const tcpOut = (sport: number, flags: number, now = t0): number => send(nat, 1, f.tcp(I, R, { sport, dport: 80, flags }), now).v;
    const tcpIn = (dport: number, flags: number): number => recv(nat, f.tcp(R, f.vip(1), { sport: 80, dport, flags }), t0).v;
    // UDP, echo, TCP established, TCP transitory (SYN only), TCP closed by an RST from outside and from the session.
    send(nat, 1, f.udp(I, R, { sport: 1, dport: 53 }), t0);
    send(nat, 1, f.echo(I, R, true, 1, 1), t0);
    tcpOut(2, SYN);
    tcpIn(2, SYN | ACK);
    tcpOut(2, ACK);
    tcpOut(3, SYN);
    tcpOut(4, SYN);
    tcpIn(4, RST);
    tcpOut(5, RST);
    // Another session's UDP flow, refreshed later.
    send(nat, 2, f.udp(I, R, { sport: 1, dport: 53 }), t0 + 100);
    const t = f.flows(nat);
    expect(t.count).toBe(7);

    const alive = () => ({
      udp: f.flowIn(nat, 1, UDP, 1, R, 53) !== NO_FLOW,
      icmp: f.flowIn(nat, 1, f.icmp, 1, R, 0) !== NO_FLOW,
      est: f.flowIn(nat, 1, TCP, 2, R, 80) !== NO_FLOW,
      syn: f.flowIn(nat, 1, TCP, 3, R, 80) !== NO_FLOW,
      closedIn: f.flowIn(nat, 1, TCP, 4, R, 80) !== NO_FLOW,
      closedOut: f.flowIn(nat, 1, TCP, 5, R, 80) !== NO_FLOW,
      later: f.flowIn(nat, 2, UDP, 1, R, 53) !== NO_FLOW,
    });
    const all = { udp: true, icmp: true, est: true, syn: true, closedIn: true, closedOut: true, later: true };
    nat.expire(t0 + T.tcpClosed);
    expect(alive()).toEqual(all);
    nat.expire(t0 + T.tcpClosed + 1);
    expect(alive()).toEqual({ ...all, closedIn: false, closedOut: false });
    nat.expire(t0 + T.icmp + 1);
    expect(alive()).toEqual({ ...all, closedIn: false, closedOut: false, icmp: false });
    nat.expire(t0 + T.tcpTransitory);
    expect(alive().syn).toBe(true);
    nat.expire(t0 + T.tcpTransitory + 1);
    expect(alive()).toEqual({ ...all, closedIn: false, closedOut: false, icmp: false, syn: false });
    nat.expire(t0 + T.udp);
    expect(alive().udp).toBe(true);
    nat.expire(t0 + T.udp + 1);
    expect(alive()).toEqual({ ...all, closedIn: false, closedOut: false, icmp: false, syn: false, udp: false });
    nat.expire(t0 + 100 + T.udp + 1);
    expect(alive()).toEqual({ ...all, closedIn: false, closedOut: false, icmp: false, syn: false, udp: false, later: false });
    nat.expire(t0 + T.tcpEstablished);
    expect(alive().est).toBe(true);
    nat.expire(t0 + T.tcpEstablished + 1);
    expect(alive().est).toBe(false);
    expect(t.count).toBe(0);
    expect(nat.flowCount).toBe(0);
    expect(nat.counters.flowsExpired).toBe(7);
    // After expiry, a reply is still delivered by VIP: a TCP one opens nothing, a UDP one a new flow.
    expect(recv(nat, f.tcp(R, f.vip(1), { sport: 80, dport: 2, flags: SYN | ACK }), t0 + 9000).v).toBe(1);
    expect(t.count).toBe(0);
    expect(recv(nat, f.udp(R, f.vip(1), { sport: 53, dport: 1 }), t0 + 9000).v).toBe(1);
    expect(t.count).toBe(1);
  });

  it('traffic either way refreshes the deadline', () => {
    const nat = f.makeNat();
    const t = f.flows(nat);
    send(nat, 2, f.udp(f.inner, f.remote, { sport: 1, dport: 53 }), 1000);
    recv(nat, f.udp(f.remote, f.vip(2), { sport: 53, dport: 1 }), 1200);
    nat.expire(1400);
    expect(t.count).toBe(1);
    send(nat, 2, f.udp(f.inner, f.remote, { sport: 1, dport: 53 }), 1450);
    nat.expire(1700);
    expect(t.count).toBe(1);
    nat.expire(1751);
    expect(t.count).toBe(0);
  });

  it('custom timeouts and a scan budget', () => {
    const nat = f.makeNat({ timeouts: { tcpEstablished: 50, tcpTransitory: 5, tcpClosed: 1, udp: 20, icmp: 2 } });
    const t = f.flows(nat);
    for (let p = 1; p <= 10; p++) send(nat, 1, f.udp(f.inner, f.remote, { sport: p, dport: 53 }), 0);
    nat.expire(21, 4);
    expect(t.count).toBe(6);
    nat.expire(21, 4);
    expect(t.count).toBe(2);
    nat.expire(21);
    expect(t.count).toBe(0);
    expect(nat.counters.flowsExpired).toBe(10);
  });

  it('after expiry a late TCP segment from outside is still delivered but opens nothing', () => {
    const nat = f.makeNat();
    send(nat, 1, f.tcp(f.inner, f.remote, { sport: 2, dport: 80, flags: SYN }), 0);
    nat.expire(10_000);
    expect(f.flows(nat).count).toBe(0);
    const r = recv(nat, f.tcp(f.remote, f.vip(1), { sport: 80, dport: 2, flags: SYN | ACK }), 10_001);
    expect(r.v).toBe(1);
    expect(f.flows(nat).count).toBe(0);
  });
});

/** Per family: packet pairs for a hairpin between two sessions (there, and the answer back). */
const HAIRPIN: Record<Family['name'], [Make, Make][]> = {
  IPv4: [
    [
      (s, d) => tcpPacket(as4(s), as4(d), { sport: 40000, dport: 80, flags: SYN }),
      (s, d) => tcpPacket(as4(s), as4(d), { sport: 80, dport: 40000, flags: SYN | ACK }),
    ],
    [
      (s, d) => udpPacket(as4(s), as4(d), { sport: 5000, dport: 53, data: enc.encode('hairpin!') }),
      (s, d) => udpPacket(as4(s), as4(d), { sport: 53, dport: 5000, data: enc.encode('hairpin!') }),
    ],
    [(s, d) => echoPacket(as4(s), as4(d), 8, 42, 1), (s, d) => echoPacket(as4(s), as4(d), 0, 42, 1)],
  ],
  IPv6: [
    [
      (s, d) => udp6Packet(as6(s), as6(d), { sport: 5000, dport: 53, data: enc.encode('hairpin!') }),
      (s, d) => udp6Packet(as6(s), as6(d), { sport: 53, dport: 5000, data: enc.encode('hairpin!') }),
    ],
    [
      (s, d) => tcp6Packet(as6(s), as6(d), { sport: 40000, dport: 80, flags: SYN }),
      (s, d) => tcp6Packet(as6(s), as6(d), { sport: 80, dport: 40000, flags: SYN | ACK }),
    ],
    [
      (s, d) => echo6Packet(as6(s), as6(d), 128, 42, 1, enc.encode('hairpin!')),
      (s, d) => echo6Packet(as6(s), as6(d), 129, 42, 1, enc.encode('hairpin!')),
    ],
    [
      (s, d) => udp6Packet(as6(s), as6(d), { sport: 5001, dport: 53, data: enc.encode('hairpin!') }, { ext: [{ kind: 'dst' }] }),
      (s, d) => udp6Packet(as6(s), as6(d), { sport: 53, dport: 5001, data: enc.encode('hairpin!') }, { ext: [{ kind: 'hbh' }] }),
    ],
  ],
};

describe.each(FAMILIES)('$name hairpin', (f) => {
  it('session 2 -> the VIP of session 1 is delivered to 1 reading VIP2 -> inner, translated for the receiver, and back', () => {
    const nat = f.makeNat();
    const I = f.inner;
    let hairpins = 0;
    for (const [mkOut, mkBack] of HAIRPIN[f.name]) {
      const r = send(nat, 2, mkOut(I, f.vip(1)));
      expect(r.v).toBe(1);
      expect(r.clean).toBe(true);
      // The receiver sees the sender's VIP as source and its own inner address as destination.
      expect(hx(r.out)).toBe(hx(mkOut(f.vip(2), I)));
      expect(f.ok(r.out)).toBe(true);
      expect(nat.counters.hairpin).toBe(++hairpins);
      const b = send(nat, 1, mkBack(I, f.vip(2)));
      expect(b.v).toBe(2);
      expect(hx(b.out)).toBe(hx(mkBack(f.vip(1), I)));
      expect(f.ok(b.out)).toBe(true);
      expect(nat.counters.hairpin).toBe(++hairpins);
    }
    // Counted once each, as a session's packet.
    expect(nat.counters.fromSession).toBe(hairpins);
    expect(nat.counters.fromUplink).toBe(0);
    // The handshake's last ACK.
    expect(send(nat, 2, f.tcp(I, f.vip(1), { sport: 40000, dport: 80, flags: ACK })).v).toBe(1);
    // One flow per side for each exchange: session 2's (out) and session 1's (in); the TCP ones established.
    const t = f.flows(nat);
    expect(t.count).toBe(2 * HAIRPIN[f.name].length);
    const f2 = f.flowIn(nat, 2, TCP, 40000, f.vip(1), 80);
    const f1 = f.flowIn(nat, 1, TCP, 80, f.vip(2), 40000);
    expect(f2).not.toBe(NO_FLOW);
    expect(f1).not.toBe(NO_FLOW);
    expect(t.stateOf(f2)).toBe(TCP_ESTABLISHED);
    expect(t.stateOf(f1)).toBe(TCP_ESTABLISHED);
    expect(t.sessionOf(f1)).toBe(1);
  });

  it('works for UDP (checksum 0 too) and echo, to and from an address-mode session', () => {
    const nat = f.makeNat();
    const I = f.inner;
    const x = enc.encode('x');
    const u = send(nat, 3, f.udp(I, f.vip(4), { sport: 7, dport: 9, data: x }));
    expect(u.v).toBe(4);
    expect(hx(u.out)).toBe(hx(f.udp(f.vip(3), f.vip(4), { sport: 7, dport: 9, data: x })));
    const back = send(nat, 4, f.udp(f.vip(4), f.vip(3), { sport: 9, dport: 7 }));
    expect(back.v).toBe(3);
    expect(hx(back.out)).toBe(hx(f.udp(f.vip(4), I, { sport: 9, dport: 7 })));
    const e = send(nat, 1, f.echo(I, f.vip(3), true, 5, 5));
    expect(e.v).toBe(3);
    expect(hx(e.out)).toBe(hx(f.echo(f.vip(1), I, true, 5, 5)));
    const z = send(nat, 1, f.udp(I, f.vip(2), { sport: 1, dport: 2, checksum: false }));
    expect(z.v).toBe(2);
    expect(hx(z.out)).toBe(hx(f.udp(f.vip(1), I, { sport: 1, dport: 2, checksum: false })));
    expect(nat.counters.hairpin).toBe(4);
  });
});

/**
 * Per family: a UDP datagram 4000 -> 4001 split into a first fragment and a
 * later one (inbound over IPv6: with extension headers before the Fragment
 * header), and whether the two translated fragments reassemble
 * into a datagram whose checksum verifies from scratch.
 */
const FRAGMENTS: Record<
  Family['name'],
  {
    make(src: Addr, dst: Addr, data: Uint8Array, inbound: boolean): { first: Uint8Array; rest: Uint8Array };
    reassembledOk(a: Uint8Array, b: Uint8Array, src: Addr, dst: Addr, inbound: boolean): boolean;
  }
> = {
  IPv4: {
    make(src, dst, data) {
      const whole = udpDatagram(as4(src), as4(dst), { sport: 4000, dport: 4001, data });
      return {
        first: ipv4({ src: as4(src), dst: as4(dst), proto: UDP, mf: true, ident: 77 }, whole.subarray(0, 48)),
        rest: ipv4({ src: as4(src), dst: as4(dst), proto: UDP, fragOffset: 48, ident: 77 }, whole.subarray(48)),
      };
    },
    reassembledOk(a, b, src, dst) {
      const re = new Uint8Array(a.length - 20 + b.length - 20);
      re.set(a.subarray(20), 0);
      re.set(b.subarray(20), 48);
      return l4Ok(ipv4({ src: as4(src), dst: as4(dst), proto: UDP }, re));
    },
  },
  IPv6: {
    make(src, dst, data, inbound) {
      const ext: Ext6[] = inbound ? [{ kind: 'hbh' }, { kind: 'dst', options: [0x1e, 1, 0] }] : [];
      const whole = udp6Datagram(as6(src), as6(dst), { sport: 4000, dport: 4001, data });
      return {
        first: ipv6(
          { src: as6(src), dst: as6(dst), proto: UDP, ext: [...ext, { kind: 'frag', offset: 0, more: true, ident: 0x77 }] },
          whole.subarray(0, 56),
        ),
        rest: ipv6(
          { src: as6(src), dst: as6(dst), proto: UDP, ext: [{ kind: 'frag', offset: 56, more: false, ident: 0x77 }] },
          whole.subarray(56),
        ),
      };
    },
    reassembledOk(a, b, src, dst, inbound) {
      const l4 = inbound ? 40 + 8 + 8 + 8 : 48;
      const re = new Uint8Array(a.length - l4 + b.length - 48);
      re.set(a.subarray(l4), 0);
      re.set(b.subarray(48), a.length - l4);
      return onesSum([pseudoHeader6(as6(src), as6(dst), UDP, re.length), re]) === 0xffff;
    },
  },
};

describe.each(FAMILIES)('$name fragments', (f) => {
  const fr = FRAGMENTS[f.name];

  it('outbound: the first fragment gets its UDP checksum translated, a later one is translated by address only; reassembly verifies', () => {
    const nat = f.makeNat();
    const data = new Rng(48).bytes(100);
    const frag = fr.make(f.inner, f.remote, data, false);
    const want = fr.make(f.vip(3), f.remote, data, false);
    // The later fragment may come first.
    const b = send(nat, 3, frag.rest);
    expect(b.v).toBe(TO_UPLINK);
    expect(nat.counters.fragments).toBe(1);
    expect(f.flows(nat).count).toBe(0); // no ports in a later fragment
    expect(hx(b.out)).toBe(hx(want.rest));
    expect(hx(b.out.subarray(f.ipHeader))).toBe(hx(frag.rest.subarray(f.ipHeader))); // only the IP header changed
    const a = send(nat, 3, frag.first);
    expect(a.v).toBe(TO_UPLINK);
    expect(hx(a.out)).toBe(hx(want.first));
    expect(nat.counters.fragments).toBe(1); // a first fragment is not counted
    expect(f.flows(nat).count).toBe(1);
    expect(f.flows(nat).stateOf(f.flowIn(nat, 3, UDP, 4000, f.remote, 4001))).toBe(UDP_ACTIVE);
    expect(fr.reassembledOk(a.out, b.out, f.vip(3), f.remote, false)).toBe(true);
  });

  it('inbound: same, towards the inner address (IPv6: with extension headers before the Fragment header)', () => {
    const nat = f.makeNat();
    const data = new Rng(57).bytes(77);
    const frag = fr.make(f.remote, f.vip(2), data, true);
    const want = fr.make(f.remote, f.inner, data, true);
    const a = recv(nat, frag.first);
    expect(a.v).toBe(2);
    expect(hx(a.out)).toBe(hx(want.first));
    const b = recv(nat, frag.rest);
    expect(b.v).toBe(2);
    expect(hx(b.out)).toBe(hx(want.rest));
    expect(nat.counters.fragments).toBe(1);
    expect(fr.reassembledOk(a.out, b.out, f.remote, f.inner, true)).toBe(true);
    // The first fragment opened the flow.
    expect(f.flowOut(nat, UDP, f.vip(2), 4001, f.remote, 4000)).not.toBe(NO_FLOW);
  });
});

describe.each(FAMILIES)('$name ICMP errors', (f) => {
  const data = enc.encode('the payload the session sent, long enough to matter');
  const [unreach, code] = f.portUnreachable;
  /** Where the outer ICMP(v6) checksum is. */
  const ck = f.ipHeader + 2;

  it('in address mode an error passes untouched both ways, unverified, but must quote the session', () => {
    const nat = f.makeNat();
    const V = f.vip(4);
    const R = f.remote;
    expect(send(nat, 4, f.udp(V, R, { sport: 5000, dport: 53, data })).v).toBe(TO_UPLINK);
    expect(recv(nat, f.tcp(R, V, { sport: 50000, dport: 22, flags: SYN })).v).toBe(4);
    const inErr = f.error(f.router, V, unreach, code, f.udp(V, R, { sport: 5000, dport: 53, data }));
    const r = recv(nat, inErr);
    expect(r.v).toBe(4);
    expect(hx(r.out)).toBe(hx(inErr));
    const outErr = f.error(V, R, unreach, code, f.tcp(R, V, { sport: 50000, dport: 22, flags: SYN }));
    const o = send(nat, 4, outErr);
    expect(o.v).toBe(TO_UPLINK);
    expect(hx(o.out)).toBe(hx(outErr));
    // Nothing is rewritten, so nothing is verified: a bad checksum is the receiver's business.
    const bad = inErr.slice();
    bad[ck] = bad[ck]! ^ 1;
    const b = recv(nat, bad);
    expect(b.v).toBe(4);
    expect(hx(b.out)).toBe(hx(bad));
    // Still, the quote must hold the session's address; it needs no flow.
    expect(recv(nat, f.error(f.router, V, unreach, code, f.udp(f.vip(1), R, { sport: 5000, dport: 53 }))).v).toBe(DROP);
    expect(recv(nat, f.error(f.router, V, unreach, code, f.udp(V, R, { sport: 5001, dport: 53 }))).v).toBe(4);
    expect(nat.counters.icmpErrorsDropped).toBe(1);
    expect(nat.counters.malformed).toBe(0);
  });

  it('in NAT mode an error with a bad checksum is counted malformed and dropped, not laundered', () => {
    const nat = f.makeNat();
    const { inner: I, remote: R } = f;
    const sent = (s: Addr): Uint8Array => f.udp(s, R, { sport: 5000, dport: 53, data });
    expect(send(nat, 1, sent(I)).v).toBe(TO_UPLINK);
    const bad = f.error(f.router, f.vip(1), unreach, code, sent(f.vip(1)));
    bad[ck] = bad[ck]! ^ 0x01; // the ICMP checksum
    expect(recv(nat, bad).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(1);
    expect(nat.counters.icmpErrorsDropped).toBe(1);
    const bad2 = f.error(f.router, f.vip(1), unreach, code, sent(f.vip(1)));
    bad2[bad2.length - 1] = bad2[bad2.length - 1]! ^ 0x40; // a quoted data byte
    expect(recv(nat, bad2).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(2);
    // From the session, about a packet it received.
    expect(recv(nat, f.udp(R, f.vip(1), { sport: 53, dport: 7000 })).v).toBe(1);
    const bad3 = f.error(I, R, unreach, code, f.udp(R, I, { sport: 53, dport: 7000 }));
    bad3[ck + 1] = bad3[ck + 1]! ^ 0x80;
    expect(send(nat, 1, bad3).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(3);
    expect(nat.counters.icmpErrorsDropped).toBe(3);
  });

  it('an error hairpinned between two NAT-mode sessions is translated for both', () => {
    const nat = f.makeNat();
    const I = f.inner;
    // Session 1 sends UDP to session 2's VIP; session 2 answers with port unreachable.
    const d = send(nat, 1, f.udp(I, f.vip(2), { sport: 5000, dport: 9, data }));
    expect(d.v).toBe(2);
    expect(hx(d.out)).toBe(hx(f.udp(f.vip(1), I, { sport: 5000, dport: 9, data })));
    const e = send(nat, 2, f.error(I, f.vip(1), unreach, code, d.out));
    expect(e.v).toBe(1);
    expect(hx(e.out)).toBe(hx(f.error(f.vip(2), I, unreach, code, f.udp(I, f.vip(2), { sport: 5000, dport: 9, data }))));
    expect(f.ok(e.out)).toBe(true);
    expect(f.ok(e.out.subarray(f.ipHeader + 8))).toBe(true);
    expect(nat.counters.hairpin).toBe(2);
    expect(nat.counters.icmpErrorsDropped).toBe(0);
  });

  it('an error hairpinned from an address-mode session to a NAT-mode one is translated for the receiver', () => {
    const nat = f.makeNat();
    const I = f.inner;
    const d = send(nat, 1, f.udp(I, f.vip(4), { sport: 5000, dport: 9, data }));
    expect(d.v).toBe(4);
    expect(hx(d.out)).toBe(hx(f.udp(f.vip(1), f.vip(4), { sport: 5000, dport: 9, data })));
    const e = send(nat, 4, f.error(f.vip(4), f.vip(1), unreach, code, d.out));
    expect(e.v).toBe(1);
    expect(hx(e.out)).toBe(hx(f.error(f.vip(4), I, unreach, code, f.udp(I, f.vip(4), { sport: 5000, dport: 9, data }))));
    expect(f.ok(e.out)).toBe(true);
  });

  it('a quoted UDP checksum that comes out as 0 is written 0xffff', () => {
    const nat = f.makeNat();
    const { inner: I, remote: R } = f;
    for (let x = 0; x < 0x10000; x++) {
      const bytes = new Uint8Array([x >>> 8, x & 0xff]);
      if (u16(f.udp(I, R, { sport: 9, dport: 9, data: bytes }), f.ipHeader + 6) !== 0xffff) continue;
      expect(send(nat, 1, f.udp(I, R, { sport: 9, dport: 9, data: bytes })).v).toBe(TO_UPLINK);
      const r = recv(nat, f.error(f.router, f.vip(1), unreach, code, f.udp(f.vip(1), R, { sport: 9, dport: 9, data: bytes })));
      expect(r.v).toBe(1);
      expect(u16(r.out, f.ipHeader + 8 + f.ipHeader + 6)).toBe(0xffff);
      expect(hx(r.out)).toBe(hx(f.error(f.router, I, unreach, code, f.udp(I, R, { sport: 9, dport: 9, data: bytes }))));
      return;
    }
    throw new Error('no such data');
  });
});

/** Per family: valid packets ([session id, packet], 0 for the uplink) whose every truncation must be dropped. */
const TRUNCATED: Record<Family['name'], () => [number, Uint8Array][]> = {
  IPv4: () => {
    const [I, R, V] = [as4(IPV4.inner), as4(IPV4.remote), as4(IPV4.vip(1))];
    return [
      [1, tcpPacket(I, R, { sport: 1, dport: 2, flags: SYN, options: [2, 4, 5, 0xb4] })],
      [1, udpPacket(I, R, { sport: 1, dport: 2, data: new Uint8Array(11) })],
      [1, echoPacket(I, R, 8, 1, 1, new Uint8Array(5))],
      [1, icmpErrorPacket(I, R, 3, 3, udpPacket(R, I, { sport: 9, dport: 9 }))],
      [0, tcpPacket(R, V, { sport: 2, dport: 1, flags: SYN, options: [2, 4, 5, 0xb4] })],
      [0, udpPacket(R, V, { sport: 2, dport: 1, data: new Uint8Array(11) })],
      [0, echoPacket(R, V, 0, 1, 1, new Uint8Array(5))],
      [0, icmpErrorPacket(R, V, 3, 3, udpPacket(V, R, { sport: 9, dport: 9 }))],
    ];
  },
  IPv6: () => {
    const [I, R] = [as6(IPV6.inner), as6(IPV6.remote)];
    return [
      [1, udp6Packet(I, R, { sport: 1, dport: 2, data: new Uint8Array(10) })],
      [1, tcp6Packet(I, R, { sport: 1, dport: 2, flags: SYN, options: [2, 4, 5, 0xa0] }, { ext: [{ kind: 'hbh' }] })],
      [4, echo6Packet(as6(IPV6.vip(4)), R, 128, 1, 1, new Uint8Array(9))],
      [
        0,
        icmp6ErrorPacket(
          as6(IPV6.router),
          as6(IPV6.vip(2)),
          2,
          0,
          udp6Packet(as6(IPV6.vip(2)), R, { sport: 1, dport: 2 }),
          undefined,
          1280,
        ),
      ],
    ];
  },
};

describe.each(FAMILIES)('$name truncation', (f) => {
  it('every truncation of valid packets is dropped from either side as malformed, without throwing', () => {
    const nat = f.makeNat();
    let n = 0;
    for (const [id, p] of TRUNCATED[f.name]()) {
      for (let len = 0; len < p.length; len++) {
        // Alone in its buffer, and inside a larger one with bytes after it.
        const cut = p.slice(0, len);
        expect(id === 0 ? nat.fromUplink(cut, 0, len, NOW) : nat.fromSession(id, cut, 0, len, NOW)).toBe(DROP);
        expect(id === 0 ? recv(nat, cut).v : send(nat, id, cut).v).toBe(DROP);
        n += 2;
      }
    }
    expect(nat.counters.malformed).toBe(n);
  });
});

/** What the fuzz needs of a family: seeds, random buffers, and the checks from scratch. */
interface Fuzz {
  seed: number;
  /** Random buffers and mutations, each. */
  n: number;
  sessions: number[];
  seeds(rng: Rng): { out: [number, Uint8Array][]; inn: Uint8Array[] };
  random(rng: Rng): Uint8Array;
  /** How far into a packet mutations mostly go (the headers). */
  span: number;
  /** One mutation in ten is the seed packet unchanged. */
  unchanged: boolean;
  /** Checksum validity of a packet, read without src/wire ('-' when it has none to keep). */
  validity(p: Uint8Array): string;
  /** Problems with the flow table: every live flow must be findable from both sides. */
  consistency(nat: Nat): string[];
  min: { malformed: number; forwarded: number; checked: number };
}

const mld6 = (src: Uint8Array, dst: Uint8Array, type: number): Uint8Array =>
  ipv6({ src, dst, proto: ICMP6, hopLimit: 255 }, icmp6Message(src, dst, type, 0, 0, new Uint8Array(16)));

const FUZZ: Record<Family['name'], Fuzz> = {
  IPv4: {
    seed: 0xf00d,
    n: 10000,
    sessions: [0, 1, 2, 3, 4, 5, 9],
    seeds(rng) {
      const [R, ROUTER] = [as4(IPV4.remote), as4(IPV4.router)];
      const VIP = (k: number): number => as4(IPV4.vip(k));
      const out: [number, Uint8Array][] = [];
      const inn: Uint8Array[] = [];
      for (const k of [1, 2, 3, 4]) {
        const src = k === 4 ? VIP(4) : as4(IPV4.inner);
        const data = rng.bytes(rng.int(30));
        out.push(
          [k, tcpPacket(src, R, { sport: 100 + k, dport: 80, flags: SYN, data })],
          [k, udpPacket(src, R, { sport: 100 + k, dport: 53, data })],
          [k, udpPacket(src, VIP(1 + (k % 4)), { sport: 100 + k, dport: 53, data })],
          [k, echoPacket(src, R, 8, k, 1, data)],
          [k, icmpErrorPacket(src, R, 3, 3, udpPacket(R, src, { sport: 7000, dport: 9999, data }))],
          [k, ipv4({ src, dst: R, proto: UDP, fragOffset: 64 }, data)],
        );
        inn.push(
          tcpPacket(R, VIP(k), { sport: 80, dport: 100 + k, flags: SYN | ACK, data }),
          udpPacket(R, VIP(k), { sport: 7000, dport: 9999, data }),
          echoPacket(R, VIP(k), 0, k, 1, data),
          icmpErrorPacket(ROUTER, VIP(k), 3, 3, udpPacket(VIP(k), R, { sport: 100 + k, dport: 53, data })),
          icmpErrorPacket(ROUTER, VIP(k), 11, 0, tcpPacket(VIP(k), R, { sport: 100 + k, dport: 80, flags: SYN }), 28),
        );
      }
      return { out, inn };
    },
    random(rng) {
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
      return p;
    },
    span: 60,
    unchanged: false,
    validity(p) {
      // IP header; transport for unfragmented TCP/UDP/ICMP.
      const h = parse(p);
      const l4 =
        h.fragOffset === 0 && !h.mf && [TCP, UDP, ICMP].includes(h.proto) && h.totalLength <= p.length && h.totalLength >= h.ihl + 8;
      return `${ipHeaderOk(p)}/${l4 ? l4Ok(p.subarray(0, h.totalLength)) : '-'}`;
    },
    consistency(nat) {
      const t = nat.flows;
      const problems: string[] = [];
      let live = 0;
      for (let f = 0; f < t.capacity; f++) {
        if (t.stateOf(f) === 0) continue;
        live++;
        const a = t.lookupInner(t.sessionOf(f), t.protoOf(f), t.innerAddrOf(f), t.innerPortOf(f), t.remoteAddrOf(f), t.remotePortOf(f));
        const b = t.lookupOuter(t.protoOf(f), t.outerAddrOf(f), t.outerPortOf(f), t.remoteAddrOf(f), t.remotePortOf(f));
        if (a !== f || b !== f) problems.push(`flow ${f}: inner ${a} outer ${b}`);
      }
      if (live !== t.count) problems.push(`${live} live flows, count ${t.count}`);
      return problems;
    },
    min: { malformed: 1000, forwarded: 2000, checked: 1000 },
  },
  IPv6: {
    seed: 0x6f00d,
    n: 5000,
    sessions: [1, 2, 3, 4, 5, 6],
    seeds(rng) {
      const [R, ROUTER, LINK] = [as6(IPV6.remote), as6(IPV6.router), addr6('fe80::1')];
      const VIP = (k: number): Uint8Array => as6(IPV6.vip(k));
      const out: [number, Uint8Array][] = [];
      const inn: Uint8Array[] = [];
      for (const k of [1, 2, 3, 4]) {
        const src = k === 4 ? VIP(4) : as6(IPV6.inner);
        const data = rng.bytes(rng.int(30));
        const ext: Ext6[] = [{ kind: 'hbh', options: [0x1e, 1, 0] }, { kind: 'dst' }];
        out.push(
          [k, tcp6Packet(src, R, { sport: 100 + k, dport: 80, flags: SYN, data })],
          [k, tcp6Packet(src, R, { sport: 100 + k, dport: 81, flags: ACK, data }, { ext })],
          [k, udp6Packet(src, R, { sport: 100 + k, dport: 53, data })],
          [k, udp6Packet(src, VIP(1 + (k % 4)), { sport: 100 + k, dport: 53, data })],
          [k, echo6Packet(src, R, 128, k, 1, data)],
          [k, icmp6ErrorPacket(src, R, 1, 4, udp6Packet(R, src, { sport: 7000, dport: 9999, data }))],
          [k, ipv6({ src, dst: R, proto: UDP, ext: [{ kind: 'frag', offset: 64, ident: 3 }] }, data)],
          [
            k,
            ipv6(
              { src, dst: R, proto: UDP, ext: [{ kind: 'frag', more: true, ident: 3 }] },
              udp6Datagram(src, R, { sport: 100 + k, dport: 53, data: rng.bytes(40) }).subarray(0, 40),
            ),
          ],
          [k, mld6(LINK, addr6('ff02::2'), 133)],
        );
        inn.push(
          tcp6Packet(R, VIP(k), { sport: 80, dport: 100 + k, flags: SYN | ACK, data }),
          udp6Packet(R, VIP(k), { sport: 7000, dport: 9999, data }, { ext }),
          echo6Packet(R, VIP(k), 129, k, 1, data),
          icmp6ErrorPacket(ROUTER, VIP(k), 1, 4, udp6Packet(VIP(k), R, { sport: 100 + k, dport: 53, data })),
          icmp6ErrorPacket(ROUTER, VIP(k), 2, 0, tcp6Packet(VIP(k), R, { sport: 100 + k, dport: 80, flags: SYN, data }), 48, 1280),
          icmp6ErrorPacket(ROUTER, VIP(k), 3, 0, echo6Packet(VIP(k), R, 128, k, 1, data)),
        );
      }
      return { out, inn };
    },
    random(rng) {
      const addrs = [1, 2, 3, 4].map((k) => as6(IPV6.vip(k)));
      addrs.push(as6(IPV6.inner), as6(IPV6.remote), addr6('fe80::1'), addr6('::'), addr6('ff02::1'));
      const len = rng.int(140);
      const p = rng.bytes(len);
      if (len > 0) p[0] = 0x60 | (p[0]! & 0x0f);
      if (len >= 40 && rng.int(4) !== 0) {
        const plen = rng.int(8) === 0 ? rng.u16() : len - 40;
        p[4] = plen >>> 8;
        p[5] = plen & 0xff;
        p[6] = rng.pick([TCP, UDP, ICMP6, TCP, UDP, ICMP6, HOP_BY_HOP, DEST_OPTIONS, ROUTING, FRAGMENT, NO_NEXT, rng.u8()]);
        if (rng.int(3) !== 0) p.set(rng.pick(addrs), 8);
        if (rng.int(3) !== 0) p.set(rng.pick(addrs), 24);
        if (len >= 48 && p[6] === ICMP6 && rng.bool()) p[40] = rng.pick([1, 2, 3, 4, 128, 129, 133, 135, 143]);
        // Sometimes make the transport checksum right, so translation has something to keep valid.
        if (len >= 48 && rng.bool() && (p[6] === TCP || p[6] === UDP || p[6] === ICMP6) && plen === len - 40) {
          const seg = p.subarray(40);
          const at = p[6] === TCP ? 16 : p[6] === UDP ? 6 : 2;
          if (p[6] === UDP) {
            seg[4] = seg.length >>> 8;
            seg[5] = seg.length & 0xff;
          }
          if (at + 2 <= seg.length) {
            seg[at] = seg[at + 1] = 0;
            const c = checksum(pseudoHeader6(p.subarray(8, 24), p.subarray(24, 40), p[6], seg.length), seg);
            seg[at] = c >>> 8;
            seg[at + 1] = c & 0xff;
          }
        }
      }
      return p;
    },
    span: 100,
    unchanged: true,
    validity(p) {
      // 'true'/'false' for an unfragmented TCP/UDP/ICMPv6 packet with 8 transport bytes, '-' otherwise.
      if (p.length < 40 || p[0]! >>> 4 !== 6) return '-';
      const end = 40 + u16(p, 4);
      if (end > p.length) return '-';
      let nh = p[6]!;
      let o = 40;
      for (let n = 0; n < 16; n++) {
        if (nh === FRAGMENT) {
          if (o + 8 > end) return '-';
          if ((u16(p, o + 2) & 0xfff9) !== 0) return '-'; // a real fragment
          nh = p[o]!;
          o += 8;
        } else if (nh === HOP_BY_HOP || nh === ROUTING || nh === DEST_OPTIONS) {
          if (o + 2 > end) return '-';
          const len = (p[o + 1]! + 1) * 8;
          if (o + len > end) return '-';
          nh = p[o]!;
          o += len;
        } else break;
      }
      if (!(nh === TCP || nh === UDP || nh === ICMP6) || end - o < 8) return '-';
      return String(l4Ok6(p.subarray(0, end)));
    },
    consistency(nat) {
      const t = nat.v6.flows;
      const problems: string[] = [];
      let live = 0;
      for (let f = 0; f < t.capacity; f++) {
        if (t.stateOf(f) === 0) continue;
        live++;
        const a = t.lookupInner(
          t.sessionOf(f),
          t.protoOf(f),
          t.addr,
          t.innerAt(f),
          t.innerPortOf(f),
          t.addr,
          t.remoteAt(f),
          t.remotePortOf(f),
        );
        const b = t.lookupOuter(t.protoOf(f), t.addr, t.outerAt(f), t.outerPortOf(f), t.addr, t.remoteAt(f), t.remotePortOf(f));
        if (a !== f || b !== f) problems.push(`flow ${f}: inner ${a} outer ${b}`);
      }
      if (live !== t.count) problems.push(`${live} live flows, count ${t.count}`);
      return problems;
    },
    min: { malformed: 500, forwarded: 1000, checked: 500 },
  },
};

describe.each(FAMILIES)('$name fuzz: never throws, checksum validity is kept', (f) => {
  const z = FUZZ[f.name];

  function mutate(rng: Rng, p: Uint8Array): Uint8Array {
    const q = p.slice();
    const n = 1 + rng.int(3);
    for (let i = 0; i < n; i++) {
      // Mostly the headers, where the parsing decisions are.
      const at = rng.int(4) === 0 ? rng.int(q.length) : rng.int(Math.min(q.length, z.span));
      q[at] = rng.bool() ? rng.u8() : q[at]! ^ (1 << rng.int(8));
    }
    if (rng.int(5) === 0) return q.slice(0, rng.int(q.length + 1));
    return q;
  }

  it(`${z.n} random buffers and ${z.n} mutations of valid packets through fromSession and fromUplink`, () => {
    const rng = new Rng(z.seed);
    const nat = f.makeNat();
    const { out, inn } = z.seeds(rng);
    const problems: string[] = [];
    let forwarded = 0;
    let checked = 0;
    const check = (what: string, v: number, before: Uint8Array, after: Uint8Array, fromSession: boolean): void => {
      if (!(v === DROP || v === TO_UPLINK || (v >= 1 && v <= 8)) || (!fromSession && v === TO_UPLINK))
        problems.push(`${what}: verdict ${v}`);
      if (v === DROP) return;
      forwarded++;
      const a = z.validity(before);
      const b = z.validity(after);
      if (!a.endsWith('-')) checked++;
      // Valid stays valid (and, as it happens, invalid stays invalid: nothing is laundered).
      if (a !== b) problems.push(`${what}: checksum validity ${a} -> ${b}: ${hx(before)}`);
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
        problems.push(`${what}: threw ${String(e)} on ${hx(p)}`);
      }
    };
    for (let i = 0; i < z.n; i++) {
      const p = z.random(rng);
      run(`random ${i}`, rng.pick(z.sessions), p, i);
      if (i % 500 === 0) nat.expire(i);
    }
    for (let i = 0; i < z.n; i++) {
      const fromSession = rng.bool();
      const [id, base] = fromSession ? rng.pick(out) : [rng.pick([1, 2, 3, 4]), rng.pick(inn)];
      run(`mutation ${i}`, id, z.unchanged && rng.int(10) === 0 ? base.slice() : mutate(rng, base), 20000 + i);
      if (i % 500 === 0) nat.expire(20000 + i);
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(nat.counters.fromSession).toBe(2 * z.n);
    expect(nat.counters.malformed).toBeGreaterThan(z.min.malformed);
    expect(forwarded).toBeGreaterThan(z.min.forwarded);
    expect(checked).toBeGreaterThan(z.min.checked);
    // The flow table is still consistent: every live flow findable from both sides.
    expect(z.consistency(nat).slice(0, 10)).toEqual([]);
  });
});
