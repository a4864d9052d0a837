// Scale: the time and memory for N sessions (`vipnat run --sessions N -- sleep 3600` in the gateway namespace), and the time to stop them.
import { childrenOf, log, sleep, treePss, treeRss, waitFor } from '../../test/lab/index.js';
import { fmtBytes } from '../format.js';
import type { BenchLab } from '../lab.js';
import { workersArgs, type BenchOptions } from '../options.js';
import type { Scale } from '../results.js';

export const SCALE_POOL = '198.19.0.0/16';

export async function scaleBenchmark(bench: BenchLab, opts: BenchOptions): Promise<Scale> {
  const n = opts.scaleSessions;
  const scale: Scale = {};
  log(`\n== scale: vipnat run --pool ${SCALE_POOL} --sessions ${n} -- sleep 3600`);
  const t0 = performance.now();
  const run = bench.lab.vipnat(['run', '--pool', SCALE_POOL, '--sessions', String(n), ...workersArgs(opts), '--', 'sleep', '3600']);
  const programs = new Set<number>();
  let seen = 0;
  let tStarted: number | null = null;
  run.onLine((l) => {
    const m = /^session (\d+) vip \S+ loopback \S+ pid (\d+)$/.exec(l);
    if (!m) return;
    programs.add(Number(m[2]));
    if (++seen === n) tStarted = performance.now();
  });
  try {
    const started = (): boolean => {
      if (!run.running) throw new Error(`vipnat exited: ${run.stderr.trim().split('\n')[0]}`);
      return tStarted !== null;
    };
    await waitFor(`${n} sessions`, started, 300_000);
    scale.sessions = n;
    scale.startSeconds = +((tStarted! - t0) / 1000).toFixed(2);
    log(`  time from launch to the ${n}th session line: ${scale.startSeconds} s`);
    await sleep(1000);
    // vipnat itself; then its vipnat-init helpers (two per session), counted by what they share.
    const own = treeRss(run.pid, new Set([...programs, ...childrenOf(run.pid)]));
    const helpers = treePss(run.pid, programs);
    const all = treeRss(run.pid);
    scale.gatewayRss = own.bytes;
    scale.gatewayProcesses = own.processes;
    scale.helpersPss = helpers.bytes;
    scale.helpers = helpers.processes;
    scale.treeRssWithPrograms = all.bytes;
    log(
      `  vipnat's RSS with ${n} sessions up: ${fmtBytes(own.bytes)}; its ${helpers.processes} vipnat-init helpers: ${fmtBytes(helpers.bytes)} PSS ` +
        `(${fmtBytes(helpers.bytes / Math.max(1, n))} a session); the whole tree with the ${programs.size} programs: ${fmtBytes(all.bytes)} RSS`,
    );
  } catch (e) {
    scale.error = (e as Error).message;
    log(`  FAILED: ${scale.error}`);
  } finally {
    const t1 = performance.now();
    const end = await run.stop(60_000);
    scale.stopSeconds = +((performance.now() - t1) / 1000).toFixed(2);
    scale.stopExit = end.exit;
    scale.leftNamespaces = end.leftNamespaces.length;
    log(`  SIGTERM to exit: ${scale.stopSeconds} s, exit status ${scale.stopExit}, ${scale.leftNamespaces} session namespaces left`);
  }
  return scale;
}
