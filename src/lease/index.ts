// Public surface of the lease layer: each session's DHCP client.
export * from './client.js';
export * from './leases.js';
