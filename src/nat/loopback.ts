// The virtual loopback: 127.0.0.1 + id, from the gateway's namespace or from session id itself, reaches session id's own 127.0.0.1.
//
// The gateway's kernel routes 127.0.0.2 and up to vipnat0, and each session's
// kernel routes its own 127.0.0.(1+id) to its eth0 (gateway/uplink.ts,
// session/session.ts), so vipnat reads both here. A client C:P connecting to
// V:Q (V = 127.0.0.1 + id) reaches the session as 127.0.0.1:P' -> 127.0.0.1:Q:
// the session's program sees its peer as 127.0.0.1, as a local client is, and
// a listener on 127.0.0.1, 0.0.0.0 or [::] takes the connection. P' is a port
// of LOOPBACK_PORT_LO-HI, which the session keeps for this (ip_local_reserved_ports)
// and routes back to eth0 (ip rules by destination port, and ICMP to
// 127.0.0.1), so the session's answers come back here and go back to C:P from
// V:Q. What the session sends to 127.0.0.1 through eth0 that is no flow's (its
// own traffic to a port of that range, its own pings and ICMP errors) is
// written straight back to it: for the session, its loopback stays a
// loopback.
//
// A flow record, in a FlowTable of its own (shared by the dataplane's
// threads like the translator's): session slot = id for clients in the
// gateway's namespace, maxSession + id for the session's own clients; inner
// side = the client C:P; outer side = 127.0.0.1:P'; remote = V:Q (an echo's
// identifier is P, its "Q" 0). So a client's packet finds its flow by the
// inner key and a session's answer by the outer key, whose V says whose.
//
// A packet to the loopback of a session that is not running is answered at
// once, as a closed port would be: a TCP reset, ICMP port unreachable for
// UDP, host unreachable for the rest.
//
// TCP timestamps. Every peer of a session's server reaches it from
// 127.0.0.1, so the server's TIME_WAIT sockets (it closed first, as an HTTP
// server does) hold tuples that the next connections on the same port of
// the range meet within their 60 s. Linux takes a SYN for such a tuple only
// if its timestamp is newer than the last one seen there (PAWS), and it
// draws each connection's timestamp offset at random: half the SYNs would be
// refused, and their clients wait a second to retry. So the timestamps a
// server sees are shifted, per flow, onto one clock (vipnat's, in ms, from
// the flow's SYN): TSval on the way in, TSecr back on the way out. The shift
// lives in the one word of the flow's record the table leaves free.

import { FlowTable, NO_FLOW, randomSeed } from './flows.js';
import { FlowKey } from './key.js';
import { NO_SESSION, Vip4Index } from './vips.js';
import { icmpError4, tcpReset4 } from './reply4.js';
import { setPort4 } from './rewrite4.js';
import {
  advance,
  DROP,
  type NatCounters,
  REPLY,
  type Reply,
  roomForFlow,
  STATE_FREE,
  TCP_CLOSED,
  TCP_CLOSING,
  TO_UPLINK,
  type Timeouts,
} from './state.js';
import {
  Icmp4,
  ICMP4_ECHO_REPLY,
  ICMP4_ECHO_REQUEST,
  IPV4_MIN_HEADER,
  Ipv4,
  Ipv4Field,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  read16,
  read32,
  Tcp,
  TCP_ACK,
  TCP_MIN_HEADER,
  TCP_SYN,
  TcpField,
  Udp,
  update16,
  update32,
  updatePartial32,
  write16,
  write32,
} from '../wire/index.js';

/** 127.0.0.1. */
export const LOOPBACK = 0x7f000001;
/**
 * The ports session-side peers of the virtual loopback get: above Linux's
 * default ephemeral range (32768-60999), so a session's own connections do
 * not use them. 65535 stays out: iproute2 refuses it as the top of an ip rule
 * port range.
 */
export const LOOPBACK_PORT_LO = 61000;
export const LOOPBACK_PORT_HI = 65534;
const PORTS = LOOPBACK_PORT_HI - LOOPBACK_PORT_LO + 1;
/** Ports tried for a new flow before it is refused. */
const PORT_TRIES = 128;

/** The word of a loopback flow's record, free in an IPv4 one (flows.ts), that holds its timestamp shift. */
const R_TS_SHIFT = 7;
/** TCP option kinds: end of list, no-op, timestamps (RFC 7323, 10 bytes). */
const OPT_END = 0;
const OPT_NOP = 1;
const OPT_TIMESTAMPS = 8;
const OPT_TIMESTAMPS_LEN = 10;

/** vipnat's clock for the shifted timestamps: milliseconds, the same in every thread. */
function clockMs(): number {
  return Math.floor(performance.timeOrigin + performance.now()) >>> 0;
}

/** Flows the virtual loopback tracks unless told otherwise. */
export const DEFAULT_LOOPBACK_FLOWS = 65536;

/** Idle timeouts of loopback flows: TCP as the translator's; UDP and echoes shorter, as the peers are on this machine. */
export const LOOPBACK_TIMEOUTS: Timeouts = {
  tcpEstablished: 7440,
  tcpTransitory: 240,
  tcpClosed: 10,
  udp: 60,
  icmp: 30,
};

/** Unreachable code 3: port unreachable, what a closed UDP port answers. */
const ICMP4_CODE_PORT = 3;
/** Unreachable code 1: host unreachable, for anything else to a session that is not running. */
const ICMP4_CODE_HOST = 1;

export class Loopback4 {
  readonly flows: FlowTable;
  /** 1 for the sessions whose loopback is reachable. */
  private readonly live: Uint8Array;
  /** Each session's virtual loopback address, and the session of each. */
  private readonly addrOf: Uint32Array;
  private readonly byAddr: Vip4Index;
  private readonly ip = new Ipv4();
  private readonly quoted = new Ipv4();
  private readonly tcp = new Tcp();
  private readonly udp = new Udp();
  private readonly icmp = new Icmp4();
  private readonly key = new FlowKey();
  private readonly flowLimit: number;
  /** Where the next port search starts. */
  private cursor = 0;

  /** Bytes of shared memory a table of `capacity` flows for sessions 1-maxSession needs. */
  static bytesFor(capacity: number, maxSession: number): number {
    return FlowTable.bytesFor(capacity, 2 * maxSession);
  }

  constructor(
    private readonly maxSession: number,
    capacity: number,
    seed: number = randomSeed(),
    memory: SharedArrayBuffer | undefined,
    private readonly counters: NatCounters,
    private readonly reply: Reply,
  ) {
    this.flows = new FlowTable(capacity, seed, memory, 2 * maxSession);
    if (this.flows.stride <= R_TS_SHIFT) throw new Error('flow records have no free word for the timestamp shift');
    this.live = new Uint8Array(maxSession + 1);
    this.addrOf = new Uint32Array(maxSession + 1);
    this.byAddr = new Vip4Index(maxSession);
    this.flowLimit = Math.max(1024, Math.floor(capacity / 16));
    this.cursor = seed % PORTS;
  }

  /** Session `id` (1-maxSession) answers at 127.0.0.1 + loopbackId (1-16777214). */
  add(id: number, loopbackId: number): void {
    if (!Number.isInteger(id) || id < 1 || id > this.maxSession) throw new RangeError(`session ${id}: ids run 1-${this.maxSession}`);
    if (!Number.isInteger(loopbackId) || loopbackId < 1 || loopbackId > 0xfffffe) {
      throw new RangeError(`virtual loopback of session ${loopbackId}: ids run 1-16777214`);
    }
    if (this.live[id] === 1) this.remove(id);
    const a = (LOOPBACK + loopbackId) >>> 0;
    const holder = this.byAddr.get(a);
    if (holder !== NO_SESSION) throw new Error(`virtual loopback ${loopbackId} is already session ${holder}'s`);
    this.addrOf[id] = a;
    this.byAddr.set(a, id);
    this.live[id] = 1;
  }

  /** The session's loopback is refused from now on; its flows stay until dropFlows(id). */
  remove(id: number): void {
    if (this.live[id] === 0) return;
    this.live[id] = 0;
    this.byAddr.delete(this.addrOf[id]!);
  }

  dropFlows(id: number): void {
    this.flows.removeSession(id);
    this.flows.removeSession(this.maxSession + id);
  }

  expire(now: number, budget?: number): number {
    return this.flows.expire(now, budget);
  }

  /**
   * A packet from the uplink to 127.x (the facade checked): the id of the
   * session to deliver it to, REPLY (the buffer holds a reset or ICMP error
   * for the uplink, reply.length long) or DROP.
   */
  fromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    const ip = this.ip;
    if (!ip.attach(buf, off, len)) return this.malformed();
    const id = this.byAddr.get(ip.dst);
    if (id === NO_SESSION) return this.refuse();
    return this.toSession(id, id, now, csumAt);
  }

  /**
   * A packet from session `id` to 127.x (the facade checked): to its own
   * virtual loopback (from the session's own client), or to 127.0.0.1 (an
   * answer to a loopback flow, or the session's own loopback traffic).
   * Returns TO_UPLINK, `id` or DROP.
   */
  fromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    const ip = this.ip;
    if (!ip.attach(buf, off, len)) return this.malformed();
    if (this.live[id] !== 1) {
      // (Also an id out of range, which has no entry.)
      this.counters.noSession++;
      return DROP;
    }
    const dst = ip.dst;
    if (dst === this.addrOf[id]) return this.toSession(id, this.maxSession + id, now, csumAt);
    if (dst !== LOOPBACK) {
      // The session's kernel sends nothing else to 127/8 through eth0.
      this.counters.malformed++;
      return DROP;
    }
    return this.fromServer(id, now, csumAt);
  }

  /** A client's packet at this.ip (from the gateway side when slot is id, else from the session): to session `id`'s 127.0.0.1. */
  private toSession(id: number, slot: number, now: number, csumAt: number): number {
    const ip = this.ip;
    const proto = ip.protocol;
    if (ip.isFragment) {
      this.counters.fragments++;
      return DROP;
    }
    if (!this.readPorts(proto, false)) return DROP;
    const key = this.key;
    const client = ip.src;
    const cport = key.remotePort;
    const v = ip.dst;
    const sport = key.localPort;
    const flows = this.flows;
    let f = flows.lookupInner(slot, proto, client, cport, v, sport);
    if (f === NO_FLOW) {
      if (!key.opens) {
        // No flow to carry it (it expired, or vipnat restarted): what a closed port does.
        return proto === PROTO_TCP ? this.refuse() : DROP;
      }
      const p = this.port(proto, v, sport);
      if (p < 0 || !roomForFlow(flows, slot, this.flowLimit, this.counters)) return DROP;
      f = flows.insert(slot, proto, client, cport, LOOPBACK, p, v, sport, STATE_FREE, 0);
    }
    advance(flows, f, proto, key.tcpFlags, true, now, LOOPBACK_TIMEOUTS);
    this.rewrite(proto, client, LOOPBACK, v, LOOPBACK, csumAt);
    this.setPort(proto, true, flows.outerPortOf(f), csumAt);
    if (proto === PROTO_TCP) this.shiftTimestamps(f, true, csumAt);
    this.counters.loopback++;
    return id;
  }

  /** Session `id`'s packet at this.ip to 127.0.0.1: an answer to a flow goes to its client, the rest straight back. */
  private fromServer(id: number, now: number, csumAt: number): number {
    const ip = this.ip;
    const proto = ip.protocol;
    const v = this.addrOf[id]!;
    if (ip.isFragment) return this.reflect(id);
    if (proto === PROTO_ICMP) {
      const icmp = this.icmp;
      if (!icmp.attach(ip.buf, ip.payloadOffset, ip.payloadLength)) return this.reflect(id);
      if (icmp.isError) return this.errorFromServer(id, v);
      // A request is the session's own ping; only a reply can be a flow's.
      if (icmp.type !== ICMP4_ECHO_REPLY) return this.reflect(id);
    }
    if (!this.readPorts(proto, true)) return this.reflect(id);
    const key = this.key;
    const flows = this.flows;
    const f = flows.lookupOuter(proto, LOOPBACK, key.remotePort, v, key.localPort);
    if (f === NO_FLOW) return this.reflect(id);
    advance(flows, f, proto, key.tcpFlags, false, now, LOOPBACK_TIMEOUTS);
    const client = flows.innerAddrOf(f);
    this.rewrite(proto, LOOPBACK, v, LOOPBACK, client, csumAt);
    this.setPort(proto, false, flows.innerPortOf(f), csumAt);
    if (proto === PROTO_TCP) this.shiftTimestamps(f, false, csumAt);
    this.counters.loopback++;
    return flows.sessionOf(f) === id ? TO_UPLINK : id;
  }

  /**
   * An ICMP error from session `id` to 127.0.0.1 (at this.icmp): one about a
   * loopback flow's packet (a closed UDP port) goes to its client, with its
   * quote translated back; any other is the session's own.
   */
  private errorFromServer(id: number, v: number): number {
    const icmp = this.icmp;
    const q = this.quoted;
    const b = icmp.buf;
    const qoff = icmp.off + 8;
    const qlen = icmp.off + icmp.len - qoff;
    // The quote: the session's packet to the client's port, 127.0.0.1:Q -> 127.0.0.1:P'.
    // The ports must be there: in the quote's own bytes, not only in its header's count.
    if (!q.attachQuote(b, qoff, qlen) || q.isFragment || q.payloadLength < 4 || q.payloadOffset + 4 > qoff + qlen) return this.reflect(id);
    const proto = q.protocol;
    if (proto !== PROTO_TCP && proto !== PROTO_UDP) return this.reflect(id);
    const t = q.payloadOffset;
    const qsrc = read16(b, t);
    const qdst = read16(b, t + 2);
    // The quoted packet went from the client (127.0.0.1:P') to the server (127.0.0.1:Q).
    const f = this.flows.lookupOuter(proto, LOOPBACK, qsrc, v, qdst);
    if (f === NO_FLOW || q.src !== LOOPBACK || q.dst !== LOOPBACK) return this.reflect(id);
    const flows = this.flows;
    const client = flows.innerAddrOf(f);
    // The quote with the client's addresses and ports: C:P -> V:Q (a TCP quote keeps its shifted timestamps, which no stack
    // reads in a quote). Its transport checksum, when quoted whole, follows.
    const ck = proto === PROTO_TCP ? t + 16 : t + 6;
    if (ck + 2 <= qoff + qlen) {
      let c = read16(b, ck);
      if (!(proto === PROTO_UDP && c === 0)) {
        c = update32(update32(update16(c, qsrc, flows.innerPortOf(f)), LOOPBACK, client), LOOPBACK, v);
        write16(b, ck, proto === PROTO_UDP && c === 0 ? 0xffff : c);
      }
    }
    write16(b, t, flows.innerPortOf(f));
    write32(b, q.off + Ipv4Field.SRC, client);
    write32(b, q.off + Ipv4Field.DST, v);
    q.fillChecksum();
    icmp.fillChecksum();
    const ip = this.ip;
    ip.setSrc(v);
    ip.setDst(client);
    this.counters.loopback++;
    return flows.sessionOf(f) === id ? TO_UPLINK : id;
  }

  /**
   * Reads the ports of the packet at this.ip into this.key: localPort the
   * server's (Q), remotePort the client's (P, or P' from the session's side);
   * `fromServer` for packets the session sends. An echo's identifier is the
   * client's "port", the server's 0. False (counted) if malformed or portless.
   */
  private readPorts(proto: number, fromServer: boolean): boolean {
    const ip = this.ip;
    const key = this.key;
    key.clear();
    const buf = ip.buf;
    const poff = ip.payloadOffset;
    const plen = ip.payloadLength;
    if (proto === PROTO_TCP) {
      if (key.readTcp(this.tcp, buf, poff, plen, fromServer)) return true;
    } else if (proto === PROTO_UDP) {
      if (key.readUdp(this.udp, buf, poff, plen, false, fromServer)) return true;
    } else if (proto === PROTO_ICMP) {
      const icmp = this.icmp;
      if (icmp.attach(buf, poff, plen) && icmp.isEcho) {
        key.setEcho(icmp.ident, icmp.type === ICMP4_ECHO_REQUEST);
        // The identifier is the client's "port"; the server's is 0.
        key.remotePort = key.localPort;
        key.localPort = 0;
        return true;
      }
      return false;
    } else {
      return false;
    }
    this.counters.malformed++;
    return false;
  }

  /**
   * Shifts the TCP timestamps of the segment at this.tcp onto vipnat's clock
   * (see the header): the client's TSval on the way to the server
   * (`toServer`; a SYN sets the flow's shift), the server's TSecr back.
   */
  private shiftTimestamps(f: number, toServer: boolean, csumAt: number): void {
    const at = this.timestampsAt();
    if (at < 0) return;
    const b = this.tcp.buf;
    const i = f * this.flows.stride + R_TS_SHIFT;
    const rec = this.flows.rec;
    const field = toServer ? at : at + 4;
    const was = read32(b, field);
    if (toServer && (this.key.tcpFlags & (TCP_SYN | TCP_ACK)) === TCP_SYN) rec[i] = (clockMs() + 1 - was) | 0;
    const now = (toServer ? was + rec[i]! : was - rec[i]!) >>> 0;
    write32(b, field, now);
    // A partial checksum is summed over the header by the device later.
    if (csumAt < 0) {
      const ck = this.tcp.off + TcpField.CHECKSUM;
      write16(b, ck, update32(read16(b, ck), was, now));
    }
  }

  /** Where the timestamps option's TSval is in the segment at this.tcp (TSecr 4 bytes on), or -1. */
  private timestampsAt(): number {
    const t = this.tcp;
    const b = t.buf;
    const end = t.off + t.headerLength;
    let o = t.off + TCP_MIN_HEADER;
    while (o < end) {
      const kind = b[o]!;
      if (kind === OPT_END) return -1;
      if (kind === OPT_NOP) {
        o++;
        continue;
      }
      const len = o + 1 < end ? b[o + 1]! : 0;
      if (len < 2 || o + len > end) return -1;
      if (kind === OPT_TIMESTAMPS) return len === OPT_TIMESTAMPS_LEN ? o + 2 : -1;
      o += len;
    }
    return -1;
  }

  /** A port of the loopback range free for a flow to server V:Q, or -1: a TCP flow that has closed gives its port up. */
  private port(proto: number, v: number, q: number): number {
    const flows = this.flows;
    for (let i = 0; i < PORT_TRIES; i++) {
      const p = LOOPBACK_PORT_LO + this.cursor;
      this.cursor = this.cursor + 1 === PORTS ? 0 : this.cursor + 1;
      const f = flows.lookupOuter(proto, LOOPBACK, p, v, q);
      if (f === NO_FLOW) return p;
      const s = flows.stateOf(f);
      if (proto === PROTO_TCP && (s === TCP_CLOSED || s === TCP_CLOSING)) {
        flows.remove(f);
        return p;
      }
    }
    this.counters.loopbackPorts++;
    return -1;
  }

  /**
   * Rewrites the addresses of the packet at this.ip (src a -> b, dst c -> d)
   * with every checksum over them; a transport checksum the device will
   * finish (at `csumAt`) holds a partial sum.
   */
  private rewrite(proto: number, a: number, b: number, c: number, d: number, csumAt: number): void {
    const ip = this.ip;
    const buf = ip.buf;
    if (a !== b) ip.setSrc(b);
    if (c !== d) ip.setDst(d);
    if (proto === PROTO_ICMP) return; // no pseudo-header
    if (csumAt >= 0) {
      write16(buf, csumAt, updatePartial32(updatePartial32(read16(buf, csumAt), a, b), c, d));
      return;
    }
    const view = proto === PROTO_TCP ? this.tcp : this.udp;
    view.updateAddress(a, b);
    view.updateAddress(c, d);
  }

  /** Rewrites the client's port (the source when `toServer`, else the destination), or an echo's identifier. */
  private setPort(proto: number, toServer: boolean, port: number, csumAt: number): void {
    setPort4(proto, this.tcp, this.udp, this.icmp, toServer, port, csumAt >= 0);
  }

  /** The answer of a closed port, for the sender: a TCP reset or ICMP port unreachable, in place (REPLY), or DROP. */
  private refuse(): number {
    const ip = this.ip;
    this.counters.loopbackRefused++;
    let n = DROP;
    if (ip.protocol === PROTO_TCP && !ip.isFragment && this.tcp.attach(ip.buf, ip.payloadOffset, ip.payloadLength)) {
      n = tcpReset4(ip, this.tcp);
    } else if (ip.protocol !== PROTO_TCP) {
      n = icmpError4(ip, this.icmp, ip.protocol === PROTO_UDP ? ICMP4_CODE_PORT : ICMP4_CODE_HOST, ip.dst, ip.src);
    }
    if (n === DROP) return DROP;
    this.reply.length = n;
    return REPLY;
  }

  /** The session's own packet, back to it unchanged. */
  private reflect(id: number): number {
    this.counters.loopbackReflected++;
    return id;
  }

  private malformed(): number {
    this.counters.malformed++;
    return DROP;
  }
}

/** Whether the IPv4 packet at buf[off] (version checked by the caller) is to 127/8. */
export function toLoopbackNet(buf: Uint8Array, off: number, len: number): boolean {
  return len >= IPV4_MIN_HEADER && buf[off + Ipv4Field.DST] === 127;
}
