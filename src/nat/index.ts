// Public surface of the nat layer: the flow tables, flow states and the translators.
export * from './flows.js';
export * from './state.js';
export * from './translate.js';
export * from './translate6.js';
export * from './ports.js';
export { DEFAULT_LOOPBACK_FLOWS, LOOPBACK, LOOPBACK_PORT_HI, LOOPBACK_PORT_LO, Loopback4 } from './loopback.js';
export * from './inspect.js';
