// `vipnat run`: N sessions of one program, to completion, with a line per event (or a progress line on a terminal) and a summary.
import { MultiBar, Presets } from 'cli-progress';
import { ControlServer, MetricsServer } from '../../control/index.js';
import { run as runGateway, type Gateway, type GatewayEvent } from '../../gateway/index.js';
import type { RunArgs } from '../args.js';
import { formatEvent } from '../output.js';
import { gatewayOptions } from './options.js';

/**
 * On a terminal, a run of many sessions shows one progress line while they
 * start (started/asked, rate, time left) instead of a line per session, and
 * a line per session only for those that fail. Other events print above it.
 */
class Progress {
  private readonly options = [
    {
      format: 'starting sessions {bar} {value}/{total} | {rate}/s | {eta_formatted} left',
      hideCursor: true,
      clearOnComplete: false,
      stopOnComplete: false,
      etaBuffer: 50,
      fps: 10,
    },
    Presets.shades_classic,
  ] as const;
  /** Drawn from the first event on: nothing shows for a gateway that could not open. */
  private drawn: { bars: MultiBar; bar: ReturnType<MultiBar['create']> } | null = null;
  private began = Date.now();
  private started = 0;
  private done = false;

  constructor(private readonly total: number) {}

  event(e: GatewayEvent, line: string): void {
    if (!this.drawn && !this.done) {
      const bars = new MultiBar(...this.options);
      this.drawn = { bars, bar: bars.create(this.total, 0, { rate: '0' }) };
      this.began = Date.now();
    }
    if (this.done || !this.drawn) {
      if (e.event !== 'exit' || e.code !== 0) process.stdout.write(`${line}\n`);
      return;
    }
    if (e.event === 'session') {
      this.started++;
      const s = (Date.now() - this.began) / 1000;
      this.drawn.bar.update(this.started, { rate: s > 0 ? (this.started / s).toFixed(0) : '0' });
      if (this.started >= this.total) this.finish();
      return;
    }
    if (e.event === 'exit' && e.code === 0) return;
    if (e.event === 'no-vip' || e.event === 'stopping' || e.event === 'summary') this.finish();
    if (this.done) process.stdout.write(`${line}\n`);
    else this.drawn.bars.log(`${line}\n`);
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    if (!this.drawn) return;
    this.drawn.bars.stop();
    const s = (Date.now() - this.began) / 1000;
    process.stdout.write(
      `vipnat: ${this.started}/${this.total} sessions started in ${s.toFixed(1)} s (${(this.started / Math.max(s, 0.001)).toFixed(0)}/s)\n`,
    );
  }
}

export function run(a: RunArgs, runDir: string, version: string): Promise<number> {
  const progress = process.stdout.isTTY && !a.json && a.sessions > 1 ? new Progress(a.sessions) : null;
  const name = a.name ?? `run-${process.pid}`;
  const serve = async (gw: Gateway): Promise<() => Promise<void>> => {
    // Every client command (ls, sockets, capture, top) works against a run as against `up`.
    const server = await ControlServer.listen(gw, {
      runDir,
      name,
      version,
      output: { stdout: process.stdout, stderr: process.stderr },
      onDown: () => gw.stopAll(),
    });
    let metrics: MetricsServer | null = null;
    try {
      if (a.metrics) metrics = await MetricsServer.listen(gw, a.metrics.host, a.metrics.port);
    } catch (e) {
      await server.close();
      throw e;
    }
    return async () => {
      await metrics?.close();
      await server.close();
    };
  };
  const ran = runGateway({
    ...gatewayOptions(a, runDir, version),
    // The gateway's own name (its DHCP client ids) stays "run" unless one is given: leases outlive a run's pid.
    ...(a.name !== undefined ? { name: a.name } : {}),
    sessions: a.sessions,
    program: a.program,
    args: a.args,
    env: process.env,
    serve,
    onEvent: (e) => {
      const line = formatEvent(e, a.json);
      if (progress) progress.event(e, line);
      else process.stdout.write(`${line}\n`);
    },
  });
  // A run that fails (the gateway could not open, a session could not be set up) ends its progress line first.
  return ran.finally(() => progress?.finish());
}
