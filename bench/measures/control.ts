// The long-running gateway's control plane: the time to start one session with 0 and N sessions running (p50, p99), and `ls` with N.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import { request } from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { log, ROOT } from '../../test/lab/index.js';
import type { BenchLab } from '../lab.js';
import { workersArgs, type BenchOptions } from '../options.js';
import type { Control, Percentiles } from '../results.js';
import { SCALE_POOL } from './scale.js';

/** Starts done while the gateway holds 0 sessions, and again with N; `ls` asked this many times. */
const SAMPLES = 30;
/** Sessions set up side by side while filling the gateway (as `run` does). */
const FILL_WINDOW = 8;

function percentiles(ms: number[]): Percentiles {
  const s = [...ms].sort((a, b) => a - b);
  const at = (q: number): number => +s[Math.min(s.length - 1, Math.floor(q * s.length))]!.toFixed(1);
  return { p50: at(0.5), p99: at(0.99), n: s.length };
}

/** One API call over the control socket; resolves with its answer's status and how long it took. */
function call(socketPath: string, method: string, url: string, body?: unknown): Promise<{ status: number; ms: number }> {
  const text = body === undefined ? '' : JSON.stringify(body);
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const req = request(
      { socketPath, method, path: url, headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) } },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: performance.now() - t0 }));
      },
    );
    req.on('error', reject);
    req.end(text);
  });
}

async function startOne(sock: string): Promise<number> {
  const r = await call(sock, 'POST', '/v1/sessions', { program: 'sleep', args: ['3600'] });
  if (r.status !== 201) throw new Error(`a start answered ${r.status}`);
  return r.ms;
}

async function startMany(sock: string, n: number): Promise<void> {
  for (let done = 0; done < n; done += FILL_WINDOW) {
    await Promise.all(Array.from({ length: Math.min(FILL_WINDOW, n - done) }, () => startOne(sock)));
  }
}

/** `vipnat ls` as a user runs it: a process, node starting included. */
function lsByCli(runDir: string): number {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, [`${ROOT}bin/vipnat`, 'ls'], { env: { ...process.env, VIPNAT_RUN_DIR: runDir }, stdio: 'ignore' });
  if (r.status !== 0) throw new Error(`vipnat ls exited ${r.status}`);
  return performance.now() - t0;
}

export async function controlBenchmark(bench: BenchLab, opts: BenchOptions): Promise<Control> {
  const n = opts.scaleSessions;
  const out: Control = { sessions: n };
  const runDir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnbench-run-'));
  const sock = `${runDir}/default.sock`;
  log(`\n== control: vipnat up --pool ${SCALE_POOL}; one session started over its socket with 0 and ${n} running; ls with ${n}`);
  const up = bench.lab.vipnat(['up', '--pool', SCALE_POOL, ...workersArgs(opts)], { VIPNAT_RUN_DIR: runDir });
  try {
    await up.waitFor(/^vipnat: gateway "default" is up/, 60_000);
    const idle: number[] = [];
    for (let k = 0; k < SAMPLES; k++) idle.push(await startOne(sock));
    out.startIdle = percentiles(idle);
    log(`  start, 0 running: p50 ${out.startIdle.p50} ms, p99 ${out.startIdle.p99} ms`);
    await startMany(sock, n - SAMPLES);
    const lsApi: number[] = [];
    const lsCli: number[] = [];
    for (let k = 0; k < SAMPLES; k++) lsApi.push((await call(sock, 'GET', '/v1/sessions')).ms);
    for (let k = 0; k < 10; k++) lsCli.push(lsByCli(runDir));
    out.lsApi = percentiles(lsApi);
    out.lsCli = percentiles(lsCli);
    log(`  ls with ${n}: over the socket p50 ${out.lsApi.p50} ms; vipnat ls (a process) p50 ${out.lsCli.p50} ms`);
    const busy: number[] = [];
    for (let k = 0; k < SAMPLES; k++) busy.push(await startOne(sock));
    out.startBusy = percentiles(busy);
    log(`  start, ${n} running: p50 ${out.startBusy.p50} ms, p99 ${out.startBusy.p99} ms`);
  } catch (e) {
    out.error = (e as Error).message;
    log(`  FAILED: ${out.error}`);
  } finally {
    const t0 = performance.now();
    await call(sock, 'POST', '/v1/down').catch(() => undefined);
    const end = await up.stop(120_000);
    out.downSeconds = +((performance.now() - t0) / 1000).toFixed(2);
    out.leftNamespaces = end.leftNamespaces.length;
    log(`  down with ${n + SAMPLES} sessions: ${out.downSeconds} s, ${out.leftNamespaces} session namespaces left`);
    fs.rmSync(runDir, { recursive: true, force: true });
  }
  return out;
}
