/**
 * A real OpenID Provider for tests: panva's oidc-provider, in-process, over plain http on
 * 127.0.0.1 (issuer http://127.0.0.1:PORT). Codes and tokens come only from it; tests obtain a
 * code by driving its authorization endpoint and interaction pages (./login.ts).
 *
 * Knobs for the failure modes the broker must handle: a delay or an HTTP error injected into
 * token responses, an ID token signed for the wrong audience, access-token lifetime, and
 * stop()/start() of the HTTP server on the same port (an outage). Counters of the grants served
 * let refresh tests prove "exactly one refresh".
 *
 * Downstream tokens: the provider also serves RFC 8693 token exchange
 * (`urn:ietf:params:oauth:grant-type:token-exchange`) and an Entra on-behalf-of shaped jwt-bearer
 * grant (`assertion` + `requested_token_use=on_behalf_of` + `scope`), registered with
 * `provider.registerGrantType`. Both check the subject token against the access tokens this
 * provider issued (not expired, not revoked), answer `invalid_target` for an audience not in
 * `downstreamAudiences`, and issue a signed JWT access token whose `aud` is the audience (for
 * OBO: the scope's resource, `api://orders/.default` → `api://orders`). Exchanges are counted per
 * user × audience.
 */
import { generateKeyPairSync, randomBytes, randomUUID, sign, type JsonWebKey } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Provider, { errors, type KoaContext } from 'oidc-provider';

/** RFC 8693 §2.1 and RFC 7523 §2.1 grant types. */
export const TOKEN_EXCHANGE_GRANT = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_BEARER_GRANT = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';
/** Audiences the test provider exchanges for by default (RFC 8693 audience, RFC 8707 resource, OBO). */
export const TEST_DOWNSTREAM_AUDIENCES = [
  'https://orders.example.test',
  'https://billing.example.test',
  'api://orders',
] as const;

export interface TestAccount {
  readonly id: string;
  readonly email: string;
  readonly name: string;
}

/** The provider's users. The dev login form accepts any password; unknown logins fail. */
export const testAccounts = {
  alice: { id: 'alice', email: 'alice@example.com', name: 'Alice Liddell' },
  bob: { id: 'bob', email: 'bob@example.com', name: 'Bob Dobbs' },
} as const satisfies Record<string, TestAccount>;

/** Where the test clients are sent back; never fetched (the login helper stops at the redirect). */
export const TEST_REDIRECT_URI = 'https://app.example.test/auth/callback';
export const OTHER_REDIRECT_URI = 'https://other.example.test/auth/callback';

export interface TestClients {
  readonly basic: { readonly id: string; readonly secret: string };
  readonly post: { readonly id: string; readonly secret: string };
  /** private_key_jwt: the client's ES256 private key as a PKCS#8 PEM file, generated per provider. */
  readonly jwt: { readonly id: string; readonly privateKeyFile: string; readonly kid: string };
  /** A public client (token_endpoint_auth_method none, PKCE only). */
  readonly public: { readonly id: string };
  /** For plain OAuth 2.0 use: scopes without openid, so no ID token. */
  readonly plain: { readonly id: string; readonly secret: string };
}

export interface TokenFailure {
  readonly status: number;
  /** Sent as Retry-After, seconds. */
  readonly retryAfterSeconds?: number;
  /** OAuth error code in a JSON body; absent: an HTML body (as a broken gateway sends). */
  readonly error?: string;
}

/** A token endpoint response as the provider sent it. */
export interface IssuedTokens {
  readonly grant_type: string;
  readonly access_token: string;
  readonly refresh_token?: string;
  readonly id_token?: string;
  readonly expires_in?: number;
  readonly scope?: string;
}

export interface TestOidcProvider {
  readonly issuer: string;
  readonly port: number;
  readonly clients: TestClients;
  readonly accounts: typeof testAccounts;
  /** Explicit endpoints, for configuring a plain OAuth 2.0 provider. */
  readonly endpoints: {
    readonly authorization: string;
    readonly token: string;
    readonly revocation: string;
    readonly jwks: string;
  };
  /** Successful token-endpoint grants served so far, by grant_type. */
  grantsServed(grantType: 'authorization_code' | 'refresh_token'): number;
  /**
   * Successful downstream exchanges (token exchange and OBO) for `userId` and `audience`; with
   * no arguments, all of them.
   */
  exchangesServed(userId?: string, audience?: string): number;
  /** Lifetime of exchanged downstream tokens issued from now on, seconds (default 3600). */
  setExchangedTokenTtl(seconds: number): void;
  /** Every successful token response body, in order: what the provider really issued. */
  readonly issued: readonly IssuedTokens[];
  /** Access-token lifetime for tokens issued from now on, seconds. */
  setAccessTokenTtl(seconds: number): void;
  /** Delay added before every token-endpoint response, ms (0: none). */
  setTokenDelay(ms: number): void;
  /** Requests that reached the token endpoint so far (answered or not yet, successful or not). */
  tokenRequestsReceived(): number;
  /** Token endpoint answers with this failure instead (undefined: normal service). */
  failTokenEndpoint(failure: TokenFailure | undefined): void;
  /** ID tokens issued from now on carry this `aud` instead of the client id (undefined: normal). */
  setIdTokenAudience(audience: string | undefined): void;
  /** Closes the HTTP server: connections are refused until start(). */
  stop(): Promise<void>;
  /** Listens again on the same port. */
  start(): Promise<void>;
  /** Stops for good and removes the generated key files. */
  close(): Promise<void>;
}

export interface TestOidcProviderOptions {
  /** Initial access-token lifetime, seconds (default 3600). */
  readonly accessTokenTtl?: number;
  /** Refresh-token lifetime, seconds (default 14 days). */
  readonly refreshTokenTtl?: number;
  /** Redirect URIs registered for every client (default TEST_REDIRECT_URI and OTHER_REDIRECT_URI). */
  readonly redirectUris?: readonly string[];
  /**
   * Release email and name only at the UserInfo endpoint, not in the ID token (oidc-provider's
   * default, OIDC Core §5.4). Default false: in the ID token, as Google and Entra do.
   */
  readonly claimsOnlyAtUserInfo?: boolean;
  /** Audiences token exchange and OBO issue tokens for (default TEST_DOWNSTREAM_AUDIENCES). */
  readonly downstreamAudiences?: readonly string[];
}

function listen(server: Server, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', () => {
      server.off('error', reject);
      const address = server.address();
      resolve(typeof address === 'object' && address ? address.port : port);
    });
  });
}

function closeServer(server: Server): Promise<void> {
  if (!server.listening) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

export async function startOidcProvider(options: TestOidcProviderOptions = {}): Promise<TestOidcProvider> {
  let accessTokenTtl = options.accessTokenTtl ?? 3600;
  const refreshTokenTtl = options.refreshTokenTtl ?? 14 * 24 * 3600;
  let tokenDelayMs = 0;
  let tokenRequests = 0;
  let tokenFailure: TokenFailure | undefined;
  let idTokenAudience: string | undefined;
  const grants = { authorization_code: 0, refresh_token: 0 };
  const exchanges = new Map<string, number>();
  let exchangedTokenTtl = 3600;
  const downstreamAudiences = new Set(options.downstreamAudiences ?? TEST_DOWNSTREAM_AUDIENCES);
  const issued: IssuedTokens[] = [];

  let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
    res.statusCode = 503;
    res.end();
  };
  let server = createServer((req, res) => handler(req, res));
  const port = await listen(server, 0);
  const issuer = `http://127.0.0.1:${port}`;

  // The provider's signing key (RS256 is the ID-token default) and the private_key_jwt client's
  // key, both generated per run: nothing secret is checked in.
  const signing = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const signingJwk: JsonWebKey = { ...signing.privateKey.export({ format: 'jwk' }), kid: 'op-1', use: 'sig' };
  const clientKey = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const clientKid = 'client-key-1';
  const keyDir = mkdtempSync(join(tmpdir(), 'credbroker-op-'));
  const privateKeyFile = join(keyDir, 'client-key.pem');
  writeFileSync(privateKeyFile, clientKey.privateKey.export({ format: 'pem', type: 'pkcs8' }), {
    mode: 0o600,
  });
  const clientPublicJwk = { ...clientKey.publicKey.export({ format: 'jwk' }), kid: clientKid, use: 'sig' };

  const secret = () => randomBytes(24).toString('base64url');
  const clients: TestClients = {
    basic: { id: 'client-basic', secret: secret() },
    post: { id: 'client-post', secret: secret() },
    jwt: { id: 'client-jwt', privateKeyFile, kid: clientKid },
    public: { id: 'client-public' },
    plain: { id: 'client-plain', secret: secret() },
  };
  const redirectUris = [...(options.redirectUris ?? [TEST_REDIRECT_URI, OTHER_REDIRECT_URI])];
  const common = {
    redirect_uris: redirectUris,
    grant_types: ['authorization_code', 'refresh_token', TOKEN_EXCHANGE_GRANT, JWT_BEARER_GRANT],
    response_types: ['code'],
  };

  const provider = new Provider(issuer, {
    clients: [
      { ...common, client_id: clients.basic.id, client_secret: clients.basic.secret },
      {
        ...common,
        client_id: clients.post.id,
        client_secret: clients.post.secret,
        token_endpoint_auth_method: 'client_secret_post',
      },
      {
        ...common,
        client_id: clients.jwt.id,
        token_endpoint_auth_method: 'private_key_jwt',
        token_endpoint_auth_signing_alg: 'ES256',
        jwks: { keys: [clientPublicJwk] },
      },
      { ...common, client_id: clients.public.id, token_endpoint_auth_method: 'none' },
      { ...common, client_id: clients.plain.id, client_secret: clients.plain.secret },
    ],
    async findAccount(_ctx: unknown, id: string) {
      const account = (testAccounts as Record<string, TestAccount>)[id];
      if (!account) return undefined;
      return {
        accountId: account.id,
        claims: () => ({
          sub: account.id,
          email: account.email,
          email_verified: true,
          name: account.name,
        }),
      };
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
    scopes: ['openid', 'offline_access', 'email', 'profile', 'api'],
    // By default email and name are in the ID token itself (as Google and Entra send them).
    conformIdTokenClaims: options.claimsOnlyAtUserInfo ?? false,
    jwks: { keys: [signingJwk] },
    cookies: { keys: [secret()] },
    // RFC 7636: every client must use PKCE, S256 only.
    pkce: { required: () => true, methods: ['S256'] },
    features: {
      devInteractions: { enabled: true },
      revocation: { enabled: true },
    },
    // Refresh tokens for OIDC logins that asked for offline_access (with prompt=consent, OIDC
    // Core §11), and for every plain OAuth 2.0 login (no openid scope).
    issueRefreshToken: (
      _ctx: unknown,
      client: { grantTypeAllowed(t: string): boolean },
      code: { scopes: Set<string> },
    ) =>
      client.grantTypeAllowed('refresh_token') &&
      (code.scopes.has('offline_access') || !code.scopes.has('openid')),
    rotateRefreshToken: true,
    ttl: {
      AccessToken: () => accessTokenTtl,
      RefreshToken: () => refreshTokenTtl,
      AuthorizationCode: 60,
      IdToken: 3600,
      Interaction: 600,
      Session: 3600,
      Grant: refreshTokenTtl,
    },
  });

  // An ID token "for someone else", signed by the provider's real key: the broker must reject it.
  const issue = provider.IdToken.prototype.issue;
  provider.IdToken.prototype.issue = function (this: { client: object }, ...args: unknown[]) {
    if (idTokenAudience !== undefined) {
      const audience = idTokenAudience;
      this.client = new Proxy(this.client, {
        get: (target, prop, receiver) =>
          prop === 'clientId' ? audience : (Reflect.get(target, prop, receiver) as unknown),
      });
    }
    return issue.apply(this, args as [unknown]);
  };

  /** A JWT access token for `audience`, signed with the provider's key (RS256). */
  const downstreamJwt = (claims: Record<string, unknown>): string => {
    const encode = (value: object) => Buffer.from(JSON.stringify(value)).toString('base64url');
    const input = `${encode({ alg: 'RS256', typ: 'at+jwt', kid: 'op-1' })}.${encode(claims)}`;
    return `${input}.${sign('sha256', Buffer.from(input), signing.privateKey).toString('base64url')}`;
  };
  const single = (value: unknown): string | undefined =>
    Array.isArray(value)
      ? value.length === 1
        ? String(value[0])
        : undefined
      : (value as string | undefined);
  /** Validates the subject token and issues the downstream token (both grants end here). */
  const exchange = async (
    ctx: KoaContext,
    subjectToken: string,
    audience: string,
    scope: string | undefined,
  ) => {
    const subject = await provider.AccessToken.find(subjectToken);
    if (!subject || subject.isExpired)
      throw new errors.InvalidGrant('subject token is invalid, expired or revoked');
    if (!downstreamAudiences.has(audience)) throw new errors.InvalidTarget('unknown audience');
    const now = Math.floor(Date.now() / 1000);
    const accessToken = downstreamJwt({
      iss: issuer,
      sub: subject.accountId,
      aud: audience,
      azp: ctx.oidc?.client?.clientId,
      scope,
      iat: now,
      exp: now + exchangedTokenTtl,
      jti: randomUUID(),
    });
    const key = `${subject.accountId}\n${audience}`;
    exchanges.set(key, (exchanges.get(key) ?? 0) + 1);
    ctx.body = {
      access_token: accessToken,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: exchangedTokenTtl,
      ...(scope === undefined ? {} : { scope }),
    };
  };
  // RFC 8693 §2.1: subject_token (an access token this provider issued), audience or resource.
  provider.registerGrantType(
    TOKEN_EXCHANGE_GRANT,
    async (ctx) => {
      const params = ctx.oidc.params as Record<string, unknown>;
      if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
        throw new errors.InvalidRequest('subject_token_type must be an access token');
      }
      const audience = single(params.audience) ?? single(params.resource);
      if (audience === undefined) throw new errors.InvalidTarget('audience or resource required');
      await exchange(ctx, String(params.subject_token), audience, params.scope as string | undefined);
    },
    [
      'subject_token',
      'subject_token_type',
      'requested_token_type',
      'audience',
      'resource',
      'scope',
      'actor_token',
      'actor_token_type',
    ],
    ['audience', 'resource'],
  );
  // Entra on-behalf-of: assertion, requested_token_use=on_behalf_of, scope `<resource>/.default`.
  provider.registerGrantType(
    JWT_BEARER_GRANT,
    async (ctx) => {
      const params = ctx.oidc.params as Record<string, unknown>;
      if (params.requested_token_use !== 'on_behalf_of') {
        throw new errors.InvalidRequest('requested_token_use must be on_behalf_of');
      }
      const scope = String(params.scope ?? '');
      const resource = scope.split(' ')[0]?.replace(/\/[^/]*$/, '') ?? '';
      await exchange(ctx, String(params.assertion), resource, scope);
    },
    ['assertion', 'requested_token_use', 'scope'],
  );

  provider.use(async (ctx: KoaContext, next) => {
    if (ctx.path !== '/token') return next();
    tokenRequests += 1;
    if (tokenDelayMs > 0) await sleep(tokenDelayMs);
    const failure = tokenFailure;
    if (failure) {
      ctx.status = failure.status;
      if (failure.retryAfterSeconds !== undefined) ctx.set('Retry-After', String(failure.retryAfterSeconds));
      ctx.body =
        failure.error === undefined
          ? '<html><body>upstream error</body></html>'
          : { error: failure.error, error_description: 'injected by the test' };
      return;
    }
    await next();
    const body = ctx.body as Record<string, unknown> | undefined;
    if (
      ctx.status === 200 &&
      typeof body === 'object' &&
      body !== null &&
      typeof body.access_token === 'string'
    ) {
      issued.push({ ...(body as unknown as IssuedTokens), grant_type: String(ctx.oidc?.params?.grant_type) });
    }
  });
  provider.on('grant.success', (...args: unknown[]) => {
    const grantType = (args[0] as KoaContext).oidc?.params?.grant_type;
    if (grantType === 'authorization_code' || grantType === 'refresh_token') grants[grantType] += 1;
  });
  // Koa logs unhandled errors to stderr by default; the tests look at responses instead.
  provider.on('error', () => undefined);
  provider.on('server_error', () => undefined);

  handler = provider.callback();

  return {
    issuer,
    port,
    clients,
    accounts: testAccounts,
    endpoints: {
      authorization: `${issuer}/auth`,
      token: `${issuer}/token`,
      revocation: `${issuer}/token/revocation`,
      jwks: `${issuer}/jwks`,
    },
    grantsServed: (grantType) => grants[grantType],
    tokenRequestsReceived: () => tokenRequests,
    exchangesServed: (userId, audience) => {
      let total = 0;
      for (const [key, n] of exchanges) {
        const [user, aud] = key.split('\n');
        if ((userId === undefined || user === userId) && (audience === undefined || aud === audience))
          total += n;
      }
      return total;
    },
    setExchangedTokenTtl: (seconds) => {
      exchangedTokenTtl = seconds;
    },
    issued,
    setAccessTokenTtl: (seconds) => {
      accessTokenTtl = seconds;
    },
    setTokenDelay: (ms) => {
      tokenDelayMs = ms;
    },
    failTokenEndpoint: (failure) => {
      tokenFailure = failure;
    },
    setIdTokenAudience: (audience) => {
      idTokenAudience = audience;
    },
    stop: () => closeServer(server),
    start: async () => {
      if (server.listening) return;
      server = createServer((req, res) => handler(req, res));
      await listen(server, port);
    },
    close: async () => {
      await closeServer(server);
      rmSync(keyDir, { recursive: true, force: true });
    },
  };
}
