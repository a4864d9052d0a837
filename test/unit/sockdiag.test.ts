// Unit tests for the sock_diag answer parser: netlink bytes built by hand, read back as sockets (no OS access).
import { endianness } from 'node:os';
import { describe, expect, it } from 'vitest';
import { parseDiagMessages, type DiagStatus } from '../../src/linux/sockdiag.js';

const LE = endianness() === 'LE';
const SOCK_DIAG_BY_FAMILY = 20;
const NLMSG_ERROR = 2;
const NLMSG_DONE = 3;
const NLM_F_MULTI = 2;

/** One netlink message: a 16-byte header in host order, the payload, padding to 4 bytes. */
function nlmsg(type: number, payload: Uint8Array, seq = 1): Uint8Array {
  const len = 16 + payload.byteLength;
  const out = new Uint8Array((len + 3) & ~3);
  const dv = new DataView(out.buffer, out.byteOffset, out.byteLength);
  dv.setUint32(0, len, LE);
  dv.setUint16(4, type, LE);
  dv.setUint16(6, NLM_F_MULTI, LE);
  dv.setUint32(8, seq, LE);
  out.set(payload, 16);
  return out;
}

function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.byteLength, 0));
  let off = 0;
  for (const p of parts) {
    out.set(p, off);
    off += p.byteLength;
  }
  return out;
}

function v4(text: string): number[] {
  return [...text.split('.').map(Number), ...new Array<number>(12).fill(0)];
}

/** 16 bytes of an IPv6 address from its eight groups. */
function v6(groups: number[]): number[] {
  return groups.flatMap((g) => [g >> 8, g & 0xff]);
}

interface Msg {
  family: 2 | 10;
  state: number;
  src: number[];
  sport: number;
  dst: number[];
  dport: number;
  rq?: number;
  wq?: number;
  uid?: number;
  inode?: number;
  /** bytes of attributes after the fixed part, which the parser must skip */
  attrs?: number[];
}

/** struct inet_diag_msg (72 bytes) and any attributes after it. */
function diagMsg(m: Msg): Uint8Array {
  const attrs = m.attrs ?? [];
  const b = new Uint8Array(72 + attrs.length);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  b[0] = m.family;
  b[1] = m.state;
  dv.setUint16(4, m.sport, false);
  dv.setUint16(6, m.dport, false);
  b.set(m.src, 8);
  b.set(m.dst, 24);
  dv.setUint32(56, m.rq ?? 0, LE);
  dv.setUint32(60, m.wq ?? 0, LE);
  dv.setUint32(64, m.uid ?? 0, LE);
  dv.setUint32(68, m.inode ?? 0, LE);
  b.set(attrs, 72);
  return b;
}

function intPayload(n: number, extra = 0): Uint8Array {
  const b = new Uint8Array(4 + extra);
  new DataView(b.buffer).setInt32(0, n, LE);
  return b;
}

const done = (err = 0): Uint8Array => nlmsg(NLMSG_DONE, intPayload(err));
// NLMSG_ERROR: int error, then the request's own header.
const error = (err: number): Uint8Array => nlmsg(NLMSG_ERROR, intPayload(err, 16));

function parse(buf: Uint8Array, proto: 'tcp' | 'udp'): { sockets: ReturnType<typeof parseDiagMessages>; status: DiagStatus } {
  const status: DiagStatus = { done: false, errno: 0 };
  const sockets = parseDiagMessages(buf, buf.byteLength, proto, status);
  return { sockets, status };
}

describe('parseDiagMessages', () => {
  it('reads a TCP LISTEN on 0.0.0.0:9000 and an IPv6 ESTAB, skipping attributes, up to NLMSG_DONE', () => {
    const listen = diagMsg({
      family: 2,
      state: 10,
      src: v4('0.0.0.0'),
      sport: 9000,
      dst: v4('0.0.0.0'),
      dport: 0,
      rq: 0,
      wq: 128,
      uid: 0,
      inode: 4242,
    });
    // An INET_DIAG_SHUTDOWN attribute (5 bytes, padded to 8) as the kernel adds, then a 4-byte one.
    const estab = diagMsg({
      family: 10,
      state: 1,
      src: v6([0xfd00, 0, 0, 0, 0, 0, 0, 1]),
      sport: 443,
      dst: v6([0xfd00, 0, 0, 0, 0, 0, 0, 0x2a]),
      dport: 51000,
      rq: 7,
      wq: 3,
      uid: 1000,
      inode: 0xfffffff0,
      attrs: [5, 0, 8, 0, 0, 0, 0, 0, 4, 0, 9, 0],
    });
    const buf = concat(nlmsg(SOCK_DIAG_BY_FAMILY, listen), nlmsg(SOCK_DIAG_BY_FAMILY, estab), done());
    const { sockets, status } = parse(buf, 'tcp');
    expect(status).toEqual({ done: true, errno: 0 });
    expect(sockets).toEqual([
      {
        proto: 'tcp',
        family: 4,
        state: 'LISTEN',
        local: { address: '0.0.0.0', port: 9000 },
        remote: { address: '0.0.0.0', port: 0 },
        inode: 4242,
        uid: 0,
        recvQ: 0,
        sendQ: 128,
      },
      {
        proto: 'tcp',
        family: 6,
        state: 'ESTAB',
        local: { address: 'fd00::1', port: 443 },
        remote: { address: 'fd00::2a', port: 51000 },
        inode: 0xfffffff0,
        uid: 1000,
        recvQ: 7,
        sendQ: 3,
      },
    ]);
  });

  it('names UDP sockets UNCONN or ESTAB, as ss does', () => {
    const unconn = diagMsg({ family: 2, state: 7, src: v4('127.0.0.1'), sport: 53, dst: v4('0.0.0.0'), dport: 0, inode: 11 });
    const connected = diagMsg({
      family: 10,
      state: 1,
      src: v6([0, 0, 0, 0, 0, 0, 0, 1]),
      sport: 5000,
      dst: v6([0, 0, 0, 0, 0, 0, 0, 1]),
      dport: 53,
      inode: 12,
    });
    const { sockets, status } = parse(concat(nlmsg(SOCK_DIAG_BY_FAMILY, unconn), nlmsg(SOCK_DIAG_BY_FAMILY, connected), done()), 'udp');
    expect(status.done).toBe(true);
    expect(sockets.map((s) => [s.proto, s.family, s.state, s.local, s.remote])).toEqual([
      ['udp', 4, 'UNCONN', { address: '127.0.0.1', port: 53 }, { address: '0.0.0.0', port: 0 }],
      ['udp', 6, 'ESTAB', { address: '::1', port: 5000 }, { address: '::1', port: 53 }],
    ]);
  });

  it('names every TCP state, and an unknown one by number', () => {
    const states = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 99];
    const buf = concat(
      ...states.map((st) =>
        nlmsg(SOCK_DIAG_BY_FAMILY, diagMsg({ family: 2, state: st, src: v4('10.0.0.1'), sport: 1, dst: v4('10.0.0.2'), dport: 2 })),
      ),
      done(),
    );
    expect(parse(buf, 'tcp').sockets.map((s) => s.state)).toEqual([
      'ESTAB',
      'SYN-SENT',
      'SYN-RECV',
      'FIN-WAIT-1',
      'FIN-WAIT-2',
      'TIME-WAIT',
      'CLOSE',
      'CLOSE-WAIT',
      'LAST-ACK',
      'LISTEN',
      'CLOSING',
      'NEW-SYN-RECV',
      'UNKNOWN-99',
    ]);
  });

  it('writes IPv6 addresses as inet_ntop does (RFC 5952), IPv4-mapped ones with a dotted tail', () => {
    const cases: [number[], string][] = [
      [[0, 0, 0, 0, 0, 0, 0, 0], '::'],
      [[0, 0, 0, 0, 0, 0xffff, 0x0102, 0x0304], '::ffff:1.2.3.4'],
      [[0xfe80, 0, 0, 0, 0, 0, 0, 1], 'fe80::1'],
      [[0x2001, 0xdb8, 0, 1, 1, 1, 1, 1], '2001:db8:0:1:1:1:1:1'],
      [[0x2001, 0, 0, 1, 0, 0, 0, 1], '2001:0:0:1::1'],
      [[0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], '2001:db8::1:0:0:1'],
      [[0xfd00, 0xabcd, 0, 0, 0, 0, 0, 0], 'fd00:abcd::'],
      [[0x2001, 0xdb8, 0xa, 0xb, 0xc, 0xd, 0xe, 0xffff], '2001:db8:a:b:c:d:e:ffff'],
    ];
    const buf = concat(
      ...cases.map(([g]) =>
        nlmsg(SOCK_DIAG_BY_FAMILY, diagMsg({ family: 10, state: 10, src: v6(g), sport: 1, dst: v6([0, 0, 0, 0, 0, 0, 0, 0]), dport: 0 })),
      ),
      done(),
    );
    expect(parse(buf, 'tcp').sockets.map((s) => s.local.address)).toEqual(cases.map(([, t]) => t));
  });

  it('says the dump is not over when a datagram ends without NLMSG_DONE', () => {
    const m = diagMsg({ family: 2, state: 10, src: v4('0.0.0.0'), sport: 22, dst: v4('0.0.0.0'), dport: 0 });
    const { sockets, status } = parse(nlmsg(SOCK_DIAG_BY_FAMILY, m), 'tcp');
    expect(sockets).toHaveLength(1);
    expect(status).toEqual({ done: false, errno: 0 });
  });

  it('reports an NLMSG_ERROR as a positive errno, and reads nothing after it', () => {
    const m = nlmsg(SOCK_DIAG_BY_FAMILY, diagMsg({ family: 2, state: 10, src: v4('0.0.0.0'), sport: 22, dst: v4('0.0.0.0'), dport: 0 }));
    const { sockets, status } = parse(concat(error(-2), m, done()), 'udp');
    expect(sockets).toEqual([]);
    expect(status).toEqual({ done: true, errno: 2 });
  });

  it('skips an acknowledgement (error 0), and reports a DONE that carries an error', () => {
    const { status } = parse(concat(error(0), done(-16)), 'tcp');
    expect(status).toEqual({ done: true, errno: 16 });
  });

  it('parses only the first len bytes, and refuses a message that runs past them', () => {
    const m = nlmsg(SOCK_DIAG_BY_FAMILY, diagMsg({ family: 2, state: 10, src: v4('0.0.0.0'), sport: 22, dst: v4('0.0.0.0'), dport: 0 }));
    const buf = concat(m, done());
    const status: DiagStatus = { done: false, errno: 0 };
    expect(parseDiagMessages(buf, m.byteLength, 'tcp', status)).toHaveLength(1);
    expect(status.done).toBe(false);
    expect(() => parseDiagMessages(buf, m.byteLength - 8, 'tcp')).toThrow(/message at offset 0 says it is 88 bytes, 80 are left/);
    expect(() => parseDiagMessages(nlmsg(SOCK_DIAG_BY_FAMILY, new Uint8Array(40)), 56, 'tcp')).toThrow(
      /inet_diag_msg at offset 0 is 40 bytes, not 72/,
    );
  });
});
