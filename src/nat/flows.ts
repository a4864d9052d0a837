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

function randomSeed(): number {
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

export class FlowTable {
  readonly capacity: number;
  /** Live flows. */
  count = 0;

  readonly proto: Uint8Array;
  /** Translator-defined state number; 0 means the slot is free. */
  readonly state: Uint8Array;
  readonly session: Uint32Array;
  readonly innerAddr: Uint32Array;
  readonly innerPort: Uint16Array;
  readonly outerAddr: Uint32Array;
  readonly outerPort: Uint16Array;
  readonly remoteAddr: Uint32Array;
  readonly remotePort: Uint16Array;
  /** Whole seconds of the caller's clock after which the flow may be dropped. */
  readonly deadline: Uint32Array;

  private readonly freeStack: Int32Array;
  private freeTop: number;
  private readonly buckets: Int32Array;
  private readonly mask: number;
  private readonly seed: number;
  private scanCursor = 0;

  constructor(capacity: number, seed: number = randomSeed()) {
    if (!Number.isInteger(capacity) || capacity < 1 || capacity > 1 << 26) {
      throw new RangeError(`flow table capacity ${capacity}: must be an integer 1-${1 << 26}`);
    }
    this.capacity = capacity;
    this.seed = seed >>> 0;
    this.proto = new Uint8Array(capacity);
    this.state = new Uint8Array(capacity);
    this.session = new Uint32Array(capacity);
    this.innerAddr = new Uint32Array(capacity);
    this.innerPort = new Uint16Array(capacity);
    this.outerAddr = new Uint32Array(capacity);
    this.outerPort = new Uint16Array(capacity);
    this.remoteAddr = new Uint32Array(capacity);
    this.remotePort = new Uint16Array(capacity);
    this.deadline = new Uint32Array(capacity);
    this.freeStack = new Int32Array(capacity);
    // Hand out low flow numbers first: better locality in the field arrays.
    for (let i = 0; i < capacity; i++) this.freeStack[i] = capacity - 1 - i;
    this.freeTop = capacity;
    // Two entries per flow at a load factor of at most 1/2.
    let size = 4;
    while (size < capacity * 4) size *= 2;
    this.buckets = new Int32Array(size).fill(EMPTY);
    this.mask = size - 1;
  }

  /** Bytes of memory held per flow of capacity (field arrays, free stack and hash buckets). */
  bytesPerFlow(): number {
    const perFlow = 1 + 1 + 4 + 4 + 2 + 4 + 2 + 4 + 2 + 4 + 4;
    return perFlow + (this.buckets.length * 4) / this.capacity;
  }

  private innerHash(session: number, proto: number, innerAddr: number, innerPort: number, remoteAddr: number, remotePort: number): number {
    return mix(this.seed, innerAddr, remoteAddr, (innerPort << 16) | remotePort, proto, session);
  }

  private outerHash(proto: number, outerAddr: number, outerPort: number, remoteAddr: number, remotePort: number): number {
    // Bit 8 of the protocol word tells the sides apart.
    return mix(this.seed, outerAddr, remoteAddr, (outerPort << 16) | remotePort, proto | 0x100, 0);
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
    if (this.freeTop === 0) return NO_FLOW;
    const f = this.freeStack[--this.freeTop]!;
    this.session[f] = session;
    this.proto[f] = proto;
    this.innerAddr[f] = innerAddr;
    this.innerPort[f] = innerPort;
    this.outerAddr[f] = outerAddr;
    this.outerPort[f] = outerPort;
    this.remoteAddr[f] = remoteAddr;
    this.remotePort[f] = remotePort;
    this.state[f] = state;
    this.deadline[f] = deadline;
    this.place(this.innerHash(session, proto, innerAddr, innerPort, remoteAddr, remotePort), (f << 1) | SIDE_INNER);
    this.place(this.outerHash(proto, outerAddr, outerPort, remoteAddr, remotePort), (f << 1) | SIDE_OUTER);
    this.count++;
    return f;
  }

  private place(hash: number, entry: number): void {
    let i = hash & this.mask;
    while (this.buckets[i] !== EMPTY) i = (i + 1) & this.mask;
    this.buckets[i] = entry;
  }

  /** Removes flow `f` (which must be live) from the table. */
  remove(f: number): void {
    this.unplace(this.innerHash(this.session[f]!, this.proto[f]!, this.innerAddr[f]!, this.innerPort[f]!, this.remoteAddr[f]!, this.remotePort[f]!), (f << 1) | SIDE_INNER);
    this.unplace(this.outerHash(this.proto[f]!, this.outerAddr[f]!, this.outerPort[f]!, this.remoteAddr[f]!, this.remotePort[f]!), (f << 1) | SIDE_OUTER);
    this.state[f] = 0;
    this.freeStack[this.freeTop++] = f;
    this.count--;
  }

  private homeOf(entry: number): number {
    const f = entry >>> 1;
    const h =
      (entry & 1) === SIDE_INNER
        ? this.innerHash(this.session[f]!, this.proto[f]!, this.innerAddr[f]!, this.innerPort[f]!, this.remoteAddr[f]!, this.remotePort[f]!)
        : this.outerHash(this.proto[f]!, this.outerAddr[f]!, this.outerPort[f]!, this.remoteAddr[f]!, this.remotePort[f]!);
    return h & this.mask;
  }

  private unplace(hash: number, entry: number): void {
    const m = this.mask;
    let i = hash & m;
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
    let c = this.scanCursor;
    for (let k = 0; k < n; k++) {
      if (this.state[c] !== 0 && this.deadline[c]! < now) {
        this.remove(c);
        dropped++;
      }
      c = c + 1 === this.capacity ? 0 : c + 1;
    }
    this.scanCursor = c;
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
