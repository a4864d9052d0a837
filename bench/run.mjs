#!/usr/bin/env node
// The benchmark harness (`make bench`): kernel, vipnat (address and NAT mode) and slirp4netns on one lab, micro-benchmarks, scale.
//
// Paths, each from a client namespace to a backend namespace (198.18.0.2) through the lab's gateway namespace:
//   kernel   NAME-k joined to the gateway by a veth pair and routed by the gateway's kernel (the physical limit)
//   address  a vipnat session (vipnat runs in the gateway namespace; eth0 holds the VIP)
//   nat      a vipnat session in NAT mode (--inner-address 10.0.2.100)
//   slirp    NAME-s with slirp4netns attached, slirp4netns running in the gateway namespace
// Loads: iperf3 (TCP bulk both ways, 1 and 4 streams, MTU 1500 and 65520; UDP packets/s with 16-byte
// datagrams), wrk against nginx (requests/s on one connection; new connections/s with `Connection: close`).
// Every namespace is named vnbench-*, and the lab has no link to the machine's own network.
//
// Usage: node bench/run.mjs [--quick] [--only tcp,rr,conn,udp,micro,scale] [--paths kernel,address,nat,slirp]
//                           [--mtu 1500,65520] [--seconds N] [--repeat N] [--scale-sessions N] [--workers N] [--save | --no-save]
// --repeat N keeps the best of N rounds over all paths for every network figure (default 2; 1 with --quick).
// --workers N runs vipnat with N dataplane workers (default: vipnat's own, one per two CPUs, 1-4); a partial run.
// A full run saves bench/results/<UTC date>-<commit>.json and latest.md and updates README.md; a partial
// or --quick run only prints, unless --save.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const LAB_SH = path.join(ROOT, 'scripts/lab.sh');
const VIPNAT = path.join(ROOT, 'bin/vipnat');
const PACKET_PATH = path.join(ROOT, 'bench/packet-path.mjs');
const RESULTS = path.join(ROOT, 'bench/results');
const README = path.join(ROOT, 'README.md');
const PREFIX = 'vnbench-';
const BACKEND = '198.18.0.2';
const POOL = '198.19.8.0/24';
const SCALE_POOL = '198.19.0.0/16';
const INNER = '10.0.2.100';
const IPERF_PORT = 5201;
const HTTP_PORT = 8080;
const CONN_CLIENTS = 8; // wrk processes for new connections/s (one per vipnat session)
const CONN_PER_CLIENT = 4;

const ALL_PATHS = ['kernel', 'address', 'nat', 'slirp'];
const PATH_LABEL = { kernel: 'kernel', address: 'vipnat address', nat: 'vipnat NAT', slirp: 'slirp4netns' };
const ALL_ONLY = ['tcp', 'rr', 'conn', 'udp', 'micro', 'scale'];

// ---------------------------------------------------------------- options

function parseArgs(argv) {
  const o = {
    quick: false,
    only: [...ALL_ONLY],
    paths: [...ALL_PATHS],
    mtus: [1500, 65520],
    seconds: 5,
    repeat: 2,
    scaleSessions: 1000,
    workers: null,
    save: null,
    partial: false,
  };
  let secondsSet = false,
    scaleSet = false,
    repeatSet = false;
  const list = (v, allowed, flag) => {
    const xs = String(v ?? '')
      .split(',')
      .filter(Boolean);
    for (const x of xs) if (!allowed.includes(x)) usage(`${flag} ${v}: "${x}" is not one of ${allowed.join(', ')}`);
    if (xs.length === 0) usage(`${flag} needs a value`);
    return xs;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--quick') o.quick = true;
    else if (a === '--only') {
      o.only = list(next(), ALL_ONLY, '--only');
      o.partial = true;
    } else if (a === '--paths') {
      o.paths = list(next(), ALL_PATHS, '--paths');
      o.partial = true;
    } else if (a === '--mtu') {
      o.mtus = list(next(), ['1500', '65520'], '--mtu').map(Number);
      o.partial = true;
    } else if (a === '--seconds') {
      o.seconds = positive(next(), '--seconds');
      secondsSet = true;
    } else if (a === '--repeat') {
      o.repeat = positive(next(), '--repeat');
      repeatSet = true;
    } else if (a === '--scale-sessions') {
      o.scaleSessions = positive(next(), '--scale-sessions');
      scaleSet = true;
    } else if (a === '--workers') {
      o.workers = positive(next(), '--workers');
      o.partial = true;
    } else if (a === '--save') o.save = true;
    else if (a === '--no-save') o.save = false;
    else if (a === '-h' || a === '--help') usage(null);
    else usage(`unknown argument ${a}`);
  }
  if (o.quick) {
    if (!secondsSet) o.seconds = 2;
    if (!scaleSet) o.scaleSessions = 100;
    if (!repeatSet) o.repeat = 1;
  }
  if (scaleSet && o.scaleSessions !== 1000) o.partial = true;
  if (o.save === null) o.save = !o.quick && !o.partial;
  return o;
}

function positive(v, flag) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usage(`${flag} ${v}: must be a positive integer`);
  return n;
}

function usage(err) {
  const text = fs
    .readFileSync(fileURLToPath(import.meta.url), 'utf8')
    .split('\n')
    .filter(
      (l) =>
        l.startsWith('// Usage') ||
        l.startsWith('//    ') ||
        l.startsWith('// --repeat') ||
        l.startsWith('// --workers') ||
        l.startsWith('// A full') ||
        l.startsWith('// or --quick'),
    );
  const out = text.map((l) => l.replace(/^\/\/ ?/, '')).join('\n');
  if (err) {
    process.stderr.write(`bench: ${err}\n${out}\n`);
    process.exit(2);
  }
  process.stdout.write(`${out}\n`);
  process.exit(0);
}

const opts = parseArgs(process.argv.slice(2));

// ---------------------------------------------------------------- processes and cleanup

const live = new Set(); // every child we started and that has not exited
const vipnatPids = new Set(); // vipnat processes we started: their session namespaces are vipnat-PID-*
let lab = null;
let tmp = null;
let cleaned = false;

function log(s = '') {
  process.stdout.write(`${s}\n`);
}

function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Whether `pid` is a running (not zombie) process. */
function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** Starts a child in its own process group (terminal signals reach only us: we stop children in order). */
function start(cmd, args, { stdout = 'pipe' } = {}) {
  const c = spawn(cmd, args, { stdio: ['ignore', stdout, 'pipe'], detached: true });
  live.add(c);
  c.once('exit', () => live.delete(c));
  c.once('error', () => live.delete(c));
  c.out = '';
  c.err = '';
  if (c.stdout) {
    c.stdout.setEncoding('utf8');
    c.stdout.on('data', (d) => (c.out += d));
  }
  c.stderr.setEncoding('utf8');
  c.stderr.on('data', (d) => (c.err += d));
  c.done = new Promise((resolve) => {
    c.once('close', (code, signal) => resolve({ code, signal }));
    c.once('error', (e) => resolve({ code: -1, signal: null, error: e }));
  });
  return c;
}

/** Runs a command to completion, killed after `timeoutMs`. */
async function run(cmd, args, timeoutMs = 60_000) {
  const c = start(cmd, args);
  const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
  const r = await c.done;
  clearTimeout(t);
  return { ...r, stdout: c.out, stderr: c.err, timedOut: r.signal === 'SIGKILL' };
}

function nsRun(ns, argv, timeoutMs) {
  return run('ip', ['netns', 'exec', ns, ...argv], timeoutMs);
}

/** A synchronous command that must succeed. */
function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr ?? '').trim() || `exit ${r.status}`}`);
  return r.stdout;
}

/** Stops a child: `signal`, then SIGKILL after `graceMs`. */
async function stop(c, signal = 'SIGTERM', graceMs = 10_000) {
  if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
  const r = await c.done;
  clearTimeout(t);
  return r;
}

/** Synchronous, so it also runs from signal handlers and on exit: children, vipnat's namespaces, the lab, temp files. */
function cleanup() {
  if (cleaned) return;
  cleaned = true;
  // vipnat first, with SIGTERM, so it removes its own sessions, routes and sysctls.
  const children = [...live];
  for (const c of children) if (c.pid && vipnatPids.has(c.pid) && alive(c.pid)) c.kill('SIGTERM');
  const end = Date.now() + 15_000;
  while (Date.now() < end && children.some((c) => c.pid && vipnatPids.has(c.pid) && alive(c.pid))) sleepSync(100);
  for (const c of children) if (c.pid && alive(c.pid)) c.kill('SIGTERM');
  sleepSync(children.length ? 200 : 0);
  for (const c of children) if (c.pid && alive(c.pid)) c.kill('SIGKILL');
  for (const pid of vipnatPids) spawnSync(LAB_SH, ['sweep', `vipnat-${pid}-`], { stdio: 'ignore' });
  if (lab) spawnSync(LAB_SH, ['down', lab], { stdio: 'ignore' });
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
}

for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
]) {
  process.on(sig, () => {
    log(`\nbench: ${sig}: stopping and cleaning up`);
    cleanup();
    process.exit(code);
  });
}
process.on('exit', cleanup);

// ---------------------------------------------------------------- formatting

function fmtNum(v, unit) {
  if (v === null || v === undefined || Number.isNaN(v)) return '—';
  if (unit === 'Gbit/s') return v >= 10 ? v.toFixed(1) : v >= 1 ? v.toFixed(2) : v.toFixed(3);
  if (unit === 'Mpps') return v.toFixed(2);
  if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString('en-US').replace(/,/g, ' ');
  return v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2);
}

function fmtRatio(a, b) {
  if (a == null || b == null || !b) return '—';
  const r = a / b;
  return `${r >= 10 ? r.toFixed(1) : r >= 0.1 ? r.toFixed(2) : r.toFixed(3)}×`;
}

function fmtBytes(n) {
  if (n == null) return '—';
  return n >= 1 << 30
    ? `${(n / (1 << 30)).toFixed(2)} GiB`
    : n >= 1 << 20
      ? `${(n / (1 << 20)).toFixed(1)} MiB`
      : `${(n / 1024).toFixed(0)} KiB`;
}

function pad(s, n) {
  s = String(s);
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}

function lpad(s, n) {
  s = String(s);
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

// ---------------------------------------------------------------- the measures

/** One row of the network table: a load at an MTU, with a value per path. */
const measures = [];

function measure(id, label, unit, targets) {
  const m = { id, label, unit, targets, values: {}, errors: {}, detail: {}, runs: {} };
  measures.push(m);
  return m;
}

function bulkId(mtu, dir, streams) {
  return `tcp-${mtu}-${dir}-${streams}`;
}

function defineMeasures() {
  for (const mtu of [1500, 65520]) {
    for (const dir of ['up', 'down']) {
      for (const p of [1, 4]) {
        const what = dir === 'up' ? 'session→backend' : 'backend→session';
        measure(bulkId(mtu, dir, p), `TCP bulk MTU ${mtu}, ${what}, ${p} stream${p > 1 ? 's' : ''}`, 'Gbit/s', {
          kernel: mtu === 65520 ? 0.8 : 0.5,
          slirp: 3,
        });
      }
    }
  }
  measure('conn', 'new TCP connections/s (connect, 1 request, close)', 'conn/s', { kernel: 0.5 });
  measure('rr', 'requests/s on one connection', 'req/s', { kernel: 0.5 });
  measure('udp', 'UDP packets/s received, 16-byte datagrams', 'pkt/s', {});
}

const byId = (id) => measures.find((m) => m.id === id);

/** 'met', 'not met', 'address only', 'NAT only' or '—' for a row's targets. */
function verdict(m) {
  const conds = Object.entries(m.targets);
  if (conds.length === 0) return { text: '—', met: null };
  const meets = (mode) => {
    const v = m.values[mode];
    if (v == null) return null;
    for (const [ref, k] of conds) {
      const r = m.values[ref];
      if (r == null) return null;
      if (v < k * r) return false;
    }
    return true;
  };
  const a = meets('address'),
    n = meets('nat');
  if (a === null && n === null) return { text: 'n/a', met: null };
  if (a !== false && n !== false) return { text: a === null || n === null ? 'met (one mode measured)' : 'met', met: true };
  if (a === true) return { text: 'address only', met: false };
  if (n === true) return { text: 'NAT only', met: false };
  return { text: 'not met', met: false };
}

function targetText(m) {
  const parts = [];
  if (m.targets.kernel) parts.push(`≥ ${m.targets.kernel}× kernel`);
  if (m.targets.slirp) parts.push(`≥ ${m.targets.slirp}× slirp4netns`);
  return parts.join(', ') || '—';
}

/** Adds one run's figure; a measure keeps the best run of each path (interference only ever lowers a figure). */
function record(m, pathName, value, detail) {
  (m.runs[pathName] ??= []).push(value ?? null);
  if (value == null) {
    const err = detail?.error ?? 'no result';
    if (m.values[pathName] == null) m.errors[pathName] = err;
    log(`  ${pad(PATH_LABEL[pathName], 15)} ${pad(m.label, 62)} FAILED: ${err}`);
    return;
  }
  delete m.errors[pathName];
  if (m.values[pathName] == null || value > m.values[pathName]) {
    m.values[pathName] = value;
    if (detail) m.detail[pathName] = detail;
  }
  const k = m.values.kernel;
  const ratio = pathName !== 'kernel' && k ? `  (${fmtRatio(value, k)} kernel)` : '';
  log(`  ${pad(PATH_LABEL[pathName], 15)} ${pad(m.label, 62)} ${lpad(fmtNum(value, m.unit), 10)} ${m.unit}${ratio}`);
}

// ---------------------------------------------------------------- loads

function iperfArgs(extra) {
  return ['iperf3', '-c', BACKEND, '-p', String(IPERF_PORT), '-J', '--connect-timeout', '5000', ...extra];
}

function iperfError(r) {
  try {
    const j = JSON.parse(r.stdout);
    if (j.error) return j.error;
  } catch {
    // not JSON
  }
  return (r.stderr.trim() || r.stdout.trim().slice(0, 200) || `exit ${r.code}${r.timedOut ? ' (timed out)' : ''}`).split('\n')[0];
}

async function tcpBulk(ns, dir, streams) {
  const omit = opts.seconds >= 4 ? 1 : 0;
  const r = await nsRun(
    ns,
    iperfArgs(['-t', String(opts.seconds), '-O', String(omit), '-P', String(streams), ...(dir === 'down' ? ['-R'] : [])]),
    (opts.seconds + omit + 30) * 1000,
  );
  if (r.code !== 0) {
    await restartIperf();
    return { value: null, detail: { error: iperfError(r) } };
  }
  const j = JSON.parse(r.stdout);
  const recv = j.end.sum_received,
    sent = j.end.sum_sent;
  return { value: recv.bits_per_second / 1e9, detail: { seconds: +recv.seconds.toFixed(2), retransmits: sent.retransmits ?? null } };
}

async function udpPps(ns) {
  const r = await nsRun(ns, iperfArgs(['-u', '-l', '16', '-b', '0', '-t', String(opts.seconds)]), (opts.seconds + 30) * 1000);
  if (r.code !== 0) {
    await restartIperf();
    return { value: null, detail: { error: iperfError(r) } };
  }
  const s = JSON.parse(r.stdout).end.sum_received;
  const got = s.packets - s.lost_packets;
  return { value: got / s.seconds, detail: { sent: s.packets, lost: s.lost_packets, lostPercent: +s.lost_percent.toFixed(2) } };
}

function parseWrk(out) {
  const rps = /Requests\/sec:\s+([\d.]+)/.exec(out);
  const total = /(\d+) requests in ([\d.]+)(m?s)/.exec(out);
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(out);
  const non2xx = /Non-2xx or 3xx responses: (\d+)/.exec(out);
  const errors = (sock ? sock.slice(1).reduce((a, b) => a + Number(b), 0) : 0) + (non2xx ? Number(non2xx[1]) : 0);
  return { rps: rps ? Number(rps[1]) : null, requests: total ? Number(total[1]) : null, errors };
}

const URL_TINY = `http://${BACKEND}:${HTTP_PORT}/tiny`;

/** Our nginx's worker processes (children of the master we started). */
function nginxWorkers() {
  const master = nginx?.pid;
  if (!master) return [];
  const out = [];
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === master) out.push(Number(d));
    } catch {
      // not JSON
    }
  }
  return out;
}

function pin(pids, cpus) {
  for (const pid of pids) spawnSync('taskset', ['-pc', cpus, String(pid)], { stdio: 'ignore' });
}

/**
 * One connection, one request at a time: the figure is mostly wake-up latency, which on a small VM
 * depends on whether client and server share a CPU (here 3x apart). So the client runs on CPU 0 and
 * the server on CPU 1, on every path; the gateway is left where the scheduler puts it.
 */
async function requestsPerSecond(ns) {
  const workers = nginxWorkers();
  const cpus = os.cpus().length;
  if (cpus > 1) pin(workers, '1');
  const r = await nsRun(
    ns,
    [...(cpus > 1 ? ['taskset', '-c', '0'] : []), 'wrk', '-c', '1', '-t', '1', '-d', `${opts.seconds}s`, '--timeout', '2s', URL_TINY],
    (opts.seconds + 30) * 1000,
  );
  if (cpus > 1) pin(workers, `0-${cpus - 1}`);
  const w = parseWrk(r.stdout);
  if (r.code !== 0 || w.rps === null) return { value: null, detail: { error: (r.stderr.trim() || `wrk exit ${r.code}`).split('\n')[0] } };
  if (w.errors > 0 && w.requests === 0) return { value: null, detail: { error: `${w.errors} errors, no response` } };
  return { value: w.rps, detail: { requests: w.requests, errors: w.errors } };
}

/** `namespaces`: one per wrk process (the same namespace repeated for the kernel and slirp4netns paths). */
async function connectionsPerSecond(namespaces) {
  const runs = await Promise.all(
    namespaces.map((ns) =>
      nsRun(
        ns,
        ['wrk', '-c', String(CONN_PER_CLIENT), '-t', '1', '-d', `${opts.seconds}s`, '--timeout', '2s', '-H', 'Connection: close', URL_TINY],
        (opts.seconds + 30) * 1000,
      ),
    ),
  );
  let sum = 0,
    requests = 0,
    errors = 0;
  for (const r of runs) {
    const w = parseWrk(r.stdout);
    if (r.code !== 0 || w.rps === null) return { value: null, detail: { error: (r.stderr.trim() || `wrk exit ${r.code}`).split('\n')[0] } };
    sum += w.rps;
    requests += w.requests ?? 0;
    errors += w.errors;
  }
  return { value: sum, detail: { clients: namespaces.length, connectionsEach: CONN_PER_CLIENT, requests, errors } };
}

// ---------------------------------------------------------------- the lab

const ns = {};
let iperfServer = null;
let nginx = null; // `ip netns exec` execs nginx: this is the master's pid

async function waitFor(what, cond, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

function listening(nsName, port) {
  const r = spawnSync('ip', ['netns', 'exec', nsName, 'ss', '-Hltn', `sport = :${port}`], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() !== '';
}

function clientSysctls(nsName) {
  // Many short connections from one namespace: reuse TIME-WAIT ports and use the whole port range.
  sh('ip', ['netns', 'exec', nsName, 'sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65535']);
}

async function startIperf() {
  iperfServer = start('ip', ['netns', 'exec', ns.be, 'iperf3', '-s', '-p', String(IPERF_PORT)], { stdout: 'ignore' });
  await waitFor('iperf3 server', () => listening(ns.be, IPERF_PORT));
}

async function restartIperf() {
  if (iperfServer) await stop(iperfServer, 'SIGKILL', 1000);
  await startIperf();
}

async function labUp() {
  sh(LAB_SH, ['sweep', PREFIX]); // leftovers of an interrupted run
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), PREFIX));
  fs.chmodSync(tmp, 0o755); // nginx's workers run as nobody
  lab = `${PREFIX}${randomBytes(3).toString('hex')}`;
  Object.assign(ns, { gw: `${lab}-gw`, be: `${lab}-be`, k: `${lab}-k`, s: `${lab}-s` });
  sh(LAB_SH, ['up', lab, 'direct', '1500']);
  sh(LAB_SH, ['kernel', lab, '1500']);
  sh(LAB_SH, ['bare', lab]);
  for (const n of [ns.k, ns.s, ns.gw]) clientSysctls(n);
  sh('ip', ['netns', 'exec', ns.be, 'sysctl', '-qw', 'net.core.somaxconn=4096', 'net.ipv4.tcp_max_syn_backlog=4096']);
  log(`lab ${lab}: gateway ${ns.gw}, backend ${ns.be} (${BACKEND}), kernel client ${ns.k}, slirp4netns client ${ns.s}`);
}

async function serversUp() {
  await startIperf();
  fs.writeFileSync(path.join(tmp, 'tiny'), 'ok\n');
  fs.mkdirSync(path.join(tmp, 'nginx-tmp'));
  const t = path.join(tmp, 'nginx-tmp');
  fs.writeFileSync(
    path.join(tmp, 'nginx.conf'),
    `daemon off;
worker_processes 2;
pid ${tmp}/nginx.pid;
error_log ${tmp}/nginx-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  client_body_temp_path ${t}; proxy_temp_path ${t}; fastcgi_temp_path ${t}; uwsgi_temp_path ${t}; scgi_temp_path ${t};
  server {
    listen ${BACKEND}:${HTTP_PORT} backlog=4096 reuseport;
    root ${tmp};
    location / { }
  }
}
`,
  );
  nginx = start('ip', ['netns', 'exec', ns.be, 'nginx', '-c', `${tmp}/nginx.conf`, '-p', tmp, '-e', `${tmp}/nginx-error.log`], {
    stdout: 'ignore',
  });
  await waitFor('nginx', () => listening(ns.be, HTTP_PORT));
}

/** vipnat's --workers flag when the run sets it. */
function workersArgs() {
  return opts.workers ? ['--workers', String(opts.workers)] : [];
}

/** Dataplane workers vipnat runs with here: --workers, else vipnat's default (one per two CPUs, 1-4). */
function workerCount() {
  return opts.workers ?? Math.max(1, Math.min(Math.floor(os.availableParallelism() / 2), 4));
}

/** A vipnat run in the gateway namespace with `sessions` sessions idling; clients are run in the sessions' namespaces. */
async function vipnatUp(mode, mtu, sessions) {
  const args = ['run', '--pool', POOL, '--sessions', String(sessions), '--mtu', String(mtu), '--json', ...workersArgs()];
  if (mode === 'nat') args.push('--inner-address', INNER);
  const c = start('nsenter', [`--net=/run/netns/${ns.gw}`, VIPNAT, ...args, '--', 'sleep', '86400']);
  vipnatPids.add(c.pid); // nsenter execs vipnat: same pid
  const events = () =>
    c.out
      .split('\n')
      .filter((l) => l.startsWith('{"event"'))
      .map((l) => JSON.parse(l));
  try {
    await waitFor(
      `${sessions} vipnat sessions`,
      () => {
        if (c.exitCode !== null || c.signalCode !== null) throw new Error(`vipnat exited: ${c.err.trim() || c.out.trim()}`);
        return events().filter((e) => e.event === 'session').length >= sessions;
      },
      60_000,
    );
  } catch (e) {
    await stop(c);
    throw e;
  }
  const netns = events()
    .filter((e) => e.event === 'session')
    .sort((a, b) => a.id - b.id)
    .map((e) => e.netns);
  for (const n of netns) {
    clientSysctls(n);
    await nsRun(n, ['ping', '-c', '1', '-W', '2', BACKEND], 5000);
  }
  return {
    clients: netns,
    down: async () => {
      const r = await stop(c, 'SIGTERM', 20_000);
      const summary = events().find((e) => e.event === 'summary') ?? null;
      const left = sh('ip', ['netns', 'list'])
        .split('\n')
        .filter((l) => l.startsWith(`vipnat-${c.pid}-`));
      return {
        exit: r.signal ?? r.code,
        dataplane: summary?.dataplane ?? null,
        leftNamespaces: left.length,
        stderr: c.err.trim() || undefined,
      };
    },
  };
}

async function slirpUp(mtu) {
  const c = start('nsenter', [
    `--net=/run/netns/${ns.gw}`,
    'slirp4netns',
    '--configure',
    `--mtu=${mtu}`,
    '--disable-host-loopback',
    '--netns-type=path',
    `/run/netns/${ns.s}`,
    'tap0',
  ]);
  try {
    await waitFor('slirp4netns tap0', () => {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`slirp4netns exited: ${c.err.trim()}`);
      const r = spawnSync('ip', ['-n', ns.s, '-4', '-br', 'addr', 'show', 'dev', 'tap0'], { encoding: 'utf8' });
      return r.status === 0 && r.stdout.includes(`${INNER}/`);
    });
  } catch (e) {
    await stop(c);
    throw e;
  }
  await nsRun(ns.s, ['ping', '-c', '1', '-W', '2', BACKEND], 5000);
  return {
    clients: [ns.s],
    down: async () => {
      const r = await stop(c, 'SIGTERM', 5000);
      return { exit: r.signal ?? r.code };
    },
  };
}

async function pathUp(p, mtu, sessions) {
  if (p === 'kernel') return { clients: [ns.k], down: async () => null };
  if (p === 'slirp') return slirpUp(mtu);
  return vipnatUp(p, mtu, sessions);
}

// ---------------------------------------------------------------- network benchmarks

const runInfo = { paths: {} };

/** One round of one path at one MTU: bring it up, run the loads, take it down. */
async function pathRound(p, mtu, round, wantBulk, small) {
  let up;
  try {
    up = await pathUp(p, mtu, small.includes('conn') ? CONN_CLIENTS : 1);
  } catch (e) {
    log(`  ${pad(PATH_LABEL[p], 15)} could not start: ${e.message}`);
    const ids = [...(wantBulk ? ['up', 'down'].flatMap((d) => [1, 4].map((s) => bulkId(mtu, d, s))) : []), ...small];
    for (const id of ids) record(byId(id), p, null, { error: `path did not start: ${e.message}` });
    return;
  }
  try {
    const client = up.clients[0];
    if (wantBulk) {
      for (const dir of ['up', 'down']) {
        for (const s of [1, 4]) {
          const r = await tcpBulk(client, dir, s);
          record(byId(bulkId(mtu, dir, s)), p, r.value, r.detail);
        }
      }
    }
    if (small.includes('rr')) {
      const r = await requestsPerSecond(client);
      record(byId('rr'), p, r.value, r.detail);
    }
    if (small.includes('conn')) {
      const clients = up.clients.length >= CONN_CLIENTS ? up.clients.slice(0, CONN_CLIENTS) : Array(CONN_CLIENTS).fill(client);
      const r = await connectionsPerSecond(clients);
      record(byId('conn'), p, r.value, r.detail);
    }
    if (small.includes('udp')) {
      const r = await udpPps(client);
      record(byId('udp'), p, r.value, r.detail);
    }
  } finally {
    const info = await up.down();
    if (info) {
      runInfo.paths[`${p}-${mtu}-${round}`] = info;
      const d = info.dataplane;
      if (d) {
        log(
          `  ${pad(PATH_LABEL[p], 15)} dataplane: packets out ${d.toUplink} in ${d.toSession} dropped ${d.dropped} (tableFull ${d.tableFull}, writeErrors ${d.writeErrors}); exit ${info.exit}${info.leftNamespaces ? `; ${info.leftNamespaces} namespaces left!` : ''}`,
        );
      }
    }
  }
}

async function network() {
  const wantBulk = opts.only.includes('tcp');
  const small = ['conn', 'rr', 'udp'].filter((x) => opts.only.includes(x));
  for (const mtu of opts.mtus) {
    const smallHere = mtu === 1500 ? small : []; // requests, connections and UDP at MTU 1500 only
    if (!wantBulk && smallHere.length === 0) continue;
    sh(LAB_SH, ['mtu', lab, String(mtu)]);
    log(`\n== MTU ${mtu} (session interface, gateway–backend link and kernel veth)`);
    // Rounds visit every path in turn, so that each path's runs are spread over the whole block.
    for (let round = 1; round <= opts.repeat; round++) {
      if (opts.repeat > 1) log(`  -- round ${round} of ${opts.repeat}`);
      for (const p of opts.paths) await pathRound(p, mtu, round, wantBulk, smallHere);
    }
  }
}

// ---------------------------------------------------------------- micro-benchmarks and scale

const micro = {};
const scale = {};

async function packetPath(args) {
  const r = await run(process.execPath, ['--expose-gc', PACKET_PATH, ...args], 600_000);
  if (r.code !== 0) throw new Error(`packet-path ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return JSON.parse(r.stdout.trim().split('\n').pop());
}

async function microBenchmarks() {
  const secs = String(opts.quick ? 1 : 3);
  log('\n== packet path without syscalls (bench/packet-path.mjs, one core, NAT mode, every packet rewritten)');
  const steps = [
    ['lookup1k', ['lookup', '1000', secs], (r) => `parse + lookup + rewrite + checksum, 1 000 flows: ${r.mpps} Mpps`],
    ['lookup1m', ['lookup', '1000000', secs], (r) => `parse + lookup + rewrite + checksum, 1 000 000 flows: ${r.mpps} Mpps`],
    ['create', ['create', '1000000', secs], (r) => `new flows (TCP SYN) into a table of 2^20: ${fmtNum(r.flowsPerSecond)} flows/s`],
    [
      'memory',
      ['memory', '1000000'],
      (r) =>
        `1 000 000 flows: ${r.bytesPerFlow} B/flow by table size, ${r.rssDeltaPerFlow} B/flow RSS growth; process RSS ${fmtBytes(r.rssAfter)}`,
    ],
  ];
  for (const [key, args, say] of steps) {
    try {
      micro[key] = await packetPath(args);
      log(`  ${say(micro[key])}`);
    } catch (e) {
      micro[key] = { error: e.message };
      log(`  ${key} FAILED: ${e.message}`);
    }
  }
}

/** VmRSS in bytes of `pid` and its descendants, leaving out the subtrees of `exclude`. */
function treeRss(pid, exclude) {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {
      // not JSON
    }
  }
  let total = 0,
    procs = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop();
    if (exclude.has(p)) continue;
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
      procs++;
    } catch {
      // not JSON
    }
    todo.push(...(kids.get(p) ?? []));
  }
  return { bytes: total, processes: procs };
}

async function scaleBenchmark() {
  const n = opts.scaleSessions;
  log(`\n== scale: vipnat run --pool ${SCALE_POOL} --sessions ${n} -- sleep 3600`);
  const t0 = performance.now();
  const c = start('nsenter', [
    `--net=/run/netns/${ns.gw}`,
    VIPNAT,
    'run',
    '--pool',
    SCALE_POOL,
    '--sessions',
    String(n),
    ...workersArgs(),
    '--',
    'sleep',
    '3600',
  ]);
  vipnatPids.add(c.pid);
  const programs = new Set();
  let seen = 0,
    tStarted = null;
  let partial = '';
  c.stdout.on('data', (d) => {
    partial += d;
    const lines = partial.split('\n');
    partial = lines.pop();
    for (const l of lines) {
      const m = /^session (\d+) vip \S+ loopback \S+ pid (\d+)$/.exec(l);
      if (m) {
        programs.add(Number(m[2]));
        if (++seen === n) tStarted = performance.now();
      }
    }
  });
  try {
    await waitFor(
      `${n} sessions`,
      () => {
        if (c.exitCode !== null || c.signalCode !== null) throw new Error(`vipnat exited: ${c.err.trim().split('\n')[0]}`);
        return tStarted !== null;
      },
      300_000,
    );
    scale.sessions = n;
    scale.startSeconds = +((tStarted - t0) / 1000).toFixed(2);
    log(`  time from launch to the ${n}th session line: ${scale.startSeconds} s`);
    await sleep(1000);
    const gw = treeRss(c.pid, programs);
    const all = treeRss(c.pid, new Set());
    scale.gatewayRss = gw.bytes;
    scale.gatewayProcesses = gw.processes;
    scale.treeRssWithPrograms = all.bytes;
    log(
      `  vipnat's RSS with ${n} sessions up: ${fmtBytes(gw.bytes)} (${gw.processes} process${gw.processes > 1 ? 'es' : ''}; with the ${programs.size} session programs: ${fmtBytes(all.bytes)})`,
    );
  } catch (e) {
    scale.error = e.message;
    log(`  FAILED: ${e.message}`);
  } finally {
    const t1 = performance.now();
    const r = await stop(c, 'SIGTERM', 60_000);
    scale.stopSeconds = +((performance.now() - t1) / 1000).toFixed(2);
    scale.stopExit = r.signal ?? r.code;
    scale.leftNamespaces = sh('ip', ['netns', 'list'])
      .split('\n')
      .filter((l) => l.startsWith(`vipnat-${c.pid}-`)).length;
    log(`  SIGTERM to exit: ${scale.stopSeconds} s, exit status ${scale.stopExit}, ${scale.leftNamespaces} session namespaces left`);
  }
}

// ---------------------------------------------------------------- report

function machine() {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  const distro =
    /PRETTY_NAME="?([^"\n]*)/.exec(fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '')?.[1] ?? 'Linux';
  const version = (cmd, args) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8' });
    return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
  };
  return {
    cpu,
    cores: os.cpus().length,
    memory: os.totalmem(),
    kernel: os.release(),
    os: distro,
    node: process.version,
    tools: {
      iperf3: version('iperf3', ['--version']),
      wrk: version('wrk', ['-v']).replace(/\s+Copyright.*/, ''),
      slirp4netns: version('slirp4netns', ['--version']),
      nginx: version('nginx', ['-v']),
    },
  };
}

function commit() {
  const env = { ...process.env, GIT_OPTIONAL_LOCKS: '0' };
  const r = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', env });
  if (r.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['-C', ROOT, 'diff', '--quiet', 'HEAD', '--'], { env }).status !== 0;
  return `${r.stdout.trim()}${dirty ? '+dirty' : ''}`;
}

function networkTable() {
  const head = [
    'measure',
    'kernel',
    'vipnat address',
    'vipnat NAT',
    'slirp4netns',
    'address / kernel',
    'NAT / kernel',
    'address / slirp',
    'NAT / slirp',
    'target',
    'result',
  ];
  const rows = [];
  for (const m of measures) {
    if (Object.keys(m.values).length === 0 && Object.keys(m.errors).length === 0) continue;
    const v = m.values;
    const cell = (p) => (v[p] != null ? fmtNum(v[p], m.unit) : m.errors[p] ? 'failed' : '—');
    rows.push([
      `${m.label} (${m.unit})`,
      cell('kernel'),
      cell('address'),
      cell('nat'),
      cell('slirp'),
      fmtRatio(v.address, v.kernel),
      fmtRatio(v.nat, v.kernel),
      fmtRatio(v.address, v.slirp),
      fmtRatio(v.nat, v.slirp),
      targetText(m),
      verdict(m).text,
    ]);
  }
  return { head, rows };
}

function otherTable() {
  const head = ['measure', 'value', 'target', 'result'];
  const rows = [];
  const mk = (t, ok) => (ok == null ? 'n/a' : ok ? 'met' : 'not met');
  if (micro.lookup1k)
    rows.push(['packet path, 1 000 flows (one core)', micro.lookup1k.error ? 'failed' : `${micro.lookup1k.mpps} Mpps`, '—', '—']);
  if (micro.lookup1m)
    rows.push([
      'packet path, 1 000 000 flows (one core)',
      micro.lookup1m.error ? 'failed' : `${micro.lookup1m.mpps} Mpps`,
      '≥ 10 Mpps',
      mk(null, micro.lookup1m.error ? null : micro.lookup1m.mpps >= 10),
    ]);
  if (micro.create)
    rows.push(['new flows/s (TCP SYN, one core)', micro.create.error ? 'failed' : fmtNum(micro.create.flowsPerSecond), '—', '—']);
  if (micro.memory) {
    const mm = micro.memory;
    const worst = mm.error ? null : Math.max(mm.bytesPerFlow, mm.rssDeltaPerFlow);
    rows.push([
      'memory per flow (table size / RSS growth, 1 000 000 flows)',
      mm.error ? 'failed' : `${mm.bytesPerFlow} B / ${mm.rssDeltaPerFlow} B`,
      '≤ 128 B',
      mk(null, worst === null ? null : worst <= 128),
    ]);
    rows.push(['RSS with 1 000 000 flows (in-process: node + flow table)', mm.error ? 'failed' : fmtBytes(mm.rssAfter), '—', '—']);
  }
  if (scale.sessions || scale.error) {
    const n = scale.sessions ?? opts.scaleSessions;
    const nn = n.toLocaleString('en-US').replace(/,/g, ' ');
    rows.push([
      `time to start ${nn} sessions`,
      scale.startSeconds != null ? `${scale.startSeconds} s` : 'failed',
      n === 1000 ? '≤ 30 s' : '—',
      n === 1000 ? mk(null, scale.startSeconds == null ? null : scale.startSeconds <= 30) : '—',
    ]);
    rows.push([`vipnat's RSS with ${nn} sessions`, scale.gatewayRss != null ? fmtBytes(scale.gatewayRss) : 'failed', '—', '—']);
    rows.push([
      `time to stop ${nn} sessions (SIGTERM to exit)`,
      scale.stopSeconds != null ? `${scale.stopSeconds} s (exit ${scale.stopExit}, ${scale.leftNamespaces} namespaces left)` : 'failed',
      '—',
      '—',
    ]);
  }
  return { head, rows };
}

function markdown(t) {
  const esc = (s) => String(s).replace(/\|/g, '\\|');
  const left = (h) => h === 'measure' || h === 'target' || h === 'result';
  return [
    `| ${t.head.join(' | ')} |`,
    `|${t.head.map((h) => (left(h) ? '---' : '---:')).join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

function text(t) {
  const w = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => String(r[i]).length)));
  const left = (h) => h === 'measure' || h === 'target' || h === 'result';
  const line = (r) => r.map((c, i) => (left(t.head[i]) ? pad(c, w[i]) : lpad(c, w[i]))).join('  ');
  return [line(t.head), w.map((n) => '-'.repeat(n)).join('  '), ...t.rows.map(line)].join('\n');
}

function notes(info, ran) {
  const s = opts.seconds;
  const reps =
    opts.repeat > 1
      ? `the best of ${opts.repeat} runs of ${s} s per figure (in rounds over all paths, so each path's runs are spread over the run; every run is in the JSON)`
      : `one run of ${s} s per figure, no repetitions: treat differences of ±10 % as noise`;
  const out = [
    `Machine: ${info.machine.cpu}, ${info.machine.cores} cores, ${fmtBytes(info.machine.memory)}, Linux ${info.machine.kernel} (${info.machine.os}), Node ${info.machine.node}; ${info.machine.tools.iperf3}, ${info.machine.tools.wrk}, ${info.machine.tools.slirp4netns}, ${info.machine.tools.nginx}. Date: ${info.date}. Commit: ${info.commit}. Command: \`${info.command}\`.`,
    '',
  ];
  if (ran.network) {
    out.push(
      `Every path goes from a client namespace to iperf3 or nginx in the backend namespace (198.18.0.2) through the lab's gateway namespace, measured in the same run on the same lab, ${reps}${s >= 4 ? ' (iperf3 `-O 1` leaves out the first second)' : ''}.`,
      "- **kernel**: a namespace joined to the gateway namespace by a veth pair (198.19.200.2/30), routed by the gateway's kernel: the physical limit of this machine (veth carries 64 KiB GSO segments at either MTU).",
      `- **vipnat address / NAT**: \`vipnat run --pool ${POOL} --mtu M${opts.workers ? ` --workers ${opts.workers}` : ''}\` in the gateway namespace (\`--inner-address ${INNER}\` for NAT), with ${workerCount()} dataplane worker${workerCount() === 1 ? '' : 's'}${opts.workers ? '' : " (vipnat's default: one per two CPUs)"}; the loads run in the sessions' namespaces (\`ip netns exec vipnat-PID-k\`) while the session programs idle.`,
      `- **slirp4netns**: \`slirp4netns --configure --mtu=M --disable-host-loopback\` run in the gateway namespace, attached to a client namespace (guest address ${INNER}).`,
      "- **MTU M** is the MTU of the client's interface, of the gateway–backend veth and of the kernel path's veth.",
      `- **TCP bulk**: \`iperf3 -t ${s} -P 1|4 [-R]\`, received throughput. **UDP**: \`iperf3 -u -l 16 -b 0\`, packets received by the backend per second, at MTU 1500.`,
      `- **requests/s on one connection**: \`wrk -c 1 -t 1 -d ${s}s\` for a 3-byte file (keep-alive), at MTU 1500, with the client pinned to CPU 0 and nginx to CPU 1 on every path (unpinned, the kernel path's figure flips between about 12 000 and 35 000 as the scheduler puts both on one CPU or not). **new connections/s**: ${CONN_CLIENTS} \`wrk -c ${CONN_PER_CLIENT} -t 1 -H 'Connection: close'\` at once, at MTU 1500 — one in each of ${CONN_CLIENTS} vipnat sessions; for kernel and slirp4netns all ${CONN_CLIENTS} in their one namespace (the same ${CONN_CLIENTS * CONN_PER_CLIENT} connections in all). Every client namespace has \`tcp_tw_reuse=1\` and ports 1024-65535; nginx has 2 workers.`,
      "- Client, gateway (vipnat's main thread and dataplane workers, or slirp4netns) and server all share the machine's cores.",
      '- A target is met when both vipnat modes meet it.',
    );
  }
  if (ran.micro) {
    out.push(
      "- **Packet path**: `bench/packet-path.mjs`, one process per figure, no syscalls, one core, NAT mode: each UDP packet goes out and back (parse, flow lookup, address rewrite, incremental checksum update), flows visited round-robin; the flows are created in a shuffled order, so consecutive packets' flow records lie scattered over the table as real traffic's do (created in packet order they would be read sequentially, which the CPU's prefetchers make unrealistically cheap). **New flows**: a TCP SYN per new flow into an empty table. **Memory per flow**: the table's own count per slot, and the RSS growth of a process that inserts 1 000 000 flows into a table of 2^20; **RSS with 1 000 000 flows** is that process's, measured in-process (filling a running gateway's table with a million flows would take minutes of packet generation in the lab, so it is not measured there).",
    );
  }
  if (ran.scale) {
    out.push(
      `- **Scale**: \`vipnat run --pool ${SCALE_POOL} --sessions ${opts.scaleSessions} -- sleep 3600\` in the gateway namespace; start time runs from launch to the last \`session N vip ...\` line; RSS is the sum of VmRSS over vipnat's process tree without the session programs.`,
    );
  }
  return out.join('\n');
}

function save(info, md) {
  fs.mkdirSync(RESULTS, { recursive: true });
  const stamp = info.date.replace(/:\d\d\.\d+Z$/, 'Z').replace(/:/g, '');
  const file = path.join(RESULTS, `${stamp}-${info.commit.replace('+dirty', '-dirty')}.json`);
  fs.writeFileSync(file, `${JSON.stringify({ ...info, measures, micro, scale, runInfo }, null, 2)}\n`);
  fs.writeFileSync(path.join(RESULTS, 'latest.md'), `${md}\n`);
  log(`\nwrote ${path.relative(ROOT, file)} and bench/results/latest.md`);
  const readme = fs.readFileSync(README, 'utf8');
  const a = readme.indexOf('<!-- bench:start -->'),
    b = readme.indexOf('<!-- bench:end -->');
  if (a < 0 || b < a) {
    log('README.md has no <!-- bench:start --> ... <!-- bench:end --> markers: not updated');
    return;
  }
  fs.writeFileSync(README, `${readme.slice(0, a)}<!-- bench:start -->\n${md}\n${readme.slice(b)}`);
  log('updated the benchmark table in README.md');
}

// ---------------------------------------------------------------- main

async function main() {
  if (process.getuid?.() !== 0) throw new Error('benchmarks need root (network namespaces): run `sudo make bench`');
  if (!fs.existsSync(path.join(ROOT, 'dist/cli/main.js'))) throw new Error('vipnat is not built: run `make build`');
  const date = new Date().toISOString();
  const info = {
    date,
    commit: commit(),
    machine: machine(),
    command: `node bench/run.mjs${process.argv
      .slice(2)
      .map((a) => ` ${a}`)
      .join('')}`,
    options: opts,
  };
  log(`vipnat benchmarks — ${date}, commit ${info.commit}`);
  log(`${info.machine.cpu}, ${info.machine.cores} cores, Linux ${info.machine.kernel}, Node ${info.machine.node}`);
  defineMeasures();
  const net = opts.only.some((x) => ['tcp', 'rr', 'conn', 'udp'].includes(x));
  const wantScale = opts.only.includes('scale');
  if (net || wantScale) await labUp();
  if (net) {
    await serversUp();
    await network();
  }
  if (opts.only.includes('micro')) await microBenchmarks();
  if (wantScale) await scaleBenchmark();

  const nt = networkTable(),
    ot = otherTable();
  log('');
  if (nt.rows.length) log(text(nt));
  if (ot.rows.length) log(`\n${text(ot)}`);
  const ran = { network: net, micro: opts.only.includes('micro'), scale: wantScale };
  const md = [
    `### Results (${date.slice(0, 10)}, commit ${info.commit})`,
    '',
    nt.rows.length ? markdown(nt) : '',
    '',
    ot.rows.length ? markdown(ot) : '',
    '',
    notes(info, ran),
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
  if (opts.save) save(info, md);
  else log('\n(partial or --quick run: results not saved; --save to save them)');
}

try {
  await main();
} catch (e) {
  process.stderr.write(`bench: ${e.message}\n`);
  process.exitCode = 1;
} finally {
  cleanup();
}
