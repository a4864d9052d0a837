// Public surface of the wire layer: header views and checksum arithmetic.
export * from './checksum.js';
export * from './ipv4.js';
export * from './tcp.js';
export * from './udp.js';
export * from './icmp4.js';
