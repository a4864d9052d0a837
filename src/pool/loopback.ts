// The virtual-loopback formula: session N's 127.0.0.1 is reached from the gateway side at 127.0.0.1 + N.
import { PoolError, formatAddress, parseAddress } from './ranges.js';

/** 127.0.0.1 + this id is 127.255.255.255, the top of 127.0.0.0/8. */
export const MAX_SESSION_ID = 16777214;

const LOOPBACK_BASE = 0x7f000001n; // 127.0.0.1

export function loopbackFor(sessionId: number): string {
  if (!Number.isInteger(sessionId) || sessionId < 1) {
    throw new PoolError(`session id ${sessionId}: must be a whole number from 1 to ${MAX_SESSION_ID} (session 1 → 127.0.0.2)`);
  }
  if (sessionId > MAX_SESSION_ID) {
    throw new PoolError(`session id ${sessionId}: virtual loopback addresses run out at 127.255.255.255 (ids 1-${MAX_SESSION_ID})`);
  }
  return formatAddress(4, LOOPBACK_BASE + BigInt(sessionId));
}

/** The session whose virtual loopback `addr` is, or null (127.0.0.1 itself belongs to the gateway). */
export function sessionForLoopback(addr: string): number | null {
  const parsed = parseAddress(addr);
  if (parsed === null || parsed.family !== 4) return null;
  const id = parsed.value - LOOPBACK_BASE;
  return id >= 1n && id <= BigInt(MAX_SESSION_ID) ? Number(id) : null;
}

/**
 * The CIDR blocks (address/length, IPv4 as numbers) that cover first-last
 * exactly, fewest first: what routes a range of addresses.
 */
export function cidrCover(first: number, last: number): { addr: number; len: number }[] {
  const out: { addr: number; len: number }[] = [];
  let a = first;
  while (a <= last) {
    // The largest aligned block at `a` that stays within `last`.
    let size = 1;
    while (size < 2 ** 32 && a % (size * 2) === 0 && a + size * 2 - 1 <= last) size *= 2;
    out.push({ addr: a, len: 32 - Math.log2(size) });
    a += size;
  }
  return out;
}

/** 127.0.0.1 + id, as a number. */
export function loopbackNumber(sessionId: number): number {
  return 0x7f000001 + sessionId;
}
