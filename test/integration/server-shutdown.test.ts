/**
 * The shutdown window. After SIGTERM (server.shutdown()) health says NOT_SERVING, but for
 * `shutdown_delay` the API keeps serving calls normally: endpoint removal propagates slowly, so
 * calls keep arriving and failing them would make every rollout client-visible. A call still in
 * flight when `shutdown_grace` expires is answered UNAVAILABLE with ErrorInfo SHUTTING_DOWN and
 * RetryInfo (not a bare CANCELLED), exactly once, and the server then closes.
 */
import assert from 'node:assert/strict';
import { status } from '@grpc/grpc-js';
import type { BrokerApi, CallContext } from '../../src/broker/api.js';
import { checkHealth } from '../../src/cli/healthcheck.js';
import { call, callError } from '../helpers/grpc.js';
import { notImplementedApi } from '../helpers/not-implemented.js';
import { CORP_PROVIDER_YAML, startTestServer, type TestServer } from '../helpers/server.js';
import { waitUntil } from '../helpers/wait.js';

const provider = CORP_PROVIDER_YAML;

const token = {
  accessToken: 'at',
  tokenType: 'Bearer',
  expiresAt: new Date(Date.now() + 3600_000),
  scopes: [],
  source: 'STORED' as const,
  degraded: false,
};

describe('BrokerServer shutdown window', () => {
  let ts: TestServer | undefined;
  afterEach(async () => {
    await ts?.stop();
    ts = undefined;
  });

  it('keeps serving calls during shutdown_delay while health says NOT_SERVING', async () => {
    const reached: string[] = [];
    const api: BrokerApi = {
      ...notImplementedApi,
      getValidSubjectToken: async (input) => {
        reached.push(input.userId);
        return { ...token, accessToken: `at-${input.userId}` };
      },
    };
    ts = await startTestServer({ yaml: `${provider}shutdown_delay: 2s\nshutdown_grace: 2s\n`, api });
    const { client, server, healthAddress } = ts;
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
    const response = await call(
      client,
      client.getValidSubjectToken,
      { userId: 'late', provider: '', minValidFor: undefined },
      { deadlineMs: 1500 },
    );
    assert.ok(Date.now() - began < 2000, 'answered inside the shutdown_delay window');
    assert.equal(response.accessToken, 'at-late');
    assert.deepEqual(reached, ['late'], 'the call reached the domain');
    // Invalid requests are still validated as usual, not refused.
    const invalid = await callError(
      client,
      client.getValidSubjectToken,
      { userId: '', provider: '', minValidFor: undefined },
      { deadlineMs: 1500 },
    );
    assert.equal(invalid.code, status.INVALID_ARGUMENT);
    assert.ok(!ts.logs.records().some((l) => l.reason === 'SHUTTING_DOWN'), 'nothing answered SHUTTING_DOWN');
    await shutdown;
  });

  it('answers calls still in flight when shutdown_grace expires UNAVAILABLE / SHUTTING_DOWN with RetryInfo, exactly once, then closes', async () => {
    let releaseIgnorer!: () => void;
    const ignorerGate = new Promise<void>((resolve) => (releaseIgnorer = resolve));
    const entered = new Set<string>();
    let abortReason: unknown;
    const api: BrokerApi = {
      ...notImplementedApi,
      getValidSubjectToken: async (input, ctx: CallContext) => {
        entered.add(input.userId);
        if (input.userId === 'ignores-signal') {
          // Waits on something that never looks at ctx.signal, and resolves after the grace.
          await ignorerGate;
          return token;
        }
        // Waits on the signal, as the refresh lock loop and IdP calls do.
        const { signal } = ctx;
        await new Promise<void>((resolve) =>
          signal.addEventListener('abort', () => resolve(), { once: true }),
        );
        abortReason = signal.reason;
        throw signal.reason;
      },
    };
    ts = await startTestServer({ yaml: `${provider}shutdown_delay: 300ms\nshutdown_grace: 300ms\n`, api });
    const { client, server, address } = ts;
    const request = (userId: string) =>
      callError(
        client,
        client.getValidSubjectToken,
        { userId, provider: '', minValidFor: undefined },
        {
          deadlineMs: 10_000,
        },
      );
    const ignorer = request('ignores-signal');
    const honours = request('honours-signal');
    await waitUntil(() => entered.size === 2, { what: 'both calls to reach the domain' });
    const began = Date.now();
    const shutdown = server.shutdown();
    // A call that arrives during the delay is accepted, and is still running at the grace's end.
    const late = request('arrived-during-delay');
    await waitUntil(() => entered.has('arrived-during-delay'), { what: 'the late call to reach the domain' });

    for (const refused of await Promise.all([ignorer, honours, late])) {
      assert.equal(refused.code, status.UNAVAILABLE);
      assert.equal(refused.errorInfo.reason, 'SHUTTING_DOWN');
      assert.equal(refused.errorInfo.domain, 'credbroker.v1');
      assert.equal(refused.errorInfoCount, 1);
      assert.ok(refused.retryInfo?.retryDelay, 'RetryInfo present');
      const delayMs = refused.retryInfo.retryDelay.seconds * 1000 + refused.retryInfo.retryDelay.nanos / 1e6;
      assert.ok(delayMs > 0, `retry delay ${delayMs} ms`);
    }
    assert.ok(Date.now() - began >= 600 - 50, 'answered when the grace expired, not before');
    assert.ok(abortReason instanceof Error, 'the domain saw its signal abort');
    await shutdown;
    assert.ok(Date.now() - began < 5000, `shut down in ${Date.now() - began} ms`);
    // The server is closed: a new connection is refused.
    await assert.rejects(checkHealth({ address, service: '', timeoutMs: 500 }));

    // The handler that ignored its signal finishes later: no second status, no second call line.
    releaseIgnorer();
    await new Promise((resolve) => setImmediate(resolve));
    const lines = ts.logs.records().filter((l) => l.msg === 'call');
    assert.equal(lines.length, 3, JSON.stringify(lines));
    for (const line of lines) {
      assert.equal(line.status, 'UNAVAILABLE');
      assert.equal(line.reason, 'SHUTTING_DOWN');
    }
  });
});
