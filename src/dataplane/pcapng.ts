// pcapng blocks (draft-ietf-opsawg-pcapng): the section header, interfaces, packets and interface statistics of a capture file.
//
// Every block, in host byte order (the section header's magic tells readers which):
//
//    0                   1                   2                   3
//   +---------------------------------------------------------------+
//   |                          block type                           |
//   |                      block total length                       |
//   /                  body, options (padded to 32 bits)            /
//   |                      block total length                       |
//   +---------------------------------------------------------------+
//
// Options are code (16), length (16), value padded to 32 bits; opt_endofopt (0) ends them.

const SHB = 0x0a0d0d0a;
const IDB = 0x00000001;
const EPB = 0x00000006;
const ISB = 0x00000005;
const BYTE_ORDER_MAGIC = 0x1a2b3c4d;

/** Raw IP: each packet starts with its IPv4 or IPv6 header (the version nibble tells which). */
export const LINKTYPE_RAW = 101;

const OPT_END = 0;
const OPT_COMMENT = 1;
const SHB_HARDWARE = 2;
const SHB_OS = 3;
const SHB_USERAPPL = 4;
const IF_NAME = 2;
const IF_DESCRIPTION = 3;
const IF_TSRESOL = 9;
const EPB_FLAGS = 2;
const ISB_STARTTIME = 2;
const ISB_ENDTIME = 3;
const ISB_IFRECV = 4;
const ISB_IFDROP = 5;
const ISB_USRDELIV = 8;

/** epb_flags' direction bits (inbound 1, outbound 2), as the interface saw the packet. */
export const EPB_INBOUND = 1;
export const EPB_OUTBOUND = 2;

/** Bytes of an Enhanced Packet Block's fixed part, its epb_flags and end of options, and its trailing length. */
export const EPB_OVERHEAD = 28 + 8 + 4 + 4;

const pad4 = (n: number): number => (n + 3) & ~3;

type Option = { code: number; value: Buffer };

function textOption(code: number, text: string): Option {
  return { code, value: Buffer.from(text, 'utf8') };
}

function u64Option(code: number, v: number): Option {
  const b = Buffer.alloc(8);
  const n = BigInt(Math.max(0, Math.floor(v)));
  if (os.le) b.writeBigUInt64LE(n);
  else b.writeBigUInt64BE(n);
  return { code, value: b };
}

/** A timestamp option (two 32-bit words, high first) in microseconds. */
function tsOption(code: number, us: number): Option {
  const b = Buffer.alloc(8);
  writeU32(b, 0, Math.floor(us / 0x100000000));
  writeU32(b, 4, us >>> 0);
  return { code, value: b };
}

const os = { le: new Uint8Array(new Uint32Array([1]).buffer)[0] === 1 };

function writeU32(b: Buffer, at: number, v: number): void {
  if (os.le) b.writeUInt32LE(v >>> 0, at);
  else b.writeUInt32BE(v >>> 0, at);
}

function writeU16(b: Buffer, at: number, v: number): void {
  if (os.le) b.writeUInt16LE(v, at);
  else b.writeUInt16BE(v, at);
}

function optionsLength(opts: Option[]): number {
  return opts.length === 0 ? 0 : opts.reduce((n, o) => n + 4 + pad4(o.value.length), 4);
}

function writeOptions(b: Buffer, at: number, opts: Option[]): number {
  if (opts.length === 0) return at;
  for (const o of opts) {
    writeU16(b, at, o.code);
    writeU16(b, at + 2, o.value.length);
    o.value.copy(b, at + 4);
    at += 4 + pad4(o.value.length);
  }
  writeU16(b, at, OPT_END);
  writeU16(b, at + 2, 0);
  return at + 4;
}

/** A block of `type` with a fixed body (already laid out) and options. */
function block(type: number, body: Buffer, opts: Option[]): Buffer {
  const total = 12 + body.length + optionsLength(opts);
  const b = Buffer.alloc(total);
  writeU32(b, 0, type);
  writeU32(b, 4, total);
  body.copy(b, 8);
  writeOptions(b, 8 + body.length, opts);
  writeU32(b, total - 4, total);
  return b;
}

/** The Section Header Block that starts a file: who wrote it, on what. */
export function sectionHeader(app: string, hardware: string, system: string, comment?: string): Buffer {
  const body = Buffer.alloc(16);
  writeU32(body, 0, BYTE_ORDER_MAGIC);
  writeU16(body, 4, 1); // major
  writeU16(body, 6, 0); // minor
  body.fill(0xff, 8, 16); // section length: not given
  const opts = [textOption(SHB_HARDWARE, hardware), textOption(SHB_OS, system), textOption(SHB_USERAPPL, app)];
  if (comment) opts.unshift(textOption(OPT_COMMENT, comment));
  return block(SHB, body, opts);
}

/** An Interface Description Block: raw IP, microsecond timestamps. Interfaces are numbered 0, 1, ... in the order written. */
export function interfaceDescription(name: string, description: string, snaplen: number): Buffer {
  const body = Buffer.alloc(8);
  writeU16(body, 0, LINKTYPE_RAW);
  writeU16(body, 2, 0);
  writeU32(body, 4, snaplen);
  return block(IDB, body, [
    textOption(IF_NAME, name),
    textOption(IF_DESCRIPTION, description),
    { code: IF_TSRESOL, value: Buffer.from([6]) },
  ]);
}

/**
 * An Enhanced Packet Block of `data` (the captured bytes of a packet
 * `origLen` long) on interface `iface` at `us` microseconds since the epoch,
 * with its direction (EPB_INBOUND, EPB_OUTBOUND).
 */
export function enhancedPacket(iface: number, us: number, data: Uint8Array, origLen: number, direction: number): Buffer {
  const cap = data.length;
  const total = EPB_OVERHEAD + pad4(cap);
  const b = Buffer.allocUnsafe(total);
  writeU32(b, 0, EPB);
  writeU32(b, 4, total);
  writeU32(b, 8, iface);
  writeU32(b, 12, Math.floor(us / 0x100000000));
  writeU32(b, 16, us >>> 0);
  writeU32(b, 20, cap);
  writeU32(b, 24, origLen);
  b.set(data, 28);
  let at = 28 + cap;
  const end = 28 + pad4(cap);
  if (end > at) b.fill(0, at, end);
  at = end;
  writeU16(b, at, EPB_FLAGS);
  writeU16(b, at + 2, 4);
  writeU32(b, at + 4, direction & 3);
  writeU16(b, at + 8, OPT_END);
  writeU16(b, at + 10, 0);
  writeU32(b, at + 12, total);
  return b;
}

/** What an interface saw while captured: packets seen, left out (not in the file), and written. */
export interface InterfaceCounts {
  received: number;
  dropped: number;
  delivered: number;
}

/** An Interface Statistics Block: the capture's start and end, and what it saw, wrote and left out. */
export function interfaceStatistics(iface: number, startUs: number, endUs: number, c: InterfaceCounts): Buffer {
  const body = Buffer.alloc(12);
  writeU32(body, 0, iface);
  writeU32(body, 4, Math.floor(endUs / 0x100000000));
  writeU32(body, 8, endUs >>> 0);
  return block(ISB, body, [
    tsOption(ISB_STARTTIME, startUs),
    tsOption(ISB_ENDTIME, endUs),
    u64Option(ISB_IFRECV, c.received),
    u64Option(ISB_IFDROP, c.dropped),
    u64Option(ISB_USRDELIV, c.delivered),
  ]);
}
