import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { status } from '@grpc/grpc-js';
import { Redis } from 'ioredis';
import { createLoginFlow } from '../../src/broker/login.js';
import { notImplementedApi } from '../helpers/not-implemented.js';
import type { Config } from '../../src/config/load.js';
import {
  StorageOutcome,
  type CompleteLoginRequest,
  type CompleteLoginResponse,
} from '../../src/gen/credbroker/v1/broker.js';
import { createIdpRegistry } from '../../src/idp/registry.js';
import { createStore, loadKeyRing } from '../../src/store/index.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { TOKEN_KEY_PATTERN } from '../../src/store/keys.js';
import { call, callError } from '../helpers/grpc.js';
import { captureLogs, type CapturedLogs } from '../helpers/log-capture.js';
import { signIn } from '../helpers/login.js';
import {
  OTHER_REDIRECT_URI,
  startOidcProvider,
  TEST_REDIRECT_URI,
  type TestOidcProvider,
} from '../helpers/oidc-provider.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { startTestServer, testConfig, type TestServer } from '../helpers/server.js';
import { waitUntil } from '../helpers/wait.js';

const KEYS = `k1:${randomBytes(32).toString('base64')}`;

interface Harness {
  readonly ts: TestServer;
  readonly store: TokenStore;
  readonly config: Config;
  /** The flow's and the IdP clients' own logger (calls log through the server's). */
  readonly domainLogs: CapturedLogs;
  stop(): Promise<void>;
}

function yaml(
  op: TestOidcProvider,
  redisUrl: string,
  extra: { storage: boolean; stateTtl?: string },
): string {
  const c = op.clients;
  const common = `    redirect_uris: [${TEST_REDIRECT_URI}, ${OTHER_REDIRECT_URI}]
    allow_insecure_http: true
    timeout: 2s
`;
  return `store:
  subject_tokens: ${extra.storage}
  redis_url: ${redisUrl}
  command_timeout: 2s
  login_state_ttl: ${extra.stateTtl ?? '10m'}
providers:
  - id: corp
    issuer: ${op.issuer}
    client_id: ${c.basic.id}
    client_secret: ${c.basic.secret}
    client_auth: client_secret_basic
    scopes: [openid, email, profile]
${common}  - id: jwt
    issuer: ${op.issuer}
    client_id: ${c.jwt.id}
    client_auth: private_key_jwt
    private_key_file: ${c.jwt.privateKeyFile}
    private_key_id: ${c.jwt.kid}
${common}  - id: plain
    authorization_endpoint: ${op.endpoints.authorization}
    token_endpoint: ${op.endpoints.token}
    revocation_endpoint: ${op.endpoints.revocation}
    client_id: ${c.plain.id}
    client_secret: ${c.plain.secret}
    scopes: [api]
${common}`;
}

async function startBroker(
  op: TestOidcProvider,
  redis: RedisServer,
  options: { storage: boolean; stateTtl?: string },
): Promise<Harness> {
  const config = testConfig(yaml(op, redis.url, options), { CREDBROKER_KEYS: KEYS });
  const domainLogs = captureLogs();
  const keyRing = loadKeyRing(config.store);
  const store = createStore(config.store, keyRing, domainLogs.logger);
  // The Redis store connects in the background and fails fast until then: wait until it answers.
  await waitUntil(
    () =>
      store.ping().then(
        () => true,
        () => false,
      ),
    { what: 'the Redis store to connect' },
  );
  const idps = await createIdpRegistry(config, { logger: domainLogs.logger });
  const flow = createLoginFlow({
    store,
    idps,
    storageEnabled: config.store.subject_tokens && keyRing !== undefined,
    loginStateTtlMs: config.store.login_state_ttl,
    maxRecordTtlMs: config.store.max_record_ttl,
    logger: domainLogs.logger,
  });
  const ts = await startTestServer({ config, api: { ...notImplementedApi, ...flow } });
  return {
    ts,
    store,
    config,
    domainLogs,
    stop: async () => {
      await ts.stop();
      await store.close();
    },
  };
}

interface Started {
  readonly state: string;
  readonly authorizationUrl: string;
}

async function startLogin(h: Harness, provider = 'corp', redirectUri = TEST_REDIRECT_URI): Promise<Started> {
  const res = await call(h.ts.client, h.ts.client.startLogin, {
    provider,
    redirectUri,
    scopes: [],
    loginHint: '',
  });
  return { state: res.state, authorizationUrl: res.authorizationUrl };
}

function completeRequest(fields: Partial<CompleteLoginRequest>): CompleteLoginRequest {
  return {
    provider: 'corp',
    code: '',
    redirectUri: TEST_REDIRECT_URI,
    state: '',
    codeVerifier: '',
    nonce: '',
    userId: '',
    ...fields,
  };
}

/** StartLogin → sign in at the provider's pages → the code it redirected with. */
async function loginUpToCode(h: Harness, provider = 'corp', login = 'alice') {
  const started = await startLogin(h, provider);
  const response = await signIn(started.authorizationUrl, { login });
  assert.equal(response.state, started.state);
  assert.ok(response.code, `the provider sent no code (${response.error ?? 'no error'})`);
  return { ...started, code: response.code };
}

/**
 * A front end that runs its own PKCE and nonce: it builds its authorization request itself (here
 * from StartLogin's URL with its own code_challenge and nonce) and later hands the broker
 * code_verifier + nonce instead of the state.
 */
async function frontEndPkceLogin(h: Harness): Promise<{ code: string; verifier: string; nonce: string }> {
  const started = await startLogin(h);
  const verifier = randomBytes(32).toString('base64url');
  const nonce = randomBytes(16).toString('base64url');
  const url = new URL(started.authorizationUrl);
  url.searchParams.set('code_challenge', createHash('sha256').update(verifier).digest('base64url'));
  url.searchParams.set('nonce', nonce);
  const { code } = await signIn(url.href, { login: 'alice' });
  assert.ok(code, 'the provider sent no code');
  return { code, verifier, nonce };
}

async function completeLogin(h: Harness, request: CompleteLoginRequest): Promise<CompleteLoginResponse> {
  return call(h.ts.client, h.ts.client.completeLogin, request);
}

/** Every key and value the broker left in Redis, as raw bytes. */
async function redisDump(redisUrl: string): Promise<{ keys: string[]; bytes: Buffer }> {
  const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await client.connect();
  try {
    const keys = await client.keys('credbroker:*');
    const values: Buffer[] = [];
    for (const key of keys) {
      const type = await client.type(key);
      if (type === 'string') values.push((await client.getBuffer(key)) ?? Buffer.alloc(0));
      else if (type === 'hash') values.push(...Object.values(await client.hgetallBuffer(key)));
    }
    return { keys, bytes: Buffer.concat(values) };
  } finally {
    client.disconnect();
  }
}

async function tokenKeys(redisUrl: string): Promise<string[]> {
  const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await client.connect();
  try {
    return await client.keys(TOKEN_KEY_PATTERN);
  } finally {
    client.disconnect();
  }
}

async function flushRedis(redisUrl: string): Promise<void> {
  const client = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 0 });
  await client.connect();
  await client.flushall();
  client.disconnect();
}

describe('Login against a real OpenID Provider, real Redis and the real gRPC server', function () {
  this.timeout(30_000);
  let op: TestOidcProvider;
  let redis: RedisServer;
  let h: Harness | undefined;
  let redisStopped = false;
  const stopRedis = async () => {
    redisStopped = true;
    await redis.stop();
  };

  before(async () => {
    redis = await startRedis();
    op = await startOidcProvider();
  });
  after(async () => {
    await op?.close();
    await redis?.stop();
  });
  afterEach(async () => {
    op.setTokenDelay(0);
    op.setIdTokenAudience(undefined);
    await op.start();
    if (redisStopped) {
      await redis.start();
      redisStopped = false;
    }
    await h?.stop();
    h = undefined;
    await flushRedis(redis.url);
  });

  describe('with token storage on', () => {
    beforeEach(async () => {
      h = await startBroker(op, redis, { storage: true });
    });

    it('StartLogin → sign in → CompleteLogin returns the identity and stores exactly the issued tokens', async () => {
      const { code, state } = await loginUpToCode(h!);
      const res = await completeLogin(h!, completeRequest({ code, state }));
      assert.equal(res.userId, 'alice');
      assert.equal(res.storage, StorageOutcome.STORAGE_OUTCOME_STORED);
      assert.equal(res.identity?.issuer, op.issuer);
      assert.equal(res.identity?.subject, 'alice');
      assert.equal(res.identity?.email, 'alice@example.com');
      assert.equal(res.identity?.emailVerified, true);
      assert.equal(res.identity?.name, 'Alice Liddell');
      // The verified ID-token claims travel back as a plain Struct of the claims.
      assert.equal(res.identity?.claims?.aud, op.clients.basic.id);
      assert.equal(res.identity?.claims?.sub, 'alice');
      assert.equal(res.identity?.claims?.fields, undefined);

      const issued = op.issued.at(-1)!;
      assert.equal(issued.grant_type, 'authorization_code');
      const record = await h!.store.getToken({ provider: 'corp', userId: 'alice' });
      assert.ok(record, 'a record is stored');
      assert.equal(record.accessToken, issued.access_token);
      assert.equal(record.refreshToken, issued.refresh_token);
      assert.ok(issued.refresh_token, 'storage on asked for offline access');
      assert.equal(record.idToken, issued.id_token);
      assert.equal(record.subject, 'alice');
      const expected = Date.now() + issued.expires_in! * 1000;
      assert.ok(Math.abs(record.expiresAt - expected) < 5000);
      assert.equal(res.accessTokenExpiresAt?.getTime(), record.expiresAt);

      const raw = await redisDump(redis.url);
      assert.equal(raw.keys.filter((k) => k.endsWith(':token')).length, 1);
      for (const secret of [issued.access_token, issued.refresh_token!, issued.id_token!, code, state]) {
        assert.ok(!raw.bytes.includes(Buffer.from(secret)), 'Redis holds no plaintext token, code or state');
      }
    });

    it('works with private_key_jwt client authentication', async () => {
      const { code, state } = await loginUpToCode(h!, 'jwt');
      const res = await completeLogin(
        h!,
        completeRequest({ provider: 'jwt', code, state, userId: 'alice-jwt' }),
      );
      assert.equal(res.storage, StorageOutcome.STORAGE_OUTCOME_STORED);
      const record = await h!.store.getToken({ provider: 'jwt', userId: 'alice-jwt' });
      assert.equal(record?.accessToken, op.issued.at(-1)!.access_token);
    });

    it('logs in through a plain OAuth 2.0 provider (explicit endpoints, no ID token)', async () => {
      const { code, state } = await loginUpToCode(h!, 'plain', 'bob');
      const url = new URL((await startLogin(h!, 'plain')).authorizationUrl);
      assert.equal(url.searchParams.get('nonce'), null);
      const res = await completeLogin(h!, completeRequest({ provider: 'plain', code, state, userId: 'bob' }));
      assert.equal(res.storage, StorageOutcome.STORAGE_OUTCOME_STORED);
      assert.equal(res.userId, 'bob');
      const issued = op.issued.at(-1)!;
      assert.equal(issued.id_token, undefined);
      const record = await h!.store.getToken({ provider: 'plain', userId: 'bob' });
      assert.equal(record?.accessToken, issued.access_token);
      assert.equal(record?.refreshToken, issued.refresh_token);
      assert.equal(record?.idToken, undefined);
    });

    it('answers LOGIN_STATE_INVALID for a reused state, and the first login stands', async () => {
      const { code, state } = await loginUpToCode(h!);
      await completeLogin(h!, completeRequest({ code, state }));
      const grants = op.grantsServed('authorization_code');
      const err = await callError(h!.ts.client, h!.ts.client.completeLogin, completeRequest({ code, state }));
      assert.equal(err.code, status.FAILED_PRECONDITION);
      assert.equal(err.errorInfo.reason, 'LOGIN_STATE_INVALID');
      assert.equal(op.grantsServed('authorization_code'), grants, 'no second exchange');
    });

    it('answers INVALID_REQUEST naming redirect_uri for one outside the allowlist', async () => {
      const err = await callError(h!.ts.client, h!.ts.client.startLogin, {
        provider: 'corp',
        redirectUri: 'https://evil.example.com/cb',
        scopes: [],
        loginHint: '',
      });
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.equal(err.errorInfo.reason, 'INVALID_REQUEST');
      assert.deepEqual(
        err.badRequest?.fieldViolations.map((v) => v.field),
        ['redirect_uri'],
      );
    });

    it('answers INVALID_REQUEST naming provider for an unknown provider', async () => {
      const err = await callError(h!.ts.client, h!.ts.client.startLogin, {
        provider: 'nope',
        redirectUri: TEST_REDIRECT_URI,
        scopes: [],
        loginHint: '',
      });
      assert.equal(err.code, status.INVALID_ARGUMENT);
      assert.equal(err.errorInfo.reason, 'INVALID_REQUEST');
      assert.deepEqual(
        err.badRequest?.fieldViolations.map((v) => v.field),
        ['provider'],
      );
    });

    it('answers LOGIN_STATE_INVALID for a state used with another redirect_uri, and consumes it', async () => {
      const { code, state } = await loginUpToCode(h!);
      const err = await callError(
        h!.ts.client,
        h!.ts.client.completeLogin,
        completeRequest({ code, state, redirectUri: OTHER_REDIRECT_URI }),
      );
      assert.equal(err.errorInfo.reason, 'LOGIN_STATE_INVALID');
      const again = await callError(
        h!.ts.client,
        h!.ts.client.completeLogin,
        completeRequest({ code, state }),
      );
      assert.equal(again.errorInfo.reason, 'LOGIN_STATE_INVALID');
      assert.deepEqual(await tokenKeys(redis.url), []);
    });

    it('answers LOGIN_REJECTED with the verification cause for an ID token with a wrong nonce', async () => {
      // A front end that runs its own PKCE and nonce: it builds its authorization request itself.
      const { code, verifier, nonce } = await frontEndPkceLogin(h!);
      const err = await callError(
        h!.ts.client,
        h!.ts.client.completeLogin,
        completeRequest({ code, codeVerifier: verifier, nonce: `${nonce}-wrong` }),
      );
      assert.equal(err.code, status.FAILED_PRECONDITION);
      assert.equal(err.errorInfo.reason, 'LOGIN_REJECTED');
      assert.equal(err.errorInfo.metadata.cause, 'INVALID_IDP_RESPONSE');
      assert.deepEqual(await tokenKeys(redis.url), []);
    });

    it('accepts the front end own code_verifier and the right nonce (control for the test above)', async () => {
      const { code, verifier, nonce } = await frontEndPkceLogin(h!);
      const res = await completeLogin(h!, completeRequest({ code, codeVerifier: verifier, nonce }));
      assert.equal(res.storage, StorageOutcome.STORAGE_OUTCOME_STORED);
      assert.ok(JSON.stringify(res.identity?.claims).includes(`"nonce":"${nonce}"`));
    });

    it('answers LOGIN_REJECTED for an ID token issued for another audience, and stores nothing', async () => {
      const { code, state } = await loginUpToCode(h!);
      op.setIdTokenAudience('another-client');
      const err = await callError(h!.ts.client, h!.ts.client.completeLogin, completeRequest({ code, state }));
      assert.equal(err.code, status.FAILED_PRECONDITION);
      assert.equal(err.errorInfo.reason, 'LOGIN_REJECTED');
      assert.equal(err.errorInfo.metadata.cause, 'INVALID_IDP_RESPONSE');
      assert.deepEqual(await tokenKeys(redis.url), []);
    });

    it('answers LOGIN_REJECTED with idpError invalid_grant for a code the provider refuses', async () => {
      const { code } = await loginUpToCode(h!);
      const other = await loginUpToCode(h!);
      // The code of one login with the state (and so the PKCE verifier) of another.
      const err = await callError(
        h!.ts.client,
        h!.ts.client.completeLogin,
        completeRequest({ code, state: other.state }),
      );
      assert.equal(err.code, status.FAILED_PRECONDITION);
      assert.equal(err.errorInfo.reason, 'LOGIN_REJECTED');
      assert.equal(err.errorInfo.metadata.idpError, 'invalid_grant');
      assert.ok(!err.message.includes(code));
      assert.deepEqual(await tokenKeys(redis.url), []);
    });

    it('answers UNAVAILABLE / IDP_UNAVAILABLE with RetryInfo when the provider is down, and stores nothing', async () => {
      const { code, state } = await loginUpToCode(h!);
      await op.stop();
      const err = await callError(h!.ts.client, h!.ts.client.completeLogin, completeRequest({ code, state }));
      assert.equal(err.code, status.UNAVAILABLE);
      assert.equal(err.errorInfo.reason, 'IDP_UNAVAILABLE');
      assert.ok(err.retryInfo, 'RetryInfo present');
      await op.start();
      const reused = await callError(
        h!.ts.client,
        h!.ts.client.completeLogin,
        completeRequest({ code, state }),
      );
      assert.equal(
        reused.errorInfo.reason,
        'LOGIN_STATE_INVALID',
        'the state was consumed by the failed attempt',
      );
      assert.deepEqual(await tokenKeys(redis.url), []);
    });

    it('still logs the user in with storage FAILED when Redis is down (front-end PKCE path)', async () => {
      const { code, verifier, nonce } = await frontEndPkceLogin(h!);
      await stopRedis();
      const res = await completeLogin(h!, completeRequest({ code, codeVerifier: verifier, nonce }));
      assert.equal(res.storage, StorageOutcome.STORAGE_OUTCOME_FAILED);
      assert.equal(res.identity?.subject, 'alice');
      const errors = h!.ts.logs.records().filter((r) => r.level === 'error');
      assert.ok(
        errors.some((r) => /storing the subject token/.test(String(r.msg))),
        'the failed write is logged as an error',
      );
    });

    it('still logs the user in with storage FAILED when Redis goes down during the exchange', async () => {
      const { code, state } = await loginUpToCode(h!);
      op.setTokenDelay(1500);
      const requests = op.tokenRequestsReceived();
      const pending = completeLogin(h!, completeRequest({ code, state }));
      // Once the exchange waits at the token endpoint, the state has been consumed.
      await waitUntil(() => op.tokenRequestsReceived() > requests, { what: 'the code exchange' });
      await stopRedis();
      const res = await pending;
      assert.equal(res.storage, StorageOutcome.STORAGE_OUTCOME_FAILED);
      assert.equal(res.userId, 'alice');
    });

    it('never logs a code, verifier, state or token', async () => {
      const { code, state } = await loginUpToCode(h!);
      await completeLogin(h!, completeRequest({ code, state }));
      const failed = await loginUpToCode(h!);
      op.setIdTokenAudience('another-client');
      await callError(
        h!.ts.client,
        h!.ts.client.completeLogin,
        completeRequest({ code: failed.code, state: failed.state }),
      );
      op.setIdTokenAudience(undefined);
      const own = await frontEndPkceLogin(h!);
      await callError(
        h!.ts.client,
        h!.ts.client.completeLogin,
        completeRequest({ code: own.code, codeVerifier: own.verifier, nonce: `${own.nonce}-wrong` }),
      );
      const text = `${h!.ts.logs.text()}\n${h!.domainLogs.text()}`;
      assert.ok(h!.ts.logs.lines.length > 0);
      const secrets = [code, state, failed.code, failed.state, own.code, own.verifier, own.nonce];
      for (const issued of op.issued) {
        secrets.push(issued.access_token);
        if (issued.refresh_token) secrets.push(issued.refresh_token);
        if (issued.id_token) secrets.push(issued.id_token);
      }
      for (const secret of secrets) assert.ok(!text.includes(secret), 'a secret reached the log');
      assert.ok(!text.includes(op.clients.basic.secret), 'the client secret reached the log');
    });
  });

  describe('with token storage off', () => {
    beforeEach(async () => {
      h = await startBroker(op, redis, { storage: false });
    });

    it('logs in with storage DISABLED and Redis holds no token record', async () => {
      const started = await startLogin(h!);
      assert.equal(
        new URL(started.authorizationUrl).searchParams.get('prompt'),
        null,
        'no offline access asked',
      );
      const { code } = await signIn(started.authorizationUrl, { login: 'alice' });
      const res = await completeLogin(h!, completeRequest({ code: code!, state: started.state }));
      assert.equal(res.storage, StorageOutcome.STORAGE_OUTCOME_DISABLED);
      assert.equal(res.identity?.subject, 'alice');
      assert.deepEqual((await redisDump(redis.url)).keys, [], 'no record, and the login state was consumed');
    });
  });

  describe('with a short login-state lifetime', () => {
    beforeEach(async () => {
      h = await startBroker(op, redis, { storage: true, stateTtl: '300ms' });
    });

    it('answers LOGIN_STATE_INVALID for an expired state', async () => {
      const { code, state } = await loginUpToCode(h!);
      const loginKeys = async () => (await redisDump(redis.url)).keys.filter((k) => k.includes(':login:'));
      await waitUntil(async () => (await loginKeys()).length === 0, {
        intervalMs: 25,
        what: 'the 300 ms login state to expire in Redis',
      });
      const err = await callError(h!.ts.client, h!.ts.client.completeLogin, completeRequest({ code, state }));
      assert.equal(err.code, status.FAILED_PRECONDITION);
      assert.equal(err.errorInfo.reason, 'LOGIN_STATE_INVALID');
      assert.deepEqual(await tokenKeys(redis.url), []);
    });
  });
});
