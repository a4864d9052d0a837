// One session's DHCP client (RFC 2131 4.4): a pure state machine; time comes in, messages and decisions go out.
//
//   INIT -> SELECTING (DHCPDISCOVER, broadcast, retransmitted 1, 2, 4... s until the deadline)
//   SELECTING --OFFER--> REQUESTING (DHCPREQUEST with the server's id and the offered address)
//   REQUESTING --ACK--> CHECKING: the caller asks the link whether the address is in use
//   CHECKING --free--> BOUND;  --in use--> DHCPDECLINE, and SELECTING again (at most MAX_DECLINES times)
//   REQUESTING --NAK--> SELECTING again
//   BOUND --T1--> RENEWING (DHCPREQUEST unicast to the server, retransmitted at half the time left to T2)
//   RENEWING --T2--> REBINDING (the same, broadcast, until the lease ends)
//   RENEWING/REBINDING --ACK--> BOUND (new times);  --NAK or the lease's end--> LOST
//   any --release()--> DHCPRELEASE (when it holds a lease), RELEASED
//
// The caller sends what `send` actions say (to the broadcast address or the
// server's), feeds back every DHCP message for this client's xid, calls
// timer() at `deadline`, and answers a `check` with checked(). Times are
// milliseconds of the caller's clock.

import {
  BOOTREQUEST,
  DHCPACK,
  DHCPDECLINE,
  DHCPDISCOVER,
  type DhcpMessage,
  DHCPNAK,
  DHCPOFFER,
  DHCPRELEASE,
  DHCPREQUEST,
  OPT_CLIENT_ID,
  OPT_LEASE_TIME,
  OPT_MESSAGE,
  OPT_PARAMETERS,
  OPT_REBINDING_TIME,
  OPT_RENEWAL_TIME,
  OPT_REQUESTED_IP,
  OPT_ROUTER,
  OPT_SERVER_ID,
  OPT_SUBNET_MASK,
  optionU32,
  u32Option,
  BOOTREPLY,
} from '../wire/index.js';

export type LeaseState =
  'init' | 'selecting' | 'requesting' | 'checking' | 'bound' | 'renewing' | 'rebinding' | 'released' | 'lost' | 'failed';

/** What a client holds once bound. */
export interface Lease {
  address: number;
  server: number;
  /** Milliseconds of the caller's clock. */
  start: number;
  t1: number;
  t2: number;
  end: number;
  mask: number | null;
  router: number | null;
}

export type LeaseAction =
  | { kind: 'send'; message: DhcpMessage; to: 'broadcast' | number }
  /** Ask the link whether `address` is in use (an ARP probe); answer with checked(). */
  | { kind: 'check'; address: number }
  | { kind: 'bound'; lease: Lease; renewed: boolean }
  /** The lease is gone (NAK, or its end passed): the address must not be used any more. */
  | { kind: 'lost'; why: string }
  /** No lease could be had: no server answered in time, or every offer was refused or declined. */
  | { kind: 'failed'; why: string };

export interface LeaseClientOptions {
  /** The client identifier (option 61, RFC 4361), stable for the session. */
  clientId: Uint8Array;
  /** The hardware address in chaddr. */
  chaddr: Uint8Array;
  /** How long to look for a server before failing, in ms (default 4000). */
  timeoutMs?: number;
  /** Random 32-bit numbers, for transaction ids (injected, for tests). */
  random?: () => number;
}

/** Declines of addresses found in use before the client gives up. */
export const MAX_DECLINES = 3;
/** Parameters asked for (option 55). */
const PARAMETERS = Uint8Array.from([OPT_SUBNET_MASK, OPT_ROUTER, OPT_LEASE_TIME, OPT_SERVER_ID, OPT_RENEWAL_TIME, OPT_REBINDING_TIME]);
/** The least wait between retransmissions while renewing or rebinding (RFC 2131 4.4.5 says 60 s; short test leases need less). */
const MIN_RETRY_MS = 1000;

export class LeaseClient {
  state: LeaseState = 'init';
  lease: Lease | null = null;
  /** When timer() is to be called next, or null. */
  deadline: number | null = null;
  private xid = 0;
  private startedAt = 0;
  private retry = 1000;
  private offered: { address: number; server: number } | null = null;
  private acked: DhcpMessage | null = null;
  private declines = 0;
  private readonly timeoutMs: number;
  private readonly random: () => number;

  constructor(private readonly o: LeaseClientOptions) {
    this.timeoutMs = o.timeoutMs ?? 4000;
    this.random = o.random ?? (() => (Math.random() * 0x100000000) >>> 0);
  }

  /** Whether a message is for this client (its current transaction). */
  owns(m: DhcpMessage): boolean {
    return m.op === BOOTREPLY && m.xid === this.xid && this.state !== 'init';
  }

  /** Starts looking for a lease: a DHCPDISCOVER. */
  start(now: number): LeaseAction[] {
    this.startedAt = now;
    return this.discover(now);
  }

  private discover(now: number): LeaseAction[] {
    this.state = 'selecting';
    this.xid = this.random() >>> 0;
    this.retry = 1000;
    this.offered = null;
    this.deadline = now + this.retry;
    return [this.send(DHCPDISCOVER, 'broadcast', now)];
  }

  /** A DHCP message for this client's xid. */
  receive(m: DhcpMessage, now: number): LeaseAction[] {
    if (!this.owns(m)) return [];
    const server = optionU32(m, OPT_SERVER_ID);
    switch (this.state) {
      case 'selecting':
        if (m.type !== DHCPOFFER || server === null || m.yiaddr === 0) return [];
        this.offered = { address: m.yiaddr, server };
        this.state = 'requesting';
        this.retry = 1000;
        this.deadline = now + this.retry;
        return [this.send(DHCPREQUEST, 'broadcast', now)];
      case 'requesting':
        if (server !== null && server !== this.offered!.server) return [];
        if (m.type === DHCPNAK) return this.discover(now);
        if (m.type !== DHCPACK || m.yiaddr !== this.offered!.address) return [];
        this.acked = m;
        this.state = 'checking';
        this.deadline = null;
        return [{ kind: 'check', address: m.yiaddr }];
      case 'renewing':
      case 'rebinding':
        if (m.type === DHCPNAK) return this.lose(`the server refused to extend the lease (${text(m) ?? 'DHCPNAK'})`);
        if (m.type !== DHCPACK || m.yiaddr !== this.lease!.address) return [];
        return this.bind(m, now, true);
      default:
        return [];
    }
  }

  /** The answer to a `check`: whether the address is in use on the link. */
  checked(inUse: boolean, now: number): LeaseAction[] {
    if (this.state !== 'checking' || !this.acked) return [];
    const m = this.acked;
    this.acked = null;
    if (!inUse) return this.bind(m, now, false);
    // RFC 2131 4.4.1: decline it, and start again.
    const decline = this.send(DHCPDECLINE, 'broadcast', now, m.yiaddr);
    if (++this.declines >= MAX_DECLINES) {
      this.state = 'failed';
      this.deadline = null;
      return [decline, { kind: 'failed', why: `${MAX_DECLINES} addresses offered were in use on the link` }];
    }
    return [decline, ...this.discover(now)];
  }

  /** Called at `deadline`: retransmissions, the search's end, T1, T2 and the lease's end. */
  timer(now: number): LeaseAction[] {
    if (this.deadline === null || now < this.deadline) return [];
    switch (this.state) {
      case 'selecting':
      case 'requesting': {
        if (now - this.startedAt >= this.timeoutMs) {
          const why = this.state === 'requesting' ? 'the server did not confirm its offer in time' : 'no DHCP server answered in time';
          this.state = 'failed';
          this.deadline = null;
          return [{ kind: 'failed', why }];
        }
        // RFC 2131 4.1: 4 s, doubling, up to 64 s; the first retries come sooner, as clients do for a fast start.
        this.retry = Math.min(this.retry * 2, 64_000);
        this.deadline = Math.min(now + this.retry, this.startedAt + this.timeoutMs);
        return [this.send(this.state === 'selecting' ? DHCPDISCOVER : DHCPREQUEST, 'broadcast', now)];
      }
      case 'bound':
      case 'renewing':
      case 'rebinding':
        return this.leaseTimer(now);
      default:
        this.deadline = null;
        return [];
    }
  }

  private leaseTimer(now: number): LeaseAction[] {
    const l = this.lease!;
    if (now >= l.end) return this.lose('the lease ended without being extended');
    if (now >= l.t2) {
      this.state = 'rebinding';
      this.deadline = Math.min(l.end, now + Math.max(MIN_RETRY_MS, (l.end - now) / 2));
      return [this.send(DHCPREQUEST, 'broadcast', now)];
    }
    if (now >= l.t1) {
      if (this.state === 'bound') {
        // A renewal is a new transaction: its own xid, and `secs` counted from here (RFC 2131 Table 1).
        this.xid = this.random() >>> 0;
        this.startedAt = now;
      }
      this.state = 'renewing';
      this.deadline = Math.min(l.t2, now + Math.max(MIN_RETRY_MS, (l.t2 - now) / 2));
      return [this.send(DHCPREQUEST, l.server, now)];
    }
    this.deadline = l.t1;
    return [];
  }

  /** Gives the lease back (DHCPRELEASE, unicast to its server) or stops looking for one. */
  release(now: number): LeaseAction[] {
    const held = this.lease !== null && (this.state === 'bound' || this.state === 'renewing' || this.state === 'rebinding');
    const out = held ? [this.send(DHCPRELEASE, this.lease!.server, now)] : [];
    this.state = 'released';
    this.deadline = null;
    this.lease = null;
    return out;
  }

  private bind(m: DhcpMessage, now: number, renewed: boolean): LeaseAction[] {
    const secs = optionU32(m, OPT_LEASE_TIME) ?? 3600;
    const server = optionU32(m, OPT_SERVER_ID) ?? this.lease?.server ?? this.offered!.server;
    // T1 <= T2 <= the lease's end, whatever the server said.
    const t2 = Math.min(optionU32(m, OPT_REBINDING_TIME) ?? (secs * 7) / 8, secs);
    const t1 = Math.min(optionU32(m, OPT_RENEWAL_TIME) ?? secs / 2, t2);
    this.lease = {
      address: m.yiaddr,
      server,
      start: now,
      t1: now + t1 * 1000,
      t2: now + t2 * 1000,
      end: secs === 0xffffffff ? Number.POSITIVE_INFINITY : now + secs * 1000,
      mask: optionU32(m, OPT_SUBNET_MASK),
      router: optionU32(m, OPT_ROUTER),
    };
    this.state = 'bound';
    this.declines = 0;
    this.deadline = Number.isFinite(this.lease.end) ? this.lease.t1 : null;
    return [{ kind: 'bound', lease: this.lease, renewed }];
  }

  private lose(why: string): LeaseAction[] {
    this.state = 'lost';
    this.deadline = null;
    this.lease = null;
    return [{ kind: 'lost', why }];
  }

  /** A client message of `type` for the current state, to `to`. */
  private send(type: number, to: 'broadcast' | number, now: number, declined = 0): LeaseAction {
    const options = new Map<number, Uint8Array>([[OPT_CLIENT_ID, this.o.clientId]]);
    let ciaddr = 0;
    if (type === DHCPDISCOVER) {
      options.set(OPT_PARAMETERS, PARAMETERS);
    } else if (type === DHCPREQUEST && this.state === 'requesting') {
      options.set(OPT_REQUESTED_IP, u32Option(this.offered!.address));
      options.set(OPT_SERVER_ID, u32Option(this.offered!.server));
      options.set(OPT_PARAMETERS, PARAMETERS);
    } else if (type === DHCPREQUEST) {
      ciaddr = this.lease!.address; // renewing or rebinding: no server id, no requested address (RFC 2131 4.3.2)
      options.set(OPT_PARAMETERS, PARAMETERS);
    } else if (type === DHCPDECLINE) {
      options.set(OPT_REQUESTED_IP, u32Option(declined));
      options.set(OPT_SERVER_ID, u32Option(this.offered!.server));
    } else if (type === DHCPRELEASE) {
      ciaddr = this.lease!.address;
      options.set(OPT_SERVER_ID, u32Option(this.lease!.server));
    }
    const secs = Math.min(0xffff, Math.floor((now - this.startedAt) / 1000));
    const message: DhcpMessage = {
      op: BOOTREQUEST,
      xid: this.xid,
      secs: type === DHCPDECLINE || type === DHCPRELEASE ? 0 : secs,
      // Answers come to the broadcast address while the client has no address it can take packets at (RFC 2131
      // Table 5: flags 0 in a DHCPDECLINE or DHCPRELEASE, which get no answer).
      broadcast: ciaddr === 0 && type !== DHCPDECLINE && type !== DHCPRELEASE,
      ciaddr,
      yiaddr: 0,
      siaddr: 0,
      giaddr: 0,
      chaddr: this.o.chaddr,
      type,
      options,
    };
    return { kind: 'send', message, to };
  }
}

/** The server's message (option 56), if it gave one. */
function text(m: DhcpMessage): string | null {
  const v = m.options.get(OPT_MESSAGE);
  return v ? new TextDecoder().decode(v) : null;
}
