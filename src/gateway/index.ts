// Public surface of the gateway layer: running sessions through a gateway, its options, events and errors.
export {
  DEFAULT_MAX_FLOWS,
  DEFAULT_SHARED_INNER,
  defaultWorkers,
  MAX_DEFAULT_WORKERS,
  MAX_LIVE_SESSIONS,
  MAX_WORKERS,
  run,
} from './run.js';
export type { GatewayEvent, RunOptions } from './run.js';
export { EXIT_NO_VIP, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_USAGE, UserError } from './errors.js';
export { preflight } from './checks.js';
export { UPLINK_NAME } from './uplink.js';
export { RUN_DIR } from './journal.js';
export { MAX_SESSION_ID, NO_VIP_MESSAGE, parseRanges, PoolError } from '../pool/index.js';
export type { DataplaneStats } from '../dataplane/index.js';
