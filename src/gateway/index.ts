// Public surface of the gateway layer: the Gateway and its sessions, `run`, their options, events and errors.
export {
  DEFAULT_MAX_FLOWS,
  DEFAULT_SHARED_INNER,
  Gateway,
  GatewaySession,
  MAX_LIVE_SESSIONS,
  NoVipError,
  type AttachTarget,
  type ExitStatus,
  type GatewayEvent,
  type GatewayOptions,
  type SessionCounters,
  type SessionSockets,
  type SessionState,
  type StartOptions,
} from './gateway.js';
export { defaultWorkers, MAX_DEFAULT_WORKERS, MAX_WORKERS, run, type RunOptions } from './run.js';
export { DEFAULT_SHARED_PORT_QUOTA, defaultSessionFlowLimit } from '../nat/index.js';
export { ConflictError, EXIT_NO_VIP, EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, EXIT_USAGE, NotFoundError, UserError } from './errors.js';
export { preflight } from './checks.js';
export { UPLINK_NAME } from './uplink.js';
// For the control server, which checks its peers and reaches the OS only through this layer.
export { peerCredentials } from '../linux/index.js';
export { RUN_DIR } from './journal.js';
export { MAX_SESSION_ID, NO_VIP_MESSAGE, parseRanges, PoolError } from '../pool/index.js';
export type { DataplaneStats } from '../dataplane/index.js';
export { Capture, DEFAULT_SNAPLEN, MAX_SNAPLEN, type CaptureResult, type CaptureSink } from './capture.js';
export type { FlowCount, FlowView } from '../nat/index.js';
export { namespaceSockets, type KernelSocket } from '../linux/index.js';
