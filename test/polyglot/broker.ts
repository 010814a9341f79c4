/**
 * A real broker for the polyglot clients: a real redis-server, the Redis TokenStore (sealed
 * records), the real token service (src/broker/get-token.ts) and the real gRPC server
 * (validation, error mapping, google.rpc.Status trailer) on 127.0.0.1:0. One user's token is
 * seeded through the store, as CompleteLogin would have written it.
 */
import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { createTokenService, type TokenService } from '../../src/broker/get-token.js';
import { notImplementedApi } from '../../src/broker/not-implemented.js';
import { createIdpRegistry } from '../../src/idp/registry.js';
import { createStore, loadKeyRing, type TokenStore } from '../../src/store/index.js';
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
  let store: TokenStore | undefined;
  let tokens: TokenService | undefined;
  let server: TestServer | undefined;
  try {
    const keyRing = loadKeyRing(config.store);
    const logs = captureLogs('warn');
    store = createStore(config.store, keyRing, logs.logger);
    const idps = await createIdpRegistry(config, { logger: logs.logger });
    tokens = createTokenService({
      store,
      idps,
      storageEnabled: keyRing !== undefined && config.store.subject_tokens,
      lockLeaseMs: config.refresh.lock_lease,
      logger: logs.logger,
    });
    await connected(store);
    const userId = 'alice@example.com';
    const accessToken = `at-${randomBytes(24).toString('base64url')}`;
    const now = Date.now();
    const expiresAt = new Date(Math.floor(now / 1000) * 1000 + 3600_000);
    await store.putToken(
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
    server = await startTestServer({
      config,
      api: {
        ...notImplementedApi,
        getValidSubjectToken: tokens.getValidSubjectToken,
        revokeSubjectToken: tokens.revokeSubjectToken,
      },
    });
    const [s, st, t] = [server, store, tokens];
    return {
      address: s.address,
      userId,
      tokenSha256: createHash('sha256').update(accessToken).digest('hex'),
      expiresAt,
      server: s,
      redis,
      stop: async () => {
        await s.stop();
        await t.idle();
        await st.close();
        await redis.stop();
      },
    };
  } catch (err) {
    await server?.stop();
    await store?.close();
    await redis.stop();
    throw err;
  }
}
