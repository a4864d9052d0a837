// How events and answers are shown: one readable line each or tables, or JSON with stable field names.
import type { ExitInfo, PoolInfo, SessionInfo } from '../control/index.js';
import type { DataplaneStats, GatewayEvent } from '../gateway/index.js';

/** Events of the CLI itself, besides the gateway's: a long-running gateway came up, and went down. */
export type ShownEvent =
  | GatewayEvent
  | { event: 'up'; name: string; socket: string; pid: number; pool: string; metrics?: string }
  | { event: 'down'; name: string; dataplane: DataplaneStats | null };

/**
 * The dataplane's counters as `--json` shows them: one flat object of numbers,
 * each worker's packets as `workerKPackets` (empty when the dataplane failed).
 */
export function statsJson(d: DataplaneStats | null): Record<string, number> {
  if (!d) return {};
  const { workerPackets, workerBusyMs, ...rest } = d;
  const out: Record<string, number> = { ...rest };
  workerPackets.forEach((n, k) => (out[`worker${k}Packets`] = n));
  workerBusyMs.forEach((n, k) => (out[`worker${k}BusyMs`] = Math.round(n)));
  return out;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

export function formatEvent(e: ShownEvent, json: boolean): string {
  if (json) {
    return JSON.stringify(e.event === 'summary' || e.event === 'down' ? { ...e, dataplane: statsJson(e.dataplane) } : e);
  }
  switch (e.event) {
    case 'session':
      if (e.attached)
        return `session ${e.id} vip ${e.vip}${e.vip6 ? ` vip6 ${e.vip6}` : ''} attached to ${e.netns}${e.pid > 0 ? ` pid ${e.pid}` : ''}`;
      return e.shared
        ? `session ${e.id} shared ${e.vip}${e.loopback ? ` loopback ${e.loopback}` : ''} pid ${e.pid}`
        : `session ${e.id} vip ${e.vip}${e.loopback ? ` loopback ${e.loopback}` : ''} pid ${e.pid}${e.vip6 ? ` vip6 ${e.vip6}` : ''}`;
    case 'lease-failed':
      return `vipnat: session ${e.id}: no DHCP lease on ${e.dev} (${e.why})`;
    case 'lease-lost':
      return `vipnat: session ${e.id} lost its lease of ${e.address} (${e.why}): stopping it`;
    case 'vip-in-use':
      return e.leased
        ? `vipnat: ${e.address}, offered by the DHCP server, is in use on ${e.dev} (answered by ${e.by}): session ${e.id} declines it and asks for another`
        : `vipnat: ${e.address} is in use on ${e.dev} (answered by ${e.by}): session ${e.id} takes another, and it is tried again in a minute`;
    case 'loopback-in-use':
      return `vipnat: session ${e.id}'s virtual loopback ${e.address} is in use in this namespace (${e.reason}): it stays this namespace's, and the session is not reachable at it from here`;
    case 'no-vip':
      return e.to === undefined
        ? `session ${e.id} ${e.message}`
        : `sessions ${e.id}-${e.to}: no VIP either (${plural(e.count ?? 0, 'more session')} not started)`;
    case 'exit':
      return `session ${e.id} exited ${e.signal ? `by ${e.signal}` : `with status ${e.code}`} (${e.shared ? 'shared address' : `vip ${e.vip} released`})`;
    case 'stopping':
      return `vipnat: ${e.signal}: stopping every session`;
    case 'recovered': {
      const parts = [
        ...(e.sysctls.length > 0 ? [`restored ${e.sysctls.join(', ')}`] : []),
        ...(e.rules > 0 ? [`removed ${plural(e.rules, 'rule')}`] : []),
        ...(e.proxies > 0 ? [`removed ${e.proxies} neighbour ${e.proxies === 1 ? 'proxy' : 'proxies'}`] : []),
        ...(e.namespaces > 0 ? [`removed ${plural(e.namespaces, 'session namespace')}`] : []),
      ];
      return `vipnat: cleaned up after vipnat ${e.pid}, which did not exit cleanly: ${parts.join('; ') || 'nothing was left'}${e.skipped ? ` (${e.skipped})` : ''}`;
    }
    case 'up':
      return `vipnat: gateway "${e.name}" is up (pool ${e.pool}, pid ${e.pid}); control socket ${e.socket}${e.metrics ? `; metrics ${e.metrics}` : ''}`;
    case 'down':
      return `vipnat: gateway "${e.name}" is down; packets out ${e.dataplane?.toUplink ?? 0} in ${e.dataplane?.toSession ?? 0} dropped ${e.dataplane?.dropped ?? 0}`;
    case 'summary': {
      const d = e.dataplane;
      return (
        `summary: ${plural(e.sessions, 'session')} asked, ${e.started} started, ` +
        `${e.noVip} without a VIP, ${e.failed} failed; ` +
        `packets out ${d?.toUplink ?? 0} in ${d?.toSession ?? 0} dropped ${d?.dropped ?? 0}; ` +
        `exit status ${e.exitCode}`
      );
    }
  }
}

/** A session's line, as `run` prints it when it starts. */
export function sessionLine(s: SessionInfo): string {
  return formatEvent(
    {
      event: 'session',
      id: s.id,
      vip: s.vip,
      ...(s.vip6 ? { vip6: s.vip6 } : {}),
      ...(s.shared ? { shared: true } : {}),
      loopback: s.loopback,
      pid: s.pids[0] ?? -1,
      netns: s.netns,
      ...(s.attached ? { attached: true } : {}),
    },
    false,
  );
}

export function exitText(x: ExitInfo): string {
  return x.signal ? `exited by ${x.signal}` : `exited with status ${x.code}`;
}

/**
 * Plain columns, no borders, two spaces apart (as `docker ps` prints them).
 * Written here rather than with a table library: `table` took 225 ms to lay
 * out `ls` for 1 000 sessions, and `ls` must answer in well under 200 ms.
 */
export function columns(rows: string[][]): string {
  const widths: number[] = [];
  for (const r of rows) r.forEach((cell, k) => (widths[k] = Math.max(widths[k] ?? 0, cell.length)));
  return rows
    .map(
      (r) =>
        r
          .map((cell, k) => (k === r.length - 1 ? cell : cell.padEnd(widths[k]! + 2)))
          .join('')
          .trimEnd() + '\n',
    )
    .join('');
}

function age(iso: string): string {
  const s = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return s < 120 ? `${s}s` : s < 7200 ? `${Math.round(s / 60)}m` : `${Math.round(s / 3600)}h`;
}

export function sessionsTable(sessions: SessionInfo[]): string {
  const rows = sessions.map((s) => [
    String(s.id),
    s.shared ? `${s.vip} (shared)` : s.vip,
    s.vip6 ?? '',
    s.loopback ?? '-',
    s.state,
    s.pids.join(',') || '-',
    age(s.startedAt),
    `${s.packets.in}/${s.packets.out}`,
    `${s.bytes.in}/${s.bytes.out}`,
    s.netns,
    Object.entries(s.labels)
      .map(([k, v]) => `${k}=${v}`)
      .join(','),
  ]);
  return columns([['ID', 'VIP', 'VIP6', 'LOOPBACK', 'STATE', 'PIDS', 'UP', 'PACKETS IN/OUT', 'BYTES IN/OUT', 'NETNS', 'LABELS'], ...rows]);
}

export function poolTable(p: PoolInfo): string {
  const rows = p.ranges.map((r) => [
    r.range,
    `IPv${r.family}`,
    String(r.total),
    String(r.used),
    String(r.free),
    r.holders.map((h) => `${h.address}=${h.session}`).join(' '),
  ]);
  const fam = p.families.map((f) => [`all IPv${f.family}`, `IPv${f.family}`, String(f.total), String(f.used), String(f.free), '']);
  const shared = p.shared
    ? [[`shared ${p.shared.address}`, 'IPv4', '-', String(p.shared.sessions.length), '-', p.shared.sessions.join(' ')]]
    : [];
  return columns([['RANGE', 'FAMILY', 'TOTAL', 'USED', 'FREE', 'HELD BY (ADDRESS=SESSION)'], ...rows, ...fam, ...shared]);
}
