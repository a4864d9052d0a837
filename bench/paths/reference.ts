// The reference path, the design's userspace limit: bench/reference/forward.c copies packets between the client's TUN and a TUN in the gateway namespace, as vipnat does in address mode but with no translation.
import { existsSync } from 'node:fs';
import { BACKEND, ROOT, sh, waitFor } from '../../test/lab/index.js';
import { TXQUEUELEN } from '../lab.js';
import type { PathContext, PathEnd, PathUp } from './index.js';

export const FORWARDER = `${ROOT}dist-tools/reference-forward`;
/** The client's address: routed to the gateway side's TUN, as vipnat's pool is routed to vipnat0. */
export const REFERENCE_ADDRESS = '198.19.9.1';
/** The gateway side's TUN (vipnat's is vipnat0), and the client's while it is still in the gateway namespace. */
const GW_TUN = 'vnref0';
const CLIENT_TUN = 'vnrefc';

/** What the forwarder prints at its end. */
interface Counters {
  aToB: { packets: number; bytes: number; writeErrors: number; readErrors: number };
  bToA: { packets: number; bytes: number; writeErrors: number; readErrors: number };
}

/** Both TUNs set up the way vipnat sets up a session's eth0 and its uplink vipnat0. */
function configure(gw: string, client: string, mtu: number): void {
  // The gateway side first, as vipnat's uplink is up before its sessions.
  sh('ip', ['-n', gw, 'link', 'set', 'dev', GW_TUN, 'mtu', String(mtu), 'txqueuelen', TXQUEUELEN, 'up']);
  sh('ip', ['-n', gw, 'route', 'add', `${REFERENCE_ADDRESS}/32`, 'dev', GW_TUN]);
  sh('ip', ['-n', gw, 'link', 'set', 'dev', CLIENT_TUN, 'netns', client]);
  sh('ip', ['-n', client, 'link', 'set', 'dev', CLIENT_TUN, 'name', 'eth0']);
  sh('ip', ['-n', client, 'link', 'set', 'dev', 'eth0', 'mtu', String(mtu), 'txqueuelen', TXQUEUELEN, 'up']);
  sh('ip', ['-n', client, 'addr', 'add', `${REFERENCE_ADDRESS}/32`, 'dev', 'eth0']);
  sh('ip', ['-n', client, 'route', 'add', '0.0.0.0/0', 'dev', 'eth0']);
  // The gateway namespace forwards (lab.sh kernel turned it on; vipnat turns it on for itself).
  sh('ip', ['netns', 'exec', gw, 'sysctl', '-qw', 'net.ipv4.ip_forward=1']);
}

export async function referenceUp(ctx: PathContext, mtu: number): Promise<PathUp> {
  const { bench } = ctx;
  if (!existsSync(FORWARDER)) throw new Error(`${FORWARDER} is not built: run make build`);
  // Both TUNs are made in the gateway namespace; the client's then moves (its fd stays attached), as vipnat's sessions do.
  const c = bench.lab.start('nsenter', [`--net=/run/netns/${bench.gw}`, FORWARDER, GW_TUN, CLIENT_TUN]);
  try {
    await waitFor('the reference forwarder', () => {
      if (!c.running) throw new Error(`reference forwarder exited: ${c.err.trim()}`);
      return c.out.startsWith('ready\n');
    });
    configure(bench.gw, bench.r, mtu);
  } catch (e) {
    await c.stop();
    throw e;
  }
  await bench.lab.nsRun(bench.r, ['ping', '-c', '1', '-W', '2', BACKEND], 5000);
  return {
    clients: [bench.r],
    down: async (): Promise<PathEnd> => {
      const r = await c.stop('SIGTERM', 5000);
      let counters: Counters | null = null;
      try {
        counters = JSON.parse(c.out.split('\n')[1] ?? '') as Counters;
      } catch {
        // killed, or it failed: no counters
      }
      const summary = counters
        ? `forwarded: client→gateway ${counters.bToA.packets} packets, gateway→client ${counters.aToB.packets} (write errors ${counters.bToA.writeErrors + counters.aToB.writeErrors}); exit ${r.signal ?? r.code}`
        : `no counters; exit ${r.signal ?? r.code}: ${c.err.trim()}`;
      return { exit: r.signal ?? r.code, counters, summary };
    },
  };
}
