// The flow table: every translated connection, findable from either side in one lookup.
//
// Theory of operation
// -------------------
// A flow is one transport conversation between a session and a remote peer.
// It has two sides:
//
//   inner side (session k):  proto, session k, inner address:port  <->  remote address:port
//   outer side (uplink):     proto,            VIP:outer port      <->  remote address:port
//
// Flows live in fixed-capacity typed arrays, one array per field, indexed by
// flow number; free flow numbers are kept on a stack. A single open-addressing
// hash table (linear probing) holds two entries per live flow, one per side,
// each storing (flow << 1 | side). A packet from a session is looked up by its
// inner-side key, a packet from the uplink by its outer-side key: one probe
// sequence either way. The hash is keyed with a random per-process seed so
// remote peers cannot aim collisions at us.
//
// Deletion uses backward-shift (no tombstones), so probe lengths stay short
// however long the table runs. Flows carry a deadline in whole seconds of the
// caller's clock; `expire` scans a slice of the flow arrays per call so the
// cost is spread over time, and drops flows whose deadline has passed. The
// table knows nothing of protocols: state numbers and timeouts are the
// translator's (translate.ts); the table only stores them.

const EMPTY = -1;

/** Flow numbers are small integers; this marks "no flow". */
export const NO_FLOW = -1;

export const SIDE_INNER = 0;
export const SIDE_OUTER = 1;

export function randomSeed(): number {
  // nat stays free of node: modules (DESIGN.md); V8 seeds Math.random from
  // the OS's entropy, which is enough for a collision-resistance key.
  return (Math.random() * 0x100000000) >>> 0;
}

/** murmur3-style keyed mix of five 32-bit words. */
function mix(seed: number, a: number, b: number, c: number, d: number, e: number): number {
  let h = seed;
  h = round(h, a);
  h = round(h, b);
  h = round(h, c);
  h = round(h, d);
  h = round(h, e);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function round(h: number, k: number): number {
  k = Math.imul(k, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  k = Math.imul(k, 0x1b873593);
  h ^= k;
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/** meta[] slots: live flows, top of the free stack, expiry cursor, 1 once initialized. */
const META_COUNT = 0;
const META_FREE_TOP = 1;
const META_CURSOR = 2;
const META_READY = 3;
const META_WORDS = 4;

/** Hash buckets for a capacity: two entries per flow at a load factor of at most 1/2. */
function bucketCount(capacity: number): number {
  let size = 4;
  while (size < capacity * 4) size *= 2;
  return size;
}

function checkCapacity(capacity: number): void {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 26) {
    throw new RangeError(`flow table capacity ${capacity}: must be an integer 1-${1 << 26}`);
  }
}

/**
 * Buckets, free flow numbers, per-flow fields, deletion and expiry.
 *
 * Every array (and the few counters, in `meta`) lives in one buffer. Given a
 * SharedArrayBuffer, several threads can open the same table: the first
 * constructor initializes it, later ones attach. The table does no locking
 * of its own; threads sharing it must serialize every call that reads or
 * changes it.
 */
export abstract class FlowTableBase {
  readonly capacity: number;

  readonly proto: Uint8Array;
  /** Translator-defined state number; 0 means the slot is free. */
  readonly state: Uint8Array;
  readonly session: Uint32Array;
  readonly innerPort: Uint16Array;
  readonly outerPort: Uint16Array;
  readonly remotePort: Uint16Array;
  /** Whole seconds of the caller's clock after which the flow may be dropped. */
  readonly deadline: Uint32Array;
  /** Addresses, `words` 32-bit words each: flow f's are at [f * words, (f + 1) * words). */
  readonly innerAddr: Uint32Array;
  readonly outerAddr: Uint32Array;
  readonly remoteAddr: Uint32Array;
  /** Called with a flow's number just before it is removed (expiry, session end), e.g. to release its port. */
  onRemove: ((f: number) => void) | null = null;

  private readonly meta: Int32Array;
  private readonly freeStack: Int32Array;
  protected readonly buckets: Int32Array;
  protected readonly mask: number;
  protected readonly seed: number;

  /** Bytes of the buffer a table of `capacity` flows with `words`-word addresses needs. */
  static bytesFor(capacity: number, words: number): number {
    checkCapacity(capacity);
    return 4 * (META_WORDS + bucketCount(capacity) + capacity * (4 + 3 * words)) + capacity * (2 * 3 + 2);
  }

  protected constructor(capacity: number, seed: number, words: number, memory?: SharedArrayBuffer) {
    const bytes = FlowTableBase.bytesFor(capacity, words);
    if (memory && memory.byteLength !== bytes) {
      throw new RangeError(`flow table memory: ${memory.byteLength} bytes, a table of ${capacity} flows needs ${bytes}`);
    }
    this.capacity = capacity;
    this.seed = seed >>> 0;
    const buf = memory ?? new ArrayBuffer(bytes);
    let at = 0;
    const take = <T>(make: new (b: ArrayBufferLike, o: number, n: number) => T, n: number, size: number): T => {
      const a = new make(buf, at, n);
      at += n * size;
      return a;
    };
    const size = bucketCount(capacity);
    // Widest elements first, so every array is aligned.
    this.meta = take(Int32Array, META_WORDS, 4);
    this.buckets = take(Int32Array, size, 4);
    this.freeStack = take(Int32Array, capacity, 4);
    this.session = take(Uint32Array, capacity, 4);
    this.deadline = take(Uint32Array, capacity, 4);
    this.innerAddr = take(Uint32Array, capacity * words, 4);
    this.outerAddr = take(Uint32Array, capacity * words, 4);
    this.remoteAddr = take(Uint32Array, capacity * words, 4);
    this.innerPort = take(Uint16Array, capacity, 2);
    this.outerPort = take(Uint16Array, capacity, 2);
    this.remotePort = take(Uint16Array, capacity, 2);
    this.proto = take(Uint8Array, capacity, 1);
    this.state = take(Uint8Array, capacity, 1);
    this.mask = size - 1;
    if (this.meta[META_READY] === 0) {
      // Hand out low flow numbers first: better locality in the field arrays.
      for (let i = 0; i < capacity; i++) this.freeStack[i] = capacity - 1 - i;
      this.meta[META_FREE_TOP] = capacity;
      this.buckets.fill(EMPTY);
      Atomics.store(this.meta, META_READY, 1);
    }
  }

  /** Live flows. */
  get count(): number {
    return this.meta[META_COUNT]!;
  }

  /** Bytes of memory held per flow of capacity (field arrays, free stack and hash buckets). */
  bytesPerFlow(): number {
    const common = 1 + 1 + 4 + 2 + 2 + 2 + 4 + 4;
    return common + (3 * this.innerAddr.length * 4 + this.buckets.length * 4) / this.capacity;
  }

  /** The bucket an entry (flow << 1 | side) hashes to. */
  protected abstract homeOf(entry: number): number;

  /** Takes a free flow number and fills the fields all tables share; NO_FLOW when full. */
  protected alloc(session: number, proto: number, innerPort: number, outerPort: number, remotePort: number, state: number, deadline: number): number {
    const meta = this.meta;
    const top = meta[META_FREE_TOP]!;
    if (top === 0) return NO_FLOW;
    const f = this.freeStack[top - 1]!;
    meta[META_FREE_TOP] = top - 1;
    this.session[f] = session;
    this.proto[f] = proto;
    this.innerPort[f] = innerPort;
    this.outerPort[f] = outerPort;
    this.remotePort[f] = remotePort;
    this.state[f] = state;
    this.deadline[f] = deadline;
    meta[META_COUNT] = meta[META_COUNT]! + 1;
    return f;
  }

  protected place(hash: number, entry: number): void {
    let i = hash & this.mask;
    while (this.buckets[i] !== EMPTY) i = (i + 1) & this.mask;
    this.buckets[i] = entry;
  }

  /** Removes flow `f` (which must be live) from the table. */
  remove(f: number): void {
    this.onRemove?.(f);
    this.unplace((f << 1) | SIDE_INNER);
    this.unplace((f << 1) | SIDE_OUTER);
    this.state[f] = 0;
    const meta = this.meta;
    const top = meta[META_FREE_TOP]!;
    this.freeStack[top] = f;
    meta[META_FREE_TOP] = top + 1;
    meta[META_COUNT] = meta[META_COUNT]! - 1;
  }

  private unplace(entry: number): void {
    const m = this.mask;
    let i = this.homeOf(entry);
    while (this.buckets[i] !== entry) {
      if (this.buckets[i] === EMPTY) throw new Error(`flow table corrupt: entry ${entry} not found`);
      i = (i + 1) & m;
    }
    // Backward-shift: pull later entries of the same probe run into the hole
    // when their home position allows it.
    let hole = i;
    let j = (i + 1) & m;
    for (;;) {
      const e = this.buckets[j]!;
      if (e === EMPTY) break;
      const home = this.homeOf(e);
      // Can e move to `hole`? Only if hole lies cyclically in [home, j).
      if (((j - home) & m) >= ((j - hole) & m)) {
        this.buckets[hole] = e;
        hole = j;
      }
      j = (j + 1) & m;
    }
    this.buckets[hole] = EMPTY;
  }

  /**
   * Drops flows whose deadline is before `now`, scanning at most `budget`
   * flow slots from where the last call stopped. Returns how many were dropped.
   */
  expire(now: number, budget: number = this.capacity): number {
    let dropped = 0;
    const n = Math.min(budget, this.capacity);
    let c = this.meta[META_CURSOR]!;
    for (let k = 0; k < n; k++) {
      if (this.state[c] !== 0 && this.deadline[c]! < now) {
        this.remove(c);
        dropped++;
      }
      c = c + 1 === this.capacity ? 0 : c + 1;
    }
    this.meta[META_CURSOR] = c;
    return dropped;
  }

  /** Drops every flow of a session (when the session ends). Returns how many. */
  removeSession(session: number): number {
    let dropped = 0;
    for (let f = 0; f < this.capacity; f++) {
      if (this.state[f] !== 0 && this.session[f] === session) {
        this.remove(f);
        dropped++;
      }
    }
    return dropped;
  }
}

/** IPv4 flows: addresses are unsigned 32-bit numbers. */
export class FlowTable extends FlowTableBase {
  /** `memory`: a SharedArrayBuffer of bytesFor(capacity) to open (or set up) a table shared between threads. */
  constructor(capacity: number, seed: number = randomSeed(), memory?: SharedArrayBuffer) {
    super(capacity, seed, 1, memory);
  }

  static override bytesFor(capacity: number): number {
    return FlowTableBase.bytesFor(capacity, 1);
  }

  private innerHash(session: number, proto: number, innerAddr: number, innerPort: number, remoteAddr: number, remotePort: number): number {
    return mix(this.seed, innerAddr, remoteAddr, (innerPort << 16) | remotePort, proto, session);
  }

  private outerHash(proto: number, outerAddr: number, outerPort: number, remoteAddr: number, remotePort: number): number {
    // Bit 8 of the protocol word tells the sides apart.
    return mix(this.seed, outerAddr, remoteAddr, (outerPort << 16) | remotePort, proto | 0x100, 0);
  }

  protected homeOf(entry: number): number {
    const f = entry >>> 1;
    const h =
      (entry & 1) === SIDE_INNER
        ? this.innerHash(this.session[f]!, this.proto[f]!, this.innerAddr[f]!, this.innerPort[f]!, this.remoteAddr[f]!, this.remotePort[f]!)
        : this.outerHash(this.proto[f]!, this.outerAddr[f]!, this.outerPort[f]!, this.remoteAddr[f]!, this.remotePort[f]!);
    return h & this.mask;
  }

  /** The flow of a packet from session `session`, or NO_FLOW. */
  lookupInner(session: number, proto: number, innerAddr: number, innerPort: number, remoteAddr: number, remotePort: number): number {
    let i = this.innerHash(session, proto, innerAddr, innerPort, remoteAddr, remotePort) & this.mask;
    for (;;) {
      const e = this.buckets[i]!;
      if (e === EMPTY) return NO_FLOW;
      if ((e & 1) === SIDE_INNER) {
        const f = e >>> 1;
        if (
          this.innerAddr[f] === innerAddr &&
          this.remoteAddr[f] === remoteAddr &&
          this.innerPort[f] === innerPort &&
          this.remotePort[f] === remotePort &&
          this.proto[f] === proto &&
          this.session[f] === session
        ) {
          return f;
        }
      }
      i = (i + 1) & this.mask;
    }
  }

  /** The flow of a packet arriving from the uplink, or NO_FLOW. */
  lookupOuter(proto: number, outerAddr: number, outerPort: number, remoteAddr: number, remotePort: number): number {
    let i = this.outerHash(proto, outerAddr, outerPort, remoteAddr, remotePort) & this.mask;
    for (;;) {
      const e = this.buckets[i]!;
      if (e === EMPTY) return NO_FLOW;
      if ((e & 1) === SIDE_OUTER) {
        const f = e >>> 1;
        if (
          this.outerAddr[f] === outerAddr &&
          this.remoteAddr[f] === remoteAddr &&
          this.outerPort[f] === outerPort &&
          this.remotePort[f] === remotePort &&
          this.proto[f] === proto
        ) {
          return f;
        }
      }
      i = (i + 1) & this.mask;
    }
  }

  /**
   * Adds a flow; returns its number, or NO_FLOW when the table is full.
   * The caller has checked that neither side's key is present.
   */
  insert(
    session: number,
    proto: number,
    innerAddr: number,
    innerPort: number,
    outerAddr: number,
    outerPort: number,
    remoteAddr: number,
    remotePort: number,
    state: number,
    deadline: number,
  ): number {
    const f = this.alloc(session, proto, innerPort, outerPort, remotePort, state, deadline);
    if (f === NO_FLOW) return NO_FLOW;
    this.innerAddr[f] = innerAddr;
    this.outerAddr[f] = outerAddr;
    this.remoteAddr[f] = remoteAddr;
    this.place(this.innerHash(session, proto, innerAddr, innerPort, remoteAddr, remotePort), (f << 1) | SIDE_INNER);
    this.place(this.outerHash(proto, outerAddr, outerPort, remoteAddr, remotePort), (f << 1) | SIDE_OUTER);
    return f;
  }
}

/**
 * IPv6 flows: an address is four unsigned 32-bit words, passed as an array
 * and an offset (no allocation); flow f's address lives at [4f, 4f+4).
 */
export class FlowTable6 extends FlowTableBase {
  constructor(capacity: number, seed: number = randomSeed(), memory?: SharedArrayBuffer) {
    super(capacity, seed, 4, memory);
  }

  static override bytesFor(capacity: number): number {
    return FlowTableBase.bytesFor(capacity, 4);
  }

  /** Folds an address into one word for the hash (all its bits count). */
  private fold(w: Uint32Array, o: number): number {
    return mix(this.seed, w[o]!, w[o + 1]!, w[o + 2]!, w[o + 3]!, 0x6);
  }

  private innerHash(session: number, proto: number, inner: Uint32Array, io: number, innerPort: number, remote: Uint32Array, ro: number, remotePort: number): number {
    return mix(this.seed, this.fold(inner, io), this.fold(remote, ro), (innerPort << 16) | remotePort, proto, session);
  }

  private outerHash(proto: number, outer: Uint32Array, oo: number, outerPort: number, remote: Uint32Array, ro: number, remotePort: number): number {
    return mix(this.seed, this.fold(outer, oo), this.fold(remote, ro), (outerPort << 16) | remotePort, proto | 0x100, 0);
  }

  protected homeOf(entry: number): number {
    const f = entry >>> 1;
    const a = f * 4;
    const h =
      (entry & 1) === SIDE_INNER
        ? this.innerHash(this.session[f]!, this.proto[f]!, this.innerAddr, a, this.innerPort[f]!, this.remoteAddr, a, this.remotePort[f]!)
        : this.outerHash(this.proto[f]!, this.outerAddr, a, this.outerPort[f]!, this.remoteAddr, a, this.remotePort[f]!);
    return h & this.mask;
  }

  lookupInner(session: number, proto: number, inner: Uint32Array, io: number, innerPort: number, remote: Uint32Array, ro: number, remotePort: number): number {
    let i = this.innerHash(session, proto, inner, io, innerPort, remote, ro, remotePort) & this.mask;
    for (;;) {
      const e = this.buckets[i]!;
      if (e === EMPTY) return NO_FLOW;
      if ((e & 1) === SIDE_INNER) {
        const f = e >>> 1;
        if (
          this.innerPort[f] === innerPort &&
          this.remotePort[f] === remotePort &&
          this.proto[f] === proto &&
          this.session[f] === session &&
          sameAddress6(this.innerAddr, f * 4, inner, io) &&
          sameAddress6(this.remoteAddr, f * 4, remote, ro)
        ) {
          return f;
        }
      }
      i = (i + 1) & this.mask;
    }
  }

  lookupOuter(proto: number, outer: Uint32Array, oo: number, outerPort: number, remote: Uint32Array, ro: number, remotePort: number): number {
    let i = this.outerHash(proto, outer, oo, outerPort, remote, ro, remotePort) & this.mask;
    for (;;) {
      const e = this.buckets[i]!;
      if (e === EMPTY) return NO_FLOW;
      if ((e & 1) === SIDE_OUTER) {
        const f = e >>> 1;
        if (
          this.outerPort[f] === outerPort &&
          this.remotePort[f] === remotePort &&
          this.proto[f] === proto &&
          sameAddress6(this.outerAddr, f * 4, outer, oo) &&
          sameAddress6(this.remoteAddr, f * 4, remote, ro)
        ) {
          return f;
        }
      }
      i = (i + 1) & this.mask;
    }
  }

  insert(
    session: number,
    proto: number,
    inner: Uint32Array,
    io: number,
    innerPort: number,
    outer: Uint32Array,
    oo: number,
    outerPort: number,
    remote: Uint32Array,
    ro: number,
    remotePort: number,
    state: number,
    deadline: number,
  ): number {
    const f = this.alloc(session, proto, innerPort, outerPort, remotePort, state, deadline);
    if (f === NO_FLOW) return NO_FLOW;
    const a = f * 4;
    for (let k = 0; k < 4; k++) {
      this.innerAddr[a + k] = inner[io + k]!;
      this.outerAddr[a + k] = outer[oo + k]!;
      this.remoteAddr[a + k] = remote[ro + k]!;
    }
    this.place(this.innerHash(session, proto, inner, io, innerPort, remote, ro, remotePort), (f << 1) | SIDE_INNER);
    this.place(this.outerHash(proto, outer, oo, outerPort, remote, ro, remotePort), (f << 1) | SIDE_OUTER);
    return f;
  }
}

/** True when two four-word IPv6 addresses are equal. */
export function sameAddress6(a: Uint32Array, ao: number, b: Uint32Array, bo: number): boolean {
  return a[ao] === b[bo] && a[ao + 1] === b[bo + 1] && a[ao + 2] === b[bo + 2] && a[ao + 3] === b[bo + 3];
}
