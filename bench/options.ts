// The bench's command line (`make bench BENCH_ARGS=...`): what to measure, on which paths, how long, and whether to save.
import os from 'node:os';

export const ALL_PATHS = ['kernel', 'reference', 'address', 'nat', 'slirp', 'pasta'] as const;
export type PathName = (typeof ALL_PATHS)[number];
export const PATH_LABEL: Record<PathName, string> = {
  kernel: 'kernel',
  reference: 'reference',
  address: 'vipnat address',
  nat: 'vipnat NAT',
  slirp: 'slirp4netns',
  pasta: 'pasta',
};
export const ALL_ONLY = ['tcp', 'rr', 'conn', 'udp', 'micro', 'scale', 'control', 'loopback', 'dhcp', 'observe'] as const;
export type Only = (typeof ALL_ONLY)[number];
const MTUS = ['1500', '65520'] as const;

export interface BenchOptions {
  quick: boolean;
  only: Only[];
  paths: PathName[];
  mtus: number[];
  seconds: number;
  repeat: number;
  scaleSessions: number;
  workers: number | null;
  save: boolean;
  /** Some measure, path, MTU or setting left out or changed: not a full run. */
  partial: boolean;
}

export const USAGE = `usage: node dist-tools/bench/run.js [--quick] [--only tcp,rr,conn,udp,micro,scale,control,loopback,dhcp,observe]
         [--paths kernel,reference,address,nat,slirp,pasta] [--mtu 1500,65520] [--seconds N] [--repeat N]
         [--scale-sessions N] [--workers N] [--save | --no-save]
--repeat N keeps the best of N rounds over all paths for every network figure (default 2; 1 with --quick).
--workers N runs vipnat with N dataplane workers (default: vipnat's own, one per two CPUs, 1-4); a partial run.
A full run saves bench/results/<UTC date>-<commit>.json and latest.md and updates README.md; a partial
or --quick run only prints, unless --save.`;

function usage(err: string | null): never {
  if (err) {
    process.stderr.write(`bench: ${err}\n${USAGE}\n`);
    process.exit(2);
  }
  process.stdout.write(`${USAGE}\n`);
  process.exit(0);
}

function list<T extends string>(v: string | undefined, allowed: readonly T[], flag: string): T[] {
  const xs = String(v ?? '')
    .split(',')
    .filter(Boolean);
  for (const x of xs) if (!(allowed as readonly string[]).includes(x)) usage(`${flag} ${v}: "${x}" is not one of ${allowed.join(', ')}`);
  if (xs.length === 0) usage(`${flag} needs a value`);
  return xs as T[];
}

function positive(v: string | undefined, flag: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) usage(`${flag} ${v}: must be a positive integer`);
  return n;
}

export function parseOptions(argv: string[]): BenchOptions {
  const o: BenchOptions = {
    quick: false,
    only: [...ALL_ONLY],
    paths: [...ALL_PATHS],
    mtus: [1500, 65520],
    seconds: 5,
    repeat: 2,
    scaleSessions: 1000,
    workers: null,
    save: false,
    partial: false,
  };
  const set = new Set<string>();
  let save: boolean | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const next = (): string | undefined => argv[++i];
    set.add(a);
    if (a === '--quick') o.quick = true;
    else if (a === '--only') o.only = list(next(), ALL_ONLY, a);
    else if (a === '--paths') o.paths = list(next(), ALL_PATHS, a);
    else if (a === '--mtu') o.mtus = list(next(), MTUS, a).map(Number);
    else if (a === '--seconds') o.seconds = positive(next(), a);
    else if (a === '--repeat') o.repeat = positive(next(), a);
    else if (a === '--scale-sessions') o.scaleSessions = positive(next(), a);
    else if (a === '--workers') o.workers = positive(next(), a);
    else if (a === '--save') save = true;
    else if (a === '--no-save') save = false;
    else if (a === '-h' || a === '--help') usage(null);
    else usage(`unknown argument ${a}`);
  }
  if (o.quick) {
    if (!set.has('--seconds')) o.seconds = 2;
    if (!set.has('--scale-sessions')) o.scaleSessions = 100;
    if (!set.has('--repeat')) o.repeat = 1;
  }
  o.partial =
    ['--only', '--paths', '--mtu', '--workers'].some((f) => set.has(f)) || (set.has('--scale-sessions') && o.scaleSessions !== 1000);
  o.save = save ?? (!o.quick && !o.partial);
  return o;
}

/** Dataplane workers vipnat runs with here: --workers, else vipnat's default (one per two CPUs, 1-4). */
export function workerCount(opts: BenchOptions): number {
  return opts.workers ?? Math.max(1, Math.min(Math.floor(os.availableParallelism() / 2), 4));
}

/** vipnat's --workers flag when the run sets it. */
export function workersArgs(opts: BenchOptions): string[] {
  return opts.workers ? ['--workers', String(opts.workers)] : [];
}
