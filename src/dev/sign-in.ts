/**
 * Signs the dev user in at the development OpenID Provider the way a browser would: follow the
 * authorization URL's redirects with a cookie jar, submit the login form and the consent form,
 * and stop at the redirect to the redirect_uri, returning what the provider put there. Used by
 * the demo (scripts/demo.ts); it only knows the dev provider's pages.
 */

export interface AuthorizationResponse {
  readonly code: string | undefined;
  readonly state: string | undefined;
  readonly error: string | undefined;
}

function cookieJar() {
  const cookies = new Map<string, string>();
  return {
    store(response: Response): void {
      for (const line of response.headers.getSetCookie()) {
        const pair = line.split(';', 1)[0]!;
        const eq = pair.indexOf('=');
        if (eq <= 0) continue;
        const value = pair.slice(eq + 1).trim();
        if (value === '' || /expires=Thu, 01 Jan 1970/i.test(line)) cookies.delete(pair.slice(0, eq).trim());
        else cookies.set(pair.slice(0, eq).trim(), value);
      }
    },
    header: () => [...cookies].map(([name, value]) => `${name}=${value}`).join('; '),
  };
}

/**
 * @param login the dev user's login; any password is accepted by the dev provider
 * @throws Error naming the step when the pages do not lead back to the redirect_uri
 */
export async function signInAtDevProvider(
  authorizationUrl: string,
  login: string,
): Promise<AuthorizationResponse> {
  const start = new URL(authorizationUrl);
  const redirectUri = new URL(start.searchParams.get('redirect_uri') ?? '');
  const jar = cookieJar();
  let next: { url: URL; body?: URLSearchParams } = { url: start };
  for (let step = 0; step < 20; step += 1) {
    const headers: Record<string, string> = { accept: 'text/html' };
    const cookie = jar.header();
    if (cookie !== '') headers.cookie = cookie;
    if (next.body) headers['content-type'] = 'application/x-www-form-urlencoded';
    const response = await fetch(next.url, {
      method: next.body ? 'POST' : 'GET',
      headers,
      redirect: 'manual',
      ...(next.body ? { body: next.body.toString() } : {}),
    });
    jar.store(response);
    const location = response.headers.get('location');
    if (response.status >= 300 && response.status < 400 && location) {
      await response.body?.cancel();
      const target = new URL(location, next.url);
      if (target.origin === redirectUri.origin && target.pathname === redirectUri.pathname) {
        const p = target.searchParams;
        return {
          code: p.get('code') ?? undefined,
          state: p.get('state') ?? undefined,
          error: p.get('error') ?? undefined,
        };
      }
      next = { url: target };
      continue;
    }
    const html = await response.text();
    const form = /<form[^>]*action="([^"]+)"[^>]*method="post"/i.exec(html);
    const prompt = /<input[^>]*name="prompt"[^>]*value="([^"]+)"/i.exec(html)?.[1];
    if (response.status !== 200 || !form) {
      throw new Error(`sign-in stopped at ${next.url.pathname}: HTTP ${response.status}`);
    }
    const body = new URLSearchParams({ prompt: prompt ?? '' });
    if (prompt === 'login') {
      body.set('login', login);
      body.set('password', 'any-password');
    } else if (prompt !== 'consent') {
      throw new Error(`sign-in: unexpected form (prompt ${prompt ?? 'none'}) at ${next.url.pathname}`);
    }
    next = { url: new URL(form[1]!.replace(/&amp;/g, '&'), next.url), body };
  }
  throw new Error('sign-in did not reach the redirect_uri within 20 requests');
}
