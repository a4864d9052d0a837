// The capture tap: which sessions are being captured (shared by every worker) and this worker's ring to copy their packets into.
import { CaptureRing, DIR_IN, DIR_OUT, SIDE_INNER, SIDE_OUTER } from './ring.js';

export { DIR_IN, DIR_OUT, SIDE_INNER, SIDE_OUTER };

// Words of the shared control array.
const C_ON = 0;
const C_ALL = 1;
const C_SNAP = 2;
const CONTROL_WORDS = 4;

/** What the gateway sets and every worker reads: captures on at all, all of them, the largest snaplen, per-slot wants. */
export class TapControl {
  readonly ctl: Int32Array;
  readonly want: Uint8Array;

  static memory(maxSession: number): SharedArrayBuffer {
    return new SharedArrayBuffer(CONTROL_WORDS * 4 + maxSession + 1);
  }

  constructor(readonly memory: SharedArrayBuffer) {
    this.ctl = new Int32Array(memory, 0, CONTROL_WORDS);
    this.want = new Uint8Array(memory, CONTROL_WORDS * 4);
  }

  /**
   * Sets what is captured: every packet (`all`), the slots listed, at most
   * `snaplen` bytes each; nothing when both are empty. Wants are added
   * before old ones go, and nothing is switched off on the way: a worker
   * reading meanwhile sees the old set or the new, never none.
   */
  set(all: boolean, slots: Iterable<number>, snaplen: number): void {
    const want = this.want;
    const next = new Uint8Array(want.length);
    let any = all;
    for (const s of slots) {
      if (s >= 1 && s < want.length) {
        next[s] = 1;
        any = true;
      }
    }
    for (let i = 0; i < want.length; i++) if (next[i] === 1 && want[i] === 0) Atomics.store(want, i, 1);
    Atomics.store(this.ctl, C_SNAP, Math.max(snaplen, Atomics.load(this.ctl, C_SNAP)));
    Atomics.store(this.ctl, C_ALL, all ? 1 : 0);
    Atomics.store(this.ctl, C_ON, any ? 1 : 0);
    Atomics.store(this.ctl, C_SNAP, snaplen);
    for (let i = 0; i < want.length; i++) if (next[i] === 0 && want[i] === 1) Atomics.store(want, i, 0);
  }
}

/** A worker's end: the shared control and its own ring. */
export class Tap {
  private readonly ctl: Int32Array;
  private readonly want: Uint8Array;
  private readonly origin = performance.timeOrigin;

  constructor(
    control: TapControl,
    readonly ring: CaptureRing,
  ) {
    this.ctl = control.ctl;
    this.want = control.want;
  }

  /** Whether any capture runs: the one read the packet path pays when none does. */
  get on(): boolean {
    return this.ctl[C_ON] !== 0;
  }

  get all(): boolean {
    return this.ctl[C_ALL] !== 0;
  }

  /** Whether slot `id`'s packets are wanted (by its own capture or by the uplink's). */
  wants(id: number): boolean {
    return this.ctl[C_ALL] !== 0 || this.want[id] !== 0;
  }

  /** Now, in microseconds since the epoch: one reading per packet, for both its sides. */
  stamp(): number {
    return Math.floor((this.origin + performance.now()) * 1000);
  }

  /** Copies a packet into the ring before it is known whose it is: publish() or leftOut() says, once it is. */
  stage(us: number, side: number, direction: number, buf: Uint8Array, off: number, len: number): boolean {
    return this.ring.stage(0, side, direction, us, buf, off, len, this.ctl[C_SNAP]!);
  }

  /** The staged packet is slot `id`'s: it goes in. */
  publish(id: number): void {
    this.ring.publish(id);
  }

  /** A packet of slot `id`'s side that the ring had no room for. */
  leftOut(id: number, side: number): void {
    this.ring.leftOut(id, side);
  }

  /** Copies a packet (its IP bytes) seen at `us` into the ring for slot `id`; when the ring is full it is left out and counted. */
  put(us: number, id: number, side: number, direction: number, buf: Uint8Array, off: number, len: number): void {
    this.ring.push(id, side, direction, us, buf, off, len, this.ctl[C_SNAP]!);
  }
}
