// TUN devices: open /dev/net/tun and attach a named layer-3 interface to the fd.
import { close, errno, ioctl, ioctlValue, O_CLOEXEC, O_NONBLOCK, O_RDWR, open, SysError } from './libc.js';

const TUNSETIFF = 0x400454ca;
const TUNSETOFFLOAD = 0x400454d0;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFF_MULTI_QUEUE = 0x0100;
const IFF_VNET_HDR = 0x4000;
const TUN_F_CSUM = 0x01;
const TUN_F_TSO4 = 0x02;
const TUN_F_TSO6 = 0x04;
const TUN_F_TSO_ECN = 0x08;
const TUN_F_USO4 = 0x20;
const TUN_F_USO6 = 0x40;

/**
 * Bytes of the virtio_net_hdr that precedes every packet on a TUN opened with
 * offloads (struct virtio_net_hdr; its fields: src/wire/vnet.ts, which this
 * layer may not import).
 */
export const VNET_HDR_LEN = 10;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;

export const TUN_PATH = '/dev/net/tun';

/**
 * Creates (or attaches to) the TUN interface `name` in the caller's network
 * namespace and returns its fd: non-blocking, close-on-exec (children such as
 * `ip` or a session's program must not hold it, or the interface would
 * outlive vipnat). The interface disappears when the fd is closed. With
 * `offload`, every packet read or written carries a virtio_net_hdr first.
 */
export function openTun(name: string, offload = false): number {
  return openQueue(name, offload, false);
}

/**
 * Opens `queues` queues of the TUN interface `name` (as openTun), one fd
 * each. With more than one the interface is multi-queue: the kernel spreads
 * the packets it sends over the queues by flow, and sends a flow's packets
 * to the queue its last packet was written to. One queue is a plain TUN.
 * On failure, closes what it opened.
 */
export function openTunQueues(name: string, offload: boolean, queues: number): number[] {
  if (queues === 1) return [openTun(name, offload)];
  const fds: number[] = [];
  try {
    for (let q = 0; q < queues; q++) fds.push(openQueue(name, offload, true));
  } catch (e) {
    for (const fd of fds) close(fd);
    throw e;
  }
  return fds;
}

function openQueue(name: string, offload: boolean, multi: boolean): number {
  if (name.length === 0 || name.length >= IFNAMSIZ) throw new Error(`interface name "${name}": must be 1-15 characters`);
  const fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw new SysError(`open ${TUN_PATH}`, errno());
  const ifr = new Uint8Array(IFREQ_SIZE);
  ifr.set(new TextEncoder().encode(name), 0);
  const flags = IFF_TUN | IFF_NO_PI | (offload ? IFF_VNET_HDR : 0) | (multi ? IFF_MULTI_QUEUE : 0);
  ifr[IFNAMSIZ] = flags & 0xff;
  ifr[IFNAMSIZ + 1] = flags >>> 8;
  if (ioctl(fd, TUNSETIFF, ifr) < 0) {
    const e = errno();
    close(fd);
    throw new SysError(`TUNSETIFF ${name}`, e);
  }
  if (offload) {
    // Let the kernel hand over (and take) whole TSO/USO segments with their
    // checksum left to finish: one read per 64 KiB instead of per MTU.
    const base = TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6 | TUN_F_TSO_ECN;
    if (ioctlValue(fd, TUNSETOFFLOAD, base | TUN_F_USO4 | TUN_F_USO6) < 0 && ioctlValue(fd, TUNSETOFFLOAD, base) < 0) {
      const e = errno();
      close(fd);
      throw new SysError(`TUNSETOFFLOAD ${name}`, e);
    }
  }
  return fd;
}
