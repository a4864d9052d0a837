// Unit tests for a gateway that survives its users' worst day (issue 9): TCP state follows the handshake.
import { describe, it, expect } from 'vitest';
import { DEFAULT_TIMEOUTS, Nat, STATE_NAMES, TO_UPLINK, type NatOptions } from '../../src/nat/index.js';
import { ACK, FIN, RST, SYN, TCP, addr, addr6, tcp6Packet, tcpPacket, words6 } from './packets.js';
import { NOW, recv, send } from './harness.js';

const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const REMOTE = addr('203.0.113.5');
const INNER6 = addr6('fd00:2::100');
const VIP6 = (k: number): Uint8Array => addr6(`fd00:19:7::${k.toString(16)}`);
const REMOTE6 = addr6('2001:db8:5::5');
const T = DEFAULT_TIMEOUTS;

/** Sessions 1-3: NAT mode (inner 10.0.2.100 / fd00:2::100), session 4: address mode; both families. */
function makeNat(opts: Partial<NatOptions> = {}): Nat {
  const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1, ...opts });
  for (const k of [1, 2, 3]) {
    nat.addSession(k, INNER, VIP(k));
    nat.addSession6(k, words6(INNER6), words6(VIP6(k)));
  }
  nat.addSession(4, VIP(4), VIP(4));
  nat.addSession6(4, words6(VIP6(4)), words6(VIP6(4)));
  return nat;
}

/**
 * One TCP connection of session `id` with the remote, in either family: `out`
 * and `inn` send a segment each way, `state` names the flow's state and
 * `timeout` is its deadline less the clock.
 */
function conn(nat: Nat, id: number, v6: boolean, lport = 40000, rport = 80) {
  let now = NOW;
  const inner4 = id === 4 ? VIP(4) : INNER;
  const inner6 = id === 4 ? VIP6(4) : INNER6;
  const flow = (): number =>
    v6
      ? nat.v6.flows.lookupOuter(TCP, words6(VIP6(id)), 0, lport, words6(REMOTE6), 0, rport)
      : nat.flows.lookupOuter(TCP, VIP(id), lport, REMOTE, rport);
  const table = v6 ? nat.v6.flows : nat.flows;
  return {
    out(flags: number): void {
      now++;
      const p = v6
        ? tcp6Packet(inner6, REMOTE6, { sport: lport, dport: rport, flags })
        : tcpPacket(inner4, REMOTE, { sport: lport, dport: rport, flags });
      expect(send(nat, id, p, now).v).toBe(TO_UPLINK);
    },
    inn(flags: number): void {
      now++;
      const p = v6
        ? tcp6Packet(REMOTE6, VIP6(id), { sport: rport, dport: lport, flags })
        : tcpPacket(REMOTE, VIP(id), { sport: rport, dport: lport, flags });
      expect(recv(nat, p, now).v).toBe(id);
    },
    state(): string {
      const f = flow();
      return f < 0 ? 'none' : STATE_NAMES[table.stateOf(f)]!;
    },
    timeout(): number {
      return table.deadlineOf(flow()) - now;
    },
  };
}

describe('TCP state follows the handshake (RFC 5382, conntrack)', () => {
  for (const v6 of [false, true]) {
    const fam = v6 ? 'IPv6' : 'IPv4';
    for (const id of [1, 4]) {
      const mode = id === 4 ? 'address mode' : 'NAT mode';
      it(`${fam}, ${mode}: an unsolicited inbound SYN answered by the SYN-ACK is half-open until the remote's ACK`, () => {
        const c = conn(makeNat(), id, v6, 8080, 51000);
        c.inn(SYN);
        expect([c.state(), c.timeout()]).toEqual(['syn-in', T.tcpTransitory]);
        c.out(SYN | ACK);
        expect([c.state(), c.timeout()]).toEqual(['syn-ack-out', T.tcpTransitory]);
        c.inn(SYN); // a retransmitted SYN completes nothing
        c.out(SYN | ACK);
        c.out(ACK); // nor does an ACK from the responder
        expect([c.state(), c.timeout()]).toEqual(['syn-ack-out', T.tcpTransitory]);
        c.inn(ACK);
        expect([c.state(), c.timeout()]).toEqual(['established', T.tcpEstablished]);
      });

      it(`${fam}, ${mode}: an outbound SYN answered by the remote's SYN-ACK is half-open until the session's ACK`, () => {
        const c = conn(makeNat(), id, v6);
        c.out(SYN);
        expect([c.state(), c.timeout()]).toEqual(['syn-out', T.tcpTransitory]);
        c.inn(SYN | ACK);
        expect([c.state(), c.timeout()]).toEqual(['syn-ack-in', T.tcpTransitory]);
        c.inn(ACK);
        c.out(SYN);
        expect(c.state()).toBe('syn-ack-in');
        c.out(ACK);
        expect([c.state(), c.timeout()]).toEqual(['established', T.tcpEstablished]);
      });
    }

    it(`${fam}: simultaneous open, and RST during the handshake`, () => {
      const nat = makeNat();
      const c = conn(nat, 2, v6);
      c.out(SYN);
      c.inn(SYN);
      expect(c.state()).toBe('syn-both');
      c.out(SYN | ACK);
      expect([c.state(), c.timeout()]).toEqual(['syn-ack-out', T.tcpTransitory]);
      c.inn(SYN | ACK); // the remote's SYN-ACK acknowledges the session's SYN
      expect([c.state(), c.timeout()]).toEqual(['established', T.tcpEstablished]);

      const d = conn(nat, 2, v6, 40001);
      d.out(SYN);
      d.inn(SYN);
      d.inn(SYN | ACK);
      expect(d.state()).toBe('syn-ack-in');
      d.out(SYN | ACK);
      expect(d.state()).toBe('established');

      for (const [who, flags] of [
        ['out', RST],
        ['inn', RST | ACK],
      ] as const) {
        const e = conn(nat, 3, v6, who === 'out' ? 40002 : 40003);
        e.inn(SYN);
        e.out(SYN | ACK);
        e[who](flags);
        expect([e.state(), e.timeout()]).toEqual(['closed', T.tcpClosed]);
      }
    });

    it(`${fam}: the ACK that completes the handshake may carry a FIN`, () => {
      const c = conn(makeNat(), 1, v6);
      c.out(SYN);
      c.inn(SYN | ACK);
      c.out(FIN | ACK);
      expect(c.state()).toBe('fin-out');
      c.inn(FIN | ACK);
      expect(c.state()).toBe('closing');
    });
  }
});
