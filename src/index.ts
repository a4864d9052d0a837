// vipnat's TypeScript API: open a Gateway, start and stop sessions with their own VIPs, close it (or let `await using` do it).
//
//   import { Gateway } from 'vipnat';
//   await using gw = await Gateway.open({ pool: '198.19.7.0/28' });
//   const s = await gw.startSession({ program: 'node', args: ['agent.js'] });
//   s.vip;                                  // '198.19.7.1'
//   const e = await s.exec('curl', ['-s', 'http://backend/']);
//   await e.exited;                         // { code: 0, signal: null }
//   await s.stop();                         // SIGTERM, grace period, SIGKILL; the VIP back in the pool
export {
  ConflictError,
  DEFAULT_MAX_FLOWS,
  DEFAULT_SHARED_PORT_QUOTA,
  defaultSessionFlowLimit,
  EXIT_NO_VIP,
  Gateway,
  GatewaySession,
  MAX_SESSION_ID,
  NO_VIP_MESSAGE,
  NoVipError,
  NotFoundError,
  UserError,
  type DataplaneStats,
  type ExitStatus,
  type GatewayEvent,
  type GatewayOptions,
  type SessionState,
  type StartOptions,
} from './gateway/index.js';
export type { ExecProcess, PoolReport } from './gateway/gateway.js';
