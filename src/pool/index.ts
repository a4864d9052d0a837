// Public API of the pool layer: address ranges, the VIP pool and the virtual-loopback formula.
export { type AddressRange, type Family, PoolError, formatAddress, parseAddress, parseRanges, rangeCidrs } from './ranges.js';
export { NO_VIP_MESSAGE, VipPool } from './pool.js';
export { MAX_SESSION_ID, cidrCover, loopbackFor, loopbackNumber, sessionForLoopback } from './loopback.js';
