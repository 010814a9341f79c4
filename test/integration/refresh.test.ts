/**
 * GetValidSubjectToken and RevokeSubjectToken end to end: real `credbroker serve` processes
 * sharing a real redis-server, a real in-process oidc-provider, and the generated gRPC client.
 * Tokens come only from the provider (short access-token lifetimes or a large min_valid_for make
 * them expiring); records are inspected through the real Redis store with the brokers' key.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { status, type ServiceError } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config/load.js';
import {
  IdpRevocation,
  StorageOutcome,
  TokenSource,
  type GetValidSubjectTokenResponse,
} from '../../src/gen/credbroker/v1/broker.js';
import { createLogger } from '../../src/logger.js';
import { createStore, loadKeyRing } from '../../src/store/index.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { lockKey, tokenKey } from '../../src/store/keys.js';
import {
  brokerEnv,
  loginThrough,
  startBrokerProcess,
  type BrokerProcess,
} from '../helpers/broker-process.js';
import { call, callError, decodeError } from '../helpers/grpc.js';
import { signIn } from '../helpers/login.js';
import { startOidcProvider, TEST_REDIRECT_URI, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { startTestServer, testConfig } from '../helpers/server.js';

const HOUR = { seconds: 3600, nanos: 0 };
const LEASE_MS = 2000;

describe('GetValidSubjectToken across broker processes (real Redis, real OpenID Provider)', function () {
  this.timeout(60_000);
  let redis: RedisServer;
  let provider: TestOidcProvider;
  let env: Record<string, string>;
  let a: BrokerProcess;
  let b: BrokerProcess;
  let store: TokenStore;
  let raw: Redis;

  const get = (
    broker: BrokerProcess,
    userId: string,
    minValidFor = { seconds: 60, nanos: 0 },
    deadlineMs = 20_000,
  ): Promise<GetValidSubjectTokenResponse> =>
    call(
      broker.client,
      broker.client.getValidSubjectToken,
      { userId, provider: 'corp', minValidFor },
      { deadlineMs },
    );
  const getError = (broker: BrokerProcess, userId: string, minValidFor = HOUR) =>
    callError(
      broker.client,
      broker.client.getValidSubjectToken,
      { userId, provider: 'corp', minValidFor },
      {
        deadlineMs: 20_000,
      },
    );
  const refreshes = () => provider.grantsServed('refresh_token');
  /** Every token a test saw, to prove none reached the brokers' logs. */
  const seen = new Set<string>();
  const record = async (userId: string) => {
    const rec = await store.getToken({ provider: 'corp', userId });
    for (const t of [rec?.accessToken, rec?.refreshToken, rec?.idToken]) if (t) seen.add(t);
    return rec;
  };
  /** Logs in with access tokens living `ttlSeconds`, then restores the default lifetime. */
  const loginWithTtl = async (userId: string, ttlSeconds: number) => {
    provider.setAccessTokenTtl(ttlSeconds);
    try {
      await loginThrough(a.client, { userId });
    } finally {
      provider.setAccessTokenTtl(3600);
    }
  };

  before(async () => {
    [redis, provider] = await Promise.all([startRedis(), startOidcProvider()]);
    env = brokerEnv({
      redisUrl: redis.url,
      provider,
      keys: `k1:${randomBytes(32).toString('base64')}`,
      lockLease: `${LEASE_MS}ms`,
    });
    [a, b] = await Promise.all([startBrokerProcess(env), startBrokerProcess(env)]);
    const config = loadConfig({ env });
    store = createStore(config.store, loadKeyRing(config.store), createLogger({ level: 'silent' }));
    raw = new Redis(redis.url, { lazyConnect: true });
    await raw.connect();
  });

  after(async () => {
    raw?.disconnect();
    await store?.close();
    await Promise.all([a?.stop(), b?.stop()]);
    await provider?.close();
    await redis?.stop();
  });

  it('serves a fresh token from the store without calling the provider', async () => {
    await loginThrough(a.client, { userId: 'fresh' });
    const before = refreshes();
    const first = await get(a, 'fresh');
    const second = await get(b, 'fresh');
    assert.equal(first.source, TokenSource.TOKEN_SOURCE_STORED);
    assert.equal(second.source, TokenSource.TOKEN_SOURCE_STORED);
    assert.equal(second.accessToken, first.accessToken);
    assert.equal(first.accessToken, (await record('fresh'))?.accessToken);
    assert.equal(refreshes(), before);
  });

  it('refreshes a token inside the skew window and persists the rotated refresh token', async () => {
    await loginWithTtl('skew', 30); // 30 s left: inside the 60 s provider skew
    const stored = await record('skew');
    const before = refreshes();
    const token = await get(a, 'skew', { seconds: 0, nanos: 0 });
    assert.equal(token.source, TokenSource.TOKEN_SOURCE_REFRESHED);
    assert.notEqual(token.accessToken, stored?.accessToken);
    assert.equal(refreshes(), before + 1);
    const rotated = await record('skew');
    assert.equal(rotated?.accessToken, token.accessToken);
    assert.equal(rotated?.generation, stored!.generation + 1);
    assert.equal(rotated?.obtainedVia, 'refresh');
    assert.ok(rotated?.refreshToken !== undefined && rotated.refreshToken !== stored?.refreshToken);
    // The provider rotates refresh tokens and revokes the grant on reuse: a second refresh
    // succeeds only if the rotated one was stored.
    const again = await get(b, 'skew', HOUR);
    assert.equal(again.source, TokenSource.TOKEN_SOURCE_REFRESHED);
    assert.notEqual(again.accessToken, token.accessToken);
    assert.equal(refreshes(), before + 2);
  });

  it('refreshes an expired token', async () => {
    await loginWithTtl('expired', 1);
    await sleep(1100);
    const token = await get(b, 'expired');
    assert.equal(token.source, TokenSource.TOKEN_SOURCE_REFRESHED);
    assert.ok(token.expiresAt!.getTime() > Date.now() + 50 * 60_000);
  });

  it('answers REAUTH_REQUIRED / NO_TOKEN when nothing is stored', async () => {
    const err = await getError(a, 'nobody');
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.equal(err.errorInfo.reason, 'REAUTH_REQUIRED');
    assert.deepEqual(err.errorInfo.metadata, { cause: 'NO_TOKEN', provider: 'corp', userId: 'nobody' });
  });

  it('answers NO_REFRESH_TOKEN for an expiring token stored without a refresh token', async () => {
    // A front end that ran its own authorization request without offline_access: no refresh token.
    const verifier = randomBytes(32).toString('base64url');
    const nonce = randomBytes(16).toString('base64url');
    const url = new URL(provider.endpoints.authorization);
    url.search = new URLSearchParams({
      client_id: provider.clients.basic.id,
      response_type: 'code',
      redirect_uri: TEST_REDIRECT_URI,
      scope: 'openid profile',
      code_challenge: createHash('sha256').update(verifier).digest('base64url'),
      code_challenge_method: 'S256',
      nonce,
      state: randomBytes(16).toString('base64url'),
    }).toString();
    const auth = await signIn(url.href, { login: 'alice' });
    provider.setAccessTokenTtl(30); // the code exchange issues a token with 30 s left
    try {
      const done = await call(a.client, a.client.completeLogin, {
        provider: 'corp',
        code: auth.code!,
        redirectUri: TEST_REDIRECT_URI,
        state: '',
        codeVerifier: verifier,
        nonce,
        userId: 'no-refresh',
      });
      assert.equal(done.storage, StorageOutcome.STORAGE_OUTCOME_STORED);
    } finally {
      provider.setAccessTokenTtl(3600);
    }
    assert.equal((await record('no-refresh'))?.refreshToken, undefined);
    const err = await getError(a, 'no-refresh', { seconds: 0, nanos: 0 });
    assert.equal(err.errorInfo.reason, 'REAUTH_REQUIRED');
    assert.deepEqual(err.errorInfo.metadata, {
      cause: 'NO_REFRESH_TOKEN',
      provider: 'corp',
      userId: 'no-refresh',
    });
  });

  /** RFC 7009 revocation of a user's stored refresh token at the provider, as an admin or the user would do it there. */
  const revokeAtProvider = async (userId: string) => {
    const stored = await record(userId);
    const revoked = await fetch(provider.endpoints.revocation, {
      method: 'POST',
      headers: {
        authorization: `Basic ${Buffer.from(`${provider.clients.basic.id}:${provider.clients.basic.secret}`).toString('base64')}`,
        'content-type': 'application/x-www-form-urlencoded',
      },
      body: new URLSearchParams({
        token: stored!.refreshToken!,
        token_type_hint: 'refresh_token',
      }).toString(),
    });
    assert.equal(revoked.status, 200);
  };

  it('answers REFRESH_REJECTED and deletes the record when the grant was revoked at the provider', async () => {
    await loginThrough(a.client, { userId: 'revoked-at-idp' });
    await revokeAtProvider('revoked-at-idp');
    const err = await getError(b, 'revoked-at-idp');
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.deepEqual(err.errorInfo.metadata, {
      cause: 'REFRESH_REJECTED',
      provider: 'corp',
      userId: 'revoked-at-idp',
    });
    assert.equal(await record('revoked-at-idp'), undefined);
    assert.equal((await getError(a, 'revoked-at-idp')).errorInfo.metadata.cause, 'NO_TOKEN');
  });

  it('answers REFRESH_REJECTED also to a caller that waited for the rejected refresh on the other replica', async () => {
    await loginThrough(a.client, { userId: 'rejected-waiter' });
    await revokeAtProvider('rejected-waiter');
    const asked = provider.tokenRequestsReceived();
    provider.setTokenDelay(1000);
    try {
      const leader = getError(a, 'rejected-waiter');
      // Wait until a's refresh holds the lock (its IdP call is then held up at the provider)…
      const lock = lockKey({ provider: 'corp', userId: 'rejected-waiter' });
      for (let i = 0; i < 100 && (await raw.exists(lock)) === 0; i++) await sleep(20);
      assert.equal(await raw.exists(lock), 1, 'the refresh took the lock');
      // …then b's caller finds the lock held and waits for it.
      const waiter = getError(b, 'rejected-waiter');
      const [led, waited] = await Promise.all([leader, waiter]);
      assert.equal(led.errorInfo.metadata.cause, 'REFRESH_REJECTED');
      assert.equal(waited.errorInfo.reason, 'REAUTH_REQUIRED');
      assert.equal(waited.errorInfo.metadata.cause, 'REFRESH_REJECTED', 'not NO_TOKEN');
    } finally {
      provider.setTokenDelay(0);
    }
    assert.equal(await record('rejected-waiter'), undefined);
    assert.equal(provider.tokenRequestsReceived(), asked + 1, 'one refresh, asked by a; b waited for it');
  });

  it('answers UNDECRYPTABLE for a record tampered with in Redis', async () => {
    await loginThrough(a.client, { userId: 'tampered' });
    const key = tokenKey({ provider: 'corp', userId: 'tampered' });
    const envelope = await raw.hgetBuffer(key, 'v');
    assert.ok(envelope && envelope.length > 40);
    envelope[envelope.length - 20] ^= 0x01;
    await raw.hset(key, 'v', envelope);
    const err = await getError(a, 'tampered', { seconds: 60, nanos: 0 });
    assert.equal(err.errorInfo.reason, 'REAUTH_REQUIRED');
    assert.deepEqual(err.errorInfo.metadata, {
      cause: 'UNDECRYPTABLE',
      provider: 'corp',
      userId: 'tampered',
    });
  });

  it('keeps the record deleted when RevokeSubjectToken lands while a refresh is in flight', async () => {
    await loginThrough(a.client, { userId: 'revoke-race' });
    provider.setTokenDelay(2500);
    try {
      const pending = get(a, 'revoke-race', HOUR).then(
        () => assert.fail('a revoked token was served'),
        (err: ServiceError) => decodeError(err),
      );
      // Wait until the refresh holds the lock (its IdP call is then held up at the provider).
      const lock = lockKey({ provider: 'corp', userId: 'revoke-race' });
      for (let i = 0; i < 100 && (await raw.exists(lock)) === 0; i++) await sleep(20);
      assert.equal(await raw.exists(lock), 1, 'the refresh took the lock');
      const revoked = await call(b.client, b.client.revokeSubjectToken, {
        userId: 'revoke-race',
        provider: 'corp',
        revokeAtIdp: false,
      });
      assert.equal(revoked.deleted, true);
      assert.equal(revoked.idpRevocation, IdpRevocation.IDP_REVOCATION_NOT_REQUESTED);
      const err = await pending;
      assert.equal(err.errorInfo.reason, 'REAUTH_REQUIRED');
    } finally {
      provider.setTokenDelay(0);
    }
    assert.equal(await record('revoke-race'), undefined);
    assert.equal((await getError(b, 'revoke-race')).errorInfo.metadata.cause, 'NO_TOKEN');
  });

  it('serves a still-valid token while the provider is down, UNAVAILABLE for an expired one, and refreshes once it is back', async () => {
    await loginWithTtl('outage-valid', 30);
    await loginWithTtl('outage-expired', 1);
    await sleep(1100);
    const expiredBefore = await record('outage-expired');
    await provider.stop();
    try {
      const degraded = await get(a, 'outage-valid');
      assert.equal(degraded.degraded, true);
      assert.equal(degraded.source, TokenSource.TOKEN_SOURCE_STORED);
      assert.equal(degraded.accessToken, (await record('outage-valid'))?.accessToken);
      assert.ok(degraded.expiresAt!.getTime() > Date.now());

      const err = await getError(b, 'outage-expired', { seconds: 60, nanos: 0 });
      assert.equal(err.code, status.UNAVAILABLE);
      assert.equal(err.errorInfo.reason, 'IDP_UNAVAILABLE');
      assert.ok(err.retryInfo?.retryDelay, 'RetryInfo with a delay');
      const kept = await record('outage-expired');
      assert.equal(kept?.generation, expiredBefore?.generation);
      assert.equal(kept?.refreshToken, expiredBefore?.refreshToken);
    } finally {
      await provider.start();
    }
    const token = await get(b, 'outage-expired');
    assert.equal(token.source, TokenSource.TOKEN_SOURCE_REFRESHED);
    assert.equal(token.degraded, false);
  });

  it('treats HTTP 429 with Retry-After as a transient failure, never as a revoked grant', async () => {
    await loginWithTtl('throttled', 1);
    await sleep(1100);
    const before = await record('throttled');
    provider.failTokenEndpoint({ status: 429, retryAfterSeconds: 7 });
    try {
      const err = await getError(a, 'throttled', { seconds: 60, nanos: 0 });
      assert.equal(err.code, status.UNAVAILABLE);
      assert.equal(err.errorInfo.reason, 'IDP_UNAVAILABLE');
      assert.deepEqual(err.retryInfo?.retryDelay, { seconds: 7, nanos: 0 });
    } finally {
      provider.failTokenEndpoint(undefined);
    }
    const kept = await record('throttled');
    assert.equal(kept?.generation, before?.generation);
    assert.equal((await get(a, 'throttled')).source, TokenSource.TOKEN_SOURCE_REFRESHED);
  });

  it("lets another process refresh as soon as a SIGKILLed lock holder's lease runs out", async () => {
    const doomed = await startBrokerProcess(env);
    try {
      await loginThrough(a.client, { userId: 'holder-killed' });
      provider.setTokenDelay(10_000);
      const abandoned = get(doomed, 'holder-killed', HOUR).catch(() => undefined);
      const lock = lockKey({ provider: 'corp', userId: 'holder-killed' });
      for (let i = 0; i < 100 && (await raw.exists(lock)) === 0; i++) await sleep(20);
      assert.equal(await raw.exists(lock), 1, 'the doomed process took the lock');
      await doomed.kill();
      const killedAt = Date.now();
      provider.setTokenDelay(0);
      const token = await get(b, 'holder-killed', HOUR);
      const tookMs = Date.now() - killedAt;
      assert.equal(token.source, TokenSource.TOKEN_SOURCE_REFRESHED);
      // The dead holder's lease ends at most one lease after the kill; allow as much again for
      // noticing it and refreshing on a loaded machine.
      assert.ok(tookMs < 2 * LEASE_MS, `refreshed ${tookMs} ms after the kill, lease ${LEASE_MS} ms`);
      await abandoned;
    } finally {
      provider.setTokenDelay(0);
      await doomed.kill();
    }
  });

  it('answers STORE_DISABLED when token storage is off', async () => {
    const config = testConfig('', { ...env, CREDBROKER_STORE_SUBJECT_TOKENS: 'false' });
    const app = await createApp(config, createLogger({ level: 'silent' }));
    const server = await startTestServer({ config, api: app.api });
    try {
      const err = await callError(server.client, server.client.getValidSubjectToken, {
        userId: 'fresh',
        provider: 'corp',
        minValidFor: undefined,
      });
      assert.equal(err.code, status.FAILED_PRECONDITION);
      assert.deepEqual(err.errorInfo.metadata, {
        cause: 'STORE_DISABLED',
        provider: 'corp',
        userId: 'fresh',
      });
    } finally {
      await server.stop();
      for (const resource of app.resources) await resource.close();
    }
  });

  it("never writes a token into the brokers' logs", () => {
    assert.ok(seen.size > 10, `only ${seen.size} tokens seen`);
    const logs = a.output() + b.output();
    assert.ok(logs.includes('"rpc":"GetValidSubjectToken"'), 'the brokers logged their calls');
    for (const token of seen) assert.ok(!logs.includes(token), 'a token appears in a broker log');
  });
});
