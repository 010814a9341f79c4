/**
 * The audit trail of a real `credbroker serve` process (real redis-server, real oidc-provider),
 * with the caller policy on: a login, a token released after a refresh at the IdP, a denial and
 * a revoke each leave one `audit` line naming the caller — and no token, key or user id in the
 * clear anywhere in the process output.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { credentials, Metadata, status, type Interceptor, InterceptingCall } from '@grpc/grpc-js';
import { loadConfig } from '../../src/config/load.js';
import { CredentialBrokerClient, TokenSource } from '../../src/gen/credbroker/v1/broker.js';
import { createLogger, userIdHash } from '../../src/logger.js';
import { hashApiKey } from '../../src/server/security/api-keys.js';
import { createStore, loadKeyRing } from '../../src/store/index.js';
import { deriveUserHashKey } from '../../src/log-keys.js';
import { runCli } from '../helpers/cli.js';
import type { TokenStore } from '../../src/core/token-store.js';
import {
  brokerEnv,
  loginThrough,
  startBrokerProcess,
  type BrokerProcess,
} from '../helpers/broker-process.js';
import { call, callError } from '../helpers/grpc.js';
import { startOidcProvider, TEST_REDIRECT_URI, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';

const WEB_KEY = `web-${randomBytes(12).toString('hex')}`;
const ORDERS_KEY = `orders-${randomBytes(12).toString('hex')}`;
const USER = 'audit-user@example.com';
const STORE_KEY = randomBytes(32);
const LOG_KEY = randomBytes(32).toString('base64');

/** A client that sends `authorization: Bearer <key>` on every call (works on plaintext channels). */
function keyedClient(address: string, key: string): CredentialBrokerClient {
  const withKey: Interceptor = (options, next) =>
    new InterceptingCall(next(options), {
      start: (metadata: Metadata, listener, nextStart) => {
        metadata.set('authorization', `Bearer ${key}`);
        nextStart(metadata, listener);
      },
    });
  return new CredentialBrokerClient(address, credentials.createInsecure(), { interceptors: [withKey] });
}

describe('audit trail of a serving broker (real Redis, real OpenID Provider)', function () {
  this.timeout(60_000);
  let dir: string;
  let redis: RedisServer;
  let provider: TestOidcProvider;
  let broker: BrokerProcess;
  let store: TokenStore;
  let env: Record<string, string>;
  const clients: CredentialBrokerClient[] = [];

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'credbroker-audit-'));
    const configFile = join(dir, 'credbroker.yaml');
    writeFileSync(
      configFile,
      `callers:
  - name: web-login
    api_key_sha256: ${hashApiKey(WEB_KEY)}
    allow: [StartLogin, CompleteLogin, RevokeSubjectToken]
  - name: orders-service
    api_key_sha256: ${hashApiKey(ORDERS_KEY)}
    allow: [GetValidSubjectToken]
    providers: [corp]
`,
    );
    [redis, provider] = await Promise.all([startRedis(), startOidcProvider()]);
    env = {
      ...brokerEnv({ redisUrl: redis.url, provider, keys: `k1:${STORE_KEY.toString('base64')}` }),
      CREDBROKER_CONFIG: configFile,
      // API keys over plaintext loopback need insecure (the test has no TLS here).
      CREDBROKER_INSECURE: 'true',
      CREDBROKER_LOG_USER_HASH_KEY: LOG_KEY,
    };
    broker = await startBrokerProcess(env);
    const config = loadConfig({ env });
    store = createStore(config.store, loadKeyRing(config.store), createLogger({ level: 'silent' }));
  });

  after(async () => {
    for (const c of clients) c.close();
    await store?.close();
    await broker?.stop();
    await provider?.close();
    await redis?.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('records login, refresh, token release, denial and revoke with caller, RPC, provider, user hash and request id', async () => {
    const web = keyedClient(broker.address, WEB_KEY);
    const orders = keyedClient(broker.address, ORDERS_KEY);
    clients.push(web, orders);

    provider.setAccessTokenTtl(30); // inside the 60 s skew: the next get refreshes
    try {
      await loginThrough(web, { userId: USER });
    } finally {
      provider.setAccessTokenTtl(3600);
    }
    const seen = new Set<string>();
    const remember = async () => {
      const rec = await store.getToken({ provider: 'corp', userId: USER });
      for (const t of [rec?.accessToken, rec?.refreshToken, rec?.idToken]) if (t) seen.add(t);
    };
    await remember();

    const md = new Metadata();
    md.set('x-request-id', 'audit-get-1');
    const token = await call(
      orders,
      orders.getValidSubjectToken,
      { userId: USER, provider: 'corp', minValidFor: undefined },
      { metadata: md, deadlineMs: 20_000 },
    );
    assert.equal(token.source, TokenSource.TOKEN_SOURCE_REFRESHED);
    seen.add(token.accessToken);
    await remember();

    const denied = await callError(orders, orders.startLogin, {
      provider: 'corp',
      redirectUri: TEST_REDIRECT_URI,
      scopes: [],
      loginHint: '',
    });
    assert.equal(denied.code, status.PERMISSION_DENIED);
    await call(web, web.revokeSubjectToken, { userId: USER, provider: 'corp', revokeAtIdp: false });

    await broker.stop();
    const output = broker.output();
    const audit = output
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>)
      .filter((r) => r.name === 'audit');
    const summary = audit.map(
      (r) => `${String(r.event)} ${String(r.outcome)} ${String(r.caller)} ${String(r.rpc)}`,
    );
    assert.deepEqual(summary, [
      'login_start ok web-login StartLogin',
      'login_complete ok web-login CompleteLogin',
      'refresh ok orders-service GetValidSubjectToken',
      'token_release ok orders-service GetValidSubjectToken',
      'denied CALLER_FORBIDDEN orders-service StartLogin',
      'revoke ok web-login RevokeSubjectToken',
    ]);
    // The handle is keyed (log_user_hash_key wins over the store key): not the plain hash anyone
    // could compute from a guessed id, and what `credbroker hash-user-id` prints first.
    const user = userIdHash(USER, deriveUserHashKey(Buffer.from(LOG_KEY, 'utf8')));
    assert.notEqual(user, userIdHash(USER, undefined));
    assert.notEqual(user, userIdHash(USER, deriveUserHashKey(STORE_KEY)));
    const printed = await runCli(['hash-user-id', '--user', USER], env);
    assert.equal(printed.code, 0, printed.stderr);
    assert.equal(printed.stdout.split('\n')[0], `${user}  log_user_hash_key`);
    assert.ok(!output.includes(LOG_KEY), 'the log key is not in the output');
    for (const r of audit.filter((r) => r.event !== 'login_start' && r.event !== 'denied')) {
      assert.equal(r.user, user, `${String(r.event)} names the user (hashed)`);
      assert.equal(r.provider, 'corp');
      assert.equal(typeof r.requestId, 'string');
    }
    const refresh = audit.find((r) => r.event === 'refresh')!;
    const release = audit.find((r) => r.event === 'token_release')!;
    assert.equal(refresh.requestId, 'audit-get-1');
    assert.equal(release.requestId, 'audit-get-1');
    assert.equal(audit.find((r) => r.event === 'denied')!.cause, 'RPC_NOT_ALLOWED');

    assert.ok(seen.size >= 3, 'collected the tokens to look for');
    for (const secret of [...seen, WEB_KEY, ORDERS_KEY, USER]) {
      assert.ok(!output.includes(secret), `process output contains ${secret.slice(0, 12)}…`);
    }
  });
});
