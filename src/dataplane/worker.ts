// The dataplane thread: a blocking epoll loop that drains every TUN and forwards through the translator.
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
import { Forwarder, NO_LOCK, type Device } from './forwarder.js';
import { Mutex } from './lock.js';
import type { FromWorker, ToWorker, WorkerInit, WorkerStats } from './protocol.js';

/** Larger than any packet (a 64 KiB TSO segment plus its virtio header), so a read never truncates. */
const BUFFER_SIZE = 65536 + 256;
/** Packets read from one fd before looking at the others (fairness; epoll is level-triggered). */
const BATCH = 64;
const MAX_EVENTS = 64;

class TunDevice implements Device {
  constructor(readonly fd: number) {}
  write(buf: Uint8Array, off: number, len: number): boolean {
    const n = write(this.fd, off === 0 ? buf : buf.subarray(off), len);
    return n === len;
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
  });
  const uplink = new TunDevice(init.uplinkFd);
  // One worker has the translator state to itself; several share it, one packet at a time.
  const guard = init.workers > 1 ? new Mutex(new Int32Array(init.lock)) : NO_LOCK;
  const fwd = new Forwarder(nat, uplink, init.maxSession, init.offload ? VNET_HDR_LEN : 0, guard, new Float64Array(init.sessionCounters));
  const locked = (f: () => void): void => {
    guard.lock();
    try {
      f();
    } finally {
      guard.unlock();
    }
  };
  const ep = epollCreate1(EPOLL_CLOEXEC);
  if (ep < 0) throw new Error(`epoll_create1: ${strerror(errno())}`);
  if (epollAdd(ep, init.wakeFd, EPOLLIN) < 0 || epollAdd(ep, init.uplinkFd, EPOLLIN) < 0) {
    throw new Error(`epoll_ctl: ${strerror(errno())}`);
  }
  // fd -> session id, for the fds of sessions; 0 = not a session.
  const sessionByFd = new Map<number, number>();
  const fdBySession = new Map<number, number>();
  const buf = new Uint8Array(BUFFER_SIZE);
  const events = new Uint8Array(MAX_EVENTS * EPOLL_EVENT_SIZE);
  const ev = new DataView(events.buffer, events.byteOffset, events.byteLength);
  const wakeBuf = new Uint8Array(8);
  let readErrors = 0;
  let running = true;
  let lastExpire = 0;
  const expireBudget = Math.max(4096, Math.ceil(init.flowCapacity / 8));

  const stats = (): WorkerStats => ({
    ...nat.counters,
    ...fwd.counters,
    flows: nat.flowCount,
    sharedPortsInUse: nat.sharedPortsInUse().reduce((a, b) => a + b, 0),
    flowCapacity: nat.flows.capacity,
    sessions: fdBySession.size,
    readErrors,
  });
  const post = (m: FromWorker): void => port.postMessage(m);

  const control = (): void => {
    for (let m = receiveMessageOnPort(port); m !== undefined; m = receiveMessageOnPort(port)) {
      const msg = m.message as ToWorker;
      try {
        switch (msg.op) {
          case 'add':
            try {
              fwd.attach(
                msg.id,
                new TunDevice(msg.fd),
                msg.addrs.inner4 ?? -1,
                msg.addrs.vip4 ?? -1,
                msg.addrs.inner6 && new Uint32Array(msg.addrs.inner6),
                msg.addrs.vip6 && new Uint32Array(msg.addrs.vip6),
                msg.addrs.shared,
              );
              if (epollAdd(ep, msg.fd, EPOLLIN) < 0) {
                const e = errno();
                fwd.detach(msg.id, false);
                throw new Error(`epoll_ctl add fd ${msg.fd}: ${strerror(e)}`);
              }
            } catch (e) {
              // The fd was handed over: it is ours to close, added or not.
              close(msg.fd);
              throw e;
            }
            sessionByFd.set(msg.fd, msg.id);
            fdBySession.set(msg.id, msg.fd);
            post({ op: 'ack', seq: msg.seq });
            break;
          case 'remove': {
            const fd = fdBySession.get(msg.id);
            fwd.detach(msg.id, false); // its flows go with 'purge'
            if (fd !== undefined) {
              epollDel(ep, fd);
              close(fd);
              sessionByFd.delete(fd);
              fdBySession.delete(msg.id);
            }
            post({ op: 'ack', seq: msg.seq });
            break;
          }
          case 'purge':
            locked(() => nat.dropFlows(msg.id));
            post({ op: 'ack', seq: msg.seq });
            break;
          case 'local':
            // This thread's own index of addresses: no lock. The shared flows go with 'purgeLocal'.
            nat.setLocalAddresses(msg.v4, msg.v6, false);
            post({ op: 'ack', seq: msg.seq });
            break;
          case 'purgeLocal':
            locked(() => nat.dropLocalFlows());
            post({ op: 'ack', seq: msg.seq });
            break;
          case 'stats':
            post({ op: 'ack', seq: msg.seq, stats: stats() });
            break;
          case 'stop':
            running = false;
            for (const fd of fdBySession.values()) close(fd);
            fdBySession.clear();
            sessionByFd.clear();
            close(init.uplinkFd);
            close(ep);
            post({ op: 'ack', seq: msg.seq, stats: stats() });
            break;
        }
      } catch (e) {
        post({ op: 'error', seq: msg.seq, message: (e as Error).message });
      }
    }
  };

  post({ op: 'ready' });
  while (running) {
    const n = epollWait(ep, events, MAX_EVENTS, 1000);
    if (n < 0) {
      const e = errno();
      if (e === EINTR) continue;
      throw new Error(`epoll_wait: ${strerror(e)}`);
    }
    const now = process.hrtime()[0] - init.epoch;
    for (let i = 0; i < n && running; i++) {
      const fd = eventFd(ev, i);
      if (fd === init.wakeFd) {
        read(fd, wakeBuf, 8);
        control();
      } else if (fd === init.uplinkFd) {
        for (let k = 0; k < BATCH; k++) {
          const len = read(fd, buf, BUFFER_SIZE);
          if (len <= 0) {
            if (len < 0 && errno() !== EAGAIN) readErrors++;
            break;
          }
          fwd.fromUplink(buf, len, now);
        }
      } else {
        const id = sessionByFd.get(fd);
        if (id === undefined) continue;
        for (let k = 0; k < BATCH; k++) {
          const len = read(fd, buf, BUFFER_SIZE);
          if (len <= 0) {
            if (len < 0 && errno() !== EAGAIN) readErrors++;
            break;
          }
          fwd.fromSession(id, buf, len, now);
        }
      }
    }
    if (now !== lastExpire && init.index === 0) {
      lastExpire = now;
      locked(() => nat.expire(now, expireBudget));
    }
  }
}

const init = workerData as WorkerInit & { port: MessagePort };
try {
  main(init.port, init);
} catch (e) {
  init.port.postMessage({ op: 'fatal', message: (e as Error).message } satisfies FromWorker);
}
