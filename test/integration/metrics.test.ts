import assert from 'node:assert/strict';
import { request } from 'node:http';
import type { BrokerApi, GetTokenInput } from '../../src/broker/api.js';
import { reauthRequired } from '../../src/core/errors.js';
import { notImplementedApi } from '../helpers/not-implemented.js';
import { CredentialBrokerClient } from '../../src/gen/credbroker/v1/broker.js';
import { createMetrics, METRIC_NAMES, type MetricsHttpServer } from '../../src/server/metrics.js';
import { call, callError } from '../helpers/grpc.js';
import { CORP_PROVIDER_YAML, startTestServer, type TestServer } from '../helpers/server.js';

const provider = CORP_PROVIDER_YAML;

function scrape(port: number, path = '/metrics'): Promise<{ status: number; type: string; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method: 'GET' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type']), body }),
      );
    });
    req.once('error', reject);
    req.end();
  });
}

/** The value of one sample line `name{labels} value`, or undefined. */
function sample(body: string, name: string, labels: string): number | undefined {
  const line = body.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('Prometheus metrics', () => {
  let ts: TestServer | undefined;
  let http: MetricsHttpServer | undefined;
  afterEach(async () => {
    await ts?.stop();
    await http?.close();
    ts = undefined;
    http = undefined;
  });

  it('serves every metric family on /metrics after a short session', async () => {
    const metrics = createMetrics();
    // Call-level series come from real calls through the real server; the API behind it is a
    // stand-in that answers one user and sends the other to re-authenticate.
    const api: BrokerApi = {
      ...notImplementedApi,
      async getValidSubjectToken(input: GetTokenInput) {
        if (input.userId !== 'alice') throw reauthRequired('NO_TOKEN', input);
        return {
          accessToken: 'at-1',
          tokenType: 'Bearer',
          expiresAt: new Date(Date.now() + 600_000),
          scopes: ['openid'],
          source: 'STORED',
          degraded: false,
        };
      },
    };
    ts = await startTestServer({ yaml: provider, api, observers: [metrics.observer] });
    http = await metrics.startHttp('127.0.0.1:0');

    const get = CredentialBrokerClient.prototype.getValidSubjectToken;
    await call(ts.client, get, { userId: 'alice', provider: 'corp', minValidFor: undefined });
    await call(ts.client, get, { userId: 'alice', provider: 'corp', minValidFor: undefined });
    const err = await callError(ts.client, get, { userId: 'bob', provider: '', minValidFor: undefined });
    assert.equal(err.errorInfo.reason, 'REAUTH_REQUIRED');
    await callError(ts.client, get, { userId: '', provider: 'corp', minValidFor: undefined });

    const res = await scrape(http.port);
    assert.equal(res.status, 200);
    assert.match(res.type, /^text\/plain; version=0\.0\.4/);
    for (const name of Object.values(METRIC_NAMES)) {
      assert.match(res.body, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`);
    }
    for (const name of [
      'process_cpu_user_seconds_total',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
    ]) {
      assert.match(res.body, new RegExp(`^# TYPE ${name} `, 'm'), `default metric ${name}`);
    }

    const calls = METRIC_NAMES.calls;
    assert.equal(sample(res.body, calls, 'rpc="GetValidSubjectToken",code="OK",reason=""'), 2);
    assert.equal(
      sample(
        res.body,
        calls,
        'rpc="GetValidSubjectToken",code="FAILED_PRECONDITION",reason="REAUTH_REQUIRED"',
      ),
      1,
    );
    assert.equal(
      sample(res.body, calls, 'rpc="GetValidSubjectToken",code="INVALID_ARGUMENT",reason="INVALID_REQUEST"'),
      1,
    );
    assert.equal(sample(res.body, `${METRIC_NAMES.callDuration}_count`, 'rpc="GetValidSubjectToken"'), 4);
    assert.equal(sample(res.body, METRIC_NAMES.reauth, 'rpc="GetValidSubjectToken",cause="NO_TOKEN"'), 1);
    assert.match(res.body, /^credbroker_build_info\{version="0\.1\.0",node_version="v\d+\.\d+\.\d+"\} 1$/m);
    // No user id or token reaches a label.
    assert.doesNotMatch(res.body, /alice|bob|at-1/);
  });

  it('turns the domain hooks into series', async () => {
    const metrics = createMetrics();
    const m = metrics.brokerMetrics;
    m.refresh('corp', 'refreshed');
    m.refresh('corp', 'rejected');
    m.lockWait(12);
    m.coalescedWaiter();
    m.coalescedWaiter();
    m.storeError('get');
    m.tokenServed(90_000);
    metrics.setStoreUp(false);
    http = await metrics.startHttp('127.0.0.1:0');
    const { body } = await scrape(http.port);
    assert.equal(sample(body, METRIC_NAMES.refreshes, 'provider="corp",outcome="refreshed"'), 1);
    assert.equal(sample(body, METRIC_NAMES.refreshes, 'provider="corp",outcome="rejected"'), 1);
    assert.match(body, /^credbroker_lock_wait_seconds_bucket\{le="0.025"\} 1$/m);
    assert.match(body, /^credbroker_lock_wait_seconds_bucket\{le="0.01"\} 0$/m);
    assert.match(body, /^credbroker_coalesced_waiters_total 2$/m);
    assert.equal(sample(body, METRIC_NAMES.storeErrors, 'op="get"'), 1);
    assert.match(body, /^credbroker_token_remaining_lifetime_seconds_bucket\{le="120"\} 1$/m);
    assert.match(body, /^credbroker_token_remaining_lifetime_seconds_bucket\{le="60"\} 0$/m);
    assert.match(body, /^credbroker_store_up 0$/m);
  });

  it('answers 404 outside /metrics and keeps registries of two brokers apart', async () => {
    const a = createMetrics();
    const b = createMetrics();
    a.brokerMetrics.coalescedWaiter();
    http = await b.startHttp('127.0.0.1:0');
    assert.equal((await scrape(http.port, '/')).status, 404);
    assert.match((await scrape(http.port)).body, /^credbroker_coalesced_waiters_total 0$/m);
    assert.match(await a.registry.metrics(), /^credbroker_coalesced_waiters_total 1$/m);
  });
});
