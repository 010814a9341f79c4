/**
 * IdpClient over openid-client (panva, certified): discovery or explicit metadata, PKCE S256
 * authorization URLs, the code exchange with ID-token verification (JWKS signature via
 * enableNonRepudiationChecks; iss, aud, exp, nonce by the library), refresh (RFC 6749 §6) and
 * revocation (RFC 7009). No OAuth or JWT logic is written here beyond choosing parameters.
 *
 * Every call is bounded by the provider's `timeout` and by the caller's AbortSignal; errors leave
 * as IdpError (./errors.ts) without IdP bodies.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import {
  allowInsecureRequests,
  authorizationCodeGrant,
  buildAuthorizationUrl,
  Configuration,
  customFetch,
  discovery,
  enableNonRepudiationChecks,
  fetchProtectedResource,
  fetchUserInfo,
  genericGrantRequest,
  refreshTokenGrant,
  tokenRevocation,
  type AuthorizationCodeGrantChecks,
  type ClientAuth,
  type CustomFetch,
  type ServerMetadata,
  type TokenEndpointResponse,
} from 'openid-client';
import type { Identity } from '../core/identity.js';
import type { DownstreamConfig, ProviderConfig } from '../config/load.js';
import type { Logger } from '../logger.js';
import { accessTokenExpiry, refreshTokenExpiry } from './expiry.js';
import { parseRetryAfter, toIdpError, type IdpOperation } from './errors.js';
import {
  IdpError,
  type AuthorizationRequest,
  type CodeExchange,
  type ExchangedToken,
  type IdpClient,
  type TokenSet,
} from '../core/idp-client.js';
import type { ProviderPlan } from './presets.js';
import { systemClock, type Clock } from '../core/clock.js';
import { insecureUrlProblem, oauthErrorAs400 } from './transport.js';

export interface OidcClientOptions {
  readonly provider: ProviderConfig;
  readonly plan: ProviderPlan;
  readonly clientAuth: ClientAuth;
  /** The global refresh skew (refresh.skew), ms; the provider's `skew` overrides it. */
  readonly refreshSkewMs: number;
  readonly logger: Logger;
  readonly clock?: Clock;
  /** HTTP client; default the global fetch. */
  readonly fetch?: typeof fetch;
  /**
   * Client authentication of each downstream that has its own `client_id`, by downstream id
   * (built at startup with the provider's). Downstreams without one use `clientAuth`.
   */
  readonly downstreamAuth?: ReadonlyMap<string, ClientAuth>;
}

/** RFC 8693 §2.1 grant type. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
/** RFC 7523 §2.1 grant type, used by Entra's on-behalf-of flow. */
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
/** RFC 8693 §3: the subject token handed to the IdP is an OAuth access token. */
export const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

/**
 * The token-endpoint parameters of a downstream exchange (everything but client authentication,
 * which openid-client adds).
 * - token_exchange: RFC 8693 §2.1 (subject_token, subject_token_type, requested_token_type,
 *   audience, resource (RFC 8707), scope).
 * - entra_obo: Microsoft identity platform on-behalf-of (assertion, requested_token_use, scope).
 */
export function exchangeParameters(
  d: DownstreamConfig,
  subjectToken: string,
): { grantType: string; parameters: URLSearchParams } {
  const parameters = new URLSearchParams();
  if (d.mode === 'entra_obo') {
    parameters.set('assertion', subjectToken);
    parameters.set('requested_token_use', 'on_behalf_of');
    parameters.set('scope', (d.scopes ?? []).join(' '));
    return { grantType: JWT_BEARER_GRANT, parameters };
  }
  parameters.set('subject_token', subjectToken);
  parameters.set('subject_token_type', ACCESS_TOKEN_TYPE);
  parameters.set('requested_token_type', d.requested_token_type);
  if (d.audience !== undefined) parameters.set('audience', d.audience);
  if (d.resource !== undefined) parameters.set('resource', d.resource);
  if (d.scopes !== undefined && d.scopes.length > 0) parameters.set('scope', d.scopes.join(' '));
  return { grantType: TOKEN_EXCHANGE_GRANT, parameters };
}

/** RFC 6750 spells the type "Bearer"; oauth4webapi lower-cases it. */
function tokenType(value: string | undefined): string | undefined {
  if (value === undefined || value === '') return undefined;
  if (value.toLowerCase() === 'bearer') return 'Bearer';
  if (value.toLowerCase() === 'dpop') return 'DPoP';
  return value;
}

function stringClaim(claims: Readonly<Record<string, unknown>>, name: string): string | undefined {
  const value = claims[name];
  return typeof value === 'string' && value !== '' ? value : undefined;
}

/** Creates the IdpClient of one provider. Metadata is discovered lazily, on first use. */
export function createOidcClient(options: OidcClientOptions): IdpClient {
  const { provider: p, plan, clientAuth, logger } = options;
  const clock = options.clock ?? systemClock;
  const baseFetch = options.fetch ?? globalThis.fetch;
  const timeoutSeconds = p.timeout / 1000;
  const log = logger.child({ provider: p.id });

  // The caller's AbortSignal for the call in progress: openid-client takes a fetch per
  // configuration, not per call, so the signal travels with the async context.
  const callSignal = new AsyncLocalStorage<AbortSignal | undefined>();
  const fetchImpl: CustomFetch = async (url, init) => {
    const extra = callSignal.getStore();
    const signal = extra && init.signal ? AbortSignal.any([init.signal, extra]) : (init.signal ?? extra);
    const response = await baseFetch(url, { ...init, signal } as RequestInit);
    return plan.githubQuirks ? oauthErrorAs400(response) : response;
  };

  const checkEndpoints = (config: Configuration): void => {
    const m = config.serverMetadata();
    for (const url of [
      m.authorization_endpoint,
      m.token_endpoint,
      m.revocation_endpoint,
      m.userinfo_endpoint,
      m.jwks_uri,
    ]) {
      if (url === undefined) continue;
      const problem = insecureUrlProblem(url, p.allow_insecure_http);
      if (problem !== undefined) {
        throw new IdpError('unavailable', 'identity provider metadata names an insecure endpoint', {
          cause: new Error(`discovery: ${problem}`),
        });
      }
    }
  };

  const execute = p.allow_insecure_http ? [allowInsecureRequests] : [];
  const configure = (config: Configuration): Configuration => {
    config[customFetch] = fetchImpl;
    config.timeout = timeoutSeconds;
    for (const extension of execute) extension(config);
    return config;
  };

  const build = async (): Promise<Configuration> => {
    let config: Configuration;
    if (plan.source.kind === 'discovery') {
      const discovered = await discovery(new URL(plan.source.issuer), p.client_id, {}, clientAuth, {
        [customFetch]: fetchImpl,
        timeout: timeoutSeconds,
        execute,
      });
      config =
        Object.keys(plan.source.overrides).length === 0
          ? discovered
          : configure(
              new Configuration(
                { ...(discovered.serverMetadata() as ServerMetadata), ...plan.source.overrides },
                p.client_id,
                {},
                clientAuth,
              ),
            );
    } else {
      config = configure(new Configuration({ ...plan.source.metadata }, p.client_id, {}, clientAuth));
    }
    checkEndpoints(config);
    // OIDC Core §3.1.3.7 allows trusting TLS for an ID token from the token endpoint; we verify
    // its signature against the provider's JWKS anyway (DESIGN §5).
    if (plan.oidc) enableNonRepudiationChecks(config);
    return config;
  };

  let configuration: Promise<Configuration> | undefined;
  /** Discovered once and cached; a failure is not cached, the next call discovers again. */
  const getConfiguration = (): Promise<Configuration> => {
    if (configuration === undefined) {
      // Outside any caller's signal: one caller cancelling must not fail the shared discovery.
      const attempt = callSignal.exit(build).catch((err: unknown) => {
        configuration = undefined;
        const error = toIdpError(err, 'discovery', clock.now());
        log.warn({ err: error.cause }, 'identity provider discovery failed');
        throw error;
      });
      configuration = attempt;
    }
    return configuration;
  };

  /** Runs one IdP operation with the caller's signal, mapping every failure to IdpError. */
  const run = async <T>(
    operation: IdpOperation,
    signal: AbortSignal | undefined,
    fn: (config: Configuration) => Promise<T>,
  ): Promise<T> => {
    const config = await getConfiguration();
    try {
      return await callSignal.run(signal, () => fn(config));
    } catch (err) {
      throw toIdpError(err, operation, clock.now());
    }
  };

  /**
   * The configuration a downstream's exchange runs with: the provider's, or (own token endpoint
   * and/or own client) a copy of its metadata with those replaced. Built once per downstream.
   */
  const downstreamConfigurations = new Map<string, Promise<Configuration>>();
  const downstreamConfiguration = (d: DownstreamConfig): Promise<Configuration> => {
    if (d.token_endpoint === undefined && d.client_id === undefined) return getConfiguration();
    let config = downstreamConfigurations.get(d.id);
    if (config === undefined) {
      const ownAuth = d.client_id === undefined ? clientAuth : options.downstreamAuth?.get(d.id);
      if (ownAuth === undefined) {
        throw new Error(`providers.${p.id}.downstreams.${d.id}: client authentication was not built`);
      }
      config = getConfiguration().then((base) => {
        const metadata = { ...(base.serverMetadata() as ServerMetadata) };
        if (d.token_endpoint !== undefined) metadata.token_endpoint = d.token_endpoint;
        return configure(new Configuration(metadata, d.client_id ?? p.client_id, {}, ownAuth));
      });
      config.catch(() => downstreamConfigurations.delete(d.id));
      downstreamConfigurations.set(d.id, config);
    }
    return config;
  };

  const toTokenSet = (response: TokenEndpointResponse, receivedAt: number): TokenSet => ({
    accessToken: response.access_token,
    refreshToken: response.refresh_token === '' ? undefined : response.refresh_token,
    tokenType: tokenType(response.token_type),
    expiresAt: accessTokenExpiry(response, receivedAt, p.default_access_token_lifetime),
    refreshExpiresAt: refreshTokenExpiry(response as Readonly<Record<string, unknown>>, receivedAt),
    scopes:
      typeof response.scope === 'string'
        ? response.scope.split(plan.githubQuirks ? /[ ,]/ : ' ').filter((s) => s !== '')
        : undefined,
    idToken: response.id_token,
  });

  /**
   * email, email_verified and name from the UserInfo endpoint (sub checked against the ID
   * token's, OIDC Core §5.3.4). Best-effort: the login does not depend on it, so any failure
   * leaves them unknown.
   */
  const userInfoProfile = async (
    accessToken: string,
    subject: string,
    signal: AbortSignal | undefined,
  ): Promise<Readonly<Record<string, unknown>>> => {
    try {
      const config = await getConfiguration();
      if (config.serverMetadata().userinfo_endpoint === undefined) return {};
      const info = await run('user_api', signal, (c) => fetchUserInfo(c, accessToken, subject));
      return { email: info.email, email_verified: info.email_verified, name: info.name };
    } catch (err) {
      log.warn(
        { err: err instanceof IdpError ? err.cause : undefined },
        'userinfo request failed; identity without email and name',
      );
      return {};
    }
  };

  /** GitHub-style identity: the user API answers with the user (id, login, name, email). */
  const userApiIdentity = async (
    config: Configuration,
    accessToken: string,
    signal: AbortSignal | undefined,
  ): Promise<Identity> => {
    const url = new URL(plan.userApi!);
    const response = await run('user_api', signal, (c) =>
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
      const retryAfterMs = parseRetryAfter(response.headers.get('retry-after'), clock.now());
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
  };

  return {
    id: p.id,
    skewMs: p.skew ?? options.refreshSkewMs,
    redirectUris: p.redirect_uris,
    scopes: plan.scopes,
    oidc: plan.oidc,
    providesSubject: plan.oidc || plan.userApi !== undefined,

    async authorizationUrl(request: AuthorizationRequest): Promise<string> {
      const config = await getConfiguration();
      const { scopes, params } = plan.authorization(
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
      if (plan.oidc) parameters.nonce = request.nonce;
      if (request.loginHint !== undefined && request.loginHint !== '')
        parameters.login_hint = request.loginHint;
      return buildAuthorizationUrl(config, parameters).href;
    },

    async exchangeCode(exchange: CodeExchange, signal?: AbortSignal) {
      // openid-client processes an authorization response URL; we rebuild the one the IdP sent
      // the browser to. The broker has already matched state to the provider, so the RFC 9207
      // `iss` the front end does not forward is this provider's own issuer.
      const config = await getConfiguration();
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
      if (plan.oidc) {
        checks.idTokenExpected = true;
        if (exchange.nonce !== undefined) checks.expectedNonce = exchange.nonce;
      }
      const response = await run('authorization_code', signal, (c) =>
        authorizationCodeGrant(c, current, checks),
      );
      const tokens = toTokenSet(response, clock.now());
      let identity: Identity;
      if (plan.oidc) {
        const claims = response.claims() as Readonly<Record<string, unknown>> | undefined;
        if (claims === undefined) {
          throw new IdpError('rejected', 'identity provider returned no ID token', { invalidResponse: true });
        }
        const subject = String(claims.sub);
        // OIDC Core §5.4: an IdP may release email and name only at the UserInfo endpoint.
        const profile =
          stringClaim(claims, 'email') === undefined && stringClaim(claims, 'name') === undefined
            ? await userInfoProfile(tokens.accessToken, subject, signal)
            : claims;
        identity = {
          issuer: String(claims.iss),
          subject,
          email: stringClaim(profile, 'email'),
          emailVerified: profile.email_verified === true,
          name: stringClaim(profile, 'name'),
          claims: { ...claims },
        };
      } else if (plan.userApi !== undefined) {
        identity = await userApiIdentity(config, tokens.accessToken, signal);
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
    },

    async refresh(refreshToken: string, signal?: AbortSignal): Promise<TokenSet> {
      const response = await run('refresh_token', signal, (c) => refreshTokenGrant(c, refreshToken));
      return toTokenSet(response, clock.now());
    },

    downstreams: p.downstreams.map((d) => d.id),

    async exchange(downstream: string, subjectToken: string, signal?: AbortSignal): Promise<ExchangedToken> {
      const d = p.downstreams.find((candidate) => candidate.id === downstream);
      if (d === undefined) throw new Error(`provider ${p.id} has no downstream ${downstream}`);
      const config = await downstreamConfiguration(d);
      const { grantType, parameters } = exchangeParameters(d, subjectToken);
      const receivedAt = clock.now();
      let response: TokenEndpointResponse;
      try {
        response = await callSignal.run(signal, () => genericGrantRequest(config, grantType, parameters));
      } catch (err) {
        throw toIdpError(err, 'token_exchange', clock.now());
      }
      const issued = (response as Readonly<Record<string, unknown>>).issued_token_type;
      return {
        accessToken: response.access_token,
        tokenType: tokenType(response.token_type),
        expiresAt: accessTokenExpiry(response, receivedAt, p.default_access_token_lifetime),
        scopes:
          typeof response.scope === 'string'
            ? response.scope.split(' ').filter((scope) => scope !== '')
            : undefined,
        issuedTokenType: typeof issued === 'string' && issued !== '' ? issued : undefined,
      };
    },

    async revoke(token, hint, signal) {
      try {
        const config = await getConfiguration();
        if (config.serverMetadata().revocation_endpoint === undefined) return 'NOT_SUPPORTED';
        await run('revocation', signal, (c) => tokenRevocation(c, token, { token_type_hint: hint }));
        return 'REVOKED';
      } catch (err) {
        log.warn(
          { err: err instanceof IdpError ? err.cause : undefined },
          'token revocation at the identity provider failed',
        );
        return 'FAILED';
      }
    },
  };
}
