// Prometheus metrics of a gateway: served at /metrics over TCP, gathered from the gateway only when scraped.
import { createServer, type Server } from 'node:http';
import { Counter, Gauge, Registry, type CounterConfiguration, type GaugeConfiguration } from 'prom-client';
import type { Socket } from 'node:net';
import { networkInterfaces } from 'node:os';
import { namespaceSockets, UserError, type DataplaneStats, type Gateway } from '../gateway/index.js';

/**
 * The uid owning the other end of a TCP connection from this machine's own
 * namespace (found by its addresses through sock_diag), or null when the peer
 * is not here: a remote scraper, allowed where the user bound the port.
 */
export function localPeerUid(socket: Socket): number | null {
  const { remoteAddress, remotePort, localAddress, localPort } = socket;
  if (!remoteAddress || !localAddress) return null;
  const plain = (a: string): string => (a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a);
  // Only a peer at one of this namespace's own addresses can be a local user; others are not looked up.
  const own = new Set(
    Object.values(networkInterfaces())
      .flat()
      .map((i) => i?.address),
  );
  const peer = plain(remoteAddress);
  if (!own.has(peer) && !peer.startsWith('127.') && peer !== '::1') return null;
  for (const k of namespaceSockets('/proc/thread-self/ns/net', { processes: false })) {
    if (
      k.proto === 'tcp' &&
      k.local.port === remotePort &&
      k.remote.port === localPort &&
      plain(k.local.address) === plain(remoteAddress) &&
      plain(k.remote.address) === plain(localAddress)
    )
      return k.uid;
  }
  return null;
}

/** Drop reasons: the dataplane counter each is read from, and what it means (for the metric's help). */
const DROP_REASONS: [reason: string, counter: keyof DataplaneStats][] = [
  ['malformed', 'malformed'],
  ['spoofed', 'spoofed'],
  ['no_session', 'noSession'],
  ['table_full', 'tableFull'],
  ['other_family', 'otherFamily'],
  ['link_control', 'linkControl'],
  ['session_flow_limit', 'sessionFlowLimit'],
  ['shared_ports_exhausted', 'portsExhausted'],
  ['shared_port_quota', 'portQuota'],
  ['to_local', 'toLocal'],
  ['loopback_refused', 'loopbackRefused'],
  ['loopback_ports', 'loopbackPorts'],
  ['icmp_errors_dropped', 'icmpErrorsDropped'],
  ['write_error', 'writeErrors'],
  ['no_device', 'noDevice'],
  ['read_error', 'readErrors'],
];

/** A snapshot of the gateway taken once per scrape, which every metric's collect() reads. */
interface Snapshot {
  stats: DataplaneStats | null;
  flows: Awaited<ReturnType<Gateway['flowStats']>>;
}

/** The registry of a gateway's metrics. */
export function gatewayRegistry(gw: Gateway): Registry {
  const registry = new Registry();
  let snap: Snapshot = { stats: null, flows: { byState: [], perSession: new Map() } };
  let taking: Promise<void> | null = null;
  // Every metric's collect() awaits the same snapshot: one round-trip to the workers per scrape.
  const take = (): Promise<void> =>
    (taking ??= (async () => {
      const [stats, flows] = await Promise.all([gw.stats(), gw.flowStats(true).catch(() => snap.flows)]);
      // Counters that could not be read keep their last values: a reset to 0 would look like a restart.
      snap = { stats: stats ?? snap.stats, flows };
    })().finally(() => setImmediate(() => (taking = null))));

  const counter = <L extends string>(c: CounterConfiguration<L>, fill: (m: Counter<L>) => void): void => {
    new Counter<L>({
      ...c,
      registers: [registry],
      async collect() {
        await take();
        this.reset();
        fill(this);
      },
    });
  };
  const gauge = <L extends string>(c: GaugeConfiguration<L>, fill: (m: Gauge<L>) => void): void => {
    new Gauge<L>({
      ...c,
      registers: [registry],
      async collect() {
        await take();
        this.reset();
        fill(this);
      },
    });
  };
  const st = (k: keyof DataplaneStats): number => {
    const v = snap.stats?.[k];
    return typeof v === 'number' ? v : 0;
  };

  counter(
    {
      name: 'vipnat_packets_total',
      help: 'Packets forwarded: out from sessions to the network, in from the network to sessions.',
      labelNames: ['direction'],
    },
    (m) => {
      m.inc({ direction: 'out' }, st('toUplink'));
      m.inc({ direction: 'in' }, st('toSession'));
    },
  );
  counter(
    { name: 'vipnat_bytes_total', help: 'IP bytes forwarded: out from sessions, in to sessions.', labelNames: ['direction'] },
    (m) => {
      m.inc({ direction: 'out' }, st('bytesToUplink'));
      m.inc({ direction: 'in' }, st('bytesToSession'));
    },
  );
  counter(
    {
      name: 'vipnat_reflected_packets_total',
      help: "Packets to the shared address that were no session's, handed back to the namespace's own stack.",
    },
    (m) => m.inc(st('reflected')),
  );
  counter({ name: 'vipnat_replies_total', help: 'ICMP errors and TCP resets vipnat wrote in place of a packet.' }, (m) =>
    m.inc(st('replies')),
  );
  counter({ name: 'vipnat_dropped_packets_total', help: 'Packets dropped, by reason.', labelNames: ['reason'] }, (m) => {
    for (const [reason, k] of DROP_REASONS) m.inc({ reason }, st(k));
  });
  counter({ name: 'vipnat_flows_created_total', help: 'Flows created.' }, (m) => m.inc(st('flowsCreated')));
  counter({ name: 'vipnat_flows_expired_total', help: 'Flows expired after their idle timeout.' }, (m) => m.inc(st('flowsExpired')));
  counter({ name: 'vipnat_flows_evicted_total', help: 'Unassured flows evicted to make room for new ones.' }, (m) =>
    m.inc(st('flowsEvicted')),
  );
  gauge({ name: 'vipnat_flows', help: 'Live flows by family, protocol and state.', labelNames: ['family', 'proto', 'state'] }, (m) => {
    for (const c of snap.flows.byState) m.set({ family: `ipv${c.family}`, proto: c.proto, state: c.state }, c.flows);
  });
  gauge({ name: 'vipnat_flow_table_flows', help: 'Live flows in the flow tables, both families.' }, (m) => m.set(st('flows')));
  gauge({ name: 'vipnat_flow_table_capacity', help: 'Flows the IPv4 flow table holds.' }, (m) => m.set(st('flowCapacity')));
  gauge({ name: 'vipnat_flow_table_fill_ratio', help: 'Live flows over the IPv4 table capacity.' }, (m) =>
    m.set(st('flowCapacity') > 0 ? st('flows') / st('flowCapacity') : 0),
  );
  gauge(
    { name: 'vipnat_pool_addresses', help: 'Addresses of the pool by family and state (used or free).', labelNames: ['family', 'state'] },
    (m) => {
      for (const f of gw.poolInfo().families) {
        m.set({ family: `ipv${f.family}`, state: 'used' }, f.used);
        m.set({ family: `ipv${f.family}`, state: 'free' }, f.free);
      }
    },
  );
  gauge({ name: 'vipnat_pool_size', help: 'Addresses of the pool by family.', labelNames: ['family'] }, (m) => {
    for (const f of gw.poolInfo().families) m.set({ family: `ipv${f.family}` }, f.total);
  });
  gauge({ name: 'vipnat_sessions', help: 'Sessions of the gateway now, starting and stopping included.' }, (m) =>
    m.set(gw.sessions().length),
  );
  counter({ name: 'vipnat_session_starts_total', help: 'Sessions whose program started.' }, (m) => m.inc(gw.counts.started));
  counter({ name: 'vipnat_session_exits_total', help: 'Sessions that ended and gave their VIP back.' }, (m) => m.inc(gw.counts.exited));
  counter({ name: 'vipnat_worker_packets_total', help: 'Packets each dataplane worker forwarded.', labelNames: ['worker'] }, (m) => {
    snap.stats?.workerPackets.forEach((n, k) => m.inc({ worker: String(k) }, n));
  });
  counter(
    {
      name: 'vipnat_worker_busy_seconds_total',
      help: 'Time each dataplane worker spent working, not waiting for packets.',
      labelNames: ['worker'],
    },
    (m) => {
      snap.stats?.workerBusyMs.forEach((ms, k) => m.inc({ worker: String(k) }, ms / 1000));
    },
  );

  // Per session: one series per running session, labelled with its id and VIP.
  const perSession = (
    f: (labels: { session: string; vip: string }, c: ReturnType<ReturnType<Gateway['sessionCounters']>>, id: number) => void,
  ): void => {
    const counters = gw.sessionCounters();
    for (const s of gw.sessions()) f({ session: String(s.id), vip: s.vip }, counters(s), s.id);
  };
  counter(
    {
      name: 'vipnat_session_packets_total',
      help: 'Packets of each session: out from it, in to it.',
      labelNames: ['session', 'vip', 'direction'],
    },
    (m) =>
      perSession((l, c) => {
        m.inc({ ...l, direction: 'out' }, c.packets.out);
        m.inc({ ...l, direction: 'in' }, c.packets.in);
      }),
  );
  counter(
    {
      name: 'vipnat_session_bytes_total',
      help: 'IP bytes of each session: out from it, in to it.',
      labelNames: ['session', 'vip', 'direction'],
    },
    (m) =>
      perSession((l, c) => {
        m.inc({ ...l, direction: 'out' }, c.bytes.out);
        m.inc({ ...l, direction: 'in' }, c.bytes.in);
      }),
  );
  counter({ name: 'vipnat_session_dropped_packets_total', help: 'Packets of each session dropped.', labelNames: ['session', 'vip'] }, (m) =>
    perSession((l, c) => m.inc(l, c.dropped)),
  );
  gauge({ name: 'vipnat_session_flows', help: 'Live flows of each session.', labelNames: ['session', 'vip'] }, (m) =>
    perSession((l, _c, id) => m.set(l, snap.flows.perSession.get(id) ?? 0)),
  );
  return registry;
}

/** The /metrics endpoint of a gateway, at host:port. */
export class MetricsServer {
  private constructor(
    private readonly server: Server,
    readonly url: string,
  ) {}

  static async listen(gw: Gateway, host: string, port: number): Promise<MetricsServer> {
    const registry = gatewayRegistry(gw);
    const server = createServer((req, res) => {
      // Local users other than root may not read the gateway (the control socket is root's too).
      let uid: number | null;
      try {
        uid = localPeerUid(req.socket);
      } catch {
        uid = -1; // who it is could not be said: refused
      }
      if (uid !== null && uid !== 0) {
        res.writeHead(403, { 'Content-Type': 'text/plain' }).end('only root may read the metrics of vipnat\n');
        return;
      }
      const path = new URL(req.url ?? '/', 'http://vipnat').pathname;
      if (req.method !== 'GET' || path !== '/metrics') {
        res.writeHead(404, { 'Content-Type': 'text/plain' }).end('vipnat serves /metrics here\n');
        return;
      }
      registry.metrics().then(
        (text) => res.writeHead(200, { 'Content-Type': registry.contentType }).end(text),
        (e: Error) => res.writeHead(500, { 'Content-Type': 'text/plain' }).end(`${e.message}\n`),
      );
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (e: NodeJS.ErrnoException) =>
        reject(
          new UserError(
            e.code === 'EADDRINUSE'
              ? `--metrics ${host}:${port}: the port is in use`
              : e.code === 'EADDRNOTAVAIL'
                ? `--metrics ${host}:${port}: no such address here`
                : `--metrics ${host}:${port}: ${e.message}`,
          ),
        ),
      );
      server.listen(port, host, () => resolve());
    });
    const h = host.includes(':') ? `[${host}]` : host;
    return new MetricsServer(server, `http://${h}:${port}/metrics`);
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
  }
}
