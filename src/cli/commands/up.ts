// `vipnat up`: a long-running gateway in the foreground, served on its control socket until SIGINT, SIGTERM or `down`.
import { ControlServer, MetricsServer } from '../../control/index.js';
import { defaultWorkers, Gateway } from '../../gateway/index.js';
import type { UpArgs } from '../args.js';
import { formatEvent, type ShownEvent } from '../output.js';
import { gatewayOptions } from './options.js';

export async function up(a: UpArgs, runDir: string, version: string): Promise<number> {
  const print = (e: ShownEvent): void => void process.stdout.write(`${formatEvent(e, a.json)}\n`);
  await ControlServer.checkName(runDir, a.name);
  const gw = await Gateway.open({ ...gatewayOptions(a, runDir, version), name: a.name, workers: a.workers ?? defaultWorkers() }, print);
  let stopped: (how: { signal?: NodeJS.Signals; error?: Error }) => void = () => undefined;
  const ended = new Promise<{ signal?: NodeJS.Signals; error?: Error }>((resolve) => (stopped = resolve));
  let server: ControlServer;
  let metrics: MetricsServer | null = null;
  try {
    server = await ControlServer.listen(gw, {
      runDir,
      name: a.name,
      version,
      output: { stdout: process.stdout, stderr: process.stderr },
      onDown: () => stopped({}),
    });
    try {
      if (a.metrics) metrics = await MetricsServer.listen(gw, a.metrics.host, a.metrics.port);
    } catch (e) {
      await server.close();
      throw e;
    }
  } catch (e) {
    await gw.close();
    throw e;
  }
  const onSignal = (signal: NodeJS.Signals): void => stopped({ signal });
  const sigint = (): void => onSignal('SIGINT');
  const sigterm = (): void => onSignal('SIGTERM');
  process.on('SIGINT', sigint);
  process.on('SIGTERM', sigterm);
  gw.onFailure = (error) => stopped({ error });
  print({ event: 'up', name: a.name, socket: server.path, pid: process.pid, pool: a.pool, ...(metrics ? { metrics: metrics.url } : {}) });
  const how = await ended;
  print({ event: 'stopping', signal: how.signal ?? (how.error ? 'failure' : 'down') });
  // Captures get their statistics; no new requests; then every session is stopped and the machine left as it was.
  await gw.endCaptures();
  await metrics?.close();
  await server.close();
  const stats = await gw.close();
  process.off('SIGINT', sigint);
  process.off('SIGTERM', sigterm);
  print({ event: 'down', name: a.name, dataplane: stats });
  if (how.error) {
    process.stderr.write(`vipnat: ${how.error.message}\n`);
    return 1;
  }
  return how.signal === 'SIGINT' ? 130 : how.signal === 'SIGTERM' ? 143 : 0;
}
