// A packet's flow key as its transport header gives it, read the same way for IPv4 and IPv6.
import { TCP_ACK, TCP_RST, TCP_SYN, type Tcp, type Udp } from '../wire/index.js';

/**
 * Ports on the session's side (local) and the peer's (remote), the TCP flags,
 * and whether the packet may open a flow from outside. `out` is true for
 * packets from the session, whose source is the local side. Reused per packet.
 */
export class FlowKey {
  localPort = 0;
  remotePort = 0;
  tcpFlags = 0;
  opens = false;

  clear(): void {
    this.tcpFlags = 0;
    this.opens = false;
  }

  /** False if the segment is malformed. */
  readTcp(tcp: Tcp, buf: Uint8Array, off: number, len: number, out: boolean): boolean {
    if (!tcp.attach(buf, off, len)) return false;
    this.localPort = out ? tcp.srcPort : tcp.dstPort;
    this.remotePort = out ? tcp.dstPort : tcp.srcPort;
    this.tcpFlags = tcp.flags;
    // Only a connection attempt may open a flow from outside (to a listener).
    this.opens = (this.tcpFlags & (TCP_SYN | TCP_ACK | TCP_RST)) === TCP_SYN;
    return true;
  }

  /** False if the datagram is malformed; a first fragment (`moreFragments`) needs only its header. */
  readUdp(udp: Udp, buf: Uint8Array, off: number, len: number, moreFragments: boolean, out: boolean): boolean {
    if (!(moreFragments ? udp.attachHeader(buf, off, len) : udp.attach(buf, off, len))) return false;
    this.localPort = out ? udp.srcPort : udp.dstPort;
    this.remotePort = out ? udp.dstPort : udp.srcPort;
    this.opens = true;
    return true;
  }

  /** An echo's identifier is the local "port" whichever side sent it; only a request opens a flow. */
  setEcho(ident: number, request: boolean): void {
    this.localPort = ident;
    this.remotePort = 0;
    this.opens = request;
  }
}
