// vipnat attach: an existing namespace (a process's, a named one) gets a VIP of a running gateway, its own interfaces untouched.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND, BACKEND6, cli, isRoot, Lab, sweepLabs, until, type VipnatRun } from './lab.js';

const POOL = '198.19.7.0/28';

interface SessionInfo {
  id: number;
  vip: string;
  netns: string;
  pids: number[];
  state: string;
  attached: boolean;
}

describe.skipIf(!isRoot())('vipnat attach', () => {
  let lab: Lab;
  let runDir: string;
  let gw: VipnatRun | null = null;
  beforeAll(() => sweepLabs());
  afterEach(async () => {
    if (gw?.running) {
      gw.child.kill('SIGTERM');
      await gw.done;
    }
    gw = null;
    lab?.down();
    rmSync(runDir, { recursive: true, force: true });
  });
  afterAll(() => sweepLabs());

  async function up(pool = POOL): Promise<void> {
    lab = Lab.up();
    runDir = mkdtempSync(join(tmpdir(), 'vipnat-att-'));
    // The backend says who called.
    lab.spawn(lab.be, ['socat', 'TCP-LISTEN:9000,fork,reuseaddr', 'SYSTEM:echo $SOCAT_PEERADDR']);
    await until(() => lab.exec(lab.be, ['ss', '-ltn']).stdout.includes(':9000'));
    gw = lab.vipnat(['up', '--pool', pool], { VIPNAT_RUN_DIR: runDir });
    await gw.waitFor(/^vipnat: gateway "default" is up/);
  }
  const client = (args: string[]) => cli(runDir, args);
  const sessions = async (): Promise<SessionInfo[]> => JSON.parse((await client(['ls', '--json'])).stdout) as SessionInfo[];
  /** What a namespace has of its own: addresses, routes (every table) and rules, vipnat's TUN left out. */
  const own = (ns: string): string =>
    ['-o addr', 'route show table all', 'rule', '-6 rule']
      .map((c) => lab.exec(lab.gw, ['nsenter', `--net=${ns}`, 'ip', ...c.split(' ')]).stdout)
      .join('\n')
      .split('\n')
      .filter((l) => !/vipnat\d|^100:|^\s+(valid_lft|link\/none)/.test(l))
      .join('\n');

  it('gives a named namespace a VIP: the backend sees it, ls shows it, detach gives it back and leaves the namespace as it was', async () => {
    await up();
    const c = lab.addBare('c');
    // The namespace has a life of its own: an address, a route, a program.
    lab.exec(c, ['ip', 'addr', 'add', '10.77.0.1/24', 'dev', 'lo']);
    lab.exec(c, ['ip', 'route', 'add', '10.88.0.0/16', 'dev', 'lo']);
    const path = `/run/netns/${c}`;
    const before = own(path);
    const r = await client(['attach', '--netns', c, '--label', 'role=legacy']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toMatch(new RegExp(`^session 1 vip 198\\.19\\.7\\.1 attached to netns:${c}$`));
    expect(gw!.lines.some((l) => l === `session 1 vip 198.19.7.1 attached to netns:${c}`)).toBe(true);
    // Traffic to the networks the gateway routes to (the backend's, by default) leaves from the VIP.
    expect((await lab.nsRun(c, ['socat', '-t', '2', '-', `TCP:${BACKEND}:9000`], 10_000, '')).stdout.trim()).toBe('198.19.7.1');
    expect(own(path)).toBe(before);
    // Its other interfaces no longer answer ARP for addresses not theirs (the VIP): traffic to the VIP comes through vipnat.
    const arpIgnore = (): string => lab.exec(c, ['cat', '/proc/sys/net/ipv4/conf/all/arp_ignore']).stdout.trim();
    expect(arpIgnore()).toBe('1');
    const [s] = await sessions();
    expect(s).toMatchObject({ id: 1, vip: '198.19.7.1', netns: `netns:${c}`, state: 'running', attached: true });
    const sockets = JSON.parse((await client(['sockets', '--json'])).stdout) as {
      session: number;
      outside: { local: { address: string } } | null;
    }[];
    expect(sockets.some((x) => x.session === 1 && x.outside?.local.address === '198.19.7.1')).toBe(true);
    // A second attach to the same namespace, or to the gateway's own, is refused.
    const again = await client(['attach', '--netns', c]);
    expect(again.code).not.toBe(0);
    expect(again.stderr.trim()).toBe(`vipnat: netns:${c}: that namespace is session 1's already`);
    const self = await client(['attach', '--netns', lab.gw]);
    expect(self.stderr.trim()).toBe(`vipnat: netns:${lab.gw}: that is the gateway's own network namespace`);
    // Its programs are the namespace's own: exec is refused in one line.
    const exec = await client(['exec', '1', '--', 'true']);
    expect(exec.code).not.toBe(0);
    expect(exec.stderr.trim()).toBe(`vipnat: session 1 is attached to netns:${c}: run programs there with its own tools`);
    expect((await client(['attach', '--netns', 'no-such-ns'])).stderr.trim()).toBe(
      'vipnat: --netns no-such-ns: no such network namespace (/run/netns/no-such-ns)',
    );

    const d = await client(['detach', '1']);
    expect(d.code, d.stderr).toBe(0);
    expect(await sessions()).toEqual([]);
    expect(lab.exec(c, ['ip', 'link']).stdout).not.toContain('vipnat1');
    expect(own(path)).toBe(before);
    expect(lab.exec(c, ['ip', 'rule']).stdout).not.toMatch(/^100:/m);
    expect(arpIgnore()).toBe('0');
    const pool = JSON.parse((await client(['pool', '--json'])).stdout) as { families: { used: number }[] };
    expect(pool.families[0]!.used).toBe(0);
  });

  it("gives a process's namespace a VIP for the routes named, and ends the session when the process ends", async () => {
    await up();
    const c = lab.addBare('p');
    // A "container": a process with a network namespace of its own (no name), living 4 s.
    const proc = lab.start('ip', ['netns', 'exec', c, 'unshare', '--net', 'sh', '-c', 'ip link set lo up; echo $$; exec sleep 4']);
    await until(() => /^\d+\n/.test(proc.out));
    const pid = Number(proc.out.trim());
    const r = await client(['attach', '--pid', String(pid), '--route', `${BACKEND}/32`, '--json']);
    expect(r.code, r.stderr).toBe(0);
    const s = JSON.parse(r.stdout) as SessionInfo;
    expect(s).toMatchObject({ id: 1, netns: `pid:${pid}`, attached: true, pids: [pid] });
    const got = lab.exec(lab.gw, ['nsenter', `--net=/proc/${pid}/ns/net`, 'socat', '-t', '2', '-', `TCP:${BACKEND}:9000`], '');
    expect(got.stdout.trim()).toBe('198.19.7.1');
    // Only the route named goes through the VIP.
    const routes = lab.exec(lab.gw, ['nsenter', `--net=/proc/${pid}/ns/net`, 'ip', 'route', 'show', 'table', 'all']).stdout;
    expect(routes).toContain(`${BACKEND} dev vipnat1`);
    expect(routes).not.toContain('198.18.0.0/24');
    await proc.done;
    await gw!.waitFor(/^session 1 exited with status 0 \(vip 198\.19\.7\.1 released\)$/, 10_000);
    expect(await sessions()).toEqual([]);
    const pid2 = await client(['attach', '--pid', '999999']);
    expect(pid2.stderr.trim()).toBe('vipnat: --pid 999999: no such process');
  });

  it('attaches dual-stack: the VIP and the VIP6, routes of both families, and nothing left at detach', async () => {
    await up(`${POOL},fd00:19::100-fd00:19::1ff`);
    lab.spawn(lab.be, ['socat', 'TCP6-LISTEN:9006,ipv6only=1,fork,reuseaddr', 'SYSTEM:echo $SOCAT_PEERADDR']);
    await until(() => lab.exec(lab.be, ['ss', '-ltn']).stdout.includes(':9006'));
    const c = lab.addBare('d');
    const r = await client(['attach', '--netns', c, '--route', `${BACKEND}/32`, '--route', `${BACKEND6}/128`]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`session 1 vip 198.19.7.1 vip6 fd00:19::100 attached to netns:${c}`);
    expect((await lab.nsRun(c, ['socat', '-t', '2', '-', `TCP:${BACKEND}:9000`], 10_000, '')).stdout.trim()).toBe('198.19.7.1');
    expect((await lab.nsRun(c, ['socat', '-t', '2', '-', `TCP6:[${BACKEND6}]:9006`], 10_000, '')).stdout.trim()).toBe(
      '[fd00:0019:0000:0000:0000:0000:0000:0100]', // socat writes its peer in full
    );
    expect((await client(['detach', '1'])).code).toBe(0);
    expect(lab.exec(c, ['ip', 'link']).stdout).not.toContain('vipnat1');
    expect(lab.exec(c, ['ip', '-6', 'rule']).stdout).not.toMatch(/^100:/m);
    expect(lab.exec(c, ['ip', 'rule']).stdout).not.toMatch(/^100:/m);
  });
});
