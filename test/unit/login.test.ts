import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { CallContext, CompleteLoginInput } from '../../src/broker/api.js';
import { BrokerError } from '../../src/core/errors.js';
import { createLoginFlow, INVALID_IDP_RESPONSE, type LoginFlowOptions } from '../../src/broker/login.js';
import {
  IdpError,
  type AuthorizationRequest,
  type CodeExchange,
  type IdpClient,
  type IdpRegistry,
  type TokenSet,
} from '../../src/core/idp-client.js';
import { invalidRequest } from '../../src/core/errors.js';
import { createKeyRing } from '../../src/store/key-ring.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { captureLogs } from '../helpers/log-capture.js';
import { createFakeClock, type FakeClock } from '../helpers/fake-clock.js';

const REDIRECT = 'https://app.example.com/cb';
const OTHER_REDIRECT = 'https://app.example.com/other';
const MINUTE = 60_000;
const DAY = 24 * 60 * MINUTE;

/**
 * A fake IdP that behaves like one where it matters to the flow: it remembers each
 * authorization request's PKCE challenge and nonce by code, checks the verifier at the exchange
 * (RFC 7636 §4.6) and echoes the nonce it was given, and issues random tokens.
 */
class FakeIdp implements IdpClient {
  readonly skewMs = 60_000;
  readonly redirectUris = [REDIRECT, OTHER_REDIRECT];
  readonly scopes = ['openid', 'email'];
  readonly providesSubject: boolean;
  readonly oidc: boolean;
  readonly requests: AuthorizationRequest[] = [];
  readonly issued: TokenSet[] = [];
  /** Next exchange fails with this. */
  failWith: IdpError | undefined;
  subject = 'sub-alice';
  issueRefreshToken = true;
  accessLifetimeMs = 3600_000;
  readonly #codes = new Map<string, { challenge: string; nonce: string }>();

  constructor(
    readonly id: string,
    readonly clock: { now(): number },
    oidc = true,
  ) {
    this.oidc = oidc;
    this.providesSubject = oidc;
  }

  async authorizationUrl(request: AuthorizationRequest): Promise<string> {
    this.requests.push(request);
    return `https://idp.example.com/auth?state=${request.state}&client_id=${this.id}`;
  }

  /** What the IdP would redirect the browser with after a sign-in for `request`. */
  codeFor(request: AuthorizationRequest): string {
    const code = randomBytes(16).toString('base64url');
    this.#codes.set(code, { challenge: request.codeChallenge, nonce: request.nonce });
    return code;
  }

  async exchangeCode(exchange: CodeExchange) {
    if (this.failWith) throw this.failWith;
    const grant = this.#codes.get(exchange.code);
    this.#codes.delete(exchange.code);
    const challenge = createHash('sha256').update(exchange.codeVerifier).digest('base64url');
    if (!grant || grant.challenge !== challenge) {
      throw new IdpError('rejected', 'rejected', { oauthError: 'invalid_grant' });
    }
    if (this.oidc && exchange.nonce !== grant.nonce) {
      throw new IdpError('rejected', 'nonce', { invalidResponse: true });
    }
    const tokens: TokenSet = {
      accessToken: `at-${randomBytes(12).toString('hex')}`,
      refreshToken: this.issueRefreshToken ? `rt-${randomBytes(12).toString('hex')}` : undefined,
      tokenType: 'Bearer',
      expiresAt: this.clock.now() + this.accessLifetimeMs,
      refreshExpiresAt: undefined,
      scopes: undefined,
      idToken: this.oidc ? `id-${randomBytes(12).toString('hex')}` : undefined,
    };
    this.issued.push(tokens);
    return {
      tokens,
      identity: {
        issuer: 'https://idp.example.com',
        subject: this.oidc ? this.subject : '',
        email: 'alice@example.com',
        emailVerified: true,
        name: 'Alice',
        claims: { sub: this.subject },
      },
    };
  }

  async refresh(): Promise<TokenSet> {
    throw new Error('not used');
  }
  async revoke(): Promise<'REVOKED'> {
    return 'REVOKED';
  }
}

function registry(...idps: IdpClient[]): IdpRegistry {
  return {
    ids: idps.map((i) => i.id),
    get(id) {
      const idp = idps.find((i) => i.id === id);
      if (!idp) throw invalidRequest([{ field: 'provider', description: 'unknown provider' }]);
      return idp;
    },
  };
}

async function brokerError(promise: Promise<unknown>): Promise<BrokerError> {
  try {
    await promise;
  } catch (err) {
    assert.ok(err instanceof BrokerError, `expected BrokerError, got ${String(err)}`);
    return err;
  }
  throw new Error('expected a BrokerError');
}

describe('login flow (StartLogin, CompleteLogin)', () => {
  let clock: FakeClock;
  let logs: ReturnType<typeof captureLogs>;
  let ctx: CallContext;
  let store: TokenStore;
  let corp: FakeIdp;
  let other: FakeIdp;
  let plain: FakeIdp;

  beforeEach(() => {
    clock = createFakeClock(Date.UTC(2026, 0, 1));
    logs = captureLogs();
    ctx = {
      deadline: Infinity,
      signal: new AbortController().signal,
      logger: logs.logger,
      requestId: 'req-1',
    };
    store = createMemoryStore({
      keyRing: createKeyRing([{ id: 'k1', key: randomBytes(32) }]),
      clock,
    });
    corp = new FakeIdp('corp', clock);
    other = new FakeIdp('other', clock);
    plain = new FakeIdp('plain', clock, false);
  });

  const flow = (overrides: Partial<LoginFlowOptions> = {}) =>
    createLoginFlow({
      store,
      idps: registry(corp, other, plain),
      storageEnabled: true,
      loginStateTtlMs: 10 * MINUTE,
      maxRecordTtlMs: 30 * DAY,
      clock,
      logger: logs.logger,
      ...overrides,
    });

  /** StartLogin, then the code the IdP would hand back for it. */
  async function started(f = flow(), idp = corp, redirectUri = REDIRECT) {
    const start = await f.startLogin(
      { provider: idp.id, redirectUri, scopes: [], loginHint: undefined },
      ctx,
    );
    const code = idp.codeFor(idp.requests.at(-1)!);
    const input: CompleteLoginInput = {
      provider: idp.id,
      code,
      redirectUri,
      state: start.state,
      codeVerifier: undefined,
      nonce: undefined,
      userId: undefined,
    };
    return { start, code, input };
  }

  describe('StartLogin', () => {
    it('returns the IdP URL and a 256-bit state valid for 10 minutes, with nonce and PKCE S256', async () => {
      const { start } = await started();
      assert.ok(start.authorizationUrl.startsWith('https://idp.example.com/auth'));
      assert.match(start.state, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(start.expiresAt.getTime(), clock.now() + 10 * MINUTE);
      const request = corp.requests[0]!;
      assert.equal(request.state, start.state);
      assert.match(request.nonce, /^[A-Za-z0-9_-]{43}$/);
      assert.match(request.codeChallenge, /^[A-Za-z0-9_-]{43}$/);
      assert.equal(request.offline, true, 'storage on: asks for offline access');
      assert.deepEqual(request.scopes, ['openid', 'email']);
    });

    it('keeps the login state single-use in the store, bound to provider and redirect_uri', async () => {
      const { start } = await started();
      const login = await store.consumeLoginState(start.state);
      assert.equal(login?.provider, 'corp');
      assert.equal(login?.redirectUri, REDIRECT);
      assert.equal(login?.nonce, corp.requests[0]!.nonce);
      assert.equal(
        createHash('sha256').update(login!.codeVerifier).digest('base64url'),
        corp.requests[0]!.codeChallenge,
      );
      assert.equal(await store.consumeLoginState(start.state), undefined);
    });

    it('asks for no offline access when storage is off, and adds the caller scopes', async () => {
      await flow({ storageEnabled: false }).startLogin(
        { provider: 'corp', redirectUri: REDIRECT, scopes: ['calendar', 'email'], loginHint: 'alice' },
        ctx,
      );
      assert.equal(corp.requests[0]!.offline, false);
      assert.deepEqual(corp.requests[0]!.scopes, ['openid', 'email', 'calendar']);
      assert.equal(corp.requests[0]!.loginHint, 'alice');
    });

    it('refuses a redirect_uri outside the allowlist with INVALID_REQUEST naming redirect_uri', async () => {
      const err = await brokerError(
        flow().startLogin(
          { provider: 'corp', redirectUri: 'https://evil.example.com/cb', scopes: [], loginHint: undefined },
          ctx,
        ),
      );
      assert.equal(err.reason, 'INVALID_REQUEST');
      assert.deepEqual(
        err.violations.map((v) => v.field),
        ['redirect_uri'],
      );
      assert.equal(corp.requests.length, 0);
    });

    it('reports an unreachable IdP (discovery) as IDP_UNAVAILABLE with its Retry-After', async () => {
      corp.authorizationUrl = () =>
        Promise.reject(new IdpError('unavailable', 'down', { retryAfterMs: 5000 }));
      const err = await brokerError(
        flow().startLogin({ provider: 'corp', redirectUri: REDIRECT, scopes: [], loginHint: undefined }, ctx),
      );
      assert.equal(err.reason, 'IDP_UNAVAILABLE');
      assert.equal(err.retryAfterMs, 5000);
    });
  });

  describe('CompleteLogin', () => {
    it('returns the identity and stores exactly the issued tokens under the IdP subject', async () => {
      const { input } = await started();
      const result = await flow().completeLogin(input, ctx);
      assert.equal(result.userId, 'sub-alice');
      assert.equal(result.identity.email, 'alice@example.com');
      assert.equal(result.storage, 'STORED');
      const issued = corp.issued[0]!;
      assert.equal(result.accessTokenExpiresAt.getTime(), issued.expiresAt);
      const record = await store.getToken({ provider: 'corp', userId: 'sub-alice' });
      assert.equal(record?.accessToken, issued.accessToken);
      assert.equal(record?.refreshToken, issued.refreshToken);
      assert.equal(record?.idToken, issued.idToken);
      assert.equal(record?.subject, 'sub-alice');
      assert.equal(record?.obtainedVia, 'login');
      assert.deepEqual(record?.scopes, ['openid', 'email'], 'no scope in the response: the requested ones');
    });

    it('stores under the caller-bound user_id when given', async () => {
      const { input } = await started();
      const result = await flow().completeLogin({ ...input, userId: 'employee-42' }, ctx);
      assert.equal(result.userId, 'employee-42');
      assert.ok(await store.getToken({ provider: 'corp', userId: 'employee-42' }));
      assert.equal(await store.getToken({ provider: 'corp', userId: 'sub-alice' }), undefined);
    });

    it('keeps a record with a refresh token for store.max_record_ttl', async () => {
      const { input } = await started();
      await flow().completeLogin(input, ctx);
      await clock.advance(30 * DAY - MINUTE);
      assert.ok(await store.getToken({ provider: 'corp', userId: 'sub-alice' }));
      await clock.advance(2 * MINUTE);
      assert.equal(await store.getToken({ provider: 'corp', userId: 'sub-alice' }), undefined);
    });

    it('keeps an access-token-only record until the access token expires', async () => {
      corp.issueRefreshToken = false;
      const { input } = await started();
      await flow().completeLogin(input, ctx);
      await clock.advance(3600_000 - 1000);
      assert.ok(await store.getToken({ provider: 'corp', userId: 'sub-alice' }));
      await clock.advance(2000);
      assert.equal(await store.getToken({ provider: 'corp', userId: 'sub-alice' }), undefined);
    });

    it('with storage off answers DISABLED and writes nothing', async () => {
      const f = flow({ storageEnabled: false });
      const { input } = await started(f);
      const result = await f.completeLogin(input, ctx);
      assert.equal(result.storage, 'DISABLED');
      assert.equal(result.identity.subject, 'sub-alice');
      assert.equal(await store.getToken({ provider: 'corp', userId: 'sub-alice' }), undefined);
    });

    it('answers LOGIN_STATE_INVALID for a reused state', async () => {
      const { input } = await started();
      await flow().completeLogin(input, ctx);
      const err = await brokerError(flow().completeLogin(input, ctx));
      assert.equal(err.reason, 'LOGIN_STATE_INVALID');
      assert.equal(corp.issued.length, 1, 'no second exchange');
    });

    it('answers LOGIN_STATE_INVALID for an expired or unknown state', async () => {
      const { input } = await started();
      await clock.advance(10 * MINUTE + 1);
      assert.equal((await brokerError(flow().completeLogin(input, ctx))).reason, 'LOGIN_STATE_INVALID');
      const unknown = { ...input, state: randomBytes(32).toString('base64url') };
      assert.equal((await brokerError(flow().completeLogin(unknown, ctx))).reason, 'LOGIN_STATE_INVALID');
      assert.equal(corp.issued.length, 0);
    });

    it('answers LOGIN_STATE_INVALID when the state was issued for another provider or redirect_uri', async () => {
      const a = await started();
      const wrongProvider = await brokerError(flow().completeLogin({ ...a.input, provider: 'other' }, ctx));
      assert.equal(wrongProvider.reason, 'LOGIN_STATE_INVALID');
      const b = await started();
      const wrongRedirect = await brokerError(
        flow().completeLogin({ ...b.input, redirectUri: OTHER_REDIRECT }, ctx),
      );
      assert.equal(wrongRedirect.reason, 'LOGIN_STATE_INVALID');
      assert.equal(corp.issued.length + other.issued.length, 0);
    });

    it('refuses a redirect_uri outside the allowlist before touching the state', async () => {
      const { input, start } = await started();
      const err = await brokerError(
        flow().completeLogin({ ...input, redirectUri: 'https://evil.example.com/cb' }, ctx),
      );
      assert.equal(err.reason, 'INVALID_REQUEST');
      assert.deepEqual(
        err.violations.map((v) => v.field),
        ['redirect_uri'],
      );
      assert.ok(await store.consumeLoginState(start.state), 'state still there');
    });

    it('answers LOGIN_REJECTED with the OAuth error code and consumes the state anyway', async () => {
      const { input } = await started();
      corp.failWith = new IdpError('rejected', 'rejected', { oauthError: 'invalid_grant' });
      const err = await brokerError(flow().completeLogin(input, ctx));
      assert.equal(err.reason, 'LOGIN_REJECTED');
      assert.deepEqual(err.metadata, { provider: 'corp', idpError: 'invalid_grant' });
      corp.failWith = undefined;
      assert.equal((await brokerError(flow().completeLogin(input, ctx))).reason, 'LOGIN_STATE_INVALID');
      assert.equal(await store.getToken({ provider: 'corp', userId: 'sub-alice' }), undefined);
    });

    it('answers LOGIN_REJECTED (INVALID_IDP_RESPONSE) when the nonce does not verify', async () => {
      const { input } = await started();
      const request = corp.requests[0]!;
      const code = corp.codeFor({ ...request, nonce: 'some-other-nonce' });
      const err = await brokerError(flow().completeLogin({ ...input, code }, ctx));
      assert.equal(err.reason, 'LOGIN_REJECTED');
      assert.equal(err.metadata.cause, INVALID_IDP_RESPONSE);
      assert.equal(err.metadata.idpError, undefined);
    });

    it('answers IDP_UNAVAILABLE with the IdP Retry-After when the IdP is unreachable', async () => {
      const { input } = await started();
      corp.failWith = new IdpError('unavailable', 'down', { retryAfterMs: 30_000 });
      const err = await brokerError(flow().completeLogin(input, ctx));
      assert.equal(err.reason, 'IDP_UNAVAILABLE');
      assert.equal(err.retryAfterMs, 30_000);
      assert.equal(await store.getToken({ provider: 'corp', userId: 'sub-alice' }), undefined);
    });

    it('accepts a front end own code_verifier and nonce instead of a state', async () => {
      const verifier = randomBytes(32).toString('base64url');
      const nonce = 'front-end-nonce';
      const code = corp.codeFor({
        redirectUri: REDIRECT,
        scopes: [],
        state: 's',
        nonce,
        codeChallenge: createHash('sha256').update(verifier).digest('base64url'),
        loginHint: undefined,
        offline: true,
      });
      const input: CompleteLoginInput = {
        provider: 'corp',
        code,
        redirectUri: REDIRECT,
        state: undefined,
        codeVerifier: verifier,
        nonce,
        userId: undefined,
      };
      const result = await flow().completeLogin(input, ctx);
      assert.equal(result.storage, 'STORED');
    });

    it('still logs the user in when the store write fails: storage FAILED and an error log', async () => {
      const failing: TokenStore = {
        ...store,
        putToken: () => Promise.reject(new Error('connection refused')),
      };
      const f = flow({ store: failing });
      const { input } = await started(f);
      const result = await f.completeLogin(input, ctx);
      assert.equal(result.storage, 'FAILED');
      assert.equal(result.identity.subject, 'sub-alice');
      const errors = logs.records().filter((r) => r.level === 'error');
      assert.equal(errors.length, 1);
      assert.match(String(errors[0]!.msg), /storing the subject token/);
    });

    it('keeps the stored refresh token when a re-login of the same subject returns none', async () => {
      const first = await started();
      await flow().completeLogin(first.input, ctx);
      const kept = corp.issued[0]!.refreshToken;
      corp.issueRefreshToken = false;
      const second = await started();
      await flow().completeLogin(second.input, ctx);
      const record = await store.getToken({ provider: 'corp', userId: 'sub-alice' });
      assert.equal(record?.accessToken, corp.issued[1]!.accessToken);
      assert.equal(record?.refreshToken, kept);
    });

    it('does not carry a refresh token over to another subject bound to the same user_id', async () => {
      const first = await started();
      await flow().completeLogin({ ...first.input, userId: 'shared' }, ctx);
      corp.issueRefreshToken = false;
      corp.subject = 'sub-mallory';
      const second = await started();
      await flow().completeLogin({ ...second.input, userId: 'shared' }, ctx);
      const record = await store.getToken({ provider: 'corp', userId: 'shared' });
      assert.equal(record?.subject, 'sub-mallory');
      assert.equal(record?.refreshToken, undefined);
    });

    it('requires user_id for a provider without identity when storage is on, before using the state', async () => {
      const { input, start } = await started(flow(), plain);
      const err = await brokerError(flow().completeLogin(input, ctx));
      assert.equal(err.reason, 'INVALID_REQUEST');
      assert.deepEqual(
        err.violations.map((v) => v.field),
        ['user_id'],
      );
      assert.ok(await store.consumeLoginState(start.state), 'state still usable');
    });

    it('logs in through a plain OAuth 2.0 provider with the caller user_id', async () => {
      const { input } = await started(flow(), plain);
      const result = await flow().completeLogin({ ...input, userId: 'bob' }, ctx);
      assert.equal(result.storage, 'STORED');
      const record = await store.getToken({ provider: 'plain', userId: 'bob' });
      assert.equal(record?.accessToken, plain.issued[0]!.accessToken);
      assert.equal(record?.idToken, undefined);
    });

    it('never logs a code, verifier, nonce, state or token', async () => {
      const { input, start } = await started();
      await flow().completeLogin(input, ctx);
      const again = await started();
      corp.failWith = new IdpError('rejected', 'rejected', { oauthError: 'invalid_grant' });
      await brokerError(flow().completeLogin(again.input, ctx));
      const text = logs.text();
      assert.ok(logs.lines.length >= 2, 'something was logged');
      const issued = corp.issued[0]!;
      const login = corp.requests[0]!;
      for (const secret of [
        input.code,
        again.input.code,
        start.state,
        login.nonce,
        login.codeChallenge,
        issued.accessToken,
        issued.refreshToken!,
        issued.idToken!,
      ]) {
        assert.ok(!text.includes(secret), 'a secret reached the log');
      }
    });
  });
});
