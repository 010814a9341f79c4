/**
 * `credbroker serve` as a benchmark starts it: a child process (the built `dist/cli.js` by
 * default, as production runs it), ready once its API port answers grpc.health.v1 SERVING.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { checkHealth } from '../../src/cli/healthcheck.js';
import { freePort } from './net.js';
import { spawnNode, type Child, type SpawnOptions } from './processes.js';

export interface BenchBroker {
  readonly address: string;
  readonly pid: number;
  readonly child: Child;
  stop(): Promise<void>;
}

/** Resolves once `address` reports credbroker.v1.CredentialBroker SERVING; rejects after 60 s. */
export async function waitServing(address: string, child: Child): Promise<void> {
  const until = Date.now() + 60_000;
  for (;;) {
    if (child.proc.exitCode !== null) throw new Error(`broker exited: ${child.stderr()}`);
    try {
      if (
        (await checkHealth({ address, service: 'credbroker.v1.CredentialBroker', timeoutMs: 1000 })) ===
        'SERVING'
      )
        return;
    } catch {
      // not listening yet
    }
    if (Date.now() > until) throw new Error(`broker at ${address} not SERVING after 60 s: ${child.stderr()}`);
    await sleep(200);
  }
}

/**
 * Starts `<cli> serve` with `env` (only PATH, HOME and NODE_ENV besides) and waits until it serves.
 * CREDBROKER_LISTEN defaults to a free loopback port.
 */
export async function startBroker(
  cli: string,
  env: Readonly<Record<string, string>>,
  options: SpawnOptions = {},
): Promise<BenchBroker> {
  const address = env.CREDBROKER_LISTEN ?? `127.0.0.1:${await freePort()}`;
  const child = spawnNode(cli, ['serve'], { ...env, CREDBROKER_LISTEN: address }, options);
  try {
    await waitServing(address, child);
  } catch (err) {
    await child.stop();
    throw err;
  }
  return { address, pid: child.proc.pid!, child, stop: () => child.stop() };
}
