// TUN devices: open /dev/net/tun and attach a named layer-3 interface to the fd.
import { close, errno, ioctl, O_CLOEXEC, O_NONBLOCK, O_RDWR, open, SysError } from './libc.js';

const TUNSETIFF = 0x400454ca;
const IFF_TUN = 0x0001;
const IFF_NO_PI = 0x1000;
const IFNAMSIZ = 16;
const IFREQ_SIZE = 40;

export const TUN_PATH = '/dev/net/tun';

/**
 * Creates (or attaches to) the TUN interface `name` in the caller's network
 * namespace and returns its fd: non-blocking, close-on-exec (children such as
 * `ip` or a session's program must not hold it, or the interface would
 * outlive vipnat). The interface disappears when the fd is closed.
 */
export function openTun(name: string): number {
  if (name.length === 0 || name.length >= IFNAMSIZ) throw new Error(`interface name "${name}": must be 1-15 characters`);
  const fd = open(TUN_PATH, O_RDWR | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) throw new SysError(`open ${TUN_PATH}`, errno());
  const ifr = new Uint8Array(IFREQ_SIZE);
  ifr.set(new TextEncoder().encode(name), 0);
  const flags = IFF_TUN | IFF_NO_PI;
  ifr[IFNAMSIZ] = flags & 0xff;
  ifr[IFNAMSIZ + 1] = flags >>> 8;
  if (ioctl(fd, TUNSETIFF, ifr) < 0) {
    const e = errno();
    close(fd);
    throw new SysError(`TUNSETIFF ${name}`, e);
  }
  return fd;
}
