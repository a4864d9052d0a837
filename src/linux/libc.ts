// The few libc calls vipnat needs, bound with koffi: file descriptors, ioctl, epoll, eventfd.
import koffi from 'koffi';

const lib = koffi.load('libc.so.6');

export const O_RDWR = 0o2;
export const O_NONBLOCK = 0o4000;
export const O_CLOEXEC = 0o2000000;
export const EFD_NONBLOCK = 0o4000;
export const EFD_CLOEXEC = 0o2000000;
export const EPOLL_CLOEXEC = 0o2000000;
export const EPOLL_CTL_ADD = 1;
export const EPOLL_CTL_DEL = 2;
export const EPOLLIN = 0x001;
export const EPOLLERR = 0x008;
export const EPOLLHUP = 0x010;

export const EINTR = 4;
export const EAGAIN = 11;
export const ENOENT = 2;
export const EPERM = 1;
export const EACCES = 13;
export const EBUSY = 16;
export const ENODEV = 19;

/** struct epoll_event is packed on x86-64 (12 bytes) and naturally aligned elsewhere (16). */
export const EPOLL_EVENT_SIZE = process.arch === 'x64' ? 12 : 16;
const EPOLL_DATA_OFFSET = process.arch === 'x64' ? 4 : 8;

export const open = lib.func('int open(const char *path, int flags)') as (path: string, flags: number) => number;
export const close = lib.func('int close(int fd)') as (fd: number) => number;
export const read = lib.func('long read(int fd, void *buf, size_t count)') as (fd: number, buf: Uint8Array, count: number) => number;
export const write = lib.func('long write(int fd, const void *buf, size_t count)') as (
  fd: number,
  buf: Uint8Array,
  count: number,
) => number;
const ioctlPtr = lib.func('int ioctl(int fd, unsigned long request, void *arg)') as (fd: number, req: number, arg: Uint8Array) => number;
const ioctlInt = lib.func('int ioctl(int fd, unsigned long request, unsigned long arg)') as (
  fd: number,
  req: number,
  arg: number,
) => number;
export const epollCreate1 = lib.func('int epoll_create1(int flags)') as (flags: number) => number;
export const epollCtl = lib.func('int epoll_ctl(int epfd, int op, int fd, void *event)') as (
  epfd: number,
  op: number,
  fd: number,
  ev: Uint8Array | null,
) => number;
export const epollWait = lib.func('int epoll_wait(int epfd, void *events, int maxevents, int timeout)') as (
  epfd: number,
  events: Uint8Array,
  max: number,
  timeoutMs: number,
) => number;
export const eventfd = lib.func('int eventfd(unsigned int initval, int flags)') as (initval: number, flags: number) => number;
// Sockets (packet sockets for DHCP and ARP, netlink for sock_diag) and entering a namespace.
export const socketFn = lib.func('int socket(int domain, int type, int protocol)') as (d: number, t: number, p: number) => number;
export const setnsFn = lib.func('int setns(int fd, int nstype)') as (fd: number, nstype: number) => number;
export const sendtoFn = lib.func('long sendto(int fd, const void *buf, size_t len, int flags, const void *addr, int addrlen)') as (
  fd: number,
  buf: Uint8Array,
  len: number,
  flags: number,
  addr: Uint8Array,
  addrlen: number,
) => number;
export const recvFn = lib.func('long recv(int fd, void *buf, size_t len, int flags)') as (
  fd: number,
  buf: Uint8Array,
  len: number,
  flags: number,
) => number;
export const setsockoptFn = lib.func('int setsockopt(int fd, int level, int name, const void *val, int len)') as (
  fd: number,
  level: number,
  name: number,
  val: Uint8Array,
  len: number,
) => number;
export const geteuid = lib.func('unsigned int geteuid()') as () => number;
export const mount = lib.func(
  'int mount(const char *source, const char *target, const char *fstype, unsigned long flags, const void *data)',
) as (source: string | null, target: string, fstype: string | null, flags: number, data: null) => number;
export const MS_NOSUID = 2;
export const MS_NODEV = 4;
export const MS_NOEXEC = 8;
export const MS_REMOUNT = 32;
export const MS_BIND = 4096;
const strerrorFn = lib.func('const char *strerror(int errnum)') as (e: number) => string;

/** errno of the last failed call on this thread. */
export function errno(): number {
  return koffi.errno();
}

export function strerror(e: number): string {
  return strerrorFn(e);
}

/** ioctl with a pointer to a buffer (e.g. struct ifreq). */
export function ioctl(fd: number, request: number, arg: Uint8Array): number {
  return ioctlPtr(fd, request, arg);
}

/** ioctl with an integer argument. */
export function ioctlValue(fd: number, request: number, arg: number): number {
  return ioctlInt(fd, request, arg);
}

/** Registers `fd` for `events`, with the fd itself as the event's data. */
export function epollAdd(epfd: number, fd: number, events: number): number {
  const ev = new Uint8Array(EPOLL_EVENT_SIZE);
  const dv = new DataView(ev.buffer, ev.byteOffset, ev.byteLength);
  dv.setUint32(0, events, true);
  dv.setUint32(EPOLL_DATA_OFFSET, fd, true);
  return epollCtl(epfd, EPOLL_CTL_ADD, fd, ev);
}

export function epollDel(epfd: number, fd: number): number {
  // Kernels before 2.6.9 wanted a non-null event; pass one to be safe.
  return epollCtl(epfd, EPOLL_CTL_DEL, fd, new Uint8Array(EPOLL_EVENT_SIZE));
}

/** The fd stored in event `i` of an epoll_wait result buffer. */
export function eventFd(dv: DataView, i: number): number {
  return dv.getUint32(i * EPOLL_EVENT_SIZE + EPOLL_DATA_OFFSET, true);
}

export function eventMask(dv: DataView, i: number): number {
  return dv.getUint32(i * EPOLL_EVENT_SIZE, true);
}

/** An Error carrying errno, with a message naming the call. */
export class SysError extends Error {
  readonly errno: number;
  constructor(call: string, e: number) {
    super(`${call}: ${strerror(e)}`);
    this.name = 'SysError';
    this.errno = e;
  }
}

const getsockopt = lib.func('int getsockopt(int fd, int level, int name, void *value, _Inout_ unsigned int *len)') as (
  fd: number,
  level: number,
  name: number,
  value: Uint8Array,
  len: number[],
) => number;
const SOL_SOCKET = 1;
const SO_PEERCRED = 17;

/** The pid, uid and gid of the process at the other end of a unix socket (SO_PEERCRED), or null. */
export function peerCredentials(fd: number): { pid: number; uid: number; gid: number } | null {
  const cred = new Uint8Array(12);
  const len = [12];
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) < 0) return null;
  const dv = new DataView(cred.buffer, cred.byteOffset, cred.byteLength);
  return { pid: dv.getInt32(0, true), uid: dv.getUint32(4, true), gid: dv.getUint32(8, true) };
}
