// Command-line parsing for `vipnat`: flags (or their VIPNAT_* environment variables), their checks, and the usage text.
import { DEFAULT_MAX_FLOWS, MAX_DEFAULT_WORKERS, MAX_SESSION_ID, MAX_WORKERS } from '../gateway/index.js';

export const USAGE = `usage: vipnat run --pool RANGES [--sessions N] [--inner-address ADDR[,ADDR6]] [--on-exhausted refuse|shared]
                  [--user USER[:GROUP]] [--mtu BYTES] [--max-flows N] [--workers N] [--json] -- PROGRAM [ARGS...]

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
  --user USER[:GROUP]
                    run the programs as USER, with no capabilities, so that a
                    session cannot enter another's namespace or stop vipnat
  --mtu BYTES       MTU of the session interfaces and vipnat0 (default 1500)
  --max-flows N     size of the IPv4 flow table (default 262144; IPv6 gets a quarter)
  --workers N       dataplane threads, each with its own queue of every TUN
                    (default: one per two CPUs, at least 1, at most ${MAX_DEFAULT_WORKERS})
  --json            print events as one JSON object per line
  -h, --help        show this help
  --version         print the version

Every flag can also be given in the environment: --max-flows as
VIPNAT_MAX_FLOWS=N, --json as VIPNAT_JSON=1. A flag wins over the environment.
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
  user: string | undefined;
  json: boolean;
  program: string;
  args: string[];
}

export type Parsed = RunArgs | { command: 'help' } | { command: 'version' };

function integer(flag: string, text: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`${flag} "${text}": must be a whole number from ${min} to ${max}`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${flag} ${text}: must be from ${min} to ${max}`);
  return n;
}

/** The flags of `run`, each with what a missing value should say (null: the flag takes none). */
const RUN_FLAGS: Record<string, string | null> = {
  '--pool': '--pool needs a value, e.g. --pool 198.19.7.0/28',
  '--inner-address': '--inner-address needs a value, e.g. --inner-address 10.0.2.100',
  '--on-exhausted': '--on-exhausted needs a value: refuse or shared',
  '--sessions': '--sessions needs a value',
  '--mtu': '--mtu needs a value',
  '--max-flows': '--max-flows needs a value',
  '--workers': '--workers needs a value',
  '--user': '--user needs a value, e.g. --user nobody',
  '--json': null,
};

/** The environment variable that stands for a flag: --max-flows is VIPNAT_MAX_FLOWS. */
export function envName(flag: string): string {
  return `VIPNAT_${flag.slice(2).replace(/-/g, '_').toUpperCase()}`;
}

/** Reads flags up to PROGRAM (or "--"): each at most once, with its value. Returns them and where PROGRAM starts. */
function readFlags(rest: string[], known: Record<string, string | null>): { flags: Map<string, string>; at: number } | 'help' {
  const flags = new Map<string, string>();
  let i = 0;
  for (; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-')) break; // PROGRAM without a "--" before it
    if (a === '-h' || a === '--help') return 'help';
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    if (!(flag in known)) throw new UsageError(`unknown flag ${flag}`);
    if (flags.has(flag)) throw new UsageError(`${flag} given twice: give it once`);
    const missing = known[flag];
    if (missing === null) {
      if (eq > 0) throw new UsageError(`${flag} takes no value`);
      flags.set(flag, '1');
      continue;
    }
    const v = eq > 0 ? a.slice(eq + 1) : rest[++i];
    if (v === undefined || (eq < 0 && v.startsWith('--'))) throw new UsageError(missing ?? `${flag} needs a value`);
    flags.set(flag, v);
  }
  return { flags, at: i };
}

/** A flag's value: the flag's own, else its environment variable's (named so in messages), else undefined. */
function lookup(flags: Map<string, string>, env: NodeJS.ProcessEnv, flag: string): { value: string; name: string } | undefined {
  const v = flags.get(flag);
  if (v !== undefined) return { value: v, name: flag };
  const e = env[envName(flag)];
  return e === undefined || e === '' ? undefined : { value: e, name: envName(flag) };
}

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = {}): Parsed {
  if (argv.length === 0) throw new UsageError('no command given (try: vipnat run --pool 198.19.7.0/28 -- PROGRAM)');
  const [cmd, ...rest] = argv;
  if (cmd === '-h' || cmd === '--help' || cmd === 'help') return { command: 'help' };
  if (cmd === '--version' || cmd === 'version') return { command: 'version' };
  if (cmd !== 'run') throw new UsageError(`unknown command "${cmd}" (the command is: vipnat run ...)`);

  const read = readFlags(rest, RUN_FLAGS);
  if (read === 'help') return { command: 'help' };
  const { flags, at } = read;
  const get = (flag: string) => lookup(flags, env, flag);
  const num = (flag: string, min: number, max: number, dflt: number): number => {
    const v = get(flag);
    return v === undefined ? dflt : integer(v.name === flag ? flag : `${flag} (${v.name})`, v.value, min, max);
  };

  const pool = get('--pool')?.value;
  const onExhausted = get('--on-exhausted');
  if (onExhausted && onExhausted.value !== 'refuse' && onExhausted.value !== 'shared') {
    throw new UsageError(`--on-exhausted "${onExhausted.value}": must be refuse or shared`);
  }
  const json = get('--json');
  if (json && !['1', 'true', 'yes', '0', 'false', 'no'].includes(json.value))
    throw new UsageError(`${json.name}="${json.value}": must be 1 or 0`);
  const workers = get('--workers');
  const parsed: RunArgs = {
    command: 'run',
    pool: pool ?? '',
    innerAddress: get('--inner-address')?.value,
    onExhausted: (onExhausted?.value ?? 'refuse') as 'refuse' | 'shared',
    sessions: num('--sessions', 1, MAX_SESSION_ID, 1),
    mtu: num('--mtu', 576, 65535, 1500),
    maxFlows: num('--max-flows', 1024, 1 << 24, DEFAULT_MAX_FLOWS),
    workers: workers === undefined ? undefined : num('--workers', 1, MAX_WORKERS, 1),
    user: get('--user')?.value,
    json: json !== undefined && ['1', 'true', 'yes'].includes(json.value),
    program: rest[at] ?? '',
    args: rest.slice(at + 1),
  };
  if (pool === undefined) throw new UsageError('--pool is required, e.g. --pool 198.19.7.0/28');
  if (parsed.program === '') throw new UsageError('no PROGRAM given: put it after "--"');
  return parsed;
}
