// VIPs leased from the LAN's DHCP server (--pool dhcp), against Debian's ISC Kea and dnsmasq in a namespace of the lab's LAN.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isRoot, Lab, retry, sweepLabs, type VipnatRun } from './lab.js';

const SERVE = ['--', 'sh', '-c', 'exec socat TCP-LISTEN:9000,reuseaddr,fork SYSTEM:"echo session $VIPNAT_SESSION_ID"'];

function udpListening(ns: string, port: number): boolean {
  return spawnSync('ip', ['netns', 'exec', ns, 'ss', '-Hlun', `sport = :${port}`], { encoding: 'utf8' }).stdout.trim() !== '';
}

/** The VIPs of a run's session lines, by id. */
function vips(r: VipnatRun): Map<number, string> {
  const m = new Map<number, string>();
  for (const l of r.lines) {
    const x = /^session (\d+) vip (\S+) /.exec(l);
    if (x) m.set(Number(x[1]), x[2]!);
  }
  return m;
}

describe.skipIf(!isRoot())('VIPs leased from DHCP', () => {
  let lab: Lab;
  let dir: string;
  let server: ReturnType<Lab['spawn']> | null = null;
  const runs: VipnatRun[] = [];
  beforeAll(() => sweepLabs());
  afterEach(async () => {
    for (const r of runs.splice(0)) {
      if (r.running) {
        r.child.kill('SIGTERM');
        await r.done;
      }
    }
    server?.kill('SIGTERM');
    server = null;
    lab?.down();
    rmSync(dir, { recursive: true, force: true });
  });
  afterAll(() => sweepLabs());

  function run(args: string[], ns?: string): VipnatRun {
    const r = lab.vipnat(['run', '--pool', 'dhcp:lan0', ...args], undefined, ns);
    runs.push(r);
    return r;
  }

  /** A LAN with a DHCP server namespace (198.18.100.5) beside the gateway and the backend. */
  function lan(): string {
    lab = Lab.up({ lan: true });
    dir = mkdtempSync(join(tmpdir(), 'vipnat-dhcp-'));
    return lab.addLanHost('dh', '198.18.100.5/24', 'fd00:100::5/64');
  }

  /** ISC Kea with in-memory leases written to a CSV file; `times` are valid, renew and rebind seconds. */
  async function kea(ns: string, times: [number, number, number] = [120, 60, 105]): Promise<string> {
    const leases = join(dir, 'leases.csv');
    writeFileSync(
      join(dir, 'kea.json'),
      JSON.stringify({
        Dhcp4: {
          'interfaces-config': { interfaces: ['lan0'], 'dhcp-socket-type': 'raw' },
          'lease-database': { type: 'memfile', persist: true, name: leases, 'lfc-interval': 0 },
          'valid-lifetime': times[0],
          'renew-timer': times[1],
          'rebind-timer': times[2],
          subnet4: [{ id: 1, subnet: '198.18.100.0/24', pools: [{ pool: '198.18.100.100 - 198.18.100.150' }] }],
          loggers: [{ name: 'kea-dhcp4', output_options: [{ output: join(dir, 'kea.log') }], severity: 'INFO' }],
        },
      }),
    );
    server = lab.spawn(ns, ['env', `KEA_PIDFILE_DIR=${dir}`, `KEA_LOCKFILE_DIR=${dir}`, 'kea-dhcp4', '-c', join(dir, 'kea.json')]);
    await retry(() => {
      if (!udpListening(ns, 67)) throw new Error('Kea is not listening yet');
    });
    return leases;
  }

  /** Kea's lease file: for each address, its last row's valid lifetime (0: released) and how many rows it has. */
  function keaLeases(file: string): Map<string, { valid: number; rows: number }> {
    const m = new Map<string, { valid: number; rows: number }>();
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const [address, , , valid] = line.split(',');
      if (!address) continue;
      m.set(address, { valid: Number(valid), rows: (m.get(address)?.rows ?? 0) + 1 });
    }
    return m;
  }

  async function dnsmasq(ns: string): Promise<string> {
    const leases = join(dir, 'dnsmasq.leases');
    writeFileSync(leases, '');
    // --no-ping: vipnat probes every address itself; dnsmasq's own check would add 3 s to each new lease.
    server = lab.spawn(ns, [
      'dnsmasq',
      '--no-daemon',
      '--conf-file=/dev/null',
      '--port=0',
      '--interface=lan0',
      '--bind-interfaces',
      '--dhcp-range=198.18.100.160,198.18.100.180,255.255.255.0,2m',
      `--dhcp-leasefile=${leases}`,
      '--dhcp-authoritative',
      '--no-ping',
      `--pid-file=${join(dir, 'dnsmasq.pid')}`,
    ]);
    await retry(() => {
      if (!udpListening(ns, 67)) throw new Error('dnsmasq is not listening yet');
    });
    return leases;
  }

  it('leases each session its VIP from Kea, on-link for a backend with no route to it, and releases it at the end', async () => {
    const leases = await kea(lan());
    const r = run(['--sessions', '3', ...SERVE]);
    await r.waitFor(/^session 3 vip/);
    const got = vips(r);
    expect(new Set(got.values()).size).toBe(3);
    for (const [id, vip] of got) {
      expect(vip).toMatch(/^198\.18\.100\.(1[0-4]\d|150)$/);
      expect(
        await retry(async () => {
          const who = await lab.answerAt(lab.be, vip, 9000);
          if (who !== `session ${id}`) throw new Error(`${vip}: ${who}`);
          return who;
        }),
      ).toBe(`session ${id}`);
    }
    // Each lease under the session's own client identifier (RFC 4361: type 255, IAID = the session id).
    const csv = readFileSync(leases, 'utf8');
    for (const id of [1, 2, 3]) expect(csv).toContain(`,ff:00:00:00:0${id}:00:04:`);
    r.child.kill('SIGTERM');
    expect((await r.done).code).toBe(143);
    for (const vip of got.values()) expect(keaLeases(leases).get(vip)?.valid, vip).toBe(0);
    expect(spawnSync('ip', ['-n', lab.gw, 'neigh', 'show', 'proxy'], { encoding: 'utf8' }).stdout).toBe('');
  });

  it('leases from dnsmasq too, the same addresses again on the next run, and the lease list empties at the end', async () => {
    const leases = await dnsmasq(lan());
    const first = run(['--sessions', '2', ...SERVE]);
    await first.waitFor(/^session 2 vip/);
    const a = vips(first);
    expect([...a.values()].every((v) => /^198\.18\.100\.1[678]\d$/.test(v))).toBe(true);
    for (const [id, vip] of a) expect(await lab.answerAt(lab.be, vip, 9000)).toBe(`session ${id}`);
    expect(readFileSync(leases, 'utf8').trim().split('\n')).toHaveLength(2);
    first.child.kill('SIGTERM');
    await first.done;
    await retry(() => {
      if (readFileSync(leases, 'utf8').trim() !== '') throw new Error('dnsmasq still lists leases');
    });
    const second = run(['--sessions', '2', ...SERVE]);
    await second.waitFor(/^session 2 vip/);
    expect(vips(second)).toEqual(a);
  });

  it('declines an offered address that a host on the LAN uses, and takes another', async () => {
    const dh = lan();
    lab.addLanHost('h', '198.18.100.100/24', 'fd00:100::100/64');
    await kea(dh);
    const r = run(['--sessions', '1', ...SERVE]);
    await r.waitFor(/^session 1 vip/);
    expect(r.lines.some((l) => /^vipnat: 198\.18\.100\.100, offered by the DHCP server, is in use on lan0 \(answered by /.test(l))).toBe(
      true,
    );
    expect(vips(r).get(1)).not.toBe('198.18.100.100');
    expect(readFileSync(join(dir, 'kea.log'), 'utf8')).toMatch(/DHCP4_DECLINE_LEASE|declin/i);
  });

  it('with no server: refused with the administrator message, or run on the shared address', async () => {
    lan();
    const refused = run(['--', 'true']);
    expect((await refused.done).code).toBe(3);
    expect(refused.lines).toEqual(
      expect.arrayContaining([
        'vipnat: session 1: no DHCP lease on lan0 (no DHCP server answered in time)',
        'session 1 No virtual IP address is available for this session, please contact your administrator.',
      ]),
    );
    const shared = run(['--on-exhausted', 'shared', '--', 'true']);
    expect((await shared.done).code).toBe(0);
    expect(shared.lines).toContain('vipnat: session 1: no DHCP lease on lan0 (no DHCP server answered in time)');
    expect(shared.lines.some((l) => /^session 1 shared 198\.18\.100\.1 /.test(l))).toBe(true);
    expect(spawnSync('ip', ['-n', lab.gw, 'neigh', 'show', 'proxy'], { encoding: 'utf8' }).stdout).toBe('');
  }, 60_000);

  it('two gateways on one link lease disjoint addresses from one server, and the backend reaches them all', async () => {
    const dh = lan();
    const g2 = lab.addLanHost('g2', '198.18.100.3/24', 'fd00:100::3/64');
    await kea(dh);
    const one = run(['--sessions', '2', ...SERVE]);
    const two = run(['--sessions', '2', ...SERVE], g2);
    await one.waitFor(/^session 2 vip/);
    await two.waitFor(/^session 2 vip/);
    const all = [...vips(one).values(), ...vips(two).values()];
    expect(new Set(all).size).toBe(4);
    for (const vip of all) expect(await lab.answerAt(lab.be, vip, 9000)).toMatch(/^session [12]$/);
  });

  it("works alongside the machine's own DHCP client on the same interface", { timeout: 60_000 }, async () => {
    // Short times, so that both the machine's client and the sessions' renew (and so listen) while the others lease.
    const leases = await kea(lan(), [30, 3, 20]);
    const mac = (
      JSON.parse(spawnSync('ip', ['-n', lab.gw, '-j', 'link', 'show', 'lan0'], { encoding: 'utf8' }).stdout) as { address: string }[]
    )[0]!.address;
    // busybox's udhcpc as the machine's client (-s /bin/true: it changes nothing on the interface).
    const own = lab.spawn(lab.gw, ['udhcpc', '-f', '-i', 'lan0', '-s', '/bin/true', '-t', '10', '-T', '1']);
    const ownRows = (): string[] =>
      readFileSync(leases, 'utf8')
        .split('\n')
        .filter((l) => l.includes(`,${mac},`) && !/,ff:00:00:00:/.test(l));
    try {
      await retry(() => {
        if (ownRows().length === 0) throw new Error('udhcpc has no lease yet');
      }, 15_000);
      const r = run(['--sessions', '2', ...SERVE]);
      await r.waitFor(/^session 2 vip/);
      for (const [id, vip] of vips(r)) expect(await lab.answerAt(lab.be, vip, 9000)).toBe(`session ${id}`);
      const before = ownRows().length;
      // The sessions renew every 3 s, udhcpc at half its lease (15 s): wait until it has renewed, the sessions leasing
      // and renewing meanwhile, and see it still running.
      await retry(() => {
        if (ownRows().length <= before) throw new Error('udhcpc has not renewed yet');
      }, 30_000);
      expect(own.exitCode).toBeNull();
      for (const vip of vips(r).values()) expect(keaLeases(leases).get(vip)!.rows).toBeGreaterThanOrEqual(2);
      for (const [id, vip] of vips(r)) expect(await lab.answerAt(lab.be, vip, 9000)).toBe(`session ${id}`);
    } finally {
      own.kill('SIGKILL');
    }
  });

  it('renews: a lease of 20 s outlives 60 s of traffic', async () => {
    const leases = await kea(lan(), [20, 10, 17]);
    const script = 'for i in $(seq 60); do ping -c 1 -W 1 198.18.100.2 >/dev/null || exit 1; sleep 1; done';
    const r = run(['--', 'sh', '-c', script]);
    await r.waitFor(/^session 1 vip/);
    const vip = vips(r).get(1)!;
    expect((await r.done).code).toBe(0);
    expect(r.lines.filter((l) => l.includes('lost its lease'))).toEqual([]);
    // Renewed every 10 s: the lease file has a row for each, then the release.
    const l = keaLeases(leases).get(vip)!;
    expect(l.rows).toBeGreaterThanOrEqual(6);
    expect(l.valid).toBe(0);
  }, 120_000);
});
