// How gateway events are shown: one readable line each, or one JSON object per line.
import type { DataplaneStats, GatewayEvent } from '../gateway/index.js';

/**
 * The dataplane's counters as `--json` shows them: one flat object of numbers,
 * each worker's packets as `workerKPackets` (empty when the dataplane failed).
 */
export function statsJson(d: DataplaneStats | null): Record<string, number> {
  if (!d) return {};
  const { workerPackets, ...rest } = d;
  const out: Record<string, number> = { ...rest };
  workerPackets.forEach((n, k) => (out[`worker${k}Packets`] = n));
  return out;
}

export function formatEvent(e: GatewayEvent, json: boolean): string {
  if (json) return JSON.stringify(e.event === 'summary' ? { ...e, dataplane: statsJson(e.dataplane) } : e);
  switch (e.event) {
    case 'session':
      return e.shared
        ? `session ${e.id} shared ${e.vip} loopback ${e.loopback} pid ${e.pid}`
        : `session ${e.id} vip ${e.vip} loopback ${e.loopback} pid ${e.pid}${e.vip6 ? ` vip6 ${e.vip6}` : ''}`;
    case 'no-vip':
      return e.to === undefined
        ? `session ${e.id} ${e.message}`
        : `sessions ${e.id}-${e.to}: no VIP either (${e.count} more session${e.count === 1 ? '' : 's'} not started)`;
    case 'recovered': {
      const parts = [
        ...(e.sysctls.length > 0 ? [`restored ${e.sysctls.join(', ')}`] : []),
        ...(e.rules > 0 ? [`removed ${e.rules} rule${e.rules === 1 ? '' : 's'}`] : []),
        ...(e.namespaces > 0 ? [`removed ${e.namespaces} session namespace${e.namespaces === 1 ? '' : 's'}`] : []),
      ];
      return `vipnat: cleaned up after vipnat ${e.pid}, which did not exit cleanly: ${parts.join('; ') || 'nothing was left'}${e.skipped ? ` (${e.skipped})` : ''}`;
    }
    case 'exit':
      return `session ${e.id} exited ${e.signal ? `by ${e.signal}` : `with status ${e.code}`} (${e.shared ? 'shared address' : `vip ${e.vip} released`})`;
    case 'stopping':
      return `vipnat: ${e.signal}: stopping every session`;
    case 'summary': {
      const d = e.dataplane;
      return (
        `summary: ${e.sessions} session${e.sessions === 1 ? '' : 's'} asked, ${e.started} started, ` +
        `${e.noVip} without a VIP, ${e.failed} failed; ` +
        `packets out ${d?.toUplink ?? 0} in ${d?.toSession ?? 0} dropped ${d?.dropped ?? 0}; ` +
        `exit status ${e.exitCode}`
      );
    }
  }
}
