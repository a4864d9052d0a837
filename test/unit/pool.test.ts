// Unit tests for pool specs (parseRanges, rangeCidrs) and the VIP pool's allocation order.
import fc from 'fast-check';
import { describe, it, expect } from 'vitest';
import { Address6 } from 'ip-address';
import {
  type AddressRange,
  NO_VIP_MESSAGE,
  PoolError,
  VipPool,
  formatAddress,
  parseAddress,
  parseRanges,
  rangeCidrs,
} from '../../src/pool/index.js';

/** The range's bounds as text, for readable expectations. */
function bounds(r: AddressRange): [string, string] {
  return [formatAddress(r.family, r.first), formatAddress(r.family, r.last)];
}

function errorOf(spec: string): PoolError {
  try {
    parseRanges(spec);
  } catch (e) {
    expect(e).toBeInstanceOf(PoolError);
    return e as PoolError;
  }
  throw new Error(`parseRanges(${JSON.stringify(spec)}) did not throw`);
}

describe('parseAddress / formatAddress', () => {
  it('round-trips both families', () => {
    expect(parseAddress('198.19.7.1')).toEqual({ family: 4, value: 0xc6130701n });
    expect(parseAddress('fd00:0077:0000::0010')).toEqual({ family: 6, value: 0xfd000077000000000000000000000010n });
    expect(formatAddress(4, 0xc6130701n)).toBe('198.19.7.1');
    expect(formatAddress(6, 0xfd000077000000000000000000000010n)).toBe('fd00:77::10');
    expect(formatAddress(6, 0n)).toBe('::');
  });

  it('formats IPv6 like ip-address does (RFC 5952), on seeded random values', () => {
    let seed = 7;
    const rand16 = (): bigint => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      // Zero groups often, so "::" placement gets exercised.
      return seed % 3 === 0 ? 0n : BigInt(seed % 65536);
    };
    const fixed = [0n, 1n, 1n << 112n, (1n << 128n) - 1n, 0x00010000000000000000000000000001n, 0x00010000000100000000000000000001n];
    for (let n = 0; n < 2000; n++) {
      let v = 0n;
      for (let g = 0; g < 8; g++) v = (v << 16n) | rand16();
      fixed.push(v);
    }
    for (const v of fixed) expect(formatAddress(6, v)).toBe(Address6.fromBigInt(v).correctForm());
  });

  it('returns null for anything but one plain address', () => {
    for (const t of ['', '1.2.3', '1.2.3.x', '01.2.3.4', '10.0.0.0/24', 'fd00::1%eth0', 'gg::', ' 1.2.3.4']) {
      expect(parseAddress(t), t).toBeNull();
    }
  });

  it('refuses values outside the address space', () => {
    expect(() => formatAddress(4, 1n << 32n)).toThrow(PoolError);
    expect(() => formatAddress(4, -1n)).toThrow(PoolError);
  });
});

describe('parseRanges', () => {
  it('excludes network and broadcast from a /28', () => {
    const [r, ...rest] = parseRanges('198.19.7.0/28');
    expect(rest).toEqual([]);
    expect(r).toMatchObject({ family: 4, text: '198.19.7.0/28', cidr: '198.19.7.0/28' });
    expect(bounds(r!)).toEqual(['198.19.7.1', '198.19.7.14']);
  });

  it('gives both addresses of a /31 (RFC 3021) and the one of a /32', () => {
    expect(bounds(parseRanges('10.1.0.0/31')[0]!)).toEqual(['10.1.0.0', '10.1.0.1']);
    expect(bounds(parseRanges('10.1.0.9/32')[0]!)).toEqual(['10.1.0.9', '10.1.0.9']);
    expect(bounds(parseRanges('10.1.0.4/30')[0]!)).toEqual(['10.1.0.5', '10.1.0.6']);
  });

  it('excludes only the subnet-router anycast address of an IPv6 /64, nothing of a /127 or /128', () => {
    const [r64] = parseRanges('fd00:77::/64');
    expect(r64).toMatchObject({ family: 6, cidr: 'fd00:77::/64' });
    expect(bounds(r64!)).toEqual(['fd00:77::1', 'fd00:77::ffff:ffff:ffff:ffff']);
    expect(bounds(parseRanges('fd00:77::/127')[0]!)).toEqual(['fd00:77::', 'fd00:77::1']);
    expect(bounds(parseRanges('fd00:77::5/128')[0]!)).toEqual(['fd00:77::5', 'fd00:77::5']);
    expect(bounds(parseRanges('fd00:77::/126')[0]!)).toEqual(['fd00:77::1', 'fd00:77::3']);
  });

  it('writes the CIDR canonically but keeps the text as written', () => {
    const [r] = parseRanges('  FD00:0077:0::/64 ');
    expect(r).toMatchObject({ text: 'FD00:0077:0::/64', cidr: 'fd00:77::/64' });
  });

  it('takes START-END ranges inclusively, in both families', () => {
    const [v4] = parseRanges('10.0.0.3-10.0.0.10');
    expect(v4).toMatchObject({ family: 4, text: '10.0.0.3-10.0.0.10' });
    expect(v4!.cidr).toBeUndefined();
    expect(bounds(v4!)).toEqual(['10.0.0.3', '10.0.0.10']);
    expect(bounds(parseRanges('10.0.0.3-10.0.0.3')[0]!)).toEqual(['10.0.0.3', '10.0.0.3']);
    const [v6] = parseRanges('fd00:77::10-fd00:77::1f');
    expect(v6!.family).toBe(6);
    expect(v6!.last - v6!.first).toBe(15n);
  });

  it('takes single addresses', () => {
    const [a, b] = parseRanges('10.2.0.7,fd00::9');
    expect(a).toMatchObject({ family: 4, first: 0x0a020007n, last: 0x0a020007n, text: '10.2.0.7' });
    expect(b).toMatchObject({ family: 6, first: 0xfd000000000000000000000000000009n, text: 'fd00::9' });
  });

  it('takes mixed lists in the order written, ignoring whitespace around parts', () => {
    const ranges = parseRanges(' 198.19.7.0/28 , 10.0.0.3-10.0.0.10,fd00:77::/64,\t192.0.2.1 ');
    expect(ranges.map((r) => r.text)).toEqual(['198.19.7.0/28', '10.0.0.3-10.0.0.10', 'fd00:77::/64', '192.0.2.1']);
    expect(ranges.map((r) => r.family)).toEqual([4, 4, 6, 4]);
  });

  it('accepts adjacent parts that do not overlap', () => {
    expect(parseRanges('10.0.0.0/30,10.0.0.4/30,10.0.0.8-10.0.0.9,10.0.0.10')).toHaveLength(4);
  });

  const errors: Array<[string, string]> = [
    ['10.0.0.0/33', 'pool "10.0.0.0/33": prefix length must be 0-32'],
    ['fd00::/129', 'pool "fd00::/129": prefix length must be 0-128'],
    ['10.0.0.0/x', 'pool "10.0.0.0/x": prefix length must be 0-32'],
    ['10.0.0.0/', 'pool "10.0.0.0/": prefix length must be 0-32'],
    ['10.0.0.5/24', 'pool "10.0.0.5/24": host bits are set; did you mean 10.0.0.0/24?'],
    ['fd00:77::1/64', 'pool "fd00:77::1/64": host bits are set; did you mean fd00:77::/64?'],
    ['10.0.0.9-10.0.0.1', 'pool "10.0.0.9-10.0.0.1": start is after end'],
    ['fd00::9-fd00::1', 'pool "fd00::9-fd00::1": start is after end'],
    ['1.2.3.x', 'pool "1.2.3.x": not an IPv4 or IPv6 address, range or CIDR'],
    ['1.2.3.x/24', 'pool "1.2.3.x/24": not an IPv4 or IPv6 address, range or CIDR'],
    ['10.0.0.1-', 'pool "10.0.0.1-": not an IPv4 or IPv6 address, range or CIDR'],
    ['10.0.0.1-10.0.0.2-10.0.0.3', 'pool "10.0.0.1-10.0.0.2-10.0.0.3": not an IPv4 or IPv6 address, range or CIDR'],
    ['', 'pool "": empty; give CIDRs, START-END ranges or addresses, comma-separated'],
    ['   ', 'pool "": empty; give CIDRs, START-END ranges or addresses, comma-separated'],
    [
      '10.0.0.1,,10.0.0.2',
      'pool "10.0.0.1,,10.0.0.2": empty part between commas; give CIDRs, START-END ranges or addresses, comma-separated',
    ],
    ['10.0.0.0/30,10.0.0.1', 'pool "10.0.0.0/30,10.0.0.1": 10.0.0.1 overlaps 10.0.0.0/30'],
    ['10.0.0.1,10.0.0.0/30', 'pool "10.0.0.1,10.0.0.0/30": 10.0.0.0/30 overlaps 10.0.0.1'],
    [
      '10.0.0.1-10.0.0.9,192.0.2.1,10.0.0.5-10.0.0.6',
      'pool "10.0.0.1-10.0.0.9,10.0.0.5-10.0.0.6": 10.0.0.5-10.0.0.6 overlaps 10.0.0.1-10.0.0.9',
    ],
    ['fd00::/64,fd00::7', 'pool "fd00::/64,fd00::7": fd00::7 overlaps fd00::/64'],
    ['10.0.0.1,10.0.0.1', 'pool "10.0.0.1,10.0.0.1": 10.0.0.1 is listed twice'],
    ['10.0.0.1-fd00::1', 'pool "10.0.0.1-fd00::1": start and end are of different families'],
    ['127.0.0.0/24', 'pool "127.0.0.0/24": loopback addresses cannot be virtual IPs'],
    ['127.0.0.1', 'pool "127.0.0.1": loopback addresses cannot be virtual IPs'],
    ['126.255.255.250-127.0.0.3', 'pool "126.255.255.250-127.0.0.3": overlaps 127.0.0.0/8; loopback addresses cannot be virtual IPs'],
    ['0.0.0.0/8', 'pool "0.0.0.0/8": "this network" (0.0.0.0/8) addresses cannot be virtual IPs'],
    ['0.0.0.0/0', 'pool "0.0.0.0/0": overlaps 0.0.0.0/8; "this network" (0.0.0.0/8) addresses cannot be virtual IPs'],
    ['224.0.0.5', 'pool "224.0.0.5": multicast addresses cannot be virtual IPs'],
    ['239.1.0.0/16', 'pool "239.1.0.0/16": multicast addresses cannot be virtual IPs'],
    ['255.255.255.255', 'pool "255.255.255.255": the broadcast address 255.255.255.255 cannot be a virtual IP'],
    ['::', 'pool "::": the unspecified address :: cannot be a virtual IP'],
    ['::1', 'pool "::1": the loopback address ::1 cannot be a virtual IP'],
    ['::/127', 'pool "::/127": overlaps ::/128; the unspecified address :: cannot be a virtual IP'],
    ['ff02::1', 'pool "ff02::1": multicast addresses cannot be virtual IPs'],
    ['fe80::/64', 'pool "fe80::/64": link-local addresses cannot be virtual IPs'],
    ['fe80::1-fe80::9', 'pool "fe80::1-fe80::9": link-local addresses cannot be virtual IPs'],
    ['::ffff:10.0.0.1', 'pool "::ffff:10.0.0.1": IPv4-mapped IPv6 addresses cannot be virtual IPs; write the IPv4 address instead'],
    ['10.0.0.0/24,10.0.0.1\n10.0.0.2', 'pool "10.0.0.1\\n10.0.0.2": not an IPv4 or IPv6 address, range or CIDR'],
  ];

  it.each(errors)('rejects %j with one line naming the bad part', (spec, message) => {
    const e = errorOf(spec);
    expect(e.name).toBe('PoolError');
    expect(e.message).toBe(message);
    expect(e.message).not.toContain('\n');
  });

  it('names the bad part, not the whole spec', () => {
    expect(errorOf('198.19.7.0/28, 10.0.0.0/33 ,fd00::/64').message).toBe('pool "10.0.0.0/33": prefix length must be 0-32');
  });
});

describe('rangeCidrs', () => {
  it('covers a START-END range with the fewest CIDRs', () => {
    const [r] = parseRanges('10.0.0.3-10.0.0.10');
    expect(rangeCidrs(r!)).toEqual(['10.0.0.3/32', '10.0.0.4/30', '10.0.0.8/31', '10.0.0.10/32']);
  });

  it('returns one CIDR for an aligned range and a /32 for an address', () => {
    expect(rangeCidrs(parseRanges('10.0.0.0-10.0.0.255')[0]!)).toEqual(['10.0.0.0/24']);
    expect(rangeCidrs(parseRanges('10.0.0.7')[0]!)).toEqual(['10.0.0.7/32']);
    expect(rangeCidrs(parseRanges('fd00::9')[0]!)).toEqual(['fd00::9/128']);
  });

  it('returns the whole network for a CIDR part, so the route covers it', () => {
    expect(rangeCidrs(parseRanges('198.19.7.0/28')[0]!)).toEqual(['198.19.7.0/28']);
    expect(rangeCidrs(parseRanges('fd00:0077::/64')[0]!)).toEqual(['fd00:77::/64']);
  });

  it('covers IPv6 START-END ranges in canonical form', () => {
    expect(rangeCidrs(parseRanges('fd00:77::10-fd00:77::1f')[0]!)).toEqual(['fd00:77::10/124']);
    expect(rangeCidrs(parseRanges('fd00:77::f-fd00:77::20')[0]!)).toEqual(['fd00:77::f/128', 'fd00:77::10/124', 'fd00:77::20/128']);
  });

  it('covers exactly the range (checked by expansion)', () => {
    const [r] = parseRanges('10.0.1.37-10.0.3.200');
    let count = 0n;
    let at = r!.first;
    for (const c of rangeCidrs(r!)) {
      const [addr, len] = c.split('/');
      const p = parseAddress(addr!);
      expect(p!.value).toBe(at);
      const size = 1n << BigInt(32 - Number(len));
      expect(p!.value % size).toBe(0n);
      at += size;
      count += size;
    }
    expect(at - 1n).toBe(r!.last);
    expect(count).toBe(r!.last - r!.first + 1n);
  });
});

describe('VipPool', () => {
  it('hands out the lowest free address across ranges, then null', () => {
    const pool = new VipPool(parseRanges('10.0.0.8-10.0.0.9,10.0.0.1,10.0.0.4/31'));
    expect(pool.size(4)).toBe(5);
    const got: Array<string | null> = [];
    for (let i = 0; i < 6; i++) got.push(pool.take(4));
    expect(got).toEqual(['10.0.0.1', '10.0.0.4', '10.0.0.5', '10.0.0.8', '10.0.0.9', null]);
    expect(pool.free(4)).toBe(0);
    expect(pool.take(4)).toBeNull();
  });

  it('gives the lowest address again after a release', () => {
    const pool = new VipPool(parseRanges('198.19.7.0/28'));
    for (let i = 1; i <= 5; i++) expect(pool.take(4)).toBe(`198.19.7.${i}`);
    pool.release('198.19.7.4');
    pool.release('198.19.7.2');
    expect(pool.free(4)).toBe(11);
    expect(pool.take(4)).toBe('198.19.7.2');
    expect(pool.take(4)).toBe('198.19.7.4');
    expect(pool.take(4)).toBe('198.19.7.6');
  });

  it('moves the high-water mark down when the top addresses come back', () => {
    const pool = new VipPool(parseRanges('10.0.0.1-10.0.0.2,10.0.0.10-10.0.0.11'));
    for (let i = 0; i < 4; i++) pool.take(4);
    pool.release('10.0.0.10');
    pool.release('10.0.0.2');
    pool.release('10.0.0.11');
    expect(pool.free(4)).toBe(3);
    expect(pool.take(4)).toBe('10.0.0.2');
    expect(pool.take(4)).toBe('10.0.0.10');
    expect(pool.take(4)).toBe('10.0.0.11');
    expect(pool.take(4)).toBeNull();
  });

  it('refuses to release what it did not hand out', () => {
    const pool = new VipPool(parseRanges('10.0.0.0/29,fd00::/126'));
    const a = pool.take(4)!;
    expect(() => pool.release('10.0.0.2')).toThrow(/release "10.0.0.2": address is not taken/);
    expect(() => pool.release('10.9.9.9')).toThrow(/release "10.9.9.9": not an address of this pool/);
    expect(() => pool.release('fd00::9')).toThrow(/not an address of this pool/);
    expect(() => pool.release('fd00::1')).toThrow(/not taken/);
    expect(() => pool.release('nonsense')).toThrow(/release "nonsense": not an IPv4 or IPv6 address/);
    pool.release(a);
    expect(() => pool.release(a)).toThrow(PoolError);
  });

  it('accepts a released address in any spelling', () => {
    const pool = new VipPool(parseRanges('fd00:77::/64'));
    expect(pool.take(6)).toBe('fd00:77::1');
    pool.release('FD00:0077:0000::0001');
    expect(pool.free(6)).toBe(pool.size(6));
  });

  it('keeps IPv4 and IPv6 independent', () => {
    const pool = new VipPool(parseRanges('fd00:77::/127,10.0.0.1'));
    expect(pool.families()).toEqual([4, 6]);
    expect(pool.take(6)).toBe('fd00:77::');
    expect(pool.take(4)).toBe('10.0.0.1');
    expect(pool.take(4)).toBeNull();
    expect(pool.take(6)).toBe('fd00:77::1');
    expect(pool.take(6)).toBeNull();
    pool.release('10.0.0.1');
    expect(pool.free(4)).toBe(1);
    expect(pool.free(6)).toBe(0);
  });

  it('answers for a family it does not have', () => {
    const pool = new VipPool(parseRanges('10.0.0.0/30'));
    expect(pool.families()).toEqual([4]);
    expect(pool.size(6)).toBe(0);
    expect(pool.take(6)).toBeNull();
  });

  it('knows its addresses and routes', () => {
    const pool = new VipPool(parseRanges('198.19.7.0/28,10.0.0.3-10.0.0.10,fd00:77::/64'));
    expect(pool.contains('198.19.7.1')).toBe(true);
    expect(pool.contains('198.19.7.0')).toBe(false);
    expect(pool.contains('198.19.7.15')).toBe(false);
    expect(pool.contains('10.0.0.10')).toBe(true);
    expect(pool.contains('fd00:77::abcd')).toBe(true);
    expect(pool.contains('fd00:77::')).toBe(false);
    expect(pool.contains('bogus')).toBe(false);
    expect(pool.routes()).toEqual(['198.19.7.0/28', '10.0.0.3/32', '10.0.0.4/30', '10.0.0.8/31', '10.0.0.10/32', 'fd00:77::/64']);
  });

  it('caps the size of huge IPv6 ranges', () => {
    const pool = new VipPool(parseRanges('fd00:77::/64'));
    expect(pool.size(6)).toBe(Number.MAX_SAFE_INTEGER);
    expect(pool.free(6)).toBe(Number.MAX_SAFE_INTEGER);
    expect(new VipPool(parseRanges('fd00:77::/120')).size(6)).toBe(255);
  });

  it('takes 100000 addresses from a /64 without enumerating it', () => {
    // Enumerating a /64 would never finish: vitest's per-test timeout catches that.
    const pool = new VipPool(parseRanges('fd00:77::/64'));
    let last: string | null = null;
    for (let i = 0; i < 100_000; i++) last = pool.take(6);
    for (let i = 1; i <= 100_000; i += 2) pool.release(formatAddress(6, 0xfd000077000000000000000000000000n + BigInt(i)));
    const again = pool.take(6);
    expect(last).toBe('fd00:77::1:86a0');
    expect(again).toBe('fd00:77::1');
  });

  it('refuses overlapping ranges built by hand', () => {
    const [a] = parseRanges('10.0.0.0/29');
    const [b] = parseRanges('10.0.0.4/30');
    expect(() => new VipPool([a!, b!])).toThrow('pool "10.0.0.0/29,10.0.0.4/30": 10.0.0.4/30 overlaps 10.0.0.0/29');
  });

  it.each([
    [12345, '10.0.0.1-10.0.0.3,10.0.0.8/30,10.0.0.20,10.0.0.32/29', 4],
    [777, '10.1.0.0/24,10.2.0.7,10.2.0.9-10.2.0.60', 4],
    [4242, 'fd00:77::/120,fd00:78::5-fd00:78::40', 6],
  ] as const)('matches a simple model under random take/release (seed %i)', (seed0, spec, family) => {
    // Seeded LCG so a failure replays; phases lean to taking or to releasing, so the
    // pool fills, drains and the high-water mark moves both ways.
    let seed = seed0;
    const rand = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const all = parseRanges(spec)
      .flatMap((r) => {
        const out: bigint[] = [];
        for (let v = r.first; v <= r.last; v++) out.push(v);
        return out;
      })
      .sort((x, y) => (x < y ? -1 : 1));
    const pool = new VipPool(parseRanges(spec));
    const taken = new Set<bigint>();
    for (let step = 0; step < 8000; step++) {
      const takeBias = Math.floor(step / 500) % 2 === 0 ? 7 : 3;
      if (rand(10) < takeBias) {
        const expected = all.find((a) => !taken.has(a));
        expect(pool.take(family)).toBe(expected === undefined ? null : formatAddress(family, expected));
        if (expected !== undefined) taken.add(expected);
      } else if (taken.size > 0) {
        const list = [...taken];
        // Often give back the highest taken address, the case that lowers the high-water mark.
        const victim = rand(3) === 0 ? list.reduce((a, b) => (a > b ? a : b)) : list[rand(list.length)]!;
        const text = formatAddress(family, victim);
        pool.release(text);
        taken.delete(victim);
        expect(() => pool.release(text)).toThrow(PoolError);
      }
      expect(pool.free(family)).toBe(all.length - taken.size);
    }
  });

  it('stays correct when the high-water mark drops over many released addresses', () => {
    const pool = new VipPool(parseRanges('10.0.0.0/23'));
    const got: string[] = [];
    for (let i = 0; i < 400; i++) got.push(pool.take(4)!);
    // got[1] stays released below the still-taken got[2]; the odd ones above it wait in the
    // heap until the evens come back from the top down and the mark sweeps over them all.
    pool.release(got[1]!);
    for (let i = 3; i < 400; i += 2) pool.release(got[i]!);
    for (let i = 398; i >= 4; i -= 2) pool.release(got[i]!);
    expect(pool.free(4)).toBe(510 - 2);
    for (let i = 3; i < 400; i++) {
      expect(pool.take(4)).toBe(i === 3 ? got[1] : got[i - 1]);
    }
    expect(pool.take(4)).toBe(got[399]);
    expect(pool.take(4)).toBe('10.0.1.145');
    expect(pool.free(4)).toBe(510 - 401);
  });

  it('carries the message for an empty pool', () => {
    expect(NO_VIP_MESSAGE).toBe('No virtual IP address is available for this session, please contact your administrator.');
  });
});

describe('VipPool.takeAddress: taking an address by name', () => {
  it('takes a named address once, and take() then steps over it', () => {
    const pool = new VipPool(parseRanges('198.19.7.1-198.19.7.5'));
    expect(pool.takeAddress('198.19.7.3')).toBe(true);
    expect(pool.takeAddress('198.19.7.3')).toBe(false);
    expect(pool.isTaken('198.19.7.3')).toBe(true);
    expect(pool.free(4)).toBe(4);
    expect([pool.take(4), pool.take(4), pool.take(4), pool.take(4), pool.take(4)]).toEqual([
      '198.19.7.1',
      '198.19.7.2',
      '198.19.7.4',
      '198.19.7.5',
      null,
    ]);
    pool.release('198.19.7.3');
    expect(pool.take(4)).toBe('198.19.7.3');
  });

  it('refuses addresses outside the pool', () => {
    const pool = new VipPool(parseRanges('198.19.7.0/28'));
    expect(() => pool.takeAddress('198.19.8.1')).toThrow(/not an address of this pool/);
    expect(() => pool.takeAddress('bogus')).toThrow(/not an IPv4 or IPv6 address/);
  });

  it('keeps memory to what is taken, even far into a /64', () => {
    const pool = new VipPool(parseRanges('fd00:77::/64'));
    expect(pool.takeAddress('fd00:77::ffff:ffff:ffff:fff0')).toBe(true);
    expect(pool.take(6)).toBe('fd00:77::1');
    expect(pool.isTaken('fd00:77::ffff:ffff:ffff:fff0')).toBe(true);
  });

  // Random take / takeAddress / release against a model that lists every address.
  it('agrees with a set of taken addresses over random operations', () => {
    const spec = '198.19.7.1-198.19.7.6,198.19.7.10,198.19.7.20-198.19.7.23';
    const all = ['1', '2', '3', '4', '5', '6', '10', '20', '21', '22', '23'].map((h) => `198.19.7.${h}`);
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('take', 'name', 'release'), fc.nat(all.length - 1)), { maxLength: 80 }), (ops) => {
        const pool = new VipPool(parseRanges(spec));
        const taken = new Set<string>();
        for (const [op, k] of ops) {
          const a = all[k]!;
          if (op === 'take') {
            const got = pool.take(4);
            const lowest = all.find((x) => !taken.has(x)) ?? null;
            expect(got).toBe(lowest);
            if (got) taken.add(got);
          } else if (op === 'name') {
            expect(pool.takeAddress(a)).toBe(!taken.has(a));
            taken.add(a);
          } else if (taken.has(a)) {
            pool.release(a);
            taken.delete(a);
          }
          expect(pool.free(4)).toBe(all.length - taken.size);
          for (const x of all) expect(pool.isTaken(x)).toBe(taken.has(x));
        }
      }),
      { seed: 7, numRuns: 300 },
    );
  });
});
