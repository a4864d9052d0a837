// VIPs on a LAN: the time to start N sessions with --pool dhcp against ISC Kea, beside the same with a static on-link pool, in the same run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Lab, log, retry, sh } from '../../test/lab/index.js';
import { PREFIX } from '../lab.js';
import { workersArgs, type BenchOptions } from '../options.js';
import type { Dhcp } from '../results.js';

/** The LAN's addresses the sessions get: Kea's pool, and the same range as a static pool. */
const RANGE = ['198.18.100.20', '198.18.100.250'] as const;

/** Seconds from launch to the last `session N vip` line of `vipnat run ARGS --sessions N -- sleep 3600` in the LAN's gateway. */
async function startTime(lab: Lab, pool: string, n: number, opts: BenchOptions): Promise<number> {
  const t0 = performance.now();
  const run = lab.vipnat(['run', '--pool', pool, '--sessions', String(n), ...workersArgs(opts), '--', 'sleep', '3600']);
  let seconds: number | null = null;
  try {
    await run.waitFor(new RegExp(`^session ${n} vip `), 300_000);
    seconds = +((performance.now() - t0) / 1000).toFixed(2);
  } finally {
    const end = await run.stop(120_000);
    if (seconds !== null && end.leftNamespaces.length > 0) seconds = null;
  }
  if (seconds === null) throw new Error(`vipnat run --pool ${pool} left session namespaces behind`);
  return seconds;
}

export async function dhcpBenchmark(opts: BenchOptions): Promise<Dhcp> {
  const n = opts.quick ? 50 : 200;
  const out: Dhcp = { sessions: n };
  log(`\n== VIPs on a LAN: ${n} sessions with --pool dhcp (Kea) against a static on-link pool ${RANGE.join('-')}`);
  const lab = Lab.up({ lan: true, prefix: PREFIX });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'vnbench-dhcp-'));
  let kea: ReturnType<Lab['spawn']> | null = null;
  try {
    const dh = lab.addLanHost('dh', '198.18.100.5/24', 'fd00:100::5/64');
    out.staticSeconds = await startTime(lab, RANGE.join('-'), n, opts);
    log(`  static on-link pool: ${out.staticSeconds} s`);
    fs.writeFileSync(
      path.join(dir, 'kea.json'),
      JSON.stringify({
        Dhcp4: {
          'interfaces-config': { interfaces: ['lan0'], 'dhcp-socket-type': 'raw' },
          'lease-database': { type: 'memfile', persist: false },
          'valid-lifetime': 3600,
          subnet4: [{ id: 1, subnet: '198.18.100.0/24', pools: [{ pool: `${RANGE[0]} - ${RANGE[1]}` }] }],
          loggers: [{ name: 'kea-dhcp4', output_options: [{ output: path.join(dir, 'kea.log') }], severity: 'WARN' }],
        },
      }),
    );
    kea = lab.spawn(dh, ['env', `KEA_PIDFILE_DIR=${dir}`, `KEA_LOCKFILE_DIR=${dir}`, 'kea-dhcp4', '-c', path.join(dir, 'kea.json')]);
    await retry(() => {
      if (sh('ip', ['netns', 'exec', dh, 'ss', '-Hlun', 'sport = :67']).trim() === '') throw new Error('Kea is not listening yet');
    });
    out.dhcpSeconds = await startTime(lab, 'dhcp:lan0', n, opts);
    log(`  --pool dhcp (Kea):   ${out.dhcpSeconds} s (+${(out.dhcpSeconds - out.staticSeconds).toFixed(2)} s)`);
  } catch (e) {
    out.error = (e as Error).message;
    log(`  FAILED: ${out.error}`);
  } finally {
    kea?.kill('SIGTERM');
    lab.down();
    fs.rmSync(dir, { recursive: true, force: true });
  }
  return out;
}
