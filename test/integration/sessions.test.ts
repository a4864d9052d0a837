// End to end, in a lab of namespaces: sessions get their own VIPs, listen on the same port, talk TCP, UDP and ICMP.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND, isRoot, Lab, listening, retry, ROOT, sweepLabs, until } from './lab.js';

const POOL = '198.19.7.0/28';
const NO_VIP = 'No virtual IP address is available for this session, please contact your administrator.';

// Address mode: eth0 holds the VIP. NAT mode: every eth0 holds 10.0.2.100 and vipnat translates.
const MODES = [
  { mode: 'address mode', flags: [] as string[], inner: (vip: string) => vip },
  { mode: 'NAT mode', flags: ['--inner-address', '10.0.2.100'], inner: () => '10.0.2.100' },
];

describe.skipIf(!isRoot()).each(MODES)('vipnat run, in a lab, $mode', ({ flags, inner }) => {
  let lab: Lab;
  beforeAll(() => sweepLabs());
  afterEach(() => lab?.down());
  afterAll(() => sweepLabs());

  it('gives concurrent sessions distinct VIPs that a backend sees once each', async () => {
    lab = Lab.up();
    const server = lab.spawn(lab.be, ['node', `${ROOT}test/fixtures/meet-server.mjs`, '7000', '3']);
    let out = '';
    server.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await until(() => out.includes('listening'));

    const run = lab.vipnat([
      'run',
      ...flags,
      '--pool',
      POOL,
      '--sessions',
      '3',
      '--',
      'socat',
      '-T',
      '20',
      '-u',
      `TCP:${BACKEND}:7000`,
      '-',
    ]);
    const { code } = await run.done;
    expect(run.stderr).toBe('');
    expect(code).toBe(0);
    const vips = [...run.sessions().values()].sort();
    expect(vips).toEqual(['198.19.7.1', '198.19.7.2', '198.19.7.3']);
    const result = JSON.parse(/result (.*)/.exec(out)![1]!) as { seen: string[]; maxConcurrent: number };
    expect(result.maxConcurrent).toBe(3);
    expect([...result.seen].sort()).toEqual(vips); // each VIP exactly once
    expect(run.lines.filter((l) => l.startsWith('go '))).toHaveLength(3);
  });

  it('reaches each session at VIP:9000 though all listen on 0.0.0.0:9000', async () => {
    lab = Lab.up();
    const n = 4;
    const run = lab.vipnat([
      'run',
      '--pool',
      POOL,
      '--sessions',
      String(n),
      '--',
      'socat',
      'TCP-LISTEN:9000,bind=0.0.0.0,reuseaddr',
      'SYSTEM:echo session $VIPNAT_SESSION_ID at $VIPNAT_VIP',
    ]);
    await run.waitFor(new RegExp(`^session ${n} vip`));
    const sessions = run.sessions();
    expect(sessions.size).toBe(n);
    for (const vip of sessions.values()) {
      // Each session answers pings at its VIP (its own kernel replies).
      expect(lab.exec(lab.be, ['ping', '-c', '1', '-W', '2', vip]).status).toBe(0);
    }
    for (const [id, vip] of sessions) {
      const reply = await retry(() => {
        const r = lab.exec(lab.be, ['socat', '-t', '5', '-T', '3', '-', `TCP:${vip}:9000`], '');
        if (r.status !== 0) throw new Error(r.stderr);
        return r.stdout.trim();
      });
      expect(reply).toBe(`session ${id} at ${vip}`);
    }
    const { code } = await run.done; // each socat exits after its one connection
    expect(code).toBe(0);
  });

  it('carries UDP and ICMP echo, and the hostname resolves to the VIP', async () => {
    lab = Lab.up();
    await listening(lab.spawn(lab.be, ['node', `${ROOT}test/fixtures/udp-echo.mjs`, '7001']));
    const script = [
      `ping -c 2 -W 2 ${BACKEND} >/dev/null && echo ping-ok`,
      `echo hi | socat -t 5 -T 2 - UDP4:${BACKEND}:7001`,
      'echo "resolves $(getent hosts $(hostname) | cut -d" " -f1)"',
      'echo "iface $(ip -o -4 addr show dev eth0 | awk "{print \\$4}")"',
      'echo "route $(ip route show default)"',
    ].join('; ');
    const run = lab.vipnat(['run', ...flags, '--pool', POOL, '--sessions', '2', '--', 'sh', '-c', script]);
    const { code } = await run.done;
    expect(code, run.stderr).toBe(0);
    const text = run.lines.join('\n');
    for (const vip of ['198.19.7.1', '198.19.7.2']) {
      expect(text).toContain(`pong ${vip}:`);
      expect(text).toContain(`resolves ${vip}`);
      expect(text).toContain(`iface ${inner(vip)}/32`);
    }
    expect(text.match(/ping-ok/g)).toHaveLength(2);
    expect(text).toContain('route default dev eth0');
  });

  it('refuses sessions beyond the pool with the administrator message', async () => {
    lab = Lab.up();
    // The programs hold their VIPs long enough for session 3 to find the pool empty.
    const run = lab.vipnat(['run', ...flags, '--pool', '198.19.7.1-198.19.7.2', '--sessions', '3', '--', 'sleep', '2']);
    const { code } = await run.done;
    expect(code).toBe(3);
    expect(run.sessions().size).toBe(2);
    expect(run.lines).toContain(`session 3 ${NO_VIP}`);
    expect(run.lines.some((l) => /^summary: 3 sessions asked, 2 started, 1 without a VIP/.test(l))).toBe(true);
  });

  it('hands a session program exit status to vipnat', async () => {
    lab = Lab.up();
    const one = lab.vipnat(['run', ...flags, '--pool', POOL, '--', 'sh', '-c', 'exit 7']);
    expect((await one.done).code).toBe(7);
    const some = lab.vipnat([
      'run',
      ...flags,
      '--pool',
      POOL,
      '--sessions',
      '3',
      '--',
      'sh',
      '-c',
      '[ "$VIPNAT_SESSION_ID" = 2 ] && exit 5; exit 0',
    ]);
    expect((await some.done).code).toBe(5);
    const all = lab.vipnat(['run', ...flags, '--pool', POOL, '--sessions', '3', '--', 'true']);
    expect((await all.done).code).toBe(0);
  });

  it('prints one JSON object per line with --json', async () => {
    lab = Lab.up();
    const run = lab.vipnat(['run', ...flags, '--json', '--pool', POOL, '--sessions', '2', '--', 'sleep', '1']);
    expect((await run.done).code).toBe(0);
    const events = run.lines.map((l) => JSON.parse(l) as { event: string; id?: number; vip?: string; loopback?: string; pid?: number });
    const starts = events.filter((e) => e.event === 'session');
    expect(starts.map((e) => [e.id, e.vip, e.loopback])).toEqual([
      [1, '198.19.7.1', '127.0.0.2'],
      [2, '198.19.7.2', '127.0.0.3'],
    ]);
    expect(starts.every((e) => typeof e.pid === 'number' && e.pid > 0)).toBe(true);
    expect(events.at(-1)).toMatchObject({ event: 'summary', sessions: 2, started: 2, noVip: 0, failed: 0, exitCode: 0 });
  });
});
