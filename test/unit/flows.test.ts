// Unit tests for the flow table: both-side lookups, full table, backward-shift deletion under churn, expiry, eviction lists.
import { describe, it, expect } from 'vitest';
import { FlowTable, FlowTable6, NO_FLOW, ROOM_EVICTED, ROOM_FREE, ROOM_SESSION_LIMIT, ROOM_TABLE_FULL } from '../../src/nat/index.js';
import { Rng } from './packets.js';

interface Key {
  session: number;
  proto: number;
  innerAddr: number;
  innerPort: number;
  outerAddr: number;
  outerPort: number;
  remoteAddr: number;
  remotePort: number;
}

const innerKey = (k: Key): string => `${k.session}/${k.proto}/${k.innerAddr}:${k.innerPort}/${k.remoteAddr}:${k.remotePort}`;
const outerKey = (k: Key): string => `${k.proto}/${k.outerAddr}:${k.outerPort}/${k.remoteAddr}:${k.remotePort}`;

function insert(t: FlowTable, k: Key, state = 1, deadline = 100): number {
  return t.insert(k.session, k.proto, k.innerAddr, k.innerPort, k.outerAddr, k.outerPort, k.remoteAddr, k.remotePort, state, deadline);
}
function findInner(t: FlowTable, k: Key): number {
  return t.lookupInner(k.session, k.proto, k.innerAddr, k.innerPort, k.remoteAddr, k.remotePort);
}
function findOuter(t: FlowTable, k: Key): number {
  return t.lookupOuter(k.proto, k.outerAddr, k.outerPort, k.remoteAddr, k.remotePort);
}

/** A key from a small domain, so that both sides of many flows crowd into the same probe runs. */
function randomKey(rng: Rng, narrow: boolean): Key {
  const n = narrow ? 4 : 1 << 16;
  return {
    session: 1 + rng.int(narrow ? 3 : 255),
    proto: rng.pick([1, 6, 17]),
    innerAddr: narrow ? 0x0a000264 : rng.u32(),
    innerPort: rng.int(n),
    outerAddr: 0xc6130000 + rng.int(narrow ? 3 : 256),
    outerPort: rng.int(n),
    remoteAddr: 0xcb007100 + rng.int(narrow ? 4 : 256),
    remotePort: rng.int(n),
  };
}

const K1: Key = {
  session: 1,
  proto: 6,
  innerAddr: 0x0a000264,
  innerPort: 40000,
  outerAddr: 0xc6130001,
  outerPort: 40000,
  remoteAddr: 0xcb007105,
  remotePort: 443,
};

describe('FlowTable basics', () => {
  it('rejects impossible capacities', () => {
    expect(() => new FlowTable(0)).toThrow(RangeError);
    expect(() => new FlowTable(1.5)).toThrow(/capacity 1.5/);
    expect(() => new FlowTable((1 << 24) + 1)).toThrow(RangeError);
    expect(() => new FlowTable(1)).not.toThrow();
  });

  it('inserts and finds a flow from both sides; stores every field', () => {
    const t = new FlowTable(16, 1);
    expect(t.count).toBe(0);
    const f = insert(t, K1, 3, 12345);
    expect(f).toBe(0); // low numbers first
    expect(t.count).toBe(1);
    expect(findInner(t, K1)).toBe(f);
    expect(findOuter(t, K1)).toBe(f);
    expect(t.sessionOf(f)).toBe(1);
    expect(t.protoOf(f)).toBe(6);
    expect(t.innerAddrOf(f)).toBe(0x0a000264);
    expect(t.innerPortOf(f)).toBe(40000);
    expect(t.outerAddrOf(f)).toBe(0xc6130001);
    expect(t.outerPortOf(f)).toBe(40000);
    expect(t.remoteAddrOf(f)).toBe(0xcb007105);
    expect(t.remotePortOf(f)).toBe(443);
    expect(t.stateOf(f)).toBe(3);
    expect(t.deadlineOf(f)).toBe(12345);
    expect(insert(t, { ...K1, innerPort: 40001, outerPort: 40001 })).toBe(1);
    expect(t.bytesPerFlow()).toBeGreaterThan(30);
  });

  it('returns NO_FLOW for absent keys, differing in any one field', () => {
    const t = new FlowTable(16, 2);
    insert(t, K1);
    expect(findInner(t, { ...K1, session: 2 })).toBe(NO_FLOW);
    expect(findInner(t, { ...K1, proto: 17 })).toBe(NO_FLOW);
    expect(findInner(t, { ...K1, innerAddr: K1.innerAddr + 1 })).toBe(NO_FLOW);
    expect(findInner(t, { ...K1, innerPort: 40001 })).toBe(NO_FLOW);
    expect(findInner(t, { ...K1, remoteAddr: K1.remoteAddr + 1 })).toBe(NO_FLOW);
    expect(findInner(t, { ...K1, remotePort: 444 })).toBe(NO_FLOW);
    expect(findOuter(t, { ...K1, proto: 17 })).toBe(NO_FLOW);
    expect(findOuter(t, { ...K1, outerAddr: K1.outerAddr + 1 })).toBe(NO_FLOW);
    expect(findOuter(t, { ...K1, outerPort: 1 })).toBe(NO_FLOW);
    expect(findOuter(t, { ...K1, remoteAddr: 0 })).toBe(NO_FLOW);
    expect(findOuter(t, { ...K1, remotePort: 0 })).toBe(NO_FLOW);
    // The sides are told apart: an outer lookup with inner fields misses, and vice versa.
    expect(t.lookupOuter(K1.proto, K1.innerAddr, K1.innerPort, K1.remoteAddr, K1.remotePort)).toBe(NO_FLOW);
    expect(t.lookupInner(K1.session, K1.proto, K1.outerAddr, K1.outerPort, K1.remoteAddr, K1.remotePort)).toBe(NO_FLOW);
    // Reversed direction is a different flow.
    expect(t.lookupOuter(K1.proto, K1.remoteAddr, K1.remotePort, K1.outerAddr, K1.outerPort)).toBe(NO_FLOW);
    expect(new FlowTable(4).lookupInner(1, 6, 1, 1, 1, 1)).toBe(NO_FLOW);
  });

  it('tells the sides apart even when inner and outer fields are equal (address mode)', () => {
    const t = new FlowTable(8, 3);
    const k = { ...K1, innerAddr: K1.outerAddr };
    const f = insert(t, k);
    expect(findInner(t, k)).toBe(f);
    expect(findOuter(t, k)).toBe(f);
    t.remove(f);
    expect(findInner(t, k)).toBe(NO_FLOW);
    expect(findOuter(t, k)).toBe(NO_FLOW);
  });

  it('returns NO_FLOW when full, and takes flows again after a removal', () => {
    for (const cap of [1, 2, 7, 64]) {
      const t = new FlowTable(cap, cap);
      const keys: Key[] = [];
      for (let i = 0; i < cap; i++) {
        const k = { ...K1, innerPort: i, outerPort: i };
        keys.push(k);
        expect(insert(t, k)).not.toBe(NO_FLOW);
      }
      expect(t.count).toBe(cap);
      const extra = { ...K1, innerPort: 60000, outerPort: 60000 };
      expect(insert(t, extra)).toBe(NO_FLOW);
      expect(t.count).toBe(cap);
      for (const k of keys) {
        expect(findInner(t, k)).not.toBe(NO_FLOW);
        expect(findOuter(t, k)).toBe(findInner(t, k));
      }
      expect(findInner(t, extra)).toBe(NO_FLOW);
      const victim = findInner(t, keys[cap >> 1]!);
      t.remove(victim);
      expect(t.count).toBe(cap - 1);
      expect(t.stateOf(victim)).toBe(0);
      expect(insert(t, extra)).toBe(victim); // the freed number is reused
      expect(findOuter(t, extra)).toBe(victim);
    }
  });

  it('the hash seed changes placement but not results', () => {
    for (const seed of [0, 1, 0xdeadbeef, 0xffffffff]) {
      const t = new FlowTable(32, seed);
      const rng = new Rng(9);
      const keys: Key[] = [];
      for (let i = 0; i < 32; i++) {
        const k = randomKey(rng, false);
        if (findInner(t, k) !== NO_FLOW || findOuter(t, k) !== NO_FLOW) continue;
        keys.push(k);
        insert(t, k);
      }
      for (const k of keys) expect(findOuter(t, k)).toBe(findInner(t, k));
    }
    // Default (random) seed works too.
    const t = new FlowTable(4);
    const f = insert(t, K1);
    expect(findInner(t, K1)).toBe(f);
  });
});

describe('FlowTable churn against a Map model (backward-shift deletion)', () => {
  for (const [cap, narrow, ops, seed] of [
    [8, true, 4000, 1],
    [16, true, 4000, 2],
    [64, false, 5000, 3],
    [64, true, 5000, 4],
    [5, true, 3000, 5],
  ] as const) {
    it(`capacity ${cap}, ${narrow ? 'crowded' : 'spread'} keys, ${ops} operations`, () => {
      const rng = new Rng(seed);
      const t = new FlowTable(cap, rng.u32());
      const byInner = new Map<string, number>();
      const byOuter = new Map<string, number>();
      const live = new Map<number, Key>();
      let inserts = 0;
      let removes = 0;
      let fulls = 0;
      for (let op = 0; op < ops; op++) {
        const wantInsert = live.size === 0 || rng.int(100) < 55;
        if (wantInsert) {
          const k = randomKey(rng, narrow);
          if (byInner.has(innerKey(k)) || byOuter.has(outerKey(k))) {
            // The caller checks first; so does the model.
            expect(findInner(t, k)).toBe(byInner.get(innerKey(k)) ?? NO_FLOW);
            expect(findOuter(t, k)).toBe(byOuter.get(outerKey(k)) ?? NO_FLOW);
            continue;
          }
          expect(findInner(t, k)).toBe(NO_FLOW);
          expect(findOuter(t, k)).toBe(NO_FLOW);
          const f = insert(t, k, 1 + rng.int(9), rng.u32());
          if (live.size === cap) {
            expect(f).toBe(NO_FLOW);
            fulls++;
            continue;
          }
          expect(f).not.toBe(NO_FLOW);
          expect(live.has(f)).toBe(false);
          live.set(f, k);
          byInner.set(innerKey(k), f);
          byOuter.set(outerKey(k), f);
          inserts++;
        } else {
          const flows = [...live.keys()];
          const f = flows[rng.int(flows.length)]!;
          const k = live.get(f)!;
          t.remove(f);
          live.delete(f);
          byInner.delete(innerKey(k));
          byOuter.delete(outerKey(k));
          removes++;
          expect(findInner(t, k)).toBe(NO_FLOW);
          expect(findOuter(t, k)).toBe(NO_FLOW);
        }
        // Every other flow stays findable from both sides.
        if (t.count !== live.size) expect(t.count, `op ${op}`).toBe(live.size);
        for (const [f, k] of live) {
          // Plain comparisons first: thousands of expect() calls per test would be slow.
          if (findInner(t, k) !== f || findOuter(t, k) !== f) {
            expect({ op, f, inner: findInner(t, k), outer: findOuter(t, k) }).toEqual({ op, f, inner: f, outer: f });
          }
        }
      }
      expect(inserts).toBeGreaterThan(ops / 4);
      expect(removes).toBeGreaterThan(ops / 5);
      expect(fulls).toBeGreaterThan(0);
    });
  }

  it('keeps every flow findable when all entries share one home bucket run (removal from the middle)', () => {
    // Capacity 1 => 4 buckets holding 2 entries; capacity 2 => 8 buckets, 4 entries: tiny tables wrap around.
    const rng = new Rng(77);
    for (let round = 0; round < 300; round++) {
      const cap = 1 + rng.int(3);
      const t = new FlowTable(cap, rng.u32());
      const keys: Key[] = [];
      for (let i = 0; i < cap; i++) {
        const k = randomKey(rng, true);
        if (findInner(t, k) !== NO_FLOW || findOuter(t, k) !== NO_FLOW) continue;
        insert(t, k);
        keys.push(k);
      }
      while (keys.length) {
        const i = rng.int(keys.length);
        const k = keys.splice(i, 1)[0]!;
        t.remove(findInner(t, k));
        for (const o of keys) {
          expect(findOuter(t, o)).toBe(findInner(t, o));
          expect(findInner(t, o)).not.toBe(NO_FLOW);
        }
      }
      expect(t.count).toBe(0);
    }
  });
});

describe('FlowTable.expire', () => {
  function filled(cap: number, deadlineOf: (i: number) => number): { t: FlowTable; keys: Key[] } {
    const t = new FlowTable(cap, 5);
    const keys: Key[] = [];
    for (let i = 0; i < cap; i++) {
      const k = { ...K1, innerPort: 1000 + i, outerPort: 1000 + i };
      expect(insert(t, k, 1, deadlineOf(i))).toBe(i);
      keys.push(k);
    }
    return { t, keys };
  }

  it('drops only flows whose deadline is before now', () => {
    const { t, keys } = filled(20, (i) => 100 + i);
    expect(t.expire(100)).toBe(0); // deadline 100 is not before 100
    expect(t.count).toBe(20);
    expect(t.expire(105)).toBe(5); // 100..104
    expect(t.count).toBe(15);
    keys.forEach((k, i) => {
      expect(findInner(t, k)).toBe(i < 5 ? NO_FLOW : i);
      expect(findOuter(t, k)).toBe(i < 5 ? NO_FLOW : i);
    });
    expect(t.expire(105)).toBe(0);
    expect(t.expire(1_000_000)).toBe(15);
    expect(t.count).toBe(0);
  });

  it('ignores free slots (state 0) whatever their stale deadline', () => {
    const { t, keys } = filled(4, () => 10);
    t.remove(findInner(t, keys[1]!));
    expect(t.expire(1000)).toBe(3);
    expect(t.count).toBe(0);
  });

  it('scans at most `budget` slots per call and resumes where it stopped, wrapping around', () => {
    const { t } = filled(16, () => 50);
    expect(t.expire(100, 4)).toBe(4); // slots 0-3
    expect([0, 1, 2, 3].every((f) => t.stateOf(f) === 0)).toBe(true);
    expect(t.stateOf(4)).toBe(1);
    expect(t.expire(100, 5)).toBe(5); // 4-8
    expect(t.count).toBe(7);
    expect(t.expire(100, 0)).toBe(0);
    expect(t.expire(100, 7)).toBe(7); // 9-15: cursor now back at 0
    expect(t.count).toBe(0);

    // New flows reuse low numbers; the cursor is at 0 again, so slot 0 is seen first.
    const t2 = filled(8, (i) => (i % 2 === 0 ? 10 : 1000)).t;
    expect(t2.expire(100, 3)).toBe(2); // slots 0,1,2: 0 and 2 expire
    expect(t2.expire(100, 3)).toBe(1); // 3,4,5: 4
    expect(t2.expire(100, 3)).toBe(1); // 6,7,0: 6
    expect(t2.expire(100, 100)).toBe(0); // budget clamps to capacity
    expect(t2.count).toBe(4);
  });

  it('expiring under churn keeps the survivors findable', () => {
    const rng = new Rng(31);
    const t = new FlowTable(128, 31);
    const live = new Map<number, { k: Key; d: number }>();
    const seen = new Set<string>();
    let now = 0;
    for (let step = 0; step < 300; step++) {
      now += 1;
      for (let j = 0; j < 3; j++) {
        const k = randomKey(rng, false);
        if (seen.has(innerKey(k)) || seen.has('o' + outerKey(k))) continue;
        const d = now + rng.int(20);
        const f = insert(t, k, 1, d);
        if (f === NO_FLOW) continue;
        seen.add(innerKey(k));
        seen.add('o' + outerKey(k));
        live.set(f, { k, d });
      }
      t.expire(now, 32);
      for (const [f, { k, d }] of [...live]) {
        if (t.stateOf(f) === 0) {
          expect(d).toBeLessThan(now);
          live.delete(f);
          seen.delete(innerKey(k));
          seen.delete('o' + outerKey(k));
          expect(findInner(t, k)).toBe(NO_FLOW);
        } else {
          expect(findInner(t, k)).toBe(f);
          expect(findOuter(t, k)).toBe(f);
        }
      }
      expect(t.count).toBe(live.size);
    }
  });
});

describe('FlowTable.removeSession', () => {
  it('drops every flow of one session and nothing else', () => {
    const rng = new Rng(12);
    const t = new FlowTable(200, 12);
    const keys: [number, Key][] = [];
    for (let i = 0; i < 150; i++) {
      const k = randomKey(rng, false);
      if (findInner(t, k) !== NO_FLOW || findOuter(t, k) !== NO_FLOW) continue;
      k.session = 1 + (i % 4);
      const f = insert(t, k);
      keys.push([f, k]);
    }
    const of2 = keys.filter(([, k]) => k.session === 2).length;
    expect(of2).toBeGreaterThan(20);
    expect(t.removeSession(2)).toBe(of2);
    expect(t.count).toBe(keys.length - of2);
    for (const [f, k] of keys) {
      expect(findInner(t, k)).toBe(k.session === 2 ? NO_FLOW : f);
      expect(findOuter(t, k)).toBe(k.session === 2 ? NO_FLOW : f);
    }
    expect(t.removeSession(2)).toBe(0);
    expect(t.removeSession(99)).toBe(0);
  });
});

describe('FlowTable eviction lists', () => {
  it('makeRoom evicts the oldest evictable flow (the session at its limit: its own), never an assured one', () => {
    const t = new FlowTable(4, 1, undefined, 8);
    const k = (session: number, port: number): Key => ({ ...K1, session, innerPort: port, outerPort: port });
    expect(t.makeRoom(1, Infinity)).toBe(ROOM_FREE);
    const a = insert(t, k(1, 1));
    const b = insert(t, k(2, 2));
    const c = insert(t, k(1, 3));
    const d = insert(t, k(2, 4));
    expect([t.sessionFlows(1), t.sessionFlows(2), t.evictableCount]).toEqual([2, 2, 4]);
    expect([t.oldestEvictable(), t.oldestEvictable(1), t.oldestEvictable(2)]).toEqual([a, a, b]);
    t.setAssured(a, true);
    t.setAssured(a, true); // twice changes nothing
    expect([t.evictable(a), t.evictableCount, t.oldestEvictable(), t.oldestEvictable(1)]).toEqual([false, 3, b, c]);
    // Full: the table's oldest evictable flow goes.
    expect(t.makeRoom(3, Infinity)).toBe(ROOM_EVICTED);
    expect(t.stateOf(b)).toBe(0);
    expect(findInner(t, k(2, 2))).toBe(NO_FLOW);
    const e = insert(t, k(3, 5));
    // Session 2 at a limit of 1: its own oldest (d), though c is older.
    expect(t.makeRoom(2, 1)).toBe(ROOM_EVICTED);
    expect([t.stateOf(d), t.sessionFlows(2), findInner(t, k(1, 3))]).toEqual([0, 0, c]);
    insert(t, k(2, 6));
    // An assured flow that becomes evictable again goes to the back of the queue.
    t.setAssured(c, true);
    t.setAssured(c, false);
    expect(t.oldestEvictable()).toBe(e);
    for (const f of [e, c]) t.setAssured(f, true);
    t.setAssured(t.oldestEvictable(), true);
    // Nothing evictable: no room, nothing removed.
    expect(t.evictableCount).toBe(0);
    expect(t.makeRoom(4, Infinity)).toBe(ROOM_TABLE_FULL);
    expect(t.makeRoom(1, 2)).toBe(ROOM_SESSION_LIMIT);
    expect(t.count).toBe(4);
    expect(() => insert(t, k(9, 7))).toThrow(/session 9/);
  });

  it('seeded random inserts, removals, expiry, assurance and eviction against a model of FIFO lists', () => {
    const rng = new Rng(77);
    const cap = 24;
    const t = new FlowTable(cap, 5, undefined, 4);
    // The model: live flows (number -> session), and the evictable ones in the order they became evictable.
    const live = new Map<number, number>();
    let order: number[] = [];
    let port = 0;
    const problems: string[] = [];
    const drop = (f: number): void => {
      live.delete(f);
      order = order.filter((x) => x !== f);
    };
    for (let i = 0; i < 20000 && problems.length < 3; i++) {
      const op = rng.int(10);
      const liveFlows = [...live.keys()];
      if (op < 4) {
        const s = 1 + rng.int(4);
        const limit = rng.pick([Infinity, 3, 6]);
        const mine = order.filter((f) => live.get(f) === s);
        const count = [...live.values()].filter((x) => x === s).length;
        let want: number;
        let victim = NO_FLOW;
        if (count >= limit) [want, victim] = mine.length ? [ROOM_EVICTED, mine[0]!] : [ROOM_SESSION_LIMIT, NO_FLOW];
        else if (live.size >= cap) [want, victim] = order.length ? [ROOM_EVICTED, order[0]!] : [ROOM_TABLE_FULL, NO_FLOW];
        else want = ROOM_FREE;
        const got = t.makeRoom(s, limit);
        if (got !== want) problems.push(`${i}: makeRoom(${s}, ${limit}) = ${got}, model ${want}`);
        if (victim !== NO_FLOW) {
          if (t.stateOf(victim) !== 0) problems.push(`${i}: flow ${victim} should have been evicted`);
          drop(victim);
        }
        if (got >= 0) {
          port = (port + 1) & 0xffff;
          const f = insert(t, { ...K1, session: s, innerPort: port, outerPort: port });
          live.set(f, s);
          order.push(f);
        }
      } else if (op < 6 && liveFlows.length) {
        const f = rng.pick(liveFlows);
        const assured = rng.bool();
        t.setAssured(f, assured);
        const listed = order.includes(f);
        if (assured && listed) order = order.filter((x) => x !== f);
        if (!assured && !listed) order.push(f);
      } else if (op < 8 && liveFlows.length) {
        const f = rng.pick(liveFlows);
        t.remove(f);
        drop(f);
      } else if (op === 8 && liveFlows.length) {
        const f = rng.pick(liveFlows);
        t.setDeadline(f, 0);
        t.expire(1);
        drop(f);
      } else if (liveFlows.length) {
        const s = 1 + rng.int(4);
        t.removeSession(s);
        for (const f of liveFlows) if (live.get(f) === s) drop(f);
      }
      if (t.count !== live.size || t.evictableCount !== order.length)
        problems.push(`${i}: count ${t.count}/${live.size}, evictable ${t.evictableCount}/${order.length}`);
      if (t.oldestEvictable() !== (order[0] ?? NO_FLOW)) problems.push(`${i}: oldest ${t.oldestEvictable()}, model ${order[0]}`);
      for (let s = 1; s <= 4; s++) {
        const mine = order.filter((f) => live.get(f) === s);
        if (t.oldestEvictable(s) !== (mine[0] ?? NO_FLOW)) problems.push(`${i}: oldest of ${s} ${t.oldestEvictable(s)}, model ${mine[0]}`);
        const n = [...live.values()].filter((x) => x === s).length;
        if (t.sessionFlows(s) !== n) problems.push(`${i}: flows of ${s} ${t.sessionFlows(s)}, model ${n}`);
      }
      for (const f of live.keys()) if (t.evictable(f) !== order.includes(f)) problems.push(`${i}: evictable(${f})`);
    }
    expect(problems).toEqual([]);
  });

  it('bytes per flow: a 32-byte record, four link words and 16 bytes of buckets (64; IPv6 96)', () => {
    expect(new FlowTable(1024).bytesPerFlow()).toBe(64);
    expect(new FlowTable6(1024).bytesPerFlow()).toBe(96);
    // Sessions cost 12 bytes each, beside the flows.
    expect(FlowTable.bytesFor(1024, 100) - FlowTable.bytesFor(1024, 99)).toBe(12);
  });
});
