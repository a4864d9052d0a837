// Public surface of the linux layer: syscalls, TUN, iproute2, namespaces, sysctls.
export * from './libc.js';
export * from './tun.js';
export * from './ip.js';
export * from './netns.js';
export * from './sysctl.js';
export * from './monitor.js';
export * from './mounts.js';
export * from './rawsock.js';
export * from './sockdiag.js';
