// The TCP and UDP sockets of a network namespace and the processes holding them, through NETLINK_SOCK_DIAG (as `ss` does), no subprocess.
//
// Only creating the netlink socket needs the target namespace: a socket stays
// in the namespace it was made in, so the calling thread enters the namespace,
// makes the socket, and comes straight back; the dumps and the /proc scan then
// run in the caller's own namespace.
import { fstatSync, readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { endianness } from 'node:os';
import { close, errno, O_CLOEXEC, open, recvFn, sendtoFn, setnsFn, setsockoptFn, socketFn, strerror, SysError } from './libc.js';

/** Netlink headers and inet_diag counters are in host order; ports and addresses in network order. */
const LE = endianness() === 'LE';

const AF_NETLINK = 16;
const AF_INET = 2;
const AF_INET6 = 10;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const NETLINK_SOCK_DIAG = 4;
const CLONE_NEWNET = 0x40000000;
const O_RDONLY = 0;
const IPPROTO_TCP = 6;
const IPPROTO_UDP = 17;
const SOL_SOCKET = 1;
const SO_RCVTIMEO = 20;
const MSG_TRUNC = 0x20;
const EINTR = 4;
const EAGAIN = 11;
const EINVAL = 22;

const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const SOCK_DIAG_BY_FAMILY = 20;
const NLM_F_REQUEST = 0x01;
const NLM_F_DUMP = 0x300;

/**
 * struct nlmsghdr (16 bytes):
 *
 *   0 nlmsg_len (u32)   4 nlmsg_type (u16)   6 nlmsg_flags (u16)   8 nlmsg_seq (u32)   12 nlmsg_pid (u32)
 */
const NLMSG_HDRLEN = 16;

/**
 * struct inet_diag_sockid (48 bytes), inside both the request and the answer:
 *
 *   0 idiag_sport (be16)   2 idiag_dport (be16)   4 idiag_src[4] (be32)   20 idiag_dst[4] (be32)
 *  36 idiag_if (u32)      40 idiag_cookie[2] (u32)
 *
 * struct inet_diag_req_v2 (56 bytes):
 *
 *   0 sdiag_family (u8)   1 sdiag_protocol (u8)   2 idiag_ext (u8)   3 pad   4 idiag_states (u32)   8 id
 *
 * struct inet_diag_msg (72 bytes), followed by attributes we do not read:
 *
 *   0 idiag_family (u8)   1 idiag_state (u8)   2 idiag_timer (u8)   3 idiag_retrans (u8)   4 id
 *  52 idiag_expires (u32)   56 idiag_rqueue (u32)   60 idiag_wqueue (u32)   64 idiag_uid (u32)   68 idiag_inode (u32)
 */
const REQ_V2_SIZE = 56;
const DIAG_MSG_SIZE = 72;
const MSG_FAMILY = 0;
const MSG_STATE = 1;
const MSG_SPORT = 4;
const MSG_DPORT = 6;
const MSG_SRC = 8;
const MSG_DST = 24;
const MSG_RQUEUE = 56;
const MSG_WQUEUE = 60;
const MSG_UID = 64;
const MSG_INODE = 68;

/** Receive buffer: the kernel sizes dump datagrams at most 32 KiB (netlink_dump), so 64 KiB never truncates. */
const RECV_SIZE = 65536;

// include/net/tcp_states.h, named as ss names them (ss itself says UNCONN for CLOSE). A TCP socket
// only bound (TCP_BOUND_INACTIVE, 13, a request flag only) is reported as CLOSE.
const TCP_STATES: readonly string[] = [
  'UNKNOWN',
  'ESTAB',
  'SYN-SENT',
  'SYN-RECV',
  'FIN-WAIT-1',
  'FIN-WAIT-2',
  'TIME-WAIT',
  'CLOSE',
  'CLOSE-WAIT',
  'LAST-ACK',
  'LISTEN',
  'CLOSING',
  'NEW-SYN-RECV',
];
const TCP_ESTABLISHED = 1;

export interface KernelSocket {
  proto: 'tcp' | 'udp';
  family: 4 | 6;
  /** TCP state name as ss prints it: LISTEN, ESTAB, SYN-SENT, SYN-RECV, FIN-WAIT-1, FIN-WAIT-2, TIME-WAIT, CLOSE, CLOSE-WAIT, LAST-ACK, CLOSING, NEW-SYN-RECV; UDP: UNCONN for unconnected, ESTAB for connected */
  state: string;
  /** Addresses as text (IPv6 compressed, like '::' or 'fd00::1'; IPv4-mapped as '::ffff:1.2.3.4'). */
  local: { address: string; port: number };
  /** '0.0.0.0'/'::' and 0 when none. */
  remote: { address: string; port: number };
  inode: number;
  uid: number;
  /** idiag_rqueue / idiag_wqueue */
  recvQ: number;
  sendQ: number;
  /** every process holding the socket: pid and its /proc/PID/comm */
  processes: { pid: number; name: string }[];
}

/** What parseDiagMessages saw besides sockets: the end of the dump, or the kernel's error (a positive errno). */
export interface DiagStatus {
  done: boolean;
  errno: number;
}

function ipv4Text(b: Uint8Array, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

/** RFC 5952 text, as inet_ntop writes it: the longest run of two or more zero groups (the first of equals) becomes '::'. */
function ipv6Text(b: Uint8Array, off: number): string {
  const w: number[] = [];
  for (let i = 0; i < 8; i++) w.push((b[off + 2 * i]! << 8) | b[off + 2 * i + 1]!);
  if (w[0] === 0 && w[1] === 0 && w[2] === 0 && w[3] === 0 && w[4] === 0 && w[5] === 0xffff) return `::ffff:${ipv4Text(b, off + 12)}`;
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (w[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && w[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (a: number, z: number): string =>
    w
      .slice(a, z)
      .map((x) => x.toString(16))
      .join(':');
  if (bestAt < 0) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

/**
 * Pure: parses the bytes of netlink answers (one or more nlmsghdr with
 * inet_diag_msg payloads, NLMSG_DONE, NLMSG_ERROR) into sockets without
 * processes. NLMSG_DONE sets `status.done`; an NLMSG_ERROR (or a DONE carrying
 * an error) sets `status.done` and `status.errno` (positive). Nothing after the
 * end is read. Throws only on bytes that are not netlink at all.
 */
export function parseDiagMessages(
  buf: Uint8Array,
  len: number,
  proto: 'tcp' | 'udp',
  status: DiagStatus = { done: false, errno: 0 },
): Omit<KernelSocket, 'processes'>[] {
  const out: Omit<KernelSocket, 'processes'>[] = [];
  if (len > buf.byteLength) throw new Error(`netlink answer: length ${len} is beyond the buffer's ${buf.byteLength} bytes`);
  const dv = new DataView(buf.buffer, buf.byteOffset, len);
  let off = 0;
  while (off + NLMSG_HDRLEN <= len) {
    const msgLen = dv.getUint32(off, LE);
    const type = dv.getUint16(off + 4, LE);
    if (msgLen < NLMSG_HDRLEN || off + msgLen > len) {
      throw new Error(`netlink answer: message at offset ${off} says it is ${msgLen} bytes, ${len - off} are left`);
    }
    const p = off + NLMSG_HDRLEN;
    const payload = msgLen - NLMSG_HDRLEN;
    if (type === NLMSG_DONE) {
      // A dump that failed part-way reports its error in DONE's int.
      const err = payload >= 4 ? dv.getInt32(p, LE) : 0;
      status.done = true;
      if (err < 0) status.errno = -err;
      return out;
    }
    if (type === NLMSG_ERROR) {
      const err = payload >= 4 ? dv.getInt32(p, LE) : -EINVAL;
      // Error 0 is an acknowledgement, which a dump does not ask for: skip it.
      if (err !== 0) {
        status.done = true;
        status.errno = -err;
        return out;
      }
    } else if (type === SOCK_DIAG_BY_FAMILY) {
      if (payload < DIAG_MSG_SIZE)
        throw new Error(`netlink answer: inet_diag_msg at offset ${off} is ${payload} bytes, not ${DIAG_MSG_SIZE}`);
      const fam = buf[p + MSG_FAMILY];
      const st = buf[p + MSG_STATE]!;
      if (fam === AF_INET || fam === AF_INET6) {
        const v6 = fam === AF_INET6;
        const addr = v6 ? ipv6Text : ipv4Text;
        out.push({
          proto,
          family: v6 ? 6 : 4,
          state: proto === 'udp' ? (st === TCP_ESTABLISHED ? 'ESTAB' : 'UNCONN') : (TCP_STATES[st] ?? `UNKNOWN-${st}`),
          local: { address: addr(buf, p + MSG_SRC), port: dv.getUint16(p + MSG_SPORT, false) },
          remote: { address: addr(buf, p + MSG_DST), port: dv.getUint16(p + MSG_DPORT, false) },
          inode: dv.getUint32(p + MSG_INODE, LE),
          uid: dv.getUint32(p + MSG_UID, LE),
          recvQ: dv.getUint32(p + MSG_RQUEUE, LE),
          sendQ: dv.getUint32(p + MSG_WQUEUE, LE),
        });
      }
    }
    // Other types (NLMSG_NOOP) carry nothing for us. Messages are 4-byte aligned.
    off += (msgLen + 3) & ~3;
  }
  return out;
}

/** A netlink socket made inside the namespace at `nsPath`, with this thread back in its own namespace afterwards. */
function diagSocketIn(nsPath: string, targetFd: number): number {
  const selfFd = open('/proc/thread-self/ns/net', O_RDONLY | O_CLOEXEC);
  if (selfFd < 0) throw new SysError('open /proc/thread-self/ns/net', errno());
  try {
    // Already there (also the unprivileged case): no setns needed.
    const self = fstatSync(selfFd);
    const target = fstatSync(targetFd);
    if (self.dev === target.dev && self.ino === target.ino) return openDiagSocket(nsPath);
    if (setnsFn(targetFd, CLONE_NEWNET) < 0) {
      const e = errno();
      const hint = e === EINVAL ? ' (is it a network namespace?)' : '';
      throw new Error(`network namespace ${nsPath}: setns: ${strerror(e)}${hint}`);
    }
    let fd = -1;
    try {
      fd = openDiagSocket(nsPath);
    } finally {
      if (setnsFn(selfFd, CLONE_NEWNET) < 0) {
        const e = errno();
        if (fd >= 0) close(fd);
        // Nothing sane is left to do for this thread; say so loudly, over any error from inside.
        // eslint-disable-next-line no-unsafe-finally
        throw new Error(`network namespace ${nsPath}: setns back to this thread's own namespace failed: ${strerror(e)}`);
      }
    }
    return fd;
  } finally {
    close(selfFd);
  }
}

function openDiagSocket(nsPath: string): number {
  const fd = socketFn(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
  if (fd < 0) throw new Error(`network namespace ${nsPath}: socket(AF_NETLINK, NETLINK_SOCK_DIAG): ${strerror(errno())}`);
  return fd;
}

/** One SOCK_DIAG_BY_FAMILY dump of every state of (family, protocol), read until its end. */
function dump(
  fd: number,
  family: number,
  proto: 'tcp' | 'udp',
  seq: number,
  rx: Uint8Array,
  into: Omit<KernelSocket, 'processes'>[],
): void {
  const req = new Uint8Array(NLMSG_HDRLEN + REQ_V2_SIZE);
  const dv = new DataView(req.buffer, req.byteOffset, req.byteLength);
  dv.setUint32(0, req.byteLength, LE);
  dv.setUint16(4, SOCK_DIAG_BY_FAMILY, LE);
  dv.setUint16(6, NLM_F_REQUEST | NLM_F_DUMP, LE);
  dv.setUint32(8, seq, LE);
  req[NLMSG_HDRLEN] = family;
  req[NLMSG_HDRLEN + 1] = proto === 'tcp' ? IPPROTO_TCP : IPPROTO_UDP;
  dv.setUint32(NLMSG_HDRLEN + 4, 0xffffffff, LE);
  // struct sockaddr_nl of the kernel: family AF_NETLINK, pid 0, groups 0.
  const kernel = new Uint8Array(12);
  new DataView(kernel.buffer, kernel.byteOffset, kernel.byteLength).setUint16(0, AF_NETLINK, LE);
  const what = `sock_diag dump of ${proto}/IPv${family === AF_INET ? 4 : 6}`;
  if (sendtoFn(fd, req, req.byteLength, 0, kernel, kernel.byteLength) < 0) throw new SysError(`${what}: sendto`, errno());
  const status: DiagStatus = { done: false, errno: 0 };
  while (!status.done) {
    // MSG_TRUNC makes recv return the datagram's real length, so a cut one is seen.
    const n = recvFn(fd, rx, rx.byteLength, MSG_TRUNC);
    if (n < 0) {
      const e = errno();
      if (e === EINTR) continue;
      if (e === EAGAIN) throw new Error(`${what}: no answer from the kernel in 5 s`);
      throw new SysError(`${what}: recv`, e);
    }
    if (n === 0) throw new Error(`${what}: the netlink socket closed before NLMSG_DONE`);
    if (n > rx.byteLength) throw new Error(`${what}: a ${n}-byte answer does not fit the ${rx.byteLength}-byte buffer`);
    for (const s of parseDiagMessages(rx, n, proto, status)) into.push(s);
  }
  if (status.errno !== 0) {
    // ENOENT: no diag handler for this protocol (tcp_diag/udp_diag not built or loaded).
    const hint = status.errno === 2 ? ` (is the ${proto}_diag module loaded?)` : '';
    throw new Error(`${what}: ${strerror(status.errno)}${hint}`);
  }
}

/** Adds every process in the namespace (dev, ino) that holds one of `byInode`'s sockets to it. */
function addProcesses(dev: number, ino: number, byInode: Map<number, KernelSocket>): void {
  for (const entry of readdirSync('/proc')) {
    const c = entry.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    const base = `/proc/${entry}`;
    let name: string | null = null;
    let fds: string[];
    try {
      const ns = statSync(`${base}/ns/net`);
      if (ns.ino !== ino || ns.dev !== dev) continue;
      fds = readdirSync(`${base}/fd`);
    } catch (e) {
      if (vanished(e)) continue;
      throw e;
    }
    const pid = Number(entry);
    for (const fd of fds) {
      let link: string;
      try {
        link = readlinkSync(`${base}/fd/${fd}`);
      } catch (e) {
        if (vanished(e)) continue;
        throw e;
      }
      // "socket:[12345]"
      if (!link.startsWith('socket:[')) continue;
      const sock = byInode.get(Number(link.slice(8, -1)));
      // One entry per process, however many of its fds share the socket.
      if (sock === undefined || sock.processes.some((p) => p.pid === pid)) continue;
      if (name === null) {
        try {
          name = readFileSync(`${base}/comm`, 'utf8').trimEnd();
        } catch (e) {
          if (!vanished(e)) throw e;
          name = '';
        }
      }
      sock.processes.push({ pid, name });
    }
  }
}

/** A process or fd that went away (or is not ours to see) while /proc was being read. */
function vanished(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ESRCH' || code === 'EACCES' || code === 'EPERM';
}

/**
 * Sockets of the network namespace at `nsPath` (e.g. /run/netns/NAME or
 * /proc/PID/ns/net); the calling thread enters it only to open the netlink
 * socket, then returns to its own namespace before anything else runs. Throws
 * an Error saying what failed (with strerror) if the namespace cannot be entered.
 */
export function namespaceSockets(nsPath: string, opts: { processes?: boolean } = {}): KernelSocket[] {
  const targetFd = open(nsPath, O_RDONLY | O_CLOEXEC);
  if (targetFd < 0) throw new Error(`network namespace ${nsPath}: open: ${strerror(errno())}`);
  let fd: number;
  let dev: number;
  let ino: number;
  try {
    // The stat of the file actually opened, so a namespace replaced meanwhile cannot mix in.
    const st = fstatSync(targetFd);
    dev = st.dev;
    ino = st.ino;
    fd = diagSocketIn(nsPath, targetFd);
  } finally {
    close(targetFd);
  }
  const found: Omit<KernelSocket, 'processes'>[] = [];
  try {
    // A dump never blocks for long; the timeout only keeps a kernel bug from hanging the event loop.
    const tv = new Uint8Array(new BigInt64Array([5n, 0n]).buffer); // struct timeval { 5 s, 0 us }, native order
    setsockoptFn(fd, SOL_SOCKET, SO_RCVTIMEO, tv, tv.byteLength);
    const rx = new Uint8Array(RECV_SIZE);
    dump(fd, AF_INET, 'tcp', 1, rx, found);
    dump(fd, AF_INET6, 'tcp', 2, rx, found);
    dump(fd, AF_INET, 'udp', 3, rx, found);
    dump(fd, AF_INET6, 'udp', 4, rx, found);
  } finally {
    close(fd);
  }
  const sockets: KernelSocket[] = found.map((s) => ({ ...s, processes: [] }));
  const byInode = new Map<number, KernelSocket>();
  // Inode 0: no file holds it any more (TIME-WAIT, orphans, request sockets).
  for (const s of sockets) if (s.inode !== 0) byInode.set(s.inode, s);
  if (byInode.size > 0 && opts.processes !== false) addProcesses(dev, ino, byInode);
  return sockets;
}
