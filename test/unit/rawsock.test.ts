// Unit tests for the packet-socket module's pure parts (opening a socket needs root: the fuzz integration test does).
import { describe, expect, it } from 'vitest';
import { PacketSocket, parseMac } from '../../src/linux/rawsock.js';

describe('rawsock', () => {
  it('parses a MAC address, and says what is wrong with a bad one', () => {
    expect([...parseMac('2e:a8:5C:23:14:f1')]).toEqual([0x2e, 0xa8, 0x5c, 0x23, 0x14, 0xf1]);
    expect(() => parseMac('2e:a8:5c:23:14')).toThrow(/MAC address "2e:a8:5c:23:14": must be six hex bytes/);
    expect(() => parseMac('2e:a8:5c:23:14:g1')).toThrow(/six hex bytes/);
  });

  it('refuses a virtio header on a cooked (SOCK_DGRAM) socket before opening anything', () => {
    expect(() => PacketSocket.open('lo', { vnetHdr: true })).toThrow(/vnetHdr needs cooked: false/);
  });

  it('names the interface it cannot find', () => {
    expect(() => PacketSocket.open('no-such-if0')).toThrow(/if_nametoindex no-such-if0/);
  });
});
