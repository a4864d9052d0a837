// Messages between the gateway (main thread) and the dataplane worker.
export interface WorkerInit {
  uplinkFd: number;
  wakeFd: number;
  maxSession: number;
  flowCapacity: number;
}

export type ToWorker =
  | { op: 'add'; seq: number; id: number; fd: number; inner: number; vip: number }
  | { op: 'remove'; seq: number; id: number }
  | { op: 'stats'; seq: number }
  | { op: 'stop'; seq: number };

export interface DataplaneStats {
  [counter: string]: number;
}

export type FromWorker =
  | { op: 'ready' }
  | { op: 'ack'; seq: number; stats?: DataplaneStats }
  | { op: 'error'; seq: number; message: string }
  | { op: 'fatal'; message: string };
