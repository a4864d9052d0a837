// vipnat's command-line entry: parse, run the gateway, print events, exit with its status.
import { readFileSync } from 'node:fs';
import { run, UserError } from '../gateway/index.js';
import { parseArgs, USAGE, UsageError } from './args.js';
import { formatEvent } from './output.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv, process.env);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`vipnat: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (parsed.command === 'help') {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  if (parsed.command === 'version') {
    process.stdout.write(`vipnat ${version()}\n`);
    return 0;
  }
  const { json } = parsed;
  try {
    return await run({
      pool: parsed.pool,
      innerAddress: parsed.innerAddress,
      onExhausted: parsed.onExhausted,
      sessions: parsed.sessions,
      mtu: parsed.mtu,
      flowCapacity: parsed.maxFlows,
      ...(parsed.workers !== undefined ? { workers: parsed.workers } : {}),
      ...(parsed.user !== undefined ? { user: parsed.user } : {}),
      program: parsed.program,
      args: parsed.args,
      env: process.env,
      ...(process.env['VIPNAT_RUN_DIR'] ? { runDir: process.env['VIPNAT_RUN_DIR'] } : {}),
      // Offloads are on unless VIPNAT_OFFLOAD=0 (for comparing, and for kernels without them).
      offload: process.env['VIPNAT_OFFLOAD'] !== '0',
      onEvent: (e) => process.stdout.write(`${formatEvent(e, json)}\n`),
    });
  } catch (e) {
    if (e instanceof UserError) {
      process.stderr.write(`vipnat: ${e.message}\n`);
      return e.exitCode;
    }
    const err = e as Error;
    process.stderr.write(`vipnat: internal error: ${err.message}\n`);
    if (process.env['VIPNAT_DEBUG']) process.stderr.write(`${err.stack}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`vipnat: internal error: ${(e as Error).message}\n`);
    process.exitCode = 1;
  },
);
