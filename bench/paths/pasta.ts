// The pasta path (passt's namespace mode, podman's default): pasta in the gateway namespace attached to the client namespace NAME-p, reaching only what the gateway namespace reaches.
import { sh, waitFor } from '../../test/lab/index.js';
import { TXQUEUELEN } from '../lab.js';
import type { PathContext, PathEnd, PathUp } from './index.js';
import { configured } from './slirp.js';
import { INNER } from './vipnat.js';

/** The guest's gateway: pasta answers for it (ARP) and, with --no-map-gw, maps nothing to it. */
const GUEST_GATEWAY = '10.0.2.2';

/**
 * pasta's arguments. It takes its addresses from the gateway namespace's be0 (`-i be0`: that
 * namespace has no default route for pasta to find its interface by), gives the guest the same
 * addresses slirp4netns does, IPv4 only; no port forwarding either way (-t/-u/-T/-U none), no
 * mapping of the gateway address to the host's loopback (--no-map-gw), no DNS (-D none); `-f`
 * keeps it in the foreground, our child. `--runas 0`: started as root, pasta would change to
 * nobody by default, which may not join the lab's namespace.
 */
export function pastaArgs(mtu: number, ns: string): string[] {
  return [
    ...['-f', '-q', '--runas', '0', '--config-net', '-4', '-i', 'be0'],
    ...['-a', INNER, '-n', '24', '-g', GUEST_GATEWAY, '-m', String(mtu), '-I', 'tap0'],
    ...['-t', 'none', '-u', 'none', '-T', 'none', '-U', 'none', '--no-map-gw', '-D', 'none'],
    ...['--netns', `/run/netns/${ns}`],
  ];
}

export async function pastaUp(ctx: PathContext, mtu: number): Promise<PathUp> {
  const { bench } = ctx;
  const c = bench.lab.start('nsenter', [`--net=/run/netns/${bench.gw}`, 'pasta', ...pastaArgs(mtu, bench.p)]);
  try {
    await waitFor('pasta tap0', () => {
      if (!c.running) throw new Error(`pasta exited: ${c.err.trim()}`);
      return configured(bench.p, 'tap0', INNER);
    });
    // pasta leaves tap0 the kernel's queue of 1000 packets, which the large receive window it
    // advertises overflows at MTU 1500: uploads collapse to about 0.1 Gbit/s. vipnat's TUNs' queue instead.
    sh('ip', ['-n', bench.p, 'link', 'set', 'dev', 'tap0', 'txqueuelen', TXQUEUELEN]);
  } catch (e) {
    await c.stop();
    throw e;
  }
  // No warm-up ping: pasta answers ICMP through ping sockets, which root's group may not open here.
  return {
    clients: [bench.p],
    down: async (): Promise<PathEnd> => {
      const r = await c.stop('SIGTERM', 5000);
      return { exit: r.signal ?? r.code };
    },
  };
}
