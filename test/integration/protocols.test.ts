// NAT behaviour with real tools, in both modes: ICMP errors, traceroute, path MTU, hairpin, anti-spoofing, fragments, options.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND, isRoot, Lab, parseJson, sweepLabs, until, type VipnatRun } from './lab.js';

const POOL = '198.19.7.0/28';
const MODES = [
  { mode: 'address mode', flags: [] as string[] },
  { mode: 'NAT mode', flags: ['--inner-address', '10.0.2.100'] },
];

describe.skipIf(!isRoot()).each(MODES)('protocols, $mode', ({ flags }) => {
  let lab: Lab;
  beforeAll(() => sweepLabs());
  afterEach(() => lab?.down());
  afterAll(() => sweepLabs());

  const vipnat = (args: string[]): VipnatRun => lab.vipnat(['run', '--json', ...flags, '--pool', POOL, ...args]);

  it('gives the app ECONNREFUSED for a UDP send to a closed port (ICMP port unreachable, translated)', async () => {
    lab = Lab.up();
    const run = vipnat(['--', 'sh', '-c', `echo hi | socat -t 5 -T 3 - UDP4:${BACKEND}:9999; echo "status $?"`]);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(text).toMatch(/Connection refused/);
    expect(text).toContain('status 1');
    expect(summary.dataplane.icmpErrors).toBeGreaterThanOrEqual(1);
    expect(summary.dataplane.icmpErrorsDropped).toBe(0);
  });

  it('lets the session kernel refuse an inbound SYN to a port nobody listens on', async () => {
    lab = Lab.up();
    const run = vipnat(['--', 'sleep', '3']);
    const [, vip] = await run.waitFor(/"vip":"([0-9.]+)"/);
    const r = lab.exec(lab.be, ['socat', '-t', '5', '-T', '2', '-', `TCP:${vip}:4444,connect-timeout=2`], '');
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Connection refused/); // a RST, not a timeout
    await run.done;
  });

  it('gives two sessions pinging the same host with the same identifier each their own replies', async () => {
    lab = Lab.up();
    const run = vipnat([
      '--sessions',
      '2',
      '--',
      'sh',
      '-c',
      `ping -e 4242 -c 5 -i 0.2 -W 2 ${BACKEND} | grep -o "[0-9]* received" | sed "s/^/ping $VIPNAT_SESSION_ID /"`,
    ]);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(summary.exitCode).toBe(0);
    expect(text).toContain('ping 1 5 received');
    expect(text).toContain('ping 2 5 received');
  });

  it('shows every hop to traceroute across a router', async () => {
    lab = Lab.up({ routed: true });
    const run = vipnat(['--', 'traceroute', '-n', '-q', '1', '-w', '2', '-m', '5', BACKEND]);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(summary.exitCode).toBe(0);
    const hops = [...text.matchAll(/^\s*(\d+)\s+([0-9.]+)\s/gm)].map((m) => [Number(m[1]), m[2]]);
    expect(hops).toEqual([
      [1, '198.18.1.1'],
      [2, '198.18.1.2'],
      [3, BACKEND],
    ]);
  });

  it('completes bulk TCP both ways over a smaller-MTU path (path MTU discovery through the gateway)', async () => {
    lab = Lab.up({ routed: true, mtu: 1280 });
    const bytes = 4 * 1024 * 1024;
    // Backend: count what a session sends; send a session the same amount.
    // The count goes to stderr: a SYSTEM address's stdout is socat's channel, not socat's output.
    const sink = lab.spawn(lab.be, ['socat', '-u', 'TCP-LISTEN:7100,reuseaddr,fork', 'SYSTEM:wc -c >&2']);
    let got = '';
    sink.stderr!.on('data', (d: Buffer) => (got += d.toString()));
    lab.spawn(lab.be, ['socat', '-U', 'TCP-LISTEN:7101,reuseaddr,fork', `SYSTEM:head -c ${bytes} /dev/zero`]);
    await new Promise((r) => setTimeout(r, 300));
    const script = [
      `head -c ${bytes} /dev/zero | socat -T 20 -u - TCP:${BACKEND}:7100`,
      `echo "received $(socat -T 20 -u TCP:${BACKEND}:7101 - | wc -c)"`,
      'ip route get 198.18.0.2 | grep -o "mtu [0-9]*" || true',
    ].join('; ');
    const run = vipnat(['--', 'sh', '-c', script]);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(summary.exitCode).toBe(0);
    expect(text).toContain(`received ${bytes}`);
    await until(() => got.includes('\n'));
    expect(got.trim()).toBe(String(bytes));
    // The gateway's kernel said "fragmentation needed" and the session learnt the path MTU.
    expect(text).toMatch(/mtu 1280/);
    expect(summary.dataplane.icmpErrors).toBeGreaterThanOrEqual(1);
  });

  it('hairpins between sessions, and the receiver sees the sender VIP', async () => {
    lab = Lab.up();
    const script = [
      'if [ "$VIPNAT_SESSION_ID" = 1 ]; then',
      '  socat TCP-LISTEN:9000,reuseaddr SYSTEM:\'echo "peer $SOCAT_PEERADDR"; echo "session 1 saw $SOCAT_PEERADDR" >&2\'',
      'else',
      '  sleep 0.5; echo "session 2 got: $(socat -t 5 -T 3 - TCP:198.19.7.1:9000,retry=20,interval=0.2 </dev/null)"',
      'fi',
    ].join('\n');
    const run = vipnat(['--sessions', '2', '--', 'sh', '-c', script]);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(summary.exitCode).toBe(0);
    expect(text).toContain('session 1 saw 198.19.7.2');
    expect(text).toContain('session 2 got: peer 198.19.7.2');
    expect(summary.dataplane.hairpin).toBeGreaterThan(0);
  });

  it('drops packets a session sends with a source that is not its own', async () => {
    lab = Lab.up();
    const cap = lab.spawn(lab.be, ['tcpdump', '-i', 'gw0', '-n', '-l', '-U', 'tcp dst port 7000']);
    let captured = '';
    cap.stdout!.on('data', (d: Buffer) => (captured += d.toString()));
    let capErr = '';
    cap.stderr!.on('data', (d: Buffer) => (capErr += d.toString()));
    await until(() => capErr.includes('listening on'));
    const script = [
      'if [ "$VIPNAT_SESSION_ID" = 1 ]; then',
      // As session 2, as an outsider, then as itself (the control that must get through).
      `  hping3 -q -c 3 -i u50000 -S -p 7000 -a 198.19.7.2 ${BACKEND}`,
      `  hping3 -q -c 3 -i u50000 -S -p 7000 -a 203.0.113.9 ${BACKEND}`,
      `  hping3 -q -c 3 -i u50000 -S -p 7000 ${BACKEND}`,
      'else sleep 2; fi',
    ].join('\n');
    const run = vipnat(['--sessions', '2', '--', 'sh', '-c', script]);
    await run.done;
    const { summary } = parseJson(run);
    await new Promise((r) => setTimeout(r, 300));
    cap.kill('SIGINT');
    const sources = [...captured.matchAll(/IP (\d+\.\d+\.\d+\.\d+)\.\d+ > /g)].map((m) => m[1]);
    expect(sources.filter((s) => s === '198.19.7.1').length).toBeGreaterThanOrEqual(3);
    expect(sources).not.toContain('198.19.7.2');
    expect(sources).not.toContain('203.0.113.9');
    expect(summary.dataplane.spoofed).toBeGreaterThanOrEqual(6);
  });

  it('carries fragmented UDP datagrams both ways', async () => {
    lab = Lab.up();
    lab.spawn(lab.be, ['socat', '-b', '65000', 'UDP4-RECVFROM:7002,fork', 'SYSTEM:cat']);
    await new Promise((r) => setTimeout(r, 300));
    const script = `head -c 4000 /dev/urandom > /tmp/vn-frag-$$; socat -b 65000 -T 3 - UDP4:${BACKEND}:7002 < /tmp/vn-frag-$$ > /tmp/vn-back-$$; cmp /tmp/vn-frag-$$ /tmp/vn-back-$$ && echo "echoed $(wc -c < /tmp/vn-back-$$)"; rm -f /tmp/vn-frag-$$ /tmp/vn-back-$$`;
    const run = vipnat(['--', 'sh', '-c', script]);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(text).toContain('echoed 4000');
    expect(summary.dataplane.fragments).toBeGreaterThanOrEqual(4); // later fragments, each way
  });

  it('carries IPv4 options (ping with record route)', async () => {
    lab = Lab.up();
    const run = vipnat(['--', 'ping', '-R', '-c', '2', '-W', '2', BACKEND]);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(summary.exitCode).toBe(0);
    expect(text).toMatch(/2 received/);
    expect(text).toMatch(/RR:/);
  });
});
