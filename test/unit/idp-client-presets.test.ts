import assert from 'node:assert/strict';
import { IdpError } from '../../src/core/idp-client.js';
import { createIdpRegistry } from '../../src/idp/registry.js';
import { captureLogs } from '../helpers/log-capture.js';
import { testConfig } from '../helpers/server.js';

const REDIRECT = 'https://app.example.com/cb';
const VERIFIER = 'v'.repeat(43);

/** GitHub's endpoints as they answer (HTTP 200 even for errors), served without a network. */
function fakeGitHub(requests: { url: string; method: string; headers: Headers; body: string }[]) {
  const json = (body: unknown) =>
    new Response(JSON.stringify(body), {
      status: 200,
      headers: { 'content-type': 'application/json; charset=utf-8' },
    });
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = String(input);
    const body = init?.body === undefined || init.body === null ? '' : String(init.body);
    requests.push({ url, method: init?.method ?? 'GET', headers: new Headers(init?.headers), body });
    if (url === 'https://github.com/login/oauth/access_token') {
      const code = new URLSearchParams(body).get('code');
      if (code !== 'good-code') {
        return json({
          error: 'bad_verification_code',
          error_description: 'The code passed is incorrect or expired.',
        });
      }
      return json({ access_token: 'gho_accesstoken', token_type: 'bearer', scope: 'read:user,user:email' });
    }
    if (url === 'https://api.github.com/user') {
      return json({
        id: 583231,
        login: 'octocat',
        name: 'The Octocat',
        email: 'octocat@github.com',
        bio: 'x',
      });
    }
    return new Response('not found', { status: 404 });
  };
}

describe('the github preset', () => {
  const config = testConfig(`providers:
  - id: gh
    preset: github
    client_id: Iv1.abc
    client_secret: shh
    redirect_uris: [${REDIRECT}]
`);

  it('exchanges a code, takes the identity from the user API, and reads comma-separated scopes', async () => {
    const requests: { url: string; method: string; headers: Headers; body: string }[] = [];
    const idps = await createIdpRegistry(config, {
      logger: captureLogs().logger,
      fetch: fakeGitHub(requests),
    });
    const idp = idps.get('gh');
    assert.equal(idp.oidc, false);
    assert.equal(idp.providesSubject, true);
    const before = Date.now();
    const { tokens, identity } = await idp.exchangeCode({
      code: 'good-code',
      redirectUri: REDIRECT,
      codeVerifier: VERIFIER,
      nonce: undefined,
      state: 'st',
    });
    assert.equal(tokens.accessToken, 'gho_accesstoken');
    assert.equal(tokens.tokenType, 'Bearer');
    assert.deepEqual(tokens.scopes, ['read:user', 'user:email']);
    assert.ok(
      tokens.expiresAt >= before + 5 * 60_000 && tokens.expiresAt <= Date.now() + 5 * 60_000,
      'default lifetime',
    );
    assert.equal(identity.subject, '583231');
    assert.equal(identity.issuer, 'https://github.com');
    assert.equal(identity.name, 'The Octocat');
    assert.equal(identity.email, 'octocat@github.com');
    assert.equal(identity.emailVerified, false);
    assert.equal(identity.claims.bio, undefined, 'only identity fields are kept');
    const userCall = requests.find((r) => r.url === 'https://api.github.com/user')!;
    assert.equal(userCall.headers.get('authorization'), 'Bearer gho_accesstoken');
    const tokenCall = requests.find((r) => r.url.endsWith('/access_token'))!;
    assert.equal(new URLSearchParams(tokenCall.body).get('code_verifier'), VERIFIER);
    assert.match(tokenCall.headers.get('authorization') ?? '', /^Basic /);
  });

  it('classifies an error answered with HTTP 200 by its OAuth code', async () => {
    const idps = await createIdpRegistry(config, { logger: captureLogs().logger, fetch: fakeGitHub([]) });
    await assert.rejects(
      idps.get('gh').exchangeCode({
        code: 'stale-code',
        redirectUri: REDIRECT,
        codeVerifier: VERIFIER,
        nonce: undefined,
        state: 'st',
      }),
      (err: unknown) =>
        err instanceof IdpError && err.kind === 'rejected' && err.oauthError === 'bad_verification_code',
    );
  });

  it('builds an authorization URL with PKCE and no nonce', async () => {
    const idps = await createIdpRegistry(config, { logger: captureLogs().logger, fetch: fakeGitHub([]) });
    const url = new URL(
      await idps.get('gh').authorizationUrl({
        redirectUri: REDIRECT,
        scopes: ['read:user'],
        state: 'st',
        nonce: 'n',
        codeChallenge: 'c'.repeat(43),
        loginHint: 'octocat',
        offline: true,
      }),
    );
    assert.equal(url.origin + url.pathname, 'https://github.com/login/oauth/authorize');
    assert.equal(url.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(url.searchParams.get('nonce'), null);
    assert.equal(url.searchParams.get('login_hint'), 'octocat');
  });
});

describe('the google preset', () => {
  it('asks for access_type=offline and prompt=consent when storing, from the discovered endpoint', async () => {
    const fetch = async (input: string | URL | Request): Promise<Response> => {
      assert.equal(String(input), 'https://accounts.google.com/.well-known/openid-configuration');
      return new Response(
        JSON.stringify({
          issuer: 'https://accounts.google.com',
          authorization_endpoint: 'https://accounts.google.com/o/oauth2/v2/auth',
          token_endpoint: 'https://oauth2.googleapis.com/token',
          jwks_uri: 'https://www.googleapis.com/oauth2/v3/certs',
          scopes_supported: ['openid', 'email', 'profile'],
        }),
        { status: 200, headers: { 'content-type': 'application/json' } },
      );
    };
    const config = testConfig(`providers:
  - id: google
    preset: google
    client_id: 123.apps.googleusercontent.com
    client_secret: shh
    redirect_uris: [${REDIRECT}]
`);
    const idp = (await createIdpRegistry(config, { logger: captureLogs().logger, fetch })).get('google');
    const url = new URL(
      await idp.authorizationUrl({
        redirectUri: REDIRECT,
        scopes: idp.scopes,
        state: 'st',
        nonce: 'n',
        codeChallenge: 'c'.repeat(43),
        loginHint: undefined,
        offline: true,
      }),
    );
    assert.equal(url.origin + url.pathname, 'https://accounts.google.com/o/oauth2/v2/auth');
    assert.equal(url.searchParams.get('access_type'), 'offline');
    assert.equal(url.searchParams.get('prompt'), 'consent');
    assert.equal(url.searchParams.get('nonce'), 'n');
    assert.deepEqual(url.searchParams.get('scope')!.split(' ').sort(), ['email', 'openid', 'profile']);
  });
});
