// Public surface of the wire layer: byte helpers, header views and their field offsets, and checksum arithmetic, IPv4 and IPv6.
export * from './bytes.js';
export * from './checksum.js';
export * from './ipv4.js';
export * from './tcp.js';
export * from './udp.js';
export * from './icmp.js';
export * from './icmp4.js';
export * from './ipv6.js';
export * from './icmp6.js';
export * from './vnet.js';
export * from './arp.js';
export * from './ndp.js';
export * from './dhcp.js';
