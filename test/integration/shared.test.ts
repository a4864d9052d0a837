// The shared fallback: sessions beyond the pool run on the gateway's own address, port-translated; the gateway itself keeps working.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND, isRoot, Lab, listening, ROOT, sweepLabs, until } from './lab.js';

const GATEWAY = '198.18.0.1';
const NO_VIP = 'No virtual IP address is available for this session, please contact your administrator.';
const MODES = [
  { mode: 'address mode', flags: [] as string[] },
  { mode: 'NAT mode', flags: ['--inner-address', '10.0.2.100'] },
];

describe.skipIf(!isRoot()).each(MODES)('--on-exhausted shared, $mode', ({ flags }) => {
  let lab: Lab;
  beforeAll(() => sweepLabs());
  afterEach(() => lab?.down());
  afterAll(() => sweepLabs());

  it('runs sessions beyond the pool from the gateway address with distinct ports, all at once', async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    const server = lab.spawn(lab.be, ['node', `${ROOT}test/fixtures/meet-server.mjs`, '7000', '5']);
    let out = '';
    server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('listening'));
    // Each program also reports the port the backend saw, via a second connection's greeting.
    const run = lab.vipnat([
      'run',
      ...flags,
      '--pool',
      '198.19.7.1-198.19.7.2',
      '--sessions',
      '5',
      '--on-exhausted',
      'shared',
      '--',
      'socat',
      '-T',
      '20',
      '-u',
      `TCP:${BACKEND}:7000`,
      '-',
    ]);
    const { code } = await run.done;
    expect(code, run.stderr).toBe(0);
    expect(run.lines.filter((l) => l === `session 3 ${NO_VIP}` || l === `session 4 ${NO_VIP}` || l === `session 5 ${NO_VIP}`)).toHaveLength(
      3,
    );
    expect(run.lines.filter((l) => /^session [345] shared 198\.18\.0\.1 loopback/.test(l))).toHaveLength(3);
    const result = JSON.parse(/result (.*)/.exec(out)![1]!) as { seen: string[]; maxConcurrent: number };
    expect(result.maxConcurrent).toBe(5);
    expect([...result.seen].sort()).toEqual([GATEWAY, GATEWAY, GATEWAY, '198.19.7.1', '198.19.7.2']);
    expect(lab.snapshot()).toEqual(before); // rules, routes and sysctls are back
  });

  it('carries UDP and maps ICMP echo identifiers so that sessions pinging with the same one get their own replies', async () => {
    lab = Lab.up();
    const tcpdump = lab.spawn(lab.be, ['tcpdump', '-i', 'gw0', '-n', '-l', '-U', 'udp dst port 7001 or icmp[icmptype] == icmp-echo']);
    let cap = '';
    tcpdump.stdout!.on('data', (d: Buffer) => (cap += d.toString()));
    let capErr = '';
    tcpdump.stderr!.on('data', (d: Buffer) => (capErr += d.toString()));
    await until(() => capErr.includes('listening on'));
    await listening(lab.spawn(lab.be, ['node', `${ROOT}test/fixtures/udp-echo.mjs`, '7001']));
    const script = [
      // Same identifier in every session, at the same time.
      `ping -e 4242 -c 5 -i 0.2 -W 2 ${BACKEND} | grep -o "[0-9]* received" | sed "s/^/ping $VIPNAT_SESSION_ID /"`,
      `echo hi | socat -t 5 -T 3 - UDP4:${BACKEND}:7001 | sed "s/^/udp $VIPNAT_SESSION_ID /"`,
      `echo hi | socat -t 5 -T 3 - UDP4:${BACKEND}:9999 2>/dev/null || echo "closed $VIPNAT_SESSION_ID $?"`,
    ].join('; ');
    const run = lab.vipnat([
      'run',
      ...flags,
      '--pool',
      '198.19.7.1',
      '--sessions',
      '3',
      '--on-exhausted',
      'shared',
      '--',
      'sh',
      '-c',
      script,
    ]);
    const { code } = await run.done;
    expect(code, run.stderr).toBe(0);
    const text = run.lines.join('\n');
    for (const id of [1, 2, 3]) {
      expect(text).toContain(`ping ${id} 5 received`);
      expect(text).toMatch(new RegExp(`udp ${id} pong ${id === 1 ? '198\\.19\\.7\\.1' : '198\\.18\\.0\\.1'}:\\d+`));
      expect(text).toContain(`closed ${id} 1`); // ECONNREFUSED through the shared address too
    }
    const sharedPorts = new Set([...text.matchAll(/udp [23] pong 198\.18\.0\.1:(\d+)/g)].map((m) => m[1]));
    expect(sharedPorts.size).toBe(2);
    await new Promise((r) => setTimeout(r, 200));
    tcpdump.kill('SIGINT');
    // On the wire, the two shared sessions' echo identifiers differ.
    const ids = new Set([...cap.matchAll(/198\.18\.0\.1 > 198\.18\.0\.2: ICMP echo request, id (\d+)/g)].map((m) => m[1]));
    expect(ids.size).toBe(2);
  });

  it('leaves the gateway reachable on its own address while sharing it', async () => {
    lab = Lab.up();
    lab.spawn(lab.gw, ['socat', 'TCP-LISTEN:7777,reuseaddr,fork', 'SYSTEM:echo gateway itself']);
    const run = lab.vipnat(['run', ...flags, '--pool', '198.19.7.1', '--sessions', '2', '--on-exhausted', 'shared', '--', 'sleep', '3']);
    await run.waitFor(/^session 2 shared/);
    expect(lab.exec(lab.be, ['ping', '-c', '2', '-i', '0.2', '-W', '2', GATEWAY]).status).toBe(0);
    const r = lab.exec(lab.be, ['socat', '-t', '5', '-T', '3', '-', `TCP:${GATEWAY}:7777`], '');
    expect(r.stdout.trim()).toBe('gateway itself');
    expect((await run.done).code).toBe(0);
  });

  it('cleans up its rules after SIGTERM', async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    const run = lab.vipnat(['run', ...flags, '--pool', '198.19.7.1', '--sessions', '2', '--on-exhausted', 'shared', '--', 'sleep', '300']);
    await run.waitFor(/^session 2 shared/);
    expect(lab.snapshot().gwRules).toMatch(/ipproto tcp dport 61000-65534/);
    run.child.kill('SIGTERM');
    expect((await run.done).code).toBe(143);
    expect(lab.snapshot()).toEqual(before);
  });
});
