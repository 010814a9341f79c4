/**
 * The development OpenID Provider of dev mode: panva's oidc-provider (a devDependency) on
 * 127.0.0.1 over plain http, with one client and one test user. Development only: it is imported
 * dynamically by dev mode, never by `credbroker serve`, and src/dev/ is not part of the container
 * image. Nothing here is secure — any password signs the test user in.
 *
 * Besides the provider's own endpoints it serves a few plain pages under /dev/:
 * - GET  /dev/callback  the registered redirect_uri: shows the code and state to paste into
 *                       CompleteLogin (the demo stops at the redirect and never loads it);
 * - POST /dev/revoke    `login=<user>`: revokes every grant of the user, as an admin or the user
 *                       would at a real IdP; the next refresh is rejected with invalid_grant;
 * - GET  /dev/status    JSON counters: refresh grants served, refresh tokens rotated, grants revoked.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/** The dev user. The login form accepts any password. */
export const DEV_USER = {
  login: 'alice',
  email: 'alice@example.com',
  name: 'Alice Liddell',
} as const;

export const DEV_CLIENT_ID = 'credbroker-dev';

export interface DevProviderOptions {
  /** Loopback port; 0 picks a free one. */
  readonly port?: number;
  /** Access-token lifetime in seconds: short, so refreshes can be seen (default 300). */
  readonly accessTokenTtl?: number;
}

export interface DevProviderStatus {
  readonly refreshGrants: number;
  readonly refreshTokensRotated: number;
  readonly grantsRevoked: number;
}

export interface DevProvider {
  readonly issuer: string;
  readonly clientId: string;
  readonly clientSecret: string;
  readonly redirectUri: string;
  readonly revokeUrl: string;
  readonly statusUrl: string;
  readonly accessTokenTtl: number;
  status(): DevProviderStatus;
  close(): Promise<void>;
}

/** The part of oidc-provider used here (it ships no types; imported dynamically). */
interface OidcProvider {
  callback(): (req: IncomingMessage, res: ServerResponse) => void;
  on(event: string, listener: (...args: never[]) => void): void;
  readonly AccessToken: { revokeByGrantId(grantId: string): Promise<void> };
  readonly RefreshToken: { revokeByGrantId(grantId: string): Promise<void> };
  readonly Grant: { readonly adapter: { destroy(id: string): Promise<void> } };
}
type OidcProviderClass = new (issuer: string, configuration: Record<string, unknown>) => OidcProvider;

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      body += chunk;
      if (body.length > 4096) req.destroy(new Error('body too large'));
    });
    req.on('end', () => resolve(body));
    req.on('error', reject);
  });
}

/** Starts the provider; resolves once it listens. */
export async function startDevProvider(options: DevProviderOptions = {}): Promise<DevProvider> {
  // A variable specifier keeps this devDependency out of static import analysis and of the
  // production module graph: only dev mode ever loads it.
  const specifier = 'oidc-provider';
  const { default: Provider } = (await import(specifier)) as { default: OidcProviderClass };
  const accessTokenTtl = options.accessTokenTtl ?? 300;
  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.writeHead(503).end();
  };
  const server: Server = createServer((req, res) => handler(req, res));
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, '127.0.0.1', () => resolve());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  const issuer = `http://127.0.0.1:${port}`;
  const clientSecret = randomBytes(24).toString('base64url');
  const redirectUri = `${issuer}/dev/callback`;

  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: DEV_CLIENT_ID,
        client_secret: clientSecret,
        redirect_uris: [redirectUri],
        grant_types: ['authorization_code', 'refresh_token'],
        response_types: ['code'],
      },
    ],
    async findAccount(_ctx: unknown, id: string) {
      if (id !== DEV_USER.login) return undefined;
      return {
        accountId: id,
        claims: () => ({ sub: id, email: DEV_USER.email, email_verified: true, name: DEV_USER.name }),
      };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'offline_access', 'email', 'profile'],
    conformIdTokenClaims: false,
    cookies: { keys: [randomBytes(24).toString('base64url')] },
    pkce: { required: () => true, methods: ['S256'] },
    features: { devInteractions: { enabled: true }, revocation: { enabled: true } },
    // OIDC Core §11: a refresh token for logins that asked for offline_access.
    issueRefreshToken: (
      _ctx: unknown,
      client: { grantTypeAllowed(t: string): boolean },
      code: { scopes: Set<string> },
    ) => client.grantTypeAllowed('refresh_token') && code.scopes.has('offline_access'),
    // Every refresh consumes the refresh token and issues a new one (OAuth 2.1 §4.3.1).
    rotateRefreshToken: true,
    ttl: {
      AccessToken: accessTokenTtl,
      RefreshToken: 14 * 24 * 3600,
      Grant: 14 * 24 * 3600,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
    },
  });

  const grantsByAccount = new Map<string, Set<string>>();
  const counters = { refreshGrants: 0, refreshTokensRotated: 0, grantsRevoked: 0 };
  provider.on('grant.saved', (grant: { accountId?: string; jti?: string }) => {
    if (!grant.accountId || !grant.jti) return;
    const set = grantsByAccount.get(grant.accountId) ?? new Set<string>();
    set.add(grant.jti);
    grantsByAccount.set(grant.accountId, set);
  });
  provider.on('grant.success', (ctx: { oidc?: { params?: { grant_type?: unknown } } }) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') counters.refreshGrants += 1;
  });
  provider.on('refresh_token.consumed', () => {
    counters.refreshTokensRotated += 1;
  });
  // Koa would print every OAuth error (e.g. the invalid_grant after a revoke) to stderr.
  provider.on('server_error', () => undefined);
  provider.on('error', () => undefined);

  const revoke = async (login: string): Promise<number> => {
    const grants = grantsByAccount.get(login) ?? new Set<string>();
    for (const grantId of grants) {
      await provider.RefreshToken.revokeByGrantId(grantId);
      await provider.AccessToken.revokeByGrantId(grantId);
      await provider.Grant.adapter.destroy(grantId);
    }
    counters.grantsRevoked += grants.size;
    grantsByAccount.delete(login);
    return grants.size;
  };

  const oidc = provider.callback();
  handler = (req, res) => {
    const url = new URL(req.url ?? '/', issuer);
    if (url.pathname === '/dev/status' && req.method === 'GET') {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(counters));
      return;
    }
    if (url.pathname === '/dev/revoke' && req.method === 'POST') {
      void readBody(req)
        .then((body) => revoke(new URLSearchParams(body).get('login') ?? ''))
        .then(
          (revoked) =>
            res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ revoked })),
          () => res.writeHead(400).end(),
        );
      return;
    }
    if (url.pathname === '/dev/callback' && req.method === 'GET') {
      const p = url.searchParams;
      const rows = ['code', 'state', 'error', 'error_description']
        .filter((name) => p.has(name))
        .map((name) => `<tr><th>${name}</th><td><code>${escapeHtml(p.get(name)!)}</code></td></tr>`)
        .join('');
      res
        .writeHead(200, { 'content-type': 'text/html; charset=utf-8' })
        .end(
          `<!doctype html><title>credbroker dev callback</title><h1>Authorization response</h1>` +
            `<table>${rows}</table><p>Pass <code>code</code> and <code>state</code> to CompleteLogin ` +
            `with redirect_uri <code>${escapeHtml(redirectUri)}</code>.</p>`,
        );
      return;
    }
    oidc(req, res);
  };

  return {
    issuer,
    clientId: DEV_CLIENT_ID,
    clientSecret,
    redirectUri,
    revokeUrl: `${issuer}/dev/revoke`,
    statusUrl: `${issuer}/dev/status`,
    accessTokenTtl,
    status: () => ({ ...counters }),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
