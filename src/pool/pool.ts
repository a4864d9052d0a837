// The VIP pool: hands out the lowest free address of a family and takes addresses back, without enumerating ranges.
import { type AddressRange, type Family, PoolError, formatAddress, parseAddress, rangeCidrs } from './ranges.js';

export const NO_VIP_MESSAGE = 'No virtual IP address is available for this session, please contact your administrator.';

/*
 * Per family, the ranges are sorted and a cursor (the "high-water mark") marks the
 * next address never handed out. Everything below the cursor was handed out once;
 * the ones given back are in `released` (a Set, for membership) and in `heap` (a
 * binary min-heap, for the lowest). Every released address is below the cursor, so
 * the lowest released address is the lowest free one; only when none is released
 * does the cursor advance. When the address just below the cursor comes back, the
 * cursor moves down instead (over any released run below it too), so memory stays
 * proportional to the addresses taken, even for a /64.
 *
 * Moving the cursor down leaves heap entries whose address is no longer in
 * `released`; they are skipped when popped, and the heap is rebuilt when they
 * outnumber the live ones, so both operations stay O(log n) amortized.
 *
 * An address asked for by name (takeValue) that lies at or above the cursor
 * goes into `claimed`; the cursor steps over claimed addresses as it reaches
 * them, so memory stays proportional to what is taken there too.
 */
class FamilyPool {
  readonly ranges: AddressRange[];
  readonly total: bigint;
  /** Index of the range holding the cursor; ranges.length when all were handed out once. */
  private idx = 0;
  /** Next never-handed-out address in ranges[idx]. */
  private next: bigint;
  /** How many addresses lie below the cursor. */
  private issued = 0n;
  /** Free addresses below the cursor. */
  private readonly released = new Set<bigint>();
  /** Min-heap over `released`, possibly with stale entries (see above). */
  private heap: bigint[] = [];
  /** Addresses at or above the cursor taken by name. */
  private readonly claimed = new Set<bigint>();

  constructor(ranges: AddressRange[]) {
    this.ranges = [...ranges].sort((a, b) => (a.first < b.first ? -1 : a.first > b.first ? 1 : 0));
    let total = 0n;
    for (const r of this.ranges) total += r.last - r.first + 1n;
    this.total = total;
    this.next = this.ranges[0]?.first ?? 0n;
  }

  take(): bigint | null {
    while (this.heap.length > 0) {
      const low = this.popHeap();
      if (this.released.delete(low)) return low;
    }
    for (;;) {
      const value = this.advance();
      if (value === null) return null;
      // A claimed address is taken already; now below the cursor, it counts as issued.
      if (!this.claimed.delete(value)) return value;
    }
  }

  /** Takes `value`, an address of this pool, by name; false if it is taken already. */
  takeValue(value: bigint): boolean {
    if (this.isTaken(value)) return false;
    if (this.released.delete(value)) return true; // its heap entry goes stale
    if (this.idx < this.ranges.length && value === this.next) {
      this.advance();
      // The cursor may now stand on claimed addresses: step over them.
      while (this.idx < this.ranges.length && this.claimed.delete(this.next)) this.advance();
    } else {
      this.claimed.add(value);
    }
    return true;
  }

  /** Hands out the cursor's address for the first time and moves the cursor on; null when every address was. */
  private advance(): bigint | null {
    const r = this.ranges[this.idx];
    if (r === undefined) return null;
    const value = this.next;
    this.issued++;
    if (value < r.last) {
      this.next = value + 1n;
    } else {
      this.idx++;
      this.next = this.ranges[this.idx]?.first ?? 0n;
    }
    return value;
  }

  /** Index of the range holding `value`, or -1. */
  rangeOf(value: bigint): number {
    let lo = 0;
    let hi = this.ranges.length - 1;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      const r = this.ranges[mid]!;
      if (value < r.first) hi = mid - 1;
      else if (value > r.last) lo = mid + 1;
      else return mid;
    }
    return -1;
  }

  /** True when `value`, an address of this pool, is handed out now. */
  isTaken(value: bigint): boolean {
    // Ranges are sorted, so any pool address below `next` is in ranges[idx] or an earlier one.
    const belowCursor = this.idx >= this.ranges.length || value < this.next;
    return (belowCursor && !this.released.has(value)) || this.claimed.has(value);
  }

  /** Gives back a taken address; the caller checked isTaken. */
  release(value: bigint): void {
    if (this.claimed.delete(value)) return;
    if (value !== this.previous()) {
      this.released.add(value);
      this.pushHeap(value);
      return;
    }
    // The top address came back: lower the cursor over it and any released run right below it.
    this.retreat();
    for (let below = this.previous(); below !== undefined && this.released.delete(below); below = this.previous()) {
      this.retreat();
    }
    if (this.released.size === 0) {
      this.heap.length = 0;
    } else if (this.heap.length > 2 * this.released.size + 64) {
      this.heap = [...this.released].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)); // sorted is a valid heap
    }
  }

  /** The address just below the cursor (the last one handed out for the first time). */
  private previous(): bigint | undefined {
    if (this.issued === 0n) return undefined;
    const r = this.ranges[this.idx];
    if (r !== undefined && this.next > r.first) return this.next - 1n;
    return this.ranges[this.idx - 1]?.last;
  }

  private retreat(): void {
    const r = this.ranges[this.idx];
    if (r !== undefined && this.next > r.first) {
      this.next--;
    } else {
      this.idx--;
      this.next = this.ranges[this.idx]!.last;
    }
    this.issued--;
  }

  private pushHeap(value: bigint): void {
    const h = this.heap;
    let i = h.length;
    h.push(value);
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const p = h[parent]!;
      if (p <= value) break;
      h[i] = p;
      i = parent;
    }
    h[i] = value;
  }

  private popHeap(): bigint {
    const h = this.heap;
    const top = h[0]!;
    const last = h.pop()!;
    const n = h.length;
    if (n === 0) return top;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const c = r < n && h[r]! < h[l]! ? r : l;
      if (h[c]! >= last) break;
      h[i] = h[c]!;
      i = c;
    }
    h[i] = last;
    return top;
  }

  free(): bigint {
    return this.total - this.issued + BigInt(this.released.size) - BigInt(this.claimed.size);
  }
}

function capped(n: bigint): number {
  return n > BigInt(Number.MAX_SAFE_INTEGER) ? Number.MAX_SAFE_INTEGER : Number(n);
}

export class VipPool {
  private readonly pools: Record<Family, FamilyPool>;
  private readonly ranges: AddressRange[];

  /** Ranges may come from parseRanges or elsewhere; overlapping usable ranges are refused. */
  constructor(ranges: AddressRange[]) {
    for (const r of ranges) {
      if ((r.family !== 4 && r.family !== 6) || r.first > r.last || r.first < 0n) {
        throw new PoolError(`pool ${JSON.stringify(r.text)}: not a valid address range; build ranges with parseRanges()`);
      }
      formatAddress(r.family, r.last); // throws if past the end of the address space
    }
    this.ranges = [...ranges];
    this.pools = {
      4: new FamilyPool(ranges.filter((r) => r.family === 4)),
      6: new FamilyPool(ranges.filter((r) => r.family === 6)),
    };
    for (const family of [4, 6] as const) {
      const sorted = this.pools[family].ranges;
      for (let i = 1; i < sorted.length; i++) {
        const a = sorted[i - 1]!;
        const b = sorted[i]!;
        if (b.first <= a.last) {
          throw new PoolError(`pool ${JSON.stringify(`${a.text},${b.text}`)}: ${b.text} overlaps ${a.text}`);
        }
      }
    }
  }

  /** Lowest free address of the family, or null when none is left (show NO_VIP_MESSAGE). */
  take(family: Family): string | null {
    const value = this.pools[family].take();
    return value === null ? null : formatAddress(family, value);
  }

  /** Takes this address of the pool (for a session that asks for it); false if it is taken. */
  takeAddress(addr: string): boolean {
    const parsed = parseAddress(addr.trim());
    if (parsed === null) throw new PoolError(`take ${JSON.stringify(addr)}: not an IPv4 or IPv6 address`);
    const pool = this.pools[parsed.family];
    if (pool.rangeOf(parsed.value) < 0) throw new PoolError(`take ${JSON.stringify(addr)}: not an address of this pool`);
    return pool.takeValue(parsed.value);
  }

  /** Whether this address of the pool is taken now. */
  isTaken(addr: string): boolean {
    const parsed = parseAddress(addr.trim());
    if (parsed === null) return false;
    const pool = this.pools[parsed.family];
    return pool.rangeOf(parsed.value) >= 0 && pool.isTaken(parsed.value);
  }

  release(addr: string): void {
    const parsed = parseAddress(addr.trim());
    if (parsed === null) {
      throw new PoolError(`release ${JSON.stringify(addr)}: not an IPv4 or IPv6 address`);
    }
    const pool = this.pools[parsed.family];
    if (pool.rangeOf(parsed.value) < 0) {
      throw new PoolError(`release ${JSON.stringify(addr)}: not an address of this pool`);
    }
    if (!pool.isTaken(parsed.value)) {
      throw new PoolError(`release ${JSON.stringify(addr)}: address is not taken (released twice?)`);
    }
    pool.release(parsed.value);
  }

  /** Usable addresses of the family, capped at Number.MAX_SAFE_INTEGER. */
  size(family: Family): number {
    return capped(this.pools[family].total);
  }

  /** Addresses of the family not taken, capped at Number.MAX_SAFE_INTEGER. */
  free(family: Family): number {
    return capped(this.pools[family].free());
  }

  families(): Family[] {
    return ([4, 6] as const).filter((f) => this.pools[f].total > 0n);
  }

  contains(addr: string): boolean {
    const parsed = parseAddress(addr.trim());
    return parsed !== null && this.pools[parsed.family].rangeOf(parsed.value) >= 0;
  }

  /** CIDRs to route to the gateway, in the order the ranges were given. */
  routes(): string[] {
    return this.ranges.flatMap(rangeCidrs);
  }
}
