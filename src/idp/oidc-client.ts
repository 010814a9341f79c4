/**
 * IdpClient over openid-client (panva, certified): discovery or explicit metadata, PKCE S256
 * authorization URLs, the code exchange with ID-token verification (JWKS signature via
 * enableNonRepudiationChecks; iss, aud, exp, nonce by the library), refresh (RFC 6749 §6),
 * revocation (RFC 7009) and downstream token exchange (./token-exchange.ts). No OAuth or JWT
 * logic is written here beyond choosing parameters.
 *
 * Module-level functions over an explicit context (./oidc-context.ts). Every call is bounded by
 * the provider's `timeout` and by the caller's AbortSignal; errors leave as IdpError
 * (./errors.ts) without IdP bodies.
 */
import {
  authorizationCodeGrant,
  buildAuthorizationUrl,
  fetchProtectedResource,
  fetchUserInfo,
  refreshTokenGrant,
  tokenRevocation,
  type AuthorizationCodeGrantChecks,
  type Configuration,
  type TokenEndpointResponse,
} from 'openid-client';
import type { Identity } from '../core/identity.js';
import { accessTokenExpiry, refreshTokenExpiry } from './expiry.js';
import { parseRetryAfter } from './errors.js';
import {
  IdpError,
  type AuthorizationRequest,
  type CodeExchange,
  type IdpClient,
  type TokenSet,
} from '../core/idp-client.js';
import {
  createOidcContext,
  getConfiguration,
  run,
  tokenType,
  type OidcClientOptions,
  type OidcContext,
} from './oidc-context.js';
import { exchangeForDownstream } from './token-exchange.js';

export type { OidcClientOptions } from './oidc-context.js';

function stringClaim(claims: Readonly<Record<string, unknown>>, name: string): string | undefined {
  const value = claims[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Creates the IdpClient of one provider. Metadata is discovered lazily, on first use. */
export function createOidcClient(options: OidcClientOptions): IdpClient {
  const ctx = createOidcContext(options);
  const { provider: p, plan } = ctx;
  return {
    id: p.id,
    skewMs: p.skew ?? options.refreshSkewMs,
    redirectUris: p.redirect_uris,
    scopes: plan.scopes,
    oidc: plan.oidc,
    providesSubject: plan.oidc || plan.userApi !== undefined,
    downstreams: p.downstreams.map((d) => d.id),
    authorizationUrl: (request) => authorizationUrl(ctx, request),
    exchangeCode: (exchange, signal) => exchangeCode(ctx, exchange, signal),
    refresh: (refreshToken, signal) => refresh(ctx, refreshToken, signal),
    exchange: (downstream, subjectToken, signal) =>
      exchangeForDownstream(ctx, downstream, subjectToken, signal),
    revoke: (token, hint, signal) => revoke(ctx, token, hint, signal),
  };
}

function toTokenSet(ctx: OidcContext, response: TokenEndpointResponse, receivedAt: number): TokenSet {
  return {
    accessToken: response.access_token,
    refreshToken: response.refresh_token === '' ? undefined : response.refresh_token,
    tokenType: tokenType(response.token_type),
    expiresAt: accessTokenExpiry(response, receivedAt, ctx.provider.default_access_token_lifetime),
    refreshExpiresAt: refreshTokenExpiry(response as Readonly<Record<string, unknown>>, receivedAt),
    scopes:
      typeof response.scope === 'string'
        ? response.scope.split(ctx.plan.githubQuirks ? /[ ,]/ : ' ').filter((s) => s !== '')
        : undefined,
    idToken: response.id_token,
  };
}

/**
 * email, email_verified and name from the UserInfo endpoint (sub checked against the ID
 * token's, OIDC Core §5.3.4). Best-effort: the login does not depend on it, so any failure
 * leaves them unknown.
 */
async function userInfoProfile(
  ctx: OidcContext,
  accessToken: string,
  subject: string,
  signal: AbortSignal | undefined,
): Promise<Readonly<Record<string, unknown>>> {
  try {
    const config = await getConfiguration(ctx);
    if (config.serverMetadata().userinfo_endpoint === undefined) return {};
    const info = await run(ctx, 'user_api', signal, (c) => fetchUserInfo(c, accessToken, subject));
    return { email: info.email, email_verified: info.email_verified, name: info.name };
  } catch (err) {
    ctx.log.warn(
      { err: err instanceof IdpError ? err.cause : undefined },
      'userinfo request failed; identity without email and name',
    );
    return {};
  }
}

/** GitHub-style identity: the user API answers with the user (id, login, name, email). */
async function userApiIdentity(
  ctx: OidcContext,
  config: Configuration,
  accessToken: string,
  signal: AbortSignal | undefined,
): Promise<Identity> {
  const url = new URL(ctx.plan.userApi!);
  const response = await run(ctx, 'user_api', signal, (c) =>
    fetchProtectedResource(
      c,
      accessToken,
      url,
      'GET',
      undefined,
      new Headers({ accept: 'application/vnd.github+json, application/json', 'user-agent': 'credbroker' }),
    ),
  );
  if (!response.ok) {
    await response.body?.cancel();
    const transient = response.status >= 500 || response.status === 429;
    const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), ctx.clock.now());
    throw new IdpError(
      transient ? 'unavailable' : 'rejected',
      `identity provider user API answered HTTP ${response.status}`,
      transient ? (retryAfterMs === undefined ? {} : { retryAfterMs }) : { invalidResponse: true },
    );
  }
  let user: Record<string, unknown>;
  try {
    user = (await response.json()) as Record<string, unknown>;
  } catch (err) {
    throw new IdpError('unavailable', 'identity provider user API answered a non-JSON body', {
      cause: new Error(`user_api: ${(err as Error).name}`),
    });
  }
  const id = user.id ?? user.sub;
  if ((typeof id !== 'number' && typeof id !== 'string') || String(id) === '') {
    throw new IdpError('rejected', 'identity provider user API returned no user id', {
      invalidResponse: true,
    });
  }
  const claims: Record<string, unknown> = {};
  for (const key of ['id', 'login', 'name', 'email', 'node_id', 'type']) {
    if (user[key] !== undefined && user[key] !== null) claims[key] = user[key];
  }
  return {
    issuer: config.serverMetadata().issuer,
    subject: String(id),
    email: stringClaim(user, 'email'),
    // GitHub's public profile email is not a verified-address claim.
    emailVerified: false,
    name: stringClaim(user, 'name') ?? stringClaim(user, 'login'),
    claims,
  };
}

async function authorizationUrl(ctx: OidcContext, request: AuthorizationRequest): Promise<string> {
  const config = await getConfiguration(ctx);
  const { scopes, params } = ctx.plan.authorization(
    request.scopes,
    request.offline,
    config.serverMetadata().scopes_supported,
  );
  const parameters: Record<string, string> = {
    response_type: 'code',
    redirect_uri: request.redirectUri,
    state: request.state,
    code_challenge: request.codeChallenge,
    code_challenge_method: 'S256',
    ...params,
  };
  if (scopes.length > 0) parameters.scope = scopes.join(' ');
  if (ctx.plan.oidc) parameters.nonce = request.nonce;
  if (request.loginHint !== undefined && request.loginHint !== '') parameters.login_hint = request.loginHint;
  return buildAuthorizationUrl(config, parameters).href;
}

async function exchangeCode(
  ctx: OidcContext,
  exchange: CodeExchange,
  signal?: AbortSignal,
): Promise<{ tokens: TokenSet; identity: Identity }> {
  // openid-client processes an authorization response URL; we rebuild the one the IdP sent
  // the browser to. The broker has already matched state to the provider, so the RFC 9207
  // `iss` the front end does not forward is this provider's own issuer.
  const config = await getConfiguration(ctx);
  const metadata = config.serverMetadata();
  const current = new URL(exchange.redirectUri);
  current.searchParams.set('code', exchange.code);
  if (exchange.state !== undefined) current.searchParams.set('state', exchange.state);
  if (metadata.authorization_response_iss_parameter_supported) {
    current.searchParams.set('iss', metadata.issuer);
  }
  const checks: AuthorizationCodeGrantChecks = {
    pkceCodeVerifier: exchange.codeVerifier,
    expectedState: exchange.state,
  };
  if (ctx.plan.oidc) {
    checks.idTokenExpected = true;
    if (exchange.nonce !== undefined) checks.expectedNonce = exchange.nonce;
  }
  const response = await run(ctx, 'authorization_code', signal, (c) =>
    authorizationCodeGrant(c, current, checks),
  );
  const tokens = toTokenSet(ctx, response, ctx.clock.now());
  let identity: Identity;
  if (ctx.plan.oidc) {
    const claims = response.claims() as Readonly<Record<string, unknown>> | undefined;
    if (claims === undefined) {
      throw new IdpError('rejected', 'identity provider returned no ID token', { invalidResponse: true });
    }
    const subject = String(claims.sub);
    // OIDC Core §5.4: an IdP may release email and name only at the UserInfo endpoint.
    const profile =
      stringClaim(claims, 'email') === undefined && stringClaim(claims, 'name') === undefined
        ? await userInfoProfile(ctx, tokens.accessToken, subject, signal)
        : claims;
    identity = {
      issuer: String(claims.iss),
      subject,
      email: stringClaim(profile, 'email'),
      emailVerified: profile.email_verified === true,
      name: stringClaim(profile, 'name'),
      claims: { ...claims },
    };
  } else if (ctx.plan.userApi !== undefined) {
    identity = await userApiIdentity(ctx, config, tokens.accessToken, signal);
  } else {
    identity = {
      issuer: metadata.issuer,
      subject: '',
      email: undefined,
      emailVerified: false,
      name: undefined,
      claims: {},
    };
  }
  return { tokens, identity };
}

async function refresh(ctx: OidcContext, refreshToken: string, signal?: AbortSignal): Promise<TokenSet> {
  const response = await run(ctx, 'refresh_token', signal, (c) => refreshTokenGrant(c, refreshToken));
  return toTokenSet(ctx, response, ctx.clock.now());
}

async function revoke(
  ctx: OidcContext,
  token: string,
  hint: 'refresh_token' | 'access_token',
  signal?: AbortSignal,
): Promise<'REVOKED' | 'NOT_SUPPORTED' | 'FAILED'> {
  try {
    const config = await getConfiguration(ctx);
    if (config.serverMetadata().revocation_endpoint === undefined) return 'NOT_SUPPORTED';
    await run(ctx, 'revocation', signal, (c) => tokenRevocation(c, token, { token_type_hint: hint }));
    return 'REVOKED';
  } catch (err) {
    ctx.log.warn(
      { err: err instanceof IdpError ? err.cause : undefined },
      'token revocation at the identity provider failed',
    );
    return 'FAILED';
  }
}
