// VIP -> session id indexes, looked up for every packet from the uplink (and for hairpin checks).
//
// Open addressing with linear probing in typed arrays, sized at least twice
// the session count so probe runs stay short. Sessions come and go rarely;
// lookups are the hot path.

/** Session ids start at 1; an empty slot (or "no session") is 0. */
export const NO_SESSION = 0;

function tableSize(maxSession: number): number {
  let size = 8;
  while (size < (maxSession + 1) * 2) size *= 2;
  return size;
}

/** VIP -> session id over IPv4 addresses (unsigned 32-bit numbers). */
export class Vip4Index {
  private readonly keys: Uint32Array;
  private readonly ids: Uint32Array;
  private readonly shift: number;

  constructor(maxSession: number) {
    const size = tableSize(maxSession);
    this.keys = new Uint32Array(size);
    this.ids = new Uint32Array(size);
    this.shift = 32 - Math.log2(size);
  }

  /** The slot holding `a`, or the empty slot where it would go. */
  private slot(a: number): number {
    // Fibonacci hashing: the product's top bits pick the slot, so VIPs that differ only in low bits spread out.
    let i = Math.imul(a, 0x9e3779b1) >>> this.shift;
    const mask = this.ids.length - 1;
    for (;;) {
      if (this.ids[i] === NO_SESSION || this.keys[i] === a) return i;
      i = (i + 1) & mask;
    }
  }

  /** The session holding `a`, or NO_SESSION. */
  get(a: number): number {
    return this.ids[this.slot(a >>> 0)]!;
  }

  set(a: number, id: number): void {
    const i = this.slot(a >>> 0);
    this.keys[i] = a;
    this.ids[i] = id;
  }

  delete(a: number): void {
    const mask = this.ids.length - 1;
    const i = this.slot(a >>> 0);
    if (this.ids[i] === NO_SESSION) return;
    this.ids[i] = NO_SESSION;
    // Re-place the rest of the probe run, so no later key is cut off from its home.
    for (let j = (i + 1) & mask; this.ids[j] !== NO_SESSION; j = (j + 1) & mask) {
      const id = this.ids[j]!;
      this.ids[j] = NO_SESSION;
      this.set(this.keys[j]!, id);
    }
  }
}

/** VIP -> session id over four-word addresses, open addressing in typed arrays (sessions change rarely). */
export class Vip6Index {
  private readonly keys: Uint32Array;
  private readonly ids: Uint32Array;
  private readonly mask: number;

  constructor(maxSession: number) {
    const size = tableSize(maxSession);
    this.keys = new Uint32Array(size * 4);
    this.ids = new Uint32Array(size);
    this.mask = size - 1;
  }

  private slot(w: Uint32Array, o: number): number {
    let h = Math.imul(
      w[o]! ^ Math.imul(w[o + 1]!, 0x9e3779b1) ^ Math.imul(w[o + 2]!, 0x85ebca6b) ^ Math.imul(w[o + 3]!, 0xc2b2ae35),
      0x27d4eb2f,
    );
    h ^= h >>> 15;
    let i = h & this.mask;
    for (;;) {
      const id = this.ids[i]!;
      if (id === NO_SESSION) return i;
      const k = i * 4;
      const ks = this.keys;
      if (ks[k] === w[o] && ks[k + 1] === w[o + 1] && ks[k + 2] === w[o + 2] && ks[k + 3] === w[o + 3]) return i;
      i = (i + 1) & this.mask;
    }
  }

  get(w: Uint32Array, o: number): number {
    return this.ids[this.slot(w, o)]!;
  }

  set(w: Uint32Array, o: number, id: number): void {
    const i = this.slot(w, o);
    for (let k = 0; k < 4; k++) this.keys[i * 4 + k] = w[o + k]!;
    this.ids[i] = id;
  }

  /** Removes a key by rebuilding its probe run (rare: a session ending). */
  delete(w: Uint32Array, o: number): void {
    const i = this.slot(w, o);
    if (this.ids[i] === NO_SESSION) return;
    this.ids[i] = NO_SESSION;
    let j = (i + 1) & this.mask;
    const tmp = new Uint32Array(4);
    while (this.ids[j] !== NO_SESSION) {
      const id = this.ids[j]!;
      tmp.set(this.keys.subarray(j * 4, j * 4 + 4));
      this.ids[j] = NO_SESSION;
      this.set(tmp, 0, id);
      j = (j + 1) & this.mask;
    }
  }
}
