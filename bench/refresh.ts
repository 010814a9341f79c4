/**
 * Refresh under a storm, across real broker processes (`npx tsx bench/refresh.ts`):
 *
 * - refresh amplification: refreshes counted at the IdP ÷ users whose token needed one (goal
 *   1.00: exactly one refresh per user, however many callers and replicas);
 * - double spends: rotated refresh tokens presented again (goal 0);
 * - waiter added latency: for each user, how long after the first caller got the new token the
 *   other callers got it (single-flight waiters in the same process and lock waiters on other
 *   replicas woken by the release notification) — next to the same spread for an identical
 *   burst served from the store, which is what a burst costs without any refresh; and how long
 *   after the first replica each other replica's first caller got the token (the lock-release
 *   notification, the re-read and one response).
 *
 * Setup: one redis-server, REPLICAS `credbroker serve` processes (the built dist/cli.js) sharing it, and a counting OAuth
 * token endpoint with a fixed latency (bench/token-endpoint.ts) that rotates refresh tokens.
 * Records are seeded through the real Redis store with an access token inside the refresh skew.
 * Not a timed test: it prints figures for docs/PERFORMANCE.md.
 */
import { randomBytes } from 'node:crypto';
import { credentials, Metadata, type ServiceError } from '@grpc/grpc-js';
import { loadConfig } from '../src/config/load.js';
import { CredentialBrokerClient } from '../src/gen/credbroker/v1/broker.js';
import { ErrorInfo } from '../src/gen/google/rpc/error_details.js';
import { Status } from '../src/gen/google/rpc/status.js';
import { createLogger } from '../src/logger.js';
import { createStore, loadKeyRing } from '../src/store/index.js';
import { startBroker, type BenchBroker } from './lib/broker.js';
import { buildDist } from './lib/build.js';
import { startRedis } from './lib/redis.js';
import { startTokenEndpoint } from './token-endpoint.js';

const REPLICAS = 4;
const PROVIDER = 'corp';
const flag = (name: string) =>
  process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(`--${name}=`.length);
/** refresh.lock_lease (production default 5 s); `--lease=20000` to see missed notifications. */
const LEASE_MS = Number(flag('lease') ?? 5000);

interface Scenario {
  readonly name: string;
  readonly users: number;
  readonly callsPerUser: number;
  readonly idpLatencyMs: number;
}

const scenarios: Scenario[] = [
  { name: 'one user, 500 callers', users: 1, callsPerUser: 500, idpLatencyMs: 100 },
  {
    name: 'one user, 500 callers, IdP slower than 3 leases',
    users: 1,
    callsPerUser: 500,
    idpLatencyMs: 3 * LEASE_MS + 500,
  },
  { name: '100 users × 20 callers', users: 100, callsPerUser: 20, idpLatencyMs: 100 },
];

function percentile(sorted: readonly number[], p: number): number {
  return sorted.length === 0
    ? Number.NaN
    : sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

/** store.command_timeout for the brokers (production default 1s); `--command-timeout=5s` to override. */
const COMMAND_TIMEOUT = flag('command-timeout') ?? '1s';

function reasonOf(err: unknown): string {
  const e = err as ServiceError;
  const raw = e.metadata?.get('grpc-status-details-bin')[0];
  if (!(raw instanceof Buffer)) return `${e.code} ${e.details}`;
  const info = Status.decode(raw).details.find((d) => d.typeUrl.endsWith('ErrorInfo'));
  if (!info) return `${e.code}`;
  const decoded = ErrorInfo.decode(info.value);
  return `${decoded.reason}${decoded.metadata.cause ? `/${decoded.metadata.cause}` : ''}`;
}

/** Completion times of a burst, relative to its first completion, sorted. */
function spread(times: readonly number[]): number[] {
  const first = Math.min(...times);
  return times.map((t) => t - first).sort((a, b) => a - b);
}

function getToken(client: CredentialBrokerClient, userId: string): Promise<{ token: string; at: number }> {
  return new Promise((resolve, reject) =>
    client.getValidSubjectToken(
      { userId, provider: PROVIDER, minValidFor: { seconds: 60, nanos: 0 } },
      new Metadata(),
      { deadline: Date.now() + 30_000 },
      (err: ServiceError | null, res) =>
        err ? reject(err) : resolve({ token: res.accessToken, at: performance.now() }),
    ),
  );
}

async function run(scenario: Scenario): Promise<Record<string, number | string>> {
  const redis = await startRedis();
  const idp = await startTokenEndpoint({ latencyMs: scenario.idpLatencyMs, accessTokenLength: 900 });
  const env: Record<string, string> = {
    CREDBROKER_HEALTH_LISTEN: '',
    CREDBROKER_METRICS_LISTEN: '',
    CREDBROKER_LOG_LEVEL: 'info',
    CREDBROKER_STORE_SUBJECT_TOKENS: 'true',
    CREDBROKER_REDIS_URL: redis.url,
    CREDBROKER_KEYS: `bench1:${randomBytes(32).toString('base64')}`,
    CREDBROKER_REFRESH_LOCK_LEASE: `${LEASE_MS}ms`,
    CREDBROKER_STORE_COMMAND_TIMEOUT: COMMAND_TIMEOUT,
    CREDBROKER_PROVIDER_CORP_AUTHORIZATION_ENDPOINT: `${idp.url}/authorize`,
    CREDBROKER_PROVIDER_CORP_TOKEN_ENDPOINT: `${idp.url}/token`,
    CREDBROKER_PROVIDER_CORP_CLIENT_ID: 'bench',
    CREDBROKER_PROVIDER_CORP_CLIENT_SECRET: 'bench-secret',
    CREDBROKER_PROVIDER_CORP_REDIRECT_URIS: 'https://app.example.com/cb',
    CREDBROKER_PROVIDER_CORP_ALLOW_INSECURE_HTTP: 'true',
    CREDBROKER_PROVIDER_CORP_TIMEOUT: `${scenario.idpLatencyMs + 5000}ms`,
  };
  const config = loadConfig({ env });
  const store = createStore(config.store, loadKeyRing(config.store), createLogger({ level: 'warn' }));
  const brokers: BenchBroker[] = [];
  try {
    const now = Date.now();
    const users = Array.from({ length: scenario.users }, (_, i) => `storm-${i}@example.com`);
    await Promise.all(
      users.map((userId) =>
        store.putToken(
          { provider: PROVIDER, userId },
          {
            accessToken: `expiring-${userId}`,
            refreshToken: idp.issueRefreshToken(userId),
            tokenType: 'Bearer',
            expiresAt: now + 30_000, // inside the 60 s skew: must be refreshed before it is served
            refreshExpiresAt: undefined,
            scopes: ['openid'],
            idToken: undefined,
            obtainedVia: 'login',
            updatedAt: now,
            subject: userId,
          },
          3600_000,
        ),
      ),
    );
    brokers.push(...(await Promise.all(Array.from({ length: REPLICAS }, () => startBroker(cli, env)))));
    const clients = brokers.map((b) => new CredentialBrokerClient(b.address, credentials.createInsecure()));
    // Connect every channel first so connection setup is not measured as waiting.
    await Promise.all(
      clients.map(
        (c) =>
          new Promise<void>((resolve, reject) =>
            c.waitForReady(Date.now() + 5000, (e) => (e ? reject(e) : resolve())),
          ),
      ),
    );
    const burst = () =>
      Promise.allSettled(
        users.flatMap((userId) =>
          Array.from({ length: scenario.callsPerUser }, (_, i) =>
            getToken(clients[i % clients.length]!, userId).then((r) => ({
              ...r,
              userId,
              replica: i % clients.length,
            })),
          ),
        ),
      );
    const started = performance.now();
    const results = await burst();
    const wallMs = performance.now() - started;
    const ok = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    const reasons: Record<string, number> = {};
    for (const r of results)
      if (r.status === 'rejected') reasons[reasonOf(r.reason)] = (reasons[reasonOf(r.reason)] ?? 0) + 1;
    // The same burst again, now served from the store: how far apart completions land anyway.
    const baseline = await burst();
    const added: number[] = [];
    const spreadStored: number[] = [];
    /** Per user, when each other replica's first caller got the token after the first replica's. */
    const replicaWake: number[] = [];
    let usersWithOneToken = 0;
    for (const userId of users) {
      const mine = ok.filter((r) => r.userId === userId);
      if (new Set(mine.map((r) => r.token)).size === 1 && mine[0]?.token === idp.lastAccessToken(userId))
        usersWithOneToken += 1;
      added.push(...spread(mine.map((r) => r.at)).slice(1));
      const firstByReplica = brokers.map((_, k) =>
        Math.min(...mine.filter((r) => r.replica === k).map((r) => r.at)),
      );
      replicaWake.push(...spread(firstByReplica).slice(1));
      const again = baseline.flatMap((r) =>
        r.status === 'fulfilled' && r.value.userId === userId ? [r.value.at] : [],
      );
      spreadStored.push(...spread(again).slice(1));
    }
    added.sort((a, b) => a - b);
    replicaWake.sort((a, b) => a - b);
    spreadStored.sort((a, b) => a - b);
    const refreshes = [...idp.refreshes.values()].reduce((a, b) => a + b, 0);
    for (const c of clients) c.close();
    return {
      scenario: scenario.name,
      replicas: REPLICAS,
      calls: results.length,
      failed: results.length - ok.length,
      failures: JSON.stringify(reasons),
      idpRefreshes: refreshes,
      amplification: Number((refreshes / scenario.users).toFixed(2)),
      doubleSpends: idp.doubleSpends(),
      usersWithOneToken: `${usersWithOneToken}/${scenario.users}`,
      waiterAddedP50Ms: Number(percentile(added, 0.5).toFixed(1)),
      waiterAddedP99Ms: Number(percentile(added, 0.99).toFixed(1)),
      waiterAddedMaxMs: Number((added[added.length - 1] ?? Number.NaN).toFixed(1)),
      otherReplicasFirstP50Ms: Number(percentile(replicaWake, 0.5).toFixed(1)),
      otherReplicasFirstP99Ms: Number(percentile(replicaWake, 0.99).toFixed(1)),
      storedSpreadP50Ms: Number(percentile(spreadStored, 0.5).toFixed(1)),
      storedSpreadP99Ms: Number(percentile(spreadStored, 0.99).toFixed(1)),
      idpLatencyMs: scenario.idpLatencyMs,
      wallMs: Math.round(wallMs),
    };
  } finally {
    await Promise.all(brokers.map((b) => b.stop()));
    await store.close();
    await idp.close();
    await redis.stop();
  }
}

const cli = buildDist();
const rows = [];
/** `--scenario=3` runs only the third. */
const only = flag('scenario');
for (const scenario of only === undefined ? scenarios : [scenarios[Number(only) - 1]!]) {
  const row = await run(scenario);
  console.log(JSON.stringify(row));
  rows.push(row);
}
console.table(rows);
