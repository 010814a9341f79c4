import assert from 'node:assert/strict';
import { checkExposure, isLoopbackListen } from '../../src/server/security/exposure.js';
import { testConfig } from '../helpers/server.js';

const provider = `
providers:
  - id: corp
    issuer: https://login.example.com
    client_id: c
    client_secret: s
    redirect_uris: [https://app.example.com/cb]
`;
const keyCaller = `
callers:
  - name: web
    api_key_sha256: ${'a'.repeat(64)}
    allow: [StartLogin]
`;
const certCaller = `
callers:
  - name: orders
    tls_subject: CN=orders
    allow: [GetValidSubjectToken]
`;
const tls = (extra = '') => `tls:\n  cert_file: /srv/tls.crt\n  key_file: /srv/tls.key\n${extra}`;

describe('secure by default (checkExposure)', () => {
  it('refuses a non-loopback listen without caller authentication, naming listen and the way out', () => {
    const { problems } = checkExposure(testConfig('', { CREDBROKER_LISTEN: '0.0.0.0:50051' }));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^listen: 0\.0\.0\.0:50051 .*no caller authentication/);
    assert.match(problems[0]!, /insecure: true/);
  });

  it('starts, with warnings, when insecure is set explicitly', () => {
    const exposure = checkExposure(
      testConfig('', { CREDBROKER_LISTEN: '0.0.0.0:50051', CREDBROKER_INSECURE: 'true' }),
    );
    assert.deepEqual(exposure.problems, []);
    assert.ok(exposure.warnings.includes('insecure: true is set'));
    assert.ok(exposure.warnings.some((w) => w.includes('plaintext')));
  });

  it('allows loopback without security, still warning', () => {
    const exposure = checkExposure(testConfig('', { CREDBROKER_LISTEN: '127.0.0.1:50051' }));
    assert.deepEqual(exposure.problems, []);
    assert.ok(exposure.warnings.length > 0);
  });

  it('accepts a non-loopback listen behind mutual TLS or with callers over TLS, without warnings', () => {
    const mtls = testConfig(`${tls('  client_ca_file: /srv/ca.crt\n')}${certCaller}`, {
      CREDBROKER_LISTEN: '0.0.0.0:50051',
    });
    assert.deepEqual(checkExposure(mtls), { problems: [], warnings: [] });
    const keys = testConfig(`${tls()}${provider}${keyCaller}`, { CREDBROKER_LISTEN: '[::]:50051' });
    assert.deepEqual(checkExposure(keys), { problems: [], warnings: [] });
  });

  it('refuses TLS without client authentication and without callers on a public address', () => {
    const { problems } = checkExposure(testConfig(tls(), { CREDBROKER_LISTEN: '0.0.0.0:50051' }));
    assert.equal(problems.length, 1);
    assert.match(problems[0]!, /^listen:/);
  });

  it('refuses API keys over plaintext unless insecure is set', () => {
    const { problems } = checkExposure(testConfig(keyCaller));
    assert.deepEqual(problems.length, 1);
    assert.match(problems[0]!, /^callers\[0\]\.api_key_sha256: .*plaintext/);
    assert.deepEqual(checkExposure(testConfig(keyCaller, { CREDBROKER_INSECURE: 'true' })).problems, []);
  });

  it('refuses certificate callers without a client CA, and an unparsable tls_subject', () => {
    const noCa = checkExposure(testConfig(`${tls()}${certCaller}`));
    assert.match(noCa.problems.join('\n'), /callers\[0\]: tls_subject \/ tls_san need `tls\.client_ca_file`/);
    const bad = checkExposure(
      testConfig(`${tls('  client_ca_file: /srv/ca.crt\n')}${certCaller.replace('CN=orders', 'orders')}`),
    );
    assert.match(bad.problems.join('\n'), /callers\[0\]\.tls_subject: expected ATTR=value/);
  });

  it('knows loopback addresses', () => {
    for (const a of ['127.0.0.1:1', '127.1.2.3:1', '[::1]:1', 'localhost:1'])
      assert.ok(isLoopbackListen(a), a);
    for (const a of ['0.0.0.0:1', '[::]:1', '10.0.0.1:1', 'broker:1', '127.0.0.1.nip.io:1']) {
      assert.ok(!isLoopbackListen(a), a);
    }
  });
});
