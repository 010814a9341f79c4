/**
 * A measuring instrument for the refresh storm: an OAuth 2.0 token endpoint (RFC 6749 §6) on
 * loopback that answers `grant_type=refresh_token` after a fixed IdP latency, rotates refresh
 * tokens, and counts every refresh it performs per user. A refresh token presented twice is
 * rejected with `invalid_grant` and counted as a double spend, as a rotating IdP would do.
 */
import { randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface TokenEndpoint {
  readonly url: string;
  /** Refresh grants performed, by user. */
  readonly refreshes: Map<string, number>;
  /** Epoch ms of the first request received and the last refresh answered. */
  readonly span: () => { firstRequestAt: number; lastRefreshAt: number; maxConcurrent: number };
  /** Refresh tokens presented after they were rotated away. */
  readonly doubleSpends: () => number;
  /** Registers the refresh token a seeded record carries. */
  issueRefreshToken(userId: string): string;
  /** The access token the last refresh issued for a user. */
  lastAccessToken(userId: string): string | undefined;
  close(): Promise<void>;
}

export async function startTokenEndpoint(options: {
  latencyMs: number;
  accessTokenLength: number;
}): Promise<TokenEndpoint> {
  const live = new Map<string, string>(); // refresh token → user
  const spent = new Set<string>();
  const refreshes = new Map<string, number>();
  const issued = new Map<string, string>();
  let doubleSpends = 0;
  let firstRequestAt = 0;
  let lastRefreshAt = 0;
  let inFlight = 0;
  let maxConcurrent = 0;

  const newToken = (prefix: string, length: number) =>
    `${prefix}${randomBytes(length).toString('base64url')}`.slice(0, length);

  const server: Server = createServer((req, res) => {
    let body = '';
    firstRequestAt ||= Date.now();
    maxConcurrent = Math.max(maxConcurrent, ++inFlight);
    res.once('close', () => (inFlight -= 1));
    req.on('data', (chunk: Buffer) => (body += chunk.toString()));
    req.on('end', () => {
      void (async () => {
        await sleep(options.latencyMs);
        const form = new URLSearchParams(body);
        const refreshToken = form.get('refresh_token') ?? '';
        const user = live.get(refreshToken);
        res.setHeader('content-type', 'application/json');
        res.setHeader('cache-control', 'no-store');
        if (req.url !== '/token' || form.get('grant_type') !== 'refresh_token' || user === undefined) {
          if (spent.has(refreshToken)) doubleSpends += 1;
          res.statusCode = 400;
          res.end(JSON.stringify({ error: 'invalid_grant' }));
          return;
        }
        live.delete(refreshToken);
        spent.add(refreshToken);
        const rotated = newToken('rt-', 43);
        live.set(rotated, user);
        const accessToken = newToken('at-', options.accessTokenLength);
        issued.set(user, accessToken);
        refreshes.set(user, (refreshes.get(user) ?? 0) + 1);
        lastRefreshAt = Date.now();
        res.end(
          JSON.stringify({
            access_token: accessToken,
            token_type: 'Bearer',
            expires_in: 3600,
            refresh_token: rotated,
            scope: 'openid profile email offline_access',
          }),
        );
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const address = server.address();
  if (typeof address !== 'object' || address === null) throw new Error('token endpoint did not bind');
  return {
    url: `http://127.0.0.1:${address.port}`,
    refreshes,
    doubleSpends: () => doubleSpends,
    span: () => ({ firstRequestAt, lastRefreshAt, maxConcurrent }),
    issueRefreshToken: (userId) => {
      const token = newToken('rt-', 43);
      live.set(token, userId);
      return token;
    },
    lastAccessToken: (userId) => issued.get(userId),
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
