// The control server: a long-running gateway's HTTP API on a root-only unix socket (protocol.ts says what it speaks).
import { chmodSync, mkdirSync, readdirSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import {
  ConflictError,
  NoVipError,
  NotFoundError,
  peerCredentials,
  UserError,
  type ExitStatus,
  type Gateway,
  type GatewaySession,
  type CaptureSink,
  type SessionCounters,
} from '../gateway/index.js';
import {
  answers,
  API_PREFIX,
  API_VERSION,
  ATTACH_PROTOCOL,
  CAPTURE_PROTOCOL,
  frame,
  FRAME_ERROR,
  FRAME_EXIT,
  FRAME_HELLO,
  FRAME_STDERR,
  FRAME_STDOUT,
  socketPath,
  type AttachRequest,
  type ErrorBody,
  type ExecRequest,
  type ExitInfo,
  type SessionInfo,
  type StartRequest,
} from './protocol.js';
import { constants } from 'node:os';

/** Largest request body accepted (a start request with its environment). */
const MAX_BODY = 1 << 20;

export interface ServeOptions {
  runDir: string;
  name: string;
  version: string;
  /** Where programs started without attach write: each line prefixed with its session id. */
  output: { stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream };
  /** Called on POST /v1/down: the owner closes the gateway and the server. */
  onDown: () => void;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
  }
}

/** The HTTP status and body for an error thrown by the gateway or the request. */
function errorReply(e: unknown): { status: number; body: ErrorBody } {
  if (e instanceof HttpError) return { status: e.status, body: { message: e.message, exitCode: e.exitCode } };
  if (!(e instanceof Error)) return { status: 500, body: { message: String(e), exitCode: 1 } };
  if (e instanceof NoVipError) return { status: 503, body: { message: e.message, exitCode: e.exitCode } };
  if (e instanceof NotFoundError) return { status: 404, body: { message: e.message, exitCode: e.exitCode } };
  if (e instanceof ConflictError) return { status: 409, body: { message: e.message, exitCode: e.exitCode } };
  if (e instanceof UserError) return { status: 400, body: { message: e.message, exitCode: e.exitCode } };
  return { status: 500, body: { message: e.message, exitCode: 1 } };
}

export function exitInfo(st: ExitStatus): ExitInfo {
  const n = st.signal ? ((constants.signals as Record<string, number>)[st.signal] ?? 0) : 0;
  return { code: st.code, signal: st.signal, status: st.signal ? 128 + n : (st.code ?? 1) };
}

/** A session as `ls` and the API show it. */
export function sessionInfo(s: GatewaySession, pids: number[], counters: SessionCounters, flows: number): SessionInfo {
  return {
    id: s.id,
    labels: s.labels,
    vip: s.vip,
    vip6: s.vip6,
    shared: s.shared,
    loopback: s.loopback,
    netns: s.netns,
    pids,
    state: s.state,
    attached: s.attached,
    startedAt: s.startedAt.toISOString(),
    ...counters,
    flows,
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function stringMap(v: unknown, what: string): Record<string, string> | undefined {
  if (v === undefined) return undefined;
  if (!isObject(v) || Object.values(v).some((x) => typeof x !== 'string'))
    throw new HttpError(400, `${what}: must be an object of strings`, 2);
  return v as Record<string, string>;
}

function stringList(v: unknown, what: string): string[] | undefined {
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw new HttpError(400, `${what}: must be an array of strings`, 2);
  return v as string[];
}

/** Checks a start request's shape (the gateway checks what it means). */
export function parseStart(v: unknown): StartRequest {
  if (!isObject(v)) throw new HttpError(400, 'the request body must be a JSON object', 2);
  if (typeof v['program'] !== 'string' || v['program'] === '') throw new HttpError(400, 'program: required, a string', 2);
  if (v['id'] !== undefined && !Number.isInteger(v['id'])) throw new HttpError(400, 'id: must be a whole number', 2);
  if (v['vip'] !== undefined && typeof v['vip'] !== 'string') throw new HttpError(400, 'vip: must be a string', 2);
  return {
    program: v['program'],
    ...(v['id'] !== undefined ? { id: v['id'] as number } : {}),
    ...(v['vip'] !== undefined ? { vip: v['vip'] } : {}),
    ...(v['labels'] !== undefined ? { labels: stringMap(v['labels'], 'labels') } : {}),
    ...(v['args'] !== undefined ? { args: stringList(v['args'], 'args') } : {}),
    ...(v['env'] !== undefined ? { env: stringMap(v['env'], 'env') } : {}),
    ...(v['attach'] === true ? { attach: true } : {}),
  };
}

export function parseAttach(v: unknown): AttachRequest {
  if (!isObject(v)) throw new HttpError(400, 'the request body must be a JSON object', 2);
  if (typeof v['path'] !== 'string' || !v['path'].startsWith('/')) throw new HttpError(400, 'path: required, an absolute path', 2);
  if (typeof v['name'] !== 'string' || v['name'] === '') throw new HttpError(400, 'name: required, a string', 2);
  if (v['pid'] !== undefined && !(Number.isInteger(v['pid']) && (v['pid'] as number) > 0))
    throw new HttpError(400, 'pid: must be a process id', 2);
  if (v['id'] !== undefined && !Number.isInteger(v['id'])) throw new HttpError(400, 'id: must be a whole number', 2);
  if (v['vip'] !== undefined && typeof v['vip'] !== 'string') throw new HttpError(400, 'vip: must be a string', 2);
  return {
    path: v['path'],
    name: v['name'],
    ...(v['pid'] !== undefined ? { pid: v['pid'] as number } : {}),
    ...(v['routes'] !== undefined ? { routes: stringList(v['routes'], 'routes') } : {}),
    ...(v['id'] !== undefined ? { id: v['id'] as number } : {}),
    ...(v['vip'] !== undefined ? { vip: v['vip'] } : {}),
    ...(v['labels'] !== undefined ? { labels: stringMap(v['labels'], 'labels') } : {}),
  };
}

function parseExec(v: unknown): ExecRequest {
  if (!isObject(v)) throw new HttpError(400, 'the request body must be a JSON object', 2);
  if (typeof v['program'] !== 'string' || v['program'] === '') throw new HttpError(400, 'program: required, a string', 2);
  return {
    program: v['program'],
    ...(v['args'] !== undefined ? { args: stringList(v['args'], 'args') } : {}),
    ...(v['env'] !== undefined ? { env: stringMap(v['env'], 'env') } : {}),
  };
}

function readBody(req: IncomingMessage): Promise<unknown> {
  return new Promise((resolve, reject) => {
    let size = 0;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) {
        reject(new HttpError(413, 'request body too large', 2));
        req.destroy();
      } else {
        chunks.push(c);
      }
    });
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      if (text.trim() === '') return resolve(undefined);
      try {
        resolve(JSON.parse(text));
      } catch {
        reject(new HttpError(400, 'the request body is not JSON', 2));
      }
    });
    req.on('error', reject);
  });
}

/** Prefixes every line a program writes with its session id, on the gateway's own output. */
function prefixLines(from: NodeJS.ReadableStream | null, to: NodeJS.WritableStream, id: number): void {
  if (!from) return;
  let partial = '';
  from.setEncoding('utf8');
  from.on('data', (d: string) => {
    const parts = (partial + d).split('\n');
    partial = parts.pop()!;
    for (const l of parts) to.write(`[${id}] ${l}\n`);
  });
  from.on('end', () => {
    if (partial) to.write(`[${id}] ${partial}\n`);
  });
}

export class ControlServer {
  private readonly server: Server;
  readonly path: string;

  private constructor(
    private readonly gw: Gateway,
    private readonly opts: ServeOptions,
  ) {
    this.path = socketPath(opts.runDir, opts.name);
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.on('upgrade', (req: IncomingMessage, socket: Duplex, head: Buffer) => void this.onUpgrade(req, socket as Socket, head));
    // Only root may talk to the gateway: the socket is 0600 in a 0700 directory, and every peer is checked too.
    this.server.on('connection', (socket: Socket) => {
      const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
      const cred = fd === undefined ? null : peerCredentials(fd);
      if (!cred || cred.uid !== 0) {
        socket.end(
          'HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"message":"only root may use the gateway","exitCode":1}',
        );
      }
    });
  }

  /** Throws if a gateway of this name answers already (check it before opening a gateway). */
  static async checkName(runDir: string, name: string): Promise<void> {
    const path = socketPath(runDir, name);
    if (await answers(path)) throw new ConflictError(`a gateway named "${name}" is already running (${path})`);
  }

  /**
   * Serves `gw` at RUN_DIR/NAME.sock. A socket left by a gateway that died is
   * removed; one that answers belongs to a running gateway, and the name is taken.
   */
  static async listen(gw: Gateway, opts: ServeOptions): Promise<ControlServer> {
    mkdirSync(opts.runDir, { recursive: true, mode: 0o700 });
    chmodSync(opts.runDir, 0o700);
    const cs = new ControlServer(gw, opts);
    sweepDeadRuns(opts.runDir);
    if (await answers(cs.path)) throw new ConflictError(`a gateway named "${opts.name}" is already running (${cs.path})`);
    rmSync(cs.path, { force: true });
    await new Promise<void>((resolve, reject) => {
      cs.server.once('error', reject);
      // umask-proof: the socket is created, then made root-only before anyone is served.
      cs.server.listen(cs.path, () => {
        chmodSync(cs.path, 0o600);
        resolve();
      });
    });
    return cs;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections();
    });
    rmSync(this.path, { force: true });
  }

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const reply = (status: number, body: unknown): void => {
      if (res.headersSent || res.destroyed) return;
      const text = `${JSON.stringify(body)}\n`;
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) });
      res.end(text);
    };
    try {
      const { status, body } = await this.route(req, res);
      reply(status, body);
    } catch (e) {
      const r = errorReply(e);
      reply(r.status, r.body);
    }
  }

  private async route(req: IncomingMessage, res: ServerResponse): Promise<{ status: number; body: unknown }> {
    const url = new URL(req.url ?? '/', 'http://vipnat');
    const path = url.pathname;
    const method = req.method ?? 'GET';
    if (!path.startsWith(`${API_PREFIX}/`)) throw new HttpError(404, `no such endpoint ${path}: this gateway speaks ${API_PREFIX}`, 2);
    const rest = path.slice(API_PREFIX.length);
    const m = /^\/sessions\/(\d+)(\/stop)?$/.exec(rest);
    if (method === 'GET' && rest === '/version') {
      return { status: 200, body: { api: API_VERSION, version: this.opts.version, pid: process.pid, name: this.opts.name } };
    }
    if (method === 'GET' && rest === '/sessions') return { status: 200, body: await this.list() };
    if (method === 'POST' && rest === '/sessions') return { status: 201, body: await this.start(parseStart(await readBody(req)), res) };
    if (method === 'POST' && rest === '/attach') return { status: 201, body: await this.attachTo(parseAttach(await readBody(req)), res) };
    if (method === 'GET' && m && !m[2]) return { status: 200, body: await this.one(Number(m[1])) };
    if (method === 'POST' && m && m[2]) {
      const st = await this.gw.stopSession(Number(m[1]));
      return { status: 200, body: exitInfo(st) };
    }
    if (method === 'GET' && rest === '/pool') return { status: 200, body: this.gw.poolInfo() };
    if (method === 'GET' && rest === '/stats') return { status: 200, body: await this.gw.stats() };
    if (method === 'GET' && rest === '/sockets')
      return { status: 200, body: await this.gw.sockets(sessionList(url.searchParams.get('session'))) };
    if (method === 'POST' && rest === '/capture')
      throw new HttpError(400, `a capture needs Connection: Upgrade and Upgrade: ${CAPTURE_PROTOCOL}`, 2);
    if (method === 'POST' && rest === '/down') {
      setImmediate(() => this.opts.onDown());
      return { status: 202, body: { message: 'stopping every session' } };
    }
    throw new HttpError(404, `no such endpoint: ${method} ${path}`, 2);
  }

  private async list(): Promise<SessionInfo[]> {
    const flows = (await this.gw.flowStats().catch(() => null))?.perSession;
    const sessions = this.gw.sessions();
    const pids = this.gw.sessionPids(sessions);
    const counters = this.gw.sessionCounters();
    return sessions.map((s) => sessionInfo(s, orderPids(s, pids.get(s.id) ?? []), counters(s), flows?.get(s.id) ?? 0));
  }

  private async one(id: number): Promise<SessionInfo> {
    const flows = (await this.gw.flowStats().catch(() => null))?.perSession;
    const s = this.gw.session(id);
    if (!s) throw new NotFoundError(`no session ${id}`);
    return sessionInfo(s, orderPids(s, this.gw.sessionPids([s]).get(s.id) ?? []), this.gw.sessionCounters()(s), flows?.get(id) ?? 0);
  }

  /** A VIP for an existing namespace: a session with no program, which ends with the namespace or on stop. */
  private async attachTo(r: AttachRequest, res: ServerResponse): Promise<SessionInfo> {
    const s = await this.gw.startSession({
      program: '',
      attach: { path: r.path, name: r.name, ...(r.pid !== undefined ? { pid: r.pid } : {}), ...(r.routes ? { routes: r.routes } : {}) },
      ...(r.id !== undefined ? { id: r.id } : {}),
      ...(r.vip !== undefined ? { vip: r.vip } : {}),
      ...(r.labels !== undefined ? { labels: r.labels } : {}),
      stdio: 'ignore',
    });
    if (res.destroyed || res.socket?.destroyed) {
      void s.stop();
      throw new HttpError(499, 'the client went away');
    }
    return sessionInfo(s, s.pid > 0 ? [s.pid] : [], this.gw.sessionCounters()(s), 0);
  }

  /** A start without attach: the program's output goes to the gateway's, line by line with its id. */
  private async start(r: StartRequest, res: ServerResponse): Promise<SessionInfo> {
    if (r.attach) throw new HttpError(400, `attach needs Connection: Upgrade and Upgrade: ${ATTACH_PROTOCOL}`, 2);
    const s = await this.gw.startSession({ ...this.startOptions(r), stdio: 'pipe' });
    // A client gone before its answer leaves no session behind.
    if (res.destroyed || res.socket?.destroyed) {
      void s.stop();
      throw new HttpError(499, 'the client went away');
    }
    const child = s.process;
    child?.stdin?.end();
    prefixLines(child?.stdout ?? null, this.opts.output.stdout, s.id);
    prefixLines(child?.stderr ?? null, this.opts.output.stderr, s.id);
    return sessionInfo(s, [s.pid], this.gw.sessionCounters()(s), 0);
  }

  private startOptions(r: StartRequest): Parameters<Gateway['startSession']>[0] {
    return {
      program: r.program,
      args: r.args ?? [],
      env: r.env ?? {},
      ...(r.id !== undefined ? { id: r.id } : {}),
      ...(r.vip !== undefined ? { vip: r.vip } : {}),
      ...(r.labels !== undefined ? { labels: r.labels } : {}),
    };
  }

  /** start --wait and exec: the program's standard streams over this connection, framed. */
  private async onUpgrade(req: IncomingMessage, socket: Socket, head: Buffer): Promise<void> {
    const fail = (e: unknown): void => {
      const { status, body } = errorReply(e);
      const text = `${JSON.stringify(body)}\n`;
      socket.end(
        `HTTP/1.1 ${status} Error\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(text)}\r\nConnection: close\r\n\r\n${text}`,
      );
    };
    try {
      const upgrade = (req.headers.upgrade ?? '').toLowerCase();
      if (upgrade !== ATTACH_PROTOCOL && upgrade !== CAPTURE_PROTOCOL)
        throw new HttpError(400, `Upgrade: ${ATTACH_PROTOCOL} or ${CAPTURE_PROTOCOL} are the protocols`, 2);
      const url = new URL(req.url ?? '/', 'http://vipnat');
      const rest = url.pathname.slice(API_PREFIX.length);
      // An upgraded request's body comes on the socket, right after its headers; what follows is stdin.
      const { body, after } = await upgradeBody(req, socket, head);
      head = after;
      if (upgrade === CAPTURE_PROTOCOL) {
        if (req.method !== 'POST' || rest !== '/capture')
          throw new HttpError(404, `no such endpoint to capture from: ${req.method} ${url.pathname}`, 2);
        captureStream(this.gw, socket, body);
        return;
      }
      if (req.method === 'POST' && rest === '/sessions') {
        const s = await this.gw.startSession({ ...this.startOptions(parseStart(body)), stdio: 'pipe' });
        attach(
          socket,
          head,
          s.process!,
          s.exited,
          Buffer.from(JSON.stringify(sessionInfo(s, [s.pid], zeroCounters, 0))),
          () => void s.stop(),
        );
        return;
      }
      const m = /^\/sessions\/(\d+)\/exec$/.exec(rest);
      if (req.method === 'POST' && m) {
        const s = this.gw.session(Number(m[1]));
        if (!s) throw new NotFoundError(`no session ${m[1]}`);
        const r = parseExec(body);
        const e = await s.exec(r.program, r.args ?? [], { env: r.env ?? {}, stdio: 'pipe' });
        attach(socket, head, e.child, e.exited, Buffer.from(JSON.stringify({ pid: e.pid })), () => e.child.kill('SIGKILL'));
        return;
      }
      throw new HttpError(404, `no such endpoint to attach to: ${req.method} ${url.pathname}`, 2);
    } catch (e) {
      fail(e);
    }
  }
}

const zeroCounters = { packets: { in: 0, out: 0 }, bytes: { in: 0, out: 0 }, dropped: 0 };

/** `?session=1,2,3`: those ids; absent, every session. */
function sessionList(v: string | null): number[] | null {
  if (v === null || v === '') return null;
  return v.split(',').map((t) => {
    if (!/^\d+$/.test(t)) throw new HttpError(400, `session "${t}": must be a session id`, 2);
    return Number(t);
  });
}

/** A capture over an upgraded connection: pcapng out; the client's end of writing stops it. */
function captureStream(gw: Gateway, socket: Socket, body: unknown): void {
  if (!isObject(body)) throw new HttpError(400, 'a capture request must be a JSON object', 2);
  const target = body['target'];
  if (target !== 'uplink' && !(typeof target === 'number' && Number.isInteger(target) && target >= 1))
    throw new HttpError(400, 'target: a session id or "uplink"', 2);
  const num = (k: string): number | undefined => {
    const v = body[k];
    if (v === undefined) return undefined;
    if (typeof v !== 'number') throw new HttpError(400, `${k}: must be a number`, 2);
    return v;
  };
  const snaplen = num('snaplen');
  const count = num('count');
  // The 101 goes out with the file's first bytes: a capture refused (no such session, a bad snaplen) is an ordinary error answer.
  let switched = false;
  const sink: CaptureSink = {
    write: (b, cb) => {
      if (!switched) {
        switched = true;
        socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${CAPTURE_PROTOCOL}\r\n\r\n`);
      }
      return socket.write(b, cb);
    },
    get writableLength() {
      return socket.writableLength;
    },
    on: (event, f) => socket.on(event, f),
    cork: () => socket.cork(),
    uncork: () => socket.uncork(),
    destroy: () => socket.destroy(),
  };
  const cap = gw.capture(target, sink, { ...(snaplen !== undefined ? { snaplen } : {}), ...(count !== undefined ? { count } : {}) });
  socket.on('error', () => cap.stop());
  socket.on('end', () => cap.stop());
  socket.on('close', () => cap.stop());
  // A client gone before these were listening has no capture either.
  if (socket.destroyed || !socket.readable) cap.stop();
  socket.resume();
  void cap.done.then(() => {
    if (!socket.destroyed) socket.end();
  });
}

/** The program first, then the rest of the namespace's processes. */
function orderPids(s: GatewaySession, pids: number[]): number[] {
  return s.pid > 0 ? [s.pid, ...pids.filter((p) => p !== s.pid).sort((a, b) => a - b)] : pids.sort((a, b) => a - b);
}

/** Connects the program's standard streams to an upgraded connection, in frames; `abandon` if the client goes first. */
function attach(
  socket: Socket,
  head: Buffer,
  child: import('node:child_process').ChildProcess,
  exited: Promise<ExitStatus>,
  hello: Buffer,
  abandon: () => void,
): void {
  let done = false;
  socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${ATTACH_PROTOCOL}\r\n\r\n`);
  socket.write(frame(FRAME_HELLO, hello));
  if (head.length > 0) child.stdin?.write(head);
  socket.resume();
  socket.on('data', (d: Buffer) => child.stdin?.write(d));
  socket.on('end', () => child.stdin?.end());
  child.stdin?.on('error', () => undefined);
  const out = (type: number) => (d: Buffer) => {
    if (!socket.destroyed) socket.write(frame(type, d));
  };
  child.stdout?.on('data', out(FRAME_STDOUT));
  child.stderr?.on('data', out(FRAME_STDERR));
  socket.on('close', () => {
    if (!done) abandon();
  });
  socket.on('error', () => undefined);
  // The exit frame follows the program's last output.
  const outputsDone = Promise.all(
    [child.stdout, child.stderr].map((s) =>
      s ? new Promise<void>((r) => (s.readableEnded ? r() : s.once('close', () => r()))) : Promise.resolve(),
    ),
  );
  void Promise.all([exited, outputsDone]).then(([st]) => {
    done = true;
    if (!socket.destroyed) socket.end(frame(FRAME_EXIT, Buffer.from(JSON.stringify(exitInfo(st)))));
  });
  void FRAME_ERROR;
}

/** Reads the JSON body of an upgrade request (Content-Length bytes from `head`, then the socket); returns it and the bytes after it. */
function upgradeBody(req: IncomingMessage, socket: Socket, head: Buffer): Promise<{ body: unknown; after: Buffer }> {
  const length = Number(req.headers['content-length'] ?? 0);
  if (!Number.isInteger(length) || length < 0 || length > MAX_BODY) return Promise.reject(new HttpError(400, 'bad Content-Length', 2));
  return new Promise((resolve, reject) => {
    let got = head;
    const finish = (): void => {
      socket.off('data', more);
      socket.pause();
      const text = got.subarray(0, length).toString('utf8');
      try {
        resolve({ body: text.trim() === '' ? undefined : JSON.parse(text), after: got.subarray(length) });
      } catch {
        reject(new HttpError(400, 'the request body is not JSON', 2));
      }
    };
    const more = (d: Buffer): void => {
      got = Buffer.concat([got, d]);
      if (got.length >= length) finish();
    };
    if (got.length >= length) finish();
    else {
      socket.on('data', more);
      socket.resume();
    }
  });
}

/** Removes the sockets of runs (run-PID.sock) whose process is gone: a run killed with SIGKILL leaves its own behind. */
function sweepDeadRuns(runDir: string): void {
  let names: string[];
  try {
    names = readdirSync(runDir);
  } catch {
    return;
  }
  for (const n of names) {
    const m = /^run-(\d+)\.sock$/.exec(n);
    if (!m || Number(m[1]) === process.pid) continue;
    try {
      process.kill(Number(m[1]), 0);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ESRCH') rmSync(`${runDir}/${n}`, { force: true });
    }
  }
}
