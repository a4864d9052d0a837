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
/** Bytes waiting in a capture's sink beyond which packets are left out (and counted), not queued. */
const SINK_HIGH_WATER = 8 << 20;
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
}

/** One running capture: stop() ends it (writing its statistics), `done` says how it went. */
export class Capture {
  readonly done: Promise<CaptureResult>;
  packets = 0;
  /** Per file interface: packets written and left out (by the sink's backlog; the rings' are added at the end). */
  readonly delivered = [0, 0];
  readonly sinkDropped = [0, 0];
  /** The rings' drop counts for this capture's slots when it began, per side. */
  readonly ringBase: number[];
  readonly startUs = nowUs();
  private finish: (r: CaptureResult) => void = () => undefined;
  ended = false;

  constructor(
    private readonly owner: Captures,
    readonly target: CaptureTarget,
    readonly snaplen: number,
    readonly count: number,
    readonly sink: CaptureSink,
    /** File interface of each side: a session's capture shows its own side first, the uplink's the network's. */
    readonly ifaceOf: readonly [number, number],
  ) {
    this.done = new Promise((resolve) => (this.finish = resolve));
    this.ringBase = owner.ringDrops(target);
  }

  wants(slot: number): boolean {
    return this.target === 'uplink' || this.target.slot === slot;
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
      const i = this.ifaceOf[side]!;
      const dropped = ring[side]! - this.ringBase[side]! + this.sinkDropped[i]!;
      leftOut += dropped;
      blocks.push(
        interfaceStatistics(i, this.startUs, end, { received: this.delivered[i]! + dropped, dropped, delivered: this.delivered[i]! }),
      );
    }
    blocks.sort((a, b) => a.readUInt32LE(8) - b.readUInt32LE(8));
    const result: CaptureResult = { packets: this.packets, leftOut, reason };
    if (reason === 'sink-error') {
      this.finish(result);
      return;
    }
    this.sink.write(Buffer.concat(blocks), () => this.finish(result));
  }
}

function nowUs(): number {
  return Math.floor((performance.timeOrigin + performance.now()) * 1000);
}

/** A gateway's captures: what the workers are told to copy, and the pump that writes what they copied. */
export class Captures {
  private readonly active = new Set<Capture>();
  private timer: NodeJS.Timeout | null = null;
  private immediate: NodeJS.Immediate | null = null;
  /** Records of one turn, for writing in time order when several workers copied them. */
  private readonly batch: { us: number; cap: Capture; block: Buffer }[] = [];

  constructor(
    private readonly control: TapControl,
    private readonly rings: readonly CaptureRing[],
  ) {}

  get running(): number {
    return this.active.size;
  }

  /** Starts a capture into `sink`: the file header goes out now, then every packet the target's traffic brings. */
  start(target: CaptureTarget, sink: Capture['sink'], opts: CaptureOptions, names: { inner: string; outer: string }): Capture {
    const snaplen = opts.snaplen ?? DEFAULT_SNAPLEN;
    const session = target !== 'uplink';
    // File interfaces: a session's capture lists its eth0 first, the uplink's capture vipnat0 first.
    const ifaceOf: [number, number] = session ? [0, 1] : [1, 0];
    const cap = new Capture(this, target, snaplen, opts.count ?? Infinity, sink, ifaceOf);
    const what = session ? `session ${target.session}` : 'every session and the uplink';
    const innerIdb = interfaceDescription(names.inner, `${what}: the sessions' side, before translation (inner addresses)`, snaplen);
    const outerIdb = interfaceDescription(names.outer, `${what}: the network's side, after translation (VIPs)`, snaplen);
    sink.write(
      Buffer.concat([
        sectionHeader(`vipnat ${opts.version}`, hostname(), `${osType()} ${release()}`, `vipnat capture of ${what}`),
        ...(session ? [innerIdb, outerIdb] : [outerIdb, innerIdb]),
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

  /** Ends a capture: what the rings still hold for it is written first. */
  end(cap: Capture, reason: CaptureResult['reason']): void {
    if (!this.active.has(cap)) return;
    if (reason !== 'sink-error') this.turn();
    this.active.delete(cap);
    this.apply();
    cap.close(reason);
  }

  /** Ends the captures of a session slot (it is going). */
  endSlot(slot: number): void {
    for (const c of [...this.active]) if (c.target !== 'uplink' && c.target.slot === slot) this.end(c, 'session-ended');
  }

  /** Ends every capture (the gateway is closing); resolves once each has written its statistics. */
  async close(): Promise<void> {
    const all = [...this.active];
    for (const c of all) this.end(c, 'closed');
    await Promise.all(all.map((c) => c.done));
  }

  /** Tells the workers what to copy now. */
  private apply(): void {
    const slots: number[] = [];
    let all = false;
    let snap = 0;
    for (const c of this.active) {
      if (c.target === 'uplink') all = true;
      else slots.push(c.target.slot);
      snap = Math.max(snap, c.snaplen);
    }
    this.control.set(all, slots, snap);
    if (this.active.size === 0) {
      if (this.timer) clearTimeout(this.timer);
      if (this.immediate) clearImmediate(this.immediate);
      this.timer = null;
      this.immediate = null;
      // Nothing wants them now: what is left in the rings is nobody's.
      for (const r of this.rings) r.drain(() => undefined);
    }
  }

  private schedule(ms: number): void {
    if (this.timer || this.immediate || this.active.size === 0) return;
    if (ms === 0) {
      this.immediate = setImmediate(() => {
        this.immediate = null;
        this.schedule(this.turn() > 0 ? 0 : 2);
      });
    } else {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.schedule(this.turn() > 0 ? 0 : 2);
      }, ms);
    }
  }

  /** Takes what the rings hold and writes it to the captures that want it; returns records taken. */
  private turn(): number {
    const batch = this.batch;
    let taken = 0;
    const take = (r: RingRecord): void => {
      for (const cap of this.active) {
        // A record from before the capture began was copied for an earlier one, after its last turn: not this one's.
        if (!cap.wants(r.slot) || cap.packets >= cap.count || r.timestamp < cap.startUs) continue;
        const iface = cap.ifaceOf[r.side]!;
        if (cap.sink.writableLength > SINK_HIGH_WATER) {
          cap.sinkDropped[iface]!++;
          continue;
        }
        const data = r.data.length > cap.snaplen ? r.data.subarray(0, cap.snaplen) : r.data;
        batch.push({
          us: r.timestamp,
          cap,
          block: enhancedPacket(iface, r.timestamp, data, r.origLen, r.direction === DIR_IN ? EPB_INBOUND : EPB_OUTBOUND),
        });
        cap.packets++;
        cap.delivered[iface]!++;
      }
    };
    for (const ring of this.rings) taken += ring.drain(take, TURN_RECORDS);
    if (batch.length === 0) return taken;
    if (this.rings.length > 1) batch.sort((a, b) => a.us - b.us);
    const per = new Map<Capture, Buffer[]>();
    for (const b of batch) {
      const list = per.get(b.cap);
      if (list) list.push(b.block);
      else per.set(b.cap, [b.block]);
    }
    batch.length = 0;
    for (const [cap, blocks] of per) {
      if (cap.ended) continue;
      cap.sink.write(blocks.length === 1 ? blocks[0]! : Buffer.concat(blocks));
      if (cap.packets >= cap.count) queueMicrotask(() => this.end(cap, 'count'));
    }
    return taken;
  }
}
