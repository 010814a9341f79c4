import assert from 'node:assert/strict';
import type { PeerCertificate } from 'node:tls';
import { Metadata, type ServerUnaryCall } from '@grpc/grpc-js';
import { BrokerError } from '../../src/core/errors.js';
import { hashApiKey, keyTable, matchApiKey, presentedApiKey } from '../../src/server/security/api-keys.js';
import { createAuthorizer, type AuthorizerOptions } from '../../src/server/security/authorize.js';
import {
  parseSubject,
  parseSubjectAltNames,
  sanMatches,
  subjectMatches,
} from '../../src/server/security/peer-identity.js';
import { testConfig } from '../helpers/server.js';

const WEB_KEY = 'web-login-key-0123456789';
const ORDERS_KEY = 'orders-key-abcdefghijkl';

const callers = testConfig(`
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
callers:
  - name: web-login
    api_key_sha256: ${hashApiKey(WEB_KEY)}
    allow: [StartLogin, CompleteLogin, RevokeSubjectToken]
  - name: orders-by-key
    api_key_sha256: ${hashApiKey(ORDERS_KEY)}
    allow: [GetValidSubjectToken]
    providers: [corp]
  - name: orders-service
    tls_subject: CN=orders.prod.svc, O=Acme
    allow: [GetValidSubjectToken]
    providers: [corp]
  - name: billing
    tls_san: DNS:billing.prod.svc
    allow: [GetValidSubjectToken]
  - name: spiffe-caller
    tls_san: spiffe://prod/ns/app/sa/reporter
    allow: [RevokeSubjectToken]
`).callers;

interface FakePeer {
  readonly subject?: Record<string, string | string[]>;
  readonly san?: string;
}

function fakeCall(options: { authorization?: string | readonly string[]; peer?: FakePeer }) {
  const metadata = new Metadata();
  for (const value of [options.authorization ?? []].flat()) metadata.add('authorization', value);
  const cert = options.peer
    ? ({
        subject: options.peer.subject ?? {},
        subjectaltname: options.peer.san,
      } as unknown as PeerCertificate)
    : undefined;
  return {
    metadata,
    getAuthContext: () => (cert ? { transportSecurityType: 'ssl', sslPeerCertificate: cert } : {}),
  } as unknown as ServerUnaryCall<unknown, unknown>;
}

function denial(fn: () => unknown): BrokerError {
  try {
    fn();
  } catch (err) {
    assert.ok(err instanceof BrokerError, `expected a BrokerError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected the call to be denied');
}

describe('caller policy (authorize)', () => {
  const options: AuthorizerOptions = { callers, insecure: false, tls: true };
  const authorize = createAuthorizer(options);

  describe('API keys', () => {
    it('identifies the caller by its key and allows the RPCs it lists', () => {
      const call = fakeCall({ authorization: `Bearer ${WEB_KEY}` });
      assert.deepEqual(authorize('StartLogin', call, 'corp'), { caller: 'web-login' });
      assert.deepEqual(authorize('RevokeSubjectToken', call, 'other'), { caller: 'web-login' });
    });

    it('accepts the scheme name in any case', () => {
      const call = fakeCall({ authorization: `bearer ${ORDERS_KEY}` });
      assert.deepEqual(authorize('GetValidSubjectToken', call, 'corp'), { caller: 'orders-by-key' });
    });

    it('refuses an unknown key as CALLER_UNAUTHENTICATED without echoing it', () => {
      const err = denial(() =>
        authorize('StartLogin', fakeCall({ authorization: 'Bearer not-a-key-123' }), 'corp'),
      );
      assert.equal(err.reason, 'CALLER_UNAUTHENTICATED');
      assert.equal(err.metadata.cause, 'INVALID_API_KEY');
      assert.ok(!err.message.includes('not-a-key-123'));
    });

    it('refuses a call with no credentials at all', () => {
      const err = denial(() => authorize('StartLogin', fakeCall({}), 'corp'));
      assert.equal(err.reason, 'CALLER_UNAUTHENTICATED');
      assert.equal(err.metadata.cause, 'NO_CREDENTIALS');
    });

    for (const [what, value] of [
      ['another scheme', `Basic ${Buffer.from(`x:${WEB_KEY}`).toString('base64')}`],
      ['an empty bearer', 'Bearer '],
      ['two authorization values', [`Bearer ${WEB_KEY}`, `Bearer ${ORDERS_KEY}`]],
    ] as const) {
      it(`refuses ${what} as malformed`, () => {
        const err = denial(() => authorize('StartLogin', fakeCall({ authorization: value }), 'corp'));
        assert.equal(err.reason, 'CALLER_UNAUTHENTICATED');
        assert.equal(err.metadata.cause, 'MALFORMED_CREDENTIALS');
      });
    }

    it('refuses API keys on a plaintext port unless insecure is set', () => {
      const call = fakeCall({ authorization: `Bearer ${WEB_KEY}` });
      const plaintext = createAuthorizer({ callers, insecure: false, tls: false });
      const err = denial(() => plaintext('StartLogin', call, 'corp'));
      assert.equal(err.metadata.cause, 'API_KEY_OVER_PLAINTEXT');
      const dev = createAuthorizer({ callers, insecure: true, tls: false });
      assert.deepEqual(dev('StartLogin', call, 'corp'), { caller: 'web-login' });
    });

    it('lets a bad key fail even when a trusted certificate is presented too', () => {
      const call = fakeCall({
        authorization: 'Bearer wrong-key-000000',
        peer: { subject: { CN: 'orders.prod.svc', O: 'Acme' } },
      });
      assert.equal(
        denial(() => authorize('GetValidSubjectToken', call, 'corp')).reason,
        'CALLER_UNAUTHENTICATED',
      );
    });
  });

  describe('RPCs and providers', () => {
    it('forbids an RPC the caller does not list, naming the caller', () => {
      const err = denial(() =>
        authorize('GetValidSubjectToken', fakeCall({ authorization: `Bearer ${WEB_KEY}` }), 'corp'),
      );
      assert.equal(err.reason, 'CALLER_FORBIDDEN');
      assert.deepEqual(err.metadata, { cause: 'RPC_NOT_ALLOWED', caller: 'web-login' });
    });

    it('forbids a provider outside the caller’s providers', () => {
      const call = fakeCall({ authorization: `Bearer ${ORDERS_KEY}` });
      const err = denial(() => authorize('GetValidSubjectToken', call, 'other'));
      assert.equal(err.reason, 'CALLER_FORBIDDEN');
      assert.deepEqual(err.metadata, {
        cause: 'PROVIDER_NOT_ALLOWED',
        caller: 'orders-by-key',
        provider: 'other',
      });
    });

    it('still checks the RPC when the request is invalid (provider unknown yet)', () => {
      const call = fakeCall({ authorization: `Bearer ${ORDERS_KEY}` });
      assert.deepEqual(authorize('GetValidSubjectToken', call, undefined), { caller: 'orders-by-key' });
      assert.equal(denial(() => authorize('StartLogin', call, undefined)).reason, 'CALLER_FORBIDDEN');
    });
  });

  describe('client certificates', () => {
    it('matches tls_subject against the certificate subject, every attribute', () => {
      const ok = fakeCall({ peer: { subject: { CN: 'orders.prod.svc', O: 'Acme', C: 'DE' } } });
      assert.deepEqual(authorize('GetValidSubjectToken', ok, 'corp'), { caller: 'orders-service' });
      const wrongOrg = fakeCall({ peer: { subject: { CN: 'orders.prod.svc', O: 'Evil' } } });
      const err = denial(() => authorize('GetValidSubjectToken', wrongOrg, 'corp'));
      assert.equal(err.reason, 'CALLER_FORBIDDEN');
      assert.equal(err.metadata.cause, 'UNKNOWN_CALLER');
      assert.equal(err.metadata.caller, 'CN=orders.prod.svc,O=Evil');
    });

    it('matches tls_san by type and value, DNS case-insensitively', () => {
      const billing = fakeCall({
        peer: { subject: { CN: 'x' }, san: 'DNS:Billing.Prod.Svc, IP Address:10.0.0.1' },
      });
      assert.deepEqual(authorize('GetValidSubjectToken', billing, 'other'), { caller: 'billing' });
      const spiffe = fakeCall({
        peer: { subject: { CN: 'y' }, san: 'URI:spiffe://prod/ns/app/sa/reporter' },
      });
      assert.deepEqual(authorize('RevokeSubjectToken', spiffe, 'corp'), { caller: 'spiffe-caller' });
      const uriNotDns = fakeCall({ peer: { subject: { CN: 'z' }, san: 'URI:billing.prod.svc' } });
      assert.equal(
        denial(() => authorize('GetValidSubjectToken', uriNotDns, 'corp')).metadata.cause,
        'UNKNOWN_CALLER',
      );
    });

    it('denies a matched certificate the RPCs its caller does not list', () => {
      const call = fakeCall({ peer: { subject: { CN: 'orders.prod.svc', O: 'Acme' } } });
      const err = denial(() => authorize('StartLogin', call, 'corp'));
      assert.deepEqual(err.metadata, { cause: 'RPC_NOT_ALLOWED', caller: 'orders-service' });
    });
  });

  describe('with no callers configured', () => {
    it('allows every call and names a certificate holder by its subject', () => {
      const open = createAuthorizer({ callers: [], insecure: true, tls: false });
      assert.deepEqual(open('GetValidSubjectToken', fakeCall({}), 'corp'), { caller: undefined });
      assert.deepEqual(open('StartLogin', fakeCall({ peer: { subject: { CN: 'dev' } } }), 'corp'), {
        caller: 'CN=dev',
      });
    });
  });
});

describe('API key matching', () => {
  it('finds a key at any position and only by its exact hash', () => {
    const table = keyTable(
      ['a', 'b', 'c'].map((name) => ({ sha256: hashApiKey(`key-${name}`), value: name })),
    );
    assert.equal(matchApiKey(table, 'key-a'), 'a');
    assert.equal(matchApiKey(table, 'key-c'), 'c');
    assert.equal(matchApiKey(table, 'key-c '), undefined);
    assert.equal(matchApiKey(table, ''), undefined);
  });

  it('reads the bearer key from metadata', () => {
    const md = new Metadata();
    assert.deepEqual(presentedApiKey(md), { kind: 'none' });
    md.set('authorization', 'Bearer abc.DEF-123_~+/==');
    assert.deepEqual(presentedApiKey(md), { kind: 'bearer', key: 'abc.DEF-123_~+/==' });
  });
});

describe('certificate identity parsing', () => {
  it('parses a subject with escaped commas and rejects a part without "="', () => {
    assert.deepEqual(parseSubject('CN=a\\,b, O = Acme'), [
      { attr: 'CN', value: 'a,b' },
      { attr: 'O', value: 'Acme' },
    ]);
    assert.throws(() => parseSubject('orders.prod.svc'), /ATTR=value/);
  });

  it('matches multi-valued subject attributes', () => {
    assert.ok(subjectMatches(parseSubject('OU=payments'), { OU: ['ops', 'payments'] } as never));
    assert.ok(!subjectMatches(parseSubject('OU=payments'), { OU: ['ops'] } as never));
  });

  it('parses Node’s subjectaltname string, quoted values included', () => {
    const sans = parseSubjectAltNames('DNS:a.example, URI:"spiffe://x/a,b", IP Address:127.0.0.1');
    assert.deepEqual(sans, [
      { type: 'DNS', value: 'a.example' },
      { type: 'URI', value: 'spiffe://x/a,b' },
      { type: 'IP Address', value: '127.0.0.1' },
    ]);
    assert.ok(sanMatches('IP:127.0.0.1', sans));
    assert.ok(sanMatches('spiffe://x/a,b', sans));
    assert.ok(!sanMatches('DNS:spiffe://x/a,b', sans));
  });
});
