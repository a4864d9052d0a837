// Seeing what sessions do: vipnat sockets, capture (read by tshark), Prometheus metrics (checked by promtool), top and run's progress line.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { SocketRow } from '../../src/cli/commands/observe.js';
import { BACKEND, cli, finish, isRoot, Lab, retry, sleep, sweepLabs, until, VIPNAT, type VipnatRun } from './lab.js';

const POOL = '198.19.7.0/28';
const VIP = (k: number): string => `198.19.7.${k}`;
const INNER = '10.0.2.100';

/** The blocks of a pcapng file: packets, and what its statistics blocks say was left out. */
function pcapngCounts(file: string): { packets: number; leftOut: number; statistics: number } {
  const b = readFileSync(file);
  let at = 0;
  let packets = 0;
  let leftOut = 0;
  let statistics = 0;
  while (at + 12 <= b.length) {
    const type = b.readUInt32LE(at);
    const len = b.readUInt32LE(at + 4);
    if (type === 6) packets++;
    if (type === 5) {
      statistics++;
      for (let o = at + 20; o + 4 <= at + len - 4;) {
        const code = b.readUInt16LE(o);
        const l = b.readUInt16LE(o + 2);
        if (code === 0) break;
        if (code === 5) leftOut += Number(b.readBigUInt64LE(o + 4));
        o += 4 + ((l + 3) & ~3);
      }
    }
    at += len;
  }
  return { packets, leftOut, statistics };
}

/** tshark's fields of every packet of a file, one array per packet, and what tshark said on stderr besides root's warning. */
function tshark(file: string, fields: string[]): { rows: string[][]; warnings: string } {
  const r = spawnSync('tshark', ['-r', file, '-T', 'fields', ...fields.flatMap((f) => ['-e', f])], { encoding: 'utf8' });
  const warnings = r.stderr
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^Running as user "root"/.test(l))
    .join('\n');
  expect(r.status, r.stderr).toBe(0);
  return {
    rows: r.stdout
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => l.split('\t')),
    warnings,
  };
}

describe.skipIf(!isRoot())('seeing what sessions do', () => {
  let lab: Lab;
  let runDir: string;
  let run: VipnatRun | null = null;
  let tmux: string | null = null;
  beforeAll(() => sweepLabs());
  afterEach(async () => {
    if (tmux) spawnSync('tmux', ['-L', tmux, 'kill-server']);
    tmux = null;
    if (run?.running) {
      run.child.kill('SIGTERM');
      await run.done;
    }
    run = null;
    lab?.down();
    rmSync(runDir, { recursive: true, force: true });
  });
  afterAll(() => sweepLabs());

  /** A lab and a run of `sessions` sessions of `program` (sh -c), with a run directory of this test's own. */
  async function start(sessions: number, program: string, flags: string[] = []): Promise<VipnatRun> {
    lab = Lab.up();
    runDir = mkdtempSync(join(tmpdir(), 'vipnat-obs-'));
    run = lab.vipnat(['run', '--pool', POOL, '--sessions', String(sessions), ...flags, '--', 'sh', '-c', program], {
      VIPNAT_RUN_DIR: runDir,
    });
    for (let k = 1; k <= sessions; k++) await run.waitFor(new RegExp(`^session ${k} vip`));
    return run;
  }

  const client = (args: string[], wrap?: string[]) => cli(runDir, args, wrap ? { wrap } : {});

  for (const mode of ['address', 'nat'] as const) {
    it(`sockets lists each session's listener and connections with their pid and name, inside and outside (${mode} mode)`, async () => {
      lab = Lab.up();
      // The backend's listener is in place before the sessions dial it.
      lab.spawn(lab.be, ['socat', 'TCP-LISTEN:7777,fork,reuseaddr', 'EXEC:sleep 60']);
      await until(() => lab.exec(lab.be, ['ss', '-ltn']).stdout.includes(':7777'));
      runDir = mkdtempSync(join(tmpdir(), 'vipnat-obs-'));
      const inner = mode === 'nat' ? ['--inner-address', INNER] : [];
      run = lab.vipnat(
        [
          'run',
          '--pool',
          POOL,
          '--sessions',
          '2',
          ...inner,
          '--',
          'sh',
          '-c',
          `socat TCP-LISTEN:9000,fork,reuseaddr EXEC:cat & exec socat -u TCP:${BACKEND}:7777 OPEN:/dev/null`,
        ],
        { VIPNAT_RUN_DIR: runDir },
      );
      await run.waitFor(/^session 2 vip/);
      // A backend client holds a connection to session 1's listener.
      lab.spawn(lab.be, ['sh', '-c', `sleep 60 | socat - TCP:${VIP(1)}:9000`]);
      const rows = await retry(async () => {
        const r = await client(['sockets', '--json']);
        expect(r.code, r.stderr).toBe(0);
        const rows = JSON.parse(r.stdout) as SocketRow[];
        // Accepted (held by socat's fork), and the dial out.
        expect(
          rows.filter((x) => x.session === 1 && x.state === 'ESTAB'),
          JSON.stringify(rows),
        ).toHaveLength(2);
        return rows;
      });
      const self = mode === 'nat' ? INNER : VIP(1);
      const mine = rows.filter((x) => x.session === 1);
      const ls = JSON.parse((await client(['ls', '--json'])).stdout) as { id: number; pids: number[] }[];
      const pids1 = new Set(ls.find((s) => s.id === 1)!.pids);

      const listener = mine.find((x) => x.state === 'LISTEN')!;
      expect(listener).toMatchObject({
        proto: 'tcp',
        family: 4,
        local: { address: '0.0.0.0', port: 9000 },
        kernel: true,
        outside: null,
        flow: null,
      });
      expect(listener.processes).toHaveLength(1);
      expect(listener.processes[0]!.name).toBe('socat');
      expect(pids1.has(listener.processes[0]!.pid)).toBe(true);
      expect(readFileSync(`/proc/${listener.processes[0]!.pid}/comm`, 'utf8').trim()).toBe('socat');

      const accepted = mine.find((x) => x.state === 'ESTAB' && x.local.port === 9000)!;
      expect(accepted.local.address).toBe(self);
      expect(accepted.remote.address).toBe(BACKEND);
      expect(accepted.outside).toEqual({ local: { address: VIP(1), port: 9000 }, remote: accepted.remote });
      expect(accepted.flow).toMatchObject({ state: 'established', loopback: false });
      expect(accepted.processes.map((p) => p.name)).toEqual(['socat']);

      const out = mine.find((x) => x.state === 'ESTAB' && x.remote.port === 7777)!;
      expect(out.local.address).toBe(self);
      expect(out.outside!.local.address).toBe(VIP(1));
      expect(out.outside!.remote).toEqual({ address: BACKEND, port: 7777 });
      expect(out.processes[0]!.name).toBe('socat');
      expect(pids1.has(out.processes[0]!.pid)).toBe(true);
      for (const r of mine) {
        expect(Object.keys(r).sort()).toEqual(
          [
            'flow',
            'family',
            'inode',
            'kernel',
            'local',
            'outside',
            'processes',
            'proto',
            'recvQ',
            'remote',
            'sendQ',
            'session',
            'state',
            'uid',
            'vip',
          ].sort(),
        );
        expect(r.vip).toBe(VIP(1));
      }
      // Session 2 has its own listener and its own dial out, and nothing of session 1's.
      const two = rows.filter((x) => x.session === 2);
      expect(two.map((x) => x.state).sort()).toEqual(['ESTAB', 'LISTEN']);

      // One session, listeners only; the table; one namespace read without the gateway.
      const l = JSON.parse((await client(['sockets', '--listening', '--json', '1'])).stdout) as SocketRow[];
      expect(l.map((x) => [x.session, x.state, x.local.port])).toEqual([[1, 'LISTEN', 9000]]);
      const table = (await client(['sockets', '1'])).stdout;
      expect(table).toMatch(/^ID\s+PROTO\s+STATE\s+LOCAL\s+PEER\s+PROCESS\s+OUTSIDE/);
      expect(table).toContain(`${VIP(1)}:9000 ${BACKEND}:`);
      expect(table).toContain(`socat(${listener.processes[0]!.pid})`);
      const netns = (JSON.parse((await client(['ls', '--json'])).stdout) as { id: number; netns: string }[]).find((s) => s.id === 1)!.netns;
      const direct = await cli(runDir, ['sockets', '--listening', '--json', '--netns', netns], { wrap: ['ip', 'netns', 'exec', lab.gw] });
      expect(direct.code, direct.stderr).toBe(0);
      expect((JSON.parse(direct.stdout) as SocketRow[]).map((x) => [x.state, x.local.port, x.processes[0]?.pid])).toEqual([
        ['LISTEN', 9000, listener.processes[0]!.pid],
      ]);
      const unknown = await client(['sockets', '9']);
      expect(unknown.code).not.toBe(0);
      expect(unknown.stderr.trim()).toBe('vipnat: no session 9');
    });
  }

  it("capture writes a session's TCP exchange as pcapng that tshark reads: the handshake on both interfaces, inner and outer addresses (NAT mode)", async () => {
    await start(1, 'exec socat TCP-LISTEN:9000,fork,reuseaddr EXEC:cat', ['--inner-address', INNER]);
    const file = join(runDir, 'one.pcapng');
    const cap = lab.start(process.execPath, [VIPNAT, 'capture', '1', '-w', file], { env: { ...process.env, VIPNAT_RUN_DIR: runDir } });
    await until(() => {
      try {
        return statSync(file).size > 0;
      } catch {
        return false;
      }
    });
    expect(await lab.answerAt(lab.be, VIP(1), 9000)).toBe('');
    const echoed = await lab.nsRun(lab.be, ['timeout', '5', 'socat', '-t', '1', '-', `TCP:${VIP(1)}:9000`], 10_000, 'hello\n');
    expect(echoed.stdout).toBe('hello\n');
    await sleep(300);
    cap.kill('SIGINT');
    const end = await cap.done;
    expect(end.code, cap.err).toBe(0);
    expect(cap.err).toMatch(/^vipnat: \d+ packets captured of session 1\n$/);
    expect(statSync(file).mode & 0o777).toBe(0o600);

    const { rows, warnings } = tshark(file, [
      'frame.interface_id',
      'frame.interface_name',
      'ip.src',
      'ip.dst',
      'tcp.flags.syn',
      'tcp.flags.ack',
    ]);
    expect(warnings).toBe('');
    const syn = (iface: string, src: string, dst: string, ack: string): boolean =>
      rows.some((r) => r[0] === iface && r[2] === src && r[3] === dst && r[4] === '1' && r[5] === ack);
    // Outside (vipnat0, interface 1): the backend and the VIP. Inside (the session's eth0, interface 0): the inner address.
    expect(syn('1', BACKEND, VIP(1), '0')).toBe(true);
    expect(syn('0', BACKEND, INNER, '0')).toBe(true);
    expect(syn('0', INNER, BACKEND, '1')).toBe(true);
    expect(syn('1', VIP(1), BACKEND, '1')).toBe(true);
    expect(rows.every((r) => (r[0] === '0' ? r[1] === 'eth0@session1' : r[1] === 'vipnat0'))).toBe(true);
    expect(rows.some((r) => r[2] === INNER && r[0] === '1')).toBe(false);
    const counts = pcapngCounts(file);
    expect(counts).toMatchObject({ packets: rows.length, leftOut: 0, statistics: 2 });

    // To standard output, for a pipe into tshark; -c stops it.
    const piped = await finish(
      lab.start(
        'sh',
        [
          '-c',
          `(for i in 1 2 3 4 5; do sleep 0.5; ip netns exec ${lab.be} socat -t 1 - TCP:${VIP(1)}:9000; done) </dev/null >/dev/null 2>&1 & ` +
            `timeout 20 ${process.execPath} ${VIPNAT} capture 1 -c 6 -w - | tshark -r - -T fields -e ip.src`,
        ],
        { env: { ...process.env, VIPNAT_RUN_DIR: runDir } },
      ),
      30_000,
    );
    expect(piped.code, `${piped.stdout}\n${piped.stderr}`).toBe(0);
    expect(piped.stdout.trim().split('\n')).toHaveLength(6);
    expect(piped.stderr).toContain('vipnat: 6 packets captured of session 1');
    // A reader that goes away (head) ends the capture, as it ends tcpdump, while packets still come.
    const t0 = Date.now();
    const gone = await finish(
      lab.start(
        'sh',
        [
          '-c',
          `(for i in 1 2 3 4 5 6; do sleep 0.5; ip netns exec ${lab.be} socat -t 1 - TCP:${VIP(1)}:9000; done) </dev/null >/dev/null 2>&1 & ` +
            `timeout 20 ${process.execPath} ${VIPNAT} capture 1 -w - | head -c 100 >/dev/null`,
        ],
        { env: { ...process.env, VIPNAT_RUN_DIR: runDir } },
      ),
      30_000,
    );
    expect(gone.code, gone.stderr).toBe(0);
    expect(gone.stderr).toContain('packets captured of session 1');
    expect(Date.now() - t0).toBeLessThan(15_000);
    // A session that is not there has no capture.
    expect((await client(['capture', '7', '-w', join(runDir, 'x.pcapng')])).stderr.trim()).toBe('vipnat: no session 7');
  });

  it('run --pcap captures every packet from the start, both sides, into a file of mode 0600', async () => {
    lab = Lab.up();
    runDir = mkdtempSync(join(tmpdir(), 'vipnat-obs-'));
    const file = join(runDir, 'all.pcapng');
    run = lab.vipnat(['run', '--pool', POOL, '--sessions', '2', '--pcap', file, '--', 'sh', '-c', `ping -c 2 -i 0.2 ${BACKEND}`], {
      VIPNAT_RUN_DIR: runDir,
    });
    expect((await run.done).code).toBe(0);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const { rows, warnings } = tshark(file, ['frame.interface_name', 'ip.src', 'ip.dst', 'icmp.type']);
    expect(warnings).toBe('');
    for (const k of [1, 2]) {
      expect(rows.filter((r) => r[0] === 'vipnat0' && r[1] === VIP(k) && r[3] === '8')).toHaveLength(2);
      expect(rows.filter((r) => r[0] === 'sessions' && r[2] === VIP(k) && r[3] === '0')).toHaveLength(2);
    }
    expect(pcapngCounts(file).statistics).toBe(2);
  });

  it('a capture whose writer falls behind leaves packets out and counts them, and the dataplane loses none', async () => {
    const size = 256 << 20;
    lab = Lab.up();
    runDir = mkdtempSync(join(tmpdir(), 'vipnat-obs-'));
    // The session's program writes its byte count here (the run directory goes with the test).
    const count = join(runDir, 'bytes');
    run = lab.vipnat(
      [
        'run',
        '--json',
        '--pool',
        POOL,
        '--sessions',
        '1',
        '--',
        'sh',
        '-c',
        `socat -u TCP-LISTEN:9000,reuseaddr - | wc -c > ${count}; sleep 60`,
      ],
      {
        VIPNAT_RUN_DIR: runDir,
      },
    );
    await run.waitSessions(1);
    await until(() => lab.exec(lab.gw, ['ip', 'netns', 'exec', run!.sessionEvents()[0]!.netns!, 'ss', '-ltn']).stdout.includes(':9000'));
    const packets = async (): Promise<number> => {
      const r = await client(['ls', '--json']);
      expect(r.code, r.stderr).toBe(0);
      const s = (JSON.parse(r.stdout) as { packets: { in: number; out: number } }[])[0]!;
      return s.packets.in + s.packets.out;
    };
    const before = await packets();
    // The writer: a reader that takes nothing until the transfer is over.
    const cap = spawn(process.execPath, [VIPNAT, 'capture', '1', '-w', '-'], {
      env: { ...process.env, VIPNAT_RUN_DIR: runDir },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    cap.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    cap.stdout.pause();
    await new Promise<void>((resolve) => cap.stdout.once('readable', () => resolve()));
    const sent = await lab.nsRun(lab.be, ['sh', '-c', `head -c ${size} /dev/zero | socat -u - TCP:${VIP(1)}:9000`], 120_000);
    expect(sent.code, sent.stderr).toBe(0);
    await until(() => {
      try {
        return readFileSync(count, 'utf8').trim() !== '';
      } catch {
        return false;
      }
    }, 30_000);
    expect(Number(readFileSync(count, 'utf8').trim())).toBe(size);
    await sleep(200);
    const after = await packets();
    const chunks: Buffer[] = [];
    cap.stdout.on('data', (d: Buffer) => chunks.push(d));
    cap.stdout.resume();
    cap.kill('SIGINT');
    const code = await new Promise<number | null>((resolve) => cap.on('close', (c) => resolve(c)));
    expect(code, stderr).toBe(0);
    const file = join(runDir, 'bulk.pcapng');
    writeFileSync(file, Buffer.concat(chunks));
    const c = pcapngCounts(file);
    expect(c.statistics).toBe(2);
    expect(c.leftOut).toBeGreaterThan(0);
    expect(c.packets).toBeGreaterThan(0);
    // Every packet the session sent or got was offered to the capture twice (inside, outside): written or counted.
    const offered = 2 * (after - before);
    expect(Math.abs(c.packets + c.leftOut - offered)).toBeLessThanOrEqual(offered * 0.01 + 50);
    expect(stderr).toMatch(
      new RegExp(`^vipnat: ${c.packets} packets captured of session 1, ${c.leftOut} left out \\(the writer fell behind\\)`),
    );
    const end = await run.stop();
    run = null;
    expect(end.dataplane).toMatchObject({ writeErrors: 0, noDevice: 0, malformed: 0, tableFull: 0, readErrors: 0 });
  });

  it('serves Prometheus metrics that promtool accepts, on loopback by default, root only, moving with the traffic', async () => {
    const port = 19000 + (process.pid % 1000);
    await start(2, 'exec socat TCP-LISTEN:9000,fork,reuseaddr EXEC:cat', ['--metrics', String(port)]);
    const scrape = async (): Promise<string> => {
      const r = await lab.nsRun(lab.gw, ['curl', '-sf', `http://127.0.0.1:${port}/metrics`]);
      expect(r.code, r.stderr).toBe(0);
      return r.stdout;
    };
    const value = (text: string, series: string): number => {
      const line = text.split('\n').find((l) => l.startsWith(`${series} `));
      if (!line) throw new Error(`no ${series} in\n${text}`);
      return Number(line.slice(series.length + 1));
    };
    const first = await scrape();
    const check = spawnSync('promtool', ['check', 'metrics'], { input: first, encoding: 'utf8' });
    expect(check.status, check.stdout + check.stderr).toBe(0);
    expect(check.stdout + check.stderr).toBe('');
    expect(lab.exec(lab.gw, ['ss', '-ltnH']).stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:${port}\\s`));
    expect(value(first, 'vipnat_sessions')).toBe(2);
    expect(value(first, 'vipnat_pool_size{family="ipv4"}')).toBe(14);
    expect(value(first, 'vipnat_pool_addresses{family="ipv4",state="used"}')).toBe(2);
    expect(value(first, 'vipnat_session_starts_total')).toBe(2);

    const payload = 'x'.repeat(50_000);
    const echoed = await lab.nsRun(lab.be, ['timeout', '5', 'socat', '-t', '1', '-', `TCP:${VIP(2)}:9000`], 10_000, payload);
    expect(echoed.stdout.length).toBe(payload.length);
    const second = await scrape();
    const s2 = (dir: string): string => `vipnat_session_bytes_total{session="2",vip="${VIP(2)}",direction="${dir}"}`;
    expect(value(second, s2('in')) - value(first, s2('in'))).toBeGreaterThan(payload.length);
    expect(value(second, s2('out')) - value(first, s2('out'))).toBeGreaterThan(payload.length);
    expect(value(second, 'vipnat_packets_total{direction="in"}')).toBeGreaterThan(value(first, 'vipnat_packets_total{direction="in"}'));
    expect(value(second, 'vipnat_bytes_total{direction="out"}') - value(first, 'vipnat_bytes_total{direction="out"}')).toBeGreaterThan(
      payload.length,
    );
    expect(value(second, 'vipnat_worker_packets_total{worker="0"}')).toBeGreaterThan(
      value(first, 'vipnat_worker_packets_total{worker="0"}'),
    );
    expect(value(second, 'vipnat_worker_busy_seconds_total{worker="0"}')).toBeGreaterThan(0);
    expect(second).toMatch(/^vipnat_flows\{family="ipv4",proto="tcp",state="\S+"\} \d+$/m);
    expect(second).toMatch(/^vipnat_dropped_packets_total\{reason="malformed"\} 0$/m);
    // Another local user is refused.
    const other = await lab.nsRun(lab.gw, [
      'setpriv',
      '--reuid',
      'nobody',
      '--regid',
      'nogroup',
      '--clear-groups',
      'curl',
      '-s',
      '-o',
      '/dev/null',
      '-w',
      '%{http_code}',
      `http://127.0.0.1:${port}/metrics`,
    ]);
    expect(other.stdout).toBe('403');
  });

  it('top shows the sessions under tmux and quits on q; plain lines when not on a terminal', async () => {
    await start(2, 'exec socat TCP-LISTEN:9000,fork,reuseaddr EXEC:cat');
    tmux = `vipnat-top-${process.pid}`;
    const started = spawnSync('tmux', [
      '-L',
      tmux,
      'new-session',
      '-d',
      '-x',
      '160',
      '-y',
      '30',
      `env VIPNAT_RUN_DIR=${runDir} ${process.execPath} ${VIPNAT} top --interval 0.3`,
    ]);
    expect(started.status, started.stderr?.toString()).toBe(0);
    const pane = (): string => spawnSync('tmux', ['-L', tmux!, 'capture-pane', '-p', '-t', '0'], { encoding: 'utf8' }).stdout;
    await until(() => pane().includes(VIP(2)), 10_000);
    const screen = pane();
    expect(screen).toMatch(/vipnat top: gateway "run-\d+", 2 sessions/);
    expect(screen).toMatch(/ID\s+VIP\s+STATE\s+PKT\/S/);
    expect(screen).toContain(VIP(1));
    expect(screen).toContain('q quits');
    spawnSync('tmux', ['-L', tmux, 'send-keys', '-t', '0', 'q']);
    await until(() => spawnSync('tmux', ['-L', tmux!, 'has-session', '-t', '0']).status !== 0, 5000);

    const plain = await client(['top', '-n', '2', '--interval', '0.2']);
    expect(plain.code, plain.stderr).toBe(0);
    expect(plain.stdout).not.toContain('\x1b');
    expect(plain.stdout.match(/^vipnat top: /gm)).toHaveLength(2);
    expect(plain.stdout).toContain(VIP(2));
  });

  it('run shows a progress line on a terminal instead of a line per session, and the lines on a pipe', async () => {
    lab = Lab.up();
    runDir = mkdtempSync(join(tmpdir(), 'vipnat-obs-'));
    const cmd = `${process.execPath} ${VIPNAT} run --pool 198.19.7.0/27 --sessions 20 -- true`;
    const pty = await lab.nsRun(lab.gw, ['env', `VIPNAT_RUN_DIR=${runDir}`, 'script', '-qec', cmd, '/dev/null'], 60_000);
    expect(pty.code, pty.stderr).toBe(0);
    expect(pty.stdout).toContain('starting sessions');
    expect(pty.stdout).toMatch(/vipnat: 20\/20 sessions started in [\d.]+ s/);
    expect(pty.stdout).not.toMatch(/^session \d+ vip/m);
    expect(pty.stdout).toMatch(/summary: 20 sessions asked, 20 started/);
    const pipe = await lab.nsRun(lab.gw, ['env', `VIPNAT_RUN_DIR=${runDir}`, 'sh', '-c', `${cmd} | cat`], 60_000);
    expect(pipe.code, pipe.stderr).toBe(0);
    expect(pipe.stdout).not.toContain('starting sessions');
    expect(pipe.stdout.match(/^session \d+ vip/gm)).toHaveLength(20);
  });
});
