// Byte-order helpers over packet bytes: big-endian (network order) reads and writes, and the little-endian read the virtio header needs.

/** Reads a big-endian unsigned 16-bit number. */
export function read16(b: Uint8Array, o: number): number {
  return (b[o]! << 8) | b[o + 1]!;
}

export function write16(b: Uint8Array, o: number, v: number): void {
  b[o] = (v >>> 8) & 0xff;
  b[o + 1] = v & 0xff;
}

/** Reads a big-endian unsigned 32-bit number. */
export function read32(b: Uint8Array, o: number): number {
  return ((b[o]! << 24) | (b[o + 1]! << 16) | (b[o + 2]! << 8) | b[o + 3]!) >>> 0;
}

export function write32(b: Uint8Array, o: number, v: number): void {
  b[o] = v >>> 24;
  b[o + 1] = (v >>> 16) & 0xff;
  b[o + 2] = (v >>> 8) & 0xff;
  b[o + 3] = v & 0xff;
}

/** Reads a little-endian unsigned 16-bit number (the virtio-net header's byte order on every Linux vipnat runs on). */
export function readLe16(b: Uint8Array, o: number): number {
  return b[o]! | (b[o + 1]! << 8);
}
