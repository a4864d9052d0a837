// Port (and echo identifier) allocation for the shared address, endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1).
//
// A mapping is (session, protocol, inner port) -> outer port. Every flow from
// the same session and inner port uses the same outer port, whatever the
// remote: the mapping is endpoint-independent. Flows hold references; the
// outer port is free again when the last flow of the mapping expires. Ports
// never collide across sessions because each outer port has one owner.
// Each session may hold at most a quota of outer ports per protocol (RFC
// 6888 REQ-4), so that one session cannot take the whole range from the
// others; the count of ports each session holds lives in the same buffer.

/** Protocol slots: TCP, UDP and ICMP echo identifiers are separate spaces. */
export const PORTS_TCP = 0;
export const PORTS_UDP = 1;
export const PORTS_ICMP = 2;

const SLOTS = 3;

/** acquire() results besides a port: every port of the range taken; the session at its quota. */
export const PORTS_EXHAUSTED = -1;
export const PORTS_QUOTA = -2;

/** Outer ports one shared session may hold per protocol unless told otherwise. */
export const DEFAULT_SHARED_PORT_QUOTA = 512;
/** meta[] words: the scan cursor per slot, then ports in use per slot. */
const META_CURSOR = 0;
const META_USED = SLOTS;
const META_WORDS = 2 * SLOTS;
/** Mapping-index entries: a power of two at least twice the most mappings there can be (one per port and slot). */
const INDEX_SIZE = 1 << 18;
const NO_KEY = -1;

/**
 * All state lives in one buffer; given a SharedArrayBuffer of
 * bytesFor(maxSession) bytes, several threads can open the same allocator
 * (the first constructor sets it up). It does no locking of its own: callers
 * sharing it serialize their calls.
 */
export class PortAllocator {
  /** Bytes of the buffer an allocator for sessions 1-maxSession needs, whatever its range. */
  static bytesFor(maxSession = 0): number {
    return SLOTS * 65536 * (8 + 4) + INDEX_SIZE * (8 + 4) + (maxSession + 1) * SLOTS * 4 + META_WORDS * 4;
  }

  /** Mapping key owning each outer port, or -1: slot s's port p at [s * 65536 + p]. */
  private readonly owner: Float64Array;
  private readonly refs: Uint32Array;
  /** Mapping key -> outer port: open addressing, linear probing, backward-shift deletion. */
  private readonly indexKey: Float64Array;
  private readonly indexPort: Int32Array;
  /** Outer ports each session holds, per slot: session s's slot k at [s * SLOTS + k]. */
  private readonly held: Int32Array;
  private readonly meta: Int32Array;

  /**
   * Sessions 1-maxSession may each hold `quota` outer ports per protocol
   * slot (default: no quota); a session id past maxSession gets none when
   * there is a quota.
   */
  constructor(
    readonly lo: number,
    readonly hi: number,
    memory?: SharedArrayBuffer,
    readonly maxSession = 0,
    readonly quota = Infinity,
  ) {
    if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 1 && hi <= 65535 && lo <= hi)) {
      throw new RangeError(`shared port range ${lo}-${hi}: must be within 1-65535, low to high`);
    }
    if (!(quota === Infinity || (Number.isInteger(quota) && quota >= 1))) {
      throw new RangeError(`shared port quota ${quota}: must be a whole number of 1 or more`);
    }
    const bytes = PortAllocator.bytesFor(maxSession);
    if (memory && memory.byteLength !== bytes) {
      throw new RangeError(`port allocator memory: ${memory.byteLength} bytes, an allocator for ${maxSession} sessions needs ${bytes}`);
    }
    const buf = memory ?? new ArrayBuffer(bytes);
    const n = SLOTS * 65536;
    this.owner = new Float64Array(buf, 0, n);
    this.indexKey = new Float64Array(buf, n * 8, INDEX_SIZE);
    let at = (n + INDEX_SIZE) * 8;
    this.refs = new Uint32Array(buf, at, n);
    at += n * 4;
    this.indexPort = new Int32Array(buf, at, INDEX_SIZE);
    at += INDEX_SIZE * 4;
    this.held = new Int32Array(buf, at, (maxSession + 1) * SLOTS);
    at += (maxSession + 1) * SLOTS * 4;
    this.meta = new Int32Array(buf, at, META_WORDS);
    // A fresh buffer is all zeroes; a set-up one has a cursor in range.
    if (this.meta[META_CURSOR] === 0) {
      this.owner.fill(-1);
      this.indexKey.fill(NO_KEY);
      for (let s = 0; s < SLOTS; s++) this.meta[META_CURSOR + s] = lo;
    }
  }

  get size(): number {
    return this.hi - this.lo + 1;
  }

  /** Ports in use, per protocol slot. */
  get used(): number[] {
    const m = this.meta;
    return [m[META_USED]!, m[META_USED + 1]!, m[META_USED + 2]!];
  }

  /** Outer ports session `session` holds in a slot. */
  heldBy(slot: number, session: number): number {
    return session <= this.maxSession ? this.held[session * SLOTS + slot]! : 0;
  }

  private static key(slot: number, session: number, innerPort: number): number {
    return (session * SLOTS + slot) * 65536 + innerPort;
  }

  private static home(key: number): number {
    // key < 2^53: mix its low and high 32 bits.
    let h = Math.imul((key >>> 0) ^ Math.floor(key / 0x100000000), 0x9e3779b1);
    h ^= h >>> 15;
    h = Math.imul(h, 0x85ebca6b);
    h ^= h >>> 13;
    return h & (INDEX_SIZE - 1);
  }

  /** The index entry holding `key`, or -1. */
  private find(key: number): number {
    const keys = this.indexKey;
    for (let i = PortAllocator.home(key); ; i = (i + 1) & (INDEX_SIZE - 1)) {
      const k = keys[i]!;
      if (k === key) return i;
      if (k === NO_KEY) return -1;
    }
  }

  private index(key: number, port: number): void {
    const keys = this.indexKey;
    let i = PortAllocator.home(key);
    while (keys[i] !== NO_KEY) i = (i + 1) & (INDEX_SIZE - 1);
    keys[i] = key;
    this.indexPort[i] = port;
  }

  private unindex(key: number): void {
    const keys = this.indexKey;
    const ports = this.indexPort;
    const m = INDEX_SIZE - 1;
    let hole = this.find(key);
    if (hole < 0) return;
    for (let j = (hole + 1) & m; keys[j] !== NO_KEY; j = (j + 1) & m) {
      const home = PortAllocator.home(keys[j]!);
      // Can the entry at j move to `hole`? Only if hole lies cyclically in [home, j).
      if (((j - home) & m) >= ((j - hole) & m)) {
        keys[hole] = keys[j]!;
        ports[hole] = ports[j]!;
        hole = j;
      }
    }
    keys[hole] = NO_KEY;
  }

  /**
   * The outer port for (session, inner port), taking a reference;
   * PORTS_QUOTA when a new mapping would take the session past its quota,
   * PORTS_EXHAUSTED when every port is taken.
   */
  acquire(slot: number, session: number, innerPort: number): number {
    const key = PortAllocator.key(slot, session, innerPort);
    const base = slot * 65536;
    const owner = this.owner;
    const at = this.find(key);
    if (at >= 0) {
      const have = this.indexPort[at]!;
      this.refs[base + have] = this.refs[base + have]! + 1;
      return have;
    }
    const h = session * SLOTS + slot;
    if (session > this.maxSession ? this.quota !== Infinity : this.held[h]! >= this.quota) return PORTS_QUOTA;
    const meta = this.meta;
    if (meta[META_USED + slot]! >= this.size) return PORTS_EXHAUSTED;
    // Prefer the inner port itself when it is in range and free (port preservation), else scan on.
    let p = innerPort >= this.lo && innerPort <= this.hi && owner[base + innerPort] === -1 ? innerPort : meta[META_CURSOR + slot]!;
    while (owner[base + p] !== -1) p = p === this.hi ? this.lo : p + 1;
    meta[META_CURSOR + slot] = p === this.hi ? this.lo : p + 1;
    owner[base + p] = key;
    this.refs[base + p] = 1;
    this.index(key, p);
    meta[META_USED + slot] = meta[META_USED + slot]! + 1;
    if (session <= this.maxSession) this.held[h] = this.held[h]! + 1;
    return p;
  }

  /** Drops one reference to an outer port; frees it with the last one. */
  release(slot: number, outerPort: number): void {
    const i = slot * 65536 + outerPort;
    const key = this.owner[i]!;
    if (key === -1) return;
    const left = this.refs[i]! - 1;
    this.refs[i] = left;
    if (left > 0) return;
    this.unindex(key);
    this.owner[i] = -1;
    this.meta[META_USED + slot] = this.meta[META_USED + slot]! - 1;
    const session = Math.floor(Math.floor(key / 65536) / SLOTS);
    if (session <= this.maxSession) this.held[session * SLOTS + slot] = this.held[session * SLOTS + slot]! - 1;
  }

  /** Who holds an outer port: its session, or 0. */
  sessionOf(slot: number, outerPort: number): number {
    const k = this.owner[slot * 65536 + outerPort]!;
    return k < 0 ? 0 : Math.floor(Math.floor(k / 65536) / SLOTS);
  }
}

/** The protocol slot of an IP protocol number, or -1 if it has no ports. */
export function portSlot(proto: number): number {
  return proto === 6 ? PORTS_TCP : proto === 17 ? PORTS_UDP : proto === 1 ? PORTS_ICMP : -1;
}
