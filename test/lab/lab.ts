// A lab of network namespaces (scripts/lab.sh), named after the process that made it, and everything started in it stopped with it.
import { type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { Child, finish, runSync, sh, spawnTracked, stopAll, alive, type RunResult, type SpawnOptions } from './process.js';
import { ROOT } from './root.js';
import { VipnatRun } from './vipnat.js';

export const VIPNAT = `${ROOT}bin/vipnat`;
export const LAB_SH = `${ROOT}scripts/lab.sh`;
export const BACKEND = '198.18.0.2';
export const BACKEND6 = 'fd00:18::2';
/** The integration tests' labs; drivers use prefixes of their own (vnbench-, vnflood-, vnsoak-). */
export const LAB_PREFIX = 'vnt-';

/** Everything vipnat might leave behind, as comparable text. */
export interface Snapshot {
  netns: string[];
  gwLinks: string;
  gwRoutes: string;
  gwRules: string;
  gwSysctls: string;
  gwForward: string;
  etcNetns: string[];
}

/** Labs that are up in this process (what a driver's cleanup takes down). */
export const labsUp = new Set<Lab>();

export class Lab {
  readonly gw: string;
  readonly be: string;
  /** The router between gateway and backend, in a routed lab. */
  readonly rt: string;
  private readonly children = new Set<ChildProcess>();
  /** PIDs of the vipnat runs started here: their session namespaces are vipnat-PID-ID. */
  private readonly vipnatPids = new Set<number>();

  private constructor(readonly name: string) {
    this.gw = `${name}-gw`;
    this.be = `${name}-be`;
    this.rt = `${name}-rt`;
  }

  /**
   * Builds a lab named PREFIX-PID-XXXX (default prefix vnt-): the pid lets sweepLabs() tell the
   * labs of dead processes from those of runs still going on. `routed` puts a router namespace
   * between gateway and backend, with `mtu` on the gateway-router link (on the gateway-backend
   * link in the direct shape).
   */
  static up(opts: { routed?: boolean; lan?: boolean; mtu?: number; prefix?: string } = {}): Lab {
    const lab = new Lab(`${opts.prefix ?? LAB_PREFIX}${process.pid}-${randomBytes(2).toString('hex')}`);
    labsUp.add(lab);
    sh(LAB_SH, ['up', lab.name, opts.lan ? 'lan' : opts.routed ? 'routed' : 'direct', String(opts.mtu ?? 1500)]);
    return lab;
  }

  /** In the LAN shape: adds NAME-suffix (another host, another gateway) to the LAN's bridge with these addresses (lab.sh lanhost). */
  addLanHost(suffix: string, a4: string, a6: string): string {
    sh(LAB_SH, ['lanhost', this.name, suffix, a4, a6]);
    return this.ns(suffix);
  }

  /** The name of the lab's namespace NAME-suffix. */
  ns(suffix: string): string {
    return `${this.name}-${suffix}`;
  }

  /** Adds NAME-k, a client joined to the gateway by a veth pair and routed by its kernel (lab.sh kernel). */
  addKernelClient(mtu: number): string {
    sh(LAB_SH, ['kernel', this.name, String(mtu)]);
    return this.ns('k');
  }

  /** Adds NAME-suffix, an empty namespace with lo up (for slirp4netns, pasta or a TUN to be put in). */
  addBare(suffix: string): string {
    sh(LAB_SH, ['bare', this.name, suffix]);
    return this.ns(suffix);
  }

  /** Sets the MTU of the gateway-backend link and of the kernel client's link (direct shape). */
  setMtu(mtu: number): void {
    sh(LAB_SH, ['mtu', this.name, String(mtu)]);
  }

  /** Runs a command to completion in one of the lab's namespaces. */
  exec(ns: string, cmd: string[], input?: string): { status: number; stdout: string; stderr: string } {
    return runSync('ip', ['netns', 'exec', ns, ...cmd], input);
  }

  /** Starts a long-running command in a namespace; killed at `down()`. */
  spawn(ns: string, cmd: string[]): ChildProcess {
    return this.adopt(spawnTracked('ip', ['netns', 'exec', ns, ...cmd]));
  }

  /** Starts any command (`ip netns exec NS ...`, `nsenter ...`) as a Child collecting its output; stopped at `down()`. */
  start(cmd: string, args: string[], opts: SpawnOptions & { keep?: boolean } = {}): Child {
    return new Child(this.adopt(spawnTracked(cmd, args, opts)), opts.keep ?? true);
  }

  /** Runs a command in namespace `ns` to completion (with `input` on its standard input); killed after `timeoutMs`. */
  nsRun(ns: string, argv: string[], timeoutMs = 60_000, input?: string): Promise<RunResult> {
    return finish(this.start('ip', ['netns', 'exec', ns, ...argv], input === undefined ? {} : { input }), timeoutMs);
  }

  /** What a server at ADDR:PORT (IPv4 or IPv6) sends a client in `ns` that says nothing (socat), trimmed; else the client's error. */
  async answerAt(ns: string, addr: string, port: number): Promise<string> {
    const target = addr.includes(':') ? `TCP6:[${addr}]:${port}` : `TCP:${addr}:${port}`;
    const r = await this.nsRun(ns, ['timeout', '5', 'socat', '-t', '2', '-', target]);
    return r.stdout.trim() || r.stderr.trim();
  }

  /** The link-layer address of interface `dev` in namespace `ns`. */
  macOf(ns: string, dev = 'lan0'): string {
    return (JSON.parse(sh('ip', ['-n', ns, '-j', 'link', 'show', dev])) as { address: string }[])[0]!.address;
  }

  /** Runs the real CLI with the gateway namespace as its uplink (nsenter keeps /run/netns shared). */
  vipnat(args: string[], env?: NodeJS.ProcessEnv, ns: string = this.gw): VipnatRun {
    const c = this.adopt(spawnTracked('nsenter', [`--net=/run/netns/${ns}`, VIPNAT, ...args], { env: { ...process.env, ...env } }));
    if (c.pid) this.vipnatPids.add(c.pid); // nsenter execs vipnat: same pid
    return new VipnatRun(c);
  }

  private adopt(c: ChildProcess): ChildProcess {
    this.children.add(c);
    c.once('exit', () => this.children.delete(c));
    return c;
  }

  /**
   * The state of this lab (and of the machine where vipnat touches it),
   * leaving out what other labs or runs on the machine do meanwhile, and the
   * kernel's own IPv6 link-local addresses, which appear on their own time.
   */
  snapshot(): Snapshot {
    const ours = (n: string): boolean =>
      n.startsWith(`${this.name}-`) || [...this.vipnatPids].some((pid) => n.startsWith(`vipnat-${pid}-`));
    const noLinkLocal = (text: string): string =>
      text
        .split('\n')
        .filter((l) => !l.includes('fe80:'))
        .join('\n');
    return {
      netns: sh('ip', ['netns', 'list'])
        .split('\n')
        .map((l) => l.split(' ')[0]!)
        .filter((n) => n && ours(n))
        .sort(),
      gwLinks: sh('ip', ['-n', this.gw, '-br', 'link'])
        .split('\n')
        .map((l) => l.split(/\s+/)[0])
        .sort()
        .join(' '),
      gwRoutes: noLinkLocal(sh('ip', ['-n', this.gw, 'route']) + sh('ip', ['-n', this.gw, '-6', 'route'])),
      gwRules: noLinkLocal(sh('ip', ['-n', this.gw, 'rule']) + sh('ip', ['-n', this.gw, 'route', 'show', 'table', 'all'])),
      gwSysctls: this.exec(this.gw, ['sysctl', 'net.ipv6.conf.all.forwarding', 'net.ipv4.conf.all.rp_filter']).stdout,
      gwForward: this.exec(this.gw, ['cat', '/proc/sys/net/ipv4/ip_forward']).stdout.trim(),
      // Only this lab's: other runs on the machine keep theirs in /etc/netns meanwhile.
      etcNetns: existsSync('/etc/netns') ? readdirSync('/etc/netns').filter(ours).sort() : [],
    };
  }

  /**
   * Stops what the lab started and removes it, also after a failed test: vipnat runs get
   * SIGTERM first, so that they remove their sessions themselves; whatever is still there after
   * `graceMs` is killed, and the session namespaces of a vipnat that could not clean up (killed,
   * or hung) are swept with what runs in them.
   */
  down(graceMs = 10_000): void {
    labsUp.delete(this);
    stopAll(this.children, this.vipnatPids, graceMs);
    for (const pid of this.vipnatPids) {
      sh(LAB_SH, ['sweep', `vipnat-${pid}-`]);
      removeEtcNetns(`vipnat-${pid}-`);
    }
    sh(LAB_SH, ['down', this.name]);
  }
}

/**
 * Removes /etc/netns/PREFIX* (the hosts files of a vipnat's sessions): a vipnat that could not
 * clean up leaves them, and deleting its namespaces does not remove them.
 */
function removeEtcNetns(prefix: string): void {
  if (!existsSync('/etc/netns')) return;
  for (const n of readdirSync('/etc/netns')) if (n.startsWith(prefix)) rmSync(`/etc/netns/${n}`, { recursive: true, force: true });
}

/**
 * Removes the labs PREFIX-PID-XXXX (default vnt-, the tests') whose process PID is gone:
 * leftovers of a run that was killed. Labs of runs still going on beside this one stay.
 */
export function sweepLabs(prefix = LAB_PREFIX): void {
  const esc = prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const re = new RegExp(`^(${esc}(\\d+)-[0-9a-f]+)-[a-z]+$`);
  const names = new Set(
    sh('ip', ['netns', 'list'])
      .split('\n')
      .map((l) => re.exec(l.split(' ')[0]!))
      .filter((m): m is RegExpExecArray => m !== null && !alive(Number(m[2])))
      .map((m) => m[1]!),
  );
  for (const name of names) sh(LAB_SH, ['down', name]);
}
