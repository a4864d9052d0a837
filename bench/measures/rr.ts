// Requests per second on one keep-alive connection (wrk -c 1 against nginx), client and server pinned to different CPUs.
import os from 'node:os';
import { spawnSync } from 'node:child_process';
import { URL_TINY, type BenchLab } from '../lab.js';
import type { Outcome } from '../results.js';
import { parseWrk, wrkError } from './wrk.js';

function pin(pids: number[], cpus: string): void {
  for (const pid of pids) spawnSync('taskset', ['-pc', cpus, String(pid)], { stdio: 'ignore' });
}

/**
 * One connection, one request at a time: the figure is mostly wake-up latency, which on a small VM
 * depends on whether client and server share a CPU (here 3x apart). So the client runs on CPU 0 and
 * the server on CPU 1, on every path; the gateway is left where the scheduler puts it.
 */
export async function requestsPerSecond(bench: BenchLab, ns: string, seconds: number): Promise<Outcome> {
  const workers = bench.nginxWorkers();
  const cpus = os.cpus().length;
  if (cpus > 1) pin(workers, '1');
  const wrk = ['wrk', '-c', '1', '-t', '1', '-d', `${seconds}s`, '--timeout', '2s', URL_TINY];
  const r = await bench.lab.nsRun(ns, [...(cpus > 1 ? ['taskset', '-c', '0'] : []), ...wrk], (seconds + 30) * 1000);
  if (cpus > 1) pin(workers, `0-${cpus - 1}`);
  const w = parseWrk(r.stdout);
  if (r.code !== 0 || w.rps === null) return { value: null, detail: { error: wrkError(r.stderr, r.code) } };
  if (w.errors > 0 && w.requests === 0) return { value: null, detail: { error: `${w.errors} errors, no response` } };
  return { value: w.rps, detail: { requests: w.requests, errors: w.errors } };
}
