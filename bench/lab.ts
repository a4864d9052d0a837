// The bench's lab (vnbench-PID-XXXX): gateway and backend, a client namespace per path that needs one, and the servers (iperf3, nginx) in the backend.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BACKEND, Lab, log, onCleanup, sh, sweepLabs, tcpListening, waitFor, type Child } from '../test/lab/index.js';

export const PREFIX = 'vnbench-';
export const IPERF_PORT = 5201;
export const HTTP_PORT = 8080;
export const URL_TINY = `http://${BACKEND}:${HTTP_PORT}/tiny`;
/** vipnat's transmit queue for its TUNs (TXQUEUELEN in src/session/session.ts): given to the reference's and pasta's too. */
export const TXQUEUELEN = '5000';

/** Many short connections from one namespace: reuse TIME-WAIT ports and use the whole port range. */
export function clientSysctls(ns: string): void {
  sh('ip', ['netns', 'exec', ns, 'sysctl', '-qw', 'net.ipv4.tcp_tw_reuse=1', 'net.ipv4.ip_local_port_range=1024 65535']);
}

/** nginx as the bench runs it: 2 workers, in the foreground, its files in `tmp` (which holds /tiny), listening on `listen`. */
export function nginxConf(tmp: string, listen: string, name = 'nginx'): string {
  const t = path.join(tmp, 'nginx-tmp');
  return `daemon off;
worker_processes 2;
pid ${tmp}/${name}.pid;
error_log ${tmp}/${name}-error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  keepalive_requests 100000000;
  keepalive_timeout 60s;
  client_body_temp_path ${t}; proxy_temp_path ${t}; fastcgi_temp_path ${t}; uwsgi_temp_path ${t}; scgi_temp_path ${t};
  server {
    listen ${listen} backlog=4096 reuseport;
    root ${tmp};
    location / { }
  }
}
`;
}

export class BenchLab {
  /** Client namespaces: the kernel path's (veth), slirp4netns's, pasta's and the reference forwarder's. */
  readonly k: string;
  readonly s: string;
  readonly p: string;
  readonly r: string;
  /** A temporary folder for nginx (its configuration, root and temporary files). */
  readonly tmp: string;
  private iperf: Child | null = null;
  /** `ip netns exec` execs nginx: this is the master's pid. */
  private nginx: Child | null = null;

  private constructor(readonly lab: Lab) {
    this.k = lab.addKernelClient(1500);
    this.s = lab.addBare('s');
    this.p = lab.addBare('p');
    this.r = lab.addBare('r');
    this.tmp = fs.mkdtempSync(path.join(os.tmpdir(), PREFIX));
    fs.chmodSync(this.tmp, 0o755); // nginx's workers run as nobody
    onCleanup(() => fs.rmSync(this.tmp, { recursive: true, force: true }));
  }

  get gw(): string {
    return this.lab.gw;
  }

  get be(): string {
    return this.lab.be;
  }

  get name(): string {
    return this.lab.name;
  }

  /** Builds the lab at MTU 1500; first removes the bench labs of runs that died (never those of runs still going). */
  static up(): BenchLab {
    sweepLabs(PREFIX);
    const b = new BenchLab(Lab.up({ prefix: PREFIX, mtu: 1500 }));
    for (const n of [b.k, b.s, b.p, b.r, b.gw]) clientSysctls(n);
    sh('ip', ['netns', 'exec', b.be, 'sysctl', '-qw', 'net.core.somaxconn=4096', 'net.ipv4.tcp_max_syn_backlog=4096']);
    log(
      `lab ${b.name}: gateway ${b.gw}, backend ${b.be} (${BACKEND}), clients: kernel ${b.k}, slirp4netns ${b.s}, pasta ${b.p}, reference ${b.r}`,
    );
    return b;
  }

  async startIperf(): Promise<void> {
    this.iperf = this.lab.start('ip', ['netns', 'exec', this.be, 'iperf3', '-s', '-p', String(IPERF_PORT)], { stdout: 'ignore' });
    await waitFor('iperf3 server', () => tcpListening(this.be, IPERF_PORT));
  }

  /** A failed iperf3 client can leave the server stuck in its test: start a fresh one. */
  async restartIperf(): Promise<void> {
    if (this.iperf) await this.iperf.stop('SIGKILL', 1000);
    await this.startIperf();
  }

  /** iperf3 and nginx (2 workers, a 3-byte file at /tiny) in the backend. */
  async serversUp(): Promise<void> {
    await this.startIperf();
    const tmp = this.tmp;
    const t = path.join(tmp, 'nginx-tmp');
    fs.writeFileSync(path.join(tmp, 'tiny'), 'ok\n');
    fs.mkdirSync(t);
    fs.writeFileSync(path.join(tmp, 'nginx.conf'), nginxConf(tmp, `${BACKEND}:${HTTP_PORT}`));
    const argv = ['netns', 'exec', this.be, 'nginx', '-c', `${tmp}/nginx.conf`, '-p', tmp, '-e', `${tmp}/nginx-error.log`];
    this.nginx = this.lab.start('ip', argv, { stdout: 'ignore' });
    await waitFor('nginx', () => tcpListening(this.be, HTTP_PORT));
  }

  /** Our nginx's worker processes (children of the master we started). */
  nginxWorkers(): number[] {
    const master = this.nginx?.pid;
    if (!master) return [];
    const out: number[] = [];
    for (const d of fs.readdirSync('/proc')) {
      if (!/^\d+$/.test(d)) continue;
      try {
        const st = fs.readFileSync(`/proc/${d}/stat`, 'utf8');
        if (Number(st.slice(st.lastIndexOf(')') + 2).split(' ')[1]) === master) out.push(Number(d));
      } catch {
        // gone meanwhile
      }
    }
    return out;
  }
}
