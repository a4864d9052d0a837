// Public surface of the control layer: the protocol's types, the server and the client.
export * from './protocol.js';
export { ControlServer, exitInfo, sessionInfo } from './server.js';
export { ControlClient } from './client.js';
export { gatewayRegistry, MetricsServer } from './metrics.js';
