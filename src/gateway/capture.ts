// Captures: the dataplane's copies of a session's packets (or every packet) taken from the workers' rings and written as pcapng.
import { hostname, release, type as osType } from 'node:os';
import { DIR_IN, SIDE_INNER, SIDE_OUTER, type CaptureRing, type RingRecord, type TapControl } from '../dataplane/index.js';
import {
  EPB_INBOUND,
  EPB_OUTBOUND,
  enhancedPacket,
  interfaceDescription,
  interfaceStatistics,
  sectionHeader,
} from '../dataplane/pcapng.js';

/** tcpdump's default: every packet whole, TSO segments included. */
export const DEFAULT_SNAPLEN = 262144;
export const MAX_SNAPLEN = 262144;
/** Records taken from one ring per turn, so one busy worker's ring does not starve the others'. */
const TURN_RECORDS = 4096;

/** What a capture takes: one session's packets (by its dataplane slot), or every packet. */
export type CaptureTarget = { session: number; slot: number } | 'uplink';

export interface CaptureOptions {
  /** Bytes of each packet kept (default DEFAULT_SNAPLEN). */
  snaplen?: number;
  /** Stop after this many packets written (each side of the translation counts as one). */
  count?: number;
  /** vipnat's version, for the file's header. */
  version: string;
}

/** How a capture went: packets written, and packets left out because the writer fell behind. */
export interface CaptureResult {
  packets: number;
  leftOut: number;
  /** Why it ended: asked to, its count reached, its session gone, the gateway closing, the sink failing. */
  reason: 'stopped' | 'count' | 'session-ended' | 'closed' | 'sink-error';
}

/** Where a capture writes: a file, a socket (what a Writable offers). */
export interface CaptureSink {
  write(b: Buffer, cb?: (err?: Error | null) => void): boolean;
  readonly writableLength: number;
  on(event: 'error', f: (e: Error) => void): unknown;
  /** Batches the writes up to uncork() into one (writev), when the sink can. */
  cork?(): void;
  uncork?(): void;
  /** Drops the sink at once (a writer that stopped taking anything). */
  destroy?(): void;
}

/** How long a turn's writes may take before the captures still writing are dropped: one stalled reader must not stop the others. */
const STALL_MS = 10_000;

/** One running capture: stop() ends it (writing its statistics), `done` says how it went. */
export class Capture {
  readonly done: Promise<CaptureResult>;
  packets = 0;
  /** Per side (the file's interface): packets written. */
  readonly delivered = [0, 0];
  /** The rings' drop counts for this capture's slots when it began, per side. */
  readonly ringBase: number[];
  readonly startUs = nowUs();
  /** Packets after this are not its own (its session ended, its slot may serve another). */
  stopUs = Infinity;
  /** Why it is ending, once it is: it ends after the turn that writes what the rings still hold for it. */
  ending: CaptureResult['reason'] | null = null;
  private finish: (r: CaptureResult) => void = () => undefined;
  ended = false;

  constructor(
    private readonly owner: Captures,
    readonly target: CaptureTarget,
    readonly snaplen: number,
    readonly count: number,
    readonly sink: CaptureSink,
  ) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    this.ringBase = owner.ringDrops(target);
  }

  wants(slot: number, us: number): boolean {
    return (this.target === 'uplink' || this.target.slot === slot) && us >= this.startUs && us <= this.stopUs && this.packets < this.count;
  }

  stop(): void {
    this.owner.end(this, 'stopped');
  }

  /** @internal Writes the statistics and settles `done`. */
  close(reason: CaptureResult['reason']): void {
    if (this.ended) return;
    this.ended = true;
    const ring = this.owner.ringDrops(this.target);
    const end = nowUs();
    const blocks: Buffer[] = [];
    let leftOut = 0;
    for (const side of [SIDE_INNER, SIDE_OUTER]) {
      const dropped = ring[side]! - this.ringBase[side]!;
      leftOut += dropped;
      blocks.push(
        interfaceStatistics(side, this.startUs, end, {
          received: this.delivered[side]! + dropped,
          dropped,
          delivered: this.delivered[side]!,
        }),
      );
    }
    const result: CaptureResult = { packets: this.packets, leftOut, reason };
    if (reason === 'sink-error') {
      this.finish(result);
      return;
    }
    // A sink that takes nothing more does not hold the capture (or the gateway's close) forever.
    const t = setTimeout(() => this.finish(result), STALL_MS);
    this.sink.write(Buffer.concat(blocks), () => {
      clearTimeout(t);
      this.finish(result);
    });
  }
}

function nowUs(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

/**
 * A gateway's captures: what the workers are told to copy, and the pump
 * that writes what they copied. The rings hold pcapng blocks as a file
 * does, so a turn hands views of them to the sinks (no copy here) and frees
 * them once written: one turn in flight at a time, so a slow sink holds the
 * rings full and the workers leave packets out, counted.
 */
export class Captures {
  private readonly active = new Set<Capture>();
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  private writing = false;
  /** What the workers were last told (all, slots, snaplen), so that they are told only of changes. */
  private applied = '';
  /** Blocks of one turn, for writing in time order when several workers copied them. */
  private readonly batch: { us: number; cap: Capture; block: Buffer }[] = [];

  constructor(
    private readonly control: TapControl,
    private readonly rings: readonly CaptureRing[],
  ) {}

  get running(): number {
    return this.active.size;
  }

  /** Starts a capture into `sink`: the file header goes out now, then every packet the target's traffic brings. */
  start(target: CaptureTarget, sink: CaptureSink, opts: CaptureOptions, names: { inner: string; outer: string }): Capture {
    const snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
    const session = target !== 'uplink';
    const cap = new Capture(this, target, snaplen, opts.count ?? Infinity, sink);
    const what = session ? `session ${target.session}` : 'every session and the uplink';
    // Interface 0 is the sessions' side, 1 the network's: the workers write the side as the interface.
    sink.write(
      Buffer.concat([
        sectionHeader(`vipnat ${opts.version}`, hostname(), `${osType()} ${release()}`, `vipnat capture of ${what}`),
        interfaceDescription(names.inner, `${what}: the sessions' side, before translation (inner addresses)`, snaplen),
        interfaceDescription(names.outer, `${what}: the network's side, after translation (VIPs)`, snaplen),
      ]),
    );
    sink.on('error', () => this.end(cap, 'sink-error'));
    this.active.add(cap);
    this.apply();
    this.schedule(0);
    return cap;
  }

  /** The rings' drops of the slots `target` covers, per side. */
  ringDrops(target: CaptureTarget): number[] {
    const out = [0, 0];
    for (const r of this.rings) {
      const d = r.dropped;
      if (target === 'uplink') {
        for (let i = 0; i < d.length; i++) out[i & 1]! += d[i]!;
      } else {
        out[0]! += d[target.slot * 2]!;
        out[1]! += d[target.slot * 2 + 1]!;
      }
    }
    return out;
  }

  /** Ends a capture once what the rings hold for it is written. */
  end(cap: Capture, reason: CaptureResult['reason']): void {
    if (!this.active.has(cap) || cap.ending) return;
    cap.ending = reason;
    this.apply();
    if (reason === 'sink-error') this.finishEnding();
    else this.schedule(0);
  }

  /** Ends the captures of a session slot (it is going, and may serve another session soon). */
  endSlot(slot: number): void {
    for (const c of this.active) {
      if (c.target !== 'uplink' && c.target.slot === slot) {
        c.stopUs = nowUs();
        this.end(c, 'session-ended');
      }
    }
  }

  /** Ends every capture (the gateway is closing); resolves once each has written its statistics. */
  async close(): Promise<void> {
    const all = [...this.active];
    for (const c of all) this.end(c, 'closed');
    await Promise.all(all.map((c) => c.done));
  }

  /** Tells the workers what to copy now: what the captures not ending want. */
  private apply(): void {
    const slots: number[] = [];
    let all = false;
    let snap = 0;
    for (const c of this.active) {
      if (c.ending) continue;
      if (c.target === 'uplink') all = true;
      else slots.push(c.target.slot);
      snap = Math.max(snap, c.snaplen);
    }
    const key = `${all}/${slots.sort((a, b) => a - b).join(',')}/${snap}`;
    if (key === this.applied) return;
    this.applied = key;
    this.control.set(all, slots, snap);
  }

  private schedule(ms: number): void {
    if (this.timer || this.immediate || this.writing || this.active.size === 0) return;
    const go = (): void => {
      this.timer = null;
      this.immediate = null;
      this.turn();
    };
    if (ms === 0) this.immediate = setImmediate(go);
    else this.timer = setTimeout(go, ms);
  }

  /** Closes the captures that were ending before the turn just done; with none left, the rings are emptied. */
  private finishEnding(closing: Capture[] = [...this.active].filter((c) => c.ending === 'sink-error')): void {
    for (const c of closing) {
      this.active.delete(c);
      c.close(c.ending!);
    }
    if (this.active.size === 0) {
      // Nothing wants them now: what is left in the rings is nobody's.
      if (!this.writing) for (const r of this.rings) r.drain(() => undefined);
    }
  }

  /** Takes what the rings hold and hands it to the captures that want it; frees it once written. */
  private turn(): void {
    if (this.writing) return;
    const closing = [...this.active].filter((c) => c.ending !== null);
    const batch = this.batch;
    let taken = 0;
    const take = (ring: CaptureRing) => (r: RingRecord) => {
      for (const cap of this.active) {
        if (cap.ending === 'sink-error' || !cap.wants(r.slot, r.timestamp)) continue;
        const block =
          r.data.length > cap.snaplen
            ? enhancedPacket(
                r.side,
                r.timestamp,
                r.data.subarray(0, cap.snaplen),
                r.origLen,
                r.direction === DIR_IN ? EPB_INBOUND : EPB_OUTBOUND,
              )
            : Buffer.from(ring.memory, ring.dataOffset + r.blockAt, r.blockLen);
        batch.push({ us: r.timestamp, cap, block });
        cap.packets++;
        cap.delivered[r.side]!++;
        if (cap.packets >= cap.count && !cap.ending) {
          cap.ending = 'count';
          closing.push(cap);
        }
      }
    };
    for (const ring of this.rings) taken += ring.read(take(ring), TURN_RECORDS);
    const done = (): void => {
      this.writing = false;
      for (const ring of this.rings) ring.free();
      this.finishEnding(closing);
      this.apply();
      this.schedule(taken > 0 ? 0 : 2);
    };
    if (batch.length === 0) {
      done();
      return;
    }
    if (this.rings.length > 1) batch.sort((a, b) => a.us - b.us);
    const per = new Map<Capture, Buffer[]>();
    for (const b of batch) {
      const list = per.get(b.cap);
      if (list) list.push(b.block);
      else per.set(b.cap, [b.block]);
    }
    batch.length = 0;
    this.writing = true;
    const waiting = new Set(per.keys());
    // A sink that takes nothing for STALL_MS is dropped (its views of the rings go with it), so the rest go on.
    const stall = setTimeout(() => {
      for (const cap of waiting) {
        cap.ending = 'sink-error';
        cap.sink.destroy?.();
        closing.push(cap);
      }
      waiting.clear();
      done();
    }, STALL_MS);
    const one = (cap: Capture) => (): void => {
      if (!waiting.delete(cap) || waiting.size > 0) return;
      clearTimeout(stall);
      done();
    };
    for (const [cap, blocks] of per) {
      cap.sink.cork?.();
      for (let k = 0; k < blocks.length - 1; k++) cap.sink.write(blocks[k]!);
      cap.sink.write(blocks[blocks.length - 1]!, one(cap));
      cap.sink.uncork?.();
    }
  }
}
