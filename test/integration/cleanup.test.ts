// vipnat leaves the machine as it found it: after a normal exit, after SIGTERM, and on user errors.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, rmdirSync } from 'node:fs';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, Lab, sweepLabs, VIPNAT } from './lab.js';

const POOL = '198.19.7.0/28';

describe.skipIf(!isRoot())('cleanup', () => {
  let lab: Lab;
  beforeAll(() => sweepLabs());
  afterEach(() => lab?.down());
  afterAll(() => sweepLabs());

  it('leaves nothing behind after a normal exit', async () => {
    lab = Lab.up();
    // Start from a machine without /etc/netns (if it is only an empty leftover),
    // so the test sees vipnat remove the directory it had to create.
    if (existsSync('/etc/netns') && readdirSync('/etc/netns').length === 0) rmdirSync('/etc/netns');
    const before = lab.snapshot();
    expect(before.gwForward).toBe('0');
    const run = lab.vipnat([
      'run',
      '--pool',
      POOL,
      '--sessions',
      '3',
      '--',
      'sh',
      '-c',
      'ip link show eth0 >/dev/null && ip route get 198.18.0.2 >/dev/null',
    ]);
    expect((await run.done).code).toBe(0);
    expect(lab.snapshot()).toEqual(before);
    // vipnat removed the /etc/netns it made, unless other runs on the machine have files there now.
    if (existsSync('/etc/netns')) expect(readdirSync('/etc/netns').length).toBeGreaterThan(0);
  });

  it('stops sessions and leaves nothing behind after SIGTERM', async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    // The session's program starts a child of its own, as real programs do.
    // Durations of this test's own (sleep takes fractions), so that pgrep finds no other run's sleeps.
    const mine = `${process.pid % 1000}`;
    const run = lab.vipnat(['run', '--pool', POOL, '--sessions', '3', '--', 'sh', '-c', `sleep 300.${mine} & sleep 301.${mine}`]);
    await run.waitFor(/^session 3 vip/);
    const during = lab.snapshot();
    expect(during.netns.filter((n) => n.startsWith('vipnat-'))).toHaveLength(3);
    expect(during.gwLinks).toContain('vipnat0');
    expect(during.gwForward).toBe('1');
    expect(during.gwRoutes).toContain('198.19.7.0/28 dev vipnat0');
    const pids = [...run.lines.join('\n').matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
    run.child.kill('SIGTERM');
    const { code } = await run.done;
    expect(code).toBe(143);
    expect(lab.snapshot()).toEqual(before);
    for (const pid of pids) expect(alive(pid)).toBe(false);
    expect(spawnSync('pgrep', ['-f', `sleep 30[01]\\.${mine}$`]).status).toBe(1);
  });

  it('cleans up when a session fails to start (uplink already taken)', async () => {
    lab = Lab.up();
    const first = lab.vipnat(['run', '--pool', POOL, '--', 'sleep', '30']);
    await first.waitFor(/^session 1 vip/);
    const second = lab.vipnat(['run', '--pool', '198.19.8.0/28', '--', 'true']);
    const r = await second.done;
    expect(r.code).toBe(1);
    expect(second.stderr.trim().split('\n')).toHaveLength(1);
    expect(second.stderr).toMatch(/vipnat0 already exists/);
    first.child.kill('SIGINT');
    expect((await first.done).code).toBe(130);
  });
});

describe('user errors: one line, non-zero exit, no stack trace', () => {
  const cli = (args: string[], opts: { env?: NodeJS.ProcessEnv; wrap?: string[] } = {}) => {
    const argv = [...(opts.wrap ?? []), process.execPath, VIPNAT, ...args];
    const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8', env: opts.env ?? process.env });
    return { code: r.status, stderr: r.stderr, stdout: r.stdout };
  };
  const oneLine = (s: string): void => {
    expect(s.trim().split('\n')).toHaveLength(1);
    expect(s).toMatch(/^vipnat: /);
    expect(s).not.toMatch(/\n\s+at /);
  };

  it.each([
    [['run', '--pool', '10.0.0.0/33', '--', 'true'], /pool "10.0.0.0\/33": prefix length/],
    [['run', '--pool', '198.19.7.9-198.19.7.1', '--', 'true'], /198.19.7.9-198.19.7.1/],
    [['run', '--pool', '198.19.7.0/28,bogus', '--', 'true'], /"bogus"/],
    [['run', '--pool', '198.19.7.0/28', '--sessions', '0', '--', 'true'], /--sessions 0/],
    [['run', '--pool', '198.19.7.0/28', '--mtu', 'big', '--', 'true'], /--mtu "big"/],
    [['run', '--pool', '198.19.7.0/28'], /no PROGRAM/],
    [['run', '--', 'true'], /--pool is required/],
    [['run', '--pool', '198.19.7.0/28', '--frobnicate', '--', 'true'], /unknown flag --frobnicate/],
    [['launch'], /unknown command/],
    [['run', '--pool', POOL, '--max-flows', '5', '--', 'true'], /--max-flows 5: must be from 1024/],
    [['run', '--pool', POOL, '--workers', '0', '--', 'true'], /--workers 0: must be from 1 to 64/],
    [['run', '--pool', POOL, '--workers', 'all', '--', 'true'], /--workers "all": must be a whole number/],
    [['run', '--pool', POOL, '--on-exhausted', 'maybe', '--', 'true'], /--on-exhausted "maybe": must be refuse or shared/],
    [['run', '--pool', POOL, '--inner-address', '10.0.2.x', '--', 'true'], /--inner-address "10.0.2.x": not an IPv4 or IPv6 address/],
    [['run', '--pool', POOL, '--inner-address', '198.19.7.3', '--', 'true'], /--inner-address 198.19.7.3: is inside the pool/],
  ])('%j exits 2', (args, message) => {
    const r = cli(args);
    expect(r.code).toBe(2);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(message);
  });

  it.skipIf(!isRoot())('says so when not root', () => {
    const r = cli(['run', '--pool', POOL, '--', 'true'], {
      wrap: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'],
    });
    expect(r.code).toBe(1);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/needs root/);
  });

  it.skipIf(!isRoot())('says so when ip is missing', () => {
    const r = cli(['run', '--pool', POOL, '--', '/bin/true'], { env: { ...process.env, PATH: '/nonexistent' } });
    expect(r.code).toBe(1);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/'ip' command \(iproute2\) was not found/);
  });

  it.skipIf(!isRoot())('says so when /dev/net/tun is missing', () => {
    // A private mount namespace with an empty /dev/net: the machine's stays as it is.
    const r = spawnSync(
      'unshare',
      [
        '--mount',
        '--propagation',
        'private',
        'sh',
        '-c',
        `mount -t tmpfs none /dev/net && exec "${process.execPath}" "${VIPNAT}" run --pool ${POOL} -- true`,
      ],
      { encoding: 'utf8' },
    );
    expect(r.status).toBe(1);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/\/dev\/net\/tun is missing/);
  });

  it.skipIf(!isRoot())('says so when the program does not exist', () => {
    const r = cli(['run', '--pool', POOL, '--', 'no-such-program-xyz']);
    expect(r.code).toBe(127);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/program not found: no-such-program-xyz/);
  });
});

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
