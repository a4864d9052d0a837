// A packet's flow key as its transport header gives it, read the same way for IPv4 and IPv6, and for the packet an ICMP error quotes.
import {
  IcmpField,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  ICMP6_ECHO_REPLY,
  ICMP6_ECHO_REQUEST,
  PROTO_ICMP6,
  PROTO_TCP,
  PROTO_UDP,
  read16,
  TCP_ACK,
  TcpField,
  TCP_RST,
  TCP_SYN,
  type Tcp,
  type Udp,
} from '../wire/index.js';

/**
 * What a translator's readTransport() found besides DROP: ports (the key
 * holds them), none (the packet is translated by address alone: a later
 * fragment, a protocol without ports), or an ICMP error, whose quote the
 * error path (icmp.ts) then translates. QUOTED: an ICMPv6 error whose quote
 * was translated, so its checksum is recomputed after the outer rewrite.
 */
export const NO_PORTS = 0;
export const HAS_PORTS = 1;
export const IS_ERROR = 2;
export const QUOTED = 3;

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

  /**
   * Reads the ports of the transport header at b[t] in a packet an ICMP
   * error quotes (its first 8 bytes are there): localPort on the session's
   * side (the source when the session sent the quoted packet), remotePort on
   * the peer's; an echo's identifier is the local "port" and the remote one
   * 0, whichever side sent it. `icmpProto` is the family's ICMP (PROTO_ICMP
   * or PROTO_ICMP6). False for a packet of no flow: another protocol, or an
   * ICMP message that is not an echo.
   */
  readQuoted(b: Uint8Array, t: number, proto: number, sessionSent: boolean, icmpProto: number): boolean {
    if (proto === PROTO_TCP || proto === PROTO_UDP) {
      // UDP's ports sit where TCP's do.
      const src = read16(b, t + TcpField.SRC_PORT);
      const dst = read16(b, t + TcpField.DST_PORT);
      this.localPort = sessionSent ? src : dst;
      this.remotePort = sessionSent ? dst : src;
      return true;
    }
    if (proto !== icmpProto) return false;
    const type = b[t + IcmpField.TYPE]!;
    const echo =
      icmpProto === PROTO_ICMP6
        ? type === ICMP6_ECHO_REQUEST || type === ICMP6_ECHO_REPLY
        : type === ICMP4_ECHO_REQUEST || type === ICMP4_ECHO_REPLY;
    if (!echo) return false;
    this.localPort = read16(b, t + IcmpField.IDENT);
    this.remotePort = 0;
    return true;
  }
}
