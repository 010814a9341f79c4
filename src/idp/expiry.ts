/**
 * When an access token expires, as the broker must know it: never "unknown", never "never".
 * RFC 6749 §5.1 makes `expires_in` only RECOMMENDED, so when it is absent the broker reads the
 * access token's own JWT `exp` (RFC 9068 tokens carry one), and failing that assumes the
 * provider's configured default lifetime, which is short on purpose.
 */

/** The `exp` claim (epoch seconds) of a JWS compact token, or undefined when it is not one. */
export function jwtExpiry(token: string): number | undefined {
  const parts = token.split('.');
  if (parts.length !== 3) return undefined;
  try {
    const payload: unknown = JSON.parse(Buffer.from(parts[1]!, 'base64url').toString('utf8'));
    if (typeof payload !== 'object' || payload === null) return undefined;
    const exp = (payload as { exp?: unknown }).exp;
    return typeof exp === 'number' && Number.isFinite(exp) && exp > 0 ? exp : undefined;
  } catch {
    return undefined;
  }
}

function positiveSeconds(value: unknown): number | undefined {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n >= 0 ? n : undefined;
}

/**
 * Access-token expiry in epoch ms.
 * @param response the token endpoint response (`expires_in` in seconds, number or numeric string)
 * @param now epoch ms when the response arrived
 * @param defaultLifetimeMs the provider's `default_access_token_lifetime`
 */
export function accessTokenExpiry(
  response: { readonly access_token: string; readonly expires_in?: unknown },
  now: number,
  defaultLifetimeMs: number,
): number {
  const expiresIn = positiveSeconds(response.expires_in);
  if (expiresIn !== undefined) return now + expiresIn * 1000;
  const exp = jwtExpiry(response.access_token);
  if (exp !== undefined) return exp * 1000;
  return now + defaultLifetimeMs;
}

/**
 * Refresh-token expiry in epoch ms when the IdP says so: `refresh_expires_in` (Keycloak and
 * others) or `refresh_token_expires_in` (Entra, GitHub). Undefined otherwise.
 */
export function refreshTokenExpiry(
  response: Readonly<Record<string, unknown>>,
  now: number,
): number | undefined {
  const seconds =
    positiveSeconds(response.refresh_expires_in) ?? positiveSeconds(response.refresh_token_expires_in);
  // Keycloak sends refresh_expires_in: 0 for offline tokens, meaning "no fixed expiry".
  return seconds === undefined || seconds === 0 ? undefined : now + seconds * 1000;
}
