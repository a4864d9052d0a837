// `vipnat start` (a logon, printing the session's line, or --wait: the program's own streams and status) and `vipnat exec`.
import { ControlClient } from '../../control/client.js';
import type { SessionInfo } from '../../control/protocol.js';
import type { ExecArgs, StartArgs } from '../args.js';
import { sessionLine } from '../output.js';

/** While the program runs, ^C and SIGTERM stop it (through the gateway) instead of leaving it behind. */
function forwardSignals(onSignal: () => void): () => void {
  const handler = (): void => onSignal();
  process.on('SIGINT', handler);
  process.on('SIGTERM', handler);
  return () => {
    process.off('SIGINT', handler);
    process.off('SIGTERM', handler);
  };
}

/** The environment the program gets: the caller's, as `run` gives it. */
function callerEnv(): Record<string, string> {
  return Object.fromEntries(Object.entries(process.env).filter((e): e is [string, string] => e[1] !== undefined));
}

export async function start(a: StartArgs, runDir: string): Promise<number> {
  const client = await ControlClient.find(runDir, a.name, a.named);
  const body = {
    program: a.program,
    args: a.args,
    env: callerEnv(),
    ...(a.id !== undefined ? { id: a.id } : {}),
    ...(a.vip !== undefined ? { vip: a.vip } : {}),
    ...(Object.keys(a.labels).length > 0 ? { labels: a.labels } : {}),
  };
  if (!a.wait) {
    const s = await client.call<SessionInfo>('POST', '/sessions', body);
    process.stdout.write(`${a.json ? JSON.stringify(s) : sessionLine(s)}\n`);
    return 0;
  }
  const { hello, exit } = client.attach(
    '/sessions',
    { ...body, attach: true },
    { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr },
  );
  let id = 0;
  hello.then(
    (h) => (id = (h as SessionInfo).id),
    () => undefined,
  );
  const restore = forwardSignals(() => {
    if (id > 0) void client.call('POST', `/sessions/${id}/stop`).catch(() => undefined);
  });
  try {
    return (await exit).status;
  } finally {
    restore();
    process.stdin.destroy();
  }
}

export async function exec(a: ExecArgs, runDir: string): Promise<number> {
  const client = await ControlClient.find(runDir, a.name, a.named);
  const { exit } = client.attach(
    `/sessions/${a.id}/exec`,
    { program: a.program, args: a.args, env: callerEnv() },
    {
      stdin: process.stdin,
      stdout: process.stdout,
      stderr: process.stderr,
    },
  );
  try {
    return (await exit).status;
  } finally {
    process.stdin.destroy();
  }
}
