// Unit tests for the IPv6 translator (Nat6 through Nat): address and NAT mode, extension headers, fragments,
// ICMPv6 errors, link control and anti-spoofing, hairpin, session churn, TCP states, expiry, fuzz.
// Every checksum is checked from scratch with packets.ts, never with src/wire.
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
  TCP_FIN_IN,
  TCP_FIN_OUT,
  TCP_SYN_ACK_IN,
  TCP_SYN_ACK_OUT,
  TCP_SYN_IN,
  TCP_SYN_OUT,
  TO_UPLINK,
  UDP_ACTIVE,
} from '../../src/nat/index.js';
import {
  ACK,
  DEST_OPTIONS,
  FIN,
  FRAGMENT,
  HOP_BY_HOP,
  ICMP6,
  NO_NEXT,
  PSH,
  ROUTING,
  RST,
  Rng,
  SYN,
  TCP,
  UDP,
  addr,
  addr6,
  checksum,
  echo6Packet,
  icmp6ErrorPacket,
  icmp6Message,
  ipv6,
  l4Ok6,
  onesSum,
  pseudoHeader6,
  tcp6Packet,
  tcp6Segment,
  toHex,
  u16,
  udp6Datagram,
  udp6Packet,
  udpPacket,
  words6,
  type Ext6,
} from './packets.js';
import { NOW, recv, send } from './harness.js';

const INNER = addr6('fd00:2::100');
const VIP = (k: number): Uint8Array => addr6(`fd00:19:7::${k.toString(16)}`);
const REMOTE = addr6('2001:db8:5::5');
const REMOTE2 = addr6('2001:db8:5::6');
const ROUTER = addr6('2001:db8:ff::1');
const LINK = addr6('fe80::1');
const UNSPEC = addr6('::');

/**
 * Sessions 1-3 share inner address fd00:2::100 (NAT mode) with VIPs fd00:19:7::1-3;
 * session 4 holds fd00:19:7::4 itself (address mode); session 5 has IPv4 only.
 */
function makeNat(opts: Partial<ConstructorParameters<typeof Nat>[0]> = {}): Nat {
  const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1, ...opts });
  for (const k of [1, 2, 3]) nat.addSession6(k, words6(INNER), words6(VIP(k)));
  nat.addSession6(4, words6(VIP(4)), words6(VIP(4)));
  nat.addSession(5, addr('10.0.2.100'), addr('198.19.0.5'));
  return nat;
}

const srcOf = (p: Uint8Array): string => toHex(p.subarray(8, 24));
const dstOf = (p: Uint8Array): string => toHex(p.subarray(24, 40));
const hx = toHex;

/** The flow of session `id` for a packet it sends inner:sport -> remote:dport, or NO_FLOW. */
function flowIn(nat: Nat, id: number, proto: number, sport: number, remote: Uint8Array, dport: number, inner = INNER): number {
  return nat.v6.flows.lookupInner(id, proto, words6(inner), 0, sport, words6(remote), 0, dport);
}

/** The flow of a packet remote:rport -> vip:port from the uplink, or NO_FLOW. */
function flowOut(nat: Nat, proto: number, vip: Uint8Array, port: number, remote: Uint8Array, rport: number): number {
  return nat.v6.flows.lookupOuter(proto, words6(vip), 0, port, words6(remote), 0, rport);
}

const enc = new TextEncoder();

describe('IPv6 sessions', () => {
  it('addSession6 checks ids, duplicates and VIPs', () => {
    const nat = makeNat();
    expect(() => nat.addSession6(0, words6(INNER), words6(VIP(9)))).toThrow(RangeError);
    expect(() => nat.addSession6(9, words6(INNER), words6(VIP(9)))).toThrow(/session id 9: must be 1-8/);
    expect(() => nat.addSession6(1, words6(INNER), words6(VIP(9)))).toThrow(/already has an IPv6 address/);
    expect(() => nat.addSession6(6, words6(INNER), words6(VIP(1)))).toThrow(/already held/);
    // The failed attempt changed nothing: VIP 1 still goes to session 1, session 6 has no IPv6.
    expect(nat.v6.hasSession(6)).toBe(false);
    expect(recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 53, dport: 5000 })).v).toBe(1);
    expect(send(nat, 6, udp6Packet(INNER, REMOTE, { sport: 5000, dport: 53 })).v).toBe(DROP);
    expect(nat.counters.otherFamily).toBe(1);
    nat.addSession6(6, words6(INNER), words6(VIP(6)));
    expect(nat.v6.hasSession(6)).toBe(true);
    expect(recv(nat, udp6Packet(REMOTE, VIP(6), { sport: 53, dport: 5000 })).v).toBe(6);
    // A dual-stack session: IPv4 and IPv6 side by side.
    nat.addSession6(5, words6(INNER), words6(VIP(5)));
    expect(recv(nat, udp6Packet(REMOTE, VIP(5), { sport: 53, dport: 5000 })).v).toBe(5);
    expect(recv(nat, udpPacket(addr('203.0.113.5'), addr('198.19.0.5'), { sport: 53, dport: 5000 })).v).toBe(5);
  });

  it("removeSession drops the session's IPv6 flows and its VIP; the VIP and the id can be reused", () => {
    const nat = makeNat();
    expect(send(nat, 2, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(TO_UPLINK);
    expect(send(nat, 2, tcp6Packet(INNER, REMOTE, { sport: 3, dport: 4, flags: SYN })).v).toBe(TO_UPLINK);
    expect(send(nat, 1, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(TO_UPLINK);
    expect(nat.v6.flows.count).toBe(3);
    expect(nat.flowCount).toBe(3);
    nat.removeSession(2);
    expect(nat.v6.flows.count).toBe(1);
    expect(flowIn(nat, 2, UDP, 1, REMOTE, 2)).toBe(NO_FLOW);
    expect(flowIn(nat, 1, UDP, 1, REMOTE, 2)).not.toBe(NO_FLOW);
    expect(nat.v6.hasSession(2)).toBe(false);
    nat.removeSession(2); // no-op
    nat.removeSession(7); // never added

    const noSession = nat.counters.noSession;
    expect(recv(nat, udp6Packet(REMOTE, VIP(2), { sport: 2, dport: 1 })).v).toBe(DROP);
    expect(nat.counters.noSession).toBe(noSession + 1);
    expect(send(nat, 2, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(DROP);
    expect(nat.counters.otherFamily).toBe(1);

    // Another session takes the VIP; the old id comes back with another one.
    nat.addSession6(6, words6(INNER), words6(VIP(2)));
    const r = recv(nat, udp6Packet(REMOTE, VIP(2), { sport: 2, dport: 1 }));
    expect(r.v).toBe(6);
    expect(hx(r.out)).toBe(hx(udp6Packet(REMOTE, INNER, { sport: 2, dport: 1 })));
    nat.addSession6(2, words6(INNER), words6(VIP(7)));
    expect(recv(nat, udp6Packet(REMOTE, VIP(7), { sport: 2, dport: 1 })).v).toBe(2);
    const o = send(nat, 2, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 }));
    expect(o.v).toBe(TO_UPLINK);
    expect(hx(o.out)).toBe(hx(udp6Packet(VIP(7), REMOTE, { sport: 1, dport: 2 })));
  });

  it('the VIP index survives seeded random churn of 200 sessions', () => {
    const rng = new Rng(0x6c6);
    const max = 200;
    const nat = new Nat({ maxSession: max, flowCapacity: 1024, seed: 3 });
    // VIPs that differ in every word position, some only in one bit.
    const pool: Uint8Array[] = [];
    for (let i = 0; i < 150; i++) pool.push(addr6(`fd00:19:7::${(i + 1).toString(16)}`));
    for (let i = 0; i < 100; i++) pool.push(addr6(`fd00:19:${(i + 8).toString(16)}::1`));
    for (let i = 0; i < 100; i++) pool.push(addr6(`2001:db8:${i.toString(16)}:1:0:${(i * 7).toString(16)}:0:1`));
    for (let i = 0; i < 50; i++) {
      const a = new Uint8Array(16);
      a[0] = 0xfd;
      a[(i % 15) + 1] = 1 << (i % 8);
      pool.push(a);
    }
    expect(new Set(pool.map(hx)).size).toBe(pool.length);
    const probes = pool.map((v) => tcp6Packet(REMOTE, v, { sport: 443, dport: 1000, flags: ACK })); // ACK: opens no flow
    const owner = new Array<number>(pool.length).fill(0);
    const vipOf = new Array<number>(max + 1).fill(-1);
    const addressMode = new Array<boolean>(max + 1).fill(false);
    const problems: string[] = [];

    const check = (i: number, when: string): void => {
      const r = recv(nat, probes[i]!);
      const want = owner[i] === 0 ? DROP : owner[i]!;
      if (r.v !== want) problems.push(`${when}: VIP #${i} went to ${r.v}, want ${want}`);
      else if (want !== DROP) {
        const inner = addressMode[want] ? pool[i]! : INNER;
        if (dstOf(r.out) !== hx(inner) || !l4Ok6(r.out)) problems.push(`${when}: VIP #${i} translated wrong`);
      }
    };
    const add = (id: number, i: number): void => {
      addressMode[id] = rng.int(4) === 0;
      nat.addSession6(id, words6(addressMode[id] ? pool[i]! : INNER), words6(pool[i]!));
      owner[i] = id;
      vipOf[id] = i;
    };
    const remove = (id: number): void => {
      nat.removeSession(id);
      owner[vipOf[id]!] = 0;
      vipOf[id] = -1;
    };
    const free = (): number => {
      for (;;) {
        const i = rng.int(pool.length);
        if (owner[i] === 0) return i;
      }
    };

    for (let op = 0; op < 4000 && problems.length < 10; op++) {
      const id = 1 + rng.int(max);
      if (vipOf[id]! >= 0) {
        const i = vipOf[id]!;
        remove(id);
        check(i, `op ${op} remove ${id}`);
      } else {
        if (rng.int(10) === 0) {
          // A VIP someone holds is refused and changes nothing.
          const held = owner.findIndex((o) => o !== 0);
          if (held >= 0) {
            expect(() => nat.addSession6(id, words6(INNER), words6(pool[held]!))).toThrow(/already held/);
            check(held, `op ${op} refused`);
          }
        }
        const i = free();
        add(id, i);
        check(i, `op ${op} add ${id}`);
      }
      if (op % 200 === 199) for (let i = 0; i < pool.length; i++) check(i, `op ${op} sweep`);
    }
    // Fill every id, sweep, then empty in random order, sweeping as we go.
    for (let id = 1; id <= max; id++) if (vipOf[id]! < 0) add(id, free());
    for (let i = 0; i < pool.length; i++) check(i, 'full');
    const ids = Array.from({ length: max }, (_, k) => k + 1);
    for (let k = ids.length - 1; k > 0; k--) {
      const j = rng.int(k + 1);
      [ids[k], ids[j]] = [ids[j]!, ids[k]!];
    }
    for (let n = 0; n < ids.length; n++) {
      remove(ids[n]!);
      if (n % 20 === 0) for (let i = 0; i < pool.length; i++) check(i, `emptying ${n}`);
    }
    for (let i = 0; i < pool.length; i++) check(i, 'empty');
    expect(problems.slice(0, 10)).toEqual([]);
    expect(nat.v6.flows.count).toBe(0);
  });
});

describe('IPv6 address mode (inner == VIP)', () => {
  it('leaves every byte unchanged both ways, for TCP, UDP and ICMPv6 echo, with flows', () => {
    const nat = makeNat();
    const V = VIP(4);
    const outs = [
      tcp6Packet(V, REMOTE, { sport: 40000, dport: 80, flags: SYN, options: [2, 4, 5, 0xa0] }),
      udp6Packet(V, REMOTE, { sport: 5353, dport: 53, data: enc.encode('query') }),
      echo6Packet(V, REMOTE, 128, 7, 1, enc.encode('ping')),
      udp6Packet(
        V,
        REMOTE,
        { sport: 5354, dport: 53, data: enc.encode('q') },
        { ext: [{ kind: 'hbh', options: [0x1e, 2, 1, 2] }, { kind: 'dst' }] },
      ),
    ];
    const ins = [
      tcp6Packet(REMOTE, V, { sport: 80, dport: 40000, flags: SYN | ACK, ack: 1001 }),
      udp6Packet(REMOTE, V, { sport: 53, dport: 5353, data: enc.encode('answer') }),
      echo6Packet(REMOTE, V, 129, 7, 1, enc.encode('ping')),
      udp6Packet(REMOTE, V, { sport: 53, dport: 5354, data: enc.encode('a') }, { ext: [{ kind: 'dst', options: [0x1e, 1, 9] }] }),
    ];
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
    expect(nat.v6.flows.count).toBe(4);
    expect(nat.v6.flows.stateOf(flowIn(nat, 4, TCP, 40000, REMOTE, 80, V))).toBe(TCP_SYN_ACK_IN);
    const ack = tcp6Packet(V, REMOTE, { sport: 40000, dport: 80, flags: ACK });
    expect(hx(send(nat, 4, ack).out)).toBe(hx(ack));
    expect(nat.v6.flows.stateOf(flowIn(nat, 4, TCP, 40000, REMOTE, 80, V))).toBe(TCP_ESTABLISHED);
    expect(nat.v6.flows.stateOf(flowIn(nat, 4, UDP, 5353, REMOTE, 53, V))).toBe(UDP_ACTIVE);
    expect(nat.v6.flows.stateOf(flowIn(nat, 4, ICMP6, 7, REMOTE, 0, V))).toBe(ICMP_ACTIVE);
    expect(nat.counters.flowsCreated).toBe(4);
  });
});

describe('IPv6 NAT mode (shared inner address, distinct VIPs)', () => {
  it('rewrites the source out and the destination in; checksums verify from scratch', () => {
    const nat = makeNat();
    const hbhDst: Ext6[] = [
      { kind: 'hbh', options: [0x1e, 2, 0xab, 0xcd] },
      { kind: 'dst', options: [0x1f, 3, 1, 2, 3] },
    ];
    for (const k of [1, 2, 3]) {
      const data = enc.encode(`session ${k} says hi`);
      const odd = enc.encode(`odd ${k}`.padEnd(17, '!'));
      type Make = (src: Uint8Array, dst: Uint8Array) => Uint8Array;
      const cases: [Make, Make][] = [
        [
          (s, d) => tcp6Packet(s, d, { sport: 40000, dport: 443, flags: SYN, options: [2, 4, 5, 0xa0] }),
          (s, d) => tcp6Packet(s, d, { sport: 443, dport: 40000, flags: SYN | ACK, ack: 1001 }),
        ],
        [
          (s, d) => tcp6Packet(s, d, { sport: 40000, dport: 443, flags: ACK | PSH, data }),
          (s, d) => tcp6Packet(s, d, { sport: 443, dport: 40000, flags: ACK, data }),
        ],
        [(s, d) => udp6Packet(s, d, { sport: 5000, dport: 53, data }), (s, d) => udp6Packet(s, d, { sport: 53, dport: 5000, data })],
        [
          (s, d) => udp6Packet(s, d, { sport: 5001, dport: 53, data: odd }),
          (s, d) => udp6Packet(s, d, { sport: 53, dport: 5001, data: odd }),
        ],
        [(s, d) => echo6Packet(s, d, 128, 0x100 + k, 1, data), (s, d) => echo6Packet(s, d, 129, 0x100 + k, 1, data)],
        // Extension headers before the transport header.
        [
          (s, d) => udp6Packet(s, d, { sport: 6000, dport: 7000, data }, { ext: hbhDst }),
          (s, d) => udp6Packet(s, d, { sport: 7000, dport: 6000, data }, { ext: hbhDst }),
        ],
        [
          (s, d) => tcp6Packet(s, d, { sport: 6001, dport: 7001, flags: ACK, data }, { ext: [{ kind: 'dst' }] }),
          (s, d) => tcp6Packet(s, d, { sport: 7001, dport: 6001, flags: ACK, data: odd }, { ext: [{ kind: 'hbh' }] }),
        ],
        [
          (s, d) => echo6Packet(s, d, 128, 0x200 + k, 2, odd, { ext: [{ kind: 'hbh', options: [5, 2, 0, 0] }] }),
          (s, d) => echo6Packet(s, d, 129, 0x200 + k, 2, odd, { ext: [{ kind: 'dst' }] }),
        ],
        [
          (s, d) =>
            udp6Packet(
              s,
              d,
              { sport: 6002, dport: 7002, data },
              { ext: [{ kind: 'hbh' }, { kind: 'routing', routingType: 4, segmentsLeft: 0 }, { kind: 'dst' }] },
            ),
          (s, d) => udp6Packet(s, d, { sport: 7002, dport: 6002, data }, { ext: [{ kind: 'routing', routingType: 4, segmentsLeft: 0 }] }),
        ],
        // An atomic fragment (offset 0, M clear: RFC 6946) is a whole packet.
        [
          (s, d) => udp6Packet(s, d, { sport: 6003, dport: 7003, data }, { ext: [{ kind: 'frag', ident: 9 }] }),
          (s, d) => tcp6Packet(s, d, { sport: 7003, dport: 6003, flags: SYN, data }, { ext: [{ kind: 'frag', ident: 10 }] }),
        ],
      ];
      for (const [mkOut, mkIn] of cases) {
        const o = send(nat, k, mkOut(INNER, REMOTE));
        expect(o.v).toBe(TO_UPLINK);
        expect(o.clean).toBe(true);
        expect(srcOf(o.out)).toBe(hx(VIP(k)));
        expect(l4Ok6(o.out)).toBe(true);
        expect(hx(o.out)).toBe(hx(mkOut(VIP(k), REMOTE)));
        const i = recv(nat, mkIn(REMOTE, VIP(k)));
        expect(i.v).toBe(k);
        expect(i.clean).toBe(true);
        expect(dstOf(i.out)).toBe(hx(INNER));
        expect(l4Ok6(i.out)).toBe(true);
        expect(hx(i.out)).toBe(hx(mkIn(REMOTE, INNER)));
      }
    }
    // Each session has its own flows even with identical inner tuples.
    const t = nat.v6.flows;
    for (const k of [1, 2, 3]) {
      const f = flowIn(nat, k, TCP, 40000, REMOTE, 443);
      expect(f).not.toBe(NO_FLOW);
      expect(t.sessionOf(f)).toBe(k);
      expect(Array.from(t.addr.subarray(t.outerAt(f), t.outerAt(f) + 4))).toEqual(Array.from(words6(VIP(k))));
      expect(Array.from(t.addr.subarray(t.innerAt(f), t.innerAt(f) + 4))).toEqual(Array.from(words6(INNER)));
      expect(flowOut(nat, TCP, VIP(k), 40000, REMOTE, 443)).toBe(f);
      expect(t.stateOf(f)).toBe(TCP_ESTABLISHED);
      expect(t.stateOf(flowIn(nat, k, UDP, 5000, REMOTE, 53))).toBe(UDP_ACTIVE);
      expect(t.stateOf(flowIn(nat, k, UDP, 6000, REMOTE, 7000))).toBe(UDP_ACTIVE);
      expect(t.stateOf(flowIn(nat, k, TCP, 6001, REMOTE, 7001))).toBe(TCP_ESTABLISHED);
      expect(t.stateOf(flowIn(nat, k, ICMP6, 0x100 + k, REMOTE, 0))).toBe(ICMP_ACTIVE);
      expect(t.stateOf(flowIn(nat, k, ICMP6, 0x200 + k, REMOTE, 0))).toBe(ICMP_ACTIVE);
    }
    expect(nat.counters.fromSession).toBe(30);
    expect(nat.counters.fromUplink).toBe(30);
    expect(nat.counters.malformed + nat.counters.spoofed + nat.counters.noSession + nat.counters.linkControl + nat.counters.fragments).toBe(
      0,
    );
    // Outbound creates every flow; the atomic-fragment TCP SYN opened one of its own from outside.
    expect(nat.counters.flowsCreated).toBe(3 * 10);
  });

  it('UDP with checksum 0 (invalid in IPv6) is not given a made-up checksum', () => {
    const nat = makeNat();
    const o = send(nat, 1, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2, data: new Uint8Array(33), checksum: false }));
    expect(o.v).toBe(TO_UPLINK);
    expect(u16(o.out, 46)).toBe(0);
    expect(srcOf(o.out)).toBe(hx(VIP(1)));
    const i = recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 2, dport: 1, data: new Uint8Array(33), checksum: false }));
    expect(i.v).toBe(1);
    expect(u16(i.out, 46)).toBe(0);
  });

  it('a UDP checksum that comes out as 0 is sent as 0xffff', () => {
    // Find data whose UDP checksum from VIP 1 computes to 0, then send it from the inner address.
    const nat = makeNat();
    for (let x = 0; x < 0x10000; x++) {
      const data = new Uint8Array([x >>> 8, x & 0xff]);
      const d = udp6Datagram(VIP(1), REMOTE, { sport: 9, dport: 9, data });
      if (u16(d, 6) !== 0xffff) continue;
      const o = send(nat, 1, udp6Packet(INNER, REMOTE, { sport: 9, dport: 9, data }));
      expect(u16(o.out, 46)).toBe(0xffff);
      expect(l4Ok6(o.out)).toBe(true);
      return;
    }
    throw new Error('no such data');
  });

  it('translates protocols without ports by address only, without a flow', () => {
    const nat = makeNat();
    const payload = new Uint8Array([0, 0, 0x08, 0, 1, 2, 3, 4]);
    for (const proto of [47, NO_NEXT, 50]) {
      const o = send(nat, 2, ipv6({ src: INNER, dst: REMOTE, proto }, payload));
      expect(o.v).toBe(TO_UPLINK);
      expect(hx(o.out)).toBe(hx(ipv6({ src: VIP(2), dst: REMOTE, proto }, payload)));
      const i = recv(nat, ipv6({ src: REMOTE, dst: VIP(2), proto }, payload));
      expect(i.v).toBe(2);
      expect(hx(i.out)).toBe(hx(ipv6({ src: REMOTE, dst: INNER, proto }, payload)));
    }
    expect(nat.v6.flows.count).toBe(0);
  });

  it('still translates when the IPv6 flow table is full of assured flows (counters.tableFull)', () => {
    const nat = makeNat({ flowCapacity6: 2 });
    for (let p = 1; p <= 3; p++) {
      const o = send(nat, 1, udp6Packet(INNER, REMOTE, { sport: p, dport: 53 }));
      expect(o.v).toBe(TO_UPLINK);
      expect(hx(o.out)).toBe(hx(udp6Packet(VIP(1), REMOTE, { sport: p, dport: 53 })));
      // Answered, so assured: not evicted to make room for the next.
      if (p < 3) expect(recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 53, dport: p })).v).toBe(1);
    }
    expect(nat.v6.flows.count).toBe(2);
    expect(nat.counters.tableFull).toBe(1);
    const i = recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 53, dport: 3 }));
    expect(i.v).toBe(1);
    expect(l4Ok6(i.out)).toBe(true);
    expect(nat.counters.tableFull).toBe(2);
  });
});

describe('IPv6 inbound flows', () => {
  it('only a bare SYN, UDP or an echo request opens a flow from outside', () => {
    const nat = makeNat();
    for (const flags of [ACK, SYN | ACK, RST, SYN | RST, FIN | ACK, 0]) {
      const i = recv(nat, tcp6Packet(REMOTE, VIP(1), { sport: 51000, dport: 8080, flags }));
      expect(i.v).toBe(1);
      expect(l4Ok6(i.out)).toBe(true);
    }
    expect(nat.v6.flows.count).toBe(0);
    expect(recv(nat, echo6Packet(REMOTE, VIP(1), 129, 9, 1)).v).toBe(1);
    expect(nat.v6.flows.count).toBe(0);
    expect(recv(nat, echo6Packet(REMOTE, VIP(1), 128, 9, 1)).v).toBe(1);
    expect(nat.v6.flows.count).toBe(1);
    expect(nat.v6.flows.stateOf(flowOut(nat, ICMP6, VIP(1), 9, REMOTE, 0))).toBe(ICMP_ACTIVE);
    expect(recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 1, dport: 2 })).v).toBe(1);
    expect(nat.v6.flows.count).toBe(2);
    const syn = recv(nat, tcp6Packet(REMOTE, VIP(2), { sport: 51000, dport: 8080, flags: SYN }));
    expect(syn.v).toBe(2);
    expect(hx(syn.out)).toBe(hx(tcp6Packet(REMOTE, INNER, { sport: 51000, dport: 8080, flags: SYN })));
    expect(nat.v6.flows.count).toBe(3);
    const f = flowOut(nat, TCP, VIP(2), 8080, REMOTE, 51000);
    expect(nat.v6.flows.sessionOf(f)).toBe(2);
    expect(flowIn(nat, 2, TCP, 8080, REMOTE, 51000)).toBe(f);
    // The echo reply from the session uses the request's flow.
    const o = send(nat, 1, echo6Packet(INNER, REMOTE, 129, 9, 1));
    expect(o.v).toBe(TO_UPLINK);
    expect(hx(o.out)).toBe(hx(echo6Packet(VIP(1), REMOTE, 129, 9, 1)));
    expect(nat.v6.flows.count).toBe(3);
    expect(nat.counters.flowsCreated).toBe(3);
  });
});

describe('IPv6 TCP state machine', () => {
  const T = DEFAULT_TIMEOUTS;

  it('follows an outbound SYN / SYN-ACK / FIN / FIN exchange, RST and port reuse', () => {
    const nat = makeNat();
    const t = nat.v6.flows;
    const out = (flags: number, now = NOW): void =>
      void expect(send(nat, 3, tcp6Packet(INNER, REMOTE, { sport: 40001, dport: 22, flags }), now).v).toBe(TO_UPLINK);
    const inn = (flags: number, now = NOW): void =>
      void expect(recv(nat, tcp6Packet(REMOTE, VIP(3), { sport: 22, dport: 40001, flags }), now).v).toBe(3);
    out(SYN);
    const f = flowIn(nat, 3, TCP, 40001, REMOTE, 22);
    expect(t.stateOf(f)).toBe(TCP_SYN_OUT);
    expect(t.deadlineOf(f)).toBe(NOW + T.tcpTransitory);
    inn(SYN | ACK, NOW + 1);
    expect(t.stateOf(f)).toBe(TCP_SYN_ACK_IN);
    expect(t.deadlineOf(f)).toBe(NOW + 1 + T.tcpTransitory);
    out(ACK, NOW + 1);
    expect(t.stateOf(f)).toBe(TCP_ESTABLISHED);
    expect(t.deadlineOf(f)).toBe(NOW + 1 + T.tcpEstablished);
    out(FIN | ACK, NOW + 2);
    expect(t.stateOf(f)).toBe(TCP_FIN_OUT);
    expect(t.deadlineOf(f)).toBe(NOW + 2 + T.tcpTransitory);
    inn(ACK);
    expect(t.stateOf(f)).toBe(TCP_FIN_OUT);
    inn(FIN | ACK);
    expect(t.stateOf(f)).toBe(TCP_CLOSING);
    out(SYN); // the port is reused
    expect(t.stateOf(f)).toBe(TCP_SYN_OUT);
    inn(RST | ACK, NOW + 3);
    expect(t.stateOf(f)).toBe(TCP_CLOSED);
    expect(t.deadlineOf(f)).toBe(NOW + 3 + T.tcpClosed);
    expect(t.count).toBe(1);
  });

  it('follows an inbound connection closed from outside first', () => {
    const nat = makeNat();
    const t = nat.v6.flows;
    expect(recv(nat, tcp6Packet(REMOTE, VIP(1), { sport: 50000, dport: 80, flags: SYN })).v).toBe(1);
    const f = flowOut(nat, TCP, VIP(1), 80, REMOTE, 50000);
    expect(t.stateOf(f)).toBe(TCP_SYN_IN);
    expect(send(nat, 1, tcp6Packet(INNER, REMOTE, { sport: 80, dport: 50000, flags: SYN | ACK })).v).toBe(TO_UPLINK);
    expect(t.stateOf(f)).toBe(TCP_SYN_ACK_OUT);
    expect(recv(nat, tcp6Packet(REMOTE, VIP(1), { sport: 50000, dport: 80, flags: ACK })).v).toBe(1);
    expect(t.stateOf(f)).toBe(TCP_ESTABLISHED);
    expect(recv(nat, tcp6Packet(REMOTE, VIP(1), { sport: 50000, dport: 80, flags: FIN | ACK })).v).toBe(1);
    expect(t.stateOf(f)).toBe(TCP_FIN_IN);
    expect(send(nat, 1, tcp6Packet(INNER, REMOTE, { sport: 80, dport: 50000, flags: FIN | ACK })).v).toBe(TO_UPLINK);
    expect(t.stateOf(f)).toBe(TCP_CLOSING);
    expect(send(nat, 1, tcp6Packet(INNER, REMOTE, { sport: 80, dport: 50000, flags: RST })).v).toBe(TO_UPLINK);
    expect(t.stateOf(f)).toBe(TCP_CLOSED);
  });

  it('a connection first seen mid-stream (outbound) is taken as established', () => {
    const nat = makeNat();
    expect(send(nat, 2, tcp6Packet(INNER, REMOTE, { sport: 1, dport: 2, flags: ACK })).v).toBe(TO_UPLINK);
    expect(nat.v6.flows.stateOf(flowIn(nat, 2, TCP, 1, REMOTE, 2))).toBe(TCP_ESTABLISHED);
  });
});

describe('IPv6 expiry', () => {
  it('nat.expire drops each kind of IPv6 flow after its timeout, not before', () => {
    const nat = makeNat();
    const T = DEFAULT_TIMEOUTS;
    send(nat, 1, udp6Packet(INNER, REMOTE, { sport: 1, dport: 53 }));
    send(nat, 1, echo6Packet(INNER, REMOTE, 128, 1, 1));
    send(nat, 1, tcp6Packet(INNER, REMOTE, { sport: 2, dport: 80, flags: SYN })); // transitory
    send(nat, 1, tcp6Packet(INNER, REMOTE, { sport: 3, dport: 80, flags: SYN }));
    recv(nat, tcp6Packet(REMOTE, VIP(1), { sport: 80, dport: 3, flags: SYN | ACK }));
    send(nat, 1, tcp6Packet(INNER, REMOTE, { sport: 3, dport: 80, flags: ACK })); // established
    send(nat, 1, tcp6Packet(INNER, REMOTE, { sport: 4, dport: 80, flags: RST })); // closed
    send(nat, 2, udp6Packet(INNER, REMOTE, { sport: 1, dport: 53 }), NOW + 100); // refreshed later
    expect(nat.v6.flows.count).toBe(6);
    const alive = (): number[] =>
      [
        flowIn(nat, 1, UDP, 1, REMOTE, 53),
        flowIn(nat, 1, ICMP6, 1, REMOTE, 0),
        flowIn(nat, 1, TCP, 2, REMOTE, 80),
        flowIn(nat, 1, TCP, 3, REMOTE, 80),
        flowIn(nat, 1, TCP, 4, REMOTE, 80),
        flowIn(nat, 2, UDP, 1, REMOTE, 53),
      ].map((f) => (f === NO_FLOW ? 0 : 1));
    nat.expire(NOW + T.tcpClosed);
    expect(alive()).toEqual([1, 1, 1, 1, 1, 1]);
    nat.expire(NOW + T.tcpClosed + 1);
    expect(alive()).toEqual([1, 1, 1, 1, 0, 1]);
    nat.expire(NOW + T.icmp + 1);
    expect(alive()).toEqual([1, 0, 1, 1, 0, 1]);
    nat.expire(NOW + T.tcpTransitory + 1);
    expect(alive()).toEqual([1, 0, 0, 1, 0, 1]);
    nat.expire(NOW + T.udp + 1);
    expect(alive()).toEqual([0, 0, 0, 1, 0, 1]);
    nat.expire(NOW + 100 + T.udp + 1);
    expect(alive()).toEqual([0, 0, 0, 1, 0, 0]);
    nat.expire(NOW + T.tcpEstablished);
    expect(alive()).toEqual([0, 0, 0, 1, 0, 0]);
    nat.expire(NOW + T.tcpEstablished + 1);
    expect(alive()).toEqual([0, 0, 0, 0, 0, 0]);
    expect(nat.counters.flowsExpired).toBe(6);
    expect(nat.flowCount).toBe(0);
    // After expiry, a reply is still delivered by VIP; a UDP one opens a new flow.
    const r = recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 53, dport: 1 }), NOW + 9000);
    expect(r.v).toBe(1);
    expect(nat.v6.flows.count).toBe(1);
  });

  it('traffic either way refreshes the deadline; IPv4 and IPv6 flows expire together', () => {
    const nat = makeNat();
    send(nat, 1, udp6Packet(INNER, REMOTE, { sport: 1, dport: 53 }));
    send(nat, 5, udpPacket(addr('10.0.2.100'), addr('203.0.113.5'), { sport: 1, dport: 53 }));
    expect(nat.flowCount).toBe(2);
    recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 53, dport: 1 }), NOW + 250);
    nat.expire(NOW + 301);
    expect(nat.v6.flows.count).toBe(1);
    expect(nat.flows.count).toBe(0);
    expect(nat.v6.flows.deadlineOf(flowIn(nat, 1, UDP, 1, REMOTE, 53))).toBe(NOW + 250 + DEFAULT_TIMEOUTS.udp);
    nat.expire(NOW + 551);
    expect(nat.flowCount).toBe(0);
    expect(nat.counters.flowsExpired).toBe(2);
  });
});

describe('IPv6 fragments', () => {
  /** A UDP datagram over IPv6 split into a first fragment (M set, 56 bytes of UDP) and a later one at offset 56. */
  function fragments(src: Uint8Array, dst: Uint8Array, data: Uint8Array, ext: Ext6[] = []) {
    const whole = udp6Datagram(src, dst, { sport: 4000, dport: 4001, data });
    return {
      whole,
      first: ipv6({ src, dst, proto: UDP, ext: [...ext, { kind: 'frag', offset: 0, more: true, ident: 0x77 }] }, whole.subarray(0, 56)),
      rest: ipv6({ src, dst, proto: UDP, ext: [{ kind: 'frag', offset: 56, more: false, ident: 0x77 }] }, whole.subarray(56)),
    };
  }

  /** The UDP datagram reassembled from the two translated fragments verifies from scratch. */
  function reassembledOk(a: Uint8Array, b: Uint8Array, src: Uint8Array, dst: Uint8Array, firstL4: number): boolean {
    const re = new Uint8Array(a.length - firstL4 + b.length - 48);
    re.set(a.subarray(firstL4), 0);
    re.set(b.subarray(48), a.length - firstL4);
    return onesSum([pseudoHeader6(src, dst, UDP, re.length), re]) === 0xffff;
  }

  it('outbound: the first fragment gets its UDP checksum translated, a later one is translated by address only', () => {
    const nat = makeNat();
    const data = new Rng(56).bytes(100);
    const f = fragments(INNER, REMOTE, data);
    const want = fragments(VIP(3), REMOTE, data);
    const b = send(nat, 3, f.rest); // the later fragment may come first
    expect(b.v).toBe(TO_UPLINK);
    expect(nat.counters.fragments).toBe(1);
    expect(nat.v6.flows.count).toBe(0);
    expect(hx(b.out)).toBe(hx(want.rest));
    expect(hx(b.out.subarray(40))).toBe(hx(f.rest.subarray(40)));
    const a = send(nat, 3, f.first);
    expect(a.v).toBe(TO_UPLINK);
    expect(hx(a.out)).toBe(hx(want.first));
    expect(nat.counters.fragments).toBe(1); // a first fragment is not counted
    expect(nat.v6.flows.count).toBe(1);
    expect(nat.v6.flows.stateOf(flowIn(nat, 3, UDP, 4000, REMOTE, 4001))).toBe(UDP_ACTIVE);
    expect(reassembledOk(a.out, b.out, VIP(3), REMOTE, 48)).toBe(true);
  });

  it('inbound: same, towards the inner address; with extension headers before the Fragment header', () => {
    const nat = makeNat();
    const data = new Rng(57).bytes(77);
    const ext: Ext6[] = [{ kind: 'hbh' }, { kind: 'dst', options: [0x1e, 1, 0] }];
    const f = fragments(REMOTE, VIP(2), data, ext);
    const want = fragments(REMOTE, INNER, data, ext);
    const a = recv(nat, f.first);
    expect(a.v).toBe(2);
    expect(hx(a.out)).toBe(hx(want.first));
    const b = recv(nat, f.rest);
    expect(b.v).toBe(2);
    expect(hx(b.out)).toBe(hx(want.rest));
    expect(nat.counters.fragments).toBe(1);
    expect(reassembledOk(a.out, b.out, REMOTE, INNER, 40 + 8 + 8 + 8)).toBe(true);
    // The first fragment opened the flow.
    expect(flowOut(nat, UDP, VIP(2), 4001, REMOTE, 4000)).not.toBe(NO_FLOW);
  });

  it('a first TCP fragment gets its checksum translated; later fragments of any protocol only their address', () => {
    const nat = makeNat();
    const data = new Rng(58).bytes(90);
    const seg = tcp6Segment(INNER, REMOTE, { sport: 7, dport: 8, flags: ACK, data });
    const segV = tcp6Segment(VIP(1), REMOTE, { sport: 7, dport: 8, flags: ACK, data });
    const first = send(
      nat,
      1,
      ipv6({ src: INNER, dst: REMOTE, proto: TCP, ext: [{ kind: 'frag', more: true, ident: 5 }] }, seg.subarray(0, 64)),
    );
    expect(first.v).toBe(TO_UPLINK);
    expect(hx(first.out)).toBe(
      hx(ipv6({ src: VIP(1), dst: REMOTE, proto: TCP, ext: [{ kind: 'frag', more: true, ident: 5 }] }, segV.subarray(0, 64))),
    );
    // Later fragments whose data looks like headers (or garbage) are left alone.
    const junk = new Rng(59).bytes(40);
    for (const proto of [TCP, UDP, ICMP6, 47]) {
      const mk = (s: Uint8Array, d: Uint8Array): Uint8Array =>
        ipv6({ src: s, dst: d, proto, ext: [{ kind: 'frag', offset: 64, ident: 5 }] }, junk);
      const o = send(nat, 1, mk(INNER, REMOTE));
      expect(o.v).toBe(TO_UPLINK);
      expect(hx(o.out)).toBe(hx(mk(VIP(1), REMOTE)));
      const i = recv(nat, mk(REMOTE, VIP(1)));
      expect(i.v).toBe(1);
      expect(hx(i.out)).toBe(hx(mk(REMOTE, INNER)));
    }
    expect(nat.counters.fragments).toBe(8);
    expect(nat.counters.malformed).toBe(0);
    expect(nat.v6.flows.count).toBe(1);
  });

  it('a later fragment touches nothing but its own packet (no stale transport view of an earlier one)', () => {
    const nat = makeNat();
    for (const [proto, mk] of [
      [TCP, (s: Uint8Array) => tcp6Packet(s, REMOTE, { sport: 1, dport: 2, flags: ACK })],
      [UDP, (s: Uint8Array) => udp6Packet(s, REMOTE, { sport: 1, dport: 2 })],
      [ICMP6, (s: Uint8Array) => echo6Packet(s, REMOTE, 128, 1, 1)],
    ] as const) {
      // The earlier packet stays in its buffer, as in a ring the forwarder reuses.
      const first = mk(INNER);
      const buf = first.slice();
      expect(nat.fromSession(1, buf, 0, buf.length, NOW)).toBe(TO_UPLINK);
      expect(hx(buf)).toBe(hx(mk(VIP(1))));
      const later = ipv6({ src: INNER, dst: REMOTE, proto, ext: [{ kind: 'frag', offset: 8, ident: 1 }] }, new Uint8Array(24));
      expect(send(nat, 1, later).v).toBe(TO_UPLINK);
      expect(hx(buf)).toBe(hx(mk(VIP(1))));
      expect(recv(nat, ipv6({ src: REMOTE, dst: VIP(1), proto, ext: [{ kind: 'frag', offset: 8, ident: 1 }] }, new Uint8Array(24))).v).toBe(
        1,
      );
      expect(hx(buf)).toBe(hx(mk(VIP(1))));
    }
  });
});

describe('ICMPv6 errors', () => {
  const data = enc.encode('the payload the session sent, long enough to matter');

  it('Packet Too Big, port unreachable and time exceeded from the network reach the session, quote translated back', () => {
    const nat = makeNat();
    let errors = 0;
    for (const k of [1, 2, 3]) {
      const sentTcp = (s: Uint8Array): Uint8Array => tcp6Packet(s, REMOTE, { sport: 40000, dport: 443, flags: ACK | PSH, data });
      const sentUdp = (s: Uint8Array, checksum = true): Uint8Array => udp6Packet(s, REMOTE, { sport: 5000 + k, dport: 53, data, checksum });
      const sentEcho = (s: Uint8Array): Uint8Array => echo6Packet(s, REMOTE, 128, 0x300 + k, 4, data);
      for (const p of [sentTcp(INNER), sentUdp(INNER), sentUdp(INNER, false), sentEcho(INNER)]) expect(send(nat, k, p).v).toBe(TO_UPLINK);
      const cases: [number, number, number, (s: Uint8Array) => Uint8Array, number | undefined][] = [
        [2, 0, 1280, sentTcp, undefined], // Packet Too Big, MTU in the rest field, whole quote
        [1, 4, 0, sentUdp, undefined], // port unreachable
        [3, 0, 0, sentEcho, undefined], // time exceeded, quoting an echo request (its checksum covers addresses too)
        [1, 4, 0, sentUdp, 48], // quote cut to IPv6 header + 8: the UDP checksum is in it
        [2, 0, 1400, sentTcp, 48], // TCP cut to 8 bytes: no checksum to fix
        [2, 0, 1400, sentTcp, 58], // TCP cut just after its checksum
        [1, 3, 0, (s) => sentUdp(s, false), undefined], // quoted UDP checksum 0 stays 0
      ];
      for (const [type, code, rest, sent, cut] of cases) {
        const err = icmp6ErrorPacket(ROUTER, VIP(k), type, code, sent(VIP(k)), cut, rest);
        const r = recv(nat, err);
        errors++;
        expect(r.v).toBe(k);
        expect(r.clean).toBe(true);
        expect(hx(r.out)).toBe(hx(icmp6ErrorPacket(ROUTER, INNER, type, code, sent(INNER), cut, rest)));
        expect(l4Ok6(r.out)).toBe(true);
        expect(hx(r.out.subarray(56, 72))).toBe(hx(INNER)); // the quoted source
        // A whole quote is a packet whose own checksum verifies from scratch (UDP 0 never does in IPv6).
        if (cut === undefined) expect(l4Ok6(r.out.subarray(48))).toBe(l4Ok6(sent(INNER)));
      }
    }
    expect(nat.counters.icmpErrors).toBe(errors);
    expect(nat.counters.icmpErrorsDropped).toBe(0);
    expect(nat.counters.malformed).toBe(0);
  });

  it('an error the session sends about a packet it received goes out quoting the VIP', () => {
    const nat = makeNat();
    for (const k of [1, 2, 3]) {
      const udpIn = (d: Uint8Array): Uint8Array => udp6Packet(REMOTE, d, { sport: 7000, dport: 9999, data });
      const echoIn = (d: Uint8Array): Uint8Array => echo6Packet(REMOTE, d, 128, 77, 1, data);
      const synIn = (d: Uint8Array): Uint8Array => tcp6Packet(REMOTE, d, { sport: 51000, dport: 8080, flags: SYN });
      for (const mk of [udpIn, echoIn, synIn]) {
        expect(recv(nat, mk(VIP(k))).v).toBe(k); // each opens a flow
        for (const [type, code, cut] of [
          [1, 4, undefined],
          [1, 1, 48],
          [4, 0, undefined],
        ] as const) {
          const o = send(nat, k, icmp6ErrorPacket(INNER, REMOTE, type, code, mk(INNER), cut));
          expect(o.v).toBe(TO_UPLINK);
          expect(o.clean).toBe(true);
          expect(hx(o.out)).toBe(hx(icmp6ErrorPacket(VIP(k), REMOTE, type, code, mk(VIP(k)), cut)));
          expect(l4Ok6(o.out)).toBe(true);
          if (cut === undefined) expect(l4Ok6(o.out.subarray(48))).toBe(true);
        }
      }
    }
    expect(nat.counters.icmpErrors).toBe(27);
    expect(nat.counters.icmpErrorsDropped).toBe(0);
  });

  it("errors quoting another address than the session's, or nothing usable, are dropped (counters.icmpErrorsDropped); no flow is needed", () => {
    const nat = makeNat();
    const sent = (s: Uint8Array, sport = 5000, remote = REMOTE): Uint8Array => udp6Packet(s, remote, { sport, dport: 53, data });
    expect(send(nat, 1, sent(INNER)).v).toBe(TO_UPLINK);
    expect(send(nat, 2, sent(INNER, 6000)).v).toBe(TO_UPLINK);
    expect(recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 53, dport: 7000 })).v).toBe(1); // session 1 received this
    // Every IPv6 session has a VIP of its own: an error quoting its address is translated with or without a flow.
    const flowless: [number, Uint8Array, Uint8Array][] = [
      [1, sent(VIP(1), 5001), sent(INNER, 5001)], // no such flow
      [1, sent(VIP(1), 5000, REMOTE2), sent(INNER, 5000, REMOTE2)], // another remote
      [
        1,
        tcp6Packet(VIP(1), REMOTE, { sport: 5000, dport: 53, flags: SYN }),
        tcp6Packet(INNER, REMOTE, { sport: 5000, dport: 53, flags: SYN }),
      ], // another protocol
      [2, sent(VIP(2), 5000), sent(INNER, 5000)], // session 1's ports, but on VIP 2
      [1, echo6Packet(VIP(1), REMOTE, 128, 5000, 1), echo6Packet(INNER, REMOTE, 128, 5000, 1)], // no echo flow
    ];
    for (const [id, quote, want] of flowless) {
      const r = recv(nat, icmp6ErrorPacket(ROUTER, VIP(id), 1, 4, quote));
      expect(r.v).toBe(id);
      expect(hx(r.out)).toBe(hx(icmp6ErrorPacket(ROUTER, INNER, 1, 4, want)));
    }
    const uplink: Uint8Array[] = [
      icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, sent(VIP(2), 6000)), // session 2's flow, sent to session 1
      icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, sent(INNER, 5000)), // quotes the inner address, not the VIP
      icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, sent(VIP(1)), 47), // quote too short for 8 transport bytes
      icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, udpPacket(addr('198.19.0.1'), addr('203.0.113.5'), { sport: 5000, dport: 53 })), // not IPv6
      icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, ipv6({ src: VIP(1), dst: REMOTE, proto: 47 }, new Uint8Array(8))), // no ports
    ];
    let drops = 0;
    for (const e of uplink) {
      expect(recv(nat, e).v).toBe(DROP);
      expect(nat.counters.icmpErrorsDropped).toBe(++drops);
    }
    const fromSession: [number, Uint8Array][] = [
      [1, icmp6ErrorPacket(INNER, REMOTE, 1, 4, udp6Packet(REMOTE, VIP(1), { sport: 53, dport: 7000 }))], // quote not to the inner address
    ];
    for (const [id, e] of fromSession) {
      expect(send(nat, id, e).v).toBe(DROP);
      expect(nat.counters.icmpErrorsDropped).toBe(++drops);
    }
    // From a session, with no flow (session 1's tuple from session 2, an unknown port, another remote): by address alone.
    for (const [id, dport, remote] of [
      [2, 7000, REMOTE],
      [1, 7001, REMOTE],
      [1, 7000, REMOTE2],
    ] as const) {
      const o = send(nat, id, icmp6ErrorPacket(INNER, remote, 1, 4, udp6Packet(remote, INNER, { sport: 53, dport })));
      expect(o.v).toBe(TO_UPLINK);
      expect(hx(o.out)).toBe(hx(icmp6ErrorPacket(VIP(id), remote, 1, 4, udp6Packet(remote, VIP(id), { sport: 53, dport }))));
    }
    expect(nat.counters.icmpErrors).toBe(drops + flowless.length + 3);
    expect(nat.counters.malformed).toBe(0);
    // The flows the drops were measured against do work.
    expect(recv(nat, icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, sent(VIP(1)))).v).toBe(1);
    expect(send(nat, 1, icmp6ErrorPacket(INNER, REMOTE, 1, 4, udp6Packet(REMOTE, INNER, { sport: 53, dport: 7000 }))).v).toBe(TO_UPLINK);
  });

  it('in NAT mode an error with a bad ICMPv6 checksum is counted malformed and dropped, not laundered', () => {
    const nat = makeNat();
    const sent = (s: Uint8Array): Uint8Array => udp6Packet(s, REMOTE, { sport: 5000, dport: 53, data });
    expect(send(nat, 1, sent(INNER)).v).toBe(TO_UPLINK);
    const bad = icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, sent(VIP(1)));
    bad[42] = bad[42]! ^ 0x01; // the ICMPv6 checksum
    expect(recv(nat, bad).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(1);
    expect(nat.counters.icmpErrorsDropped).toBe(1);
    const bad2 = icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, sent(VIP(1)));
    bad2[bad2.length - 1] = bad2[bad2.length - 1]! ^ 0x40; // a quoted data byte
    expect(recv(nat, bad2).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(2);
    // From the session, about a packet it received.
    expect(recv(nat, udp6Packet(REMOTE, VIP(1), { sport: 53, dport: 7000 })).v).toBe(1);
    const bad3 = icmp6ErrorPacket(INNER, REMOTE, 1, 4, udp6Packet(REMOTE, INNER, { sport: 53, dport: 7000 }));
    bad3[43] = bad3[43]! ^ 0x80;
    expect(send(nat, 1, bad3).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(3);
    expect(nat.counters.icmpErrorsDropped).toBe(3);
  });

  // The quote's extension headers are walked: a Packet Too Big for fragmented UDP quotes a Fragment
  // header before UDP, and losing it would black-hole path MTU discovery for large datagrams.
  it('a Packet Too Big quoting a first fragment (Fragment header before UDP) reaches the session', () => {
    const nat = makeNat();
    const whole = (s: Uint8Array): Uint8Array => udp6Datagram(s, REMOTE, { sport: 4000, dport: 4001, data: new Uint8Array(1400).fill(7) });
    const first = (s: Uint8Array): Uint8Array =>
      ipv6({ src: s, dst: REMOTE, proto: UDP, ext: [{ kind: 'frag', more: true, ident: 0x99 }] }, whole(s).subarray(0, 1232));
    expect(send(nat, 1, first(INNER)).v).toBe(TO_UPLINK);
    expect(nat.v6.flows.count).toBe(1);
    const r = recv(nat, icmp6ErrorPacket(ROUTER, VIP(1), 2, 0, first(VIP(1)), 1232, 1280));
    expect(r.v).toBe(1);
    expect(hx(r.out)).toBe(hx(icmp6ErrorPacket(ROUTER, INNER, 2, 0, first(INNER), 1232, 1280)));
  });

  it('in address mode an error quoting a flow passes untouched both ways', () => {
    const nat = makeNat();
    const V = VIP(4);
    expect(send(nat, 4, udp6Packet(V, REMOTE, { sport: 5000, dport: 53, data })).v).toBe(TO_UPLINK);
    expect(recv(nat, tcp6Packet(REMOTE, V, { sport: 50000, dport: 22, flags: SYN })).v).toBe(4);
    const inErr = icmp6ErrorPacket(ROUTER, V, 2, 0, udp6Packet(V, REMOTE, { sport: 5000, dport: 53, data }), undefined, 1280);
    const r = recv(nat, inErr);
    expect(r.v).toBe(4);
    expect(hx(r.out)).toBe(hx(inErr));
    const outErr = icmp6ErrorPacket(V, REMOTE, 1, 4, tcp6Packet(REMOTE, V, { sport: 50000, dport: 22, flags: SYN }));
    const o = send(nat, 4, outErr);
    expect(o.v).toBe(TO_UPLINK);
    expect(hx(o.out)).toBe(hx(outErr));
    // Nothing is rewritten, so nothing is verified: a bad checksum is the receiver's business.
    const bad = inErr.slice();
    bad[42] = bad[42]! ^ 1;
    const b = recv(nat, bad);
    expect(b.v).toBe(4);
    expect(hx(b.out)).toBe(hx(bad));
    // Still, the quote must hold the session's address; it needs no flow.
    expect(recv(nat, icmp6ErrorPacket(ROUTER, V, 1, 4, udp6Packet(VIP(1), REMOTE, { sport: 5000, dport: 53 }))).v).toBe(DROP);
    expect(recv(nat, icmp6ErrorPacket(ROUTER, V, 1, 4, udp6Packet(V, REMOTE, { sport: 5001, dport: 53 }))).v).toBe(4);
    expect(nat.counters.icmpErrorsDropped).toBe(1);
    expect(nat.counters.malformed).toBe(0);
  });

  it('an error hairpinned between two NAT-mode sessions is translated for both', () => {
    const nat = makeNat();
    // Session 1 sends UDP to session 2's VIP; session 2 answers with port unreachable.
    const d = send(nat, 1, udp6Packet(INNER, VIP(2), { sport: 5000, dport: 9, data }));
    expect(d.v).toBe(2);
    expect(hx(d.out)).toBe(hx(udp6Packet(VIP(1), INNER, { sport: 5000, dport: 9, data })));
    const e = send(nat, 2, icmp6ErrorPacket(INNER, VIP(1), 1, 4, d.out));
    expect(e.v).toBe(1);
    expect(hx(e.out)).toBe(hx(icmp6ErrorPacket(VIP(2), INNER, 1, 4, udp6Packet(INNER, VIP(2), { sport: 5000, dport: 9, data }))));
    expect(l4Ok6(e.out)).toBe(true);
    expect(l4Ok6(e.out.subarray(48))).toBe(true);
    expect(nat.counters.hairpin).toBe(2);
    expect(nat.counters.icmpErrorsDropped).toBe(0);
  });

  it('an error hairpinned from an address-mode session to a NAT-mode one is translated for the receiver', () => {
    const nat = makeNat();
    const d = send(nat, 1, udp6Packet(INNER, VIP(4), { sport: 5000, dport: 9, data }));
    expect(d.v).toBe(4);
    expect(hx(d.out)).toBe(hx(udp6Packet(VIP(1), VIP(4), { sport: 5000, dport: 9, data })));
    const e = send(nat, 4, icmp6ErrorPacket(VIP(4), VIP(1), 1, 4, d.out));
    expect(e.v).toBe(1);
    expect(hx(e.out)).toBe(hx(icmp6ErrorPacket(VIP(4), INNER, 1, 4, udp6Packet(INNER, VIP(4), { sport: 5000, dport: 9, data }))));
    expect(l4Ok6(e.out)).toBe(true);
  });

  it('a quoted UDP checksum that comes out as 0 is written 0xffff', () => {
    const nat = makeNat();
    for (let x = 0; x < 0x10000; x++) {
      const bytes = new Uint8Array([x >>> 8, x & 0xff]);
      if (u16(udp6Datagram(INNER, REMOTE, { sport: 9, dport: 9, data: bytes }), 6) !== 0xffff) continue;
      expect(send(nat, 1, udp6Packet(INNER, REMOTE, { sport: 9, dport: 9, data: bytes })).v).toBe(TO_UPLINK);
      const r = recv(nat, icmp6ErrorPacket(ROUTER, VIP(1), 1, 4, udp6Packet(VIP(1), REMOTE, { sport: 9, dport: 9, data: bytes })));
      expect(r.v).toBe(1);
      expect(u16(r.out, 48 + 40 + 6)).toBe(0xffff);
      expect(hx(r.out)).toBe(hx(icmp6ErrorPacket(ROUTER, INNER, 1, 4, udp6Packet(INNER, REMOTE, { sport: 9, dport: 9, data: bytes }))));
      return;
    }
    throw new Error('no such data');
  });
});

describe('IPv6 link control, anti-spoofing, other families', () => {
  const mld = (src: Uint8Array, type = 143): Uint8Array => {
    const dst = addr6('ff02::16');
    return ipv6(
      { src, dst, proto: ICMP6, hopLimit: 1, ext: [{ kind: 'hbh', options: [5, 2, 0, 0] }] },
      icmp6Message(src, dst, type, 0, 1, new Uint8Array(20)),
    );
  };
  const nd = (src: Uint8Array, dst: Uint8Array, type: number): Uint8Array =>
    ipv6({ src, dst, proto: ICMP6, hopLimit: 255 }, icmp6Message(src, dst, type, 0, 0, new Uint8Array(16)));

  it('router/neighbour solicitations, MLD and multicast from a session are link control, dropped', () => {
    const nat = makeNat();
    const fromSession: [number, Uint8Array][] = [
      [1, nd(LINK, addr6('ff02::2'), 133)], // router solicitation
      [1, nd(UNSPEC, addr6('ff02::2'), 133)],
      [1, nd(UNSPEC, addr6('ff02::1:ff00:100'), 135)], // DAD neighbour solicitation
      [2, nd(LINK, addr6('ff02::1:ff00:1'), 135)],
      [2, nd(addr6('febf::1'), REMOTE, 135)], // still fe80::/10, unicast
      [3, mld(LINK)],
      [3, mld(UNSPEC)],
      [4, mld(LINK, 131)], // MLDv1 report, address-mode session
      [1, udp6Packet(INNER, addr6('ff02::fb'), { sport: 5353, dport: 5353 })], // mDNS from the inner address
      [1, udp6Packet(INNER, addr6('ff0e::1'), { sport: 1, dport: 2 })], // any ff00::/8
      [4, udp6Packet(VIP(4), addr6('ff05::1:3'), { sport: 546, dport: 547 })],
      [1, nd(INNER, REMOTE, 135)], // unicast neighbour solicitation from the inner address
      [1, nd(INNER, REMOTE, 133)],
      [2, udp6Packet(LINK, REMOTE, { sport: 1, dport: 2 })], // link-local source to anywhere
    ];
    fromSession.forEach(([id, p], n) => {
      const r = send(nat, id, p);
      expect(r.v).toBe(DROP);
      expect(nat.counters.linkControl).toBe(n + 1);
    });
    expect(nat.counters.spoofed + nat.counters.malformed + nat.counters.otherFamily).toBe(0);
    expect(nat.v6.flows.count).toBe(0);
  });

  it('multicast and neighbour discovery from the uplink are link control, dropped', () => {
    const nat = makeNat();
    const fromUplink = [
      nd(LINK, addr6('ff02::1'), 134), // router advertisement
      nd(LINK, addr6('ff02::1:ff00:1'), 135),
      udp6Packet(REMOTE, addr6('ff02::fb'), { sport: 5353, dport: 5353 }),
      mld(LINK),
      nd(LINK, VIP(1), 135), // unicast neighbour solicitation to a VIP
      nd(ROUTER, VIP(2), 136),
      nd(ROUTER, VIP(4), 137), // redirect, address mode
    ];
    fromUplink.forEach((p, n) => {
      expect(recv(nat, p).v).toBe(DROP);
      expect(nat.counters.linkControl).toBe(n + 1);
    });
    expect(nat.counters.noSession).toBe(0);
  });

  it('a global source other than the inner address is spoofing', () => {
    const nat = makeNat();
    const srcs = [REMOTE2, VIP(2), VIP(1), addr6('fd00:2::101'), addr6('fec0::1'), addr6('::1'), addr6('ff02::1')];
    srcs.forEach((s, n) => {
      expect(send(nat, 1, udp6Packet(s, REMOTE, { sport: 1, dport: 2 })).v).toBe(DROP);
      expect(nat.counters.spoofed).toBe(n + 1);
    });
    // Address mode: anything but the VIP itself.
    expect(send(nat, 4, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(DROP);
    expect(nat.counters.spoofed).toBe(srcs.length + 1);
    expect(nat.counters.linkControl).toBe(0);
    expect(nat.v6.flows.count).toBe(0);
  });

  it('IPv6 from a session without an IPv6 address is otherFamily; to an unknown VIP is noSession', () => {
    const nat = makeNat();
    expect(send(nat, 5, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(DROP); // IPv4-only session
    expect(send(nat, 6, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(DROP); // no session at all
    expect(send(nat, 5, nd(LINK, addr6('ff02::2'), 133)).v).toBe(DROP);
    expect(nat.counters.otherFamily).toBe(3);
    expect(nat.counters.linkControl).toBe(0);
    for (const d of [VIP(9), INNER, REMOTE, addr6('fd00:19:7::1:1'), addr6('fd00:19:8::1')])
      expect(recv(nat, udp6Packet(REMOTE, d, { sport: 1, dport: 2 })).v).toBe(DROP);
    expect(nat.counters.noSession).toBe(5);
  });

  it('malformed IPv6 is dropped and counted; every truncation of valid packets is dropped without throwing', () => {
    const nat = makeNat();
    const good = udp6Packet(INNER, REMOTE, { sport: 1, dport: 2, data: new Uint8Array(10) });
    const long = good.slice();
    long[5] = long[5]! + 1; // Payload Length beyond the bytes
    expect(send(nat, 1, long).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(1);
    const shortTcp = ipv6({ src: INNER, dst: REMOTE, proto: TCP }, new Uint8Array(19));
    expect(send(nat, 1, shortTcp).v).toBe(DROP);
    const badUdpLen = good.slice();
    badUdpLen[45] = 200; // UDP Length beyond the payload
    expect(send(nat, 1, badUdpLen).v).toBe(DROP);
    const hbhSecond = ipv6(
      { src: REMOTE, dst: VIP(1), proto: UDP, ext: [{ kind: 'dst' }, { kind: 'hbh' }] },
      udp6Datagram(REMOTE, VIP(1), { sport: 1, dport: 2 }),
    );
    expect(recv(nat, hbhSecond).v).toBe(DROP);
    const shortIcmp = ipv6({ src: REMOTE, dst: VIP(1), proto: ICMP6 }, new Uint8Array(7));
    expect(recv(nat, shortIcmp).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(5);

    const samples: [number, Uint8Array][] = [
      [1, good],
      [1, tcp6Packet(INNER, REMOTE, { sport: 1, dport: 2, flags: SYN, options: [2, 4, 5, 0xa0] }, { ext: [{ kind: 'hbh' }] })],
      [4, echo6Packet(VIP(4), REMOTE, 128, 1, 1, new Uint8Array(9))],
      [0, icmp6ErrorPacket(ROUTER, VIP(2), 2, 0, udp6Packet(VIP(2), REMOTE, { sport: 1, dport: 2 }), undefined, 1280)],
    ];
    const m0 = nat.counters.malformed;
    let n = 0;
    for (const [id, p] of samples) {
      for (let len = 0; len < p.length; len++) {
        const cut = p.slice(0, len);
        expect(id === 0 ? recv(nat, cut).v : send(nat, id, cut).v).toBe(DROP);
        n++;
      }
    }
    expect(nat.counters.malformed).toBe(m0 + n);
  });
});

describe('IPv6 hairpin', () => {
  it('session 2 -> VIP of session 1 is delivered to 1 reading VIP2 -> inner, and back', () => {
    const nat = makeNat();
    type Make = (s: Uint8Array, d: Uint8Array) => Uint8Array;
    const data = enc.encode('hairpin!');
    const cases: [Make, Make][] = [
      [(s, d) => udp6Packet(s, d, { sport: 5000, dport: 53, data }), (s, d) => udp6Packet(s, d, { sport: 53, dport: 5000, data })],
      [
        (s, d) => tcp6Packet(s, d, { sport: 40000, dport: 80, flags: SYN }),
        (s, d) => tcp6Packet(s, d, { sport: 80, dport: 40000, flags: SYN | ACK }),
      ],
      [(s, d) => echo6Packet(s, d, 128, 42, 1, data), (s, d) => echo6Packet(s, d, 129, 42, 1, data)],
      [
        (s, d) => udp6Packet(s, d, { sport: 5001, dport: 53, data }, { ext: [{ kind: 'dst' }] }),
        (s, d) => udp6Packet(s, d, { sport: 53, dport: 5001, data }, { ext: [{ kind: 'hbh' }] }),
      ],
    ];
    let hairpins = 0;
    for (const [mkOut, mkBack] of cases) {
      const r = send(nat, 2, mkOut(INNER, VIP(1)));
      expect(r.v).toBe(1);
      expect(r.clean).toBe(true);
      expect(hx(r.out)).toBe(hx(mkOut(VIP(2), INNER)));
      expect(l4Ok6(r.out)).toBe(true);
      const b = send(nat, 1, mkBack(INNER, VIP(2)));
      expect(b.v).toBe(2);
      expect(hx(b.out)).toBe(hx(mkBack(VIP(1), INNER)));
      expect(l4Ok6(b.out)).toBe(true);
      hairpins += 2;
    }
    expect(nat.counters.hairpin).toBe(hairpins);
    // The handshake's last ACK.
    expect(send(nat, 2, tcp6Packet(INNER, VIP(1), { sport: 40000, dport: 80, flags: ACK })).v).toBe(1);
    // Both sides have their flows: session 2's outbound one and session 1's inbound one.
    const t = nat.v6.flows;
    const f2 = flowIn(nat, 2, TCP, 40000, VIP(1), 80);
    const f1 = flowIn(nat, 1, TCP, 80, VIP(2), 40000);
    expect(f2).not.toBe(NO_FLOW);
    expect(f1).not.toBe(NO_FLOW);
    expect(t.stateOf(f2)).toBe(TCP_ESTABLISHED);
    expect(t.stateOf(f1)).toBe(TCP_ESTABLISHED);
    expect(t.sessionOf(f1)).toBe(1);
  });

  it('to and from an address-mode session', () => {
    const nat = makeNat();
    const a = send(nat, 4, udp6Packet(VIP(4), VIP(3), { sport: 1, dport: 2 }));
    expect(a.v).toBe(3);
    expect(hx(a.out)).toBe(hx(udp6Packet(VIP(4), INNER, { sport: 1, dport: 2 })));
    const b = send(nat, 3, udp6Packet(INNER, VIP(4), { sport: 2, dport: 1 }));
    expect(b.v).toBe(4);
    expect(hx(b.out)).toBe(hx(udp6Packet(VIP(3), VIP(4), { sport: 2, dport: 1 })));
    expect(nat.counters.hairpin).toBe(2);
  });
});

describe('IPv6 fuzz: never throws, checksum validity is kept', () => {
  const sessions = [1, 2, 3, 4, 5, 6];

  /** Valid packets each side may send. */
  function seeds(rng: Rng): { out: [number, Uint8Array][]; inn: Uint8Array[] } {
    const out: [number, Uint8Array][] = [];
    const inn: Uint8Array[] = [];
    for (const k of [1, 2, 3, 4]) {
      const src = k === 4 ? VIP(4) : INNER;
      const data = rng.bytes(rng.int(30));
      const ext: Ext6[] = [{ kind: 'hbh', options: [0x1e, 1, 0] }, { kind: 'dst' }];
      out.push(
        [k, tcp6Packet(src, REMOTE, { sport: 100 + k, dport: 80, flags: SYN, data })],
        [k, tcp6Packet(src, REMOTE, { sport: 100 + k, dport: 81, flags: ACK, data }, { ext })],
        [k, udp6Packet(src, REMOTE, { sport: 100 + k, dport: 53, data })],
        [k, udp6Packet(src, VIP(1 + (k % 4)), { sport: 100 + k, dport: 53, data })],
        [k, echo6Packet(src, REMOTE, 128, k, 1, data)],
        [k, icmp6ErrorPacket(src, REMOTE, 1, 4, udp6Packet(REMOTE, src, { sport: 7000, dport: 9999, data }))],
        [k, ipv6({ src, dst: REMOTE, proto: UDP, ext: [{ kind: 'frag', offset: 64, ident: 3 }] }, data)],
        [
          k,
          ipv6(
            { src, dst: REMOTE, proto: UDP, ext: [{ kind: 'frag', more: true, ident: 3 }] },
            udp6Datagram(src, REMOTE, { sport: 100 + k, dport: 53, data: rng.bytes(40) }).subarray(0, 40),
          ),
        ],
        [k, nd(LINK, addr6('ff02::2'), 133)],
      );
      inn.push(
        tcp6Packet(REMOTE, VIP(k), { sport: 80, dport: 100 + k, flags: SYN | ACK, data }),
        udp6Packet(REMOTE, VIP(k), { sport: 7000, dport: 9999, data }, { ext }),
        echo6Packet(REMOTE, VIP(k), 129, k, 1, data),
        icmp6ErrorPacket(ROUTER, VIP(k), 1, 4, udp6Packet(VIP(k), REMOTE, { sport: 100 + k, dport: 53, data })),
        icmp6ErrorPacket(ROUTER, VIP(k), 2, 0, tcp6Packet(VIP(k), REMOTE, { sport: 100 + k, dport: 80, flags: SYN, data }), 48, 1280),
        icmp6ErrorPacket(ROUTER, VIP(k), 3, 0, echo6Packet(VIP(k), REMOTE, 128, k, 1, data)),
      );
    }
    return { out, inn };
  }

  function nd(src: Uint8Array, dst: Uint8Array, type: number): Uint8Array {
    return ipv6({ src, dst, proto: ICMP6, hopLimit: 255 }, icmp6Message(src, dst, type, 0, 0, new Uint8Array(16)));
  }

  function mutate(rng: Rng, p: Uint8Array): Uint8Array {
    const q = p.slice();
    const n = 1 + rng.int(3);
    for (let i = 0; i < n; i++) {
      // Mostly the headers (fixed, extension, transport), where the parsing decisions are.
      const at = rng.int(4) === 0 ? rng.int(q.length) : rng.int(Math.min(q.length, 100));
      q[at] = rng.bool() ? rng.u8() : q[at]! ^ (1 << rng.int(8));
    }
    if (rng.int(5) === 0) return q.slice(0, rng.int(q.length + 1));
    return q;
  }

  /**
   * Transport checksum validity of a packet, read without src/wire: 'true'/'false' for an
   * unfragmented TCP/UDP/ICMPv6 packet with 8 transport bytes, '-' otherwise.
   */
  function validity(p: Uint8Array): string {
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
  }

  it('5000 random buffers and 5000 mutations of valid packets through fromSession and fromUplink', () => {
    const rng = new Rng(0x6f00d);
    const nat = makeNat();
    const { out, inn } = seeds(rng);
    const problems: string[] = [];
    let forwarded = 0;
    let checked = 0;
    const check = (what: string, v: number, before: Uint8Array, after: Uint8Array, fromSession: boolean): void => {
      if (!(v === DROP || v === TO_UPLINK || (v >= 1 && v <= 8)) || (!fromSession && v === TO_UPLINK))
        problems.push(`${what}: verdict ${v}`);
      if (v === DROP) return;
      forwarded++;
      const a = validity(before);
      const b = validity(after);
      if (a !== '-') checked++;
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
    const addrs = [INNER, VIP(1), VIP(2), VIP(3), VIP(4), REMOTE, LINK, UNSPEC, addr6('ff02::1')];
    for (let i = 0; i < 5000; i++) {
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
          const ck = p[6] === TCP ? 16 : p[6] === UDP ? 6 : 2;
          if (p[6] === UDP) {
            seg[4] = seg.length >>> 8;
            seg[5] = seg.length & 0xff;
          }
          if (ck + 2 <= seg.length) {
            seg[ck] = seg[ck + 1] = 0;
            const c = checksum(pseudoHeader6(p.subarray(8, 24), p.subarray(24, 40), p[6], seg.length), seg);
            seg[ck] = c >>> 8;
            seg[ck + 1] = c & 0xff;
          }
        }
      }
      run(`random ${i}`, rng.pick(sessions), p, i);
      if (i % 500 === 0) nat.expire(i);
    }
    for (let i = 0; i < 5000; i++) {
      const fromSession = rng.bool();
      const [id, base] = fromSession ? rng.pick(out) : [rng.pick([1, 2, 3, 4]), rng.pick(inn)];
      run(`mutation ${i}`, id, rng.int(10) === 0 ? base.slice() : mutate(rng, base), 20000 + i);
      if (i % 500 === 0) nat.expire(20000 + i);
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(nat.counters.fromSession).toBe(10000);
    expect(nat.counters.malformed).toBeGreaterThan(500);
    expect(forwarded).toBeGreaterThan(1000);
    expect(checked).toBeGreaterThan(500);

    // The IPv6 flow table is still consistent: every live flow findable from both sides.
    const t = nat.v6.flows;
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
    expect(live).toBe(t.count);
    expect(problems.slice(0, 10)).toEqual([]);
  });
});
