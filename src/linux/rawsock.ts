// Packet sockets (AF_PACKET, koffi): whole packets sent onto and read off one interface, unchanged by the IP stack.
//
// A packet socket bound to an interface hands its bytes straight to the
// device: nothing fills in lengths or checksums, nothing routes, nothing
// refuses a packet for being malformed (raw IP sockets do all three). On a
// TUN (no link-layer header) a SOCK_DGRAM packet socket's bytes are exactly
// what the TUN's reader gets; on an Ethernet device (veth) the kernel adds the
// Ethernet header for the destination MAC given. Reading works the same way,
// for captures. Sending returns the bytes sent or -errno: a fuzzer or a
// flood counts refusals instead of stopping at the first.
import koffi from 'koffi';
import { close, errno, recvFn, sendtoFn, setsockoptFn, socketFn, SysError } from './libc.js';

const lib = koffi.load('libc.so.6');

export const AF_PACKET = 17;
export const SOCK_RAW = 3;
export const SOCK_DGRAM = 2;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SO_SNDBUF = 7;
const SO_RCVBUF = 8;
const SOL_PACKET = 263;
const PACKET_VNET_HDR = 15;
const PACKET_QDISC_BYPASS = 20;
const MSG_DONTWAIT = 0x40;

/** EtherTypes (the packet socket's protocol, in host order here). */
export const ETH_P_ALL = 0x0003;
export const ETH_P_IP = 0x0800;
export const ETH_P_IPV6 = 0x86dd;

/**
 * struct sockaddr_ll (20 bytes):
 *
 *   0 sll_family (u16)   2 sll_protocol (be16)   4 sll_ifindex (i32)
 *   8 sll_hatype (u16)  10 sll_pkttype (u8)     11 sll_halen (u8)    12 sll_addr[8]
 */
const SOCKADDR_LL_SIZE = 20;

const bindFn = lib.func('int bind(int fd, const void *addr, int len)') as (fd: number, addr: Uint8Array, len: number) => number;
const ifNameToIndex = lib.func('unsigned int if_nametoindex(const char *name)') as (name: string) => number;

/** The index of interface `name` in the caller's network namespace; throws if there is none. */
export function interfaceIndex(name: string): number {
  const i = ifNameToIndex(name);
  if (i === 0) throw new SysError(`if_nametoindex ${name}`, errno());
  return i;
}

/** Parses "aa:bb:cc:dd:ee:ff" into 6 bytes. */
export function parseMac(mac: string): Uint8Array {
  const parts = mac.split(':');
  if (parts.length !== 6 || parts.some((p) => !/^[0-9a-fA-F]{2}$/.test(p))) throw new Error(`MAC address "${mac}": must be six hex bytes`);
  return Uint8Array.from(parts.map((p) => parseInt(p, 16)));
}

export interface PacketSocketOptions {
  /**
   * SOCK_DGRAM (true, default): packets without a link-layer header, which
   * the kernel adds on send (for `dstMac`) and strips on receive. False:
   * SOCK_RAW, whole frames both ways.
   */
  cooked?: boolean;
  /** EtherType received (and sent by default): ETH_P_ALL (default) receives everything. */
  protocol?: number;
  /**
   * Every packet sent starts with a struct virtio_net_hdr (10 bytes), which
   * the kernel checks and applies (e.g. a checksum left for the device to
   * finish); every packet received starts with one too. Only with
   * `cooked: false` (the kernel's rule); on a TUN, which has no link-layer
   * header, SOCK_RAW and SOCK_DGRAM packets are the same bytes.
   */
  vnetHdr?: boolean;
  /** Send straight to the device's driver, past its queueing discipline (PACKET_QDISC_BYPASS). */
  qdiscBypass?: boolean;
  /** Socket buffer sizes in bytes (SO_SNDBUF, SO_RCVBUF), when the defaults are too small. */
  sndbuf?: number;
  rcvbuf?: number;
}

function setInt(fd: number, level: number, name: number, value: number, what: string): void {
  const v = new Uint8Array(4);
  new DataView(v.buffer).setInt32(0, value, true);
  if (setsockoptFn(fd, level, name, v, 4) < 0) throw new SysError(`setsockopt ${what}`, errno());
}

/** A packet socket bound to one interface of the network namespace it was opened in. */
export class PacketSocket {
  private readonly addr = new Uint8Array(SOCKADDR_LL_SIZE);
  private readonly addrView: DataView;
  private closed = false;

  private constructor(
    readonly fd: number,
    readonly ifindex: number,
    readonly protocol: number,
  ) {
    this.addrView = new DataView(this.addr.buffer, this.addr.byteOffset, this.addr.byteLength);
    this.addrView.setUint16(0, AF_PACKET, true);
    this.addrView.setUint16(2, protocol, false);
    this.addrView.setInt32(4, ifindex, true);
  }

  /** Opens a non-blocking packet socket on interface `ifname` (needs CAP_NET_RAW in its namespace). */
  static open(ifname: string, opts: PacketSocketOptions = {}): PacketSocket {
    if (opts.vnetHdr && opts.cooked !== false) throw new Error('packet socket: vnetHdr needs cooked: false (SOCK_RAW)');
    const ifindex = interfaceIndex(ifname);
    const protocol = opts.protocol ?? ETH_P_ALL;
    const type = (opts.cooked === false ? SOCK_RAW : SOCK_DGRAM) | SOCK_NONBLOCK | SOCK_CLOEXEC;
    // The protocol argument is in network byte order.
    const fd = socketFn(AF_PACKET, type, ((protocol & 0xff) << 8) | (protocol >>> 8));
    if (fd < 0) throw new SysError('socket AF_PACKET', errno());
    const s = new PacketSocket(fd, ifindex, protocol);
    try {
      if (opts.vnetHdr) setInt(fd, SOL_PACKET, PACKET_VNET_HDR, 1, 'PACKET_VNET_HDR');
      if (opts.qdiscBypass) setInt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, 1, 'PACKET_QDISC_BYPASS');
      if (opts.sndbuf) setInt(fd, SOL_SOCKET, SO_SNDBUF, opts.sndbuf, 'SO_SNDBUF');
      if (opts.rcvbuf) setInt(fd, SOL_SOCKET, SO_RCVBUF, opts.rcvbuf, 'SO_RCVBUF');
      // Bound, it receives only this interface's packets (and sends to it without naming it).
      if (bindFn(fd, s.addr, SOCKADDR_LL_SIZE) < 0) throw new SysError(`bind AF_PACKET ${ifname}`, errno());
    } catch (e) {
      s.close();
      throw e;
    }
    return s;
  }

  /**
   * Sends `len` bytes of `buf` (all of it by default) as one packet of
   * EtherType `protocol` (default: the socket's), to `dstMac` on a device
   * with link-layer addresses (ignored without one, as on a TUN). Returns the
   * bytes sent or -errno (EMSGSIZE beyond the MTU, ENOBUFS when the device's
   * queue is full, EAGAIN when the socket's buffer is).
   */
  send(buf: Uint8Array, len = buf.length, protocol = this.protocol, dstMac: Uint8Array | null = null): number {
    const a = this.addrView;
    a.setUint16(2, protocol, false);
    if (dstMac) {
      this.addr[11] = dstMac.length;
      this.addr.set(dstMac.subarray(0, 8), 12);
    } else {
      this.addr[11] = 0;
    }
    const n = sendtoFn(this.fd, buf, len, 0, this.addr, SOCKADDR_LL_SIZE);
    return n < 0 ? -errno() : n;
  }

  /** Reads one packet into `buf` without waiting: its length (truncated to the buffer), or -errno (-EAGAIN: none pending). */
  recv(buf: Uint8Array): number {
    const n = recvFn(this.fd, buf, buf.length, MSG_DONTWAIT);
    return n < 0 ? -errno() : n;
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    close(this.fd);
  }
}
