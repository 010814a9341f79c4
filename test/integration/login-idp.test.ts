import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { Config } from '../../src/config/load.js';
import { IdpError, type IdpClient } from '../../src/core/idp-client.js';
import { createIdpRegistry } from '../../src/idp/registry.js';
import { captureLogs } from '../helpers/log-capture.js';
import { signIn } from '../helpers/login.js';
import { startOidcProvider, TEST_REDIRECT_URI, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { testConfig } from '../helpers/server.js';

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function providersYaml(op: TestOidcProvider, timeout = '2s'): string {
  const c = op.clients;
  const common = `    redirect_uris: [${TEST_REDIRECT_URI}]
    allow_insecure_http: true
    timeout: ${timeout}
`;
  return `providers:
  - id: basic
    issuer: ${op.issuer}
    client_id: ${c.basic.id}
    client_secret: ${c.basic.secret}
    scopes: [openid, email, profile]
${common}  - id: post
    issuer: ${op.issuer}
    client_id: ${c.post.id}
    client_secret: ${c.post.secret}
    client_auth: client_secret_post
${common}  - id: jwt
    issuer: ${op.issuer}
    client_id: ${c.jwt.id}
    client_auth: private_key_jwt
    private_key_file: ${c.jwt.privateKeyFile}
    private_key_id: ${c.jwt.kid}
${common}  - id: public
    issuer: ${op.issuer}
    client_id: ${c.public.id}
    client_auth: none
${common}  - id: plain
    authorization_endpoint: ${op.endpoints.authorization}
    token_endpoint: ${op.endpoints.token}
    revocation_endpoint: ${op.endpoints.revocation}
    client_id: ${c.plain.id}
    client_secret: ${c.plain.secret}
    scopes: [api]
${common}`;
}

interface Started {
  readonly url: string;
  readonly state: string;
  readonly nonce: string;
  readonly verifier: string;
}

async function start(idp: IdpClient, offline = true, scopes = idp.scopes): Promise<Started> {
  const { verifier, challenge } = pkce();
  const state = randomBytes(32).toString('base64url');
  const nonce = randomBytes(16).toString('base64url');
  const url = await idp.authorizationUrl({
    redirectUri: TEST_REDIRECT_URI,
    scopes,
    state,
    nonce,
    codeChallenge: challenge,
    loginHint: undefined,
    offline,
  });
  return { url, state, nonce, verifier };
}

async function loginCode(idp: IdpClient, offline = true): Promise<Started & { code: string }> {
  const started = await start(idp, offline);
  const response = await signIn(started.url, { login: 'alice' });
  assert.equal(response.state, started.state);
  assert.ok(response.code, `no code: ${response.error ?? ''}`);
  return { ...started, code: response.code };
}

async function rejects(promise: Promise<unknown>): Promise<IdpError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof IdpError, `expected IdpError, got ${String(err)}`);
    return err;
  }
  throw new Error('expected the IdP call to fail');
}

describe('IdpClient against a real OpenID Provider', () => {
  let op: TestOidcProvider;
  let config: Config;
  const logs = captureLogs();

  before(async () => {
    op = await startOidcProvider();
    config = testConfig(providersYaml(op));
  });
  after(async () => {
    await op.close();
  });
  afterEach(() => {
    op.setTokenDelay(0);
    op.failTokenEndpoint(undefined);
    op.setIdTokenAudience(undefined);
  });

  const registry = () => createIdpRegistry(config, { logger: logs.logger });

  it('builds an authorization URL with state, nonce, PKCE S256 and offline access', async () => {
    const idp = (await registry()).get('basic');
    const started = await start(idp, true);
    const url = new URL(started.url);
    assert.equal(url.origin + url.pathname, op.endpoints.authorization);
    const q = url.searchParams;
    assert.equal(q.get('state'), started.state);
    assert.equal(q.get('nonce'), started.nonce);
    assert.equal(q.get('code_challenge_method'), 'S256');
    assert.equal(q.get('redirect_uri'), TEST_REDIRECT_URI);
    assert.deepEqual(q.get('scope')!.split(' ').sort(), ['email', 'offline_access', 'openid', 'profile']);
    assert.equal(q.get('prompt'), 'consent');
    assert.equal(q.get('code_verifier'), null);
  });

  it('asks for no offline access when storage is off', async () => {
    const idp = (await registry()).get('basic');
    const q = new URL((await start(idp, false)).url).searchParams;
    assert.ok(!q.get('scope')!.split(' ').includes('offline_access'));
    assert.equal(q.get('prompt'), null);
  });

  for (const id of ['basic', 'post', 'jwt', 'public']) {
    it(`exchanges a real code with ${id} client authentication and verifies the ID token`, async () => {
      const idp = (await registry()).get(id);
      const before = op.grantsServed('authorization_code');
      const { code, state, nonce, verifier } = await loginCode(idp);
      const { tokens, identity } = await idp.exchangeCode({
        code,
        state,
        nonce,
        codeVerifier: verifier,
        redirectUri: TEST_REDIRECT_URI,
      });
      assert.equal(op.grantsServed('authorization_code'), before + 1);
      assert.equal(identity.issuer, op.issuer);
      assert.equal(identity.subject, 'alice');
      assert.equal(identity.email, 'alice@example.com');
      assert.equal(identity.emailVerified, true);
      assert.equal(identity.name, 'Alice Liddell');
      assert.equal(identity.claims.nonce, nonce);
      assert.ok(tokens.accessToken.length > 20);
      assert.ok(tokens.refreshToken);
      assert.ok(tokens.idToken);
      assert.equal(tokens.tokenType, 'Bearer');
      const remaining = tokens.expiresAt - Date.now();
      assert.ok(remaining > 3500_000 && remaining <= 3600_000, `expires in ${remaining} ms`);
      assert.ok(tokens.scopes?.includes('offline_access'));
    });
  }

  it('rejects an ID token whose nonce is not the expected one', async () => {
    const idp = (await registry()).get('basic');
    const { code, state, verifier } = await loginCode(idp);
    const err = await rejects(
      idp.exchangeCode({
        code,
        state,
        nonce: 'not-the-nonce',
        codeVerifier: verifier,
        redirectUri: TEST_REDIRECT_URI,
      }),
    );
    assert.equal(err.kind, 'rejected');
    assert.equal(err.invalidResponse, true);
    assert.equal(err.oauthError, undefined);
    assert.match((err.cause as Error).message, /nonce/);
  });

  it('rejects an ID token issued for another audience, though signed by the provider', async () => {
    const idp = (await registry()).get('basic');
    const { code, state, nonce, verifier } = await loginCode(idp);
    op.setIdTokenAudience('someone-else');
    const err = await rejects(
      idp.exchangeCode({ code, state, nonce, codeVerifier: verifier, redirectUri: TEST_REDIRECT_URI }),
    );
    assert.equal(err.kind, 'rejected');
    assert.equal(err.invalidResponse, true);
    assert.match((err.cause as Error).message, /aud/);
  });

  it('reports a reused code as rejected with invalid_grant only', async () => {
    const idp = (await registry()).get('basic');
    const exchange = await loginCode(idp);
    const input = { ...exchange, codeVerifier: exchange.verifier, redirectUri: TEST_REDIRECT_URI };
    await idp.exchangeCode(input);
    const err = await rejects(idp.exchangeCode(input));
    assert.equal(err.kind, 'rejected');
    assert.equal(err.oauthError, 'invalid_grant');
    assert.ok(!err.message.includes(exchange.code));
    assert.ok(!String((err.cause as Error).message).includes('error_description'));
  });

  it('reports a wrong PKCE verifier as invalid_grant', async () => {
    const idp = (await registry()).get('basic');
    const { code, state, nonce } = await loginCode(idp);
    const err = await rejects(
      idp.exchangeCode({ code, state, nonce, codeVerifier: pkce().verifier, redirectUri: TEST_REDIRECT_URI }),
    );
    assert.equal(err.oauthError, 'invalid_grant');
  });

  it('maps 503 with Retry-After to unavailable and honours the delay', async () => {
    const idp = (await registry()).get('basic');
    const { code, state, nonce, verifier } = await loginCode(idp);
    op.failTokenEndpoint({ status: 503, retryAfterSeconds: 7 });
    const err = await rejects(
      idp.exchangeCode({ code, state, nonce, codeVerifier: verifier, redirectUri: TEST_REDIRECT_URI }),
    );
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.retryAfterMs, 7000);
  });

  it('maps 429 with an OAuth body to unavailable', async () => {
    const idp = (await registry()).get('basic');
    const { code, state, nonce, verifier } = await loginCode(idp);
    op.failTokenEndpoint({ status: 429, retryAfterSeconds: 2, error: 'slow_down' });
    const err = await rejects(
      idp.exchangeCode({ code, state, nonce, codeVerifier: verifier, redirectUri: TEST_REDIRECT_URI }),
    );
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.retryAfterMs, 2000);
  });

  it('times out a slow token endpoint after the provider timeout', async () => {
    const slow = testConfig(providersYaml(op, '300ms'));
    const idp = (await createIdpRegistry(slow, { logger: logs.logger })).get('basic');
    const { code, state, nonce, verifier } = await loginCode(idp);
    op.setTokenDelay(2000);
    const err = await rejects(
      idp.exchangeCode({ code, state, nonce, codeVerifier: verifier, redirectUri: TEST_REDIRECT_URI }),
    );
    assert.equal(err.kind, 'unavailable');
  });

  it('aborts with the caller signal', async () => {
    const idp = (await registry()).get('basic');
    const { code, state, nonce, verifier } = await loginCode(idp);
    op.setTokenDelay(2000);
    const err = await rejects(
      idp.exchangeCode(
        { code, state, nonce, codeVerifier: verifier, redirectUri: TEST_REDIRECT_URI },
        AbortSignal.timeout(100),
      ),
    );
    assert.equal(err.kind, 'unavailable');
  });

  it('discovers again after the provider was down', async () => {
    const idp = (await registry()).get('basic');
    await op.stop();
    try {
      const err = await rejects(start(idp));
      assert.equal(err.kind, 'unavailable');
    } finally {
      await op.start();
    }
    const started = await start(idp);
    assert.ok(started.url.startsWith(op.endpoints.authorization));
  });

  it('refreshes with rotation and revokes at the provider', async () => {
    const idp = (await registry()).get('basic');
    const { code, state, nonce, verifier } = await loginCode(idp);
    const { tokens } = await idp.exchangeCode({
      code,
      state,
      nonce,
      codeVerifier: verifier,
      redirectUri: TEST_REDIRECT_URI,
    });
    const before = op.grantsServed('refresh_token');
    const refreshed = await idp.refresh(tokens.refreshToken!);
    assert.equal(op.grantsServed('refresh_token'), before + 1);
    assert.notEqual(refreshed.accessToken, tokens.accessToken);
    assert.ok(refreshed.refreshToken && refreshed.refreshToken !== tokens.refreshToken, 'rotated');
    const reused = await rejects(idp.refresh(tokens.refreshToken!));
    assert.equal(reused.oauthError, 'invalid_grant');

    const fresh = await loginCode(idp);
    const second = await idp.exchangeCode({
      ...fresh,
      codeVerifier: fresh.verifier,
      redirectUri: TEST_REDIRECT_URI,
    });
    assert.equal(await idp.revoke(second.tokens.refreshToken!, 'refresh_token'), 'REVOKED');
    const revoked = await rejects(idp.refresh(second.tokens.refreshToken!));
    assert.equal(revoked.oauthError, 'invalid_grant');
  });

  it('applies endpoints configured beside an issuer over the discovered ones', async () => {
    const discovered = (await registry()).get('basic');
    assert.equal(
      await discovered.revoke('not-a-token', 'refresh_token'),
      'REVOKED',
      'RFC 7009 §2.2: 200 for unknown tokens',
    );
    const overridden = testConfig(
      providersYaml(op).replace(
        `    scopes: [openid, email, profile]\n`,
        `    scopes: [openid, email, profile]\n    revocation_endpoint: ${op.issuer}/no-such-endpoint\n`,
      ),
    );
    const idp = (await createIdpRegistry(overridden, { logger: logs.logger })).get('basic');
    assert.equal(await idp.revoke('not-a-token', 'refresh_token'), 'FAILED');
  });

  it('logs in through a plain OAuth 2.0 provider: no ID token, no subject', async () => {
    const idp = (await registry()).get('plain');
    assert.equal(idp.oidc, false);
    assert.equal(idp.providesSubject, false);
    const started = await start(idp, true);
    const q = new URL(started.url).searchParams;
    assert.equal(q.get('scope'), 'api');
    assert.equal(q.get('nonce'), null);
    const response = await signIn(started.url, { login: 'bob' });
    const { tokens, identity } = await idp.exchangeCode({
      code: response.code!,
      state: started.state,
      nonce: undefined,
      codeVerifier: started.verifier,
      redirectUri: TEST_REDIRECT_URI,
    });
    assert.equal(tokens.idToken, undefined);
    assert.ok(tokens.refreshToken);
    assert.equal(identity.subject, '');
    assert.equal(identity.issuer, op.issuer);
  });

  it('takes email and name from UserInfo when the ID token does not carry them', async () => {
    const strict = await startOidcProvider({ claimsOnlyAtUserInfo: true });
    try {
      const idp = (await createIdpRegistry(testConfig(providersYaml(strict)), { logger: logs.logger })).get(
        'basic',
      );
      const { code, state, nonce, verifier } = await loginCode(idp);
      const { identity } = await idp.exchangeCode({
        code,
        state,
        nonce,
        codeVerifier: verifier,
        redirectUri: TEST_REDIRECT_URI,
      });
      assert.equal(identity.claims.email, undefined, 'not in the ID token');
      assert.equal(identity.email, 'alice@example.com');
      assert.equal(identity.emailVerified, true);
      assert.equal(identity.name, 'Alice Liddell');
    } finally {
      await strict.close();
    }
  });

  it('refuses plain http unless allowed and on loopback', async () => {
    const yaml = `providers:
  - id: corp
    issuer: http://idp.example.com
    client_id: c
    client_secret: s
    redirect_uris: [${TEST_REDIRECT_URI}]
    allow_insecure_http: true
`;
    await assert.rejects(
      createIdpRegistry(testConfig(yaml), { logger: logs.logger }),
      /providers\.corp\.issuer: .*loopback/,
    );
    const local = yaml
      .replace('http://idp.example.com', op.issuer)
      .replace('allow_insecure_http: true', 'allow_insecure_http: false');
    await assert.rejects(
      createIdpRegistry(testConfig(local), { logger: logs.logger }),
      /allow_insecure_http/,
    );
  });

  it('never logs a code, verifier or token', () => {
    const text = logs.text();
    assert.ok(!/eyJ[A-Za-z0-9_-]{10,}\./.test(text), 'no JWT in logs');
    assert.ok(!text.includes('access_token'));
  });
});
