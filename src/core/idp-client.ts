/**
 * What the domain needs from an identity provider. Implemented over openid-client (panva) in
 * this folder; the domain never speaks HTTP itself.
 */
import type { Identity } from './identity.js';

/** Tokens from a code exchange or a refresh. */
export interface TokenSet {
  readonly accessToken: string;
  /** Undefined when the IdP returned none (a refresh that did not rotate it). */
  readonly refreshToken: string | undefined;
  /** Undefined when the IdP returned no token_type. */
  readonly tokenType: string | undefined;
  /**
   * Access-token expiry, epoch ms: from `expires_in`, else the JWT `exp`, else the provider's
   * default lifetime. Never "never".
   */
  readonly expiresAt: number;
  /** From `refresh_expires_in` (or `refresh_token_expires_in`) when present. */
  readonly refreshExpiresAt: number | undefined;
  /** Undefined when the response carried no `scope` (keep the previous ones). */
  readonly scopes: readonly string[] | undefined;
  readonly idToken: string | undefined;
}

/**
 * A failed IdP call. `rejected`: the IdP answered with an OAuth error (invalid_grant,
 * invalid_client, …) — permanent for this grant — or its answer failed verification (ID-token
 * signature, iss, aud, exp, nonce: `invalidResponse`). `unavailable`: network error, timeout, 5xx
 * or 429 — transient. The message never contains an IdP response body or a token, and `cause` is
 * a log-safe summary, never the library error that carries the body (src/idp/errors.ts).
 */
export class IdpError extends Error {
  override readonly name = 'IdpError';
  readonly kind: 'rejected' | 'unavailable';
  /** The OAuth `error` code, for `rejected` by the IdP. Undefined for `invalidResponse`. */
  readonly oauthError: string | undefined;
  /** `rejected` because the IdP's answer did not verify (not because the IdP refused). */
  readonly invalidResponse: boolean;
  /** From a Retry-After header, ms. */
  readonly retryAfterMs: number | undefined;
  constructor(
    kind: 'rejected' | 'unavailable',
    message: string,
    options: { oauthError?: string; invalidResponse?: boolean; retryAfterMs?: number; cause?: unknown } = {},
  ) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.kind = kind;
    this.oauthError = options.oauthError;
    this.invalidResponse = options.invalidResponse ?? false;
    this.retryAfterMs = options.retryAfterMs;
  }
}

export interface AuthorizationRequest {
  readonly redirectUri: string;
  readonly scopes: readonly string[];
  readonly state: string;
  readonly nonce: string;
  readonly codeChallenge: string;
  readonly loginHint: string | undefined;
  /** Ask for offline access as the provider needs (storage on). */
  readonly offline: boolean;
}

export interface CodeExchange {
  readonly code: string;
  readonly redirectUri: string;
  readonly codeVerifier: string;
  /** Expected ID-token nonce; undefined for non-OIDC providers. */
  readonly nonce: string | undefined;
  /** The state the IdP echoed (checked by the broker, passed for libraries that want it). */
  readonly state: string | undefined;
}

/**
 * A token for a downstream API, from an RFC 8693 token exchange or an Entra on-behalf-of request.
 * No refresh token is kept: a downstream token is re-exchanged from the subject token.
 */
export interface ExchangedToken {
  readonly accessToken: string;
  /** Undefined when the IdP returned no token_type. */
  readonly tokenType: string | undefined;
  /** Expiry, epoch ms: `expires_in`, else the JWT `exp`, else the provider's default lifetime. */
  readonly expiresAt: number;
  /** Undefined when the response carried no `scope`. */
  readonly scopes: readonly string[] | undefined;
  /** RFC 8693 §2.2.1 `issued_token_type`, when the IdP sent it. */
  readonly issuedTokenType: string | undefined;
}

export interface IdpClient {
  readonly id: string;
  /** This provider's refresh skew, ms (provider setting or refresh.skew). */
  readonly skewMs: number;
  /** The configured redirect_uri allowlist (exact match, RFC 6749 §3.1.2.2). */
  readonly redirectUris: readonly string[];
  /** Scopes requested by default: configured, else the preset's. */
  readonly scopes: readonly string[];
  /** OpenID Connect: logins return a verified ID token. False for plain OAuth 2.0. */
  readonly oidc: boolean;
  /**
   * Whether a login yields the user's subject by itself (ID token or a user API). When false the
   * caller must name the user_id for the token to be stored.
   */
  readonly providesSubject: boolean;
  /** Builds the authorization URL. @throws IdpError unavailable (discovery failed) */
  authorizationUrl(request: AuthorizationRequest): Promise<string>;
  /**
   * Exchanges the code, verifies the ID token (signature via JWKS, iss, aud, exp, nonce) and
   * returns tokens and identity. @throws IdpError
   */
  exchangeCode(
    exchange: CodeExchange,
    signal?: AbortSignal,
  ): Promise<{ tokens: TokenSet; identity: Identity }>;
  /** refresh_token grant (RFC 6749 §6), with the provider's timeout. @throws IdpError */
  refresh(refreshToken: string, signal?: AbortSignal): Promise<TokenSet>;
  /** Ids of the downstream APIs configured under this provider (`downstreams[].id`). */
  readonly downstreams?: readonly string[];
  /**
   * Exchanges the user's subject (access) token for a token for the downstream `downstream`:
   * RFC 8693 token exchange or Entra on-behalf-of, as configured, at the downstream's token
   * endpoint with its client authentication (defaults: the provider's). No retries.
   * @throws IdpError (`rejected` with the OAuth code, e.g. invalid_target; or `unavailable`)
   */
  exchange?(downstream: string, subjectToken: string, signal?: AbortSignal): Promise<ExchangedToken>;
  /** RFC 7009 revocation. Never throws. */
  revoke(
    token: string,
    hint: 'refresh_token' | 'access_token',
    signal?: AbortSignal,
  ): Promise<'REVOKED' | 'NOT_SUPPORTED' | 'FAILED'>;
}

/** The configured providers by id. */
export interface IdpRegistry {
  get(id: string): IdpClient;
  readonly ids: readonly string[];
}
