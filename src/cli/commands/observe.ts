// `vipnat sockets` and `vipnat capture`: what sessions hold and send, from one place.
import { closeSync, existsSync, fchmodSync, openSync, createWriteStream } from 'node:fs';
import { ControlClient } from '../../control/client.js';
import type { FlowView, KernelSocket, SessionSockets } from '../../control/protocol.js';
import { namespaceSockets, UserError } from '../../gateway/index.js';
import type { CaptureArgs, SocketsArgs } from '../args.js';
import { columns } from '../output.js';

interface Endpoint {
  address: string;
  port: number;
}

/** One line of `sockets`: a kernel socket (with the flow that carries it, if any), or a flow no socket holds. */
export interface SocketRow {
  session: number | null;
  vip: string | null;
  proto: string;
  family: 4 | 6;
  state: string;
  local: Endpoint;
  remote: Endpoint;
  processes: { pid: number; name: string }[];
  /** From the session's kernel (false: only the translator holds it). */
  kernel: boolean;
  inode: number | null;
  uid: number | null;
  recvQ: number | null;
  sendQ: number | null;
  /** As the network sees it: the VIP and outer port, and the peer (null: not translated, e.g. a listener or a local connection). */
  outside: { local: Endpoint; remote: Endpoint } | null;
  /** The translator's flow: its state and seconds left (null: none). */
  flow: { state: string; loopback: boolean; expiresIn: number } | null;
}

/** An IPv4-mapped IPv6 address as the IPv4 address it is (the translator's flows are IPv4). */
function plain(a: string): string {
  return a.startsWith('::ffff:') && a.includes('.') ? a.slice(7) : a;
}

function key(proto: string, l: Endpoint, r: Endpoint): string {
  return `${proto} ${plain(l.address)}:${l.port} ${plain(r.address)}:${r.port}`;
}

function kernelRow(s: { id: number; vip: string } | null, k: KernelSocket, f: FlowView | undefined): SocketRow {
  return {
    session: s?.id ?? null,
    vip: s?.vip ?? null,
    proto: k.proto,
    family: k.family,
    state: k.state,
    local: k.local,
    remote: k.remote,
    processes: k.processes,
    kernel: true,
    inode: k.inode,
    uid: k.uid,
    recvQ: k.recvQ,
    sendQ: k.sendQ,
    outside: f ? f.outer : null,
    flow: f ? { state: f.state, loopback: f.loopback, expiresIn: f.expiresIn } : null,
  };
}

/** A session's kernel sockets joined to the translator's flows by the session's view of each connection. */
export function socketRows(s: SessionSockets): SocketRow[] {
  const flows = new Map<string, FlowView>();
  for (const f of s.flows) flows.set(key(f.proto, f.inner.local, f.inner.remote), f);
  const rows: SocketRow[] = [];
  for (const k of s.kernel) {
    const k1 = key(k.proto, k.local, k.remote);
    const f = k.remote.port !== 0 ? flows.get(k1) : undefined;
    if (f) flows.delete(k1);
    rows.push(kernelRow(s, k, f));
  }
  // Flows no socket holds: ICMP, and connections the kernel has let go of (or not yet made).
  for (const f of flows.values()) {
    rows.push({
      session: s.id,
      vip: s.vip,
      proto: f.proto,
      family: f.family,
      state: '-',
      local: f.inner.local,
      remote: f.inner.remote,
      processes: [],
      kernel: false,
      inode: null,
      uid: null,
      recvQ: null,
      sendQ: null,
      outside: f.outer,
      flow: { state: f.state, loopback: f.loopback, expiresIn: f.expiresIn },
    });
  }
  return rows;
}

function isListening(r: SocketRow): boolean {
  return r.kernel && (r.state === 'LISTEN' || (r.proto === 'udp' && r.state === 'UNCONN'));
}

function ep(e: Endpoint, family: 4 | 6): string {
  const zero = e.port === 0 && (e.address === '0.0.0.0' || e.address === '::');
  if (zero) return '*:*';
  const a = e.address.includes(':') ? `[${e.address}]` : e.address;
  return `${family === 6 && e.address === '::' ? '[::]' : a}:${e.port === 0 ? '*' : e.port}`;
}

export function socketsTable(rows: SocketRow[]): string {
  const lines = rows.map((r) => [
    r.session === null ? '-' : String(r.session),
    r.proto + (r.family === 6 ? '6' : ''),
    r.state,
    ep(r.local, r.family),
    ep(r.remote, r.family),
    r.processes.map((p) => `${p.name}(${p.pid})`).join(',') || '-',
    r.outside ? `${ep(r.outside.local, r.family)} ${ep(r.outside.remote, r.family)}` : '-',
    r.flow ? `${r.flow.state}${r.flow.loopback ? ' loopback' : ''}` : '-',
  ]);
  return columns([['ID', 'PROTO', 'STATE', 'LOCAL', 'PEER', 'PROCESS', 'OUTSIDE (VIP:PORT PEER)', 'FLOW'], ...lines]);
}

/** The file of a namespace named on the command line: a path, a name under /run/netns, or a process's. */
function namespacePath(a: SocketsArgs): string {
  if (a.pid !== undefined) {
    const p = `/proc/${a.pid}/ns/net`;
    if (!existsSync(`/proc/${a.pid}`)) throw new UserError(`--pid ${a.pid}: no such process`);
    return p;
  }
  const n = a.netns!;
  const p = n.includes('/') ? n : `/run/netns/${n}`;
  if (!existsSync(p)) throw new UserError(`--netns ${n}: no such network namespace (${p})`);
  return p;
}

export async function sockets(a: SocketsArgs, runDir: string): Promise<number> {
  let rows: SocketRow[];
  if (a.netns !== undefined || a.pid !== undefined) {
    const ns = namespacePath(a);
    let kernel: KernelSocket[];
    try {
      kernel = namespaceSockets(ns);
    } catch (e) {
      throw new UserError((e as Error).message);
    }
    rows = kernel.map((k) => kernelRow(null, k, undefined));
  } else {
    const client = await ControlClient.find(runDir, a.name, a.named);
    const q = a.ids.length > 0 ? `?session=${a.ids.join(',')}` : '';
    const all = await client.call<SessionSockets[]>('GET', `/sockets${q}`);
    for (const s of all) if (s.error) process.stderr.write(`vipnat: session ${s.id}: ${s.error}\n`);
    rows = all.flatMap(socketRows);
  }
  if (a.listening) rows = rows.filter(isListening);
  process.stdout.write(a.json ? `${JSON.stringify(rows)}\n` : socketsTable(rows));
  return 0;
}

/**
 * Counts a pcapng stream's packets and reads the statistics at its end as
 * it passes: how many packets the file holds, and how many it left out.
 */
export class PcapngTally {
  packets = 0;
  leftOut = 0;
  private pending: Buffer = Buffer.alloc(0);
  private le = true;

  push(chunk: Buffer): void {
    let b = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    while (b.length >= 12) {
      const type = this.le ? b.readUInt32LE(0) : b.readUInt32BE(0);
      if (type === 0x0a0d0d0a) this.le = b.readUInt32LE(8) === 0x1a2b3c4d;
      const len = this.le ? b.readUInt32LE(4) : b.readUInt32BE(4);
      if (len < 12 || b.length < len) break;
      if (type === 6) this.packets++;
      else if (type === 5) this.leftOut += this.ifdrop(b.subarray(0, len));
      b = b.subarray(len);
    }
    this.pending = Buffer.from(b);
  }

  /** isb_ifdrop (option 5) of an Interface Statistics Block. */
  private ifdrop(block: Buffer): number {
    let at = 20;
    while (at + 4 <= block.length - 4) {
      const code = this.le ? block.readUInt16LE(at) : block.readUInt16BE(at);
      const len = this.le ? block.readUInt16LE(at + 2) : block.readUInt16BE(at + 2);
      if (code === 0) break;
      if (code === 5 && len === 8) return Number(this.le ? block.readBigUInt64LE(at + 4) : block.readBigUInt64BE(at + 4));
      at += 4 + ((len + 3) & ~3);
    }
    return 0;
  }
}

export async function capture(a: CaptureArgs, runDir: string, _version: string): Promise<number> {
  const toStdout = a.file === undefined || a.file === '-';
  if (toStdout && process.stdout.isTTY) {
    throw new UserError('capture: standard output is a terminal: write a file (-w FILE), or pipe it (vipnat capture 3 -w - | tshark -r -)');
  }
  const client = await ControlClient.find(runDir, a.name, a.named);
  let out: NodeJS.WritableStream;
  if (toStdout) out = process.stdout;
  else {
    let fd: number;
    try {
      // The file holds the sessions' traffic: the owner's only, also when it was there before.
      fd = openSync(a.file!, 'w', 0o600);
      fchmodSync(fd, 0o600);
    } catch (e) {
      throw new UserError(`-w ${a.file}: ${(e as Error).message}`);
    }
    out = createWriteStream('', { fd, autoClose: false });
    out.on('close', () => closeSync(fd));
  }
  const tally = new PcapngTally();
  const req = {
    target: a.target,
    ...(a.snaplen !== undefined ? { snaplen: a.snaplen } : {}),
    ...(a.count !== undefined ? { count: a.count } : {}),
  };
  const c = client.capture(req, out, (d) => tally.push(d));
  const onSignal = (): void => c.stop();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  // A reader that goes away (tshark -c, head) ends the capture, as it ends tcpdump.
  out.on('error', () => c.stop());
  try {
    await c.done;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
  await new Promise<void>((resolve) => (toStdout ? resolve() : out.end(() => resolve())));
  const what = a.target === 'uplink' ? 'every session' : `session ${a.target}`;
  process.stderr.write(
    `vipnat: ${tally.packets} packets captured of ${what}${tally.leftOut > 0 ? `, ${tally.leftOut} left out (the writer fell behind)` : ''}\n`,
  );
  return 0;
}
