// The control protocol of a long-running gateway: HTTP/1.1 with JSON over a unix socket, versioned, as the Docker engine API is.
//
//   GET    /v1/version                      -> Version
//   GET    /v1/sessions                     -> SessionInfo[]
//   POST   /v1/sessions        StartRequest -> 201 SessionInfo            (a logon)
//   GET    /v1/sessions/ID                  -> SessionInfo
//   POST   /v1/sessions/ID/stop             -> ExitInfo, once torn down    (a logoff)
//   POST   /v1/sessions/ID/exec ExecRequest -> attached stream (below)
//   GET    /v1/pool                         -> PoolInfo
//   GET    /v1/stats                        -> the dataplane's counters
//   GET    /v1/sockets[?session=ID,...]     -> SessionSockets[]: each session's kernel sockets and flows
//   POST   /v1/capture  CaptureRequest      -> a capture stream (below)
//   POST   /v1/attach   AttachRequest       -> 201 SessionInfo: a VIP for an existing namespace (a container's)
//   POST   /v1/down                         -> 202, then the gateway stops every session and exits
//
// Errors are {"message": "...", "exitCode": N} with an HTTP status: 400 bad
// request, 404 no such session, 409 a conflict (id or VIP taken), 503 no VIP
// left (exitCode 3).
//
// Attached streams. `POST /v1/sessions` with "attach": true, and every exec,
// want `Connection: Upgrade` and `Upgrade: vipnat-attach/1`; the server
// answers 101 and the connection then carries the program's standard
// streams. What the client writes is the program's standard input (its end
// of the connection closes it). The server writes frames: a type byte, three
// zero bytes, the payload length as 32 bits big-endian, then the payload
// (Docker's framing, with two types more):
//
//   0 HELLO   JSON SessionInfo (start) or {"pid": N} (exec), first
//   1 STDOUT  bytes
//   2 STDERR  bytes
//   3 EXIT    JSON ExitInfo, last
//   4 ERROR   JSON {"message", "exitCode"}, last
//
// A client that goes away before EXIT takes its program with it: the session
// (start) or the program (exec) is stopped, so nothing is left half made.
//
// Capture streams. `POST /v1/capture` wants `Upgrade: vipnat-capture/1`; the
// server answers 101 and writes a pcapng file: its header, then packets as
// the dataplane copies them. The client ends the capture by closing its
// writing side; the server then writes the interface statistics (packets
// left out) and closes. It closes by itself at the count, or when the
// session ends.

import { connect } from 'node:net';

export const API_VERSION = 1;
export const API_PREFIX = `/v${API_VERSION}`;
export const ATTACH_PROTOCOL = 'vipnat-attach/1';
export const CAPTURE_PROTOCOL = 'vipnat-capture/1';

export const FRAME_HELLO = 0;
export const FRAME_STDOUT = 1;
export const FRAME_STDERR = 2;
export const FRAME_EXIT = 3;
export const FRAME_ERROR = 4;
export const FRAME_HEADER = 8;

/** Whether something listens at a unix socket path (a live gateway), as opposed to a stale file or nothing. */
export function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const c = connect(path);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
}

/** Where a gateway named `name` listens. */
export function socketPath(runDir: string, name: string): string {
  return `${runDir}/${name}.sock`;
}

/** Names become file names: letters, digits, dot, dash and underscore. */
export const NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

export interface Version {
  api: number;
  version: string;
  /** The gateway's pid and the name it serves. */
  pid: number;
  name: string;
}

export interface StartRequest {
  id?: number;
  vip?: string;
  labels?: Record<string, string>;
  program: string;
  args?: string[];
  env?: Record<string, string>;
  /** Attach: the program's standard streams over this connection (start --wait). */
  attach?: boolean;
}

export interface ExecRequest {
  program: string;
  args?: string[];
  env?: Record<string, string>;
}

export interface AttachRequest {
  /** The namespace's file (/proc/PID/ns/net, /run/netns/NAME, a bind mount), and what ls shows for it. */
  path: string;
  name: string;
  /** The process whose namespace it is, when there is one. */
  pid?: number;
  /** CIDRs that leave through the VIP (default: the networks the gateway routes to). */
  routes?: string[];
  id?: number;
  vip?: string;
  labels?: Record<string, string>;
}

export interface CaptureRequest {
  /** A session id, or "uplink" for every packet. */
  target: number | 'uplink';
  snaplen?: number;
  count?: number;
}

export interface ExitInfo {
  code: number | null;
  signal: string | null;
  /** The status a shell would report: the code, or 128 + the signal's number. */
  status: number;
}

export interface SessionInfo {
  id: number;
  labels: Record<string, string>;
  vip: string;
  vip6: string | null;
  shared: boolean;
  /** Its virtual loopback (127.0.0.1 + id); null when the gateway has it off. */
  loopback: string | null;
  netns: string;
  /** The session's processes: its program first, then whatever else runs in its namespace. */
  pids: number[];
  state: 'starting' | 'running' | 'stopping' | 'exited';
  /** Attached to an existing namespace (vipnat attach): no namespace or program of its own. */
  attached: boolean;
  startedAt: string;
  packets: { in: number; out: number };
  bytes: { in: number; out: number };
  /** Its packets dropped: refused by the translator, or not written to its device. */
  dropped: number;
  /** Its live flows in the translator. */
  flows: number;
}

export interface RangeInfo {
  range: string;
  family: 4 | 6;
  total: number;
  used: number;
  free: number;
  /** Each used address and the session holding it. */
  holders: { address: string; session: number }[];
}

export interface PoolInfo {
  ranges: RangeInfo[];
  families: { family: 4 | 6; total: number; used: number; free: number }[];
  /** The shared fallback, when the gateway has it: its address and the sessions on it. */
  shared: { address: string; sessions: number[] } | null;
}

export type { SessionSockets, KernelSocket, FlowView } from '../gateway/index.js';

export interface ErrorBody {
  message: string;
  exitCode: number;
}

/** One frame of an attached stream. */
export function frame(type: number, payload: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(FRAME_HEADER + payload.length);
  b.writeUInt32BE(type << 24, 0);
  b.writeUInt32BE(payload.length, 4);
  b.set(payload, FRAME_HEADER);
  return b;
}

/** Splits an attached stream into frames as its bytes arrive. */
export class FrameReader {
  private buf: Buffer = Buffer.alloc(0);

  constructor(private readonly onFrame: (type: number, payload: Buffer) => void) {}

  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    while (this.buf.length >= FRAME_HEADER) {
      const len = this.buf.readUInt32BE(4);
      if (this.buf.length < FRAME_HEADER + len) break;
      const type = this.buf[0]!;
      const payload = this.buf.subarray(FRAME_HEADER, FRAME_HEADER + len);
      this.buf = this.buf.subarray(FRAME_HEADER + len);
      this.onFrame(type, payload);
    }
  }
}
