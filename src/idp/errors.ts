/**
 * Maps whatever openid-client, oauth4webapi or fetch threw into one IdpError with a kind the
 * domain can act on. The original error is NOT kept as the cause: oauth4webapi errors carry the
 * IdP's response body (which may hold tokens) in enumerable properties that a logger would print.
 * The cause is a plain Error naming only the error class, its code, the HTTP status and the
 * library's own message.
 */
import {
  AuthorizationResponseError,
  ClientError,
  ResponseBodyError,
  WWWAuthenticateChallengeError,
} from 'openid-client';
import { IdpError } from '../core/idp-client.js';

/** RFC 6749 §5.2: error codes are %x20-21 / %x23-5B / %x5D-7E. Anything else is not echoed. */
const OAUTH_ERROR_CODE = /^[\x20\x21\x23-\x5b\x5d-\x7e]{1,64}$/;

/** What went wrong in which IdP operation, for the log only. */
export type IdpOperation =
  'discovery' | 'authorization_code' | 'refresh_token' | 'revocation' | 'user_api' | 'token_exchange';

/** Responses that do not verify (signature, iss, aud, exp, nonce, missing fields). */
const INVALID_RESPONSE_CODES = new Set([
  'OAUTH_INVALID_RESPONSE',
  'OAUTH_JWT_CLAIM_COMPARISON_FAILED',
  'OAUTH_JWT_TIMESTAMP_CHECK_FAILED',
  'OAUTH_JSON_ATTRIBUTE_COMPARISON_FAILED',
  'OAUTH_KEY_SELECTION_FAILED',
  'OAUTH_PARSE_ERROR',
  'OAUTH_UNSUPPORTED_OPERATION',
]);

/** Retry-After (RFC 9110 §10.2.3): delay-seconds or an HTTP date. Milliseconds, or undefined. */
export function parseRetryAfter(
  value: string | null | undefined,
  now: number = Date.now(),
): number | undefined {
  if (value === null || value === undefined || value.trim() === '') return undefined;
  const text = value.trim();
  if (/^\d+$/.test(text)) return Number(text) * 1000;
  const at = Date.parse(text);
  return Number.isNaN(at) ? undefined : Math.max(0, at - now);
}

function statusOf(err: unknown): number | undefined {
  if (err instanceof ResponseBodyError || err instanceof WWWAuthenticateChallengeError) return err.status;
  if (err instanceof ClientError && err.cause instanceof Response) return err.cause.status;
  return undefined;
}

function responseOf(err: unknown): Response | undefined {
  if (err instanceof ResponseBodyError || err instanceof WWWAuthenticateChallengeError) return err.response;
  if (err instanceof ClientError && err.cause instanceof Response) return err.cause;
  return undefined;
}

function transient(status: number | undefined): boolean {
  return status !== undefined && (status >= 500 || status === 429);
}

/** A log-safe summary of the error chain: class names, codes, statuses and library messages. */
function summary(err: unknown, operation: IdpOperation): Error {
  const parts: string[] = [];
  let current: unknown = err;
  for (let depth = 0; depth < 4 && current instanceof Error; depth += 1) {
    const code = (current as { code?: unknown }).code;
    const status = statusOf(current);
    // V8's JSON.parse messages quote the start of the text (`"access_tok"... is not valid
    // JSON`): a body the IdP answered with must not reach the log that way either.
    const message = current instanceof SyntaxError ? 'the body is not valid JSON' : current.message;
    parts.push(
      `${current.name}${typeof code === 'string' ? ` [${code}]` : ''}${status === undefined ? '' : ` HTTP ${status}`}: ${message}`,
    );
    // Only follow causes that are errors of the libraries or of the network: never bodies.
    current =
      current instanceof ResponseBodyError || current instanceof AuthorizationResponseError
        ? undefined
        : (current as { cause?: unknown }).cause;
  }
  const networkCode = (err as { cause?: { code?: unknown } } | undefined)?.cause?.code;
  if (typeof networkCode === 'string') parts.push(`network: ${networkCode}`);
  return new Error(`${operation}: ${parts.join(' <- ') || String(typeof err)}`);
}

function oauthErrorCode(value: unknown): string | undefined {
  return typeof value === 'string' && OAUTH_ERROR_CODE.test(value) ? value : 'invalid_error_code';
}

function isNetworkError(err: unknown): boolean {
  if (err instanceof DOMException) return err.name === 'TimeoutError' || err.name === 'AbortError';
  // undici: TypeError('fetch failed') with the socket error as cause.
  return (
    err instanceof TypeError &&
    (err.message === 'fetch failed' || (err as { cause?: unknown }).cause instanceof Error)
  );
}

/**
 * Classifies an error from an IdP call.
 * - OAuth error response (4xx JSON `error`) → `rejected` with that code only;
 * - 5xx, 429, timeout, abort, connection failure, a non-JSON/non-conforming answer → `unavailable`,
 *   with Retry-After when the IdP sent one;
 * - a response that fails verification (ID token signature, iss, aud, exp, nonce; missing
 *   access_token) → `rejected` with `invalidResponse` set and no OAuth code.
 * @throws the original error when it is none of these (a bug, not an IdP condition)
 */
export function toIdpError(err: unknown, operation: IdpOperation, now: number = Date.now()): IdpError {
  if (err instanceof IdpError) return err;
  const cause = summary(err, operation);
  const status = statusOf(err);
  const retryAfterMs = parseRetryAfter(responseOf(err)?.headers.get('retry-after'), now);
  const retry = retryAfterMs === undefined ? {} : { retryAfterMs };

  if (err instanceof ResponseBodyError) {
    if (transient(status)) {
      return new IdpError('unavailable', `identity provider answered HTTP ${status}`, { ...retry, cause });
    }
    return new IdpError('rejected', 'identity provider rejected the request', {
      oauthError: oauthErrorCode(err.error),
      cause,
    });
  }
  if (err instanceof AuthorizationResponseError) {
    return new IdpError('rejected', 'identity provider returned an authorization error', {
      oauthError: oauthErrorCode(err.error),
      cause,
    });
  }
  if (err instanceof WWWAuthenticateChallengeError) {
    if (transient(status)) {
      return new IdpError('unavailable', `identity provider answered HTTP ${status}`, { ...retry, cause });
    }
    const challenge = err.cause[0]?.parameters.error;
    return new IdpError('rejected', 'identity provider rejected the client', {
      oauthError: oauthErrorCode(challenge ?? 'invalid_client'),
      cause,
    });
  }
  if (err instanceof ClientError) {
    const code = err.code ?? '';
    if (INVALID_RESPONSE_CODES.has(code)) {
      // A discovery document that does not verify is a configuration problem at the IdP: retry later.
      if (operation === 'discovery') {
        return new IdpError('unavailable', 'identity provider metadata is invalid', { cause });
      }
      return new IdpError('rejected', 'identity provider response failed verification', {
        invalidResponse: true,
        cause,
      });
    }
    if (code === 'OAUTH_TIMEOUT') {
      return new IdpError('unavailable', 'identity provider timed out', { cause });
    }
    if (code === 'OAUTH_ABORT') {
      return new IdpError('unavailable', 'identity provider call was cancelled', { cause });
    }
    const what = status === undefined ? 'an unexpected response' : `HTTP ${status}`;
    if (code === 'OAUTH_RESPONSE_IS_NOT_CONFORM' || code === 'OAUTH_RESPONSE_IS_NOT_JSON') {
      return new IdpError('unavailable', `identity provider answered ${what}`, { ...retry, cause });
    }
    if (isNetworkError(err.cause)) {
      return new IdpError('unavailable', 'identity provider is unreachable', { cause });
    }
    return new IdpError('unavailable', 'identity provider call failed', { ...retry, cause });
  }
  if (isNetworkError(err)) {
    return new IdpError('unavailable', 'identity provider is unreachable', { cause });
  }
  throw err;
}
