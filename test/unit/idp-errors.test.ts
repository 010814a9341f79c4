import assert from 'node:assert/strict';
import { AuthorizationResponseError, ClientError, ResponseBodyError } from 'openid-client';
import { IdpError } from '../../src/core/idp-client.js';

/** openid-client's ClientError takes a `code` option its typings do not declare. */
const clientError = (message: string, options: { code: string; cause?: unknown }) =>
  new ClientError(message, options as ErrorOptions);
import { parseRetryAfter, toIdpError } from '../../src/idp/errors.js';

function bodyError(
  status: number,
  body: { error: string; error_description?: string },
  headers: Record<string, string> = {},
) {
  const response = new Response(null, { status, headers });
  return new ResponseBodyError('server responded with an error in the response body', {
    cause: body,
    response,
  });
}

describe('IdP error mapping', () => {
  it('maps an OAuth error response to rejected with the error code only', () => {
    const err = toIdpError(
      bodyError(400, { error: 'invalid_grant', error_description: 'code abc123 was already used' }),
      'authorization_code',
    );
    assert.equal(err.kind, 'rejected');
    assert.equal(err.oauthError, 'invalid_grant');
    assert.ok(!err.message.includes('abc123'));
    assert.ok(!(err.cause as Error).message.includes('abc123'), 'the IdP body never reaches the cause');
    assert.ok(!JSON.stringify(err).includes('abc123'));
  });

  it('does not echo an error code outside the RFC 6749 character set', () => {
    const err = toIdpError(bodyError(400, { error: 'bad "quoted" \n code' }), 'refresh_token');
    assert.equal(err.oauthError, 'invalid_error_code');
  });

  it('maps 5xx and 429 to unavailable with Retry-After', () => {
    const err = toIdpError(
      bodyError(503, { error: 'temporarily_unavailable' }, { 'retry-after': '12' }),
      'refresh_token',
    );
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.retryAfterMs, 12_000);
    assert.equal(toIdpError(bodyError(429, { error: 'slow_down' }), 'refresh_token').kind, 'unavailable');
  });

  it('maps a non-conforming HTTP response to unavailable', () => {
    const response = new Response('<html>', { status: 502, headers: { 'retry-after': '3' } });
    const err = toIdpError(
      clientError('unexpected HTTP response status code', {
        cause: response,
        code: 'OAUTH_RESPONSE_IS_NOT_CONFORM',
      }),
      'authorization_code',
    );
    assert.equal(err.kind, 'unavailable');
    assert.equal(err.retryAfterMs, 3000);
  });

  it('keeps a body that is not JSON out of the logged cause', () => {
    let parseError: unknown;
    try {
      JSON.parse('RT-SECRET-1');
    } catch (err) {
      parseError = err;
    }
    const err = toIdpError(
      clientError('failed to parse "response" body as JSON', {
        cause: parseError,
        code: 'OAUTH_PARSE_ERROR',
      }),
      'refresh_token',
    );
    const logged = String((err.cause as Error).message);
    assert.match(logged, /SyntaxError: the body is not valid JSON/);
    assert.ok(!logged.includes('RT-SECRET-1'));
  });

  it('maps verification failures to rejected with invalidResponse, except during discovery', () => {
    const failed = clientError('unexpected JWT claim value encountered', {
      code: 'OAUTH_JWT_CLAIM_COMPARISON_FAILED',
    });
    const login = toIdpError(failed, 'authorization_code');
    assert.equal(login.kind, 'rejected');
    assert.equal(login.invalidResponse, true);
    assert.equal(login.oauthError, undefined);
    assert.equal(toIdpError(failed, 'discovery').kind, 'unavailable');
  });

  it('maps timeouts, aborts and connection failures to unavailable', () => {
    for (const err of [
      clientError('operation timed out', { code: 'OAUTH_TIMEOUT' }),
      clientError('operation aborted', { code: 'OAUTH_ABORT' }),
      new TypeError('fetch failed', {
        cause: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
      }),
      new DOMException('The operation was aborted due to timeout', 'TimeoutError'),
    ]) {
      assert.equal(toIdpError(err, 'refresh_token').kind, 'unavailable', String(err));
    }
  });

  it('maps an authorization error response to rejected', () => {
    const err = toIdpError(
      new AuthorizationResponseError('authorization response from the server is an error', {
        cause: new URLSearchParams({ error: 'access_denied' }),
      }),
      'authorization_code',
    );
    assert.equal(err.kind, 'rejected');
    assert.equal(err.oauthError, 'access_denied');
  });

  it('passes an IdpError through and rethrows programming errors', () => {
    const idp = new IdpError('unavailable', 'x');
    assert.equal(toIdpError(idp, 'refresh_token'), idp);
    assert.throws(() => toIdpError(new RangeError('bug'), 'refresh_token'), RangeError);
  });

  it('parses Retry-After as seconds or an HTTP date', () => {
    const now = Date.UTC(2026, 0, 1, 0, 0, 0);
    assert.equal(parseRetryAfter('5', now), 5000);
    assert.equal(parseRetryAfter(new Date(now + 30_000).toUTCString(), now), 30_000);
    assert.equal(parseRetryAfter('soon', now), undefined);
    assert.equal(parseRetryAfter(null, now), undefined);
  });
});
