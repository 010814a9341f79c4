/**
 * Provider presets: what differs between identity providers that the configuration should not
 * have to spell out. A preset resolves a provider's configuration into a plan: where the metadata
 * comes from (OIDC discovery or explicit endpoints), the default scopes, whether an ID token is
 * expected, where the identity comes from, and which authorization parameters ask for offline
 * access (a refresh token) when token storage is on.
 */
import type { ProviderConfig } from '../config/load.js';

export type PresetName = ProviderConfig['preset'];

/** Explicit authorization-server metadata (RFC 8414 names), for providers without discovery. */
export interface ExplicitMetadata {
  readonly issuer: string;
  readonly authorization_endpoint: string;
  readonly token_endpoint: string;
  readonly revocation_endpoint?: string;
  readonly userinfo_endpoint?: string;
  readonly jwks_uri?: string;
}

export interface ProviderPlan {
  /** `discovery`: fetch /.well-known/openid-configuration of `issuer`; `explicit`: `metadata`. */
  readonly source:
    | {
        readonly kind: 'discovery';
        readonly issuer: string;
        /** Configured endpoints that replace the discovered ones. */
        readonly overrides: Partial<Omit<ExplicitMetadata, 'issuer'>>;
      }
    | { readonly kind: 'explicit'; readonly metadata: ExplicitMetadata };
  /** OpenID Connect: an ID token is required and verified (JWKS signature, iss, aud, exp, nonce). */
  readonly oidc: boolean;
  /** Scopes requested unless the caller adds more. */
  readonly scopes: readonly string[];
  /** Non-OIDC identity: the URL of a user API answering with the user as JSON (GitHub). */
  readonly userApi: string | undefined;
  /**
   * GitHub's token endpoint answers errors with HTTP 200 and an `error` member, and separates
   * granted scopes with commas.
   */
  readonly githubQuirks?: boolean;
  /**
   * The scopes and extra authorization parameters to send.
   * @param scopes the scopes asked for (defaults plus the caller's)
   * @param offline token storage is on: ask for a refresh token as this provider needs
   * @param supportedScopes the provider's advertised `scopes_supported`, when known
   */
  authorization(
    scopes: readonly string[],
    offline: boolean,
    supportedScopes: readonly string[] | undefined,
  ): { scopes: string[]; params: Record<string, string> };
}

export const GOOGLE_ISSUER = 'https://accounts.google.com';
export const GITHUB = {
  issuer: 'https://github.com',
  authorization_endpoint: 'https://github.com/login/oauth/authorize',
  token_endpoint: 'https://github.com/login/oauth/access_token',
  userApi: 'https://api.github.com/user',
} as const;

/** Entra ID v2.0 issuer of a tenant (a GUID, a domain, or common/organizations/consumers). */
export function microsoftIssuer(tenant: string): string {
  return `https://login.microsoftonline.com/${encodeURIComponent(tenant)}/v2.0`;
}

/** Endpoints configured beside an issuer: they replace what discovery finds. */
function overrides(p: ProviderConfig): Partial<Omit<ExplicitMetadata, 'issuer'>> {
  const out: Record<string, string> = {};
  for (const key of [
    'authorization_endpoint',
    'token_endpoint',
    'revocation_endpoint',
    'userinfo_endpoint',
    'jwks_uri',
  ] as const) {
    const value = p[key];
    if (value !== undefined) out[key] = value;
  }
  return out;
}

const OIDC_DEFAULT_SCOPES = ['openid', 'profile', 'email'] as const;

function union(...lists: (readonly string[])[]): string[] {
  return [...new Set(lists.flat())];
}

function explicitMetadata(
  p: ProviderConfig,
  defaults: Partial<ExplicitMetadata> = {},
): ExplicitMetadata | undefined {
  const authorization = p.authorization_endpoint ?? defaults.authorization_endpoint;
  const token = p.token_endpoint ?? defaults.token_endpoint;
  if (authorization === undefined || token === undefined) return undefined;
  const optional = (key: 'revocation_endpoint' | 'userinfo_endpoint' | 'jwks_uri') => {
    const value = p[key] ?? defaults[key];
    return value === undefined ? {} : { [key]: value };
  };
  return {
    // Without discovery the issuer is what ID tokens must carry as `iss`; default: the
    // authorization server's origin.
    issuer: p.issuer ?? defaults.issuer ?? new URL(authorization).origin,
    authorization_endpoint: authorization,
    token_endpoint: token,
    ...optional('revocation_endpoint'),
    ...optional('userinfo_endpoint'),
    ...optional('jwks_uri'),
  };
}

/**
 * OIDC Core §11: offline_access is requested with prompt=consent. Added only when the provider
 * advertises the scope (an unknown scope would fail the login with invalid_scope).
 */
function genericAuthorization(oidc: boolean) {
  return (scopes: readonly string[], offline: boolean, supported: readonly string[] | undefined) => {
    const wantOffline = offline && (supported?.includes('offline_access') ?? false);
    const list = union(scopes, wantOffline ? ['offline_access'] : []);
    const params: Record<string, string> = {};
    if (oidc && list.includes('offline_access')) params.prompt = 'consent';
    return { scopes: list, params };
  };
}

/**
 * Resolves a provider's configuration into its plan.
 * @throws Error naming the field when the configuration cannot describe a usable provider
 */
export function resolvePreset(p: ProviderConfig): ProviderPlan {
  const configured = p.scopes;
  switch (p.preset) {
    case 'google':
      return {
        source: { kind: 'discovery', issuer: p.issuer ?? GOOGLE_ISSUER, overrides: overrides(p) },
        oidc: true,
        scopes: configured ?? OIDC_DEFAULT_SCOPES,
        userApi: undefined,
        // Google issues a refresh token only with access_type=offline, and again on a later
        // login only with prompt=consent. It rejects the offline_access scope.
        authorization: (scopes, offline) => ({
          scopes: scopes.filter((s) => s !== 'offline_access'),
          params: offline ? { access_type: 'offline', prompt: 'consent' } : ({} as Record<string, string>),
        }),
      };
    case 'microsoft':
      return {
        source: {
          kind: 'discovery',
          issuer: p.issuer ?? microsoftIssuer(p.tenant ?? 'common'),
          overrides: overrides(p),
        },
        oidc: true,
        scopes: configured ?? OIDC_DEFAULT_SCOPES,
        userApi: undefined,
        // Entra ID issues a refresh token only for the offline_access scope; no prompt needed.
        authorization: (scopes, offline) => ({
          scopes: union(scopes, offline ? ['offline_access'] : []),
          params: {},
        }),
      };
    case 'github': {
      const metadata = explicitMetadata(p, {
        issuer: GITHUB.issuer,
        authorization_endpoint: GITHUB.authorization_endpoint,
        token_endpoint: GITHUB.token_endpoint,
      })!;
      return {
        source: { kind: 'explicit', metadata },
        oidc: false,
        scopes: configured ?? ['read:user', 'user:email'],
        userApi: p.userinfo_endpoint ?? GITHUB.userApi,
        githubQuirks: true,
        // GitHub Apps with expiring tokens always return a refresh token; OAuth Apps never do.
        authorization: (scopes) => ({ scopes: [...scopes], params: {} }),
      };
    }
    case 'generic': {
      const metadata = explicitMetadata(p);
      if (metadata === undefined) {
        if (p.issuer === undefined) {
          throw new Error(`providers.${p.id}.issuer: needed (or authorization_endpoint and token_endpoint)`);
        }
        return {
          source: { kind: 'discovery', issuer: p.issuer, overrides: overrides(p) },
          oidc: (configured ?? OIDC_DEFAULT_SCOPES).includes('openid'),
          scopes: configured ?? OIDC_DEFAULT_SCOPES,
          userApi: undefined,
          authorization: genericAuthorization((configured ?? OIDC_DEFAULT_SCOPES).includes('openid')),
        };
      }
      const scopes = configured ?? [];
      const oidc = scopes.includes('openid');
      if (oidc && metadata.jwks_uri === undefined) {
        throw new Error(
          `providers.${p.id}.jwks_uri: needed to verify ID tokens when openid is requested without discovery`,
        );
      }
      return {
        source: { kind: 'explicit', metadata },
        oidc,
        scopes,
        userApi: undefined,
        authorization: genericAuthorization(oidc),
      };
    }
  }
}
