/**
 * Downstream token exchange at the IdP, through openid-client's genericGrantRequest (no
 * hand-written HTTP, and the provider's four client-authentication methods):
 * - `token_exchange`: OAuth 2.0 Token Exchange, RFC 8693 §2.1 (with RFC 8707 `resource`);
 * - `entra_obo`: Microsoft identity platform on-behalf-of, the RFC 7523 jwt-bearer grant with
 *   `requested_token_use=on_behalf_of`.
 * A downstream may name its own token endpoint and its own client; the rest comes from the
 * provider.
 */
import {
  Configuration,
  genericGrantRequest,
  type ServerMetadata,
  type TokenEndpointResponse,
} from 'openid-client';
import type { DownstreamConfig } from '../config/load.js';
import type { ExchangedToken } from '../core/idp-client.js';
import { accessTokenExpiry } from './expiry.js';
import { toIdpError } from './errors.js';
import { configure, getConfiguration, tokenType, type OidcContext } from './oidc-context.js';

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

/**
 * The configuration a downstream's exchange runs with: the provider's, or (own token endpoint
 * and/or own client) a copy of its metadata with those replaced. Built once per downstream.
 */
function downstreamConfiguration(ctx: OidcContext, d: DownstreamConfig): Promise<Configuration> {
  if (d.token_endpoint === undefined && d.client_id === undefined) return getConfiguration(ctx);
  let config = ctx.downstreamConfigurations.get(d.id);
  if (config === undefined) {
    const auth = d.client_id === undefined ? ctx.clientAuth : ctx.downstreamAuth.get(d.id);
    if (auth === undefined) {
      throw new Error(
        `providers.${ctx.provider.id}.downstreams.${d.id}: client authentication was not built`,
      );
    }
    config = getConfiguration(ctx).then((base) => {
      const metadata = { ...(base.serverMetadata() as ServerMetadata) };
      if (d.token_endpoint !== undefined) metadata.token_endpoint = d.token_endpoint;
      return configure(ctx, new Configuration(metadata, d.client_id ?? ctx.provider.client_id, {}, auth));
    });
    config.catch(() => ctx.downstreamConfigurations.delete(d.id));
    ctx.downstreamConfigurations.set(d.id, config);
  }
  return config;
}

/**
 * Exchanges `subjectToken` for a token for `downstream`, with the provider's timeout and the
 * caller's signal; no retries.
 * @throws IdpError `rejected` (the OAuth code, e.g. invalid_target) or `unavailable`
 */
export async function exchangeForDownstream(
  ctx: OidcContext,
  downstream: string,
  subjectToken: string,
  signal?: AbortSignal,
): Promise<ExchangedToken> {
  const d = ctx.provider.downstreams.find((candidate) => candidate.id === downstream);
  if (d === undefined) throw new Error(`provider ${ctx.provider.id} has no downstream ${downstream}`);
  const config = await downstreamConfiguration(ctx, d);
  const { grantType, parameters } = exchangeParameters(d, subjectToken);
  const receivedAt = ctx.clock.now();
  let response: TokenEndpointResponse;
  try {
    response = await ctx.callSignal.run(signal, () => genericGrantRequest(config, grantType, parameters));
  } catch (err) {
    throw toIdpError(err, 'token_exchange', ctx.clock.now());
  }
  const issued = (response as Readonly<Record<string, unknown>>).issued_token_type;
  return {
    accessToken: response.access_token,
    tokenType: tokenType(response.token_type),
    expiresAt: accessTokenExpiry(response, receivedAt, ctx.provider.default_access_token_lifetime),
    scopes:
      typeof response.scope === 'string' ? response.scope.split(' ').filter((s) => s !== '') : undefined,
    issuedTokenType: typeof issued === 'string' && issued !== '' ? issued : undefined,
  };
}
