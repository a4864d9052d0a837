// `vipnat ls`, `pool`, `stop` and `down`: questions to a long-running gateway, answered as tables or JSON.
import { ControlClient } from '../../control/client.js';
import type { ExitInfo, PoolInfo, SessionInfo } from '../../control/protocol.js';
import type { QueryArgs, StopArgs } from '../args.js';
import { exitText, poolTable, sessionsTable } from '../output.js';

export async function ls(a: QueryArgs, runDir: string): Promise<number> {
  const sessions = await (await ControlClient.find(runDir, a.name, a.named)).call<SessionInfo[]>('GET', '/sessions');
  process.stdout.write(a.json ? `${JSON.stringify(sessions)}\n` : sessionsTable(sessions));
  return 0;
}

export async function pool(a: QueryArgs, runDir: string): Promise<number> {
  const p = await (await ControlClient.find(runDir, a.name, a.named)).call<PoolInfo>('GET', '/pool');
  process.stdout.write(a.json ? `${JSON.stringify(p)}\n` : poolTable(p));
  return 0;
}

export async function stop(a: StopArgs, runDir: string): Promise<number> {
  const client = await ControlClient.find(runDir, a.name, a.named);
  const ids = a.ids === 'all' ? (await client.call<SessionInfo[]>('GET', '/sessions')).map((s) => s.id) : a.ids;
  const results = await Promise.allSettled(ids.map((id) => client.call<ExitInfo>('POST', `/sessions/${id}/stop`)));
  let status = 0;
  const out: ({ id: number } & (ExitInfo | { error: string }))[] = [];
  results.forEach((r, k) => {
    const id = ids[k]!;
    if (r.status === 'fulfilled') {
      out.push({ id, ...r.value });
      if (!a.json) process.stdout.write(`session ${id} stopped: ${exitText(r.value)}\n`);
    } else {
      const e = r.reason as Error & { exitCode?: number };
      out.push({ id, error: e.message });
      process.stderr.write(`vipnat: ${e.message}\n`);
      status = e.exitCode ?? 1;
    }
  });
  if (a.json) process.stdout.write(`${JSON.stringify(out)}\n`);
  return status;
}

export async function down(a: QueryArgs, runDir: string): Promise<number> {
  const client = await ControlClient.find(runDir, a.name, a.named);
  await client.call('POST', '/down');
  process.stdout.write(`gateway "${client.name}" is stopping every session and going down\n`);
  return 0;
}
