// Unit tests for the command line of the observing commands: sockets, capture, top, --metrics and --pcap.
import { describe, expect, it } from 'vitest';
import { parseArgs, UsageError } from '../../src/cli/args.js';

const bad = (argv: string[], message: RegExp): void => {
  expect(() => parseArgs(argv)).toThrow(UsageError);
  expect(() => parseArgs(argv)).toThrow(message);
};

describe('observing commands', () => {
  it('capture takes its flags before or after the target, as tcpdump does', () => {
    expect(parseArgs(['capture', '3', '-w', 'out.pcapng', '-c', '10'])).toMatchObject({
      command: 'capture',
      target: 3,
      file: 'out.pcapng',
      count: 10,
      named: false,
    });
    expect(parseArgs(['capture', '--snaplen', '96', 'uplink'])).toMatchObject({ target: 'uplink', snaplen: 96, file: undefined });
    expect(parseArgs(['capture', '--name', 'lab', '2', '-w', '-'])).toMatchObject({ target: 2, file: '-', name: 'lab', named: true });
    bad(['capture'], /give one session id, or uplink/);
    bad(['capture', '1', '2'], /"2" is one more/);
    bad(['capture', '-w', 'a', '1', '-w', 'b'], /-w given twice/);
    bad(['capture', '1', '--snaplen', '0'], /--snaplen 0: must be from 1 to 262144/);
    bad(['capture', 'eth0'], /session id "eth0"/);
  });

  it('sockets takes session ids, or one namespace', () => {
    expect(parseArgs(['sockets'])).toMatchObject({ command: 'sockets', ids: [], listening: false, json: false });
    expect(parseArgs(['sockets', '--listening', '--json', '1', '2'])).toMatchObject({ ids: [1, 2], listening: true, json: true });
    expect(parseArgs(['sockets', '--pid', '42'])).toMatchObject({ pid: 42, netns: undefined });
    expect(parseArgs(['sockets', '--netns', 'blue'])).toMatchObject({ netns: 'blue' });
    bad(['sockets', '--netns', 'blue', '1'], /not both/);
    bad(['sockets', '--netns', 'blue', '--pid', '1'], /--netns or --pid, not both/);
  });

  it('top takes an interval in seconds and a count', () => {
    expect(parseArgs(['top'])).toMatchObject({ command: 'top', intervalMs: 1000, iterations: undefined });
    expect(parseArgs(['top', '--interval', '0.5', '-n', '3'])).toMatchObject({ intervalMs: 500, iterations: 3 });
    bad(['top', '--interval', '0'], /must be 0.1 to 3600 seconds/);
    bad(['top', '--interval', 'soon'], /must be 0.1 to 3600 seconds/);
  });

  it('--metrics binds to loopback unless told an address; --pcap names a file', () => {
    const run = (flags: string[]) => parseArgs(['run', '--pool', '198.19.7.0/28', ...flags, '--', 'true']);
    expect(run(['--metrics', '9464'])).toMatchObject({ metrics: { host: '127.0.0.1', port: 9464 } });
    expect(run(['--metrics', '0.0.0.0:9100'])).toMatchObject({ metrics: { host: '0.0.0.0', port: 9100 } });
    expect(run(['--metrics', '[::1]:9100'])).toMatchObject({ metrics: { host: '::1', port: 9100 } });
    expect(run(['--pcap', 'all.pcapng'])).toMatchObject({ pcap: 'all.pcapng', name: undefined });
    expect(parseArgs(['up', '--pool', '198.19.7.0/28'], { VIPNAT_METRICS: '9464' })).toMatchObject({
      metrics: { host: '127.0.0.1', port: 9464 },
    });
    bad(['run', '--pool', '198.19.7.0/28', '--metrics', '::1:9100', '--', 'true'], /must be ADDR:PORT or PORT/);
    bad(['run', '--pool', '198.19.7.0/28', '--metrics', 'localhost:99999', '--', 'true'], /port 99999: must be from 1 to 65535/);
  });
});
