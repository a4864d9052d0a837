// The gateway's handle on the dataplane workers: start them, hand them TUN queues, take them back, stop them.
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { natMemory, type FlowView } from '../nat/index.js';
import { close, EFD_CLOEXEC, EFD_NONBLOCK, errno, eventfd, strerror, write } from '../linux/index.js';
import { SESSION_COUNTERS } from './forwarder.js';
import { Mutex } from './lock.js';
import { CaptureRing, DEFAULT_RING_BYTES } from './ring.js';
import { TapControl } from './tap.js';
import {
  GAUGES,
  type DataplaneStats,
  type FlowStats,
  type FromWorker,
  type SessionAddresses,
  type ToWorker,
  type WorkerInit,
  type WorkerStats,
} from './protocol.js';

export { Forwarder, ForwarderCounters, NO_LOCK, SESSION_COUNTERS, type Device, type Lock } from './forwarder.js';
export { Mutex } from './lock.js';
export type { DataplaneGauges, DataplaneStats, FlowStats, SessionAddresses, WorkerStats } from './protocol.js';
export { CaptureRing, DIR_IN, DIR_OUT, SIDE_INNER, SIDE_OUTER, type RingRecord } from './ring.js';
export { TapControl } from './tap.js';

export interface DataplaneOptions {
  /**
   * The uplink TUN's queues, one per worker: with more than one, every TUN
   * is multi-queue and worker k reads and writes queue k of each.
   */
  uplinkFds: number[];
  maxSession: number;
  flowCapacity: number;
  offload: boolean;
  shared: { address: number; portLo: number; portHi: number } | null;
  /** Live flows one session may hold per family (NatOptions.sessionFlowLimit; default defaultSessionFlowLimit). */
  sessionFlowLimit?: number;
  /** Shared ports one shared session may hold per protocol (NatOptions.sharedPortQuota; default DEFAULT_SHARED_PORT_QUOTA). */
  sharedPortQuota?: number;
  /** Refuse sessions' packets to the uplink's own addresses (see setLocalAddresses). Default false. */
  blockLocal?: boolean;
  /** The virtual loopback (NatOptions.loopback): 127.0.0.1 + id reaches session id's 127.0.0.1. Default false. */
  loopback?: boolean;
  /** Bytes of each worker's capture ring (default DEFAULT_RING_BYTES). */
  captureRingBytes?: number;
}

type Ack = Extract<FromWorker, { op: 'ack' }>;
type Pending = { resolve: (a: Ack) => void; reject: (e: Error) => void };

// Distributive, so each variant of the union keeps its own fields.
type Command = ToWorker extends infer T ? (T extends { seq: number } ? Omit<T, 'seq'> : never) : never;

/** One worker thread and its control channel. */
class Handle {
  seq = 0;
  readonly pending = new Map<number, Pending>();

  constructor(
    readonly worker: Worker,
    readonly port: MessagePort,
    readonly wakeFd: number,
  ) {}
}

export class Dataplane {
  private readonly one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
  private failure: Error | null = null;
  private stopped = false;
  /** Called once if a worker dies; the gateway then shuts down. */
  onFailure: ((e: Error) => void) | null = null;

  /** Every worker's per-session counters, read here while the workers write them. */
  private readonly counters: Float64Array[] = [];
  /** What the workers capture (set here, read by them), and each worker's ring of captured packets. */
  tap: TapControl | null = null;
  readonly rings: CaptureRing[] = [];

  private constructor(private readonly handles: Handle[]) {}

  /** Session `slot`'s packets and bytes, summed over the workers, since it was added. */
  sessionCounters(slot: number): { packets: { in: number; out: number }; bytes: { in: number; out: number }; dropped: number } {
    const out = { packets: { in: 0, out: 0 }, bytes: { in: 0, out: 0 }, dropped: 0 };
    const at = slot * SESSION_COUNTERS;
    for (const c of this.counters) {
      out.packets.out += c[at]!;
      out.bytes.out += c[at + 1]!;
      out.packets.in += c[at + 2]!;
      out.bytes.in += c[at + 3]!;
      out.dropped += c[at + 4]!;
    }
    return out;
  }

  /** Workers running: each TUN needs this many queues. */
  get workers(): number {
    return this.handles.length;
  }

  /** Starts one worker per uplink queue; resolves once every loop is running. */
  static async start(opts: DataplaneOptions): Promise<Dataplane> {
    const n = opts.uplinkFds.length;
    if (n < 1) throw new Error('dataplane: no uplink queue');
    const memory = natMemory({
      maxSession: opts.maxSession,
      flowCapacity: opts.flowCapacity,
      ...(opts.shared ? { shared: opts.shared } : {}),
      ...(opts.sessionFlowLimit !== undefined ? { sessionFlowLimit: opts.sessionFlowLimit } : {}),
      ...(opts.sharedPortQuota !== undefined ? { sharedPortQuota: opts.sharedPortQuota } : {}),
      blockLocal: opts.blockLocal ?? false,
      loopback: opts.loopback ?? false,
    });
    const lock = Mutex.memory();
    const epoch = process.hrtime()[0];
    const handles: Handle[] = [];
    const dp = new Dataplane(handles);
    const tapControl = TapControl.memory(opts.maxSession);
    dp.tap = new TapControl(tapControl);
    const ringBytes = opts.captureRingBytes ?? DEFAULT_RING_BYTES;
    const ready: Promise<void>[] = [];
    try {
      for (let index = 0; index < n; index++) {
        const wakeFd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (wakeFd < 0) throw new Error(`eventfd: ${strerror(errno())}`);
        const { port1, port2 } = new MessageChannel();
        const sessionCounters = new SharedArrayBuffer((opts.maxSession + 1) * SESSION_COUNTERS * 8);
        dp.counters.push(new Float64Array(sessionCounters));
        const tapRing = new SharedArrayBuffer(CaptureRing.bytesFor(ringBytes, opts.maxSession));
        dp.rings.push(new CaptureRing(tapRing, ringBytes, opts.maxSession));
        const init: WorkerInit & { port: MessagePort } = {
          index,
          workers: n,
          uplinkFd: opts.uplinkFds[index]!,
          wakeFd,
          maxSession: opts.maxSession,
          flowCapacity: opts.flowCapacity,
          memory,
          lock,
          epoch,
          offload: opts.offload,
          shared: opts.shared,
          sessionCounters,
          sessionFlowLimit: opts.sessionFlowLimit,
          sharedPortQuota: opts.sharedPortQuota,
          blockLocal: opts.blockLocal ?? false,
          loopback: opts.loopback ?? false,
          tapControl,
          tapRing,
          tapRingBytes: ringBytes,
          port: port2,
        };
        const worker = new Worker(new URL('./worker.js', import.meta.url), { workerData: init, transferList: [port2] });
        const h = new Handle(worker, port1, wakeFd);
        handles.push(h);
        ready.push(
          new Promise((resolve, reject) => {
            const onEarlyExit = (code: number): void => reject(new Error(`dataplane worker exited (${code}) before it started`));
            worker.once('error', reject);
            worker.once('exit', onEarlyExit);
            port1.on('message', (m: FromWorker) => {
              if (m.op === 'ready') {
                worker.off('error', reject);
                worker.off('exit', onEarlyExit);
                worker.on('error', (e) => dp.fail(e));
                worker.on('exit', () => dp.fail(new Error('dataplane worker exited')));
                resolve();
              } else {
                dp.onMessage(h, m);
              }
            });
          }),
        );
      }
      await Promise.all(ready);
    } catch (e) {
      dp.stopped = true;
      await Promise.allSettled(handles.map((h) => h.worker.terminate()));
      for (const h of handles) {
        h.port.close();
        close(h.wakeFd);
      }
      throw e;
    }
    return dp;
  }

  /** Set when a worker died; the gateway checks it and shuts down. */
  get error(): Error | null {
    return this.failure;
  }

  /**
   * Hands session `id`'s TUN queues to the dataplane (one per worker, in
   * worker order), which owns (and will close) them from now on, even if
   * this fails.
   */
  async addSession(id: number, fds: number[], addrs: SessionAddresses): Promise<void> {
    if (fds.length !== this.handles.length) throw new Error(`session ${id}: ${fds.length} TUN queues for ${this.handles.length} workers`);
    const results = await Promise.allSettled(this.handles.map((h, k) => this.call(h, { op: 'add', id, fd: fds[k]!, addrs })));
    const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /** Stops forwarding for session `id`, closes its TUN queues and drops its flows. */
  async removeSession(id: number): Promise<void> {
    // Every worker forgets the session before its flows go, so none can make one again.
    await Promise.all(this.handles.map((h) => this.call(h, { op: 'remove', id })));
    await this.call(this.handles[0]!, { op: 'purge', id });
  }

  /**
   * The uplink namespace's own addresses (IPv4 as numbers, IPv6 as four
   * 32-bit words each), which sessions may not reach with blockLocal; call
   * again whenever they change. Every worker takes them before the flows
   * with them are dropped, once, so none can make such a flow again.
   */
  async setLocalAddresses(v4: number[], v6: number[][]): Promise<void> {
    for (const w of v6) {
      if (w.length !== 4) throw new RangeError(`local IPv6 address [${w.join(', ')}]: must be four 32-bit words`);
    }
    await Promise.all(this.handles.map((h) => this.call(h, { op: 'local', v4, v6 })));
    await this.call(this.handles[0]!, { op: 'purgeLocal' });
  }

  /** Counters summed over the workers (gauges such as `flows` are the dataplane's, taken once). */
  async stats(): Promise<DataplaneStats | null> {
    return merge((await Promise.all(this.handles.map((h) => this.call(h, { op: 'stats' })))).map((a) => a.stats));
  }

  /** The live flows of these session slots (every session's: null), at most `limit`. */
  async flows(sessions: number[] | null, limit = 100000): Promise<FlowView[]> {
    return (await this.call(this.handles[0]!, { op: 'flows', sessions, limit })).flows ?? [];
  }

  /** Flows per session slot, and (with `byState`, a scan of every table) by family, protocol and state. */
  async flowStats(byState = false): Promise<FlowStats> {
    return (await this.call(this.handles[0]!, { op: 'flowStats', byState })).flowStats ?? { byState: [], perSession: [] };
  }

  /** Stops the loops, closes every fd they own, and returns the final counters (null if the workers could not say). */
  async stop(): Promise<DataplaneStats | null> {
    if (this.stopped) return null;
    // From here the workers' exits are expected, whichever of their exit and
    // their last message arrives first.
    this.stopped = true;
    let result: DataplaneStats | null = null;
    if (!this.failure) {
      let timer: NodeJS.Timeout | undefined;
      const giveUp = new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), 3000)));
      const all = Promise.all(this.handles.map((h) => this.call(h, { op: 'stop' }))).then((acks) => merge(acks.map((a) => a.stats)));
      result = (await Promise.race([all, giveUp]).catch(() => null)) ?? null;
      clearTimeout(timer);
    }
    for (const h of this.handles) h.port.close();
    await Promise.all(this.handles.map((h) => h.worker.terminate()));
    for (const h of this.handles) close(h.wakeFd);
    return result;
  }

  private call(h: Handle, cmd: Command): Promise<Ack> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = ++h.seq;
    return new Promise((resolve, reject) => {
      h.pending.set(seq, { resolve, reject });
      h.port.postMessage({ ...cmd, seq });
      // Wake the worker out of epoll_wait to read the message.
      if (write(h.wakeFd, this.one, 8) !== 8) {
        h.pending.delete(seq);
        reject(new Error(`eventfd write: ${strerror(errno())}`));
      }
    });
  }

  private onMessage(h: Handle, m: FromWorker): void {
    if (m.op === 'fatal') {
      this.fail(new Error(`dataplane: ${m.message}`));
      return;
    }
    if (m.op !== 'ack' && m.op !== 'error') return;
    const p = h.pending.get(m.seq);
    if (!p) return;
    h.pending.delete(m.seq);
    if (m.op === 'ack') p.resolve(m);
    else p.reject(new Error(`dataplane: ${m.message}`));
  }

  private fail(e: Error): void {
    if (this.failure) return;
    // After stop() the workers' ends are expected; their last messages (posted
    // before they ended) still arrive, and stop() does not wait forever for them.
    if (this.stopped) return;
    this.failure = e;
    for (const h of this.handles) {
      for (const p of h.pending.values()) p.reject(e);
      h.pending.clear();
    }
    this.onFailure?.(e);
  }
}

/**
 * Sums the workers' counters; gauges come from the first worker. Null unless
 * every worker answered.
 */
function merge(parts: (WorkerStats | undefined)[]): DataplaneStats | null {
  const first = parts[0];
  if (!first || parts.some((p) => p === undefined)) return null;
  const all = parts as WorkerStats[];
  const out = {
    ...first,
    workers: all.length,
    workerPackets: all.map((p) => p.toUplink + p.toSession + p.reflected + p.replies),
    workerBusyMs: all.map((p) => p.busyMs),
  };
  const gauges = new Set<string>(GAUGES);
  for (const name of Object.keys(first) as (keyof WorkerStats)[]) {
    if (!gauges.has(name)) out[name] = all.reduce((sum, p) => sum + p[name], 0);
  }
  return out;
}
