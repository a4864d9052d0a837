// The soak's short form: `make soak`'s own driver (test/soak/soak.ts, built into dist-tools/ by make build), 20 sessions x 5 checksummed echo connections x 5 s, zero loss.
//
// It runs the very script `make soak` runs (its own lab, vnsoak-PID-*, cleaned up by the script on
// every path), so the long form cannot rot unnoticed; this test then checks that the script left
// nothing behind.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { isRoot, ROOT, sh } from './lab.js';

const SOAK = `${ROOT}dist-tools/test/soak/soak.js`;

interface SoakReport {
  pass: boolean;
  lab: string;
  vipnatPid: number;
  load: {
    ok: boolean;
    connections: { wanted: number; up: number; failed: number };
    bytesSent: number;
    bytesVerified: number;
    failures: string[];
  };
  vipnat: { exit: number | string; leftNamespaces: number; dataplane: Record<string, number> };
  problems: string[];
}

function namespaces(): string[] {
  return sh('ip', ['netns', 'list'])
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter(Boolean);
}

describe.skipIf(!isRoot())('soak, short form', () => {
  let child: ChildProcess | undefined;
  afterEach(async () => {
    // The script cleans up on SIGTERM (vipnat first, then its lab).
    if (child && child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child!.once('close', r));
      child.kill('SIGTERM');
      await gone;
    }
  });

  it('20 sessions x 5 connections (both ways, both families) x 5 s: every byte echoed and checked, no reset, nothing left', async () => {
    if (!existsSync(SOAK)) throw new Error(`${SOAK} is not built: run make build`);
    child = spawn(process.execPath, [SOAK, '--sessions', '20', '--connections', '5', '--seconds', '5', '--json'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    let err = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
    const code = await new Promise<number | null>((r) => child!.once('close', r));
    const last = out.trim().split('\n').pop() ?? '';
    expect(last.startsWith('{'), `no report:\n${out}\n${err}`).toBe(true);
    const report = JSON.parse(last) as SoakReport;
    const text = `${out}\n${err}`;
    expect(report.problems, text).toEqual([]);
    expect(report.load.connections, text).toEqual({ wanted: 100, up: 100, failed: 0 });
    expect(report.load.bytesSent, text).toBeGreaterThan(0);
    expect(report.load.bytesVerified, text).toBe(report.load.bytesSent);
    expect(report.vipnat.exit, text).toBe(143);
    expect(report.vipnat.dataplane['writeErrors'], text).toBe(0);
    expect(report.pass, text).toBe(true);
    expect(code, text).toBe(0);
    // Nothing of the script's lab or of its vipnat's sessions is left.
    const left = namespaces().filter((n) => n.startsWith(`${report.lab}-`) || n.startsWith(`vipnat-${report.vipnatPid}-`));
    expect(left).toEqual([]);
  });
});
