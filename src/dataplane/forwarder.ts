// Moves packets between devices through the translator; knows nothing of how devices are waited on.
import { DROP, Nat, REPLY, TO_UPLINK } from '../nat/index.js';
import { VirtioNetHdr } from '../wire/index.js';
import { DIR_IN, DIR_OUT, SIDE_INNER, SIDE_OUTER, type Tap } from './tap.js';

/** Where the forwarder writes a packet: a TUN fd in production, an array in tests. */
export interface Device {
  /** Writes one packet; false if the device refused it (it is then counted as dropped). */
  write(buf: Uint8Array, off: number, len: number): boolean;
}

/** Serializes calls into a translator whose state other threads share (a Mutex). */
export interface Lock {
  lock(): void;
  unlock(): void;
}

/** The lock of a translator no other thread shares. */
export const NO_LOCK: Lock = { lock: () => undefined, unlock: () => undefined };

export class ForwarderCounters {
  toUplink = 0;
  toSession = 0;
  /** IP bytes of the packets counted in toUplink and toSession (virtio headers left out). */
  bytesToUplink = 0;
  bytesToSession = 0;
  /** Packets the translator dropped (malformed, spoofed, no session...). */
  dropped = 0;
  /** Packets a device refused on write. */
  writeErrors = 0;
  /** Packets for a session whose device has just gone. */
  noDevice = 0;
  /** Packets written back to the uplink (the shared address's own traffic). */
  reflected = 0;
  /** Answers the translator wrote in place of a packet (an ICMP error, a reset), written back to whoever sent it. */
  replies = 0;
}

/**
 * Per-session counters in a Float64Array: packets and bytes out (from the
 * session), then in (to it), then its packets dropped (refused by the
 * translator, or not written to its device).
 */
export const SESSION_COUNTERS = 5;
const S_PACKETS_OUT = 0;
const S_BYTES_OUT = 1;
const S_PACKETS_IN = 2;
const S_BYTES_IN = 3;
const S_DROPPED = 4;

export class Forwarder {
  readonly counters = new ForwarderCounters();
  private readonly devices: (Device | null)[];
  /** SESSION_COUNTERS numbers per session id (the gateway reads them from its thread). */
  readonly perSession: Float64Array;
  private readonly vnet = new VirtioNetHdr();

  /**
   * `hdrLen` is the virtio_net_hdr in front of every packet (VNET_HDR_LEN when
   * the TUNs have offloads, 0 otherwise); it travels with the packet unchanged.
   * `guard` is taken around every call into the translator when other
   * threads' translators share its state; devices are written outside it.
   */
  constructor(
    readonly nat: Nat,
    private readonly uplink: Device,
    readonly maxSession: number,
    private readonly hdrLen = 0,
    private readonly guard: Lock = NO_LOCK,
    perSession?: Float64Array,
    private readonly tap: Tap | null = null,
  ) {
    this.devices = new Array<Device | null>(maxSession + 1).fill(null);
    this.perSession = perSession ?? new Float64Array((maxSession + 1) * SESSION_COUNTERS);
  }

  /**
   * Where the transport checksum sits when the kernel left it for the device
   * to finish (virtio NEEDS_CSUM: csum_start + csum_offset), else -1; -2 if
   * the header points outside the packet.
   */
  private csumAt(buf: Uint8Array, len: number): number {
    const h = this.vnet;
    if (this.hdrLen === 0 || !h.attach(buf, 0, len) || !h.needsCsum) return -1;
    const at = this.hdrLen + h.csumStart + h.csumOffset;
    return at + 2 <= len ? at : -2;
  }

  /**
   * Starts forwarding for session `id`: IPv4 inner/VIP as numbers (-1 when the
   * session has no IPv4), IPv6 as four words (null when it has none); a
   * `shared` session has no IPv4 VIP and leaves from the shared address.
   * `loopbackId` (the gateway's id of the session) makes 127.0.0.1 +
   * loopbackId reach the session's 127.0.0.1, when the translator has the
   * virtual loopback.
   */
  attach(
    id: number,
    dev: Device,
    inner: number,
    vip: number,
    inner6: Uint32Array | null = null,
    vip6: Uint32Array | null = null,
    shared = false,
    loopbackId = 0,
  ): void {
    if (shared) this.nat.addSharedSession(id, inner);
    else if (vip >= 0) this.nat.addSession(id, inner, vip);
    if (inner6 && vip6) this.nat.addSession6(id, inner6, vip6);
    if (loopbackId > 0) this.nat.addLoopback(id, loopbackId);
    this.devices[id] = dev;
    this.perSession.fill(0, id * SESSION_COUNTERS, (id + 1) * SESSION_COUNTERS);
  }

  /** Stops forwarding for session `id`; `dropFlows` false leaves its flows for Nat.dropFlows() (see Nat.removeSession). */
  detach(id: number, dropFlows = true): void {
    this.nat.removeSession(id, dropFlows);
    this.devices[id] = null;
  }

  /** A packet read from session `id`'s device. */
  fromSession(id: number, buf: Uint8Array, len: number, now: number): void {
    const hdr = this.hdrLen;
    const tap = this.tap !== null && this.tap.on && this.tap.wants(id) ? this.tap : null;
    const us = tap !== null ? tap.stamp() : 0;
    if (tap !== null) tap.put(us, id, SIDE_INNER, DIR_IN, buf, hdr, len - hdr);
    const at = this.csumAt(buf, len);
    let v = DROP;
    if (at !== -2) {
      this.guard.lock();
      try {
        v = this.nat.fromSession(id, buf, hdr, len - hdr, now, at);
      } finally {
        this.guard.unlock();
      }
    }
    if (v === TO_UPLINK) {
      if (tap !== null) tap.put(us, id, SIDE_OUTER, DIR_OUT, buf, hdr, len - hdr);
      if (this.uplink.write(buf, 0, len)) {
        this.counters.toUplink++;
        this.counters.bytesToUplink += len - hdr;
        this.countOut(id, len);
      } else {
        this.counters.writeErrors++;
        this.perSession[id * SESSION_COUNTERS + S_DROPPED]!++;
      }
    } else if (v > 0) {
      // Hairpin: translated for session v, which may be captured itself.
      if (tap !== null) tap.put(us, id, SIDE_OUTER, DIR_OUT, buf, hdr, len - hdr);
      if (this.tap !== null && this.tap.on && this.tap.wants(v))
        this.tap.put(this.tap.stamp(), v, SIDE_INNER, DIR_OUT, buf, hdr, len - hdr);
      this.countOut(id, len);
      this.toSession(v, buf, len);
    } else if (v === REPLY) {
      this.reply(id, buf);
      if (tap !== null) tap.put(us, id, SIDE_INNER, DIR_OUT, buf, hdr, this.nat.replyLength);
    } else {
      this.counters.dropped++;
      this.perSession[id * SESSION_COUNTERS + S_DROPPED]!++;
    }
  }

  /**
   * Writes the reply the translator left at buf[hdrLen] back to session
   * `id`'s device (0: the uplink's). Its checksums are complete and it is one small packet, so
   * its virtio header is all zeroes: no NEEDS_CSUM, no GSO, whatever the
   * header of the packet it answers said.
   */
  private reply(id: number, buf: Uint8Array): void {
    const dev = id === 0 ? this.uplink : this.devices[id];
    if (this.hdrLen > 0) buf.fill(0, 0, this.hdrLen);
    if (!dev) this.counters.noDevice++;
    else if (dev.write(buf, 0, this.hdrLen + this.nat.replyLength)) this.counters.replies++;
    else this.counters.writeErrors++;
  }

  /** A packet read from the uplink device. */
  fromUplink(buf: Uint8Array, len: number, now: number): void {
    const hdr = this.hdrLen;
    const tap = this.tap !== null && this.tap.on ? this.tap : null;
    // Whose it is is known only once translated, in place: it goes in the ring as it came, unpublished until then.
    const us = tap !== null ? tap.stamp() : 0;
    const staged = tap !== null && tap.stage(us, SIDE_OUTER, DIR_IN, buf, hdr, len - hdr);
    const at = this.csumAt(buf, len);
    let v = DROP;
    if (at !== -2) {
      this.guard.lock();
      try {
        v = this.nat.fromUplink(buf, hdr, len - hdr, now, at);
      } finally {
        this.guard.unlock();
      }
    }
    if (tap !== null) this.tapUplink(tap, us, staged, v, buf, len);
    if (v > 0) {
      this.toSession(v, buf, len);
    } else if (v === TO_UPLINK) {
      // Not a session's (shared address): back to the uplink's own stack.
      if (this.uplink.write(buf, 0, len)) this.counters.reflected++;
      else this.counters.writeErrors++;
    } else if (v === REPLY) {
      this.reply(0, buf);
    } else {
      this.counters.dropped++;
    }
  }

  /** A packet from the uplink, as it came (staged) and (for a session) as translated, for the captures that want it. */
  private tapUplink(tap: Tap, us: number, staged: boolean, v: number, buf: Uint8Array, len: number): void {
    const hdr = this.hdrLen;
    const id = v > 0 ? v : 0;
    if (v > 0 ? !tap.wants(v) : !tap.all) return;
    if (staged) tap.publish(id);
    else tap.leftOut(id, SIDE_OUTER);
    if (v > 0) tap.put(us, v, SIDE_INNER, DIR_OUT, buf, hdr, len - hdr);
    else if (v === TO_UPLINK) tap.put(us, 0, SIDE_OUTER, DIR_OUT, buf, hdr, len - hdr);
    else if (v === REPLY) tap.put(us, 0, SIDE_OUTER, DIR_OUT, buf, hdr, this.nat.replyLength);
  }

  /** A packet of session `id` went on its way: counted as the session's, without its virtio header. */
  private countOut(id: number, len: number): void {
    const c = this.perSession;
    const at = id * SESSION_COUNTERS;
    c[at + S_PACKETS_OUT]!++;
    c[at + S_BYTES_OUT]! += len - this.hdrLen;
  }

  private toSession(id: number, buf: Uint8Array, len: number): void {
    const dev = this.devices[id];
    if (!dev) {
      this.counters.noDevice++;
    } else if (dev.write(buf, 0, len)) {
      this.counters.toSession++;
      this.counters.bytesToSession += len - this.hdrLen;
      const c = this.perSession;
      const at = id * SESSION_COUNTERS;
      c[at + S_PACKETS_IN]!++;
      c[at + S_BYTES_IN]! += len - this.hdrLen;
    } else {
      this.counters.writeErrors++;
      this.perSession[id * SESSION_COUNTERS + S_DROPPED]!++;
    }
  }
}
