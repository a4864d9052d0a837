// Test helper: runs packets through a Nat at an offset inside a larger buffer and checks nothing around them was touched.
import type { Nat } from '../../src/nat/index.js';

/** The clock the translator tests pass as `now` unless they say otherwise. */
export const NOW = 1000;

const OFF = 6;

export interface Result {
  v: number;
  out: Uint8Array;
  /** Bytes around the packet in the buffer were left alone. */
  clean: boolean;
}

/** Runs `pkt` through fromSession at a non-zero offset inside a larger buffer. */
export function send(nat: Nat, id: number, pkt: Uint8Array, now = NOW): Result {
  const buf = new Uint8Array(OFF + pkt.length + 5).fill(0xa5);
  buf.set(pkt, OFF);
  const v = nat.fromSession(id, buf, OFF, pkt.length, now);
  return { v, out: buf.slice(OFF, OFF + pkt.length), clean: around(buf, pkt.length) };
}

/** Runs `pkt` through fromUplink the same way. */
export function recv(nat: Nat, pkt: Uint8Array, now = NOW): Result {
  const buf = new Uint8Array(OFF + pkt.length + 5).fill(0xa5);
  buf.set(pkt, OFF);
  const v = nat.fromUplink(buf, OFF, pkt.length, now);
  return { v, out: buf.slice(OFF, OFF + pkt.length), clean: around(buf, pkt.length) };
}

function around(buf: Uint8Array, len: number): boolean {
  for (let i = 0; i < OFF; i++) if (buf[i] !== 0xa5) return false;
  for (let i = OFF + len; i < buf.length; i++) if (buf[i] !== 0xa5) return false;
  return true;
}
