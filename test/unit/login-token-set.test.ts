import assert from 'node:assert/strict';
import { recordTtlMs } from '../../src/broker/merge.js';
import { loginRecord } from '../../src/broker/token-set.js';
import type { TokenSet } from '../../src/core/idp-client.js';
import type { TokenRecord } from '../../src/core/token-store.js';

const now = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;

const tokens = (overrides: Partial<TokenSet> = {}): TokenSet => ({
  accessToken: 'at-new',
  refreshToken: undefined,
  tokenType: undefined,
  expiresAt: now + HOUR,
  refreshExpiresAt: undefined,
  scopes: undefined,
  idToken: 'id-new',
  ...overrides,
});

const previous = (overrides: Partial<TokenRecord> = {}): TokenRecord => ({
  accessToken: 'at-old',
  refreshToken: 'rt-old',
  tokenType: 'Bearer',
  expiresAt: now - HOUR,
  refreshExpiresAt: now + 10 * HOUR,
  scopes: ['openid'],
  idToken: 'id-old',
  obtainedVia: 'refresh',
  updatedAt: now - 2 * HOUR,
  generation: 7,
  subject: 'sub-1',
  ...overrides,
});

describe('the record a login writes', () => {
  it('takes everything from the response, Bearer and the requested scopes as defaults', () => {
    const record = loginRecord({
      tokens: tokens({ refreshToken: 'rt-new', refreshExpiresAt: now + 5 * HOUR }),
      subject: 'sub-1',
      requestedScopes: ['openid', 'email'],
      previous: previous(),
      now,
    });
    assert.equal(record.refreshToken, 'rt-new');
    assert.equal(record.refreshExpiresAt, now + 5 * HOUR);
    assert.equal(record.tokenType, 'Bearer');
    assert.deepEqual(record.scopes, ['openid', 'email']);
    assert.equal(record.obtainedVia, 'login');
    assert.equal(record.updatedAt, now);
  });

  it('keeps the previous refresh token and its expiry for the same subject when none is returned', () => {
    const record = loginRecord({
      tokens: tokens(),
      subject: 'sub-1',
      requestedScopes: [],
      previous: previous(),
      now,
    });
    assert.equal(record.refreshToken, 'rt-old');
    assert.equal(record.refreshExpiresAt, now + 10 * HOUR);
    assert.equal(record.accessToken, 'at-new');
  });

  it('does not keep it for another subject, an unknown subject, or when it has expired', () => {
    const cases = [
      { subject: 'sub-2', prev: previous() },
      { subject: undefined, prev: previous({ subject: undefined }) },
      { subject: 'sub-1', prev: previous({ refreshExpiresAt: now - 1 }) },
    ];
    for (const c of cases) {
      const record = loginRecord({
        tokens: tokens(),
        subject: c.subject,
        requestedScopes: [],
        previous: c.prev,
        now,
      });
      assert.equal(record.refreshToken, undefined, JSON.stringify(c.subject));
    }
  });
});

describe('the lifetime of a login record', () => {
  it('is the refresh-token expiry when known, else the configured maximum', () => {
    assert.equal(
      recordTtlMs(
        { refreshToken: 'rt', refreshExpiresAt: now + 5 * HOUR, expiresAt: now + HOUR },
        now,
        720 * HOUR,
      ),
      5 * HOUR,
    );
    assert.equal(
      recordTtlMs(
        { refreshToken: 'rt', refreshExpiresAt: undefined, expiresAt: now + HOUR },
        now,
        720 * HOUR,
      ),
      720 * HOUR,
    );
  });

  it('is the access-token expiry without a refresh token, and never below 1 ms', () => {
    assert.equal(
      recordTtlMs({ refreshToken: undefined, refreshExpiresAt: undefined, expiresAt: now + HOUR }, now, 1),
      HOUR,
    );
    assert.equal(
      recordTtlMs({ refreshToken: undefined, refreshExpiresAt: undefined, expiresAt: now - HOUR }, now, 1),
      1,
    );
  });
});
