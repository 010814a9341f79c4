/**
 * A real broker for the polyglot clients: a real redis-server, the production composition
 * (createApp: Redis TokenStore with sealed records, IdP registry, token service) behind the real
 * gRPC server (validation, error mapping, google.rpc.Status trailer) on 127.0.0.1:0. One user's
 * token is seeded through the store, as CompleteLogin would have written it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createApp, type App } from '../../src/app.js';
import { createStore, loadKeyRing } from '../../src/store/index.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { captureLogs } from '../helpers/log-capture.js';
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

export interface PolyglotBroker {
  readonly address: string;
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
  const redis = await startRedis();
  const env = {
    CREDBROKER_REDIS_URL: redis.url,
    CREDBROKER_STORE_SUBJECT_TOKENS: 'true',
    CREDBROKER_KEYS: `k1:${randomBytes(32).toString('base64')}`,
    CREDBROKER_STORE_COMMAND_TIMEOUT: '300ms',
  };
  const config = testConfig(PROVIDER_YAML, env);
  const logs = captureLogs('warn');
  let seeder: TokenStore | undefined;
  let app: App | undefined;
  let server: TestServer | undefined;
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
    const [s, a, st] = [server, app, seeder];
    return {
      address: s.address,
      userId,
      tokenSha256: createHash('sha256').update(accessToken).digest('hex'),
      expiresAt,
      server: s,
      redis,
      stop: async () => {
        await s.stop();
        await closeApp(a);
        await st.close();
        await redis.stop();
      },
    };
  } catch (err) {
    await server?.stop();
    await closeApp(app);
    await seeder?.close();
    await redis.stop();
    throw err;
  }
}
