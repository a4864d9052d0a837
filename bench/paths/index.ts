// The paths the bench compares, each from a client namespace to the backend through the lab's gateway namespace: brought up per round, then down.
import type { BenchLab } from '../lab.js';
import type { BenchOptions, PathName } from '../options.js';
import { pastaUp } from './pasta.js';
import { referenceUp } from './reference.js';
import { slirpUp } from './slirp.js';
import { vipnatUp } from './vipnat.js';

/** A path that is up: the client namespaces to run loads in (one, or one per vipnat session), and how to take it down. */
export interface PathUp {
  clients: string[];
  /** Takes the path down; what it reports about the round (counters, exit status), or null. */
  down(): Promise<PathEnd | null>;
}

/** How a path's round ended; `summary` is the line the bench prints about it. */
export type PathEnd = Record<string, unknown> & { summary?: string };

export interface PathContext {
  bench: BenchLab;
  opts: BenchOptions;
}

/**
 * Brings path `p` up at MTU `mtu` (the lab's links are already at that MTU); `sessions`: how
 * many vipnat sessions (the new-connections load runs one client per session).
 */
export function pathUp(ctx: PathContext, p: PathName, mtu: number, sessions: number): Promise<PathUp> {
  switch (p) {
    case 'kernel':
      // NAME-k, joined to the gateway by a veth pair and routed by its kernel: the physical limit.
      return Promise.resolve({ clients: [ctx.bench.k], down: () => Promise.resolve(null) });
    case 'reference':
      return referenceUp(ctx, mtu);
    case 'address':
    case 'nat':
      return vipnatUp(ctx, p, mtu, sessions);
    case 'slirp':
      return slirpUp(ctx, mtu);
    case 'pasta':
      return pastaUp(ctx, mtu);
  }
}
