/**
 * The refresh storm (docs/architecture.md §4's required outcome): many concurrent GetValidSubjectToken calls
 * for users whose token needs a refresh, spread over four real `credbroker serve` processes that
 * share one redis-server and one oidc-provider, cause exactly one refresh per user at the
 * provider — also when the provider takes three lock leases to answer — and every caller of a
 * user receives the same new access token.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServiceError } from '@grpc/grpc-js';
import { TokenSource, type GetValidSubjectTokenResponse } from '../../src/gen/credbroker/v1/broker.js';
import { loadConfig } from '../../src/config/load.js';
import { createLogger } from '../../src/logger.js';
import { createStore, loadKeyRing } from '../../src/store/index.js';
import type { TokenStore } from '../../src/core/token-store.js';
import {
  brokerEnv,
  loginThrough,
  startBrokerProcess,
  type BrokerProcess,
} from '../helpers/broker-process.js';
import { call, decodeError } from '../helpers/grpc.js';
import { startOidcProvider, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const REPLICAS = 4;
/**
 * The production default. A lease only protects the IdP while its holder's event loop keeps
 * renewing it: on a loaded two-core CI machine a broker serving hundreds of calls stalls for
 * seconds, and a holder stalled past its lease lets a second refresher in. refresh.test.ts
 * covers a short lease on a quieter process.
 */
const LEASE_MS = 5000;

describe('Refresh storm over four broker processes', function () {
  this.timeout(180_000);
  let redis: RedisServer;
  let provider: TestOidcProvider;
  let brokers: BrokerProcess[] = [];
  let store: TokenStore;

  const refreshes = () => provider.grantsServed('refresh_token');
  /**
   * `calls` concurrent calls for each user, round-robin over the brokers.
   * @throws naming how many calls failed and why, when any did
   */
  const storm = async (users: readonly string[], calls: number) => {
    const settled = await Promise.allSettled(
      users.flatMap((userId) =>
        Array.from({ length: calls }, (_, i) => {
          const broker = brokers[i % brokers.length]!;
          return call(
            broker.client,
            broker.client.getValidSubjectToken,
            { userId, provider: 'corp', minValidFor: { seconds: 60, nanos: 0 } },
            { deadlineMs: 30_000 },
          ).then((res: GetValidSubjectTokenResponse) => ({ userId, res }));
        }),
      ),
    );
    const failures = new Map<string, number>();
    for (const s of settled) {
      if (s.status === 'fulfilled') continue;
      const err = s.reason as ServiceError;
      const why = err.metadata?.get('grpc-status-details-bin').length
        ? `${decodeError(err).errorInfo.reason}/${decodeError(err).errorInfo.metadata.cause ?? ''}`
        : String(err.details);
      failures.set(why, (failures.get(why) ?? 0) + 1);
    }
    assert.deepEqual(Object.fromEntries(failures), {}, 'calls failed');
    return settled.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  };
  const stored = (userId: string) => store.getToken({ provider: 'corp', userId });

  before(async () => {
    [redis, provider] = await Promise.all([startRedis(), startOidcProvider()]);
    const env = brokerEnv({
      redisUrl: redis.url,
      provider,
      keys: `k1:${randomBytes(32).toString('base64')}`,
      lockLease: `${LEASE_MS}ms`,
      // 500 calls land on four processes at once, on a shared CI machine: a stalled event loop
      // must not turn a prompt Redis answer into STORE_UNAVAILABLE (the default is 1 s).
      extra: {
        CREDBROKER_LOG_LEVEL: 'warn',
        // The same stalls turn prompt Redis answers into STORE_UNAVAILABLE at the 1 s default.
        CREDBROKER_STORE_COMMAND_TIMEOUT: '5s',
        // Longer than the 3-lease answer below: the lease, not the IdP timeout, is under test.
        CREDBROKER_PROVIDER_CORP_TIMEOUT: '30s',
      },
    });
    brokers = await Promise.all(Array.from({ length: REPLICAS }, () => startBrokerProcess(env)));
    const config = loadConfig({ env });
    store = createStore(config.store, loadKeyRing(config.store), createLogger({ level: 'silent' }));
    // Wait until every channel is connected, so the storm measures the broker, not handshakes.
    await Promise.all(
      brokers.map(
        (b) =>
          new Promise<void>((resolve, reject) =>
            b.client.waitForReady(Date.now() + 10_000, (err) => (err ? reject(err) : resolve())),
          ),
      ),
    );
  });

  after(async () => {
    await store?.close();
    await Promise.all(brokers.map((b) => b.stop()));
    await provider?.close();
    await redis?.stop();
  });

  /** Logs users in with access tokens living `ttlSeconds`, twenty at a time. */
  async function login(userIds: readonly string[], ttlSeconds = 3600): Promise<void> {
    provider.setAccessTokenTtl(ttlSeconds);
    try {
      for (let i = 0; i < userIds.length; i += 10) {
        await Promise.all(
          userIds
            .slice(i, i + 10)
            .map((userId, j) => loginThrough(brokers[j % brokers.length]!.client, { userId })),
        );
      }
    } finally {
      provider.setAccessTokenTtl(3600);
    }
  }

  it('refreshes once for 500 concurrent callers of one expired user, and all get the same token', async () => {
    await login(['storm-expired', 'storm-slow'], 1);
    await sleep(1100);
    const before = refreshes();
    const results = await storm(['storm-expired'], 500);
    assert.equal(refreshes() - before, 1);
    const tokens = new Set(results.map((r) => r.res.accessToken));
    assert.equal(tokens.size, 1);
    assert.equal([...tokens][0], (await stored('storm-expired'))?.accessToken);
    // Callers that arrive after the refresh landed are served from the store.
    assert.ok(results.some((r) => r.res.source === TokenSource.TOKEN_SOURCE_REFRESHED));
    assert.ok(results.every((r) => r.res.expiresAt!.getTime() > Date.now() + 50 * 60_000));
  });

  it('still refreshes once when the provider takes three lock leases to answer', async () => {
    const before = refreshes();
    provider.setTokenDelay(3 * LEASE_MS);
    let results;
    try {
      results = await storm(['storm-slow'], 500);
    } finally {
      provider.setTokenDelay(0);
    }
    assert.equal(refreshes() - before, 1);
    const tokens = new Set(results.map((r) => r.res.accessToken));
    assert.equal(tokens.size, 1);
    assert.equal([...tokens][0], (await stored('storm-slow'))?.accessToken);
  });

  it('refreshes exactly once per user for 100 users × 20 concurrent callers', async () => {
    const users = Array.from({ length: 100 }, (_, i) => `storm-user-${i}`);
    await login(users, 30); // 30 s left (or expired by now): inside the 60 s skew
    const before = refreshes();
    const results = await storm(users, 20);
    assert.equal(refreshes() - before, 100);
    for (const userId of users) {
      const mine = new Set(results.filter((r) => r.userId === userId).map((r) => r.res.accessToken));
      assert.equal(mine.size, 1, `${userId} got ${mine.size} different tokens`);
      assert.equal([...mine][0], (await stored(userId))?.accessToken);
    }
  });
});
