// The gateway on its users' worst day: SIGKILL and the next start, signals in every phase, huge --sessions, bad input, --user.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND, isRoot, Lab, listening, parseJson, ROOT, sweepLabs, until, type VipnatRun } from './lab.js';

const POOL = '198.19.7.0/28';
const ECHO = `${ROOT}test/fixtures/tcp-echo.mjs`;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Program pids from the session lines. */
function programPids(run: VipnatRun): number[] {
  return [...run.lines.join('\n').matchAll(/ pid (\d+)/g)].map((m) => Number(m[1]));
}

/** The vipnat process's resident memory in KiB, or 0 once it is gone. */
function rssKiB(pid: number): number {
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : 0;
  } catch {
    return 0;
  }
}

describe.skipIf(!isRoot())('after SIGKILL', () => {
  let lab: Lab;
  beforeAll(() => sweepLabs());
  afterEach(() => lab?.down());
  afterAll(() => sweepLabs());

  it.each([
    { mode: 'shared mode', flags: ['--on-exhausted', 'shared', '--pool', '198.19.7.1', '--sessions', '3'] },
    { mode: 'address mode', flags: ['--pool', POOL, '--sessions', '3'] },
  ])('in $mode: the programs die within a second, and the next start undoes exactly what was left', async ({ flags }) => {
    lab = Lab.up();
    const before = lab.snapshot();
    expect(before.gwForward).toBe('0');
    // A journal directory of this test's own: another vipnat starting on the machine meanwhile
    // would (rightly) undo what the killed one left, before the second start here could.
    const env = { VIPNAT_RUN_DIR: mkdtempSync(join(tmpdir(), 'vipnat-run-')) };
    const first = lab.vipnat(['run', ...flags, '--', 'sh', '-c', 'sleep 300 & sleep 301'], env);
    await first.waitFor(/^session 3 (vip|shared)/);
    const pids = programPids(first);
    expect(pids).toHaveLength(3);
    const during = lab.snapshot();
    expect(during.gwForward).toBe('1');
    first.child.kill('SIGKILL');
    const killed = Date.now();
    await until(() => pids.every((p) => !alive(p)), 1000);
    expect(Date.now() - killed).toBeLessThan(1000);
    // Nothing of the sessions' programs is left anywhere (their PID namespaces died with vipnat).
    const sessionNetns = lab.snapshot().netns.filter((n) => n.startsWith('vipnat-'));
    expect(sessionNetns).toHaveLength(3);
    for (const ns of sessionNetns) expect(spawnSync('ip', ['netns', 'pids', ns], { encoding: 'utf8' }).stdout.trim()).toBe('');
    await first.done;
    // What vipnat0 carried went with it; the sysctls and rules it changed did not.
    expect(lab.snapshot().gwForward).toBe('1');

    // The next start, of the same mode, starts (shared: rules 1-6 are free again) and cleans up first.
    const second = lab.vipnat(['run', ...flags.filter((f, i, a) => f !== '--sessions' && a[i - 1] !== '--sessions'), '--', 'true'], env);
    expect((await second.done).code).toBe(0);
    expect(second.lines.join('\n')).toMatch(
      new RegExp(`cleaned up after vipnat ${first.child.pid}, which did not exit cleanly: restored net.ipv4.ip_forward=0`),
    );
    expect(second.lines.join('\n')).toMatch(/removed 3 session namespaces/);
    // And on its own exit it restores the true original (0), not the 1 the dead one left.
    expect(lab.snapshot()).toEqual(before);
    expect(readdirSync(env.VIPNAT_RUN_DIR)).toEqual([]);
    rmSync(env.VIPNAT_RUN_DIR, { recursive: true, force: true });
  });
});

describe.skipIf(!isRoot())('signals', () => {
  let lab: Lab;
  afterEach(() => lab?.down());

  it('stopping sends each program one SIGTERM, and reports the status it exits with', async () => {
    lab = Lab.up();
    // Each program counts SIGTERMs for half a second after the first, then exits 0 from its handler.
    const n = 12;
    const run = lab.vipnat(['run', '--json', '--pool', POOL, '--sessions', String(n), '--', 'node', `${ROOT}test/fixtures/term-once.mjs`]);
    for (let id = 1; id <= n; id++) await run.waitFor(new RegExp(`^ready ${id}$`));
    // Two SIGTERMs microseconds apart usually reach a program as one (the kernel merges a pending
    // signal), so count what vipnat itself sends: every kill() it makes, seen by strace.
    const trace = join(mkdtempSync(join(tmpdir(), 'vipnat-test-')), 'kills');
    const strace = spawn('strace', ['-f', '-qq', '-e', 'trace=kill', '-e', 'signal=none', '-o', trace, '-p', String(run.child.pid)], {
      stdio: 'ignore',
    });
    await new Promise((r) => setTimeout(r, 1000)); // strace attaches to every thread
    run.child.kill('SIGTERM');
    const { code } = await run.done;
    await new Promise((r) => strace.once('exit', r));
    expect(code).toBe(143);
    const kills = readFileSync(trace, 'utf8').match(/kill\((\d+), SIGTERM\)/g) ?? [];
    rmSync(dirname(trace), { recursive: true, force: true });
    expect(kills).toHaveLength(n);
    expect(new Set(kills).size).toBe(n);
    const { summary, text } = parseJson(run);
    expect(text.match(/terms \d+/g)).toEqual(Array(n).fill('terms 1'));
    const exits = run.lines
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as { event: string; code?: number; signal?: string | null })
      .filter((e) => e.event === 'exit');
    expect(exits.map((e) => [e.code, e.signal])).toEqual(Array(n).fill([0, null]));
    expect((summary as unknown as { failed: number }).failed).toBe(0);
  });

  it('goes on when the reader of its output goes away (vipnat run ... | head -1)', async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    const run = lab.vipnat(['run', '--pool', POOL, '--sessions', '3', '--', 'sleep', '1']);
    await run.waitFor(/^session 1 vip/);
    run.child.stdout!.destroy();
    const { code, signal } = await run.done;
    expect([code, signal]).toEqual([0, null]);
    expect(lab.snapshot()).toEqual(before);
  });

  it('answers SIGTERM within a second while sessions are still being set up', async () => {
    lab = Lab.up();
    const run = lab.vipnat(['run', '--pool', '198.19.7.0/24', '--sessions', '200', '--', 'sleep', '300']);
    await run.waitFor(/^session 3 vip/);
    const sent = Date.now();
    run.child.kill('SIGTERM');
    await run.waitFor(/^vipnat: SIGTERM: stopping every session/, 1000);
    expect(Date.now() - sent).toBeLessThan(1000);
    const { code } = await run.done;
    expect(code).toBe(143);
    const summary = run.lines.find((l) => l.startsWith('summary:'))!;
    const startedCount = Number(/(\d+) started/.exec(summary)![1]);
    expect(startedCount).toBeLessThan(200);
    expect(lab.snapshot().netns.filter((n) => n.startsWith('vipnat-'))).toEqual([]);
  });

  it('answers SIGINT within a second in shared mode with --sessions 16777214', async () => {
    lab = Lab.up();
    const run = lab.vipnat(['run', '--on-exhausted', 'shared', '--pool', '198.19.7.1', '--sessions', '16777214', '--', 'sleep', '300']);
    await run.waitFor(/^session 4 shared/);
    const sent = Date.now();
    run.child.kill('SIGINT');
    await run.waitFor(/^vipnat: SIGINT: stopping every session/, 1000);
    expect(Date.now() - sent).toBeLessThan(1000);
    expect((await run.done).code).toBe(130);
  });

  it('answers SIGTERM within a second after refusing 16777200 sessions without a VIP', async () => {
    lab = Lab.up();
    const run = lab.vipnat(['run', '--pool', POOL, '--sessions', '16777214', '--', 'sleep', '300']);
    await run.waitFor(/^session 14 vip/, 60_000);
    await new Promise((r) => setTimeout(r, 300));
    const sent = Date.now();
    run.child.kill('SIGTERM');
    await run.waitFor(/^vipnat: SIGTERM: stopping every session/, 1000);
    expect(Date.now() - sent).toBeLessThan(1000);
    expect((await run.done).code).toBe(143);
  });

  it('--sessions 16777214 with a /28: a few lines and a count, quickly, in bounded memory', async () => {
    lab = Lab.up();
    const run = lab.vipnat(['run', '--pool', POOL, '--sessions', '16777214', '--', 'sleep', '1']);
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, rssKiB(run.child.pid!))), 50);
    const started = Date.now();
    const { code } = await run.done;
    clearInterval(sampler);
    expect(code).toBe(3);
    expect(Date.now() - started).toBeLessThan(30_000);
    const noVip = run.lines.filter((l) => l.includes('No virtual IP address is available'));
    expect(noVip).toEqual(
      [15, 16, 17].map((id) => `session ${id} No virtual IP address is available for this session, please contact your administrator.`),
    );
    expect(run.lines).toContain('sessions 18-16777214: no VIP either (16777197 more sessions not started)');
    expect(run.lines.length).toBeLessThan(40);
    expect(run.lines.at(-1)).toMatch(/^summary: 16777214 sessions asked, 14 started, 16777200 without a VIP, 0 failed/);
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThan(400 * 1024);
  });
});

describe.skipIf(!isRoot())('bad input gets one line and exit status 2, 126 or 127', () => {
  let lab: Lab;
  beforeAll(() => (lab = Lab.up()));
  afterAll(() => lab?.down());

  const oneLine = (s: string): void => {
    expect(s.trim().split('\n')).toHaveLength(1);
    expect(s).toMatch(/^vipnat: /);
  };

  it.each([
    ['198.18.0.1', /pool "198.18.0.1": 198.18.0.1 is an address of be0 in this namespace; pick a pool that nothing here uses/],
    ['198.18.0.0/24', /pool "198.18.0.0\/24": 198.18.0.1 is an address of be0 in this namespace/],
    ['198.18.0.200-198.18.1.3', /pool range 198.18.0.200-198.18.1.3 straddles the edge of be0's subnet \(198.18.0.1\/24\)/],
  ])('refuses the pool %s, which this namespace uses', async (pool, message) => {
    const r = lab.vipnat(['run', '--pool', pool, '--', 'true']);
    expect((await r.done).code).toBe(2);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(message);
    expect(lab.snapshot().gwLinks).not.toContain('vipnat0');
  });

  it.each(['198.18.0.2', 'fd00:18::2'])(
    "takes the pool %s, inside be0's subnet, as on-link, and finds the backend there using it: named, no VIP",
    async (pool) => {
      const r = lab.vipnat(['run', '--pool', pool, '--', 'true']);
      expect((await r.done).code).toBe(3);
      expect(r.lines[0]).toMatch(new RegExp(`^vipnat: ${pool.replace(/\./g, '\\.')} is in use on be0 \\(answered by [0-9a-f:]{17}\\)`));
      expect(r.lines).toContain('session 1 No virtual IP address is available for this session, please contact your administrator.');
      expect(lab.snapshot().gwLinks).not.toContain('vipnat0');
    },
  );

  it('says which route is in the way when the pool is routed here already', async () => {
    lab.exec(lab.gw, ['ip', 'route', 'add', '198.19.9.0/28', 'dev', 'lo']);
    try {
      const r = lab.vipnat(['run', '--pool', '198.19.9.0/28', '--', 'true']);
      expect((await r.done).code).toBe(2);
      oneLine(r.stderr);
      expect(r.stderr).toMatch(/pool 198.19.9.0\/28: this namespace already routes 198.19.9.0\/28 to lo/);
    } finally {
      lab.exec(lab.gw, ['ip', 'route', 'del', '198.19.9.0/28', 'dev', 'lo']);
    }
  });

  it('says what is wrong with an MTU below 1280 for an IPv6 pool', async () => {
    const r = lab.vipnat(['run', '--pool', 'fd00:77::/120', '--mtu', '1000', '--', 'true']);
    expect((await r.done).code).toBe(2);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/--mtu 1000: the pool has IPv6 addresses, and IPv6 needs an MTU of at least 1280/);
  });

  it('refuses a PROGRAM that is not executable with 126, before starting anything', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vipnat-test-'));
    try {
      const script = join(dir, 'agent.sh');
      writeFileSync(script, '#!/bin/sh\necho hi\n');
      chmodSync(script, 0o644);
      for (const program of [script, dir]) {
        const r = lab.vipnat(['run', '--pool', POOL, '--', program]);
        expect((await r.done).code).toBe(126);
        oneLine(r.stderr);
        expect(r.stderr).toMatch(program === dir ? /is a directory/ : /permission denied: .* is not executable/);
        expect(r.lines.filter((l) => l.startsWith('session'))).toEqual([]);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    [['--pool', POOL, '--pool', '198.19.8.0/28'], /--pool given twice: give it once/],
    [['--pool', POOL, '--mtu', '1400', '--mtu=1500'], /--mtu given twice/],
    [['--pool', POOL, '--json', '--json'], /--json given twice/],
  ])('refuses a flag given twice: %j', async (flags, message) => {
    const r = lab.vipnat(['run', ...flags, '--', 'true']);
    expect((await r.done).code).toBe(2);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(message);
  });
});

describe.skipIf(!isRoot())('--user', () => {
  let lab: Lab;
  afterEach(() => lab?.down());

  it('runs programs as that user with no capabilities: they reach the network but not another session, nor vipnat', async () => {
    lab = Lab.up();
    await listening(lab.spawn(lab.be, ['node', ECHO, '7100']));
    // Each session tries what a root program could do to another session and to vipnat itself.
    const probe = [
      'me=${VIPNAT_NETNS#vipnat-}; gw=${me%-*}',
      'echo "uid $(id -u) gid $(id -g)"',
      'grep -E "^(CapEff|CapPrm|NoNewPrivs):" /proc/self/status | tr "\\t" " "',
      'other=vipnat-$gw-$((3 - VIPNAT_SESSION_ID))',
      'nsenter --net=/run/netns/$other true 2>/dev/null && echo "entered $other" || echo "cannot enter $other"',
      'kill -0 $gw 2>/dev/null && echo "can signal vipnat" || echo "cannot signal vipnat"',
      `ping -c 1 -W 2 ${BACKEND} >/dev/null && echo "ping ok"`,
      `echo hello | socat -t 2 - TCP:${BACKEND}:7100`,
      'sleep 1',
    ].join('; ');
    const run = lab.vipnat(['run', '--user', 'nobody', '--pool', POOL, '--sessions', '2', '--', 'sh', '-c', probe]);
    const { code } = await run.done;
    const out = `${run.lines.join('\n')}\n${run.stderr}`;
    expect(code, out).toBe(0);
    expect(out.match(/uid 65534 gid 65534/g)).toHaveLength(2);
    expect(out.match(/CapEff: 0000000000000000/g)).toHaveLength(2);
    expect(out.match(/CapPrm: 0000000000000000/g)).toHaveLength(2);
    expect(out.match(/NoNewPrivs: 1/g)).toHaveLength(2);
    expect(out.match(/cannot enter vipnat-\d+-[12]/g)).toHaveLength(2);
    expect(out).not.toMatch(/entered vipnat/);
    expect(out.match(/cannot signal vipnat/g)).toHaveLength(2);
    expect(out.match(/ping ok/g)).toHaveLength(2);
    expect(out.match(/^hello$/gm)).toHaveLength(2);
  });

  it('refuses an unknown user and root', async () => {
    lab = Lab.up();
    for (const [user, message] of [
      ['no-such-user-xyz', /--user "no-such-user-xyz": no such user/],
      ['root', /--user "root": that is root/],
      ['nobody:no-such-group-xyz', /no such group "no-such-group-xyz"/],
    ] as const) {
      const r = lab.vipnat(['run', '--user', user, '--pool', POOL, '--', 'true']);
      expect((await r.done).code).toBe(2);
      expect(r.stderr).toMatch(message);
    }
  });
});

describe.skipIf(!isRoot())('--block-local', () => {
  let lab: Lab;
  afterEach(() => lab?.down());

  // Each session connects to a service of the gateway's namespace, to one on an address added while it runs, and to the backend.
  const probe = (late: string) =>
    [
      'for target in 198.18.0.1 ' + late + ' ' + BACKEND + '; do',
      '  if out=$(echo hi | socat -t 2 - TCP:$target:7400,connect-timeout=3 2>&1); then echo "reached $target: $out"; else echo "refused $target: $out"; fi',
      'done',
    ].join('\n');

  it.each([
    { flag: [] as string[], local: 'reached' },
    { flag: ['--block-local'], local: 'refused' },
  ])('with $flag sessions reach the namespace vipnat runs in: $local; the backend always', async ({ flag, local }) => {
    lab = Lab.up();
    await listening(lab.spawn(lab.gw, ['node', ECHO, '7400']));
    await listening(lab.spawn(lab.be, ['node', ECHO, '7400']));
    const late = '198.18.77.1';
    const run = lab.vipnat(['run', ...flag, '--pool', POOL, '--', 'sh', '-c', `sleep 1; ${probe(late)}`]);
    // An address of the namespace that appears after vipnat started is known to it too.
    await run.waitFor(/^session 1 vip/);
    lab.exec(lab.gw, ['ip', 'addr', 'add', `${late}/32`, 'dev', 'lo']);
    const started = Date.now();
    const { code } = await run.done;
    const out = run.lines.join('\n') + run.stderr;
    expect(code, out).toBe(0);
    expect(out).toMatch(new RegExp(`${local} 198.18.0.1`));
    expect(out).toMatch(new RegExp(`${local} ${late.replace(/\./g, '\\.')}`));
    expect(out).toMatch(/reached 198.18.0.2: hi/);
    if (local === 'refused') {
      // Refused at once (ICMP administratively prohibited), not after a timeout.
      expect(out).toMatch(/refused 198.18.0.1: .*(No route to host|unreachable)/);
      expect(Date.now() - started).toBeLessThan(8000);
    }
  });
});
