// UDP packets per second with 16-byte datagrams (iperf3 -u -b 0): what the backend received.
import type { BenchLab } from '../lab.js';
import type { Outcome } from '../results.js';
import { iperfArgs, iperfError, type IperfJson } from './iperf.js';

export async function udpPps(bench: BenchLab, ns: string, seconds: number): Promise<Outcome> {
  const r = await bench.lab.nsRun(ns, iperfArgs(['-u', '-l', '16', '-b', '0', '-t', String(seconds)]), (seconds + 30) * 1000);
  if (r.code !== 0) {
    await bench.restartIperf();
    return { value: null, detail: { error: iperfError(r) } };
  }
  const s = (JSON.parse(r.stdout) as IperfJson).end.sum_received;
  const got = s.packets - s.lost_packets;
  return { value: got / s.seconds, detail: { sent: s.packets, lost: s.lost_packets, lostPercent: +s.lost_percent.toFixed(2) } };
}
