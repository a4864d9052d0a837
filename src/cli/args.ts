// Command-line parsing for `vipnat`: commands, their flags (or VIPNAT_* environment variables), their checks, and the usage text.
import { DEFAULT_MAX_FLOWS, DEFAULT_SHARED_PORT_QUOTA, MAX_DEFAULT_WORKERS, MAX_SESSION_ID, MAX_WORKERS } from '../gateway/limits.js';

const GATEWAY_FLAGS = `  --pool RANGES     VIPs to hand out: comma-separated CIDRs (198.19.7.0/28),
                    START-END ranges or single addresses
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
  --max-session-flows N
                    most flows one session holds per family (default: a 16th of
                    the table, at least 1024); past it, its oldest unanswered or
                    closing flow makes room
  --shared-port-quota N
                    shared ports one shared session holds per protocol (default ${DEFAULT_SHARED_PORT_QUOTA})
  --block-local     sessions cannot reach this namespace's own addresses (they
                    get ICMP administratively prohibited); default: they can
  --uplink DEV      the interface that faces the network: a pool range inside
                    its subnet is on-link (proxy ARP/NDP, probed, announced);
                    default: the interface whose subnet holds the pool, if any
  --loopback on|off 127.0.0.1 + session id reaches the session's own 127.0.0.1,
                    every port, TCP, UDP and ping, from this namespace and from
                    the session itself (default on)
  --workers N       dataplane threads, each with its own queue of every TUN
                    (default: one per two CPUs, at least 1, at most ${MAX_DEFAULT_WORKERS})
  --metrics ADDR:PORT
                    serve Prometheus metrics at http://ADDR:PORT/metrics
                    (ADDR defaults to 127.0.0.1: --metrics 9464 is loopback only)
  --pcap FILE       capture every packet from the start to FILE (pcapng,
                    mode 0600), both sides of the translation
  --json            print events as one JSON object per line`;

export const USAGE = `usage: vipnat run   --pool RANGES [--sessions N] [GATEWAY FLAGS] -- PROGRAM [ARGS...]
       vipnat up    [--name NAME] --pool RANGES [GATEWAY FLAGS]
       vipnat start [--name NAME] [--id N] [--vip ADDR] [--label KEY=VALUE]... [--wait] [--json] -- PROGRAM [ARGS...]
       vipnat exec  [--name NAME] ID -- PROGRAM [ARGS...]
       vipnat stop  [--name NAME] [--json] ID... | --all
       vipnat ls    [--name NAME] [--json]
       vipnat pool  [--name NAME] [--json]
       vipnat down  [--name NAME]
       vipnat attach [--name NAME] (--netns PATH|NAME | --pid PID | --container NAME) [--route CIDR]...
                    [--id N] [--vip ADDR] [--label KEY=VALUE]... [--wait] [--json]
       vipnat detach [--name NAME] ID...
       vipnat sockets [--name NAME] [--listening] [--json] [ID...]
       vipnat sockets (--netns NAME|PATH | --pid PID) [--listening] [--json]
       vipnat capture [--name NAME] ID|uplink [-w FILE] [-c COUNT] [--snaplen N]
       vipnat top   [--name NAME] [--interval SECONDS] [-n COUNT]

run    runs PROGRAM in N sessions, each in its own network namespace with its
       own virtual IP address (VIP) from the pool, through a userspace NAT
       gateway, until every program has exited.
up     opens a gateway that sessions join and leave, and serves it at
       /run/vipnat/NAME.sock (NAME: default) until SIGINT, SIGTERM or down.
start  logs a session on to it: the lowest free VIP (or --vip), PROGRAM in it;
       with --wait, PROGRAM's input and output are this command's, and its
       exit status is this command's.
exec   runs another program in a running session, with its VIP.
stop   logs sessions off: SIGTERM, a grace period, SIGKILL; the VIP goes back.
ls     shows the sessions; pool shows the addresses; down stops the gateway.
attach gives an existing namespace (a container's, a process's) a VIP of the
       gateway's: a TUN in it holds the VIP, and traffic to the --route
       networks (default: those the gateway routes to) leaves through it; its
       own interfaces stay as they are. It is a session: ls shows it, detach
       (or the namespace's end) gives the VIP back. --wait stays until then.
sockets shows each session's TCP and UDP sockets with their processes, and
       the flows the gateway translates for them (inside and outside view);
       --netns or --pid reads one namespace's sockets without a gateway.
capture copies a session's packets (or every packet: uplink) to a pcapng
       file (-w FILE, mode 0600) or standard output (-w -), both sides of the
       translation as two interfaces; packets the writer cannot keep up
       with are left out and counted in the file's statistics.
top    shows the sessions by traffic, refreshed (q quits); plain lines when
       the output is not a terminal.
run and up serve a control socket (run's is named run-PID unless --name is
given): every client command works against either. Without --name, a
client takes "default", or the only gateway running.

Gateway flags (run and up):
  --sessions N      (run) how many sessions to start (default 1)
${GATEWAY_FLAGS}

  --name NAME       which gateway (default: default)
  -h, --help        show this help
  --version         print the version

Every flag can also be given in the environment: --max-flows as
VIPNAT_MAX_FLOWS=N, --json as VIPNAT_JSON=1, --loopback as VIPNAT_LOOPBACK=off.
A flag wins over the environment.
Each session's program gets VIPNAT_SESSION_ID, VIPNAT_VIP and VIPNAT_LOOPBACK.`;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** What `run` and `up` take to open a gateway. */
export interface GatewayArgs {
  pool: string;
  innerAddress: string | undefined;
  onExhausted: 'refuse' | 'shared';
  mtu: number;
  maxFlows: number;
  /** undefined: the default (one per two CPUs, capped). */
  workers: number | undefined;
  user: string | undefined;
  maxSessionFlows: number | undefined;
  sharedPortQuota: number | undefined;
  blockLocal: boolean;
  loopback: boolean;
  uplink: string | undefined;
  metrics: { host: string; port: number } | undefined;
  pcap: string | undefined;
  json: boolean;
}

export interface RunArgs extends GatewayArgs {
  command: 'run';
  /** Its control socket's name (undefined: run-PID). */
  name: string | undefined;
  sessions: number;
  program: string;
  args: string[];
}

export interface UpArgs extends GatewayArgs {
  command: 'up';
  name: string;
}

export interface StartArgs {
  command: 'start';
  name: string;
  named: boolean;
  id: number | undefined;
  vip: string | undefined;
  labels: Record<string, string>;
  wait: boolean;
  json: boolean;
  program: string;
  args: string[];
}

export interface ExecArgs {
  command: 'exec';
  name: string;
  named: boolean;
  id: number;
  program: string;
  args: string[];
}

export interface StopArgs {
  command: 'stop';
  name: string;
  named: boolean;
  ids: number[] | 'all';
  json: boolean;
}

export interface QueryArgs {
  command: 'ls' | 'pool' | 'down';
  name: string;
  named: boolean;
  json: boolean;
}

export interface AttachArgs {
  command: 'attach';
  name: string;
  named: boolean;
  netns: string | undefined;
  pid: number | undefined;
  container: string | undefined;
  routes: string[];
  id: number | undefined;
  vip: string | undefined;
  labels: Record<string, string>;
  wait: boolean;
  json: boolean;
}

export interface SocketsArgs {
  command: 'sockets';
  name: string;
  /** Whether --name (or VIPNAT_NAME) was given: without it a client takes the only gateway running. */
  named: boolean;
  ids: number[];
  /** Read this namespace directly (no gateway): a path or a name under /run/netns, or a process's. */
  netns: string | undefined;
  pid: number | undefined;
  listening: boolean;
  json: boolean;
}

export interface CaptureArgs {
  command: 'capture';
  name: string;
  named: boolean;
  target: number | 'uplink';
  /** undefined or '-': standard output. */
  file: string | undefined;
  count: number | undefined;
  snaplen: number | undefined;
}

export interface TopArgs {
  command: 'top';
  name: string;
  named: boolean;
  intervalMs: number;
  /** Refreshes before quitting (undefined: until q, a signal, or the gateway's end). */
  iterations: number | undefined;
}

export type Parsed =
  | RunArgs
  | UpArgs
  | StartArgs
  | ExecArgs
  | StopArgs
  | QueryArgs
  | SocketsArgs
  | AttachArgs
  | CaptureArgs
  | TopArgs
  | { command: 'help' }
  | { command: 'version' };

function integer(flag: string, text: string, min: number, max: number): number {
  if (!/^[0-9]+$/.test(text)) throw new UsageError(`${flag} "${text}": must be a whole number from ${min} to ${max}`);
  const n = Number(text);
  if (n < min || n > max) throw new UsageError(`${flag} ${text}: must be from ${min} to ${max}`);
  return n;
}

/** A command's flags, each with what a missing value should say (null: the flag takes no value); `many` may repeat. */
type FlagTable = Record<string, { missing: string | null; many?: boolean }>;

const value = (missing: string): { missing: string } => ({ missing });
const SWITCH = { missing: null };

const GATEWAY: FlagTable = {
  '--pool': value('--pool needs a value, e.g. --pool 198.19.7.0/28'),
  '--inner-address': value('--inner-address needs a value, e.g. --inner-address 10.0.2.100'),
  '--on-exhausted': value('--on-exhausted needs a value: refuse or shared'),
  '--mtu': value('--mtu needs a value'),
  '--max-flows': value('--max-flows needs a value'),
  '--workers': value('--workers needs a value'),
  '--user': value('--user needs a value, e.g. --user nobody'),
  '--max-session-flows': value('--max-session-flows needs a value'),
  '--shared-port-quota': value('--shared-port-quota needs a value'),
  '--block-local': SWITCH,
  '--loopback': value('--loopback needs a value: on or off'),
  '--uplink': value('--uplink needs an interface name'),
  '--metrics': value('--metrics needs ADDR:PORT, e.g. --metrics 127.0.0.1:9464'),
  '--pcap': value('--pcap needs a file name'),
  '--json': SWITCH,
};
const NAME = { '--name': value('--name needs a value, e.g. --name default') };

const FLAGS: Record<string, FlagTable> = {
  run: { ...GATEWAY, ...NAME, '--sessions': value('--sessions needs a value') },
  up: { ...GATEWAY, ...NAME },
  start: {
    ...NAME,
    '--id': value('--id needs a value'),
    '--vip': value('--vip needs a value, e.g. --vip 198.19.7.5'),
    '--label': { missing: '--label needs KEY=VALUE', many: true },
    '--wait': SWITCH,
    '--json': SWITCH,
  },
  exec: { ...NAME },
  stop: { ...NAME, '--all': SWITCH, '--json': SWITCH },
  ls: { ...NAME, '--json': SWITCH },
  pool: { ...NAME, '--json': SWITCH },
  down: { ...NAME },
  attach: {
    ...NAME,
    '--netns': value('--netns needs a namespace name or path'),
    '--pid': value('--pid needs a process id'),
    '--container': value('--container needs a container name or id'),
    '--route': { missing: '--route needs a CIDR, e.g. --route 198.18.0.0/24', many: true },
    '--id': value('--id needs a value'),
    '--vip': value('--vip needs a value, e.g. --vip 198.19.7.5'),
    '--label': { missing: '--label needs KEY=VALUE', many: true },
    '--wait': SWITCH,
    '--json': SWITCH,
  },
  detach: { ...NAME, '--json': SWITCH },
  sockets: {
    ...NAME,
    '--listening': SWITCH,
    '--json': SWITCH,
    '--netns': value('--netns needs a namespace name or path'),
    '--pid': value('--pid needs a process id'),
  },
  capture: {
    ...NAME,
    '-w': value('-w needs a file name (or - for standard output)'),
    '-c': value('-c needs a packet count'),
    '--snaplen': value('--snaplen needs a byte count'),
  },
  top: { ...NAME, '--interval': value('--interval needs seconds, e.g. --interval 1'), '-n': value('-n needs a count') },
};

/** The environment variable that stands for a flag: --max-flows is VIPNAT_MAX_FLOWS. */
export function envName(flag: string): string {
  return `VIPNAT_${flag.slice(2).replace(/-/g, '_').toUpperCase()}`;
}

/**
 * Reads flags up to the first word that is not one (or "--"): each at most
 * once unless it may repeat. Returns them and where the rest starts.
 */
function readFlags(rest: string[], known: FlagTable): { flags: Map<string, string[]>; at: number } | 'help' {
  const flags = new Map<string, string[]>();
  let i = 0;
  for (; i < rest.length; i++) {
    const a = rest[i]!;
    if (a === '--') {
      i++;
      break;
    }
    if (!a.startsWith('-') || /^-\d/.test(a)) break; // PROGRAM (or an id) without a "--" before it
    if (a === '-h' || a === '--help') return 'help';
    const eq = a.indexOf('=');
    const flag = eq > 0 ? a.slice(0, eq) : a;
    const spec = known[flag];
    if (!spec) throw new UsageError(`unknown flag ${flag}`);
    if (flags.has(flag) && !spec.many) throw new UsageError(`${flag} given twice: give it once`);
    let v: string;
    if (spec.missing === null) {
      if (eq > 0) throw new UsageError(`${flag} takes no value`);
      v = '1';
    } else {
      const given = eq > 0 ? a.slice(eq + 1) : rest[++i];
      if (given === undefined || (eq < 0 && given.startsWith('--'))) throw new UsageError(spec.missing);
      v = given;
    }
    flags.set(flag, [...(flags.get(flag) ?? []), v]);
  }
  return { flags, at: i };
}

/** Reads one command's flags and environment. */
class Flags {
  constructor(
    private readonly flags: Map<string, string[]>,
    private readonly env: NodeJS.ProcessEnv,
  ) {}

  /** A flag's value: the flag's own, else its environment variable's (named so in messages), else undefined. */
  get(flag: string): { value: string; name: string } | undefined {
    const v = this.flags.get(flag);
    if (v !== undefined) return { value: v[0]!, name: flag };
    const e = this.env[envName(flag)];
    return e === undefined || e === '' ? undefined : { value: e, name: envName(flag) };
  }

  all(flag: string): string[] {
    return this.flags.get(flag) ?? [];
  }

  num(flag: string, min: number, max: number): number | undefined {
    const v = this.get(flag);
    return v === undefined ? undefined : integer(v.name === flag ? flag : `${flag} (${v.name})`, v.value, min, max);
  }

  bool(flag: string): boolean {
    const v = this.get(flag);
    if (v === undefined) return false;
    if (!['1', 'true', 'yes', '0', 'false', 'no'].includes(v.value)) throw new UsageError(`${v.name}="${v.value}": must be 1 or 0`);
    return ['1', 'true', 'yes'].includes(v.value);
  }

  named(): boolean {
    return this.get('--name') !== undefined;
  }

  name(): string {
    const n = this.get('--name')?.value ?? 'default';
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/.test(n)) {
      throw new UsageError(`--name "${n}": use letters, digits, dot, dash and underscore (up to 64)`);
    }
    return n;
  }
}

function gatewayArgs(f: Flags): GatewayArgs {
  const pool = f.get('--pool')?.value;
  if (pool === undefined) throw new UsageError('--pool is required, e.g. --pool 198.19.7.0/28');
  const onExhausted = f.get('--on-exhausted');
  if (onExhausted && onExhausted.value !== 'refuse' && onExhausted.value !== 'shared') {
    throw new UsageError(`--on-exhausted "${onExhausted.value}": must be refuse or shared`);
  }
  return {
    pool,
    innerAddress: f.get('--inner-address')?.value,
    onExhausted: (onExhausted?.value ?? 'refuse') as 'refuse' | 'shared',
    mtu: f.num('--mtu', 576, 65535) ?? 1500,
    maxFlows: f.num('--max-flows', 1024, 1 << 24) ?? DEFAULT_MAX_FLOWS,
    workers: f.num('--workers', 1, MAX_WORKERS),
    user: f.get('--user')?.value,
    maxSessionFlows: f.num('--max-session-flows', 1, 1 << 24),
    sharedPortQuota: f.num('--shared-port-quota', 1, 65535),
    blockLocal: f.bool('--block-local'),
    loopback: loopbackFlag(f),
    uplink: f.get('--uplink')?.value,
    metrics: metricsFlag(f),
    pcap: f.get('--pcap')?.value,
    json: f.bool('--json'),
  };
}

/** --metrics [ADDR:]PORT: where /metrics is served; loopback unless an address is given. */
function metricsFlag(f: Flags): { host: string; port: number } | undefined {
  const v = f.get('--metrics');
  if (v === undefined) return undefined;
  const bad = (): UsageError => new UsageError(`${v.name} "${v.value}": must be ADDR:PORT or PORT, e.g. 127.0.0.1:9464 or [::1]:9464`);
  let host = '127.0.0.1';
  let port = v.value;
  if (!/^\d+$/.test(v.value)) {
    const m = /^\[([0-9a-fA-F:.]+)\]:(\d+)$/.exec(v.value) ?? /^([^:[\]]+):(\d+)$/.exec(v.value);
    if (!m) throw bad();
    host = m[1]!;
    port = m[2]!;
  }
  return { host, port: integer(`${v.name} port`, port, 1, 65535) };
}

/**
 * --loopback on|off, or VIPNAT_LOOPBACK=on|off. A session's own
 * VIPNAT_LOOPBACK (its address, exported to its program) is not a setting:
 * a vipnat run inside a session ignores it.
 */
function loopbackFlag(f: Flags): boolean {
  const v = f.get('--loopback');
  if (v === undefined || (v.name !== '--loopback' && !['on', 'off'].includes(v.value))) return true;
  if (v.value !== 'on' && v.value !== 'off') throw new UsageError(`--loopback "${v.value}": must be on or off`);
  return v.value === 'on';
}

function program(rest: string[], at: number): { program: string; args: string[] } {
  const p = rest[at];
  if (p === undefined || p === '') throw new UsageError('no PROGRAM given: put it after "--"');
  return { program: p, args: rest.slice(at + 1) };
}

function sessionId(text: string | undefined, what: string): number {
  if (text === undefined) throw new UsageError(`${what}: give a session id`);
  return integer('session id', text, 1, MAX_SESSION_ID);
}

function labels(list: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (const l of list) {
    const eq = l.indexOf('=');
    if (eq <= 0) throw new UsageError(`--label "${l}": must be KEY=VALUE`);
    out[l.slice(0, eq)] = l.slice(eq + 1);
  }
  return out;
}

export function parseArgs(argv: string[], env: NodeJS.ProcessEnv = {}): Parsed {
  if (argv.length === 0) throw new UsageError('no command given (try: vipnat run --pool 198.19.7.0/28 -- PROGRAM)');
  const [cmd, ...rest] = argv;
  if (cmd === '-h' || cmd === '--help' || cmd === 'help') return { command: 'help' };
  if (cmd === '--version' || cmd === 'version') return { command: 'version' };
  const table = cmd === undefined ? undefined : FLAGS[cmd];
  if (!table)
    throw new UsageError(
      `unknown command "${cmd}" (commands: run, up, start, exec, stop, ls, pool, down, attach, detach, sockets, capture, top)`,
    );
  const read = readFlags(rest, table);
  if (read === 'help') return { command: 'help' };
  const f = new Flags(read.flags, env);
  const { at } = read;
  switch (cmd) {
    case 'run':
      return {
        command: 'run',
        ...gatewayArgs(f),
        name: f.named() ? f.name() : undefined,
        sessions: f.num('--sessions', 1, MAX_SESSION_ID) ?? 1,
        ...program(rest, at),
      };
    case 'up':
      if (rest[at] !== undefined) throw new UsageError(`up takes no PROGRAM ("${rest[at]}"): start sessions with vipnat start`);
      return { command: 'up', ...gatewayArgs(f), name: f.name() };
    case 'start':
      return {
        command: 'start',
        name: f.name(),
        named: f.named(),
        id: f.num('--id', 1, MAX_SESSION_ID),
        vip: f.get('--vip')?.value,
        labels: labels(f.all('--label')),
        wait: f.bool('--wait'),
        json: f.bool('--json'),
        ...program(rest, at),
      };
    case 'exec': {
      const id = sessionId(rest[at], 'exec');
      const afterId = rest[at + 1] === '--' ? at + 2 : at + 1;
      return { command: 'exec', name: f.name(), named: f.named(), id, ...program(rest, afterId) };
    }
    case 'stop': {
      const words = rest.slice(at);
      if (f.bool('--all')) {
        if (words.length > 0) throw new UsageError('stop: give session ids or --all, not both');
        return { command: 'stop', name: f.name(), named: f.named(), ids: 'all', json: f.bool('--json') };
      }
      if (words.length === 0) throw new UsageError('stop: give session ids, or --all');
      return { command: 'stop', name: f.name(), named: f.named(), ids: words.map((w) => sessionId(w, 'stop')), json: f.bool('--json') };
    }
    case 'attach': {
      if (rest[at] !== undefined)
        throw new UsageError(`attach takes no PROGRAM ("${rest[at]}"): the namespace's own programs run as they are`);
      const netns = f.get('--netns')?.value;
      const pid = f.num('--pid', 1, 0x7fffffff);
      const container = f.get('--container')?.value;
      const given = [netns, pid, container].filter((x) => x !== undefined).length;
      if (given !== 1) throw new UsageError('attach: give one of --netns PATH|NAME, --pid PID or --container NAME');
      for (const r of f.all('--route')) {
        if (!/^[0-9a-fA-F:.]+\/\d{1,3}$/.test(r)) throw new UsageError(`--route "${r}": must be a CIDR, e.g. 198.18.0.0/24`);
      }
      return {
        command: 'attach',
        name: f.name(),
        named: f.named(),
        netns,
        pid,
        container,
        routes: f.all('--route'),
        id: f.num('--id', 1, MAX_SESSION_ID),
        vip: f.get('--vip')?.value,
        labels: labels(f.all('--label')),
        wait: f.bool('--wait'),
        json: f.bool('--json'),
      };
    }
    case 'detach': {
      const words = rest.slice(at);
      if (words.length === 0) throw new UsageError('detach: give session ids');
      return { command: 'stop', name: f.name(), named: f.named(), ids: words.map((w) => sessionId(w, 'detach')), json: f.bool('--json') };
    }
    case 'sockets': {
      const netns = f.get('--netns')?.value;
      const pid = f.num('--pid', 1, 0x7fffffff);
      const ids = rest.slice(at).map((w) => sessionId(w, 'sockets'));
      if ((netns !== undefined || pid !== undefined) && ids.length > 0)
        throw new UsageError('sockets: give session ids, or --netns/--pid, not both');
      if (netns !== undefined && pid !== undefined) throw new UsageError('sockets: give --netns or --pid, not both');
      return {
        command: 'sockets',
        name: f.name(),
        named: f.named(),
        ids,
        netns,
        pid,
        listening: f.bool('--listening'),
        json: f.bool('--json'),
      };
    }
    case 'capture': {
      // Flags may also follow the target, as tcpdump's do: `capture 3 -w out.pcapng`.
      const t = rest[at];
      if (t === undefined) throw new UsageError('capture: give one session id, or uplink');
      const after = readFlags(rest.slice(at + 1), table);
      if (after === 'help') return { command: 'help' };
      for (const [k, v] of after.flags) {
        if (read.flags.has(k)) throw new UsageError(`${k} given twice: give it once`);
        read.flags.set(k, v);
      }
      const extra = rest[at + 1 + after.at];
      if (extra !== undefined) throw new UsageError(`capture: give one session id, or uplink ("${extra}" is one more)`);
      const target = t === 'uplink' ? 'uplink' : sessionId(t, 'capture');
      return {
        command: 'capture',
        name: f.name(),
        named: f.named(),
        target,
        file: f.get('-w')?.value,
        count: f.num('-c', 1, Number.MAX_SAFE_INTEGER),
        snaplen: f.num('--snaplen', 1, 262144),
      };
    }
    case 'top': {
      if (rest[at] !== undefined) throw new UsageError(`top takes no arguments ("${rest[at]}")`);
      const iv = f.get('--interval');
      let intervalMs = 1000;
      if (iv !== undefined) {
        const x = Number(iv.value);
        if (!/^\d+(\.\d+)?$/.test(iv.value) || x < 0.1 || x > 3600)
          throw new UsageError(`${iv.name} "${iv.value}": must be 0.1 to 3600 seconds`);
        intervalMs = Math.round(x * 1000);
      }
      return { command: 'top', name: f.name(), named: f.named(), intervalMs, iterations: f.num('-n', 1, 1 << 30) };
    }
    default:
      if (rest[at] !== undefined) throw new UsageError(`${cmd} takes no arguments ("${rest[at]}")`);
      return { command: cmd as 'ls' | 'pool' | 'down', name: f.name(), named: f.named(), json: f.bool('--json') };
  }
}
