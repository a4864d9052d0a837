// Flow states, timeouts, counters and verdicts shared by the IPv4 and IPv6 translators.
//
// TCP states (numbers stored in the flow table; "out" = from the session,
// "in" = from the network). A state follows the three-way handshake, as RFC
// 5382 and Linux conntrack do: a flow is ESTABLISHED only once the side that
// sent the first SYN has acknowledged the other side's SYN-ACK.
//
//   new --SYN out--> SYN_OUT --SYN+ACK in--> SYN_ACK_IN  --ACK out--> ESTABLISHED
//   new --SYN in---> SYN_IN  --SYN+ACK out-> SYN_ACK_OUT --ACK in---> ESTABLISHED
//   SYN_OUT --SYN in--> SYN_BOTH <--SYN out-- SYN_IN      (simultaneous open)
//   SYN_BOTH --SYN+ACK out--> SYN_ACK_OUT;  SYN_BOTH --SYN+ACK in--> SYN_ACK_IN
//   ESTABLISHED --FIN out--> FIN_OUT --FIN in--> CLOSING
//   ESTABLISHED --FIN in---> FIN_IN  --FIN out-> CLOSING
//   new --other----> ESTABLISHED (picked up mid-stream, e.g. after the table lost it)
//   any --RST------> CLOSED;   CLOSED/CLOSING --SYN--> SYN_OUT/SYN_IN (port reuse)
//
// "ACK" is any segment with ACK set (a SYN-ACK too, which is what completes a
// simultaneous open); one carrying a FIN goes on to FIN_OUT/FIN_IN at once.
// Everything else leaves the state as it is.
//
// Beside the state, a flow's state byte keeps two flags: traffic seen from
// the session (SEEN_OUT) and from the network (SEEN_IN). A flow is assured,
// and safe from eviction (flows.ts), when it is ESTABLISHED, UDP_ACTIVE or
// ICMP_ACTIVE and has seen traffic both ways: a TCP connection past its
// handshake, or picked up mid-stream and answered; a UDP flow or echo that
// got a reply. Everything else is evictable, and leaving ESTABLISHED (a FIN,
// a RST) makes a flow evictable again.
//
// Timeouts follow RFC 5382 (established 2 h 4 min, transitory 4 min) and
// RFC 4787 (UDP 5 min, refreshed by traffic either way). Every state but
// ESTABLISHED and CLOSED is transitory, the half-open SYN_ACK_* included:
// conntrack gives SYN_RECV 60 s, but REQ-5 puts every transitory state at 4
// min or more, and a flood of half-open flows is met by eviction (they go
// first when the table is full), not by a shorter timeout.

import { type FlowTableBase, R_DEADLINE, R_OUTER, ROOM_EVICTED, ROOM_SESSION_LIMIT, ROOM_TABLE_FULL, STATE_MASK } from './flows.js';
import { PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN } from '../wire/index.js';

/** Verdicts of fromSession/fromUplink besides a session id (> 0). */
export const DROP = -1;
export const TO_UPLINK = 0;
/**
 * fromSession only: the packet was to a blocked address (NatOptions.blockLocal)
 * and the buffer now holds, at the same offset, an ICMP error for the
 * session, Nat.replyLength bytes long, to be written back to its device.
 */
export const REPLY = -3;

export const STATE_FREE = 0;
export const TCP_SYN_OUT = 1;
export const TCP_SYN_IN = 2;
export const TCP_ESTABLISHED = 3;
export const TCP_FIN_OUT = 4;
export const TCP_FIN_IN = 5;
export const TCP_CLOSING = 6;
export const TCP_CLOSED = 7;
export const UDP_ACTIVE = 8;
export const ICMP_ACTIVE = 9;
/** The remote answered the session's SYN: waiting for the session's ACK. */
export const TCP_SYN_ACK_IN = 10;
/** The session answered the remote's SYN: waiting for the remote's ACK. */
export const TCP_SYN_ACK_OUT = 11;
/** SYNs both ways (simultaneous open): waiting for a SYN-ACK. */
export const TCP_SYN_BOTH = 12;

/** State-byte flags: traffic seen from the session, from the network. */
export const SEEN_OUT = 0x40;
export const SEEN_IN = 0x80;
const SEEN_BOTH = SEEN_OUT | SEEN_IN;
/** The states in which a flow that has seen both ways is assured, one bit each. */
const ASSURED_STATES = (1 << TCP_ESTABLISHED) | (1 << UDP_ACTIVE) | (1 << ICMP_ACTIVE);

/** Whether a state byte (state and flags) is that of an assured flow. */
export function isAssured(b: number): boolean {
  return (b & SEEN_BOTH) === SEEN_BOTH && ((ASSURED_STATES >>> (b & STATE_MASK)) & 1) === 1;
}

export const STATE_NAMES = [
  'free',
  'syn-out',
  'syn-in',
  'established',
  'fin-out',
  'fin-in',
  'closing',
  'closed',
  'udp',
  'icmp',
  'syn-ack-in',
  'syn-ack-out',
  'syn-both',
] as const;

/** Idle timeouts in seconds. */
export interface Timeouts {
  tcpEstablished: number;
  tcpTransitory: number;
  tcpClosed: number;
  udp: number;
  icmp: number;
}

export const DEFAULT_TIMEOUTS: Timeouts = {
  tcpEstablished: 7440, // RFC 5382 REQ-5: at least 2 h 4 min
  tcpTransitory: 240, // RFC 5382 REQ-5: at least 4 min
  tcpClosed: 10, // after RST: nothing more to carry
  udp: 300, // RFC 4787 REQ-5: at least 2 min, 5 min recommended
  icmp: 60,
};

/** Where a translator's path writes the length of the reply it left in the buffer when it returned REPLY (Nat.replyLength). */
export class Reply {
  length = 0;
}

/** Counters of what the translator did; plain numbers so the hot path only increments. */
export class NatCounters {
  fromSession = 0;
  fromUplink = 0;
  /** Neither IPv4 nor IPv6, or IPv6 for a session without an IPv6 address: dropped. */
  otherFamily = 0;
  /** IPv6 neighbour discovery, router solicitations and MLD from a session's kernel: dropped. */
  linkControl = 0;
  malformed = 0;
  spoofed = 0;
  noSession = 0;
  tableFull = 0;
  fragments = 0;
  hairpin = 0;
  icmpErrors = 0;
  icmpErrorsDropped = 0;
  flowsCreated = 0;
  flowsExpired = 0;
  /** Packets to the shared address that were no session's: handed back to the uplink's own stack. */
  reflected = 0;
  /** New flows of shared sessions refused because every shared port was taken. */
  portsExhausted = 0;
  /** Evictable flows dropped to make room for a new flow (table full, or the session at its flow limit). */
  flowsEvicted = 0;
  /** New flows refused because their session held its limit of flows, none of them evictable. */
  sessionFlowLimit = 0;
  /** New flows of shared sessions refused because the session held its quota of shared ports for that protocol. */
  portQuota = 0;
  /**
   * Packets from sessions to the uplink's own addresses (blockLocal): each is
   * answered with "administratively prohibited" (REPLY), or dropped when it
   * is an ICMP error or a later fragment, which get no error back.
   */
  toLocal = 0;
  /** Packets of virtual-loopback flows translated, both ways (loopback.ts). */
  loopback = 0;
  /**
   * Packets to the virtual loopback of a session that is not running, and TCP
   * segments of no loopback flow: answered as a closed port would be (a
   * reset, ICMP unreachable), or dropped when they are themselves a reset or
   * an ICMP error.
   */
  loopbackRefused = 0;
  /** A session's own packets to 127.0.0.1 that its routes sent to vipnat (no loopback flow's), written straight back to it. */
  loopbackReflected = 0;
  /** New virtual-loopback flows refused because no port of the loopback range was free for that server port. */
  loopbackPorts = 0;
}

/** Moves a flow's state on, notes the direction, refreshes its deadline, and tells the table when it becomes (or stops being) assured. */
export function advance(table: FlowTableBase, f: number, proto: number, flags: number, out: boolean, now: number, t: Timeouts): void {
  // Straight on the record (state byte in the top of R_OUTER): this runs for every packet.
  const rec = table.rec;
  const at = f * table.stride;
  const w = rec[at + R_OUTER]!;
  const b = w >>> 24;
  let s = b & STATE_MASK;
  let timeout: number;
  if (proto === PROTO_TCP) {
    s = nextTcpState(s, flags, out);
    timeout = s === TCP_ESTABLISHED ? t.tcpEstablished : s === TCP_CLOSED ? t.tcpClosed : t.tcpTransitory;
  } else if (proto === PROTO_UDP) {
    s = UDP_ACTIVE;
    timeout = t.udp;
  } else {
    s = ICMP_ACTIVE;
    timeout = t.icmp;
  }
  const nb = s | (b & SEEN_BOTH) | (out ? SEEN_OUT : SEEN_IN);
  rec[at + R_OUTER] = (w & 0xffffff) | (nb << 24);
  rec[at + R_DEADLINE] = now + timeout;
  // Most packets leave the byte as it was.
  if (nb !== b && isAssured(nb) !== isAssured(b)) table.setAssured(f, isAssured(nb));
}

/**
 * Makes room in `table` for a new flow of `session`, which may hold `limit`
 * flows (FlowTableBase.makeRoom), and counts what that took: an eviction, or
 * why there is no room. True when the flow may be inserted (it is counted
 * as created).
 */
export function roomForFlow(table: FlowTableBase, session: number, limit: number, c: NatCounters): boolean {
  const room = table.makeRoom(session, limit);
  if (room === ROOM_TABLE_FULL) {
    c.tableFull++;
    return false;
  }
  if (room === ROOM_SESSION_LIMIT) {
    c.sessionFlowLimit++;
    return false;
  }
  if (room === ROOM_EVICTED) c.flowsEvicted++;
  c.flowsCreated++;
  return true;
}

/** The TCP state machine of the header comment. `out` is true for packets from the session. */
export function nextTcpState(s: number, flags: number, out: boolean): number {
  if (flags & TCP_RST) return TCP_CLOSED;
  const synAck = flags & (TCP_SYN | TCP_ACK);
  const syn = synAck === TCP_SYN;
  switch (s) {
    case STATE_FREE:
      return syn ? (out ? TCP_SYN_OUT : TCP_SYN_IN) : TCP_ESTABLISHED;
    case TCP_SYN_OUT:
      return out ? s : synAck === (TCP_SYN | TCP_ACK) ? TCP_SYN_ACK_IN : syn ? TCP_SYN_BOTH : s;
    case TCP_SYN_IN:
      return !out ? s : synAck === (TCP_SYN | TCP_ACK) ? TCP_SYN_ACK_OUT : syn ? TCP_SYN_BOTH : s;
    case TCP_SYN_BOTH:
      return synAck === (TCP_SYN | TCP_ACK) ? (out ? TCP_SYN_ACK_OUT : TCP_SYN_ACK_IN) : s;
    case TCP_SYN_ACK_IN:
      return out && flags & TCP_ACK ? (flags & TCP_FIN ? TCP_FIN_OUT : TCP_ESTABLISHED) : s;
    case TCP_SYN_ACK_OUT:
      return !out && flags & TCP_ACK ? (flags & TCP_FIN ? TCP_FIN_IN : TCP_ESTABLISHED) : s;
    case TCP_ESTABLISHED:
      return flags & TCP_FIN ? (out ? TCP_FIN_OUT : TCP_FIN_IN) : s;
    case TCP_FIN_OUT:
      return !out && flags & TCP_FIN ? TCP_CLOSING : s;
    case TCP_FIN_IN:
      return out && flags & TCP_FIN ? TCP_CLOSING : s;
    case TCP_CLOSING:
    case TCP_CLOSED:
      return syn ? (out ? TCP_SYN_OUT : TCP_SYN_IN) : s;
    default:
      return s;
  }
}
