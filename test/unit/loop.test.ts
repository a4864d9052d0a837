// Unit tests for the dataplane loop: the real Loop over in-memory TUN pairs, driven through its control messages.
import { describe, expect, it, vi } from 'vitest';
import { Forwarder, SESSION_COUNTERS, type Lock } from '../../src/dataplane/forwarder.js';
import { BATCH, Loop, WAIT_MS } from '../../src/dataplane/loop.js';
import type { FromWorker, SessionAddresses, WorkerStats } from '../../src/dataplane/protocol.js';
import { Nat } from '../../src/nat/index.js';
import { MemControl, MemPoller, MemTun, MemWake, type MemSource } from './memtun.js';
import { ACK, SYN, addr, addr6, parse, tcpPacket, toHex, udp6Packet, udpPacket, words6 } from './packets.js';

const INNER = addr('10.0.2.100');
const VIP = (k: number): number => addr(`198.19.0.${k}`);
const REMOTE = addr('203.0.113.9');
const LOCAL = addr('192.168.7.1');
const EIO = 5;
const MAX_SESSION = 8;

/** A lock that counts how deep it is held, so a test can see what ran under it. */
class DepthLock implements Lock {
  depth = 0;
  lock(): void {
    this.depth++;
  }
  unlock(): void {
    this.depth--;
  }
}

interface RigOptions {
  index?: number;
  hdrLen?: number;
  blockLocal?: boolean;
}

/**
 * One worker's loop as worker.ts builds it, with memory in place of the
 * kernel: a translator, a Forwarder writing to the uplink pair, an
 * in-memory poller, wake-up and control channel, and a clock the test sets.
 */
class Rig {
  readonly nat: Nat;
  readonly fwd: Forwarder;
  readonly guard = new DepthLock();
  readonly poller = new MemPoller();
  readonly wake = new MemWake();
  readonly control = new MemControl(this.wake);
  readonly uplink = new MemTun('uplink');
  readonly loop: Loop<MemSource>;
  /** The flow clock, in seconds. */
  now = 100;
  /** Devices the loop may open, by the fd numbers 'add' hands over. */
  private readonly byFd = new Map<number, MemTun>();
  private nextFd = 100;
  private steps: (() => void)[] = [];
  private stopSeq = 0;

  constructor(o: RigOptions = {}) {
    this.nat = new Nat({ maxSession: MAX_SESSION, flowCapacity: 1024, seed: 1, blockLocal: o.blockLocal ?? false });
    const counters = new Float64Array(new SharedArrayBuffer((MAX_SESSION + 1) * SESSION_COUNTERS * 8));
    this.fwd = new Forwarder(this.nat, this.uplink, MAX_SESSION, o.hdrLen ?? 0, this.guard, counters);
    this.loop = new Loop<MemSource>({
      index: o.index ?? 0,
      nat: this.nat,
      fwd: this.fwd,
      guard: this.guard,
      expireBudget: 4096,
      poller: this.poller,
      wake: this.wake,
      uplink: this.uplink,
      open: (fd) => {
        const t = this.byFd.get(fd);
        if (!t) throw new Error(`no device for fd ${fd}`);
        return t;
      },
      control: this.control,
      clock: () => this.now,
    });
    this.poller.onIdle = () => this.next();
  }

  /** Sends 'add' for session `id` over a new in-memory TUN (NAT mode: inner 10.0.2.100 unless given). */
  add(id: number, addrs: Partial<SessionAddresses> = {}): { seq: number; tun: MemTun } {
    const fd = this.nextFd++;
    const tun = new MemTun(`session ${id}`);
    this.byFd.set(fd, tun);
    const full: SessionAddresses = { shared: false, inner4: INNER, vip4: VIP(id), inner6: null, vip6: null, loopbackId: 0, ...addrs };
    return { seq: this.control.send({ op: 'add', id, fd, addrs: full }), tun };
  }

  /**
   * Runs the real loop: each step runs when the loop is next idle (a wait
   * finds nothing ready), then 'stop' is sent. Returns once run() has
   * returned, with the stop's final counters.
   */
  run(...steps: (() => void)[]): WorkerStats {
    this.steps = steps;
    this.loop.run();
    expect(this.steps).toHaveLength(0);
    return this.stats(this.stopSeq);
  }

  private next(): void {
    const step = this.steps.shift();
    if (step) step();
    else if (this.stopSeq === 0) this.stopSeq = this.control.send({ op: 'stop' });
    else throw new Error('the loop went on after stop');
  }

  /** The counters an answered 'stats' or 'stop' carried. */
  stats(seq: number): WorkerStats {
    const a = this.control.answer(seq);
    if (a?.op !== 'ack' || !a.stats) throw new Error(`no counters for message ${seq}: ${JSON.stringify(a)}`);
    return a.stats;
  }

  /** Session `id`'s per-session counters: packets out, bytes out, packets in, bytes in, dropped. */
  perSession(id: number): number[] {
    return Array.from(this.fwd.perSession.subarray(id * SESSION_COUNTERS, (id + 1) * SESSION_COUNTERS));
  }
}

const acked = (m: FromWorker | undefined): boolean => m?.op === 'ack';

describe('Loop: sessions and packets', () => {
  it('says ready, adds sessions, and forwards both ways, translated (NAT mode)', () => {
    const rig = new Rig();
    let a!: ReturnType<Rig['add']>;
    let b!: ReturnType<Rig['add']>;
    const syn = tcpPacket(INNER, REMOTE, { sport: 40000, dport: 80, flags: SYN });
    const synAck = tcpPacket(REMOTE, VIP(1), { sport: 80, dport: 40000, flags: SYN | ACK, seq: 7000, ack: 1001 });
    const end = rig.run(
      () => {
        expect(rig.control.answers).toEqual([{ op: 'ready' }]);
        a = rig.add(1);
        b = rig.add(2);
      },
      () => {
        expect(acked(rig.control.answer(a.seq)) && acked(rig.control.answer(b.seq))).toBe(true);
        expect(rig.poller.watches(a.tun) && rig.poller.watches(b.tun)).toBe(true);
        a.tun.inject(syn);
      },
      () => {
        const out = rig.uplink.take();
        expect(out.map(toHex)).toEqual([toHex(tcpPacket(VIP(1), REMOTE, { sport: 40000, dport: 80, flags: SYN }))]);
        rig.uplink.inject(synAck);
      },
      () => {
        const back = a.tun.take();
        expect(back.map(toHex)).toEqual([
          toHex(tcpPacket(REMOTE, INNER, { sport: 80, dport: 40000, flags: SYN | ACK, seq: 7000, ack: 1001 })),
        ]);
        expect(b.tun.written).toHaveLength(0);
      },
    );
    expect(end).toMatchObject({ toUplink: 1, toSession: 1, dropped: 0, flows: 1, readErrors: 0, writeErrors: 0 });
    expect(rig.perSession(1)).toEqual([1, syn.length, 1, synAck.length, 0]);
    expect(rig.perSession(2)).toEqual([0, 0, 0, 0, 0]);
  });

  it('takes IPv6 addresses as the gateway sends them (number arrays, cloned)', () => {
    const rig = new Rig();
    const inner6 = addr6('fd00::100');
    const vip6 = addr6('2001:db8::7');
    const remote6 = addr6('2001:db8:1::9');
    let s!: ReturnType<Rig['add']>;
    rig.run(
      () => {
        s = rig.add(3, { inner6: Array.from(words6(inner6)), vip6: Array.from(words6(vip6)) });
        s.tun.inject(udp6Packet(inner6, remote6, { sport: 5000, dport: 53 }));
      },
      () => {
        expect(rig.uplink.take().map(toHex)).toEqual([toHex(udp6Packet(vip6, remote6, { sport: 5000, dport: 53 }))]);
      },
    );
  });

  it('keeps the virtio header in front of each packet as it is (offloads)', () => {
    const rig = new Rig({ hdrLen: 10 });
    const hdr = new Uint8Array(10);
    hdr[4] = 0x5a; // gso_size: carried along, not looked at without a GSO type
    const p = udpPacket(INNER, REMOTE, { sport: 5000, dport: 53, data: new Uint8Array(40).fill(7) });
    let s!: ReturnType<Rig['add']>;
    rig.run(
      () => {
        s = rig.add(1);
        s.tun.inject(new Uint8Array([...hdr, ...p]));
      },
      () => {
        const out = rig.uplink.take();
        expect(out).toHaveLength(1);
        expect(toHex(out[0]!.subarray(0, 10))).toBe(toHex(hdr));
        expect(toHex(out[0]!.subarray(10))).toBe(
          toHex(udpPacket(VIP(1), REMOTE, { sport: 5000, dport: 53, data: new Uint8Array(40).fill(7) })),
        );
      },
    );
    expect(rig.perSession(1)).toEqual([1, p.length, 0, 0, 0]);
  });

  it("remove closes the session's device and stops its traffic; purge then drops its flows", () => {
    const rig = new Rig();
    let s!: ReturnType<Rig['add']>;
    let removeSeq = 0;
    let statsSeq = 0;
    let purgeSeq = 0;
    const end = rig.run(
      () => {
        s = rig.add(1);
        s.tun.inject(udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
      },
      () => {
        expect(rig.uplink.take()).toHaveLength(1);
        removeSeq = rig.control.send({ op: 'remove', id: 1 });
        statsSeq = rig.control.send({ op: 'stats' });
      },
      () => {
        expect(acked(rig.control.answer(removeSeq))).toBe(true);
        expect(s.tun.closed).toBe(true);
        expect(rig.poller.watches(s.tun)).toBe(false);
        // Forgotten, but its flow stays for 'purge' (every worker forgets first).
        expect(rig.stats(statsSeq)).toMatchObject({ sessions: 0, flows: 1 });
        rig.uplink.inject(udpPacket(REMOTE, VIP(1), { sport: 53, dport: 5000 }));
      },
      () => {
        purgeSeq = rig.control.send({ op: 'purge', id: 1 });
      },
      () => expect(acked(rig.control.answer(purgeSeq))).toBe(true),
    );
    expect(end).toMatchObject({ sessions: 0, flows: 0, toSession: 0, dropped: 1, noSession: 1 });
  });

  it('a failed add is answered with its error, closes the device it was given and leaves nothing behind', () => {
    const rig = new Rig();
    let first!: ReturnType<Rig['add']>;
    let dup!: ReturnType<Rig['add']>;
    let refused!: ReturnType<Rig['add']>;
    let again!: ReturnType<Rig['add']>;
    const end = rig.run(
      () => {
        first = rig.add(1);
        dup = rig.add(2, { vip4: VIP(1) }); // the translator refuses a VIP already held
      },
      () => {
        rig.poller.refuseNext = 'epoll_ctl add fd 102: Too many open files';
        refused = rig.add(3);
      },
      () => {
        // The session the poller refused is detached again: its VIP is free for the next.
        again = rig.add(4, { vip4: VIP(3) });
        again.tun.inject(udpPacket(INNER, REMOTE, { sport: 1, dport: 2 }));
      },
    );
    expect(acked(rig.control.answer(first.seq))).toBe(true);
    expect(rig.control.answer(dup.seq)).toEqual({ op: 'error', seq: dup.seq, message: expect.stringMatching(/already held/) as unknown });
    expect(rig.control.answer(refused.seq)).toEqual({
      op: 'error',
      seq: refused.seq,
      message: 'epoll_ctl add fd 102: Too many open files',
    });
    for (const t of [dup.tun, refused.tun]) {
      expect(t.closed).toBe(true);
      expect(rig.poller.watches(t)).toBe(false);
    }
    expect(acked(rig.control.answer(again.seq))).toBe(true);
    expect(end).toMatchObject({ sessions: 0, toUplink: 1 });
  });
});

describe('Loop: batches and fairness', () => {
  it(`reads at most ${BATCH} packets from one device before the others, and comes back for the rest`, () => {
    const rig = new Rig();
    let busy!: ReturnType<Rig['add']>;
    let quiet!: ReturnType<Rig['add']>;
    const N = 3 * BATCH + 10;
    let waitsBefore = 0;
    rig.run(
      () => {
        busy = rig.add(1);
        quiet = rig.add(2);
      },
      () => {
        for (let i = 0; i < N; i++) busy.tun.inject(udpPacket(INNER, REMOTE, { sport: 10000 + i, dport: 53 }));
        for (let i = 0; i < 3; i++) quiet.tun.inject(udpPacket(INNER, REMOTE, { sport: 20000 + i, dport: 53 }));
        for (let i = 0; i < N; i++) rig.uplink.inject(udpPacket(REMOTE, VIP(3), { sport: 53, dport: 30000 + i })); // no session's
        waitsBefore = rig.poller.reported.length;
      },
    );
    const out = rig.uplink.take().map((p) => parse(p).src);
    expect(out).toHaveLength(N + 3);
    // One batch of the busy session, then the quiet one's three, then the busy one's rest.
    const firstQuiet = out.indexOf(VIP(2));
    expect(firstQuiet).toBe(BATCH);
    expect(out.slice(BATCH, BATCH + 3)).toEqual([VIP(2), VIP(2), VIP(2)]);
    expect(out.filter((a) => a === VIP(1))).toHaveLength(N);
    expect(busy.tun.pending + quiet.tun.pending + rig.uplink.pending).toBe(0);
    expect(rig.nat.counters.noSession).toBe(N);
    // Level-triggered: a device still holding packets after its batch is reported again. Uplink,
    // busy and quiet; uplink and busy until both are empty (202 packets: 4 batches); then the wake-up of 'stop'.
    expect(rig.poller.reported.slice(waitsBefore)).toEqual([3, 2, 2, 2, 1]);
  });

  it('a busy uplink does not hold up a session', () => {
    const rig = new Rig();
    let s!: ReturnType<Rig['add']>;
    // How many uplink packets the loop had read when the session's packet went out.
    let readBefore = -1;
    const write = rig.uplink.write.bind(rig.uplink);
    rig.uplink.write = (buf, off, len) => {
      readBefore = rig.uplink.reads;
      return write(buf, off, len);
    };
    rig.run(
      () => {
        s = rig.add(1);
      },
      () => {
        for (let i = 0; i < 5 * BATCH; i++) rig.uplink.inject(udpPacket(REMOTE, VIP(7), { sport: 53, dport: 30000 + i })); // no session's
        s.tun.inject(udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
      },
    );
    expect(readBefore).toBe(BATCH);
    expect(rig.uplink.reads).toBe(5 * BATCH);
  });
});

describe('Loop: expiry', () => {
  it('worker 0 expires flows once a second, under the lock', () => {
    const rig = new Rig({ index: 0 });
    const expire = vi.spyOn(rig.nat, 'expire');
    const depth: number[] = [];
    expire.mockImplementation(function (this: Nat, now: number, budget?: number) {
      depth.push(rig.guard.depth);
      Nat.prototype.expire.call(this, now, budget);
    });
    let s!: ReturnType<Rig['add']>;
    let before = 0;
    let after = 0;
    const end = rig.run(
      () => {
        s = rig.add(1);
        s.tun.inject(udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
      },
      () => {
        before = rig.control.send({ op: 'stats' });
        rig.now += 1;
      },
      () => {
        // Idle waits in the same second do not expire again.
        rig.now += 400; // past the UDP timeout (300 s)
      },
      () => {
        after = rig.control.send({ op: 'stats' });
      },
    );
    expect(rig.stats(before)).toMatchObject({ flows: 1, flowsExpired: 0 });
    expect(rig.stats(after)).toMatchObject({ flows: 0, flowsExpired: 1 });
    expect(end.flows).toBe(0);
    // One call per second the loop saw (100, 101, 501), each with the budget and under the lock.
    expect(expire.mock.calls.map((c) => c[0])).toEqual([100, 101, 501]);
    expect(expire.mock.calls.every((c) => c[1] === 4096)).toBe(true);
    expect(depth).toEqual([1, 1, 1]);
    expect(rig.guard.depth).toBe(0);
  });

  it('other workers leave expiry to worker 0', () => {
    const rig = new Rig({ index: 1 });
    const expire = vi.spyOn(rig.nat, 'expire');
    const end = rig.run(
      () => {
        const s = rig.add(1);
        s.tun.inject(udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
      },
      () => {
        rig.now += 400;
      },
    );
    expect(expire).not.toHaveBeenCalled();
    expect(end.flows).toBe(1);
  });

  it(`waits ${WAIT_MS} ms at most, so that expiry runs when nothing moves`, () => {
    const rig = new Rig();
    const wait = vi.spyOn(rig.poller, 'wait');
    rig.run(() => undefined);
    expect(wait.mock.calls.every((c) => c[1] === WAIT_MS)).toBe(true);
  });
});

describe('Loop: stop', () => {
  it('ends run(), closes every device it owns and the poller, and answers with the last counters', () => {
    const rig = new Rig();
    let a!: ReturnType<Rig['add']>;
    let b!: ReturnType<Rig['add']>;
    let stop = 0;
    rig.poller.maxWaits = 20;
    // The last step sends 'stop' alongside packets for the uplink and a session: the
    // wake-up is reported first, and nothing after 'stop' in that wait is read (a
    // closed MemTun throws on read).
    const steps = [
      (): void => {
        a = rig.add(1);
        b = rig.add(2);
      },
      (): void => {
        a.tun.inject(udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
        rig.uplink.inject(udpPacket(REMOTE, VIP(1), { sport: 53, dport: 5000 }));
        stop = rig.control.send({ op: 'stop' });
      },
    ];
    rig.poller.onIdle = () => {
      const step = steps.shift();
      if (!step) throw new Error('the loop went on after stop');
      step();
    };
    rig.loop.run();
    expect(rig.control.answer(stop)).toMatchObject({ op: 'ack', stats: { sessions: 0, toUplink: 0 } });
    expect([a.tun.closed, b.tun.closed, rig.uplink.closed, rig.poller.closed]).toEqual([true, true, true, true]);
    expect([a.tun.pending, rig.uplink.pending]).toEqual([1, 1]);
    expect([rig.uplink.written, a.tun.written]).toEqual([[], []]);
    expect(rig.poller.reported.at(-1)).toBe(3);
  });
});

describe('Loop: errors are counted, not thrown', () => {
  it('a write the uplink or a session refuses counts writeErrors', () => {
    const rig = new Rig();
    let s!: ReturnType<Rig['add']>;
    const end = rig.run(
      () => {
        s = rig.add(1);
        rig.uplink.accept = false;
        s.tun.inject(udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
      },
      () => {
        rig.uplink.accept = true;
        s.tun.inject(udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }));
      },
      () => {
        s.tun.accept = false;
        rig.uplink.inject(udpPacket(REMOTE, VIP(1), { sport: 53, dport: 5000 }));
      },
    );
    expect(end).toMatchObject({ writeErrors: 2, toUplink: 1, toSession: 0 });
    expect(rig.uplink.written).toHaveLength(1);
    // The refused writes are the session's drops: its first packet out, and the answer to its second.
    expect(rig.perSession(1)).toEqual([1, 28, 0, 0, 2]);
  });

  it('a failed read counts readErrors, ends that batch, and the device is read again', () => {
    const rig = new Rig();
    let s!: ReturnType<Rig['add']>;
    const end = rig.run(
      () => {
        s = rig.add(1);
        s.tun.failRead = -EIO;
        s.tun.inject(udpPacket(INNER, REMOTE, { sport: 5000, dport: 53 }), udpPacket(INNER, REMOTE, { sport: 5001, dport: 53 }));
      },
      () => {
        rig.uplink.failRead = -EIO;
        rig.uplink.inject(udpPacket(REMOTE, VIP(1), { sport: 53, dport: 5000 }));
      },
    );
    expect(end).toMatchObject({ readErrors: 2, toUplink: 2, toSession: 1 });
    expect(s.tun.written).toHaveLength(1);
  });
});

describe('Loop: local addresses (blockLocal)', () => {
  it("'local' makes sessions' packets to them answered in place; 'purgeLocal' drops the flows made before", () => {
    const rig = new Rig({ blockLocal: true });
    let s!: ReturnType<Rig['add']>;
    let local = 0;
    let purge = 0;
    let mid = 0;
    const toLocal = (sport: number): Uint8Array => udpPacket(INNER, LOCAL, { sport, dport: 53 });
    const end = rig.run(
      () => {
        s = rig.add(1);
        s.tun.inject(toLocal(5000)); // not local yet: a flow
      },
      () => {
        expect(rig.uplink.take()).toHaveLength(1);
        local = rig.control.send({ op: 'local', v4: [LOCAL], v6: [] });
        mid = rig.control.send({ op: 'stats' });
        purge = rig.control.send({ op: 'purgeLocal' });
      },
      () => {
        s.tun.inject(toLocal(5001));
      },
    );
    expect(acked(rig.control.answer(local)) && acked(rig.control.answer(purge))).toBe(true);
    expect(rig.stats(mid).flows).toBe(1); // 'local' alone leaves the flow for 'purgeLocal'
    expect(end).toMatchObject({ flows: 0, replies: 1, toUplink: 1 });
    const reply = s.tun.take();
    expect(reply).toHaveLength(1);
    expect([parse(reply[0]!).src, parse(reply[0]!).dst, reply[0]![20]]).toEqual([LOCAL, INNER, 3]);
    expect(rig.uplink.written).toHaveLength(0);
  });
});
