// The uplink: vipnat0 in the namespace vipnat runs in, the pool routed to it, and the sysctls and rules it needs (journaled, restored).
import { close, EBUSY, ip, ipBatch, noQueueDiscipline, openTunQueues, readSysctl, SysError, writeSysctl } from '../linux/index.js';
import { cidrCover, loopbackNumber } from '../pool/index.js';
import { TXQUEUELEN } from '../session/index.js';
import { UserError } from './errors.js';
import type { Journal } from './journal.js';

export const UPLINK_NAME = 'vipnat0';
/** The routing table of the shared fallback ("vi"). */
const SHARED_TABLE = 0x7669;

export class Uplink {
  /** vipnat0's queues, one per dataplane worker. */
  fds: number[] = [];
  /** sysctls changed, with the values to put back and their journal entries. */
  private readonly restore = new Map<string, { was: string; seq: number }>();
  /** ip rule lines that undo what enableShared() did, in order, and the journal entries to mark done. */
  private undoRules: string[] = [];
  private ruleSeqs: number[] = [];

  constructor(private readonly journal: Journal) {}

  async open(mtu: number, routes: string[], ipv6: boolean, offload: boolean, queues: number): Promise<void> {
    const exists = await ip(['link', 'show', 'dev', UPLINK_NAME]).then(
      () => true,
      () => false,
    );
    if (exists) {
      throw new UserError(`an interface named ${UPLINK_NAME} already exists in this namespace: is another vipnat running here?`);
    }
    try {
      this.fds = openTunQueues(UPLINK_NAME, offload, queues);
    } catch (e) {
      if (e instanceof SysError && e.errno === EBUSY) throw new UserError(`${UPLINK_NAME} is busy: is another vipnat running here?`);
      throw e;
    }
    if (queues > 1) await noQueueDiscipline(UPLINK_NAME);
    await ipBatch([`link set dev ${UPLINK_NAME} mtu ${mtu} txqueuelen ${TXQUEUELEN} up`]);
    // Routes go with the device, which goes with the fd: nothing to journal.
    for (const r of routes) {
      try {
        await ipBatch([`route add ${r} dev ${UPLINK_NAME}`]);
      } catch (e) {
        throw new UserError(await routeConflict(r, e as Error), 2);
      }
    }
    // The namespace's kernel forwards between vipnat0 and the real interfaces.
    this.set('net.ipv4.ip_forward', '1');
    if (ipv6) this.set('net.ipv6.conf.all.forwarding', '1');
  }

  /** Sets a sysctl of this namespace, journaled first and put back by close(). */
  set(key: string, value: string): void {
    let was: string;
    try {
      was = readSysctl(key);
    } catch {
      throw new UserError(`cannot read ${key}: ${key.includes('ipv6') ? 'is IPv6 disabled in this namespace?' : 'is /proc mounted?'}`);
    }
    if (was === value) return;
    const seq = this.journal.record({ op: 'sysctl', key, was });
    writeSysctl(key, value);
    this.restore.set(key, { was, seq });
  }

  /**
   * The shared fallback: sends the uplink's return traffic for the shared
   * ports (and ICMP) to vipnat0 instead of the local stack, with policy
   * routing. The kernel looks up its `local` table first (rule 0), so that
   * rule moves to preference 6, below vipnat's own five:
   *
   *   1  iif vipnat0 lookup local     packets vipnat hands back reach the local stack
   *   2  iif lo lookup local          the uplink's own traffic as before
   *   3  to ADDR tcp dport LO-HI  lookup T  (T: default dev vipnat0)
   *   4  to ADDR udp dport LO-HI  lookup T
   *   5  to ADDR icmp             lookup T   (vipnat hands back what is not a session's)
   *   6  lookup local
   *
   * Undone on exit, and journaled first, so that a vipnat killed with
   * SIGKILL has its rules undone by the next start.
   */
  async enableShared(address: string, portLo: number, portHi: number): Promise<void> {
    const rules = JSON.parse(await ip(['-4', '-j', 'rule', 'show'])) as { priority: number; table?: string }[];
    const taken = rules.filter((r) => r.priority >= 1 && r.priority <= 6);
    if (taken.length > 0) {
      throw new UserError(
        `--on-exhausted shared needs ip rule preferences 1-6, but ${taken.map((r) => r.priority).join(', ')} are in use here`,
      );
    }
    const localAt0 = rules.some((r) => r.priority === 0 && r.table === 'local');
    // The uplink must accept packets from vipnat0 that carry its own address (these go with the device).
    writeSysctl(`net.ipv4.conf.${UPLINK_NAME}.accept_local`, '1');
    writeSysctl(`net.ipv4.conf.${UPLINK_NAME}.rp_filter`, '0');
    if (readSysctl('net.ipv4.conf.all.rp_filter') === '1') this.set('net.ipv4.conf.all.rp_filter', '2');
    const table = SHARED_TABLE;
    const to = `to ${address}/32`;
    const add = [
      `rule add pref 1 iif ${UPLINK_NAME} lookup local`,
      `rule add pref 2 iif lo lookup local`,
      `rule add pref 3 ${to} ipproto 6 dport ${portLo}-${portHi} lookup ${table}`,
      `rule add pref 4 ${to} ipproto 17 dport ${portLo}-${portHi} lookup ${table}`,
      `rule add pref 5 ${to} ipproto 1 lookup ${table}`,
      `rule add pref 6 lookup local`,
      `route add default dev ${UPLINK_NAME} table ${table}`,
    ];
    // Set before adding: a batch that fails half-way leaves some rules to undo.
    this.undoRules = ['rule del pref 6', 'rule del pref 5', 'rule del pref 4', 'rule del pref 3', 'rule del pref 2', 'rule del pref 1'];
    this.ruleSeqs.push(this.journal.record({ op: 'ip', undo: this.undoRules }));
    await ipBatch(add);
    if (localAt0) {
      this.ruleSeqs.push(this.journal.record({ op: 'local-rule' }));
      await ipBatch(['rule del pref 0 lookup local']);
      this.undoRules = ['rule add pref 0 lookup local', ...this.undoRules];
    }
  }

  /**
   * The virtual loopback (nat/loopback.ts) from this namespace: 127.0.0.2 to
   * 127.0.0.1 + maxId routed to vipnat0 in the `local` table (where the
   * kernel looks first, and 127.0.0.0/8 is otherwise local), with
   * route_localnet on vipnat0 alone, so that the kernel sends it packets
   * from 127.0.0.1 and takes its answers. `skip` are addresses this
   * namespace already uses (they stay local). Routes and the sysctl go with
   * the device.
   */
  async enableLoopback(maxId: number, skip: ReadonlySet<number>): Promise<void> {
    writeSysctl(`net.ipv4.conf.${UPLINK_NAME}.route_localnet`, '1');
    const lines: string[] = [];
    let from = loopbackNumber(1);
    const last = loopbackNumber(maxId);
    const cut = [...skip].filter((a) => a >= from && a <= last).sort((a, b) => a - b);
    for (const a of [...cut, last + 1]) {
      if (a > from) for (const b of cidrCover(from, a - 1)) lines.push(loopbackRoute(b.addr, b.len));
      from = a + 1;
    }
    await ipBatch(lines);
  }

  /** Routes one leased VIP to vipnat0, or stops (the route goes with the device, too). */
  async routeVip(address: string, add: boolean): Promise<void> {
    await ipBatch([`route ${add ? 'add' : 'del'} ${address}/32 dev ${UPLINK_NAME}`]);
  }

  /** Routes one session's virtual loopback (its id is above what enableLoopback routed). */
  async routeLoopback(id: number, add: boolean): Promise<void> {
    const line = loopbackRoute(loopbackNumber(id), 32);
    await ipBatch([add ? line : line.replace('route add', 'route del')]);
  }

  /** Undoes open(): the routes go with the device, which goes with the fd. */
  async close(fdsOwnedElsewhere: boolean): Promise<void> {
    if (this.undoRules.length > 0) {
      // One line at a time: a rule already gone must not stop the others.
      for (const line of this.undoRules) await ipBatch([line]).catch(() => undefined);
      this.undoRules = [];
      for (const seq of this.ruleSeqs) this.journal.done(seq);
      this.ruleSeqs = [];
    }
    if (!fdsOwnedElsewhere) for (const fd of this.fds) close(fd);
    this.fds = [];
    for (const [key, { was, seq }] of this.restore) {
      try {
        writeSysctl(key, was);
        this.journal.done(seq);
      } catch {
        // Best effort: the namespace may be going away.
      }
    }
    this.restore.clear();
  }
}

function loopbackRoute(addr: number, len: number): string {
  const a = [24, 16, 8, 0].map((s) => (addr >>> s) & 255).join('.');
  return `route add ${a}/${len} dev ${UPLINK_NAME} src 127.0.0.1 table local`;
}

/** Why routing `cidr` to vipnat0 failed, said so the user can act: which route is in the way. */
async function routeConflict(cidr: string, e: Error): Promise<string> {
  const why = e.message.replace(/^ip -batch: /, '');
  try {
    const family = cidr.includes(':') ? '-6' : '-4';
    const routes = JSON.parse(await ip([family, '-j', 'route', 'show', 'table', 'all', 'exact', cidr])) as {
      dst: string;
      dev?: string;
      table?: string;
    }[];
    const r = routes.find((x) => x.dev !== UPLINK_NAME);
    if (r) {
      return `pool ${cidr}: this namespace already routes ${cidr}${r.dev ? ` to ${r.dev}` : ''}${r.table && r.table !== 'main' ? ` (table ${r.table})` : ''}; pick a pool that nothing here uses`;
    }
  } catch {
    // Fall through to ip's own words.
  }
  return `cannot route the pool's ${cidr} to ${UPLINK_NAME}: ${why}`;
}

/**
 * The uplink's own IPv4 address, for the shared fallback: the preferred source
 * of the default route, else the first global address of its interface, else
 * the first global address of any interface but vipnat0.
 */
export async function uplinkAddress(): Promise<string> {
  type Route = { dev?: string; prefsrc?: string };
  type Link = { ifname: string; operstate?: string; addr_info?: { local: string }[] };
  const routes = JSON.parse(await ip(['-4', '-j', 'route', 'show', 'default'])) as Route[];
  const links = (JSON.parse(await ip(['-4', '-j', 'addr', 'show', 'scope', 'global'])) as Link[]).filter(
    (l) => l.ifname !== UPLINK_NAME && (l.addr_info?.length ?? 0) > 0,
  );
  for (const r of routes) {
    if (r.prefsrc) return r.prefsrc;
    const l = links.find((x) => x.ifname === r.dev);
    if (l) return l.addr_info![0]!.local;
  }
  const any = links.find((l) => l.operstate !== 'DOWN') ?? links[0];
  if (!any) throw new UserError('--on-exhausted shared: this namespace has no IPv4 address of its own to share');
  return any.addr_info![0]!.local;
}

/** Outer ports for shared flows: above the uplink's ephemeral range, so they never meet its own sockets. */
export function sharedPortRange(): [number, number] {
  const [, hi] = readSysctl('net.ipv4.ip_local_port_range').split(/\s+/).map(Number) as [number, number];
  const lo = Math.max(61000, hi + 1);
  if (lo > 65534 - 1023) {
    throw new UserError(
      `--on-exhausted shared: net.ipv4.ip_local_port_range ends at ${hi}, leaving too few ports for shared sessions; lower it below 64500`,
    );
  }
  // 65535 stays out: iproute2 refuses it as the top of an ip rule port range.
  return [lo, 65534];
}
