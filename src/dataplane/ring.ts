// The capture tap's ring: one dataplane worker copies packets in, the gateway's thread takes them out; full means left out and counted.
//
// One producer (a worker), one consumer (the gateway's main thread), over a
// SharedArrayBuffer:
//
//   [ head | tail | pad | pad ]  Int32 words: where the producer writes next, where the consumer reads next
//   [ dropped per slot, side  ]  Float64: packets left out because the ring was full, per session slot (0: none) and side
//   [ data ...                ]  records, each 4-byte aligned:
//
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |            record length (header + data, padded to 4)         |
//   |            slot (session id; 0: none)                         |
//   |            captured length                                    |
//   |            original length                                    |
//   |            timestamp, microseconds, high 32 bits              |
//   |            timestamp, microseconds, low 32 bits               |
//   |      side     |   direction   |            (zero)             |
//   +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//   |            packet bytes ...                                   |
//
// A record that does not fit before the end leaves a WRAP word there and goes
// at offset 0. head == tail means empty, so the producer never fills the
// ring to the last byte. The producer publishes a record by storing head
// after writing it, the consumer frees it by storing tail after reading it
// (Atomics, so the bytes are seen before the offsets that cover them).

const HEAD = 0;
const TAIL = 1;
const CTL_BYTES = 16;
const WRAP = -1;

export const RECORD_HEADER = 28;
const H_LEN = 0;
const H_SLOT = 1;
const H_CAPLEN = 2;
const H_ORIGLEN = 3;
const H_TS_HI = 4;
const H_TS_LO = 5;
const H_SIDE = 6;

/** Which side of the translation a packet was seen on. */
export const SIDE_INNER = 0;
export const SIDE_OUTER = 1;
/** Which way it was going, as the gateway saw it: read from a device, or written to one. */
export const DIR_IN = 1;
export const DIR_OUT = 2;

/** Default bytes of a worker's ring. */
export const DEFAULT_RING_BYTES = 8 << 20;

/** A record as the consumer sees it: `data` is a view into the ring, valid only until the callback returns. */
export interface RingRecord {
  slot: number;
  side: number;
  direction: number;
  /** Microseconds since the epoch. */
  timestamp: number;
  origLen: number;
  data: Uint8Array;
}

export class CaptureRing {
  readonly memory: SharedArrayBuffer;
  private readonly ctl: Int32Array;
  /** Packets left out, at slot * 2 + side. */
  readonly dropped: Float64Array;
  private readonly data: Uint8Array;
  private readonly words: Int32Array;
  private readonly size: number;
  /** The producer's own copy of head (only it writes head). */
  private head: number;

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
    this.ctl = new Int32Array(memory, 0, 4);
    this.dropped = new Float64Array(memory, CTL_BYTES, (maxSession + 1) * 2);
    const at = CTL_BYTES + (maxSession + 1) * 16;
    this.data = new Uint8Array(memory, at, dataBytes);
    this.words = new Int32Array(memory, at, dataBytes >> 2);
    this.size = dataBytes;
    this.head = Atomics.load(this.ctl, HEAD);
  }

  /**
   * Producer: copies buf[off, off + min(len, snap)) in as a record of `slot`;
   * false (and counted in dropped[slot * 2 + side]) when the ring has no room for it.
   */
  push(slot: number, side: number, direction: number, timestamp: number, buf: Uint8Array, off: number, len: number, snap: number): boolean {
    const cap = len < snap ? len : snap;
    const need = RECORD_HEADER + ((cap + 3) & ~3);
    const size = this.size;
    const h = this.head;
    const t = Atomics.load(this.ctl, TAIL);
    let at: number;
    if (h >= t) {
      if (h + need < size || (h + need === size && t > 0)) at = h;
      else if (need < t) {
        this.words[h >> 2] = WRAP;
        at = 0;
      } else at = -1;
    } else at = h + need < t ? h : -1;
    if (at < 0) {
      this.dropped[slot * 2 + side]!++;
      return false;
    }
    const w = this.words;
    const i = at >> 2;
    w[i + H_LEN] = need;
    w[i + H_SLOT] = slot;
    w[i + H_CAPLEN] = cap;
    w[i + H_ORIGLEN] = len;
    w[i + H_TS_HI] = Math.floor(timestamp / 0x100000000);
    w[i + H_TS_LO] = timestamp >>> 0;
    w[i + H_SIDE] = side | (direction << 8);
    this.data.set(buf.subarray(off, off + cap), at + RECORD_HEADER);
    const next = at + need;
    this.head = next === size ? 0 : next;
    Atomics.store(this.ctl, HEAD, this.head);
    return true;
  }

  /** Consumer: hands at most `max` records to `take`, oldest first, and frees them; returns how many. */
  drain(take: (r: RingRecord) => void, max = Infinity): number {
    const size = this.size;
    const w = this.words;
    let t = Atomics.load(this.ctl, TAIL);
    const h = Atomics.load(this.ctl, HEAD);
    let n = 0;
    const r: RingRecord = { slot: 0, side: 0, direction: 0, timestamp: 0, origLen: 0, data: this.data.subarray(0, 0) };
    while (t !== h && n < max) {
      const i = t >> 2;
      const len = w[i + H_LEN]!;
      if (len === WRAP) {
        t = 0;
        continue;
      }
      const side = w[i + H_SIDE]!;
      r.slot = w[i + H_SLOT]!;
      r.side = side & 0xff;
      r.direction = (side >>> 8) & 0xff;
      r.timestamp = (w[i + H_TS_HI]! >>> 0) * 0x100000000 + (w[i + H_TS_LO]! >>> 0);
      r.origLen = w[i + H_ORIGLEN]!;
      r.data = this.data.subarray(t + RECORD_HEADER, t + RECORD_HEADER + w[i + H_CAPLEN]!);
      take(r);
      n++;
      t += len;
      if (t === size) t = 0;
    }
    Atomics.store(this.ctl, TAIL, t);
    return n;
  }

  /** Consumer: whether records wait. */
  get pending(): boolean {
    return Atomics.load(this.ctl, HEAD) !== Atomics.load(this.ctl, TAIL);
  }
}
