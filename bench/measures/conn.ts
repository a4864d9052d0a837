// New TCP connections per second (8 wrk at once, 4 connections each, `Connection: close`): one request per connection.
import { URL_TINY, type BenchLab } from '../lab.js';
import type { Outcome } from '../results.js';
import { parseWrk, wrkError } from './wrk.js';

/** wrk processes (one per vipnat session on vipnat's paths) and connections each. */
export const CONN_CLIENTS = 8;
export const CONN_PER_CLIENT = 4;

/** `namespaces`: one per wrk process (the same namespace repeated on the paths with one client namespace). */
export async function connectionsPerSecond(bench: BenchLab, namespaces: string[], seconds: number): Promise<Outcome> {
  const wrk = [
    'wrk',
    '-c',
    String(CONN_PER_CLIENT),
    '-t',
    '1',
    '-d',
    `${seconds}s`,
    '--timeout',
    '2s',
    '-H',
    'Connection: close',
    URL_TINY,
  ];
  const runs = await Promise.all(namespaces.map((ns) => bench.lab.nsRun(ns, wrk, (seconds + 30) * 1000)));
  let sum = 0,
    requests = 0,
    errors = 0;
  for (const r of runs) {
    const w = parseWrk(r.stdout);
    if (r.code !== 0 || w.rps === null) return { value: null, detail: { error: wrkError(r.stderr, r.code) } };
    sum += w.rps;
    requests += w.requests ?? 0;
    errors += w.errors;
  }
  return { value: sum, detail: { clients: namespaces.length, connectionsEach: CONN_PER_CLIENT, requests, errors } };
}
