// The bench's report: the machine, the tables (figures per path, vipnat against both limits and the peers, the other figures) as text and Markdown, and the notes.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import { ROOT } from '../test/lab/index.js';
import { fmtBytes, fmtCount, fmtNum, fmtRatio, lpad, pad } from './format.js';
import { TXQUEUELEN } from './lab.js';
import { CONN_CLIENTS, CONN_PER_CLIENT } from './measures/conn.js';
import { SCALE_POOL } from './measures/scale.js';
import { PATH_LABEL, workerCount, type BenchOptions, type PathName } from './options.js';
import { pastaArgs } from './paths/pasta.js';
import { REFERENCE_ADDRESS } from './paths/reference.js';
import { INNER, POOL } from './paths/vipnat.js';
import { targetText, verdict, type Measure, type Results } from './results.js';

export interface Machine {
  cpu: string;
  cores: number;
  memory: number;
  kernel: string;
  os: string;
  node: string;
  tools: Record<string, string>;
}

/** What a run was: when, which commit, on what, with which command and options. */
export interface RunInfo {
  date: string;
  commit: string;
  machine: Machine;
  command: string;
  options: BenchOptions;
}

export interface Table {
  head: string[];
  rows: string[][];
}

function version(cmd: string, args: string[]): string {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return `${r.stdout ?? ''}${r.stderr ?? ''}`.trim().split('\n')[0] ?? '';
}

export function machine(): Machine {
  const cpu = /model name\s*:\s*(.*)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  const release = fs.existsSync('/etc/os-release') ? fs.readFileSync('/etc/os-release', 'utf8') : '';
  const distro = /PRETTY_NAME="?([^"\n]*)/.exec(release)?.[1] ?? 'Linux';
  // pasta --version says "unknown version" in Debian's build: the package's version says more.
  const passt = spawnSync('dpkg-query', ['-W', '-f', '${Version}', 'passt'], { encoding: 'utf8' });
  return {
    cpu,
    cores: os.cpus().length,
    memory: os.totalmem(),
    kernel: os.release(),
    os: distro,
    node: process.version,
    tools: {
      iperf3: version('iperf3', ['--version']),
      wrk: version('wrk', ['-v']).replace(/\s+Copyright.*/, ''),
      slirp4netns: version('slirp4netns', ['--version']),
      pasta: passt.status === 0 ? `pasta (passt ${passt.stdout.trim()})` : version('pasta', ['--version']),
      nginx: version('nginx', ['-v']),
      cc: version('cc', ['--version']),
    },
  };
}

export function commit(): string {
  const env = { ...process.env, GIT_OPTIONAL_LOCKS: '0' };
  const r = spawnSync('git', ['-C', ROOT, 'rev-parse', '--short', 'HEAD'], { encoding: 'utf8', env });
  if (r.status !== 0) return 'unknown';
  const dirty = spawnSync('git', ['-C', ROOT, 'diff', '--quiet', 'HEAD', '--'], { env }).status !== 0;
  return `${r.stdout.trim()}${dirty ? '+dirty' : ''}`;
}

const FIGURE_PATHS: PathName[] = ['kernel', 'reference', 'address', 'nat', 'slirp', 'pasta'];
/** vipnat against the kernel (the machine's limit), the reference forwarder (the design's), and the peers. */
const RATIOS: [PathName, string][] = [
  ['kernel', 'kernel'],
  ['reference', 'reference'],
  ['slirp', 'slirp'],
  ['pasta', 'pasta'],
];

function measured(m: Measure): boolean {
  return Object.keys(m.values).length > 0 || Object.keys(m.errors).length > 0;
}

/** Every network figure, by path. */
export function figuresTable(results: Results): Table {
  const head = ['measure', ...FIGURE_PATHS.map((p) => PATH_LABEL[p])];
  const rows = results.measures.filter(measured).map((m) => {
    const cell = (p: PathName): string => (m.values[p] != null ? fmtNum(m.values[p], m.unit) : m.errors[p] ? 'failed' : '—');
    return [`${m.label} (${m.unit})`, ...FIGURE_PATHS.map(cell)];
  });
  return { head, rows };
}

/** vipnat's two modes against both limits and both peers, with the targets. */
export function ratiosTable(results: Results): Table {
  const head = ['measure', ...RATIOS.flatMap(([, n]) => [`address / ${n}`, `NAT / ${n}`]), 'target', 'result'];
  const rows = results.measures.filter(measured).map((m) => {
    const v = m.values;
    const ratios = RATIOS.flatMap(([p]) => [fmtRatio(v.address, v[p]), fmtRatio(v.nat, v[p])]);
    return [m.label, ...ratios, targetText(m), verdict(m).text];
  });
  return { head, rows };
}

function microRows(results: Results): string[][] {
  const { micro } = results;
  const rows: string[][] = [];
  const mk = (ok: boolean | null): string => (ok == null ? 'n/a' : ok ? 'met' : 'not met');
  const mpps = (r: Record<string, unknown>): string => (r['error'] ? 'failed' : `${String(r['mpps'])} Mpps`);
  if (micro.lookup1k) rows.push(['packet path, 1 000 flows (one core)', mpps(micro.lookup1k), '—', '—']);
  if (micro.lookup1m) {
    const ok = micro.lookup1m.error ? null : (micro.lookup1m['mpps'] as number) >= 10;
    rows.push(['packet path, 1 000 000 flows (one core)', mpps(micro.lookup1m), '≥ 10 Mpps', mk(ok)]);
  }
  const fp = micro.forwardPlain;
  if (fp) rows.push(['through the Forwarder, 1 000 flows, no capture tap', mpps(fp), '—', '—']);
  const idle = (r: Record<string, unknown> | undefined): string =>
    !r || r['error'] || !fp || fp['error']
      ? mpps(r ?? { error: 1 })
      : `${String(r['mpps'])} Mpps (${((Number(r['mpps']) / Number(fp['mpps'])) * 100).toFixed(0)}% of no tap)`;
  if (micro.forwardTap)
    rows.push([
      'through the Forwarder, an idle capture tap (metrics counters included)',
      idle(micro.forwardTap),
      'cost < 3%',
      mk(micro.forwardTap.error || !fp ? null : Number(micro.forwardTap['mpps']) >= 0.97 * Number(fp['mpps'])),
    ]);
  if (micro.forwardCapture)
    rows.push(['through the Forwarder, capturing the session (both sides, 124-byte packets)', idle(micro.forwardCapture), '—', '—']);
  if (micro.create) {
    const c = micro.create;
    rows.push(['new flows/s (TCP SYN, one core)', c.error ? 'failed' : fmtNum(c['flowsPerSecond'] as number), '—', '—']);
  }
  if (micro.memory) {
    const mm = micro.memory;
    const worst = mm.error ? null : Math.max(mm['bytesPerFlow'] as number, mm['rssDeltaPerFlow'] as number);
    const text = mm.error ? 'failed' : `${String(mm['bytesPerFlow'])} B / ${String(mm['rssDeltaPerFlow'])} B`;
    rows.push(['memory per flow (table size / RSS growth, 1 000 000 flows)', text, '≤ 128 B', mk(worst === null ? null : worst <= 128)]);
    rows.push([
      'RSS with 1 000 000 flows (in-process: node + flow table)',
      mm.error ? 'failed' : fmtBytes(mm['rssAfter'] as number),
      '—',
      '—',
    ]);
  }
  return rows;
}

function scaleRows(results: Results, opts: BenchOptions): string[][] {
  const { scale } = results;
  if (!scale.sessions && !scale.error) return [];
  const n = scale.sessions ?? opts.scaleSessions;
  const nn = fmtCount(n);
  const start = scale.startSeconds;
  const stopped = `${scale.stopSeconds} s (exit ${scale.stopExit}, ${scale.leftNamespaces} namespaces left)`;
  return [
    [
      `time to start ${nn} sessions`,
      start != null ? `${start} s` : 'failed',
      n === 1000 ? '≤ 30 s' : '—',
      n === 1000 ? (start == null ? 'n/a' : start <= 30 ? 'met' : 'not met') : '—',
    ],
    [`vipnat's RSS with ${nn} sessions`, scale.gatewayRss != null ? fmtBytes(scale.gatewayRss) : 'failed', '—', '—'],
    [
      `its vipnat-init helpers with ${nn} sessions (PSS)`,
      scale.helpersPss != null
        ? `${fmtBytes(scale.helpersPss)} (${fmtBytes(scale.helpersPss / Math.max(1, scale.sessions ?? 1))} a session)`
        : 'failed',
      '—',
      '—',
    ],
    [`time to stop ${nn} sessions (SIGTERM to exit)`, scale.stopSeconds != null ? stopped : 'failed', '—', '—'],
  ];
}

function controlRows(results: Results): string[][] {
  const c = results.control;
  if (!c.sessions && !c.error) return [];
  const nn = fmtCount(c.sessions ?? 0);
  const pct = (p: { p50: number; p99: number } | undefined): string => (p ? `${p.p50} ms (p99 ${p.p99} ms)` : 'failed');
  const under = (p: { p50: number } | undefined, ms: number): string => (p ? (p.p50 < ms ? 'met' : 'not met') : 'n/a');
  return [
    ['start one session, gateway holding 0 (over its socket; p50)', pct(c.startIdle), '< 100 ms', under(c.startIdle, 100)],
    [`start one session, gateway holding ${nn} (over its socket; p50)`, pct(c.startBusy), '< 100 ms', under(c.startBusy, 100)],
    [`ls with ${nn} sessions, over the socket (p50)`, pct(c.lsApi), '< 200 ms', under(c.lsApi, 200)],
    [`vipnat ls with ${nn} sessions, node starting included (p50)`, pct(c.lsCli), '< 200 ms', under(c.lsCli, 200)],
  ];
}

function loopbackRows(results: Results): string[][] {
  const l = results.loopback;
  if (l.seconds === undefined && !l.error) return [];
  const plain = l.bulkPlain;
  const ratio = (v: number | undefined): string =>
    v !== undefined && plain
      ? `${v.toFixed(2)} Gbit/s (${(v / plain).toFixed(2)}× the in-session loopback's ${plain.toFixed(2)})`
      : 'failed';
  const meets = (v: number | undefined): string => (v !== undefined && plain ? (v / plain >= 0.3 ? 'met' : 'not met') : 'n/a');
  const conn =
    l.conn !== undefined && l.connPlain !== undefined
      ? `${fmtCount(Math.round(l.conn))} (in-session loopback ${fmtCount(Math.round(l.connPlain))})`
      : 'failed';
  return [
    ['TCP bulk through the virtual loopback, gateway → session', ratio(l.bulkIn), '≥ 0.3× in-session loopback', meets(l.bulkIn)],
    ['TCP bulk through the virtual loopback, session → gateway', ratio(l.bulkOut), '≥ 0.3× in-session loopback', meets(l.bulkOut)],
    [
      'new TCP connections/s through the virtual loopback',
      conn,
      '≥ 5 000',
      l.conn !== undefined ? (l.conn >= 5000 ? 'met' : 'not met') : 'n/a',
    ],
  ];
}

function observeRows(results: Results): string[][] {
  const o = results.observe;
  if (o.seconds === undefined && !o.error) return [];
  const plain = o.bulkPlain;
  const cost = (v: number | undefined): number | null => (v !== undefined && plain ? 1 - v / plain : null);
  const show = (v: number | undefined): string => {
    const c = cost(v);
    return c === null ? 'failed' : `${v!.toFixed(2)} Gbit/s against ${plain!.toFixed(2)} without: ${(c * 100).toFixed(1)}% less`;
  };
  const m = cost(o.bulkMetrics);
  const c = cost(o.bulkCapture);
  return [
    [
      'TCP bulk with --metrics on, scraped every second',
      show(o.bulkMetrics),
      'cost < 3%',
      m === null ? 'n/a' : m < 0.03 ? 'met' : 'not met',
    ],
    [
      `TCP bulk with a capture of the session running (${fmtCount(o.capturePackets ?? 0)} packets written, ${fmtCount(o.captureLeftOut ?? 0)} left out)`,
      show(o.bulkCapture),
      'cost < 25%',
      c === null ? 'n/a' : c < 0.25 ? 'met' : 'not met',
    ],
  ];
}

function dhcpRows(results: Results): string[][] {
  const d = results.dhcp;
  if (d.sessions === undefined && !d.error) return [];
  const ok = d.dhcpSeconds !== undefined && d.staticSeconds !== undefined;
  const extra = ok ? d.dhcpSeconds! - d.staticSeconds! : 0;
  return [
    [
      `time to start ${fmtCount(d.sessions ?? 0)} sessions with --pool dhcp (Kea), against a static on-link pool`,
      ok ? `${d.dhcpSeconds} s (static ${d.staticSeconds} s: ${extra >= 0 ? '+' : ''}${extra.toFixed(2)} s)` : 'failed',
      '≤ +2 s',
      ok ? (extra <= 2 ? 'met' : 'not met') : 'n/a',
    ],
  ];
}

/** The packet path, memory, scale and control-plane figures. */
export function otherTable(results: Results, opts: BenchOptions): Table {
  return {
    head: ['measure', 'value', 'target', 'result'],
    rows: [
      ...microRows(results),
      ...scaleRows(results, opts),
      ...controlRows(results),
      ...loopbackRows(results),
      ...dhcpRows(results),
      ...observeRows(results),
    ],
  };
}

const leftAligned = (h: string): boolean => h === 'measure' || h === 'target' || h === 'result';

export function markdown(t: Table): string {
  const esc = (s: string): string => s.replace(/\|/g, '\\|');
  return [
    `| ${t.head.join(' | ')} |`,
    `|${t.head.map((h) => (leftAligned(h) ? '---' : '---:')).join('|')}|`,
    ...t.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}

export function text(t: Table): string {
  const w = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string => r.map((c, i) => (leftAligned(t.head[i]!) ? pad(c, w[i]!) : lpad(c, w[i]!))).join('  ');
  return [line(t.head), w.map((n) => '-'.repeat(n)).join('  '), ...t.rows.map(line)].join('\n');
}

function networkNotes(opts: BenchOptions): string[] {
  const s = opts.seconds;
  const reps =
    opts.repeat > 1
      ? `the best of ${opts.repeat} runs of ${s} s per figure (in rounds over all paths, so each path's runs are spread over the run; every run is in the JSON)`
      : `one run of ${s} s per figure, no repetitions: treat differences of ±10 % as noise`;
  const workers = workerCount(opts);
  const pasta = pastaArgs(0, 'NS').join(' ').replace('-m 0', '-m M').replace('/run/netns/NS', 'PATH');
  return [
    `Every path goes from a client namespace to iperf3 or nginx in the backend namespace (198.18.0.2) through the lab's gateway namespace, measured in the same run on the same lab, ${reps}${s >= 4 ? ' (iperf3 `-O 1` leaves out the first second)' : ''}.`,
    "- **kernel**: a namespace joined to the gateway namespace by a veth pair (198.18.200.2/30), routed by the gateway's kernel: the physical limit of this machine (veth carries 64 KiB GSO segments at either MTU).",
    `- **reference**: \`bench/reference/forward.c\`, run in the gateway namespace, copies packets between the client namespace's TUN (eth0, ${REFERENCE_ADDRESS}/32) and a TUN in the gateway namespace with that address routed to it, both opened with vipnat's virtio-net header offloads (TSO, checksum), one \`read()\` and one \`write()\` per packet in an epoll loop, as vipnat's dataplane worker does, and no translation; the gateway's kernel forwards to the backend as with vipnat in address mode. The limit of vipnat's design (one thread, two copies per packet) on this machine: vipnat / reference is the figure to watch.`,
    `- **vipnat address / NAT**: \`vipnat run --pool ${POOL} --mtu M${opts.workers ? ` --workers ${opts.workers}` : ''}\` in the gateway namespace (\`--inner-address ${INNER}\` for NAT), with ${workers} dataplane worker${workers === 1 ? '' : 's'}${opts.workers ? '' : " (vipnat's default: one per two CPUs)"}; the loads run in the sessions' namespaces (\`ip netns exec vipnat-PID-k\`) while the session programs idle.`,
    `- **slirp4netns**: \`slirp4netns --configure --mtu=M --disable-host-loopback\` run in the gateway namespace, attached to a client namespace (guest address ${INNER}).`,
    `- **pasta** (passt's namespace mode, podman's default): \`pasta ${pasta}\` run in the gateway namespace, attached to a client namespace (guest address ${INNER}); no port forwarding, no gateway mapping, no DNS; tap0's transmit queue set to ${TXQUEUELEN} packets, as vipnat's TUNs' (with pasta's own, the kernel's 1000, the large receive window pasta advertises overflows the queue at MTU 1500 and uploads fall to about 0.1 Gbit/s).`,
    "- **MTU M** is the MTU of the client's interface, of the gateway–backend veth and of the kernel path's veth.",
    `- **TCP bulk**: \`iperf3 -t ${s} -P 1|4 [-R]\`, received throughput. **UDP**: \`iperf3 -u -l 16 -b 0\`, packets received by the backend per second, at MTU 1500.`,
    `- **requests/s on one connection**: \`wrk -c 1 -t 1 -d ${s}s\` for a 3-byte file (keep-alive), at MTU 1500, with the client pinned to CPU 0 and nginx to CPU 1 on every path (unpinned, the kernel path's figure flips between about 12 000 and 35 000 as the scheduler puts both on one CPU or not). **new connections/s**: ${CONN_CLIENTS} \`wrk -c ${CONN_PER_CLIENT} -t 1 -H 'Connection: close'\` at once, at MTU 1500 — one in each of ${CONN_CLIENTS} vipnat sessions; on the other paths all ${CONN_CLIENTS} in their one namespace (the same ${CONN_CLIENTS * CONN_PER_CLIENT} connections in all). Every client namespace has \`tcp_tw_reuse=1\` and ports 1024-65535; nginx has 2 workers.`,
    "- Client, gateway (vipnat's main thread and dataplane workers, the reference forwarder, slirp4netns or pasta) and server all share the machine's cores.",
    '- A target is met when both vipnat modes meet it.',
  ];
}

const MICRO_NOTE =
  "- **Packet path**: `bench/packet-path.ts`, one process per figure, no syscalls, one core, NAT mode: each UDP packet (built with the tests' packet builders, `test/unit/packets.ts`) goes out and back (parse, flow lookup, address rewrite, incremental checksum update), flows visited round-robin; the flows are created in a shuffled order, so consecutive packets' flow records lie scattered over the table as real traffic's do (created in packet order they would be read sequentially, which the CPU's prefetchers make unrealistically cheap). **New flows**: a TCP SYN per new flow into an empty table. **Memory per flow**: the table's own count per slot, and the RSS growth of a process that inserts 1 000 000 flows into a table of 2^20; **RSS with 1 000 000 flows** is that process's, measured in-process (filling a running gateway's table with a million flows would take minutes of packet generation in the lab, so it is not measured there).";

export function notes(
  info: RunInfo,
  ran: { network: boolean; micro: boolean; scale: boolean; loopback?: boolean; dhcp?: boolean; observe?: boolean },
): string {
  const m = info.machine;
  const t = m.tools;
  const tools = [t['iperf3'], t['wrk'], t['slirp4netns'], t['pasta'], t['nginx'], t['cc']].join(', ');
  const out = [
    `Machine: ${m.cpu}, ${m.cores} cores, ${fmtBytes(m.memory)}, Linux ${m.kernel} (${m.os}), Node ${m.node}; ${tools}. Date: ${info.date}. Commit: ${info.commit}. Command: \`${info.command}\`.`,
    '',
  ];
  if (ran.network) out.push(...networkNotes(info.options));
  if (ran.micro) out.push(MICRO_NOTE);
  if (ran.scale) {
    out.push(
      `- **Scale**: \`vipnat run --pool ${SCALE_POOL} --sessions ${info.options.scaleSessions} -- sleep 3600\` in the gateway namespace; start time runs from launch to the last \`session N vip ...\` line; RSS is the sum of VmRSS over vipnat's process tree without the session programs.`,
    );
  }
  if (ran.dhcp) {
    out.push(
      "- **VIPs on a LAN**: the lab's LAN shape (a bridge joining the gateway, a backend and a DHCP server namespace); `vipnat run --pool 198.18.100.20-198.18.100.250 --sessions N -- sleep 3600` (on-link: every address probed on the link), then the same with `--pool dhcp:lan0` against ISC Kea (in-memory leases, the same range); time from launch to the last `session N vip` line.",
    );
  }
  if (ran.loopback) {
    out.push(
      `- **Virtual loopback**: \`vipnat run --pool 198.19.8.0/28 -- sleep 3600\` (MTU 1500) in the gateway namespace, with \`iperf3 -s -B 127.0.0.1\` and nginx on 127.0.0.1 (2 workers, the 3-byte /tiny) in session 1; from the gateway namespace \`iperf3 -c 127.0.0.2 -t ${info.options.seconds} [-R]\` and ${CONN_CLIENTS} \`wrk -c ${CONN_PER_CLIENT} -t 1 -H 'Connection: close'\` at once to http://127.0.0.2/tiny; the same from inside the session to 127.0.0.1 for the in-session loopback; the best of ${info.options.repeat} rounds.`,
    );
  }
  if (ran.observe) {
    out.push(
      `- **The cost of seeing**: \`vipnat run --pool 198.19.9.0/28 -- sleep 3600\` (MTU 1500), \`iperf3 -c 198.18.0.2 -t ${info.options.seconds}\` (1 stream) from session 1: plain; with \`vipnat capture 1 -w FILE\` running (every packet whole, both sides of the translation; packets the writer could not keep up with are left out and counted); and in a second run with \`--metrics 9464\`, \`curl\` scraping /metrics every second. The best of ${info.options.repeat} rounds. **Through the Forwarder**: the packet-path pass above through the dataplane's Forwarder (its counters and devices that take every packet), without a capture tap, with an idle one, and capturing the session while a second thread drains the ring.`,
    );
  }
  return out.join('\n');
}

/** The whole report in Markdown: what latest.md holds and the README's table is replaced with. */
export function reportMarkdown(
  info: RunInfo,
  results: Results,
  ran: { network: boolean; micro: boolean; scale: boolean; loopback?: boolean; dhcp?: boolean; observe?: boolean },
): string {
  const ft = figuresTable(results),
    rt = ratiosTable(results),
    ot = otherTable(results, info.options);
  return [
    `### Results (${info.date.slice(0, 10)}, commit ${info.commit})`,
    '',
    ft.rows.length ? markdown(ft) : '',
    '',
    rt.rows.length ? markdown(rt) : '',
    '',
    ot.rows.length ? markdown(ot) : '',
    '',
    notes(info, ran),
  ]
    .join('\n')
    .replace(/\n{3,}/g, '\n\n');
}
