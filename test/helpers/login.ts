/**
 * Drives a real login through the test OpenID Provider's pages, as a browser would: GET the
 * authorization URL, follow redirects with a cookie jar, submit the sign-in form and the consent
 * form, and stop at the redirect to the client's redirect_uri. Returns what the IdP put there.
 * No code or token is ever made up here.
 */

export interface AuthorizationResponse {
  /** The full redirect the IdP sent the browser to. */
  readonly url: URL;
  readonly code: string | undefined;
  readonly state: string | undefined;
  /** RFC 9207 `iss`, when the IdP sends it. */
  readonly iss: string | undefined;
  /** OAuth error (e.g. access_denied) instead of a code. */
  readonly error: string | undefined;
}

export interface SignInOptions {
  /** The account to sign in as (testAccounts id). */
  readonly login: string;
  /** Where to stop; default: the redirect_uri parameter of the authorization URL. */
  readonly redirectUri?: string;
  /** Give up after this many requests (a loop in the pages). */
  readonly maxSteps?: number;
}

class CookieJar {
  readonly #cookies = new Map<string, string>();
  store(response: Response): void {
    for (const line of response.headers.getSetCookie()) {
      const pair = line.split(';', 1)[0]!;
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) this.#cookies.delete(name);
      else this.#cookies.set(name, value);
    }
  }
  header(): string {
    return [...this.#cookies].map(([name, value]) => `${name}=${value}`).join('; ');
  }
}

function matchesRedirect(location: URL, redirectUri: URL): boolean {
  return location.origin === redirectUri.origin && location.pathname === redirectUri.pathname;
}

function formOf(html: string): { action: string; prompt: string | undefined } | undefined {
  const form = /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(html);
  if (!form) return undefined;
  const prompt = /<input[^>]*name="prompt"[^>]*value="([^"]+)"/i.exec(html);
  return { action: form[1]!.replace(/&amp;/g, '&'), prompt: prompt?.[1] };
}

/**
 * Signs in at the IdP and returns the authorization response.
 * @throws when the pages do not lead to the redirect_uri (the error names the step and status)
 */
export async function signIn(
  authorizationUrl: string,
  options: SignInOptions,
): Promise<AuthorizationResponse> {
  const start = new URL(authorizationUrl);
  const redirectUri = new URL(options.redirectUri ?? start.searchParams.get('redirect_uri') ?? '');
  const jar = new CookieJar();
  let request: { url: URL; method: 'GET' | 'POST'; body?: URLSearchParams } = { url: start, method: 'GET' };
  const maxSteps = options.maxSteps ?? 20;

  for (let step = 0; step < maxSteps; step += 1) {
    const headers: Record<string, string> = { accept: 'text/html' };
    const cookie = jar.header();
    if (cookie !== '') headers.cookie = cookie;
    if (request.body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(request.url, {
      method: request.method,
      headers,
      redirect: 'manual',
      ...(request.body ? { body: request.body.toString() } : {}),
    });
    jar.store(response);

    const locationHeader = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && locationHeader) {
      await response.body?.cancel();
      const location = new URL(locationHeader, request.url);
      if (matchesRedirect(location, redirectUri)) {
        const p = location.searchParams;
        return {
          url: location,
          code: p.get('code') ?? undefined,
          state: p.get('state') ?? undefined,
          iss: p.get('iss') ?? undefined,
          error: p.get('error') ?? undefined,
        };
      }
      request = { url: location, method: 'GET' };
      continue;
    }

    const html = await response.text();
    const form = response.status === 200 ? formOf(html) : undefined;
    if (!form) {
      const summary = html
        .replace(/<[^>]+>/g, ' ')
        .replace(/\s+/g, ' ')
        .slice(0, 300);
      throw new Error(
        `sign-in stopped at ${request.method} ${request.url.pathname}: HTTP ${response.status} ${summary}`,
      );
    }
    const body = new URLSearchParams();
    if (form.prompt === 'login') {
      body.set('prompt', 'login');
      body.set('login', options.login);
      body.set('password', 'any-password');
    } else if (form.prompt === 'consent') {
      body.set('prompt', 'consent');
    } else {
      throw new Error(
        `sign-in: unexpected form (prompt ${form.prompt ?? 'none'}) at ${request.url.pathname}`,
      );
    }
    request = { url: new URL(form.action, request.url), method: 'POST', body };
  }
  throw new Error(`sign-in did not reach ${redirectUri.href} within ${maxSteps} requests`);
}
