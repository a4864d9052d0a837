// Flood benchmark (`make bench-flood`): the new-flow packet rate vipnat absorbs, and what floods at half and twice that rate do to established connections.
//
// A lab of its own (vnflood-PID-XXXX: a gateway namespace where vipnat runs, a backend namespace,
// no link to the machine's network). vipnat runs `--pool 198.19.8.1 --sessions 2 --on-exhausted
// shared`: session 1 holds the VIP and listens on port 7300 (socat echo), session 2 runs on the
// shared address. The flood is TCP SYNs to VIP:7300, each from a new source (random addresses of
// 10.200.0.0/16, random ports): every one a new flow, which vipnat creates and hands to session 1,
// whose kernel answers with a SYN-ACK that vipnat carries back. The gateway routes 10.200.0.0/16
// to the backend, whose kernel drops those SYN-ACKs (not its addresses): no resets come back.
// The generator is bench/flood-gen.c, compiled here (cc), which sends from the backend through a
// packet socket in sendmmsg batches at a rate kept by the clock (a few hundred thousand packets
// per second on one core, well past what the gateway absorbs; hping3 --flood has no rate control
// and its -i uN tops out far lower).
//
// 1. Capacity: a fresh vipnat per rate; the SYNs the generator sent, those the gateway's kernel
//    queued to vipnat's uplink TUN (vipnat0), those it dropped there because vipnat did not read
//    them in time (vipnat0's tx_dropped), and those vipnat delivered to session 1 (its eth0
//    rx_packets), with vipnat's CPU and counters. The capacity is the highest delivered rate.
// 2. Established connections under a flood: 5 checksummed echo connections from the backend to
//    VIP:7300, sending as fast as their windows allow (test/fixtures/echo-load.mjs), a 100 Hz ping
//    from the backend to the VIP, and, late in the flood, two new-connection probes (10 echo
//    connections from the backend to VIP:7300, and 10 from the shared session to the backend):
//    without a flood, then with a flood at half and at twice the capacity.
// The figures depend on the machine and on whatever else runs on it: compare ratios measured in
// one run, not figures across machines.
// Options: node dist-tools/bench/flood.js --help.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  asDriver,
  BACKEND,
  Lab,
  linkStats,
  log,
  onCleanup,
  ROOT,
  sh,
  sleep,
  sweepLabs,
  tcpListening,
  waitFor,
  type RunResult,
  type SessionEvent,
  type SummaryStats,
  type VipnatRun,
} from '../test/lab/index.js';

const GEN_SRC = path.join(ROOT, 'bench/flood-gen.c');
const ECHO_LOAD = path.join(ROOT, 'test/fixtures/echo-load.mjs');
const PARALLEL = path.join(ROOT, 'test/fixtures/parallel-echo.mjs');
const TCP_ECHO = path.join(ROOT, 'test/fixtures/tcp-echo.mjs');
const RESULTS = path.join(ROOT, 'bench/results');
const PREFIX = 'vnflood-';
const VIP = '198.19.8.1';
const PORT = 7300;
const BACKEND_ECHO_PORT = 7200;
const FLOOD_SOURCES = '10.200.0.0/16';
const ESTABLISHED = 5;
const PROBE_CONNECTIONS = 10;

// ---------------------------------------------------------------- options

const USAGE = `usage: node dist-tools/bench/flood.js [--seconds N] [--rates R,R,...] [--repeat N] [--scenario-rates HALF,TWICE]
                                     [--inner-address A] [--workers N] [--max-flows N] [--save] [--json]
--seconds N  length of every flood and load (default 5);  --rates  the capacity ladder in packets/s,
0 meaning as fast as the generator can (default 10000,25000,50000,100000,150000,200000,300000,0);
--repeat N  runs per rate, the best kept (default 2);  --scenario-rates  the floods of part 2 in packets/s
instead of half and twice the measured capacity (to compare two builds at the same rates).
--save writes bench/results/flood-<UTC date>-<commit>.json;  --json prints the results as one JSON line.`;

interface Options {
  seconds: number;
  rates: number[];
  inner: string | null;
  workers: number | null;
  maxFlows: number | null;
  repeat: number;
  scenarioRates: number[] | null;
  save: boolean;
  json: boolean;
}

function usage(err: string | null): never {
  (err ? process.stderr : process.stdout).write(`${err ? `flood: ${err}\n` : ''}${USAGE}\n`);
  process.exit(err ? 2 : 0);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    seconds: 5,
    rates: [10000, 25000, 50000, 100000, 150000, 200000, 300000, 0],
    inner: null,
    workers: null,
    maxFlows: null,
    repeat: 2,
    scenarioRates: null,
    save: false,
    json: false,
  };
  const num = (v: string | undefined, flag: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) usage(`${flag} ${v}: must be a whole number from ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = (): string => argv[++i] ?? '';
    if (a === '--seconds') o.seconds = num(v(), a, 1);
    else if (a === '--rates')
      o.rates = v()
        .split(',')
        .map((r) => num(r, a, 0));
    else if (a === '--inner-address') o.inner = v();
    else if (a === '--workers') o.workers = num(v(), a, 1);
    else if (a === '--max-flows') o.maxFlows = num(v(), a, 1024);
    else if (a === '--repeat') o.repeat = num(v(), a, 1);
    else if (a === '--scenario-rates') {
      const text = v();
      o.scenarioRates = text.split(',').map((r) => num(r, a, 1));
      if (o.scenarioRates.length !== 2) usage(`--scenario-rates ${text}: two rates, the "half" and the "twice" flood`);
    } else if (a === '--save') o.save = true;
    else if (a === '--json') o.json = true;
    else if (a === '-h' || a === '--help') usage(null);
    else usage(`unknown argument ${a}`);
  }
  return o;
}

const opts = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- helpers

const fmt = (n: number | null | undefined): string => (n == null ? '—' : Math.round(n).toLocaleString('en-US').replace(/,/g, ' '));
const pct = (x: number | null | undefined): string => (x == null ? '—' : `${(100 * x).toFixed(x < 0.1 ? 2 : 1)}%`);
const pad = (s: string | number, n: number): string => String(s).padStart(n);

/** CPU seconds (user + system, all threads) of process `pid`. */
function cpuSeconds(pid: number): number | null {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // CLK_TCK is 100 on Linux
  } catch {
    return null;
  }
}

/** The machine's CPU time so far, busy and in all (jiffies over every CPU, from /proc/stat). */
function machineCpu(): { busy: number; total: number } {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3]! + (f[4] ?? 0); // idle + iowait
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

function compileGenerator(dir: string): string {
  const out = path.join(dir, 'flood-gen');
  const r = spawnSync('cc', ['-O2', '-Wall', '-o', out, GEN_SRC], { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(`cc ${GEN_SRC}: ${r.error?.message ?? r.stderr.trim()} (scripts/setup-bench.sh installs gcc)`);
  return out;
}

interface Ping {
  sent: number | null;
  received: number | null;
  loss: number | null;
  rttAvgMs: number | null;
  rttMaxMs: number | null;
}

function parsePing(out: string): Ping {
  const tx = /(\d+) packets transmitted, (\d+) received/.exec(out);
  const rtt = /= ([\d.]+)\/([\d.]+)\/([\d.]+)\/([\d.]+) ms/.exec(out);
  return {
    sent: tx ? Number(tx[1]) : null,
    received: tx ? Number(tx[2]) : null,
    loss: tx && Number(tx[1]) ? 1 - Number(tx[2]) / Number(tx[1]) : null,
    rttAvgMs: rtt ? Number(rtt[2]) : null,
    rttMaxMs: rtt ? Number(rtt[3]) : null,
  };
}

interface Probe {
  ok: number;
  failed: number;
  ms: number;
}

function parseProbe(r: RunResult, ms: number): Probe {
  const ok = /echo ok (\d+)/.exec(r.stdout);
  const failed = (r.stdout.match(/connection \d+:/g) ?? []).length;
  return { ok: ok ? Number(ok[1]) : PROBE_CONNECTIONS - failed, failed, ms };
}

// ---------------------------------------------------------------- the lab and vipnat

let lab: Lab;
let gen: string;

interface Up {
  c: VipnatRun;
  target: SessionEvent & { netns: string };
  shared: SessionEvent & { netns: string };
}

/** A fresh vipnat: session 1 (the VIP) listens on PORT, session 2 runs on the shared address. */
async function vipnatUp(): Promise<Up> {
  const args = ['run', '--json', '--pool', VIP, '--sessions', '2', '--on-exhausted', 'shared'];
  if (opts.inner) args.push('--inner-address', opts.inner);
  if (opts.workers) args.push('--workers', String(opts.workers));
  if (opts.maxFlows) args.push('--max-flows', String(opts.maxFlows));
  const script = `if [ "$VIPNAT_SESSION_ID" = 1 ]; then exec socat TCP6-LISTEN:${PORT},fork,reuseaddr,nodelay,backlog=128 PIPE; else exec sleep 86400; fi`;
  const c = lab.vipnat([...args, '--', 'sh', '-c', script]);
  const sessions = await c.waitSessions(2, 60_000);
  const target = sessions.find((s) => s.vip === VIP);
  const shared = sessions.find((s) => s.shared);
  if (!target?.netns || !shared?.netns) throw new Error(`unexpected sessions: ${JSON.stringify(sessions)}`);
  await waitFor('the listener in session 1', () => tcpListening(target.netns!, PORT));
  return { c, target: { ...target, netns: target.netns }, shared: { ...shared, netns: shared.netns } };
}

interface Snapshot {
  t: number;
  gatewayIn: number;
  toVipnat: number;
  uplinkDropped: number;
  delivered: number;
  sessionOut: number;
  sessionDropped: number;
  cpu: number | null;
  machine: { busy: number; total: number };
}

/** The kernel's counters along the flood's path, and vipnat's CPU. */
function snapshot(up: Up): Snapshot {
  const be0 = linkStats(lab.gw, 'be0');
  const uplink = linkStats(lab.gw, 'vipnat0');
  const eth0 = linkStats(up.target.netns, 'eth0');
  return {
    t: Date.now(),
    gatewayIn: be0.rx.packets,
    toVipnat: uplink.tx.packets, // packets vipnat read from its uplink TUN
    uplinkDropped: uplink.tx.dropped, // dropped there: vipnat did not read them in time
    delivered: eth0.rx.packets, // packets vipnat wrote to session 1
    sessionOut: eth0.tx.packets,
    sessionDropped: eth0.tx.dropped,
    cpu: cpuSeconds(up.c.pid),
    machine: machineCpu(),
  };
}

type Counter = 'gatewayIn' | 'toVipnat' | 'uplinkDropped' | 'delivered' | 'sessionOut' | 'sessionDropped';
type Delta = Record<Counter, number> & { vipnatCpu: number | null; machineBusy: number };

function delta(a: Snapshot, b: Snapshot): Delta {
  const secs = (b.t - a.t) / 1000;
  const d = (k: Counter): number => b[k] - a[k];
  return {
    gatewayIn: d('gatewayIn'),
    toVipnat: d('toVipnat'),
    uplinkDropped: d('uplinkDropped'),
    delivered: d('delivered'),
    sessionOut: d('sessionOut'),
    sessionDropped: d('sessionDropped'),
    vipnatCpu: a.cpu != null && b.cpu != null ? (b.cpu - a.cpu) / secs : null,
    // Busy share of the whole machine (every CPU): softirq work (forwarding, the sessions' TCP) counts to no process.
    machineBusy: (b.machine.busy - a.machine.busy) / Math.max(1, b.machine.total - a.machine.total),
  };
}

/** What flood-gen prints. */
interface GenResult {
  sent: number;
  errors: number;
  seconds: number;
  pps: number;
}

function flood(rate: number, seconds: number): Promise<RunResult> {
  const mac = (JSON.parse(sh('ip', ['-n', lab.gw, '-j', 'link', 'show', 'dev', 'be0'])) as { address: string }[])[0]!.address;
  const args = ['--iface', 'gw0', '--mac', mac, '--src', FLOOD_SOURCES, '--dst', VIP, '--dport', String(PORT), '--kind', 'syn'];
  return lab.nsRun(lab.be, [gen, ...args, '--rate', String(rate), '--seconds', String(seconds)], (seconds + 30) * 1000);
}

const COUNTERS = [
  'toUplink',
  'toSession',
  'dropped',
  'writeErrors',
  'tableFull',
  'flowsCreated',
  'flowsExpired',
  'flowsEvicted',
  'sessionFlowLimit',
];

function counters(dp: SummaryStats | null): Record<string, number> {
  const out: Record<string, number> = {};
  const all = (dp ?? {}) as Record<string, number>;
  for (const k of COUNTERS) if (k in all) out[k] = all[k]!;
  return out;
}

function countersText(c: Record<string, number>): string {
  return Object.entries(c)
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(', ');
}

// ---------------------------------------------------------------- 1. capacity

/** [time, packets vipnat read from its uplink TUN, packets dropped there]. */
type Sample = [number, number, number];

interface Rate {
  seconds: number;
  delivered: number;
  dropped: number;
}

interface Regimes {
  creating: Rate;
  full: Rate | null;
  fillSeconds: number | null;
  droppedAll?: number;
}

/**
 * Rates in the two regimes of a step, from the uplink TUN's counters sampled during the flood:
 * while vipnat still creates a flow per SYN, and once its table is full (then it forwards the
 * rest without state; every SYN read until then made a flow, as none expires within seconds).
 */
function regimes(samples: Sample[], capacity: number): Regimes {
  const first = samples[0]!,
    last = samples.at(-1)!;
  const [t0, p0, d0] = first;
  const [t1, , d1] = last;
  const fill = samples.findIndex(([, p]) => p - p0 >= capacity);
  const rate = (a: Sample, b: Sample): Rate => ({
    seconds: +((b[0] - a[0]) / 1000).toFixed(2),
    delivered: (b[1] - a[1]) / ((b[0] - a[0]) / 1000),
    dropped: b[2] - a[2],
  });
  if (fill < 0 || t1 - t0 < 400) return { creating: rate(first, last), full: null, fillSeconds: null };
  const f = samples[fill]!;
  return {
    creating: rate(first, f),
    full: f[0] < t1 - 200 ? rate(f, last) : null,
    fillSeconds: +((f[0] - t0) / 1000).toFixed(2),
    droppedAll: d1 - d0,
  };
}

type Step = Delta & {
  rate: number | null;
  sent: number;
  sentPerSecond: number;
  deliveredPerSecond: number;
  deliveredRatio: number | null;
  regimes: Regimes;
  counters: Record<string, number>;
  vipnatExit: number | string | null;
  runs?: number[];
};

async function capacityStep(rate: number): Promise<Step> {
  const up = await vipnatUp();
  try {
    const sample = (): Sample => {
      const u = linkStats(lab.gw, 'vipnat0').tx;
      return [Date.now(), u.packets, u.dropped];
    };
    const a = snapshot(up);
    const samples = [sample()];
    const timer = setInterval(() => samples.push(sample()), 200);
    const r = await flood(rate, opts.seconds);
    clearInterval(timer);
    if (r.code !== 0) throw new Error(`flood-gen: ${r.stderr.trim() || `exit ${r.code}`}`);
    const g = JSON.parse(r.stdout.trim()) as GenResult;
    samples.push(sample());
    await sleep(300); // what is queued drains
    const d = delta(a, snapshot(up));
    const v = await up.c.stop();
    return {
      rate: rate || null,
      sent: g.sent,
      sentPerSecond: g.sent / g.seconds,
      ...d,
      deliveredPerSecond: d.delivered / g.seconds,
      deliveredRatio: g.sent ? d.delivered / g.sent : null,
      regimes: regimes(samples, v.dataplane?.flowCapacity ?? 262144),
      counters: counters(v.dataplane),
      vipnatExit: v.exit,
    };
  } finally {
    await up.c.stop(20_000);
  }
}

function stepLine(s: Step): string {
  const g = s.regimes;
  return (
    `${pad(s.rate ? fmt(s.rate) : 'max', 10)} ${pad(fmt(s.sentPerSecond), 10)} ${pad(fmt(s.deliveredPerSecond), 12)} ${pad(pct(s.deliveredRatio), 10)} ${pad(fmt(s.uplinkDropped), 10)} ` +
    `${pad(fmt(g.creating?.delivered), 11)} ${pad(g.fillSeconds == null ? '—' : `${g.fillSeconds} s`, 8)} ${pad(fmt(g.full?.delivered), 9)} ` +
    `${pad(s.vipnatCpu == null ? '—' : `${(100 * s.vipnatCpu).toFixed(0)}%`, 7)} ${pad(`${(100 * s.machineBusy).toFixed(0)}%`, 8)}  ${countersText(s.counters)}`
  );
}

interface Capacity {
  steps: Step[];
  capacity: number;
  knee: number | null;
  creating: number;
  full: number | null;
}

async function capacity(): Promise<Capacity> {
  log(
    `\n== 1. capacity: TCP SYNs from new sources to ${VIP}:${PORT}, ${opts.seconds} s per rate, a fresh vipnat each, the best of ${opts.repeat}`,
  );
  log(
    `${pad('offered/s', 10)} ${pad('sent/s', 10)} ${pad('delivered/s', 12)} ${pad('delivered', 10)} ${pad('TUN drops', 10)} ${pad('creating/s', 11)} ${pad('full at', 8)} ${pad('full/s', 9)} ${pad('vipnat', 7)} ${pad('machine', 8)}  vipnat counters`,
  );
  const steps: Step[] = [];
  for (const rate of opts.rates) {
    const tries: Step[] = [];
    for (let k = 0; k < opts.repeat; k++) tries.push(await capacityStep(rate));
    const s = {
      ...tries.reduce((m, t) => (t.deliveredPerSecond > m.deliveredPerSecond ? t : m)),
      runs: tries.map((t) => t.deliveredPerSecond),
    };
    steps.push(s);
    log(stepLine(s));
  }
  const best = steps.reduce((m, s) => (s.deliveredPerSecond > m.deliveredPerSecond ? s : m), steps[0]!);
  const creating = Math.max(...steps.map((s) => s.regimes.creating?.delivered ?? 0));
  const fulls = steps.map((s) => s.regimes.full?.delivered ?? 0);
  // The knee: the highest offered rate still delivered whole (99%).
  const whole = steps.filter((s) => (s.deliveredRatio ?? 0) >= 0.99);
  const knee = whole.length ? whole.reduce((m, s) => (s.sentPerSecond > m.sentPerSecond ? s : m)) : null;
  log(
    `capacity: ${fmt(best.deliveredPerSecond)} SYN/s delivered at most over a ${opts.seconds} s flood (offered ${best.rate ? fmt(best.rate) : 'max'}/s); ` +
      `delivered whole (≥ 99%) up to ${knee ? fmt(knee.sentPerSecond) : '—'}/s offered; ` +
      `at most ${fmt(creating)}/s while creating flows, ${fmt(Math.max(...fulls)) || '—'}/s once the table was full`,
  );
  return { steps, capacity: best.deliveredPerSecond, knee: knee?.sentPerSecond ?? null, creating, full: Math.max(...fulls) || null };
}

// ---------------------------------------------------------------- 2. established connections under a flood

/** What test/fixtures/echo-load.mjs prints (the fields kept here). */
interface EchoResult {
  ok: boolean;
  mbitPerSecond?: number;
  latencyMs?: { p50: number; p99: number; max: number };
  maxStallMs?: number;
  failures?: string[];
}

interface Scenario {
  name: string;
  rate: number;
  floodSent: number | null;
  floodPerSecond: number | null;
  path: Delta;
  echo: {
    ok: boolean;
    mbitPerSecond: number | null;
    latencyMs: EchoResult['latencyMs'] | null;
    maxStallMs: number | null;
    failures: string[];
  };
  ping: Ping;
  newConnections: { fromBackend: Probe; fromSharedSession: Probe; afterFromBackend: Probe; afterFromSharedSession: Probe };
  counters: Record<string, number>;
  vipnatExit: number | string | null;
}

/** The established connections: ESTABLISHED echo connections from the backend to VIP:PORT, sending as fast as they can. */
function startLoad(): ReturnType<Lab['start']> {
  const spec = {
    dial: [[VIP, PORT, ESTABLISHED]],
    seconds: opts.seconds,
    rate: 0,
    chunk: 16384,
    window: 65536,
    startAfterMs: 1000,
    drainMs: 60_000,
  };
  return lab.start('ip', ['netns', 'exec', lab.be, 'node', ECHO_LOAD, JSON.stringify(spec)]);
}

/** New connections, both kinds: from the backend to the flooded VIP, and from the shared session to the backend. */
async function probes(up: Up): Promise<[Probe, Probe]> {
  const probe = async (ns: string, host: string, port: number): Promise<Probe> => {
    const t = Date.now();
    const r = await lab.nsRun(ns, ['node', PARALLEL, host, String(port), String(PROBE_CONNECTIONS), '16384'], 60_000);
    return parseProbe(r, Date.now() - t);
  };
  return Promise.all([probe(lab.be, VIP, PORT), probe(up.shared.netns, BACKEND, BACKEND_ECHO_PORT)]);
}

async function scenario(name: string, rate: number): Promise<Scenario> {
  const up = await vipnatUp();
  const S = opts.seconds;
  try {
    const load = startLoad();
    await waitFor('the established connections', () => load.err.includes('echo-load: connected') || !load.running, 30_000);
    // The flood starts with the wait before sending, and outlasts the load by a little.
    const fl = rate ? flood(rate, S + 1.5) : null;
    await sleep(1000);
    const a = snapshot(up);
    const ping = lab.nsRun(lab.be, ['ping', '-q', '-i', '0.01', '-w', String(S), '-W', '1', VIP], (S + 30) * 1000);
    // Late in the flood (the flow table has had time to fill, if it does): new connections, both kinds.
    await sleep(Math.max(0, S * 1000 - 2000));
    const during = probes(up);
    const p = parsePing((await ping).stdout);
    const b = snapshot(up);
    const f = fl ? await fl : null;
    // And once the flood is over: its flows stay (a table full of them stays full until they expire).
    const after = await probes(up);
    const [inbound, sharedOut] = await during;
    const ld = await load.done;
    let echo: EchoResult;
    try {
      echo = JSON.parse(load.out.trim().split('\n').pop()!) as EchoResult;
    } catch {
      echo = { ok: false, failures: [`echo-load exited ${ld.code ?? ld.signal}: ${load.err.trim().slice(-300)}`] };
    }
    const v = await up.c.stop();
    const g = f && f.code === 0 ? (JSON.parse(f.stdout.trim()) as GenResult) : null;
    return {
      name,
      rate,
      floodSent: g?.sent ?? null,
      floodPerSecond: g ? g.sent / g.seconds : null,
      path: delta(a, b),
      echo: {
        ok: echo.ok,
        mbitPerSecond: echo.mbitPerSecond ?? null,
        latencyMs: echo.latencyMs ?? null,
        maxStallMs: echo.maxStallMs ?? null,
        failures: echo.failures ?? [],
      },
      ping: p,
      newConnections: { fromBackend: inbound, fromSharedSession: sharedOut, afterFromBackend: after[0], afterFromSharedSession: after[1] },
      counters: counters(v.dataplane),
      vipnatExit: v.exit,
    };
  } finally {
    await up.c.stop(20_000);
  }
}

function printScenario(r: Scenario): void {
  const e = r.echo;
  log(`-- ${r.name}${r.rate ? ` (${fmt(r.rate)} SYN/s asked, ${fmt(r.floodPerSecond)}/s sent)` : ''}`);
  log(
    `   echo: ${e.mbitPerSecond ?? '—'} Mbit/s each way, latency p50 ${e.latencyMs?.p50 ?? '—'} / p99 ${e.latencyMs?.p99 ?? '—'} / max ${e.latencyMs?.max ?? '—'} ms, longest stall ${e.maxStallMs ?? '—'} ms, ${e.ok ? 'every byte back, no reset' : `FAILED: ${e.failures.slice(0, 3).join('; ')}`}`,
  );
  log(
    `   ping: ${r.ping.received ?? '—'} of ${r.ping.sent ?? '—'} answered (${pct(r.ping.loss)} lost), rtt avg ${r.ping.rttAvgMs ?? '—'} / max ${r.ping.rttMaxMs ?? '—'} ms`,
  );
  const nc = r.newConnections;
  const pr = (x: Probe): string => `${x.ok} of ${PROBE_CONNECTIONS} (${x.ms} ms)`;
  log(
    `   new connections during the flood: backend -> VIP ${pr(nc.fromBackend)}, shared session -> backend ${pr(nc.fromSharedSession)}; ` +
      `just after it: ${pr(nc.afterFromBackend)}, ${pr(nc.afterFromSharedSession)}`,
  );
  log(
    `   path: ${fmt(r.path.toVipnat)} read by vipnat, ${fmt(r.path.uplinkDropped)} dropped at its uplink TUN, ${fmt(r.path.delivered)} delivered to the session; vipnat CPU ${r.path.vipnatCpu == null ? '—' : `${(100 * r.path.vipnatCpu).toFixed(0)}%`} of a core, machine ${(100 * r.path.machineBusy).toFixed(0)}% busy`,
  );
  log(`   vipnat: ${countersText(r.counters)}`);
}

async function established(cap: number): Promise<Scenario[]> {
  log(
    `\n== 2. ${ESTABLISHED} established echo connections (backend -> ${VIP}:${PORT}), a 100 Hz ping, new-connection probes; ${opts.seconds} s`,
  );
  const runs: Scenario[] = [];
  const [half, twice] = opts.scenarioRates ?? [Math.round(cap / 2), Math.round(cap * 2)];
  const what = opts.scenarioRates ? '(--scenario-rates)' : 'the capacity';
  for (const [name, rate] of [
    ['no flood', 0],
    [`flood at half ${what}`, half!],
    [`flood at twice ${what}`, twice!],
  ] as const) {
    const r = await scenario(name, rate);
    runs.push(r);
    printScenario(r);
  }
  return runs;
}

// ---------------------------------------------------------------- main

function machine(): { cpu: string; cores: number; memGiB: number; kernel: string; node: string } {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(2),
    kernel: os.release(),
    node: process.version,
  };
}

function commit(): string {
  const r = spawnSync('git', ['-C', ROOT, 'describe', '--always', '--dirty', '--exclude', '*'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

/** The lab, the generator and the backend's echo server (for the shared session's probes). */
async function setUp(): Promise<void> {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), PREFIX));
  onCleanup(() => fs.rmSync(tmp, { recursive: true, force: true }));
  gen = compileGenerator(tmp);
  sweepLabs(PREFIX);
  lab = Lab.up({ prefix: PREFIX });
  // The flood's sources are routed back to the backend, which drops the SYN-ACKs to them.
  sh('ip', ['-n', lab.gw, 'route', 'add', FLOOD_SOURCES, 'via', BACKEND]);
  lab.start('ip', ['netns', 'exec', lab.be, 'node', TCP_ECHO, String(BACKEND_ECHO_PORT)], { keep: false });
  await waitFor('the backend echo server', () => tcpListening(lab.be, BACKEND_ECHO_PORT));
}

async function main(): Promise<void> {
  const t0 = Date.now();
  await setUp();
  const m = machine();
  log(
    `flood: lab ${lab.name}; vipnat ${opts.inner ? `NAT mode (--inner-address ${opts.inner})` : 'address mode'}${opts.workers ? `, --workers ${opts.workers}` : ''}${opts.maxFlows ? `, --max-flows ${opts.maxFlows}` : ''}; ${m.cores} CPUs, ${m.cpu}`,
  );
  const cap = await capacity();
  const runs = await established(cap.capacity);
  const result = {
    date: new Date().toISOString(),
    commit: commit(),
    command: `node dist-tools/bench/flood.js ${process.argv.slice(2).join(' ')}`.trim(),
    machine: m,
    options: opts,
    capacity: cap,
    established: runs,
    durationSeconds: +((Date.now() - t0) / 1000).toFixed(1),
  };
  log(`\nflood: done in ${result.durationSeconds} s`);
  if (opts.save) {
    fs.mkdirSync(RESULTS, { recursive: true });
    const d = result.date;
    const file = path.join(RESULTS, `flood-${d.slice(0, 10)}T${d.slice(11, 13)}${d.slice(14, 16)}Z-${result.commit}.json`);
    fs.writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    log(`flood: results in ${path.relative(ROOT, file)}`);
  }
  if (opts.json) log(JSON.stringify(result));
}

asDriver('flood');
// Exits when done: the backend's echo server would keep the loop alive (cleanup runs at exit).
main().then(
  () => process.exit(0),
  (e: Error) => {
    process.stderr.write(`flood: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
