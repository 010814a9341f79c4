/**
 * A real redis-server for tests, on a free loopback port, with no persistence. Stopped and
 * started again on the same port to test outages; always killed by `stop()`.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, waitForPort } from '../../bench/lib/net.js';

export { waitForPort };

export class RedisUnavailableError extends Error {}

/** Throws a clear error when redis-server is not on PATH. */
export function requireRedisServer(): void {
  const probe = spawnSync('redis-server', ['--version'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    throw new RedisUnavailableError(
      'redis-server is not on PATH: the integration tests need a real Redis (apt-get install -y redis-server)',
    );
  }
}

export interface RedisServer {
  readonly port: number;
  readonly url: string;
  /** Kills the server (SIGKILL: an outage, not a clean shutdown). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
}

const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startRedis(extraArgs: readonly string[] = []): Promise<RedisServer> {
  requireRedisServer();
  const port = await freePort();
  let child: ChildProcess | undefined;
  const start = async () => {
    // Its own working directory: a replica writes the RDB of its initial sync there (even with
    // --save ''), which would otherwise land in the checkout as dump.rdb.
    const dir = mkdtempSync(join(tmpdir(), 'credbroker-redis-'));
    const proc = spawn(
      'redis-server',
      [
        '--dir',
        dir,
        '--port',
        String(port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'yes',
        ...extraArgs,
      ],
      { stdio: 'ignore' },
    );
    running.add(proc);
    proc.once('exit', () => {
      running.delete(proc);
      rmSync(dir, { recursive: true, force: true });
    });
    child = proc;
    await waitForPort(port);
  };
  const stop = async () => {
    const proc = child;
    child = undefined;
    if (!proc || proc.exitCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGKILL');
    await exited;
  };
  await start();
  return { port, url: `redis://127.0.0.1:${port}`, stop, start };
}
