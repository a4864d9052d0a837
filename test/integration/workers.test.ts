// Several dataplane workers: multi-queue TUNs spread a session's flows over threads that share one translator state.
import { Worker } from 'node:worker_threads';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { BACKEND, isRoot, Lab, listening, parseJson, ROOT, sweepLabs } from './lab.js';

const POOL = '198.19.7.0/28';
const ECHO = `${ROOT}test/fixtures/tcp-echo.mjs`;
const PARALLEL = `${ROOT}test/fixtures/parallel-echo.mjs`;

describe('the dataplane lock (dist/dataplane/lock.js) across real threads', () => {
  it('keeps a read-modify-write of shared memory whole when 3 threads race on it', async () => {
    const memory = new SharedArrayBuffer(8);
    const rounds = 50_000;
    // Each thread reads the counter, spins a little (to widen the window), writes it back plus one.
    const code = `
      const { workerData, parentPort } = require('node:worker_threads');
      import(workerData.lock).then(({ Mutex }) => {
        const lockWord = new Int32Array(workerData.memory, 0, 1);
        const counter = new Int32Array(workerData.memory, 4, 1);
        const m = new Mutex(lockWord);
        for (let i = 0; i < workerData.rounds; i++) {
          m.lock();
          const v = counter[0];
          for (let k = 0; k < 20; k++) Math.sqrt(k);
          counter[0] = v + 1;
          m.unlock();
        }
        parentPort.postMessage('done');
      });`;
    const threads = [0, 1, 2].map(
      () =>
        new Promise<void>((resolve, reject) => {
          const w = new Worker(code, { eval: true, workerData: { memory, rounds, lock: `${ROOT}dist/dataplane/lock.js` } });
          w.once('message', () => resolve());
          w.once('error', reject);
        }),
    );
    await Promise.all(threads);
    expect(new Int32Array(memory, 4, 1)[0]).toBe(3 * rounds);
    expect(new Int32Array(memory, 0, 1)[0]).toBe(0); // left unlocked
  });
});

describe.skipIf(!isRoot())('several dataplane workers', () => {
  let lab: Lab;
  beforeAll(() => sweepLabs());
  afterEach(() => lab?.down());
  afterAll(() => sweepLabs());

  it.each([
    { workers: 1, flags: [] as string[] },
    { workers: 2, flags: [] as string[] },
    { workers: 3, flags: ['--inner-address', '10.0.2.100'] },
  ])(
    '--workers $workers $flags: 32 connections out of one session echo every byte, spread over the workers',
    async ({ workers, flags }) => {
      lab = Lab.up();
      await listening(lab.spawn(lab.be, ['node', ECHO, '7200']));
      const run = lab.vipnat([
        'run',
        '--json',
        '--workers',
        String(workers),
        ...flags,
        '--pool',
        POOL,
        '--',
        'node',
        PARALLEL,
        BACKEND,
        '7200',
        '32',
        String(256 * 1024),
      ]);
      await run.done;
      const { summary, text } = parseJson(run);
      expect(text).toContain('echo ok 32');
      expect(summary.exitCode).toBe(0);
      const dp = summary.dataplane;
      expect(dp.workers).toBe(workers);
      expect(dp.writeErrors).toBe(0);
      // 32 flows hashed over the queues: every worker carries some (all on one
      // queue of 2 has odds of 2^-31).
      const per = Array.from({ length: workers }, (_, k) => dp[`worker${k}Packets`]!);
      for (const n of per) expect(n).toBeGreaterThan(0);
      expect(per.reduce((a, b) => a + b, 0)).toBe(dp.toUplink + dp.toSession + dp.reflected);
      // Every flow was made once, in the one table the workers share.
      expect(dp.flowsCreated).toBe(32);
    },
  );

  it('--workers 2: multi-queue TUNs carry no qdisc (the default one would cost ~50 MB of kernel memory per TUN)', async () => {
    lab = Lab.up();
    const run = lab.vipnat(['run', '--json', '--workers', '2', '--pool', POOL, '--', 'tc', 'qdisc', 'show', 'dev', 'eth0']);
    await run.done;
    const { summary, text } = parseJson(run);
    expect(summary.exitCode).toBe(0);
    expect(text).toMatch(/qdisc noqueue/);
  });

  it('--workers 2: 32 connections from the backend into one session echo every byte', async () => {
    lab = Lab.up();
    const run = lab.vipnat(['run', '--json', '--workers', '2', '--pool', POOL, '--', 'node', ECHO, '7300']);
    const [, vip] = await run.waitFor(/"vip":"([0-9.]+)"/);
    // Connect once the echo server listens: a refused try would make flows of its own.
    await run.waitFor(/^listening 7300$/);
    const r = lab.exec(lab.be, ['node', PARALLEL, vip!, '7300', '32', String(256 * 1024)]);
    expect(r.stdout + r.stderr).toContain('echo ok 32');
    run.child.kill('SIGTERM');
    await run.done;
    const dp = parseJson(run).summary.dataplane;
    expect(dp['worker0Packets']).toBeGreaterThan(0);
    expect(dp['worker1Packets']).toBeGreaterThan(0);
    expect(dp.flowsCreated).toBe(32);
    expect(dp.writeErrors).toBe(0);
  });
});
