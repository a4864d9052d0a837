// The virtual loopback: from the namespace vipnat runs in, 127.0.0.1 + id reaches session id's own 127.0.0.1, on every port.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, Lab, retry, sweepLabs, until, VIPNAT, type VipnatRun } from './lab.js';

const POOL = '198.19.7.0/28';

describe.skipIf(!isRoot())('virtual loopback', () => {
  let lab: Lab;
  let run: VipnatRun | null = null;
  const inNs = (ns: string, argv: string[], input?: string) => lab.nsRun(ns, argv, 60_000, input);
  /** One HTTP/1.0 GET of / at ADDR:PORT from `ns`, with socat. */
  const httpGet = (ns: string, addr: string, port: number) =>
    inNs(ns, ['timeout', '5', 'socat', '-t', '2', '-', `TCP:${addr}:${port}`], 'GET / HTTP/1.0\r\n\r\n');
  /** How long `f` takes, in ms, with its result. */
  const timed = async <T>(f: () => Promise<T>): Promise<[T, number]> => {
    const t0 = Date.now();
    const r = await f();
    return [r, Date.now() - t0];
  };
  beforeAll(() => sweepLabs());
  afterEach(async () => {
    if (run?.running) {
      run.child.kill('SIGTERM');
      await run.done;
    }
    run = null;
    lab?.down();
  });
  afterAll(() => sweepLabs());

  /** SIGTERM to the run: it exits 143 and leaves the lab as `before` found it. */
  async function stopped(before: ReturnType<Lab['snapshot']>): Promise<void> {
    run!.child.kill('SIGTERM');
    expect((await run!.done).code).toBe(143);
    run = null;
    expect(lab.snapshot()).toEqual(before);
  }

  it('reaches redis-server on 127.0.0.1:6379 in each of 3 sessions at 127.0.0.(1+id), each with its own data and 127.0.0.1 as its peer', async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    // Sessions 1 and 2 bind 127.0.0.1 (and ::1), as Debian's redis.conf does; session 3 listens on every address, IPv4 and
    // IPv6, as redis does without a configuration file. Protected mode is on: it refuses any client that is not 127.0.0.1,
    // ::1 or a unix socket.
    const redis = 'exec redis-server --port 6379 --save "" --appendonly no --protected-mode yes';
    run = lab.vipnat([
      'run',
      '--pool',
      POOL,
      '--sessions',
      '3',
      '--',
      'sh',
      '-c',
      `if [ "$VIPNAT_SESSION_ID" = 3 ]; then ${redis} --bind "* -::*"; else ${redis} --bind "127.0.0.1 -::1"; fi`,
    ]);
    await run.waitFor(/^session 3 vip \S+ loopback 127\.0\.0\.4 pid/);
    const gw = lab.gw;
    for (const id of [1, 2, 3]) {
      const set = await retry(async () => {
        const r = await inNs(gw, ['redis-cli', '-h', `127.0.0.${1 + id}`, 'set', 'owner', `session-${id}`]);
        if (r.stdout.trim() !== 'OK') throw new Error(`redis-cli set in session ${id}: ${r.stdout}${r.stderr}`);
        return r;
      });
      expect(set.code).toBe(0);
    }
    for (const id of [1, 2, 3]) {
      const get = await inNs(gw, ['redis-cli', '-h', `127.0.0.${1 + id}`, 'get', 'owner']);
      expect(get.stdout.trim()).toBe(`session-${id}`);
      // The client as the session's redis sees it: 127.0.0.1, on a port of the loopback range.
      const list = await inNs(gw, ['redis-cli', '-h', `127.0.0.${1 + id}`, 'client', 'list']);
      expect(list.stdout).toMatch(/addr=127\.0\.0\.1:(6[1-5]\d{3}) laddr=127\.0\.0\.1:6379/);
    }
    // route_localnet is on for vipnat0 alone, none of the interfaces that face a network.
    const localnet = spawnSync('ip', ['netns', 'exec', gw, 'sysctl', '-a', '--pattern', 'route_localnet'], { encoding: 'utf8' }).stdout;
    expect(localnet.split('\n').filter((l) => l.endsWith('= 1'))).toEqual(['net.ipv4.conf.vipnat0.route_localnet = 1']);
    // 127.0.0.1 itself is still this namespace's own: nothing listens on 6379 here.
    const own = await inNs(gw, ['redis-cli', '-h', '127.0.0.1', 'ping']);
    expect(own.stdout + own.stderr).toMatch(/Connection refused/);
    await stopped(before);
  });

  it('reaches a listener opened after the session started, TCP and UDP, and fails at once for closed ports and missing sessions', async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    run = lab.vipnat([
      'run',
      '--pool',
      POOL,
      '--sessions',
      '2',
      '--',
      'sh',
      '-c',
      // An HTTP server that starts 2 s after the session, on 127.0.0.1; a UDP echo on 127.0.0.1; session 2: HTTP on [::], dual-stack.
      'socat UDP-LISTEN:7000,bind=127.0.0.1,fork PIPE & ' +
        'if [ "$VIPNAT_SESSION_ID" = 1 ]; then sleep 2; exec python3 -u -m http.server 8000 --bind 127.0.0.1; ' +
        'else exec python3 -u -m http.server 8000 --bind ::; fi',
    ]);
    await run.waitFor(/^session 2 vip/);
    const gw = lab.gw;
    const t0 = Date.now();
    const page = await retry(async () => {
      const r = await httpGet(gw, '127.0.0.2', 8000);
      if (!r.stdout.startsWith('HTTP/1.0 200')) throw new Error(`GET 127.0.0.2:8000: ${r.stdout}${r.stderr}`);
      return r;
    }, 15_000);
    expect(page.stdout).toMatch(/Directory listing/);
    expect(Date.now() - t0).toBeGreaterThan(500); // it was not there at first
    // The server logged its client: 127.0.0.1.
    // (http.server logs to its standard error, which is vipnat's.)
    const r1 = run;
    await until(() => /^127\.0\.0\.1 - - \[.*\] "GET \/ HTTP\/1\.0" 200/m.test(r1.stderr));
    const v6 = await httpGet(gw, '127.0.0.3', 8000);
    expect(v6.stdout).toMatch(/^HTTP\/1\.0 200/);
    await until(() => /^::ffff:127\.0\.0\.1 - - \[.*\] "GET \/ HTTP\/1\.0" 200/m.test(r1.stderr));

    // UDP: an echo on 127.0.0.1:7000 in each session.
    for (const id of [1, 2]) {
      const echo = await retry(async () => {
        const r = await inNs(gw, ['timeout', '5', 'socat', '-t', '2', '-', `UDP:127.0.0.${1 + id}:7000`], `hello ${id}\n`);
        if (r.stdout !== `hello ${id}\n`) throw new Error(`UDP echo in session ${id}: ${r.stdout}${r.stderr}`);
        return r;
      });
      expect(echo.stdout).toBe(`hello ${id}\n`);
    }

    // A closed port, and the loopback of a session that is not running: refused at once, TCP and UDP.
    for (const addr of ['127.0.0.2', '127.0.0.9']) {
      const [tcp, tcpMs] = await timed(() => inNs(gw, ['timeout', '5', 'socat', '-', `TCP:${addr}:8999`]));
      expect(tcp.stderr, addr).toMatch(/Connection refused/);
      expect(tcpMs).toBeLessThan(1000);
      const [udp, udpMs] = await timed(() => inNs(gw, ['timeout', '5', 'socat', '-t', '3', '-', `UDP:${addr}:8999`], 'anyone?\n'));
      expect(udp.stderr, addr).toMatch(/Connection refused/);
      expect(udpMs).toBeLessThan(1500);
    }
    // ping too: the session answers, a missing one is unreachable.
    expect((await inNs(gw, ['ping', '-c', '1', '-W', '2', '127.0.0.3'])).stdout).toMatch(/1 received/);
    expect((await inNs(gw, ['ping', '-c', '1', '-W', '2', '127.0.0.9'])).stdout).toMatch(/0 received|Unreachable/);
    await stopped(before);
  });

  it("is the session's own loopback too: its client reaches its own 127.0.0.1 at 127.0.0.(1+id), and the rest of its loopback works as before", async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    // The client computes the address from its session id, as Windows Server 2012 asks of clients.
    const script = [
      'socat TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr,fork SYSTEM:"echo server of $VIPNAT_SESSION_ID" & a=$!',
      'socat TCP-LISTEN:62000,bind=127.0.0.1,reuseaddr,fork SYSTEM:"echo high port" & b=$!',
      'sleep 0.5',
      'echo "own: $(socat -t 2 - TCP:$VIPNAT_LOOPBACK:9000)"',
      'echo "plain: $(socat -t 2 - TCP:127.0.0.1:9000)"',
      'echo "high: $(socat -t 2 - TCP:127.0.0.1:62000)"',
      'ping -c 1 -W 2 127.0.0.1 >/dev/null && echo "ping: ok"',
      'kill $a $b',
    ].join('\n');
    const r = lab.vipnat(['run', '--pool', POOL, '--sessions', '2', '--', 'sh', '-c', script]);
    run = r;
    const { code } = await r.done;
    run = null;
    expect(code, r.lines.join('\n') + r.stderr).toBe(0);
    expect(r.lines).toEqual(expect.arrayContaining(['own: server of 1', 'own: server of 2', 'plain: server of 1', 'plain: server of 2']));
    expect(r.lines.filter((l) => l === 'high: high port')).toHaveLength(2);
    expect(r.lines.filter((l) => l === 'ping: ok')).toHaveLength(2);
    expect(lab.snapshot()).toEqual(before);
  });

  it("--loopback off routes nothing: 127.0.0.(1+id) stays this namespace's own loopback", async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    run = lab.vipnat([
      'run',
      '--pool',
      POOL,
      '--loopback',
      'off',
      '--',
      'sh',
      '-c',
      'exec socat TCP-LISTEN:9000,bind=127.0.0.1 SYSTEM:"echo session"',
    ]);
    const line = await run.waitFor(/^session 1 vip \S+ pid \d+$/);
    expect(line[0]).not.toMatch(/loopback/);
    const routes = spawnSync('ip', ['-n', lab.gw, 'route', 'show', 'table', 'local', 'dev', 'vipnat0'], { encoding: 'utf8' });
    expect(routes.stdout.trim()).toBe('');
    const r = await inNs(lab.gw, ['timeout', '5', 'socat', '-', 'TCP:127.0.0.2:9000']);
    expect(r.stderr).toMatch(/Connection refused/);
    await stopped(before);
  });

  it("leaves a session's loopback address that this namespace already uses to it, and says so", async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    const mine = lab.spawn(lab.gw, ['socat', 'TCP-LISTEN:9000,bind=127.0.0.5,reuseaddr,fork', 'SYSTEM:echo gateway namespace']);
    try {
      await retry(() => {
        if (!/127\.0\.0\.5:9000/.test(spawnSync('ip', ['netns', 'exec', lab.gw, 'ss', '-ltn'], { encoding: 'utf8' }).stdout)) {
          throw new Error('socat is not listening yet');
        }
      });
      const serve = 'exec socat TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr,fork SYSTEM:"echo session $VIPNAT_SESSION_ID"';
      run = lab.vipnat(['run', '--pool', POOL, '--sessions', '5', '--', 'sh', '-c', serve]);
      await run.waitFor(/^session 5 vip/);
      expect(run.lines).toContain(
        "vipnat: session 4's virtual loopback 127.0.0.5 is in use in this namespace (a TCP socket is bound to it (port 9000)): it stays this namespace's, and the session is not reachable at it from here",
      );
      expect(await lab.answerAt(lab.gw, '127.0.0.5', 9000)).toBe('gateway namespace');
      const other = await retry(async () => {
        const x = await inNs(lab.gw, ['timeout', '5', 'socat', '-t', '2', '-', 'TCP:127.0.0.6:9000']);
        if (x.stdout.trim() !== 'session 5') throw new Error(x.stdout + x.stderr);
        return x;
      });
      expect(other.stdout.trim()).toBe('session 5');
      run.child.kill('SIGTERM');
      await run.done;
      run = null;
    } finally {
      mine.kill('SIGKILL');
    }
    expect(lab.snapshot()).toEqual(before);
  });

  it('works with the long-running gateway: ls shows each loopback, and a session with an id past the pool gets a route of its own', async () => {
    lab = Lab.up();
    const before = lab.snapshot();
    const runDir = mkdtempSync(join(tmpdir(), 'vipnat-lb-'));
    try {
      run = lab.vipnat(['up', '--pool', POOL], { VIPNAT_RUN_DIR: runDir });
      await run.waitFor(/^vipnat: gateway "default" is up/);
      const cli = (args: string[]) =>
        spawnSync(process.execPath, [VIPNAT, ...args], { encoding: 'utf8', env: { ...process.env, VIPNAT_RUN_DIR: runDir } });
      const serve = ['--', 'socat', 'TCP-LISTEN:9000,bind=127.0.0.1,reuseaddr,fork', 'SYSTEM:echo session $VIPNAT_SESSION_ID'];
      expect(cli(['start', ...serve]).status).toBe(0);
      expect(cli(['start', '--id', '300', ...serve]).status).toBe(0);
      const ls = JSON.parse(cli(['ls', '--json']).stdout) as { id: number; loopback: string }[];
      expect(ls.map((s) => [s.id, s.loopback])).toEqual([
        [1, '127.0.0.2'],
        [300, '127.0.1.45'],
      ]);
      expect(cli(['ls']).stdout).toMatch(/^300\s+\S+\s+127\.0\.1\.45\s/m);
      for (const [addr, id] of [
        ['127.0.0.2', 1],
        ['127.0.1.45', 300],
      ] as const) {
        const r = await retry(async () => {
          const x = await inNs(lab.gw, ['timeout', '5', 'socat', '-t', '2', '-', `TCP:${addr}:9000`]);
          if (x.stdout.trim() !== `session ${id}`) throw new Error(`${addr}: ${x.stdout}${x.stderr}`);
          return x;
        });
        expect(r.stdout.trim()).toBe(`session ${id}`);
      }
      expect(cli(['stop', '300']).status).toBe(0);
      // Its route went with it; the connection is now refused by vipnat (no such session), or by this namespace.
      const gone = await inNs(lab.gw, ['timeout', '5', 'socat', '-', 'TCP:127.0.1.45:9000']);
      expect(gone.stderr).toMatch(/Connection refused/);
      expect(spawnSync('ip', ['-n', lab.gw, 'route', 'show', 'table', 'local', '127.0.1.45'], { encoding: 'utf8' }).stdout).toBe('');
      expect(cli(['down']).status).toBe(0);
      await run.done;
      run = null;
      expect(lab.snapshot()).toEqual(before);
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  });
});
