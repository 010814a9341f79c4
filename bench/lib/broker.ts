/**
 * `credbroker serve` as a benchmark starts it: a child process (the built `dist/cli.js` by
 * default, as production runs it), ready once its API port answers grpc.health.v1 SERVING.
 */
import { writeFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { checkHealth } from '../../src/cli/healthcheck.js';
import { freePort } from './net.js';
import { spawnNode, type Child, type SpawnOptions } from './processes.js';

/** The one provider of the bench configuration. */
export const BENCH_PROVIDER = 'corp';

/**
 * Writes the brokers' production-like configuration to `file` (Redis store with storage on,
 * key `bench1`, info-level call logs) with BENCH_PROVIDER, whose endpoints are under `idpUrl`;
 * returns `file`.
 */
export function writeBrokerConfig(file: string, redisUrl: string, idpUrl: string): string {
  writeFileSync(
    file,
    `health_listen: ''
log_level: info
store:
  subject_tokens: true
  redis_url: ${redisUrl}
  active_key: bench1
providers:
  - id: ${BENCH_PROVIDER}
    authorization_endpoint: ${idpUrl}/authorize
    token_endpoint: ${idpUrl}/token
    client_id: bench
    client_secret: bench-secret
    redirect_uris: [https://app.example.com/cb]
    allow_insecure_http: true
`,
  );
  return file;
}

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
