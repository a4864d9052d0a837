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
