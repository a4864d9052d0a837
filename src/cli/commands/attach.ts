// `vipnat attach`: a VIP for an existing network namespace (a container's, a process's), as a session of a running gateway.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { ControlClient } from '../../control/client.js';
import type { AttachRequest, SessionInfo } from '../../control/protocol.js';
import { EXIT_USAGE, UserError } from '../../gateway/index.js';
import type { AttachArgs } from '../args.js';
import { sessionLine } from '../output.js';

/** Runs a command to its end: its status and output, or null when it is not installed. */
export type Runner = (cmd: string, args: string[]) => { status: number; stdout: string; stderr: string } | null;

const runCommand: Runner = (cmd, args) => {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 30_000 });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') return null;
  return { status: r.status ?? 1, stdout: r.stdout ?? '', stderr: r.stderr ?? '' };
};

/** A container's main process, as its engine (docker, else podman) says: its namespace is the container's. */
export function containerPid(name: string, run: Runner = runCommand): number {
  const tried: string[] = [];
  for (const engine of ['docker', 'podman']) {
    const r = run(engine, ['inspect', '--format', '{{.State.Pid}}', name]);
    if (r === null) continue;
    if (r.status !== 0) {
      tried.push(`${engine}: ${(r.stderr.trim().split('\n')[0] ?? '') || `exit ${r.status}`}`);
      continue;
    }
    const pid = Number(r.stdout.trim());
    if (!Number.isInteger(pid)) throw new UserError(`--container ${name}: ${engine} inspect said "${r.stdout.trim()}", not a pid`);
    if (pid <= 0) throw new UserError(`--container ${name}: the container is not running`);
    return pid;
  }
  if (tried.length === 0) throw new UserError(`--container ${name}: neither docker nor podman is installed (use --pid or --netns)`);
  throw new UserError(`--container ${name}: no such container (${tried.join('; ')})`);
}

/** Where the namespace an attach names is: its file, what ls calls it, and its process when there is one. */
export function resolveTarget(
  a: Pick<AttachArgs, 'netns' | 'pid' | 'container'>,
  run: Runner = runCommand,
  exists: (p: string) => boolean = existsSync,
): Pick<AttachRequest, 'path' | 'name' | 'pid'> {
  if (a.container !== undefined) {
    const pid = containerPid(a.container, run);
    return { path: `/proc/${pid}/ns/net`, name: `container:${a.container}`, pid };
  }
  if (a.pid !== undefined) {
    if (!exists(`/proc/${a.pid}`)) throw new UserError(`--pid ${a.pid}: no such process`);
    return { path: `/proc/${a.pid}/ns/net`, name: `pid:${a.pid}`, pid: a.pid };
  }
  const n = a.netns;
  if (n === undefined || n === '') throw new UserError('attach: give one of --netns, --pid or --container', EXIT_USAGE);
  const path = n.includes('/') ? n : `/run/netns/${n}`;
  if (!exists(path)) throw new UserError(`--netns ${n}: no such network namespace (${path})`);
  return { path, name: n.includes('/') ? n : `netns:${n}` };
}

export async function attach(a: AttachArgs, runDir: string): Promise<number> {
  const target = resolveTarget(a);
  const client = await ControlClient.find(runDir, a.name, a.named);
  const s = await client.call<SessionInfo>('POST', '/attach', {
    ...target,
    ...(a.routes.length > 0 ? { routes: a.routes } : {}),
    ...(a.id !== undefined ? { id: a.id } : {}),
    ...(a.vip !== undefined ? { vip: a.vip } : {}),
    ...(Object.keys(a.labels).length > 0 ? { labels: a.labels } : {}),
  } satisfies AttachRequest);
  process.stdout.write(a.json ? `${JSON.stringify(s)}\n` : `${sessionLine(s)}\n`);
  if (!a.wait) return 0;
  // In the foreground until the namespace ends (the gateway ends the session) or a signal detaches it.
  let stop = false;
  const onSignal = (): void => void (stop = true);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    for (;;) {
      await new Promise((r) => setTimeout(r, 500));
      if (stop) {
        await client.call('POST', `/sessions/${s.id}/stop`);
        process.stderr.write(`vipnat: session ${s.id} detached from ${s.netns}\n`);
        return 0;
      }
      const now = await client.call<SessionInfo>('GET', `/sessions/${s.id}`).catch(() => null);
      if (now === null || now.state === 'exited') {
        process.stderr.write(`vipnat: session ${s.id} ended: ${s.netns} is gone\n`);
        return 0;
      }
    }
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
