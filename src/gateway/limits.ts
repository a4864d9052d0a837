// The gateway's defaults and limits, in a module of their own: the CLI reads them without loading the dataplane.
export { DEFAULT_SHARED_PORT_QUOTA } from '../nat/ports.js';
export { MAX_SESSION_ID } from '../pool/loopback.js';

/** IPv4 flow table capacity unless the options say otherwise (64 bytes a flow). */
export const DEFAULT_MAX_FLOWS = 1 << 18;
/** Most sessions alive at once (each is a namespace, a TUN and processes): the dataplane's session slots. */
export const MAX_LIVE_SESSIONS = 65535;
/** Most dataplane workers by default, however many CPUs there are. */
export const MAX_DEFAULT_WORKERS = 4;
export const MAX_WORKERS = 64;
/** Where vipnat keeps its journal and control sockets. */
export const RUN_DIR = '/run/vipnat';
