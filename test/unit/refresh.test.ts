import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { CallContext, GetTokenResult } from '../../src/broker/api.js';
import type { SubjectRef } from '../../src/core/errors.js';
import { createTokenService, type TokenService } from '../../src/broker/get-token.js';
import { noopBrokerMetrics, type BrokerMetrics } from '../../src/broker/metrics.js';
import { IdpError, type IdpClient, type TokenSet } from '../../src/core/idp-client.js';
import { createLogger } from '../../src/logger.js';
import { createKeyRing } from '../../src/store/key-ring.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import type { NewTokenRecord, TokenStore } from '../../src/core/token-store.js';
import { brokerError, callContext, DAY, idpBasics, MIN } from '../helpers/domain-fixtures.js';
import { createFakeClock, type FakeClock } from '../helpers/fake-clock.js';
import { captureLogs } from '../helpers/log-capture.js';

const alice: SubjectRef = { provider: 'corp', userId: 'alice' };

/**
 * A plain IdpClient: each refresh waits `delayMs` (on the clock), then issues numbered tokens —
 * or fails with `failure` when one is set.
 */
interface FakeIdp {
  readonly refreshed: string[];
  delayMs: number;
  failure: Error | undefined;
  readonly client: IdpClient;
}

function fakeIdp(clock: FakeClock): FakeIdp {
  let issued = 0;
  const fake: FakeIdp = {
    refreshed: [],
    delayMs: 0,
    failure: undefined,
    client: {
      ...idpBasics,
      skewMs: MIN,
      refresh: async (refreshToken: string): Promise<TokenSet> => {
        fake.refreshed.push(refreshToken);
        await clock.sleep(fake.delayMs);
        if (fake.failure !== undefined) throw fake.failure;
        issued += 1;
        return {
          accessToken: `at-${issued}`,
          refreshToken: `rt-${issued}`,
          tokenType: 'Bearer',
          expiresAt: clock.now() + 60 * MIN,
          refreshExpiresAt: undefined,
          scopes: undefined,
          idToken: undefined,
        };
      },
      revoke: () => Promise.resolve('REVOKED' as const),
    },
  };
  return fake;
}

function expiredRecord(clock: FakeClock): NewTokenRecord {
  return {
    accessToken: 'at-0',
    refreshToken: 'rt-0',
    tokenType: 'Bearer',
    expiresAt: clock.now() - 1000,
    refreshExpiresAt: undefined,
    scopes: ['openid'],
    idToken: undefined,
    obtainedVia: 'login',
    updatedAt: clock.now(),
    subject: undefined,
  };
}

function ctx(clock: FakeClock, timeoutMs = Infinity, signal = new AbortController().signal): CallContext {
  return callContext(clock.now() + timeoutMs, signal);
}

describe('Refresh under the per-user lock', () => {
  let clock: FakeClock;
  let store: TokenStore;
  let idp: FakeIdp;

  /** One "replica": its own service (own single-flight) over the shared store. */
  function replica(
    lockLeaseMs = 1000,
    metrics: BrokerMetrics = noopBrokerMetrics,
    over: TokenStore = store,
  ): TokenService {
    return createTokenService({
      store: over,
      idps: { ids: ['corp'], get: () => idp.client },
      storageEnabled: true,
      lockLeaseMs,
      clock,
      logger: createLogger({ level: 'silent' }),
      metrics,
    });
  }
  const get = async (service: TokenService, c: CallContext, ref: SubjectRef = alice) =>
    service.getValidSubjectToken({ ...ref, minValidForMs: MIN }, c);

  beforeEach(async () => {
    clock = createFakeClock();
    store = createMemoryStore({ keyRing: createKeyRing([{ id: 'k1', key: randomBytes(32) }]), clock });
    idp = fakeIdp(clock);
    await store.putToken(alice, expiredRecord(clock), DAY);
  });

  it('refreshes once for 200 concurrent callers in one process, and all get the same token', async () => {
    idp.delayMs = 20;
    let coalesced = 0;
    const service = replica(1000, { ...noopBrokerMetrics, coalescedWaiter: () => (coalesced += 1) });
    const results = await clock.run(Promise.all(Array.from({ length: 200 }, () => get(service, ctx(clock)))));
    assert.deepEqual(idp.refreshed, ['rt-0']);
    assert.deepEqual(new Set(results.map((r) => r.accessToken)), new Set(['at-1']));
    assert.ok(results.every((r) => r.source === 'REFRESHED'));
    assert.equal(coalesced, 199);
    assert.equal((await store.getToken(alice))?.refreshToken, 'rt-1');
  });

  it('refreshes once for concurrent callers spread over replicas sharing a store', async () => {
    idp.delayMs = 30;
    const replicas = [replica(), replica(), replica(), replica()];
    const results = await clock.run(
      Promise.all(Array.from({ length: 200 }, (_, i) => get(replicas[i % replicas.length]!, ctx(clock)))),
    );
    assert.deepEqual(idp.refreshed, ['rt-0']);
    assert.deepEqual(new Set(results.map((r) => r.accessToken)), new Set(['at-1']));
  });

  it('tells callers waiting on every replica that the IdP rejected the refresh, not that nothing is stored', async () => {
    idp.delayMs = 50;
    idp.failure = new IdpError('rejected', 'refresh rejected', { oauthError: 'invalid_grant' });
    const replicas = [replica(), replica(), replica(), replica()];
    const outcomes = await clock.run(
      Promise.all(
        Array.from({ length: 40 }, (_, i) => brokerError(get(replicas[i % replicas.length]!, ctx(clock)))),
      ),
    );
    assert.deepEqual(idp.refreshed, ['rt-0'], 'one refresh for all of them');
    // The leader's replica shares the refresh's own error; the other three re-read after the
    // release and find the record deleted: the store says why.
    assert.deepEqual(
      outcomes.map((e) => `${e.reason}/${e.metadata.cause}`),
      Array.from({ length: 40 }, () => 'REAUTH_REQUIRED/REFRESH_REJECTED'),
    );
    assert.equal(await store.getToken(alice), undefined);
    // A caller after the fact is told what is true then: nothing is stored.
    const later = await brokerError(clock.run(get(replica(), ctx(clock))));
    assert.equal(later.metadata.cause, 'NO_TOKEN');
  });

  it('tells a waiting caller NO_TOKEN, and logs why, when the store cannot say why the record went', async () => {
    idp.delayMs = 50;
    idp.failure = new IdpError('rejected', 'refresh rejected', { oauthError: 'invalid_grant' });
    const failing = Object.create(store) as TokenStore;
    failing.deletedBecause = () => Promise.reject(new Error('connection lost'));
    const logs = captureLogs();
    const waiterReplica = createTokenService({
      store: failing,
      idps: { ids: ['corp'], get: () => idp.client },
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: logs.logger,
    });
    const leader = brokerError(get(replica(), ctx(clock)));
    await clock.advance(10);
    const waiter = brokerError(get(waiterReplica, ctx(clock)));
    const [led, waited] = await clock.run(Promise.all([leader, waiter]));
    assert.equal(led.metadata.cause, 'REFRESH_REJECTED');
    assert.equal(waited.metadata.cause, 'NO_TOKEN');
    const warning = logs
      .records()
      .find((l) => l.msg === 'reading why the record was deleted failed; answering NO_TOKEN');
    assert.ok(warning, 'logged');
    assert.equal(warning.level, 'warn');
  });

  it('tells a caller waiting on another replica NO_TOKEN when a revoke deleted the record meanwhile', async () => {
    idp.delayMs = 50;
    const [first, second] = [replica(), replica()];
    const leader = brokerError(get(first, ctx(clock)));
    await clock.advance(10); // the leader holds the lock, the IdP call in flight
    const waiter = brokerError(get(second, ctx(clock)));
    await clock.advance(10);
    // The user is revoked (a delete without a cause) while both wait for the IdP.
    assert.equal(await store.deleteToken(alice), true);
    const [led, waited] = await clock.run(Promise.all([leader, waiter]));
    assert.equal(led.metadata.cause, 'NO_TOKEN');
    assert.equal(waited.metadata.cause, 'NO_TOKEN');
  });

  it('refreshes once per user for many users at once', async () => {
    const users = Array.from({ length: 20 }, (_, i) => ({ provider: 'corp', userId: `user-${i}` }));
    for (const user of users) await store.putToken(user, expiredRecord(clock), DAY);
    const replicas = [replica(), replica()];
    const calls = users.flatMap((user) =>
      Array.from({ length: 10 }, (_, i) => get(replicas[i % 2]!, ctx(clock), user)),
    );
    const results = await clock.run(Promise.all(calls));
    assert.equal(idp.refreshed.length, 20);
    for (let u = 0; u < users.length; u++) {
      const tokens = new Set(results.slice(u * 10, u * 10 + 10).map((r) => r.accessToken));
      assert.equal(tokens.size, 1, `user ${u} got ${tokens.size} different tokens`);
    }
  });

  it('keeps the lock through an IdP call three times longer than the lease', async () => {
    idp.delayMs = 900;
    const first = replica(300);
    const second = replica(300);
    const leader = get(first, ctx(clock));
    await clock.advance(400); // past the first lease: only renewal keeps the second replica out
    const follower = get(second, ctx(clock));
    const [a, b] = await clock.run(Promise.all([leader, follower]));
    assert.deepEqual(idp.refreshed, ['rt-0']);
    assert.equal(a.accessToken, 'at-1');
    assert.equal(b.accessToken, 'at-1');
  });

  it('gives a caller REFRESH_IN_PROGRESS at its own deadline while the refresh goes on for others', async () => {
    idp.delayMs = 1000;
    const service = replica();
    const patient = get(service, ctx(clock, 5000));
    const started = clock.now();
    const hurried = await brokerError(clock.run(get(service, ctx(clock, 100))));
    assert.ok(clock.now() - started < 100, 'it answered before its deadline');
    assert.equal(hurried.reason, 'REFRESH_IN_PROGRESS');
    assert.deepEqual(hurried.metadata, { provider: 'corp', userId: 'alice' });
    // It gave up while the refresh was still in flight, not when the leader finished.
    assert.equal((await store.getToken(alice))?.accessToken, 'at-0');
    assert.equal((await clock.run(patient)).accessToken, 'at-1');
    assert.deepEqual(idp.refreshed, ['rt-0']);
  });

  it('gives the leader REFRESH_IN_PROGRESS too when its deadline is shorter than the IdP call', async () => {
    idp.delayMs = 200;
    const service = replica();
    const err = await brokerError(clock.run(get(service, ctx(clock, 80))));
    assert.equal(err.reason, 'REFRESH_IN_PROGRESS');
    await clock.run(service.idle());
    // The refresh was not abandoned: its result is stored for the next caller.
    assert.equal((await store.getToken(alice))?.accessToken, 'at-1');
  });

  it('answers REFRESH_IN_PROGRESS when another replica holds the lock past the deadline', async () => {
    const owner = await store.acquireLock(alice, 5000);
    assert.ok(owner);
    const err = await brokerError(clock.run(get(replica(5000), ctx(clock, 150))));
    assert.equal(err.reason, 'REFRESH_IN_PROGRESS');
    assert.deepEqual(idp.refreshed, []);
  });

  it('gives up waiting when the call is cancelled', async () => {
    const owner = await store.acquireLock(alice, 5000);
    assert.ok(owner);
    const controller = new AbortController();
    const pending = get(replica(5000), ctx(clock, Infinity, controller.signal));
    await clock.advance(30);
    controller.abort();
    assert.equal((await brokerError(pending)).reason, 'REFRESH_IN_PROGRESS');
  });

  it('refreshes within a lease after the lock holder died', async () => {
    const lease = 500;
    assert.ok(await store.acquireLock(alice, lease)); // a replica that took the lock and died
    const started = clock.now();
    const token = await clock.run(get(replica(lease), ctx(clock, 5000)));
    const waited = clock.now() - started;
    assert.equal(token.source, 'REFRESHED');
    assert.deepEqual(idp.refreshed, ['rt-0']);
    assert.ok(waited >= lease && waited < 2 * lease, `waited ${waited} ms for a ${lease} ms lease`);
  });

  it('returns a peer refresh it waited for without calling the IdP itself', async () => {
    const owner = await store.acquireLock(alice, 5000);
    assert.ok(owner);
    const pending = get(replica(5000), ctx(clock, 5000));
    await clock.advance(20);
    const current = await store.getToken(alice);
    const fresh = { ...expiredRecord(clock), accessToken: 'at-peer', expiresAt: clock.now() + 60 * MIN };
    assert.ok(await store.putTokenFenced(alice, owner, current!.generation, fresh, DAY));
    assert.ok(await store.releaseLock(alice, owner));
    const token: GetTokenResult = await clock.run(pending);
    assert.equal(token.accessToken, 'at-peer');
    assert.equal(token.source, 'REFRESHED');
    assert.deepEqual(idp.refreshed, []);
  });

  it('stores the refresh anyway when its lease ran out during the IdP call and nobody took the lock', async () => {
    idp.delayMs = 250;
    const outcomes: string[] = [];
    const stalled = Object.create(store) as TokenStore;
    // A holder whose renewals never land (a stalled event loop): the 100 ms lease runs out.
    stalled.renewLock = () => Promise.resolve(false);
    store = stalled;
    const service = replica(100, { ...noopBrokerMetrics, refresh: (_p, outcome) => outcomes.push(outcome) });
    const token = await clock.run(get(service, ctx(clock)));
    assert.equal(token.accessToken, 'at-1');
    assert.deepEqual(outcomes, ['refreshed']);
    const saved = await store.getToken(alice);
    assert.equal(saved?.refreshToken, 'rt-1');
    assert.notEqual(await store.acquireLock(alice, 100), undefined, 'the lock was released');
  });

  it('releases the lock after refreshing, so the next expiry refreshes again at once', async () => {
    const service = replica();
    await clock.run(get(service, ctx(clock)));
    await clock.advance(61 * MIN);
    const token = await clock.run(get(service, ctx(clock, 1000)));
    assert.equal(token.accessToken, 'at-2');
    assert.deepEqual(idp.refreshed, ['rt-0', 'rt-1']);
  });
});
