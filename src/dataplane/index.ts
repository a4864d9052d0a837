// The gateway's handle on the dataplane worker: start it, hand it TUN fds, take them back, stop it.
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { close, EFD_CLOEXEC, EFD_NONBLOCK, errno, eventfd, strerror, write } from '../linux/index.js';
import type { DataplaneStats, FromWorker, SessionAddresses, ToWorker } from './protocol.js';

export { Forwarder, ForwarderCounters, type Device } from './forwarder.js';
export type { DataplaneStats, SessionAddresses } from './protocol.js';

export interface DataplaneOptions {
  uplinkFd: number;
  maxSession: number;
  flowCapacity: number;
  offload: boolean;
  shared: { address: number; portLo: number; portHi: number } | null;
}

type Pending = { resolve: (s: DataplaneStats | undefined) => void; reject: (e: Error) => void };

// Distributive, so each variant of the union keeps its own fields.
type Command = ToWorker extends infer T ? (T extends { seq: number } ? Omit<T, 'seq'> : never) : never;

export class Dataplane {
  private seq = 0;
  private readonly pending = new Map<number, Pending>();
  private readonly one = new Uint8Array([1, 0, 0, 0, 0, 0, 0, 0]);
  private failure: Error | null = null;
  private stopped = false;
  /** Called once if the worker dies; the gateway then shuts down. */
  onFailure: ((e: Error) => void) | null = null;

  private constructor(
    private readonly worker: Worker,
    private readonly port: MessagePort,
    private readonly wakeFd: number,
  ) {}

  /** Starts the worker thread; resolves once its loop is running. */
  static start(opts: DataplaneOptions): Promise<Dataplane> {
    const wakeFd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wakeFd < 0) return Promise.reject(new Error(`eventfd: ${strerror(errno())}`));
    const { port1, port2 } = new MessageChannel();
    const worker = new Worker(new URL('./worker.js', import.meta.url), {
      workerData: { ...opts, wakeFd, port: port2 },
      transferList: [port2],
    });
    const dp = new Dataplane(worker, port1, wakeFd);
    return new Promise((resolve, reject) => {
      const onEarlyExit = (code: number): void => reject(new Error(`dataplane worker exited (${code}) before it started`));
      worker.once('error', reject);
      worker.once('exit', onEarlyExit);
      port1.on('message', (m: FromWorker) => {
        if (m.op === 'ready') {
          worker.off('error', reject);
          worker.off('exit', onEarlyExit);
          worker.on('error', (e) => dp.fail(e));
          worker.on('exit', () => dp.fail(new Error('dataplane worker exited')));
          resolve(dp);
        } else {
          dp.onMessage(m);
        }
      });
    });
  }

  /** Set when the worker died; the gateway checks it and shuts down. */
  get error(): Error | null {
    return this.failure;
  }

  /** Hands session `id`'s TUN fd to the dataplane, which owns (and will close) it from now on. */
  addSession(id: number, fd: number, addrs: SessionAddresses): Promise<void> {
    return this.call({ op: 'add', id, fd, addrs }).then(() => undefined);
  }

  /** Stops forwarding for session `id` and closes its TUN fd. */
  removeSession(id: number): Promise<void> {
    return this.call({ op: 'remove', id }).then(() => undefined);
  }

  async stats(): Promise<DataplaneStats> {
    return (await this.call({ op: 'stats' })) ?? {};
  }

  /** Stops the loop, closes every fd it owns, and returns the final counters. */
  async stop(): Promise<DataplaneStats> {
    if (this.stopped) return {};
    // From here the worker's exit is expected, whichever of its exit and its
    // last message arrives first.
    this.stopped = true;
    let result: DataplaneStats = {};
    if (!this.failure) {
      let timer: NodeJS.Timeout | undefined;
      const giveUp = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), 3000)));
      result = (await Promise.race([this.call({ op: 'stop' }), giveUp])) ?? {};
      clearTimeout(timer);
    }
    this.port.close();
    await this.worker.terminate();
    close(this.wakeFd);
    return result;
  }

  private call(cmd: Command): Promise<DataplaneStats | undefined> {
    if (this.failure) return Promise.reject(this.failure);
    const seq = ++this.seq;
    return new Promise((resolve, reject) => {
      this.pending.set(seq, { resolve, reject });
      this.port.postMessage({ ...cmd, seq } as ToWorker);
      // Wake the worker out of epoll_wait to read the message.
      if (write(this.wakeFd, this.one, 8) !== 8) {
        this.pending.delete(seq);
        reject(new Error(`eventfd write: ${strerror(errno())}`));
      }
    });
  }

  private onMessage(m: FromWorker): void {
    if (m.op === 'fatal') {
      this.fail(new Error(`dataplane: ${m.message}`));
      return;
    }
    if (m.op !== 'ack' && m.op !== 'error') return;
    const p = this.pending.get(m.seq);
    if (!p) return;
    this.pending.delete(m.seq);
    if (m.op === 'ack') p.resolve(m.stats);
    else p.reject(new Error(`dataplane: ${m.message}`));
  }

  private fail(e: Error): void {
    if (this.failure) return;
    // After stop() the worker's end is expected; its last message (posted
    // before it ended) still arrives, and stop() does not wait forever for it.
    if (this.stopped) return;
    this.failure = e;
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
    this.onFailure?.(e);
  }
}
