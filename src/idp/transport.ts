/**
 * HTTP-level rules for talking to identity providers: which URLs may be used (https, or http on
 * loopback when allowed) and a response fix-up for IdPs that bend RFC 6749.
 */

/** True for hosts that never leave the machine. */
export function isLoopbackHost(hostname: string): boolean {
  const host = hostname.replace(/^\[(.*)\]$/, '$1').toLowerCase();
  return host === 'localhost' || host === '::1' || /^127(\.\d{1,3}){3}$/.test(host);
}

/**
 * Plain http is accepted only when the provider allows it AND the host is loopback (tests and
 * local development); anything else must be https.
 * @returns a problem description, or undefined when the URL is acceptable
 */
export function insecureUrlProblem(url: string, allowInsecureHttp: boolean): string | undefined {
  const parsed = new URL(url);
  if (parsed.protocol === 'https:') return undefined;
  if (parsed.protocol !== 'http:') return `${url}: only https is allowed`;
  if (!allowInsecureHttp) return `${url}: http is allowed only with allow_insecure_http`;
  if (!isLoopbackHost(parsed.hostname)) return `${url}: http is allowed only on a loopback host`;
  return undefined;
}

/**
 * GitHub answers a failed token request with HTTP 200 and `{"error": …}`. RFC 6749 §5.2 says
 * 400: restore that so the error is classified by its OAuth code, not as a malformed response.
 */
export async function oauthErrorAs400(response: Response): Promise<Response> {
  if (response.status !== 200 || !(response.headers.get('content-type') ?? '').includes('json'))
    return response;
  const text = await response.text();
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const isError =
    typeof body === 'object' &&
    body !== null &&
    typeof (body as { error?: unknown }).error === 'string' &&
    (body as { access_token?: unknown }).access_token === undefined;
  return new Response(text, {
    status: isError ? 400 : 200,
    statusText: isError ? 'Bad Request' : response.statusText,
    headers: response.headers,
  });
}
