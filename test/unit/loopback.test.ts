// Unit tests for the virtual-loopback formula (127.0.0.1 + session id).
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import { MAX_SESSION_ID, PoolError, cidrCover, loopbackFor, loopbackNumber, sessionForLoopback } from '../../src/pool/index.js';

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

describe('cidrCover (the routes of a range of virtual loopbacks)', () => {
  const text = (b: { addr: number; len: number }): string => `${[24, 16, 8, 0].map((s) => (b.addr >>> s) & 255).join('.')}/${b.len}`;

  it('covers sessions 1-14 (a /28 pool) with the fewest aligned blocks', () => {
    expect(cidrCover(loopbackNumber(1), loopbackNumber(14)).map(text)).toEqual(['127.0.0.2/31', '127.0.0.4/30', '127.0.0.8/29']);
  });

  it('gives one /32 for one address, and a whole /8 for all of it', () => {
    expect(cidrCover(loopbackNumber(300), loopbackNumber(300)).map(text)).toEqual(['127.0.1.45/32']);
    expect(cidrCover(0x7f000000, 0x7fffffff).map(text)).toEqual(['127.0.0.0/8']);
  });

  it('covers exactly the range, with aligned blocks in order, for any range', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: MAX_SESSION_ID }), fc.integer({ min: 0, max: 100_000 }), (first, span) => {
        const lo = loopbackNumber(first);
        const hi = Math.min(lo + span, 0x7fffffff);
        const blocks = cidrCover(lo, hi);
        let next = lo;
        for (const b of blocks) {
          const size = 2 ** (32 - b.len);
          expect(b.addr).toBe(next);
          expect(b.addr % size).toBe(0);
          next = b.addr + size;
        }
        expect(next - 1).toBe(hi);
        // Fewest: at most two blocks of each size.
        expect(blocks.length).toBeLessThanOrEqual(2 * 32);
      }),
      { numRuns: 500 },
    );
  });
});
