/**
 * Caller security end to end, on the real BrokerServer with certificates generated at test time:
 * mutual TLS, API keys over TLS, the caller policy, the plaintext health port, the audit log and
 * certificate rotation without restart.
 */
import assert from 'node:assert/strict';
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { connect, TLSSocket } from 'node:tls';
import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import type { BrokerApi, CallContext } from '../../src/broker/api.js';
import { notImplementedApi } from '../helpers/not-implemented.js';
import { checkHealth } from '../../src/cli/healthcheck.js';
import { CredentialBrokerClient } from '../../src/gen/credbroker/v1/broker.js';
import { hashUserId } from '../../src/logger.js';
import { hashApiKey } from '../../src/server/security/api-keys.js';
import { runCli } from '../helpers/cli.js';
import { createPki, type Issued, type TestCa, type TestPki } from '../helpers/certs.js';
import { brokerClient, call, callError } from '../helpers/grpc.js';
import { freePort } from '../helpers/ports.js';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { waitUntil } from '../helpers/wait.js';

const TOKEN = 'at-3f9c2e7d-secret-access-token-value';
const WEB_KEY = 'web-login-api-key-6d1f0a';
const ORDERS_KEY = 'orders-api-key-83b2c4';

const providers = `
providers:
  - id: corp
    issuer: https://login.example.com
    client_id: c
    client_secret: s
    redirect_uris: [https://app.example.com/cb]
  - id: other
    issuer: https://other.example.com
    client_id: c
    client_secret: s
    redirect_uris: [https://app.example.com/cb]
`;

/** A BrokerApi that releases TOKEN and remembers who asked. */
function stubApi(): BrokerApi & { callers: (string | undefined)[] } {
  const callers: (string | undefined)[] = [];
  return {
    ...notImplementedApi,
    callers,
    getValidSubjectToken: async (_input, ctx: CallContext) => {
      callers.push(ctx.caller);
      return {
        accessToken: TOKEN,
        tokenType: 'Bearer',
        expiresAt: new Date(Date.now() + 3_600_000),
        scopes: ['openid'],
        source: 'STORED',
        degraded: false,
      };
    },
  };
}

const getToken = (c: CredentialBrokerClient, provider: string, metadata?: Metadata) =>
  call(
    c,
    c.getValidSubjectToken,
    { userId: 'alice@example.com', provider, minValidFor: undefined },
    { deadlineMs: 5000, ...(metadata ? { metadata } : {}) },
  );
const startLogin = (c: CredentialBrokerClient, metadata?: Metadata) =>
  callError(
    c,
    c.startLogin,
    { provider: 'corp', redirectUri: 'https://app.example.com/cb', scopes: [], loginHint: '' },
    { deadlineMs: 5000, ...(metadata ? { metadata } : {}) },
  );

function bearer(key: string): Metadata {
  const md = new Metadata();
  md.set('authorization', `Bearer ${key}`);
  return md;
}

/** The CN of the certificate a fresh TLS connection to `port` is served. */
function servedCommonName(port: number, ca: Buffer): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port, ca, servername: 'localhost', ALPNProtocols: ['h2'] },
      () => {
        const cn = socket.getPeerCertificate().subject.CN;
        socket.destroy();
        resolve(Array.isArray(cn) ? cn.join('+') : String(cn));
      },
    );
    socket.once('error', reject);
  });
}

describe('caller security', () => {
  let pki: TestPki;
  let ca: TestCa;
  let serverCert: Issued;
  const clients: CredentialBrokerClient[] = [];
  const servers: TestServer[] = [];

  before(() => {
    pki = createPki();
    ca = pki.ca('test-ca');
    serverCert = ca.issue('server', {
      subject: '/CN=credbroker-one',
      sans: ['DNS:localhost', 'IP:127.0.0.1'],
      usage: 'server',
    });
  });
  after(async () => {
    for (const c of clients) c.close();
    for (const s of servers) await s.stop();
    pki.cleanup();
  });

  const tlsClient = (address: string, identity?: Issued, trust: Buffer = ca.cert) => {
    const c = new CredentialBrokerClient(
      address,
      identity ? credentials.createSsl(trust, identity.key, identity.cert) : credentials.createSsl(trust),
      // The server certificate names localhost; connect by IP without an IP as TLS server name.
      { 'grpc.ssl_target_name_override': 'localhost', 'grpc.default_authority': 'localhost' },
    );
    clients.push(c);
    return c;
  };
  const start = async (yaml: string, api: BrokerApi = stubApi()) => {
    const ts = await startTestServer({ yaml, api });
    servers.push(ts);
    return ts;
  };

  describe('over mutual TLS', () => {
    let ts: TestServer;
    let api: ReturnType<typeof stubApi>;
    let orders: Issued;
    let web: Issued;
    before(async () => {
      orders = ca.issue('orders', { subject: '/CN=orders.prod.svc/O=Acme', usage: 'client' });
      web = ca.issue('web', { subject: '/CN=web-login', usage: 'client' });
      api = stubApi();
      ts = await start(
        `${providers}
tls:
  cert_file: ${serverCert.certFile}
  key_file: ${serverCert.keyFile}
  client_ca_file: ${ca.certFile}
callers:
  - name: orders-service
    tls_subject: CN=orders.prod.svc, O=Acme
    allow: [GetValidSubjectToken]
    providers: [corp]
  - name: web-login
    tls_subject: CN=web-login
    allow: [StartLogin, CompleteLogin, RevokeSubjectToken]
`,
        api,
      );
    });

    it('lets a caller with a trusted certificate call what it is allowed, as that caller', async () => {
      const res = await getToken(tlsClient(ts.address, orders), 'corp');
      assert.equal(res.accessToken, TOKEN);
      assert.equal(api.callers.at(-1), 'orders-service');
      // Another caller's allowed RPC reaches its handler (StartLogin is not built: UNIMPLEMENTED).
      assert.equal((await startLogin(tlsClient(ts.address, web))).code, status.UNIMPLEMENTED);
    });

    it('refuses a client without a certificate, or with one from another CA, at the handshake', async () => {
      const stranger = pki.ca('other-ca').issue('stranger', {
        subject: '/CN=orders.prod.svc/O=Acme',
        usage: 'client',
      });
      const before = api.callers.length;
      const callLines = () => ts.logs.records().filter((r) => r.msg === 'call').length;
      const linesBefore = callLines();
      for (const c of [tlsClient(ts.address), tlsClient(ts.address, stranger)]) {
        await assert.rejects(getToken(c, 'corp'), (err: ServiceError) => {
          assert.equal(err.code, status.UNAVAILABLE, err.details);
          return true;
        });
      }
      assert.equal(api.callers.length, before, 'no handler ran');
      assert.equal(callLines(), linesBefore, 'no call reached the service');
    });

    it('reads a connection’s certificate once, and never lends one connection’s caller to another', async () => {
      const ordersClient = tlsClient(ts.address, orders);
      const webClient = tlsClient(ts.address, web);
      const deniedCause = async () => {
        const e = await callError(webClient, webClient.getValidSubjectToken, {
          userId: 'alice@example.com',
          provider: 'corp',
          minValidFor: undefined,
        });
        return [e.code, e.errorInfo.metadata.caller];
      };
      // First calls: both connections are up and their certificates read.
      assert.equal((await getToken(ordersClient, 'corp')).accessToken, TOKEN);
      assert.deepEqual(await deniedCause(), [status.PERMISSION_DENIED, 'web-login']);

      const original = TLSSocket.prototype.getPeerCertificate;
      let reads = 0;
      TLSSocket.prototype.getPeerCertificate = function (this: TLSSocket, ...args: [boolean?]) {
        // The server's side of a connection (a client reads the server's certificate too).
        if ((this as { server?: unknown }).server !== undefined) reads++;
        return original.apply(this, args as [true]);
      } as typeof original;
      try {
        const before = api.callers.length;
        for (let i = 0; i < 5; i++) {
          assert.equal((await getToken(ordersClient, 'corp')).accessToken, TOKEN);
          assert.deepEqual(await deniedCause(), [status.PERMISSION_DENIED, 'web-login']);
        }
        assert.deepEqual(api.callers.slice(before), Array(5).fill('orders-service'));
        assert.equal(reads, 0, 'ten calls on two known connections read no certificate');

        // A new connection with the other certificate: read once, and it is web-login's.
        const second = tlsClient(ts.address, web);
        for (let i = 0; i < 3; i++) {
          const e = await startLogin(second);
          assert.equal(e.code, status.UNIMPLEMENTED, 'web-login may call StartLogin');
        }
        assert.equal(reads, 1, 'the new connection’s certificate was read once');
      } finally {
        TLSSocket.prototype.getPeerCertificate = original;
      }
    });

    it('answers PERMISSION_DENIED when the certificate’s caller may not call that RPC', async () => {
      const c = tlsClient(ts.address, web);
      const denied = await callError(c, c.getValidSubjectToken, {
        userId: 'alice@example.com',
        provider: 'corp',
        minValidFor: undefined,
      });
      assert.equal(denied.code, status.PERMISSION_DENIED);
      assert.equal(denied.errorInfo.reason, 'CALLER_FORBIDDEN');
      assert.deepEqual(denied.errorInfo.metadata, { cause: 'RPC_NOT_ALLOWED', caller: 'web-login' });
      const alsoDenied = await startLogin(tlsClient(ts.address, orders));
      assert.equal(alsoDenied.code, status.PERMISSION_DENIED);
    });

    it('answers PERMISSION_DENIED for an allowed RPC on a provider the caller may not touch', async () => {
      const c = tlsClient(ts.address, orders);
      const denied = await callError(c, c.getValidSubjectToken, {
        userId: 'alice@example.com',
        provider: 'other',
        minValidFor: undefined,
      });
      assert.equal(denied.code, status.PERMISSION_DENIED);
      assert.deepEqual(denied.errorInfo.metadata, {
        cause: 'PROVIDER_NOT_ALLOWED',
        caller: 'orders-service',
        provider: 'other',
      });
    });

    it('serves plaintext grpc.health.v1 on the health port, and nothing else there', async () => {
      assert.equal(
        await checkHealth({ address: ts.healthAddress!, service: '', timeoutMs: 2000 }),
        'SERVING',
      );
      assert.equal(
        await checkHealth({
          address: ts.healthAddress!,
          service: 'credbroker.v1.CredentialBroker',
          timeoutMs: 2000,
        }),
        'SERVING',
      );
      const plain = brokerClient(ts.healthAddress!);
      clients.push(plain);
      await assert.rejects(getToken(plain, 'corp'), { code: status.UNIMPLEMENTED });
      // …and the API port does not answer plaintext at all.
      await assert.rejects(checkHealth({ address: ts.address, service: '', timeoutMs: 2000 }), {
        code: status.UNAVAILABLE,
      });
    });
  });

  describe('with API keys over TLS', () => {
    let ts: TestServer;
    before(async () => {
      ts = await start(`${providers}
tls:
  cert_file: ${serverCert.certFile}
  key_file: ${serverCert.keyFile}
callers:
  - name: web-login
    api_key_sha256: ${hashApiKey(WEB_KEY)}
    allow: [StartLogin, CompleteLogin, RevokeSubjectToken]
  - name: orders-service
    api_key_sha256: ${hashApiKey(ORDERS_KEY)}
    allow: [GetValidSubjectToken]
    providers: [corp]
`);
    });

    it('allows the right key and refuses a wrong or missing one with UNAUTHENTICATED', async () => {
      const c = tlsClient(ts.address);
      assert.equal((await getToken(c, 'corp', bearer(ORDERS_KEY))).accessToken, TOKEN);
      assert.equal((await startLogin(c, bearer(WEB_KEY))).code, status.UNIMPLEMENTED);

      const wrong = await startLogin(c, bearer(`${WEB_KEY}x`));
      assert.equal(wrong.code, status.UNAUTHENTICATED);
      assert.deepEqual(wrong.errorInfo, {
        reason: 'CALLER_UNAUTHENTICATED',
        domain: 'credbroker.v1',
        metadata: { cause: 'INVALID_API_KEY' },
      });
      const missing = await startLogin(c);
      assert.equal(missing.code, status.UNAUTHENTICATED);
      assert.equal(missing.errorInfo.metadata.cause, 'NO_CREDENTIALS');
    });

    it('authenticates before validating: a stranger gets UNAUTHENTICATED, not the provider list', async () => {
      const c = tlsClient(ts.address);
      const e = await callError(c, c.getValidSubjectToken, {
        userId: 'u',
        provider: 'nope',
        minValidFor: undefined,
      });
      assert.equal(e.code, status.UNAUTHENTICATED);
      assert.ok(!e.message.includes('corp'));
    });

    it('audits every call as a structured event under the logger name "audit", without token material', async () => {
      const c = tlsClient(ts.address);
      const md = bearer(ORDERS_KEY);
      md.set('x-request-id', 'req-audit-1');
      await getToken(c, 'corp', md);
      const denyMd = bearer('not-a-valid-key-123');
      denyMd.set('x-request-id', 'req-audit-2');
      await callError(
        c,
        c.getValidSubjectToken,
        { userId: 'alice@example.com', provider: 'corp', minValidFor: undefined },
        { metadata: denyMd },
      );
      await callError(
        c,
        c.getValidSubjectToken,
        { userId: 'alice@example.com', provider: 'other', minValidFor: undefined },
        { metadata: bearer(ORDERS_KEY) },
      );
      const audit = ts.logs.records().filter((r) => r.name === 'audit');
      const released = audit.find((r) => r.requestId === 'req-audit-1');
      assert.deepEqual(
        released && {
          event: released.event,
          outcome: released.outcome,
          caller: released.caller,
          rpc: released.rpc,
          user: released.user,
          provider: released.provider,
        },
        {
          event: 'token_release',
          outcome: 'ok',
          caller: 'orders-service',
          rpc: 'GetValidSubjectToken',
          user: hashUserId('alice@example.com'),
          provider: 'corp',
        },
      );
      const unauthenticated = audit.find((r) => r.requestId === 'req-audit-2');
      assert.equal(unauthenticated?.event, 'denied');
      assert.equal(unauthenticated.outcome, 'CALLER_UNAUTHENTICATED');
      assert.equal(unauthenticated.cause, 'INVALID_API_KEY');
      const forbidden = audit.find((r) => r.cause === 'PROVIDER_NOT_ALLOWED');
      assert.equal(forbidden?.event, 'denied');
      assert.equal(forbidden.caller, 'orders-service');
      assert.equal(forbidden.provider, 'other');

      const text = ts.logs.text();
      for (const secret of [TOKEN, WEB_KEY, ORDERS_KEY, 'not-a-valid-key-123', 'alice@example.com']) {
        assert.ok(!text.includes(secret), `logs contain ${secret}`);
      }
    });
  });

  describe('with optional client certificates (require_client_cert: false)', () => {
    it('identifies by trusted certificates only: an untrusted one never names a caller, an API key still works', async () => {
      const ts = await start(`${providers}
tls:
  cert_file: ${serverCert.certFile}
  key_file: ${serverCert.keyFile}
  client_ca_file: ${ca.certFile}
  require_client_cert: false
callers:
  - name: orders-service
    tls_subject: CN=orders.prod.svc, O=Acme
    allow: [GetValidSubjectToken]
  - name: orders-by-key
    api_key_sha256: ${hashApiKey(ORDERS_KEY)}
    allow: [GetValidSubjectToken]
`);
      const trusted = ca.issue('orders-opt', { subject: '/CN=orders.prod.svc/O=Acme', usage: 'client' });
      const forged = pki
        .ca('forger-ca')
        .issue('forged', { subject: '/CN=orders.prod.svc/O=Acme', usage: 'client' });
      assert.equal((await getToken(tlsClient(ts.address, trusted), 'corp')).accessToken, TOKEN);
      const c = tlsClient(ts.address, forged);
      const e = await callError(c, c.getValidSubjectToken, {
        userId: 'alice@example.com',
        provider: 'corp',
        minValidFor: undefined,
      });
      assert.equal(e.code, status.UNAUTHENTICATED);
      assert.equal(e.errorInfo.metadata.cause, 'NO_CREDENTIALS');
      assert.equal((await getToken(tlsClient(ts.address), 'corp', bearer(ORDERS_KEY))).accessToken, TOKEN);
    });
  });

  describe('certificate rotation', () => {
    it('serves replaced certificate files to new connections without a restart, and keeps the last good set', async () => {
      const certFile = join(pki.dir, 'live.crt');
      const keyFile = join(pki.dir, 'live.key');
      copyFileSync(serverCert.certFile, certFile);
      copyFileSync(serverCert.keyFile, keyFile);
      const ts = await start(`${providers}
tls:
  cert_file: ${certFile}
  key_file: ${keyFile}
  reload_interval: 50ms
`);
      const port = Number(ts.address.split(':')[1]);
      assert.equal(await servedCommonName(port, ca.cert), 'credbroker-one');

      const next = ca.issue('server-two', {
        subject: '/CN=credbroker-two',
        sans: ['DNS:localhost', 'IP:127.0.0.1'],
        usage: 'server',
      });
      writeFileSync(keyFile, next.key);
      writeFileSync(certFile, next.cert);
      await waitUntil(async () => (await servedCommonName(port, ca.cert)) === 'credbroker-two', {
        intervalMs: 50,
        what: 'the replaced certificate to be served',
      });
      assert.equal((await getToken(tlsClient(ts.address), 'corp')).accessToken, TOKEN);

      // A broken rotation (garbage key) is refused: the server keeps serving the last good set.
      const warnings = () =>
        ts.logs
          .records()
          .filter((r) => r.msg === 'TLS files changed but do not load; still serving the previous ones')
          .length;
      const warnedBefore = warnings();
      writeFileSync(keyFile, 'not a key');
      await waitUntil(() => warnings() > warnedBefore, { what: 'the warning about the broken key' });
      await sleep(300); // six more polls of the unchanged broken files: no further warning
      assert.equal(await servedCommonName(port, ca.cert), 'credbroker-two');
      assert.equal(warnings() - warnedBefore, 1, 'warned once, not on every poll');
      assert.ok(ts.logs.records().some((r) => r.msg === 'TLS files reloaded'));
    });
  });

  describe('client CA rotation', () => {
    it('accepts client certificates from a CA added to the client CA file, without a restart', async () => {
      const caFile = join(pki.dir, 'live-client-ca.crt');
      copyFileSync(ca.certFile, caFile);
      const ts = await start(`${providers}
tls:
  cert_file: ${serverCert.certFile}
  key_file: ${serverCert.keyFile}
  client_ca_file: ${caFile}
  reload_interval: 50ms
`);
      const nextCa = pki.ca('next-client-ca');
      const client = nextCa.issue('next-client', { subject: '/CN=next-client', usage: 'client' });
      await assert.rejects(getToken(tlsClient(ts.address, client), 'corp'), { code: status.UNAVAILABLE });

      writeFileSync(caFile, Buffer.concat([ca.cert, nextCa.cert]));
      await waitUntil(
        () =>
          getToken(tlsClient(ts.address, client), 'corp').then(
            (res) => res.accessToken === TOKEN,
            () => false,
          ),
        { intervalMs: 50, what: 'a certificate from the added CA to be accepted' },
      );
    });
  });

  describe('secure by default', () => {
    it('refuses to serve on 0.0.0.0 without caller authentication or insecure, exiting non-zero and saying why', async () => {
      const port = await freePort();
      const result = await runCli(['serve'], {
        CREDBROKER_LISTEN: `0.0.0.0:${port}`,
        CREDBROKER_HEALTH_LISTEN: '',
        CREDBROKER_METRICS_LISTEN: '',
      });
      assert.equal(result.code, 2, result.stdout + result.stderr);
      assert.match(
        result.stderr,
        /listen: 0\.0\.0\.0:\d+ is reachable from other hosts but no caller authentication/,
      );
      assert.match(result.stderr, /insecure: true/);
    });

    it('refuses to serve when a TLS file cannot be read, naming the field', async () => {
      const result = await runCli(['serve'], {
        CREDBROKER_LISTEN: '127.0.0.1:0',
        CREDBROKER_HEALTH_LISTEN: '',
        CREDBROKER_METRICS_LISTEN: '',
        CREDBROKER_TLS_CERT_FILE: join(pki.dir, 'missing.crt'),
        CREDBROKER_TLS_KEY_FILE: serverCert.keyFile,
      });
      assert.equal(result.code, 2, result.stdout + result.stderr);
      assert.match(result.stderr, /tls\.cert_file: cannot read .*missing\.crt \(ENOENT\)/);
    });
  });
});
