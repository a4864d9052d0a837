// Lab helpers for the plain-ESM drivers (test/soak/soak.mjs, bench/flood.mjs): child processes, lab.sh, vipnat runs, cleanup on every path.
//
// A driver imports this, calls onCleanup()/labUp()/startVipnat(), and every child it starts
// through start() is stopped at exit, on SIGINT/SIGTERM/SIGHUP and on an uncaught error: vipnat
// runs first with SIGTERM (they remove their own sessions, routes and sysctls), then the rest;
// the session namespaces of a vipnat that could not clean up are swept, and the lab goes.
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('..', import.meta.url));
export const LAB_SH = path.join(ROOT, 'scripts/lab.sh');
export const VIPNAT = path.join(ROOT, 'bin/vipnat');
export const BACKEND = '198.18.0.2';
export const BACKEND6 = 'fd00:18::2';

const live = new Set(); // every child started here that has not exited
const vipnatPids = new Set(); // their session namespaces are vipnat-PID-*
const labs = new Set();
const hooks = [];
let cleaned = false;

export function log(s = '') {
  process.stdout.write(`${s}\n`);
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export function sleepSync(ms) {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/** Whether `pid` is running (not gone, not a zombie). */
export function alive(pid) {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/**
 * Starts a tracked child in its own process group (a terminal's ^C reaches only the driver,
 * which stops children in order). `c.out`/`c.err` collect its output; `c.done` resolves at its end.
 */
export function start(cmd, args, { stdout = 'pipe', keep = true } = {}) {
  const c = spawn(cmd, args, { stdio: ['ignore', stdout, 'pipe'], detached: true });
  live.add(c);
  c.once('exit', () => live.delete(c));
  c.once('error', () => live.delete(c));
  c.out = '';
  c.err = '';
  if (c.stdout) {
    c.stdout.setEncoding('utf8');
    c.stdout.on('data', (d) => {
      if (keep) c.out += d;
    });
  }
  c.stderr.setEncoding('utf8');
  c.stderr.on('data', (d) => (c.err += d));
  c.done = new Promise((resolve) => {
    c.once('close', (code, signal) => resolve({ code, signal }));
    c.once('error', (e) => resolve({ code: -1, signal: null, error: e }));
  });
  return c;
}

/** Runs a command to completion; killed after `timeoutMs`. */
export async function run(cmd, args, timeoutMs = 60_000) {
  const c = start(cmd, args);
  const t = setTimeout(() => c.kill('SIGKILL'), timeoutMs);
  const r = await c.done;
  clearTimeout(t);
  return { ...r, stdout: c.out, stderr: c.err, timedOut: r.signal === 'SIGKILL' };
}

export function nsRun(ns, argv, timeoutMs) {
  return run('ip', ['netns', 'exec', ns, ...argv], timeoutMs);
}

/** A synchronous command that must succeed; returns its stdout. */
export function sh(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${(r.stderr ?? '').trim() || `exit ${r.status}`}`);
  return r.stdout;
}

/** Stops a child: `signal`, then SIGKILL after `graceMs`. */
export async function stop(c, signal = 'SIGTERM', graceMs = 10_000) {
  if (c.exitCode === null && c.signalCode === null) c.kill(signal);
  const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
  const r = await c.done;
  clearTimeout(t);
  return r;
}

export async function waitFor(what, cond, timeoutMs = 15_000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

/**
 * Removes the labs named PREFIX-PID-* whose driver (PID) is gone: leftovers of a run that was
 * killed. A lab whose driver still runs is another run's, on the same machine: left alone.
 */
export function sweepStale(prefix) {
  for (const ns of sh('ip', ['netns', 'list']).split('\n')) {
    const m = new RegExp(`^(${prefix}(\\d+)-[0-9a-f]+)-`).exec(ns.split(' ')[0]);
    if (m && !alive(Number(m[2]))) spawnSync(LAB_SH, ['down', m[1]], { stdio: 'ignore' });
  }
}

/** Builds a lab (scripts/lab.sh up) named PREFIX-PID-RANDOM; removed at cleanup. Sweeps stale PREFIX labs first. */
export function labUp(prefix, shape = 'direct', mtu = 1500) {
  sweepStale(prefix);
  const name = `${prefix}${process.pid}-${randomBytes(2).toString('hex')}`;
  labs.add(name);
  sh(LAB_SH, ['up', name, shape, String(mtu)]);
  return { name, gw: `${name}-gw`, be: `${name}-be` };
}

/**
 * Starts `vipnat ARGS` (give it --json) with namespace `gwNs` as its uplink. `c.events()` are the
 * JSON events so far; `c.sessions()` the session events by id.
 */
export function startVipnat(gwNs, args) {
  const c = start('nsenter', [`--net=/run/netns/${gwNs}`, VIPNAT, ...args]);
  vipnatPids.add(c.pid); // nsenter execs vipnat: same pid
  c.events = () =>
    c.out
      .split('\n')
      .filter((l) => l.startsWith('{"event"'))
      .map((l) => JSON.parse(l));
  c.sessions = () =>
    c
      .events()
      .filter((e) => e.event === 'session')
      .sort((a, b) => a.id - b.id);
  return c;
}

/** Waits for `n` sessions of a vipnat run; throws (with vipnat's output) if it exits first. */
export async function waitSessions(c, n, timeoutMs = 120_000) {
  await waitFor(
    `${n} vipnat sessions`,
    () => {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`vipnat exited: ${c.err.trim() || c.out.trim().slice(-500)}`);
      return c.sessions().length >= n;
    },
    timeoutMs,
  );
  return c.sessions();
}

/** Stops a vipnat run with SIGTERM; its exit and the summary's dataplane counters, and the namespaces it left. */
export async function stopVipnat(c, graceMs = 30_000) {
  const r = await stop(c, 'SIGTERM', graceMs);
  const summary = c.events().find((e) => e.event === 'summary') ?? null;
  const left = sh('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0])
    .filter((n) => n && n.startsWith(`vipnat-${c.pid}-`));
  return { exit: r.signal ?? r.code, summary, dataplane: summary?.dataplane ?? null, leftNamespaces: left, stderr: c.err.trim() };
}

/** A link's kernel counters: { rx: {packets, bytes, dropped, ...}, tx: {...} }. */
export function linkStats(ns, dev) {
  const j = JSON.parse(sh('ip', ['-n', ns, '-s', '-j', 'link', 'show', 'dev', dev]));
  return j[0].stats64;
}

/** VmRSS in bytes of `pid` and its descendants. */
export function treeRss(pid) {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
      const ppid = Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]);
      if (!kids.has(ppid)) kids.set(ppid, []);
      kids.get(ppid).push(Number(d));
    } catch {
      // gone meanwhile
    }
  }
  let total = 0;
  const todo = [pid];
  while (todo.length) {
    const p = todo.pop();
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch {
      // gone meanwhile
    }
    todo.push(...(kids.get(p) ?? []));
  }
  return total;
}

/** Removes /etc/netns/PREFIX*: a vipnat that could not clean up leaves its sessions' hosts files there. */
function removeEtcNetns(prefix) {
  try {
    for (const n of fs.readdirSync('/etc/netns')) if (n.startsWith(prefix)) fs.rmSync(`/etc/netns/${n}`, { recursive: true, force: true });
  } catch {
    // no /etc/netns
  }
}

/** Runs `fn` at cleanup (before the lab goes), e.g. to remove temporary files. */
export function onCleanup(fn) {
  hooks.push(fn);
}

/** Synchronous, so that it also runs from signal handlers and at exit. */
export function cleanup() {
  if (cleaned) return;
  cleaned = true;
  const children = [...live];
  for (const c of children) if (c.pid && vipnatPids.has(c.pid) && alive(c.pid)) c.kill('SIGTERM');
  const end = Date.now() + 30_000;
  while (Date.now() < end && children.some((c) => c.pid && vipnatPids.has(c.pid) && alive(c.pid))) sleepSync(100);
  for (const c of children) if (c.pid && alive(c.pid)) c.kill('SIGTERM');
  if (children.length) sleepSync(200);
  for (const c of children) if (c.pid && alive(c.pid)) c.kill('SIGKILL');
  for (const pid of vipnatPids) {
    spawnSync(LAB_SH, ['sweep', `vipnat-${pid}-`], { stdio: 'ignore' });
    removeEtcNetns(`vipnat-${pid}-`);
  }
  for (const fn of hooks) {
    try {
      fn();
    } catch {
      // best effort
    }
  }
  for (const name of labs) spawnSync(LAB_SH, ['down', name], { stdio: 'ignore' });
}

for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
]) {
  process.on(sig, () => {
    process.stderr.write(`\n${sig}: stopping and cleaning up\n`);
    cleanup();
    process.exit(code);
  });
}
process.on('exit', cleanup);
