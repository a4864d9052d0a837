// Unit tests for the IPv6 translator's own cases (Nat6 through Nat): sessions and VIP churn, dual-stack expiry, fragments,
// ICMPv6 errors and their quotes, link control and anti-spoofing, malformed packets. What both families share is in
// translate.test.ts; every checksum is checked from scratch with packets.ts, never with src/wire.
import { describe, it, expect } from 'vitest';
import { DEFAULT_TIMEOUTS, DROP, NO_FLOW, Nat, TO_UPLINK } from '../../src/nat/index.js';
import {
  ACK,
  ICMP6,
  PSH,
  Rng,
  SYN,
  TCP,
  UDP,
  addr,
  addr6,
  echo6Packet,
  icmp6ErrorPacket,
  icmp6Message,
  ipv6,
  l4Ok6,
  tcp6Packet,
  tcp6Segment,
  toHex,
  udp6Datagram,
  udp6Packet,
  udpPacket,
  words6,
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

const dstOf = (p: Uint8Array): string => toHex(p.subarray(24, 40));
const hx = toHex;

/** The flow of session `id` for a packet it sends inner:sport -> remote:dport, or NO_FLOW. */
function flowIn(nat: Nat, id: number, proto: number, sport: number, remote: Uint8Array, dport: number, inner = INNER): number {
  return nat.v6.flows.lookupInner(id, proto, words6(inner), 0, sport, words6(remote), 0, dport);
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

describe('IPv6 expiry', () => {
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

  it('IPv6 from a session without an IPv6 address is otherFamily', () => {
    const nat = makeNat();
    expect(send(nat, 5, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(DROP); // IPv4-only session
    expect(send(nat, 6, udp6Packet(INNER, REMOTE, { sport: 1, dport: 2 })).v).toBe(DROP); // no session at all
    expect(send(nat, 5, nd(LINK, addr6('ff02::2'), 133)).v).toBe(DROP);
    expect(nat.counters.otherFamily).toBe(3);
    expect(nat.counters.linkControl).toBe(0);
  });

  it('malformed IPv6 is dropped and counted', () => {
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
  });
});
