// Answers the translator writes in place of an IPv4 packet: an ICMP error quoting it, or a TCP reset.
//
// Both overwrite the packet's own buffer, from its IP header on, and return
// the answer's length, or DROP when the packet must get no answer: an ICMP
// error or a later fragment gets no ICMP error (RFC 1122 3.2.2), a reset
// gets no reset (RFC 793).

import { DROP } from './state.js';
import {
  finish,
  IcmpField,
  ICMP_HEADER,
  ICMP4_DEST_UNREACHABLE,
  ICMP4_PARAMETER_PROBLEM,
  ICMP4_REDIRECT,
  ICMP4_SOURCE_QUENCH,
  ICMP4_TIME_EXCEEDED,
  type Icmp4,
  type Ipv4,
  Ipv4Bits,
  Ipv4Field,
  IPV4_MIN_HEADER,
  PROTO_ICMP,
  PROTO_TCP,
  pseudoSum4,
  sum,
  TCP_ACK,
  TCP_FIN,
  TCP_MIN_HEADER,
  TCP_RST,
  TCP_SYN,
  type Tcp,
  TcpField,
  write16,
  write32,
} from '../wire/index.js';

/** An ICMP error fits 576 bytes (RFC 1812 4.3.2.3): IP header, ICMP header, quote. */
const ERROR_MAX = 576;

/** Writes the IPv4 header of an answer from `from` to `to` at ip.off. */
function header(ip: Ipv4, total: number, proto: number, from: number, to: number): void {
  const b = ip.buf;
  const o = ip.off;
  b[o + Ipv4Field.VER_IHL] = Ipv4Bits.VER_IHL_5;
  b[o + Ipv4Field.DSCP_ECN] = 0;
  write16(b, o + Ipv4Field.TOTAL_LENGTH, total);
  write32(b, o + Ipv4Field.IDENT, 0); // identification, flags, fragment offset
  b[o + Ipv4Field.TTL] = 64;
  b[o + Ipv4Field.PROTOCOL] = proto;
  write32(b, o + Ipv4Field.SRC, from);
  write32(b, o + Ipv4Field.DST, to);
  // The view's length goes with the new packet, so that fillChecksum covers its header.
  ip.attach(b, o, total);
  ip.fillChecksum();
}

/**
 * Turns the packet at `ip` into ICMP destination unreachable `code` from
 * `from` to `to`, quoting as much of the packet as fits 576 bytes (RFC 792).
 * `icmp` is a spare view. Returns the answer's length, or DROP.
 */
export function icmpError4(ip: Ipv4, icmp: Icmp4, code: number, from: number, to: number): number {
  const b = ip.buf;
  const o = ip.off;
  if (ip.fragmentOffset !== 0) return DROP;
  if (ip.protocol === PROTO_ICMP) {
    // A message too short to say what it is is not answered either.
    const type = ip.payloadLength >= 1 ? b[ip.payloadOffset]! : ICMP4_DEST_UNREACHABLE;
    if (
      type === ICMP4_DEST_UNREACHABLE ||
      type === ICMP4_SOURCE_QUENCH ||
      type === ICMP4_REDIRECT ||
      type === ICMP4_TIME_EXCEEDED ||
      type === ICMP4_PARAMETER_PROBLEM
    )
      return DROP;
  }
  const head = IPV4_MIN_HEADER + ICMP_HEADER;
  const quote = Math.min(ip.len, ERROR_MAX - head);
  b.copyWithin(o + head, o, o + quote);
  header(ip, head + quote, PROTO_ICMP, from, to);
  icmp.attach(b, o + IPV4_MIN_HEADER, ICMP_HEADER + quote);
  b[icmp.off + IcmpField.TYPE] = ICMP4_DEST_UNREACHABLE;
  b[icmp.off + IcmpField.CODE] = code;
  write32(b, icmp.off + IcmpField.IDENT, 0); // unused
  icmp.fillChecksum();
  return head + quote;
}

/**
 * Turns the TCP segment at `ip` (its transport header at `tcp`) into the
 * reset a closed port sends back (RFC 793 3.4, as Linux does): from the
 * segment's destination to its source, with the ports swapped. Returns the
 * answer's length, or DROP for a reset.
 */
export function tcpReset4(ip: Ipv4, tcp: Tcp): number {
  const flags = tcp.flags;
  if ((flags & TCP_RST) !== 0) return DROP;
  const b = ip.buf;
  const o = ip.off;
  const from = ip.dst;
  const to = ip.src;
  const sport = tcp.dstPort;
  const dport = tcp.srcPort;
  let seq = 0;
  let ack = 0;
  let out = TCP_RST;
  if ((flags & TCP_ACK) !== 0) {
    seq = tcp.ack;
  } else {
    // Acknowledges everything the segment occupied: its data, and its SYN and FIN.
    const data = tcp.len - tcp.headerLength;
    ack = (tcp.seq + data + ((flags & TCP_SYN) !== 0 ? 1 : 0) + ((flags & TCP_FIN) !== 0 ? 1 : 0)) >>> 0;
    out |= TCP_ACK;
  }
  const total = IPV4_MIN_HEADER + TCP_MIN_HEADER;
  header(ip, total, PROTO_TCP, from, to);
  const t = o + IPV4_MIN_HEADER;
  b.fill(0, t, t + TCP_MIN_HEADER);
  write16(b, t + TcpField.SRC_PORT, sport);
  write16(b, t + TcpField.DST_PORT, dport);
  write32(b, t + TcpField.SEQ, seq);
  write32(b, t + TcpField.ACK, ack);
  b[t + TcpField.DATA_OFFSET] = (TCP_MIN_HEADER >>> 2) << 4;
  b[t + TcpField.FLAGS] = out;
  write16(b, t + TcpField.CHECKSUM, finish(sum(b, t, TCP_MIN_HEADER, pseudoSum4(from, to, PROTO_TCP, TCP_MIN_HEADER))));
  return total;
}
