// Gateway options from the flags of `run` and `up`, and the environment the CLI owns (VIPNAT_OFFLOAD).
import type { GatewayOptions } from '../../gateway/index.js';
import type { GatewayArgs } from '../args.js';

export function gatewayOptions(a: GatewayArgs, runDir: string, version: string): GatewayOptions {
  return {
    pool: a.pool,
    ...(a.innerAddress !== undefined ? { innerAddress: a.innerAddress } : {}),
    onExhausted: a.onExhausted,
    mtu: a.mtu,
    flowCapacity: a.maxFlows,
    ...(a.workers !== undefined ? { workers: a.workers } : {}),
    ...(a.user !== undefined ? { user: a.user } : {}),
    ...(a.maxSessionFlows !== undefined ? { sessionFlowLimit: a.maxSessionFlows } : {}),
    ...(a.sharedPortQuota !== undefined ? { sharedPortQuota: a.sharedPortQuota } : {}),
    blockLocal: a.blockLocal,
    loopback: a.loopback,
    ...(a.uplink !== undefined ? { uplink: a.uplink } : {}),
    ...(a.pcap !== undefined ? { pcap: a.pcap } : {}),
    version,
    runDir,
    // Offloads are on unless VIPNAT_OFFLOAD=0 (for comparing, and for kernels without them).
    offload: process.env['VIPNAT_OFFLOAD'] !== '0',
  };
}
