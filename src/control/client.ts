// The control client: asks a long-running gateway over its unix socket, and attaches to programs' standard streams.
import { request, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { UserError } from '../gateway/errors.js';
import { readdirSync } from 'node:fs';
import {
  answers,
  API_PREFIX,
  ATTACH_PROTOCOL,
  CAPTURE_PROTOCOL,
  FRAME_ERROR,
  FRAME_EXIT,
  FRAME_HELLO,
  FRAME_STDERR,
  FRAME_STDOUT,
  FrameReader,
  socketPath,
  type CaptureRequest,
  type ErrorBody,
  type ExitInfo,
} from './protocol.js';

/** An upgrade the gateway answered with an error instead: its message and exit status, as a UserError. */
function refusal(res: IncomingMessage, fail: (e: Error) => void): void {
  let data = '';
  res.setEncoding('utf8');
  res.on('data', (d: string) => (data += d));
  res.on('end', () => {
    let err: ErrorBody | null = null;
    try {
      err = JSON.parse(data) as ErrorBody;
    } catch {
      // not JSON
    }
    fail(new UserError(err?.message ?? `the gateway answered ${res.statusCode}`, err?.exitCode ?? 1));
  });
}

export class ControlClient {
  readonly path: string;

  constructor(
    runDir: string,
    readonly name: string,
  ) {
    this.path = socketPath(runDir, name);
  }

  /**
   * The gateway a client command means: `name` when it was given (`named`);
   * else "default" if it runs, else the only gateway running (a `run`'s
   * run-PID, say), else "default" (whose absence the first call reports).
   */
  static async find(runDir: string, name: string, named: boolean): Promise<ControlClient> {
    if (named || (await answers(socketPath(runDir, name)))) return new ControlClient(runDir, name);
    let names: string[] = [];
    try {
      names = readdirSync(runDir)
        .filter((f) => f.endsWith('.sock'))
        .map((f) => f.slice(0, -5));
    } catch {
      // No run directory: no gateway.
    }
    const live: string[] = [];
    for (const n of names) if (await answers(socketPath(runDir, n))) live.push(n);
    if (live.length === 1) return new ControlClient(runDir, live[0]!);
    if (live.length > 1) throw new UserError(`${live.length} gateways are running (${live.sort().join(', ')}): say which with --name`);
    return new ControlClient(runDir, name);
  }

  /**
   * A capture: the gateway's pcapng stream copied to `out`. Resolves once
   * the gateway has ended it (its count, the session's end, or stop(),
   * which asks it to finish and write its statistics).
   */
  capture(req: CaptureRequest, out: NodeJS.WritableStream, onData?: (d: Buffer) => void): { done: Promise<void>; stop: () => void } {
    const text = JSON.stringify(req);
    let socket: Socket | null = null;
    let stopAsked = false;
    const done = new Promise<void>((resolve, reject) => {
      const r = request({
        socketPath: this.path,
        method: 'POST',
        path: `${API_PREFIX}/capture`,
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(text),
          Connection: 'Upgrade',
          Upgrade: CAPTURE_PROTOCOL,
        },
      });
      r.on('error', (e: NodeJS.ErrnoException) => reject(this.connectError(e)));
      r.on('response', (res) => refusal(res, reject));
      r.on('upgrade', (_res, s: Socket, head: Buffer) => {
        socket = s;
        if (head.length > 0) {
          onData?.(head);
          out.write(head);
        }
        s.on('data', (d: Buffer) => {
          onData?.(d);
          // Keep up with a slow reader by letting the gateway see the backlog (it leaves packets out, counted).
          if (!out.write(d)) {
            s.pause();
            out.once('drain', () => s.resume());
          }
        });
        // The gateway has written all: our side goes too, so nothing keeps this process up.
        s.on('end', () => {
          s.end();
          resolve();
        });
        s.on('close', () => resolve());
        s.on('error', (e) => reject(new UserError(`capture: ${e.message}`)));
        // A reader that went away (head, tshark -c) takes nothing more: the capture ends, as tcpdump's does.
        const gone = (): void => {
          s.destroy();
          resolve();
        };
        out.once('error', gone);
        out.once('close', gone);
        if (stopAsked) s.end();
      });
      r.end(text);
    });
    const stop = (): void => {
      stopAsked = true;
      socket?.end();
    };
    return { done, stop };
  }

  /** What a failed connection means to the user. */
  private connectError(e: NodeJS.ErrnoException): UserError {
    if (e.code === 'ENOENT' || e.code === 'ECONNREFUSED') {
      return new UserError(`no gateway named "${this.name}" is running (nothing answers at ${this.path}): start one with vipnat up`);
    }
    if (e.code === 'EACCES' || e.code === 'EPERM') return new UserError(`the gateway's socket ${this.path} is root's: run this as root`);
    return new UserError(`cannot reach the gateway at ${this.path}: ${e.message}`);
  }

  /** One request; resolves with the JSON answer, or throws the gateway's error as a UserError with its exit status. */
  call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const text = body === undefined ? '' : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const req = request(
        {
          socketPath: this.path,
          method,
          path: `${API_PREFIX}${path}`,
          headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text) },
        },
        (res) => {
          let data = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (data += d));
          res.on('end', () => {
            let parsed: unknown;
            try {
              parsed = data ? JSON.parse(data) : null;
            } catch {
              reject(new UserError(`the gateway answered ${res.statusCode} with something that is not JSON`));
              return;
            }
            if ((res.statusCode ?? 500) >= 400) {
              const err = parsed as ErrorBody | null;
              reject(new UserError(err?.message ?? `the gateway answered ${res.statusCode}`, err?.exitCode ?? 1));
            } else {
              resolve(parsed as T);
            }
          });
        },
      );
      req.on('error', (e: NodeJS.ErrnoException) => reject(this.connectError(e)));
      req.end(text);
    });
  }

  /**
   * A request whose program's standard streams come over the connection
   * (start --wait, exec): `stdin` is copied to it, its output to `stdout`
   * and `stderr`. Resolves with the first frame's JSON once it arrives
   * (`hello`), and with how the program ended (`exit`).
   */
  attach(
    path: string,
    body: unknown,
    io: { stdin: NodeJS.ReadableStream | null; stdout: NodeJS.WritableStream; stderr: NodeJS.WritableStream },
  ): { hello: Promise<unknown>; exit: Promise<ExitInfo> } {
    const text = JSON.stringify(body);
    let helloResolve: (v: unknown) => void = () => undefined;
    let helloReject: (e: Error) => void = () => undefined;
    const hello = new Promise<unknown>((res, rej) => {
      helloResolve = res;
      helloReject = rej;
    });
    hello.catch(() => undefined);
    const exit = new Promise<ExitInfo>((resolve, reject) => {
      const fail = (e: Error): void => {
        helloReject(e);
        reject(e);
      };
      const req = request({
        socketPath: this.path,
        method: 'POST',
        path: `${API_PREFIX}${path}`,
        headers: {
          'Content-Type': 'application/json',
          'Content-Length': Buffer.byteLength(text),
          Connection: 'Upgrade',
          Upgrade: ATTACH_PROTOCOL,
        },
      });
      req.on('error', (e: NodeJS.ErrnoException) => fail(this.connectError(e)));
      // Not upgraded: an error answer.
      req.on('response', (res) => refusal(res, fail));
      req.on('upgrade', (_res, socket: Socket, head: Buffer) => {
        let finished = false;
        const reader = new FrameReader((type, payload) => {
          if (type === FRAME_HELLO) helloResolve(JSON.parse(payload.toString('utf8')));
          else if (type === FRAME_STDOUT) io.stdout.write(payload);
          else if (type === FRAME_STDERR) io.stderr.write(payload);
          else if (type === FRAME_EXIT || type === FRAME_ERROR) {
            finished = true;
            const info = JSON.parse(payload.toString('utf8')) as ExitInfo & ErrorBody;
            if (type === FRAME_EXIT) resolve(info);
            else fail(new UserError(info.message, info.exitCode));
          }
        });
        if (head.length > 0) reader.push(head);
        socket.on('data', (d: Buffer) => reader.push(d));
        socket.on('close', () => {
          if (!finished) fail(new UserError('the gateway closed the connection before the program ended'));
        });
        if (io.stdin) {
          io.stdin.on('data', (d: Buffer) => socket.write(d));
          io.stdin.on('end', () => socket.end());
        } else {
          socket.end();
        }
      });
      req.end(text);
    });
    return { hello, exit };
  }
}
