/**
 * Downstream configuration (providers[].downstreams[], callers[].downstreams), the caller policy
 * for GetDownstreamToken, the request validator, and the token-endpoint parameters of both
 * exchange modes (RFC 8693 §2.1, Entra on-behalf-of).
 */
import assert from 'node:assert/strict';
import { Metadata, type ServerUnaryCall } from '@grpc/grpc-js';
import { maskConfig } from '../../src/config/load.js';
import { BrokerError } from '../../src/core/errors.js';
import { exchangeParameters, JWT_BEARER_GRANT, TOKEN_EXCHANGE_GRANT } from '../../src/idp/token-exchange.js';
import { hashApiKey } from '../../src/server/security/api-keys.js';
import { createAuthorizer } from '../../src/server/security/authorize.js';
import { validateGetDownstreamToken } from '../../src/server/validation.js';
import { createMetrics, METRIC_NAMES } from '../../src/server/metrics.js';
import { createIdpRegistry, IdpConfigError } from '../../src/idp/registry.js';
import { createLogger } from '../../src/logger.js';
import { loadYaml as load, problemsOf } from '../helpers/config.js';

const provider = (downstreams: string) => `
providers:
  - id: corp
    issuer: https://login.example.com
    client_id: credbroker
    client_secret: s3cret-provider
    redirect_uris: [https://app.example.com/cb]
    downstreams:
${downstreams}`;

const DOWNSTREAMS = `      - id: orders
        audience: https://orders.example.com
        scopes: [orders.read]
      - id: graph
        mode: entra_obo
        scopes: [https://graph.microsoft.com/.default]
      - id: billing
        resource: https://billing.example.com/
        token_endpoint: https://sts.example.com/token
        client_id: billing-client
        client_secret_file: /secrets/billing
        client_auth: client_secret_post
`;

describe('Downstream configuration', () => {
  it('applies the defaults and reads a downstream client secret from its file', () => {
    const config = load(provider(DOWNSTREAMS), {}, { '/secrets/billing': 'billing-secret\n' });
    const [orders, graph, billing] = config.providers[0]!.downstreams;
    assert.equal(orders?.mode, 'token_exchange');
    assert.equal(orders?.requested_token_type, 'urn:ietf:params:oauth:token-type:access_token');
    assert.equal(orders?.client_id, undefined, 'the provider client by default');
    assert.equal(graph?.mode, 'entra_obo');
    assert.equal(billing?.client_secret, 'billing-secret');
    assert.equal(billing?.client_auth, 'client_secret_post');
    const masked = JSON.stringify(maskConfig(config));
    assert.doesNotMatch(masked, /billing-secret|s3cret-provider/);
  });

  it('defaults to no downstreams', () => {
    const config = load(provider('').replace('    downstreams:\n', ''));
    assert.deepEqual(config.providers[0]!.downstreams, []);
  });

  it('names the field for each invalid downstream', () => {
    const problems = problemsOf(() =>
      load(
        provider(`      - id: orders
        audience: https://a.example.com
      - id: orders
        audience: https://b.example.com
      - id: nothing
      - id: obo
        mode: entra_obo
        audience: https://c.example.com
      - id: half
        audience: https://d.example.com
        client_secret: x
      - id: nosecret
        audience: https://e.example.com
        client_id: other
      - id: Bad!
        audience: https://f.example.com
      - id: badres
        resource: not a url
`),
      ),
    );
    const joined = problems.join('\n');
    for (const expected of [
      'providers[0].downstreams[1].id: duplicate downstream id "orders"',
      'providers[0].downstreams[2].audience: a token_exchange downstream needs audience, resource or scopes',
      'providers[0].downstreams[3].scopes: an entra_obo downstream needs scopes',
      'providers[0].downstreams[3].audience: not used by entra_obo',
      'providers[0].downstreams[4].client_id:',
      'providers[0].downstreams[5].client_secret: client_auth client_secret_basic needs client_secret',
      'providers[0].downstreams[6].id:',
      'providers[0].downstreams[7].resource:',
    ]) {
      assert.ok(joined.includes(expected), `missing "${expected}" in\n${joined}`);
    }
  });

  it('checks callers[].downstreams against the downstreams of the providers the caller may use', () => {
    const problems = problemsOf(() =>
      load(
        `${provider(DOWNSTREAMS)}
callers:
  - name: reporting
    api_key_sha256: ${hashApiKey('k'.repeat(24))}
    allow: [GetDownstreamToken]
    downstreams: [orders, payroll]
`,
        {},
        { '/secrets/billing': 'b' },
      ),
    );
    assert.deepEqual(
      problems.filter((p) => p.startsWith('callers')),
      [
        'callers[0].downstreams[1]: unknown downstream "payroll" (not configured under any provider this caller may use)',
      ],
    );
  });
});

describe('GetDownstreamToken request validation', () => {
  const providers = { ids: ['corp'], downstreams: { corp: ['orders', 'graph'] } };
  const request = { userId: 'alice', provider: '', downstream: 'orders', minValidFor: undefined };

  it('resolves the single provider and the default margin', () => {
    assert.deepEqual(validateGetDownstreamToken(request, providers), {
      userId: 'alice',
      provider: 'corp',
      downstream: 'orders',
      minValidForMs: 60_000,
    });
  });

  it('names downstream when it is empty, unknown or oversized', () => {
    for (const [downstream, description] of [
      ['', /required/],
      ['payroll', /^unknown downstream "payroll" of provider "corp"$/],
      ['x'.repeat(200), /at most 128/],
    ] as const) {
      try {
        validateGetDownstreamToken({ ...request, downstream }, providers);
        assert.fail('expected INVALID_REQUEST');
      } catch (err) {
        assert.ok(err instanceof BrokerError);
        assert.deepEqual(
          err.violations.map((v) => v.field),
          ['downstream'],
        );
        assert.match(err.violations[0]!.description, description);
        // Validation runs before the caller policy: it must not list the configured ids.
        assert.doesNotMatch(err.violations[0]!.description, /orders|graph/);
      }
    }
  });
});

describe('GetDownstreamToken caller policy', () => {
  const KEY = 'reporting-key-0123456789';
  const SUBJECT_KEY = 'orders-key-0123456789abc';
  const config = load(
    `${provider(DOWNSTREAMS)}
callers:
  - name: reporting
    api_key_sha256: ${hashApiKey(KEY)}
    allow: [GetDownstreamToken]
    downstreams: [orders]
  - name: orders-service
    api_key_sha256: ${hashApiKey(SUBJECT_KEY)}
    allow: [GetValidSubjectToken, GetDownstreamToken]
`,
    {},
    { '/secrets/billing': 'b' },
  );
  const authorize = createAuthorizer({ callers: config.callers, insecure: false, tls: true });
  const callWith = (key: string, downstream: string) => {
    const metadata = new Metadata();
    metadata.add('authorization', `Bearer ${key}`);
    return {
      metadata,
      request: { userId: 'alice', provider: 'corp', downstream },
      getAuthContext: () => ({}),
    } as unknown as ServerUnaryCall<unknown, unknown>;
  };
  const denied = (fn: () => unknown): BrokerError => {
    try {
      fn();
    } catch (err) {
      assert.ok(err instanceof BrokerError);
      return err;
    }
    assert.fail('expected a denial');
  };

  it('allows a listed downstream without allowing the raw subject token', () => {
    assert.equal(authorize('GetDownstreamToken', callWith(KEY, 'orders'), 'corp').caller, 'reporting');
    const subject = denied(() => authorize('GetValidSubjectToken', callWith(KEY, ''), 'corp'));
    assert.equal(subject.reason, 'CALLER_FORBIDDEN');
    assert.equal(subject.metadata.cause, 'RPC_NOT_ALLOWED');
  });

  it('refuses a downstream the caller is not given, naming the cause', () => {
    const err = denied(() => authorize('GetDownstreamToken', callWith(KEY, 'graph'), 'corp'));
    assert.equal(err.reason, 'CALLER_FORBIDDEN');
    assert.deepEqual(err.metadata, {
      cause: 'DOWNSTREAM_NOT_ALLOWED',
      caller: 'reporting',
      provider: 'corp',
    });
  });

  it('scopes a provider/downstream entry to that provider, a bare id to every provider the caller may use', () => {
    const SCOPED = 'scoped-key-0123456789abcd';
    const BARE = 'bare-key-0123456789abcdef';
    const two = load(
      `${provider(`      - id: orders
        audience: https://orders.example.com`)}
  - id: partner
    issuer: https://login.partner.example
    client_id: credbroker
    client_secret: s3cret-partner
    redirect_uris: [https://app.example.com/cb]
    downstreams:
      - id: orders
        audience: https://orders.partner.example
callers:
  - name: scoped
    api_key_sha256: ${hashApiKey(SCOPED)}
    allow: [GetDownstreamToken]
    downstreams: [corp/orders]
  - name: bare
    api_key_sha256: ${hashApiKey(BARE)}
    allow: [GetDownstreamToken]
    downstreams: [orders]
`,
    );
    const auth = createAuthorizer({ callers: two.callers, insecure: false, tls: true });
    const call = (key: string, prov: string) => {
      const metadata = new Metadata();
      metadata.add('authorization', `Bearer ${key}`);
      return {
        metadata,
        request: { userId: 'alice', provider: prov, downstream: 'orders' },
        getAuthContext: () => ({}),
      } as unknown as ServerUnaryCall<unknown, unknown>;
    };
    assert.equal(auth('GetDownstreamToken', call(SCOPED, 'corp'), 'corp').caller, 'scoped');
    const err = denied(() => auth('GetDownstreamToken', call(SCOPED, 'partner'), 'partner'));
    assert.equal(err.metadata.cause, 'DOWNSTREAM_NOT_ALLOWED');
    assert.equal(err.metadata.provider, 'partner');
    for (const prov of ['corp', 'partner']) {
      assert.equal(auth('GetDownstreamToken', call(BARE, prov), prov).caller, 'bare');
    }
  });

  it('checks provider/downstream entries against the providers the caller may use', () => {
    const problems = problemsOf(() =>
      load(
        `${provider(DOWNSTREAMS)}
callers:
  - name: r
    api_key_sha256: ${hashApiKey(KEY)}
    allow: [GetDownstreamToken]
    providers: [corp]
    downstreams: [corp/orders, corp/payroll, other/orders, Corp/orders, corp/orders/x]
`,
        {},
        { '/secrets/billing': 'b' },
      ),
    );
    assert.equal(problems.length, 4, problems.join('\n'));
    assert.ok(
      problems.some((p) => p.startsWith('callers[0].downstreams[1]: unknown downstream "corp/payroll"')),
    );
    assert.ok(
      problems.some((p) => p.startsWith('callers[0].downstreams[2]: unknown downstream "other/orders"')),
    );
    assert.ok(problems.some((p) => p.startsWith('callers[0].downstreams[3]: expected a downstream id')));
    assert.ok(problems.some((p) => p.startsWith('callers[0].downstreams[4]: expected a downstream id')));
  });

  it('allows every downstream to a caller without a downstreams list', () => {
    for (const downstream of ['orders', 'graph', 'billing']) {
      assert.equal(
        authorize('GetDownstreamToken', callWith(SUBJECT_KEY, downstream), 'corp').caller,
        'orders-service',
      );
    }
  });
});

describe('Token-exchange request parameters', () => {
  const config = load(provider(DOWNSTREAMS), {}, { '/secrets/billing': 'b' });
  const [orders, graph, billing] = config.providers[0]!.downstreams;

  it('builds the RFC 8693 form: subject token, its type, requested type, audience and scope', () => {
    const { grantType, parameters } = exchangeParameters(orders!, 'subject-token');
    assert.equal(grantType, TOKEN_EXCHANGE_GRANT);
    assert.deepEqual(Object.fromEntries(parameters), {
      subject_token: 'subject-token',
      subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      requested_token_type: 'urn:ietf:params:oauth:token-type:access_token',
      audience: 'https://orders.example.com',
      scope: 'orders.read',
    });
    assert.equal(
      exchangeParameters(billing!, 't').parameters.get('resource'),
      'https://billing.example.com/',
    );
  });

  it('builds the Entra on-behalf-of form: jwt-bearer assertion, requested_token_use and scope', () => {
    const { grantType, parameters } = exchangeParameters(graph!, 'subject-token');
    assert.equal(grantType, JWT_BEARER_GRANT);
    assert.deepEqual(Object.fromEntries(parameters), {
      assertion: 'subject-token',
      requested_token_use: 'on_behalf_of',
      scope: 'https://graph.microsoft.com/.default',
    });
  });
});

describe('Downstream metrics', () => {
  it('counts exchanges and served tokens by provider, downstream and outcome', async () => {
    const metrics = createMetrics();
    metrics.brokerMetrics.exchange('corp', 'orders', 'exchanged');
    metrics.brokerMetrics.exchange('corp', 'orders', 'rejected');
    metrics.brokerMetrics.downstreamServed('corp', 'orders', 'cached');
    const text = await metrics.registry.metrics();
    assert.match(
      text,
      new RegExp(`${METRIC_NAMES.exchanges}\\{provider="corp",downstream="orders",outcome="exchanged"\\} 1`),
    );
    assert.match(
      text,
      new RegExp(`${METRIC_NAMES.exchanges}\\{provider="corp",downstream="orders",outcome="rejected"\\} 1`),
    );
    assert.match(
      text,
      new RegExp(
        `${METRIC_NAMES.downstreamServed}\\{provider="corp",downstream="orders",source="cached"\\} 1`,
      ),
    );
  });
});

describe('Downstream clients at startup', () => {
  const registry = (downstream: string) =>
    createIdpRegistry(load(provider(downstream)), {
      logger: createLogger({ level: 'silent' }),
      readFile: (path) => {
        throw Object.assign(new Error(`missing ${path}`), { code: 'ENOENT' });
      },
    });

  it('names the downstream field when its private key cannot be read', async () => {
    await assert.rejects(
      registry(`      - id: billing
        audience: https://billing.example.com
        client_id: billing-client
        client_auth: private_key_jwt
        private_key_file: /secrets/billing.pem
`),
      (err: unknown) =>
        err instanceof IdpConfigError &&
        err.message.startsWith('providers.corp.downstreams.billing.private_key_file: cannot read') &&
        !err.message.includes('s3cret'),
    );
  });

  it('refuses a plain-http downstream token endpoint', async () => {
    await assert.rejects(
      registry(`      - id: orders
        audience: https://orders.example.com
        token_endpoint: http://sts.example.com/token
`),
      (err: unknown) =>
        err instanceof IdpConfigError &&
        err.message.startsWith('providers.corp.downstreams.orders.token_endpoint:'),
    );
  });

  it('lists the downstreams on the provider client', async () => {
    const idps = await registry(
      DOWNSTREAMS.replace(/ {8}client_secret_file: \/secrets\/billing\n/, '        client_secret: b\n'),
    );
    assert.deepEqual(idps.get('corp').downstreams, ['orders', 'graph', 'billing']);
  });
});
