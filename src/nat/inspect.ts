// Reading the flow tables for people: each flow's two sides as addresses and ports, and counts by protocol and state.
import { formatIpv4, formatIpv6, PROTO_ICMP, PROTO_TCP, PROTO_UDP } from '../wire/index.js';
import type { FlowTableBase } from './flows.js';
import { STATE_NAMES } from './state.js';
import type { Nat } from './translate.js';

export interface Endpoint {
  address: string;
  port: number;
}

/** One flow as `vipnat sockets` shows it: what the session sees, and what the network sees. */
export interface FlowView {
  session: number;
  family: 4 | 6;
  proto: string;
  /** The translator's state (STATE_NAMES). */
  state: string;
  /** A virtual-loopback flow: a peer of this namespace reaching the session's 127.0.0.1. */
  loopback: boolean;
  /** The session's side: its own address and port, and its peer's as it sees them. */
  inner: { local: Endpoint; remote: Endpoint };
  /** The network's side: the VIP (or shared address) and outer port, and the peer. */
  outer: { local: Endpoint; remote: Endpoint };
  /** Seconds until it expires if nothing more passes. */
  expiresIn: number;
}

/** Live flows of one protocol, family and state. */
export interface FlowCount {
  family: 4 | 6;
  proto: string;
  state: string;
  flows: number;
}

export function protoName(p: number): string {
  return p === PROTO_TCP ? 'tcp' : p === PROTO_UDP ? 'udp' : p === PROTO_ICMP || p === 58 ? 'icmp' : String(p);
}

interface Table {
  table: FlowTableBase;
  family: 4 | 6;
  loopback: boolean;
}

function tables(nat: Nat): Table[] {
  const t: Table[] = [
    { table: nat.flows, family: 4, loopback: false },
    { table: nat.v6.flows, family: 6, loopback: false },
  ];
  if (nat.loopback) t.push({ table: nat.loopback.flows, family: 4, loopback: true });
  return t;
}

/**
 * The live flows of the sessions in `sessions` (every session's when null),
 * at most `limit`. Scans every table (not for the packet path).
 */
export function listFlows(nat: Nat, sessions: ReadonlySet<number> | null, now: number, limit = Infinity): FlowView[] {
  const out: FlowView[] = [];
  for (const { table, family, loopback } of tables(nat)) {
    const a = table.addr;
    const addr = (at: number): string => (family === 4 ? formatIpv4(a[at]!) : formatIpv6(a, at));
    for (let f = 0; f < table.capacity && out.length < limit; f++) {
      const st = table.stateOf(f);
      if (st === 0) continue;
      const session = table.sessionOf(f);
      if (sessions !== null && !sessions.has(session)) continue;
      const inner = addr(table.innerAt(f));
      const outer = addr(table.outerAt(f));
      const remote = addr(table.remoteAt(f));
      const ip = table.innerPortOf(f);
      const rp = table.remotePortOf(f);
      const op = table.outerPortOf(f);
      const v: FlowView = {
        session,
        family,
        proto: protoName(table.protoOf(f)),
        state: STATE_NAMES[st] ?? String(st),
        loopback,
        // A loopback flow's inner address is the outside client; the session sees 127.0.0.1:op reach its 127.0.0.1:rp.
        inner: loopback
          ? { local: { address: outer, port: rp }, remote: { address: outer, port: op } }
          : { local: { address: inner, port: ip }, remote: { address: remote, port: rp } },
        outer: loopback
          ? { local: { address: remote, port: rp }, remote: { address: inner, port: ip } }
          : { local: { address: outer, port: op }, remote: { address: remote, port: rp } },
        expiresIn: Math.max(0, table.deadlineOf(f) - now),
      };
      out.push(v);
    }
  }
  return out;
}

/** Live flows by family, protocol and state (loopback flows as IPv4). */
export function countFlows(nat: Nat): FlowCount[] {
  const counts = new Map<string, FlowCount>();
  for (const { table, family } of tables(nat)) {
    for (let f = 0; f < table.capacity; f++) {
      const st = table.stateOf(f);
      if (st === 0) continue;
      const proto = protoName(table.protoOf(f));
      const state = STATE_NAMES[st] ?? String(st);
      const k = `${family}/${proto}/${state}`;
      const c = counts.get(k);
      if (c) c.flows++;
      else counts.set(k, { family, proto, state, flows: 1 });
    }
  }
  return [...counts.values()];
}

/** Live flows of each session slot 0-maxSession, all tables. */
export function flowsPerSession(nat: Nat, maxSession: number): number[] {
  const out: number[] = [];
  const ts = tables(nat);
  for (let s = 0; s <= maxSession; s++) out.push(ts.reduce((n, t) => n + t.table.sessionFlows(s), 0));
  return out;
}
