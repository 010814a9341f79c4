import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { CallContext } from '../../src/broker/api.js';
import { createFakeClock, type FakeClock } from '../helpers/fake-clock.js';
import type { AuditEntry } from '../../src/broker/audit.js';
import { BrokerError, reauthRequired, type SubjectRef } from '../../src/core/errors.js';
import { createTokenService, type TokenService } from '../../src/broker/get-token.js';
import { mergeRefreshed, recordTtlMs } from '../../src/broker/merge.js';
import { noopBrokerMetrics, type BrokerMetrics, type StoreOperation } from '../../src/broker/metrics.js';
import { IdpError, type IdpClient, type IdpRegistry, type TokenSet } from '../../src/core/idp-client.js';
import { createLogger } from '../../src/logger.js';
import { createKeyRing } from '../../src/store/key-ring.js';
import { createMemoryStore } from '../../src/store/memory-store.js';
import type { NewTokenRecord, TokenRecord, TokenStore } from '../../src/core/token-store.js';
import { brokerError, callContext, DAY, idpBasics, MIN } from '../helpers/domain-fixtures.js';
import { captureLogs } from '../helpers/log-capture.js';

const alice: SubjectRef = { provider: 'corp', userId: 'alice@example.com' };

interface FakeIdp {
  readonly refreshed: string[];
  /** Replace to make the next refreshes fail, hang or return something else. */
  onRefresh: (refreshToken: string) => Promise<TokenSet>;
  readonly client: IdpClient;
}

/** A plain IdpClient whose refresh issues numbered tokens, or does what a test says. */
function fakeIdp(clock: FakeClock, skewMs = MIN): FakeIdp {
  let issued = 0;
  const refreshed: string[] = [];
  const fake: FakeIdp = {
    refreshed,
    onRefresh: (_refreshToken: string): Promise<TokenSet> => {
      issued += 1;
      return Promise.resolve({
        accessToken: `at-new-${issued}`,
        refreshToken: `rt-new-${issued}`,
        tokenType: 'Bearer',
        expiresAt: clock.now() + 60 * MIN,
        refreshExpiresAt: undefined,
        scopes: ['openid', 'api'],
        idToken: undefined,
      });
    },
    client: {
      ...idpBasics,
      skewMs,
      refresh: (refreshToken: string) => {
        refreshed.push(refreshToken);
        return fake.onRefresh(refreshToken);
      },
      revoke: () => Promise.resolve('REVOKED' as const),
    },
  };
  return fake;
}

function registry(idp: IdpClient): IdpRegistry {
  return { ids: [idp.id], get: () => idp };
}

function loginRecord(clock: FakeClock, overrides: Partial<NewTokenRecord> = {}): NewTokenRecord {
  return {
    accessToken: 'at-login',
    refreshToken: 'rt-login',
    tokenType: 'Bearer',
    expiresAt: clock.now() + 60 * MIN,
    refreshExpiresAt: undefined,
    scopes: ['openid', 'profile'],
    idToken: 'id-login',
    obtainedVia: 'login',
    updatedAt: clock.now(),
    subject: 'sub-alice',
    ...overrides,
  };
}

const ctx = (deadline = Infinity): CallContext => callContext(deadline);

/** Counts getToken calls on a real store. */
function counting(store: TokenStore): TokenStore & { reads: number } {
  const wrapped = Object.create(store) as TokenStore & { reads: number };
  wrapped.reads = 0;
  wrapped.getToken = (ref) => {
    wrapped.reads += 1;
    return store.getToken(ref);
  };
  // A peek that answers is a read; one that does not is followed by getToken, which counts.
  wrapped.peekToken = (ref) => {
    const rec = store.peekToken?.(ref);
    if (rec !== undefined) wrapped.reads += 1;
    return rec;
  };
  return wrapped;
}

const rejection = brokerError;

describe('GetValidSubjectToken', () => {
  let clock: FakeClock;
  let store: TokenStore & { reads: number };
  let idp: FakeIdp;
  let service: TokenService;
  // As a promise whichever way it answers (the answer without one is tested on its own below).
  const get = async (minValidForMs = MIN, c = ctx()) =>
    service.getValidSubjectToken({ ...alice, minValidForMs }, c);

  beforeEach(() => {
    clock = createFakeClock();
    store = counting(
      createMemoryStore({ keyRing: createKeyRing([{ id: 'k1', key: randomBytes(32) }]), clock }),
    );
    idp = fakeIdp(clock);
    service = createTokenService({
      store,
      idps: registry(idp.client),
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
    });
  });

  it('serves a fresh token from the store with one read and no IdP call', async () => {
    await store.putToken(alice, loginRecord(clock), DAY);
    store.reads = 0;
    const token = await get();
    assert.equal(token.accessToken, 'at-login');
    assert.equal(token.source, 'STORED');
    assert.equal(token.degraded, false);
    assert.deepEqual(token.scopes, ['openid', 'profile']);
    assert.equal(store.reads, 1);
    assert.deepEqual(idp.refreshed, []);
  });

  it('answers a stored token valid for the margin without a promise, and anything else with one', async () => {
    await store.putToken(alice, loginRecord(clock), DAY);
    store.reads = 0;
    const served = service.getValidSubjectToken({ ...alice, minValidForMs: MIN }, ctx());
    assert.ok(!(served instanceof Promise), 'the hot path answers synchronously');
    assert.equal(served.accessToken, 'at-login');
    assert.equal(served.source, 'STORED');
    assert.ok(served.served !== undefined, 'marked as served from a stored record');
    assert.equal(store.reads, 1);
    // Inside the margin: the refresh needs a promise, and the peeked record is not read again.
    store.reads = 0;
    const refreshing = service.getValidSubjectToken({ ...alice, minValidForMs: 90 * MIN }, ctx());
    assert.ok(refreshing instanceof Promise);
    assert.equal((await refreshing).source, 'REFRESHED');
    assert.equal(store.reads, 2, 'the peek, then the re-read under the lock');
    // Errors are rejections, never synchronous throws: nothing stored; a record of a provider
    // the registry does not know (its lookup throws).
    const absent = service.getValidSubjectToken({ ...alice, userId: 'bob', minValidForMs: MIN }, ctx());
    assert.ok(absent instanceof Promise);
    assert.equal((await rejection(absent)).metadata.cause, 'NO_TOKEN');
    const stray: SubjectRef = { provider: 'removed', userId: 'alice@example.com' };
    await store.putToken(stray, loginRecord(clock), DAY);
    service = createTokenService({
      store,
      idps: {
        ids: ['corp'],
        get: (id) => {
          if (id !== 'corp') throw new Error(`unknown provider ${id}`);
          return idp.client;
        },
      },
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
    });
    const unknown = service.getValidSubjectToken({ ...stray, minValidForMs: MIN }, ctx());
    assert.ok(unknown instanceof Promise);
    await assert.rejects(unknown, /unknown provider removed/);
  });

  it('refreshes a token inside the skew window and persists the rotated refresh token', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() + 30_000 }), DAY);
    const token = await get(0);
    assert.equal(token.source, 'REFRESHED');
    assert.equal(token.accessToken, 'at-new-1');
    assert.deepEqual(idp.refreshed, ['rt-login']);
    const stored = await store.getToken(alice);
    assert.equal(stored?.refreshToken, 'rt-new-1');
    assert.equal(stored?.accessToken, 'at-new-1');
    assert.equal(stored?.obtainedVia, 'refresh');
    assert.equal(stored?.generation, 2);
    assert.equal(stored?.subject, 'sub-alice');
    // The next call is served from the store, with the rotated token used for nothing else.
    assert.equal((await get()).source, 'STORED');
    assert.equal(idp.refreshed.length, 1);
  });

  it('refreshes an expired token', async () => {
    await store.putToken(alice, loginRecord(clock), DAY);
    await clock.advance(61 * MIN);
    const token = await get();
    assert.equal(token.source, 'REFRESHED');
    assert.equal(token.accessToken, 'at-new-1');
    assert.ok(token.expiresAt.getTime() > clock.now() + 59 * MIN);
  });

  it('refreshes when min_valid_for asks for more than is left, and not when it asks for less', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() + 10 * MIN }), DAY);
    assert.equal((await get(5 * MIN)).source, 'STORED');
    const token = await get(15 * MIN);
    assert.equal(token.source, 'REFRESHED');
    assert.equal(idp.refreshed.length, 1);
  });

  it('uses the provider skew as a floor under min_valid_for', async () => {
    const skewed = fakeIdp(clock, 5 * MIN);
    service = createTokenService({
      store,
      idps: registry(skewed.client),
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
    });
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() + 4 * MIN }), DAY);
    const token = await get(0);
    assert.equal(token.source, 'REFRESHED');
    assert.deepEqual(skewed.refreshed, ['rt-login']);
  });

  it('answers REAUTH_REQUIRED / NO_TOKEN when nothing is stored', async () => {
    const err = await rejection(get());
    assert.equal(err.reason, 'REAUTH_REQUIRED');
    assert.deepEqual(err.metadata, { cause: 'NO_TOKEN', provider: 'corp', userId: 'alice@example.com' });
  });

  it('answers STORE_DISABLED without reading the store when storage is off', async () => {
    service = createTokenService({
      store,
      idps: registry(idp.client),
      storageEnabled: false,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
    });
    const err = await rejection(get());
    assert.equal(err.metadata.cause, 'STORE_DISABLED');
    assert.equal(err.metadata.userId, 'alice@example.com');
    assert.equal(store.reads, 0);
  });

  it('passes UNDECRYPTABLE from the store through unchanged', async () => {
    store.getToken = (ref) => Promise.reject(reauthRequired('UNDECRYPTABLE', ref));
    const err = await rejection(get());
    assert.equal(err.reason, 'REAUTH_REQUIRED');
    assert.deepEqual(err.metadata, { cause: 'UNDECRYPTABLE', provider: 'corp', userId: 'alice@example.com' });
  });

  it('answers NO_REFRESH_TOKEN for an expiring token without a refresh token', async () => {
    await store.putToken(
      alice,
      loginRecord(clock, { refreshToken: undefined, expiresAt: clock.now() + 30_000 }),
      30_000,
    );
    const err = await rejection(get());
    assert.deepEqual(err.metadata, {
      cause: 'NO_REFRESH_TOKEN',
      provider: 'corp',
      userId: 'alice@example.com',
    });
    assert.deepEqual(idp.refreshed, []);
  });

  it('deletes the record and answers REFRESH_REJECTED when the IdP rejects the grant', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() + 10_000 }), DAY);
    idp.onRefresh = () =>
      Promise.reject(new IdpError('rejected', 'refresh rejected', { oauthError: 'invalid_grant' }));
    const err = await rejection(get());
    assert.deepEqual(err.metadata, {
      cause: 'REFRESH_REJECTED',
      provider: 'corp',
      userId: 'alice@example.com',
    });
    assert.equal(await store.getToken(alice), undefined);
    assert.equal((await rejection(get())).metadata.cause, 'NO_TOKEN');
  });

  it('uses a record written meanwhile instead of deleting it when the IdP rejects the old grant', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() + 10_000 }), DAY);
    idp.onRefresh = async () => {
      // The user logs in again while the refresh of the old grant is in flight.
      await store.putToken(
        alice,
        loginRecord(clock, { accessToken: 'at-relogin', refreshToken: 'rt-relogin' }),
        3600_000,
      );
      throw new IdpError('rejected', 'refresh rejected', { oauthError: 'invalid_grant' });
    };
    const token = await get();
    assert.equal(token.accessToken, 'at-relogin');
    assert.equal(token.source, 'REFRESHED');
    assert.equal((await store.getToken(alice))?.refreshToken, 'rt-relogin');
  });

  it('serves the still-valid token, marked degraded, when the IdP is unavailable', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() + 20_000 }), DAY);
    idp.onRefresh = () => Promise.reject(new IdpError('unavailable', 'timeout'));
    const token = await get();
    assert.equal(token.accessToken, 'at-login');
    assert.equal(token.degraded, true);
    assert.equal(token.source, 'STORED');
    assert.equal((await store.getToken(alice))?.refreshToken, 'rt-login');
  });

  it('answers IDP_UNAVAILABLE with the IdP Retry-After, keeping the record, for an expired token', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() - 1 }), DAY);
    idp.onRefresh = () => Promise.reject(new IdpError('unavailable', 'HTTP 429', { retryAfterMs: 7000 }));
    const err = await rejection(get());
    assert.equal(err.reason, 'IDP_UNAVAILABLE');
    assert.equal(err.retryAfterMs, 7000);
    assert.deepEqual(err.metadata, { provider: 'corp', userId: 'alice@example.com' });
    const kept = await store.getToken(alice);
    assert.equal(kept?.refreshToken, 'rt-login');
    assert.equal(kept?.generation, 1);

    idp.onRefresh = () => Promise.reject(new IdpError('unavailable', 'connection refused'));
    assert.equal((await rejection(get())).retryAfterMs, 1000);
  });

  it('treats an unexpected refresh failure as transient and keeps the record', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() - 1 }), DAY);
    idp.onRefresh = () => Promise.reject(new TypeError('bug'));
    assert.equal((await rejection(get())).reason, 'IDP_UNAVAILABLE');
    assert.ok(await store.getToken(alice));
  });

  it('keeps the record when the refresh answer fails verification instead of deleting the grant', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() + 20_000 }), DAY);
    idp.onRefresh = () =>
      Promise.reject(new IdpError('rejected', 'ID token failed verification', { invalidResponse: true }));
    const token = await get();
    assert.equal(token.degraded, true);
    assert.equal((await store.getToken(alice))?.refreshToken, 'rt-login');
  });

  it('refreshes again once the IdP is back', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() - 1 }), DAY);
    const healthy = idp.onRefresh;
    idp.onRefresh = () => Promise.reject(new IdpError('unavailable', 'down'));
    await rejection(get());
    idp.onRefresh = healthy;
    const token = await get();
    assert.equal(token.source, 'REFRESHED');
    assert.deepEqual(idp.refreshed, ['rt-login', 'rt-login']);
  });

  it('keeps the old refresh token and scopes when the IdP returns none', async () => {
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() - 1 }), DAY);
    idp.onRefresh = () =>
      Promise.resolve({
        accessToken: 'at-2',
        refreshToken: undefined,
        tokenType: undefined,
        expiresAt: clock.now() + 30 * MIN,
        refreshExpiresAt: undefined,
        scopes: undefined,
        idToken: undefined,
      });
    const token = await get();
    assert.equal(token.accessToken, 'at-2');
    assert.equal(token.tokenType, 'Bearer');
    assert.deepEqual(token.scopes, ['openid', 'profile']);
    const stored = await store.getToken(alice);
    assert.equal(stored?.refreshToken, 'rt-login');
    assert.equal(stored?.idToken, 'id-login');
  });

  it('serves the refreshed token when the store fails to write it, and logs and counts the failure', async () => {
    const logs = captureLogs();
    const storeErrors: StoreOperation[] = [];
    const metrics: BrokerMetrics = { ...noopBrokerMetrics, storeError: (op) => storeErrors.push(op) };
    service = createTokenService({
      store,
      idps: registry(idp.client),
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: logs.logger,
      metrics,
    });
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() - 1 }), DAY);
    store.putTokenFenced = () =>
      Promise.reject(new BrokerError('STORE_UNAVAILABLE', 'the token store is unavailable'));
    const token = await get();
    assert.equal(token.accessToken, 'at-new-1');
    assert.equal(token.source, 'REFRESHED');
    assert.deepEqual(storeErrors, ['put_fenced']);
    assert.match(logs.text(), /could not be stored/);
    assert.doesNotMatch(logs.text(), /at-new-1|rt-new-1|rt-login|at-login/);
  });

  it('answers STORE_UNAVAILABLE when the store cannot be read, and counts it', async () => {
    const storeErrors: StoreOperation[] = [];
    service = createTokenService({
      store,
      idps: registry(idp.client),
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
      metrics: { ...noopBrokerMetrics, storeError: (op) => storeErrors.push(op) },
    });
    store.getToken = () =>
      Promise.reject(new BrokerError('STORE_UNAVAILABLE', 'the token store is unreachable'));
    assert.equal((await rejection(get())).reason, 'STORE_UNAVAILABLE');
    assert.deepEqual(storeErrors, ['get']);
  });

  it('counts each refresh by outcome and audits it without token material', async () => {
    const outcomes: string[] = [];
    const entries: AuditEntry[] = [];
    service = createTokenService({
      store,
      idps: registry(idp.client),
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
      metrics: {
        ...noopBrokerMetrics,
        refresh: (provider, outcome) => outcomes.push(`${provider}:${outcome}`),
      },
      audit: { record: (entry) => entries.push(entry) },
    });
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() - 1 }), DAY);
    await get(MIN, { ...ctx(), requestId: 'req-42', caller: 'orders' });
    idp.onRefresh = () =>
      Promise.reject(new IdpError('rejected', 'rejected', { oauthError: 'invalid_grant' }));
    await clock.advance(61 * MIN);
    await rejection(get());
    assert.deepEqual(outcomes, ['corp:refreshed', 'corp:rejected']);
    assert.deepEqual(entries[0], {
      event: 'refresh',
      outcome: 'ok',
      caller: 'orders',
      rpc: 'GetValidSubjectToken',
      userId: 'alice@example.com',
      provider: 'corp',
      cause: undefined,
      requestId: 'req-42',
    });
    assert.equal(entries[1]?.outcome, 'rejected');
    assert.equal(entries[1]?.cause, 'invalid_grant');
    assert.doesNotMatch(JSON.stringify(entries), /at-|rt-|id-login/);
  });

  it('never writes a token into a log line, whatever the outcome', async () => {
    const logs = captureLogs();
    service = createTokenService({
      store,
      idps: registry(idp.client),
      storageEnabled: true,
      lockLeaseMs: 1000,
      clock,
      logger: logs.logger,
    });
    await store.putToken(alice, loginRecord(clock, { expiresAt: clock.now() + 10_000 }), DAY);
    idp.onRefresh = () => Promise.reject(new IdpError('unavailable', 'down'));
    await get();
    idp.onRefresh = () =>
      Promise.reject(new IdpError('rejected', 'rejected', { oauthError: 'invalid_grant' }));
    await rejection(get());
    assert.ok(logs.lines.length >= 2);
    assert.doesNotMatch(logs.text(), /at-login|rt-login|id-login/);
    assert.doesNotMatch(logs.text(), /alice@example\.com/);
  });
});

describe('merge rules', () => {
  const previous: TokenRecord = {
    accessToken: 'a',
    refreshToken: 'r',
    tokenType: 'DPoP',
    expiresAt: 1,
    refreshExpiresAt: 5_000,
    scopes: ['x'],
    idToken: 'i',
    obtainedVia: 'login',
    updatedAt: 0,
    generation: 3,
    subject: 's',
  };
  const tokens: TokenSet = {
    accessToken: 'a2',
    refreshToken: undefined,
    tokenType: undefined,
    expiresAt: 9_000,
    refreshExpiresAt: undefined,
    scopes: undefined,
    idToken: undefined,
  };

  it('keeps the refresh token, its expiry, scopes, token type and ID token the IdP did not return', () => {
    const merged = mergeRefreshed(previous, tokens, 100);
    assert.deepEqual(merged, {
      accessToken: 'a2',
      refreshToken: 'r',
      tokenType: 'DPoP',
      expiresAt: 9_000,
      refreshExpiresAt: 5_000,
      scopes: ['x'],
      idToken: 'i',
      obtainedVia: 'refresh',
      updatedAt: 100,
      subject: 's',
    });
  });

  it('takes a rotated refresh token without the old expiry, and falls back to Bearer', () => {
    const merged = mergeRefreshed(
      { ...previous, tokenType: '' },
      { ...tokens, refreshToken: 'r2', scopes: ['y'] },
      100,
    );
    assert.equal(merged.refreshToken, 'r2');
    assert.equal(merged.refreshExpiresAt, undefined);
    assert.deepEqual(merged.scopes, ['y']);
    assert.equal(merged.tokenType, 'Bearer');
  });

  it('keeps a record until its refresh token expires, else the maximum, else the access expiry', () => {
    assert.equal(
      recordTtlMs({ refreshToken: 'r', refreshExpiresAt: 5_000, expiresAt: 2_000 }, 1_000, 99_000),
      4_000,
    );
    assert.equal(
      recordTtlMs({ refreshToken: 'r', refreshExpiresAt: undefined, expiresAt: 2_000 }, 1_000, 99_000),
      99_000,
    );
    assert.equal(
      recordTtlMs({ refreshToken: undefined, refreshExpiresAt: undefined, expiresAt: 2_000 }, 1_000, 99_000),
      1_000,
    );
    assert.equal(
      recordTtlMs({ refreshToken: undefined, refreshExpiresAt: undefined, expiresAt: 500 }, 1_000, 99_000),
      1,
    );
  });
});
