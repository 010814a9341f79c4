import assert from 'node:assert/strict';
import { accessTokenExpiry, jwtExpiry, refreshTokenExpiry } from '../../src/idp/expiry.js';

const now = Date.UTC(2026, 0, 1);
const jwt = (payload: object) =>
  ['{"alg":"none"}', JSON.stringify(payload), ''].map((p) => Buffer.from(p).toString('base64url')).join('.') +
  'sig';

describe('access-token expiry', () => {
  it('uses expires_in when the IdP sends it (number or numeric string)', () => {
    assert.equal(accessTokenExpiry({ access_token: 'opaque', expires_in: 300 }, now, 60_000), now + 300_000);
    assert.equal(
      accessTokenExpiry({ access_token: 'opaque', expires_in: '120' }, now, 60_000),
      now + 120_000,
    );
  });

  it('falls back to the JWT exp of the access token', () => {
    const exp = Math.floor(now / 1000) + 900;
    assert.equal(accessTokenExpiry({ access_token: jwt({ exp }) }, now, 60_000), exp * 1000);
  });

  it('falls back to the provider default lifetime for an opaque token: never "never expires"', () => {
    assert.equal(accessTokenExpiry({ access_token: 'opaque' }, now, 300_000), now + 300_000);
    assert.equal(accessTokenExpiry({ access_token: jwt({ sub: 'x' }) }, now, 300_000), now + 300_000);
    assert.equal(accessTokenExpiry({ access_token: 'a.b.c' }, now, 300_000), now + 300_000);
  });

  it('ignores a malformed expires_in', () => {
    assert.equal(accessTokenExpiry({ access_token: 'opaque', expires_in: 'soon' }, now, 1000), now + 1000);
    assert.equal(accessTokenExpiry({ access_token: 'opaque', expires_in: -5 }, now, 1000), now + 1000);
  });

  it('reads exp only from a three-part JWS with a numeric exp', () => {
    assert.equal(jwtExpiry('not-a-jwt'), undefined);
    assert.equal(jwtExpiry(jwt({ exp: 'tomorrow' })), undefined);
    assert.equal(jwtExpiry(jwt({ exp: 42 })), 42);
  });
});

describe('refresh-token expiry', () => {
  it('reads refresh_expires_in or refresh_token_expires_in', () => {
    assert.equal(refreshTokenExpiry({ refresh_expires_in: 3600 }, now), now + 3_600_000);
    assert.equal(refreshTokenExpiry({ refresh_token_expires_in: 60 }, now), now + 60_000);
  });

  it('is unknown when absent or 0 (Keycloak offline tokens)', () => {
    assert.equal(refreshTokenExpiry({}, now), undefined);
    assert.equal(refreshTokenExpiry({ refresh_expires_in: 0 }, now), undefined);
  });
});
