// Unit tests for the Prometheus registry of a gateway: what a scrape reads, and what it keeps when the dataplane cannot say.
import { describe, expect, it } from 'vitest';
import { gatewayRegistry } from '../../src/control/metrics.js';
import type { DataplaneStats, Gateway } from '../../src/gateway/index.js';

/** A gateway as the registry sees it: counters from `stats` (null: the dataplane could not answer). */
function fakeGateway(stats: () => Partial<DataplaneStats> | null): Gateway {
  return {
    stats: () => Promise.resolve(stats()),
    flowStats: () =>
      Promise.resolve({ byState: [{ family: 4, proto: 'tcp', state: 'established', flows: 3 }], perSession: new Map([[1, 3]]) }),
    poolInfo: () => ({ ranges: [], families: [{ family: 4, total: 14, used: 1, free: 13 }], shared: null }),
    sessions: () => [{ id: 1, vip: '198.19.7.1' }],
    counts: { started: 1, exited: 0 },
    sessionCounters: () => () => ({ packets: { in: 5, out: 6 }, bytes: { in: 500, out: 600 }, dropped: 0 }),
  } as unknown as Gateway;
}

const value = (text: string, series: string): number =>
  Number(
    text
      .split('\n')
      .find((l) => l.startsWith(`${series} `))
      ?.slice(series.length + 1),
  );

describe('gatewayRegistry', () => {
  it('reads the gateway once per scrape into Prometheus series', async () => {
    const r = gatewayRegistry(fakeGateway(() => ({ toUplink: 10, toSession: 7, workerPackets: [17], workerBusyMs: [250] })));
    const text = await r.metrics();
    expect(value(text, 'vipnat_packets_total{direction="out"}')).toBe(10);
    expect(value(text, 'vipnat_worker_busy_seconds_total{worker="0"}')).toBe(0.25);
    expect(value(text, 'vipnat_flows{family="ipv4",proto="tcp",state="established"}')).toBe(3);
    expect(value(text, 'vipnat_session_bytes_total{session="1",vip="198.19.7.1",direction="in"}')).toBe(500);
    expect(value(text, 'vipnat_pool_addresses{family="ipv4",state="free"}')).toBe(13);
  });

  it('keeps the last counters when the dataplane cannot say, rather than report a reset to 0', async () => {
    let answer: Partial<DataplaneStats> | null = { toUplink: 10, toSession: 7, workerPackets: [17], workerBusyMs: [250] };
    const r = gatewayRegistry(fakeGateway(() => answer));
    await r.metrics();
    await new Promise((res) => setImmediate(res));
    answer = null;
    const text = await r.metrics();
    expect(value(text, 'vipnat_packets_total{direction="out"}')).toBe(10);
    expect(value(text, 'vipnat_worker_packets_total{worker="0"}')).toBe(17);
  });
});
