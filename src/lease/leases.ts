// The sessions' DHCP clients on one link: one packet socket, each session's LeaseClient, and their timers.
//
// Every session's client speaks from this namespace's interface on the LAN,
// with a hardware address (chaddr) and a client identifier of its own
// (RFC 4361: IAID = the session id, DUID-UUID from the machine and the
// gateway), so a server tells the sessions apart and gives each the same
// address again while its lease lasts. Messages go out through a packet
// socket, whole Ethernet frames, because the addresses they come from (0.0.0.0,
// or a session's leased VIP) are not this namespace's own; answers are read off
// the same socket, by transaction id, and the broadcast flag is set while a
// client has no address. Nothing binds UDP port 68, so the machine's own DHCP
// client on the same interface goes on undisturbed.
//
// The socket is read every 10 ms while a client waits for an answer, and
// every 250 ms otherwise (a NAK can come at any time); timers run at each
// client's deadline.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { ETH_P_IP, PacketSocket } from '../linux/index.js';
import {
  DHCP_CLIENT_PORT,
  DHCP_SERVER_PORT,
  type DhcpMessage,
  read16,
  readDhcp,
  udp4Payload,
  write16,
  writeDhcp,
  writeUdp4,
} from '../wire/index.js';
import { type Lease, type LeaseAction, LeaseClient } from './client.js';

const BROADCAST_MAC = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const ETHERNET = 14;
const FAST_MS = 10;
const MAX_TIMEOUT_MS = 0x7fffffff;
const SLOW_MS = 250;

/** A stable DUID-UUID (RFC 6355) for `key` on this machine: its machine id and the key, hashed. */
export function duidFor(key: string): Uint8Array {
  let machine = '';
  for (const f of ['/etc/machine-id', '/var/lib/dbus/machine-id']) {
    try {
      machine = readFileSync(f, 'utf8').trim();
      if (machine) break;
    } catch {
      // try the next
    }
  }
  const uuid = createHash('sha256').update(`${machine}\0${key}`).digest().subarray(0, 16);
  return Uint8Array.from([0, 4, ...uuid]);
}

/** The client identifier of session `id` (RFC 4361: type 255, IAID, DUID). */
export function clientIdFor(duid: Uint8Array, id: number): Uint8Array {
  const out = new Uint8Array(5 + duid.length);
  out[0] = 255;
  new DataView(out.buffer).setUint32(1, id >>> 0);
  out.set(duid, 5);
  return out;
}

/**
 * The hardware address session `id`'s client puts in chaddr: a locally
 * administered unicast MAC from its client identifier. Some servers
 * (dnsmasq) tie an offer to chaddr rather than to the client identifier;
 * answers still reach the uplink, as they are broadcast while the client has
 * no address, and its address is answered for by proxy ARP once it has one.
 */
export function chaddrFor(clientId: Uint8Array): Uint8Array {
  const h = createHash('sha256').update(clientId).digest();
  return Uint8Array.from([0x02, h[0]!, h[1]!, h[2]!, h[3]!, h[4]!]);
}

/**
 * The setTimeout delay for a deadline `next` (ms) at `now`: setTimeout takes
 * at most 2^31-1 ms (24.8 days) and fires at once beyond, so a long lease is
 * waited for in steps (tick() finds nothing due and sets the next).
 */
export function timerDelay(next: number, now: number): number {
  return Math.min(MAX_TIMEOUT_MS, Math.max(0, next - now));
}

/** What a session's lease tells the gateway. */
export interface LeaseHooks {
  /** Whether `address` (as a number) is in use on the link: an ARP probe. */
  inUse(address: number): Promise<boolean>;
  /** The lease is gone: the session must stop using the address. */
  lost(why: string): void;
}

interface Entry {
  client: LeaseClient;
  hooks: LeaseHooks;
  settle: ((r: { lease: Lease } | { failed: string }) => void) | null;
}

export class Leases {
  private readonly sock: PacketSocket;
  private readonly clients = new Map<number, Entry>();
  /** Link-layer addresses of the servers (from their frames), for unicast. */
  private readonly serverMacs = new Map<number, Uint8Array>();
  private readonly buf = new Uint8Array(2048);
  private readonly out = new Uint8Array(1600);
  private poll: NodeJS.Timeout | null = null;
  private pollMs = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    readonly dev: string,
    private readonly mac: Uint8Array,
    private readonly duid: Uint8Array,
    private readonly timeoutMs = 10_000,
  ) {
    this.sock = PacketSocket.open(dev, { cooked: false, protocol: ETH_P_IP });
  }

  /** Leases an address for session `id`: resolves with the lease, or with why none could be had. */
  lease(id: number, hooks: LeaseHooks): Promise<{ lease: Lease } | { failed: string }> {
    const clientId = clientIdFor(this.duid, id);
    const client = new LeaseClient({ clientId, chaddr: chaddrFor(clientId), timeoutMs: this.timeoutMs });
    return new Promise((settle) => {
      const e: Entry = { client, hooks, settle };
      this.clients.set(id, e);
      this.run(id, e, client.start(Date.now()));
    });
  }

  /** Gives session `id`'s lease back (DHCPRELEASE), or stops looking for one. */
  release(id: number): void {
    const e = this.clients.get(id);
    if (!e) return;
    this.clients.delete(id);
    this.run(id, e, e.client.release(Date.now()));
    e.settle?.({ failed: 'the session ended' });
    this.schedule();
  }

  /** Releases every lease and closes the socket. */
  close(): void {
    for (const id of [...this.clients.keys()]) this.release(id);
    if (this.poll) clearInterval(this.poll);
    if (this.timer) clearTimeout(this.timer);
    this.poll = this.timer = null;
    this.sock.close();
  }

  /** Carries out a client's actions. */
  private run(id: number, e: Entry, actions: LeaseAction[]): void {
    for (const a of actions) {
      switch (a.kind) {
        case 'send':
          this.send(a.message, a.to);
          break;
        case 'check':
          void e.hooks.inUse(a.address).then(
            (busy) => this.run(id, e, e.client.checked(busy, Date.now())),
            () => this.run(id, e, e.client.checked(false, Date.now())),
          );
          break;
        case 'bound':
          e.settle?.({ lease: a.lease });
          e.settle = null;
          break;
        case 'lost':
          this.clients.delete(id);
          e.hooks.lost(a.why);
          break;
        case 'failed':
          this.clients.delete(id);
          e.settle?.({ failed: a.why });
          e.settle = null;
          break;
      }
    }
    this.schedule();
  }

  /** Sends a client's message in an Ethernet frame: from 0.0.0.0 or its ciaddr, to the broadcast address or the server. */
  private send(m: DhcpMessage, to: 'broadcast' | number): void {
    const b = this.out;
    const n = writeDhcp(b, ETHERNET + 28, m);
    const dst = to === 'broadcast' ? 0xffffffff : to;
    writeUdp4(b.subarray(ETHERNET), m.ciaddr, DHCP_CLIENT_PORT, dst, DHCP_SERVER_PORT, n);
    b.set(to === 'broadcast' ? BROADCAST_MAC : (this.serverMacs.get(to) ?? BROADCAST_MAC), 0);
    b.set(this.mac, 6);
    write16(b, 12, ETH_P_IP);
    this.sock.send(b, ETHERNET + 28 + n);
  }

  /** Reads every frame waiting: DHCP answers go to the client whose transaction they are. */
  private receive(): void {
    const b = this.buf;
    for (let n = this.sock.recv(b); n > 0; n = this.sock.recv(b)) {
      if (n < ETHERNET + 28 || read16(b, 12) !== ETH_P_IP) continue;
      const ip = b.subarray(ETHERNET, n);
      const udp = udp4Payload(ip, n - ETHERNET, DHCP_SERVER_PORT, DHCP_CLIENT_PORT);
      if (!udp) continue;
      const m = readDhcp(ip, udp.off, udp.len);
      if (!m) continue;
      for (const [id, e] of this.clients) {
        if (!e.client.owns(m)) continue;
        this.serverMacs.set(udp.src, b.slice(6, 12));
        this.run(id, e, e.client.receive(m, Date.now()));
        break;
      }
    }
  }

  /** Polls fast while a client waits for an answer, slowly otherwise; and sets one timer for the earliest deadline. */
  private schedule(): void {
    let waiting = false;
    let next = Number.POSITIVE_INFINITY;
    for (const e of this.clients.values()) {
      const s = e.client.state;
      if (s === 'selecting' || s === 'requesting' || s === 'renewing' || s === 'rebinding') waiting = true;
      if (e.client.deadline !== null) next = Math.min(next, e.client.deadline);
    }
    const ms = this.clients.size === 0 ? 0 : waiting ? FAST_MS : SLOW_MS;
    if (ms !== this.pollMs) {
      if (this.poll) clearInterval(this.poll);
      this.poll = ms === 0 ? null : setInterval(() => this.receive(), ms);
      this.poll?.unref();
      this.pollMs = ms;
    }
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (Number.isFinite(next)) {
      this.timer = setTimeout(() => this.tick(), timerDelay(next, Date.now()));
      this.timer.unref();
    }
  }

  private tick(): void {
    const now = Date.now();
    for (const [id, e] of [...this.clients]) {
      if (e.client.deadline !== null && e.client.deadline <= now) this.run(id, e, e.client.timer(now));
    }
    this.schedule();
  }
}
