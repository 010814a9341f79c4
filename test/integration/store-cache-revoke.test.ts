/**
 * The revoke visibility window across replicas with the record cache on (the default): two real
 * `credbroker serve` processes share one redis-server and one oidc-provider. A user's token is
 * served by process B from its cache; RevokeSubjectToken through process A deletes it; the time
 * from A's answer until B answers FAILED_PRECONDITION is the window in which a revoked token can
 * still be served by another replica. Measured over 30 revokes and printed against the goal
 * (p99 ≤ 50 ms, which over 30 samples is the maximum: one scheduling hiccup of a busy CI box).
 *
 * What is asserted is what fails when invalidation is broken or slow, but not on one slow call:
 * - no call to B that *started* 1 s or more after A answered is served the revoked token (a
 *   missing invalidation would serve it for store.cache.max_age, 30 s);
 * - the median window is within the 50 ms goal;
 * - at most one revoke in ten had B serve the revoked token after A answered at all (the
 *   invalidation races the test's next call to B; it normally wins).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { status, type ServiceError } from '@grpc/grpc-js';
import { decodeError, call } from '../helpers/grpc.js';
import {
  brokerEnv,
  loginThrough,
  startBrokerProcess,
  type BrokerProcess,
} from '../helpers/broker-process.js';
import { startOidcProvider, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const REVOKES = 30;
const GOAL_MS = 50;
/** A call to B started this long after A's answer must not be served the revoked token. */
const VISIBLE_WITHIN_MS = 1_000;
/** Revokes after which B served the revoked token at least once after A answered, at most. */
const MAX_STALE_REVOKES = Math.floor(REVOKES / 10);

/** The value of an unlabelled series in Prometheus text. */
function series(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  assert.ok(line, `${name} is exported`);
  return Number(line.slice(name.length + 1));
}

function percentile(sorted: readonly number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)]!;
}

describe('Revoke visibility across broker processes with the record cache', function () {
  this.timeout(180_000);
  let redis: RedisServer;
  let provider: TestOidcProvider;
  let a: BrokerProcess;
  let b: BrokerProcess;
  let metricsB: string;

  const get = (broker: BrokerProcess, userId: string) =>
    call(
      broker.client,
      broker.client.getValidSubjectToken,
      { userId, provider: 'corp', minValidFor: { seconds: 60, nanos: 0 } },
      { deadlineMs: 10_000 },
    );
  const scrape = async () => (await fetch(metricsB)).text();

  before(async () => {
    [redis, provider] = await Promise.all([startRedis(), startOidcProvider()]);
    const env = brokerEnv({
      redisUrl: redis.url,
      provider,
      keys: `k1:${randomBytes(32).toString('base64')}`,
      extra: { CREDBROKER_LOG_LEVEL: 'warn' },
    });
    const port = await freePort();
    metricsB = `http://127.0.0.1:${port}/metrics`;
    [a, b] = await Promise.all([
      startBrokerProcess(env),
      startBrokerProcess({ ...env, CREDBROKER_METRICS_LISTEN: `127.0.0.1:${port}` }),
    ]);
  });

  after(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await provider?.close();
    await redis?.stop();
  });

  it(`refuses a token revoked on another replica (goal p99 ≤ ${GOAL_MS} ms, ${REVOKES} revokes)`, async () => {
    const windows: number[] = [];
    /** From sending the revoke to A (the delete happens somewhere inside). */
    const fromSent: number[] = [];
    /** From A's answer to the start of B's first refusing call: how long B kept serving. */
    const served: number[] = [];
    /** Calls B answered with the revoked token after A had answered. */
    let staleServes = 0;
    /** Revokes with at least one such call. */
    let staleRevokes = 0;
    const users = Array.from({ length: REVOKES }, (_, i) => `revoke-window-${i}`);
    for (let i = 0; i < users.length; i += 10) {
      await Promise.all(users.slice(i, i + 10).map((userId) => loginThrough(a.client, { userId })));
    }
    const hitsBefore = series(await scrape(), 'credbroker_store_cache_hits_total');
    for (const userId of users) {
      // B serves the user, the second time from its cache.
      const token = (await get(b, userId)).accessToken;
      assert.equal((await get(b, userId)).accessToken, token);
      const sent = performance.now();
      await call(a.client, a.client.revokeSubjectToken, { userId, provider: 'corp', revokeAtIdp: false });
      const acknowledged = performance.now();
      let stale = false;
      for (;;) {
        const started = performance.now();
        const refused = await get(b, userId).then(
          (res) => {
            assert.equal(res.accessToken, token, 'only the revoked token can still be served');
            const late = started - acknowledged;
            assert.ok(
              late < VISIBLE_WITHIN_MS,
              `B served ${userId}'s revoked token to a call started ${late.toFixed(0)} ms after the revoke`,
            );
            staleServes++;
            if (!stale) staleRevokes++;
            stale = true;
            return false;
          },
          (err: ServiceError) => {
            assert.equal(err.code, status.FAILED_PRECONDITION, String(err.details));
            assert.equal(decodeError(err).errorInfo.metadata.cause, 'NO_TOKEN');
            return true;
          },
        );
        const elapsed = performance.now() - acknowledged;
        if (refused) {
          windows.push(elapsed);
          fromSent.push(performance.now() - sent);
          served.push(Math.max(0, started - acknowledged));
          break;
        }
      }
    }
    const hits = series(await scrape(), 'credbroker_store_cache_hits_total') - hitsBefore;
    // Each user's second read (at least) came from B's cache: the window is the cache's.
    assert.ok(hits >= REVOKES, `B served ${hits} reads from its cache`);
    const sorted = [...windows].sort((x, y) => x - y);
    const sortedSent = [...fromSent].sort((x, y) => x - y);
    const fmt = (ms: number) => `${ms.toFixed(2)} ms`;
    const figures = (s: readonly number[]) =>
      `p50 ${fmt(percentile(s, 50))}, p99 ${fmt(percentile(s, 99))}, max ${fmt(s[s.length - 1]!)}`;
    console.log(
      `      revoke visibility on another replica over ${REVOKES} revokes (B cache hits ${hits}):\n` +
        `        from A's answer to B's FAILED_PRECONDITION: ${figures(sorted)}\n` +
        `        from sending the revoke to A:               ${figures(sortedSent)}\n` +
        `        from A's answer to the start of that call:  ${figures([...served].sort((x, y) => x - y))}\n` +
        `        (each includes B's answering GetValidSubjectToken round trip); ` +
        `calls B still served the revoked token after A answered: ${staleServes} (over ${staleRevokes} revokes)\n` +
        `        goal p99 ≤ ${GOAL_MS} ms: ${percentile(sorted, 99) <= GOAL_MS ? 'met' : 'NOT met'}`,
    );
    assert.ok(percentile(sorted, 50) <= GOAL_MS, `median ${fmt(percentile(sorted, 50))}`);
    assert.ok(
      staleRevokes <= MAX_STALE_REVOKES,
      `B served a revoked token after A answered in ${staleRevokes} of ${REVOKES} revokes`,
    );
  });
});
