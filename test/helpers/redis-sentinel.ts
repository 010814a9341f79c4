/**
 * A real Redis Sentinel for tests: `redis-server --sentinel` on a free loopback port, monitoring
 * one master as `credbroker` (quorum 1). `stop()` kills it and removes its directory.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './ports.js';
import { waitForPort } from './redis.js';

export interface RedisSentinel {
  /** host:port, for CREDBROKER_REDIS_SENTINELS. */
  readonly address: string;
  stop(): Promise<void>;
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
  return {
    address: `127.0.0.1:${port}`,
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
