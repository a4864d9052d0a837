// Micro-benchmarks of the packet path with no syscalls, one core: lookup + rewrite, flow creation, memory per flow.
//
// Usage (after `make build`; one measurement per process, so memory figures are not mixed):
//   node dist-tools/bench/packet-path.js [lookup] FLOWS [SECONDS]   parse + flow lookup + NAT rewrite + checksum
//                                             update, out and back, over FLOWS live UDP flows; packets/s
//   node dist-tools/bench/packet-path.js create FLOWS [SECONDS]     new flows/s: a TCP SYN per new flow into an empty table
//   node --expose-gc dist-tools/bench/packet-path.js memory FLOWS   bytes per flow: the table's own count and the RSS growth
//   node dist-tools/bench/packet-path.js forward FLOWS [SECONDS] [plain|tap|capture]
//                                             the lookup pass through the dataplane's Forwarder (counters, devices that
//                                             take every packet): without a capture tap, with one no capture uses, or
//                                             capturing the session (a second thread drains the ring, as the gateway's does)
// Each prints one JSON object. The flow table holds FLOWS rounded up to a power of two (at least 1024).
// The packets are built with the tests' packet builders (test/unit/packets.ts); the translator measured
// is vipnat's own build (dist/nat), loaded as vipnat loads it.
import { pathToFileURL } from 'node:url';
import type * as NatModule from '../src/nat/index.js';
import { ROOT } from '../test/lab/root.js';
import { addr, SYN, tcpPacket, udpPacket } from '../test/unit/packets.js';

type Nat = NatModule.Nat;

const args = process.argv.slice(2);
const mode = /^\d/.test(args[0] ?? '') || args.length === 0 ? 'lookup' : args.shift()!;
const flows = Number(args[0] ?? 1000);
const seconds = Number(args[1] ?? 2);
const variant = args[2] ?? 'plain';
if (!['plain', 'tap', 'capture'].includes(variant)) {
  console.error('usage: node dist-tools/bench/packet-path.js forward FLOWS [SECONDS] [plain|tap|capture]');
  process.exit(2);
}
if (!['lookup', 'create', 'memory', 'forward'].includes(mode) || !(Number.isInteger(flows) && flows >= 1 && flows <= 1 << 24)) {
  console.error('usage: node dist-tools/bench/packet-path.js [lookup|create|memory] FLOWS (1-16777216) [SECONDS]');
  process.exit(2);
}

const INNER = addr('10.0.2.100'); // NAT mode, so every packet is rewritten
const VIP = addr('198.19.7.1');
const REMOTE = addr('198.18.0.2');
const PAYLOAD = 64; // one UDP packet with 64 bytes of payload
const UDP_LEN = 20 + 8 + PAYLOAD;
const SYN_LEN = 20 + 20; // a bare TCP SYN
const SLOT = 96; // bytes per packet in the packet buffer

let capacity = 1024;
while (capacity < flows) capacity *= 2;

const { Nat: NatClass } = (await import(pathToFileURL(`${ROOT}dist/nat/index.js`).href)) as typeof NatModule;

function newNat(): Nat {
  // The IPv6 table is kept at its minimum: these are IPv4 flows, and its memory is not theirs.
  // One session holds every flow here: its flow limit (by default a sixteenth of the table) is lifted to the table's size.
  const nat = new NatClass({ maxSession: 1, flowCapacity: capacity, flowCapacity6: 1024, seed: 42, sessionFlowLimit: capacity });
  nat.addSession(1, INNER, VIP);
  return nat;
}

function w32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

// Flow i: distinct (source port, destination port) pairs, so any count up to 2^24 is distinct.
const sportOf = (i: number): number => 1024 + (i % 60000);
const dportOf = (i: number): number => 1 + Math.floor(i / 60000);

/**
 * The packet in `b` made flow `i`'s in place: source address back to INNER (the translator
 * rewrote the last one's) and the flow's ports. Its checksums are left as they were: the
 * translator updates them incrementally and never verifies them. (The create loop, timed, does
 * the same inline.)
 */
function reuse(b: Uint8Array, i: number): void {
  w32(b, 12, INNER);
  const sp = sportOf(i),
    dp = dportOf(i);
  b[20] = sp >> 8;
  b[21] = sp & 0xff;
  b[22] = dp >> 8;
  b[23] = dp & 0xff;
}

/** Swaps source and destination addresses and ports in place: a packet becomes its own reply. */
function swap(b: Uint8Array, o: number): void {
  for (let k = 12; k < 16; k++) {
    const t = b[o + k]!;
    b[o + k] = b[o + k + 4]!;
    b[o + k + 4] = t;
  }
  const s0 = b[o + 20]!,
    s1 = b[o + 21]!;
  b[o + 20] = b[o + 22]!;
  b[o + 21] = b[o + 23]!;
  b[o + 22] = s0;
  b[o + 23] = s1;
}

function rss(): number {
  return process.memoryUsage.rss();
}

/** A permutation of 0..n-1 (a fixed LCG, so every run visits the same order). */
function shuffled(n: number): Int32Array {
  const order = new Int32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  let r = 12345;
  for (let i = n - 1; i > 0; i--) {
    r = (Math.imul(r, 1103515245) + 12345) >>> 0;
    const j = r % (i + 1);
    const t = order[i]!;
    order[i] = order[j]!;
    order[j] = t;
  }
  return order;
}

function lookup(): Record<string, number | string> {
  const nat = newNat();
  const buf = new Uint8Array(flows * SLOT);
  const data = new Uint8Array(PAYLOAD);
  for (let i = 0; i < flows; i++) buf.set(udpPacket(INNER, REMOTE, { sport: sportOf(i), dport: dportOf(i), data }), i * SLOT);
  // One pass out and back per flow: fromSession rewrites INNER -> VIP, the swap makes the
  // reply REMOTE -> VIP, fromUplink rewrites it to INNER, the second swap restores the original.
  // The swaps (24 byte moves per packet pair) are counted in the time: the figure is conservative.
  const pass = (now: number): void => {
    for (let i = 0; i < flows; i++) {
      const o = i * SLOT;
      if (nat.fromSession(1, buf, o, UDP_LEN, now) !== 0) throw new Error('outbound dropped');
      swap(buf, o);
      if (nat.fromUplink(buf, o, UDP_LEN, now) !== 1) throw new Error('inbound dropped');
      swap(buf, o);
    }
  };
  // Create the flows in a shuffled order, so the flow numbers of consecutive
  // packets are scattered over the table as those of real traffic are (the
  // table hands out flow numbers in order; created in packet order, the timed
  // passes would walk the flow records sequentially, which the CPU's
  // prefetchers make unrealistically cheap).
  const order = shuffled(flows);
  for (let k = 0; k < flows; k++) {
    const o = order[k]! * SLOT;
    if (nat.fromSession(1, buf, o, UDP_LEN, 1) !== 0) throw new Error('outbound dropped');
    swap(buf, o);
    if (nat.fromUplink(buf, o, UDP_LEN, 1) !== 1) throw new Error('inbound dropped');
    swap(buf, o);
  }
  pass(1); // warms up the JIT
  if (nat.flows.count !== flows) throw new Error(`expected ${flows} flows, table has ${nat.flows.count}`);
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  do {
    pass(2);
    n += 2 * flows;
  } while (performance.now() < end);
  const secs = (performance.now() - t0) / 1000;
  return {
    mode,
    flows,
    capacity,
    packets: n,
    seconds: +secs.toFixed(2),
    pps: Math.round(n / secs),
    mpps: +(n / secs / 1e6).toFixed(2),
    bytesPerFlow: nat.flows.bytesPerFlow(),
    rssBytes: rss(),
  };
}

function create(): Record<string, number | string> {
  const b = new Uint8Array(SLOT);
  b.set(tcpPacket(INNER, REMOTE, { sport: sportOf(0), dport: dportOf(0), flags: SYN, window: 0xff00 }));
  let created = 0;
  let elapsed = 0;
  let rounds = 0;
  // Fill an empty table with `flows` new flows, round after round, timing only the fills.
  do {
    const nat = newNat();
    const t0 = performance.now();
    for (let i = 0; i < flows; i++) {
      w32(b, 12, INNER); // the previous SYN left with the VIP as its source
      const sp = sportOf(i),
        dp = dportOf(i);
      b[20] = sp >> 8;
      b[21] = sp & 0xff;
      b[22] = dp >> 8;
      b[23] = dp & 0xff;
      if (nat.fromSession(1, b, 0, SYN_LEN, 1) !== 0) throw new Error('SYN dropped');
    }
    elapsed += performance.now() - t0;
    if (nat.flows.count !== flows) throw new Error(`expected ${flows} flows, table has ${nat.flows.count}`);
    created += flows;
    rounds++;
  } while (elapsed < seconds * 1000 || rounds < 2);
  const secs = elapsed / 1000;
  return { mode, flows, capacity, rounds, created, seconds: +secs.toFixed(2), flowsPerSecond: Math.round(created / secs) };
}

function memory(): Record<string, number | string | boolean> {
  const gc = (globalThis as { gc?: () => void }).gc ?? ((): void => {});
  gc();
  const before = rss();
  const nat = newNat();
  const b = new Uint8Array(SLOT);
  b.set(udpPacket(INNER, REMOTE, { sport: sportOf(0), dport: dportOf(0), data: new Uint8Array(PAYLOAD) }));
  for (let i = 0; i < flows; i++) {
    reuse(b, i);
    if (nat.fromSession(1, b, 0, UDP_LEN, 1) !== 0) throw new Error('packet dropped');
  }
  gc();
  const after = rss();
  if (nat.flows.count !== flows) throw new Error(`expected ${flows} flows, table has ${nat.flows.count}`);
  return {
    mode,
    flows,
    capacity,
    bytesPerFlow: nat.flows.bytesPerFlow(), // per slot of capacity, by the table's own count
    rssBefore: before,
    rssAfter: after, // the whole process: node itself plus the table with FLOWS live flows
    rssDeltaPerFlow: +((after - before) / flows).toFixed(1),
    gc: (globalThis as { gc?: () => void }).gc !== undefined,
  };
}

/** The lookup pass through a Forwarder: what a worker does per packet, short of the read and write syscalls. */
async function forward(): Promise<Record<string, number | string>> {
  type Dp = typeof import('../src/dataplane/index.js');
  type Fw = typeof import('../src/dataplane/forwarder.js');
  type TapM = typeof import('../src/dataplane/tap.js');
  const dp = (await import(pathToFileURL(`${ROOT}dist/dataplane/index.js`).href)) as Dp;
  const { Forwarder } = (await import(pathToFileURL(`${ROOT}dist/dataplane/forwarder.js`).href)) as Fw;
  const { Tap, TapControl } = (await import(pathToFileURL(`${ROOT}dist/dataplane/tap.js`).href)) as TapM;
  const nat = new NatClass({ maxSession: 1, flowCapacity: capacity, flowCapacity6: 1024, seed: 42, sessionFlowLimit: capacity });
  const sink = { write: (): boolean => true };
  const ringBytes = Number(process.env['RING'] ?? 8 << 20);
  const ringMemory = new SharedArrayBuffer(dp.CaptureRing.bytesFor(ringBytes, 1));
  const control = new TapControl(TapControl.memory(1));
  const tap = variant === 'plain' ? null : new Tap(control, new dp.CaptureRing(ringMemory, ringBytes, 1));
  const fw = new Forwarder(nat, sink, 1, 0, undefined, undefined, tap);
  fw.attach(1, sink, INNER, VIP);
  const views: Uint8Array[] = [];
  const data = new Uint8Array(PAYLOAD);
  const buf = new Uint8Array(flows * SLOT);
  for (let i = 0; i < flows; i++) {
    buf.set(udpPacket(INNER, REMOTE, { sport: sportOf(i), dport: dportOf(i), data }), i * SLOT);
    views.push(buf.subarray(i * SLOT, (i + 1) * SLOT));
  }
  let drainer: import('node:worker_threads').Worker | null = null;
  const stopFlag = new Int32Array(new SharedArrayBuffer(4));
  if (variant === 'capture') {
    const { Worker } = await import('node:worker_threads');
    const code = `const { workerData } = require('node:worker_threads');
      import(workerData.url).then(({ CaptureRing }) => {
        const r = new CaptureRing(workerData.mem, workerData.bytes, 1);
        const stop = new Int32Array(workerData.stop);
        let n = 0;
        while (Atomics.load(stop, 0) === 0) { n += r.drain(() => undefined); Atomics.wait(stop, 0, 0, 1); }
      });`;
    drainer = new Worker(code, {
      eval: true,
      workerData: { url: pathToFileURL(`${ROOT}dist/dataplane/ring.js`).href, mem: ringMemory, bytes: ringBytes, stop: stopFlag.buffer },
    });
    control.set(false, [1], 262144);
  }
  const pass = (now: number): void => {
    for (let i = 0; i < flows; i++) {
      const b = views[i]!;
      fw.fromSession(1, b, UDP_LEN, now);
      swap(b, 0);
      fw.fromUplink(b, UDP_LEN, now);
      swap(b, 0);
    }
  };
  pass(1);
  pass(1);
  if (fw.counters.toUplink !== 2 * flows || fw.counters.toSession !== 2 * flows)
    throw new Error(`forwarded ${fw.counters.toUplink}/${fw.counters.toSession}`);
  let n = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  do {
    pass(2);
    n += 2 * flows;
  } while (performance.now() < end);
  const secs = (performance.now() - t0) / 1000;
  Atomics.store(stopFlag, 0, 1);
  await drainer?.terminate();
  const ring = tap?.ring;
  return {
    mode,
    variant,
    flows,
    packets: n,
    seconds: +secs.toFixed(2),
    pps: Math.round(n / secs),
    mpps: +(n / secs / 1e6).toFixed(2),
    leftOut: ring ? ring.dropped[2]! + ring.dropped[3]! : 0,
  };
}

const result = mode === 'lookup' ? lookup() : mode === 'create' ? create() : mode === 'forward' ? await forward() : memory();
console.log(JSON.stringify(result));
