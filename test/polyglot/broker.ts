/**
 * A real broker for the polyglot clients: a real redis-server, the production composition
 * (createApp: Redis TokenStore with sealed records, IdP registry, token service) behind the real
 * gRPC server (validation, error mapping, google.rpc.Status trailer) on 127.0.0.1:0. One user's
 * token is seeded through the store, as CompleteLogin would have written it.
 *
 * For GetDownstreamToken a second provider is the in-process oidc-provider with its token-exchange
 * grant: a user logs in through the broker (a real code, a real access token), and the broker
 * exchanges that token at the IdP for the configured downstreams. A second gRPC server on the
 * same composition enforces a caller policy (an API key allowed one downstream only).
 */
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createApp, type App } from '../../src/app.js';
import { createStore, loadKeyRing } from '../../src/store/index.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { hashApiKey } from '../../src/server/security/api-keys.js';
import { loginThrough } from '../helpers/broker-process.js';
import { captureLogs } from '../helpers/log-capture.js';
import { startOidcProvider, TEST_REDIRECT_URI, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { startTestServer, testConfig, type TestServer } from '../helpers/server.js';

export const PROVIDER = 'corp';
// Explicit endpoints (no discovery): the seeded token is valid for an hour, the IdP is never called.
const PROVIDER_YAML = `providers:
  - id: ${PROVIDER}
    authorization_endpoint: https://login.example.com/authorize
    token_endpoint: https://login.example.com/token
    client_id: c
    client_secret: s
    redirect_uris: [https://app.example.com/cb]
`;

/** A user whose token expires inside the skew and who has no refresh token. */
export const EXPIRING_USER = 'bob@example.com';

/** The provider backed by the in-process oidc-provider, with downstream APIs. */
export const EXCHANGE_PROVIDER = 'op';
/** A downstream the test IdP exchanges tokens for. */
export const DOWNSTREAM = 'orders';
export const DOWNSTREAM_AUDIENCE = 'https://orders.example.test';
/** A downstream the test IdP refuses: its resource is not one the IdP knows (invalid_target). */
export const REFUSED_DOWNSTREAM = 'ledger';
/** The user logged in through the broker at the test IdP. */
export const EXCHANGE_USER = 'carol@example.com';

function exchangeProviderYaml(idp: TestOidcProvider): string {
  return `  - id: ${EXCHANGE_PROVIDER}
    issuer: ${idp.issuer}
    client_id: ${idp.clients.basic.id}
    client_secret: ${idp.clients.basic.secret}
    redirect_uris: [${TEST_REDIRECT_URI}]
    scopes: [openid, profile, offline_access]
    allow_insecure_http: true
    downstreams:
      - id: ${DOWNSTREAM}
        audience: ${DOWNSTREAM_AUDIENCE}
        scopes: [api]
      - id: ${REFUSED_DOWNSTREAM}
        audience: https://ledger.example.test
        scopes: [api]
`;
}

export interface PolyglotBroker {
  readonly address: string;
  /** The same broker behind a caller policy: `apiKey` may call GetDownstreamToken for DOWNSTREAM only. */
  readonly policyAddress: string;
  readonly apiKey: string;
  readonly idp: TestOidcProvider;
  readonly userId: string;
  /** SHA-256 hex of the seeded access token (the clients print fingerprints, never tokens). */
  readonly tokenSha256: string;
  readonly expiresAt: Date;
  readonly server: TestServer;
  readonly redis: RedisServer;
  stop(): Promise<void>;
}

/** Waits for the store's connection (it connects in the background and queues nothing offline). */
async function connected(store: TokenStore): Promise<void> {
  const until = Date.now() + 10_000;
  for (;;) {
    try {
      return await store.ping();
    } catch (err) {
      if (Date.now() > until) throw err;
      await sleep(25);
    }
  }
}

export async function startPolyglotBroker(): Promise<PolyglotBroker> {
  const [redis, idp] = await Promise.all([startRedis(), startOidcProvider()]);
  const env = {
    CREDBROKER_REDIS_URL: redis.url,
    CREDBROKER_STORE_SUBJECT_TOKENS: 'true',
    CREDBROKER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    CREDBROKER_STORE_COMMAND_TIMEOUT: '300ms',
  };
  const config = testConfig(PROVIDER_YAML + exchangeProviderYaml(idp), env);
  const apiKey = randomBytes(24).toString('base64url');
  const policyConfig = testConfig(
    `${PROVIDER_YAML}${exchangeProviderYaml(idp)}insecure: true
callers:
  - name: orders-backend
    api_key_sha256: ${hashApiKey(apiKey)}
    allow: [GetDownstreamToken]
    providers: [${EXCHANGE_PROVIDER}]
    downstreams: [${DOWNSTREAM}]
`,
    env,
  );
  const logs = captureLogs('warn');
  let seeder: TokenStore | undefined;
  let app: App | undefined;
  let server: TestServer | undefined;
  let policyServer: TestServer | undefined;
  const closeApp = async (a: App | undefined) => {
    for (const resource of a?.resources ?? []) await resource.close();
  };
  try {
    // The token is written through a second store on the same Redis and key ring, as
    // CompleteLogin on another replica would have written it.
    seeder = createStore(config.store, loadKeyRing(config.store), logs.logger);
    await connected(seeder);
    const userId = 'alice@example.com';
    const accessToken = `at-${randomBytes(24).toString('base64url')}`;
    const now = Date.now();
    const expiresAt = new Date(Math.floor(now / 1000) * 1000 + 3600_000);
    await seeder.putToken(
      { provider: PROVIDER, userId },
      {
        accessToken,
        refreshToken: `rt-${randomBytes(24).toString('base64url')}`,
        tokenType: 'Bearer',
        expiresAt: expiresAt.getTime(),
        refreshExpiresAt: undefined,
        scopes: ['openid', 'profile'],
        idToken: undefined,
        obtainedVia: 'login',
        updatedAt: now,
        subject: 'sub-alice',
      },
      24 * 3600_000,
    );
    // Inside the 60 s refresh skew and nothing to refresh with: REAUTH_REQUIRED / NO_REFRESH_TOKEN.
    await seeder.putToken(
      { provider: PROVIDER, userId: EXPIRING_USER },
      {
        accessToken: `at-${randomBytes(24).toString('base64url')}`,
        refreshToken: undefined,
        tokenType: 'Bearer',
        expiresAt: now + 30_000,
        refreshExpiresAt: undefined,
        scopes: ['openid'],
        idToken: undefined,
        obtainedVia: 'login',
        updatedAt: now,
        subject: 'sub-bob',
      },
      3600_000,
    );
    // The production composition root (src/app.ts): key ring, Redis store, IdP registry, token service.
    app = await createApp(config, logs.logger);
    server = await startTestServer({ config, api: app.api });
    policyServer = await startTestServer({ config: policyConfig, api: app.api });
    // A real login at the test IdP through the broker: the stored subject token is the IdP's own.
    await loginThrough(server.client, {
      userId: EXCHANGE_USER,
      provider: EXCHANGE_PROVIDER,
      account: 'alice',
    });
    const [s, ps, a, st] = [server, policyServer, app, seeder];
    return {
      address: s.address,
      policyAddress: ps.address,
      apiKey,
      idp,
      userId,
      tokenSha256: createHash('sha256').update(accessToken).digest('hex'),
      expiresAt,
      server: s,
      redis,
      stop: async () => {
        await ps.stop();
        await s.stop();
        await closeApp(a);
        await st.close();
        await redis.stop();
        await idp.close();
      },
    };
  } catch (err) {
    await policyServer?.stop();
    await server?.stop();
    await closeApp(app);
    await seeder?.close();
    await redis.stop();
    await idp.close();
    throw err;
  }
}
