// Unit tests for the Forwarder over in-memory devices: uplink, sessions, hairpin, detach, refused writes.
import { describe, it, expect } from 'vitest';
import { Forwarder, type Device } from '../../src/dataplane/forwarder.js';
import { DROP, Nat } from '../../src/nat/index.js';
import { SYN, ACK, addr, allOk, parse, tcpPacket, toHex, udpPacket } from './packets.js';

/** A device that records a copy of every packet written to it. */
class MemDevice implements Device {
  readonly packets: Uint8Array[] = [];
  accept = true;
  write(buf: Uint8Array, off: number, len: number): boolean {
    if (!this.accept) return false;
    this.packets.push(buf.slice(off, off + len));
    return true;
  }
}

const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const REMOTE = addr('203.0.113.9');

function setup(): { fw: Forwarder; nat: Nat; uplink: MemDevice; dev: MemDevice[] } {
  const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1 });
  const uplink = new MemDevice();
  const fw = new Forwarder(nat, uplink, 8);
  const dev: MemDevice[] = [];
  for (const k of [1, 2, 3]) {
    dev[k] = new MemDevice();
    fw.attach(k, dev[k], INNER, VIP(k));
  }
  return { fw, nat, uplink, dev };
}

/** A packet in a read buffer bigger than the packet, as a TUN read leaves it. */
function readBuf(p: Uint8Array): Uint8Array {
  const b = new Uint8Array(2048).fill(0xee);
  b.set(p);
  return b;
}

describe('Forwarder', () => {
  it('packets from a session reach the uplink, translated', () => {
    const { fw, uplink, dev } = setup();
    const p = tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN });
    fw.fromSession(2, readBuf(p), p.length, 100);
    expect(uplink.packets).toHaveLength(1);
    expect(toHex(uplink.packets[0]!)).toBe(toHex(tcpPacket(VIP(2), REMOTE, { sport: 40000, dport: 80, flags: SYN })));
    expect(dev.slice(1).every((d) => d.packets.length === 0)).toBe(true);
    expect(fw.counters.toUplink).toBe(1);
    expect(fw.counters.dropped).toBe(0);
  });

  it("packets from the uplink reach the right session's device", () => {
    const { fw, uplink, dev } = setup();
    for (const k of [3, 1, 2]) {
      const p = udpPacket(REMOTE, VIP(k), { sport: 53, dport: 5000 + k });
      fw.fromUplink(readBuf(p), p.length, 100);
    }
    for (const k of [1, 2, 3]) {
      expect(dev[k]!.packets).toHaveLength(1);
      const got = dev[k]!.packets[0]!;
      expect(parse(got).dst).toBe(INNER);
      expect(allOk(got)).toBe(true);
      expect(toHex(got)).toBe(toHex(udpPacket(REMOTE, INNER, { sport: 53, dport: 5000 + k })));
    }
    expect(uplink.packets).toHaveLength(0);
    expect(fw.counters.toSession).toBe(3);
  });

  it('hairpin goes session to session without touching the uplink', () => {
    const { fw, uplink, dev } = setup();
    const p = tcpPacket(INNER, VIP(3), { sport: 41000, dport: 22, flags: SYN });
    fw.fromSession(1, readBuf(p), p.length, 100);
    expect(uplink.packets).toHaveLength(0);
    expect(dev[3]!.packets).toHaveLength(1);
    expect(toHex(dev[3]!.packets[0]!)).toBe(toHex(tcpPacket(VIP(1), INNER, { sport: 41000, dport: 22, flags: SYN })));
    const r = tcpPacket(INNER, VIP(1), { sport: 22, dport: 41000, flags: SYN | ACK });
    fw.fromSession(3, readBuf(r), r.length, 101);
    expect(dev[1]!.packets).toHaveLength(1);
    expect(toHex(dev[1]!.packets[0]!)).toBe(toHex(tcpPacket(VIP(3), INNER, { sport: 22, dport: 41000, flags: SYN | ACK })));
    expect(fw.counters.toSession).toBe(2);
    expect(fw.counters.toUplink).toBe(0);
  });

  it('detach stops delivery both ways', () => {
    const { fw, nat, uplink, dev } = setup();
    fw.detach(2);
    const inbound = udpPacket(REMOTE, VIP(2), { sport: 53, dport: 5000 });
    fw.fromUplink(readBuf(inbound), inbound.length, 100);
    const outbound = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 });
    fw.fromSession(2, readBuf(outbound), outbound.length, 100);
    const hairpin = udpPacket(INNER, VIP(2), { sport: 5000, dport: 53 });
    fw.fromSession(1, readBuf(hairpin), hairpin.length, 100);
    expect(dev[2]!.packets).toHaveLength(0);
    expect(uplink.packets).toHaveLength(1); // the hairpin to a VIP no session holds any more goes out
    expect(fw.counters.dropped).toBe(2);
    expect(nat.counters.noSession).toBe(1);
    // The id and VIP can be attached again.
    const again = new MemDevice();
    fw.attach(2, again, INNER, VIP(2));
    fw.fromUplink(readBuf(inbound), inbound.length, 101);
    expect(again.packets).toHaveLength(1);
  });

  it('a session known to the translator but without a device counts noDevice', () => {
    const { fw, nat } = setup();
    nat.addSession(5, INNER, VIP(5)); // as if its device were just being swapped
    const p = udpPacket(REMOTE, VIP(5), { sport: 1, dport: 2 });
    fw.fromUplink(readBuf(p), p.length, 100);
    expect(fw.counters.noDevice).toBe(1);
    expect(fw.counters.toSession).toBe(0);
    expect(fw.counters.dropped).toBe(0);
  });

  it('counts drops and refused writes', () => {
    const { fw, uplink, dev } = setup();
    const garbage = new Uint8Array([0x45, 1, 2]);
    fw.fromSession(1, readBuf(garbage), garbage.length, 100);
    fw.fromUplink(readBuf(garbage), garbage.length, 100);
    expect(fw.counters.dropped).toBe(2);
    uplink.accept = false;
    const out = udpPacket(INNER, REMOTE, { sport: 1, dport: 2 });
    fw.fromSession(1, readBuf(out), out.length, 100);
    dev[1]!.accept = false;
    const inn = udpPacket(REMOTE, VIP(1), { sport: 2, dport: 1 });
    fw.fromUplink(readBuf(inn), inn.length, 100);
    expect(fw.counters.writeErrors).toBe(2);
    expect(fw.counters.toUplink + fw.counters.toSession).toBe(0);
    expect(fw.nat.fromUplink(new Uint8Array(0), 0, 0, 0)).toBe(DROP);
  });

  it('attach refuses a VIP already held and leaves no device behind', () => {
    const { fw } = setup();
    const d = new MemDevice();
    expect(() => fw.attach(4, d, INNER, VIP(1))).toThrow(/already held/);
    expect(fw.nat.sessionOf(VIP(1))).toBe(1);
  });
});

describe('Forwarder: REPLY (blockLocal)', () => {
  const LOCAL = addr('192.168.7.1');
  /** A read buffer as the worker's: room for a 64 KiB segment and its virtio header. */
  const big = (p: Uint8Array, at = 0): Uint8Array => {
    const b = new Uint8Array(65536 + 256).fill(0xee);
    b.set(p, at);
    return b;
  };
  function blocking(hdrLen: number): { fw: Forwarder; uplink: MemDevice; dev: MemDevice } {
    const nat = new Nat({ maxSession: 8, flowCapacity: 1024, seed: 1, blockLocal: true });
    nat.setLocalAddresses([LOCAL], []);
    const uplink = new MemDevice();
    const fw = new Forwarder(nat, uplink, 8, hdrLen);
    const dev = new MemDevice();
    fw.attach(2, dev, INNER, VIP(2));
    return { fw, uplink, dev };
  }

  it("writes the translator's reply to the session's own device, and counts it", () => {
    const { fw, uplink, dev } = blocking(0);
    const p = tcpPacket(INNER, LOCAL, { sport: 40000, dport: 22, flags: SYN });
    fw.fromSession(2, big(p), p.length, 100);
    expect(uplink.packets).toHaveLength(0);
    expect(dev.packets).toHaveLength(1);
    const r = dev.packets[0]!;
    expect(r.length).toBe(28 + p.length);
    expect([parse(r).src, parse(r).dst, r[20], r[21]]).toEqual([LOCAL, INNER, 3, 13]);
    expect(allOk(r)).toBe(true);
    expect(toHex(r.subarray(28))).toBe(toHex(p));
    expect(fw.counters.replies).toBe(1);
    expect([fw.counters.dropped, fw.counters.toUplink, fw.counters.toSession]).toEqual([0, 0, 0]);
    // Refused by the device, or no device: counted as such.
    dev.accept = false;
    fw.fromSession(2, big(p), p.length, 100);
    expect(fw.counters.writeErrors).toBe(1);
    fw.nat.addSession(3, INNER, VIP(3));
    fw.fromSession(3, big(p), p.length, 100);
    expect(fw.counters.noDevice).toBe(1);
    expect(fw.counters.replies).toBe(1);
  });

  it('with offloads: a GSO super-segment with a partial checksum is answered by a valid reply under a zeroed virtio header', () => {
    const HDR = 10;
    const { fw, dev } = blocking(HDR);
    const data = new Uint8Array(20000).map((_, i) => i & 0xff);
    const p = tcpPacket(INNER, LOCAL, { sport: 40000, dport: 22, flags: ACK, data });
    const vnet = new Uint8Array(HDR);
    vnet[0] = 1; // NEEDS_CSUM
    vnet[1] = 1; // GSO TCPv4
    vnet[2] = 40; // hdr_len
    vnet[4] = 1448 & 0xff; // gso_size
    vnet[5] = 1448 >> 8;
    vnet[6] = 20; // csum_start
    vnet[8] = 16; // csum_offset
    const b = big(new Uint8Array([...vnet, ...p]));
    fw.fromSession(2, b, HDR + p.length, 100);
    expect(dev.packets).toHaveLength(1);
    const w = dev.packets[0]!;
    expect(w.length).toBe(HDR + 576);
    expect(toHex(w.subarray(0, HDR))).toBe('00'.repeat(HDR));
    const r = w.subarray(HDR);
    expect(allOk(r)).toBe(true);
    expect(parse(r).totalLength).toBe(576);
    expect(toHex(r.subarray(28))).toBe(toHex(p.subarray(0, 548)));
    expect(fw.counters.replies).toBe(1);
  });
});
