// The virtual loopback: TCP bulk and new connections per second from the gateway's namespace to a session's 127.0.0.1, beside the same inside the session.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { log, tcpListening, waitFor, type Child } from '../../test/lab/index.js';
import { nginxConf, type BenchLab } from '../lab.js';
import { workersArgs, type BenchOptions } from '../options.js';
import type { Loopback } from '../results.js';
import { CONN_CLIENTS, CONN_PER_CLIENT } from './conn.js';
import { iperfError, type IperfJson } from './iperf.js';
import { parseWrk, wrkError } from './wrk.js';

const POOL = '198.19.8.0/28';
const IPERF = 5301;
const HTTP = 8380;

/** iperf3 against ADDR from `ns`: the received Gbit/s, or an error. */
async function bulk(bench: BenchLab, ns: string, addr: string, seconds: number, reverse: boolean): Promise<number> {
  const omit = seconds >= 4 ? 1 : 0;
  const argv = ['iperf3', '-c', addr, '-p', String(IPERF), '-J', '--connect-timeout', '5000', '-t', String(seconds), '-O', String(omit)];
  const r = await bench.lab.nsRun(ns, reverse ? [...argv, '-R'] : argv, (seconds + omit + 30) * 1000);
  if (r.code !== 0) throw new Error(`iperf3 to ${addr}: ${iperfError(r)}`);
  return (JSON.parse(r.stdout) as IperfJson).end.sum_received.bits_per_second / 1e9;
}

/** New connections per second to http://ADDR/tiny from `ns`: CONN_CLIENTS wrk at once, as the conn measure runs them. */
async function conns(bench: BenchLab, ns: string, addr: string, seconds: number): Promise<number> {
  const url = `http://${addr}:${HTTP}/tiny`;
  const wrk = ['wrk', '-c', String(CONN_PER_CLIENT), '-t', '1', '-d', `${seconds}s`, '--timeout', '2s', '-H', 'Connection: close', url];
  const runs = await Promise.all(Array.from({ length: CONN_CLIENTS }, () => bench.lab.nsRun(ns, wrk, (seconds + 30) * 1000)));
  let sum = 0;
  for (const r of runs) {
    const w = parseWrk(r.stdout);
    if (r.code !== 0 || w.rps === null) throw new Error(`wrk to ${url}: ${wrkError(r.stderr, r.code)}`);
    if (w.errors > 0) throw new Error(`wrk to ${url}: ${w.errors} socket errors`);
    sum += w.rps;
  }
  return sum;
}

export async function loopbackBenchmark(bench: BenchLab, opts: BenchOptions): Promise<Loopback> {
  const seconds = opts.seconds;
  const out: Loopback = { seconds };
  log(`\n== virtual loopback: vipnat run --pool ${POOL} -- sleep; iperf3 and nginx on 127.0.0.1 in session 1, reached at 127.0.0.2`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnbench-lo-'));
  fs.chmodSync(tmp, 0o755); // nginx's workers run as nobody
  fs.mkdirSync(path.join(tmp, 'nginx-tmp'));
  fs.writeFileSync(path.join(tmp, 'tiny'), 'ok\n');
  fs.writeFileSync(path.join(tmp, 'nginx.conf'), nginxConf(tmp, `127.0.0.1:${HTTP}`));
  const run = bench.lab.vipnat(['run', '--pool', POOL, ...workersArgs(opts), '--', 'sleep', '3600']);
  const servers: Child[] = [];
  try {
    await run.waitFor(/^session 1 vip \S+ loopback 127\.0\.0\.2 pid/, 60_000);
    const ns = `vipnat-${run.pid}-1`;
    servers.push(
      bench.lab.start('ip', ['netns', 'exec', ns, 'iperf3', '-s', '-B', '127.0.0.1', '-p', String(IPERF)], { stdout: 'ignore' }),
    );
    servers.push(
      bench.lab.start('ip', ['netns', 'exec', ns, 'nginx', '-c', `${tmp}/nginx.conf`, '-p', tmp, '-e', `${tmp}/nginx-error.log`], {
        stdout: 'ignore',
      }),
    );
    await waitFor('iperf3 and nginx in the session', () => tcpListening(ns, IPERF) && tcpListening(ns, HTTP));
    // Best of `repeat` rounds, each figure beside its in-session one.
    const best = (a: number | undefined, b: number): number => Math.max(a ?? 0, b);
    for (let k = 0; k < opts.repeat; k++) {
      out.bulkIn = best(out.bulkIn, await bulk(bench, bench.gw, '127.0.0.2', seconds, false));
      out.bulkOut = best(out.bulkOut, await bulk(bench, bench.gw, '127.0.0.2', seconds, true));
      out.bulkPlain = best(out.bulkPlain, await bulk(bench, ns, '127.0.0.1', seconds, false));
      out.conn = best(out.conn, await conns(bench, bench.gw, '127.0.0.2', seconds));
      out.connPlain = best(out.connPlain, await conns(bench, ns, '127.0.0.1', seconds));
    }
    log(`  TCP bulk: gateway → session ${out.bulkIn!.toFixed(2)} Gbit/s, session → gateway ${out.bulkOut!.toFixed(2)} Gbit/s`);
    log(`            in-session loopback ${out.bulkPlain!.toFixed(2)} Gbit/s`);
    log(`  new connections/s: ${Math.round(out.conn!)} (in-session loopback ${Math.round(out.connPlain!)})`);
  } catch (e) {
    out.error = (e as Error).message;
    log(`  FAILED: ${out.error}`);
  } finally {
    for (const s of servers) await s.stop('SIGTERM', 5000);
    const end = await run.stop(60_000);
    out.leftNamespaces = end.leftNamespaces.length;
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}
