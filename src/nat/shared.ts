// The shared fallback: sessions without a VIP of their own leave from the uplink's address, port-translated; what reaches it that is no session's goes back to the uplink's own stack.
//
// A shared session's IPv4 flows leave from the shared address with an outer
// port of their own (ports.ts: endpoint-independent, a quota per session).
// From the uplink, a packet to the shared address belongs to a session only
// through a flow: anything else (a new connection, an echo request, a
// protocol without ports) is the machine's own traffic and is reflected, that
// is, handed back to the uplink's stack (TO_UPLINK).

import { type FlowTable, NO_FLOW } from './flows.js';
import { PortAllocator, PORTS_QUOTA, portSlot } from './ports.js';
import { type NatCounters, TO_UPLINK } from './state.js';
import { PROTO_ICMP } from '../wire/index.js';

export class SharedFallback {
  readonly address: number;
  private readonly ports: PortAllocator;

  /**
   * The shared address with outer ports portLo-portHi, of which each of
   * sessions 1-maxSession may hold `quota` per protocol; `memory` is the
   * allocator's shared buffer when translators in several threads share it.
   */
  constructor(
    shared: { address: number; portLo: number; portHi: number },
    maxSession: number,
    quota: number,
    memory: SharedArrayBuffer | undefined,
    private readonly flows: FlowTable,
    private readonly counters: NatCounters,
  ) {
    this.address = shared.address;
    const ports = new PortAllocator(shared.portLo, shared.portHi, memory, maxSession, quota);
    this.ports = ports;
    const address = this.address;
    // A shared flow's outer port goes back with the flow (expiry, session
    // end). Only shared sessions' flows leave from the shared address; the
    // flow itself says so, whichever thread's translator removes it.
    flows.onRemove = (f) => {
      if (flows.outerAddrOf(f) === address) ports.release(portSlot(flows.protoOf(f)), flows.outerPortOf(f));
    };
  }

  /** An outer port for a new flow of shared session `id` from inner `port`, or NO_FLOW (counted: quota, or every port taken). */
  acquire(id: number, proto: number, port: number): number {
    const oport = this.ports.acquire(portSlot(proto), id, port);
    if (oport >= 0) return oport;
    if (oport === PORTS_QUOTA) this.counters.portQuota++;
    else this.counters.portsExhausted++;
    return NO_FLOW;
  }

  /** Gives back an outer port acquire() gave for a flow that was not made after all. */
  release(proto: number, oport: number): void {
    this.ports.release(portSlot(proto), oport);
  }

  /**
   * The session a packet from the uplink to the shared address belongs to,
   * given its flow lookup `f` and whether it may open a flow (`opens`), or
   * 0 when it is none of theirs (reflect it). An echo request is never a
   * reply to a session: the machine itself answers it.
   */
  sessionFor(f: number, proto: number, opens: boolean): number {
    if (f === NO_FLOW || (proto === PROTO_ICMP && opens)) return 0;
    return this.flows.sessionOf(f);
  }

  /** A packet to the shared address that is not ours: back to the uplink's own stack. */
  reflect(): number {
    this.counters.reflected++;
    return TO_UPLINK;
  }

  /** Outer ports in use, per protocol (TCP, UDP, ICMP). */
  inUse(): number[] {
    return [...this.ports.used];
  }
}
