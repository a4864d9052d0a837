// The slirp4netns path: slirp4netns in the gateway namespace attached to the client namespace NAME-s (guest address 10.0.2.100), host loopback disabled.
import { BACKEND, sh, waitFor } from '../../test/lab/index.js';
import type { PathContext, PathEnd, PathUp } from './index.js';
import { INNER } from './vipnat.js';

export function slirpArgs(mtu: number, ns: string): string[] {
  return ['--configure', `--mtu=${mtu}`, '--disable-host-loopback', '--netns-type=path', `/run/netns/${ns}`, 'tap0'];
}

/** Whether `dev` in namespace `ns` holds `address` and the namespace has a default route. */
export function configured(ns: string, dev: string, address: string): boolean {
  try {
    const addr = sh('ip', ['-n', ns, '-4', '-br', 'addr', 'show', 'dev', dev]);
    return addr.includes(`${address}/`) && sh('ip', ['-n', ns, 'route', 'show', 'default']).trim() !== '';
  } catch {
    return false;
  }
}

export async function slirpUp(ctx: PathContext, mtu: number): Promise<PathUp> {
  const { bench } = ctx;
  const c = bench.lab.start('nsenter', [`--net=/run/netns/${bench.gw}`, 'slirp4netns', ...slirpArgs(mtu, bench.s)]);
  try {
    await waitFor('slirp4netns tap0', () => {
      if (!c.running) throw new Error(`slirp4netns exited: ${c.err.trim()}`);
      return configured(bench.s, 'tap0', INNER);
    });
  } catch (e) {
    await c.stop();
    throw e;
  }
  await bench.lab.nsRun(bench.s, ['ping', '-c', '1', '-W', '2', BACKEND], 5000);
  return {
    clients: [bench.s],
    down: async (): Promise<PathEnd> => {
      const r = await c.stop('SIGTERM', 5000);
      return { exit: r.signal ?? r.code };
    },
  };
}
