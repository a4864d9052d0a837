// Internet checksum (RFC 1071) and incremental update (RFC 1624) over raw bytes.
//
// Sums are kept uncomplemented in a plain number and folded once at the end.
// A sum of up to 2^37 bytes fits in a double's 53-bit mantissa, so no packet
// ever needs an intermediate fold.

/** Adds the bytes buf[off, off+len) as big-endian 16-bit words to `acc`; an odd last byte is padded with zero. */
export function sum(buf: Uint8Array, off: number, len: number, acc: number): number {
  const end = off + (len & ~1);
  let i = off;
  for (; i < end; i += 2) acc += (buf[i]! << 8) | buf[i + 1]!;
  if (len & 1) acc += buf[i]! << 8;
  return acc;
}

/** Folds an uncomplemented sum to 16 bits (end-around carry). */
export function fold(acc: number): number {
  // Two rounds are not always enough for numbers past 2^32, so loop.
  while (acc > 0xffff) acc = (acc & 0xffff) + Math.floor(acc / 0x10000);
  return acc;
}

/** The checksum field value for a sum: the complement of the folded sum. */
export function finish(acc: number): number {
  return ~fold(acc) & 0xffff;
}

/** Sum of the IPv4 pseudo-header (RFC 793/768). Addresses are unsigned 32-bit numbers. */
export function pseudoSum4(src: number, dst: number, proto: number, length: number): number {
  return (src >>> 16) + (src & 0xffff) + (dst >>> 16) + (dst & 0xffff) + proto + length;
}

/**
 * RFC 1624 eqn. 3 works on the change of each field, ~m + m' for a field
 * changing from m to m': the deltas below. Deltas of several fields add up
 * (a number holds any count of them), and applyDelta folds them in once.
 */
export function delta16(oldValue: number, newValue: number): number {
  return (~oldValue & 0xffff) + (newValue & 0xffff);
}

/** The delta of a 32-bit field (an IPv4 address): both halves. */
export function delta32(oldValue: number, newValue: number): number {
  return (~(oldValue >>> 16) & 0xffff) + (~oldValue & 0xffff) + (newValue >>> 16) + (newValue & 0xffff);
}

/** The delta of a 128-bit field (an IPv6 address) held as four unsigned 32-bit words, oldW[oldOff..+3] -> newW[newOff..+3]. */
export function delta128(oldW: Uint32Array, oldOff: number, newW: Uint32Array, newOff: number): number {
  let acc = 0;
  for (let i = 0; i < 4; i++) acc += delta32(oldW[oldOff + i]!, newW[newOff + i]!);
  return acc;
}

/**
 * RFC 1624 eqn. 3 over summed deltas: HC' = ~(~HC + sum of (~m + m')).
 * `check` is the checksum as stored in the packet. The result can be 0;
 * callers with a "0 means none" rule (IPv4 UDP) send that as 0xffff.
 */
export function applyDelta(check: number, delta: number): number {
  return ~fold((~check & 0xffff) + delta) & 0xffff;
}

/** RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), for a 16-bit field changing from m to m' (see applyDelta for 0). */
export function update16(check: number, oldValue: number, newValue: number): number {
  return applyDelta(check, delta16(oldValue, newValue));
}

/** RFC 1624 eqn. 3 for a 32-bit field (an IPv4 address): both halves at once. */
export function update32(check: number, oldValue: number, newValue: number): number {
  return applyDelta(check, delta32(oldValue, newValue));
}

/**
 * Sum of the IPv6 pseudo-header (RFC 8200 section 8.1), read from the IPv6
 * header at `ipOff`: source (+8) and destination (+24) as they stand, the 32-bit
 * upper-layer length and the upper-layer protocol (not the first Next Header
 * when extension headers come between). With a Routing header that still has
 * segments left, the pseudo-header wants the final destination instead; this
 * reads the header as it is.
 */
export function pseudoSum6(buf: Uint8Array, ipOff: number, upperLength: number, nextHeader: number): number {
  return sum(buf, ipOff + 8, 32, 0) + (upperLength >>> 16) + (upperLength & 0xffff) + nextHeader;
}

/** RFC 1624 eqn. 3 for a 128-bit field (an IPv6 address), oldW[oldOff..+3] -> newW[newOff..+3]; same contract as update32. */
export function update128(check: number, oldW: Uint32Array, oldOff: number, newW: Uint32Array, newOff: number): number {
  return applyDelta(check, delta128(oldW, oldOff, newW, newOff));
}

// A packet handed over with its checksum left to the device (CHECKSUM_PARTIAL,
// virtio "needs checksum") holds in its checksum field the *uncomplemented*
// pseudo-header sum; the device adds the data and complements. A pseudo-header
// address change must then be added to that sum, not folded into a final
// checksum; and a port change needs nothing (the device sums the ports).

/** RFC 1624 for a partial checksum field: adds the change of a 32-bit pseudo-header word. */
export function updatePartial32(field: number, oldValue: number, newValue: number): number {
  return ~update32(~field & 0xffff, oldValue, newValue) & 0xffff;
}

/** updatePartial32 for a 128-bit pseudo-header address. */
export function updatePartial128(field: number, oldW: Uint32Array, oldOff: number, newW: Uint32Array, newOff: number): number {
  return ~update128(~field & 0xffff, oldW, oldOff, newW, newOff) & 0xffff;
}
