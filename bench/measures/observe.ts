// The cost of seeing: TCP bulk through vipnat with Prometheus metrics on (scraped every second) and with a capture running, beside the same without.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { log, VIPNAT, type Child } from '../../test/lab/index.js';
import type { BenchLab } from '../lab.js';
import { workersArgs, type BenchOptions } from '../options.js';
import type { Observe } from '../results.js';
import { tcpBulk } from './tcp.js';

const POOL = '198.19.9.0/28';
const METRICS_PORT = 9464;

/** A vipnat run of one idle session, with `flags`; resolves with it and the session's namespace. */
async function oneSession(bench: BenchLab, opts: BenchOptions, flags: string[], env: NodeJS.ProcessEnv) {
  const run = bench.lab.vipnat(['run', '--pool', POOL, ...workersArgs(opts), ...flags, '--', 'sleep', '3600'], env);
  await run.waitFor(/^session 1 vip /, 60_000);
  return { run, ns: `vipnat-${run.pid}-1` };
}

async function bulk(bench: BenchLab, ns: string, seconds: number): Promise<number> {
  const r = await tcpBulk(bench, ns, seconds, 'up', 1);
  if (r.value === null) throw new Error(`iperf3: ${String(r.detail['error'])}`);
  return r.value;
}

export async function observeBenchmark(bench: BenchLab, opts: BenchOptions): Promise<Observe> {
  const seconds = opts.seconds;
  const out: Observe = { seconds };
  log(`\n== the cost of seeing: vipnat run --pool ${POOL} -- sleep; iperf3 from session 1 to the backend (1 stream, MTU 1500)`);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'vnbench-obs-'));
  const env = { VIPNAT_RUN_DIR: tmp };
  const best = (a: number | undefined, b: number): number => Math.max(a ?? 0, b);
  try {
    for (let k = 0; k < opts.repeat; k++) {
      // Plain, then with a capture of the session to a file, in one run.
      const plain = await oneSession(bench, opts, [], env);
      try {
        out.bulkPlain = best(out.bulkPlain, await bulk(bench, plain.ns, seconds));
        const file = path.join(tmp, 'bulk.pcapng');
        const cap: Child = bench.lab.start(process.execPath, [VIPNAT, 'capture', '1', '-w', file], { env: { ...process.env, ...env } });
        await new Promise((r) => setTimeout(r, 500));
        out.bulkCapture = best(out.bulkCapture, await bulk(bench, plain.ns, seconds));
        cap.kill('SIGINT');
        await cap.done;
        const m = /(\d+) packets captured of session 1(?:, (\d+) left out)?/.exec(cap.err);
        out.capturePackets = Number(m?.[1] ?? 0);
        out.captureLeftOut = Number(m?.[2] ?? 0);
        out.captureBytes = fs.statSync(file).size;
        fs.rmSync(file, { force: true });
      } finally {
        await plain.run.stop(60_000);
      }
      // Metrics on, scraped every second through the run.
      const met = await oneSession(bench, opts, ['--metrics', String(METRICS_PORT)], env);
      const scraper = bench.lab.start('ip', [
        'netns',
        'exec',
        bench.gw,
        'sh',
        '-c',
        `while :; do curl -sf -o /dev/null http://127.0.0.1:${METRICS_PORT}/metrics || exit 1; sleep 1; done`,
      ]);
      try {
        out.bulkMetrics = best(out.bulkMetrics, await bulk(bench, met.ns, seconds));
      } finally {
        await scraper.stop('SIGTERM', 2000);
        await met.run.stop(60_000);
      }
    }
    const pct = (v: number): string => `${((1 - v / out.bulkPlain!) * 100).toFixed(1)}%`;
    log(`  TCP bulk: ${out.bulkPlain!.toFixed(2)} Gbit/s plain; metrics on ${out.bulkMetrics!.toFixed(2)} (cost ${pct(out.bulkMetrics!)})`);
    log(
      `            capture running ${out.bulkCapture!.toFixed(2)} (cost ${pct(out.bulkCapture!)}; ${out.capturePackets} packets written, ${out.captureLeftOut} left out)`,
    );
  } catch (e) {
    out.error = (e as Error).message;
    log(`  FAILED: ${out.error}`);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
  return out;
}
