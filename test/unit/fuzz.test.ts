// Property-based fuzz of the translator (fast-check): mutated and random packets, both ways, both families, every mode, eviction and blockLocal.
//
// Each run builds two translators alike but for the fast path (on, off) and
// puts a generated sequence of operations through both: packets built with
// packets.ts and then mutated (bytes, lengths, flags, truncation), pure
// random bytes, partial checksums, clock steps with expiry on small tables
// (so that eviction and the limits are hit), and blockLocal's addresses set
// and cleared. Every packet must be forwarded with valid checksums (the IPv4
// header's, and the transport's whenever the input's was valid; an IPv4 UDP
// checksum of 0 stays 0), answered with a valid REPLY, or dropped and counted
// by one drop counter (an ICMP error with a bad checksum by two: malformed
// and icmpErrorsDropped); nothing may throw or write outside the packet
// (or its reply); no table may hold more than its capacity, nor a session
// more than its limit; and both translators must give the same verdicts,
// bytes, counters and flows. `make check` runs a few seconds of it with a
// fixed seed; `make fuzz` runs VIPNAT_FUZZ_PACKETS packets (VIPNAT_FUZZ_SEED
// replays a seed).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  DROP,
  Nat,
  REPLY,
  TO_UPLINK,
  defaultSessionFlowLimit,
  type FlowTableBase,
  type NatCounters,
  type NatOptions,
} from '../../src/nat/index.js';
import {
  ACK,
  FIN,
  ICMP,
  ICMP6,
  PSH,
  RST,
  Rng,
  SYN,
  TCP,
  UDP,
  addr,
  addr6,
  echo6Packet,
  echoPacket,
  icmp6ErrorPacket,
  icmp6Message,
  icmpErrorPacket,
  icmpMessage,
  ipHeaderOk,
  ipv4,
  ipv6,
  l4Ok,
  l4Ok6,
  onesSum,
  pseudoHeader,
  pseudoHeader6,
  tcp6Packet,
  tcpPacket,
  toHex,
  u16,
  udp6Packet,
  udpPacket,
  words6,
  type Ext6,
} from './packets.js';

const PACKETS = Number(process.env['VIPNAT_FUZZ_PACKETS'] ?? 40_000);
/** fast-check's seeds are 32-bit integers; it prints failures' seeds that way, and VIPNAT_FUZZ_SEED takes them back. */
const SEED = Number(process.env['VIPNAT_FUZZ_SEED'] ?? 0x9f1e2026) | 0;
/** Operations per run, at most; the runs are as many as it takes to send PACKETS packets. */
const MAX_OPS = 400;
/** Packets a run sends, on average (measured): how many runs a batch is given. */
const PACKETS_PER_RUN = 185;

const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const SHARED = addr('198.18.0.1');
const REMOTES = [addr('203.0.113.5'), addr('203.0.113.6')];
const ROUTER = addr('192.0.2.1');
const LOCAL = addr('192.168.7.1');
const INNER6 = addr6('fd00:2::100');
const VIP6 = (k: number): Uint8Array => addr6(`fd00:19:7::${k.toString(16)}`);
const REMOTES6 = [addr6('2001:db8:5::5'), addr6('2001:db8:5::6')];
const ROUTER6 = addr6('2001:db8:ff::1');
const LOCAL6 = addr6('2001:db8:7::1');
const LINK6 = addr6('fe80::1');
const MCAST6 = addr6('ff02::1');
const PORT_LO = 61000;
const PORT_HI = 61015;
const MAX_SESSION = 6;
const TIMEOUTS = { tcpEstablished: 60, tcpTransitory: 12, tcpClosed: 3, udp: 25, icmp: 6 };

/**
 * Sessions: 1 and 2 NAT mode (inner 10.0.2.100 / fd00:2::100), 3 shared
 * (IPv4 only, when the run has a shared address), 4 address mode, 5 NAT
 * mode IPv4 only; 6 is never added.
 */
const inner4 = (id: number): number => (id === 4 ? VIP(4) : INNER);
const inner6 = (id: number): Uint8Array => (id === 4 ? VIP6(4) : INNER6);

interface Config {
  cap4: number;
  cap6: number;
  limit: number | undefined;
  quota: number | undefined;
  shared: boolean;
  blockLocal: boolean;
  /** Whether the shared address is among the local (blocked) addresses. */
  sharedIsLocal: boolean;
}

interface Op {
  /** 0-2 expire, 3 set or clear the local addresses, else a packet. */
  kind: number;
  fromSession: boolean;
  v6: boolean;
  id: number;
  shape: number;
  src: number;
  dst: number;
  lport: number;
  rport: number;
  flags: number;
  dataLen: number;
  muts: [number, number, boolean][];
  cut: number | null;
  partial: boolean;
  dt: number;
  seed: number;
  /** Below 3: the packet continues or answers the one before (same session, protocol, addresses and ports), so that flows are made and hit. */
  again: number;
}

const config: fc.Arbitrary<Config> = fc.record({
  cap4: fc.constantFrom(2, 8, 64, 1024),
  cap6: fc.constantFrom(2, 8, 64, 1024),
  limit: fc.option(fc.integer({ min: 1, max: 12 }), { nil: undefined }),
  quota: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
  shared: fc.boolean(),
  blockLocal: fc.boolean(),
  sharedIsLocal: fc.boolean(),
});

const op: fc.Arbitrary<Op> = fc.record({
  kind: fc.nat(99),
  fromSession: fc.boolean(),
  v6: fc.nat(2).map((n) => n === 2),
  id: fc.constantFrom(1, 1, 2, 3, 3, 4, 5, 6),
  shape: fc.nat(15),
  src: fc.nat(7),
  dst: fc.nat(7),
  lport: fc.nat(3),
  rport: fc.nat(1),
  flags: fc.nat(7),
  dataLen: fc.nat(48),
  // Most packets are left whole (so that flows are made and found); the rest get up to three bytes changed, or are cut short.
  muts: fc
    .tuple(fc.nat(4), fc.array(fc.tuple(fc.nat(79), fc.nat(255), fc.boolean()), { minLength: 1, maxLength: 3 }))
    .map(([k, m]) => (k < 3 ? [] : m)),
  cut: fc.tuple(fc.nat(9), fc.nat(120)).map(([k, n]) => (k === 0 ? n : null)),
  partial: fc.nat(3).map((n) => n === 0),
  dt: fc.nat(20).map((n) => (n < 14 ? 0 : n - 13)),
  seed: fc.integer(),
  again: fc.nat(3),
});

const TCP_FLAGS = [SYN, SYN | ACK, ACK, ACK | PSH, FIN | ACK, RST, RST | ACK, 0];
const LOCAL_PORTS = [40000, 40001, PORT_LO, PORT_LO + 1];
const REMOTE_PORTS = [53, 80];

function makeNat(cfg: Config, fastPath: boolean): Nat {
  const opts: NatOptions = {
    maxSession: MAX_SESSION,
    flowCapacity: cfg.cap4,
    flowCapacity6: cfg.cap6,
    seed: 11,
    timeouts: TIMEOUTS,
    fastPath,
    blockLocal: cfg.blockLocal,
    ...(cfg.limit !== undefined ? { sessionFlowLimit: cfg.limit } : {}),
    ...(cfg.quota !== undefined ? { sharedPortQuota: cfg.quota } : {}),
    ...(cfg.shared ? { shared: { address: SHARED, portLo: PORT_LO, portHi: PORT_HI } } : {}),
  };
  const nat = new Nat(opts);
  for (const k of [1, 2]) {
    nat.addSession(k, INNER, VIP(k));
    nat.addSession6(k, words6(INNER6), words6(VIP6(k)));
  }
  if (cfg.shared) nat.addSharedSession(3, INNER);
  nat.addSession(4, VIP(4), VIP(4));
  nat.addSession6(4, words6(VIP6(4)), words6(VIP6(4)));
  nat.addSession(5, INNER, VIP(5));
  return nat;
}

function setLocal(nat: Nat, cfg: Config, on: boolean): void {
  if (on) nat.setLocalAddresses(cfg.sharedIsLocal ? [LOCAL, SHARED] : [LOCAL], [Array.from(words6(LOCAL6))]);
  else nat.setLocalAddresses([], []);
}

/**
 * The op as it is run: one with `again` below 3 takes the session, family,
 * protocol, peer and ports of the packet before it, and answers it (the other
 * way) or continues it (the same way). The remote the session sent to is
 * the one the answer comes from, and the other way round.
 */
function follow(o: Op, prev: Op | null): Op {
  if (prev === null || o.again === 3) return o;
  const answer = o.again !== 1;
  const fromSession = answer ? !prev.fromSession : prev.fromSession;
  if (fromSession === prev.fromSession)
    return {
      ...o,
      fromSession,
      id: prev.id,
      v6: prev.v6,
      shape: prev.shape,
      src: prev.src,
      dst: prev.dst,
      lport: prev.lport,
      rport: prev.rport,
    };
  // Session-side destination index <-> uplink-side source index: R0, R0, R0, R1, LOCAL line up; the rest answer to R0.
  const peer = fromSession ? (prev.src === 3 || prev.src === 4 ? prev.src : prev.src === 7 ? 7 : 0) : prev.dst <= 4 ? prev.dst : 0;
  return {
    ...o,
    fromSession,
    id: prev.id,
    v6: prev.v6,
    shape: prev.shape,
    src: fromSession ? 0 : peer,
    dst: fromSession ? peer : 0,
    lport: prev.lport,
    rport: prev.rport,
  };
}

/** The packet of an op, and where its partial checksum field is (relative to the packet), or -1. */
function build(o: Op): { pkt: Uint8Array; csum: number } {
  const rng = new Rng(o.seed);
  const data = rng.bytes(o.dataLen);
  const lp = LOCAL_PORTS[o.lport]!;
  const rp = REMOTE_PORTS[o.rport]!;
  const flags = TCP_FLAGS[o.flags]!;
  let pkt: Uint8Array;
  let l4 = -1;
  let proto = 0;
  if (!o.v6) {
    const outer = o.id === 3 ? SHARED : VIP(o.id);
    const src = o.fromSession
      ? [inner4(o.id), inner4(o.id), inner4(o.id), inner4(o.id), inner4(o.id), REMOTES[0]!, VIP(o.id), inner4(o.id)][o.src]!
      : [REMOTES[0]!, REMOTES[0]!, REMOTES[0]!, REMOTES[1]!, LOCAL, ROUTER, REMOTES[0]!, SHARED][o.src]!;
    const dst = o.fromSession
      ? [REMOTES[0]!, REMOTES[0]!, REMOTES[0]!, REMOTES[1]!, LOCAL, VIP(2), VIP(4), SHARED][o.dst]!
      : [outer, outer, outer, outer, outer, SHARED, VIP(6), VIP(1)][o.dst]!;
    const sport = o.fromSession ? lp : rp;
    const dport = o.fromSession ? rp : lp;
    const ip = { ident: o.seed & 0xffff };
    const s = o.shape;
    if (s <= 3 || s === 15) {
      pkt = tcpPacket(src, dst, { sport, dport, flags, data: s === 15 ? data : data.subarray(0, o.dataLen & 7) }, ip);
      [l4, proto] = [20, TCP];
    } else if (s <= 6) {
      pkt = udpPacket(src, dst, { sport, dport, data, checksum: s !== 6 }, ip);
      [l4, proto] = [20, UDP];
    } else if (s === 7) {
      pkt = echoPacket(src, dst, o.fromSession === o.flags < 6 ? 8 : 0, lp, o.rport, data);
    } else if (s <= 9) {
      // An error about a packet the other way: one the session got (from a session), one it sent (from the network).
      const q = o.fromSession
        ? o.flags & 1
          ? udpPacket(dst, src, { sport: rp, dport: lp, data })
          : tcpPacket(dst, src, { sport: rp, dport: lp, flags: SYN })
        : o.flags & 1
          ? udpPacket(dst, src, { sport: lp, dport: rp, data })
          : o.flags & 2
            ? echoPacket(dst, src, 8, lp, 1, data)
            : tcpPacket(dst, src, { sport: lp, dport: rp, flags: SYN });
      const [type, code, rest] = [
        [3, 3, 0],
        [3, 4, 1400],
        [11, 0, 0],
        [12, 0, 0],
      ][o.flags & 3] as [number, number, number];
      const quote = o.flags & 4 ? q.subarray(0, 28) : q;
      pkt =
        s === 8
          ? ipv4({ src: o.fromSession ? src : ROUTER, dst, proto: ICMP }, icmpMessage(type, code, rest, quote))
          : icmpErrorPacket(src, dst, type, code, quote);
    } else if (s === 10) {
      pkt = ipv4(
        { src, dst, proto: UDP, mf: (o.flags & 1) === 1, fragOffset: o.flags & 2 ? 8 * (1 + (o.flags >> 2)) : 0 },
        udpPacket(src, dst, { sport, dport, data }).subarray(20),
      );
    } else if (s === 11) {
      pkt =
        o.flags & 1
          ? tcpPacket(src, dst, { sport, dport, flags }, { options: [7, 7, 4, 0, 0, 0, 0] })
          : udpPacket(src, dst, { sport, dport, data }, { options: [1, 1, 1, 1] });
      [l4, proto] = [28, o.flags & 1 ? TCP : UDP];
    } else if (s === 12) {
      pkt = ipv4({ src, dst, proto: 47 }, data);
    } else if (s === 13) {
      pkt = rng.bytes(20 + o.dataLen);
      pkt[0] = 0x45;
    } else {
      pkt = rng.bytes(o.dataLen);
    }
  } else {
    const src = o.fromSession
      ? [inner6(o.id), inner6(o.id), inner6(o.id), inner6(o.id), inner6(o.id), REMOTES6[0]!, LINK6, inner6(o.id)][o.src]!
      : [REMOTES6[0]!, REMOTES6[0]!, REMOTES6[0]!, REMOTES6[1]!, LOCAL6, ROUTER6, REMOTES6[0]!, LINK6][o.src]!;
    const dst = o.fromSession
      ? [REMOTES6[0]!, REMOTES6[0]!, REMOTES6[0]!, REMOTES6[1]!, LOCAL6, VIP6(2), VIP6(4), MCAST6][o.dst]!
      : [VIP6(o.id), VIP6(o.id), VIP6(o.id), VIP6(o.id), VIP6(o.id), MCAST6, VIP6(6), VIP6(1)][o.dst]!;
    const sport = o.fromSession ? lp : rp;
    const dport = o.fromSession ? rp : lp;
    const ext: Ext6[] = o.flags & 4 ? [{ kind: 'hbh' }, { kind: 'dst', options: [0x1e, 1, 9] }] : o.flags & 2 ? [{ kind: 'dst' }] : [];
    const extLen = o.flags & 4 ? 16 : o.flags & 2 ? 8 : 0;
    const s = o.shape;
    if (s <= 3 || s === 15) {
      pkt = tcp6Packet(src, dst, { sport, dport, flags, data: s === 15 ? data : undefined }, { ext });
      [l4, proto] = [40 + extLen, TCP];
    } else if (s <= 6) {
      pkt = udp6Packet(src, dst, { sport, dport, data, checksum: s !== 6 }, { ext });
      [l4, proto] = [40 + extLen, UDP];
    } else if (s === 7) {
      pkt = echo6Packet(src, dst, o.fromSession === o.flags < 6 ? 128 : 129, lp, 1, data, { ext });
    } else if (s <= 9) {
      const q = o.fromSession
        ? o.flags & 1
          ? udp6Packet(dst, src, { sport: rp, dport: lp, data })
          : tcp6Packet(dst, src, { sport: rp, dport: lp, flags: SYN })
        : o.flags & 1
          ? udp6Packet(dst, src, { sport: lp, dport: rp, data })
          : o.flags & 2
            ? echo6Packet(dst, src, 128, lp, 1, data)
            : tcp6Packet(dst, src, { sport: lp, dport: rp, flags: SYN });
      const [type, code, rest] = [
        [1, 4, 0],
        [2, 0, 1280],
        [3, 0, 0],
        [4, 0, 8],
      ][o.flags & 3] as [number, number, number];
      pkt = icmp6ErrorPacket(s === 9 || o.fromSession ? src : ROUTER6, dst, type, code, q, o.flags & 4 ? 48 : q.length, rest);
    } else if (s === 10) {
      const frag: Ext6 = { kind: 'frag', offset: o.flags & 2 ? 8 * (1 + (o.flags >> 2)) : 0, more: (o.flags & 1) === 1, ident: o.seed };
      pkt = ipv6({ src, dst, proto: UDP, ext: [frag] }, udp6Packet(src, dst, { sport, dport, data }).subarray(40));
    } else if (s === 11) {
      // Neighbour discovery, router solicitation, MLD: link business.
      pkt = ipv6(
        { src, dst, proto: ICMP6, hopLimit: 255 },
        icmp6Message(src, dst, [133, 135, 136, 143][o.flags & 3]!, 0, 0, data.subarray(0, 24)),
      );
    } else if (s === 12) {
      pkt = ipv6({ src, dst, proto: 47, ext }, data);
    } else if (s === 13) {
      pkt = rng.bytes(40 + o.dataLen);
      pkt[0] = 0x60;
    } else {
      pkt = rng.bytes(o.dataLen);
      if (pkt.length > 0 && o.flags & 1) pkt[0] = (pkt[0]! & 0x0f) | 0x60;
    }
  }
  // A partial checksum, as a TUN with offloads hands it over: the pseudo-header sum in the field, for the device to finish.
  let csum = -1;
  if (o.partial && l4 >= 0 && !(proto === UDP && o.shape === 6)) {
    const at = l4 + (proto === TCP ? 16 : 6);
    const len = pkt.length - l4;
    const pseudo = o.v6
      ? pseudoHeader6(pkt.subarray(8, 24), pkt.subarray(24, 40), proto, len)
      : pseudoHeader(u32(pkt, 12), u32(pkt, 16), proto, len);
    const sum = onesSum([pseudo]);
    pkt[at] = sum >>> 8;
    pkt[at + 1] = sum & 0xff;
    csum = at;
  }
  for (const [pos, val, xor] of o.muts) {
    if (pkt.length === 0) break;
    const at = pos % pkt.length;
    pkt[at] = xor ? pkt[at]! ^ (1 << (val & 7)) : val;
  }
  if (o.cut !== null) pkt = pkt.subarray(0, o.cut % (pkt.length + 1));
  return { pkt, csum: csum >= 0 && csum + 2 <= pkt.length ? csum : -1 };
}

function u32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

/** A copy with the partial checksum at `csum` finished the way the device would; the packet itself when there is none. */
function finished(p: Uint8Array, csum: number, l4: number, udp: boolean): Uint8Array {
  if (csum < 0) return p;
  const q = p.slice();
  let c = 0xffff - onesSum([q.subarray(l4)]);
  if (c === 0 && udp) c = 0xffff;
  q[csum] = c >>> 8;
  q[csum + 1] = c & 0xff;
  return q;
}

/**
 * What a packet's checksums say: the IPv4 header's ('-' for IPv6 or when not
 * a readable IPv4 header), and the transport's when it can be judged (an
 * unfragmented TCP, UDP, ICMP or ICMPv6 packet, whole, with a partial
 * checksum only where it belongs), else '-'; 'u0' for an IPv4 UDP checksum of 0.
 */
function checksums(p: Uint8Array, csum: number): [string, string] {
  if (p.length >= 20 && p[0]! >>> 4 === 4) {
    const ihl = (p[0]! & 0x0f) * 4;
    if (ihl < 20 || ihl > p.length) return ['-', '-'];
    const hdr = ipHeaderOk(p) ? 'ok' : 'bad';
    const total = u16(p, 2);
    const proto = p[9]!;
    const frag = (u16(p, 6) & 0x3fff) !== 0;
    if (total > p.length || total < ihl + 8 || frag || ![TCP, UDP, ICMP].includes(proto)) return [hdr, '-'];
    const pkt = p.subarray(0, total);
    if (proto === TCP && total < ihl + 20) return [hdr, '-'];
    if (csum >= 0 && (proto === ICMP || csum !== ihl + (proto === TCP ? 16 : 6))) return [hdr, '-'];
    if (proto === UDP && csum < 0 && u16(pkt, ihl + 6) === 0) return [hdr, 'u0'];
    return [hdr, l4Ok(finished(pkt, csum, ihl, proto === UDP)) ? 'ok' : 'bad'];
  }
  if (p.length >= 40 && p[0]! >>> 4 === 6) {
    const end = 40 + u16(p, 4);
    if (end > p.length) return ['-', '-'];
    // The upper-layer header, walked plainly; a Fragment header means the transport is not judged.
    let nh = p[6]!;
    let o = 40;
    for (let n = 0; n < 8 && (nh === 0 || nh === 43 || nh === 60); n++) {
      if (o + 8 > end) return ['-', '-'];
      const next = p[o]!;
      o += (p[o + 1]! + 1) * 8;
      nh = next;
    }
    if (o + 8 > end || ![TCP, UDP, ICMP6].includes(nh)) return ['-', '-'];
    if (nh === TCP && o + 20 > end) return ['-', '-'];
    if (csum >= 0 && (nh === ICMP6 || csum !== o + (nh === TCP ? 16 : 6))) return ['-', '-'];
    const pkt = p.subarray(0, end);
    return ['-', l4Ok6(finished(pkt, csum, o, nh === UDP)) ? 'ok' : 'bad'];
  }
  return ['-', '-'];
}

/** Counters that say a packet was dropped; every dropped packet must have moved exactly one of them by one. */
const DROP_COUNTERS: (keyof NatCounters)[] = [
  'otherFamily',
  'linkControl',
  'malformed',
  'spoofed',
  'noSession',
  'tableFull',
  'icmpErrorsDropped',
  'portsExhausted',
  'sessionFlowLimit',
  'portQuota',
  'toLocal',
];

function tableRows(t: FlowTableBase): string {
  const rows: string[] = [];
  for (let f = 0; f < t.capacity; f++) {
    if (t.stateOf(f) === 0) continue;
    const a = t.innerAt(f);
    rows.push(
      [
        f,
        t.sessionOf(f),
        t.protoOf(f),
        t.stateOf(f),
        t.deadlineOf(f),
        t.innerPortOf(f),
        t.outerPortOf(f),
        t.remotePortOf(f),
        t.evictable(f),
      ]
        .concat(Array.from(t.addr.subarray(a, a + 3 * t.words)))
        .join(' '),
    );
  }
  return rows.join('\n');
}

const OFF = 10;
const GUARD = 64;
/** The dataplane's read buffer: room for a 64 KiB segment after the packet's offset. */
const bufA = new Uint8Array(OFF + 65536 + 256).fill(0xa5);
const bufB = new Uint8Array(OFF + 65536 + 256).fill(0xa5);
let sent = 0;
/** What the runs went through, summed: so that a passing run can be seen to mean something. */
const seen = { forwarded: 0, transportChecked: 0, partialChecked: 0, udpZero: 0, replies: 0, dropped: 0, fastPath: 0 };
const totals: Record<string, number> = {};

/** Runs one sequence through a fast-path translator and a general-path one; throws on the first broken property. */
function runScenario(cfg: Config, ops: Op[]): void {
  const fast = makeNat(cfg, true);
  const slow = makeNat(cfg, false);
  // A run that failed (fast-check goes on to shrink it) may have left bytes behind.
  bufA.fill(0xa5);
  bufB.fill(0xa5);
  let local = false;
  if (cfg.blockLocal || cfg.sharedIsLocal) {
    setLocal(fast, cfg, true);
    setLocal(slow, cfg, true);
    local = true;
  }
  let now = 1000;
  let prev: Op | null = null;
  for (let i = 0; i < ops.length; i++) {
    const o = follow(ops[i]!, prev);
    now += o.dt;
    if (o.kind < 3) {
      const budget = 1 + (o.seed & 63);
      fast.expire(now, budget);
      slow.expire(now, budget);
      continue;
    }
    if (o.kind === 3) {
      local = !local;
      setLocal(fast, cfg, local);
      setLocal(slow, cfg, local);
      continue;
    }
    prev = o;
    const { pkt, csum } = build(o);
    const len = pkt.length;
    const where = (): string =>
      `op ${i} (${o.fromSession ? `from session ${o.id}` : 'from the uplink'}, ${o.v6 ? 'IPv6' : 'IPv4'}, shape ${o.shape}, csum ${csum}): ${toHex(pkt)}`;
    bufA.set(pkt, OFF);
    bufB.set(pkt, OFF);
    const at = csum >= 0 ? OFF + csum : -1;
    const before = { ...slow.counters };
    const va = o.fromSession ? fast.fromSession(o.id, bufA, OFF, len, now, at) : fast.fromUplink(bufA, OFF, len, now, at);
    const vb = o.fromSession ? slow.fromSession(o.id, bufB, OFF, len, now, at) : slow.fromUplink(bufB, OFF, len, now, at);
    sent++;
    const span = va === REPLY ? Math.max(len, fast.replyLength) : len;
    const outA = bufA.subarray(OFF, OFF + span);
    const outB = bufB.subarray(OFF, OFF + span);
    if (va !== vb || toHex(outA) !== toHex(outB) || (va === REPLY && fast.replyLength !== slow.replyLength)) {
      throw new Error(`fast path ${va} and general path ${vb} differ at ${where()}\n${toHex(outA)}\n${toHex(outB)}`);
    }
    for (let k = 0; k < OFF; k++) if (bufB[k] !== 0xa5) throw new Error(`wrote before the packet at ${where()}`);
    for (let k = OFF + span; k < OFF + span + GUARD; k++) if (bufB[k] !== 0xa5) throw new Error(`wrote after the packet at ${where()}`);
    const ok = o.fromSession
      ? vb === DROP || vb === TO_UPLINK || vb === REPLY || (vb >= 1 && vb <= 5)
      : vb === DROP || vb === TO_UPLINK || (vb >= 1 && vb <= 5);
    if (!ok) throw new Error(`verdict ${vb} at ${where()}`);
    if (vb === DROP) {
      const moved = DROP_COUNTERS.filter((k) => slow.counters[k] !== before[k]);
      // One counter, by one; an ICMP error with a bad checksum counts as malformed and as an error dropped.
      const one = moved.length === 1 || (moved.length === 2 && moved.includes('malformed') && moved.includes('icmpErrorsDropped'));
      if (!one || moved.some((k) => slow.counters[k] !== before[k] + 1)) {
        throw new Error(
          `dropped with counters ${moved.map((k) => `${k} +${slow.counters[k] - before[k]}`).join(', ') || 'none'} at ${where()}`,
        );
      }
    } else if (vb === REPLY) {
      checkReply(outB.subarray(0, slow.replyLength), o, pkt, where);
      if (slow.counters.toLocal !== before.toLocal + 1) throw new Error(`REPLY not counted at ${where()}`);
      seen.replies++;
    } else {
      seen.forwarded++;
      const [hIn, tIn] = checksums(pkt, csum);
      const out = outB.subarray(0, len);
      const [hOut, tOut] = checksums(out, csum);
      if (hIn === 'ok' && hOut !== 'ok') throw new Error(`IPv4 header checksum ${hIn} -> ${hOut} at ${where()}\n${toHex(out)}`);
      if ((tIn === 'ok' || tIn === 'u0') && tOut !== tIn)
        throw new Error(`transport checksum ${tIn} -> ${tOut} at ${where()}\n${toHex(out)}`);
      if (tIn === 'ok') seen.transportChecked++;
      if (tIn === 'ok' && csum >= 0) seen.partialChecked++;
      if (tIn === 'u0') seen.udpZero++;
    }
    if (vb === DROP) seen.dropped++;
    // Restore the guard bytes the packet (or its reply) took.
    bufA.fill(0xa5, 0, OFF + span + GUARD);
    bufB.fill(0xa5, 0, OFF + span + GUARD);
    for (const [t, cap] of [
      [slow.flows, cfg.cap4],
      [slow.v6.flows, cfg.cap6],
    ] as const) {
      const limit = cfg.limit ?? defaultSessionFlowLimit(cap);
      if (t.count > cap || t.evictableCount > t.count)
        throw new Error(`table: ${t.count} flows (${t.evictableCount} evictable) of ${cap} after ${where()}`);
      for (let s = 1; s <= MAX_SESSION; s++) {
        if (t.sessionFlows(s) > limit) throw new Error(`session ${s}: ${t.sessionFlows(s)} flows, limit ${limit}, after ${where()}`);
      }
    }
  }
  const a = JSON.stringify({ ...fast.counters });
  const b = JSON.stringify({ ...slow.counters });
  if (a !== b) throw new Error(`counters differ:\n${a}\n${b}`);
  if (tableRows(fast.flows) !== tableRows(slow.flows) || tableRows(fast.v6.flows) !== tableRows(slow.v6.flows))
    throw new Error('flow tables differ');
  if (fast.sharedPortsInUse().join() !== slow.sharedPortsInUse().join()) throw new Error('shared ports differ');
  seen.fastPath += fast.fastPathPackets;
  for (const [k, v] of Object.entries(slow.counters) as [string, number][]) totals[k] = (totals[k] ?? 0) + v;
}

/** A REPLY is an ICMP "administratively prohibited" to the session's inner address, with every checksum right and within its size. */
function checkReply(r: Uint8Array, o: Op, pkt: Uint8Array, where: () => string): void {
  if (!o.v6) {
    const okv4 =
      r.length >= 28 &&
      r.length <= 576 &&
      r[0] === 0x45 &&
      u16(r, 2) === r.length &&
      r[9] === ICMP &&
      ipHeaderOk(r) &&
      onesSum([r.subarray(20)]) === 0xffff &&
      r[20] === 3 &&
      r[21] === 13 &&
      u32(r, 16) === inner4(o.id) &&
      u32(r, 12) === u32(pkt, 16) &&
      toHex(r.subarray(28)) === toHex(pkt.subarray(0, r.length - 28));
    if (!okv4) throw new Error(`bad IPv4 reply ${toHex(r)} at ${where()}`);
  } else {
    const okv6 =
      r.length >= 48 &&
      r.length <= 1280 &&
      r[0]! >>> 4 === 6 &&
      u16(r, 4) === r.length - 40 &&
      r[6] === ICMP6 &&
      l4Ok6(r) &&
      r[40] === 1 &&
      r[41] === 1 &&
      toHex(r.subarray(24, 40)) === toHex(inner6(o.id)) &&
      toHex(r.subarray(8, 24)) === toHex(pkt.subarray(24, 40)) &&
      toHex(r.subarray(48)) === toHex(pkt.subarray(0, r.length - 48));
    if (!okv6) throw new Error(`bad IPv6 reply ${toHex(r)} at ${where()}`);
  }
}

describe('fuzz: the translator under fast-check', () => {
  it(
    `${PACKETS} packets (seed ${SEED}): forwarded with valid checksums, answered, or dropped and counted once; limits hold; fast path = general path`,
    () => {
      const t0 = Date.now();
      // Batches until PACKETS packets have gone through: the first with SEED, each next with the seed after.
      for (let batch = 0; sent < PACKETS; batch++) {
        const seed = (SEED + batch) | 0;
        const numRuns = Math.max(1, Math.ceil((PACKETS - sent) / PACKETS_PER_RUN));
        console.log(`fuzz: seed ${seed} (VIPNAT_FUZZ_SEED=${seed} replays it), ${numRuns} runs of up to ${MAX_OPS} operations`);
        fc.assert(
          fc.property(config, fc.array(op, { minLength: 1, maxLength: MAX_OPS, size: 'max' }), (cfg, ops) => runScenario(cfg, ops)),
          { seed, numRuns },
        );
      }
      console.log(`fuzz: ${sent} packets in ${((Date.now() - t0) / 1000).toFixed(1)} s, seed ${SEED}`);
      console.log(`fuzz: ${JSON.stringify(seen)}\nfuzz: counters ${JSON.stringify(totals)}`);
      // It means something: every outcome and every mechanism was reached.
      for (const [k, v] of Object.entries(seen)) expect(v, k).toBeGreaterThan(0);
      for (const k of ['hairpin', 'flowsEvicted', 'flowsExpired', 'sessionFlowLimit', 'portQuota', 'toLocal', 'tableFull']) {
        expect(totals[k], k).toBeGreaterThan(0);
      }
      for (const k of ['reflected', 'icmpErrors', 'icmpErrorsDropped', 'linkControl', 'spoofed', 'fragments', 'noSession', 'otherFamily']) {
        expect(totals[k], k).toBeGreaterThan(0);
      }
    },
    PACKETS > 100_000 ? 24 * 3600_000 : 60_000,
  );
});
