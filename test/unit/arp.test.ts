// ARP (wire/arp.ts) and neighbour discovery (wire/ndp.ts): the messages vipnat probes and announces on-link VIPs with.
import { describe, expect, it } from 'vitest';
import {
  ARP_LEN,
  ARP_REPLY,
  ARP_REQUEST,
  finish,
  ICMP6_NEIGHBOR_ADVERT,
  ICMP6_NEIGHBOR_SOLICIT,
  multicastMac,
  NA_OVERRIDE,
  NDP_LEN,
  pseudoSum6,
  readArp,
  readNeighborAdvert,
  solicitedNode,
  sum,
  writeArp,
  writeNdp,
} from '../../src/wire/index.js';

const MAC = Uint8Array.from([0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]);
const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const v6 = (groups: number[]): Uint8Array => {
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[2 * i] = g >>> 8;
    out[2 * i + 1] = g & 0xff;
  });
  return out;
};
const LL = v6([0xfe80, 0, 0, 0, 0x18e2, 0xccff, 0xfeda, 0x7e88]);
const TARGET = v6([0xfd00, 0x100, 0, 0, 0, 0, 0x12, 0x3456]);

describe('ARP', () => {
  it('writes a request as RFC 826 lays it out, and reads it back', () => {
    const b = new Uint8Array(64);
    expect(writeArp(b, 4, ARP_REQUEST, MAC, 0xc6126401, null, 0xc6126441)).toBe(ARP_LEN);
    expect(hex(b.subarray(4, 4 + ARP_LEN))).toBe(
      '0001' + '0800' + '06' + '04' + '0001' + hex(MAC) + 'c6126401' + '000000000000' + 'c6126441',
    );
    const m = readArp(b, 4, ARP_LEN)!;
    expect(m.op).toBe(ARP_REQUEST);
    expect(hex(m.sha)).toBe(hex(MAC));
    expect(m.spa).toBe(0xc6126401);
    expect(m.tpa).toBe(0xc6126441);
  });

  it('writes a gratuitous ARP (sender and target the VIP) and a reply with its target hardware address', () => {
    const b = new Uint8Array(ARP_LEN);
    writeArp(b, 0, ARP_REQUEST, MAC, 0xc6126441, null, 0xc6126441);
    expect(readArp(b, 0, ARP_LEN)).toMatchObject({ op: ARP_REQUEST, spa: 0xc6126441, tpa: 0xc6126441 });
    const other = Uint8Array.from([1, 2, 3, 4, 5, 6]);
    writeArp(b, 0, ARP_REPLY, MAC, 1, other, 2);
    expect(hex(readArp(b, 0, ARP_LEN)!.tha)).toBe(hex(other));
  });

  it('reads nothing but IPv4 over Ethernet, whole', () => {
    const b = new Uint8Array(ARP_LEN);
    writeArp(b, 0, ARP_REQUEST, MAC, 1, null, 2);
    expect(readArp(b, 0, ARP_LEN - 1)).toBeNull();
    for (const [at, v] of [
      [1, 6], // hardware type 6 (IEEE 802)
      [2, 0x86], // protocol type 0x86dd
      [4, 8], // hardware length
      [5, 16], // protocol length
    ] as const) {
      const c = b.slice();
      c[at] = v;
      expect(readArp(c, 0, ARP_LEN), `byte ${at}`).toBeNull();
    }
  });
});

describe('neighbour discovery', () => {
  it('gives the solicited-node group and its Ethernet multicast address (RFC 4291, RFC 2464)', () => {
    expect(hex(solicitedNode(TARGET))).toBe('ff02' + '0'.repeat(18) + '01ff' + '123456');
    expect(hex(multicastMac(solicitedNode(TARGET)))).toBe('3333ff123456');
  });

  it('writes a solicitation with hop limit 255, a source link-layer option and a right checksum', () => {
    const b = new Uint8Array(128);
    const group = solicitedNode(TARGET);
    expect(writeNdp(b, LL, group, TARGET, MAC, null)).toBe(NDP_LEN);
    expect(b[0]! >>> 4).toBe(6);
    expect(b[6]).toBe(58);
    expect(b[7]).toBe(255);
    expect((b[4]! << 8) | b[5]!).toBe(NDP_LEN - 40);
    expect(hex(b.subarray(8, 24))).toBe(hex(LL));
    expect(hex(b.subarray(24, 40))).toBe(hex(group));
    expect(b[40]).toBe(ICMP6_NEIGHBOR_SOLICIT);
    expect(hex(b.subarray(48, 64))).toBe(hex(TARGET));
    expect(hex(b.subarray(64, 72))).toBe('0101' + hex(MAC));
    expect(finish(sum(b, 40, NDP_LEN - 40, pseudoSum6(b, 0, NDP_LEN - 40, 58)))).toBe(0);
    // A solicitation is not an advertisement.
    expect(readNeighborAdvert(b, NDP_LEN)).toBeNull();
  });

  it('writes an unsolicited advertisement (override, target link-layer option) that reads back', () => {
    const b = new Uint8Array(NDP_LEN);
    const all = v6([0xff02, 0, 0, 0, 0, 0, 0, 1]);
    writeNdp(b, LL, all, TARGET, MAC, NA_OVERRIDE);
    expect(b[40]).toBe(ICMP6_NEIGHBOR_ADVERT);
    expect(b[44]).toBe(NA_OVERRIDE);
    expect(hex(b.subarray(64, 72))).toBe('0201' + hex(MAC));
    const a = readNeighborAdvert(b, NDP_LEN)!;
    expect(hex(a.target)).toBe(hex(TARGET));
    expect(a.flags).toBe(NA_OVERRIDE);
  });

  it('reads no advertisement with a wrong checksum, a hop limit below 255, or cut short', () => {
    const b = new Uint8Array(NDP_LEN);
    writeNdp(b, LL, LL, TARGET, MAC, NA_OVERRIDE);
    const bad = b.slice();
    bad[60]! ^= 1;
    expect(readNeighborAdvert(bad, NDP_LEN)).toBeNull();
    const hop = b.slice();
    hop[7] = 64;
    expect(readNeighborAdvert(hop, NDP_LEN)).toBeNull();
    expect(readNeighborAdvert(b, 60)).toBeNull();
  });
});
