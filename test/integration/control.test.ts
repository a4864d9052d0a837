// The long-running gateway: vipnat up, then start/exec/stop/ls/pool/down from other processes, over the control socket.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND, cli, isRoot, Lab, listening, sweepLabs, until, VIPNAT, type CliResult, type VipnatRun } from './lab.js';

const NO_VIP = 'No virtual IP address is available for this session, please contact your administrator.';

interface SessionInfo {
  id: number;
  labels: Record<string, string>;
  vip: string;
  vip6: string | null;
  shared: boolean;
  loopback: string;
  netns: string;
  pids: number[];
  state: string;
  startedAt: string;
  packets: { in: number; out: number };
  bytes: { in: number; out: number };
}

interface PoolInfo {
  ranges: { range: string; family: number; total: number; used: number; free: number; holders: { address: string; session: number }[] }[];
  families: { family: number; total: number; used: number; free: number }[];
  shared: { address: string; sessions: number[] } | null;
}

describe.skipIf(!isRoot())('vipnat up and its clients', () => {
  let lab: Lab;
  let runDir: string;
  let gw: VipnatRun | null = null;
  /** The lab as it was before the gateway came up. */
  let before: ReturnType<Lab['snapshot']>;
  beforeAll(() => sweepLabs());
  afterEach(() => {
    lab?.down();
    rmSync(runDir, { recursive: true, force: true });
    gw = null;
  });
  afterAll(() => sweepLabs());

  /** A lab, and a gateway serving it from a run directory of this test's own (no other test's gateway shares its name). */
  async function up(flags: string[] = ['--pool', '198.19.7.0/26']): Promise<VipnatRun> {
    lab = Lab.up();
    runDir = mkdtempSync(join(tmpdir(), 'vipnat-ctl-'));
    before = lab.snapshot();
    gw = lab.vipnat(['up', ...flags], { VIPNAT_RUN_DIR: runDir });
    await gw.waitFor(/^vipnat: gateway "default" is up/);
    return gw;
  }

  it('gives 50 clients starting at the same moment 50 distinct VIPs; stop gives them back; ls and pool say so', async () => {
    const g = await up();
    const starts = await Promise.all(
      Array.from({ length: 50 }, (_, k) => cli(runDir, ['start', '--json', '--label', `agent=${k}`, '--', 'sleep', '120'])),
    );
    for (const r of starts) expect(r.code, r.stderr).toBe(0);
    const started = starts.map((r) => JSON.parse(r.stdout) as SessionInfo);
    expect(new Set(started.map((s) => s.vip)).size).toBe(50);
    expect(new Set(started.map((s) => s.id)).size).toBe(50);

    const ls = JSON.parse((await cli(runDir, ['ls', '--json'])).stdout) as SessionInfo[];
    expect(ls).toHaveLength(50);
    const one = ls.find((s) => s.labels['agent'] === '7')!;
    expect(Object.keys(one).sort()).toEqual(
      [
        'attached',
        'bytes',
        'dropped',
        'flows',
        'id',
        'labels',
        'loopback',
        'netns',
        'packets',
        'pids',
        'shared',
        'startedAt',
        'state',
        'vip',
        'vip6',
      ].sort(),
    );
    expect(one.state).toBe('running');
    expect(one.loopback).toBe(`127.0.0.${1 + one.id}`);
    expect(one.pids.length).toBeGreaterThan(0);
    expect(one.netns).toMatch(/^vipnat-\d+-\d+$/);
    expect(Date.parse(one.startedAt)).toBeGreaterThan(Date.now() - 120_000);

    let pool = JSON.parse((await cli(runDir, ['pool', '--json'])).stdout) as PoolInfo;
    expect(pool.ranges).toEqual([expect.objectContaining({ range: '198.19.7.0/26', family: 4, total: 62, used: 50, free: 12 })]);
    expect(pool.ranges[0]!.holders).toContainEqual({ address: one.vip, session: one.id });
    expect(pool.families).toEqual([{ family: 4, total: 62, used: 50, free: 12 }]);

    const stop = await cli(runDir, ['stop', String(one.id)]);
    expect(stop.code).toBe(0);
    expect(stop.stdout).toBe(`session ${one.id} stopped: exited by SIGTERM\n`);
    pool = JSON.parse((await cli(runDir, ['pool', '--json'])).stdout) as PoolInfo;
    expect(pool.ranges[0]).toMatchObject({ used: 49, free: 13 });
    expect(pool.ranges[0]!.holders.map((h) => h.address)).not.toContain(one.vip);
    // The human forms carry the same.
    expect((await cli(runDir, ['ls'])).stdout).toMatch(/^ID\s+VIP\s+VIP6\s+LOOPBACK\s+STATE/);
    expect((await cli(runDir, ['pool'])).stdout).toMatch(/198\.19\.7\.0\/26\s+IPv4\s+62\s+49\s+13/);

    expect((await cli(runDir, ['stop', '--all'])).code).toBe(0);
    expect(JSON.parse((await cli(runDir, ['ls', '--json'])).stdout)).toEqual([]);
    expect((await cli(runDir, ['down'])).code).toBe(0);
    expect((await g.done).code).toBe(0);
    expect(lab.snapshot()).toEqual(before);
  });

  it('exec runs a program in a session, leaving from its VIP; start --wait is the program, status included', async () => {
    await up();
    // The backend tells each client the address it sees.
    await listening(
      lab.spawn(lab.be, [
        'node',
        '-e',
        `require('net').createServer((s) => s.end(s.remoteAddress.replace('::ffff:', '') + '\\n')).listen(7000, () => console.log('listening'))`,
      ]),
    );
    const s = JSON.parse((await cli(runDir, ['start', '--json', '--', 'sleep', '120'])).stdout) as SessionInfo;
    const e = await cli(runDir, ['exec', String(s.id), '--', 'socat', '-', `TCP:${BACKEND}:7000`]);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stdout).toBe(`${s.vip}\n`);
    const fail = await cli(runDir, ['exec', String(s.id), '--', 'sh', '-c', 'echo to stderr >&2; exit 5']);
    expect(fail).toEqual({ code: 5, stdout: '', stderr: 'to stderr\n' });

    const w = await cli(runDir, ['start', '--wait', '--', 'sh', '-c', 'read x; echo "got $x from $VIPNAT_VIP"; exit 7'], {
      input: 'hello\n',
    });
    expect(w.code).toBe(7);
    expect(w.stdout).toMatch(/^got hello from 198\.19\.7\.\d+\n$/);
    const killed = await cli(runDir, ['start', '--wait', '--', 'sh', '-c', 'kill -TERM $$']);
    expect(killed.code).toBe(143);
  });

  it('says what is wrong in one line with a non-zero status', async () => {
    await up(['--pool', '198.19.7.5']);
    const oneLine = (r: CliResult, code: number, message: RegExp): void => {
      expect(r.code, r.stderr).toBe(code);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(message);
    };
    oneLine(await cli(runDir, ['ls', '--name', 'nobody-here']), 1, /no gateway named "nobody-here" is running/);
    oneLine(await cli(runDir, ['stop', '99']), 1, /no session 99/);
    oneLine(await cli(runDir, ['exec', '99', '--', 'true']), 1, /no session 99/);
    oneLine(await cli(runDir, ['start', '--vip', '198.19.8.1', '--', 'true']), 2, /--vip 198\.19\.8\.1: not an address of the pool/);
    oneLine(await cli(runDir, ['start', '--', 'no-such-program-xyz']), 127, /program not found: no-such-program-xyz/);
    expect((await cli(runDir, ['start', '--vip', '198.19.7.5', '--', 'sleep', '60'])).code).toBe(0);
    oneLine(await cli(runDir, ['start', '--vip', '198.19.7.5', '--', 'sleep', '60']), 1, /--vip 198\.19\.7\.5: already taken/);
    oneLine(await cli(runDir, ['start', '--id', '1', '--', 'sleep', '60']), 1, /session 1 already exists/);
    oneLine(await cli(runDir, ['start', '--', 'sleep', '60']), 3, new RegExp(NO_VIP.replace(/\./g, '\\.')));
    // A second gateway of the same name, from another namespace.
    const other = Lab.up();
    try {
      const second = other.vipnat(['up', '--pool', '198.19.9.0/28'], { VIPNAT_RUN_DIR: runDir });
      const r = await second.done;
      expect(r.code).toBe(1);
      expect(second.stderr).toMatch(/a gateway named "default" is already running/);
    } finally {
      other.down();
    }
    // Not root: the socket and its directory are root's, and the server checks its peers too.
    const user = await cli(runDir, ['ls'], { wrap: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'] });
    oneLine(user, 1, /is root's: run this as root/);
    // Even with the socket opened up by hand, the server asks the kernel who its peer is (SO_PEERCRED).
    chmodSync(runDir, 0o755);
    chmodSync(join(runDir, 'default.sock'), 0o666);
    oneLine(
      await cli(runDir, ['ls'], { wrap: ['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all'] }),
      1,
      /only root may use the gateway/,
    );
  });

  it('leaves no half-made session when a client goes away in the middle of its start', async () => {
    await up();
    const body = JSON.stringify({ program: 'sleep', args: ['60'] });
    for (let k = 0; k < 5; k++) {
      await new Promise<void>((resolve) => {
        const c = connect(join(runDir, 'default.sock'), () => {
          c.write(
            `POST /v1/sessions HTTP/1.1\r\nHost: vipnat\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`,
          );
          // Gone before the session can have been made (that takes tens of milliseconds).
          setTimeout(() => {
            c.destroy();
            resolve();
          }, 5);
        });
      });
    }
    // Each session made for a client that left is stopped at once.
    const end = Date.now() + 10_000;
    let ls: SessionInfo[];
    do {
      await new Promise((r) => setTimeout(r, 200));
      ls = JSON.parse((await cli(runDir, ['ls', '--json'])).stdout) as SessionInfo[];
    } while (ls.length > 0 && Date.now() < end);
    expect(ls).toEqual([]);
    const pool = JSON.parse((await cli(runDir, ['pool', '--json'])).stdout) as PoolInfo;
    expect(pool.families[0]!.used).toBe(0);
  });

  it('after SIGKILL of the gateway, its sessions die with it and the next up cleans up, the stale socket too', async () => {
    const g = await up();
    const s = JSON.parse((await cli(runDir, ['start', '--json', '--', 'sh', '-c', 'sleep 300 & sleep 301'])).stdout) as SessionInfo;
    g.child.kill('SIGKILL');
    await g.done;
    await until(() => !alive(s.pids[0]!), 1000);
    const next = lab.vipnat(['up', '--pool', '198.19.7.0/26'], { VIPNAT_RUN_DIR: runDir });
    await next.waitFor(/^vipnat: gateway "default" is up/);
    expect(next.lines.join('\n')).toMatch(new RegExp(`cleaned up after vipnat ${g.child.pid}.*removed 1 session namespace`));
    expect(JSON.parse((await cli(runDir, ['ls', '--json'])).stdout)).toEqual([]);
    expect((await cli(runDir, ['down'])).code).toBe(0);
    expect((await next.done).code).toBe(0);
    expect(lab.snapshot()).toEqual(before);
  });

  it('works when the gateway was started with ip netns exec (a private mount namespace): exec, ls, stop, ip netns exec from outside', async () => {
    lab = Lab.up();
    runDir = mkdtempSync(join(tmpdir(), 'vipnat-ctl-'));
    const before = lab.snapshot();
    const c = spawn('ip', ['netns', 'exec', lab.gw, VIPNAT, 'up', '--pool', '198.19.7.0/26'], {
      env: { ...process.env, VIPNAT_RUN_DIR: runDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const done = new Promise<number | null>((resolve) => c.on('close', (code) => resolve(code)));
    try {
      await until(() => out.includes('is up'), 20_000);
      const s = JSON.parse((await cli(runDir, ['start', '--json', '--', 'sleep', '120'])).stdout) as SessionInfo;
      const outside = spawn('ip', ['netns', 'exec', s.netns, 'ip', '-br', 'addr', 'show', 'eth0']);
      let text = '';
      outside.stdout.on('data', (d: Buffer) => (text += d.toString()));
      await new Promise((r) => outside.on('close', r));
      expect(text).toContain(s.vip);
      expect((await cli(runDir, ['exec', String(s.id), '--', 'ip', '-br', 'addr', 'show', 'eth0'])).stdout).toContain(s.vip);
      expect((JSON.parse((await cli(runDir, ['ls', '--json'])).stdout) as SessionInfo[])[0]!.pids.length).toBeGreaterThan(0);
      expect((await cli(runDir, ['stop', String(s.id)])).code).toBe(0);
      expect((await cli(runDir, ['down'])).code).toBe(0);
      expect(await done).toBe(0);
    } finally {
      c.kill('SIGKILL');
    }
    const names = spawnSync('ip', ['netns', 'list'], { encoding: 'utf8' }).stdout;
    expect(names).not.toContain(`vipnat-${c.pid}-`);
    expect(lab.snapshot()).toEqual(before);
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
