// Named network namespaces live in the machine's mount namespace, even when vipnat runs in a private one (under `ip netns exec`).
//
// `ip netns add` makes a name by bind-mounting the namespace on
// /run/netns/NAME. Under `ip netns exec GW`, vipnat's mount namespace is a
// private copy: a name made there would be an empty file to everyone else
// ("Invalid argument"), so sessions could not be entered from outside and a
// later start could not clean them up. So when vipnat's mount namespace is
// not the machine's (pid 1's), every iproute2 command that names a network
// namespace runs in the machine's (nsenter --mount), and names are looked up
// there. Some machines do not let even root look at pid 1's namespaces; the
// machine's mount namespace is then taken to be the one vipnat was started
// from (that of the shell that ran `ip netns exec`), held open from the start.
import { openSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';

/** The inode of a process's mount namespace, from its /proc link ("mnt:[N]"), or -1. */
function mntInode(pid: number | 'self'): number {
  try {
    return Number(/\[(\d+)\]/.exec(readlinkSync(`/proc/${pid}/ns/mnt`))?.[1] ?? -1);
  } catch {
    return -1;
  }
}

function parentOf(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
  } catch {
    return 0;
  }
}

/** The ancestors of this process, nearest first. */
function ancestors(): number[] {
  const out: number[] = [];
  for (let pid = process.ppid; pid > 1 && out.length < 64; pid = parentOf(pid)) out.push(pid);
  return out;
}

/** The processes of each mount namespace (by inode), from one pass over /proc. */
function processesByMountNamespace(): Map<number, number[]> {
  const by = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync('/proc').filter((e) => /^\d+$/.test(e));
  } catch {
    return by;
  }
  for (const e of entries) {
    const ns = mntInode(Number(e));
    if (ns !== -1) by.set(ns, [...(by.get(ns) ?? []), Number(e)]);
  }
  return by;
}

/** A path to the machine's mount namespace when this process is not in it, else null; found once. */
let target: string | null | undefined;
// Found as the process starts, while the ancestor that started it is sure to be there.
machineMountPath();

/**
 * The machine's mount namespace is pid 1's, when we may look at it; else
 * the one most processes are in (some machines close pid 1's namespaces
 * even to root). When it is not ours, it is reached through one of its
 * processes, an ancestor of ours first (the shell that ran `ip netns exec`),
 * held open from the start: that process may exit before vipnat does.
 */
function machineMountPath(): string | null {
  if (target !== undefined) return target;
  target = null;
  const mine = mntInode('self');
  let machine = mntInode(1);
  let members: number[] = [1];
  if (machine === -1) {
    const by = processesByMountNamespace();
    [machine, members] = [...by.entries()].sort((a, b) => b[1].length - a[1].length)[0] ?? [-1, []];
  }
  if (machine === -1 || machine === mine) return target;
  const ours = ancestors().filter((p) => mntInode(p) === machine);
  for (const pid of [...ours, ...members.slice(0, 16)]) {
    try {
      const fd = openSync(`/proc/${pid}/ns/mnt`, 'r');
      target = `/proc/${process.pid}/fd/${fd}`;
      break;
    } catch {
      // Not this one: try the next.
    }
  }
  return target;
}

/** Whether this process's mount namespace is not the machine's, and the machine's can be reached. */
export function privateMounts(): boolean {
  return machineMountPath() !== null;
}

/** The command line for `argv` run in the machine's mount namespace (itself when this process is in it). */
export function inMachineMounts(argv: string[]): string[] {
  const path = machineMountPath();
  return path ? ['nsenter', `--mount=${path}`, '--', ...argv] : argv;
}
