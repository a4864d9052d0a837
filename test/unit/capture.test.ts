// Unit tests for captures: the ring (order, wrap, full means counted), pcapng blocks, the Forwarder's tap, and reading flows.
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { Forwarder, type Device } from '../../src/dataplane/forwarder.js';
import {
  EPB_INBOUND,
  EPB_OUTBOUND,
  enhancedPacket,
  interfaceDescription,
  interfaceStatistics,
  sectionHeader,
} from '../../src/dataplane/pcapng.js';
import { CaptureRing, DIR_IN, DIR_OUT, RECORD_HEADER, SIDE_INNER, SIDE_OUTER, type RingRecord } from '../../src/dataplane/ring.js';
import { Tap, TapControl } from '../../src/dataplane/tap.js';
import { Captures } from '../../src/gateway/capture.js';
import { countFlows, flowsPerSession, listFlows, Nat } from '../../src/nat/index.js';
import { PcapngTally, socketRows } from '../../src/cli/commands/observe.js';
import { si, topRows } from '../../src/cli/commands/top.js';
import { SYN, addr, tcpPacket, toHex, udpPacket } from './packets.js';

function ring(bytes = 4096, maxSession = 4): CaptureRing {
  return new CaptureRing(new SharedArrayBuffer(CaptureRing.bytesFor(bytes, maxSession)), bytes, maxSession);
}

function drainAll(r: CaptureRing): { slot: number; side: number; direction: number; ts: number; data: string; origLen: number }[] {
  const out: { slot: number; side: number; direction: number; ts: number; data: string; origLen: number }[] = [];
  r.drain((x: RingRecord) =>
    out.push({ slot: x.slot, side: x.side, direction: x.direction, ts: x.timestamp, data: toHex(x.data), origLen: x.origLen }),
  );
  return out;
}

describe('CaptureRing', () => {
  it('gives back what went in, in order, with its fields and a snaplen cut', () => {
    const r = ring();
    const a = new Uint8Array([1, 2, 3, 4, 5]);
    const b = new Uint8Array(100).fill(7);
    expect(r.push(3, SIDE_INNER, DIR_IN, 1_700_000_000_123_456, a, 0, 5, 262144)).toBe(true);
    expect(r.push(0, SIDE_OUTER, DIR_OUT, 1_700_000_000_123_999, b, 10, 90, 16)).toBe(true);
    const got = drainAll(r);
    expect(got).toEqual([
      { slot: 3, side: SIDE_INNER, direction: DIR_IN, ts: 1_700_000_000_123_456, data: toHex(a), origLen: 5 },
      { slot: 0, side: SIDE_OUTER, direction: DIR_OUT, ts: 1_700_000_000_123_999, data: toHex(b.subarray(10, 26)), origLen: 90 },
    ]);
    expect(r.pending).toBe(false);
  });

  it('leaves a packet out when full, counts it by slot and side, and takes packets again once drained', () => {
    const r = ring(1024);
    const p = new Uint8Array(200);
    let pushed = 0;
    while (r.push(2, SIDE_OUTER, DIR_IN, 1, p, 0, 200, 262144)) pushed++;
    expect(pushed).toBe(Math.floor((1024 - 1) / (RECORD_HEADER + 200 + 16)));
    expect(r.dropped[2 * 2 + SIDE_OUTER]).toBe(1);
    expect(r.push(1, SIDE_INNER, DIR_IN, 1, p, 0, 200, 262144)).toBe(false);
    expect(r.dropped[1 * 2 + SIDE_INNER]).toBe(1);
    expect(drainAll(r)).toHaveLength(pushed);
    expect(r.push(2, SIDE_OUTER, DIR_IN, 1, p, 0, 200, 262144)).toBe(true);
  });

  it('keeps order and content across wraps, whatever the sizes and interleaving (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.integer({ min: 0, max: 600 }), fc.boolean()), { minLength: 1, maxLength: 300 }), (ops) => {
        const r = ring(2048);
        const expected: string[] = [];
        let seq = 0;
        let dropped = 0;
        for (const [len, drain] of ops) {
          const p = new Uint8Array(len).map((_, i) => (seq + i) & 0xff);
          if (r.push(1, seq & 1, DIR_IN, seq, p, 0, len, 262144)) expected.push(`${seq}:${toHex(p)}`);
          else dropped++;
          seq++;
          if (drain) {
            const got = drainAll(r).map((x) => `${x.ts}:${x.data}`);
            expect(got).toEqual(expected.splice(0, got.length));
            expect(expected).toEqual([]);
          }
        }
        const got = drainAll(r).map((x) => `${x.ts}:${x.data}`);
        expect(got).toEqual(expected);
        expect(r.dropped[2]! + r.dropped[3]!).toBe(dropped);
      }),
      { seed: 14, numRuns: 200 },
    );
  });
});

describe('CaptureRing records are pcapng blocks', () => {
  it('holds each packet as an Enhanced Packet Block a file can take as it is', () => {
    const r = ring();
    const p = new Uint8Array([0x45, 0, 0, 5, 9]);
    r.push(2, SIDE_OUTER, DIR_OUT, 1_700_000_000_000_007, p, 0, 5, 262144);
    let block: Buffer | null = null;
    r.drain((x) => (block = Buffer.from(r.memory, r.dataOffset + x.blockAt, x.blockLen)));
    const b = block!;
    expect(toHex(b)).toBe(toHex(enhancedPacket(SIDE_OUTER, 1_700_000_000_000_007, p, 5, EPB_OUTBOUND)));
  });

  it('publishes a staged record under the slot it turns out to be, and forgets one never published', () => {
    const r = ring();
    const p = new Uint8Array(40).fill(1);
    expect(r.stage(0, SIDE_OUTER, DIR_IN, 5, p, 0, 40, 262144)).toBe(true);
    r.publish(3);
    expect(r.stage(0, SIDE_OUTER, DIR_IN, 6, p, 0, 40, 262144)).toBe(true); // nobody's: never published
    expect(r.push(1, SIDE_INNER, DIR_OUT, 7, p, 0, 40, 262144)).toBe(true);
    expect(drainAll(r).map((x) => [x.slot, x.side, x.direction, x.ts])).toEqual([
      [3, SIDE_OUTER, DIR_IN, 5],
      [1, SIDE_INNER, DIR_OUT, 7],
    ]);
    r.leftOut(4, SIDE_OUTER);
    expect(r.dropped[4 * 2 + SIDE_OUTER]).toBe(1);
  });

  it('keeps what was read until it is freed', () => {
    const r = ring(1024);
    const p = new Uint8Array(200);
    let n = 0;
    while (r.push(1, SIDE_INNER, DIR_IN, n, p, 0, 200, 262144)) n++;
    expect(r.read(() => undefined)).toBe(n);
    expect(r.push(1, SIDE_INNER, DIR_IN, 99, p, 0, 200, 262144)).toBe(false); // read, not freed: no room yet
    r.free();
    expect(r.push(1, SIDE_INNER, DIR_IN, 99, p, 0, 200, 262144)).toBe(true);
  });
});

describe('pcapng blocks', () => {
  it('lays out each block with its length at both ends, 32-bit aligned', () => {
    const blocks = [
      sectionHeader('vipnat test', 'hw', 'Linux'),
      interfaceDescription('eth0', 'inside', 262144),
      enhancedPacket(0, 1_700_000_000_000_001, new Uint8Array([0x45, 1, 2]), 60, EPB_INBOUND),
      interfaceStatistics(1, 1, 2, { received: 10, dropped: 3, delivered: 7 }),
    ];
    for (const b of blocks) {
      expect(b.length % 4).toBe(0);
      expect(b.readUInt32LE(4)).toBe(b.length);
      expect(b.readUInt32LE(b.length - 4)).toBe(b.length);
    }
    const epb = blocks[2]!;
    expect(epb.readUInt32LE(0)).toBe(6);
    expect(epb.readUInt32LE(12) * 2 ** 32 + epb.readUInt32LE(16)).toBe(1_700_000_000_000_001);
    expect(epb.readUInt32LE(20)).toBe(3); // captured
    expect(epb.readUInt32LE(24)).toBe(60); // original
    expect(epb.readUInt32LE(32 + 4)).toBe(EPB_INBOUND); // epb_flags after the padded data
    // What `vipnat capture` reads back from the stream: packets, and isb_ifdrop.
    const t = new PcapngTally();
    const all = Buffer.concat(blocks);
    for (let i = 0; i < all.length; i += 7) t.push(all.subarray(i, i + 7));
    expect(t).toMatchObject({ packets: 1, leftOut: 3 });
    expect(EPB_OUTBOUND).toBe(2);
  });
});

const INNER = addr('10.0.2.100');
const VIP1 = addr('198.19.0.1');
const REMOTE = addr('203.0.113.9');

class MemDevice implements Device {
  readonly packets: Uint8Array[] = [];
  write(buf: Uint8Array, off: number, len: number): boolean {
    this.packets.push(buf.slice(off, off + len));
    return true;
  }
}

function tapRig(): { fw: Forwarder; control: TapControl; ring: CaptureRing; dev: MemDevice; nat: Nat } {
  const nat = new Nat({ maxSession: 4, flowCapacity: 1024, seed: 1 });
  const control = new TapControl(TapControl.memory(4));
  const r = ring(1 << 16);
  const dev = new MemDevice();
  const fw = new Forwarder(nat, new MemDevice(), 4, 0, undefined, undefined, new Tap(control, r));
  fw.attach(1, dev, INNER, VIP1);
  fw.attach(2, new MemDevice(), INNER, addr('198.19.0.2'));
  return { fw, control, ring: r, dev, nat };
}

describe("the Forwarder's tap", () => {
  it('copies nothing while no capture runs', () => {
    const { fw, ring: r } = tapRig();
    const p = tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN });
    fw.fromSession(1, p.slice(), p.length, 100);
    expect(r.pending).toBe(false);
  });

  it("copies a captured session's packets on both sides of the translation, and no other session's", () => {
    const { fw, control, ring: r } = tapRig();
    control.set(false, [1], 262144);
    const out = tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN });
    fw.fromSession(1, out.slice(), out.length, 100);
    const other = tcpPacket(INNER, REMOTE, { sport: 40001, dport: 80, flags: SYN });
    fw.fromSession(2, other.slice(), other.length, 100);
    const back = udpPacket(REMOTE, VIP1, { sport: 53, dport: 5000 });
    fw.fromSession(1, udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }), 28, 100);
    fw.fromUplink(back.slice(), back.length, 100);
    const got = drainAll(r);
    expect(got.map((g) => [g.slot, g.side, g.direction])).toEqual([
      [1, SIDE_INNER, DIR_IN],
      [1, SIDE_OUTER, DIR_OUT],
      [1, SIDE_INNER, DIR_IN],
      [1, SIDE_OUTER, DIR_OUT],
      [1, SIDE_OUTER, DIR_IN],
      [1, SIDE_INNER, DIR_OUT],
    ]);
    // The inner view has the session's own address, the outer its VIP.
    expect(got[0]!.data).toBe(toHex(out));
    expect(got[1]!.data).toBe(toHex(tcpPacket(VIP1, REMOTE, { sport: 40000, dport: 80, flags: SYN })));
    expect(got[4]!.data).toBe(toHex(back));
    expect(got[5]!.data).toBe(toHex(udpPacket(REMOTE, INNER, { sport: 53, dport: 5000 })));
  });

  it("the uplink's capture takes every session and what is no session's", () => {
    const { fw, control, ring: r } = tapRig();
    control.set(true, [], 64);
    const stray = udpPacket(REMOTE, addr('198.19.0.9'), { sport: 53, dport: 5000, data: new Uint8Array(200) });
    fw.fromUplink(stray.slice(), stray.length, 100);
    const p = tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN });
    fw.fromSession(2, p.slice(), p.length, 100);
    const got = drainAll(r);
    expect(got.map((g) => [g.slot, g.side])).toEqual([
      [0, SIDE_OUTER],
      [2, SIDE_INNER],
      [2, SIDE_OUTER],
    ]);
    expect(got[0]!.data.length / 2).toBe(64); // the snaplen
    expect(got[0]!.origLen).toBe(stray.length);
    control.set(false, [], 0);
    fw.fromSession(2, p.slice(), p.length, 100);
    expect(r.pending).toBe(false);
  });
});

describe('reading the flow tables', () => {
  it('lists a flow with its inner and outer sides, and counts it by state and session', () => {
    const { fw, nat } = tapRig();
    const p = tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN });
    fw.fromSession(1, p.slice(), p.length, 100);
    const flows = listFlows(nat, null, 100);
    expect(flows).toEqual([
      {
        session: 1,
        family: 4,
        proto: 'tcp',
        state: 'syn-out',
        loopback: false,
        inner: { local: { address: '10.0.2.100', port: 40000 }, remote: { address: '203.0.113.9', port: 80 } },
        outer: { local: { address: '198.19.0.1', port: 40000 }, remote: { address: '203.0.113.9', port: 80 } },
        expiresIn: expect.any(Number) as number,
      },
    ]);
    expect(listFlows(nat, new Set([2]), 100)).toEqual([]);
    expect(countFlows(nat)).toEqual([{ family: 4, proto: 'tcp', state: 'syn-out', flows: 1 }]);
    expect(flowsPerSession(nat, 4)).toEqual([0, 1, 0, 0, 0]);
  });
});

describe('sockets and top, as shown', () => {
  it("joins a session's kernel sockets to its flows by the session's view, and keeps flows no socket holds", () => {
    const ep = (address: string, port: number): { address: string; port: number } => ({ address, port });
    const rows = socketRows({
      id: 3,
      vip: '198.19.0.3',
      vip6: null,
      netns: 'ns',
      kernel: [
        {
          proto: 'tcp',
          family: 4,
          state: 'LISTEN',
          local: ep('0.0.0.0', 9000),
          remote: ep('0.0.0.0', 0),
          inode: 1,
          uid: 0,
          recvQ: 0,
          sendQ: 5,
          processes: [{ pid: 10, name: 'agent' }],
        },
        {
          proto: 'tcp',
          family: 6,
          state: 'ESTAB',
          local: ep('::ffff:10.0.2.100', 9000),
          remote: ep('::ffff:203.0.113.9', 5555),
          inode: 2,
          uid: 0,
          recvQ: 0,
          sendQ: 0,
          processes: [{ pid: 11, name: 'agent' }],
        },
      ],
      flows: [
        {
          session: 3,
          family: 4,
          proto: 'tcp',
          state: 'established',
          loopback: false,
          inner: { local: ep('10.0.2.100', 9000), remote: ep('203.0.113.9', 5555) },
          outer: { local: ep('198.19.0.3', 9000), remote: ep('203.0.113.9', 5555) },
          expiresIn: 7000,
        },
        {
          session: 3,
          family: 4,
          proto: 'icmp',
          state: 'icmp',
          loopback: false,
          inner: { local: ep('10.0.2.100', 7), remote: ep('203.0.113.9', 7) },
          outer: { local: ep('198.19.0.3', 7), remote: ep('203.0.113.9', 7) },
          expiresIn: 50,
        },
      ],
    });
    expect(rows.map((r) => [r.state, r.kernel, r.outside?.local.address ?? null, r.flow?.state ?? null])).toEqual([
      ['LISTEN', true, null, null],
      ['ESTAB', true, '198.19.0.3', 'established'],
      ['-', false, '198.19.0.3', 'icmp'],
    ]);
  });

  it('ranks sessions by bits per second between two samples', () => {
    const s = (id: number, bytes: number, packets: number) => ({
      id,
      labels: {},
      vip: `198.19.0.${id}`,
      vip6: null,
      shared: false,
      loopback: null,
      netns: 'n',
      pids: [],
      state: 'running' as const,
      attached: false,
      startedAt: '',
      packets: { in: packets, out: 0 },
      bytes: { in: bytes, out: 0 },
      dropped: 0,
      flows: 1,
    });
    const rows = topRows(
      { at: 0, sessions: [s(1, 0, 0), s(2, 0, 0)], stats: null },
      { at: 2000, sessions: [s(1, 1000, 10), s(2, 5000, 4), s(3, 10, 1)], stats: null },
    );
    expect(rows.map((r) => [r.id, r.bps, r.pps])).toEqual([
      [2, 20000, 2],
      [1, 4000, 5],
      [3, 40, 0.5],
    ]);
    expect([si(0), si(999), si(1234), si(123456), si(9.87e9)]).toEqual(['0', '999', '1.2k', '123k', '9.9G']);
  });
});

describe('Captures: the pump from the rings to the sinks', () => {
  /** A TapControl that counts what the workers are told. */
  class CountingControl extends TapControl {
    sets = 0;
    override set(all: boolean, slots: Iterable<number>, snaplen: number): void {
      this.sets++;
      super.set(all, slots, snaplen);
    }
  }
  /** A sink that keeps what it is given; `stuck` ones never say a write is done. */
  const sink = (stuck = false) => {
    const s = {
      chunks: [] as Buffer[],
      destroyed: false,
      writableLength: 0,
      write(b: Buffer, cb?: (e?: Error | null) => void): boolean {
        s.chunks.push(Buffer.from(b));
        if (cb && !stuck) setImmediate(() => cb());
        return true;
      },
      on: () => s,
      destroy: () => void (s.destroyed = true),
    };
    return s;
  };
  const packet = new Uint8Array(60).fill(0x45);

  it('tells the workers what to capture only when that changes, not on every turn', async () => {
    const control = new CountingControl(TapControl.memory(4));
    const r = ring(1 << 16);
    const caps = new Captures(control, [r]);
    const cap = caps.start({ session: 1, slot: 1 }, sink(), { version: 't' }, { inner: 'eth0', outer: 'vipnat0' });
    expect(control.sets).toBe(1);
    for (let k = 0; k < 5; k++) {
      r.push(1, SIDE_INNER, DIR_IN, Date.now() * 1000 + 1e6, packet, 0, 60, 262144);
      await new Promise((res) => setTimeout(res, 10));
    }
    expect(cap.packets).toBe(5);
    expect(control.sets).toBe(1);
    cap.stop();
    expect((await cap.done).reason).toBe('stopped');
  });

  it('drops a sink that takes nothing for ten seconds, and the other captures go on', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    try {
      const r = ring(1 << 16);
      const caps = new Captures(new TapControl(TapControl.memory(4)), [r]);
      const stuck = sink(true);
      const fine = sink();
      const a = caps.start({ session: 1, slot: 1 }, stuck, { version: 't' }, { inner: 'eth0', outer: 'vipnat0' });
      const b = caps.start('uplink', fine, { version: 't' }, { inner: 'sessions', outer: 'vipnat0' });
      r.push(1, SIDE_INNER, DIR_IN, Date.now() * 1000 + 1e6, packet, 0, 60, 262144);
      await new Promise((res) => setImmediate(res));
      await new Promise((res) => setImmediate(res));
      const before = fine.chunks.length;
      await vi.advanceTimersByTimeAsync(10_000);
      expect(stuck.destroyed).toBe(true);
      expect((await a.done).reason).toBe('sink-error');
      r.push(2, SIDE_INNER, DIR_IN, Date.now() * 1000 + 2e6, packet, 0, 60, 262144);
      await vi.advanceTimersByTimeAsync(50);
      expect(fine.chunks.length).toBeGreaterThan(before);
      b.stop();
      await vi.advanceTimersByTimeAsync(50);
      expect((await b.done).reason).toBe('stopped');
    } finally {
      vi.useRealTimers();
    }
  });
});
