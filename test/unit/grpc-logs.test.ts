import assert from 'node:assert/strict';
import { experimental, logVerbosity, Metadata, setLogger, setLogVerbosity } from '@grpc/grpc-js';
import { routeGrpcLogs, scrubGrpcLogText } from '../../src/server/grpc-logs.js';
import { captureLogs } from '../helpers/log-capture.js';

const API_KEY = 'ck_live_0123456789abcdefSECRET';

describe('grpc-js log routing', () => {
  after(() => {
    setLogger(console);
    setLogVerbosity(logVerbosity.ERROR);
  });

  it('cuts the authorization value out of a traced request header line', () => {
    // What grpc-js's server_call tracer writes for each call (server-interceptors.js).
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${API_KEY}`);
    metadata.set('x-request-id', 'req-1');
    const traced = `Request to /credbroker.v1.CredentialBroker/GetValidSubjectToken received headers ${JSON.stringify(metadata.toJSON())}`;

    const logs = captureLogs();
    routeGrpcLogs(logs.logger);
    experimental.log(logVerbosity.DEBUG, traced);

    assert.ok(!logs.text().includes(API_KEY));
    assert.match(logs.text(), /"x-request-id\\":\[\\"req-1\\"\]/);
    assert.match(logs.text(), /REDACTED/);
  });

  it('cuts a bearer credential out of any grpc-js line, and leaves other text alone', () => {
    assert.equal(
      scrubGrpcLogText(`authorization: Bearer ${API_KEY} rest`),
      'authorization: Bearer [REDACTED] rest',
    );
    assert.equal(scrubGrpcLogText('connection closed by peer'), 'connection closed by peer');
  });
});
