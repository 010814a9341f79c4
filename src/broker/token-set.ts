/**
 * The record a login writes (docs/architecture.md §3), from the IdP's token response. Kept apart from the flow
 * so the rules are plain functions with their own tests. Its lifetime is `recordTtlMs`
 * (./merge.ts), the same rule as for a refreshed record.
 */
import type { TokenSet } from '../core/idp-client.js';
import type { NewTokenRecord, TokenRecord } from '../core/token-store.js';
import { DEFAULT_TOKEN_TYPE } from './merge.js';

export interface LoginRecordInput {
  readonly tokens: TokenSet;
  /** The IdP subject (ID token `sub` or user-API id); undefined for plain OAuth 2.0. */
  readonly subject: string | undefined;
  /** What the login asked for: the granted scopes when the response names none (RFC 6749 §5.1). */
  readonly requestedScopes: readonly string[];
  /** The record already stored for this user, read only when the login returned no refresh token. */
  readonly previous: TokenRecord | undefined;
  /** Epoch ms. */
  readonly now: number;
}

/**
 * The record to store after a login. A login that returned no refresh token keeps the stored
 * one (and its expiry) only when the stored record belongs to the same, known IdP subject; the
 * design this replaces erased it.
 */
export function loginRecord(input: LoginRecordInput): NewTokenRecord {
  const { tokens, subject, previous } = input;
  const issued = tokens.refreshToken !== undefined && tokens.refreshToken !== '';
  const keep =
    !issued &&
    subject !== undefined &&
    previous !== undefined &&
    previous.subject === subject &&
    previous.refreshToken !== undefined &&
    previous.refreshToken !== '' &&
    (previous.refreshExpiresAt === undefined || previous.refreshExpiresAt > input.now);
  return {
    accessToken: tokens.accessToken,
    refreshToken: issued ? tokens.refreshToken : keep ? previous.refreshToken : undefined,
    tokenType: tokens.tokenType ?? DEFAULT_TOKEN_TYPE,
    expiresAt: tokens.expiresAt,
    refreshExpiresAt: issued ? tokens.refreshExpiresAt : keep ? previous.refreshExpiresAt : undefined,
    scopes: tokens.scopes ?? input.requestedScopes,
    idToken: tokens.idToken,
    obtainedVia: 'login',
    updatedAt: input.now,
    subject,
  };
}
