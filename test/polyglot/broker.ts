/**
 * A real broker for the polyglot clients: the real gRPC server (validation, error mapping,
 * google.rpc.Status trailer) on 127.0.0.1:0, with one user's token seeded.
 */
import { createHash, randomBytes } from 'node:crypto';
import type { BrokerApi, GetTokenInput } from '../../src/broker/api.js';
import { reauthRequired } from '../../src/broker/errors.js';
import { notImplementedApi } from '../../src/broker/not-implemented.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

export const PROVIDER = 'corp';
const PROVIDER_YAML = `providers:
  - id: ${PROVIDER}
    issuer: https://login.example.com
    client_id: c
    client_secret: s
    redirect_uris: [https://app.example.com/cb]
`;

export interface PolyglotBroker {
  readonly address: string;
  readonly userId: string;
  /** SHA-256 hex of the seeded access token (the clients print fingerprints, never tokens). */
  readonly tokenSha256: string;
  readonly expiresAt: Date;
  readonly server: TestServer;
  stop(): Promise<void>;
}

export async function startPolyglotBroker(): Promise<PolyglotBroker> {
  const userId = 'alice@example.com';
  const accessToken = `at-${randomBytes(16).toString('hex')}`;
  const expiresAt = new Date(Math.floor(Date.now() / 1000) * 1000 + 3600_000);
  // TODO(issue 8): serve from the real token service once src/broker/get-token.ts lands.
  const records = new Map([[`${PROVIDER}/${userId}`, { accessToken, expiresAt }]]);
  const api: BrokerApi = {
    ...notImplementedApi,
    getValidSubjectToken: async (input: GetTokenInput) => {
      const record = records.get(`${input.provider}/${input.userId}`);
      if (!record) throw reauthRequired('NO_TOKEN', input);
      return {
        accessToken: record.accessToken,
        tokenType: 'Bearer',
        expiresAt: record.expiresAt,
        scopes: ['openid', 'profile'],
        source: 'STORED',
        degraded: false,
      };
    },
  };
  const server = await startTestServer({ yaml: PROVIDER_YAML, api });
  return {
    address: server.address,
    userId,
    tokenSha256: createHash('sha256').update(accessToken).digest('hex'),
    expiresAt,
    server,
    stop: () => server.stop(),
  };
}
