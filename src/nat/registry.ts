// The IPv4 session registry every IPv4 path reads: each session's inner address and VIP, which sessions are live or shared, and the VIP index.
import { NO_SESSION, Vip4Index } from './vips.js';

export class Sessions4 {
  readonly innerOf: Uint32Array;
  /** The session's VIP, or the shared address for a shared session. */
  readonly vipOf: Uint32Array;
  readonly active: Uint8Array;
  /** 1 for sessions on the shared address (no VIP of their own). */
  readonly onShared: Uint8Array;
  readonly byVip: Vip4Index;

  /**
   * Sessions 1-maxSession. `sharedAddr` is the shared fallback's address, or
   * -1 without one: no address read from a packet (unsigned) is -1.
   */
  constructor(
    maxSession: number,
    readonly sharedAddr: number,
  ) {
    this.innerOf = new Uint32Array(maxSession + 1);
    this.vipOf = new Uint32Array(maxSession + 1);
    this.active = new Uint8Array(maxSession + 1);
    this.onShared = new Uint8Array(maxSession + 1);
    this.byVip = new Vip4Index(maxSession);
  }

  add(id: number, inner: number, vip: number): void {
    this.checkFree(id);
    if (this.byVip.get(vip) !== NO_SESSION) throw new Error(`VIP ${vip >>> 0} is already held by session ${this.byVip.get(vip)}`);
    this.innerOf[id] = inner;
    this.vipOf[id] = vip;
    this.active[id] = 1;
    this.byVip.set(vip, id);
  }

  /** A session without a VIP of its own: it leaves from the shared address (the caller checks there is one). */
  addShared(id: number, inner: number): void {
    this.checkFree(id);
    this.innerOf[id] = inner;
    this.vipOf[id] = this.sharedAddr;
    this.onShared[id] = 1;
    this.active[id] = 1;
  }

  remove(id: number): void {
    if (!this.active[id]) return;
    this.active[id] = 0;
    if (!this.onShared[id]) this.byVip.delete(this.vipOf[id]!);
    this.onShared[id] = 0;
  }

  /**
   * Whether a packet from a session to `addr` goes straight back in
   * (hairpin): to the session holding that VIP, or, for the shared address,
   * through the shared fallback.
   */
  hairpins(addr: number): boolean {
    return this.byVip.get(addr) !== NO_SESSION || addr === this.sharedAddr;
  }

  private checkFree(id: number): void {
    if (!(id >= 1 && id < this.active.length)) throw new RangeError(`session id ${id}: must be 1-${this.active.length - 1}`);
    if (this.active[id]) throw new Error(`session ${id} is already active`);
  }
}
