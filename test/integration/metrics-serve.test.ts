import assert from 'node:assert/strict';
import { request } from 'node:http';
import { generateKey } from '../../src/cli/keygen.js';
import { CredentialBrokerClient, TokenSource } from '../../src/gen/credbroker/v1/broker.js';
import { startBroker, type Running } from '../../src/main.js';
import { METRIC_NAMES } from '../../src/server/metrics.js';
import { brokerEnv, loginThrough } from '../helpers/broker-process.js';
import { brokerClient, call, callError } from '../helpers/grpc.js';
import { captureLogs } from '../helpers/log-capture.js';
import { startOidcProvider, type TestOidcProvider } from '../helpers/oidc-provider.js';
import { freePort } from '../helpers/ports.js';
import { startRedis, type RedisServer } from '../helpers/redis.js';
import { testConfig } from '../helpers/server.js';

function scrape(port: number): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path: '/metrics', agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.once('error', reject);
    req.end();
  });
}

describe('credbroker serve: metrics_listen', () => {
  let running: Running | undefined;
  let op: TestOidcProvider | undefined;
  let redis: RedisServer | undefined;
  afterEach(async () => {
    await running?.server.shutdown();
    await op?.close();
    await redis?.stop();
    running = undefined;
    op = undefined;
    redis = undefined;
  });

  it('serves /metrics for the running broker and closes the port at shutdown', async () => {
    const port = await freePort();
    const logs = captureLogs();
    running = await startBroker(
      testConfig('', { CREDBROKER_METRICS_LISTEN: `127.0.0.1:${port}` }),
      logs.logger,
    );
    const client = brokerClient(`127.0.0.1:${running.server.ports!.api}`);
    try {
      await callError(client, CredentialBrokerClient.prototype.revokeSubjectToken, {
        userId: '',
        provider: '',
        revokeAtIdp: false,
      });
    } finally {
      client.close();
    }
    const { status, body } = await scrape(port);
    assert.equal(status, 200);
    assert.match(
      body,
      /^credbroker_calls_total\{rpc="RevokeSubjectToken",code="INVALID_ARGUMENT",reason="INVALID_REQUEST"\} 1$/m,
    );
    assert.match(body, /^credbroker_build_info\{/m);
    const serving = logs.records().find((r) => r.msg === 'credbroker serving');
    assert.equal(serving?.metricsListen, `127.0.0.1:${port}`);

    await running.server.shutdown();
    running = undefined;
    await assert.rejects(scrape(port), { code: 'ECONNREFUSED' });
  });

  it('counts a real session: login, stored and refreshed tokens, a coalesced refresh, a rejected refresh, revoke', async function () {
    this.timeout(30_000);
    [redis, op] = [await startRedis(), await startOidcProvider({ accessTokenTtl: 300 })];
    const { id, key } = generateKey();
    const port = await freePort();
    const env = {
      ...brokerEnv({ redisUrl: redis.url, provider: op, keys: `${id}:${key}` }),
      CREDBROKER_METRICS_LISTEN: `127.0.0.1:${port}`,
    };
    running = await startBroker(testConfig('', env), captureLogs('warn').logger);
    const client = brokerClient(`127.0.0.1:${running.server.ports!.api}`);
    const get = (minValidForSeconds: number) =>
      call(client, client.getValidSubjectToken, {
        userId: 'u1',
        provider: 'corp',
        minValidFor: { seconds: minValidForSeconds, nanos: 0 },
      });
    try {
      await loginThrough(client, { userId: 'u1' });
      assert.equal((await get(60)).source, TokenSource.TOKEN_SOURCE_STORED);
      // Both ask for more than the 300 s a token lives: one refresh, the other call joins it.
      op.setTokenDelay(300);
      const both = await Promise.all([get(600), get(600)]);
      assert.deepEqual(
        both.map((r) => r.source),
        [TokenSource.TOKEN_SOURCE_REFRESHED, TokenSource.TOKEN_SOURCE_REFRESHED],
      );
      assert.equal(op.grantsServed('refresh_token'), 1);
      op.setTokenDelay(0);
      op.failTokenEndpoint({ status: 400, error: 'invalid_grant' });
      const rejected = await callError(client, client.getValidSubjectToken, {
        userId: 'u1',
        provider: 'corp',
        minValidFor: { seconds: 600, nanos: 0 },
      });
      assert.equal(rejected.errorInfo.metadata.cause, 'REFRESH_REJECTED');
      await call(client, client.revokeSubjectToken, { userId: 'u1', provider: 'corp', revokeAtIdp: false });
    } finally {
      client.close();
    }

    const { body } = await scrape(port);
    for (const name of Object.values(METRIC_NAMES)) {
      assert.match(body, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`);
    }
    const line = (re: RegExp) => assert.match(body, re);
    line(/^credbroker_calls_total\{rpc="StartLogin",code="OK",reason=""\} 1$/m);
    line(/^credbroker_calls_total\{rpc="CompleteLogin",code="OK",reason=""\} 1$/m);
    line(/^credbroker_calls_total\{rpc="GetValidSubjectToken",code="OK",reason=""\} 3$/m);
    line(
      /^credbroker_calls_total\{rpc="GetValidSubjectToken",code="FAILED_PRECONDITION",reason="REAUTH_REQUIRED"\} 1$/m,
    );
    line(/^credbroker_calls_total\{rpc="RevokeSubjectToken",code="OK",reason=""\} 1$/m);
    line(/^credbroker_call_duration_seconds_count\{rpc="GetValidSubjectToken"\} 4$/m);
    line(/^credbroker_refreshes_total\{provider="corp",outcome="refreshed"\} 1$/m);
    line(/^credbroker_refreshes_total\{provider="corp",outcome="rejected"\} 1$/m);
    line(/^credbroker_reauth_required_total\{rpc="GetValidSubjectToken",cause="REFRESH_REJECTED"\} 1$/m);
    line(/^credbroker_coalesced_waiters_total 1$/m);
    assert.match(body, /^credbroker_lock_wait_seconds_count [1-9]\d*$/m);
    line(/^credbroker_token_remaining_lifetime_seconds_count 3$/m);
    line(/^credbroker_store_up 1$/m);
    line(/^credbroker_build_info\{version="[^"]+",node_version="v[\d.]+"\} 1$/m);
  });
});
