#!/usr/bin/env node
// The soak (`make soak`): many sessions, each with several checksummed echo connections, for a while; zero loss or it fails.
//
// A lab of its own (vnsoak-PID-*: a gateway namespace where vipnat runs, a backend namespace),
// `vipnat run --pool 198.19.0.0/16,fd00:77::/112 --sessions N` in it, and in every session socat
// echoers: an echo listener on port 7300 (both families) and the session's outbound connections,
// each `socat TCP:backend:7400 PIPE`. In the backend, test/fixtures/echo-load.mjs accepts the
// outbound connections, dials the inbound ones (VIP:7300 and [VIP6]:7300), streams known bytes
// down every connection for the whole run and checks every byte of every echo. Connection k of
// session s goes out (session -> backend) when k is even, in when k is odd, over IPv4 or IPv6 by
// the parity of s + k. At the end: the load's figures, vipnat's counters (writeErrors etc.) and
// its memory, and PASS or FAIL.
//
// PASS: every connection came up, every byte sent came back unchanged, no connection was reset,
// failed or closed early, and vipnat lived until it was stopped (SIGTERM) and then left no
// namespace behind. Exit status 0 on PASS, 1 on FAIL, 2 on bad arguments.
//
// Usage: node test/soak/soak.mjs [--sessions N] [--connections N] [--seconds N] [--rate BYTES_PER_S]
//                                [--chunk BYTES] [--window BYTES] [--workers N] [--inner-address A[,A6]] [--json]
// Defaults: 200 sessions, 5 connections each, 60 s, 64 KiB/s per connection (0: as fast as the
// window allows), 8 KiB writes, 64 KiB in flight per connection. --json ends with the report as one JSON line.
import path from 'node:path';
import fs from 'node:fs';
import { BACKEND, BACKEND6, labUp, log, ROOT, start, startVipnat, stopVipnat, waitSessions } from '../../scripts/lab.mjs';

const ECHO_LOAD = path.join(ROOT, 'test/fixtures/echo-load.mjs');
const POOL = '198.19.0.0/16,fd00:77::/112';
const IN_PORT = 7300;
const OUT_PORT = 7400;

function usage(err) {
  const text = fs
    .readFileSync(new URL(import.meta.url), 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('// Usage') || l.startsWith('//      ') || l.startsWith('// Defaults') || l.startsWith('// window'))
    .map((l) => l.replace(/^\/\/ ?/, ''))
    .join('\n');
  process.stderr.write(`${err ? `soak: ${err}\n` : ''}${text}\n`);
  process.exit(err ? 2 : 0);
}

function parseArgs(argv) {
  const o = {
    sessions: 200,
    connections: 5,
    seconds: 60,
    rate: 65536,
    chunk: 8192,
    window: 65536,
    workers: null,
    inner: null,
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
    if (a === '--sessions') o.sessions = num(v(), a, 1);
    else if (a === '--connections') o.connections = num(v(), a, 1);
    else if (a === '--seconds') o.seconds = num(v(), a, 1);
    else if (a === '--rate') o.rate = num(v(), a, 0);
    else if (a === '--chunk') o.chunk = num(v(), a, 1);
    else if (a === '--window') o.window = num(v(), a, 1);
    else if (a === '--workers') o.workers = num(v(), a, 1);
    else if (a === '--inner-address') o.inner = v();
    else if (a === '--json') o.json = true;
    else if (a === '-h' || a === '--help') usage(null);
    else usage(`unknown argument ${a}`);
  }
  if (o.chunk > 65536) usage(`--chunk ${o.chunk}: at most 65536`);
  return o;
}

const opts = parseArgs(process.argv.slice(2));
const outPer = Math.ceil(opts.connections / 2); // k = 0, 2, 4...
const inPer = opts.connections - outPer; // k = 1, 3...

/** What every session runs: the echo listener, and its outbound echoers (retrying until the backend listens). */
function sessionScript() {
  const outs = [];
  for (let k = 0; k < opts.connections; k += 2) {
    outs.push(
      `if [ $(( (VIPNAT_SESSION_ID + ${k}) % 2 )) = 0 ]; then to=TCP4:${BACKEND}:${OUT_PORT}; else to=TCP6:[${BACKEND6}]:${OUT_PORT}; fi`,
      `socat -T 900 "$to,nodelay,retry=600,interval=0.5" PIPE &`,
    );
  }
  return [`socat -T 900 TCP6-LISTEN:${IN_PORT},fork,reuseaddr,nodelay PIPE &`, ...outs, 'wait'].join('\n');
}

function fmtBytes(n) {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`;
}

function vmRss(pid) {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) * 1024;
  } catch {
    return null;
  }
}

async function main() {
  const t0 = Date.now();
  const lab = labUp('vnsoak-');
  log(
    `soak: lab ${lab.name}; ${opts.sessions} sessions x ${opts.connections} connections (${outPer} out, ${inPer} in) x ${opts.seconds} s`,
  );
  const args = ['run', '--json', '--pool', POOL, '--sessions', String(opts.sessions)];
  if (opts.workers) args.push('--workers', String(opts.workers));
  if (opts.inner) args.push('--inner-address', opts.inner);
  const vipnat = startVipnat(lab.gw, [...args, '--', 'sh', '-c', sessionScript()]);
  const sessions = await waitSessions(vipnat, opts.sessions, 300_000);
  const startupMs = Date.now() - t0;
  log(`soak: ${sessions.length} sessions up in ${(startupMs / 1000).toFixed(1)} s (vipnat pid ${vipnat.pid})`);

  const dial = [];
  for (const s of sessions) {
    for (let k = 1; k < opts.connections; k += 2) {
      const host = (s.id + k) % 2 === 0 || !s.vip6 ? s.vip : s.vip6;
      const last = dial.at(-1);
      if (last && last[0] === host) last[2]++;
      else dial.push([host, IN_PORT, 1]);
    }
  }
  const load = {
    listen: OUT_PORT,
    expect: sessions.length * outPer,
    dial,
    seconds: opts.seconds,
    rate: opts.rate,
    chunk: opts.chunk,
    window: opts.window,
    connectMs: 120_000,
    drainMs: 60_000,
    progressMs: opts.seconds >= 20 ? 10_000 : 0,
  };
  const driver = start('ip', ['netns', 'exec', lab.be, 'node', ECHO_LOAD, JSON.stringify(load)]);
  driver.stderr.on('data', (d) => process.stderr.write(d));
  const rssStart = vmRss(vipnat.pid);
  let rssMid = null;
  const rssTimer = setTimeout(() => (rssMid = vmRss(vipnat.pid)), Math.max(1000, opts.seconds * 500));
  // A vipnat that dies early ends the load at once (it reports what it has) instead of after its drain time.
  void vipnat.done.then(() => driver.kill('SIGTERM'));
  const d = await driver.done;
  clearTimeout(rssTimer);
  const rssEnd = vmRss(vipnat.pid);
  const vipnatAlive = vipnat.exitCode === null && vipnat.signalCode === null;
  let result;
  try {
    result = JSON.parse(driver.out.trim().split('\n').pop());
  } catch {
    result = { ok: false, failures: [`echo-load exited ${d.code ?? d.signal} without a result: ${driver.err.trim().slice(-500)}`] };
  }
  const stopT = Date.now();
  const v = vipnatAlive ? await stopVipnat(vipnat) : { ...(await stopVipnat(vipnat, 1000)), diedEarly: true };
  const stopMs = Date.now() - stopT;
  const dp = v.dataplane ?? {};

  const problems = [];
  if (!vipnatAlive) problems.push(`vipnat exited before the end: ${v.stderr || v.exit}`);
  else if (v.exit !== 143) problems.push(`vipnat exited with ${v.exit} on SIGTERM (want 143): ${v.stderr}`);
  if (!v.summary) problems.push('vipnat printed no summary');
  if (v.leftNamespaces.length) problems.push(`vipnat left ${v.leftNamespaces.length} namespaces`);
  problems.push(...(result.failures ?? []));
  const pass = result.ok === true && problems.length === 0;

  log('');
  log(
    `sessions              ${sessions.length} (started in ${(startupMs / 1000).toFixed(1)} s, stopped in ${(stopMs / 1000).toFixed(1)} s)`,
  );
  if (result.connections) {
    log(`connections           ${result.connections.up} of ${result.connections.wanted} up, ${result.connections.failed} failed`);
    log(
      `bytes                 ${fmtBytes(result.bytesSent)} sent, ${fmtBytes(result.bytesVerified)} echoed and checked (${result.mbitPerSecond} Mbit/s each way)`,
    );
    log(`per connection        ${fmtBytes(result.perConnectionBytes.min)} to ${fmtBytes(result.perConnectionBytes.max)}`);
    log(
      `echo latency (ms)     p50 ${result.latencyMs.p50}, p99 ${result.latencyMs.p99}, max ${result.latencyMs.max}; longest stall ${result.maxStallMs} ms`,
    );
  }
  const counters = [
    'toUplink',
    'toSession',
    'dropped',
    'writeErrors',
    'readErrors',
    'noDevice',
    'tableFull',
    'malformed',
    'spoofed',
    'noSession',
    'linkControl',
    'flowsCreated',
    'flowsExpired',
    'hairpin',
    'icmpErrors',
    'icmpErrorsDropped',
  ];
  log(`vipnat counters       ${counters.map((k) => `${k} ${dp[k] ?? '?'}`).join(', ')}`);
  const mib = (n) => (n == null ? '?' : `${(n / 1048576).toFixed(1)} MiB`);
  log(`vipnat RSS            ${mib(rssStart)} at the start, ${mib(rssMid)} half-way, ${mib(rssEnd)} at the end`);
  log(`vipnat exit           ${v.exit}${v.leftNamespaces.length ? `, ${v.leftNamespaces.length} namespaces left` : ', no namespace left'}`);
  for (const p of problems.slice(0, 20)) log(`problem               ${p}`);
  if (problems.length > 20) log(`problem               ... and ${problems.length - 20} more`);
  log(`${pass ? 'PASS' : 'FAIL'}                  in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  if (opts.json) {
    log(
      JSON.stringify({
        pass,
        lab: lab.name,
        vipnatPid: vipnat.pid,
        options: opts,
        startupMs,
        stopMs,
        load: result,
        vipnat: {
          exit: v.exit,
          leftNamespaces: v.leftNamespaces.length,
          rss: { start: rssStart, mid: rssMid, end: rssEnd },
          dataplane: dp,
        },
        problems,
      }),
    );
  }
  return pass ? 0 : 1;
}

// Exits when done, whatever is left running (cleanup runs at exit).
main().then(
  (code) => process.exit(code),
  (e) => {
    process.stderr.write(`soak: ${e.stack ?? e.message}\n`);
    log('FAIL');
    process.exit(1);
  },
);
