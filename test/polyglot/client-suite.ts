/**
 * The behaviour every polyglot example client must show against a real broker: the seeded
 * token, a decoded REAUTH_REQUIRED with its cause, a non-retryable INVALID_REQUEST, and
 * STORE_UNAVAILABLE decoded with its RetryInfo and retried. GetDownstreamToken: a token really
 * exchanged at the test IdP (its `aud` checked), then served from the cache; EXCHANGE_REJECTED
 * with the IdP's OAuth code; PERMISSION_DENIED for a downstream the caller may not use. Shared by
 * python.test.ts and go.test.ts.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  DOWNSTREAM,
  DOWNSTREAM_AUDIENCE,
  EXCHANGE_PROVIDER,
  EXCHANGE_USER,
  EXPIRING_USER,
  REFUSED_DOWNSTREAM,
  startPolyglotBroker,
  PROVIDER,
  type PolyglotBroker,
} from './broker.js';
import type { ClientRun } from './toolchain.js';

export interface ClientArgs {
  readonly target: string;
  readonly userId: string;
  readonly provider: string;
  readonly attempts?: number;
  /** GetDownstreamToken for this downstream id instead of GetValidSubjectToken. */
  readonly downstream?: string;
  /** Sent as `authorization: Bearer` (CREDBROKER_API_KEY). */
  readonly apiKey?: string;
}

const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** The client's JSON line and stderr, for an assertion message. */
const why = (run: ClientRun) => `${JSON.stringify(run.output)} ${run.stderr}`;

/** The claims of a JWT, unverified: the test only reads what the IdP itself issued. */
function jwtClaims(token: string): Record<string, unknown> {
  const payload = token.split('.')[1];
  assert.ok(payload !== undefined, 'the exchanged token is a JWT');
  return JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as Record<string, unknown>;
}

/** Builds the client once; returns how to run it. */
export type BuildClient = () => Promise<(args: ClientArgs) => Promise<ClientRun>>;

export function clientSuite(build: BuildClient): void {
  let broker: PolyglotBroker | undefined;
  let client: (args: ClientArgs) => Promise<ClientRun>;

  before(async () => {
    client = await build();
    broker = await startPolyglotBroker();
  });
  after(async () => {
    await broker?.stop();
  });

  const call = (userId: string, provider = PROVIDER, attempts?: number) =>
    client({ target: broker!.address, userId, provider, ...(attempts === undefined ? {} : { attempts }) });
  const callDownstream = (downstream: string, userId = EXCHANGE_USER, apiKey?: string) =>
    client({
      target: apiKey === undefined ? broker!.address : broker!.policyAddress,
      userId,
      provider: EXCHANGE_PROVIDER,
      downstream,
      ...(apiKey === undefined ? {} : { apiKey }),
    });
  /** What the test IdP answered to token-exchange grants (successful ones only). */
  const exchanges = () => broker!.idp.issued.filter((t) => t.grant_type === TOKEN_EXCHANGE_GRANT);

  it('gets the stored token for a user', async () => {
    const run = await call(broker!.userId);
    assert.equal(run.exitCode, 0, run.stderr);
    assert.equal(run.output.outcome, 'token');
    assert.equal(run.output.tokenSha256, broker!.tokenSha256);
    assert.equal(run.output.tokenType, 'Bearer');
    assert.equal(run.output.source, 'TOKEN_SOURCE_STORED');
    assert.deepEqual(run.output.scopes, ['openid', 'profile']);
    assert.equal(run.output.degraded, false);
    assert.equal(new Date(run.output.expiresAt as string).getTime(), broker!.expiresAt.getTime());
  });

  it('decodes REAUTH_REQUIRED with cause NO_TOKEN from the grpc-status-details-bin trailer', async () => {
    const run = await call('nobody');
    assert.equal(run.exitCode, 2, run.stderr);
    assert.deepEqual(run.output, {
      outcome: 'reauth',
      code: 'FAILED_PRECONDITION',
      reason: 'REAUTH_REQUIRED',
      cause: 'NO_TOKEN',
      causeIsKnown: true,
      provider: PROVIDER,
      userId: 'nobody',
    });
  });

  it('decodes cause NO_REFRESH_TOKEN for a token inside the skew without a refresh token', async () => {
    const run = await call(EXPIRING_USER);
    assert.equal(run.exitCode, 2, run.stderr);
    assert.equal(run.output.reason, 'REAUTH_REQUIRED');
    assert.equal(run.output.cause, 'NO_REFRESH_TOKEN');
    assert.equal(run.output.causeIsKnown, true);
    assert.equal(run.output.userId, EXPIRING_USER);
  });

  it('reports INVALID_REQUEST as a non-retryable error', async () => {
    const run = await call(broker!.userId, 'unknown-provider');
    assert.equal(run.exitCode, 1, run.stderr);
    assert.equal(run.output.outcome, 'error');
    assert.equal(run.output.code, 'INVALID_ARGUMENT');
    assert.equal(run.output.reason, 'INVALID_REQUEST');
  });

  describe('GetDownstreamToken', () => {
    it('gets a token exchanged at the IdP for the downstream audience, then the cached one', async () => {
      const before = exchanges().length;
      const run = await callDownstream(DOWNSTREAM);
      assert.equal(run.exitCode, 0, why(run));
      assert.equal(run.output.outcome, 'token');
      assert.equal(run.output.source, 'DOWNSTREAM_TOKEN_SOURCE_EXCHANGED');
      assert.equal(run.output.tokenType, 'Bearer');
      assert.equal(run.output.issuedTokenType, 'urn:ietf:params:oauth:token-type:access_token');
      assert.equal(run.output.degraded, false);
      assert.deepEqual(run.output.scopes, ['api'], 'the scopes the IdP granted');
      // The token the client got is the one the IdP issued for the exchange (not the user's own).
      const issued = exchanges().slice(before);
      assert.equal(issued.length, 1, 'one exchange at the IdP');
      assert.equal(run.output.tokenSha256, sha256(issued[0]!.access_token));
      const claims = jwtClaims(issued[0]!.access_token);
      const aud = ([] as unknown[]).concat(claims.aud);
      assert.deepEqual(aud, [DOWNSTREAM_AUDIENCE]);
      // The broker counts expires_in from when the answer arrived; the JWT's exp from its iat (whole s).
      const expiresAt = new Date(run.output.expiresAt as string).getTime();
      assert.ok(Math.abs(expiresAt - (claims.exp as number) * 1000) <= 5000, `expiresAt ${expiresAt}`);
      const login = broker!.idp.issued.find((t) => t.grant_type === 'authorization_code');
      assert.notEqual(run.output.tokenSha256, sha256(login!.access_token));

      const again = await callDownstream(DOWNSTREAM);
      assert.equal(again.exitCode, 0, why(again));
      assert.equal(again.output.source, 'DOWNSTREAM_TOKEN_SOURCE_CACHED');
      assert.equal(again.output.tokenSha256, run.output.tokenSha256);
      assert.equal(exchanges().length, before + 1, 'the cached token made no IdP call');
    });

    it('decodes EXCHANGE_REJECTED with only the OAuth error code when the IdP refuses', async () => {
      const run = await callDownstream(REFUSED_DOWNSTREAM);
      assert.equal(run.exitCode, 4, why(run));
      assert.deepEqual(run.output, {
        outcome: 'exchange_rejected',
        code: 'FAILED_PRECONDITION',
        reason: 'EXCHANGE_REJECTED',
        idpError: 'invalid_target',
      });
    });

    it('decodes REAUTH_REQUIRED (NO_TOKEN) for a user who never logged in', async () => {
      const run = await callDownstream(DOWNSTREAM, 'nobody');
      assert.equal(run.exitCode, 2, why(run));
      assert.equal(run.output.reason, 'REAUTH_REQUIRED');
      assert.equal(run.output.cause, 'NO_TOKEN');
      assert.equal(run.output.provider, EXCHANGE_PROVIDER);
    });

    it('sends the API key; PERMISSION_DENIED for a downstream the caller is not allowed', async () => {
      const allowed = await callDownstream(DOWNSTREAM, EXCHANGE_USER, broker!.apiKey);
      assert.equal(allowed.exitCode, 0, why(allowed));
      assert.equal(allowed.output.outcome, 'token');
      const denied = await callDownstream(REFUSED_DOWNSTREAM, EXCHANGE_USER, broker!.apiKey);
      assert.equal(denied.exitCode, 1, why(denied));
      assert.deepEqual(denied.output, {
        outcome: 'forbidden',
        code: 'PERMISSION_DENIED',
        reason: 'CALLER_FORBIDDEN',
        cause: 'DOWNSTREAM_NOT_ALLOWED',
      });
    });
  });

  // Last (mocha runs a suite's own tests before its nested suites): it takes Redis down for good.
  describe('with Redis down', () => {
    it('decodes STORE_UNAVAILABLE with its RetryInfo and retries after the delay', async () => {
      await broker!.redis.stop();
      const unavailable = () => broker!.server.logs.records().filter((r) => r.reason === 'STORE_UNAVAILABLE');
      const before = unavailable().length;
      const run = await call(broker!.userId, PROVIDER, 2);
      assert.equal(run.exitCode, 3, why(run));
      assert.equal(run.output.outcome, 'retryable');
      assert.equal(run.output.code, 'UNAVAILABLE');
      assert.equal(run.output.reason, 'STORE_UNAVAILABLE');
      assert.equal(run.output.retryDelaySeconds, 1);
      const calls = unavailable().slice(before);
      assert.equal(calls.length, 2, 'the client called twice: once, then once after RetryInfo');
      // The broker logs each call when it ends; the retry started at least RetryInfo's 1 s later.
      const [first, second] = calls as { time: string; durationMs: number }[];
      const retryStart = Date.parse(second!.time) - second!.durationMs;
      assert.ok(retryStart - Date.parse(first!.time) >= 950, 'the retry waited for retry_delay (1 s)');
    });
  });
}
