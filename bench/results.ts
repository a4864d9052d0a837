// What a bench run found: the network measures (a figure per path, the best of its runs, with targets), the micro-benchmarks, scale, and per-run details.
import { fmtNum, fmtRatio, pad, lpad } from './format.js';
import { log } from '../test/lab/index.js';
import { PATH_LABEL, type PathName } from './options.js';

/** Targets of a row: vipnat's figure must be at least k times that of the path named. */
export type Targets = Partial<Record<PathName, number>>;

/** Details of a run kept beside its figure (retransmits, errors, what failed). */
export type Detail = Record<string, unknown> & { error?: string };

/** A load's result on one path: its figure, or null when it failed (then detail.error says why). */
export interface Outcome {
  value: number | null;
  detail: Detail;
}

/** One row of the network tables: a load at an MTU, with a value per path. */
export interface Measure {
  id: string;
  label: string;
  unit: string;
  targets: Targets;
  values: Partial<Record<PathName, number>>;
  errors: Partial<Record<PathName, string>>;
  detail: Partial<Record<PathName, Detail>>;
  runs: Partial<Record<PathName, (number | null)[]>>;
}

export type BulkDir = 'up' | 'down';

export function bulkId(mtu: number, dir: BulkDir, streams: number): string {
  return `tcp-${mtu}-${dir}-${streams}`;
}

function measure(id: string, label: string, unit: string, targets: Targets): Measure {
  return { id, label, unit, targets, values: {}, errors: {}, detail: {}, runs: {} };
}

/** Every network measure, in the order of the tables. */
export function defineMeasures(): Measure[] {
  const out: Measure[] = [];
  for (const mtu of [1500, 65520]) {
    for (const dir of ['up', 'down'] as const) {
      for (const p of [1, 4]) {
        const what = dir === 'up' ? 'session→backend' : 'backend→session';
        const label = `TCP bulk MTU ${mtu}, ${what}, ${p} stream${p > 1 ? 's' : ''}`;
        out.push(measure(bulkId(mtu, dir, p), label, 'Gbit/s', { kernel: mtu === 65520 ? 0.8 : 0.5, slirp: 3 }));
      }
    }
  }
  out.push(measure('conn', 'new TCP connections/s (connect, 1 request, close)', 'conn/s', { kernel: 0.5 }));
  out.push(measure('rr', 'requests/s on one connection', 'req/s', { kernel: 0.5 }));
  out.push(measure('udp', 'UDP packets/s received, 16-byte datagrams', 'pkt/s', {}));
  return out;
}

/** 'met', 'not met', 'address only', 'NAT only' or '—' for a row's targets. */
export function verdict(m: Measure): { text: string; met: boolean | null } {
  const conds = Object.entries(m.targets) as [PathName, number][];
  if (conds.length === 0) return { text: '—', met: null };
  const meets = (mode: PathName): boolean | null => {
    const v = m.values[mode];
    if (v == null) return null;
    for (const [ref, k] of conds) {
      const r = m.values[ref];
      if (r == null) return null;
      if (v < k * r) return false;
    }
    return true;
  };
  const a = meets('address'),
    n = meets('nat');
  if (a === null && n === null) return { text: 'n/a', met: null };
  if (a !== false && n !== false) return { text: a === null || n === null ? 'met (one mode measured)' : 'met', met: true };
  if (a === true) return { text: 'address only', met: false };
  if (n === true) return { text: 'NAT only', met: false };
  return { text: 'not met', met: false };
}

export function targetText(m: Measure): string {
  const parts: string[] = [];
  if (m.targets.kernel) parts.push(`≥ ${m.targets.kernel}× kernel`);
  if (m.targets.slirp) parts.push(`≥ ${m.targets.slirp}× slirp4netns`);
  return parts.join(', ') || '—';
}

/** The ratios a path's log line shows: to the kernel, and for vipnat also to the reference forwarder. */
function ratios(m: Measure, pathName: PathName, value: number): string {
  if (pathName === 'kernel') return '';
  const parts: string[] = [];
  if (m.values.kernel) parts.push(`${fmtRatio(value, m.values.kernel)} kernel`);
  if ((pathName === 'address' || pathName === 'nat') && m.values.reference) parts.push(`${fmtRatio(value, m.values.reference)} reference`);
  return parts.length ? `  (${parts.join(', ')})` : '';
}

/** Adds one run's figure; a measure keeps the best run of each path (interference only ever lowers a figure). */
export function record(m: Measure, pathName: PathName, r: Outcome): void {
  const { value, detail } = r;
  (m.runs[pathName] ??= []).push(value);
  if (value == null) {
    const err = detail.error ?? 'no result';
    if (m.values[pathName] == null) m.errors[pathName] = err;
    log(`  ${pad(PATH_LABEL[pathName], 15)} ${pad(m.label, 62)} FAILED: ${err}`);
    return;
  }
  delete m.errors[pathName];
  const best = m.values[pathName];
  if (best == null || value > best) {
    m.values[pathName] = value;
    m.detail[pathName] = detail;
  }
  log(`  ${pad(PATH_LABEL[pathName], 15)} ${pad(m.label, 62)} ${lpad(fmtNum(value, m.unit), 10)} ${m.unit}${ratios(m, pathName, value)}`);
}

/** One packet-path figure (bench/packet-path.ts prints it), or why it failed. */
export type MicroResult = Record<string, number | string | boolean> & { error?: string };

export interface Micro {
  lookup1k?: MicroResult;
  lookup1m?: MicroResult;
  create?: MicroResult;
  memory?: MicroResult;
  /** The lookup pass through the Forwarder, 1 000 flows: without a tap, with an idle one, capturing the session. */
  forwardPlain?: MicroResult;
  forwardTap?: MicroResult;
  forwardCapture?: MicroResult;
}

/** What seeing costs (bench/measures/observe.ts): TCP bulk plain, with metrics scraped, with a capture running. */
export interface Observe {
  seconds?: number;
  bulkPlain?: number;
  bulkMetrics?: number;
  bulkCapture?: number;
  capturePackets?: number;
  captureLeftOut?: number;
  captureBytes?: number;
  error?: string;
}

export interface Scale {
  sessions?: number;
  startSeconds?: number;
  /** vipnat's own process. */
  gatewayRss?: number;
  gatewayProcesses?: number;
  /** The vipnat-init helpers' proportional set size, all together, and how many there were. */
  helpersPss?: number;
  helpers?: number;
  treeRssWithPrograms?: number;
  stopSeconds?: number;
  stopExit?: number | string | null;
  leftNamespaces?: number;
  error?: string;
}

/** Milliseconds: the median, the 99th percentile, and how many samples. */
export interface Percentiles {
  p50: number;
  p99: number;
  n: number;
}

/** The long-running gateway's control plane (bench/measures/control.ts). */
export interface Control {
  sessions?: number;
  /** One session started over the socket with 0 sessions running, and with `sessions` running. */
  startIdle?: Percentiles;
  startBusy?: Percentiles;
  /** `GET /v1/sessions` with `sessions` running, and `vipnat ls` as a process. */
  lsApi?: Percentiles;
  lsCli?: Percentiles;
  downSeconds?: number;
  leftNamespaces?: number;
  error?: string;
}

/** The virtual loopback (bench/measures/loopback.ts): Gbit/s and connections per second, through it and inside the session. */
export interface Loopback {
  seconds?: number;
  /** TCP bulk, gateway's namespace → session's 127.0.0.1 (iperf3), and back (-R); in the session, 127.0.0.1 → 127.0.0.1. */
  bulkIn?: number;
  bulkOut?: number;
  bulkPlain?: number;
  /** New connections per second (wrk, Connection: close) through it, and inside the session. */
  conn?: number;
  connPlain?: number;
  leftNamespaces?: number;
  error?: string;
}

/** VIPs on a LAN (bench/measures/dhcp.ts): seconds to start the sessions with --pool dhcp (Kea) and with a static on-link pool. */
export interface Dhcp {
  sessions?: number;
  staticSeconds?: number;
  dhcpSeconds?: number;
  error?: string;
}

/** Everything a run found; saved as JSON as it is. */
export interface Results {
  measures: Measure[];
  micro: Micro;
  scale: Scale;
  control: Control;
  loopback: Loopback;
  dhcp: Dhcp;
  observe: Observe;
  /** Per path, MTU and round: how the path ended (vipnat's counters, the reference's, exit statuses). */
  runInfo: { paths: Record<string, unknown> };
}

export function newResults(): Results {
  return { measures: defineMeasures(), micro: {}, scale: {}, control: {}, loopback: {}, dhcp: {}, observe: {}, runInfo: { paths: {} } };
}

export function byId(results: Results, id: string): Measure {
  const m = results.measures.find((x) => x.id === id);
  if (!m) throw new Error(`no measure ${id}`);
  return m;
}
