// vipnat's command-line entry: parse, dispatch to the command, print its errors in one line, exit with its status.
import { readFileSync } from 'node:fs';
import { RUN_DIR } from '../gateway/limits.js';
import { UserError } from '../gateway/errors.js';
import { parseArgs, USAGE, UsageError } from './args.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

/** Where vipnat keeps its journal and control sockets (VIPNAT_RUN_DIR, for tests and private setups). */
export function runDir(): string {
  return process.env['VIPNAT_RUN_DIR'] || RUN_DIR;
}

async function dispatch(argv: string[]): Promise<number> {
  const parsed = parseArgs(argv, process.env);
  switch (parsed.command) {
    case 'help':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    case 'version':
      process.stdout.write(`vipnat ${version()}\n`);
      return 0;
    // Each command loads only what it needs: a client of the gateway needs no dataplane, no koffi.
    case 'run':
      return (await import('./commands/run.js')).run(parsed, runDir(), version());
    case 'up':
      return (await import('./commands/up.js')).up(parsed, runDir(), version());
    case 'start':
      return (await import('./commands/start.js')).start(parsed, runDir());
    case 'exec':
      return (await import('./commands/start.js')).exec(parsed, runDir());
    case 'stop':
      return (await import('./commands/query.js')).stop(parsed, runDir());
    case 'ls':
      return (await import('./commands/query.js')).ls(parsed, runDir());
    case 'pool':
      return (await import('./commands/query.js')).pool(parsed, runDir());
    case 'down':
      return (await import('./commands/query.js')).down(parsed, runDir());
    case 'attach':
      return (await import('./commands/attach.js')).attach(parsed, runDir());
    case 'sockets':
      return (await import('./commands/observe.js')).sockets(parsed, runDir());
    case 'capture':
      return (await import('./commands/observe.js')).capture(parsed, runDir(), version());
    case 'top':
      return (await import('./commands/top.js')).top(parsed, runDir());
  }
}

async function main(argv: string[]): Promise<number> {
  try {
    return await dispatch(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`vipnat: ${e.message}\n`);
      return 2;
    }
    if (e instanceof UserError) {
      process.stderr.write(`vipnat: ${e.message}\n`);
      return e.exitCode;
    }
    const err = e as Error;
    // iproute2's and the kernel's refusals (a missing tool, a read-only /proc/sys) are the user's to act on.
    if (err.name === 'IpError' || err.name === 'SysError') {
      process.stderr.write(`vipnat: ${err.message}\n`);
      return 1;
    }
    process.stderr.write(`vipnat: internal error: ${err.message}\n`);
    if (process.env['VIPNAT_DEBUG']) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

// A reader that goes away (`vipnat run ... | head -1`) must not take the sessions down with an EPIPE:
// vipnat goes on, and what it would have printed is lost.
for (const stream of [process.stdout, process.stderr]) stream.on('error', () => undefined);

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`vipnat: internal error: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
