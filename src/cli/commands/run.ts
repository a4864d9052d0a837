// `vipnat run`: N sessions of one program, to completion, with a line per event and a summary.
import { run as runGateway } from '../../gateway/index.js';
import type { RunArgs } from '../args.js';
import { formatEvent } from '../output.js';
import { gatewayOptions } from './options.js';

export function run(a: RunArgs, runDir: string): Promise<number> {
  return runGateway({
    ...gatewayOptions(a, runDir),
    sessions: a.sessions,
    program: a.program,
    args: a.args,
    env: process.env,
    onEvent: (e) => process.stdout.write(`${formatEvent(e, a.json)}\n`),
  });
}
