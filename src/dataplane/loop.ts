// The packet loop over a poller and devices: waits, drains ready devices in batches, forwards, expires, takes control messages.
import { countFlows, flowsPerSession, listFlows, type Nat } from '../nat/index.js';
import type { Device, Forwarder, Lock } from './forwarder.js';
import type { FromWorker, ToWorker, WorkerStats } from './protocol.js';

/** Larger than any packet (a 64 KiB TSO segment plus its virtio header), so a read never truncates. */
export const BUFFER_SIZE = 65536 + 256;
/** Packets read from one device before looking at the others (fairness; readiness is level-triggered). */
export const BATCH = 64;
/** Ready devices taken from one wait. */
export const MAX_EVENTS = 64;
/** How long a wait lasts with nothing ready: expiry runs at least this often. */
export const WAIT_MS = 1000;

/** Something the loop reads packets from: a TUN queue, or the wake-up of the control channel. */
export interface Source {
  /** Reads one packet into `buf`: its length, 0 when there is none now, or -errno when the read failed. */
  read(buf: Uint8Array): number;
}

/** A device the loop reads packets from, writes packets to, and closes when done with it. */
export interface Tun extends Source, Device {
  close(): void;
}

/** Tells which sources are readable, like a level-triggered epoll: a source stays ready while it has packets. */
export interface Poller<S extends Source> {
  /** Watches `src`; throws (saying why) if it cannot. */
  add(src: S): void;
  remove(src: S): void;
  /** Waits up to `timeoutMs` for readable sources, puts them at ready[0..n) and returns n (0 on timeout). */
  wait(ready: (S | null)[], timeoutMs: number): number;
  close(): void;
}

/** The gateway's end of the control channel, as the loop sees it. */
export interface Control {
  /** The next message waiting, or undefined when there is none. */
  receive(): ToWorker | undefined;
  post(m: FromWorker): void;
}

/** What the loop runs over; `S` is the poller's kind of source (fds in a worker, objects in memory in tests). */
export interface LoopOptions<S extends Source> {
  /** The worker's number: worker 0 expires flows. */
  index: number;
  nat: Nat;
  /** Writes to `uplink`; the loop attaches and detaches sessions on it. */
  fwd: Forwarder;
  /** Taken around the loop's own calls into the translator (purge, expiry), as the Forwarder takes it. */
  guard: Lock;
  /** Flows expire() may look at in one second. */
  expireBudget: number;
  poller: Poller<S>;
  /** Readable when the control channel has something: read (drained) before the messages are taken. */
  wake: S;
  uplink: S & Tun;
  /** The device of a TUN queue fd an 'add' hands over; the loop owns (and closes) it from then on. */
  open(fd: number): S & Tun;
  control: Control;
  /** The flow clock, in whole seconds. */
  clock(): number;
}

/** One worker's packet loop: run() returns once a 'stop' message has been answered. */
export class Loop<S extends Source> {
  private readonly nat: Nat;
  private readonly fwd: Forwarder;
  private readonly guard: Lock;
  private readonly poller: Poller<S>;
  private readonly wake: S;
  private readonly uplink: S & Tun;
  private readonly control: Control;
  private readonly opts: LoopOptions<S>;
  /** Device -> session id, for the devices of sessions. */
  private readonly sessionOf = new Map<S, number>();
  private readonly deviceOf = new Map<number, S & Tun>();
  private readonly buf = new Uint8Array(BUFFER_SIZE);
  private readonly ready: (S | null)[] = new Array<S | null>(MAX_EVENTS).fill(null);
  private readonly wakeBuf = new Uint8Array(8);
  private readErrors = 0;
  /** Time spent other than waiting, in milliseconds. */
  private busyMs = 0;
  private running = true;
  private lastExpire = 0;

  constructor(opts: LoopOptions<S>) {
    this.opts = opts;
    this.nat = opts.nat;
    this.fwd = opts.fwd;
    this.guard = opts.guard;
    this.poller = opts.poller;
    this.wake = opts.wake;
    this.uplink = opts.uplink;
    this.control = opts.control;
  }

  /** Watches the wake-up and the uplink, says 'ready', then forwards until told to stop. */
  run(): void {
    this.poller.add(this.wake);
    this.poller.add(this.uplink);
    this.control.post({ op: 'ready' });
    while (this.running) this.turn();
  }

  /** One wait and everything it found ready, then expiry if a new second has begun. */
  private turn(): void {
    const ready = this.ready;
    const n = this.poller.wait(ready, WAIT_MS);
    const t0 = performance.now();
    const now = this.opts.clock();
    for (let i = 0; i < n && this.running; i++) {
      const src = ready[i]!;
      if (src === this.wake) {
        src.read(this.wakeBuf);
        this.takeControl();
      } else if (src === this.uplink) {
        this.drainUplink(now);
      } else {
        const id = this.sessionOf.get(src);
        if (id !== undefined) this.drainSession(src, id, now);
      }
    }
    if (now !== this.lastExpire && this.opts.index === 0) {
      this.lastExpire = now;
      this.guard.lock();
      try {
        this.nat.expire(now, this.opts.expireBudget);
      } finally {
        this.guard.unlock();
      }
    }
    this.busyMs += performance.now() - t0;
  }

  private drainUplink(now: number): void {
    const buf = this.buf;
    for (let k = 0; k < BATCH; k++) {
      const len = this.uplink.read(buf);
      if (len <= 0) {
        if (len < 0) this.readErrors++;
        break;
      }
      this.fwd.fromUplink(buf, len, now);
    }
  }

  private drainSession(dev: S, id: number, now: number): void {
    const buf = this.buf;
    for (let k = 0; k < BATCH; k++) {
      const len = dev.read(buf);
      if (len <= 0) {
        if (len < 0) this.readErrors++;
        break;
      }
      this.fwd.fromSession(id, buf, len, now);
    }
  }

  /** Answers every control message waiting; one that fails is answered with its error. */
  private takeControl(): void {
    for (let msg = this.control.receive(); msg !== undefined; msg = this.control.receive()) {
      try {
        this.handle(msg);
      } catch (e) {
        this.control.post({ op: 'error', seq: msg.seq, message: (e as Error).message });
      }
    }
  }

  private handle(msg: ToWorker): void {
    switch (msg.op) {
      case 'add':
        this.add(msg);
        break;
      case 'remove':
        this.remove(msg.id);
        break;
      case 'purge':
        this.locked(() => this.nat.dropFlows(msg.id));
        break;
      case 'local':
        // This thread's own index of addresses: no lock. The shared flows go with 'purgeLocal'.
        this.nat.setLocalAddresses(msg.v4, msg.v6, false);
        break;
      case 'purgeLocal':
        this.locked(() => this.nat.dropLocalFlows());
        break;
      case 'stats':
        this.control.post({ op: 'ack', seq: msg.seq, stats: this.stats() });
        return;
      case 'flows': {
        const sessions = msg.sessions && new Set(msg.sessions);
        let flows;
        this.guard.lock();
        try {
          flows = listFlows(this.nat, sessions, this.opts.clock(), msg.limit);
        } finally {
          this.guard.unlock();
        }
        this.control.post({ op: 'ack', seq: msg.seq, flows });
        return;
      }
      case 'flowStats': {
        let flowStats;
        this.guard.lock();
        try {
          flowStats = { byState: msg.byState ? countFlows(this.nat) : [], perSession: flowsPerSession(this.nat, this.fwd.maxSession) };
        } finally {
          this.guard.unlock();
        }
        this.control.post({ op: 'ack', seq: msg.seq, flowStats });
        return;
      }
      case 'stop':
        this.stop();
        this.control.post({ op: 'ack', seq: msg.seq, stats: this.stats() });
        return;
    }
    this.control.post({ op: 'ack', seq: msg.seq });
  }

  private add(msg: Extract<ToWorker, { op: 'add' }>): void {
    const dev = this.opts.open(msg.fd);
    try {
      const a = msg.addrs;
      this.fwd.attach(
        msg.id,
        dev,
        a.inner4 ?? -1,
        a.vip4 ?? -1,
        a.inner6 && new Uint32Array(a.inner6),
        a.vip6 && new Uint32Array(a.vip6),
        a.shared,
        a.loopbackId,
      );
      try {
        this.poller.add(dev);
      } catch (e) {
        this.fwd.detach(msg.id, false);
        throw e;
      }
    } catch (e) {
      // The fd was handed over: it is ours to close, added or not.
      dev.close();
      throw e;
    }
    this.sessionOf.set(dev, msg.id);
    this.deviceOf.set(msg.id, dev);
  }

  private remove(id: number): void {
    const dev = this.deviceOf.get(id);
    this.fwd.detach(id, false); // its flows go with 'purge'
    if (dev !== undefined) {
      this.poller.remove(dev);
      dev.close();
      this.sessionOf.delete(dev);
      this.deviceOf.delete(id);
    }
  }

  private stop(): void {
    this.running = false;
    for (const dev of this.deviceOf.values()) dev.close();
    this.deviceOf.clear();
    this.sessionOf.clear();
    this.uplink.close();
    this.poller.close();
  }

  private locked(f: () => void): void {
    this.guard.lock();
    try {
      f();
    } finally {
      this.guard.unlock();
    }
  }

  private stats(): WorkerStats {
    const nat = this.nat;
    return {
      ...nat.counters,
      ...this.fwd.counters,
      flows: nat.flowCount,
      sharedPortsInUse: nat.sharedPortsInUse().reduce((a, b) => a + b, 0),
      flowCapacity: nat.flows.capacity,
      sessions: this.deviceOf.size,
      readErrors: this.readErrors,
      busyMs: this.busyMs,
    };
  }
}
