// The translator's fast path against its general path: the same packets through two translators, one with
// the fast path turned off, must give the same verdicts, bytes, counters and flow table.
import { describe, it, expect } from 'vitest';
import { Nat } from '../../src/nat/index.js';
import { ACK, FIN, ICMP, PSH, RST, Rng, SYN, TCP, UDP, addr, echoPacket, tcpPacket, toHex, udpPacket } from './packets.js';

const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const SHARED = addr('198.18.0.1');
const REMOTES = [addr('203.0.113.5'), addr('203.0.113.6')];
/** Destinations that make a packet hairpin (another session's VIP, the shared address). */
const HAIRPINS = [VIP(2), VIP(4), SHARED];

/** Session 1 and 2: NAT mode; 3: shared (no VIP); 4: address mode. */
function makeNat(fastPath: boolean): Nat {
  const nat = new Nat({ maxSession: 8, flowCapacity: 4096, seed: 7, shared: { address: SHARED, portLo: 20000, portHi: 20063 }, fastPath });
  nat.addSession(1, INNER, VIP(1));
  nat.addSession(2, INNER, VIP(2));
  nat.addSharedSession(3, INNER);
  nat.addSession(4, VIP(4), VIP(4));
  return nat;
}

const innerOf = (id: number): number => (id === 4 ? VIP(4) : INNER);
const outerOf = (id: number): number => (id === 3 ? SHARED : VIP(id));

/** A random packet, mostly well formed and within a few flows, so that most hit a flow that exists. */
function randomPacket(rng: Rng): { out: boolean; id: number; pkt: Uint8Array; partial: boolean } {
  const id = rng.pick([1, 1, 2, 3, 4, 4]);
  const out = rng.int(2) === 0;
  const remote = rng.int(8) === 0 ? rng.pick(HAIRPINS) : rng.pick(REMOTES);
  const local = innerOf(id);
  const lport = 40000 + rng.int(3);
  const rport = rng.pick([80, 443]);
  const kind = rng.int(10);
  const ip = { ident: rng.int(65536), mf: rng.int(30) === 0, fragOffset: rng.int(30) === 0 ? 8 * (1 + rng.int(20)) : 0 };
  const src = out ? local : remote;
  // From the uplink, shared sessions' flows are reached at their outer port, which the test cannot know: aim at the pool's first ports.
  const dst = out ? remote : rng.int(10) === 0 ? SHARED : outerOf(id);
  const sport = out ? lport : rport;
  const dport = out ? rport : dst === SHARED ? 20000 + rng.int(4) : lport;
  let pkt: Uint8Array;
  if (kind < 5) {
    const flags = rng.pick([SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, 0]);
    const data = new Uint8Array(rng.int(40)).map(() => rng.int(256));
    pkt = tcpPacket(src, dst, { sport, dport, flags, data, seq: rng.u32(), ack: rng.u32() }, ip);
  } else if (kind < 9) {
    const data = new Uint8Array(rng.int(40)).map(() => rng.int(256));
    pkt = udpPacket(src, dst, { sport, dport, data, checksum: rng.int(5) !== 0 }, ip);
  } else {
    pkt = echoPacket(src, dst, out ? 8 : 0, lport, rng.int(100));
  }
  if (rng.int(12) === 0) {
    // Damage a byte of the headers: lengths, protocol, header length, ports.
    const at = rng.pick([0, 2, 3, 6, 9, 20, 22, 24, 25, 32]);
    if (at < pkt.length) pkt[at] = rng.int(256);
  }
  if (rng.int(20) === 0) pkt = pkt.subarray(0, rng.int(pkt.length + 1));
  return { out, id, pkt, partial: rng.int(4) === 0 };
}

function flowTable(nat: Nat): string[] {
  const t = nat.flows;
  const rows: string[] = [];
  for (let f = 0; f < t.capacity; f++) {
    if (t.stateOf(f) === 0) continue;
    rows.push(
      [
        f,
        t.sessionOf(f),
        t.protoOf(f),
        t.stateOf(f),
        t.deadlineOf(f),
        t.innerAddrOf(f),
        t.innerPortOf(f),
        t.outerAddrOf(f),
        t.outerPortOf(f),
        t.remoteAddrOf(f),
        t.remotePortOf(f),
      ].join(' '),
    );
  }
  return rows;
}

describe('fast path', () => {
  it('gives what the general path gives: 20000 random packets, verdicts, bytes, counters and flows', () => {
    const fast = makeNat(true);
    const slow = makeNat(false);
    const rng = new Rng(99);
    const problems: string[] = [];
    const N = 20000;
    let delivered = 0;
    for (let i = 0; i < N && problems.length < 5; i++) {
      const { out, id, pkt, partial } = randomPacket(rng);
      const now = 1000 + (i >> 4);
      // A packet sits at an offset in a larger buffer, as in the dataplane.
      const a = new Uint8Array(pkt.length + 12);
      a.set(pkt, 10);
      const b = a.slice();
      // A partial checksum (TUN offload): the device finishes the transport checksum at this offset.
      const proto = pkt.length > 9 ? pkt[9] : 0;
      const csumAt = partial && (proto === TCP || proto === UDP) ? 10 + 20 + (proto === TCP ? 16 : 6) : -1;
      const va = out ? fast.fromSession(id, a, 10, pkt.length, now, csumAt) : fast.fromUplink(a, 10, pkt.length, now, csumAt);
      const vb = out ? slow.fromSession(id, b, 10, pkt.length, now, csumAt) : slow.fromUplink(b, 10, pkt.length, now, csumAt);
      if (va >= 0) delivered++;
      if (va !== vb || toHex(a) !== toHex(b))
        problems.push(`packet ${i} (${out ? `from session ${id}` : 'from uplink'}): verdict ${va} vs ${vb}\n${toHex(a)}\n${toHex(b)}`);
      if (i % 997 === 0) {
        fast.expire(now, 64);
        slow.expire(now, 64);
      }
    }
    expect(problems).toEqual([]);
    expect({ ...fast.counters }).toEqual({ ...slow.counters });
    expect(flowTable(fast)).toEqual(flowTable(slow));
    expect(fast.sharedPortsInUse()).toEqual(slow.sharedPortsInUse());
    // The comparison means something: most packets took the fast path, and many of each kind were delivered.
    expect(slow.fastPathPackets).toBe(0);
    expect(fast.fastPathPackets).toBeGreaterThan(N * 0.4);
    expect(N - fast.fastPathPackets).toBeGreaterThan(N * 0.2);
    expect(delivered).toBeGreaterThan(N / 2);
    expect(fast.counters.hairpin).toBeGreaterThan(100);
    expect(fast.counters.reflected).toBeGreaterThan(100);
    expect(fast.counters.malformed).toBeGreaterThan(100);
    expect(fast.counters.fragments).toBeGreaterThan(100);
    expect(fast.counters.flowsCreated).toBeGreaterThan(50);
  });

  it('ICMP echo and IPv6 take the general path and still translate', () => {
    const fast = makeNat(true);
    const p = echoPacket(INNER, REMOTES[0]!, 8, 7, 1);
    expect(fast.fromSession(1, p, 0, p.length, 1)).toBe(0);
    expect(p[9]).toBe(ICMP);
    expect(fast.flows.count).toBe(1);
  });
});
