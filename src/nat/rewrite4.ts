// Rewrites both IPv4 translators make to a TCP or UDP header, or an echo's identifier, with the checksum kept right.
import { type Icmp4, PROTO_ICMP, PROTO_TCP, type Tcp, type Udp } from '../wire/index.js';

/**
 * Rewrites a port of the transport header the views are attached to: the
 * source when `source`, else the destination; for ICMP, the echo's
 * identifier. With `partial`, the checksum is a partial sum the device
 * finishes over the ports later, so only the bytes change; else the checksum
 * is updated (RFC 1624).
 */
export function setPort4(proto: number, tcp: Tcp, udp: Udp, icmp: Icmp4, source: boolean, port: number, partial: boolean): void {
  if (proto === PROTO_ICMP) {
    if (partial) icmp.writeIdent(port);
    else icmp.setIdent(port);
    return;
  }
  // Flows are TCP, UDP or echoes: nothing else has a port.
  const v = proto === PROTO_TCP ? tcp : udp;
  if (partial) {
    if (source) v.writeSrcPort(port);
    else v.writeDstPort(port);
  } else if (source) v.setSrcPort(port);
  else v.setDstPort(port);
}
