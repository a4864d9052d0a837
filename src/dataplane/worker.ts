// The dataplane thread: builds the translator, an epoll poller and the TUN devices, and runs the packet loop over them.
import { receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { Nat } from '../nat/index.js';
import {
  close,
  EAGAIN,
  EINTR,
  epollAdd,
  epollCreate1,
  epollDel,
  EPOLL_CLOEXEC,
  EPOLL_EVENT_SIZE,
  EPOLLIN,
  epollWait,
  errno,
  eventFd,
  read,
  strerror,
  VNET_HDR_LEN,
  write,
} from '../linux/index.js';
import { Forwarder, NO_LOCK } from './forwarder.js';
import { Mutex } from './lock.js';
import { CaptureRing } from './ring.js';
import { Tap, TapControl } from './tap.js';
import { Loop, MAX_EVENTS, type Control, type Poller, type Tun } from './loop.js';
import type { FromWorker, ToWorker, WorkerInit } from './protocol.js';

/** A file descriptor read and written whole packets at a time: a TUN queue, or the wake-up eventfd. */
class FdDevice implements Tun {
  constructor(readonly fd: number) {}
  read(buf: Uint8Array): number {
    const n = read(this.fd, buf, buf.length);
    if (n >= 0) return n;
    const e = errno();
    return e === EAGAIN ? 0 : -e;
  }
  write(buf: Uint8Array, off: number, len: number): boolean {
    const n = write(this.fd, off === 0 ? buf : buf.subarray(off), len);
    return n === len;
  }
  close(): void {
    close(this.fd);
  }
}

/** A level-triggered epoll set of FdDevices. */
class EpollPoller implements Poller<FdDevice> {
  private readonly ep: number;
  private readonly byFd = new Map<number, FdDevice>();
  private readonly events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  private readonly ev = new DataView(this.events.buffer, this.events.byteOffset, this.events.byteLength);

  constructor() {
    this.ep = epollCreate1(EPOLL_CLOEXEC);
    if (this.ep < 0) throw new Error(`epoll_create1: ${strerror(errno())}`);
  }
  add(dev: FdDevice): void {
    if (epollAdd(this.ep, dev.fd, EPOLLIN) < 0) throw new Error(`epoll_ctl add fd ${dev.fd}: ${strerror(errno())}`);
    this.byFd.set(dev.fd, dev);
  }
  remove(dev: FdDevice): void {
    epollDel(this.ep, dev.fd);
    this.byFd.delete(dev.fd);
  }
  wait(ready: (FdDevice | null)[], timeoutMs: number): number {
    const n = epollWait(this.ep, this.events, Math.min(ready.length, MAX_EVENTS), timeoutMs);
    if (n < 0) {
      const e = errno();
      if (e === EINTR) return 0;
      throw new Error(`epoll_wait: ${strerror(e)}`);
    }
    let k = 0;
    for (let i = 0; i < n; i++) {
      const dev = this.byFd.get(eventFd(this.ev, i));
      if (dev !== undefined) ready[k++] = dev;
    }
    return k;
  }
  close(): void {
    close(this.ep);
  }
}

/** The worker's end of its MessagePort. */
class PortControl implements Control {
  constructor(private readonly port: MessagePort) {}
  receive(): ToWorker | undefined {
    const m = receiveMessageOnPort(this.port);
    return m === undefined ? undefined : (m.message as ToWorker);
  }
  post(m: FromWorker): void {
    this.port.postMessage(m);
  }
}

function main(port: MessagePort, init: WorkerInit): void {
  const nat = new Nat({
    maxSession: init.maxSession,
    flowCapacity: init.flowCapacity,
    memory: init.memory,
    ...(init.shared ? { shared: init.shared } : {}),
    ...(init.sessionFlowLimit !== undefined ? { sessionFlowLimit: init.sessionFlowLimit } : {}),
    ...(init.sharedPortQuota !== undefined ? { sharedPortQuota: init.sharedPortQuota } : {}),
    blockLocal: init.blockLocal,
    loopback: init.loopback,
  });
  const uplink = new FdDevice(init.uplinkFd);
  // One worker has the translator state to itself; several share it, one packet at a time.
  const guard = init.workers > 1 ? new Mutex(new Int32Array(init.lock)) : NO_LOCK;
  const tap = new Tap(new TapControl(init.tapControl), new CaptureRing(init.tapRing, init.tapRingBytes, init.maxSession));
  const fwd = new Forwarder(
    nat,
    uplink,
    init.maxSession,
    init.offload ? VNET_HDR_LEN : 0,
    guard,
    new Float64Array(init.sessionCounters),
    tap,
  );
  const loop = new Loop<FdDevice>({
    index: init.index,
    nat,
    fwd,
    guard,
    expireBudget: Math.max(4096, Math.ceil(init.flowCapacity / 8)),
    poller: new EpollPoller(),
    wake: new FdDevice(init.wakeFd),
    uplink,
    open: (fd) => new FdDevice(fd),
    control: new PortControl(port),
    clock: () => process.hrtime()[0] - init.epoch,
  });
  loop.run();
}

const init = workerData as WorkerInit & { port: MessagePort };
try {
  main(init.port, init);
} catch (e) {
  init.port.postMessage({ op: 'fatal', message: (e as Error).message } satisfies FromWorker);
}
