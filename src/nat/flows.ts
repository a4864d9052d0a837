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
// Flows live in one fixed-capacity typed array of records, one record (32
// bytes for IPv4, 64 for IPv6: one cache line or half of one) per flow
// number, so a lookup that finds its flow touches a single line of it. A
// single open-addressing hash table (linear probing) holds two entries per
// live flow, one per side,
// each storing (flow << 1 | side). A packet from a session is looked up by its
// inner-side key, a packet from the uplink by its outer-side key: one probe
// sequence either way. The hash is keyed with a random per-process seed so
// remote peers cannot aim collisions at us.
//
// Deletion uses backward-shift (no tombstones), so probe lengths stay short
// however long the table runs. Flows carry a deadline in whole seconds of the
// caller's clock; `expire` scans a slice of the records per call so the
// cost is spread over time, and drops flows whose deadline has passed. The
// table knows nothing of protocols: state numbers and timeouts are the
// translator's (translate.ts); the table only stores them.
//
// Eviction (Linux conntrack's "early drop"). A flow is either assured (the
// translator says so: TCP past its handshake, UDP or echo answered) or
// evictable (everything else, and every new flow). Evictable flows are on two
// doubly linked lists at once, threaded through four link words per flow: the
// table's, and their session's. Each list is in the order flows became
// evictable, so its head is the one that has been evictable longest; a flow
// that stops being assured (a FIN) goes on at the tail. makeRoom, before a new
// flow, evicts the head of the session's list when the session is at its
// flow limit, else the head of the table's list when the table is full; it
// never touches an assured flow. Free flow numbers are a stack threaded
// through the same link words. Every list operation is O(1).
//
// The one buffer holds, in order: the records; the buckets (at least four
// per flow, 16 bytes a flow for a power-of-two capacity); the links (four
// words a flow); per session, its evictable list's ends and its count of
// live flows (three words); a few counters. So 64 bytes a flow for IPv4 and
// 96 for IPv6, plus 12 bytes a session.

const EMPTY = -1;

/** The largest capacity: flow numbers fit in 24 bits, leaving 6 bits of each bucket entry for the tag. */
export const MAX_FLOW_CAPACITY = 1 << 24;
const FLOW_BITS = 0x1ffffff; // flow << 1 | side
const TAG_SHIFT = 25;

/** A bucket entry for flow `f`'s `side`, whose key hashes to `hash`. */
function entryOf(hash: number, f: number, side: number): number {
  return ((hash >>> 26) << TAG_SHIFT) | (f << 1) | side;
}

/** What a lookup compares an entry's tag and side against. */
function tagSide(hash: number, side: number): number {
  return ((hash >>> 26) << TAG_SHIFT) | side;
}

const TAG_SIDE = ~FLOW_BITS | 1;

/** Flow numbers are small integers; this marks "no flow". */
export const NO_FLOW = -1;

/** The low six bits of a record's state byte are the state; the top two are the translator's flags. */
export const STATE_MASK = 0x3f;

/** makeRoom() results: room without eviction, room after evicting one flow, or no room. */
export const ROOM_FREE = 0;
export const ROOM_EVICTED = 1;
export const ROOM_SESSION_LIMIT = -1;
export const ROOM_TABLE_FULL = -2;

/** The highest session id a table takes unless told otherwise. */
export const DEFAULT_TABLE_SESSIONS = 255;

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

// A flow record, in 32-bit words: the session; the ports as a flow key holds
// them (inner << 16 | remote); the outer port, protocol and state (outerPort |
// proto << 16 | state << 24); the deadline; then the inner, outer and remote
// addresses, `words` words each (1 for IPv4, 4 for IPv6).
export const R_SESSION = 0;
export const R_PORTS = 1;
export const R_OUTER = 2;
export const R_DEADLINE = 3;
export const R_ADDR = 4;

/** A record's R_PORTS word. */
export function portsWord(innerPort: number, remotePort: number): number {
  return (innerPort << 16) | remotePort;
}

/** Words per record: a power of two, so records never straddle more cache lines than they must. */
function strideFor(words: number): number {
  return words === 1 ? 8 : 16;
}

/** meta[] slots: live flows, top of the free stack, expiry cursor, 1 once initialized, the evictable list's ends and length. */
const META_COUNT = 0;
const META_FREE = 1;
const META_CURSOR = 2;
const META_READY = 3;
const META_HEAD = 4;
const META_TAIL = 5;
const META_EVICTABLE = 6;
const META_WORDS = 8;

/** links[] words per flow: the table's evictable list, the session's (previous, next); L_NEXT also links the free stack. */
const L_PREV = 0;
const L_NEXT = 1;
const L_SPREV = 2;
const L_SNEXT = 3;
const LINK_WORDS = 4;
/** links[L_PREV] of a flow on no list: assured (or free). */
const UNLISTED = -2;

/** sess[] words per session: its evictable list's ends, its live flows. */
const S_HEAD = 0;
const S_TAIL = 1;
const S_COUNT = 2;
const SESSION_WORDS = 3;

/** Hash buckets for a capacity: two entries per flow at a load factor of at most 1/2. */
function bucketCount(capacity: number): number {
  let size = 4;
  while (size < capacity * 4) size *= 2;
  return size;
}

function checkCapacity(capacity: number, maxSession: number): void {
  if (!Number.isInteger(capacity) || capacity < 1 || capacity > MAX_FLOW_CAPACITY) {
    throw new RangeError(`flow table capacity ${capacity}: must be an integer 1-${MAX_FLOW_CAPACITY}`);
  }
  if (!Number.isInteger(maxSession) || maxSession < 1 || maxSession > 0x7fffffff) {
    throw new RangeError(`flow table sessions ${maxSession}: must be an integer 1-${0x7fffffff}`);
  }
}

/**
 * Buckets, free flow numbers, per-flow fields, deletion, expiry and eviction.
 *
 * Every array (and the few counters, in `meta`) lives in one buffer. Given a
 * SharedArrayBuffer, several threads can open the same table: the first
 * constructor initializes it, later ones attach. The table does no locking
 * of its own; threads sharing it must serialize every call that reads or
 * changes it.
 */
export abstract class FlowTableBase {
  readonly capacity: number;
  /** Session ids run 1-maxSession. */
  readonly maxSession: number;
  /** Words per record, and the address width in words. */
  readonly stride: number;
  readonly words: number;
  /** The records; `addr` views the same memory unsigned, for the address words. */
  readonly rec: Int32Array;
  readonly addr: Uint32Array;
  /** Called with a flow's number just before it is removed (expiry, session end), e.g. to release its port. */
  onRemove: ((f: number) => void) | null = null;

  private readonly meta: Int32Array;
  private readonly links: Int32Array;
  private readonly sess: Int32Array;
  protected readonly buckets: Int32Array;
  protected readonly mask: number;
  protected readonly seed: number;

  /** Bytes of the buffer a table of `capacity` flows with `words`-word addresses, for sessions 1-maxSession, needs. */
  static bytesFor(capacity: number, words: number, maxSession: number = DEFAULT_TABLE_SESSIONS): number {
    checkCapacity(capacity, maxSession);
    return 4 * (capacity * (strideFor(words) + LINK_WORDS) + bucketCount(capacity) + (maxSession + 1) * SESSION_WORDS + META_WORDS);
  }

  protected constructor(capacity: number, seed: number, words: number, memory: SharedArrayBuffer | undefined, maxSession: number) {
    const bytes = FlowTableBase.bytesFor(capacity, words, maxSession);
    if (memory && memory.byteLength !== bytes) {
      throw new RangeError(`flow table memory: ${memory.byteLength} bytes, a table of ${capacity} flows needs ${bytes}`);
    }
    this.capacity = capacity;
    this.maxSession = maxSession;
    this.seed = seed >>> 0;
    const buf = memory ?? new ArrayBuffer(bytes);
    let at = 0;
    const take = <T>(make: new (b: ArrayBufferLike, o: number, n: number) => T, n: number, size: number): T => {
      const a = new make(buf, at, n);
      at += n * size;
      return a;
    };
    const size = bucketCount(capacity);
    this.words = words;
    this.stride = strideFor(words);
    // Records first, then the buckets, the links, the sessions and the counters.
    this.rec = take(Int32Array, capacity * this.stride, 4);
    this.addr = new Uint32Array(buf, 0, capacity * this.stride);
    this.buckets = take(Int32Array, size, 4);
    this.links = take(Int32Array, capacity * LINK_WORDS, 4);
    this.sess = take(Int32Array, (maxSession + 1) * SESSION_WORDS, 4);
    this.meta = take(Int32Array, META_WORDS, 4);
    this.mask = size - 1;
    if (this.meta[META_READY] === 0) {
      // Every flow number on the free stack, low numbers on top (handed out first).
      const links = this.links;
      for (let f = 0; f < capacity; f++) {
        links[f * LINK_WORDS + L_PREV] = UNLISTED;
        links[f * LINK_WORDS + L_NEXT] = f + 1 < capacity ? f + 1 : NO_FLOW;
      }
      this.meta[META_FREE] = 0;
      this.meta[META_HEAD] = NO_FLOW;
      this.meta[META_TAIL] = NO_FLOW;
      for (let s = 0; s <= maxSession; s++) {
        this.sess[s * SESSION_WORDS + S_HEAD] = NO_FLOW;
        this.sess[s * SESSION_WORDS + S_TAIL] = NO_FLOW;
      }
      this.buckets.fill(EMPTY);
      Atomics.store(this.meta, META_READY, 1);
    }
  }

  /** Live flows. */
  get count(): number {
    return this.meta[META_COUNT]!;
  }

  /** Bytes of memory held per flow of capacity (record, list links and hash buckets). */
  bytesPerFlow(): number {
    return 4 * (this.stride + LINK_WORDS) + (this.buckets.length * 4) / this.capacity;
  }

  /** Live flows of session `session`. */
  sessionFlows(session: number): number {
    return this.sess[session * SESSION_WORDS + S_COUNT]!;
  }

  /** Live flows that may be evicted. */
  get evictableCount(): number {
    return this.meta[META_EVICTABLE]!;
  }

  /** Whether live flow f may be evicted (it is not assured). */
  evictable(f: number): boolean {
    return this.links[f * LINK_WORDS + L_PREV] !== UNLISTED;
  }

  /** The flow makeRoom would evict first: the table's (session 0) or a session's; NO_FLOW if none. */
  oldestEvictable(session = 0): number {
    return session === 0 ? this.meta[META_HEAD]! : this.sess[session * SESSION_WORDS + S_HEAD]!;
  }

  sessionOf(f: number): number {
    return this.rec[f * this.stride + R_SESSION]!;
  }
  protoOf(f: number): number {
    return (this.rec[f * this.stride + R_OUTER]! >>> 16) & 0xff;
  }
  /** Translator-defined state number; 0 means the slot is free. */
  stateOf(f: number): number {
    return (this.rec[f * this.stride + R_OUTER]! >>> 24) & STATE_MASK;
  }
  /** Sets the state, keeping the flags beside it. */
  setState(f: number, state: number): void {
    const i = f * this.stride + R_OUTER;
    this.rec[i] = (this.rec[i]! & ~(STATE_MASK << 24)) | (state << 24);
  }
  /** Whole seconds of the caller's clock after which the flow may be dropped. */
  deadlineOf(f: number): number {
    return this.rec[f * this.stride + R_DEADLINE]! >>> 0;
  }
  setDeadline(f: number, deadline: number): void {
    this.rec[f * this.stride + R_DEADLINE] = deadline;
  }
  innerPortOf(f: number): number {
    return this.rec[f * this.stride + R_PORTS]! >>> 16;
  }
  remotePortOf(f: number): number {
    return this.rec[f * this.stride + R_PORTS]! & 0xffff;
  }
  outerPortOf(f: number): number {
    return this.rec[f * this.stride + R_OUTER]! & 0xffff;
  }
  /** Where flow f's inner, outer and remote address words start in `addr`. */
  innerAt(f: number): number {
    return f * this.stride + R_ADDR;
  }
  outerAt(f: number): number {
    return f * this.stride + R_ADDR + this.words;
  }
  remoteAt(f: number): number {
    return f * this.stride + R_ADDR + 2 * this.words;
  }

  /** The full hash of flow f's key on `side`. */
  protected abstract hashOf(f: number, side: number): number;

  /**
   * Takes a free flow number and fills the fields all tables share; NO_FLOW
   * when full. A new flow is evictable until setAssured says otherwise.
   */
  protected alloc(
    session: number,
    proto: number,
    innerPort: number,
    outerPort: number,
    remotePort: number,
    state: number,
    deadline: number,
  ): number {
    if (!(session >= 0 && session <= this.maxSession)) {
      throw new RangeError(`flow table: session ${session} is outside 0-${this.maxSession}`);
    }
    const meta = this.meta;
    const f = meta[META_FREE]!;
    if (f === NO_FLOW) return NO_FLOW;
    meta[META_FREE] = this.links[f * LINK_WORDS + L_NEXT]!;
    const r = f * this.stride;
    const rec = this.rec;
    rec[r + R_SESSION] = session;
    rec[r + R_PORTS] = portsWord(innerPort, remotePort);
    rec[r + R_OUTER] = outerPort | (proto << 16) | (state << 24);
    rec[r + R_DEADLINE] = deadline;
    meta[META_COUNT] = meta[META_COUNT]! + 1;
    const si = session * SESSION_WORDS + S_COUNT;
    this.sess[si] = this.sess[si]! + 1;
    this.list(f, session);
    return f;
  }

  /** Puts flow f at the tail of the table's and its session's evictable lists. */
  private list(f: number, session: number): void {
    const links = this.links;
    const meta = this.meta;
    const sess = this.sess;
    const i = f * LINK_WORDS;
    const tail = meta[META_TAIL]!;
    links[i + L_PREV] = tail;
    links[i + L_NEXT] = NO_FLOW;
    if (tail === NO_FLOW) meta[META_HEAD] = f;
    else links[tail * LINK_WORDS + L_NEXT] = f;
    meta[META_TAIL] = f;
    const s = session * SESSION_WORDS;
    const stail = sess[s + S_TAIL]!;
    links[i + L_SPREV] = stail;
    links[i + L_SNEXT] = NO_FLOW;
    if (stail === NO_FLOW) sess[s + S_HEAD] = f;
    else links[stail * LINK_WORDS + L_SNEXT] = f;
    sess[s + S_TAIL] = f;
    meta[META_EVICTABLE] = meta[META_EVICTABLE]! + 1;
  }

  /** Takes flow f off both evictable lists. */
  private unlist(f: number, session: number): void {
    const links = this.links;
    const meta = this.meta;
    const sess = this.sess;
    const i = f * LINK_WORDS;
    const prev = links[i + L_PREV]!;
    const next = links[i + L_NEXT]!;
    if (prev === NO_FLOW) meta[META_HEAD] = next;
    else links[prev * LINK_WORDS + L_NEXT] = next;
    if (next === NO_FLOW) meta[META_TAIL] = prev;
    else links[next * LINK_WORDS + L_PREV] = prev;
    const s = session * SESSION_WORDS;
    const sprev = links[i + L_SPREV]!;
    const snext = links[i + L_SNEXT]!;
    if (sprev === NO_FLOW) sess[s + S_HEAD] = snext;
    else links[sprev * LINK_WORDS + L_SNEXT] = snext;
    if (snext === NO_FLOW) sess[s + S_TAIL] = sprev;
    else links[snext * LINK_WORDS + L_SPREV] = sprev;
    links[i + L_PREV] = UNLISTED;
    meta[META_EVICTABLE] = meta[META_EVICTABLE]! - 1;
  }

  /**
   * Tells the table whether live flow f is assured (never evicted while
   * others are not) or evictable; a flow that becomes evictable joins the
   * lists' tails, so the order is that of becoming evictable.
   */
  setAssured(f: number, assured: boolean): void {
    const listed = this.links[f * LINK_WORDS + L_PREV] !== UNLISTED;
    if (assured === listed) {
      if (assured) this.unlist(f, this.sessionOf(f));
      else this.list(f, this.sessionOf(f));
    }
  }

  /**
   * Makes room for a new flow of `session`, which may hold at most `limit`
   * flows: at its limit, its own oldest evictable flow goes (none:
   * ROOM_SESSION_LIMIT); in a full table, the table's oldest evictable flow
   * (none: ROOM_TABLE_FULL). Returns ROOM_FREE or ROOM_EVICTED when the
   * flow can be inserted.
   */
  makeRoom(session: number, limit: number): number {
    if (this.sess[session * SESSION_WORDS + S_COUNT]! >= limit) {
      const f = this.sess[session * SESSION_WORDS + S_HEAD]!;
      if (f === NO_FLOW) return ROOM_SESSION_LIMIT;
      this.remove(f);
      return ROOM_EVICTED;
    }
    if (this.meta[META_COUNT]! >= this.capacity) {
      const f = this.meta[META_HEAD]!;
      if (f === NO_FLOW) return ROOM_TABLE_FULL;
      this.remove(f);
      return ROOM_EVICTED;
    }
    return ROOM_FREE;
  }

  /** Puts flow f's `side` into the buckets; `hash` is its key's. */
  protected place(hash: number, f: number, side: number): void {
    let i = hash & this.mask;
    while (this.buckets[i] !== EMPTY) i = (i + 1) & this.mask;
    this.buckets[i] = entryOf(hash, f, side);
  }

  /** Removes flow `f` (which must be live) from the table. */
  remove(f: number): void {
    this.onRemove?.(f);
    this.unplace(entryOf(this.hashOf(f, SIDE_INNER), f, SIDE_INNER));
    this.unplace(entryOf(this.hashOf(f, SIDE_OUTER), f, SIDE_OUTER));
    const session = this.sessionOf(f);
    const links = this.links;
    if (links[f * LINK_WORDS + L_PREV] !== UNLISTED) this.unlist(f, session);
    const si = session * SESSION_WORDS + S_COUNT;
    this.sess[si] = this.sess[si]! - 1;
    const at = f * this.stride + R_OUTER;
    this.rec[at] = this.rec[at]! & 0xffffff; // state and flags 0: free
    const meta = this.meta;
    links[f * LINK_WORDS + L_NEXT] = meta[META_FREE]!;
    meta[META_FREE] = f;
    meta[META_COUNT] = meta[META_COUNT]! - 1;
  }

  /** The bucket an entry hashes to. */
  private homeOf(entry: number): number {
    return this.hashOf((entry & FLOW_BITS) >>> 1, entry & 1) & this.mask;
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
      if (this.stateOf(c) !== 0 && this.deadlineOf(c) < now) {
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
    return this.removeIf((f) => this.sessionOf(f) === session);
  }

  /** Drops every flow that `doomed` says so of; returns how many. Not for the packet path (a call a flow). */
  removeIf(doomed: (f: number) => boolean): number {
    let dropped = 0;
    for (let f = 0; f < this.capacity; f++) {
      if (this.stateOf(f) !== 0 && doomed(f)) {
        this.remove(f);
        dropped++;
      }
    }
    return dropped;
  }
}

/** IPv4 flows: addresses are unsigned 32-bit numbers. */
export class FlowTable extends FlowTableBase {
  /**
   * `memory`: a SharedArrayBuffer of bytesFor(capacity, maxSession) to open
   * (or set up) a table shared between threads.
   */
  constructor(capacity: number, seed: number = randomSeed(), memory?: SharedArrayBuffer, maxSession: number = DEFAULT_TABLE_SESSIONS) {
    super(capacity, seed, 1, memory, maxSession);
  }

  static override bytesFor(capacity: number, maxSession: number = DEFAULT_TABLE_SESSIONS): number {
    return FlowTableBase.bytesFor(capacity, 1, maxSession);
  }

  innerAddrOf(f: number): number {
    return this.addr[this.innerAt(f)]!;
  }
  outerAddrOf(f: number): number {
    return this.addr[this.outerAt(f)]!;
  }
  remoteAddrOf(f: number): number {
    return this.addr[this.remoteAt(f)]!;
  }

  /** The hash of a packet from session `session`: `ports` is portsWord(inner port, remote port). */
  innerHash(session: number, proto: number, innerAddr: number, remoteAddr: number, ports: number): number {
    return mix(this.seed, innerAddr, remoteAddr, ports, proto, session);
  }

  /** The hash of a packet from the uplink: `ports` is portsWord(outer port, remote port). */
  outerHash(proto: number, outerAddr: number, remoteAddr: number, ports: number): number {
    // Bit 8 of the protocol word tells the sides apart.
    return mix(this.seed, outerAddr, remoteAddr, ports, proto | 0x100, 0);
  }

  protected hashOf(f: number, side: number): number {
    const r = f * 8;
    const rec = this.rec;
    const w = rec[r + R_OUTER]!;
    const proto = (w >>> 16) & 0xff;
    if (side === SIDE_INNER)
      return this.innerHash(rec[r + R_SESSION]!, proto, this.addr[r + R_ADDR]!, this.addr[r + R_ADDR + 2]!, rec[r + R_PORTS]!);
    return this.outerHash(proto, this.addr[r + R_ADDR + 1]!, this.addr[r + R_ADDR + 2]!, portsWord(w & 0xffff, rec[r + R_PORTS]! & 0xffff));
  }

  /** The flow of a packet from session `session`, or NO_FLOW. */
  lookupInner(session: number, proto: number, innerAddr: number, innerPort: number, remoteAddr: number, remotePort: number): number {
    const ports = portsWord(innerPort, remotePort);
    return this.findInner(this.innerHash(session, proto, innerAddr, remoteAddr, ports), session, proto, innerAddr, remoteAddr, ports);
  }

  /** lookupInner with the hash already made (innerHash) and the ports as one word. */
  findInner(h: number, session: number, proto: number, innerAddr: number, remoteAddr: number, ports: number): number {
    const want = tagSide(h, SIDE_INNER);
    const buckets = this.buckets;
    const rec = this.rec;
    const addr = this.addr;
    const m = this.mask;
    for (let i = h & m; ; i = (i + 1) & m) {
      const e = buckets[i]!;
      if (e === EMPTY) return NO_FLOW;
      if ((e & TAG_SIDE) === want) {
        const f = (e & FLOW_BITS) >>> 1;
        const r = f * 8;
        if (
          rec[r + R_PORTS] === ports &&
          addr[r + R_ADDR + 2] === remoteAddr &&
          addr[r + R_ADDR] === innerAddr &&
          rec[r + R_SESSION] === session &&
          ((rec[r + R_OUTER]! >>> 16) & 0xff) === proto
        ) {
          return f;
        }
      }
    }
  }

  /** The flow of a packet arriving from the uplink, or NO_FLOW. */
  lookupOuter(proto: number, outerAddr: number, outerPort: number, remoteAddr: number, remotePort: number): number {
    const ports = portsWord(outerPort, remotePort);
    return this.findOuter(this.outerHash(proto, outerAddr, remoteAddr, ports), proto, outerAddr, remoteAddr, ports);
  }

  /** lookupOuter with the hash already made (outerHash) and the ports as one word. */
  findOuter(h: number, proto: number, outerAddr: number, remoteAddr: number, ports: number): number {
    const want = tagSide(h, SIDE_OUTER);
    const buckets = this.buckets;
    const rec = this.rec;
    const addr = this.addr;
    const m = this.mask;
    const outerWord = (ports >>> 16) | (proto << 16);
    const remotePort = ports & 0xffff;
    for (let i = h & m; ; i = (i + 1) & m) {
      const e = buckets[i]!;
      if (e === EMPTY) return NO_FLOW;
      if ((e & TAG_SIDE) === want) {
        const f = (e & FLOW_BITS) >>> 1;
        const r = f * 8;
        if (
          (rec[r + R_OUTER]! & 0xffffff) === outerWord &&
          (rec[r + R_PORTS]! & 0xffff) === remotePort &&
          addr[r + R_ADDR + 2] === remoteAddr &&
          addr[r + R_ADDR + 1] === outerAddr
        ) {
          return f;
        }
      }
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
    this.addr[this.innerAt(f)] = innerAddr;
    this.addr[this.outerAt(f)] = outerAddr;
    this.addr[this.remoteAt(f)] = remoteAddr;
    this.place(this.innerHash(session, proto, innerAddr, remoteAddr, portsWord(innerPort, remotePort)), f, SIDE_INNER);
    this.place(this.outerHash(proto, outerAddr, remoteAddr, portsWord(outerPort, remotePort)), f, SIDE_OUTER);
    return f;
  }
}

/**
 * IPv6 flows: an address is four unsigned 32-bit words, passed as an array
 * and an offset (no allocation); flow f's are in `addr` at innerAt(f),
 * outerAt(f) and remoteAt(f).
 */
export class FlowTable6 extends FlowTableBase {
  constructor(capacity: number, seed: number = randomSeed(), memory?: SharedArrayBuffer, maxSession: number = DEFAULT_TABLE_SESSIONS) {
    super(capacity, seed, 4, memory, maxSession);
  }

  static override bytesFor(capacity: number, maxSession: number = DEFAULT_TABLE_SESSIONS): number {
    return FlowTableBase.bytesFor(capacity, 4, maxSession);
  }

  /** Folds an address into one word for the hash (all its bits count). */
  private fold(w: Uint32Array, o: number): number {
    return mix(this.seed, w[o]!, w[o + 1]!, w[o + 2]!, w[o + 3]!, 0x6);
  }

  private innerHash(
    session: number,
    proto: number,
    inner: Uint32Array,
    io: number,
    innerPort: number,
    remote: Uint32Array,
    ro: number,
    remotePort: number,
  ): number {
    return mix(this.seed, this.fold(inner, io), this.fold(remote, ro), portsWord(innerPort, remotePort), proto, session);
  }

  private outerHash(
    proto: number,
    outer: Uint32Array,
    oo: number,
    outerPort: number,
    remote: Uint32Array,
    ro: number,
    remotePort: number,
  ): number {
    return mix(this.seed, this.fold(outer, oo), this.fold(remote, ro), portsWord(outerPort, remotePort), proto | 0x100, 0);
  }

  protected hashOf(f: number, side: number): number {
    const a = this.addr;
    return side === SIDE_INNER
      ? this.innerHash(
          this.sessionOf(f),
          this.protoOf(f),
          a,
          this.innerAt(f),
          this.innerPortOf(f),
          a,
          this.remoteAt(f),
          this.remotePortOf(f),
        )
      : this.outerHash(this.protoOf(f), a, this.outerAt(f), this.outerPortOf(f), a, this.remoteAt(f), this.remotePortOf(f));
  }

  lookupInner(
    session: number,
    proto: number,
    inner: Uint32Array,
    io: number,
    innerPort: number,
    remote: Uint32Array,
    ro: number,
    remotePort: number,
  ): number {
    const h = this.innerHash(session, proto, inner, io, innerPort, remote, ro, remotePort);
    const want = tagSide(h, SIDE_INNER);
    const ports = portsWord(innerPort, remotePort);
    const rec = this.rec;
    const a = this.addr;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const e = this.buckets[i]!;
      if (e === EMPTY) return NO_FLOW;
      if ((e & TAG_SIDE) === want) {
        const f = (e & FLOW_BITS) >>> 1;
        const r = f * 16;
        if (
          rec[r + R_PORTS] === ports &&
          rec[r + R_SESSION] === session &&
          this.protoOf(f) === proto &&
          sameAddress6(a, r + R_ADDR, inner, io) &&
          sameAddress6(a, r + R_ADDR + 8, remote, ro)
        ) {
          return f;
        }
      }
    }
  }

  lookupOuter(
    proto: number,
    outer: Uint32Array,
    oo: number,
    outerPort: number,
    remote: Uint32Array,
    ro: number,
    remotePort: number,
  ): number {
    const h = this.outerHash(proto, outer, oo, outerPort, remote, ro, remotePort);
    const want = tagSide(h, SIDE_OUTER);
    const outerWord = outerPort | (proto << 16);
    const rec = this.rec;
    const a = this.addr;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const e = this.buckets[i]!;
      if (e === EMPTY) return NO_FLOW;
      if ((e & TAG_SIDE) === want) {
        const f = (e & FLOW_BITS) >>> 1;
        const r = f * 16;
        if (
          (rec[r + R_OUTER]! & 0xffffff) === outerWord &&
          (rec[r + R_PORTS]! & 0xffff) === remotePort &&
          sameAddress6(a, r + R_ADDR + 4, outer, oo) &&
          sameAddress6(a, r + R_ADDR + 8, remote, ro)
        ) {
          return f;
        }
      }
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
    const a = f * 16 + R_ADDR;
    for (let k = 0; k < 4; k++) {
      this.addr[a + k] = inner[io + k]!;
      this.addr[a + 4 + k] = outer[oo + k]!;
      this.addr[a + 8 + k] = remote[ro + k]!;
    }
    this.place(this.innerHash(session, proto, inner, io, innerPort, remote, ro, remotePort), f, SIDE_INNER);
    this.place(this.outerHash(proto, outer, oo, outerPort, remote, ro, remotePort), f, SIDE_OUTER);
    return f;
  }
}

export function sameAddress6(a: Uint32Array, ao: number, b: Uint32Array, bo: number): boolean {
  return a[ao] === b[bo] && a[ao + 1] === b[bo + 1] && a[ao + 2] === b[bo + 2] && a[ao + 3] === b[bo + 3];
}
