/**
 * A real Redis Sentinel for tests: `redis-server --sentinel` on a free loopback port, monitoring
 * one master as `credbroker` (quorum 1). `stop()` kills it and removes its directory.
 * With a replica of the master running (startRedis(['--replicaof', …])), `failover()` makes
 * Sentinel promote it, as an operator's SENTINEL FAILOVER would.
 */
import { spawn } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { waitForPort } from './redis.js';

export interface RedisSentinel {
  /** host:port, for CREDBROKER_REDIS_SENTINELS. */
  readonly address: string;
  /** The port of the master Sentinel currently names. */
  masterPort(): Promise<number>;
  /**
   * SENTINEL FAILOVER, retried while Sentinel knows no replica to promote yet (it learns them from
   * the master's INFO); resolves once Sentinel names another master. @returns its port
   */
  failover(timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

async function withSentinel<T>(port: number, use: (sentinel: Redis) => Promise<T>): Promise<T> {
  const sentinel = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 1 });
  sentinel.on('error', () => undefined);
  try {
    await sentinel.connect();
    return await use(sentinel);
  } finally {
    sentinel.disconnect();
  }
}

/** A real Sentinel (`redis-server --sentinel`) monitoring `masterPort` as `credbroker`. */
export async function startSentinel(masterPort: number): Promise<RedisSentinel> {
  const dir = mkdtempSync(join(tmpdir(), 'credbroker-sentinel-'));
  const port = await freePort();
  const conf = join(dir, 'sentinel.conf');
  writeFileSync(
    conf,
    [
      `port ${port}`,
      'bind 127.0.0.1',
      `dir ${dir}`,
      `sentinel monitor credbroker 127.0.0.1 ${masterPort} 1`,
      'sentinel down-after-milliseconds credbroker 5000',
      '',
    ].join('\n'),
  );
  const proc = spawn('redis-server', [conf, '--sentinel'], { stdio: 'ignore' });
  const kill = () => proc.kill('SIGKILL');
  process.once('exit', kill);
  await waitForPort(port);
  const currentMaster = (): Promise<number> =>
    withSentinel(port, async (sentinel) => {
      const addr = (await sentinel.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', 'credbroker')) as string[];
      return Number(addr[1]);
    });
  return {
    address: `127.0.0.1:${port}`,
    masterPort: currentMaster,
    failover: async (timeoutMs = 30_000) => {
      const until = Date.now() + timeoutMs;
      const before = await currentMaster();
      for (;;) {
        const started = await withSentinel(port, (sentinel) =>
          sentinel.call('SENTINEL', 'FAILOVER', 'credbroker').then(
            () => true,
            (err: Error) => {
              // NOGOODSLAVE: no replica known or fit yet; INPROG: one already running.
              if (/NOGOODSLAVE|INPROG/.test(err.message)) return false;
              throw err;
            },
          ),
        );
        if (started) break;
        if (Date.now() > until)
          throw new Error(`Sentinel found no replica to promote within ${timeoutMs} ms`);
        await sleep(200);
      }
      for (;;) {
        const now = await currentMaster();
        if (now !== before) return now;
        if (Date.now() > until) throw new Error(`Sentinel did not switch masters within ${timeoutMs} ms`);
        await sleep(50);
      }
    },
    stop: async () => {
      process.off('exit', kill);
      if (proc.exitCode === null && proc.signalCode === null) {
        const exited = new Promise((resolve) => proc.once('exit', resolve));
        proc.kill('SIGKILL');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
