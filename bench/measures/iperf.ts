// iperf3 as the bench runs it: the client's arguments against the backend's server, its JSON output, and what a failed run says.
import { BACKEND, type RunResult } from '../../test/lab/index.js';
import { IPERF_PORT } from '../lab.js';

export function iperfArgs(extra: string[]): string[] {
  return ['iperf3', '-c', BACKEND, '-p', String(IPERF_PORT), '-J', '--connect-timeout', '5000', ...extra];
}

/** The parts of iperf3's -J output the bench reads. */
export interface IperfJson {
  error?: string;
  end: {
    sum_received: { bits_per_second: number; seconds: number; packets: number; lost_packets: number; lost_percent: number };
    sum_sent: { retransmits?: number };
  };
}

export function iperfError(r: RunResult): string {
  try {
    const j = JSON.parse(r.stdout) as Partial<IperfJson>;
    if (j.error) return j.error;
  } catch {
    // not JSON
  }
  return (r.stderr.trim() || r.stdout.trim().slice(0, 200) || `exit ${r.code}${r.timedOut ? ' (timed out)' : ''}`).split('\n')[0]!;
}
