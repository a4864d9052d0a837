// Command-line parsing for `vipnat`: flags, their checks, and the usage text.
import { DEFAULT_MAX_FLOWS, MAX_DEFAULT_WORKERS, MAX_SESSION_ID, MAX_WORKERS } from '../gateway.js';

export const USAGE = `usage: vipnat run --pool RANGES [--sessions N] [--inner-address ADDR[,ADDR6]] [--on-exhausted refuse|shared]
                  [--mtu BYTES] [--max-flows N] [--workers N] [--json] -- PROGRAM [ARGS...]

Runs PROGRAM in N sessions, each in its own network namespace with its own
virtual IP address (VIP) from the pool, through a userspace NAT gateway.

  --pool RANGES     VIPs to hand out: comma-separated CIDRs (198.19.7.0/28),
                    START-END ranges or single addresses
  --sessions N      how many sessions to start (default 1)
  --inner-address ADDR[,ADDR6]
                    NAT mode: every session's eth0 holds ADDR (as identical
                    containers would) and vipnat translates it to the VIP
  --on-exhausted refuse|shared
                    a session left without a VIP is not started (refuse, the
                    default), or runs with its IPv4 flows leaving from this
                    machine's own address, port-translated (shared)
  --mtu BYTES       MTU of the session interfaces and vipnat0 (default 1500)
  --max-flows N     size of the IPv4 flow table (default 262144; IPv6 gets a quarter)
  --workers N       dataplane threads, each with its own queue of every TUN
                    (default: one per two CPUs, at least 1, at most ${MAX_DEFAULT_WORKERS})
  --json            print events as one JSON object per line
  -h, --help        show this help
  --version         print the version

Each session's program gets VIPNAT_SESSION_ID, VIPNAT_VIP and VIPNAT_LOOPBACK.`;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface RunArgs {
  command: 'run';
  pool: string;
  innerAddress: string | undefined;
  onExhausted: 'refuse' | 'shared';
  sessions: number;
  mtu: number;
  maxFlows: number;
  /** undefined: the default (one per two CPUs, capped). */
  workers: number | undefined;
  json: boolean;
  program: string;
  args: string[];
}

export type Parsed = RunArgs | { command: 'help' } | { command: 'version' };

function integer(flag: string, text: string | undefined, min: number, max: number): number {
  if (text === undefined) throw new UsageError(`${flag} needs a value`);
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`${flag} "${text}": must be a whole number from ${min} to ${max}`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${flag} ${text}: must be from ${min} to ${max}`);
  return n;
}

export function parseArgs(argv: string[]): Parsed {
  if (argv.length === 0) throw new UsageError('no command given (try: vipnat run --pool 198.19.7.0/28 -- PROGRAM)');
  const [cmd, ...rest] = argv;
  if (cmd === '-h' || cmd === '--help' || cmd === 'help') return { command: 'help' };
  if (cmd === '--version' || cmd === 'version') return { command: 'version' };
  if (cmd !== 'run') throw new UsageError(`unknown command "${cmd}" (the command is: vipnat run ...)`);

  let pool: string | undefined;
  let innerAddress: string | undefined;
  let onExhausted: 'refuse' | 'shared' = 'refuse';
  let sessions = 1;
  let mtu = 1500;
  let maxFlows = DEFAULT_MAX_FLOWS;
  let workers: number | undefined;
  let json = false;
  let i = 0;
  for (; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-')) break; // PROGRAM without a "--" before it
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const inline = eq > 0 ? a.slice(eq + 1) : undefined;
    const value = (): string | undefined => (inline !== undefined ? inline : rest[++i]);
    switch (flag) {
      case '--pool': {
        const v = value();
        if (v === undefined || v.startsWith('--')) throw new UsageError('--pool needs a value, e.g. --pool 198.19.7.0/28');
        pool = v;
        break;
      }
      case '--inner-address': {
        const v = value();
        if (v === undefined || v.startsWith('--')) throw new UsageError('--inner-address needs a value, e.g. --inner-address 10.0.2.100');
        innerAddress = v;
        break;
      }
      case '--on-exhausted': {
        const v = value();
        if (v !== 'refuse' && v !== 'shared')
          throw new UsageError(`--on-exhausted ${v === undefined ? 'needs a value' : `"${v}"`}: must be refuse or shared`);
        onExhausted = v;
        break;
      }
      case '--sessions':
        sessions = integer('--sessions', value(), 1, MAX_SESSION_ID);
        break;
      case '--mtu':
        mtu = integer('--mtu', value(), 576, 65535);
        break;
      case '--max-flows':
        maxFlows = integer('--max-flows', value(), 1024, 1 << 24);
        break;
      case '--workers':
        workers = integer('--workers', value(), 1, MAX_WORKERS);
        break;
      case '--json':
        if (inline !== undefined) throw new UsageError('--json takes no value');
        json = true;
        break;
      case '-h':
      case '--help':
        return { command: 'help' };
      default:
        throw new UsageError(`unknown flag ${flag}`);
    }
  }
  if (pool === undefined) throw new UsageError('--pool is required, e.g. --pool 198.19.7.0/28');
  const program = rest[i];
  if (program === undefined || program === '') throw new UsageError('no PROGRAM given: put it after "--"');
  return { command: 'run', pool, innerAddress, onExhausted, sessions, mtu, maxFlows, workers, json, program, args: rest.slice(i + 1) };
}
