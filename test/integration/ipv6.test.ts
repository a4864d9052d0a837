// IPv6 in the lab, in both modes: dual-stack sessions, TCP, UDP, ICMPv6 echo and errors, traceroute, path MTU, hairpin.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, Lab, listening, parseJson, retry, ROOT, sweepLabs, until, type VipnatRun } from './lab.js';

const BACKEND6 = 'fd00:18::2';
const POOL = '198.19.7.0/28,fd00:19:7::/64';
const MODES = [
  { mode: 'address mode', flags: [] as string[], inner6: (vip6: string) => vip6 },
  { mode: 'NAT mode', flags: ['--inner-address', '10.0.2.100,fd00:2::100'], inner6: () => 'fd00:2::100' },
];

/** socat prints IPv6 peers in full; this is the compressed form for comparisons. */
function compress(full: string): string {
  const groups = full
    .replace(/^\[|\]$/g, '')
    .split(':')
    .map((g) => g.replace(/^0+(?=.)/, ''));
  return groups
    .join(':')
    .replace(/(^|:)0(:0)+(:|$)/, '::')
    .replace(/^:::/, '::');
}

describe.skipIf(!isRoot()).each(MODES)('IPv6, $mode', ({ flags, inner6 }) => {
  let lab: Lab;
  beforeAll(() => sweepLabs());
  afterEach(() => lab?.down());
  afterAll(() => sweepLabs());

  const vipnat = (args: string[]): VipnatRun => lab.vipnat(['run', '--json', ...flags, '--pool', POOL, ...args]);

  it('makes dual-stack sessions whose TCP, UDP and ping reach the backend from their own VIP6', async () => {
    lab = Lab.up();
    await listening(lab.spawn(lab.be, ['node', `${ROOT}test/fixtures/tcp-peer.mjs`, '7000', '::']));
    await listening(lab.spawn(lab.be, ['node', `${ROOT}test/fixtures/udp-echo.mjs`, '7001', '6']));
    const script = [
      'echo "iface $VIPNAT_SESSION_ID $(ip -o -6 addr show dev eth0 scope global | awk "{print \\$4}")"',
      'echo "iface4 $VIPNAT_SESSION_ID $(ip -o -4 addr show dev eth0 | awk "{print \\$4}")"',
      `ping -6 -c 3 -i 0.2 -W 2 ${BACKEND6} | grep -q " 0 received" || echo "ping-ok $VIPNAT_SESSION_ID"`,
      `socat -t 5 -T 3 - TCP6:[${BACKEND6}]:7000 </dev/null`,
      `echo hi | socat -t 5 -T 3 - UDP6:[${BACKEND6}]:7001`,
      `echo hi | socat -t 5 -T 3 - UDP6:[${BACKEND6}]:9999 || echo "closed-port-status $?"`,
      'echo "env $VIPNAT_SESSION_ID $VIPNAT_VIP $VIPNAT_VIP6"',
    ].join('; ');
    const run = vipnat(['--sessions', '2', '--', 'sh', '-c', script]);
    await run.done;
    const { summary, sessions, text } = parseJson(run);
    expect(summary.exitCode, text).toBe(0);
    expect(sessions.map((s) => [s.id, s.vip, s.vip6])).toEqual([
      [1, '198.19.7.1', 'fd00:19:7::1'],
      [2, '198.19.7.2', 'fd00:19:7::2'],
    ]);
    for (const s of sessions) {
      expect(text).toContain(`iface ${s.id} ${inner6(s.vip6!)}/128`);
      expect(text).toContain(`ping-ok ${s.id}`);
      expect(text).toContain(`env ${s.id} ${s.vip} ${s.vip6}`);
    }
    const tcpPeers = [...text.matchAll(/tcp-peer (\S+)/g)].map((m) => compress(m[1]!)).sort();
    const udpPeers = [...text.matchAll(/pong (\S+):\d+$/gm)].map((m) => compress(m[1]!)).sort();
    expect(tcpPeers).toEqual(['fd00:19:7::1', 'fd00:19:7::2']);
    expect(udpPeers).toEqual(['fd00:19:7::1', 'fd00:19:7::2']);
    // A UDP send to a closed port: ICMPv6 port unreachable, translated, gives ECONNREFUSED.
    expect(text.match(/closed-port-status 1/g)).toHaveLength(2);
    expect(text.match(/Connection refused/g)!.length).toBeGreaterThanOrEqual(2);
  });

  it('reaches each session at [VIP6]:9000, and hairpins between sessions over IPv6', async () => {
    lab = Lab.up();
    const script = [
      'if [ "$VIPNAT_SESSION_ID" = 1 ]; then',
      "  socat TCP6-LISTEN:9000,reuseaddr,fork SYSTEM:'echo session 1 sees $SOCAT_PEERADDR' & sleep 4; kill $!",
      'else',
      '  sleep 0.5; socat -t 5 -T 3 - TCP6:[fd00:19:7::1]:9000,retry=20,interval=0.2 </dev/null | sed "s/^/hairpin: /"',
      'fi',
    ].join('\n');
    const run = vipnat(['--sessions', '2', '--', 'sh', '-c', script]);
    await run.waitFor(/"id":2/);
    const fromBackend = await retry(() => {
      const r = lab.exec(lab.be, ['socat', '-t', '5', '-T', '3', '-', 'TCP6:[fd00:19:7::1]:9000'], '');
      if (r.status !== 0 || !r.stdout.includes('sees')) throw new Error(r.stderr);
      return r.stdout.trim();
    });
    expect(compress(fromBackend.split(' ').at(-1)!)).toBe(BACKEND6);
    await run.done;
    const { summary, text } = parseJson(run);
    const hair = /hairpin: session 1 sees (\S+)/.exec(text);
    expect(hair, text).not.toBeNull();
    expect(compress(hair![1]!)).toBe('fd00:19:7::2');
    expect(summary.dataplane.hairpin).toBeGreaterThan(0);
  });

  it('shows the hops to traceroute -6 and completes bulk TCP over a 1280-byte path (packet too big, translated)', async () => {
    lab = Lab.up({ routed: true, mtu: 1280 });
    const bytes = 2 * 1024 * 1024;
    const sink = lab.spawn(lab.be, ['socat', '-u', 'TCP6-LISTEN:7100,reuseaddr,fork', 'SYSTEM:wc -c >&2']);
    let got = '';
    sink.stderr!.on('data', (d: Buffer) => (got += d.toString()));
    await new Promise((r) => setTimeout(r, 300));
    const script = [
      `traceroute -6 -n -q 1 -w 2 -m 5 ${BACKEND6}`,
      `head -c ${bytes} /dev/zero | socat -T 20 -u - TCP6:[${BACKEND6}]:7100`,
      `ip -6 route get ${BACKEND6} | grep -o "mtu [0-9]*" || true`,
    ].join('; ');
    const run = vipnat(['--', 'sh', '-c', script]);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(summary.exitCode, text).toBe(0);
    const hops = [...text.matchAll(/^\s*(\d+)\s+([0-9a-f:]+)\s/gm)].map((m) => [Number(m[1]), m[2]]);
    expect(hops).toEqual([
      [1, 'fd00:18:1::1'],
      [2, 'fd00:18:1::2'],
      [3, BACKEND6],
    ]);
    await until(() => got.includes('\n'));
    expect(got.trim()).toBe(String(bytes));
    expect(text).toMatch(/mtu 1280/);
  });

  it('runs IPv6-only sessions from an IPv6-only pool', async () => {
    lab = Lab.up();
    const run = lab.vipnat([
      'run',
      '--json',
      ...flags.map((f) => f.replace('10.0.2.100,', '')),
      '--pool',
      'fd00:19:7::10-fd00:19:7::11',
      '--sessions',
      '3',
      '--',
      'sh',
      '-c',
      `ping -6 -c 2 -i 0.2 -W 2 ${BACKEND6} >/dev/null; echo "v4 $(ip -o -4 addr show dev eth0 | wc -l) vip $VIPNAT_VIP"; sleep 1`,
    ]);
    await run.done;
    const { summary, sessions, text } = parseJson(run);
    expect(sessions.map((s) => s.vip)).toEqual(['fd00:19:7::10', 'fd00:19:7::11']);
    expect(text).toContain('v4 0 vip fd00:19:7::10');
    expect(run.lines.some((l) => l.includes('"event":"no-vip"') && l.includes('No virtual IP address is available'))).toBe(true);
    expect(summary.exitCode).toBe(3);
  });
});
