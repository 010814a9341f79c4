/**
 * Merge rules for a refresh response (RFC 6749 §6: "the authorization server MAY issue a new
 * refresh token") and the lifetime of the record that results.
 */
import type { TokenSet } from '../core/idp-client.js';
import type { NewTokenRecord, TokenRecord } from '../core/token-store.js';

/** RFC 6750: the token type when neither the response nor the record names one. */
export const DEFAULT_TOKEN_TYPE = 'Bearer';

/**
 * The record to write after a successful refresh of `previous`.
 * - refresh token: the new one if the IdP rotated it, else the old one (never lost);
 * - refresh-token expiry: the IdP's, else the old one's when the token was not rotated;
 * - scopes: the response's `scope` when present (RFC 6749 §5.1), else the previous scopes;
 * - token type: the response's, else the previous one, else `Bearer`;
 * - access-token expiry: from the IdP client (expires_in, else JWT exp, else provider default);
 * - ID token: the new one when the IdP sent one (OIDC Core §12.2), else the previous one.
 * @param now epoch ms, recorded as `updatedAt`
 */
export function mergeRefreshed(previous: TokenRecord, tokens: TokenSet, now: number): NewTokenRecord {
  const rotated = tokens.refreshToken !== undefined && tokens.refreshToken !== '';
  return {
    accessToken: tokens.accessToken,
    refreshToken: rotated ? tokens.refreshToken : previous.refreshToken,
    tokenType: nonEmpty(tokens.tokenType) ?? nonEmpty(previous.tokenType) ?? DEFAULT_TOKEN_TYPE,
    expiresAt: tokens.expiresAt,
    refreshExpiresAt: tokens.refreshExpiresAt ?? (rotated ? undefined : previous.refreshExpiresAt),
    scopes: tokens.scopes ?? previous.scopes,
    idToken: tokens.idToken ?? previous.idToken,
    obtainedVia: 'refresh',
    updatedAt: now,
    subject: previous.subject,
    // A refresh continues the login's epoch (TokenRecord.loginEpoch): it is not a new login.
    ...(previous.loginEpoch === undefined ? {} : { loginEpoch: previous.loginEpoch }),
  };
}

/**
 * How long the store keeps a record (docs/architecture.md §3): until its refresh token expires when the IdP
 * said when, else `maxRecordTtlMs`; a record without a refresh token only until its access token
 * expires. Always at least 1 ms: every Redis write has a TTL.
 */
export function recordTtlMs(
  record: Pick<NewTokenRecord, 'refreshToken' | 'refreshExpiresAt' | 'expiresAt'>,
  now: number,
  maxRecordTtlMs: number,
): number {
  const until =
    record.refreshToken === undefined ? record.expiresAt : (record.refreshExpiresAt ?? now + maxRecordTtlMs);
  return Math.max(1, until - now);
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
