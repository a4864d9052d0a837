// What vipnat checks before it changes anything: privileges and tools, flags that depend on each other, the pool against this namespace, PROGRAM, --user.
import { spawnSync } from 'node:child_process';
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { geteuid, ip, TUN_PATH, which } from '../linux/index.js';
import { type AddressRange, formatAddress, parseAddress, type VipPool } from '../pool/index.js';
import { EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_USAGE, UserError } from './errors.js';
import { UPLINK_NAME } from './uplink.js';

const CAP_NET_ADMIN = 12;
const CAP_SYS_ADMIN = 21;

/** Checks what vipnat needs from the machine; throws a UserError naming what is missing. */
export function preflight(): void {
  if (geteuid() !== 0 && !hasCapabilities([CAP_NET_ADMIN, CAP_SYS_ADMIN])) {
    throw new UserError(
      'vipnat needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) to create namespaces and TUN devices: run it as root or with sudo',
    );
  }
  if (!existsSync(TUN_PATH)) {
    throw new UserError(`${TUN_PATH} is missing: load the tun module (modprobe tun) or, in a container, pass --device ${TUN_PATH}`);
  }
  if (!which('ip')) {
    throw new UserError("the 'ip' command (iproute2) was not found in PATH: install iproute2 (apt-get install iproute2)");
  }
}

function hasCapabilities(caps: number[]): boolean {
  try {
    const status = readFileSync('/proc/self/status', 'utf8');
    const m = /^CapEff:\s*([0-9a-f]+)$/m.exec(status);
    if (!m) return false;
    const eff = BigInt(`0x${m[1]}`);
    return caps.every((c) => (eff >> BigInt(c)) & 1n);
  } catch {
    return false;
  }
}

/** IPv6 needs links of at least 1280 bytes (RFC 8200, section 5). */
export const IPV6_MIN_MTU = 1280;

export function checkMtu(mtu: number, pool: VipPool): void {
  if (mtu < IPV6_MIN_MTU && pool.families().includes(6)) {
    throw new UserError(`--mtu ${mtu}: the pool has IPv6 addresses, and IPv6 needs an MTU of at least ${IPV6_MIN_MTU}`, EXIT_USAGE);
  }
}

/**
 * Parses --inner-address: one address per family, comma-separated
 * (`10.0.2.100,fd00:2::100`). A family without one runs in address mode.
 */
export function parseInnerAddresses(text: string | undefined, pool: VipPool): { v4: string | null; v6: string | null } {
  const out: { v4: string | null; v6: string | null } = { v4: null, v6: null };
  if (text === undefined) return out;
  for (const part of text.split(',').map((p) => p.trim())) {
    const a = parseAddress(part);
    if (!a) throw new UserError(`--inner-address "${part}": not an IPv4 or IPv6 address`, EXIT_USAGE);
    const key = a.family === 4 ? 'v4' : 'v6';
    if (out[key] !== null) throw new UserError(`--inner-address "${text}": give at most one IPv${a.family} address`, EXIT_USAGE);
    if (!pool.families().includes(a.family)) {
      throw new UserError(`--inner-address ${part}: the pool has no IPv${a.family} addresses to translate it to`, EXIT_USAGE);
    }
    if (a.family === 4) {
      const first = Number(a.value >> 24n);
      if (first === 0 || first === 127 || first >= 224) {
        throw new UserError(`--inner-address ${part}: must be a unicast address outside 0/8 and 127/8 (e.g. 10.0.2.100)`, EXIT_USAGE);
      }
    } else if (a.value <= 1n || a.value >> 120n === 0xffn || a.value >> 118n === 0x3fan) {
      throw new UserError(`--inner-address ${part}: must be a global or unique-local unicast address (e.g. fd00:2::100)`, EXIT_USAGE);
    }
    if (pool.contains(part)) throw new UserError(`--inner-address ${part}: is inside the pool; pick an address outside it`, EXIT_USAGE);
    out[key] = part;
  }
  return out;
}

interface AddrInfo {
  family: 'inet' | 'inet6';
  local: string;
  prefixlen: number;
  scope?: string;
}
interface Link {
  ifname: string;
  addr_info?: AddrInfo[];
}
interface Neigh {
  dst: string;
  dev?: string;
  lladdr?: string;
  state?: string[];
}
interface Route {
  dst?: string;
  gateway?: string;
  dev?: string;
}

/** The first address of `ranges` in [first, last] of the family, or null. */
function firstInside(ranges: AddressRange[], family: 4 | 6, first: bigint, last: bigint): bigint | null {
  let best: bigint | null = null;
  for (const r of ranges) {
    if (r.family !== family || r.last < first || r.first > last) continue;
    const a = r.first > first ? r.first : first;
    if (best === null || a < best) best = a;
  }
  return best;
}

function inPool(ranges: AddressRange[], text: string): boolean {
  const a = parseAddress(text.replace(/%.*$/, ''));
  return a !== null && firstInside(ranges, a.family, a.value, a.value) !== null;
}

/**
 * Refuses a pool that holds an address this namespace already uses: one of
 * its own (a session would get the gateway's address), one on the link of one
 * of its interfaces (a neighbour's, like the lab backend's: routing it to
 * vipnat0 would take the neighbour's traffic), a known neighbour, or a
 * route's gateway. Names the address and where it is in use.
 */
/**
 * Refuses a pool that this namespace already uses: an address of its own, a
 * route's gateway, and (unless the pool is on-link on `onLinkDev`, where the
 * link is probed address by address instead) a subnet of a link or a
 * neighbour.
 */
export async function checkPoolUnused(spec: string, ranges: AddressRange[], onLinkDev: string | null = null): Promise<void> {
  const refuse = (what: string): never => {
    throw new UserError(`pool "${spec}": ${what}; pick a pool that nothing here uses`, EXIT_USAGE);
  };
  const links = JSON.parse(await ip(['-j', 'addr', 'show'])) as Link[];
  for (const l of links) {
    if (l.ifname === UPLINK_NAME) continue;
    for (const a of l.addr_info ?? []) {
      if (inPool(ranges, a.local)) refuse(`${a.local} is an address of ${l.ifname} in this namespace`);
    }
  }
  for (const l of links) {
    if (l.ifname === UPLINK_NAME || l.ifname === 'lo' || l.ifname === onLinkDev) continue;
    for (const a of l.addr_info ?? []) {
      if (a.scope === 'link' || a.scope === 'host') continue;
      const parsed = parseAddress(a.local);
      if (!parsed) continue;
      const bits = parsed.family === 4 ? 32 : 128;
      if (a.prefixlen >= bits - (parsed.family === 4 ? 1 : 0)) continue; // /32, /31 and /128: no other hosts on the link
      const host = BigInt(bits - a.prefixlen);
      const net = (parsed.value >> host) << host;
      const hit = firstInside(ranges, parsed.family, net, net + (1n << host) - 1n);
      if (hit !== null) {
        const cidr = `${formatAddress(parsed.family, net)}/${a.prefixlen}`;
        refuse(`${formatAddress(parsed.family, hit)} is on the link of ${l.ifname} (${cidr}), where neighbours of this namespace live`);
      }
    }
  }
  const neighbours = JSON.parse(await ip(['-j', 'neigh', 'show'])) as Neigh[];
  for (const n of neighbours) {
    if (n.state?.includes('FAILED') || n.state?.includes('INCOMPLETE') || n.dev === onLinkDev) continue;
    if (inPool(ranges, n.dst)) refuse(`${n.dst} is a neighbour on ${n.dev ?? 'a link'} here${n.lladdr ? ` (${n.lladdr})` : ''}`);
  }
  for (const family of ['-4', '-6']) {
    const routes = JSON.parse(await ip([family, '-j', 'route', 'show', 'table', 'all'])) as Route[];
    for (const r of routes) {
      if (r.gateway && inPool(ranges, r.gateway)) refuse(`${r.gateway} is the gateway of the route to ${r.dst ?? 'default'} here`);
    }
  }
}

/** Who session programs run as (--user), resolved. */
export interface SessionUser {
  uid: number;
  gid: number;
  /** The user's name when it has a passwd entry (its groups then come with it), else null. */
  name: string | null;
  home: string;
}

function getent(db: 'passwd' | 'group', key: string): string[] | null {
  const r = spawnSync('getent', [db, key], { encoding: 'utf8' });
  if (r.status !== 0 || !r.stdout) return null;
  return r.stdout.split('\n')[0]!.split(':');
}

/** Parses --user USER[:GROUP] (names or numbers) into ids, from the system's user database. */
export function parseUser(text: string): SessionUser {
  const [userText = '', groupText] = text.split(':', 2);
  const bad = (why: string): never => {
    throw new UserError(`--user "${text}": ${why}`, EXIT_USAGE);
  };
  if (!userText) bad('give a user name or id, e.g. --user nobody');
  const pw = getent('passwd', userText);
  let user: SessionUser;
  if (pw) {
    user = { uid: Number(pw[2]), gid: Number(pw[3]), name: pw[0]!, home: pw[5] || '/' };
  } else if (/^\d+$/.test(userText)) {
    user = { uid: Number(userText), gid: Number(userText), name: null, home: '/' };
  } else {
    return bad(`no such user`);
  }
  if (groupText !== undefined) {
    const gr = getent('group', groupText);
    if (gr) user.gid = Number(gr[2]);
    else if (/^\d+$/.test(groupText)) user.gid = Number(groupText);
    else bad(`no such group "${groupText}"`);
  }
  if (user.uid === 0) bad('that is root; sessions run as root without --user, so give an unprivileged user');
  return user;
}

/** Whether `user` (or root, when null) may execute the file at `path`, whose stat is `st`. */
function mayExecute(path: string, mode: number, owner: number, group: number, user: SessionUser | null): boolean {
  if (!user) {
    try {
      accessSync(path, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  }
  if (owner === user.uid) return (mode & 0o100) !== 0;
  if (group === user.gid || (user.name !== null && memberOf(user.name, group))) return (mode & 0o010) !== 0;
  return (mode & 0o001) !== 0;
}

function memberOf(name: string, gid: number): boolean {
  const gr = getent('group', String(gid));
  return gr !== null && (gr[3] ?? '').split(',').includes(name);
}

/**
 * Finds PROGRAM as the sessions will run it (through PATH unless it has a
 * slash). Not found: exit status 127; found but not executable (a directory,
 * no execute permission for the session's user, a noexec mount): 126, as a
 * shell reports them.
 */
export function resolveProgram(program: string, user: SessionUser | null): string {
  const candidates = program.includes('/')
    ? [program]
    : (process.env['PATH'] ?? '')
        .split(delimiter)
        .filter(Boolean)
        .map((d) => join(d, program));
  let refused: string | null = null;
  for (const p of candidates) {
    let st;
    try {
      st = statSync(p);
    } catch {
      continue;
    }
    if (st.isDirectory()) {
      refused ??= `${program}: is a directory`;
      continue;
    }
    if (!mayExecute(p, st.mode, st.uid, st.gid, user)) {
      refused ??= `${program}: permission denied: ${p} is not executable${user ? ` by uid ${user.uid}` : ''}`;
      continue;
    }
    return p;
  }
  if (refused) throw new UserError(refused, EXIT_NOT_EXECUTABLE);
  throw new UserError(`program not found: ${program}`, EXIT_NOT_FOUND);
}

/** An IPv4 address of /proc/net/{tcp,udp} (hex, in host order on little-endian machines) as a number. */
function procAddress(hex: string): number {
  const n = parseInt(hex, 16) >>> 0;
  // /proc prints the 32-bit word as the kernel holds it (network order) read as a host integer.
  return (((n & 0xff) << 24) | (((n >>> 8) & 0xff) << 16) | (((n >>> 16) & 0xff) << 8) | (n >>> 24)) >>> 0;
}

/**
 * The addresses of 127.0.0.0/8 besides 127.0.0.1 that this namespace uses,
 * with what uses them: an address of its own (`ip addr`), a name in
 * /etc/hosts (Debian's 127.0.1.1 for the host name), a socket bound to it
 * (systemd-resolved's 127.0.0.53). A session's virtual loopback that is one
 * of them stays this namespace's, as it was.
 */
export async function loopbackInUse(): Promise<Map<number, string>> {
  const used = new Map<number, string>();
  const note = (a: number | null, why: string): void => {
    if (a !== null && a >>> 24 === 127 && a !== 0x7f000001 && !used.has(a)) used.set(a, why);
  };
  const v4 = (text: string): number | null => {
    const p = parseAddress(text);
    return p && p.family === 4 ? Number(p.value) : null;
  };
  try {
    type Link = { addr_info?: { local: string }[] };
    for (const l of JSON.parse(await ip(['-4', '-j', 'addr', 'show'])) as Link[]) {
      for (const a of l.addr_info ?? []) note(v4(a.local), 'an address of this namespace');
    }
  } catch {
    // No addresses to read: nothing in use there.
  }
  try {
    for (const line of readFileSync('/etc/hosts', 'utf8').split('\n')) {
      const [addr, ...names] = line.replace(/#.*/, '').trim().split(/\s+/);
      if (addr && names.length > 0) note(v4(addr), `/etc/hosts names it ${names[0]}`);
    }
  } catch {
    // No /etc/hosts.
  }
  for (const proto of ['tcp', 'udp']) {
    try {
      for (const line of readFileSync(`/proc/net/${proto}`, 'utf8').split('\n').slice(1)) {
        const local = line.trim().split(/\s+/)[1];
        if (!local) continue;
        const [hex, port] = local.split(':');
        note(procAddress(hex!), `a ${proto.toUpperCase()} socket is bound to it (port ${parseInt(port!, 16)})`);
      }
    } catch {
      // No /proc/net: nothing to read.
    }
  }
  return used;
}
