// vipnat's two paths: `vipnat run` in the gateway namespace with idle sessions whose namespaces the loads run in, in address mode (eth0 holds the VIP) or NAT mode.
import { BACKEND } from '../../test/lab/index.js';
import { clientSysctls } from '../lab.js';
import { workersArgs } from '../options.js';
import type { PathContext, PathEnd, PathUp } from './index.js';

export const POOL = '198.19.8.0/24';
/** The sessions' shared inner address in NAT mode (slirp4netns and pasta give their guests the same). */
export const INNER = '10.0.2.100';

export async function vipnatUp(ctx: PathContext, mode: 'address' | 'nat', mtu: number, sessions: number): Promise<PathUp> {
  const args = ['run', '--pool', POOL, '--sessions', String(sessions), '--mtu', String(mtu), '--json', ...workersArgs(ctx.opts)];
  if (mode === 'nat') args.push('--inner-address', INNER);
  const run = ctx.bench.lab.vipnat([...args, '--', 'sleep', '86400']);
  let netns: string[];
  try {
    netns = (await run.waitSessions(sessions, 60_000)).map((e) => e.netns!);
  } catch (e) {
    await run.stop(10_000);
    throw e;
  }
  for (const n of netns) {
    clientSysctls(n);
    await ctx.bench.lab.nsRun(n, ['ping', '-c', '1', '-W', '2', BACKEND], 5000);
  }
  return {
    clients: netns,
    down: async (): Promise<PathEnd> => {
      const end = await run.stop(20_000);
      const d = end.dataplane;
      const left = end.leftNamespaces.length;
      const summary = d
        ? `dataplane: packets out ${d.toUplink} in ${d.toSession} dropped ${d.dropped} (tableFull ${d.tableFull}, writeErrors ${d.writeErrors}); exit ${end.exit}${left ? `; ${left} namespaces left!` : ''}`
        : `no summary; exit ${end.exit}`;
      return { exit: end.exit, dataplane: d, leftNamespaces: left, stderr: end.stderr || undefined, summary };
    },
  };
}
