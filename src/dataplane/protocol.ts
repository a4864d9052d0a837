// Messages between the gateway (main thread) and the dataplane workers.
import type { FlowCount, FlowView, NatCounters, NatMemory } from '../nat/index.js';
import type { ForwarderCounters } from './forwarder.js';

export interface WorkerInit {
  /** This worker's number, 0-based; worker 0 also expires flows. */
  index: number;
  /** Workers in all: each has its own queue of every TUN. */
  workers: number;
  /** This worker's queue of the uplink TUN. */
  uplinkFd: number;
  wakeFd: number;
  maxSession: number;
  flowCapacity: number;
  /** The translator state all workers share (flow tables, ports). */
  memory: NatMemory;
  /** The Mutex word that serializes the workers' calls into it. */
  lock: SharedArrayBuffer;
  /** The flow clock's zero, in whole seconds of process.hrtime() (one clock for every worker). */
  epoch: number;
  /** Every TUN was opened with offloads: packets carry a virtio_net_hdr. */
  offload: boolean;
  /** The shared fallback's address (IPv4 as a number) and port range, if enabled. */
  shared: { address: number; portLo: number; portHi: number } | null;
  /** This worker's per-session packet and byte counters (Forwarder.perSession), which the gateway reads. */
  sessionCounters: SharedArrayBuffer;
  /** NatOptions.sessionFlowLimit, sharedPortQuota and blockLocal (undefined: the translator's defaults). */
  sessionFlowLimit: number | undefined;
  sharedPortQuota: number | undefined;
  blockLocal: boolean;
  /** NatOptions.loopback. */
  loopback: boolean;
  /** The capture tap's control (TapControl), shared by every worker. */
  tapControl: SharedArrayBuffer;
  /** This worker's capture ring (CaptureRing) and the bytes of its records. */
  tapRing: SharedArrayBuffer;
  tapRingBytes: number;
}

/** A session's addresses as the dataplane takes them: IPv4 as numbers, IPv6 as four 32-bit words; null for a family it lacks. */
export interface SessionAddresses {
  /** No VIP: IPv4 leaves from the shared address. */
  shared: boolean;
  inner4: number | null;
  vip4: number | null;
  inner6: number[] | null;
  vip6: number[] | null;
  /** The session's id, whose virtual loopback is 127.0.0.1 + id (with the loopback on); 0: none. */
  loopbackId: number;
}

export type ToWorker =
  | { op: 'add'; seq: number; id: number; fd: number; addrs: SessionAddresses }
  /** Forget the session and close its queue fd (its flows stay for 'purge'). */
  | { op: 'remove'; seq: number; id: number }
  /** Drop the flows of a session every worker has forgotten. */
  | { op: 'purge'; seq: number; id: number }
  /** The uplink's own addresses (IPv4 as numbers, IPv6 as four 32-bit words), for blockLocal; their flows stay for 'purgeLocal'. */
  | { op: 'local'; seq: number; v4: number[]; v6: number[][] }
  /** Drop the flows with addresses every worker now blocks. */
  | { op: 'purgeLocal'; seq: number }
  | { op: 'stats'; seq: number }
  /** The live flows of these sessions (every session's: null), at most `limit`: answered with `flows`. */
  | { op: 'flows'; seq: number; sessions: number[] | null; limit: number }
  /** Flows by family, protocol and state, and per session: answered with `flowStats`. */
  | { op: 'flowStats'; seq: number; byState: boolean }
  | { op: 'stop'; seq: number };

/** Flows counted by family, protocol and state, and per session slot. */
export interface FlowStats {
  byState: FlowCount[];
  perSession: number[];
}

/** The names of a class's number fields: what its counters are called. */
type CounterNames<T> = { [K in keyof T]: T[K] extends number ? K : never }[keyof T];

/** What the dataplane gauges (a state of the whole dataplane, not a sum over its workers). */
export interface DataplaneGauges {
  /** Live flows, both families. */
  flows: number;
  flowCapacity: number;
  /** Outer ports of the shared address in use, all protocols. */
  sharedPortsInUse: number;
  /** Sessions attached. */
  sessions: number;
}

/** One worker's counters: the translator's, the forwarder's and its own, and the gauges. */
export type WorkerStats = Record<CounterNames<NatCounters> | CounterNames<ForwarderCounters> | 'readErrors' | 'busyMs', number> &
  DataplaneGauges;

/** The whole dataplane's: counters summed over the workers, gauges taken once, and each worker's packets. */
export type DataplaneStats = WorkerStats & {
  workers: number;
  /** Packets each worker forwarded, by worker number: how the kernel spread the flows over the queues. */
  workerPackets: number[];
  /** Milliseconds each worker spent working (not waiting for packets), by worker number. */
  workerBusyMs: number[];
};

/** The names of the gauges, which merging takes from one worker instead of summing. */
export const GAUGES: readonly (keyof DataplaneGauges)[] = ['flows', 'flowCapacity', 'sharedPortsInUse', 'sessions'];

export type FromWorker =
  | { op: 'ready' }
  | { op: 'ack'; seq: number; stats?: WorkerStats; flows?: FlowView[]; flowStats?: FlowStats }
  | { op: 'error'; seq: number; message: string }
  | { op: 'fatal'; message: string };
