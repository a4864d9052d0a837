// The benchmark harness (`make bench`): vipnat against the kernel and the reference forwarder (the limits) and slirp4netns and pasta (the peers) on one lab, micro-benchmarks, scale.
//
// Paths, each from a client namespace to a backend namespace (198.18.0.2) through the lab's gateway
// namespace (bench/paths/): kernel (a veth pair routed by the gateway's kernel), reference (a C
// program copying packets between two TUNs as vipnat does, without translating), vipnat in address
// and NAT mode, slirp4netns and pasta. Loads (bench/measures/): iperf3 (TCP bulk both ways, 1 and 4
// streams, MTU 1500 and 65520; UDP packets/s), wrk against nginx (requests/s on one connection, new
// connections/s); the packet path without syscalls (bench/packet-path.ts); 1000 sessions. Every
// namespace is named vnbench-PID-*, and the lab has no link to the machine's own network.
// Options: bench/options.ts (node dist-tools/bench/run.js --help).
import fs from 'node:fs';
import { asDriver, cleanup, log, ROOT } from '../test/lab/index.js';
import { BenchLab } from './lab.js';
import { microBenchmarks } from './measures/micro.js';
import { controlBenchmark } from './measures/control.js';
import { loopbackBenchmark } from './measures/loopback.js';
import { dhcpBenchmark } from './measures/dhcp.js';
import { scaleBenchmark } from './measures/scale.js';
import { network } from './network.js';
import { parseOptions } from './options.js';
import { save } from './readme.js';
import { commit, figuresTable, machine, otherTable, ratiosTable, reportMarkdown, text, type RunInfo } from './report.js';
import { newResults } from './results.js';
import { observeBenchmark } from './measures/observe.js';

async function main(): Promise<void> {
  const opts = parseOptions(process.argv.slice(2));
  if (process.getuid?.() !== 0) throw new Error('benchmarks need root (network namespaces): run `sudo make bench`');
  if (!fs.existsSync(`${ROOT}dist/cli/main.js`)) throw new Error('vipnat is not built: run `make build`');
  const date = new Date().toISOString();
  const args = process.argv.slice(2).map((a) => ` ${a}`);
  const info: RunInfo = {
    date,
    commit: commit(),
    machine: machine(),
    command: `node dist-tools/bench/run.js${args.join('')}`,
    options: opts,
  };
  log(`vipnat benchmarks — ${date}, commit ${info.commit}`);
  log(`${info.machine.cpu}, ${info.machine.cores} cores, Linux ${info.machine.kernel}, Node ${info.machine.node}`);
  const results = newResults();
  const ran = {
    network: opts.only.some((x) => x === 'tcp' || x === 'rr' || x === 'conn' || x === 'udp'),
    micro: opts.only.includes('micro'),
    scale: opts.only.includes('scale'),
    control: opts.only.includes('control'),
    loopback: opts.only.includes('loopback'),
    dhcp: opts.only.includes('dhcp'),
    observe: opts.only.includes('observe'),
  };
  const bench = ran.network || ran.scale || ran.control || ran.loopback || ran.observe ? BenchLab.up() : null;
  if (bench && ran.network) {
    await bench.serversUp();
    await network(bench, opts, results);
  }
  if (ran.micro) results.micro = await microBenchmarks(opts.quick);
  if (bench && ran.scale) results.scale = await scaleBenchmark(bench, opts);
  if (bench && ran.control) results.control = await controlBenchmark(bench, opts);
  if (bench && ran.loopback) results.loopback = await loopbackBenchmark(bench, opts);
  if (ran.dhcp) results.dhcp = await dhcpBenchmark(opts);
  if (bench && ran.observe) {
    if (!ran.network) await bench.serversUp();
    results.observe = await observeBenchmark(bench, opts);
  }

  log('');
  for (const t of [figuresTable(results), ratiosTable(results), otherTable(results, opts)]) if (t.rows.length) log(`${text(t)}\n`);
  const md = reportMarkdown(info, results, ran);
  if (opts.save) save(info, results, md);
  else log('(partial or --quick run: results not saved; --save to save them)');
}

asDriver('bench', 60_000);
try {
  await main();
} catch (e) {
  process.stderr.write(`bench: ${(e as Error).message}\n`);
  process.exitCode = 1;
} finally {
  cleanup(); // the servers and paths still up, the lab, the temporary files
}
