// `vipnat top`: the sessions of a running gateway by traffic, refreshed; plain lines when the output is not a terminal.
import { ControlClient } from '../../control/client.js';
import type { SessionInfo } from '../../control/protocol.js';
import type { DataplaneStats } from '../../gateway/index.js';
import type { TopArgs } from '../args.js';
import { columns } from '../output.js';

interface Sample {
  at: number;
  sessions: SessionInfo[];
  stats: DataplaneStats | null;
}

/** 1234567 -> "1.2M": three significant digits at most, SI prefixes. */
export function si(n: number): string {
  const a = Math.abs(n);
  const [d, p] = a >= 1e9 ? [1e9, 'G'] : a >= 1e6 ? [1e6, 'M'] : a >= 1e3 ? [1e3, 'k'] : [1, ''];
  const v = n / d;
  return `${v >= 100 || d === 1 ? Math.round(v) : v.toFixed(1)}${p}`;
}

export interface TopRow {
  id: number;
  vip: string;
  state: string;
  pps: number;
  bps: number;
  ppsIn: number;
  ppsOut: number;
  flows: number;
  dropped: number;
  dropRate: number;
}

/** Rates between two samples, per session (a session new since the last sample counts from zero), busiest first. */
export function topRows(prev: Sample, now: Sample): TopRow[] {
  const dt = Math.max(0.001, (now.at - prev.at) / 1000);
  const before = new Map(prev.sessions.map((s) => [s.id, s]));
  const rows = now.sessions.map((s) => {
    const p = before.get(s.id);
    const pin = s.packets.in - (p?.packets.in ?? 0);
    const pout = s.packets.out - (p?.packets.out ?? 0);
    const bytes = s.bytes.in + s.bytes.out - (p ? p.bytes.in + p.bytes.out : 0);
    return {
      id: s.id,
      vip: s.vip,
      state: s.state,
      pps: Math.max(0, (pin + pout) / dt),
      bps: Math.max(0, (bytes * 8) / dt),
      ppsIn: Math.max(0, pin / dt),
      ppsOut: Math.max(0, pout / dt),
      flows: s.flows,
      dropped: s.dropped,
      dropRate: Math.max(0, (s.dropped - (p?.dropped ?? 0)) / dt),
    };
  });
  return rows.sort((a, b) => b.bps - a.bps || b.pps - a.pps || a.id - b.id);
}

/** The gateway's totals line and the table, fitted to `height` lines (0: all). */
export function topScreen(name: string, prev: Sample, now: Sample, height: number): string {
  const dt = Math.max(0.001, (now.at - prev.at) / 1000);
  const d = now.stats;
  const p = prev.stats;
  const rate = (k: 'toUplink' | 'toSession' | 'bytesToUplink' | 'bytesToSession' | 'dropped'): number =>
    d && p ? Math.max(0, (d[k] - p[k]) / dt) : 0;
  const rows = topRows(prev, now);
  const head =
    `vipnat top: gateway "${name}", ${rows.length} sessions, ${new Date(now.at).toISOString().slice(11, 19)} UTC\n` +
    `out ${si(rate('toUplink'))} pkt/s ${si(rate('bytesToUplink') * 8)}bit/s   in ${si(rate('toSession'))} pkt/s ${si(rate('bytesToSession') * 8)}bit/s   ` +
    `flows ${d?.flows ?? 0}/${d?.flowCapacity ?? 0}   dropped ${si(rate('dropped'))}/s (${d?.dropped ?? 0} in all)\n\n`;
  const room = height > 0 ? Math.max(1, height - 5) : rows.length;
  const shown = rows.slice(0, room);
  const table = columns([
    ['ID', 'VIP', 'STATE', 'PKT/S', 'IN/S', 'OUT/S', 'BIT/S', 'FLOWS', 'DROPS', 'DROPS/S'],
    ...shown.map((r) => [
      String(r.id),
      r.vip,
      r.state,
      si(r.pps),
      si(r.ppsIn),
      si(r.ppsOut),
      si(r.bps),
      String(r.flows),
      String(r.dropped),
      si(r.dropRate),
    ]),
  ]);
  const more = rows.length > shown.length ? `(${rows.length - shown.length} more)\n` : '';
  return head + table + more;
}

async function sample(client: ControlClient): Promise<Sample> {
  const [sessions, stats] = await Promise.all([
    client.call<SessionInfo[]>('GET', '/sessions'),
    client.call<DataplaneStats | null>('GET', '/stats'),
  ]);
  return { at: Date.now(), sessions, stats };
}

export async function top(a: TopArgs, runDir: string): Promise<number> {
  const client = await ControlClient.find(runDir, a.name, a.named);
  const tty = process.stdout.isTTY === true;
  let prev = await sample(client);
  let quit: () => void = () => undefined;
  const quitting = new Promise<void>((resolve) => (quit = resolve));
  const onKey = (d: Buffer): void => {
    if (d.includes(0x71) || d.includes(0x51) || d.includes(0x03)) quit(); // q, Q, ^C
  };
  const onSignal = (): void => quit();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  if (tty) {
    process.stdout.write('\x1b[?1049h\x1b[?25l'); // the alternate screen, no cursor
    if (process.stdin.isTTY) {
      process.stdin.setRawMode(true);
      process.stdin.on('data', onKey);
      process.stdin.resume();
    }
  }
  let gone: Error | null = null;
  try {
    for (let n = 0; a.iterations === undefined || n < a.iterations; n++) {
      let timer: NodeJS.Timeout | undefined;
      const ticked = await Promise.race([
        new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(true), a.intervalMs))),
        quitting.then(() => false),
      ]);
      clearTimeout(timer);
      if (!ticked) break;
      let now: Sample;
      try {
        now = await sample(client);
      } catch (e) {
        gone = e as Error;
        break;
      }
      const screen = topScreen(client.name, prev, now, tty ? (process.stdout.rows ?? 24) : 0);
      process.stdout.write(tty ? `\x1b[H\x1b[2J${screen}\x1b[7mq quits\x1b[0m` : `${screen}\n`);
      prev = now;
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
    if (tty) {
      if (process.stdin.isTTY) {
        process.stdin.off('data', onKey);
        process.stdin.setRawMode(false);
        process.stdin.pause();
      }
      process.stdout.write('\x1b[?25h\x1b[?1049l');
    }
  }
  if (gone) {
    process.stderr.write(`vipnat: top: gateway "${client.name}" is gone\n`);
    return 1;
  }
  return 0;
}
