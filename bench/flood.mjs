#!/usr/bin/env node
// Flood benchmark (`make bench-flood`): the new-flow packet rate vipnat absorbs, and what floods at half and twice that rate do to established connections.
//
// A lab of its own (vnflood-PID-*: a gateway namespace where vipnat runs, a backend namespace,
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
//
// Usage: node bench/flood.mjs [--seconds N] [--rates R,R,...] [--repeat N] [--scenario-rates HALF,TWICE]
//                             [--inner-address A] [--workers N] [--max-flows N] [--save] [--json]
// --seconds N  length of every flood and load (default 5);  --rates  the capacity ladder in packets/s,
// 0 meaning as fast as the generator can (default 10000,25000,50000,100000,150000,200000,300000,0);
// --repeat N  runs per rate, the best kept (default 2);  --scenario-rates  the floods of part 2 in packets/s
// instead of half and twice the measured capacity (to compare two builds at the same rates).
// --save writes bench/results/flood-<UTC date>-<commit>.json;  --json prints the results as one JSON line.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BACKEND,
  labUp,
  linkStats,
  log,
  nsRun,
  onCleanup,
  ROOT,
  sh,
  sleep,
  start,
  startVipnat,
  stop,
  stopVipnat,
  waitFor,
  waitSessions,
} from '../scripts/lab.mjs';

const GEN_SRC = path.join(ROOT, 'bench/flood-gen.c');
const ECHO_LOAD = path.join(ROOT, 'test/fixtures/echo-load.mjs');
const PARALLEL = path.join(ROOT, 'test/fixtures/parallel-echo.mjs');
const TCP_ECHO = path.join(ROOT, 'test/fixtures/tcp-echo.mjs');
const RESULTS = path.join(ROOT, 'bench/results');
const VIP = '198.19.8.1';
const PORT = 7300;
const BACKEND_ECHO_PORT = 7200;
const FLOOD_SOURCES = '10.200.0.0/16';
const ESTABLISHED = 5;
const PROBE_CONNECTIONS = 10;

// ---------------------------------------------------------------- options

function usage(err) {
  const text = fs
    .readFileSync(fileURLToPath(import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => /^\/\/ (Usage| {4}|--seconds|0 meaning|--repeat|instead of|--save)/.test(l))
    .map((l) => l.replace(/^\/\/ ?/, ''))
    .join('\n');
  (err ? process.stderr : process.stdout).write(`${err ? `flood: ${err}\n` : ''}${text}\n`);
  process.exit(err ? 2 : 0);
}

function parseArgs(argv) {
  const o = {
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
  const num = (v, flag, min) => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) usage(`${flag} ${v}: must be a whole number from ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => argv[++i];
    if (a === '--seconds') o.seconds = num(v(), a, 1);
    else if (a === '--rates') {
      const text = v() ?? '';
      o.rates = text.split(',').map((r) => num(r, a, 0));
    } else if (a === '--inner-address') o.inner = v();
    else if (a === '--workers') o.workers = num(v(), a, 1);
    else if (a === '--max-flows') o.maxFlows = num(v(), a, 1024);
    else if (a === '--repeat') o.repeat = num(v(), a, 1);
    else if (a === '--scenario-rates') {
      const text = v() ?? '';
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

const fmt = (n) => (n == null ? '—' : Math.round(n).toLocaleString('en-US').replace(/,/g, ' '));
const pct = (x) => (x == null ? '—' : `${(100 * x).toFixed(x < 0.1 ? 2 : 1)}%`);
const pad = (s, n) => String(s).padStart(n);

/** CPU seconds (user + system, all threads) of process `pid`. */
function cpuSeconds(pid) {
  try {
    const st = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = st.slice(st.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / 100; // CLK_TCK is 100 on Linux
  } catch {
    return null;
  }
}

/** The machine's CPU time so far, busy and in all (jiffies over every CPU, from /proc/stat). */
function machineCpu() {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  const idle = f[3] + (f[4] ?? 0); // idle + iowait
  const total = f.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

function compileGenerator(dir) {
  const out = path.join(dir, 'flood-gen');
  const r = spawnSync('cc', ['-O2', '-Wall', '-o', out, GEN_SRC], { encoding: 'utf8' });
  if (r.error || r.status !== 0)
    throw new Error(`cc ${GEN_SRC}: ${r.error?.message ?? r.stderr.trim()} (scripts/setup-bench.sh installs gcc)`);
  return out;
}

function parsePing(out) {
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

function parseProbe(r) {
  const ok = /echo ok (\d+)/.exec(r.stdout);
  const failed = (r.stdout.match(/connection \d+:/g) ?? []).length;
  return { ok: ok ? Number(ok[1]) : PROBE_CONNECTIONS - failed, failed, ms: r.ms };
}

// ---------------------------------------------------------------- the lab and vipnat

let lab;
let gen;
let tmp;

/** A fresh vipnat: session 1 (the VIP) listens on PORT, session 2 runs on the shared address. */
async function vipnatUp() {
  const args = ['run', '--json', '--pool', VIP, '--sessions', '2', '--on-exhausted', 'shared'];
  if (opts.inner) args.push('--inner-address', opts.inner);
  if (opts.workers) args.push('--workers', String(opts.workers));
  if (opts.maxFlows) args.push('--max-flows', String(opts.maxFlows));
  const script = `if [ "$VIPNAT_SESSION_ID" = 1 ]; then exec socat TCP6-LISTEN:${PORT},fork,reuseaddr,nodelay,backlog=128 PIPE; else exec sleep 86400; fi`;
  const c = startVipnat(lab.gw, [...args, '--', 'sh', '-c', script]);
  const sessions = await waitSessions(c, 2, 60_000);
  const target = sessions.find((s) => s.vip === VIP);
  const shared = sessions.find((s) => s.shared);
  if (!target || !shared) throw new Error(`unexpected sessions: ${JSON.stringify(sessions)}`);
  await waitFor('the listener in session 1', () => {
    const r = spawnSync('ip', ['netns', 'exec', target.netns, 'ss', '-Hltn', `sport = :${PORT}`], { encoding: 'utf8' });
    return r.status === 0 && r.stdout.trim() !== '';
  });
  return { c, target, shared };
}

/** The kernel's counters along the flood's path, and vipnat's CPU. */
function snapshot(up) {
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

function delta(a, b) {
  const secs = (b.t - a.t) / 1000;
  const d = (k) => b[k] - a[k];
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

function flood(rate, seconds) {
  const mac = JSON.parse(sh('ip', ['-n', lab.gw, '-j', 'link', 'show', 'dev', 'be0']))[0].address;
  const args = ['--iface', 'gw0', '--mac', mac, '--src', FLOOD_SOURCES, '--dst', VIP, '--dport', String(PORT), '--kind', 'syn'];
  return nsRun(lab.be, [gen, ...args, '--rate', String(rate), '--seconds', String(seconds)], (seconds + 30) * 1000);
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

function counters(dp) {
  const out = {};
  for (const k of COUNTERS) if (dp && k in dp) out[k] = dp[k];
  return out;
}

function countersText(c) {
  return Object.entries(c)
    .map(([k, v]) => `${k} ${fmt(v)}`)
    .join(', ');
}

// ---------------------------------------------------------------- 1. capacity

/**
 * Rates in the two regimes of a step, from the uplink TUN's counters sampled during the flood:
 * while vipnat still creates a flow per SYN, and once its table is full (then it forwards the
 * rest without state; every SYN read until then made a flow, as none expires within seconds).
 */
function regimes(samples, capacity) {
  const [t0, p0, d0] = samples[0];
  const [t1, , d1] = samples.at(-1);
  const fill = samples.findIndex(([, p]) => p - p0 >= capacity);
  const rate = (a, b) => ({
    seconds: +((b[0] - a[0]) / 1000).toFixed(2),
    delivered: (b[1] - a[1]) / ((b[0] - a[0]) / 1000),
    dropped: b[2] - a[2],
  });
  if (fill < 0 || t1 - t0 < 400) return { creating: rate(samples[0], samples.at(-1)), full: null, fillSeconds: null };
  const f = samples[fill];
  return {
    creating: rate(samples[0], f),
    full: f[0] < t1 - 200 ? rate(f, samples.at(-1)) : null,
    fillSeconds: +((f[0] - t0) / 1000).toFixed(2),
    droppedAll: d1 - d0,
  };
}

async function capacityStep(rate) {
  const up = await vipnatUp();
  try {
    const sample = () => {
      const u = linkStats(lab.gw, 'vipnat0').tx;
      return [Date.now(), u.packets, u.dropped];
    };
    const a = snapshot(up);
    const samples = [sample()];
    const timer = setInterval(() => samples.push(sample()), 200);
    const r = await flood(rate, opts.seconds);
    clearInterval(timer);
    if (r.code !== 0) throw new Error(`flood-gen: ${r.stderr.trim() || `exit ${r.code}`}`);
    const g = JSON.parse(r.stdout.trim());
    samples.push(sample());
    await sleep(300); // what is queued drains
    const b = snapshot(up);
    const d = delta(a, b);
    const v = await stopVipnat(up.c);
    const secs = g.seconds;
    return {
      rate: rate || null,
      sent: g.sent,
      sentPerSecond: g.sent / secs,
      ...d,
      deliveredPerSecond: d.delivered / secs,
      deliveredRatio: g.sent ? d.delivered / g.sent : null,
      regimes: regimes(samples, v.dataplane?.flowCapacity ?? 262144),
      counters: counters(v.dataplane),
      vipnatExit: v.exit,
    };
  } finally {
    await stop(up.c, 'SIGTERM', 20_000);
  }
}

async function capacity() {
  log(
    `\n== 1. capacity: TCP SYNs from new sources to ${VIP}:${PORT}, ${opts.seconds} s per rate, a fresh vipnat each, the best of ${opts.repeat}`,
  );
  log(
    `${pad('offered/s', 10)} ${pad('sent/s', 10)} ${pad('delivered/s', 12)} ${pad('delivered', 10)} ${pad('TUN drops', 10)} ${pad('creating/s', 11)} ${pad('full at', 8)} ${pad('full/s', 9)} ${pad('vipnat', 7)} ${pad('machine', 8)}  vipnat counters`,
  );
  const steps = [];
  for (const rate of opts.rates) {
    let s = null;
    for (let k = 0; k < opts.repeat; k++) {
      const t = await capacityStep(rate);
      if (!s || t.deliveredPerSecond > s.deliveredPerSecond) s = { ...t, runs: [...(s?.runs ?? []), t.deliveredPerSecond] };
      else s.runs.push(t.deliveredPerSecond);
    }
    steps.push(s);
    const g = s.regimes;
    log(
      `${pad(rate ? fmt(rate) : 'max', 10)} ${pad(fmt(s.sentPerSecond), 10)} ${pad(fmt(s.deliveredPerSecond), 12)} ${pad(pct(s.deliveredRatio), 10)} ${pad(fmt(s.uplinkDropped), 10)} ` +
        `${pad(fmt(g.creating?.delivered), 11)} ${pad(g.fillSeconds == null ? '—' : `${g.fillSeconds} s`, 8)} ${pad(fmt(g.full?.delivered), 9)} ` +
        `${pad(s.vipnatCpu == null ? '—' : `${(100 * s.vipnatCpu).toFixed(0)}%`, 7)} ${pad(`${(100 * s.machineBusy).toFixed(0)}%`, 8)}  ${countersText(s.counters)}`,
    );
  }
  const best = steps.reduce((m, s) => (s.deliveredPerSecond > m.deliveredPerSecond ? s : m), steps[0]);
  const creating = Math.max(...steps.map((s) => s.regimes.creating?.delivered ?? 0));
  const fulls = steps.map((s) => s.regimes.full?.delivered ?? 0);
  // The knee: the highest offered rate still delivered whole (99%).
  const whole = steps.filter((s) => s.deliveredRatio >= 0.99);
  const knee = whole.length ? whole.reduce((m, s) => (s.sentPerSecond > m.sentPerSecond ? s : m)) : null;
  log(
    `capacity: ${fmt(best.deliveredPerSecond)} SYN/s delivered at most over a ${opts.seconds} s flood (offered ${best.rate ? fmt(best.rate) : 'max'}/s); ` +
      `delivered whole (≥ 99%) up to ${knee ? fmt(knee.sentPerSecond) : '—'}/s offered; ` +
      `at most ${fmt(creating)}/s while creating flows, ${fmt(Math.max(...fulls)) || '—'}/s once the table was full`,
  );
  return { steps, capacity: best.deliveredPerSecond, knee: knee?.sentPerSecond ?? null, creating, full: Math.max(...fulls) || null };
}

// ---------------------------------------------------------------- 2. established connections under a flood

async function scenario(name, rate) {
  const up = await vipnatUp();
  const S = opts.seconds;
  try {
    const load = start('ip', [
      'netns',
      'exec',
      lab.be,
      'node',
      ECHO_LOAD,
      JSON.stringify({
        dial: [[VIP, PORT, ESTABLISHED]],
        seconds: S,
        rate: 0,
        chunk: 16384,
        window: 65536,
        startAfterMs: 1000,
        drainMs: 60_000,
      }),
    ]);
    await waitFor('the established connections', () => load.err.includes('echo-load: connected') || load.exitCode !== null, 30_000);
    // The flood starts with the wait before sending, and outlasts the load by a little.
    const fl = rate ? flood(rate, S + 1.5) : null;
    await sleep(1000);
    const a = snapshot(up);
    const ping = nsRun(lab.be, ['ping', '-q', '-i', '0.01', '-w', String(S), '-W', '1', VIP], (S + 30) * 1000);
    const probe = async (ns, host, port) => {
      const t = Date.now();
      const r = await nsRun(ns, ['node', PARALLEL, host, String(port), String(PROBE_CONNECTIONS), '16384'], 60_000);
      return parseProbe({ ...r, ms: Date.now() - t });
    };
    const probes = () => Promise.all([probe(lab.be, VIP, PORT), probe(up.shared.netns, BACKEND, BACKEND_ECHO_PORT)]);
    // Late in the flood (the flow table has had time to fill, if it does): new connections, both kinds.
    await sleep(Math.max(0, S * 1000 - 2000));
    const during = probes();
    const p = parsePing((await ping).stdout);
    const b = snapshot(up);
    const f = fl ? await fl : null;
    // And once the flood is over: its flows stay (a table full of them stays full until they expire).
    const after = await probes();
    const [inbound, sharedOut] = await during;
    const ld = await load.done;
    let echo;
    try {
      echo = JSON.parse(load.out.trim().split('\n').pop());
    } catch {
      echo = { ok: false, failures: [`echo-load exited ${ld.code ?? ld.signal}: ${load.err.trim().slice(-300)}`] };
    }
    const v = await stopVipnat(up.c);
    const g = f && f.code === 0 ? JSON.parse(f.stdout.trim()) : null;
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
    await stop(up.c, 'SIGTERM', 20_000);
  }
}

async function established(cap) {
  log(
    `\n== 2. ${ESTABLISHED} established echo connections (backend -> ${VIP}:${PORT}), a 100 Hz ping, new-connection probes; ${opts.seconds} s`,
  );
  const runs = [];
  const [half, twice] = opts.scenarioRates ?? [Math.round(cap / 2), Math.round(cap * 2)];
  const what = opts.scenarioRates ? '(--scenario-rates)' : 'the capacity';
  for (const [name, rate] of [
    ['no flood', 0],
    [`flood at half ${what}`, half],
    [`flood at twice ${what}`, twice],
  ]) {
    const r = await scenario(name, rate);
    runs.push(r);
    const e = r.echo;
    log(`-- ${name}${rate ? ` (${fmt(rate)} SYN/s asked, ${fmt(r.floodPerSecond)}/s sent)` : ''}`);
    log(
      `   echo: ${e.mbitPerSecond ?? '—'} Mbit/s each way, latency p50 ${e.latencyMs?.p50 ?? '—'} / p99 ${e.latencyMs?.p99 ?? '—'} / max ${e.latencyMs?.max ?? '—'} ms, longest stall ${e.maxStallMs ?? '—'} ms, ${e.ok ? 'every byte back, no reset' : `FAILED: ${e.failures.slice(0, 3).join('; ')}`}`,
    );
    log(
      `   ping: ${r.ping.received ?? '—'} of ${r.ping.sent ?? '—'} answered (${pct(r.ping.loss)} lost), rtt avg ${r.ping.rttAvgMs ?? '—'} / max ${r.ping.rttMaxMs ?? '—'} ms`,
    );
    const nc = r.newConnections;
    const pr = (x) => `${x.ok} of ${PROBE_CONNECTIONS} (${x.ms} ms)`;
    log(
      `   new connections during the flood: backend -> VIP ${pr(nc.fromBackend)}, shared session -> backend ${pr(nc.fromSharedSession)}; ` +
        `just after it: ${pr(nc.afterFromBackend)}, ${pr(nc.afterFromSharedSession)}`,
    );
    log(
      `   path: ${fmt(r.path.toVipnat)} read by vipnat, ${fmt(r.path.uplinkDropped)} dropped at its uplink TUN, ${fmt(r.path.delivered)} delivered to the session; vipnat CPU ${r.path.vipnatCpu == null ? '—' : `${(100 * r.path.vipnatCpu).toFixed(0)}%`} of a core, machine ${(100 * r.path.machineBusy).toFixed(0)}% busy`,
    );
    log(`   vipnat: ${countersText(r.counters)}`);
  }
  return runs;
}

// ---------------------------------------------------------------- main

function machine() {
  const cpus = os.cpus();
  return {
    cpu: cpus[0]?.model?.trim() ?? 'unknown',
    cores: cpus.length,
    memGiB: +(os.totalmem() / 2 ** 30).toFixed(2),
    kernel: os.release(),
    node: process.version,
  };
}

function commit() {
  const r = spawnSync('git', ['-C', ROOT, 'describe', '--always', '--dirty', '--exclude', '*'], { encoding: 'utf8' });
  return r.status === 0 ? r.stdout.trim() : 'unknown';
}

async function main() {
  const t0 = Date.now();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnflood-'));
  onCleanup(() => fs.rmSync(tmp, { recursive: true, force: true }));
  gen = compileGenerator(tmp);
  lab = labUp('vnflood-');
  // The flood's sources are routed back to the backend, which drops the SYN-ACKs to them.
  sh('ip', ['-n', lab.gw, 'route', 'add', FLOOD_SOURCES, 'via', BACKEND]);
  start('ip', ['netns', 'exec', lab.be, 'node', TCP_ECHO, String(BACKEND_ECHO_PORT)], { keep: false });
  await waitFor('the backend echo server', () => {
    const r = spawnSync('ip', ['netns', 'exec', lab.be, 'ss', '-Hltn', `sport = :${BACKEND_ECHO_PORT}`], { encoding: 'utf8' });
    return r.status === 0 && r.stdout.trim() !== '';
  });
  const m = machine();
  log(
    `flood: lab ${lab.name}; vipnat ${opts.inner ? `NAT mode (--inner-address ${opts.inner})` : 'address mode'}${opts.workers ? `, --workers ${opts.workers}` : ''}${opts.maxFlows ? `, --max-flows ${opts.maxFlows}` : ''}; ${m.cores} CPUs, ${m.cpu}`,
  );
  const cap = await capacity();
  const runs = await established(cap.capacity);
  const result = {
    date: new Date().toISOString(),
    commit: commit(),
    command: `node bench/flood.mjs ${process.argv.slice(2).join(' ')}`.trim(),
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

// Exits when done: the backend's echo server would keep the loop alive (cleanup runs at exit).
main().then(
  () => process.exit(0),
  (e) => {
    process.stderr.write(`flood: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
