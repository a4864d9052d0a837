// Unit tests for the virtual-loopback formula (127.0.0.1 + session id).
import { describe, it, expect } from 'vitest';
import { MAX_SESSION_ID, PoolError, loopbackFor, sessionForLoopback } from '../../src/pool/index.js';

describe('loopbackFor', () => {
  it.each([
    [1, '127.0.0.2'],
    [7, '127.0.0.8'],
    [254, '127.0.0.255'],
    [255, '127.0.1.0'],
    [16777214, '127.255.255.255'],
  ])('session %i → %s', (id, addr) => {
    expect(loopbackFor(id)).toBe(addr);
    expect(sessionForLoopback(addr)).toBe(id);
  });

  it('ends at the top of 127.0.0.0/8', () => {
    expect(MAX_SESSION_ID).toBe(16777214);
    expect(loopbackFor(MAX_SESSION_ID)).toBe('127.255.255.255');
  });

  it.each([
    [0, 'session id 0: must be a whole number from 1 to 16777214 (session 1 → 127.0.0.2)'],
    [-1, 'session id -1: must be a whole number from 1 to 16777214 (session 1 → 127.0.0.2)'],
    [1.5, 'session id 1.5: must be a whole number from 1 to 16777214 (session 1 → 127.0.0.2)'],
    [Number.NaN, 'session id NaN: must be a whole number from 1 to 16777214 (session 1 → 127.0.0.2)'],
    [16777215, 'session id 16777215: virtual loopback addresses run out at 127.255.255.255 (ids 1-16777214)'],
  ])('rejects %s with one clear line', (id, message) => {
    let err: unknown;
    try {
      loopbackFor(id);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PoolError);
    expect((err as Error).message).toBe(message);
    expect((err as Error).message).not.toContain('\n');
  });
});

describe('sessionForLoopback', () => {
  it('returns null for addresses that are no session loopback', () => {
    for (const a of ['127.0.0.1', '127.0.0.0', '126.255.255.255', '10.0.0.1', '::1', 'junk']) {
      expect(sessionForLoopback(a), a).toBeNull();
    }
  });
});
