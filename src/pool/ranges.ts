// Parses the user's pool specification (CIDRs, START-END ranges, addresses) into checked address ranges.
import { Address4, Address6 } from 'ip-address';

export type Family = 4 | 6;

/** Inclusive range of usable addresses, as one part of the pool spec described it. */
export interface AddressRange {
  family: Family;
  first: bigint;
  last: bigint;
  /** The part as the user wrote it (trimmed), for messages. */
  text: string;
  /** Canonical network when the part was a CIDR; the route then covers the whole network. */
  cidr?: string;
}

export class PoolError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PoolError';
  }
}

const BITS: Record<Family, number> = { 4: 32, 6: 128 };
const MAX: Record<Family, bigint> = { 4: (1n << 32n) - 1n, 6: (1n << 128n) - 1n };

const EMPTY_HINT = 'give CIDRs, START-END ranges or addresses, comma-separated';

/** Blocks that must never become a VIP: the kernel treats them specially, so traffic would go astray. */
interface Reserved {
  family: Family;
  first: bigint;
  last: bigint;
  cidr: string;
  what: string;
}

function block(family: Family, cidr: string, what: string): Reserved {
  const [addr, len] = cidr.split('/');
  const parsed = parseAddress(addr ?? '');
  if (parsed === null) throw new Error(`internal: bad reserved block ${cidr}`);
  const host = BITS[family] - Number(len);
  const first = parsed.value;
  return { family, first, last: first + (1n << BigInt(host)) - 1n, cidr, what };
}

const RESERVED: readonly Reserved[] = [
  block(4, '0.0.0.0/8', '"this network" (0.0.0.0/8) addresses cannot be virtual IPs'),
  block(4, '127.0.0.0/8', 'loopback addresses cannot be virtual IPs'),
  block(4, '224.0.0.0/4', 'multicast addresses cannot be virtual IPs'),
  block(4, '255.255.255.255/32', 'the broadcast address 255.255.255.255 cannot be a virtual IP'),
  block(6, '::/128', 'the unspecified address :: cannot be a virtual IP'),
  block(6, '::1/128', 'the loopback address ::1 cannot be a virtual IP'),
  block(6, '::ffff:0:0/96', 'IPv4-mapped IPv6 addresses cannot be virtual IPs; write the IPv4 address instead'),
  block(6, 'fe80::/10', 'link-local addresses cannot be virtual IPs'),
  block(6, 'ff00::/8', 'multicast addresses cannot be virtual IPs'),
];

/** Parses one plain address (no prefix, no zone); null when it is not one. */
export function parseAddress(text: string): { family: Family; value: bigint } | null {
  // ip-address accepts "a/len" and "a%zone"; a plain address has neither.
  if (text.length === 0 || text.includes('/') || text.includes('%')) return null;
  try {
    if (!text.includes(':')) return { family: 4, value: new Address4(text).bigInt() };
    return { family: 6, value: new Address6(text).bigInt() };
  } catch {
    return null;
  }
}

/** Formats an address number: dotted quad for IPv4, canonical compressed form (RFC 5952) for IPv6. */
export function formatAddress(family: Family, value: bigint): string {
  if (value < 0n || value > MAX[family]) {
    throw new PoolError(`address value ${value} is outside the IPv${family} address space`);
  }
  if (family === 4) {
    const n = Number(value);
    return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
  }
  return formatV6(value);
}

/** RFC 5952 text: lowercase, no leading zeros, the first longest run of 2+ zero groups as "::". */
function formatV6(value: bigint): string {
  // Hand-written because take() formats every address it hands out; ip-address is ~10x slower here.
  const groups: number[] = [];
  for (let shift = 112n; shift >= 0n; shift -= 16n) groups.push(Number((value >> shift) & 0xffffn));
  let bestAt = -1;
  let bestLen = 1;
  for (let i = 0; i < 8;) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestAt = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = (from: number, to: number): string =>
    groups
      .slice(from, to)
      .map((g) => g.toString(16))
      .join(':');
  if (bestAt < 0) return hex(0, 8);
  return `${hex(0, bestAt)}::${hex(bestAt + bestLen, 8)}`;
}

/** What a part covers as written (whole network for a CIDR), used for overlap checks. */
interface Parsed {
  range: AddressRange;
  lo: bigint;
  hi: bigint;
  index: number;
}

function fail(quoted: string, why: string): never {
  // JSON quoting keeps the message on one line even if the part holds a newline.
  throw new PoolError(`pool ${JSON.stringify(quoted)}: ${why}`);
}

function parseCidr(part: string, index: number): Parsed {
  const slash = part.indexOf('/');
  const addrText = part.slice(0, slash).trim();
  const lenText = part.slice(slash + 1).trim();
  const addr = parseAddress(addrText);
  if (addr === null) fail(part, 'not an IPv4 or IPv6 address, range or CIDR');
  const { family } = addr;
  const bits = BITS[family];
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > bits) {
    fail(part, `prefix length must be 0-${bits}`);
  }
  const len = Number(lenText);
  const hostBits = BigInt(bits - len);
  const size = 1n << hostBits;
  const network = (addr.value >> hostBits) << hostBits;
  if (network !== addr.value) {
    fail(part, `host bits are set; did you mean ${formatAddress(family, network)}/${len}?`);
  }
  const broadcast = network + size - 1n;
  let first = network;
  let last = broadcast;
  if (family === 4 && len <= 30) {
    // Network and broadcast addresses are not hosts; /31 is point-to-point (RFC 3021), both usable.
    first += 1n;
    last -= 1n;
  } else if (family === 6 && len <= 126) {
    // The first address is the subnet-router anycast address (RFC 4291 2.6.1).
    first += 1n;
  }
  const cidr = `${formatAddress(family, network)}/${len}`;
  return { range: { family, first, last, text: part, cidr }, lo: network, hi: broadcast, index };
}

function parseSpan(part: string, index: number): Parsed {
  const dash = part.indexOf('-');
  const startText = part.slice(0, dash).trim();
  const endText = part.slice(dash + 1).trim();
  const start = parseAddress(startText);
  const end = parseAddress(endText);
  if (start === null || end === null) fail(part, 'not an IPv4 or IPv6 address, range or CIDR');
  if (start.family !== end.family) fail(part, 'start and end are of different families');
  if (start.value > end.value) fail(part, 'start is after end');
  const range: AddressRange = { family: start.family, first: start.value, last: end.value, text: part };
  return { range, lo: start.value, hi: end.value, index };
}

function parsePart(part: string, index: number): Parsed {
  if (part.includes('/')) return parseCidr(part, index);
  if (part.includes('-')) return parseSpan(part, index);
  const addr = parseAddress(part);
  if (addr === null) fail(part, 'not an IPv4 or IPv6 address, range or CIDR');
  const range: AddressRange = { family: addr.family, first: addr.value, last: addr.value, text: part };
  return { range, lo: addr.value, hi: addr.value, index };
}

function checkUsable(p: Parsed): void {
  const { range } = p;
  if (range.first > range.last) fail(range.text, 'holds no usable address');
  for (const r of RESERVED) {
    if (r.family !== range.family || range.last < r.first || range.first > r.last) continue;
    const inside = range.first >= r.first && range.last <= r.last;
    fail(range.text, inside ? r.what : `overlaps ${r.cidr}; ${r.what}`);
  }
}

function checkOverlaps(parsed: Parsed[]): void {
  const sorted = [...parsed].sort((a, b) =>
    a.range.family !== b.range.family ? a.range.family - b.range.family : a.lo < b.lo ? -1 : a.lo > b.lo ? 1 : 0,
  );
  // After sorting, a part overlaps an earlier one iff it starts at or before the furthest end seen so far.
  let reach: Parsed | undefined;
  for (const p of sorted) {
    if (reach !== undefined && reach.range.family === p.range.family && p.lo <= reach.hi) {
      const [earlier, later] = reach.index < p.index ? [reach, p] : [p, reach];
      const quoted = `${earlier.range.text},${later.range.text}`;
      if (earlier.range.text === later.range.text) fail(quoted, `${later.range.text} is listed twice`);
      fail(quoted, `${later.range.text} overlaps ${earlier.range.text}`);
    }
    if (reach === undefined || reach.range.family !== p.range.family || p.hi > reach.hi) reach = p;
  }
}

/** Parses "CIDR, START-END, address, ..." into usable ranges, in the order written. */
export function parseRanges(spec: string): AddressRange[] {
  if (spec.trim() === '') fail('', `empty; ${EMPTY_HINT}`);
  const parts = spec.split(',').map((p) => p.trim());
  if (parts.some((p) => p === '')) fail(spec, `empty part between commas; ${EMPTY_HINT}`);
  const parsed = parts.map(parsePart);
  for (const p of parsed) checkUsable(p);
  checkOverlaps(parsed);
  return parsed.map((p) => p.range);
}

/** Fewest CIDRs covering the range, for routes; a CIDR part yields its whole network. */
export function rangeCidrs(r: AddressRange): string[] {
  if (r.cidr !== undefined) return [r.cidr];
  const bits = BITS[r.family];
  const out: string[] = [];
  let at = r.first;
  while (at <= r.last) {
    // Largest aligned block starting at `at` that does not run past `last`.
    let host = 0;
    while (host < bits) {
      const size = 1n << BigInt(host + 1);
      if (at % size !== 0n || at + size - 1n > r.last) break;
      host++;
    }
    out.push(`${formatAddress(r.family, at)}/${bits - host}`);
    at += 1n << BigInt(host);
  }
  return out;
}
