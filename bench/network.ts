// The network measures' schedule: for each MTU, rounds that visit every path in turn, each path brought up, loaded and taken down.
import { log } from '../test/lab/index.js';
import type { BenchLab } from './lab.js';
import { connectionsPerSecond, CONN_CLIENTS } from './measures/conn.js';
import { requestsPerSecond } from './measures/rr.js';
import { tcpBulk } from './measures/tcp.js';
import { udpPps } from './measures/udp.js';
import { pad } from './format.js';
import { PATH_LABEL, type BenchOptions, type PathName } from './options.js';
import { pathUp, type PathContext, type PathUp } from './paths/index.js';
import { bulkId, byId, record, type Results } from './results.js';

type Small = 'conn' | 'rr' | 'udp';

interface Round {
  p: PathName;
  mtu: number;
  round: number;
  wantBulk: boolean;
  small: Small[];
}

function roundIds(r: Round): string[] {
  const bulk = r.wantBulk ? (['up', 'down'] as const).flatMap((d) => [1, 4].map((s) => bulkId(r.mtu, d, s))) : [];
  return [...bulk, ...r.small];
}

/** The loads of one round on a path that is up. */
async function loads(ctx: PathContext, results: Results, r: Round, up: PathUp): Promise<void> {
  const { bench, opts } = ctx;
  const s = opts.seconds;
  const client = up.clients[0]!;
  if (r.wantBulk) {
    for (const dir of ['up', 'down'] as const) {
      for (const streams of [1, 4]) record(byId(results, bulkId(r.mtu, dir, streams)), r.p, await tcpBulk(bench, client, s, dir, streams));
    }
  }
  if (r.small.includes('rr')) record(byId(results, 'rr'), r.p, await requestsPerSecond(bench, client, s));
  if (r.small.includes('conn')) {
    const clients = up.clients.length >= CONN_CLIENTS ? up.clients.slice(0, CONN_CLIENTS) : Array<string>(CONN_CLIENTS).fill(client);
    record(byId(results, 'conn'), r.p, await connectionsPerSecond(bench, clients, s));
  }
  if (r.small.includes('udp')) record(byId(results, 'udp'), r.p, await udpPps(bench, client, s));
}

/** One round of one path at one MTU: bring it up, run the loads, take it down. */
async function pathRound(ctx: PathContext, results: Results, r: Round): Promise<void> {
  let up: PathUp;
  try {
    up = await pathUp(ctx, r.p, r.mtu, r.small.includes('conn') ? CONN_CLIENTS : 1);
  } catch (e) {
    const msg = (e as Error).message;
    log(`  ${pad(PATH_LABEL[r.p], 15)} could not start: ${msg}`);
    for (const id of roundIds(r)) record(byId(results, id), r.p, { value: null, detail: { error: `path did not start: ${msg}` } });
    return;
  }
  try {
    await loads(ctx, results, r, up);
  } finally {
    const end = await up.down();
    if (end) {
      results.runInfo.paths[`${r.p}-${r.mtu}-${r.round}`] = end;
      if (end.summary) log(`  ${pad(PATH_LABEL[r.p], 15)} ${end.summary}`);
    }
  }
}

export async function network(bench: BenchLab, opts: BenchOptions, results: Results): Promise<void> {
  const ctx: PathContext = { bench, opts };
  const wantBulk = opts.only.includes('tcp');
  const small = (['conn', 'rr', 'udp'] as const).filter((x) => opts.only.includes(x));
  for (const mtu of opts.mtus) {
    const smallHere = mtu === 1500 ? small : []; // requests, connections and UDP at MTU 1500 only
    if (!wantBulk && smallHere.length === 0) continue;
    bench.lab.setMtu(mtu);
    log(`\n== MTU ${mtu} (client interfaces, gateway–backend link and kernel veth)`);
    // Rounds visit every path in turn, so that each path's runs are spread over the whole block.
    for (let round = 1; round <= opts.repeat; round++) {
      if (opts.repeat > 1) log(`  -- round ${round} of ${opts.repeat}`);
      for (const p of opts.paths) await pathRound(ctx, results, { p, mtu, round, wantBulk, small: smallHere });
    }
  }
}
