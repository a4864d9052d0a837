// Unit tests for packets carrying a virtio_net_hdr with a checksum the device will finish (offloads).
import { describe, expect, it } from 'vitest';
import { Forwarder, type Device } from '../../src/dataplane/forwarder.js';
import { Nat } from '../../src/nat/index.js';
import {
  ACK,
  addr,
  addr6,
  mulberry32,
  onesSum,
  parse,
  parse6,
  pseudoHeader,
  pseudoHeader6,
  tcp6Packet,
  tcpPacket,
  udpPacket,
  u16,
  words6,
} from './packets.js';

const HDR = 10;
const INNER = addr('10.0.2.100');
const VIP = addr('198.19.0.1');
const SHARED = addr('198.18.0.1');
const REMOTE = addr('203.0.113.9');
const INNER6 = addr6('fd00:2::100');
const VIP6 = addr6('fd00:19:7::1');
const REMOTE6 = addr6('2001:db8::9');

class MemDevice implements Device {
  readonly packets: Uint8Array[] = [];
  write(buf: Uint8Array, off: number, len: number): boolean {
    this.packets.push(buf.slice(off, off + len));
    return true;
  }
}

/**
 * What the kernel hands over with NEEDS_CSUM: the virtio header (csum_start =
 * transport offset, csum_offset = the field's place in it) and, in the
 * checksum field, the uncomplemented pseudo-header sum; `junk` in the rest of
 * the field's bytes is what the device overwrites anyway, so the data stays as is.
 */
function partial(p: Uint8Array, l4: number, fieldOff: number, pseudo: Uint8Array, gsoType = 0, gsoSize = 0): Uint8Array {
  const b = new Uint8Array(HDR + p.length);
  b.set(p, HDR);
  b[0] = 1; // NEEDS_CSUM
  b[1] = gsoType;
  b[4] = gsoSize & 0xff;
  b[5] = gsoSize >>> 8;
  b[6] = l4 & 0xff;
  b[7] = l4 >>> 8;
  b[8] = fieldOff;
  const at = HDR + l4 + fieldOff;
  const s = onesSum([pseudo]);
  b[at] = s >>> 8;
  b[at + 1] = s & 0xff;
  return b;
}

/** Finishes a partial checksum as the device would: sum from csum_start, complement, store. */
function finish(b: Uint8Array): Uint8Array {
  const out = b.slice(HDR);
  const start = u16le(b, 6);
  const at = start + u16le(b, 8);
  const c = ~onesSum([out.subarray(start)]) & 0xffff;
  out[at] = c >>> 8;
  out[at + 1] = c & 0xff;
  return out;
}

function u16le(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}

/** True when an IPv4 packet's transport checksum verifies from scratch. */
function ok4(p: Uint8Array): boolean {
  const h = parse(p);
  const seg = p.subarray(h.ihl, h.totalLength);
  return onesSum([pseudoHeader(h.src, h.dst, h.proto, seg.length), seg]) === 0xffff;
}

function ok6(p: Uint8Array): boolean {
  const h = parse6(p);
  const seg = p.subarray(h.l4, h.end);
  return onesSum([pseudoHeader6(p.subarray(8, 24), p.subarray(24, 40), h.proto, seg.length), seg]) === 0xffff;
}

function setup(shared = false): { fw: Forwarder; nat: Nat; uplink: MemDevice; dev: MemDevice } {
  const nat = new Nat({
    maxSession: 4,
    flowCapacity: 1024,
    seed: 7,
    ...(shared ? { shared: { address: SHARED, portLo: 61000, portHi: 65534 } } : {}),
  });
  const uplink = new MemDevice();
  const fw = new Forwarder(nat, uplink, 4, HDR);
  const dev = new MemDevice();
  if (shared) fw.attach(1, dev, INNER, -1, null, null, true);
  else fw.attach(1, dev, INNER, VIP, words6(INNER6), words6(VIP6));
  return { fw, nat, uplink, dev };
}

describe('partial checksums (virtio NEEDS_CSUM)', () => {
  it('NAT mode: a TSO segment out and its reply in finish to correct checksums', () => {
    const next = mulberry32(11);
    const rand = (): number => next() / 2 ** 32;
    for (let i = 0; i < 200; i++) {
      const { fw, uplink, dev } = setup();
      const data = new Uint8Array(1 + Math.floor(rand() * 3000)).map(() => Math.floor(rand() * 256));
      const sport = 1024 + Math.floor(rand() * 60000);
      const out = tcpPacket(INNER, REMOTE, { sport, dport: 443, flags: ACK, data });
      const b = partial(out, 20, 16, pseudoHeader(INNER, REMOTE, 6, out.length - 20), 1, 1448);
      fw.fromSession(1, b, b.length, 1);
      const sent = uplink.packets[0]!;
      expect(Array.from(sent.subarray(0, HDR))).toEqual(Array.from(b.subarray(0, HDR))); // header travels unchanged
      const done = finish(sent);
      expect(parse(done).src).toBe(VIP);
      expect(ok4(done)).toBe(true);

      const back = tcpPacket(REMOTE, VIP, { sport: 443, dport: sport, flags: ACK, data });
      const r = partial(back, 20, 16, pseudoHeader(REMOTE, VIP, 6, back.length - 20));
      fw.fromUplink(r, r.length, 1);
      const got = finish(dev.packets[0]!);
      expect(parse(got).dst).toBe(INNER);
      expect(ok4(got)).toBe(true);
    }
  });

  it('NAT mode over IPv6: the partial sum follows the address change', () => {
    const { fw, uplink } = setup();
    const out = tcp6Packet(INNER6, REMOTE6, { sport: 40000, dport: 443, flags: ACK, data: new Uint8Array(999).fill(7) });
    const b = partial(out, 40, 16, pseudoHeader6(INNER6, REMOTE6, 6, out.length - 40), 4, 1428);
    fw.fromSession(1, b, b.length, 1);
    const done = finish(uplink.packets[0]!);
    expect(Array.from(done.subarray(8, 24))).toEqual(Array.from(VIP6));
    expect(ok6(done)).toBe(true);
  });

  it('shared mode: ports change but the partial sum only follows the address', () => {
    const { fw, uplink, dev } = setup(true);
    const out = udpPacket(INNER, REMOTE, { sport: 5353, dport: 53, data: new Uint8Array(100).fill(1) });
    const b = partial(out, 20, 6, pseudoHeader(INNER, REMOTE, 17, out.length - 20));
    fw.fromSession(1, b, b.length, 1);
    const done = finish(uplink.packets[0]!);
    const h = parse(done);
    expect(h.src).toBe(SHARED);
    const oport = u16(done, 20);
    expect(oport).toBeGreaterThanOrEqual(61000);
    expect(ok4(done)).toBe(true);

    const back = udpPacket(REMOTE, SHARED, { sport: 53, dport: oport, data: new Uint8Array(100).fill(2) });
    const r = partial(back, 20, 6, pseudoHeader(REMOTE, SHARED, 17, back.length - 20));
    fw.fromUplink(r, r.length, 1);
    const got = finish(dev.packets[0]!);
    expect(parse(got).dst).toBe(INNER);
    expect(u16(got, 22)).toBe(5353);
    expect(ok4(got)).toBe(true);
  });

  it('drops a packet whose virtio header points its checksum outside the packet', () => {
    const { fw, uplink } = setup();
    const out = tcpPacket(INNER, REMOTE, { sport: 1, dport: 2, flags: ACK });
    const b = partial(out, 20, 16, pseudoHeader(INNER, REMOTE, 6, out.length - 20));
    b[6] = 0xff; // csum_start far past the end
    fw.fromSession(1, b, b.length, 1);
    expect(uplink.packets).toHaveLength(0);
    expect(fw.counters.dropped).toBe(1);
  });

  it('a packet without NEEDS_CSUM behind a virtio header is translated as usual', () => {
    const { fw, uplink } = setup();
    const out = tcpPacket(INNER, REMOTE, { sport: 1, dport: 2, flags: ACK });
    const b = new Uint8Array(HDR + out.length);
    b.set(out, HDR);
    fw.fromSession(1, b, b.length, 1);
    expect(ok4(uplink.packets[0]!.subarray(HDR))).toBe(true);
  });
});
