// The packet path without syscalls: runs bench/packet-path.ts, one process per figure (lookups over 1 000 and 1 000 000 flows, new flows, memory).
import { fileURLToPath } from 'node:url';
import { log, run } from '../../test/lab/index.js';
import { fmtBytes, fmtNum } from '../format.js';
import type { Micro, MicroResult } from '../results.js';

const PACKET_PATH = fileURLToPath(new URL('../packet-path.js', import.meta.url));

async function packetPath(args: string[]): Promise<MicroResult> {
  const r = await run(process.execPath, ['--expose-gc', PACKET_PATH, ...args], 600_000);
  if (r.code !== 0) throw new Error(`packet-path ${args.join(' ')}: ${r.stderr.trim() || `exit ${r.code}`}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as MicroResult;
}

export async function microBenchmarks(quick: boolean): Promise<Micro> {
  const secs = String(quick ? 1 : 3);
  const micro: Micro = {};
  log('\n== packet path without syscalls (bench/packet-path.ts, one core, NAT mode, every packet rewritten)');
  const steps: [keyof Micro, string[], (r: MicroResult) => string][] = [
    ['lookup1k', ['lookup', '1000', secs], (r) => `parse + lookup + rewrite + checksum, 1 000 flows: ${r['mpps']} Mpps`],
    ['lookup1m', ['lookup', '1000000', secs], (r) => `parse + lookup + rewrite + checksum, 1 000 000 flows: ${r['mpps']} Mpps`],
    [
      'create',
      ['create', '1000000', secs],
      (r) => `new flows (TCP SYN) into a table of 2^20: ${fmtNum(r['flowsPerSecond'] as number)} flows/s`,
    ],
    ['forwardPlain', ['forward', '1000', secs, 'plain'], (r) => `through the Forwarder, 1 000 flows, no capture tap: ${r['mpps']} Mpps`],
    ['forwardTap', ['forward', '1000', secs, 'tap'], (r) => `through the Forwarder, an idle capture tap: ${r['mpps']} Mpps`],
    [
      'forwardCapture',
      ['forward', '1000', secs, 'capture'],
      (r) => `through the Forwarder, capturing the session (both sides): ${r['mpps']} Mpps, ${fmtNum(r['leftOut'] as number)} left out`,
    ],
    [
      'memory',
      ['memory', '1000000'],
      (r) =>
        `1 000 000 flows: ${r['bytesPerFlow']} B/flow by table size, ${r['rssDeltaPerFlow']} B/flow RSS growth; process RSS ${fmtBytes(r['rssAfter'] as number)}`,
    ],
  ];
  for (const [key, args, say] of steps) {
    try {
      const r = await packetPath(args);
      micro[key] = r;
      log(`  ${say(r)}`);
    } catch (e) {
      micro[key] = { error: (e as Error).message };
      log(`  ${key} FAILED: ${(e as Error).message}`);
    }
  }
  return micro;
}
