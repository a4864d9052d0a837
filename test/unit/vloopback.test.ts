// Unit tests for the virtual loopback (src/nat/loopback.ts) through the Nat facade, and the answers src/nat/reply4.ts writes
// in place: clients in the gateway's namespace reaching a session's 127.0.0.1 at 127.0.0.1 + id (TCP, UDP, echo), the
// session's answers, its own clients, reflection of its own loopback traffic, its ICMP errors and their quotes, resets and
// ICMP errors for sessions that are not running, the loopback port range, expiry, TCP timestamps shifted onto vipnat's
// clock (PAWS on a reused port), partial checksums, and the option off.
// Checksums are checked from scratch with packets.ts, never with src/wire.
import { describe, it, expect } from 'vitest';
import {
  DROP,
  LOOPBACK_PORT_HI,
  LOOPBACK_PORT_LO,
  NO_FLOW,
  Nat,
  type NatOptions,
  REPLY,
  TCP_CLOSING,
  TCP_ESTABLISHED,
  TO_UPLINK,
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
  l4Ok,
  onesSum,
  parse,
  pseudoHeader,
  tcpPacket,
  toHex,
  u16,
  u32,
  udpPacket,
} from './packets.js';
import { NOW, recv, send } from './harness.js';

const LO = addr('127.0.0.1');
/** The session's slot in the translator, and the gateway's id of it (slot and id differ on purpose). */
const S = 3;
const ID = 7;
/** Its virtual loopback: 127.0.0.1 + ID. */
const V = addr('127.0.0.8');
/** A second session, slot 5, gateway id 9: 127.0.0.10. */
const S2 = 5;
const V2 = addr('127.0.0.10');
const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const MAX = 8;
/** Ports of the loopback range. */
const PORTS = LOOPBACK_PORT_HI - LOOPBACK_PORT_LO + 1;

const enc = new TextEncoder();
const hx = toHex;

/** Session S (slot 3) with its VIP and its virtual loopback 127.0.0.8, and session S2 (slot 5) at 127.0.0.10. */
function makeNat(opts: Partial<NatOptions> = {}): Nat {
  const nat = new Nat({ maxSession: MAX, flowCapacity: 1024, seed: 1, loopback: true, ...opts });
  nat.addSession(S, INNER, VIP(S));
  nat.addLoopback(S, ID);
  nat.addSession(S2, INNER, VIP(S2));
  nat.addLoopback(S2, 9);
  return nat;
}

/** The transport ports (an echo's identifier as the source port) of an IPv4 packet. */
function srcPort(p: Uint8Array): number {
  return parse(p).proto === ICMP ? u16(p, parse(p).l4 + 4) : u16(p, parse(p).l4);
}
function dstPort(p: Uint8Array): number {
  return u16(p, parse(p).l4 + 2);
}

function inRange(p: number): boolean {
  return p >= LOOPBACK_PORT_LO && p <= LOOPBACK_PORT_HI;
}

const OFF = 6;

/**
 * Runs `pkt` from the uplink (`id` 0) or from session `id` in a buffer with room for an answer that grows it;
 * `reply` is Nat.replyLength bytes at the packet's offset, `clean` that the bytes before the offset were left alone.
 */
function answer(nat: Nat, pkt: Uint8Array, id = 0): { v: number; reply: Uint8Array; clean: boolean } {
  const buf = new Uint8Array(OFF + 2048).fill(0xa5);
  buf.set(pkt, OFF);
  const v = id === 0 ? nat.fromUplink(buf, OFF, pkt.length, NOW) : nat.fromSession(id, buf, OFF, pkt.length, NOW);
  return { v, reply: buf.slice(OFF, OFF + nat.replyLength), clean: buf.subarray(0, OFF).every((x) => x === 0xa5) };
}

/**
 * Opens TCP from the uplink's 127.0.0.1:cport to 127.0.0.8:q through a full handshake (SYN, the session's SYN-ACK,
 * ACK), checking each step's verdict; returns the session-side port P'.
 */
function connect(nat: Nat, cport: number, q: number): number {
  const syn = recv(nat, tcpPacket(LO, V, { sport: cport, dport: q, seq: 100, flags: SYN }));
  expect(syn.v).toBe(S);
  const p = srcPort(syn.out);
  const sa = send(nat, S, tcpPacket(LO, LO, { sport: q, dport: p, seq: 900, ack: 101, flags: SYN | ACK }));
  expect(sa.v).toBe(TO_UPLINK);
  const ack = recv(nat, tcpPacket(LO, V, { sport: cport, dport: q, seq: 101, ack: 901, flags: ACK }));
  expect(ack.v).toBe(S);
  expect(srcPort(ack.out)).toBe(p);
  return p;
}

/** vipnat's clock for TCP timestamps (loopback.ts): milliseconds since the epoch, mod 2^32. */
function clock(): number {
  return Math.floor(performance.timeOrigin + performance.now()) >>> 0;
}

function be32(v: number): number[] {
  return [v >>> 24, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

/** The options of a Linux SYN or SYN-ACK: MSS 65495, SACK_PERM, timestamps, NOP, window scale 7 (TSval at byte 8). */
function synOpts(tsval: number, tsecr: number): number[] {
  return [2, 4, 0xff, 0xd7, 4, 2, 8, 10, ...be32(tsval >>> 0), ...be32(tsecr >>> 0), 1, 3, 3, 7];
}

/** The options of Linux's later segments: NOP, NOP, timestamps (TSval at byte 4). */
function tsOpts(tsval: number, tsecr: number): number[] {
  return [1, 1, 8, 10, ...be32(tsval >>> 0), ...be32(tsecr >>> 0)];
}

/** Where TSval is in an IPv4 packet (20-byte header) whose TCP options are synOpts / tsOpts; TSecr 4 bytes on. */
const SYN_TSVAL = 20 + 20 + 8;
const TS_TSVAL = 20 + 20 + 4;

/** `ts` is vipnat's clock + 1 at some time between the readings `before` and `after` (mod 2^32), and near Date.now(). */
function expectClockPlus1(ts: number, before: number, after: number): void {
  expect((ts - 1 - before) >>> 0, `TSval ${ts} not in [${before + 1}, ${after + 1}]`).toBeLessThanOrEqual((after - before) >>> 0);
  expect(Math.abs((ts - ((Date.now() >>> 0) + 1)) | 0)).toBeLessThan(50);
}

/** Spins until vipnat's clock is more than `ms` past `t`. */
function waitPast(t: number, ms: number): void {
  const limit = Date.now() + 1000;
  while (((clock() - t) | 0) <= ms) {
    if (Date.now() > limit) throw new Error('the clock did not move');
  }
}

describe('from the uplink to 127.0.0.1 + id', () => {
  it('a TCP SYN to 127.0.0.8:6379 reaches slot 3 as 127.0.0.1:P -> 127.0.0.1:6379, P in the loopback range', () => {
    const nat = makeNat();
    const opts = [2, 4, 0x40, 0x0c, 1, 3, 3, 7];
    const syn = tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 1000, flags: SYN, options: opts });
    const r = recv(nat, syn);
    expect(r.v).toBe(S);
    expect(r.clean).toBe(true);
    const h = parse(r.out);
    expect(h.src).toBe(LO);
    expect(h.dst).toBe(LO);
    const p = srcPort(r.out);
    expect(inRange(p)).toBe(true);
    expect(dstPort(r.out)).toBe(6379);
    expect(ipHeaderOk(r.out)).toBe(true);
    expect(l4Ok(r.out)).toBe(true);
    // Nothing else changed: the client's SYN as if sent from 127.0.0.1:P to 127.0.0.1:6379.
    expect(hx(r.out)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 1000, flags: SYN, options: opts })));
    expect(nat.counters.loopback).toBe(1);
    expect(nat.loopback!.flows.count).toBe(1);
    expect(nat.flowCount).toBe(1);
    // Not the translator's own table: the VIP flows stay untouched.
    expect(nat.flows.count).toBe(0);
  });

  it("the session's SYN-ACK goes to the uplink from 127.0.0.8:6379 to 127.0.0.1:40000; ACK and data both ways keep P", () => {
    const nat = makeNat();
    const r = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 1000, flags: SYN }));
    expect(r.v).toBe(S);
    const p = srcPort(r.out);

    const sa = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 7000, ack: 1001, flags: SYN | ACK }));
    expect(sa.v).toBe(TO_UPLINK);
    expect(sa.clean).toBe(true);
    expect(allOk(sa.out)).toBe(true);
    expect(hx(sa.out)).toBe(hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 7000, ack: 1001, flags: SYN | ACK })));

    const ack = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 1001, ack: 7001, flags: ACK }));
    expect(ack.v).toBe(S);
    expect(hx(ack.out)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 1001, ack: 7001, flags: ACK })));
    const t = nat.loopback!.flows;
    const f = t.lookupInner(S, TCP, LO, 40000, V, 6379);
    expect(f).not.toBe(NO_FLOW);
    expect(t.stateOf(f)).toBe(TCP_ESTABLISHED);

    const ping = enc.encode('*1\r\n$4\r\nPING\r\n');
    const q = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 1001, ack: 7001, flags: PSH | ACK, data: ping }));
    expect(q.v).toBe(S);
    expect(allOk(q.out)).toBe(true);
    expect(hx(q.out)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 1001, ack: 7001, flags: PSH | ACK, data: ping })));

    const pong = enc.encode('+PONG\r\n');
    const a = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 7001, ack: 1015, flags: PSH | ACK, data: pong }));
    expect(a.v).toBe(TO_UPLINK);
    expect(allOk(a.out)).toBe(true);
    expect(hx(a.out)).toBe(hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 7001, ack: 1015, flags: PSH | ACK, data: pong })));
    expect(nat.counters.loopback).toBe(5);
    expect(t.count).toBe(1);
  });

  it('UDP both ways, with a checksum and without one (0 stays 0)', () => {
    const nat = makeNat();
    const qd = enc.encode('query');
    const r = recv(nat, udpPacket(LO, V, { sport: 40001, dport: 53, data: qd }));
    expect(r.v).toBe(S);
    const p = srcPort(r.out);
    expect(inRange(p)).toBe(true);
    expect(allOk(r.out)).toBe(true);
    expect(hx(r.out)).toBe(hx(udpPacket(LO, LO, { sport: p, dport: 53, data: qd })));
    expect(nat.loopback!.flows.lookupInner(S, UDP, LO, 40001, V, 53)).not.toBe(NO_FLOW);

    const ad = enc.encode('answer!');
    const a = send(nat, S, udpPacket(LO, LO, { sport: 53, dport: p, data: ad }));
    expect(a.v).toBe(TO_UPLINK);
    expect(allOk(a.out)).toBe(true);
    expect(hx(a.out)).toBe(hx(udpPacket(V, LO, { sport: 53, dport: 40001, data: ad })));

    // Again on the same flow: the same port.
    const r2 = recv(nat, udpPacket(LO, V, { sport: 40001, dport: 53, data: ad }));
    expect(srcPort(r2.out)).toBe(p);

    // No checksum: the datagram stays without one both ways.
    const n = recv(nat, udpPacket(LO, V, { sport: 40002, dport: 53, data: qd, checksum: false }));
    expect(n.v).toBe(S);
    const pn = srcPort(n.out);
    expect(pn).not.toBe(p);
    expect(hx(n.out)).toBe(hx(udpPacket(LO, LO, { sport: pn, dport: 53, data: qd, checksum: false })));
    const na = send(nat, S, udpPacket(LO, LO, { sport: 53, dport: pn, data: ad, checksum: false }));
    expect(na.v).toBe(TO_UPLINK);
    expect(hx(na.out)).toBe(hx(udpPacket(V, LO, { sport: 53, dport: 40002, data: ad, checksum: false })));
    expect(nat.loopback!.flows.count).toBe(2);
  });

  it('an echo request to 127.0.0.8 gets an identifier of the range; the echo reply gets the client one back', () => {
    const nat = makeNat();
    const data = enc.encode('abcdefgh');
    const r = recv(nat, echoPacket(LO, V, 8, 0x4242, 1, data));
    expect(r.v).toBe(S);
    const id = srcPort(r.out);
    expect(inRange(id)).toBe(true);
    expect(allOk(r.out)).toBe(true);
    expect(hx(r.out)).toBe(hx(echoPacket(LO, LO, 8, id, 1, data)));

    const a = send(nat, S, echoPacket(LO, LO, 0, id, 1, data));
    expect(a.v).toBe(TO_UPLINK);
    expect(allOk(a.out)).toBe(true);
    expect(hx(a.out)).toBe(hx(echoPacket(V, LO, 0, 0x4242, 1, data)));

    // The next request of the same ping: the same identifier.
    expect(srcPort(recv(nat, echoPacket(LO, V, 8, 0x4242, 2, data)).out)).toBe(id);
    expect(nat.loopback!.flows.count).toBe(1);
  });

  it('a client address other than 127.0.0.1 is rewritten to 127.0.0.1 and restored, with both checksums', () => {
    const nat = makeNat();
    const C = addr('192.0.2.44');
    const r = recv(nat, udpPacket(C, V, { sport: 777, dport: 9000, data: enc.encode('x') }));
    expect(r.v).toBe(S);
    const p = srcPort(r.out);
    expect(hx(r.out)).toBe(hx(udpPacket(LO, LO, { sport: p, dport: 9000, data: enc.encode('x') })));
    const a = send(nat, S, udpPacket(LO, LO, { sport: 9000, dport: p, data: enc.encode('yz') }));
    expect(a.v).toBe(TO_UPLINK);
    expect(hx(a.out)).toBe(hx(udpPacket(V, C, { sport: 9000, dport: 777, data: enc.encode('yz') })));
  });

  it('a session whose slot is its id, and the top id (127.255.255.255), work the same', () => {
    const nat = new Nat({ maxSession: MAX, flowCapacity: 1024, seed: 2, loopback: true });
    nat.addLoopback(2); // loopbackId defaults to the slot: 127.0.0.3
    nat.addLoopback(MAX, 0xfffffe);
    const r = recv(nat, tcpPacket(LO, addr('127.0.0.3'), { sport: 1, dport: 22, flags: SYN }));
    expect(r.v).toBe(2);
    expect(allOk(r.out)).toBe(true);
    const top = addr('127.255.255.255');
    const t = recv(nat, tcpPacket(LO, top, { sport: 2, dport: 22, flags: SYN }));
    expect(t.v).toBe(MAX);
    const a = send(nat, MAX, tcpPacket(LO, LO, { sport: 22, dport: srcPort(t.out), ack: 1001, flags: SYN | ACK }));
    expect(a.v).toBe(TO_UPLINK);
    expect(hx(a.out)).toBe(hx(tcpPacket(top, LO, { sport: 22, dport: 2, ack: 1001, flags: SYN | ACK })));
  });
});

describe("the session's own clients of its virtual loopback", () => {
  it('a SYN to its own 127.0.0.8:80 goes back into it as 127.0.0.1:P -> 127.0.0.1:80, and the answer back to it', () => {
    const nat = makeNat();
    const r = send(nat, S, tcpPacket(LO, V, { sport: 50000, dport: 80, seq: 1, flags: SYN }));
    expect(r.v).toBe(S);
    expect(r.clean).toBe(true);
    const p = srcPort(r.out);
    expect(inRange(p)).toBe(true);
    expect(allOk(r.out)).toBe(true);
    expect(hx(r.out)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 80, seq: 1, flags: SYN })));
    // Its flow is the session's own client's, not an uplink client's.
    const t = nat.loopback!.flows;
    expect(t.lookupInner(S, TCP, LO, 50000, V, 80)).toBe(NO_FLOW);
    expect(t.lookupInner(MAX + S, TCP, LO, 50000, V, 80)).not.toBe(NO_FLOW);

    const a = send(nat, S, tcpPacket(LO, LO, { sport: 80, dport: p, seq: 5, ack: 2, flags: SYN | ACK }));
    expect(a.v).toBe(S);
    expect(allOk(a.out)).toBe(true);
    expect(hx(a.out)).toBe(hx(tcpPacket(V, LO, { sport: 80, dport: 50000, seq: 5, ack: 2, flags: SYN | ACK })));

    const ack = send(nat, S, tcpPacket(LO, V, { sport: 50000, dport: 80, seq: 2, ack: 6, flags: ACK }));
    expect(ack.v).toBe(S);
    expect(srcPort(ack.out)).toBe(p);
    expect(nat.counters.loopback).toBe(3);
    expect(nat.counters.loopbackReflected).toBe(0);
  });

  it("an uplink client and the session's own client from the same 127.0.0.1:40000 to the same server get apart", () => {
    const nat = makeNat();
    const up = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, flags: SYN }));
    const own = send(nat, S, tcpPacket(LO, V, { sport: 40000, dport: 6379, flags: SYN }));
    expect(up.v).toBe(S);
    expect(own.v).toBe(S);
    const pu = srcPort(up.out);
    const po = srcPort(own.out);
    expect(pu).not.toBe(po);
    const toUp = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: pu, ack: 1001, flags: SYN | ACK }));
    expect(toUp.v).toBe(TO_UPLINK);
    expect(dstPort(toUp.out)).toBe(40000);
    const toOwn = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: po, ack: 1001, flags: SYN | ACK }));
    expect(toOwn.v).toBe(S);
    expect(hx(toOwn.out)).toBe(hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, ack: 1001, flags: SYN | ACK })));
  });

  it("the session's own segment that no flow carries gets a reset written back for it (REPLY)", () => {
    const nat = makeNat();
    const a = answer(nat, tcpPacket(LO, V, { sport: 50000, dport: 80, seq: 3, ack: 44, flags: ACK }), S);
    expect(a.v).toBe(REPLY);
    expect(a.clean).toBe(true);
    expect(nat.replyLength).toBe(40);
    expect(hx(a.reply)).toBe(hx(tcpPacket(V, LO, { sport: 80, dport: 50000, seq: 44, ack: 0, flags: RST, window: 0 }, { ident: 0 })));
    expect(nat.loopback!.flows.count).toBe(0);
  });
});

describe("reflection: the session's own loopback traffic", () => {
  it("what is no flow's goes straight back to the session, every byte as it was (counters.loopbackReflected)", () => {
    const nat = makeNat();
    // A live flow, so that the session's packets below differ from its answers only by a port.
    const p = connect(nat, 40000, 6379);
    const before = nat.counters.loopback;
    const own = [
      tcpPacket(LO, LO, { sport: 1234, dport: 62000, flags: SYN }),
      tcpPacket(LO, LO, { sport: 6380, dport: p, flags: ACK }), // to a flow's port, from another server port
      udpPacket(LO, LO, { sport: 5000, dport: LOOPBACK_PORT_LO, data: enc.encode('own') }),
      echoPacket(LO, LO, 8, p, 1, enc.encode('ping')), // its own ping: a request is never a flow's answer
      echoPacket(LO, LO, 0, 0x1111, 1), // a reply of no flow
      icmpErrorPacket(LO, LO, 3, 3, udpPacket(LO, LO, { sport: 5, dport: 6 })), // an error about its own datagram
      tcpPacket(LO, LO, { sport: 6379, dport: p, flags: ACK }, { fragOffset: 8 }), // a fragment: no ports to go by
    ];
    own.forEach((pkt, i) => {
      const r = send(nat, S, pkt);
      expect(r.v, `packet ${i}`).toBe(S);
      expect(hx(r.out), `packet ${i}`).toBe(hx(pkt));
      expect(nat.counters.loopbackReflected).toBe(i + 1);
    });
    expect(nat.counters.loopback).toBe(before);
  });

  it('a session without a loopback, or a 127.x address not its own, gets its packet dropped', () => {
    const nat = makeNat();
    nat.addSession(2, INNER, VIP(2)); // no loopback
    expect(send(nat, 2, tcpPacket(LO, LO, { sport: 1, dport: 2, flags: SYN })).v).toBe(DROP);
    expect(nat.counters.noSession).toBe(1);
    // Another session's loopback, or some other 127.x: the session's routes send it none of those.
    expect(send(nat, S, tcpPacket(LO, V2, { sport: 1, dport: 2, flags: SYN })).v).toBe(DROP);
    expect(send(nat, S, udpPacket(LO, addr('127.1.2.3'), { sport: 1, dport: 2 })).v).toBe(DROP);
    expect(nat.counters.malformed).toBe(2);
    expect(nat.loopback!.flows.count).toBe(0);
  });

  it('a session id out of range (0, above maxSession, not an integer) gets its packets dropped (noSession), not delivered', () => {
    const nat = makeNat();
    const p = connect(nat, 40000, 6379);
    const before = nat.counters.loopback;
    let n = nat.counters.noSession;
    for (const id of [0, MAX + 1, MAX + S, 2 * MAX, 2 * MAX + 1, S + 0.5, -1, 1e9]) {
      for (const pkt of [
        tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 901, ack: 101, flags: ACK }), // the flow's answer
        tcpPacket(LO, LO, { sport: 1, dport: 2, flags: SYN }), // what would be reflected
        tcpPacket(LO, V, { sport: 50000, dport: 80, flags: SYN }), // to 127.0.0.8
        udpPacket(LO, LO, { sport: 5, dport: 6 }),
      ]) {
        const r = send(nat, id, pkt);
        expect(r.v, `id ${id}`).toBe(DROP);
        expect(hx(r.out), `id ${id}`).toBe(hx(pkt));
        expect(nat.counters.noSession).toBe(++n);
      }
    }
    expect(nat.counters.loopback).toBe(before);
    expect(nat.counters.loopbackReflected).toBe(0);
    expect(nat.loopback!.flows.count).toBe(1);
    // The flow's own session still gets its answer through.
    expect(send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 901, ack: 101, flags: ACK })).v).toBe(TO_UPLINK);
  });
});

describe('ICMP errors from the session', () => {
  it('port unreachable about a client datagram goes to the client from 127.0.0.8, its quote translated back', () => {
    const nat = makeNat();
    const orig = udpPacket(LO, V, { sport: 40000, dport: 5353, data: enc.encode('anyone there?') });
    const r = recv(nat, orig);
    expect(r.v).toBe(S);
    const got = r.out; // 127.0.0.1:P -> 127.0.0.1:5353, what the session's kernel quotes
    const err = icmpErrorPacket(LO, LO, 3, 3, got);
    const e = send(nat, S, err);
    expect(e.v).toBe(TO_UPLINK);
    expect(e.clean).toBe(true);
    const h = parse(e.out);
    expect(h.src).toBe(V);
    expect(h.dst).toBe(LO);
    expect(allOk(e.out)).toBe(true);
    const quote = e.out.subarray(h.l4 + 8);
    expect(ipHeaderOk(quote)).toBe(true);
    expect(l4Ok(quote)).toBe(true);
    expect(u32(quote, 12)).toBe(LO);
    expect(u32(quote, 16)).toBe(V);
    expect(u16(quote, 20)).toBe(40000);
    expect(u16(quote, 22)).toBe(5353);
    // The quote is the client's datagram as it sent it, and the rest the session's error.
    expect(hx(quote)).toBe(hx(orig));
    expect(hx(e.out)).toBe(hx(icmpErrorPacket(V, LO, 3, 3, orig)));
    expect(nat.counters.loopback).toBe(2);
  });

  it('a quote cut to header + 8 bytes gets the UDP checksum of the original; a quoted TCP header gets its own fixed', () => {
    const nat = makeNat();
    const C = addr('192.0.2.44');
    const orig = udpPacket(C, V, { sport: 40000, dport: 5353, data: enc.encode('0123456789') });
    const got = recv(nat, orig).out;
    const e = send(nat, S, icmpErrorPacket(LO, LO, 3, 3, got, 28));
    expect(e.v).toBe(TO_UPLINK);
    expect(hx(e.out)).toBe(hx(icmpErrorPacket(V, C, 3, 3, orig, 28)));

    const seg = tcpPacket(C, V, { sport: 40001, dport: 443, seq: 5, flags: SYN });
    const gs = recv(nat, seg).out;
    // Say, fragmentation needed, quoting the whole TCP header.
    const te = send(nat, S, icmpErrorPacket(LO, LO, 3, 4, gs));
    expect(te.v).toBe(TO_UPLINK);
    expect(allOk(te.out)).toBe(true);
    expect(hx(te.out)).toBe(hx(icmpErrorPacket(V, C, 3, 4, seg)));
    // Cut to 8 bytes, the TCP checksum is not there to fix.
    const t8 = send(nat, S, icmpErrorPacket(LO, LO, 3, 4, gs, 28));
    expect(t8.v).toBe(TO_UPLINK);
    expect(hx(t8.out)).toBe(hx(icmpErrorPacket(V, C, 3, 4, seg, 28)));
  });

  it("an error about the session's own client's packet goes back into the session", () => {
    const nat = makeNat();
    const orig = udpPacket(LO, V, { sport: 50000, dport: 9, data: enc.encode('discard') });
    const r = send(nat, S, orig);
    expect(r.v).toBe(S);
    const e = send(nat, S, icmpErrorPacket(LO, LO, 3, 3, r.out));
    expect(e.v).toBe(S);
    expect(hx(e.out)).toBe(hx(icmpErrorPacket(V, LO, 3, 3, orig)));
  });

  it("an error whose quote stops before the 4 bytes of ports is the session's own (reflected), even with the right bytes after it", () => {
    const nat = makeNat();
    const orig = udpPacket(LO, V, { sport: 40000, dport: 5353, data: enc.encode('anyone there?') });
    const got = recv(nat, orig).out; // 127.0.0.1:P -> 127.0.0.1:5353
    const seg = tcpPacket(LO, V, { sport: 40001, dport: 443, seq: 5, flags: SYN });
    const gs = recv(nat, seg).out;
    let reflected = 0;
    for (const [quoted, cut] of [
      [got, 22],
      [got, 23],
      [gs, 22],
      [gs, 23],
    ] as const) {
      const err = icmpErrorPacket(LO, LO, 3, 3, quoted, cut);
      // Past the message, the rest of the quoted packet: what a read beyond the quote would take for its ports.
      const buf = new Uint8Array(OFF + err.length + 8);
      buf.set(err, OFF);
      buf.set(quoted.subarray(cut, cut + 8), OFF + err.length);
      const whole = buf.slice();
      expect(nat.fromSession(S, buf, OFF, err.length, NOW), `cut ${cut}`).toBe(S);
      expect(hx(buf), `cut ${cut}`).toBe(hx(whole));
      expect(nat.counters.loopbackReflected).toBe(++reflected);
    }
    // The control: with 4 bytes quoted (the ports, no checksum), it goes to the client translated.
    const e = send(nat, S, icmpErrorPacket(LO, LO, 3, 3, got, 24));
    expect(e.v).toBe(TO_UPLINK);
    expect(hx(e.out)).toBe(hx(icmpErrorPacket(V, LO, 3, 3, orig, 24)));
    const te = send(nat, S, icmpErrorPacket(LO, LO, 3, 4, gs, 24));
    expect(te.v).toBe(TO_UPLINK);
    expect(hx(te.out)).toBe(hx(icmpErrorPacket(V, LO, 3, 4, seg, 24)));
    expect(nat.counters.loopbackReflected).toBe(reflected);
  });
});

describe('the loopback of a session that is not running (reply4)', () => {
  it('a TCP SYN gets a RST|ACK from 127.0.0.8:6379 with ack = seq + 1 (REPLY, Nat.replyLength bytes)', () => {
    const nat = new Nat({ maxSession: MAX, flowCapacity: 1024, seed: 1, loopback: true });
    nat.addSession(S, INNER, VIP(S)); // a session, but no loopback for it
    const a = answer(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 0xfffffff0, flags: SYN, options: [2, 4, 5, 0xb4] }));
    expect(a.v).toBe(REPLY);
    expect(a.clean).toBe(true);
    expect(nat.replyLength).toBe(40);
    expect(allOk(a.reply)).toBe(true);
    const h = parse(a.reply);
    expect(h.src).toBe(V);
    expect(h.dst).toBe(LO);
    expect(u16(a.reply, 20)).toBe(6379);
    expect(u16(a.reply, 22)).toBe(40000);
    expect(u32(a.reply, 24)).toBe(0); // seq
    expect(u32(a.reply, 28)).toBe(0xfffffff1); // ack
    expect(a.reply[33]).toBe(RST | ACK);
    expect(hx(a.reply)).toBe(
      hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 0, ack: 0xfffffff1, flags: RST | ACK, window: 0 }, { ident: 0 })),
    );
    expect(nat.counters.loopbackRefused).toBe(1);
    expect(nat.loopback!.flows.count).toBe(0);
  });

  it('the ack covers data, SYN and FIN (wrapping past 2^32); a segment with ACK gets a bare RST with seq = its ack', () => {
    const nat = makeNat();
    const data = new Uint8Array(10).fill(0x61);
    // 127.0.0.9 is nobody's.
    const W = addr('127.0.0.9');
    const a = answer(nat, tcpPacket(LO, W, { sport: 1, dport: 2, seq: 0xfffffffa, flags: SYN | FIN, data }));
    expect(a.v).toBe(REPLY);
    expect(hx(a.reply)).toBe(hx(tcpPacket(W, LO, { sport: 2, dport: 1, seq: 0, ack: 6, flags: RST | ACK, window: 0 }, { ident: 0 })));
    const b = answer(nat, tcpPacket(LO, W, { sport: 1, dport: 2, seq: 77, ack: 0x12345678, flags: PSH | ACK, data }));
    expect(b.v).toBe(REPLY);
    expect(hx(b.reply)).toBe(hx(tcpPacket(W, LO, { sport: 2, dport: 1, seq: 0x12345678, ack: 0, flags: RST, window: 0 }, { ident: 0 })));
  });

  it('a RST gets no answer, nor does a later TCP fragment', () => {
    const nat = makeNat();
    const W = addr('127.0.0.9');
    expect(answer(nat, tcpPacket(LO, W, { sport: 1, dport: 2, flags: RST })).v).toBe(DROP);
    expect(answer(nat, tcpPacket(LO, W, { sport: 1, dport: 2, flags: RST | ACK, ack: 5 })).v).toBe(DROP);
    expect(answer(nat, tcpPacket(LO, W, { sport: 1, dport: 2, flags: SYN }, { fragOffset: 16 })).v).toBe(DROP);
  });

  it('a UDP datagram gets ICMP port unreachable from 127.0.0.8 quoting it whole', () => {
    const nat = new Nat({ maxSession: MAX, flowCapacity: 1024, seed: 1, loopback: true });
    const dg = udpPacket(LO, V, { sport: 40000, dport: 53, data: enc.encode('who is there') }, { tos: 0x10, ttl: 9 });
    const a = answer(nat, dg);
    expect(a.v).toBe(REPLY);
    expect(a.clean).toBe(true);
    expect(nat.replyLength).toBe(28 + dg.length);
    const h = parse(a.reply);
    expect(h.proto).toBe(ICMP);
    expect(h.src).toBe(V);
    expect(h.dst).toBe(LO);
    expect(a.reply[20]).toBe(3);
    expect(a.reply[21]).toBe(3);
    expect(allOk(a.reply)).toBe(true);
    expect(hx(a.reply.subarray(28))).toBe(hx(dg));
    expect(hx(a.reply)).toBe(hx(icmpErrorPacket(V, LO, 3, 3, dg, dg.length, { ident: 0 })));
  });

  it('a long datagram is quoted up to 576 bytes of answer; an echo request gets host unreachable; an ICMP error nothing', () => {
    const nat = new Nat({ maxSession: MAX, flowCapacity: 1024, seed: 1, loopback: true });
    const big = udpPacket(LO, V, { sport: 1, dport: 2, data: new Uint8Array(1000).map((_, i) => i & 0xff) });
    const a = answer(nat, big);
    expect(a.v).toBe(REPLY);
    expect(nat.replyLength).toBe(576);
    expect(allOk(a.reply)).toBe(true);
    expect(hx(a.reply)).toBe(hx(icmpErrorPacket(V, LO, 3, 3, big, 548, { ident: 0 })));

    const ping = echoPacket(LO, V, 8, 9, 1, enc.encode('hi'));
    const e = answer(nat, ping);
    expect(e.v).toBe(REPLY);
    expect(hx(e.reply)).toBe(hx(icmpErrorPacket(V, LO, 3, 1, ping, ping.length, { ident: 0 })));

    expect(answer(nat, icmpErrorPacket(LO, V, 3, 3, udpPacket(V, LO, { sport: 2, dport: 1 }))).v).toBe(DROP);
    expect(answer(nat, icmpErrorPacket(LO, V, 11, 0, udpPacket(V, LO, { sport: 2, dport: 1 }))).v).toBe(DROP);
    // A later fragment gets no error either.
    expect(answer(nat, udpPacket(LO, V, { sport: 1, dport: 2 }, { fragOffset: 8 })).v).toBe(DROP);
  });

  it("after removeSession the loopback answers as a closed port, and the session's packets are dropped", () => {
    const nat = makeNat();
    const p = connect(nat, 40000, 6379);
    nat.removeSession(S);
    expect(nat.loopback!.flows.count).toBe(0);
    const a = answer(nat, tcpPacket(LO, V, { sport: 40001, dport: 6379, seq: 41, flags: SYN }));
    expect(a.v).toBe(REPLY);
    expect(hx(a.reply)).toBe(
      hx(tcpPacket(V, LO, { sport: 6379, dport: 40001, seq: 0, ack: 42, flags: RST | ACK, window: 0 }, { ident: 0 })),
    );
    // The old connection's next segment: a reset too.
    const b = answer(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 101, ack: 901, flags: ACK }));
    expect(b.v).toBe(REPLY);
    expect(hx(b.reply)).toBe(hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 901, ack: 0, flags: RST, window: 0 }, { ident: 0 })));
    const u = answer(nat, udpPacket(LO, V, { sport: 40000, dport: 53 }));
    expect(u.v).toBe(REPLY);
    expect(u.reply[20]).toBe(3);
    expect(u.reply[21]).toBe(3);
    expect(send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, flags: ACK })).v).toBe(DROP);
    // The other session's loopback is untouched.
    expect(recv(nat, tcpPacket(LO, V2, { sport: 40000, dport: 6379, flags: SYN })).v).toBe(S2);
    // Added again, it answers again.
    nat.addSession(S, INNER, VIP(S));
    nat.addLoopback(S, ID);
    expect(recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, flags: SYN })).v).toBe(S);
  });

  it('a running session refuses what no flow carries: a TCP segment that opens nothing gets a reset, an echo reply nothing', () => {
    const nat = makeNat();
    const a = answer(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 5, ack: 99, flags: ACK }));
    expect(a.v).toBe(REPLY);
    expect(hx(a.reply)).toBe(hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 99, ack: 0, flags: RST, window: 0 }, { ident: 0 })));
    expect(answer(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, flags: RST })).v).toBe(DROP);
    expect(answer(nat, echoPacket(LO, V, 0, 5, 1)).v).toBe(DROP);
    expect(nat.loopback!.flows.count).toBe(0);
  });
});

describe('loopback ports', () => {
  it('one client port to two sessions gets distinct ports, each answering from its own address', () => {
    const nat = makeNat();
    const a = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, flags: SYN }));
    const b = recv(nat, tcpPacket(LO, V2, { sport: 40000, dport: 6379, flags: SYN }));
    expect(a.v).toBe(S);
    expect(b.v).toBe(S2);
    const pa = srcPort(a.out);
    const pb = srcPort(b.out);
    expect(pa).not.toBe(pb);
    const ra = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: pa, ack: 1001, flags: SYN | ACK }));
    expect(ra.v).toBe(TO_UPLINK);
    expect(hx(ra.out)).toBe(hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, ack: 1001, flags: SYN | ACK })));
    const rb = send(nat, S2, tcpPacket(LO, LO, { sport: 6379, dport: pb, ack: 1001, flags: SYN | ACK }));
    expect(rb.v).toBe(TO_UPLINK);
    expect(hx(rb.out)).toBe(hx(tcpPacket(V2, LO, { sport: 6379, dport: 40000, ack: 1001, flags: SYN | ACK })));
    // Session S2 answering to S's port is no flow of its own: reflected.
    const x = tcpPacket(LO, LO, { sport: 6379, dport: pa, ack: 1001, flags: SYN | ACK });
    const rx = send(nat, S2, x);
    expect(rx.v).toBe(S2);
    expect(hx(rx.out)).toBe(hx(x));
  });

  it('many connections to one server port get distinct ports of the range, each answer finding its client', () => {
    const nat = makeNat();
    const ports = new Map<number, number>();
    for (let i = 0; i < 300; i++) {
      const r = recv(nat, tcpPacket(LO, V, { sport: 41000 + i, dport: 6379, flags: SYN }));
      expect(r.v).toBe(S);
      const p = srcPort(r.out);
      expect(inRange(p)).toBe(true);
      expect(ports.has(p)).toBe(false);
      ports.set(p, 41000 + i);
    }
    for (const [p, c] of ports) {
      const a = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, ack: 1001, flags: SYN | ACK }));
      expect(a.v).toBe(TO_UPLINK);
      expect(dstPort(a.out)).toBe(c);
      expect(allOk(a.out)).toBe(true);
    }
    expect(nat.loopback!.flows.count).toBe(300);
  });

  it('a TCP flow closed both ways gives its port up when the range is otherwise full; with none closed, a new flow is refused', () => {
    for (const close of [true, false]) {
      // Room for a whole range of flows in one session.
      const nat = makeNat({ loopbackFlows: 131072 });
      const pa = connect(nat, 40000, 6379);
      const t = nat.loopback!.flows;
      if (close) {
        expect(recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 101, ack: 901, flags: FIN | ACK })).v).toBe(S);
        expect(send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: pa, seq: 901, ack: 102, flags: FIN | ACK })).v).toBe(TO_UPLINK);
        expect(recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 102, ack: 902, flags: ACK })).v).toBe(S);
        expect(t.stateOf(t.lookupInner(S, TCP, LO, 40000, V, 6379))).toBe(TCP_CLOSING);
      }
      const taken = new Set([pa]);
      for (let i = 1; i < PORTS; i++) {
        const r = recv(nat, tcpPacket(LO, V, { sport: 40000 + i, dport: 6379, flags: SYN }));
        expect(r.v).toBe(S);
        taken.add(srcPort(r.out));
      }
      expect(taken.size).toBe(PORTS);
      expect(nat.counters.loopbackPorts).toBe(0);
      const last = 40000 + PORTS;
      const n = recv(nat, tcpPacket(LO, V, { sport: last, dport: 6379, flags: SYN }));
      if (close) {
        expect(n.v).toBe(S);
        expect(srcPort(n.out)).toBe(pa);
        expect(t.count).toBe(PORTS);
        const a = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: pa, ack: 1001, flags: SYN | ACK }));
        expect(a.v).toBe(TO_UPLINK);
        expect(dstPort(a.out)).toBe(last);
        // The old connection's flow is gone: its late segment gets a reset.
        expect(answer(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 102, ack: 902, flags: ACK })).v).toBe(REPLY);
      } else {
        expect(n.v).toBe(DROP);
        expect(nat.counters.loopbackPorts).toBe(1);
        expect(t.count).toBe(PORTS);
      }
      // Another server port has a whole range of its own.
      const o = recv(nat, tcpPacket(LO, V, { sport: last, dport: 6380, flags: SYN }));
      expect(o.v).toBe(S);
      expect(inRange(srcPort(o.out))).toBe(true);
    }
  });

  it('a UDP flow expires after the loopback timeout (60 s); the late answer is then reflected', () => {
    const nat = makeNat();
    const r = recv(nat, udpPacket(LO, V, { sport: 40000, dport: 53 }));
    const p = srcPort(r.out);
    nat.expire(NOW + 60);
    expect(nat.loopback!.flows.count).toBe(1);
    nat.expire(NOW + 61);
    expect(nat.loopback!.flows.count).toBe(0);
    expect(nat.counters.flowsExpired).toBe(1);
    const late = udpPacket(LO, LO, { sport: 53, dport: p });
    const a = send(nat, S, late, NOW + 61);
    expect(a.v).toBe(S);
    expect(hx(a.out)).toBe(hx(late));
    expect(nat.counters.loopbackReflected).toBe(1);
  });
});

describe('TCP timestamps (shifted per flow onto vipnat clock)', () => {
  it("a SYN's TSval becomes vipnat's clock + 1; the SYN-ACK's TSecr gets the client's back; later segments keep the shift past 2^32", () => {
    const nat = makeNat();
    // Just below 2^32, so that the client's clock wraps during the connection.
    const T = 0xfffffff0;
    const before = clock();
    const r = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 100, flags: SYN, options: synOpts(T, 0) }));
    const after = clock();
    expect(r.v).toBe(S);
    const p = srcPort(r.out);
    const ts = u32(r.out, SYN_TSVAL);
    expect(ts).not.toBe(T);
    expectClockPlus1(ts, before, after);
    expect(u32(r.out, SYN_TSVAL + 4)).toBe(0);
    expect(allOk(r.out)).toBe(true);
    // Every other byte as before; the checksum follows the new TSval.
    expect(hx(r.out)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 100, flags: SYN, options: synOpts(ts, 0) })));

    // The server's TSval goes out as it is; its TSecr, the shifted value, goes back to the client's own.
    const SV = 0x11111111;
    const sa = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 900, ack: 101, flags: SYN | ACK, options: synOpts(SV, ts) }));
    expect(sa.v).toBe(TO_UPLINK);
    expect(u32(sa.out, SYN_TSVAL)).toBe(SV);
    expect(u32(sa.out, SYN_TSVAL + 4)).toBe(T);
    expect(allOk(sa.out)).toBe(true);
    expect(hx(sa.out)).toBe(
      hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 900, ack: 101, flags: SYN | ACK, options: synOpts(SV, T) })),
    );

    // The client's ACK, 3 ms on: TSval with the same shift, its TSecr (the server's TSval) untouched.
    const ack = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 101, ack: 901, flags: ACK, options: tsOpts(T + 3, SV) }));
    expect(ack.v).toBe(S);
    expect(allOk(ack.out)).toBe(true);
    expect(hx(ack.out)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 101, ack: 901, flags: ACK, options: tsOpts(ts + 3, SV) })));

    // Data with the client's clock wrapped (0xfffffff0 + 0x20 = 0x10): the difference still holds.
    const get = enc.encode('GET / HTTP/1.1\r\n\r\n');
    const d = recv(
      nat,
      tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 101, ack: 901, flags: PSH | ACK, options: tsOpts(0x10, SV), data: get }),
    );
    expect(d.v).toBe(S);
    expect(allOk(d.out)).toBe(true);
    expect(u32(d.out, TS_TSVAL)).toBe((ts + 0x20) >>> 0);
    expect(hx(d.out)).toBe(
      hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 101, ack: 901, flags: PSH | ACK, options: tsOpts(ts + 0x20, SV), data: get })),
    );

    // The server's answer echoes the shifted TSval: the client gets 0x10 back.
    const ok = enc.encode('HTTP/1.1 200 OK\r\n\r\n');
    const a = send(
      nat,
      S,
      tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 901, ack: 119, flags: PSH | ACK, options: tsOpts(SV + 7, ts + 0x20), data: ok }),
    );
    expect(a.v).toBe(TO_UPLINK);
    expect(allOk(a.out)).toBe(true);
    expect(hx(a.out)).toBe(
      hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 901, ack: 119, flags: PSH | ACK, options: tsOpts(SV + 7, 0x10), data: ok })),
    );
    // An older echo (a retransmission's): the same shift, backwards across 2^32 again.
    const old = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 901, ack: 119, flags: ACK, options: tsOpts(SV + 8, ts + 3) }));
    expect(hx(old.out)).toBe(
      hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 901, ack: 119, flags: ACK, options: tsOpts(SV + 8, T + 3) })),
    );
  });

  it("two flows open at once from clients with far-apart clocks: both land on vipnat's clock, each TSecr taken back by its own shift", () => {
    const nat = makeNat();
    const TA = 0x40000000;
    const TB = 0xc0000000;
    const before = clock();
    const ra = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 80, flags: SYN, options: synOpts(TA, 0) }));
    const rb = recv(nat, tcpPacket(LO, V, { sport: 40001, dport: 80, flags: SYN, options: synOpts(TB, 0) }));
    const after = clock();
    const tsa = u32(ra.out, SYN_TSVAL);
    const tsb = u32(rb.out, SYN_TSVAL);
    expectClockPlus1(tsa, before, after);
    expectClockPlus1(tsb, before, after);
    const pa = srcPort(ra.out);
    const pb = srcPort(rb.out);
    const sb = send(nat, S, tcpPacket(LO, LO, { sport: 80, dport: pb, ack: 1001, flags: SYN | ACK, options: synOpts(5, tsb) }));
    const sa = send(nat, S, tcpPacket(LO, LO, { sport: 80, dport: pa, ack: 1001, flags: SYN | ACK, options: synOpts(6, tsa) }));
    expect(hx(sb.out)).toBe(hx(tcpPacket(V, LO, { sport: 80, dport: 40001, ack: 1001, flags: SYN | ACK, options: synOpts(5, TB) })));
    expect(hx(sa.out)).toBe(hx(tcpPacket(V, LO, { sport: 80, dport: 40000, ack: 1001, flags: SYN | ACK, options: synOpts(6, TA) })));
  });

  it("the session's own client of its virtual loopback gets the same: shifted into the server, echoed back unshifted", () => {
    const nat = makeNat();
    const T = 0x0badf00d;
    const before = clock();
    const r = send(nat, S, tcpPacket(LO, V, { sport: 50000, dport: 80, seq: 1, flags: SYN, options: synOpts(T, 0) }));
    const after = clock();
    expect(r.v).toBe(S);
    const p = srcPort(r.out);
    const ts = u32(r.out, SYN_TSVAL);
    expectClockPlus1(ts, before, after);
    expect(hx(r.out)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 80, seq: 1, flags: SYN, options: synOpts(ts, 0) })));
    const a = send(nat, S, tcpPacket(LO, LO, { sport: 80, dport: p, seq: 5, ack: 2, flags: SYN | ACK, options: synOpts(77, ts) }));
    expect(a.v).toBe(S);
    expect(allOk(a.out)).toBe(true);
    expect(hx(a.out)).toBe(hx(tcpPacket(V, LO, { sport: 80, dport: 50000, seq: 5, ack: 2, flags: SYN | ACK, options: synOpts(77, T) })));
    const ack = send(nat, S, tcpPacket(LO, V, { sport: 50000, dport: 80, seq: 2, ack: 6, flags: ACK, options: tsOpts(T + 1, 77) }));
    expect(hx(ack.out)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 80, seq: 2, ack: 6, flags: ACK, options: tsOpts(ts + 1, 77) })));
  });

  it("a port of the range reused after FIN both ways: the second SYN's TSval is newer than the first flow's last (PAWS), though its client's is far older", () => {
    // Room for a whole range of flows in one session.
    const nat = makeNat({ loopbackFlows: 131072 });
    const t = nat.loopback!.flows;
    const T1 = 0x90000000;
    const c1 = clock();
    const s1 = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 100, flags: SYN, options: synOpts(T1, 0) }));
    expect(s1.v).toBe(S);
    const pa = srcPort(s1.out);
    const ts1 = u32(s1.out, SYN_TSVAL);
    expectClockPlus1(ts1, c1, clock());
    const SV = 0x5000;
    const sa = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: pa, seq: 900, ack: 101, flags: SYN | ACK, options: synOpts(SV, ts1) }));
    expect(hx(sa.out)).toBe(
      hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 900, ack: 101, flags: SYN | ACK, options: synOpts(SV, T1) })),
    );
    expect(recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 101, ack: 901, flags: ACK, options: tsOpts(T1 + 1, SV) })).v).toBe(
      S,
    );
    // The server closes first (as an HTTP server does): its socket keeps the client's last TSval in TIME_WAIT.
    const sf = send(
      nat,
      S,
      tcpPacket(LO, LO, { sport: 6379, dport: pa, seq: 901, ack: 101, flags: FIN | ACK, options: tsOpts(SV + 1, ts1 + 1) }),
    );
    expect(sf.v).toBe(TO_UPLINK);
    expect(u32(sf.out, TS_TSVAL + 4)).toBe(T1 + 1);
    const cf = recv(
      nat,
      tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 101, ack: 902, flags: FIN | ACK, options: tsOpts(T1 + 2, SV + 1) }),
    );
    expect(cf.v).toBe(S);
    expect(
      recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 102, ack: 902, flags: ACK, options: tsOpts(T1 + 2, SV + 1) })).v,
    ).toBe(S);
    expect(
      send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: pa, seq: 902, ack: 102, flags: ACK, options: tsOpts(SV + 2, ts1 + 2) })).v,
    ).toBe(TO_UPLINK);
    expect(t.stateOf(t.lookupInner(S, TCP, LO, 40000, V, 6379))).toBe(TCP_CLOSING);
    const last1 = u32(cf.out, TS_TSVAL);
    expect(last1).toBe((ts1 + 2) >>> 0);

    // The rest of the range to other flows (UDP ones, each taking the next port), so the next flow comes back to pa.
    for (let i = 1; i < PORTS; i++) expect(recv(nat, udpPacket(LO, V, { sport: 20000 + i, dport: 53 })).v).toBe(S);
    // The first flow's client clock ran 2 ms; let vipnat's run more (as real time does).
    waitPast(ts1 - 1, 3);

    // Another client, whose clock is far behind the first's: unshifted, the server would refuse its SYN.
    const T2 = 0x80000000;
    expect((T2 - (T1 + 2)) | 0).toBeLessThan(0);
    const c2 = clock();
    const s2 = recv(nat, tcpPacket(LO, V, { sport: 40001, dport: 6379, seq: 5000, flags: SYN, options: synOpts(T2, 0) }));
    const c2b = clock();
    expect(s2.v).toBe(S);
    expect(srcPort(s2.out)).toBe(pa);
    const ts2 = u32(s2.out, SYN_TSVAL);
    expectClockPlus1(ts2, c2, c2b);
    expect((ts2 - last1) | 0).toBeGreaterThan(0);
    expect(allOk(s2.out)).toBe(true);
    expect(hx(s2.out)).toBe(hx(tcpPacket(LO, LO, { sport: pa, dport: 6379, seq: 5000, flags: SYN, options: synOpts(ts2, 0) })));
    // Its SYN-ACK is the new flow's, with the new shift taken off.
    const sa2 = send(
      nat,
      S,
      tcpPacket(LO, LO, { sport: 6379, dport: pa, seq: 7000, ack: 5001, flags: SYN | ACK, options: synOpts(SV + 9, ts2) }),
    );
    expect(sa2.v).toBe(TO_UPLINK);
    expect(hx(sa2.out)).toBe(
      hx(tcpPacket(V, LO, { sport: 6379, dport: 40001, seq: 7000, ack: 5001, flags: SYN | ACK, options: synOpts(SV + 9, T2) })),
    );
  });

  it('a segment without a timestamps option, or with a malformed options list, passes with its options untouched', () => {
    const nat = makeNat();
    const T = 0x01020304;
    const r = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 100, flags: SYN, options: synOpts(T, 0) }));
    const p = srcPort(r.out);
    const ts = u32(r.out, SYN_TSVAL);
    // The control: the flow's shift is not 0, a timestamps option moves.
    expect(ts).not.toBe(T);
    const ctl = recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 101, ack: 901, flags: ACK, options: tsOpts(T, 9) }));
    expect(u32(ctl.out, TS_TSVAL)).toBe(ts);
    const ctlBack = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 901, ack: 101, flags: ACK, options: tsOpts(9, ts) }));
    expect(u32(ctlBack.out, TS_TSVAL + 4)).toBe(T);

    const w = [0xaa, 0xbb, 0xcc, 0xdd];
    const cases: [string, number[]][] = [
      ['none', []],
      ['MSS, SACK_PERM, NOP, WS', [2, 4, 5, 0xb4, 4, 2, 1, 3, 3, 7]],
      ['SACK blocks (kind 5, also 10 bytes)', [1, 1, 5, 10, ...w, ...w]],
      ['a timestamps option after END', [1, 0, 8, 10, ...w, ...w, 0, 0]],
      ['an option of length 0 before it', [4, 0, 8, 10, ...w, ...w]],
      ['an option of length 1 before it', [4, 1, 8, 10, ...w, ...w]],
      ['an option running past the header before it', [3, 40, 8, 10, ...w, ...w]],
      ['timestamps of length 8', [1, 1, 8, 8, ...w, 0xee, 0xff, 1, 1, 1, 1]],
      ['timestamps cut by the end of the header', [1, 1, 1, 1, 1, 1, 1, 1, 8, 10, ...w.slice(0, 2)]],
      ['a kind with no length byte at the end', [1, 1, 1, 1, 1, 1, 1, 8]],
    ];
    for (const [what, options] of cases) {
      const data = enc.encode(what);
      const up = tcpPacket(LO, V, { sport: 40000, dport: 6379, seq: 101, ack: 901, flags: PSH | ACK, options, data });
      const u = recv(nat, up);
      expect(u.v, what).toBe(S);
      expect(allOk(u.out), what).toBe(true);
      expect(hx(u.out), what).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 101, ack: 901, flags: PSH | ACK, options, data })));
      const back = send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 901, ack: 101, flags: PSH | ACK, options, data }));
      expect(back.v, what).toBe(TO_UPLINK);
      expect(allOk(back.out), what).toBe(true);
      expect(hx(back.out), what).toBe(
        hx(tcpPacket(V, LO, { sport: 6379, dport: 40000, seq: 901, ack: 101, flags: PSH | ACK, options, data })),
      );
    }
  });
});

describe('addLoopback', () => {
  it('refuses a session slot outside 1..maxSession (RangeError), leaving the address free', () => {
    const nat = makeNat();
    const W = addr('127.0.0.21');
    for (const slot of [0, MAX + 1, -1, 1.5, Number.NaN, 2 * MAX]) {
      expect(() => nat.addLoopback(slot, 20), `slot ${slot}`).toThrow(RangeError);
      // Nothing took 127.0.0.21: a SYN to it is refused as a closed port's.
      expect(answer(nat, tcpPacket(LO, W, { sport: 1, dport: 2, flags: SYN })).v, `slot ${slot}`).toBe(REPLY);
    }
    // The default loopback id is the slot: still checked.
    expect(() => nat.addLoopback(0)).toThrow(RangeError);
    expect(() => nat.addLoopback(MAX + 1)).toThrow(RangeError);
    expect(answer(nat, tcpPacket(LO, addr('127.0.0.10'), { sport: 1, dport: 2, flags: SYN })).v).toBe(S2);
    // The top slot is in range, and 127.0.0.21 free for it.
    nat.addLoopback(MAX, 20);
    expect(recv(nat, tcpPacket(LO, W, { sport: 1, dport: 2, flags: SYN })).v).toBe(MAX);
  });

  it('checks the loopback id, refuses one already taken, and moves a session to a new one', () => {
    const nat = makeNat();
    expect(() => nat.addLoopback(2, 0)).toThrow(RangeError);
    expect(() => nat.addLoopback(2, 0x1000000)).toThrow(RangeError);
    expect(() => nat.addLoopback(2, 1.5)).toThrow(RangeError);
    expect(() => nat.addLoopback(2, ID)).toThrow(/already session 3's/);
    // Slot 3 moves to 127.0.0.12: 127.0.0.8 is free (refused), and then another session's.
    nat.addLoopback(S, 11);
    expect(answer(nat, tcpPacket(LO, V, { sport: 1, dport: 2, flags: SYN })).v).toBe(REPLY);
    expect(recv(nat, tcpPacket(LO, addr('127.0.0.12'), { sport: 1, dport: 2, flags: SYN })).v).toBe(S);
    nat.addLoopback(2, ID);
    expect(recv(nat, tcpPacket(LO, V, { sport: 1, dport: 2, flags: SYN })).v).toBe(2);
  });
});

describe('partial checksums (csumAt)', () => {
  /** Writes `p` at OFF with the uncomplemented pseudo-header sum in its transport checksum (at `field` in the segment). */
  function partial(p: Uint8Array, field: number): { buf: Uint8Array; at: number } {
    const h = parse(p);
    const buf = new Uint8Array(OFF + p.length);
    buf.set(p, OFF);
    const s = onesSum([pseudoHeader(h.src, h.dst, h.proto, p.length - h.ihl)]);
    const at = OFF + h.ihl + field;
    buf[at] = s >>> 8;
    buf[at + 1] = s & 0xff;
    return { buf, at };
  }
  /** What the device does: sums the segment (partial sum in the field) and stores the complement. */
  function finish(buf: Uint8Array, len: number, at: number): Uint8Array {
    const out = buf.slice(OFF, OFF + len);
    const l4 = parse(out).ihl;
    const c = ~onesSum([out.subarray(l4)]) & 0xffff;
    out[at - OFF] = c >>> 8;
    out[at - OFF + 1] = c & 0xff;
    return out;
  }

  it('TCP and UDP both ways: the partial sum follows the addresses, the ports are left to the device', () => {
    const nat = makeNat();
    const C = addr('192.0.2.44');
    const data = new Uint8Array(333).map((_, i) => (i * 7) & 0xff);
    const syn = tcpPacket(C, V, { sport: 40000, dport: 6379, flags: SYN, data });
    const a = partial(syn, 16);
    expect(nat.fromUplink(a.buf, OFF, syn.length, NOW, a.at)).toBe(S);
    const got = finish(a.buf, syn.length, a.at);
    const p = srcPort(got);
    expect(inRange(p)).toBe(true);
    expect(allOk(got)).toBe(true);
    expect(hx(got)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 6379, flags: SYN, data })));

    const sa = tcpPacket(LO, LO, { sport: 6379, dport: p, ack: 1334, flags: SYN | ACK, data });
    const b = partial(sa, 16);
    expect(nat.fromSession(S, b.buf, OFF, sa.length, NOW, b.at)).toBe(TO_UPLINK);
    expect(hx(finish(b.buf, sa.length, b.at))).toBe(hx(tcpPacket(V, C, { sport: 6379, dport: 40000, ack: 1334, flags: SYN | ACK, data })));

    const dg = udpPacket(C, V, { sport: 40001, dport: 53, data });
    const c = partial(dg, 6);
    expect(nat.fromUplink(c.buf, OFF, dg.length, NOW, c.at)).toBe(S);
    const ug = finish(c.buf, dg.length, c.at);
    expect(allOk(ug)).toBe(true);
    expect(parse(ug).dst).toBe(LO);
    const pu = srcPort(ug);
    const back = udpPacket(LO, LO, { sport: 53, dport: pu, data });
    const d = partial(back, 6);
    expect(nat.fromSession(S, d.buf, OFF, back.length, NOW, d.at)).toBe(TO_UPLINK);
    const ub = finish(d.buf, back.length, d.at);
    expect(allOk(ub)).toBe(true);
    expect(parse(ub).src).toBe(V);
    expect(parse(ub).dst).toBe(C);
    expect(dstPort(ub)).toBe(40001);
  });

  it('TCP timestamps with a partial checksum: TSval and TSecr shifted in place, the field left as the new addresses have it', () => {
    const nat = makeNat();
    const C = addr('192.0.2.44');
    const T = 0xfffffff8;
    const syn = tcpPacket(C, V, { sport: 40000, dport: 6379, seq: 100, flags: SYN, options: synOpts(T, 0) });
    const a = partial(syn, 16);
    const before = clock();
    expect(nat.fromUplink(a.buf, OFF, syn.length, NOW, a.at)).toBe(S);
    const after = clock();
    // The field: the partial sum over the new pseudo-header (127.0.0.1 -> 127.0.0.1), nothing for the timestamps.
    expect(u16(a.buf, a.at)).toBe(onesSum([pseudoHeader(LO, LO, TCP, syn.length - 20)]));
    const ts = u32(a.buf, OFF + SYN_TSVAL);
    expect(ts).not.toBe(T);
    expectClockPlus1(ts, before, after);
    const got = finish(a.buf, syn.length, a.at);
    const p = srcPort(got);
    expect(allOk(got)).toBe(true);
    expect(hx(got)).toBe(hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 100, flags: SYN, options: synOpts(ts, 0) })));

    const sa = tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 900, ack: 101, flags: SYN | ACK, options: synOpts(0x2222, ts) });
    const b = partial(sa, 16);
    expect(nat.fromSession(S, b.buf, OFF, sa.length, NOW, b.at)).toBe(TO_UPLINK);
    expect(u16(b.buf, b.at)).toBe(onesSum([pseudoHeader(V, C, TCP, sa.length - 20)]));
    expect(u32(b.buf, OFF + SYN_TSVAL + 4)).toBe(T);
    expect(hx(finish(b.buf, sa.length, b.at))).toBe(
      hx(tcpPacket(V, C, { sport: 6379, dport: 40000, seq: 900, ack: 101, flags: SYN | ACK, options: synOpts(0x2222, T) })),
    );

    // Data 0x10 ms on, past 2^32 on the client's clock, and its answer.
    const data = new Uint8Array(101).map((_, i) => (i * 13) & 0xff);
    const d = tcpPacket(C, V, { sport: 40000, dport: 6379, seq: 101, ack: 901, flags: PSH | ACK, options: tsOpts(T + 0x10, 0x2222), data });
    const e = partial(d, 16);
    expect(nat.fromUplink(e.buf, OFF, d.length, NOW, e.at)).toBe(S);
    expect(u16(e.buf, e.at)).toBe(onesSum([pseudoHeader(LO, LO, TCP, d.length - 20)]));
    expect(hx(finish(e.buf, d.length, e.at))).toBe(
      hx(tcpPacket(LO, LO, { sport: p, dport: 6379, seq: 101, ack: 901, flags: PSH | ACK, options: tsOpts(ts + 0x10, 0x2222), data })),
    );
    const x = tcpPacket(LO, LO, { sport: 6379, dport: p, seq: 901, ack: 202, flags: ACK, options: tsOpts(0x2223, ts + 0x10) });
    const y = partial(x, 16);
    expect(nat.fromSession(S, y.buf, OFF, x.length, NOW, y.at)).toBe(TO_UPLINK);
    expect(u16(y.buf, y.at)).toBe(onesSum([pseudoHeader(V, C, TCP, x.length - 20)]));
    expect(hx(finish(y.buf, x.length, y.at))).toBe(
      hx(tcpPacket(V, C, { sport: 6379, dport: 40000, seq: 901, ack: 202, flags: ACK, options: tsOpts(0x2223, T + 0x10) })),
    );
  });
});

describe('without the loopback option', () => {
  it('127/8 from the uplink reaches no session, addLoopback does nothing, and sessions are translated as before', () => {
    const nat = new Nat({ maxSession: MAX, flowCapacity: 1024, seed: 1 });
    nat.addSession(S, INNER, VIP(S));
    nat.addLoopback(S, ID); // no-op
    expect(nat.loopback).toBeNull();
    for (const p of [
      tcpPacket(LO, V, { sport: 40000, dport: 6379, flags: SYN }),
      udpPacket(LO, V, { sport: 40000, dport: 53 }),
      echoPacket(LO, V, 8, 1, 1),
      tcpPacket(LO, LO, { sport: 40000, dport: 6379, flags: SYN }),
    ]) {
      expect(answer(nat, p).v).toBe(DROP);
    }
    expect(nat.counters.noSession).toBe(4);
    expect(nat.counters.loopbackRefused).toBe(0);
    expect(nat.flowCount).toBe(0);
    // A session's own 127.0.0.1 packets are not its inner address's: spoofed.
    expect(send(nat, S, tcpPacket(LO, LO, { sport: 6379, dport: 61000, flags: SYN | ACK })).v).toBe(DROP);
    expect(send(nat, S, tcpPacket(LO, V, { sport: 50000, dport: 80, flags: SYN })).v).toBe(DROP);
    expect(nat.counters.spoofed).toBe(2);
    // From its inner address, 127.0.0.8 is just another destination: NAT to the VIP, to the uplink.
    const out = send(nat, S, udpPacket(INNER, V, { sport: 5000, dport: 53 }));
    expect(out.v).toBe(TO_UPLINK);
    expect(hx(out.out)).toBe(hx(udpPacket(VIP(S), V, { sport: 5000, dport: 53 })));
    expect(nat.counters.loopback + nat.counters.loopbackReflected).toBe(0);
  });

  it('with the option, the same uplink packets reach the session (the control of the test above)', () => {
    const nat = makeNat();
    expect(recv(nat, tcpPacket(LO, V, { sport: 40000, dport: 6379, flags: SYN })).v).toBe(S);
    expect(recv(nat, udpPacket(LO, V, { sport: 40000, dport: 53 })).v).toBe(S);
    expect(recv(nat, echoPacket(LO, V, 8, 1, 1)).v).toBe(S);
  });
});
