// How gateway events are shown: one readable line each, or one JSON object per line.
import type { GatewayEvent } from '../gateway.js';

export function formatEvent(e: GatewayEvent, json: boolean): string {
  if (json) return JSON.stringify(e);
  switch (e.event) {
    case 'session':
      return e.shared
        ? `session ${e.id} shared ${e.vip} loopback ${e.loopback} pid ${e.pid}`
        : `session ${e.id} vip ${e.vip} loopback ${e.loopback} pid ${e.pid}${e.vip6 ? ` vip6 ${e.vip6}` : ''}`;
    case 'no-vip':
      return `session ${e.id} ${e.message}`;
    case 'exit':
      return `session ${e.id} exited ${e.signal ? `by ${e.signal}` : `with status ${e.code}`} (${e.shared ? 'shared address' : `vip ${e.vip} released`})`;
    case 'stopping':
      return `vipnat: ${e.signal}: stopping every session`;
    case 'summary': {
      const d = e.dataplane;
      const n = (k: string): number => d[k] ?? 0;
      return (
        `summary: ${e.sessions} session${e.sessions === 1 ? '' : 's'} asked, ${e.started} started, ` +
        `${e.noVip} without a VIP, ${e.failed} failed; ` +
        `packets out ${n('toUplink')} in ${n('toSession')} dropped ${n('dropped')}; ` +
        `exit status ${e.exitCode}`
      );
    }
  }
}
