import assert from 'node:assert/strict';
import { request } from 'node:http';
import { CredentialBrokerClient } from '../../src/gen/credbroker/v1/broker.js';
import { startBroker, type Running } from '../../src/main.js';
import { brokerClient, callError } from '../helpers/grpc.js';
import { captureLogs } from '../helpers/log-capture.js';
import { freePort } from '../helpers/ports.js';
import { testConfig } from '../helpers/server.js';

function get(port: number): Promise<{ status: number; body: string }> {
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
  afterEach(async () => {
    await running?.server.shutdown();
    running = undefined;
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
    const { status, body } = await get(port);
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
    await assert.rejects(get(port), { code: 'ECONNREFUSED' });
  });
});
