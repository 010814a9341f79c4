import assert from 'node:assert/strict';
import type { BrokerApi, GetTokenResult } from '../../src/broker/api.js';
import {
  CredentialBrokerService,
  GetValidSubjectTokenResponse,
  TokenSource,
} from '../../src/gen/credbroker/v1/broker.js';
import { EncodedResponse, EncodedResponses, passEncoded } from '../../src/server/encoded-response.js';
import { ACCESS_TOKEN_TYPE_URI } from '../../src/server/service.js';
import { call } from '../helpers/grpc.js';
import { notImplementedApi } from '../helpers/not-implemented.js';
import { CORP_PROVIDER_YAML, startTestServer, type TestServer } from '../helpers/server.js';

const PROVIDER = CORP_PROVIDER_YAML;

function result(accessToken: string, overrides: Partial<GetTokenResult> = {}): GetTokenResult {
  return {
    accessToken,
    tokenType: 'Bearer',
    expiresAt: new Date(Date.UTC(2030, 0, 1, 12, 0, 0, 250)),
    scopes: ['openid', 'offline_access'],
    source: 'STORED',
    degraded: false,
    ...overrides,
  };
}

describe('encoded GetValidSubjectToken responses', () => {
  let ts: TestServer | undefined;
  afterEach(async () => {
    await ts?.stop();
    ts = undefined;
  });

  /** A server whose domain answers the results queued, in order. */
  async function serving(results: GetTokenResult[]): Promise<TestServer> {
    const api: BrokerApi = {
      ...notImplementedApi,
      getValidSubjectToken: () => {
        const next = results.shift();
        return next ? Promise.resolve(next) : Promise.reject(new Error('no result queued'));
      },
    };
    return (ts = await startTestServer({ yaml: PROVIDER, api }));
  }

  const get = (t: TestServer) =>
    call(t.client, t.client.getValidSubjectToken, {
      userId: 'alice',
      provider: 'corp',
      minValidFor: undefined,
    });

  it('answers a stored record with the same fields as an encoded message, per record', async () => {
    const recordA = {};
    const recordB = {};
    const t = await serving([
      result('token-a', { served: recordA }),
      // The same record object means the same stored state: its bytes are reused, not re-encoded
      // (this result breaks that contract on purpose, to show which one is answered).
      result('not-encoded-again', { served: recordA }),
      result('token-b', { served: recordB }),
    ]);
    const first = await get(t);
    assert.deepEqual(first, {
      accessToken: 'token-a',
      tokenType: 'Bearer',
      expiresAt: new Date(Date.UTC(2030, 0, 1, 12, 0, 0, 250)),
      scopes: ['openid', 'offline_access'],
      source: TokenSource.TOKEN_SOURCE_STORED,
      issuedTokenType: ACCESS_TOKEN_TYPE_URI,
      degraded: false,
    });
    assert.deepEqual(await get(t), first);
    assert.equal((await get(t)).accessToken, 'token-b', 'another record is encoded on its own');
  });

  it('encodes refreshed, degraded and unkeyed results on every call', async () => {
    const record = {};
    const t = await serving([
      result('stored', { served: record }),
      // Served keys only what comes from the stored record unchanged: these carry it (a domain
      // bug, or a future one) and must still be encoded from the result itself.
      result('refreshed', { served: record, source: 'REFRESHED' }),
      result('degraded', { served: record, degraded: true }),
      result('unkeyed'),
    ]);
    assert.equal((await get(t)).accessToken, 'stored');
    const refreshed = await get(t);
    assert.equal(refreshed.accessToken, 'refreshed');
    assert.equal(refreshed.source, TokenSource.TOKEN_SOURCE_REFRESHED);
    const degraded = await get(t);
    assert.equal(degraded.accessToken, 'degraded');
    assert.equal(degraded.degraded, true);
    assert.equal((await get(t)).accessToken, 'unkeyed');
  });

  it('passEncoded: bytes pass through as they are, messages are encoded by the generated serializer', () => {
    const method = passEncoded(CredentialBrokerService).getValidSubjectToken;
    const message: GetValidSubjectTokenResponse = {
      accessToken: 'x'.repeat(900),
      tokenType: 'Bearer',
      expiresAt: new Date(1_900_000_000_123),
      scopes: ['a', 'b'],
      source: TokenSource.TOKEN_SOURCE_STORED,
      issuedTokenType: ACCESS_TOKEN_TYPE_URI,
      degraded: false,
    };
    const generated = CredentialBrokerService.getValidSubjectToken.responseSerialize(message);
    assert.deepEqual(method.responseSerialize(message), generated);
    const encoded = new EncodedResponses<GetValidSubjectTokenResponse>((m) =>
      GetValidSubjectTokenResponse.encode(m).finish(),
    ).of({}, message, (m) => m);
    assert.ok(encoded instanceof EncodedResponse);
    assert.deepEqual(Buffer.from(encoded.bytes), generated, 'same bytes as the generated encoding');
    assert.equal(method.responseSerialize(encoded as never), encoded.bytes);
  });

  it('EncodedResponses encodes once per key', () => {
    let encodings = 0;
    const responses = new EncodedResponses<string>((m) => {
      encodings++;
      return Buffer.from(m);
    });
    const key = {};
    const same = (m: string) => m;
    assert.equal(responses.of(key, 'one', same), responses.of(key, 'two', same));
    assert.equal(encodings, 1);
    assert.equal(responses.of({}, 'three', same).bytes.toString(), 'three');
    assert.equal(encodings, 2);
  });
});
