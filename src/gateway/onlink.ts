// On-link VIPs: a pool inside the subnet of an interface that faces a LAN, answered for by proxy ARP and NDP, probed before use, announced when taken.
//
// A pool range that lies inside the subnet of the uplink interface (`--uplink
// DEV`, or the interface whose subnet holds it) needs no route anywhere: its
// neighbours ask for a VIP by ARP or neighbour solicitation, and this
// namespace answers for each VIP a session holds, with a neighbour proxy
// entry for that address alone (`ip neigh add proxy`, never proxy_arp=1) and
// proxy_delay 0. The kernel then forwards what it receives for the VIP to
// vipnat0, where the pool is routed. Before a VIP is handed out it is asked
// for on the link (an ARP request from this namespace's own address, as
// arping does, or a neighbour solicitation): an answer, from a host that uses
// it or from another vipnat that holds it, means it is in use. Once taken, a
// gratuitous ARP or an unsolicited neighbour advertisement tells the
// neighbours' caches where it lives now. Every proxy entry is journaled
// before it is made, and the sysctls go through the uplink's journaled set.

import { ip, ipBatch, PacketSocket, parseMac, ETH_P_IPV6 } from '../linux/index.js';
import { type AddressRange, type Family, formatAddress, parseAddress } from '../pool/index.js';
import {
  ARP_REPLY,
  ARP_REQUEST,
  ETH_P_ARP,
  multicastMac,
  NA_OVERRIDE,
  readArp,
  readNeighborAdvert,
  solicitedNode,
  writeArp,
  writeNdp,
} from '../wire/index.js';
import { UserError } from './errors.js';
import type { Journal } from './journal.js';
import { type Uplink, UPLINK_NAME } from './uplink.js';

const BROADCAST = new Uint8Array([0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
const ALL_NODES = Uint8Array.from([0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
/** How long a probe listens for an answer, and how often it asks within that time. */
const PROBE_MS = 300;
const PROBE_EVERY_MS = 100;

interface Link {
  ifname: string;
  address?: string;
  operstate?: string;
  addr_info?: { family: string; local: string; prefixlen: number; scope?: string }[];
}

/** The interface that faces the LAN, and what vipnat needs of it. */
export interface LanLink {
  dev: string;
  mac: Uint8Array;
  /** Its IPv4 address in the pool's subnet (the sender of probes), or null when no IPv4 range is on-link. */
  v4: number | null;
  /** That address's prefix length (DHCP leases must lie in its subnet). */
  v4Prefix?: number;
  /** Its IPv6 address for neighbour discovery (link-local, else the one in the subnet), or null when no IPv6 range is on-link. */
  v6: Uint8Array | null;
  /** The on-link families. */
  families: Family[];
}

function v6Bytes(text: string): Uint8Array {
  const p = parseAddress(text);
  if (!p || p.family !== 6) throw new Error(`not an IPv6 address: ${text}`);
  const out = new Uint8Array(16);
  let v = p.value;
  for (let i = 15; i >= 0; i--) {
    out[i] = Number(v & 0xffn);
    v >>= 8n;
  }
  return out;
}

/** Whether the whole range lies in `local/prefixlen`; 'part' when it overlaps it without being inside. */
function within(r: AddressRange, local: string, prefixlen: number): boolean | 'part' {
  const p = parseAddress(local);
  if (!p || p.family !== r.family) return false;
  const { net, last } = subnetOf(p.family, p.value, prefixlen);
  if (r.first >= net && r.last <= last) return true;
  return r.last < net || r.first > last ? false : 'part';
}

/** The first and last address of the subnet of `value/prefixlen`. */
function subnetOf(family: Family, value: bigint, prefixlen: number): { net: bigint; last: bigint } {
  const host = BigInt((family === 4 ? 32 : 128) - prefixlen);
  const net = (value >> host) << host;
  return { net, last: net + (1n << host) - 1n };
}

/**
 * Which interface the pool is on-link on, if any: `uplink` when given (each
 * range inside one of its subnets is on-link there, the rest stays routed),
 * else the interface whose subnet holds a range. A range that straddles a
 * subnet's edge is refused. Null: no range is on-link (routed, as before).
 */
export async function findLanLink(uplink: string | undefined, ranges: AddressRange[]): Promise<LanLink | null> {
  const links = (JSON.parse(await ip(['-j', 'addr', 'show'])) as Link[]).filter((l) => l.ifname !== UPLINK_NAME && l.ifname !== 'lo');
  if (uplink !== undefined && !links.some((l) => l.ifname === uplink)) {
    throw new UserError(`--uplink ${uplink}: no such interface in this namespace`, 2);
  }
  let dev: Link | null = null;
  const families = new Set<Family>();
  let v4: number | null = null;
  for (const r of ranges) {
    for (const l of links) {
      if (uplink !== undefined && l.ifname !== uplink) continue;
      for (const a of l.addr_info ?? []) {
        if (a.scope === 'link' || a.scope === 'host') continue;
        const w = within(r, a.local, a.prefixlen);
        if (w === 'part') {
          throw new UserError(
            `pool range ${r.text} straddles the edge of ${l.ifname}'s subnet (${a.local}/${a.prefixlen}): keep it inside or outside`,
            2,
          );
        }
        if (!w) continue;
        if (dev && dev.ifname !== l.ifname) {
          throw new UserError(`pool ranges lie on two links (${dev.ifname} and ${l.ifname}): give ranges of one, or --uplink`, 2);
        }
        dev = l;
        families.add(r.family);
        if (r.family === 4) v4 = Number(parseAddress(a.local)!.value);
      }
    }
  }
  if (!dev) return null;
  if (!dev.address) throw new UserError(`${dev.ifname} has no link-layer address: on-link VIPs need an Ethernet link`, 2);
  const info = dev.addr_info ?? [];
  const ll = info.find((a) => a.family === 'inet6' && a.scope === 'link') ?? info.find((a) => a.family === 'inet6');
  if (families.has(6) && !ll) throw new UserError(`${dev.ifname} has no IPv6 address to ask its neighbours from`, 2);
  return {
    dev: dev.ifname,
    mac: parseMac(dev.address),
    v4,
    v6: families.has(6) && ll ? v6Bytes(ll.local) : null,
    families: [...families].sort(),
  };
}

/**
 * The link for `--pool dhcp`: `dev` when given, else the interface of the
 * default route. Its IPv4 address is the sender of probes; leases are
 * on-link there.
 */
export async function dhcpLink(dev: string | undefined): Promise<LanLink> {
  let name = dev;
  if (name === undefined) {
    const routes = JSON.parse(await ip(['-4', '-j', 'route', 'show', 'default'])) as { dev?: string }[];
    name = routes.find((r) => r.dev && r.dev !== UPLINK_NAME)?.dev;
    if (name === undefined) throw new UserError('--pool dhcp: this namespace has no default route: name the interface, --pool dhcp:DEV', 2);
  }
  const links = JSON.parse(await ip(['-j', 'addr', 'show'])) as Link[];
  const l = links.find((x) => x.ifname === name);
  if (!l || l.ifname === 'lo' || l.ifname === UPLINK_NAME)
    throw new UserError(`--pool dhcp:${name}: no such interface in this namespace`, 2);
  if (!l.address) throw new UserError(`--pool dhcp:${name}: ${name} has no link-layer address: DHCP leases need an Ethernet link`, 2);
  const a = (l.addr_info ?? []).find((x) => x.family === 'inet' && x.scope !== 'host');
  if (!a) throw new UserError(`--pool dhcp:${name}: ${name} has no IPv4 address of its own to probe the link from`, 2);
  return { dev: name, mac: parseMac(l.address), v4: Number(parseAddress(a.local)!.value), v4Prefix: a.prefixlen, v6: null, families: [4] };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The proxy entries, probes and announcements for on-link VIPs on one interface. */
export class Lan {
  private arp: PacketSocket | null = null;
  private nd: PacketSocket | null = null;
  /** Addresses with a proxy entry, and their journal entries. */
  private readonly held = new Map<string, number>();
  private readonly buf = new Uint8Array(2048);
  /** Who was last heard from for each address (ARP or neighbour advertisement), and when (ms). */
  private readonly seen = new Map<string, { mac: string; at: number }>();
  /** Who else was last heard probing each address, and when. */
  private readonly probing = new Map<string, { mac: string; at: number }>();
  /** Set when a probe met another's probe of the same address: the caller waits a random while before its next. */
  collided = false;

  constructor(
    readonly link: LanLink,
    private readonly journal: Journal,
  ) {}

  /** The sysctls: proxy_delay 0 (answer at once), proxy_ndp for IPv6, and router advertisements still taken while forwarding. */
  open(uplink: Uplink, readSysctl: (key: string) => string): void {
    const d = this.link.dev;
    if (this.link.families.includes(4)) {
      uplink.set(`net.ipv4.neigh.${d}.proxy_delay`, '0');
      this.arp = PacketSocket.open(d, { protocol: ETH_P_ARP });
    }
    if (this.link.families.includes(6)) {
      uplink.set(`net.ipv6.neigh.${d}.proxy_delay`, '0');
      uplink.set(`net.ipv6.conf.${d}.proxy_ndp`, '1');
      // A forwarding interface ignores router advertisements unless accept_ra is 2: keep a default route it learnt.
      if (readSysctl(`net.ipv6.conf.${d}.accept_ra`) === '1') uplink.set(`net.ipv6.conf.${d}.accept_ra`, '2');
      this.nd = PacketSocket.open(d, { protocol: ETH_P_IPV6 });
    }
  }

  /**
   * Why a leased IPv4 address may not be used here, whatever the server said,
   * or null: off the link's subnet, its network or broadcast address, this
   * namespace's own, or one of `held` (a session here has it already).
   */
  unusable(address: string, held: Iterable<string>): string | null {
    const own = this.link.v4;
    const a = parseAddress(address);
    if (own === null || !a || a.family !== 4) return null;
    const len = this.link.v4Prefix ?? 32;
    const { net, last } = subnetOf(4, BigInt(own), len);
    if (a.value < net || a.value > last) return 'not on this link';
    if (len <= 30 && (a.value === net || a.value === last)) return "the link's network or broadcast address";
    if (a.value === BigInt(own)) return 'this namespace itself';
    for (const h of held) if (h === address) return 'another session here';
    return null;
  }

  /** Whether this address is one of the on-link families'. */
  covers(address: string): boolean {
    const p = parseAddress(address);
    return p !== null && this.link.families.includes(p.family);
  }

  /**
   * Asks the link who has `address`: the link-layer address of whoever
   * answered (a host that uses it, another vipnat that holds it), or null.
   * Probes of several sessions run side by side over the same sockets.
   */
  async probe(address: string): Promise<string | null> {
    const p = parseAddress(address)!;
    // What the sockets held before this probe is stamped now, before it starts: old frames are no answer to it.
    const start = Date.now();
    this.pump(start - 1);
    let next = 0;
    while (Date.now() < start + PROBE_MS) {
      if (Date.now() >= next) {
        if (p.family === 4) this.askArp(Number(p.value));
        else this.askNd(v6Bytes(address));
        next = Date.now() + PROBE_EVERY_MS;
      }
      this.pump();
      const s = this.seen.get(address);
      if (s && s.at >= start) return s.mac;
      const q = this.probing.get(address);
      if (q && q.at >= start) {
        this.collided = true;
        return q.mac;
      }
      await sleep(10);
    }
    return null;
  }

  /** Answers for `address` on the link from now on, and tells the neighbours so. */
  async claim(address: string): Promise<void> {
    if (this.held.has(address)) return;
    const seq = this.journal.record({ op: 'proxy', dev: this.link.dev, address });
    this.held.set(address, seq);
    await ipBatch([`neigh add proxy ${address} dev ${this.link.dev}`]);
    this.announce(address);
  }

  /** Stops answering for `address`. */
  async release(address: string): Promise<void> {
    const seq = this.held.get(address);
    if (seq === undefined) return;
    this.held.delete(address);
    await ipBatch([`neigh del proxy ${address} dev ${this.link.dev}`]).catch(() => undefined);
    this.journal.done(seq);
  }

  /** Releases every address and closes the sockets. */
  async close(): Promise<void> {
    for (const a of [...this.held.keys()]) await this.release(a);
    this.arp?.close();
    this.nd?.close();
    this.arp = this.nd = null;
  }

  /** A gratuitous ARP (RFC 5227 announcement), or an unsolicited advertisement with the override flag, twice. */
  private announce(address: string): void {
    const p = parseAddress(address)!;
    for (let k = 0; k < 2; k++) {
      if (p.family === 4 && this.arp) {
        const n = writeArp(this.buf, 0, ARP_REQUEST, this.link.mac, Number(p.value), null, Number(p.value));
        this.arp.send(this.buf, n, ETH_P_ARP, BROADCAST);
      } else if (p.family === 6 && this.nd && this.link.v6) {
        const n = writeNdp(this.buf, this.link.v6, ALL_NODES, v6Bytes(address), this.link.mac, NA_OVERRIDE);
        this.nd.send(this.buf, n, ETH_P_IPV6, multicastMac(ALL_NODES));
      }
    }
  }

  /**
   * An ARP request for `target` from this namespace's address, which holders
   * and proxies answer, and an RFC 5227 probe (from 0.0.0.0), by which
   * another vipnat probing the same address at the same moment sees this one.
   */
  private askArp(target: number): void {
    if (!this.arp) return;
    if (this.link.v4 !== null) {
      const n = writeArp(this.buf, 0, ARP_REQUEST, this.link.mac, this.link.v4, null, target);
      this.arp.send(this.buf, n, ETH_P_ARP, BROADCAST);
    }
    const n = writeArp(this.buf, 0, ARP_REQUEST, this.link.mac, 0, null, target);
    this.arp.send(this.buf, n, ETH_P_ARP, BROADCAST);
  }

  private askNd(target: Uint8Array): void {
    if (!this.nd || !this.link.v6) return;
    const group = solicitedNode(target);
    const n = writeNdp(this.buf, this.link.v6, group, target, this.link.mac, null);
    this.nd.send(this.buf, n, ETH_P_IPV6, multicastMac(group));
  }

  /**
   * Reads what both sockets hold: for every ARP message (a reply, or a
   * request from an address) and every neighbour advertisement that is not
   * our own, who sent it for which address, and when.
   */
  private pump(now: number = Date.now()): void {
    for (const m of [this.seen, this.probing]) if (m.size > 4096) for (const [k, v] of m) if (v.at < now - 10_000) m.delete(k);
    const b = this.buf;
    const mine = (m: Uint8Array): boolean => m.every((x, i) => x === this.link.mac[i]);
    if (this.arp) {
      for (let n = this.arp.recv(b); n > 0; n = this.arp.recv(b)) {
        const m = readArp(b, 0, n);
        if (!m || (m.op !== ARP_REPLY && m.op !== ARP_REQUEST) || mine(m.sha)) continue;
        if (m.spa !== 0) this.seen.set(formatAddress(4, BigInt(m.spa)), { mac: macText(m.sha), at: now });
        // Someone else probing the address (RFC 5227 2.1.1): a conflict for a probe of ours going on.
        else if (m.op === ARP_REQUEST) this.probing.set(formatAddress(4, BigInt(m.tpa)), { mac: macText(m.sha), at: now });
      }
    }
    if (this.nd) {
      for (let n = this.nd.recv(b); n > 0; n = this.nd.recv(b)) {
        const a = readNeighborAdvert(b, n);
        if (!a) continue;
        const lla = targetLinkAddress(b, n);
        if (lla && mine(lla)) continue;
        let v = 0n;
        for (const x of a.target) v = (v << 8n) | BigInt(x);
        this.seen.set(formatAddress(6, v), { mac: lla ? macText(lla) : 'an unknown link-layer address', at: now });
      }
    }
  }
}

/** The target link-layer address option of the advertisement at buf[0] (the first option, as senders put it), or null. */
function targetLinkAddress(b: Uint8Array, n: number): Uint8Array | null {
  return n >= 72 && b[64] === 2 && b[65] === 1 ? b.slice(66, 72) : null;
}

function macText(m: Uint8Array): string {
  return [...m].map((b) => b.toString(16).padStart(2, '0')).join(':');
}
