/**
 * GetDownstreamToken end to end: four real `credbroker serve` processes sharing one redis-server,
 * the in-process oidc-provider with its RFC 8693 token-exchange grant and an Entra on-behalf-of
 * shaped jwt-bearer grant (test/helpers/oidc-provider.ts), and the generated gRPC client. Issued
 * tokens are decoded and their `aud` checked; exchanges are counted at the provider.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { loadConfig } from '../../src/config/load.js';
import {
  DownstreamTokenSource,
  type GetDownstreamTokenResponse,
} from '../../src/gen/credbroker/v1/broker.js';
import { createLogger } from '../../src/logger.js';
import { createStore, loadKeyRing } from '../../src/store/index.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { tokenKey } from '../../src/store/keys.js';
import {
  brokerEnv,
  loginThrough,
  startBrokerProcess,
  type BrokerProcess,
} from '../helpers/broker-process.js';
import { call, callError, type DecodedError } from '../helpers/grpc.js';
import { startOidcProvider, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const REPLICAS = 4;
const ORDERS = 'https://orders.example.test';
const BILLING = 'https://billing.example.test';

/** The JWT payload of an access token the test provider issued for a downstream. */
function claims(jwt: string): Record<string, unknown> {
  const parts = jwt.split('.');
  assert.equal(parts.length, 3, 'a JWT access token');
  return JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8')) as Record<string, unknown>;
}

describe('GetDownstreamToken over four broker processes (real Redis, real OpenID Provider)', function () {
  this.timeout(180_000);
  let redis: RedisServer;
  let provider: TestOidcProvider;
  let brokers: BrokerProcess[] = [];
  let store: TokenStore;
  let raw: Redis;
  let dir: string;
  /** Every token a test saw, to prove none reached Redis in plaintext or the brokers' logs. */
  const seen = new Set<string>();

  const broker = (i: number) => brokers[i % brokers.length]!;
  const get = async (
    i: number,
    userId: string,
    downstream: string,
    minValidFor = { seconds: 60, nanos: 0 },
  ): Promise<GetDownstreamTokenResponse> => {
    const b = broker(i);
    const res = await call(
      b.client,
      b.client.getDownstreamToken,
      { userId, provider: 'corp', downstream, minValidFor },
      { deadlineMs: 30_000 },
    );
    seen.add(res.accessToken);
    return res;
  };
  const getError = (i: number, userId: string, downstream: string) =>
    callError(broker(i).client, broker(i).client.getDownstreamToken, {
      userId,
      provider: 'corp',
      downstream,
      minValidFor: undefined,
    });
  const subjectToken = async (userId: string) => {
    const rec = await store.getToken({ provider: 'corp', userId });
    for (const t of [rec?.accessToken, rec?.refreshToken, rec?.idToken]) if (t) seen.add(t);
    return rec?.accessToken;
  };

  before(async () => {
    [redis, provider] = await Promise.all([startRedis(), startOidcProvider()]);
    dir = mkdtempSync(join(tmpdir(), 'credbroker-downstream-'));
    const configFile = join(dir, 'credbroker.yaml');
    writeFileSync(
      configFile,
      [
        'providers:',
        '  - id: corp',
        '    downstreams:',
        '      - id: orders',
        `        audience: ${ORDERS}`,
        '        scopes: [orders.read]',
        '      - id: billing',
        `        resource: ${BILLING}`,
        '      - id: orders-obo',
        '        mode: entra_obo',
        '        scopes: ["api://orders/.default"]',
        '      - id: payroll',
        '        audience: https://payroll.example.test',
        '      - id: orders-post',
        `        audience: ${ORDERS}`,
        `        client_id: ${provider.clients.post.id}`,
        `        client_secret: ${provider.clients.post.secret}`,
        '        client_auth: client_secret_post',
        '      - id: orders-jwt',
        `        audience: ${ORDERS}`,
        `        client_id: ${provider.clients.jwt.id}`,
        '        client_auth: private_key_jwt',
        `        private_key_file: ${provider.clients.jwt.privateKeyFile}`,
        `        private_key_id: ${provider.clients.jwt.kid}`,
        '      - id: orders-public',
        `        audience: ${ORDERS}`,
        `        client_id: ${provider.clients.public.id}`,
        '        client_auth: none',
        '',
      ].join('\n'),
    );
    const env = brokerEnv({
      redisUrl: redis.url,
      provider,
      keys: `k1:${randomBytes(32).toString('base64')}`,
      extra: { CREDBROKER_CONFIG: configFile },
    });
    brokers = await Promise.all(Array.from({ length: REPLICAS }, () => startBrokerProcess(env)));
    const config = loadConfig({ env });
    store = createStore(config.store, loadKeyRing(config.store), createLogger({ level: 'silent' }));
    raw = new Redis(redis.url, { lazyConnect: true });
    await raw.connect();
  });

  after(async () => {
    raw?.disconnect();
    await store?.close();
    await Promise.all(brokers.map((b) => b.stop()));
    await provider?.close();
    await redis?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('exchanges the subject token (RFC 8693 audience) and serves the cached token with no IdP call', async () => {
    await loginThrough(broker(0).client, { userId: 'u-aud' });
    const subject = await subjectToken('u-aud');
    const before = provider.exchangesServed('alice', ORDERS);
    const first = await get(0, 'u-aud', 'orders');
    assert.equal(first.source, DownstreamTokenSource.DOWNSTREAM_TOKEN_SOURCE_EXCHANGED);
    assert.equal(first.issuedTokenType, 'urn:ietf:params:oauth:token-type:access_token');
    assert.equal(first.tokenType, 'Bearer');
    assert.deepEqual(first.scopes, ['orders.read']);
    assert.notEqual(first.accessToken, subject, 'never the subject token itself');
    const jwt = claims(first.accessToken);
    assert.equal(jwt.aud, ORDERS);
    assert.equal(jwt.sub, 'alice');
    assert.equal(jwt.iss, provider.issuer);
    assert.ok(Math.abs(first.expiresAt!.getTime() / 1000 - Number(jwt.exp)) <= 1);
    assert.equal(provider.exchangesServed('alice', ORDERS), before + 1);

    for (let i = 1; i < REPLICAS; i++) {
      const again = await get(i, 'u-aud', 'orders');
      assert.equal(again.source, DownstreamTokenSource.DOWNSTREAM_TOKEN_SOURCE_CACHED);
      assert.equal(again.accessToken, first.accessToken);
    }
    assert.equal(provider.exchangesServed('alice', ORDERS), before + 1, 'cache hits make no IdP call');
    const stored = await store.getToken({ provider: 'corp', userId: 'u-aud', downstream: 'orders' });
    assert.equal(stored?.accessToken, first.accessToken);
    assert.equal(stored?.obtainedVia, 'exchange');
    // Its own key, in the user's hash tag, with a TTL (no refresh token: it dies with the token).
    const ttl = await raw.pttl(tokenKey({ provider: 'corp', userId: 'u-aud', downstream: 'orders' }));
    assert.ok(ttl > 0 && ttl <= 3600_000, `pttl ${ttl}`);
  });

  it('sends an RFC 8707 resource, an Entra on-behalf-of request, and downstream clients of their own (all four client auth methods)', async () => {
    await loginThrough(broker(0).client, { userId: 'u-modes', account: 'bob' });
    const billing = claims((await get(1, 'u-modes', 'billing')).accessToken);
    assert.equal(billing.aud, BILLING);
    const obo = await get(2, 'u-modes', 'orders-obo');
    assert.equal(claims(obo.accessToken).aud, 'api://orders');
    assert.equal(claims(obo.accessToken).sub, 'bob');
    assert.deepEqual(obo.scopes, ['api://orders/.default']);
    const own = claims((await get(3, 'u-modes', 'orders-post')).accessToken);
    assert.equal(own.aud, ORDERS);
    assert.equal(own.azp, provider.clients.post.id, 'authenticated as the downstream client');
    assert.equal(claims((await get(0, 'u-modes', 'orders')).accessToken).azp, provider.clients.basic.id);
    // The other two client authentication methods: private_key_jwt (RFC 7523) and none.
    assert.equal(claims((await get(1, 'u-modes', 'orders-jwt')).accessToken).azp, provider.clients.jwt.id);
    assert.equal(
      claims((await get(2, 'u-modes', 'orders-public')).accessToken).azp,
      provider.clients.public.id,
    );
  });

  it('exchanges exactly once per user and downstream for a storm over four processes', async () => {
    const users = ['storm-1', 'storm-2', 'storm-3'];
    for (const userId of users) await loginThrough(broker(0).client, { userId });
    const before = provider.exchangesServed();
    provider.setTokenDelay(300);
    let results: { key: string; token: string }[];
    try {
      results = await Promise.all(
        users.flatMap((userId) =>
          ['orders', 'billing'].flatMap((downstream) =>
            Array.from({ length: 20 }, (_, i) =>
              get(i, userId, downstream).then((r) => ({
                key: `${userId} ${downstream}`,
                token: r.accessToken,
              })),
            ),
          ),
        ),
      );
    } finally {
      provider.setTokenDelay(0);
    }
    assert.equal(provider.exchangesServed() - before, users.length * 2, 'one exchange per user × downstream');
    const byKey = new Map<string, Set<string>>();
    for (const r of results) byKey.set(r.key, (byKey.get(r.key) ?? new Set()).add(r.token));
    assert.equal(byKey.size, users.length * 2);
    for (const [key, tokens] of byKey) assert.equal(tokens.size, 1, `${key} got ${tokens.size} tokens`);
  });

  it('answers EXCHANGE_REJECTED with only the OAuth code when the IdP refuses the audience', async () => {
    await loginThrough(broker(0).client, { userId: 'u-refused' });
    const err = await getError(1, 'u-refused', 'payroll');
    assert.equal(err.code, status.FAILED_PRECONDITION);
    assert.equal(err.errorInfo.reason, 'EXCHANGE_REJECTED');
    assert.equal(err.errorInfo.metadata.idpError, 'invalid_target');
    assert.equal(err.errorInfo.metadata.downstream, 'payroll');
    assert.doesNotMatch(err.message, /unknown audience|injected/, 'no IdP description');
    assert.equal(
      await store.getToken({ provider: 'corp', userId: 'u-refused', downstream: 'payroll' }),
      undefined,
    );
  });

  it('answers INVALID_ARGUMENT naming downstream for one not configured', async () => {
    const err = await getError(0, 'u-aud', 'nope');
    assert.equal(err.code, status.INVALID_ARGUMENT);
    assert.deepEqual(
      err.badRequest?.fieldViolations.map((v) => v.field),
      ['downstream'],
    );
  });

  it('answers REAUTH_REQUIRED / NO_TOKEN for a user with no subject token', async () => {
    const err = await getError(2, 'never-logged-in', 'orders');
    assert.equal(err.errorInfo.reason, 'REAUTH_REQUIRED');
    assert.equal(err.errorInfo.metadata.cause, 'NO_TOKEN');
  });

  it('answers UNAVAILABLE with RetryInfo while the IdP is down and nothing is cached', async () => {
    await loginThrough(broker(0).client, { userId: 'u-down' });
    await provider.stop();
    let err: DecodedError;
    try {
      err = await getError(3, 'u-down', 'orders');
    } finally {
      await provider.start();
    }
    assert.equal(err.code, status.UNAVAILABLE);
    assert.equal(err.errorInfo.reason, 'IDP_UNAVAILABLE');
    assert.ok(err.retryInfo, 'RetryInfo');
    // Back up: the same call succeeds.
    assert.equal(claims((await get(3, 'u-down', 'orders')).accessToken).aud, ORDERS);
  });

  it('re-exchanges a cached token that is inside the margin', async () => {
    await loginThrough(broker(0).client, { userId: 'u-short' });
    provider.setExchangedTokenTtl(90);
    let first: GetDownstreamTokenResponse;
    try {
      first = await get(0, 'u-short', 'orders', { seconds: 0, nanos: 0 });
    } finally {
      provider.setExchangedTokenTtl(3600);
    }
    const cached = await get(1, 'u-short', 'orders', { seconds: 30, nanos: 0 });
    assert.equal(cached.source, DownstreamTokenSource.DOWNSTREAM_TOKEN_SOURCE_CACHED);
    const again = await get(2, 'u-short', 'orders', { seconds: 120, nanos: 0 });
    assert.equal(again.source, DownstreamTokenSource.DOWNSTREAM_TOKEN_SOURCE_EXCHANGED);
    assert.notEqual(again.accessToken, first.accessToken);
  });

  it('exchanges anew, without asking the user to log in again, when the cached record cannot be opened', async () => {
    await loginThrough(broker(0).client, { userId: 'u-tampered' });
    const first = await get(0, 'u-tampered', 'orders');
    const key = tokenKey({ provider: 'corp', userId: 'u-tampered', downstream: 'orders' });
    const sealed = await raw.hgetBuffer(key, 'v');
    assert.ok(sealed);
    sealed[sealed.length - 1] ^= 0xff; // the GCM tag no longer verifies
    await raw.hset(key, 'v', sealed);
    const again = await get(1, 'u-tampered', 'orders');
    assert.equal(again.source, DownstreamTokenSource.DOWNSTREAM_TOKEN_SOURCE_EXCHANGED);
    assert.notEqual(again.accessToken, first.accessToken);
    // The subject record was not touched: GetValidSubjectToken still serves it.
    const subject = await call(broker(2).client, broker(2).client.getValidSubjectToken, {
      userId: 'u-tampered',
      provider: 'corp',
      minValidFor: undefined,
    });
    assert.equal(subject.accessToken, await subjectToken('u-tampered'));
  });

  it('deletes cached downstream tokens with RevokeSubjectToken', async () => {
    await loginThrough(broker(0).client, { userId: 'u-revoke' });
    await get(0, 'u-revoke', 'orders');
    await get(1, 'u-revoke', 'billing');
    const keys = ['orders', 'billing'].map((downstream) =>
      tokenKey({ provider: 'corp', userId: 'u-revoke', downstream }),
    );
    assert.equal(await raw.exists(...keys), 2);
    const revoked = await call(broker(2).client, broker(2).client.revokeSubjectToken, {
      userId: 'u-revoke',
      provider: 'corp',
      revokeAtIdp: false,
    });
    assert.equal(revoked.deleted, true);
    assert.equal(await raw.exists(...keys), 0);
    const err = await getError(3, 'u-revoke', 'orders');
    assert.equal(err.errorInfo.metadata.cause, 'NO_TOKEN');
  });

  it('never puts a subject or downstream token or the downstream client secret in Redis or the logs', async () => {
    for (const userId of ['u-aud', 'u-modes', 'storm-1', 'u-down', 'u-short']) await subjectToken(userId);
    assert.ok(seen.size > 10);
    const secrets = [...seen, provider.clients.post.secret, provider.clients.basic.secret];
    let cursor = '0';
    let scanned = 0;
    do {
      const [next, keys] = await raw.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        scanned += 1;
        const type = await raw.type(key);
        const values: Buffer[] =
          type === 'hash'
            ? Object.values(await raw.hgetallBuffer(key))
            : type === 'string'
              ? [(await raw.getBuffer(key))!]
              : [];
        for (const value of values) {
          for (const secret of secrets) {
            assert.ok(!value.includes(Buffer.from(secret)), `plaintext secret in ${key}`);
          }
        }
      }
    } while (cursor !== '0');
    assert.ok(scanned > 0);
    const output = brokers.map((b) => b.output()).join('\n');
    for (const secret of secrets) assert.ok(!output.includes(secret), 'a secret reached the logs');
    // The audit trail has the exchanges, with the downstream named.
    const audit = output
      .split('\n')
      .filter((line) => line.includes('"event":"token_exchange"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(audit.some((e) => e.outcome === 'ok' && e.downstream === 'orders' && e.provider === 'corp'));
    const releases = output
      .split('\n')
      .filter((line) => line.includes('"event":"downstream_token_release"'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
    assert.ok(
      releases.some(
        (e) => e.outcome === 'ok' && e.downstream === 'billing' && e.rpc === 'GetDownstreamToken',
      ),
    );
    assert.ok(releases.some((e) => e.outcome === 'EXCHANGE_REJECTED' && e.downstream === 'payroll'));
    assert.ok(
      audit.some(
        (e) => e.outcome === 'rejected' && e.downstream === 'payroll' && e.cause === 'invalid_target',
      ),
    );
  });
});
