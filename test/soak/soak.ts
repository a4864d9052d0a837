// The soak (`make soak`): many sessions, each with several checksummed echo connections, for a while; zero loss or it fails.
//
// A lab of its own (vnsoak-PID-XXXX: a gateway namespace where vipnat runs, a backend namespace),
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
// Usage: node dist-tools/test/soak/soak.js [--sessions N] [--connections N] [--seconds N] [--rate BYTES_PER_S]
//                                [--chunk BYTES] [--window BYTES] [--workers N] [--inner-address A[,A6]] [--json]
// Defaults: 200 sessions, 5 connections each, 60 s, 64 KiB/s per connection (0: as fast as the
// window allows), 8 KiB writes, 64 KiB in flight per connection. --json ends with the report as one JSON line.
import { readFileSync } from 'node:fs';
import {
  asDriver,
  BACKEND,
  BACKEND6,
  Lab,
  log,
  ROOT,
  sweepLabs,
  type Child,
  type SessionEvent,
  type VipnatEnd,
  type VipnatRun,
} from '../lab/index.js';

const ECHO_LOAD = `${ROOT}test/fixtures/echo-load.mjs`;
const PREFIX = 'vnsoak-';
const POOL = '198.19.0.0/16,fd00:77::/112';
const IN_PORT = 7300;
const OUT_PORT = 7400;

const USAGE = `usage: node dist-tools/test/soak/soak.js [--sessions N] [--connections N] [--seconds N] [--rate BYTES_PER_S]
                                   [--chunk BYTES] [--window BYTES] [--workers N] [--inner-address A[,A6]] [--json]
Defaults: 200 sessions, 5 connections each, 60 s, 64 KiB/s per connection (0: as fast as the
window allows), 8 KiB writes, 64 KiB in flight per connection. --json ends with the report as one JSON line.`;

interface Options {
  sessions: number;
  connections: number;
  seconds: number;
  rate: number;
  chunk: number;
  window: number;
  workers: number | null;
  inner: string | null;
  json: boolean;
}

function usage(err: string | null): never {
  process.stderr.write(`${err ? `soak: ${err}\n` : ''}${USAGE}\n`);
  process.exit(err ? 2 : 0);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
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
  const num = (v: string | undefined, flag: string, min: number): number => {
    const n = Number(v);
    if (!Number.isInteger(n) || n < min) usage(`${flag} ${v}: must be a whole number from ${min}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = (): string | undefined => argv[++i];
    if (a === '--sessions') o.sessions = num(v(), a, 1);
    else if (a === '--connections') o.connections = num(v(), a, 1);
    else if (a === '--seconds') o.seconds = num(v(), a, 1);
    else if (a === '--rate') o.rate = num(v(), a, 0);
    else if (a === '--chunk') o.chunk = num(v(), a, 1);
    else if (a === '--window') o.window = num(v(), a, 1);
    else if (a === '--workers') o.workers = num(v(), a, 1);
    else if (a === '--inner-address') o.inner = v() ?? usage('--inner-address needs a value');
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
function sessionScript(): string {
  const outs: string[] = [];
  for (let k = 0; k < opts.connections; k += 2) {
    outs.push(
      `if [ $(( (VIPNAT_SESSION_ID + ${k}) % 2 )) = 0 ]; then to=TCP4:${BACKEND}:${OUT_PORT}; else to=TCP6:[${BACKEND6}]:${OUT_PORT}; fi`,
      `socat -T 900 "$to,nodelay,retry=600,interval=0.5" PIPE &`,
    );
  }
  return [`socat -T 900 TCP6-LISTEN:${IN_PORT},fork,reuseaddr,nodelay PIPE &`, ...outs, 'wait'].join('\n');
}

function fmtBytes(n: number): string {
  return n >= 1e9 ? `${(n / 1e9).toFixed(2)} GB` : `${(n / 1e6).toFixed(1)} MB`;
}

function vmRss(pid: number): number | null {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  } catch {
    return null;
  }
}

/** What test/fixtures/echo-load.mjs prints at its end (the fields read here). */
interface LoadResult {
  ok: boolean;
  failures?: string[];
  connections?: { wanted: number; up: number; failed: number };
  bytesSent?: number;
  bytesVerified?: number;
  mbitPerSecond?: number;
  perConnectionBytes?: { min: number; max: number };
  latencyMs?: { p50: number; p99: number; max: number };
  maxStallMs?: number;
}

/** The load's configuration: accept the outbound echoers, dial every session's listener for the inbound ones. */
function loadSpec(sessions: SessionEvent[]): object {
  const dial: [string, number, number][] = [];
  for (const s of sessions) {
    for (let k = 1; k < opts.connections; k += 2) {
      const host = (s.id + k) % 2 === 0 || !s.vip6 ? s.vip : s.vip6;
      const last = dial.at(-1);
      if (last && last[0] === host) last[2]++;
      else dial.push([host, IN_PORT, 1]);
    }
  }
  return {
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
}

interface Rss {
  start: number | null;
  mid: number | null;
  end: number | null;
}

/** Runs the load in the backend to its end, sampling vipnat's memory; the load's result. */
async function runLoad(lab: Lab, vipnat: VipnatRun, sessions: SessionEvent[]): Promise<{ result: LoadResult; rss: Rss }> {
  const driver: Child = lab.start('ip', ['netns', 'exec', lab.be, 'node', ECHO_LOAD, JSON.stringify(loadSpec(sessions))]);
  driver.proc.stderr!.on('data', (d: string) => process.stderr.write(d));
  const rss: Rss = { start: vmRss(vipnat.pid), mid: null, end: null };
  const rssTimer = setTimeout(() => (rss.mid = vmRss(vipnat.pid)), Math.max(1000, opts.seconds * 500));
  // A vipnat that dies early ends the load at once (it reports what it has) instead of after its drain time.
  void vipnat.done.then(() => driver.kill('SIGTERM'));
  const d = await driver.done;
  clearTimeout(rssTimer);
  rss.end = vmRss(vipnat.pid);
  try {
    return { result: JSON.parse(driver.out.trim().split('\n').pop()!) as LoadResult, rss };
  } catch {
    const why = `echo-load exited ${d.code ?? d.signal} without a result: ${driver.err.trim().slice(-500)}`;
    return { result: { ok: false, failures: [why] }, rss };
  }
}

/** What went wrong, if anything: vipnat's end, and the load's failures. */
function problemsOf(vipnatAlive: boolean, v: VipnatEnd, result: LoadResult): string[] {
  const problems: string[] = [];
  if (!vipnatAlive) problems.push(`vipnat exited before the end: ${v.stderr || v.exit}`);
  else if (v.exit !== 143) problems.push(`vipnat exited with ${v.exit} on SIGTERM (want 143): ${v.stderr}`);
  if (!v.summary) problems.push('vipnat printed no summary');
  if (v.leftNamespaces.length) problems.push(`vipnat left ${v.leftNamespaces.length} namespaces`);
  problems.push(...(result.failures ?? []));
  return problems;
}

const COUNTERS = [
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

interface Report {
  sessions: number;
  startupMs: number;
  stopMs: number;
  result: LoadResult;
  v: VipnatEnd;
  rss: Rss;
  problems: string[];
  pass: boolean;
  t0: number;
}

function printReport(r: Report): void {
  const { result, v } = r;
  const dp = (v.dataplane ?? {}) as Record<string, number>;
  log('');
  log(
    `sessions              ${r.sessions} (started in ${(r.startupMs / 1000).toFixed(1)} s, stopped in ${(r.stopMs / 1000).toFixed(1)} s)`,
  );
  if (result.connections) {
    log(`connections           ${result.connections.up} of ${result.connections.wanted} up, ${result.connections.failed} failed`);
    log(
      `bytes                 ${fmtBytes(result.bytesSent ?? 0)} sent, ${fmtBytes(result.bytesVerified ?? 0)} echoed and checked (${result.mbitPerSecond} Mbit/s each way)`,
    );
    log(`per connection        ${fmtBytes(result.perConnectionBytes?.min ?? 0)} to ${fmtBytes(result.perConnectionBytes?.max ?? 0)}`);
    log(
      `echo latency (ms)     p50 ${result.latencyMs?.p50}, p99 ${result.latencyMs?.p99}, max ${result.latencyMs?.max}; longest stall ${result.maxStallMs} ms`,
    );
  }
  log(`vipnat counters       ${COUNTERS.map((k) => `${k} ${dp[k] ?? '?'}`).join(', ')}`);
  const mib = (n: number | null): string => (n == null ? '?' : `${(n / 1048576).toFixed(1)} MiB`);
  log(`vipnat RSS            ${mib(r.rss.start)} at the start, ${mib(r.rss.mid)} half-way, ${mib(r.rss.end)} at the end`);
  log(`vipnat exit           ${v.exit}${v.leftNamespaces.length ? `, ${v.leftNamespaces.length} namespaces left` : ', no namespace left'}`);
  for (const p of r.problems.slice(0, 20)) log(`problem               ${p}`);
  if (r.problems.length > 20) log(`problem               ... and ${r.problems.length - 20} more`);
  log(`${r.pass ? 'PASS' : 'FAIL'}                  in ${((Date.now() - r.t0) / 1000).toFixed(1)} s`);
}

async function main(): Promise<number> {
  const t0 = Date.now();
  sweepLabs(PREFIX);
  const lab = Lab.up({ prefix: PREFIX });
  log(
    `soak: lab ${lab.name}; ${opts.sessions} sessions x ${opts.connections} connections (${outPer} out, ${inPer} in) x ${opts.seconds} s`,
  );
  const args = ['run', '--json', '--pool', POOL, '--sessions', String(opts.sessions)];
  if (opts.workers) args.push('--workers', String(opts.workers));
  if (opts.inner) args.push('--inner-address', opts.inner);
  const vipnat = lab.vipnat([...args, '--', 'sh', '-c', sessionScript()]);
  const sessions = await vipnat.waitSessions(opts.sessions, 300_000);
  const startupMs = Date.now() - t0;
  log(`soak: ${sessions.length} sessions up in ${(startupMs / 1000).toFixed(1)} s (vipnat pid ${vipnat.pid})`);
  const { result, rss } = await runLoad(lab, vipnat, sessions);
  const vipnatAlive = vipnat.running;
  const stopT = Date.now();
  const v = await vipnat.stop(vipnatAlive ? 30_000 : 1000);
  const stopMs = Date.now() - stopT;
  const problems = problemsOf(vipnatAlive, v, result);
  const pass = result.ok === true && problems.length === 0;
  printReport({ sessions: sessions.length, startupMs, stopMs, result, v, rss, problems, pass, t0 });
  if (opts.json) {
    const vipnatReport = { exit: v.exit, leftNamespaces: v.leftNamespaces.length, rss, dataplane: v.dataplane ?? {} };
    log(
      JSON.stringify({
        pass,
        lab: lab.name,
        vipnatPid: vipnat.pid,
        options: opts,
        startupMs,
        stopMs,
        load: result,
        vipnat: vipnatReport,
        problems,
      }),
    );
  }
  return pass ? 0 : 1;
}

asDriver('soak');
// Exits when done, whatever is left running (cleanup runs at exit).
main().then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`soak: ${e.stack ?? e.message}\n`);
    log('FAIL');
    process.exit(1);
  },
);
