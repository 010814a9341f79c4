/**
 * The drain window: after SIGTERM (server.shutdown()) and before the drain begins
 * (`shutdown_delay`), the API port is still open; calls that arrive then are answered UNAVAILABLE
 * with ErrorInfo SHUTTING_DOWN and RetryInfo, while a call already in flight completes.
 */
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import type { BrokerApi } from '../../src/broker/api.js';
import { checkHealth } from '../../src/cli/healthcheck.js';
import { call, callError } from '../helpers/grpc.js';
import { notImplementedApi } from '../helpers/not-implemented.js';
import { startTestServer, type TestServer } from '../helpers/server.js';

const provider = `providers:
  - id: corp
    issuer: https://login.example.com
    client_id: c
    client_secret: s
    redirect_uris: [https://app.example.com/cb]
`;

describe('BrokerServer shutdown window', () => {
  let ts: TestServer | undefined;
  afterEach(async () => {
    await ts?.stop();
    ts = undefined;
  });

  it('answers calls that arrive after NOT_SERVING with UNAVAILABLE / SHUTTING_DOWN and RetryInfo, and lets the in-flight call finish', async () => {
    let entered!: () => void;
    let release!: () => void;
    const started = new Promise<void>((resolve) => (entered = resolve));
    const gate = new Promise<void>((resolve) => (release = resolve));
    let domainCalls = 0;
    const api: BrokerApi = {
      ...notImplementedApi,
      getValidSubjectToken: async () => {
        domainCalls += 1;
        entered();
        await gate;
        return {
          accessToken: 'at',
          tokenType: 'Bearer',
          expiresAt: new Date(Date.now() + 3600_000),
          scopes: [],
          source: 'STORED',
          degraded: false,
        };
      },
    };
    // A long delay: the whole test runs inside the window; stop() ends it early enough.
    ts = await startTestServer({ yaml: `${provider}shutdown_delay: 3s\nshutdown_grace: 5s\n`, api });
    const { client, server, healthAddress } = ts;
    const inFlight = call(client, client.getValidSubjectToken, {
      userId: 'u',
      provider: '',
      minValidFor: undefined,
    });
    await started;
    const began = Date.now();
    const shutdown = server.shutdown();
    assert.equal(
      await checkHealth({
        address: healthAddress!,
        service: 'credbroker.v1.CredentialBroker',
        timeoutMs: 1000,
      }),
      'NOT_SERVING',
    );

    // Valid and invalid requests alike: refused before validation, with the reason to retry.
    for (const request of [
      { userId: 'u2', provider: '', minValidFor: undefined },
      { userId: '', provider: '', minValidFor: undefined },
    ]) {
      const refused = await callError(client, client.getValidSubjectToken, request, { deadlineMs: 2000 });
      assert.ok(Date.now() - began < 3000, 'answered inside the shutdown_delay window');
      assert.equal(refused.code, status.UNAVAILABLE);
      assert.equal(refused.errorInfo.reason, 'SHUTTING_DOWN');
      assert.equal(refused.errorInfo.domain, 'credbroker.v1');
      assert.ok(refused.retryInfo?.retryDelay, 'RetryInfo present');
      const delayMs = refused.retryInfo.retryDelay.seconds * 1000 + refused.retryInfo.retryDelay.nanos / 1e6;
      assert.ok(delayMs > 0, `retry delay ${delayMs} ms`);
    }
    const login = await callError(
      client,
      client.startLogin,
      { provider: 'corp', redirectUri: 'https://app.example.com/cb', scopes: [], loginHint: '' },
      { deadlineMs: 2000 },
    );
    assert.equal(login.errorInfo.reason, 'SHUTTING_DOWN');
    assert.equal(domainCalls, 1, 'refused calls never reach the domain');

    const line = ts.logs.records().find((l) => l.reason === 'SHUTTING_DOWN');
    assert.ok(line, 'the refused call has its call log line');
    assert.equal(line.status, 'UNAVAILABLE');

    release();
    assert.equal((await inFlight).accessToken, 'at');
    await shutdown;
  });
});
