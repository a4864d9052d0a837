// Unit tests for translator state in shared memory: flow tables, the port allocator and whole translators opened by several "threads" over one buffer.
import { describe, it, expect } from 'vitest';
import {
  FlowTable,
  FlowTable6,
  NO_FLOW,
  Nat,
  natMemory,
  PORTS_QUOTA,
  PORTS_TCP,
  PORTS_UDP,
  PortAllocator,
  TO_UPLINK,
  type NatOptions,
} from '../../src/nat/index.js';
import { ACK, Rng, SYN, addr, allOk, parse, tcpPacket, u16, udpPacket } from './packets.js';
import { recv, send } from './harness.js';

const SHARED = addr('198.18.0.1');
const INNER = addr('10.0.2.100');
const VIP = addr('198.19.0.3');
const REMOTE = addr('203.0.113.5');

describe('FlowTable over a SharedArrayBuffer', () => {
  it('checks the size of the memory it is given', () => {
    expect(() => new FlowTable(1024, 1, new SharedArrayBuffer(100))).toThrow(/needs/);
    expect(() => new FlowTable6(1024, 1, new SharedArrayBuffer(FlowTable.bytesFor(1024)))).toThrow(RangeError);
  });

  it('two tables on one buffer are one table: inserts, lookups, removal and expiry seen from either', () => {
    const mem = new SharedArrayBuffer(FlowTable.bytesFor(256));
    const a = new FlowTable(256, 42, mem);
    const b = new FlowTable(256, 42, mem); // attaches: does not wipe what a set up
    const f = a.insert(3, 6, INNER, 4000, VIP, 4000, REMOTE, 80, 1, 100);
    expect(f).not.toBe(NO_FLOW);
    expect(b.count).toBe(1);
    expect(b.lookupInner(3, 6, INNER, 4000, REMOTE, 80)).toBe(f);
    expect(b.lookupOuter(6, VIP, 4000, REMOTE, 80)).toBe(f);
    const g = b.insert(3, 17, INNER, 53, VIP, 53, REMOTE, 53, 1, 5);
    expect(a.lookupOuter(17, VIP, 53, REMOTE, 53)).toBe(g);
    expect(g).not.toBe(f); // one free list
    expect(a.expire(50)).toBe(1); // g's deadline passed
    expect(b.lookupInner(3, 17, INNER, 53, REMOTE, 53)).toBe(NO_FLOW);
    b.remove(f);
    expect(a.count).toBe(0);
    expect(a.lookupOuter(6, VIP, 4000, REMOTE, 80)).toBe(NO_FLOW);
  });

  it('many flows inserted and removed through two handles in turn match a model', () => {
    const cap = 2048;
    const mem = new SharedArrayBuffer(FlowTable.bytesFor(cap));
    const t = [new FlowTable(cap, 9, mem), new FlowTable(cap, 9, mem)];
    const rng = new Rng(5);
    const live = new Map<string, number>();
    for (let i = 0; i < 20_000; i++) {
      const h = t[i & 1]!;
      const port = 1 + rng.int(3000);
      const key = `${port}`;
      const f = h.lookupInner(1, 6, INNER, port, REMOTE, 443);
      expect(f === NO_FLOW, `step ${i}`).toBe(!live.has(key));
      if (f === NO_FLOW) {
        if (live.size < cap) live.set(key, h.insert(1, 6, INNER, port, VIP, port, REMOTE, 443, 1, 0));
      } else {
        expect(h.lookupOuter(6, VIP, port, REMOTE, 443)).toBe(f);
        h.remove(f);
        live.delete(key);
      }
    }
    expect(t[0]!.count).toBe(live.size);
    for (const [key, f] of live) expect(t[1]!.lookupOuter(6, VIP, Number(key), REMOTE, 443)).toBe(f);
  });
});

describe('PortAllocator over a SharedArrayBuffer', () => {
  it('checks the size of the memory it is given', () => {
    expect(() => new PortAllocator(100, 200, new SharedArrayBuffer(64))).toThrow(/needs/);
    expect(() => new PortAllocator(100, 200, new SharedArrayBuffer(PortAllocator.bytesFor(8)), 7)).toThrow(/needs/);
  });

  it('two allocators on one buffer keep one endpoint-independent mapping and one count', () => {
    const mem = new SharedArrayBuffer(PortAllocator.bytesFor(4));
    const a = new PortAllocator(61000, 61009, mem, 4, 8);
    const b = new PortAllocator(61000, 61009, mem, 4, 8);
    const p = a.acquire(PORTS_UDP, 1, 5000);
    expect(b.acquire(PORTS_UDP, 1, 5000)).toBe(p); // same mapping, second reference
    expect(b.acquire(PORTS_UDP, 2, 5000)).not.toBe(p);
    expect(a.used).toEqual([0, 2, 0]);
    a.release(PORTS_UDP, p);
    expect(b.sessionOf(PORTS_UDP, p)).toBe(1);
    b.release(PORTS_UDP, p);
    expect(a.sessionOf(PORTS_UDP, p)).toBe(0);
    expect(b.used).toEqual([0, 1, 0]);
    // The quota counts are shared too.
    expect([a.heldBy(PORTS_UDP, 1), b.heldBy(PORTS_UDP, 2)]).toEqual([0, 1]);
    for (let p = 1; p <= 7; p++) a.acquire(PORTS_UDP, 2, 6000 + p);
    expect(b.acquire(PORTS_UDP, 2, 7000)).toBe(PORTS_QUOTA);
  });

  it('exhausting every port of a slot and giving them back keeps the mapping index right', () => {
    const a = new PortAllocator(1, 65535);
    const ports: number[] = [];
    for (let s = 1; s <= 65535; s++) ports.push(a.acquire(PORTS_TCP, s, 80));
    expect(new Set(ports).size).toBe(65535);
    expect(a.acquire(PORTS_TCP, 65536, 80)).toBe(-1);
    // Every mapping is still found (one more reference each), then all go.
    for (let s = 1; s <= 65535; s += 97) expect(a.acquire(PORTS_TCP, s, 80)).toBe(ports[s - 1]);
    for (let s = 1; s <= 65535; s += 97) a.release(PORTS_TCP, ports[s - 1]!);
    for (const p of ports) a.release(PORTS_TCP, p);
    expect(a.used).toEqual([0, 0, 0]);
    expect(a.acquire(PORTS_TCP, 7, 80)).toBe(80); // preserved again
  });
});

describe('translators sharing natMemory (the dataplane workers)', () => {
  const opts: NatOptions = { maxSession: 8, flowCapacity: 1024, shared: { address: SHARED, portLo: 61000, portHi: 65534 } };

  /** Two translators as two workers would have them: one state, each with every session. */
  function pair(): [Nat, Nat] {
    const memory = natMemory(opts);
    const nats: [Nat, Nat] = [new Nat({ ...opts, memory }), new Nat({ ...opts, memory })];
    for (const n of nats) {
      n.addSharedSession(1, INNER);
      n.addSharedSession(2, INNER);
      n.addSession(3, INNER, VIP);
    }
    return nats;
  }

  it('a flow one opens, the other translates back (NAT mode and the shared address)', () => {
    const [a, b] = pair();
    const out = send(a, 3, tcpPacket(INNER, REMOTE, { sport: 4000, dport: 80, flags: SYN }));
    expect(out.v).toBe(TO_UPLINK);
    const back = recv(b, tcpPacket(REMOTE, VIP, { sport: 80, dport: 4000, flags: SYN | ACK }));
    expect(back.v).toBe(3);
    expect(parse(back.out).dst).toBe(INNER);
    expect(allOk(back.out)).toBe(true);
    // Two shared sessions with the same inner port get different outer ports, whichever translator they go through.
    const s1 = send(a, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
    const s2 = send(b, 2, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
    const p1 = u16(s1.out, parse(s1.out).l4);
    const p2 = u16(s2.out, parse(s2.out).l4);
    expect(p1).not.toBe(p2);
    expect(recv(b, udpPacket(REMOTE, SHARED, { sport: 53, dport: p1 })).v).toBe(1);
    expect(recv(a, udpPacket(REMOTE, SHARED, { sport: 53, dport: p2 })).v).toBe(2);
    expect(a.flowCount).toBe(3);
    expect(b.flowCount).toBe(3);
    expect(b.sharedPortsInUse()).toEqual([0, 2, 0]);
  });

  it('a session removed from both, then its flows dropped by one, leaves nothing in either and frees its ports', () => {
    const [a, b] = pair();
    send(a, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
    send(b, 1, tcpPacket(INNER, REMOTE, { sport: 5001, dport: 80, flags: SYN }));
    send(b, 3, tcpPacket(INNER, REMOTE, { sport: 4000, dport: 80, flags: SYN }));
    expect(a.sharedPortsInUse()).toEqual([1, 1, 0]);
    a.removeSession(1, false);
    b.removeSession(1, false);
    expect(b.flowCount).toBe(3); // kept until dropFlows
    // Forgotten by both: nothing of session 1 is translated, nor made again.
    expect(send(b, 1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 })).v).toBeLessThan(0);
    expect(b.flowCount).toBe(3);
    a.dropFlows(1);
    expect(b.flowCount).toBe(1);
    expect(b.sharedPortsInUse()).toEqual([0, 0, 0]);
    // Expiry by either releases ports too (the flow says it is the shared address's).
    send(b, 2, udpPacket(INNER, REMOTE, { sport: 7000, dport: 53 }));
    expect(a.sharedPortsInUse()).toEqual([0, 1, 0]);
    a.expire(1_000_000);
    expect(b.sharedPortsInUse()).toEqual([0, 0, 0]);
    expect(b.flowCount).toBe(0);
  });
});
