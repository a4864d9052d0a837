// The capture tap's ring: one dataplane worker copies packets in, the gateway's thread takes them out; full means left out and counted.
//
// One producer (a worker), one consumer (the gateway's main thread), over a
// SharedArrayBuffer:
//
//   [ head ... | tail ...     ]  Int32 words, a cache line each: where the producer writes next, where the consumer reads next
//   [ dropped per slot, side  ]  Float64: packets left out because the ring was full, per session slot (0: none) and side
//   [ data ...                ]  records, each 4-byte aligned:
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |            record length (8 + the block's)                    |
//   |            slot (session id; 0: none)                         |
//   +---------------------------------------------------------------+
//   |  a pcapng Enhanced Packet Block, in host byte order, as a     |
//   |  file holds it: type 6, length, interface (= the side),       |
//   |  timestamp (µs, high and low words), captured and original    |
//   |  length, the packet bytes padded to 32 bits, epb_flags (the   |
//   |  direction), end of options, length                           |
//   +---------------------------------------------------------------+
//
// So the consumer writes captured packets to a file or socket straight from
// the ring, with no copy of its own, and frees them once written: the ring is
// the capture's queue, and a writer that falls behind makes the worker leave
// packets out (counted), never wait.
//
// A record that does not fit before the end leaves a WRAP word there and goes
// at offset 0. head == tail means empty, so the producer never fills the
// ring to the last byte. The producer publishes a record by storing head
// after writing it, the consumer frees it by storing tail after reading it
// (Atomics, so the bytes are seen before the offsets that cover them). A
// record may be staged (written, not yet published), then published or
// forgotten: a packet from the uplink is staged as it came, before the
// translator says whose it is.

const HEAD = 0;
const TAIL = 16;
const CTL_BYTES = 128;
const WRAP = -1;

/** The record's own words, then the block's fixed part (type, length, interface, timestamp, lengths). */
const PREFIX = 8;
const R_LEN = 0;
const R_SLOT = 1;
const B_TYPE = 2;
const B_LEN = 3;
const B_IFACE = 4;
const B_TS_HI = 5;
const B_TS_LO = 6;
const B_CAPLEN = 7;
const B_ORIGLEN = 8;
/** Bytes before the packet's, and after it (epb_flags: code, length, value; end of options; the length again). */
export const RECORD_HEADER = PREFIX + 28;
const TRAILER = 16;
const EPB = 6;
/** opt code 2 (epb_flags) and length 4, as one host-order word (two 16-bit fields). */
const FLAGS_OPTION = new Uint32Array(new Uint16Array([2, 4]).buffer)[0]!;

/** Which side of the translation a packet was seen on. */
export const SIDE_INNER = 0;
export const SIDE_OUTER = 1;
/** Which way it was going, as the gateway saw it: read from a device, or written to one. */
export const DIR_IN = 1;
export const DIR_OUT = 2;

/** Default bytes of a worker's ring. */
export const DEFAULT_RING_BYTES = 8 << 20;

/** A record as the consumer sees it: `data` is a view into the ring, valid only until it is freed. */
export interface RingRecord {
  slot: number;
  side: number;
  direction: number;
  /** Microseconds since the epoch. */
  timestamp: number;
  origLen: number;
  data: Uint8Array;
  /** Where its pcapng block is in `CaptureRing.bytes`, and its length: what a file of this capture holds for it. */
  blockAt: number;
  blockLen: number;
}

/** Copies n bytes: a loop for small packets (no view allocated per packet), set() over views for large ones. */
export function copyBytes(dst: Uint8Array, at: number, src: Uint8Array, off: number, n: number): void {
  if (n <= 256) {
    for (let i = 0; i < n; i++) dst[at + i] = src[off + i]!;
  } else {
    dst.set(src.subarray(off, off + n), at);
  }
}

export class CaptureRing {
  readonly memory: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  /** Packets left out, at slot * 2 + side. */
  readonly dropped: Float64Array;
  private readonly data: Uint8Array;
  /** The records' bytes (for views of their blocks), from `dataOffset` in `memory`. */
  get bytes(): Uint8Array {
    return this.data;
  }
  get dataOffset(): number {
    return this.data.byteOffset;
  }
  private readonly words: Int32Array;
  private readonly size: number;
  /** The producer's own copy of head (only it writes head), and the tail it last read. */
  private head: number;
  private tail: number;
  /** The consumer's: how far it has read (records up to here are freed by free()). */
  private readTo: number;
  private readonly record: RingRecord;
  /** Where head goes when the staged record is published (-1: none staged). */
  private staged = -1;
  private stagedAt = 0;

  /** Bytes of the ring of `dataBytes` of records for slots 0-maxSession. */
  static bytesFor(dataBytes: number, maxSession: number): number {
    return CTL_BYTES + (maxSession + 1) * 16 + dataBytes;
  }

  /** Opens (or, with a new SharedArrayBuffer, sets up: it is all zeroes) a ring of `dataBytes` (a multiple of 4). */
  constructor(memory: SharedArrayBuffer, dataBytes: number, maxSession: number) {
    if (dataBytes % 4 !== 0 || dataBytes < 1024)
      throw new RangeError(`capture ring of ${dataBytes} bytes: must be a multiple of 4, at least 1024`);
    if (memory.byteLength < CaptureRing.bytesFor(dataBytes, maxSession)) throw new RangeError('capture ring: memory too small');
    this.memory = memory;
    this.ctl = new Int32Array(memory, 0, CTL_BYTES >> 2);
    this.dropped = new Float64Array(memory, CTL_BYTES, (maxSession + 1) * 2);
    const at = CTL_BYTES + (maxSession + 1) * 16;
    this.data = new Uint8Array(memory, at, dataBytes);
    this.words = new Int32Array(memory, at, dataBytes >> 2);
    this.size = dataBytes;
    this.head = Atomics.load(this.ctl, HEAD);
    this.tail = Atomics.load(this.ctl, TAIL);
    this.readTo = this.tail;
    this.record = { slot: 0, side: 0, direction: 0, timestamp: 0, origLen: 0, data: this.data.subarray(0, 0), blockAt: 0, blockLen: 0 };
  }

  /** Where a record of `need` bytes goes with the consumer at `t`, or -1 (a WRAP word goes at head when it is 0 from there). */
  private place(h: number, t: number, need: number): number {
    const size = this.size;
    if (h >= t) {
      if (h + need < size || (h + need === size && t > 0)) return h;
      return need < t ? 0 : -1;
    }
    return h + need < t ? h : -1;
  }

  /**
   * Producer: copies buf[off, off + min(len, snap)) in as a record of `slot`;
   * false (and counted in dropped[slot * 2 + side]) when the ring has no room for it.
   */
  push(slot: number, side: number, direction: number, timestamp: number, buf: Uint8Array, off: number, len: number, snap: number): boolean {
    if (!this.stage(slot, side, direction, timestamp, buf, off, len, snap)) {
      this.dropped[slot * 2 + side]!++;
      return false;
    }
    this.publish();
    return true;
  }

  /** Producer: a packet left out of slot's side, for lack of room when it was staged. */
  leftOut(slot: number, side: number): void {
    this.dropped[slot * 2 + side]!++;
  }

  /**
   * Producer: writes a record without publishing it (publish() or a later
   * stage forgets it); false when the ring has no room (not counted).
   */
  stage(
    slot: number,
    side: number,
    direction: number,
    timestamp: number,
    buf: Uint8Array,
    off: number,
    len: number,
    snap: number,
  ): boolean {
    const cap = len < snap ? len : snap;
    const padded = (cap + 3) & ~3;
    const need = RECORD_HEADER + padded + TRAILER;
    const size = this.size;
    const h = this.head;
    this.staged = -1;
    // The tail read last time only ever understates the room: read it again only when that is not enough.
    let at = this.place(h, this.tail, need);
    if (at < 0) {
      this.tail = Atomics.load(this.ctl, TAIL);
      at = this.place(h, this.tail, need);
    }
    if (at < 0) return false;
    if (at === 0 && h !== 0) this.words[h >> 2] = WRAP;
    const w = this.words;
    const i = at >> 2;
    const block = need - PREFIX;
    w[i + R_LEN] = need;
    w[i + R_SLOT] = slot;
    w[i + B_TYPE] = EPB;
    w[i + B_LEN] = block;
    w[i + B_IFACE] = side;
    w[i + B_TS_HI] = Math.floor(timestamp / 0x100000000);
    w[i + B_TS_LO] = timestamp >>> 0;
    w[i + B_CAPLEN] = cap;
    w[i + B_ORIGLEN] = len;
    const d = at + RECORD_HEADER;
    copyBytes(this.data, d, buf, off, cap);
    for (let k = cap; k < padded; k++) this.data[d + k] = 0;
    const j = (d + padded) >> 2;
    w[j] = FLAGS_OPTION;
    w[j + 1] = direction;
    w[j + 2] = 0;
    w[j + 3] = block;
    const next = at + need;
    this.staged = next === size ? 0 : next;
    this.stagedAt = at;
    return true;
  }

  /** Producer: publishes the staged record, if there is one, as slot's (default: the slot it was staged for). */
  publish(slot = -1): void {
    if (this.staged < 0) return;
    if (slot >= 0) this.words[(this.stagedAt >> 2) + R_SLOT] = slot;
    this.head = this.staged;
    this.staged = -1;
    Atomics.store(this.ctl, HEAD, this.head);
  }

  /** Consumer: hands at most `max` records to `take`, oldest first, and frees them; returns how many. */
  drain(take: (r: RingRecord) => void, max = Infinity): number {
    const n = this.read(take, max);
    this.free();
    return n;
  }

  /**
   * Consumer: hands at most `max` records after those already read to
   * `take`, oldest first, without freeing them (their bytes stay as they are
   * until free()); returns how many.
   */
  read(take: (r: RingRecord) => void, max = Infinity): number {
    const size = this.size;
    const w = this.words;
    let t = this.readTo;
    const h = Atomics.load(this.ctl, HEAD);
    let n = 0;
    const r = this.record;
    while (t !== h && n < max) {
      const i = t >> 2;
      const len = w[i + R_LEN]!;
      if (len === WRAP) {
        t = 0;
        continue;
      }
      r.slot = w[i + R_SLOT]!;
      r.side = w[i + B_IFACE]!;
      r.timestamp = (w[i + B_TS_HI]! >>> 0) * 0x100000000 + (w[i + B_TS_LO]! >>> 0);
      r.origLen = w[i + B_ORIGLEN]!;
      const cap = w[i + B_CAPLEN]!;
      r.data = this.data.subarray(t + RECORD_HEADER, t + RECORD_HEADER + cap);
      r.direction = w[(t + RECORD_HEADER + ((cap + 3) & ~3)) / 4 + 1]!;
      r.blockAt = t + PREFIX;
      r.blockLen = len - PREFIX;
      take(r);
      n++;
      t += len;
      if (t === size) t = 0;
    }
    this.readTo = t;
    return n;
  }

  /** Consumer: frees every record read so far. */
  free(): void {
    Atomics.store(this.ctl, TAIL, this.readTo);
  }

  /** Consumer: whether records wait. */
  get pending(): boolean {
    return Atomics.load(this.ctl, HEAD) !== Atomics.load(this.ctl, TAIL);
  }
}
