// Port (and echo identifier) allocation for the shared address, endpoint-independent (RFC 4787 REQ-1, RFC 5382 REQ-1).
//
// A mapping is (session, protocol, inner port) -> outer port. Every flow from
// the same session and inner port uses the same outer port, whatever the
// remote: the mapping is endpoint-independent. Flows hold references; the
// outer port is free again when the last flow of the mapping expires. Ports
// never collide across sessions because each outer port has one owner.

/** Protocol slots: TCP, UDP and ICMP echo identifiers are separate spaces. */
export const PORTS_TCP = 0;
export const PORTS_UDP = 1;
export const PORTS_ICMP = 2;

export class PortAllocator {
  /** Mapping key owning each outer port, or -1; one array per protocol slot. */
  private readonly owner: Float64Array[];
  private readonly refs: Uint32Array[];
  private readonly cursor = [0, 0, 0];
  private readonly byKey = new Map<number, number>();
  /** Ports in use, per protocol slot. */
  readonly used = [0, 0, 0];

  constructor(
    readonly lo: number,
    readonly hi: number,
  ) {
    if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 1 && hi <= 65535 && lo <= hi)) {
      throw new RangeError(`shared port range ${lo}-${hi}: must be within 1-65535, low to high`);
    }
    this.owner = [0, 1, 2].map(() => new Float64Array(65536).fill(-1));
    this.refs = [0, 1, 2].map(() => new Uint32Array(65536));
    this.cursor = [lo, lo, lo];
  }

  get size(): number {
    return this.hi - this.lo + 1;
  }

  private static key(slot: number, session: number, innerPort: number): number {
    return (session * 3 + slot) * 65536 + innerPort;
  }

  /** The outer port for (session, inner port), taking a reference; -1 when every port is taken. */
  acquire(slot: number, session: number, innerPort: number): number {
    const key = PortAllocator.key(slot, session, innerPort);
    const owner = this.owner[slot]!;
    const refs = this.refs[slot]!;
    const have = this.byKey.get(key);
    if (have !== undefined) {
      refs[have]!++;
      return have;
    }
    if (this.used[slot]! >= this.size) return -1;
    // Prefer the inner port itself when it is in range and free (port preservation), else scan on.
    let p = innerPort >= this.lo && innerPort <= this.hi && owner[innerPort] === -1 ? innerPort : this.cursor[slot]!;
    while (owner[p] !== -1) p = p === this.hi ? this.lo : p + 1;
    this.cursor[slot] = p === this.hi ? this.lo : p + 1;
    owner[p] = key;
    refs[p] = 1;
    this.byKey.set(key, p);
    this.used[slot]!++;
    return p;
  }

  /** Drops one reference to an outer port; frees it with the last one. */
  release(slot: number, outerPort: number): void {
    const refs = this.refs[slot]!;
    const owner = this.owner[slot]!;
    if (owner[outerPort] === -1) return;
    if (--refs[outerPort]! > 0) return;
    this.byKey.delete(owner[outerPort]!);
    owner[outerPort] = -1;
    this.used[slot]!--;
  }

  /** Who holds an outer port: its session, or 0. */
  sessionOf(slot: number, outerPort: number): number {
    const k = this.owner[slot]![outerPort]!;
    return k < 0 ? 0 : Math.floor(Math.floor(k / 65536) / 3);
  }
}

/** The protocol slot of an IP protocol number, or -1 if it has no ports. */
export function portSlot(proto: number): number {
  return proto === 6 ? PORTS_TCP : proto === 17 ? PORTS_UDP : proto === 1 ? PORTS_ICMP : -1;
}
