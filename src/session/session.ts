// One session's life: a network namespace with a TUN eth0 holding its address, a hosts file, a program.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, statSync } from 'node:fs';
import { hostname } from 'node:os';
import { fileURLToPath } from 'node:url';
import {
  close,
  inMachineMounts,
  ipBatch,
  ip,
  killNetnsProcesses,
  noQueueDiscipline,
  openTunQueues,
  pendingTcp,
  removeNetnsEtc,
  swapSysctlIn,
  writeNetnsHosts,
} from '../linux/index.js';
import { loopbackFor } from '../pool/index.js';

/**
 * The helper that runs a session's program in a PID namespace that dies with
 * vipnat (native/vipnat-init.c, built by `make build` next to the compiled code).
 */
export const INIT_PATH = fileURLToPath(new URL('../vipnat-init', import.meta.url));

export function initHelperExists(): boolean {
  return existsSync(INIT_PATH);
}

/** Whether a child process has been started and has not ended. */
export function running(child: ChildProcess | null): child is ChildProcess {
  return child !== null && child.exitCode === null && child.signalCode === null;
}

/** How a child process ended, once it has: at once if it already did. */
export function exitOf(child: ChildProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve({ code: child.exitCode, signal: child.signalCode });
    else child.once('exit', (code, signal) => resolve({ code, signal }));
  });
}

/** The program's standard input, output and error: vipnat's own, or pipes the caller reads and writes. */
export type Stdio = 'inherit' | 'pipe' | 'ignore';

/** Who a session's program runs as (--user): that uid and gid, no capabilities, no way to gain privileges. */
export interface RunAs {
  uid: number;
  gid: number;
  /** The user's name, when it has one: its supplementary groups come with it. */
  name: string | null;
  home: string;
}

/** One address family of a session: what the network sees, and what eth0 holds. */
export interface SessionAddress {
  /** The address the network sees. */
  vip: string;
  /** The address eth0 holds: the VIP in address mode, the shared inner address in NAT mode. */
  inner: string;
}

export interface SessionSpec {
  id: number;
  v4: SessionAddress | null;
  v6: SessionAddress | null;
  /** No VIP: v4.vip is the uplink's shared address. */
  shared: boolean;
  mtu: number;
  /** Open eth0 with offloads (virtio_net_hdr, TSO/checksum), as the uplink is. */
  offload: boolean;
  /** eth0's TUN queues: one per dataplane worker. */
  queues: number;
  /**
   * The virtual loopback: the ports its peers get in this session (the
   * translator's range), kept from the session's own sockets and routed
   * back to eth0; null when it is off.
   */
  loopback: { portLo: number; portHi: number } | null;
  /**
   * An attached session (`vipnat attach`): no namespace of its own, no
   * program; a TUN in an existing namespace (a container's) holds the VIP,
   * and only traffic to `routes` leaves through it.
   */
  attach?: AttachSpec;
}

/** Where an attached session lives. */
export interface AttachSpec {
  /** The namespace's file (/proc/PID/ns/net, /run/netns/NAME, a container's). */
  path: string;
  /** What `ls` shows for it (container:NAME, pid:PID, the path). */
  name: string;
  /** The process whose namespace it is (-1: none, a namespace file alone). */
  pid: number;
  /** The namespace file's identity (st_dev:st_ino) when attached: the session ends when the file no longer is it. */
  identity: string;
  /** Destinations (CIDRs) that leave through the VIP. */
  routes: string[];
}

/**
 * The routing table of an attached session's routes, looked up before main
 * for them alone: one per gateway and session id, so that two gateways
 * attaching to one namespace never take each other's.
 */
export function attachTable(id: number, pid: number = process.pid): number {
  return 0x40000000 + (pid % 0x4000) * 0x10000 + (id % 0x10000);
}

/** A namespace file's identity (st_dev:st_ino), or null when it is not there. */
export function identityOf(path: string): string | null {
  try {
    const st = statSync(path);
    return `${st.dev}:${st.ino}`;
  } catch {
    return null;
  }
}

/** The interface an attached session adds to the namespace it joins. */
export function attachDevice(id: number): string {
  return `vipnat${id}`;
}

/** The session's routing table for its answers to virtual-loopback peers ("lo"). */
const LOOPBACK_TABLE = 0x6c6f;

/**
 * What the virtual loopback needs in a session's namespace (nat/loopback.ts):
 * its own 127.0.0.1 + id routed to eth0, so that its clients reach its
 * 127.0.0.1 through the translator; answers to the peers' ports, and ICMP to
 * 127.0.0.1, routed to eth0 ahead of the local table, whose rule moves from
 * preference 0 to 100. The namespace is the session's own: all of it goes
 * with it.
 */
export function loopbackRoutes(loopback: string, portLo: number, portHi: number): string[] {
  const ports = `${portLo}-${portHi}`;
  const t = LOOPBACK_TABLE;
  return [
    `route add default dev eth0 table ${t}`,
    `route add ${loopback}/32 dev eth0 src 127.0.0.1 table local`,
    `rule add pref 10 iif lo to 127.0.0.1/32 ipproto 6 dport ${ports} lookup ${t}`,
    `rule add pref 11 iif lo to 127.0.0.1/32 ipproto 17 dport ${ports} lookup ${t}`,
    `rule add pref 12 iif lo to 127.0.0.1/32 ipproto 1 lookup ${t}`,
    `rule add pref 100 lookup local`,
    `rule del pref 0 lookup local`,
  ];
}

/**
 * The sysctls of the same (written by a shell in the namespace before the
 * program starts): eth0 carries 127/8 packets both ways and takes ones from
 * a local address, and the session's own sockets keep off the peers' ports.
 */
export function loopbackSysctls(portLo: number, portHi: number): string {
  const w = (k: string, v: string): string => `echo ${v} > /proc/sys/net/ipv4/${k}`;
  return [
    w('conf/eth0/route_localnet', '1'),
    w('conf/eth0/accept_local', '1'),
    w('conf/eth0/rp_filter', '0'),
    w('conf/all/rp_filter', '0'),
    w('ip_local_reserved_ports', `${portLo}-${portHi}`),
  ].join('; ');
}

/** The session's main VIP (IPv4 when it has one), as shown and exported as VIPNAT_VIP. */
export function primaryVip(spec: SessionSpec): string {
  return (spec.v4 ?? spec.v6)!.vip;
}

/** Namespace names carry the gateway's pid so a later run can tell stale ones from live ones. */
export function netnsName(id: number, pid: number = process.pid): string {
  return `vipnat-${pid}-${id}`;
}

/** Transmit queue of every TUN (the kernel's default for a TUN is 500 packets). */
export const TXQUEUELEN = 5000;

/** The TUN's name while it is still in the uplink namespace: short (IFNAMSIZ) and unique per gateway. */
function tempIfName(id: number): string {
  return `vn${process.pid.toString(36)}-${id.toString(36)}`;
}

/** /etc/hosts for the session: the machine's entries, with its hostname pointing at the session's address. */
export function sessionHosts(addresses: string[], host: string = hostname(), base?: string): string {
  let text = base;
  if (text === undefined) {
    try {
      text = readFileSync('/etc/hosts', 'utf8');
    } catch {
      text = '127.0.0.1\tlocalhost\n';
    }
  }
  const short = host.split('.')[0] ?? host;
  const names = new Set([host, short]);
  const kept = text
    .split('\n')
    .filter((line) => {
      const fields = line.replace(/#.*/, '').trim().split(/\s+/);
      return !fields.slice(1).some((n) => names.has(n));
    })
    .join('\n')
    .replace(/\n*$/, '\n');
  const aliases = short !== host ? `${host} ${short}` : host;
  return `${kept}# vipnat: this session's own address\n${addresses.map((a) => `${a}\t${aliases}\n`).join('')}`;
}

export class Session {
  readonly netns: string;
  /** eth0's TUN queues, one fd each; the dataplane takes them over (and closes them) once the session is attached. */
  fds: number[] = [];
  child: ChildProcess | null = null;
  private netnsMade = false;

  constructor(readonly spec: SessionSpec) {
    this.netns = spec.attach ? spec.attach.name : netnsName(spec.id);
  }

  /** The namespace's file: a session's own under /run/netns, or the one an attached session joined. */
  get nsPath(): string {
    return this.spec.attach ? this.spec.attach.path : `/run/netns/${this.netns}`;
  }

  get loopback(): string {
    return loopbackFor(this.spec.id);
  }

  /** Makes the namespace and its eth0 (or, attached, the TUN in the namespace it joins). On failure, undoes what it did and throws. */
  async create(): Promise<void> {
    if (this.spec.attach) return this.createAttached(this.spec.attach);
    const { v4, v6, mtu } = this.spec;
    const tmp = tempIfName(this.spec.id);
    try {
      this.fds = openTunQueues(tmp, this.spec.offload, this.spec.queues);
      // The fds stay attached to the interface when the interface moves namespace.
      await ipBatch([`netns add ${this.netns}`, `link set dev ${tmp} netns ${this.netns}`]);
      this.netnsMade = true;
      if (this.spec.queues > 1) await noQueueDiscipline(tmp, this.netns);
      await ipBatch(
        [
          `link set dev lo up`,
          `link set dev ${tmp} name eth0`,
          // A longer queue between the session's stack and the dataplane absorbs bursts.
          `link set dev eth0 mtu ${mtu} txqueuelen ${TXQUEUELEN} up`,
          ...(v4 ? [`addr add ${v4.inner}/32 dev eth0`, `route add 0.0.0.0/0 dev eth0`] : []),
          // nodad: the address is ours alone; no need to wait for duplicate detection.
          ...(v6 ? [`addr add ${v6.inner}/128 dev eth0 nodad`, `route add ::/0 dev eth0`] : []),
          ...(this.spec.loopback ? loopbackRoutes(this.loopback, this.spec.loopback.portLo, this.spec.loopback.portHi) : []),
        ],
        this.netns,
      );
      // The hostname names the VIPs in both modes: they are the addresses peers
      // can reach. A shared session has none: it names its own inner address.
      const names = this.spec.shared ? [v4!.inner] : [v4?.vip, v6?.vip].filter((a): a is string => a !== undefined);
      writeNetnsHosts(this.netns, sessionHosts(names));
    } catch (e) {
      await this.destroy();
      throw e;
    }
  }

  /** What an attached session made in the namespace it joined, so that destroy() takes back that and nothing else. */
  private made: { dev: string | null; rule4: boolean; rule6: boolean; arpIgnoreWas: string | null } = {
    dev: null,
    rule4: false,
    rule6: false,
    arpIgnoreWas: null,
  };

  /**
   * An attached session's TUN: made here, moved into the namespace it joins,
   * named vipnatID, holding the VIP(s); its routes in a table of its own,
   * looked up (by one rule) before the namespace's main table, so that only
   * they leave through it and the namespace's own interfaces and routes stay
   * as they were.
   */
  private async createAttached(a: AttachSpec): Promise<void> {
    const { v4, v6, mtu, id } = this.spec;
    const tmp = tempIfName(id);
    const dev = attachDevice(id);
    const table = attachTable(id);
    const made = this.made;
    try {
      this.fds = openTunQueues(tmp, this.spec.offload, this.spec.queues);
      await ip(['link', 'set', 'dev', tmp, 'netns', a.path]);
      made.dev = tmp;
      if (this.spec.queues > 1) await noQueueDiscipline(tmp, a.path);
      // Renamed alone first: a vipnatID there already (another gateway's) is refused here, and stays untouched.
      await ip(['link', 'set', 'dev', tmp, 'name', dev], a.path);
      made.dev = dev;
      const routes = a.routes.map((r) => {
        const six = r.includes(':');
        const src = six ? v6?.inner : v4?.inner;
        if (!src) throw new Error(`--route ${r}: the session has no IPv${six ? 6 : 4} VIP`);
        // The prefix says the family: ip -batch takes no -6 on a line.
        return `route add ${r} dev ${dev} src ${src} table ${table}`;
      });
      await ipBatch(
        [
          // No link-local address: nothing of IPv6's own chatter (router solicitations, MLD) from it.
          `link set dev ${dev} addrgenmode none`,
          `link set dev ${dev} mtu ${mtu} txqueuelen ${TXQUEUELEN} up`,
          ...(v4 ? [`addr add ${v4.inner}/32 dev ${dev}`] : []),
          ...(v6 ? [`addr add ${v6.inner}/128 dev ${dev} nodad`] : []),
          ...routes,
        ],
        a.path,
      );
      if (v4) {
        await ip(['rule', 'add', 'pref', '100', 'lookup', String(table)], a.path);
        made.rule4 = true;
      }
      if (v6) {
        await ip(['-6', 'rule', 'add', 'pref', '100', 'lookup', String(table)], a.path);
        made.rule6 = true;
      }
      // The VIP is an address of the namespace now, and Linux answers ARP for its addresses on every interface: its
      // own interfaces would answer for the VIP on their network, and traffic to it would come past vipnat. Only
      // addresses of the interface asked on are answered for from here (arp_ignore 1), until detach.
      if (v4) {
        const was = await swapSysctlIn(a.path, 'net.ipv4.conf.all.arp_ignore', '1');
        if (was === '0') made.arpIgnoreWas = was;
        else if (was !== '1') await swapSysctlIn(a.path, 'net.ipv4.conf.all.arp_ignore', was);
      }
    } catch (e) {
      await this.destroy();
      throw e;
    }
  }

  /** Takes back what createAttached made, if the namespace is still the one it joined (not a pid's or path's next one). */
  private async undoAttached(a: AttachSpec): Promise<void> {
    const made = this.made;
    this.made = { dev: null, rule4: false, rule6: false, arpIgnoreWas: null };
    if (identityOf(a.path) !== a.identity) return;
    const t = String(attachTable(this.spec.id));
    if (made.rule4) await ip(['rule', 'del', 'pref', '100', 'lookup', t], a.path).catch(() => undefined);
    if (made.rule6) await ip(['-6', 'rule', 'del', 'pref', '100', 'lookup', t], a.path).catch(() => undefined);
    // Its TUN goes when its last fd closes (the dataplane's, or ours above); deleted here too, by the name it has.
    if (made.dev) await ip(['link', 'del', 'dev', made.dev], a.path).catch(() => undefined);
    if (made.arpIgnoreWas !== null) {
      // Put back only when no other attached session (another vipnatID) still holds a VIP there.
      const links = await ip(['-o', 'link', 'show'], a.path).catch(() => '');
      if (!/^\d+: vipnat\d+[@:]/m.test(links)) {
        await swapSysctlIn(a.path, 'net.ipv4.conf.all.arp_ignore', made.arpIgnoreWas).catch(() => undefined);
      }
    }
  }

  /** The program's pid as this namespace sees it (not vipnat-init's), once start() resolved; -1 if unknown. */
  pid = -1;
  /** Set if the helper could not be spawned. */
  spawnError: Error | null = null;
  /** Whether stop() has sent the program its SIGTERM (it gets one, once). */
  private signaled = false;

  /**
   * Starts `program` inside the namespace (with the session's /etc/hosts),
   * under vipnat-init: in a PID namespace of its own, in a process session of
   * its own (a terminal's ^C reaches vipnat, which stops the program once),
   * as `runAs` when given. Resolves once the program's process exists; the
   * returned child (vipnat-init) ends exactly as the program does.
   */
  start(
    program: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    runAs: RunAs | null = null,
    stdio: Stdio = 'inherit',
  ): Promise<ChildProcess> {
    if (this.spec.attach) return this.watch(this.spec.attach);
    return this.launch([], program, args, env, runAs, stdio, true).then(({ child, pid }) => {
      this.child = child;
      this.pid = pid;
      return child;
    });
  }

  /**
   * Runs another program in the running session (`vipnat exec`): in its
   * network namespace, its PID namespace (it dies with the session) and as
   * its user. Resolves with the helper's process, which ends as the program
   * does, and the program's pid.
   */
  exec(
    program: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    runAs: RunAs | null,
    stdio: Stdio,
  ): Promise<{ child: ChildProcess; pid: number }> {
    if (this.spec.attach)
      return Promise.reject(
        new Error(`session ${this.spec.id} is attached to ${this.spec.attach.name}: run programs there with its own tools`),
      );
    if (this.pid <= 0 || !running(this.child)) {
      return Promise.reject(new Error(`session ${this.spec.id} is not running`));
    }
    return this.launch(['--join', String(this.pid)], program, args, env, runAs, stdio);
  }

  /**
   * An attached session's "program": a watcher that exits (status 0) when
   * the namespace it joined is no longer there (its container or process
   * ended, the file went or now holds another namespace), or when stopped.
   * Under vipnat-init, so it dies with vipnat.
   */
  private watch(a: AttachSpec): Promise<ChildProcess> {
    const q = (x: string): string => `'${x.replace(/'/g, `'\\''`)}'`;
    const script = `trap 'exit 0' TERM; while [ "$(stat -L -c %d:%i ${q(a.path)} 2>/dev/null)" = ${q(a.identity)} ]; do sleep 1 & wait $!; done`;
    const child = spawn(INIT_PATH, ['--parent', String(process.pid), '--', 'sh', '-c', script], { stdio: 'ignore', detached: true });
    child.once('error', (e) => (this.spawnError ??= e));
    this.child = child;
    this.pid = a.pid;
    return Promise.resolve(child);
  }

  /** vipnat-init, then `ip netns exec` (mounts the session's /etc/hosts), then setpriv for a user, then the program. */
  private launch(
    initArgs: string[],
    program: string,
    args: string[],
    env: NodeJS.ProcessEnv,
    runAs: RunAs | null,
    stdio: Stdio,
    first = false,
  ): Promise<{ child: ChildProcess; pid: number }> {
    const argv = inMachineMounts(['ip', 'netns', 'exec', this.netns]);
    // The namespace's sysctls, set as root before the program runs (once, by the session's first program).
    const lb = first ? this.spec.loopback : null;
    const sysctls = [
      ...(lb ? [loopbackSysctls(lb.portLo, lb.portHi)] : []),
      // Unprivileged ping (ICMP datagram sockets) for every group, in this namespace only.
      ...(runAs ? ['echo "0 2147483647" > /proc/sys/net/ipv4/ping_group_range'] : []),
    ];
    if (sysctls.length > 0) argv.push('sh', '-c', `${sysctls.join('; ')}; exec "$@"`, 'sh');
    if (runAs) {
      // Then drop to the user.
      argv.push('setpriv', `--reuid=${runAs.uid}`, `--regid=${runAs.gid}`, runAs.name ? '--init-groups' : '--clear-groups');
      // No capabilities now, and none to gain: with no_new_privs an exec ignores setuid bits and file capabilities
      // (clearing the bounding set too would make the kernel refuse to exec binaries with file capabilities, like ping).
      argv.push('--inh-caps=-all', '--ambient-caps=-all', '--no-new-privs', '--');
    }
    const child = spawn(INIT_PATH, ['--parent', String(process.pid), '--pid-fd', '3', ...initArgs, '--', ...argv, program, ...args], {
      stdio: [stdio, stdio, stdio, 'pipe'],
      detached: true,
      env: {
        ...env,
        ...(runAs ? { HOME: runAs.home, USER: runAs.name ?? String(runAs.uid), LOGNAME: runAs.name ?? String(runAs.uid) } : {}),
        VIPNAT_SESSION_ID: String(this.spec.id),
        VIPNAT_VIP: primaryVip(this.spec),
        ...(this.spec.v4 && this.spec.v6 ? { VIPNAT_VIP6: this.spec.v6.vip } : {}),
        ...(this.spec.shared ? { VIPNAT_SHARED: '1' } : {}),
        VIPNAT_LOOPBACK: this.loopback,
        VIPNAT_NETNS: this.netns,
      },
    });
    // A helper that cannot be spawned says so here, maybe before the caller listens.
    child.once('error', (e) => (this.spawnError ??= e));
    return new Promise((resolve) => {
      const pipe = child.stdio[3] as NodeJS.ReadableStream | null;
      let text = '';
      const done = (): void => {
        const pid = Number(text.trim());
        resolve({ child, pid: Number.isInteger(pid) && pid > 0 ? pid : (child.pid ?? -1) });
      };
      if (!pipe) {
        done();
        return;
      }
      pipe.setEncoding('utf8');
      pipe.on('data', (d: string) => (text += d));
      // The helper closes it once the program's process exists, or when it fails.
      pipe.once('close', done);
      pipe.once('error', done);
    });
  }

  /** Asks the program to end: SIGTERM, once, however often this is called. */
  stop(): void {
    if (this.signaled || !running(this.child)) return;
    this.signaled = true;
    this.child.kill('SIGTERM');
  }

  /** Ends the program at once (its whole PID namespace goes with vipnat-init). */
  kill(): void {
    if (!running(this.child)) return;
    this.child.kill('SIGKILL');
  }

  /**
   * Waits (up to `timeoutMs`) for TCP data the program left in flight when it
   * exited to be delivered, so that a last message written just before exit
   * is not lost when eth0 goes away.
   */
  async drain(timeoutMs: number): Promise<void> {
    if (!this.netnsMade) return;
    const end = Date.now() + timeoutMs;
    while ((await pendingTcp(this.netns)) > 0 && Date.now() < end) {
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /**
   * Tears the session down: kills what is left in its namespace, deletes it
   * and its /etc files. The TUN fds are closed here only if the dataplane
   * never took them. Safe to call twice.
   */
  async destroy(): Promise<void> {
    for (const fd of this.fds) close(fd);
    this.fds = [];
    if (this.spec.attach) {
      await this.undoAttached(this.spec.attach);
      return;
    }
    if (this.netnsMade) {
      await killNetnsProcesses(this.netns, 'SIGKILL');
      await ip(['netns', 'del', this.netns]).catch(() => undefined);
      this.netnsMade = false;
    }
    removeNetnsEtc(this.netns);
  }
}
