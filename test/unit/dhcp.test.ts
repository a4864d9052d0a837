// Unit tests for DHCP: the BOOTP/DHCP message codec against the RFC 2131 layout (byte-exact, malformed input, RFC 3396
// concatenation, a round-trip property), the IPv4/UDP carrier (checksums checked by the independent helpers of
// packets.ts), and LeaseClient, the RFC 2131 client state machine, driven by fabricated server messages and injected time.
import { describe, it, expect } from 'vitest';
import fc from 'fast-check';
import {
  BOOTREPLY,
  BOOTREQUEST,
  DHCP_CLIENT_PORT,
  DHCP_SERVER_PORT,
  DHCPACK,
  DHCPDECLINE,
  DHCPDISCOVER,
  type DhcpMessage,
  DHCPNAK,
  DHCPOFFER,
  DHCPRELEASE,
  DHCPREQUEST,
  OPT_CLIENT_ID,
  OPT_END,
  OPT_LEASE_TIME,
  OPT_MESSAGE,
  OPT_MESSAGE_TYPE,
  OPT_PAD,
  OPT_PARAMETERS,
  OPT_REBINDING_TIME,
  OPT_RENEWAL_TIME,
  OPT_REQUESTED_IP,
  OPT_ROUTER,
  OPT_SERVER_ID,
  OPT_SUBNET_MASK,
  optionU32,
  readDhcp,
  u32Option,
  udp4Payload,
  writeDhcp,
  writeUdp4,
} from '../../src/wire/index.js';
import { type Lease, type LeaseAction, LeaseClient, type LeaseState, MAX_DECLINES, timerDelay } from '../../src/lease/index.js';
import { addr, checksum, hex, mulberry32, pseudoHeader, toHex, u16, u32, UDP } from './packets.js';

// ---------------------------------------------------------------------------------------------------------------------
// Helpers

/** A DHCP message with every field given a plain default. */
function message(over: Partial<DhcpMessage> = {}): DhcpMessage {
  return {
    op: BOOTREQUEST,
    xid: 0x01020304,
    secs: 0,
    broadcast: false,
    ciaddr: 0,
    yiaddr: 0,
    siaddr: 0,
    giaddr: 0,
    chaddr: hex('02 00 00 00 00 01'),
    type: DHCPDISCOVER,
    options: new Map(),
    ...over,
  };
}

/** writeDhcp into a fresh 1500-byte buffer; the written bytes. */
function encode(m: DhcpMessage): Uint8Array {
  const buf = new Uint8Array(1500);
  const n = writeDhcp(buf, 0, m);
  return buf.slice(0, n);
}

/** A raw DHCP message: a BOOTREPLY header (xid 0xa1b2c3d4, the cookie, unless told otherwise) and then `options` as given. */
function raw(options: readonly number[], h: { cookie?: number; htype?: number; hlen?: number } = {}): Uint8Array {
  const b = new Uint8Array(240 + options.length);
  b.set([BOOTREPLY, h.htype ?? 1, h.hlen ?? 6, 0, 0xa1, 0xb2, 0xc3, 0xd4], 0);
  const cookie = h.cookie ?? 0x63825363;
  b.set([cookie >>> 24, (cookie >>> 16) & 0xff, (cookie >>> 8) & 0xff, cookie & 0xff], 236);
  b.set(options, 240);
  return b;
}

function readAll(b: Uint8Array): DhcpMessage | null {
  return readDhcp(b, 0, b.length);
}

/** Sets the IPv4 header checksum of buf (header of `ihl` bytes) right again, with the independent helper. */
function refixHeader(buf: Uint8Array, ihl = 20): void {
  buf[10] = 0;
  buf[11] = 0;
  const c = checksum(buf.subarray(0, ihl));
  buf[10] = c >>> 8;
  buf[11] = c & 0xff;
}

/** A DHCP message carried in IPv4/UDP from `src`:sport to `dst`:dport; the packet. */
function dhcpPacket(m: DhcpMessage, src: number, sport: number, dst: number, dport: number, room = 0): Uint8Array {
  const buf = new Uint8Array(1600 + room);
  const n = writeDhcp(buf, 28, m);
  const total = writeUdp4(buf, src, sport, dst, dport, n);
  return buf.slice(0, total + room);
}

// ---------------------------------------------------------------------------------------------------------------------
// The message codec

describe('writeDhcp', () => {
  it('writes a DHCPDISCOVER byte for byte as RFC 2131 lays it out (header, cookie at 236, options from 240, 300 bytes)', () => {
    const m = message({
      op: BOOTREQUEST,
      xid: 0x3903f326,
      broadcast: true,
      chaddr: hex('00 0b 82 01 fc 42'),
      type: DHCPDISCOVER,
      options: new Map([
        [OPT_CLIENT_ID, hex('01 00 0b 82 01 fc 42')],
        [OPT_PARAMETERS, hex('01 03 06 2a')],
      ]),
    });
    const expected = new Uint8Array(300);
    expected.set([0x01, 0x01, 0x06, 0x00], 0); // op BOOTREQUEST, htype Ethernet, hlen 6, hops 0
    expected.set([0x39, 0x03, 0xf3, 0x26], 4); // xid
    expected.set([0x00, 0x00, 0x80, 0x00], 8); // secs 0, flags: BROADCAST
    // ciaddr, yiaddr, siaddr, giaddr (12..27): 0.0.0.0
    expected.set([0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42], 28); // chaddr, padded to 16 bytes; sname (44) and file (108) empty
    expected.set([0x63, 0x82, 0x53, 0x63], 236); // magic cookie
    expected.set(
      [
        ...[0x35, 0x01, 0x01], // 53 message type: DHCPDISCOVER, first
        ...[0x3d, 0x07, 0x01, 0x00, 0x0b, 0x82, 0x01, 0xfc, 0x42], // 61 client identifier
        ...[0x37, 0x04, 0x01, 0x03, 0x06, 0x2a], // 55 parameter request list
        0xff, // END; the rest is padding to 300 bytes
      ],
      240,
    );
    const buf = new Uint8Array(600).fill(0xee); // dirty: every byte of the 300 must be written
    expect(writeDhcp(buf, 0, m)).toBe(300);
    expect(toHex(buf.subarray(0, 300))).toBe(toHex(expected));
    expect(buf[300]).toBe(0xee);
  });

  it('puts ciaddr, yiaddr, siaddr, giaddr, secs and the flags at their offsets (a DHCPACK, no broadcast bit)', () => {
    const m = message({
      op: BOOTREPLY,
      xid: 0xfedcba98,
      secs: 0x0102,
      broadcast: false,
      ciaddr: addr('192.168.1.10'),
      yiaddr: addr('192.168.1.11'),
      siaddr: addr('192.168.1.12'),
      giaddr: addr('192.168.1.13'),
      chaddr: hex('aa bb cc dd ee ff'),
      type: DHCPACK,
      options: new Map([[OPT_LEASE_TIME, hex('00 00 0e 10')]]),
    });
    const b = encode(m);
    expect(toHex(b.subarray(0, 44))).toBe(
      '02010600' + 'fedcba98' + '0102' + '0000' + 'c0a8010a' + 'c0a8010b' + 'c0a8010c' + 'c0a8010d' + 'aabbccddeeff' + '00'.repeat(10),
    );
    expect(toHex(b.subarray(236, 250))).toBe('63825363' + '350105' + '330400000e10' + 'ff');
    expect(b.subarray(44, 236).every((x) => x === 0)).toBe(true); // sname and file
    expect(b.subarray(250).every((x) => x === 0)).toBe(true);
  });

  it('writes the message type (53) first, once, whatever the map holds; PAD and END entries of the map are not written', () => {
    const m = message({
      type: DHCPREQUEST,
      options: new Map([
        [OPT_SERVER_ID, hex('0a 00 00 01')],
        [OPT_MESSAGE_TYPE, hex('07')],
        [OPT_PAD, hex('11 22')],
        [OPT_END, hex('33')],
        [OPT_REQUESTED_IP, hex('0a 00 00 32')],
      ]),
    });
    const b = encode(m);
    expect(toHex(b.subarray(240, 240 + 3 + 6 + 6 + 1))).toBe('350103' + '36040a000001' + '32040a000032' + 'ff');
    expect(b.subarray(256).every((x) => x === 0)).toBe(true);
    expect(readAll(b)!.type).toBe(DHCPREQUEST);
  });

  it('a message longer than 300 bytes is as long as its options, END last', () => {
    const m = message({ options: new Map([[43, new Uint8Array(200).fill(7)]]) });
    const buf = new Uint8Array(1500).fill(0xee);
    const n = writeDhcp(buf, 0, m);
    expect(n).toBe(240 + 3 + 2 + 200 + 1);
    expect(buf[n - 1]).toBe(OPT_END);
    expect(buf[n]).toBe(0xee);
    expect(buf.subarray(245, 445).every((x) => x === 7)).toBe(true);
  });

  it('writes at an offset, leaving the bytes before it alone', () => {
    const m = message({ xid: 0xcafef00d, options: new Map([[12, hex('68 6f 73 74')]]) });
    const buf = new Uint8Array(1500).fill(0x5a);
    const n = writeDhcp(buf, 37, m);
    expect(n).toBe(300);
    expect(buf.subarray(0, 37).every((x) => x === 0x5a)).toBe(true);
    expect(buf.subarray(37, 37 + 300)).toEqual(encode(m));
    expect(readDhcp(buf, 37, n)).toEqual(m);
  });

  it('a chaddr longer than 16 bytes is cut to 16; a shorter one is padded with zeros', () => {
    const long = encode(message({ chaddr: Uint8Array.from({ length: 20 }, (_, i) => i + 1) }));
    expect(toHex(long.subarray(28, 44))).toBe(toHex(Uint8Array.from({ length: 16 }, (_, i) => i + 1)));
    expect(long[44]).toBe(0);
    const short = encode(message({ chaddr: hex('01 02') }));
    expect(toHex(short.subarray(28, 44))).toBe('0102' + '00'.repeat(14));
  });

  it('an option value of 255 bytes is written, one of 256 is a RangeError', () => {
    const ok = encode(message({ options: new Map([[43, new Uint8Array(255).fill(1)]]) }));
    expect(ok[243]).toBe(43);
    expect(ok[244]).toBe(255);
    expect(() => writeDhcp(new Uint8Array(1500), 0, message({ options: new Map([[43, new Uint8Array(256)]]) }))).toThrow(RangeError);
  });

  it('an empty option value is written as code and length 0, and read back empty', () => {
    const b = encode(message({ options: new Map([[80, new Uint8Array(0)]]) }));
    expect(toHex(b.subarray(240, 246))).toBe('350101' + '5000' + 'ff');
    expect(readAll(b)!.options.get(80)).toEqual(new Uint8Array(0));
  });
});

describe('readDhcp', () => {
  it('reads the fields of a written message back', () => {
    const m = message({
      op: BOOTREPLY,
      xid: 0x80000001,
      secs: 65535,
      broadcast: true,
      ciaddr: addr('10.1.2.3'),
      yiaddr: addr('10.1.2.4'),
      siaddr: addr('255.255.255.255'),
      giaddr: addr('10.1.2.6'),
      chaddr: hex('de ad be ef 00 01'),
      type: DHCPOFFER,
      options: new Map([
        [OPT_SERVER_ID, u32Option(addr('10.1.2.1'))],
        [OPT_LEASE_TIME, u32Option(86400)],
      ]),
    });
    const back = readAll(encode(m));
    expect(back).toEqual(m);
    expect(back!.xid).toBe(0x80000001); // unsigned
    expect(back!.siaddr).toBe(0xffffffff);
    expect(back!.options.has(OPT_MESSAGE_TYPE)).toBe(false); // the type is `type`, not an option
  });

  it('the broadcast flag is the top bit of flags alone', () => {
    const b = encode(message());
    b[10] = 0x7f;
    b[11] = 0xff;
    expect(readAll(b)!.broadcast).toBe(false);
    b[10] = 0x80;
    b[11] = 0x01;
    expect(readAll(b)!.broadcast).toBe(true);
  });

  it('chaddr is the first 6 bytes of the 16', () => {
    const b = encode(message({ chaddr: Uint8Array.from({ length: 16 }, (_, i) => 0xa0 + i) }));
    expect(toHex(readAll(b)!.chaddr)).toBe('a0a1a2a3a4a5');
  });

  it('skips PAD bytes before, between and after options', () => {
    const m = readAll(raw([OPT_PAD, OPT_PAD, 53, 1, 2, OPT_PAD, 54, 4, 10, 0, 0, 1, OPT_PAD, OPT_PAD, OPT_END]));
    expect(m).not.toBeNull();
    expect(m!.type).toBe(DHCPOFFER);
    expect([...m!.options.keys()]).toEqual([OPT_SERVER_ID]);
    expect(optionU32(m!, OPT_SERVER_ID)).toBe(addr('10.0.0.1'));
  });

  it('concatenates an option given in several parts (RFC 3396), even with other options between them', () => {
    const m = readAll(raw([53, 1, 5, 3, 4, 10, 0, 0, 1, 1, 4, 255, 255, 255, 0, 3, 4, 10, 0, 0, 2, 3, 0, 3, 1, 9, OPT_END]));
    expect(m).not.toBeNull();
    expect(toHex(m!.options.get(OPT_ROUTER)!)).toBe('0a000001' + '0a000002' + '09');
    expect(optionU32(m!, OPT_SUBNET_MASK)).toBe(addr('255.255.255.0'));
    expect(optionU32(m!, OPT_ROUTER)).toBeNull(); // 9 bytes: not a u32
  });

  it('a long option split over two parts reads back as one value of their total length', () => {
    const part1 = Array.from({ length: 255 }, (_, i) => i & 0xff);
    const part2 = Array.from({ length: 100 }, (_, i) => (i * 7) & 0xff);
    const m = readAll(raw([53, 1, 5, 43, 255, ...part1, 43, 100, ...part2, OPT_END]));
    expect(m!.options.get(43)).toEqual(Uint8Array.from([...part1, ...part2]));
  });

  it('ignores what follows END, even bytes that would not parse', () => {
    const m = readAll(raw([53, 1, 2, OPT_END, 51, 200, 1, 2]));
    expect(m).not.toBeNull();
    expect(m!.options.size).toBe(0);
  });

  it('accepts options that run exactly to the end without END', () => {
    const m = readAll(raw([53, 1, 2, 54, 4, 10, 0, 0, 1]));
    expect(optionU32(m!, OPT_SERVER_ID)).toBe(addr('10.0.0.1'));
  });

  it('an option running past the end is null: its value, or its length byte', () => {
    expect(readAll(raw([53, 1, 2, 51, 4, 0, 0, 0x0e]))).toBeNull(); // 4 bytes said, 3 there
    expect(readAll(raw([53, 1, 2, 51]))).toBeNull(); // no length byte
    expect(readAll(raw([51, 200, 53, 1, 2, OPT_END]))).toBeNull(); // swallows the type and END
  });

  it('respects `len`: a message cut short inside an option is null, though the buffer goes on', () => {
    const b = encode(message({ options: new Map([[43, new Uint8Array(20).fill(3)]]) }));
    expect(readDhcp(b, 0, b.length)).not.toBeNull();
    expect(readDhcp(b, 0, 240 + 3 + 2 + 10)).toBeNull();
    expect(readDhcp(b, 0, 240 + 3 + 2 + 20)).not.toBeNull(); // ends right after the option, no END
  });

  it('no message type, or one that is not 1 byte long, is null', () => {
    expect(readAll(raw([54, 4, 10, 0, 0, 1, OPT_END]))).toBeNull();
    expect(readAll(raw([OPT_END, 0, 0]))).toBeNull();
    expect(readAll(raw([53, 2, 1, 1, OPT_END]))).toBeNull();
    expect(readAll(raw([53, 0, OPT_END]))).toBeNull();
    expect(readAll(raw([53, 1, 1, 53, 1, 3, OPT_END]))).toBeNull(); // two parts concatenate to 2 bytes
  });

  it('a wrong magic cookie, htype or hlen is null', () => {
    const opts = [53, 1, 2, OPT_END];
    expect(readAll(raw(opts))).not.toBeNull();
    expect(readAll(raw(opts, { cookie: 0x63825364 }))).toBeNull();
    expect(readAll(raw(opts, { cookie: 0x63538263 }))).toBeNull(); // byte-swapped
    expect(readAll(raw(opts, { cookie: 0 }))).toBeNull();
    expect(readAll(raw(opts, { htype: 6 }))).toBeNull();
    expect(readAll(raw(opts, { hlen: 16 }))).toBeNull();
  });

  it('fewer than 243 bytes (header, cookie and a message type) is null', () => {
    expect(readAll(raw([]))).toBeNull();
    expect(readAll(raw([53, 1]))).toBeNull();
    expect(readAll(raw([53, 1, 1]))).not.toBeNull();
    expect(readDhcp(new Uint8Array(0), 0, 0)).toBeNull();
    expect(readDhcp(new Uint8Array(100), 0, 100)).toBeNull();
  });

  it('option values are copies: changing the buffer afterwards does not change them', () => {
    const b = raw([53, 1, 5, 54, 4, 10, 0, 0, 1, OPT_END]);
    const m = readAll(b)!;
    b.fill(0, 240);
    b.fill(0, 28, 44);
    expect(optionU32(m, OPT_SERVER_ID)).toBe(addr('10.0.0.1'));
  });

  it('round-trips random messages: readDhcp(writeDhcp(m)) equals m (options 1..254 but 53, values up to 255 bytes)', () => {
    const code = fc.integer({ min: 1, max: 254 }).filter((c) => c !== OPT_MESSAGE_TYPE);
    const options = fc
      .uniqueArray(fc.tuple(code, fc.uint8Array({ maxLength: 255 })), { selector: ([c]) => c, maxLength: 12 })
      // The whole message, at the offset, must fit the 1500-byte buffer: 240 + 3 + options + END.
      .filter((os) => os.reduce((n, [, v]) => n + 2 + v.length, 0) <= 1500 - 64 - 244);
    const msg = fc.record({
      op: fc.integer({ min: 0, max: 255 }),
      xid: fc.nat({ max: 0xffffffff }),
      secs: fc.nat({ max: 0xffff }),
      broadcast: fc.boolean(),
      ciaddr: fc.nat({ max: 0xffffffff }),
      yiaddr: fc.nat({ max: 0xffffffff }),
      siaddr: fc.nat({ max: 0xffffffff }),
      giaddr: fc.nat({ max: 0xffffffff }),
      chaddr: fc.uint8Array({ minLength: 6, maxLength: 6 }),
      type: fc.integer({ min: 0, max: 255 }),
      options: options.map((os) => new Map(os)),
    });
    fc.assert(
      fc.property(msg, fc.nat({ max: 64 }), (m, off) => {
        const buf = new Uint8Array(1500).fill(0xcc);
        const n = writeDhcp(buf, off, m);
        expect(off + n).toBeLessThanOrEqual(1500);
        expect(n).toBeGreaterThanOrEqual(300);
        const back = readDhcp(buf, off, n);
        expect(back).toEqual(m);
        expect([...back!.options.keys()]).toEqual([...m.options.keys()]);
      }),
      { numRuns: 300, seed: 0x0d4c9 },
    );
  });

  it('never throws on arbitrary bytes behind a valid header', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (tail) => {
        const m = readAll(raw([...tail]));
        if (m !== null) {
          expect(m.options.has(OPT_MESSAGE_TYPE)).toBe(false);
          for (const [c] of m.options) expect(c !== OPT_PAD && c !== OPT_END).toBe(true);
        }
      }),
      { numRuns: 500, seed: 0x7a11 },
    );
  });
});

describe('optionU32 / u32Option', () => {
  it('u32Option writes big-endian', () => {
    expect(toHex(u32Option(addr('192.168.0.1')))).toBe('c0a80001');
    expect(toHex(u32Option(0))).toBe('00000000');
    expect(toHex(u32Option(0xffffffff))).toBe('ffffffff');
    expect(toHex(u32Option(3600))).toBe('00000e10');
  });

  it('optionU32 reads a 4-byte option unsigned; absent or of another length is null', () => {
    const m = message({
      options: new Map([
        [OPT_LEASE_TIME, hex('ff ff ff ff')],
        [OPT_SERVER_ID, hex('0a 00 00')],
        [OPT_ROUTER, hex('0a 00 00 01 0a')],
        [OPT_SUBNET_MASK, new Uint8Array(0)],
      ]),
    });
    expect(optionU32(m, OPT_LEASE_TIME)).toBe(0xffffffff);
    expect(optionU32(m, OPT_SERVER_ID)).toBeNull();
    expect(optionU32(m, OPT_ROUTER)).toBeNull();
    expect(optionU32(m, OPT_SUBNET_MASK)).toBeNull();
    expect(optionU32(m, OPT_RENEWAL_TIME)).toBeNull();
  });

  it('optionU32 inverts u32Option for every 32-bit number', () => {
    fc.assert(
      fc.property(fc.nat({ max: 0xffffffff }), (v) => {
        expect(optionU32(message({ options: new Map([[51, u32Option(v)]]) }), 51)).toBe(v);
      }),
      { seed: 0x32 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// The IPv4/UDP carrier

describe('writeUdp4', () => {
  const SRC = addr('192.0.2.10');
  const DST = addr('198.51.100.20');

  it('writes the IPv4 and UDP headers in front of the payload and returns the packet length', () => {
    const buf = new Uint8Array(28 + 5);
    buf.set([1, 2, 3, 4, 5], 28);
    expect(writeUdp4(buf, SRC, 68, DST, 67, 5)).toBe(33);
    expect(buf[0]).toBe(0x45); // version 4, IHL 5
    expect(buf[1]).toBe(0x10); // TOS: low delay
    expect(u16(buf, 2)).toBe(33);
    expect(u32(buf, 4)).toBe(0); // id 0, no flags, no offset
    expect(buf[8]).toBe(64);
    expect(buf[9]).toBe(UDP);
    expect(u32(buf, 12)).toBe(SRC);
    expect(u32(buf, 16)).toBe(DST);
    expect(u16(buf, 20)).toBe(68);
    expect(u16(buf, 22)).toBe(67);
    expect(u16(buf, 24)).toBe(13);
    expect([...buf.subarray(28)]).toEqual([1, 2, 3, 4, 5]);
  });

  it('both checksums are valid (header; UDP over the pseudo-header), for random addresses, ports and payloads, odd ones too', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffffffff }),
        fc.nat({ max: 0xffff }),
        fc.nat({ max: 0xffff }),
        fc.uint8Array({ maxLength: 700 }),
        (src, dst, sport, dport, payload) => {
          const buf = new Uint8Array(28 + payload.length).fill(0x99); // stale checksum bytes must not matter
          buf.set(payload, 28);
          const n = writeUdp4(buf, src, sport, dst, dport, payload.length);
          expect(n).toBe(28 + payload.length);
          expect(checksum(buf.subarray(0, 20))).toBe(0);
          expect(checksum(pseudoHeader(src, dst, UDP, 8 + payload.length), buf.subarray(20, n))).toBe(0);
          expect(u16(buf, 26)).not.toBe(0); // 0 would mean "no checksum"
          expect(udp4Payload(buf, n, sport, dport)).toEqual({ off: 28, len: payload.length, src });
        },
      ),
      { numRuns: 300, seed: 0x0d9 },
    );
  });

  it('a UDP checksum that computes to 0 is sent as 0xffff (RFC 768), and still verifies', () => {
    // With a 2-byte payload of zero, the checksum comes out c; a payload word of c makes the one's complement sum 0xffff.
    const buf = new Uint8Array(30);
    writeUdp4(buf, SRC, 68, DST, 67, 2);
    const c = u16(buf, 26);
    buf[28] = c >>> 8;
    buf[29] = c & 0xff;
    writeUdp4(buf, SRC, 68, DST, 67, 2);
    expect(u16(buf, 26)).toBe(0xffff);
    expect(checksum(pseudoHeader(SRC, DST, UDP, 10), buf.subarray(20, 30))).toBe(0);
  });

  it('carries a DHCP message end to end: writeDhcp at 28, writeUdp4, udp4Payload, readDhcp', () => {
    const m = message({ xid: 0x55aa55aa, broadcast: true, options: new Map([[OPT_CLIENT_ID, hex('01 02 00 00 00 00 01')]]) });
    const p = dhcpPacket(m, 0, DHCP_CLIENT_PORT, 0xffffffff, DHCP_SERVER_PORT);
    expect(p.length).toBe(328);
    const at = udp4Payload(p, p.length, DHCP_CLIENT_PORT, DHCP_SERVER_PORT);
    expect(at).toEqual({ off: 28, len: 300, src: 0 });
    expect(readDhcp(p, at!.off, at!.len)).toEqual(m);
  });
});

describe('udp4Payload', () => {
  const SERVER_IP = addr('10.0.0.1');
  const reply = (): Uint8Array => dhcpPacket(message({ op: BOOTREPLY, type: DHCPOFFER }), SERVER_IP, 67, addr('10.0.0.50'), 68);

  it('accepts what writeUdp4 writes: the payload offset, length and source', () => {
    const p = reply();
    expect(udp4Payload(p, p.length, 67, 68)).toEqual({ off: 28, len: 300, src: SERVER_IP });
  });

  it('accepts trailing bytes past the IPv4 total length (link padding) and reports the UDP length', () => {
    const p = dhcpPacket(message(), SERVER_IP, 67, 0xffffffff, 68, 18);
    expect(udp4Payload(p, p.length, 67, 68)).toEqual({ off: 28, len: 300, src: SERVER_IP });
  });

  it('accepts a header with IPv4 options (IHL 6): the payload starts after them', () => {
    const p = reply();
    const q = new Uint8Array(p.length + 4);
    q.set(p.subarray(0, 20), 0);
    q.set([1, 1, 1, 0], 20); // NOP NOP NOP EOL
    q.set(p.subarray(20), 24);
    q[0] = 0x46;
    q[2] = (q.length >>> 8) & 0xff;
    q[3] = q.length & 0xff;
    refixHeader(q, 24);
    expect(udp4Payload(q, q.length, 67, 68)).toEqual({ off: 32, len: 300, src: SERVER_IP });
  });

  it('rejects other ports: the source, the destination, or both swapped', () => {
    const p = reply();
    expect(udp4Payload(p, p.length, 68, 68)).toBeNull();
    expect(udp4Payload(p, p.length, 67, 67)).toBeNull();
    expect(udp4Payload(p, p.length, 68, 67)).toBeNull();
  });

  it('rejects fragments (MF set, or an offset) but not DF', () => {
    for (const [flags, ok] of [
      [0x2000, false], // more fragments
      [0x0001, false], // offset 8
      [0x1fff, false],
      [0x4000, true], // don't fragment
    ] as const) {
      const p = reply();
      p[6] = flags >>> 8;
      p[7] = flags & 0xff;
      refixHeader(p);
      expect(udp4Payload(p, p.length, 67, 68) !== null).toBe(ok);
    }
  });

  it('rejects a bad header checksum', () => {
    const p = reply();
    p[11] = p[11]! ^ 0x01;
    expect(udp4Payload(p, p.length, 67, 68)).toBeNull();
    const q = reply();
    q[8] = 63; // TTL changed, checksum not
    expect(udp4Payload(q, q.length, 67, 68)).toBeNull();
  });

  it('rejects truncated packets: shorter than the total length, or than 28 bytes', () => {
    const p = reply();
    expect(udp4Payload(p, p.length - 1, 67, 68)).toBeNull();
    expect(udp4Payload(p, 27, 67, 68)).toBeNull();
    expect(udp4Payload(p, 0, 67, 68)).toBeNull();
  });

  it('rejects a UDP length past the IPv4 total, or under 8', () => {
    for (const ulen of [309, 7, 0]) {
      const p = reply();
      p[24] = ulen >>> 8;
      p[25] = ulen & 0xff;
      expect(udp4Payload(p, p.length, 67, 68)).toBeNull();
    }
    const p = reply();
    p[24] = 0;
    p[25] = 8; // an empty datagram is one
    expect(udp4Payload(p, p.length, 67, 68)).toEqual({ off: 28, len: 0, src: SERVER_IP });
  });

  it('rejects IPv6, another protocol, an IHL under 5, and a total length under the headers', () => {
    const v6 = reply();
    v6[0] = 0x65;
    refixHeader(v6);
    expect(udp4Payload(v6, v6.length, 67, 68)).toBeNull();
    const tcp = reply();
    tcp[9] = 6;
    refixHeader(tcp);
    expect(udp4Payload(tcp, tcp.length, 67, 68)).toBeNull();
    const ihl = reply();
    ihl[0] = 0x44;
    refixHeader(ihl, 16);
    expect(udp4Payload(ihl, ihl.length, 67, 68)).toBeNull();
    const short = reply();
    short[2] = 0;
    short[3] = 27;
    refixHeader(short);
    expect(udp4Payload(short, short.length, 67, 68)).toBeNull();
  });
});

// ---------------------------------------------------------------------------------------------------------------------
// LeaseClient

const MAC = hex('02 00 5e 10 20 30');
const CLIENT_ID = hex('ff 00 00 00 07 00 02 00 00 ab 11 02 00 5e 10 20 30'); // RFC 4361: IAID + DUID
const SERVER = addr('10.0.0.1');
const SERVER2 = addr('10.0.0.2');
const OFFERED = addr('10.0.0.50');
const MASK = addr('255.255.255.0');
const ROUTER = addr('10.0.0.254');
const PARAMS = Uint8Array.from([OPT_SUBNET_MASK, OPT_ROUTER, OPT_LEASE_TIME, OPT_SERVER_ID, OPT_RENEWAL_TIME, OPT_REBINDING_TIME]);
const XIDS = [0x11111111, 0xdeadbeef, 0x33333333, 0x44444444, 0x55555555, 0x66666666];
const [X1, X2, X3, X4] = XIDS as [number, number, number, number];

type Send = Extract<LeaseAction, { kind: 'send' }>;

/** A `random` that hands out `xs` in order, and fails the test when asked for more. */
function randoms(xs: readonly number[]): () => number {
  let i = 0;
  return () => {
    const x = xs[i++];
    if (x === undefined) throw new Error('random() called more often than the test expected');
    return x;
  };
}

function client(o: { timeoutMs?: number; xids?: readonly number[] } = {}): LeaseClient {
  return new LeaseClient({ clientId: CLIENT_ID, chaddr: MAC, random: randoms(o.xids ?? XIDS), timeoutMs: o.timeoutMs });
}

interface ReplyOpts {
  xid: number;
  type: number;
  op?: number;
  yiaddr?: number;
  /** Option 54; null leaves it out. */
  server?: number | null;
  /** Option 51, seconds; null leaves it out. */
  lease?: number | null;
  t1?: number;
  t2?: number;
  mask?: number;
  router?: number;
  text?: string;
}

/** A server's message. */
function reply(o: ReplyOpts): DhcpMessage {
  const options = new Map<number, Uint8Array>();
  const server = o.server === undefined ? SERVER : o.server;
  if (server !== null) options.set(OPT_SERVER_ID, u32Option(server));
  const lease = o.lease === undefined ? (o.type === DHCPNAK ? null : 100) : o.lease;
  if (lease !== null) options.set(OPT_LEASE_TIME, u32Option(lease));
  if (o.t1 !== undefined) options.set(OPT_RENEWAL_TIME, u32Option(o.t1));
  if (o.t2 !== undefined) options.set(OPT_REBINDING_TIME, u32Option(o.t2));
  if (o.mask !== undefined) options.set(OPT_SUBNET_MASK, u32Option(o.mask));
  if (o.router !== undefined) options.set(OPT_ROUTER, u32Option(o.router));
  if (o.text !== undefined) options.set(OPT_MESSAGE, new TextEncoder().encode(o.text));
  return {
    op: o.op ?? BOOTREPLY,
    xid: o.xid,
    secs: 0,
    broadcast: true,
    ciaddr: 0,
    yiaddr: o.type === DHCPNAK ? 0 : (o.yiaddr ?? OFFERED),
    siaddr: SERVER,
    giaddr: 0,
    chaddr: MAC,
    type: o.type,
    options,
  };
}

/** What every client message must be, and that it survives writeDhcp/readDhcp unchanged. */
function checkSend(s: Send): void {
  const m = s.message;
  expect(m.op).toBe(BOOTREQUEST);
  expect(m.chaddr).toEqual(MAC);
  expect(m.options.get(OPT_CLIENT_ID)).toEqual(CLIENT_ID);
  // The broadcast flag while the client has no address; flags 0 in a DHCPDECLINE or DHCPRELEASE (RFC 2131 Table 5).
  expect(m.broadcast).toBe(m.ciaddr === 0 && m.type !== DHCPDECLINE && m.type !== DHCPRELEASE);
  expect(m.yiaddr).toBe(0);
  expect(m.siaddr).toBe(0);
  expect(m.giaddr).toBe(0);
  const buf = new Uint8Array(1500);
  const n = writeDhcp(buf, 0, m);
  const back = readDhcp(buf, 0, n);
  expect(back).not.toBeNull();
  expect(back!.type).toBe(m.type);
  expect(back!.options).toEqual(m.options);
  expect(back).toEqual(m);
}

/** The sends among `actions`, each checked. */
function sends(actions: readonly LeaseAction[]): Send[] {
  const out = actions.filter((a): a is Send => a.kind === 'send');
  for (const s of out) checkSend(s);
  return out;
}

/** `actions` is one send; it, checked. */
function oneSend(actions: readonly LeaseAction[]): Send {
  expect(actions.map((a) => a.kind)).toEqual(['send']);
  return sends(actions)[0]!;
}

function only<K extends LeaseAction['kind']>(actions: readonly LeaseAction[], kind: K): Extract<LeaseAction, { kind: K }> {
  expect(actions.map((a) => a.kind)).toEqual([kind]);
  return actions[0] as Extract<LeaseAction, { kind: K }>;
}

function optionCodes(m: DhcpMessage): number[] {
  return [...m.options.keys()].sort((a, b) => a - b);
}

/** start(0), OFFER at 100, ACK at 200, checked(false) at 300: a client bound with the ACK's times from 300. */
function boundClient(
  ack: Partial<ReplyOpts> = {},
  o: { timeoutMs?: number; xids?: readonly number[] } = {},
): { c: LeaseClient; lease: Lease } {
  const c = client(o);
  const xid = oneSend(c.start(0)).message.xid;
  oneSend(c.receive(reply({ xid, type: DHCPOFFER }), 100));
  only(c.receive(reply({ xid, type: DHCPACK, ...ack }), 200), 'check');
  const b = only(c.checked(false, 300), 'bound');
  expect(c.state).toBe('bound');
  return { c, lease: b.lease };
}

describe('LeaseClient: selecting', () => {
  it('start() broadcasts a DHCPDISCOVER: new xid, broadcast flag, ciaddr 0, client id (61) and parameter list (55)', () => {
    const c = client();
    expect(c.state).toBe('init');
    const s = oneSend(c.start(5000));
    expect(s.to).toBe('broadcast');
    expect(s.message).toMatchObject({ op: BOOTREQUEST, type: DHCPDISCOVER, xid: X1, secs: 0, broadcast: true, ciaddr: 0 });
    expect(s.message.options).toEqual(
      new Map([
        [OPT_CLIENT_ID, CLIENT_ID],
        [OPT_PARAMETERS, PARAMS],
      ]),
    );
    expect(c.state).toBe('selecting');
    expect(c.deadline).toBe(6000);
    expect(c.lease).toBeNull();
  });

  it('takes the xid from `random` as an unsigned 32-bit number', () => {
    const c = new LeaseClient({ clientId: CLIENT_ID, chaddr: MAC, random: () => -1 });
    expect(oneSend(c.start(0)).message.xid).toBe(0xffffffff);
    const d = new LeaseClient({ clientId: CLIENT_ID, chaddr: MAC }); // the default random
    const xid = oneSend(d.start(0)).message.xid;
    expect(Number.isInteger(xid) && xid >= 0 && xid <= 0xffffffff).toBe(true);
  });

  it('retransmits the DHCPDISCOVER at its deadlines, 1 s then 2, 4, 8 s..., the last capped at the timeout, then fails', () => {
    const c = client({ timeoutMs: 20_000 });
    oneSend(c.start(5000));
    const seen: { at: number; secs: number; xid: number }[] = [];
    for (const at of [6000, 8000, 12_000, 20_000]) {
      expect(c.deadline).toBe(at);
      expect(c.timer(at - 1)).toEqual([]); // early: nothing
      const s = oneSend(c.timer(at));
      expect(s.to).toBe('broadcast');
      expect(s.message.type).toBe(DHCPDISCOVER);
      expect(s.message.broadcast).toBe(true);
      seen.push({ at, secs: s.message.secs, xid: s.message.xid });
    }
    // Elapsed seconds since start(); the same transaction throughout.
    expect(seen.map((x) => x.secs)).toEqual([1, 3, 7, 15]);
    expect(new Set(seen.map((x) => x.xid))).toEqual(new Set([X1]));
    expect(c.deadline).toBe(25_000); // 20 s + 16 s, capped at start + timeout
    expect(only(c.timer(25_000), 'failed').why).toBe('no DHCP server answered in time');
    expect(c.state).toBe('failed');
    expect(c.deadline).toBeNull();
    expect(c.timer(99_000)).toEqual([]);
  });

  it('with the default timeout (4 s): DISCOVERs at 0, 1 and 3 s, failure at 4 s', () => {
    const c = client();
    oneSend(c.start(0));
    oneSend(c.timer(1000));
    expect(c.deadline).toBe(3000);
    oneSend(c.timer(3000));
    expect(c.deadline).toBe(4000);
    expect(only(c.timer(4000), 'failed').why).toBe('no DHCP server answered in time');
  });

  it('the retransmission interval doubles up to 64 s and stays there', () => {
    const c = client({ timeoutMs: 300_000 });
    oneSend(c.start(0));
    const deadlines: number[] = [c.deadline!];
    while (c.state === 'selecting') {
      const out = c.timer(c.deadline!);
      if (c.state === 'selecting') deadlines.push(c.deadline!);
      else only(out, 'failed');
    }
    expect(deadlines).toEqual([1000, 3000, 7000, 15_000, 31_000, 63_000, 127_000, 191_000, 255_000, 300_000]);
  });

  it('a timer() called late still retransmits, from the time it was called', () => {
    const c = client({ timeoutMs: 60_000 });
    oneSend(c.start(0));
    const s = oneSend(c.timer(2500));
    expect(s.message.secs).toBe(2);
    expect(c.deadline).toBe(4500);
  });

  it('a DHCPOFFER makes a broadcast DHCPREQUEST with the requested address (50) and the server id (54)', () => {
    const c = client();
    oneSend(c.start(0));
    const s = oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER, mask: MASK, router: ROUTER }), 400));
    expect(s.to).toBe('broadcast');
    expect(s.message).toMatchObject({ type: DHCPREQUEST, xid: X1, ciaddr: 0, broadcast: true, secs: 0 });
    expect(optionU32(s.message, OPT_REQUESTED_IP)).toBe(OFFERED);
    expect(optionU32(s.message, OPT_SERVER_ID)).toBe(SERVER);
    expect(s.message.options.get(OPT_PARAMETERS)).toEqual(PARAMS);
    expect(optionCodes(s.message)).toEqual([OPT_REQUESTED_IP, OPT_SERVER_ID, OPT_PARAMETERS, OPT_CLIENT_ID].sort((a, b) => a - b));
    expect(c.state).toBe('requesting');
    expect(c.deadline).toBe(1400);
  });

  it('ignores messages of another xid, BOOTREQUESTs, OFFERs without a server id or address, and ACKs or NAKs', () => {
    const c = client();
    oneSend(c.start(0));
    const ignored = [
      reply({ xid: X1 + 1, type: DHCPOFFER }),
      reply({ xid: X1, type: DHCPOFFER, op: BOOTREQUEST }),
      reply({ xid: X1, type: DHCPOFFER, server: null }),
      reply({ xid: X1, type: DHCPOFFER, yiaddr: 0 }),
      { ...reply({ xid: X1, type: DHCPOFFER }), options: new Map([[OPT_SERVER_ID, hex('0a 00 01')]]) }, // a 3-byte server id
      reply({ xid: X1, type: DHCPACK }),
      reply({ xid: X1, type: DHCPNAK }),
      reply({ xid: X1, type: DHCPREQUEST }),
    ];
    for (const m of ignored) {
      expect(c.receive(m, 500)).toEqual([]);
      expect(c.state).toBe('selecting');
      expect(c.deadline).toBe(1000);
    }
    expect(c.owns(reply({ xid: X1, type: DHCPOFFER }))).toBe(true);
    expect(c.owns(reply({ xid: X2, type: DHCPOFFER }))).toBe(false);
    expect(c.owns(reply({ xid: X1, type: DHCPOFFER, op: BOOTREQUEST }))).toBe(false);
    // The one acceptable offer still works afterwards.
    expect(oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER }), 600)).message.type).toBe(DHCPREQUEST);
  });

  it('owns() nothing before start(), and receive() ignores everything then', () => {
    const c = client();
    const m = reply({ xid: 0, type: DHCPOFFER });
    expect(c.owns(m)).toBe(false);
    expect(c.receive(m, 0)).toEqual([]);
    expect(c.state).toBe('init');
    expect(c.timer(1e9)).toEqual([]);
  });
});

describe('LeaseClient: requesting and checking', () => {
  it('retransmits the DHCPREQUEST at its deadlines (same options), then fails when the server does not confirm', () => {
    const c = client({ timeoutMs: 10_000 });
    oneSend(c.start(0));
    const first = oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER }), 500));
    const deadlines: number[] = [];
    for (const at of [1500, 3500, 7500]) {
      expect(c.deadline).toBe(at);
      deadlines.push(at);
      const s = oneSend(c.timer(at));
      expect(s.to).toBe('broadcast');
      expect(s.message.type).toBe(DHCPREQUEST);
      expect(s.message.options).toEqual(first.message.options);
      expect(s.message.xid).toBe(X1);
    }
    expect(c.deadline).toBe(10_000);
    expect(only(c.timer(10_000), 'failed').why).toBe('the server did not confirm its offer in time');
    expect(c.state).toBe('failed');
    expect(c.deadline).toBeNull();
  });

  it('a DHCPACK asks the caller to check the address, and waits with no deadline', () => {
    const c = client();
    oneSend(c.start(0));
    oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER }), 100));
    expect(only(c.receive(reply({ xid: X1, type: DHCPACK }), 200), 'check').address).toBe(OFFERED);
    expect(c.state).toBe('checking');
    expect(c.deadline).toBeNull();
    expect(c.lease).toBeNull();
    // A duplicate ACK while checking is ignored, and so is a timer.
    expect(c.receive(reply({ xid: X1, type: DHCPACK }), 250)).toEqual([]);
    expect(c.timer(1e9)).toEqual([]);
  });

  it('ignores, while requesting: an ACK from another server, for another address, of another xid, and an OFFER', () => {
    const c = client();
    oneSend(c.start(0));
    oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER }), 100));
    for (const m of [
      reply({ xid: X1, type: DHCPACK, server: SERVER2 }),
      reply({ xid: X1, type: DHCPACK, yiaddr: OFFERED + 1 }),
      reply({ xid: X2, type: DHCPACK }),
      reply({ xid: X1, type: DHCPACK, op: BOOTREQUEST }),
      reply({ xid: X1, type: DHCPOFFER }),
      reply({ xid: X1, type: DHCPNAK, server: SERVER2 }),
    ]) {
      expect(c.receive(m, 150)).toEqual([]);
      expect(c.state).toBe('requesting');
    }
    only(c.receive(reply({ xid: X1, type: DHCPACK }), 200), 'check');
  });

  it('checked(false) binds: t1 = lease / 2, t2 = 7/8 lease, end = lease, from the time of the answer', () => {
    const c = client();
    oneSend(c.start(0));
    oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER }), 100));
    only(c.receive(reply({ xid: X1, type: DHCPACK, lease: 3600, mask: MASK, router: ROUTER }), 200), 'check');
    const b = only(c.checked(false, 1000), 'bound');
    expect(b.renewed).toBe(false);
    expect(b.lease).toEqual({
      address: OFFERED,
      server: SERVER,
      start: 1000,
      t1: 1000 + 1_800_000,
      t2: 1000 + 3_150_000,
      end: 1000 + 3_600_000,
      mask: MASK,
      router: ROUTER,
    });
    expect(c.lease).toEqual(b.lease);
    expect(c.state).toBe('bound');
    expect(c.deadline).toBe(1000 + 1_800_000);
    expect(c.checked(false, 1001)).toEqual([]); // answered once only
  });

  it('takes T1 and T2 from options 58 and 59 when the server gives them; mask and router null when absent', () => {
    const { c, lease } = boundClient({ lease: 1000, t1: 300, t2: 600 });
    expect(lease).toMatchObject({ t1: 300 + 300_000, t2: 300 + 600_000, end: 300 + 1_000_000, mask: null, router: null });
    expect(c.deadline).toBe(300 + 300_000);
  });

  it('a lease of an odd number of seconds keeps its fractional T1 and T2', () => {
    const { lease } = boundClient({ lease: 25 });
    expect(lease.t1).toBe(300 + 12_500);
    expect(lease.t2).toBe(300 + 21_875);
  });

  it('an infinite lease (0xffffffff) has no deadline: no renewal, no end', () => {
    const { c, lease } = boundClient({ lease: 0xffffffff });
    expect(lease.end).toBe(Number.POSITIVE_INFINITY);
    expect(c.deadline).toBeNull();
    expect(c.timer(lease.t1)).toEqual([]);
    expect(c.timer(Number.MAX_SAFE_INTEGER)).toEqual([]);
    expect(c.state).toBe('bound');
  });

  it('checked(true) declines (options 50 and 54, sent to the broadcast address, flags 0) and starts again with a DHCPDISCOVER of a new xid', () => {
    const c = client({ timeoutMs: 60_000 });
    oneSend(c.start(0));
    oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER }), 100));
    only(c.receive(reply({ xid: X1, type: DHCPACK }), 200), 'check');
    const out = c.checked(true, 2000);
    const [decline, discover] = sends(out);
    expect(out.map((a) => a.kind)).toEqual(['send', 'send']);
    expect(decline!.to).toBe('broadcast');
    expect(decline!.message).toMatchObject({ type: DHCPDECLINE, xid: X1, ciaddr: 0, secs: 0 });
    expect(optionU32(decline!.message, OPT_REQUESTED_IP)).toBe(OFFERED);
    expect(optionU32(decline!.message, OPT_SERVER_ID)).toBe(SERVER);
    expect(optionCodes(decline!.message)).toEqual([OPT_REQUESTED_IP, OPT_SERVER_ID, OPT_CLIENT_ID]); // no parameter list
    expect(discover!.to).toBe('broadcast');
    expect(discover!.message).toMatchObject({ type: DHCPDISCOVER, xid: X2, ciaddr: 0, broadcast: true });
    expect(c.state).toBe('selecting');
    expect(c.deadline).toBe(3000);
    expect(c.lease).toBeNull();
    // The old transaction is over; the new one takes a fresh offer.
    expect(c.receive(reply({ xid: X1, type: DHCPOFFER }), 2100)).toEqual([]);
    const req = oneSend(c.receive(reply({ xid: X2, type: DHCPOFFER, yiaddr: OFFERED + 1 }), 2200));
    expect(optionU32(req.message, OPT_REQUESTED_IP)).toBe(OFFERED + 1);
  });

  it(`fails after ${MAX_DECLINES} declined addresses, sending the last DHCPDECLINE`, () => {
    const c = client({ timeoutMs: 600_000 });
    let xid = oneSend(c.start(0)).message.xid;
    let now = 0;
    for (let k = 1; k <= MAX_DECLINES; k++) {
      const address = OFFERED + k;
      oneSend(c.receive(reply({ xid, type: DHCPOFFER, yiaddr: address }), (now += 10)));
      only(c.receive(reply({ xid, type: DHCPACK, yiaddr: address }), (now += 10)), 'check');
      const out = c.checked(true, (now += 10));
      const declined = sends(out)[0]!;
      expect(declined.message.type).toBe(DHCPDECLINE);
      expect(optionU32(declined.message, OPT_REQUESTED_IP)).toBe(address);
      if (k < MAX_DECLINES) {
        expect(out.map((a) => a.kind)).toEqual(['send', 'send']);
        xid = sends(out)[1]!.message.xid;
        expect(xid).toBe(XIDS[k]);
        expect(c.state).toBe('selecting');
      } else {
        expect(out.map((a) => a.kind)).toEqual(['send', 'failed']);
        const failed = out[1] as Extract<LeaseAction, { kind: 'failed' }>;
        expect(failed.why).toContain(`${MAX_DECLINES} addresses`);
      }
    }
    expect(c.state).toBe('failed');
    expect(c.deadline).toBeNull();
  });

  it(`after ${MAX_DECLINES - 1} declines, a free address still binds`, () => {
    const c = client({ timeoutMs: 600_000 });
    let xid = oneSend(c.start(0)).message.xid;
    for (let k = 1; k < MAX_DECLINES; k++) {
      c.receive(reply({ xid, type: DHCPOFFER }), k * 10);
      c.receive(reply({ xid, type: DHCPACK }), k * 10 + 1);
      xid = sends(c.checked(true, k * 10 + 2))[1]!.message.xid;
    }
    c.receive(reply({ xid, type: DHCPOFFER }), 100);
    c.receive(reply({ xid, type: DHCPACK }), 101);
    expect(only(c.checked(false, 102), 'bound').lease.address).toBe(OFFERED);
  });

  it('a DHCPNAK while requesting starts again: a DHCPDISCOVER with a new xid; the old xid is then ignored', () => {
    const c = client({ timeoutMs: 60_000 });
    oneSend(c.start(0));
    oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER }), 100));
    const s = oneSend(c.receive(reply({ xid: X1, type: DHCPNAK, text: 'wrong network' }), 200));
    expect(s.to).toBe('broadcast');
    expect(s.message).toMatchObject({ type: DHCPDISCOVER, xid: X2, broadcast: true, ciaddr: 0 });
    expect(c.state).toBe('selecting');
    expect(c.deadline).toBe(1200);
    expect(c.receive(reply({ xid: X1, type: DHCPACK }), 300)).toEqual([]);
    expect(c.receive(reply({ xid: X1, type: DHCPOFFER }), 300)).toEqual([]);
    expect(c.state).toBe('selecting');
  });

  it('a DHCPNAK without a server id is taken too (while requesting)', () => {
    const c = client();
    oneSend(c.start(0));
    oneSend(c.receive(reply({ xid: X1, type: DHCPOFFER }), 100));
    expect(oneSend(c.receive(reply({ xid: X1, type: DHCPNAK, server: null }), 200)).message.type).toBe(DHCPDISCOVER);
  });

  it('an ACK without a server id binds to the server of the offer', () => {
    const { lease } = boundClient({ server: null });
    expect(lease.server).toBe(SERVER);
  });
});

describe('LeaseClient: renewing, rebinding, losing', () => {
  // boundClient(): lease 100 s bound at 300 ms: t1 50 300, t2 87 800, end 100 300.
  const T1 = 50_300;
  const T2 = 87_800;
  const END = 100_300;

  it('waits quietly until T1', () => {
    const { c } = boundClient();
    expect(c.deadline).toBe(T1);
    expect(c.timer(T1 - 1)).toEqual([]);
    expect(c.state).toBe('bound');
  });

  it('at T1: RENEWING, a DHCPREQUEST unicast to the server with ciaddr, a new xid, no options 50/54, no broadcast flag', () => {
    const { c } = boundClient();
    const s = oneSend(c.timer(T1));
    expect(c.state).toBe('renewing');
    expect(s.to).toBe(SERVER);
    expect(s.message).toMatchObject({ type: DHCPREQUEST, xid: X2, ciaddr: OFFERED, broadcast: false });
    expect(s.message.options.has(OPT_REQUESTED_IP)).toBe(false);
    expect(s.message.options.has(OPT_SERVER_ID)).toBe(false);
    expect(s.message.options.get(OPT_PARAMETERS)).toEqual(PARAMS);
    // Half the time left to T2 (37.5 s / 2).
    expect(c.deadline).toBe(T1 + 18_750);
    // The acquisition's xid is no longer this client's.
    expect(c.owns(reply({ xid: X1, type: DHCPACK }))).toBe(false);
    expect(c.receive(reply({ xid: X1, type: DHCPACK }), T1 + 10)).toEqual([]);
  });

  it('a DHCPACK while renewing binds again, renewed, with times from the ACK', () => {
    const { c } = boundClient();
    oneSend(c.timer(T1));
    const b = only(c.receive(reply({ xid: X2, type: DHCPACK, lease: 200, router: ROUTER }), T1 + 500), 'bound');
    expect(b.renewed).toBe(true);
    const now = T1 + 500;
    expect(b.lease).toEqual({
      address: OFFERED,
      server: SERVER,
      start: now,
      t1: now + 100_000,
      t2: now + 175_000,
      end: now + 200_000,
      mask: null,
      router: ROUTER,
    });
    expect(c.state).toBe('bound');
    expect(c.deadline).toBe(now + 100_000);
    // The next renewal draws a new xid again.
    const s = oneSend(c.timer(now + 100_000));
    expect(s.message.xid).toBe(X3);
    expect(s.to).toBe(SERVER);
  });

  it('ignores while renewing: an ACK for another address, an OFFER, another xid', () => {
    const { c } = boundClient();
    oneSend(c.timer(T1));
    for (const m of [
      reply({ xid: X2, type: DHCPACK, yiaddr: OFFERED + 1 }),
      reply({ xid: X2, type: DHCPOFFER }),
      reply({ xid: X3, type: DHCPACK }),
      reply({ xid: X2, type: DHCPACK, op: BOOTREQUEST }),
    ]) {
      expect(c.receive(m, T1 + 1)).toEqual([]);
      expect(c.state).toBe('renewing');
    }
  });

  it('retransmits the unicast DHCPREQUEST at half the time left to T2 (at least 1 s), then at T2 REBINDING broadcasts', () => {
    const { c } = boundClient();
    oneSend(c.timer(T1));
    const deadlines: number[] = [];
    let now = T1;
    while (c.state === 'renewing') {
      const next = c.deadline!;
      expect(next).toBeGreaterThan(now);
      expect(next).toBeLessThanOrEqual(T2);
      if (next < T2) expect(next - now === 1000 || next - now === (T2 - now) / 2).toBe(true);
      now = next;
      deadlines.push(now);
      const s = oneSend(c.timer(now));
      expect(s.message.type).toBe(DHCPREQUEST);
      expect(s.message.xid).toBe(X2);
      expect(s.message.ciaddr).toBe(OFFERED);
      if (c.state === 'renewing') expect(s.to).toBe(SERVER);
      else {
        // At T2: rebinding, broadcast, still with ciaddr and without 50/54 or the broadcast flag.
        expect(c.state).toBe('rebinding');
        expect(now).toBe(T2);
        expect(s.to).toBe('broadcast');
        expect(s.message.broadcast).toBe(false);
        expect(s.message.options.has(OPT_REQUESTED_IP)).toBe(false);
        expect(s.message.options.has(OPT_SERVER_ID)).toBe(false);
      }
    }
    expect(deadlines.slice(0, 3)).toEqual([T1 + 18_750, T1 + 18_750 + 9375, T1 + 18_750 + 9375 + 4687.5]);
    expect(deadlines.at(-1)).toBe(T2);
    // Rebinding: half the time left to the end.
    expect(c.deadline).toBe(T2 + (END - T2) / 2);
  });

  it('at the lease end without an ACK: lost, the lease gone, no deadline', () => {
    const { c } = boundClient();
    let now = 0;
    const states: LeaseState[] = [];
    let last: LeaseAction[] = [];
    while (c.deadline !== null) {
      now = c.deadline;
      last = c.timer(now);
      states.push(c.state);
      if (c.state !== 'lost') {
        const s = oneSend(last);
        expect(s.to).toBe(c.state === 'renewing' ? SERVER : 'broadcast');
        expect(c.deadline ?? -1).toBeLessThanOrEqual(END);
      }
    }
    expect(now).toBe(END);
    expect(only(last, 'lost').why).toBe('the lease ended without being extended');
    expect(c.state).toBe('lost');
    expect(c.lease).toBeNull();
    expect(new Set(states)).toEqual(new Set(['renewing', 'rebinding', 'lost']));
    expect(c.receive(reply({ xid: X2, type: DHCPACK }), END + 1)).toEqual([]);
  });

  it('a timer() called past the end (the caller was late) loses the lease at once, whatever the state', () => {
    const { c } = boundClient();
    expect(only(c.timer(END + 5), 'lost').why).toBe('the lease ended without being extended');
    const r = boundClient().c;
    oneSend(r.timer(T1));
    expect(only(r.timer(END), 'lost').kind).toBe('lost');
  });

  it('a timer() called past T2 while bound goes straight to rebinding', () => {
    const { c } = boundClient();
    const s = oneSend(c.timer(T2 + 1));
    expect(c.state).toBe('rebinding');
    expect(s.to).toBe('broadcast');
    expect(s.message.ciaddr).toBe(OFFERED);
  });

  it('a DHCPACK while rebinding, from another server, binds to that server (renewed)', () => {
    const { c } = boundClient();
    oneSend(c.timer(T2 + 1)); // rebinding; the xid is still the acquisition's (no T1 step)
    const xid = X1;
    const b = only(c.receive(reply({ xid, type: DHCPACK, server: SERVER2, lease: 50 }), T2 + 10), 'bound');
    expect(b.renewed).toBe(true);
    expect(b.lease.server).toBe(SERVER2);
    expect(b.lease.end).toBe(T2 + 10 + 50_000);
    // The next renewal is unicast to the new server.
    expect(oneSend(c.timer(b.lease.t1)).to).toBe(SERVER2);
  });

  it('a DHCPACK while rebinding after renewing uses the renewing xid', () => {
    const { c } = boundClient();
    oneSend(c.timer(T1));
    while (c.state === 'renewing') oneSend(c.timer(c.deadline!));
    expect(c.state).toBe('rebinding');
    expect(c.receive(reply({ xid: X1, type: DHCPACK }), T2 + 1)).toEqual([]);
    expect(only(c.receive(reply({ xid: X2, type: DHCPACK }), T2 + 2), 'bound').renewed).toBe(true);
  });

  it('a DHCPNAK while renewing loses the lease, quoting the server message (56)', () => {
    const { c } = boundClient();
    oneSend(c.timer(T1));
    const lost = only(c.receive(reply({ xid: X2, type: DHCPNAK, text: 'address taken back' }), T1 + 5), 'lost');
    expect(lost.why).toContain('address taken back');
    expect(c.state).toBe('lost');
    expect(c.lease).toBeNull();
    expect(c.deadline).toBeNull();
  });

  it('a DHCPNAK while rebinding, without a message, loses the lease too', () => {
    const { c } = boundClient();
    oneSend(c.timer(T2));
    expect(c.state).toBe('rebinding');
    const lost = only(c.receive(reply({ xid: X1, type: DHCPNAK, server: SERVER2 }), T2 + 5), 'lost');
    expect(lost.why).toContain('DHCPNAK');
    expect(c.state).toBe('lost');
  });

  it('a DHCPNAK while bound (no renewal under way) is ignored', () => {
    const { c } = boundClient();
    expect(c.receive(reply({ xid: X1, type: DHCPNAK }), 1000)).toEqual([]);
    expect(c.state).toBe('bound');
  });
});

describe('LeaseClient: release', () => {
  it('release() when bound: a DHCPRELEASE unicast to the server, ciaddr and option 54, secs 0; then released', () => {
    const { c } = boundClient();
    const s = oneSend(c.release(10_000));
    expect(s.to).toBe(SERVER);
    expect(s.message).toMatchObject({ type: DHCPRELEASE, ciaddr: OFFERED, broadcast: false, secs: 0 });
    expect(optionU32(s.message, OPT_SERVER_ID)).toBe(SERVER);
    expect(optionCodes(s.message)).toEqual([OPT_SERVER_ID, OPT_CLIENT_ID]);
    expect(c.state).toBe('released');
    expect(c.lease).toBeNull();
    expect(c.deadline).toBeNull();
    expect(c.timer(1e9)).toEqual([]);
  });

  it('release() while renewing or rebinding releases too, to the lease server', () => {
    for (const at of [50_300, 87_800]) {
      const { c } = boundClient();
      oneSend(c.timer(at));
      const s = oneSend(c.release(at + 1));
      expect(s.to).toBe(SERVER);
      expect(s.message.type).toBe(DHCPRELEASE);
      expect(s.message.ciaddr).toBe(OFFERED);
    }
  });

  it('release() while selecting, requesting or checking sends nothing and stops', () => {
    const a = client();
    oneSend(a.start(0));
    expect(a.release(10)).toEqual([]);
    expect(a.state).toBe('released');
    expect(a.deadline).toBeNull();
    expect(a.receive(reply({ xid: X1, type: DHCPOFFER }), 20)).toEqual([]);
    expect(a.timer(1000)).toEqual([]);

    const b = client();
    oneSend(b.start(0));
    oneSend(b.receive(reply({ xid: X1, type: DHCPOFFER }), 100));
    expect(b.release(150)).toEqual([]);
    expect(b.receive(reply({ xid: X1, type: DHCPACK }), 200)).toEqual([]);

    const k = client();
    oneSend(k.start(0));
    oneSend(k.receive(reply({ xid: X1, type: DHCPOFFER }), 100));
    only(k.receive(reply({ xid: X1, type: DHCPACK }), 200), 'check');
    expect(k.release(250)).toEqual([]);
    expect(k.checked(false, 300)).toEqual([]);
    expect(k.state).toBe('released');
  });

  it('release() after the lease was lost sends nothing', () => {
    const { c } = boundClient();
    only(c.timer(200_000), 'lost');
    expect(c.release(200_001)).toEqual([]);
    expect(c.state).toBe('released');
  });
});

describe('LeaseClient: messages on the wire', () => {
  it('every message of a whole life encodes with writeDhcp and decodes back equal', () => {
    const c = client({ timeoutMs: 60_000 });
    const all: Send[] = [];
    const take = (actions: LeaseAction[]): LeaseAction[] => {
      all.push(...sends(actions));
      return actions;
    };
    take(c.start(0));
    take(c.timer(1000));
    take(c.receive(reply({ xid: X1, type: DHCPOFFER }), 1100));
    take(c.timer(2100));
    take(c.receive(reply({ xid: X1, type: DHCPACK }), 2200));
    take(c.checked(true, 3000)); // DECLINE + DISCOVER (X2)
    take(c.receive(reply({ xid: X2, type: DHCPOFFER }), 3100));
    take(c.receive(reply({ xid: X2, type: DHCPNAK }), 3200)); // DISCOVER (X3)
    take(c.receive(reply({ xid: X3, type: DHCPOFFER }), 3300));
    take(c.receive(reply({ xid: X3, type: DHCPACK, lease: 40 }), 3400));
    take(c.checked(false, 3500));
    take(c.timer(23_500)); // T1: REQUEST unicast (X4)
    take(c.timer(c.deadline!));
    take(c.receive(reply({ xid: X4, type: DHCPACK, lease: 40 }), 30_000));
    take(c.timer(c.lease!.t2)); // rebinding
    take(c.receive(reply({ xid: X4, type: DHCPACK, lease: 40 }), 70_000));
    take(c.release(71_000));
    const types = all.map((s) => s.message.type);
    expect(types).toEqual([
      DHCPDISCOVER,
      DHCPDISCOVER,
      DHCPREQUEST,
      DHCPREQUEST,
      DHCPDECLINE,
      DHCPDISCOVER,
      DHCPREQUEST,
      DHCPDISCOVER,
      DHCPREQUEST,
      DHCPREQUEST,
      DHCPREQUEST,
      DHCPREQUEST,
      DHCPRELEASE,
    ]);
    // And each one in its IPv4/UDP packet, from 0.0.0.0 or the lease address, reads back the same.
    for (const s of all) {
      const p = dhcpPacket(s.message, s.message.ciaddr, DHCP_CLIENT_PORT, s.to === 'broadcast' ? 0xffffffff : s.to, DHCP_SERVER_PORT);
      const at = udp4Payload(p, p.length, DHCP_CLIENT_PORT, DHCP_SERVER_PORT);
      expect(at).not.toBeNull();
      expect(readDhcp(p, at!.off, at!.len)).toEqual(s.message);
    }
  });

  it('random event sequences: no throw, every message well-formed, and the state invariants hold', () => {
    type Cmd =
      | { k: 'timer'; late: number }
      | { k: 'reply'; type: number | 'auto'; xidOk: boolean; op: number; server: number; addrOk: boolean; lease: number; times: boolean }
      | { k: 'checked'; inUse: boolean }
      | { k: 'wait'; ms: number };
    const cmd: fc.Arbitrary<Cmd> = fc.oneof(
      { weight: 4, arbitrary: fc.record({ k: fc.constant('timer' as const), late: fc.oneof(fc.constant(0), fc.nat({ max: 5000 })) }) },
      {
        weight: 5,
        arbitrary: fc.record({
          k: fc.constant('reply' as const),
          // 'auto': what the server would answer in the client's state (OFFER while selecting, else ACK).
          type: fc.constantFrom<number | 'auto'>('auto', 'auto', 'auto', DHCPOFFER, DHCPACK, DHCPNAK),
          xidOk: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
          op: fc.oneof({ weight: 7, arbitrary: fc.constant(BOOTREPLY) }, { weight: 1, arbitrary: fc.constant(BOOTREQUEST) }),
          server: fc.oneof({ weight: 6, arbitrary: fc.constant(SERVER) }, { weight: 1, arbitrary: fc.constantFrom(0, SERVER2) }),
          addrOk: fc.oneof({ weight: 6, arbitrary: fc.constant(true) }, { weight: 1, arbitrary: fc.constant(false) }),
          lease: fc.oneof(fc.integer({ min: 1, max: 600 }), fc.constant(0xffffffff)),
          times: fc.boolean(),
        }),
      },
      { weight: 2, arbitrary: fc.record({ k: fc.constant('checked' as const), inUse: fc.oneof(fc.constant(false), fc.boolean()) }) },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('wait' as const), ms: fc.nat({ max: 100_000 }) }) },
    );
    fc.assert(
      fc.property(
        fc.nat({ max: 0xffffffff }),
        fc.array(cmd, { minLength: 10, maxLength: 80 }),
        fc.boolean(),
        (seed, cmds, releaseAtEnd) => {
          const c = new LeaseClient({ clientId: CLIENT_ID, chaddr: MAC, random: mulberry32(seed), timeoutMs: 30_000 });
          let now = 0;
          let xid = -1;
          let lastBound: Lease | null = null;
          const run = (actions: LeaseAction[]): void => {
            for (const s of sends(actions)) {
              xid = s.message.xid;
              const unicast = s.message.type === DHCPRELEASE || (s.message.type === DHCPREQUEST && c.state === 'renewing');
              if (unicast) expect(s.to).toBe(lastBound!.server);
              else expect(s.to).toBe('broadcast');
            }
            for (const a of actions) {
              if (a.kind === 'bound') {
                expect(c.state).toBe('bound');
                lastBound = a.lease;
              }
              if (a.kind === 'lost') expect(c.state).toBe('lost');
              if (a.kind === 'failed') expect(c.state).toBe('failed');
              if (a.kind === 'check') expect(c.state).toBe('checking');
            }
            // Invariants.
            const holding = c.state === 'bound' || c.state === 'renewing' || c.state === 'rebinding';
            expect(c.lease !== null).toBe(holding);
            if (c.state === 'failed' || c.state === 'lost' || c.state === 'released' || c.state === 'checking')
              expect(c.deadline).toBeNull();
            if (c.state === 'bound') expect(c.deadline).toBe(Number.isFinite(c.lease!.end) ? c.lease!.t1 : null);
            if (holding && c.deadline !== null) expect(c.deadline).toBeLessThanOrEqual(c.lease!.end);
            if (c.deadline !== null) expect(c.deadline).toBeGreaterThanOrEqual(now);
          };
          run(c.start(0));
          for (const x of cmds) {
            switch (x.k) {
              case 'timer':
                if (c.deadline !== null && Number.isFinite(c.deadline)) now = Math.max(now, c.deadline + x.late);
                run(c.timer(now));
                break;
              case 'wait':
                // Time passes, but not past a deadline: the caller calls timer() then (late calls are the 'timer' command's).
                now = Math.min(now + x.ms, c.deadline ?? Number.POSITIVE_INFINITY);
                break;
              case 'checked':
                run(c.checked(x.inUse, now));
                break;
              case 'reply': {
                const lease = x.lease;
                const times = x.times && lease !== 0xffffffff ? { t1: Math.floor(lease / 4), t2: Math.floor(lease / 2) } : {};
                const type = x.type !== 'auto' ? x.type : c.state === 'selecting' ? DHCPOFFER : DHCPACK;
                const m = reply({
                  xid: x.xidOk ? xid : (xid + 1) >>> 0,
                  type,
                  op: x.op,
                  server: x.server === 0 ? null : x.server,
                  yiaddr: x.addrOk ? OFFERED : OFFERED + 7,
                  lease,
                  ...times,
                });
                run(c.receive(m, now));
                break;
              }
            }
          }
          if (releaseAtEnd) {
            const held = c.lease !== null;
            const out = c.release(now);
            run(out);
            expect(out.length).toBe(held ? 1 : 0);
            expect(c.state).toBe('released');
          }
        },
      ),
      { numRuns: 400, seed: 0x1ea5e },
    );
  });
});

describe('LeaseClient: T1 and T2 within the lease, secs of a renewal (bugs the tests found, fixed)', () => {
  it('a T1 (option 58) past the lease end is bounded by it: the client renews, or loses the address, by the end', () => {
    // ACK: lease 60 s, T1 120 s, bound at 300 -> end 60 300, but the only deadline is T1 at 120 300.
    const { c, lease } = boundClient({ lease: 60, t1: 120 });
    expect(lease.end).toBe(60_300);
    // The caller calls timer() at `deadline` only; the lease must be over (or renewing) by its end.
    expect(c.deadline).toBeLessThanOrEqual(lease.end);
  });

  it('secs in a renewing DHCPREQUEST counts from the start of the renewal, not from start()', () => {
    // RFC 2131 table 1: "seconds elapsed since client began address acquisition or renewal process".
    const { c } = boundClient();
    const s = oneSend(c.timer(50_300));
    expect(s.message.secs).toBe(0); // actual: 50
  });
});

describe("timerDelay (the leases' one timer)", () => {
  it('waits for a deadline, at once for one passed, and in steps of at most 2^31-1 ms for a long lease', () => {
    expect(timerDelay(1500, 1000)).toBe(500);
    expect(timerDelay(900, 1000)).toBe(0);
    // A lease of 100 days: T1 at 50 days is past what setTimeout takes (it would fire after 1 ms, and again, and again).
    const day = 86_400_000;
    expect(timerDelay(50 * day, 0)).toBe(0x7fffffff);
  });
});
