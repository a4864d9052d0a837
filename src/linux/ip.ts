// iproute2: run `ip` commands, singly or batched, in this or another network namespace.
import { execFile, spawn } from 'node:child_process';
import { accessSync, constants } from 'node:fs';
import { delimiter, join } from 'node:path';
import { inMachineMounts } from './mounts.js';

export class IpError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IpError';
  }
}

/** Finds an executable in PATH, or returns null. */
export function which(cmd: string): string | null {
  if (cmd.includes('/')) return isExecutable(cmd) ? cmd : null;
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    if (!dir) continue;
    const p = join(dir, cmd);
    if (isExecutable(p)) return p;
  }
  return null;
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function firstLine(s: string): string {
  return (
    s
      .split('\n')
      .map((l) => l.trim())
      .find((l) => l.length > 0) ?? ''
  );
}

/**
 * The command line of an iproute2 tool in namespace `netns`: a name under
 * /run/netns (`-n NAME`), or, with a slash, a namespace file of any kind
 * (/proc/PID/ns/net, a container's), entered with nsenter since `-n` takes
 * names only.
 */
function inNetns(tool: string, netns: string | undefined, args: string[]): string[] {
  if (!netns) return [tool, ...args];
  if (netns.includes('/')) return ['nsenter', `--net=${netns}`, tool, ...args];
  return [tool, '-n', netns, ...args];
}

/** Runs `ip [-n netns] ARGS...`; resolves with stdout, rejects with ip's own one-line complaint. */
export function ip(args: string[], netns?: string): Promise<string> {
  const argv = netns ? ['-n', netns, ...args] : args;
  return new Promise((resolve, reject) => {
    const [bin, ...rest] = inMachineMounts(inNetns('ip', netns, args));
    execFile(bin!, rest, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new IpError(`ip ${argv.join(' ')}: ${firstLine(stderr) || err.message}`));
      else resolve(stdout);
    });
  });
}

/** Reads, then writes, a sysctl of namespace file `netns` (entered with nsenter); resolves with what it was. */
export function swapSysctlIn(netns: string, key: string, value: string): Promise<string> {
  const file = `/proc/sys/${key.replace(/\./g, '/')}`;
  return new Promise((resolve, reject) => {
    const [bin, ...rest] = inMachineMounts(['nsenter', `--net=${netns}`, 'sh', '-c', 'cat "$1" && echo "$2" > "$1"', 'sh', file, value]);
    execFile(bin!, rest, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new IpError(`${key} in ${netns}: ${firstLine(stderr) || err.message}`));
      else resolve(stdout.trim());
    });
  });
}

/** Runs `tc [-n netns] ARGS...` (iproute2's traffic control); rejects with tc's own one-line complaint. */
export function tc(args: string[], netns?: string): Promise<string> {
  const argv = netns ? ['-n', netns, ...args] : args;
  return new Promise((resolve, reject) => {
    const [bin, ...rest] = inMachineMounts(inNetns('tc', netns, args));
    execFile(bin!, rest, { encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new IpError(`tc ${argv.join(' ')}: ${firstLine(stderr) || err.message}`));
      else resolve(stdout);
    });
  });
}

/**
 * A multi-queue TUN gets 256 transmit queues, and the kernel gives every one
 * a default qdisc with rings of txqueuelen entries when the interface comes
 * up: about 50 MB per interface at vipnat's txqueuelen. A TUN never holds
 * packets back (it drops when a queue's ring is full), so a qdisc buys
 * nothing: the interface gets none (`noqueue`). Call it before bringing the
 * interface up, in the namespace where it will stay (moving it resets it).
 */
export function noQueueDiscipline(dev: string, netns?: string): Promise<string> {
  return tc(['qdisc', 'replace', 'dev', dev, 'root', 'noqueue'], netns);
}

/**
 * Runs many ip commands in one process (`ip -batch -`), one per line, which is
 * far cheaper than a process per step. Stops at the first failing line.
 */
export function ipBatch(lines: string[], netns?: string): Promise<void> {
  if (lines.length === 0) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const [bin, ...rest] = inMachineMounts(inNetns('ip', netns, ['-batch', '-']));
    const child = spawn(bin!, rest, { stdio: ['pipe', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    child.on('error', (e) => reject(new IpError(`ip -batch: ${e.message}`)));
    child.on('close', (code) => {
      if (code === 0) resolve();
      else reject(new IpError(`ip${netns ? ` -n ${netns}` : ''} -batch: ${firstLine(stderr) || `exit status ${code}`}`));
    });
    child.stdin.end(lines.join('\n') + '\n');
  });
}
