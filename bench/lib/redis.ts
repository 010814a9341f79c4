/**
 * A throwaway redis-server for a benchmark: loopback, a free port, no persistence, killed by
 * `stop()` or when the benchmark exits. (Tests have their own, with restarts: test/helpers/redis.ts.)
 */
import { spawn } from 'node:child_process';
import { freePort, waitForPort } from './net.js';

export interface BenchRedis {
  readonly port: number;
  readonly url: string;
  readonly pid: number;
  stop(): Promise<void>;
}

export async function startRedis(): Promise<BenchRedis> {
  const port = await freePort();
  const proc = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: 'ignore' },
  );
  const exited = new Promise<void>((resolve) => proc.once('exit', () => resolve()));
  process.once('exit', () => proc.kill('SIGKILL'));
  await waitForPort(port);
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    pid: proc.pid!,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
      await exited;
    },
  };
}
