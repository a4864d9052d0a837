// On-link VIPs: a pool inside the LAN's own subnet, answered for by proxy ARP and NDP, probed before use and announced when taken.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, Lab, retry, sweepLabs, VIPNAT, type VipnatRun } from './lab.js';

/** Inside the lab LAN's subnets (198.18.100.0/24, fd00:100::/64); the backend has no route for them. */
const POOL = '198.18.100.64/28,fd00:100::100-fd00:100::10f';
const BACKEND = '198.18.100.2';
const BACKEND6 = 'fd00:100::2';
const SERVE = ['--', 'sh', '-c', 'exec socat TCP6-LISTEN:9000,reuseaddr,fork SYSTEM:"echo session $VIPNAT_SESSION_ID"'];

function sh(ns: string, argv: string[]): string {
  return spawnSync('ip', ['netns', 'exec', ns, ...argv], { encoding: 'utf8' }).stdout;
}

/** What vipnat changes on the LAN side: neighbour proxies and the sysctls behind them. */
function lanState(ns: string): string {
  return (
    spawnSync('ip', ['-n', ns, 'neigh', 'show', 'proxy'], { encoding: 'utf8' }).stdout +
    sh(ns, [
      'sysctl',
      'net.ipv4.neigh.lan0.proxy_delay',
      'net.ipv6.neigh.lan0.proxy_delay',
      'net.ipv6.conf.lan0.proxy_ndp',
      'net.ipv6.conf.lan0.accept_ra',
      'net.ipv4.ip_forward',
      'net.ipv6.conf.all.forwarding',
    ])
  );
}

describe.skipIf(!isRoot())('on-link VIPs', () => {
  let lab: Lab;
  const runs: VipnatRun[] = [];
  beforeAll(() => sweepLabs());
  afterEach(async () => {
    for (const r of runs.splice(0)) {
      if (r.running) {
        r.child.kill('SIGTERM');
        await r.done;
      }
    }
    lab?.down();
  });
  afterAll(() => sweepLabs());

  function run(args: string[], ns?: string): VipnatRun {
    const r = lab.vipnat(['run', '--pool', POOL, ...args], undefined, ns);
    runs.push(r);
    return r;
  }

  it('reach and are reached by a backend that has no route to the pool, IPv4 and IPv6, and leave nothing behind', async () => {
    lab = Lab.up({ lan: true });
    const before = lanState(lab.gw);
    expect(sh(lab.be, ['ip', 'route'])).not.toMatch(/default|198\.18\.100\.64/);
    const r = run(['--sessions', '2', ...SERVE]);
    await r.waitFor(/^session 2 vip 198\.18\.100\.66 loopback \S+ pid \d+ vip6 fd00:100::101$/);
    expect(r.lines).toContain('session 1 vip 198.18.100.65 loopback 127.0.0.2 pid ' + r.lines[0]!.split(' pid ')[1]);
    for (const [addr, id] of [
      ['198.18.100.65', 1],
      ['198.18.100.66', 2],
      ['fd00:100::100', 1],
      ['fd00:100::101', 2],
    ] as const) {
      expect(
        await retry(async () => {
          const who = await lab.answerAt(lab.be, addr, 9000);
          if (who !== `session ${id}`) throw new Error(`${addr}: ${who}`);
          return who;
        }),
      ).toBe(`session ${id}`);
    }
    // The backend learnt each VIP at the gateway's link-layer address.
    expect(sh(lab.be, ['ip', 'neigh', 'show', '198.18.100.65'])).toContain(lab.macOf(lab.gw));
    // And the sessions reach the backend, from their VIPs.
    const pid = r.pid;
    const ping = await lab.nsRun(`vipnat-${pid}-1`, ['ping', '-c', '1', '-W', '2', BACKEND]);
    expect(ping.stdout).toMatch(/1 received/);
    const ping6 = await lab.nsRun(`vipnat-${pid}-2`, ['ping', '-6', '-c', '1', '-W', '2', BACKEND6]);
    expect(ping6.stdout).toMatch(/1 received/);
    // One proxy entry per VIP held, no blanket proxy_arp.
    const proxies = spawnSync('ip', ['-n', lab.gw, 'neigh', 'show', 'proxy'], { encoding: 'utf8' }).stdout;
    expect(
      proxies
        .trim()
        .split('\n')
        .map((l) => l.trim())
        .sort(),
    ).toEqual(
      [
        '198.18.100.65 dev lan0 proxy',
        '198.18.100.66 dev lan0 proxy',
        'fd00:100::100 dev lan0 proxy',
        'fd00:100::101 dev lan0 proxy',
      ].sort(),
    );
    expect(sh(lab.gw, ['sysctl', '-n', 'net.ipv4.conf.lan0.proxy_arp']).trim()).toBe('0');
    r.child.kill('SIGTERM');
    expect((await r.done).code).toBe(143);
    expect(lanState(lab.gw)).toBe(before);
  });

  it('skips an address another host on the LAN uses, naming it, IPv4 and IPv6', async () => {
    lab = Lab.up({ lan: true });
    const h = lab.addLanHost('h', '198.18.100.65/24', 'fd00:100::100/64');
    const r = run(['--sessions', '1', ...SERVE]);
    await r.waitFor(/^session 1 vip/);
    const mac = lab.macOf(h);
    expect(r.lines).toContain(
      `vipnat: 198.18.100.65 is in use on lan0 (answered by ${mac}): session 1 takes another, and it is tried again in a minute`,
    );
    expect(r.lines).toContain(
      `vipnat: fd00:100::100 is in use on lan0 (answered by ${mac}): session 1 takes another, and it is tried again in a minute`,
    );
    expect(r.lines.find((l) => l.startsWith('session 1 vip'))).toMatch(/^session 1 vip 198\.18\.100\.66 .* vip6 fd00:100::101$/);
    expect(
      await retry(async () => {
        const who = await lab.answerAt(lab.be, '198.18.100.66', 9000);
        if (who !== 'session 1') throw new Error(who);
        return who;
      }),
    ).toBe('session 1');
  });

  it('two gateways with one pool on one link never hand out the same address, and a VIP that moves is learnt from the gratuitous ARP', async () => {
    lab = Lab.up({ lan: true });
    const g2 = lab.addLanHost('g2', '198.18.100.3/24', 'fd00:100::3/64');
    const one = run(['--sessions', '2', ...SERVE]);
    await one.waitFor(/^session 2 vip/);
    const two = run(['--sessions', '2', ...SERVE], g2);
    await two.waitFor(/^session 2 vip/);
    const vips = (r: VipnatRun): string[] => r.lines.filter((l) => /^session \d+ vip/.test(l)).map((l) => l.split(' ')[3]!);
    expect(vips(one)).toEqual(['198.18.100.65', '198.18.100.66']);
    expect(vips(two)).toEqual(['198.18.100.67', '198.18.100.68']);
    expect(two.lines.filter((l) => / is in use on lan0 \(answered by /.test(l)).join('\n')).toContain(lab.macOf(lab.gw));
    for (const addr of ['198.18.100.65', '198.18.100.66', '198.18.100.67', '198.18.100.68']) {
      expect(
        await retry(async () => {
          const who = await lab.answerAt(lab.be, addr, 9000);
          if (!/^session [12]$/.test(who)) throw new Error(`${addr}: ${who}`);
          return who;
        }),
      ).toMatch(/^session [12]$/);
    }
    expect(sh(lab.be, ['ip', 'neigh', 'show', '198.18.100.65'])).toContain(lab.macOf(lab.gw));

    // The first gateway goes; a third run on the second machine takes 198.18.100.65, and its announcement moves the
    // backend's neighbour entry at once (the backend sends nothing meanwhile).
    one.child.kill('SIGTERM');
    await one.done;
    two.child.kill('SIGTERM');
    await two.done;
    const three = run(['--sessions', '1', ...SERVE], g2);
    await three.waitFor(/^session 1 vip 198\.18\.100\.65 /);
    await retry(() => {
      if (!sh(lab.be, ['ip', 'neigh', 'show', '198.18.100.65']).includes(lab.macOf(g2)))
        throw new Error('the backend has not learnt the move');
    }, 3000);
    expect(await lab.answerAt(lab.be, '198.18.100.65', 9000)).toBe('session 1');
  });

  it('two gateways started at the same moment with one pool never take the same address', async () => {
    lab = Lab.up({ lan: true });
    const g2 = lab.addLanHost('g2', '198.18.100.3/24', 'fd00:100::3/64');
    const one = run(['--sessions', '3', ...SERVE]);
    const two = run(['--sessions', '3', ...SERVE], g2);
    await one.waitFor(/^session 3 vip/, 60_000);
    await two.waitFor(/^session 3 vip/, 60_000);
    const vips = (r: VipnatRun): string[] => r.lines.filter((l) => /^session \d+ vip/.test(l)).map((l) => l.split(' ')[3]!);
    const all = [...vips(one), ...vips(two)];
    expect(all).toHaveLength(6);
    expect(new Set(all).size).toBe(6);
    for (const addr of all) {
      expect(
        await retry(async () => {
          const who = await lab.answerAt(lab.be, addr, 9000);
          if (!/^session [123]$/.test(who)) throw new Error(`${addr}: ${who}`);
          return who;
        }),
      ).toMatch(/^session [123]$/);
    }
  });

  it('takes an address whose old holder left: what the link said before the probe is no answer to it', async () => {
    lab = Lab.up({ lan: true });
    const runDir = mkdtempSync(join(tmpdir(), 'vipnat-lan-'));
    try {
      const gw = lab.vipnat(['up', '--pool', POOL], { VIPNAT_RUN_DIR: runDir });
      runs.push(gw);
      await gw.waitFor(/^vipnat: gateway "default" is up/);
      // A host holds 198.18.100.65 for a while and talks from it (its ARP requests reach the gateway), then leaves.
      const h = lab.addLanHost('h', '198.18.100.65/24', 'fd00:100::100/64');
      await lab.nsRun(h, ['ping', '-c', '1', '-W', '1', BACKEND]);
      sh(h, ['ip', 'addr', 'del', '198.18.100.65/24', 'dev', 'lan0']);
      sh(h, ['ip', 'addr', 'del', 'fd00:100::100/64', 'dev', 'lan0']);
      await new Promise((r) => setTimeout(r, 1000));
      const start = spawnSync(process.execPath, [VIPNAT, 'start', '--', 'sleep', '30'], {
        encoding: 'utf8',
        env: { ...process.env, VIPNAT_RUN_DIR: runDir },
      });
      expect(start.status, start.stderr).toBe(0);
      expect(start.stdout).toMatch(/^session 1 vip 198\.18\.100\.65 /);
      expect(gw.lines.filter((l) => l.includes('is in use'))).toEqual([]);
    } finally {
      rmSync(runDir, { recursive: true, force: true });
    }
  });

  it('after SIGKILL, the next start removes the neighbour proxies and puts the sysctls back', async () => {
    lab = Lab.up({ lan: true });
    const before = lanState(lab.gw);
    const r = run(['--sessions', '2', '--', 'sleep', '60']);
    await r.waitFor(/^session 2 vip/);
    expect(lanState(lab.gw)).not.toBe(before);
    r.child.kill('SIGKILL');
    await r.done;
    expect(spawnSync('ip', ['-n', lab.gw, 'neigh', 'show', 'proxy'], { encoding: 'utf8' }).stdout).toMatch(
      /198\.18\.100\.65 dev lan0 proxy/,
    );
    const next = run(['--', 'true']);
    expect((await next.done).code).toBe(0);
    expect(next.lines[0]).toMatch(/^vipnat: cleaned up after vipnat \d+, which did not exit cleanly: .*removed 4 neighbour proxies/);
    expect(lanState(lab.gw)).toBe(before);
  });

  it('says in one line what is wrong with --uplink or a pool across a subnet edge', async () => {
    lab = Lab.up({ lan: true });
    const bad = run(['--uplink', 'nope0', '--', 'true']);
    const r1 = await bad.done;
    expect(r1.code).toBe(2);
    expect(bad.stderr.trim()).toBe('vipnat: --uplink nope0: no such interface in this namespace');
    const edge = lab.vipnat(['run', '--pool', '198.18.100.250-198.18.101.5', '--', 'true']);
    runs.push(edge);
    const r2 = await edge.done;
    expect(r2.code).toBe(2);
    expect(edge.stderr.trim()).toMatch(
      /^vipnat: pool range 198\.18\.100\.250-198\.18\.101\.5 straddles the edge of lan0's subnet \(198\.18\.100\.1\/24\)/,
    );
  });
});
