// TCP bulk throughput (iperf3, 1 or 4 streams, either way): the received Gbit/s.
import type { BenchLab } from '../lab.js';
import type { BulkDir, Outcome } from '../results.js';
import { iperfArgs, iperfError, type IperfJson } from './iperf.js';

export async function tcpBulk(bench: BenchLab, ns: string, seconds: number, dir: BulkDir, streams: number): Promise<Outcome> {
  const omit = seconds >= 4 ? 1 : 0;
  const args = ['-t', String(seconds), '-O', String(omit), '-P', String(streams), ...(dir === 'down' ? ['-R'] : [])];
  const r = await bench.lab.nsRun(ns, iperfArgs(args), (seconds + omit + 30) * 1000);
  if (r.code !== 0) {
    await bench.restartIperf();
    return { value: null, detail: { error: iperfError(r) } };
  }
  const j = JSON.parse(r.stdout) as IperfJson;
  const recv = j.end.sum_received,
    sent = j.end.sum_sent;
  return { value: recv.bits_per_second / 1e9, detail: { seconds: +recv.seconds.toFixed(2), retransmits: sent.retransmits ?? null } };
}
