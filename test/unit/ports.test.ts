// Unit tests for the shared address's port allocator alone: endpoint-independent reuse, refcounts, preservation, scanning, exhaustion, quotas.
import { describe, it, expect } from 'vitest';
import {
  DEFAULT_SHARED_PORT_QUOTA,
  PORTS_EXHAUSTED,
  PORTS_ICMP,
  PORTS_QUOTA,
  PORTS_TCP,
  PORTS_UDP,
  PortAllocator,
  portSlot,
} from '../../src/nat/index.js';
import { Rng } from './packets.js';

const SLOTS = [PORTS_TCP, PORTS_UDP, PORTS_ICMP];

describe('PortAllocator', () => {
  it('checks its range', () => {
    expect(() => new PortAllocator(0, 10)).toThrow(/shared port range 0-10: must be within 1-65535/);
    expect(() => new PortAllocator(1, 65536)).toThrow(RangeError);
    expect(() => new PortAllocator(200, 100)).toThrow(RangeError);
    expect(() => new PortAllocator(1.5, 100)).toThrow(RangeError);
    expect(() => new PortAllocator(Number.NaN, 100)).toThrow(RangeError);
    expect(new PortAllocator(1, 65535).size).toBe(65535);
    expect(new PortAllocator(7, 7).size).toBe(1);
    expect(new PortAllocator(61000, 65534).size).toBe(4535);
  });

  it('portSlot: TCP, UDP and ICMP have slots of their own; other protocols none', () => {
    expect(portSlot(6)).toBe(PORTS_TCP);
    expect(portSlot(17)).toBe(PORTS_UDP);
    expect(portSlot(1)).toBe(PORTS_ICMP);
    expect(new Set([PORTS_TCP, PORTS_UDP, PORTS_ICMP]).size).toBe(3);
    for (const p of [0, 2, 4, 41, 47, 50, 58, 132, 255]) expect(portSlot(p)).toBe(-1);
  });

  it('endpoint-independent: the same (session, slot, inner port) gets the same outer port, one more reference each time', () => {
    const a = new PortAllocator(61000, 61099);
    const p = a.acquire(PORTS_UDP, 1, 5000);
    expect(p).toBeGreaterThanOrEqual(61000);
    expect(p).toBeLessThanOrEqual(61099);
    expect(a.acquire(PORTS_UDP, 1, 5000)).toBe(p);
    expect(a.acquire(PORTS_UDP, 1, 5000)).toBe(p);
    expect(a.used).toEqual([0, 1, 0]);
    expect(a.sessionOf(PORTS_UDP, p)).toBe(1);
    // Three references: free only after the third release.
    a.release(PORTS_UDP, p);
    a.release(PORTS_UDP, p);
    expect(a.used).toEqual([0, 1, 0]);
    expect(a.sessionOf(PORTS_UDP, p)).toBe(1);
    expect(a.acquire(PORTS_UDP, 1, 5000)).toBe(p); // back to two
    a.release(PORTS_UDP, p);
    a.release(PORTS_UDP, p);
    expect(a.used).toEqual([0, 0, 0]);
    expect(a.sessionOf(PORTS_UDP, p)).toBe(0);
  });

  it('release of a port nobody holds (or already freed) changes nothing', () => {
    const a = new PortAllocator(100, 109);
    a.release(PORTS_TCP, 100);
    a.release(PORTS_TCP, 5);
    a.release(PORTS_TCP, 65535);
    expect(a.used).toEqual([0, 0, 0]);
    const p = a.acquire(PORTS_TCP, 3, 1);
    a.release(PORTS_TCP, p);
    a.release(PORTS_TCP, p); // double release: no underflow
    expect(a.used).toEqual([0, 0, 0]);
    // The port is really free: a new mapping can get it, with a fresh count of one.
    const q = a.acquire(PORTS_TCP, 4, p);
    expect(q).toBe(p); // in range and free: preserved
    a.release(PORTS_TCP, q);
    expect(a.used).toEqual([0, 0, 0]);
  });

  it('after the last release the mapping is gone: the same key may get a different port', () => {
    const a = new PortAllocator(100, 109);
    const p = a.acquire(PORTS_UDP, 1, 7);
    expect(p).toBe(100);
    a.release(PORTS_UDP, p);
    // The cursor moved on; the next mapping of the same key starts a fresh scan.
    expect(a.acquire(PORTS_UDP, 1, 7)).toBe(101);
    expect(a.used[PORTS_UDP]).toBe(1);
  });

  it('no collisions across sessions: the same inner port in different sessions gets different outer ports', () => {
    const a = new PortAllocator(2000, 2009);
    const seen = new Set<number>();
    for (let s = 1; s <= 10; s++) {
      const p = a.acquire(PORTS_TCP, s, 40000);
      expect(seen.has(p)).toBe(false);
      seen.add(p);
      expect(a.sessionOf(PORTS_TCP, p)).toBe(s);
    }
    expect(a.used[PORTS_TCP]).toBe(10);
    // Session ids far apart still never alias (the key is session * 3 + slot, times 65536, plus the port).
    const b = new PortAllocator(2000, 2009);
    const big = [1, 2, 65535, 65536, 1_000_000, 2 ** 31];
    const ports = big.map((s) => b.acquire(PORTS_ICMP, s, 0));
    expect(new Set(ports).size).toBe(big.length);
    big.forEach((s, i) => expect(b.sessionOf(PORTS_ICMP, ports[i]!)).toBe(s));
  });

  it('protocol slots are separate spaces: each may hand out the same number to a different owner', () => {
    const a = new PortAllocator(3000, 3000); // one port per slot
    expect(a.acquire(PORTS_TCP, 1, 80)).toBe(3000);
    expect(a.acquire(PORTS_UDP, 2, 80)).toBe(3000);
    expect(a.acquire(PORTS_ICMP, 3, 80)).toBe(3000);
    expect(a.used).toEqual([1, 1, 1]);
    expect(a.sessionOf(PORTS_TCP, 3000)).toBe(1);
    expect(a.sessionOf(PORTS_UDP, 3000)).toBe(2);
    expect(a.sessionOf(PORTS_ICMP, 3000)).toBe(3);
    // Each slot is full on its own; freeing UDP frees only UDP.
    expect(a.acquire(PORTS_TCP, 4, 80)).toBe(-1);
    a.release(PORTS_UDP, 3000);
    expect(a.used).toEqual([1, 0, 1]);
    expect(a.acquire(PORTS_TCP, 4, 80)).toBe(-1);
    expect(a.acquire(PORTS_UDP, 4, 80)).toBe(3000);
    expect(a.sessionOf(PORTS_TCP, 3000)).toBe(1);
    // The same session and inner port in two slots are two mappings.
    const b = new PortAllocator(100, 199);
    const t = b.acquire(PORTS_TCP, 1, 150);
    const u = b.acquire(PORTS_UDP, 1, 150);
    expect([t, u]).toEqual([150, 150]);
    b.release(PORTS_TCP, t);
    expect(b.used).toEqual([0, 1, 0]);
    expect(b.sessionOf(PORTS_UDP, 150)).toBe(1);
  });

  it('preserves the inner port when it is in range and free; otherwise scans from the cursor', () => {
    const a = new PortAllocator(61000, 61009);
    expect(a.acquire(PORTS_UDP, 1, 61005)).toBe(61005); // preserved
    expect(a.acquire(PORTS_UDP, 2, 61005)).not.toBe(61005); // taken by session 1
    expect(a.acquire(PORTS_UDP, 1, 61000)).toBe(61000); // preserved, even behind the cursor
    expect(a.acquire(PORTS_UDP, 1, 61009)).toBe(61009); // the top of the range
    expect(a.acquire(PORTS_UDP, 3, 60999)).not.toBe(60999); // just below the range
    const out = a.acquire(PORTS_UDP, 3, 65535); // far above
    expect(out).toBeGreaterThanOrEqual(61000);
    expect(out).toBeLessThanOrEqual(61009);
    expect(a.used[PORTS_UDP]).toBe(6);
    // Out-of-range inner ports on a fresh allocator come from the low end up.
    const b = new PortAllocator(500, 509);
    expect([1, 2, 3].map((p) => b.acquire(PORTS_TCP, 9, p))).toEqual([500, 501, 502]);
  });

  it('scans on from the last port handed out and wraps around at the top', () => {
    const a = new PortAllocator(100, 104);
    expect([1, 2, 3].map((p) => a.acquire(PORTS_TCP, 1, p))).toEqual([100, 101, 102]);
    a.release(PORTS_TCP, 100);
    // 100 is free again, but the cursor is at 103: no quick reuse of a just-freed port.
    expect(a.acquire(PORTS_TCP, 1, 4)).toBe(103);
    expect(a.acquire(PORTS_TCP, 1, 5)).toBe(104);
    // Past the top: wraps to the low end and skips what is taken.
    expect(a.acquire(PORTS_TCP, 1, 6)).toBe(100);
    a.release(PORTS_TCP, 102);
    expect(a.acquire(PORTS_TCP, 1, 7)).toBe(102); // cursor at 101 (taken), 102 free
    expect(a.used[PORTS_TCP]).toBe(5);
  });

  it('exhaustion returns -1 and takes nothing; existing mappings still get references', () => {
    const a = new PortAllocator(100, 102);
    const ports = [a.acquire(PORTS_UDP, 1, 1), a.acquire(PORTS_UDP, 1, 2), a.acquire(PORTS_UDP, 2, 1)];
    expect(new Set(ports).size).toBe(3);
    expect(a.acquire(PORTS_UDP, 2, 2)).toBe(-1);
    expect(a.acquire(PORTS_UDP, 3, 101)).toBe(-1); // even an in-range inner port
    expect(a.used[PORTS_UDP]).toBe(3);
    expect(a.acquire(PORTS_UDP, 1, 2)).toBe(ports[1]); // EIM reuse needs no new port
    // The extra reference keeps the port after one release.
    a.release(PORTS_UDP, ports[1]!);
    expect(a.acquire(PORTS_UDP, 2, 2)).toBe(-1);
    a.release(PORTS_UDP, ports[1]!);
    expect(a.acquire(PORTS_UDP, 2, 2)).toBe(ports[1]);
    expect(a.sessionOf(PORTS_UDP, ports[1]!)).toBe(2);
    // Other slots are not affected by UDP being full.
    expect(a.acquire(PORTS_TCP, 2, 2)).toBe(100);
  });

  it('a range of one port and the full 1-65535 range', () => {
    const one = new PortAllocator(65535, 65535);
    expect(one.acquire(PORTS_ICMP, 1, 0)).toBe(65535);
    expect(one.acquire(PORTS_ICMP, 2, 0)).toBe(-1);
    one.release(PORTS_ICMP, 65535);
    expect(one.acquire(PORTS_ICMP, 2, 0)).toBe(65535);
    const all = new PortAllocator(1, 65535);
    expect(all.acquire(PORTS_TCP, 1, 0)).toBe(1); // port 0 is never handed out
    expect(all.acquire(PORTS_TCP, 1, 65535)).toBe(65535);
    expect(all.acquire(PORTS_TCP, 2, 65535)).toBe(2);
  });

  it('sessionOf is 0 for free ports and ports outside the range', () => {
    const a = new PortAllocator(100, 110);
    expect(a.sessionOf(PORTS_TCP, 100)).toBe(0);
    expect(a.sessionOf(PORTS_TCP, 0)).toBe(0);
    expect(a.sessionOf(PORTS_TCP, 65535)).toBe(0);
    const p = a.acquire(PORTS_TCP, 77, 0);
    expect(a.sessionOf(PORTS_TCP, p)).toBe(77);
    expect(a.sessionOf(PORTS_UDP, p)).toBe(0);
    expect(a.sessionOf(PORTS_ICMP, p)).toBe(0);
  });

  it('seeded random acquire/release against a model: EIM, refcounts, no collisions, preservation, exhaustion', () => {
    const rng = new Rng(0x9047);
    const LO = 40000;
    const HI = 40031;
    const a = new PortAllocator(LO, HI);
    // Model: per slot, mapping key -> { port, refs }, and port -> key.
    const maps = SLOTS.map(() => new Map<string, { port: number; refs: number }>());
    const owners = SLOTS.map(() => new Map<number, string>());
    const problems: string[] = [];
    let exhausted = 0;
    for (let i = 0; i < 20000 && problems.length === 0; i++) {
      const slot = rng.pick(SLOTS);
      const m = maps[slot]!;
      const o = owners[slot]!;
      if (rng.int(100) < 55) {
        const session = 1 + rng.int(6);
        // Some inner ports inside the range, to exercise preservation.
        const inner = rng.bool() ? LO + rng.int(HI - LO + 1) : 1000 + rng.int(12);
        const key = `${session}/${inner}`;
        const have = m.get(key);
        const p = a.acquire(slot, session, inner);
        if (have) {
          if (p !== have.port) problems.push(`${i}: ${key} got ${p}, mapped to ${have.port}`);
          have.refs++;
        } else if (o.size === HI - LO + 1) {
          exhausted++;
          if (p !== -1) problems.push(`${i}: ${key} got ${p} with every port taken`);
        } else {
          if (!(p >= LO && p <= HI)) problems.push(`${i}: ${key} got ${p}, outside the range`);
          if (o.has(p)) problems.push(`${i}: ${key} got ${p}, already held by ${o.get(p)}`);
          if (inner >= LO && inner <= HI && !o.has(inner) && p !== inner) problems.push(`${i}: ${key} not preserved: got ${p}`);
          m.set(key, { port: p, refs: 1 });
          o.set(p, key);
        }
      } else if (m.size > 0) {
        // Release one reference of a random live mapping.
        const keys = [...m.keys()];
        const key = rng.pick(keys);
        const e = m.get(key)!;
        a.release(slot, e.port);
        if (--e.refs === 0) {
          m.delete(key);
          o.delete(e.port);
        }
      }
      for (const s of SLOTS)
        if (a.used[s] !== owners[s]!.size) problems.push(`${i}: slot ${s} used ${a.used[s]}, model ${owners[s]!.size}`);
      if (i % 97 === 0) {
        for (const s of SLOTS) {
          for (let p = LO; p <= HI; p++) {
            const key = owners[s]!.get(p);
            const want = key === undefined ? 0 : Number(key.split('/')[0]);
            if (a.sessionOf(s, p) !== want) problems.push(`${i}: sessionOf(${s}, ${p}) = ${a.sessionOf(s, p)}, model ${want}`);
          }
        }
      }
    }
    expect(problems.slice(0, 10)).toEqual([]);
    expect(exhausted).toBeGreaterThan(50); // the range really filled up now and then
  });
});

describe('PortAllocator quota per session (RFC 6888 REQ-4)', () => {
  it('a session holds at most `quota` outer ports per protocol; existing mappings still get references; release frees a place', () => {
    const a = new PortAllocator(100, 119, undefined, 4, 3);
    const mine = [1, 2, 3].map((p) => a.acquire(PORTS_UDP, 1, p));
    expect(mine.every((p) => p >= 100)).toBe(true);
    expect(a.acquire(PORTS_UDP, 1, 4)).toBe(PORTS_QUOTA);
    expect(a.acquire(PORTS_UDP, 1, 2)).toBe(mine[1]); // the same mapping: no new port
    expect(a.heldBy(PORTS_UDP, 1)).toBe(3);
    // Other protocols and other sessions have quotas of their own.
    expect(a.acquire(PORTS_TCP, 1, 4)).toBeGreaterThanOrEqual(100);
    expect([1, 2, 3].map((p) => a.acquire(PORTS_UDP, 2, p)).every((p) => p >= 100)).toBe(true);
    expect(a.used).toEqual([1, 6, 0]);
    a.release(PORTS_UDP, mine[0]!);
    expect(a.heldBy(PORTS_UDP, 1)).toBe(2);
    expect(a.acquire(PORTS_UDP, 1, 4)).toBeGreaterThanOrEqual(100);
    // Two references: the port (and the quota place) go with the last.
    a.release(PORTS_UDP, mine[1]!);
    expect(a.heldBy(PORTS_UDP, 1)).toBe(3);
    a.release(PORTS_UDP, mine[1]!);
    expect(a.heldBy(PORTS_UDP, 1)).toBe(2);
    // A session id past maxSession has no quota place at all.
    expect(a.acquire(PORTS_UDP, 5, 1)).toBe(PORTS_QUOTA);
    // Exhaustion of the range is told apart from the quota.
    const b = new PortAllocator(100, 101, undefined, 4, 3);
    expect([b.acquire(PORTS_TCP, 1, 1), b.acquire(PORTS_TCP, 2, 1), b.acquire(PORTS_TCP, 3, 1)]).toEqual([100, 101, PORTS_EXHAUSTED]);
  });

  it('the buffer grows with the sessions; DEFAULT_SHARED_PORT_QUOTA', () => {
    expect(PortAllocator.bytesFor(100) - PortAllocator.bytesFor(99)).toBe(12);
    expect(() => new PortAllocator(100, 200, new SharedArrayBuffer(PortAllocator.bytesFor(8)), 9)).toThrow(/needs/);
    expect(() => new PortAllocator(100, 200, undefined, 8, 0)).toThrow(/quota 0/);
    expect(DEFAULT_SHARED_PORT_QUOTA).toBe(512);
    const a = new PortAllocator(61000, 65534, undefined, 2, DEFAULT_SHARED_PORT_QUOTA);
    let n = 0;
    while (a.acquire(PORTS_TCP, 1, 1000 + n) >= 0) n++;
    expect(n).toBe(512);
    expect(a.acquire(PORTS_TCP, 2, 1000)).toBeGreaterThanOrEqual(61000);
  });
});
