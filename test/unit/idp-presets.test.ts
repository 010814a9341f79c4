import assert from 'node:assert/strict';
import { resolvePreset } from '../../src/idp/presets.js';
import { testConfig } from '../helpers/server.js';

function provider(fields: string) {
  const config = testConfig(`providers:
  - id: p
    client_id: c
    client_secret: s
    redirect_uris: [https://app.example.com/cb]
${fields}`);
  return config.providers[0]!;
}

describe('provider presets', () => {
  it('google: discovery at accounts.google.com, access_type=offline and prompt=consent only when storing', () => {
    const plan = resolvePreset(provider('    preset: google\n'));
    assert.deepEqual(plan.source, {
      kind: 'discovery',
      issuer: 'https://accounts.google.com',
      overrides: {},
    });
    assert.equal(plan.oidc, true);
    const on = plan.authorization(['openid', 'email', 'offline_access'], true, undefined);
    assert.deepEqual(on.params, { access_type: 'offline', prompt: 'consent' });
    assert.ok(!on.scopes.includes('offline_access'), 'Google rejects the offline_access scope');
    assert.deepEqual(plan.authorization(['openid'], false, undefined).params, {});
  });

  it('microsoft: the tenant issuer and offline_access when storing', () => {
    const plan = resolvePreset(provider('    preset: microsoft\n    tenant: contoso.onmicrosoft.com\n'));
    assert.deepEqual(plan.source, {
      kind: 'discovery',
      issuer: 'https://login.microsoftonline.com/contoso.onmicrosoft.com/v2.0',
      overrides: {},
    });
    assert.ok(plan.authorization(plan.scopes, true, undefined).scopes.includes('offline_access'));
    assert.ok(!plan.authorization(plan.scopes, false, undefined).scopes.includes('offline_access'));
  });

  it('github: explicit non-OIDC endpoints and identity from the user API', () => {
    const plan = resolvePreset(provider('    preset: github\n'));
    assert.equal(plan.oidc, false);
    assert.equal(plan.userApi, 'https://api.github.com/user');
    assert.equal(plan.source.kind, 'explicit');
    if (plan.source.kind === 'explicit') {
      assert.equal(plan.source.metadata.token_endpoint, 'https://github.com/login/oauth/access_token');
    }
  });

  it('generic OIDC: offline_access with prompt=consent only when the provider supports it', () => {
    const plan = resolvePreset(provider('    issuer: https://idp.example.com\n'));
    assert.equal(plan.oidc, true);
    const supported = plan.authorization(plan.scopes, true, ['openid', 'offline_access']);
    assert.ok(supported.scopes.includes('offline_access'));
    assert.equal(supported.params.prompt, 'consent');
    const unsupported = plan.authorization(plan.scopes, true, ['openid']);
    assert.ok(!unsupported.scopes.includes('offline_access'));
    assert.equal(unsupported.params.prompt, undefined);
  });

  it('generic plain OAuth 2.0: explicit endpoints without openid, no ID token expected', () => {
    const plan = resolvePreset(
      provider(
        '    authorization_endpoint: https://as.example.com/authorize\n    token_endpoint: https://as.example.com/token\n    scopes: [api]\n',
      ),
    );
    assert.equal(plan.oidc, false);
    assert.equal(plan.source.kind, 'explicit');
    if (plan.source.kind === 'explicit') assert.equal(plan.source.metadata.issuer, 'https://as.example.com');
  });

  it('refuses explicit OIDC endpoints without a jwks_uri to verify ID tokens', () => {
    assert.throws(
      () =>
        resolvePreset(
          provider(
            '    authorization_endpoint: https://as.example.com/authorize\n    token_endpoint: https://as.example.com/token\n    scopes: [openid]\n',
          ),
        ),
      /providers\.p\.jwks_uri/,
    );
  });
});
