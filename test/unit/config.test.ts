import assert from 'node:assert/strict';
import { maskConfig } from '../../src/config/load.js';
import { loadYaml as load, problemsOf } from '../helpers/config.js';

const provider = `
providers:
  - id: corp
    issuer: https://login.example.com
    client_id: credbroker
    client_secret_file: /secrets/corp
    redirect_uris: [https://app.example.com/cb]
`;

describe('loadConfig', () => {
  it('applies the documented defaults to an empty file', () => {
    const config = load('');
    assert.equal(config.listen, '0.0.0.0:50051');
    assert.equal(config.health_listen, '0.0.0.0:50052');
    assert.equal(config.metrics_listen, '0.0.0.0:9464');
    assert.equal(config.store.subject_tokens, false);
    assert.equal(config.refresh.skew, 60_000);
    assert.equal(config.refresh.lock_lease, 5_000);
    assert.equal(config.store.max_record_ttl, 30 * 86_400_000);
    assert.equal(config.store.login_state_ttl, 600_000);
    assert.equal(config.max_receive_message_bytes, 65_536);
    assert.equal(config.reflection, true);
    assert.equal(config.insecure, false);
  });

  it('reads *_file secrets and is deeply frozen', () => {
    const config = load(provider, {}, { '/secrets/corp': 's3cr3t\n' });
    assert.equal(config.providers[0]?.client_secret, 's3cr3t');
    assert.ok(Object.isFrozen(config));
    assert.ok(Object.isFrozen(config.providers[0]));
    assert.throws(() => {
      (config as { listen: string }).listen = 'x';
    }, TypeError);
  });

  it('lets CREDBROKER_* variables override the file', () => {
    const config = load(provider, {
      CREDBROKER_LISTEN: '127.0.0.1:6000',
      CREDBROKER_STORE_SUBJECT_TOKENS: 'true',
      CREDBROKER_REFRESH_SKEW: '90s',
      CREDBROKER_REDIS_CLUSTER: 'redis://a:1, redis://b:2',
      CREDBROKER_PROVIDER_CORP_CLIENT_SECRET: 'from-env',
    });
    assert.equal(config.listen, '127.0.0.1:6000');
    assert.equal(config.store.subject_tokens, true);
    assert.equal(config.refresh.skew, 90_000);
    assert.deepEqual(config.store.redis_cluster, ['redis://a:1', 'redis://b:2']);
    assert.equal(config.providers[0]?.client_secret, 'from-env');
    assert.ok(config.source.env.includes('CREDBROKER_LISTEN'));
  });

  it('names the field of a bad type', () => {
    const problems = problemsOf(() => load('store:\n  subject_tokens: "yes"\n'));
    assert.ok(
      problems.some((p) => p.startsWith('store.subject_tokens:')),
      problems.join('\n'),
    );
  });

  it('names an unknown provider field', () => {
    const problems = problemsOf(() => load(`${provider}    colour: blue\n`, {}, { '/secrets/corp': 'x' }));
    assert.ok(
      problems.some((p) => p.startsWith('providers[0]') && p.includes('colour')),
      problems.join('\n'),
    );
  });

  it('names a bad URL', () => {
    const problems = problemsOf(() =>
      load(provider.replace('https://login.example.com', 'not a url'), {}, { '/secrets/corp': 'x' }),
    );
    assert.ok(
      problems.some((p) => p.startsWith('providers[0].issuer:')),
      problems.join('\n'),
    );
  });

  it('names a bad duration, a bad address and an unknown variable together', () => {
    const problems = problemsOf(() =>
      load('refresh:\n  skew: soon\nlisten: nowhere\n', { CREDBROKER_LISTN: '1' }),
    );
    assert.ok(
      problems.some((p) => p.startsWith('refresh.skew:') && p.includes('duration')),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((p) => p.startsWith('listen:')),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((p) => p.startsWith('CREDBROKER_LISTN:')),
      problems.join('\n'),
    );
  });

  it('requires a client secret for client_secret_basic and reports unreadable secret files', () => {
    const noSecret = provider.replace('    client_secret_file: /secrets/corp\n', '');
    assert.ok(problemsOf(() => load(noSecret)).some((p) => p.startsWith('providers[0].client_secret:')));
    assert.ok(problemsOf(() => load(provider)).some((p) => p.startsWith('providers[0].client_secret_file:')));
  });

  it('rejects duplicate provider ids and callers naming unknown providers', () => {
    const yaml = `${provider}${provider.replace('providers:\n', '')}callers:
  - name: orders
    api_key_sha256: ${'a'.repeat(64)}
    allow: [GetValidSubjectToken]
    providers: [nope]
`;
    const problems = problemsOf(() => load(yaml, {}, { '/secrets/corp': 'x' }));
    assert.ok(
      problems.some((p) => p.startsWith('providers[1].id:')),
      problems.join('\n'),
    );
    assert.ok(
      problems.some((p) => p.startsWith('callers[0].providers[0]:')),
      problems.join('\n'),
    );
  });

  it('rejects a default access-token lifetime inside the refresh skew', () => {
    const files = { '/secrets/corp': 'x' };
    const short = `${provider}    default_access_token_lifetime: 60s\n`;
    assert.ok(
      problemsOf(() => load(short, {}, files)).some((p) =>
        p.startsWith(
          'providers[0].default_access_token_lifetime: must be longer than the refresh skew (60s)',
        ),
      ),
    );
    assert.equal(
      load(`${short}    skew: 30s\n`, {}, files).providers[0]!.default_access_token_lifetime,
      60_000,
    );
  });

  it('masks passwords written into Redis URLs when printing', () => {
    const text = [
      load('', { CREDBROKER_REDIS_URL: 'redis://:hunter2@redis:6379/0' }),
      load('', { CREDBROKER_REDIS_CLUSTER: 'rediss://broker:s3cr%40t@a:7000,redis://b:7001' }),
    ]
      .map((config) => JSON.stringify(maskConfig(config)))
      .join('\n');
    assert.ok(!text.includes('hunter2'));
    assert.ok(!text.includes('s3cr'));
    assert.ok(text.includes('redis://:***@redis:6379/0'));
    assert.ok(text.includes('rediss://broker:***@a:7000'));
    assert.ok(text.includes('redis://b:7001'));
  });

  it('masks secrets when printing', () => {
    const config = load(provider, { CREDBROKER_KEYS: 'k1:AAAA' }, { '/secrets/corp': 's3cr3t' });
    const text = JSON.stringify(maskConfig(config));
    assert.ok(!text.includes('s3cr3t'));
    assert.ok(!text.includes('k1:AAAA'));
    assert.ok(text.includes('"client_secret":"***"'));
  });
});
