// Test helper: in-memory TUN pairs, wake-up, control channel and level-triggered poller for the dataplane loop (as wireguard-go's tuntest.ChannelTUN).
import type { Control, Poller, Source, Tun } from '../../src/dataplane/loop.js';
import type { FromWorker, ToWorker } from '../../src/dataplane/protocol.js';

/** What the in-memory poller can ask a source: whether a read would find something. */
export interface MemSource extends Source {
  readonly readable: boolean;
}

/**
 * A TUN pair in memory. The outside (the kernel's side, the test's) injects
 * packets, which the loop's side reads one per read(); what the loop writes
 * is collected in `written` for the outside to take.
 */
export class MemTun implements Tun, MemSource {
  private readonly inbound: Uint8Array[] = [];
  /** Packets the loop wrote, oldest first. */
  readonly written: Uint8Array[] = [];
  /** false: writes are refused (a full queue, a device gone). */
  accept = true;
  /** A -errno the next read returns instead of a packet, once (0: none). */
  failRead = 0;
  closed = false;
  /** Reads the loop made that returned a packet. */
  reads = 0;

  constructor(readonly name: string) {}

  /** The outside writes `p`: the loop's side can read it. */
  inject(...ps: Uint8Array[]): void {
    for (const p of ps) this.inbound.push(p.slice());
  }

  /** Packets injected and not read yet. */
  get pending(): number {
    return this.inbound.length;
  }

  /** The outside reads everything the loop wrote so far. */
  take(): Uint8Array[] {
    return this.written.splice(0);
  }

  get readable(): boolean {
    return !this.closed && (this.inbound.length > 0 || this.failRead !== 0);
  }

  read(buf: Uint8Array): number {
    if (this.closed) throw new Error(`${this.name}: read after close`);
    if (this.failRead !== 0) {
      const e = this.failRead;
      this.failRead = 0;
      return e;
    }
    const p = this.inbound.shift();
    if (p === undefined) return 0;
    const n = Math.min(p.length, buf.length);
    buf.set(p.subarray(0, n));
    this.reads++;
    return n;
  }

  write(buf: Uint8Array, off: number, len: number): boolean {
    if (this.closed) throw new Error(`${this.name}: write after close`);
    if (!this.accept) return false;
    this.written.push(buf.slice(off, off + len));
    return true;
  }

  close(): void {
    if (this.closed) throw new Error(`${this.name}: closed twice`);
    this.closed = true;
  }
}

/** The control channel's wake-up, an eventfd's way: readable once notified, until read. */
export class MemWake implements MemSource {
  private count = 0;
  notify(): void {
    this.count++;
  }
  get readable(): boolean {
    return this.count > 0;
  }
  read(buf: Uint8Array): number {
    if (this.count === 0) return 0;
    this.count = 0;
    return buf.length;
  }
}

/**
 * Both ends of the control channel: the test sends ToWorker messages (each
 * structured-cloned, as postMessage does, and the wake-up notified, as the
 * gateway writes the eventfd); the loop's answers collect in `answers`.
 */
export class MemControl implements Control {
  private readonly inbox: ToWorker[] = [];
  readonly answers: FromWorker[] = [];
  private seq = 0;

  constructor(private readonly wake: MemWake) {}

  /** Sends a command with the next sequence number; returns that number. */
  send(cmd: ToWorker extends infer T ? (T extends { seq: number } ? Omit<T, 'seq'> : never) : never): number {
    const seq = ++this.seq;
    this.inbox.push(structuredClone({ ...cmd, seq }));
    this.wake.notify();
    return seq;
  }

  /** The answer to message `seq`, if there is one yet. */
  answer(seq: number): FromWorker | undefined {
    return this.answers.find((m) => 'seq' in m && m.seq === seq);
  }

  receive(): ToWorker | undefined {
    return this.inbox.shift();
  }

  post(m: FromWorker): void {
    this.answers.push(structuredClone(m));
  }
}

/**
 * A level-triggered poller over MemSources: wait() reports, in the order they
 * were added, every watched source a read would find something in, now.
 * When none is, the loop is idle: wait() calls `onIdle` (the test's next
 * step) once and looks again, or returns 0, as a timeout would.
 */
export class MemPoller implements Poller<MemSource> {
  private readonly watched = new Set<MemSource>();
  /** Called when a wait finds nothing ready. */
  onIdle: (() => void) | null = null;
  /** The next add() throws this message (once), as epoll_ctl can fail. */
  refuseNext: string | null = null;
  closed = false;
  waits = 0;
  /** How many sources each wait reported. */
  readonly reported: number[] = [];
  /** A loop that waits more than this is stuck: wait() throws. */
  maxWaits = 10_000;

  watches(src: MemSource): boolean {
    return this.watched.has(src);
  }

  add(src: MemSource): void {
    if (this.closed) throw new Error('mem poller: add after close');
    if (this.refuseNext !== null) {
      const m = this.refuseNext;
      this.refuseNext = null;
      throw new Error(m);
    }
    if (this.watched.has(src)) throw new Error('mem poller: added twice');
    this.watched.add(src);
  }

  remove(src: MemSource): void {
    this.watched.delete(src);
  }

  wait(ready: (MemSource | null)[], timeoutMs: number): number {
    if (this.closed) throw new Error('mem poller: wait after close');
    if (!(timeoutMs > 0)) throw new Error(`mem poller: timeout ${timeoutMs}`);
    if (++this.waits > this.maxWaits) throw new Error(`mem poller: ${this.waits} waits, the loop is stuck`);
    let n = this.collect(ready);
    if (n === 0 && this.onIdle) {
      this.onIdle();
      n = this.collect(ready);
    }
    this.reported.push(n);
    return n;
  }

  private collect(ready: (MemSource | null)[]): number {
    let n = 0;
    for (const s of this.watched) {
      if (n === ready.length) break;
      if (s.readable) ready[n++] = s;
    }
    return n;
  }

  close(): void {
    if (this.closed) throw new Error('mem poller: closed twice');
    this.closed = true;
  }
}
