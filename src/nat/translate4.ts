// The IPv4 general path: every IPv4 packet the fast path leaves, through the header views: new flows, ICMP errors, the shared fallback, blockLocal.
//
// Each session has an inner address (what its eth0 holds) and a VIP (what the
// network sees). In address mode they are equal and every rewrite below is
// skipped; in NAT mode the source is rewritten inner -> VIP on the way out and
// the destination VIP -> inner on the way in, with RFC 1624 checksum updates.
// Because the mapping is one-to-one per session, a packet can always be
// translated even without a flow (table full, a non-first fragment, a protocol
// without ports); flows add state, timeouts and accounting on top. A shared
// session's flows also translate its ports (shared.ts); ICMP errors have their
// quote translated (icmp.ts).
//
// With blockLocal, a packet from a session to one of the uplink's own
// addresses (setLocalAddresses) is not forwarded: the buffer is turned into
// an ICMP "communication administratively prohibited" for the session. Only
// the general path checks, for every packet: no flow to (or from) a blocked
// address is ever created, and setLocalAddresses drops those that were, so
// the fast path, which takes only packets of existing flows, never sees one.

import { type FlowTable, NO_FLOW } from './flows.js';
import { Icmp4Errors } from './icmp.js';
import { icmpError4 } from './reply4.js';
import { setPort4 } from './rewrite4.js';
import { type Loopback4, toLoopbackNet } from './loopback.js';
import { FlowKey, HAS_PORTS, IS_ERROR, NO_PORTS } from './key.js';
import type { Sessions4 } from './registry.js';
import type { SharedFallback } from './shared.js';
import { advance, DROP, type NatCounters, REPLY, type Reply, roomForFlow, STATE_FREE, TO_UPLINK, type Timeouts } from './state.js';
import { NO_SESSION, Vip4Index } from './vips.js';
import {
  Icmp4,
  ICMP4_CODE_PROHIBITED,
  ICMP4_ECHO_REQUEST,
  Ipv4,
  PROTO_ICMP,
  PROTO_TCP,
  PROTO_UDP,
  read16,
  Tcp,
  Udp,
  updatePartial32,
  write16,
} from '../wire/index.js';

export class Nat4 {
  /** The uplink's own IPv4 addresses (blocked when blockLocal). */
  private local = new Vip4Index(1);
  private readonly ip = new Ipv4();
  private readonly tcp = new Tcp();
  private readonly udp = new Udp();
  private readonly icmp = new Icmp4();
  /** The packet's flow key and flags, read by readTransport(). */
  private readonly key = new FlowKey();
  private readonly errors: Icmp4Errors;

  constructor(
    private readonly flows: FlowTable,
    private readonly sessions: Sessions4,
    /** null without a shared address. */
    private readonly shared: SharedFallback | null,
    private readonly counters: NatCounters,
    private readonly timeouts: Timeouts,
    /** Live IPv4 flows a session may hold. */
    private readonly flowLimit: number,
    private readonly blockLocal: boolean,
    /** Where prohibit() writes the length of its reply. */
    private readonly reply: Reply,
    /** The virtual loopback, which takes packets to 127/8; null without it. */
    private readonly loopback: Loopback4 | null = null,
  ) {
    this.errors = new Icmp4Errors(flows, sessions, counters);
  }

  /** The uplink's own IPv4 addresses (see Nat.setLocalAddresses). */
  setLocalAddresses(v4: readonly number[]): void {
    const index = new Vip4Index(Math.max(1, v4.length));
    for (const a of v4) index.set(a >>> 0, 1);
    this.local = index;
  }

  /** Drops every flow with a blocked address; returns how many. */
  dropLocalFlows(): number {
    if (!this.blockLocal) return 0;
    const t = this.flows;
    return t.removeIf((f) => this.local.get(t.remoteAddrOf(f)) !== NO_SESSION);
  }

  /**
   * An IPv4 packet that session `id` sent: TO_UPLINK, another session's id
   * (hairpin: the packet is translated for it too), REPLY (the buffer holds
   * an ICMP error for the session, `reply` says how long) or DROP.
   */
  fromSession(id: number, buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    if (this.loopback !== null && toLoopbackNet(buf, off, len)) return this.loopback.fromSession(id, buf, off, len, now, csumAt);
    const c = this.counters;
    const ip = this.ip;
    const s = this.sessions;
    if (!ip.attach(buf, off, len) || !s.active[id]) return this.malformed();
    const inner = s.innerOf[id]!;
    const outer = s.vipOf[id]!;
    if (ip.src !== inner) {
      // Anti-spoofing: a session can only ever appear as itself.
      c.spoofed++;
      return DROP;
    }
    const proto = ip.protocol;
    const remote = ip.dst;
    if (this.isLocal(remote)) return this.prohibit(inner, remote);
    let t = this.readTransport(true);
    if (t === IS_ERROR) t = this.errors.fromSession(this.icmp, id, inner, outer);
    if (t === DROP) return DROP;
    const key = this.key;
    const flows = this.flows;
    let f = NO_FLOW;
    if (t === HAS_PORTS) {
      f = flows.lookupInner(id, proto, inner, key.localPort, remote, key.remotePort);
      if (f === NO_FLOW) {
        f = this.newFlow(id, proto, inner, key.localPort, outer, remote, key.remotePort);
        // A shared session cannot leave without a port of its own.
        if (f === NO_FLOW && s.onShared[id]) return DROP;
      }
      if (f !== NO_FLOW) advance(flows, f, proto, key.tcpFlags, true, now, this.timeouts);
    }
    if (inner !== outer) {
      ip.setSrc(outer);
      this.updateTransport(t, proto, inner, outer, csumAt);
    }
    if (f !== NO_FLOW && flows.outerPortOf(f) !== key.localPort) this.setLocalPort(proto, true, flows.outerPortOf(f), csumAt);
    if (s.hairpins(remote)) {
      // Straight to the session holding the destination (or, for the shared address, back to the
      // uplink's own stack): translated as the uplink's packets are, counted once, as the session's.
      c.hairpin++;
      return this.fromUplink(buf, off, len, now, csumAt);
    }
    return TO_UPLINK;
  }

  /**
   * An IPv4 packet from the uplink: the id of the session to deliver it to,
   * DROP, or TO_UPLINK for a packet to the shared address that belongs to no
   * session's flow (it goes back to the uplink's own stack).
   */
  fromUplink(buf: Uint8Array, off: number, len: number, now: number, csumAt: number): number {
    if (this.loopback !== null && toLoopbackNet(buf, off, len)) return this.loopback.fromUplink(buf, off, len, now, csumAt);
    const c = this.counters;
    const ip = this.ip;
    const s = this.sessions;
    if (!ip.attach(buf, off, len)) return this.malformed();
    const outer = ip.dst;
    let id = s.byVip.get(outer);
    // (Only with a shared fallback can the address be the shared one.)
    const toShared = id === NO_SESSION && outer === s.sharedAddr;
    if (id === NO_SESSION && !toShared) {
      c.noSession++;
      return DROP;
    }
    const proto = ip.protocol;
    const remote = ip.src;
    const t = this.readTransport(false);
    if (t === DROP) return DROP;
    const key = this.key;
    const flows = this.flows;
    let f = NO_FLOW;
    if (t === IS_ERROR) {
      id = this.errors.fromUplink(this.icmp, id, outer);
      if (id === DROP) return toShared ? this.shared!.reflect() : DROP;
    } else if (t === HAS_PORTS) {
      f = flows.lookupOuter(proto, outer, key.localPort, remote, key.remotePort);
      if (toShared) {
        id = this.shared!.sessionFor(f, proto, key.opens);
        if (id === NO_SESSION) return this.shared!.reflect();
      } else if (f === NO_FLOW && key.opens && !this.isLocal(remote)) {
        // (A blocked address gets no flow: the session's answer must meet the general path.)
        f = this.newFlow(id, proto, s.innerOf[id]!, key.localPort, outer, remote, key.remotePort);
      }
      if (f !== NO_FLOW) advance(flows, f, proto, key.tcpFlags, false, now, this.timeouts);
    } else if (toShared) {
      return this.shared!.reflect(); // nothing of ours without ports
    }
    const inner = s.innerOf[id]!;
    if (inner !== outer) {
      ip.setDst(inner);
      this.updateTransport(t, proto, outer, inner, csumAt);
    }
    if (f !== NO_FLOW && flows.innerPortOf(f) !== key.localPort) this.setLocalPort(proto, false, flows.innerPortOf(f), csumAt);
    return id;
  }

  private isLocal(addr: number): boolean {
    return this.blockLocal && this.local.get(addr) !== NO_SESSION;
  }

  /**
   * Reads the transport header of the packet at `this.ip` as a flow key:
   * localPort on the session's side, remotePort on the peer's (an echo's
   * identifier is the local "port", the remote one 0), the TCP flags, and
   * whether the packet may open a flow from outside. Returns HAS_PORTS,
   * IS_ERROR (an ICMP error, at `this.icmp`), NO_PORTS (translated by address
   * alone: later fragments, other protocols) or DROP. `out` is true for
   * packets from the session.
   */
  private readTransport(out: boolean): number {
    const ip = this.ip;
    const buf = ip.buf;
    const poff = ip.payloadOffset;
    const plen = ip.payloadLength;
    const proto = ip.protocol;
    const key = this.key;
    key.clear();
    if (ip.fragmentOffset !== 0) {
      this.counters.fragments++;
      return NO_PORTS;
    }
    if (proto === PROTO_TCP) return key.readTcp(this.tcp, buf, poff, plen, out) ? HAS_PORTS : this.malformed();
    if (proto === PROTO_UDP) return key.readUdp(this.udp, buf, poff, plen, ip.moreFragments, out) ? HAS_PORTS : this.malformed();
    if (proto === PROTO_ICMP) {
      const icmp = this.icmp;
      if (!icmp.attach(buf, poff, plen)) return this.malformed();
      if (icmp.isEcho) {
        key.setEcho(icmp.ident, icmp.type === ICMP4_ECHO_REQUEST);
        return HAS_PORTS;
      }
      if (icmp.isError) return IS_ERROR;
    }
    return NO_PORTS;
  }

  private malformed(): number {
    this.counters.malformed++;
    return DROP;
  }

  /** Creates a session's flow with a remote; a shared session's gets an outer port of its own. */
  private newFlow(id: number, proto: number, inner: number, lport: number, outer: number, remote: number, rport: number): number {
    const shared = this.sessions.onShared[id] ? this.shared : null;
    let oport = lport;
    if (shared !== null) {
      oport = shared.acquire(id, proto, lport);
      if (oport === NO_FLOW) return NO_FLOW;
    }
    if (!roomForFlow(this.flows, id, this.flowLimit, this.counters)) {
      if (shared !== null) shared.release(proto, oport);
      return NO_FLOW;
    }
    return this.flows.insert(id, proto, inner, lport, outer, oport, remote, rport, STATE_FREE, 0);
  }

  /**
   * Folds an address change into the transport checksum: TCP and UDP cover
   * the pseudo-header (ICMPv4 does not). A checksum the device will finish
   * (at `csumAt`, from the TUN's virtio header; else -1) holds a partial sum
   * instead.
   */
  private updateTransport(t: number, proto: number, oldAddr: number, newAddr: number, csumAt: number): void {
    if (t !== HAS_PORTS || proto === PROTO_ICMP) return;
    if (csumAt >= 0) {
      const b = this.ip.buf;
      write16(b, csumAt, updatePartial32(read16(b, csumAt), oldAddr, newAddr));
    } else if (proto === PROTO_TCP) {
      this.tcp.updateAddress(oldAddr, newAddr);
    } else {
      this.udp.updateAddress(oldAddr, newAddr);
    }
  }

  /** Rewrites the session-side port (source when `out`, else destination), or an echo's identifier. */
  private setLocalPort(proto: number, out: boolean, port: number, csumAt: number): void {
    setPort4(proto, this.tcp, this.udp, this.icmp, out, port, csumAt >= 0);
  }

  /**
   * Turns the packet at `this.ip`, from a session at `inner` to the blocked
   * address `blocked`, into ICMP type 3 code 13 (communication
   * administratively prohibited) from `blocked` to `inner`, in place, quoting
   * as much of the packet as fits 576 bytes (RFC 792, RFC 1812 4.3.2.3).
   * ICMP errors and later fragments get none (RFC 1122 3.2.2): DROP.
   */
  private prohibit(inner: number, blocked: number): number {
    this.counters.toLocal++;
    const n = icmpError4(this.ip, this.icmp, ICMP4_CODE_PROHIBITED, blocked, inner);
    if (n === DROP) return DROP;
    this.reply.length = n;
    return REPLY;
  }
}
