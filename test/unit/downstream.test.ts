/**
 * GetDownstreamToken in the domain: the memory store, a fake clock and a fake IdP that counts
 * exchanges. Storms, caching, revoke races and error mapping; the real IdP and Redis are in
 * test/integration/downstream.test.ts.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { CallContext } from '../../src/broker/api.js';
import { createDownstreamService, type DownstreamService } from '../../src/broker/downstream.js';
import { createTokenService, type TokenService } from '../../src/broker/get-token.js';
import { noopBrokerMetrics, type ExchangeOutcome } from '../../src/broker/metrics.js';
import type { AuditEntry } from '../../src/broker/audit.js';
import type { SubjectRef } from '../../src/core/errors.js';
import { IdpError, type ExchangedToken, type IdpClient, type TokenSet } from '../../src/core/idp-client.js';
import type { NewTokenRecord, TokenStore } from '../../src/core/token-store.js';
import { createLogger } from '../../src/logger.js';
import { createKeyRing } from '../../src/store/key-ring.js';
import { createMemoryBackend, createMemoryStore } from '../../src/store/memory-store.js';
import { tokenKey } from '../../src/store/keys.js';
import { openRecord, sealRecord } from '../../src/store/record-codec.js';
import { BrokerError } from '../../src/core/errors.js';
import { brokerError, callContext, DAY, idpBasics, MIN } from '../helpers/domain-fixtures.js';
import { createFakeClock, type FakeClock } from '../helpers/fake-clock.js';

const alice: SubjectRef = { provider: 'corp', userId: 'alice' };

interface FakeIdp {
  /** Every exchange: `downstream subjectToken`. */
  readonly exchanged: string[];
  /** Every revocation: `token hint`. */
  readonly revoked: string[];
  readonly refreshed: string[];
  delayMs: number;
  refreshDelayMs: number;
  /** Lifetime of exchanged tokens, ms. */
  ttlMs: number;
  fail: IdpError | undefined;
  /** Runs while an exchange is in flight (after the delay), before it returns. */
  during: (() => Promise<void>) | undefined;
  readonly client: IdpClient;
}

function fakeIdp(clock: FakeClock): FakeIdp {
  let issued = 0;
  let refreshedCount = 0;
  const fake: FakeIdp = {
    exchanged: [],
    revoked: [],
    refreshed: [],
    delayMs: 0,
    refreshDelayMs: 0,
    ttlMs: 60 * MIN,
    fail: undefined,
    during: undefined,
    client: {
      ...idpBasics,
      skewMs: MIN,
      downstreams: ['orders', 'billing'],
      refresh: async (refreshToken: string): Promise<TokenSet> => {
        fake.refreshed.push(refreshToken);
        await clock.sleep(fake.refreshDelayMs);
        refreshedCount += 1;
        return {
          accessToken: `subject-${refreshedCount}`,
          refreshToken: `rt-${refreshedCount}`,
          tokenType: 'Bearer',
          expiresAt: clock.now() + 60 * MIN,
          refreshExpiresAt: undefined,
          scopes: undefined,
          idToken: undefined,
        };
      },
      exchange: async (downstream: string, subjectToken: string): Promise<ExchangedToken> => {
        fake.exchanged.push(`${downstream} ${subjectToken}`);
        await clock.sleep(fake.delayMs);
        if (fake.during) await fake.during();
        if (fake.fail) throw fake.fail;
        issued += 1;
        return {
          accessToken: `${downstream}-${issued}`,
          tokenType: 'Bearer',
          expiresAt: clock.now() + fake.ttlMs,
          scopes: ['orders.read'],
          issuedTokenType: 'urn:ietf:params:oauth:token-type:access_token',
        };
      },
      revoke: (token: string, hint: string) => {
        fake.revoked.push(`${token} ${hint}`);
        return Promise.resolve('REVOKED' as const);
      },
    },
  };
  return fake;
}

function subjectRecord(clock: FakeClock, expiresInMs = 60 * MIN): NewTokenRecord {
  return {
    accessToken: 'subject-0',
    refreshToken: 'rt-0',
    tokenType: 'Bearer',
    expiresAt: clock.now() + expiresInMs,
    refreshExpiresAt: undefined,
    scopes: ['openid'],
    idToken: undefined,
    obtainedVia: 'login',
    updatedAt: clock.now(),
    subject: 'alice',
  };
}

describe('GetDownstreamToken (domain)', () => {
  let clock: FakeClock;
  let store: TokenStore;
  let idp: FakeIdp;
  let outcomes: ExchangeOutcome[];
  let audit: AuditEntry[];

  /** One "replica": its own token service and downstream service over the shared store. */
  function replica(lockLeaseMs = 1000): DownstreamService & { tokens: TokenService } {
    const common = {
      store,
      idps: { ids: ['corp'], get: () => idp.client },
      storageEnabled: true,
      lockLeaseMs,
      clock,
      logger: createLogger({ level: 'silent' }),
      metrics: {
        ...noopBrokerMetrics,
        exchange: (_p: string, _d: string, o: ExchangeOutcome) => outcomes.push(o),
      },
      audit: { record: (e: AuditEntry) => audit.push(e) },
    };
    const tokens = createTokenService(common);
    return { ...createDownstreamService({ ...common, subjectTokens: tokens }), tokens };
  }
  const ctx = (timeoutMs = Infinity): CallContext => callContext(clock.now() + timeoutMs);
  const get = (service: DownstreamService, downstream = 'orders', c = ctx(), user: SubjectRef = alice) =>
    service.getDownstreamToken({ ...user, downstream, minValidForMs: MIN }, c);

  beforeEach(async () => {
    clock = createFakeClock();
    store = createMemoryStore({ keyRing: createKeyRing([{ id: 'k1', key: randomBytes(32) }]), clock });
    idp = fakeIdp(clock);
    outcomes = [];
    audit = [];
    await store.putToken(alice, subjectRecord(clock), DAY);
  });

  it('exchanges the stored subject token once, then serves the cached token without an IdP call', async () => {
    const service = replica();
    const first = await clock.run(get(service));
    assert.equal(first.source, 'EXCHANGED');
    assert.equal(first.accessToken, 'orders-1');
    assert.equal(first.issuedTokenType, 'urn:ietf:params:oauth:token-type:access_token');
    assert.deepEqual(first.scopes, ['orders.read']);
    assert.deepEqual(idp.exchanged, ['orders subject-0']);
    const second = await clock.run(get(replica()));
    assert.equal(second.source, 'CACHED');
    assert.equal(second.accessToken, 'orders-1');
    assert.deepEqual(idp.exchanged, ['orders subject-0'], 'a cache hit makes no IdP call');
    const stored = await store.getToken({ ...alice, downstream: 'orders' });
    assert.equal(stored?.accessToken, 'orders-1');
    assert.equal(stored?.obtainedVia, 'exchange');
    assert.equal(stored?.refreshToken, undefined);
    // The subject record is untouched.
    assert.equal((await store.getToken(alice))?.accessToken, 'subject-0');
    assert.deepEqual(outcomes, ['exchanged']);
    assert.deepEqual(
      audit.map((e) => [e.event, e.outcome, e.downstream, e.rpc]),
      [['token_exchange', 'ok', 'orders', 'GetDownstreamToken']],
    );
  });

  it('keeps one record per downstream, each with its own exchange', async () => {
    const service = replica();
    const orders = await clock.run(get(service, 'orders'));
    const billing = await clock.run(get(service, 'billing'));
    assert.notEqual(orders.accessToken, billing.accessToken);
    assert.deepEqual(idp.exchanged, ['orders subject-0', 'billing subject-0']);
  });

  it('exchanges once per user and downstream for 200 concurrent callers over four replicas', async () => {
    idp.delayMs = 30;
    const bob: SubjectRef = { provider: 'corp', userId: 'bob' };
    await store.putToken(bob, { ...subjectRecord(clock), accessToken: 'subject-bob' }, DAY);
    const replicas = [replica(), replica(), replica(), replica()];
    const calls = Array.from({ length: 200 }, (_, i) =>
      get(replicas[i % 4]!, i % 3 === 0 ? 'billing' : 'orders', ctx(), i % 2 === 0 ? alice : bob).then(
        (r) => ({
          key: `${i % 2 === 0 ? 'alice' : 'bob'} ${i % 3 === 0 ? 'billing' : 'orders'}`,
          token: r.accessToken,
        }),
      ),
    );
    const results = await clock.run(Promise.all(calls));
    assert.deepEqual([...idp.exchanged].sort(), [
      'billing subject-0',
      'billing subject-bob',
      'orders subject-0',
      'orders subject-bob',
    ]);
    const byKey = new Map<string, Set<string>>();
    for (const r of results) byKey.set(r.key, (byKey.get(r.key) ?? new Set()).add(r.token));
    assert.equal(byKey.size, 4);
    for (const [key, tokens] of byKey) assert.equal(tokens.size, 1, `${key} got ${tokens.size} tokens`);
  });

  it('keeps the lock through an exchange three times longer than the lease', async () => {
    idp.delayMs = 900;
    const leader = get(replica(300));
    await clock.advance(400);
    const follower = get(replica(300));
    const [a, b] = await clock.run(Promise.all([leader, follower]));
    assert.equal(idp.exchanged.length, 1);
    assert.equal(a.accessToken, b.accessToken);
  });

  it('exchanges again once the cached token is inside the margin, over the cached generation', async () => {
    idp.ttlMs = 2 * MIN;
    const service = replica();
    await clock.run(get(service));
    const before = await store.getToken({ ...alice, downstream: 'orders' });
    await clock.advance(MIN + 1000); // 59 s left: inside the 60 s margin
    const again = await clock.run(get(service));
    assert.equal(again.source, 'EXCHANGED');
    assert.equal(again.accessToken, 'orders-2');
    assert.equal(idp.exchanged.length, 2);
    const after = await store.getToken({ ...alice, downstream: 'orders' });
    assert.equal(after?.generation, before!.generation + 1, 'a fenced write over the generation read');
  });

  it('asks the subject-token path for a subject valid for the skew: refreshes it first when needed', async () => {
    await store.putToken(alice, subjectRecord(clock, 30_000), DAY); // inside the skew
    const token = await clock.run(get(replica()));
    assert.equal(token.source, 'EXCHANGED');
    assert.deepEqual(idp.refreshed, ['rt-0']);
    assert.deepEqual(idp.exchanged, ['orders subject-1'], 'the refreshed subject token was exchanged');
  });

  it('does not refresh the subject on every call when min_valid_for exceeds every lifetime the IdP grants', async () => {
    const service = replica();
    const greedy = () =>
      service.getDownstreamToken({ ...alice, downstream: 'orders', minValidForMs: 3 * 60 * MIN }, ctx());
    for (let i = 0; i < 3; i++) {
      assert.equal((await clock.run(greedy())).source, 'EXCHANGED');
      await clock.advance(1000);
    }
    // Each call exchanges (the IdP never grants the margin), but the subject token, valid for an
    // hour, is not refreshed (and its refresh token not rotated) for any of them.
    assert.deepEqual(idp.refreshed, []);
    assert.equal(idp.exchanged.length, 3);
  });

  it('goes on for the callers still waiting when the caller that started the exchange cancels', async () => {
    await store.putToken(alice, subjectRecord(clock, 30_000), DAY); // the subject needs a refresh
    idp.refreshDelayMs = 500;
    const service = replica();
    const leaderAbort = new AbortController();
    const leader = get(service, 'orders', callContext(Infinity, leaderAbort.signal));
    const follower = get(service, 'orders', ctx(5000));
    await clock.advance(100);
    leaderAbort.abort(new Error('cancelled by the caller'));
    const cancelled = await brokerError(clock.run(leader));
    assert.equal(cancelled.reason, 'REFRESH_IN_PROGRESS');
    const token = await clock.run(follower);
    assert.equal(token.accessToken, 'orders-1');
    assert.deepEqual(idp.exchanged, ['orders subject-1']);
  });

  it('answers the subject token REAUTH_REQUIRED causes: nothing stored, and storage disabled', async () => {
    const nobody = await brokerError(
      clock.run(get(replica(), 'orders', ctx(), { provider: 'corp', userId: 'carol' })),
    );
    assert.equal(nobody.reason, 'REAUTH_REQUIRED');
    assert.equal(nobody.metadata.cause, 'NO_TOKEN');
    await store.putToken(alice, { ...subjectRecord(clock, 30_000), refreshToken: undefined }, DAY);
    const noRefresh = await brokerError(clock.run(get(replica())));
    assert.equal(noRefresh.metadata.cause, 'NO_REFRESH_TOKEN');
    const disabled = createDownstreamService({
      store,
      idps: { ids: ['corp'], get: () => idp.client },
      storageEnabled: false,
      lockLeaseMs: 1000,
      clock,
      logger: createLogger({ level: 'silent' }),
      subjectTokens: replica().tokens,
    });
    const off = await brokerError(clock.run(get(disabled)));
    assert.equal(off.metadata.cause, 'STORE_DISABLED');
    assert.deepEqual(idp.exchanged, []);
  });

  it('maps a refused exchange to EXCHANGE_REJECTED carrying only the OAuth code', async () => {
    idp.fail = new IdpError('rejected', 'identity provider rejected the request', {
      oauthError: 'invalid_target',
      cause: new Error('token_exchange: ResponseBodyError HTTP 400'),
    });
    const err = await brokerError(clock.run(get(replica())));
    assert.equal(err.reason, 'EXCHANGE_REJECTED');
    assert.deepEqual(err.metadata, {
      provider: 'corp',
      userId: 'alice',
      downstream: 'orders',
      idpError: 'invalid_target',
    });
    assert.doesNotMatch(err.message, /subject-0/);
    assert.equal(await store.getToken({ ...alice, downstream: 'orders' }), undefined);
    assert.deepEqual(outcomes, ['rejected']);
    assert.equal(audit[0]?.cause, 'invalid_target');
  });

  it('answers IDP_UNAVAILABLE with a retry delay when the IdP is down and nothing usable is cached', async () => {
    idp.fail = new IdpError('unavailable', 'identity provider answered HTTP 503', { retryAfterMs: 7000 });
    const err = await brokerError(clock.run(get(replica())));
    assert.equal(err.reason, 'IDP_UNAVAILABLE');
    assert.equal(err.retryAfterMs, 7000);
    assert.deepEqual(outcomes, ['unavailable']);
  });

  it('serves a still-unexpired cached token, marked degraded, while the IdP is down', async () => {
    idp.ttlMs = 2 * MIN;
    const service = replica();
    await clock.run(get(service));
    await clock.advance(MIN + 1000);
    idp.fail = new IdpError('unavailable', 'identity provider timed out');
    const token = await clock.run(get(service));
    assert.equal(token.accessToken, 'orders-1');
    assert.equal(token.degraded, true);
    assert.equal(token.source, 'CACHED');
  });

  it('does not let an exchange that lands after a revoke leave a downstream token behind', async () => {
    const service = replica();
    idp.during = async () => {
      idp.during = undefined;
      await service.tokens.revokeSubjectToken({ ...alice, revokeAtIdp: false }, ctx());
    };
    const err = await brokerError(clock.run(get(service)));
    assert.equal(err.reason, 'REAUTH_REQUIRED');
    assert.equal(err.metadata.cause, 'NO_TOKEN');
    assert.equal(await store.getToken({ ...alice, downstream: 'orders' }), undefined);
    assert.deepEqual(outcomes, ['fenced']);
  });

  it('stores and serves nothing from a grant revoked (at the IdP) and logged in anew while the exchange was in flight', async () => {
    const service = replica();
    idp.during = async () => {
      idp.during = undefined;
      await service.tokens.revokeSubjectToken({ ...alice, revokeAtIdp: true }, ctx());
      await store.putToken(alice, { ...subjectRecord(clock), accessToken: 'subject-new' }, DAY);
    };
    const token = await clock.run(get(service));
    // The token exchanged from the revoked grant (orders-1) is thrown away; the new login's is
    // exchanged instead, and that is what is stored.
    assert.deepEqual(idp.exchanged, ['orders subject-0', 'orders subject-new']);
    assert.equal(token.accessToken, 'orders-2');
    assert.equal(token.source, 'EXCHANGED');
    const cached = await clock.run(get(replica()));
    assert.equal(cached.source, 'CACHED');
    assert.equal(cached.accessToken, 'orders-2');
    assert.deepEqual(outcomes, ['fenced', 'exchanged']);
  });

  it('leaves nothing behind when the subject record vanishes during the exchange, whatever the store does next', async () => {
    // The old write-then-check wrote first and relied on a compensating delete: a store that
    // fails right after the write must still not keep the token.
    const service = replica();
    idp.during = async () => {
      idp.during = undefined;
      await store.deleteToken(alice);
    };
    const getToken = store.getToken.bind(store);
    let downstreamWritten = false;
    // Whatever write the exchange uses, the store goes down once a downstream token has landed.
    const landed = async (ref: SubjectRef) =>
      (downstreamWritten ||= (await getToken(ref).catch(() => undefined)) !== undefined);
    for (const method of ['putToken', 'putTokenFenced', 'putDownstreamToken'] as const) {
      const original = (store[method] as (...a: unknown[]) => Promise<unknown>).bind(store);
      (store as unknown as Record<string, unknown>)[method] = async (ref: SubjectRef, ...rest: unknown[]) => {
        const out = await original(ref, ...rest);
        if (ref.downstream !== undefined) await landed(ref);
        return out;
      };
    }
    store.getToken = async (ref, ...rest) => {
      if (downstreamWritten && ref.downstream === undefined) {
        throw new BrokerError('STORE_UNAVAILABLE', 'the token store is unreachable');
      }
      return getToken(ref, ...rest);
    };
    const err = await brokerError(clock.run(get(service)));
    assert.equal(err.reason, 'REAUTH_REQUIRED');
    store.getToken = getToken;
    assert.equal(await store.getToken({ ...alice, downstream: 'orders' }), undefined);
  });

  it('stops serving a cached token once the subject record is gone, however it went (refused refresh, expiry, a revoke whose downstream deletes failed)', async () => {
    const service = replica();
    await clock.run(get(service));
    assert.equal((await clock.run(get(service))).source, 'CACHED');
    // The subject record alone is deleted: the downstream record is still in the store.
    await store.deleteToken(alice);
    assert.ok(await store.getToken({ ...alice, downstream: 'orders' }));
    const err = await brokerError(clock.run(get(service)));
    assert.equal(err.reason, 'REAUTH_REQUIRED');
    assert.equal(err.metadata.cause, 'NO_TOKEN');
    assert.deepEqual(idp.exchanged, ['orders subject-0']);
  });

  it('exchanges anew after a re-login instead of serving the cached token of the previous login, also while the IdP is down', async () => {
    idp.ttlMs = 2 * MIN;
    const service = replica();
    await clock.run(get(service));
    await store.deleteToken(alice);
    await store.putToken(alice, { ...subjectRecord(clock), accessToken: 'subject-new' }, DAY);
    const fresh = await clock.run(get(service));
    assert.equal(fresh.source, 'EXCHANGED');
    assert.equal(fresh.accessToken, 'orders-2');
    assert.deepEqual(idp.exchanged, ['orders subject-0', 'orders subject-new']);
    // Once more, with the IdP down and the cached token inside the margin but unexpired: the
    // previous login's token is not served degraded either.
    await clock.advance(MIN + 1000);
    await store.deleteToken(alice);
    await store.putToken(alice, { ...subjectRecord(clock), accessToken: 'subject-third' }, DAY);
    idp.fail = new IdpError('unavailable', 'identity provider timed out');
    const err = await brokerError(clock.run(get(service)));
    assert.equal(err.reason, 'IDP_UNAVAILABLE');
  });

  it('treats a downstream record it cannot open (a key this replica lacks, mid-rotation) as a miss and does not delete it', async () => {
    const k1 = { id: 'k1', key: randomBytes(32) };
    const k2 = { id: 'k2', key: randomBytes(32) };
    const backend = createMemoryBackend();
    const behind = createMemoryStore({ keyRing: createKeyRing([k1]), clock, backend });
    const ahead = createMemoryStore({ keyRing: createKeyRing([k1, k2], 'k2'), clock, backend });
    const orders: SubjectRef = { ...alice, downstream: 'orders' };
    const epoch = await behind.putToken(alice, subjectRecord(clock), DAY);
    // A replica with the new key exchanged and stored a token sealed under it.
    const owner = (await ahead.acquireLock(orders, 1000))!;
    const written = await ahead.putDownstreamToken(
      orders,
      owner,
      'absent',
      { ...subjectRecord(clock), accessToken: 'orders-ahead', obtainedVia: 'exchange', loginEpoch: epoch },
      60 * MIN,
    );
    assert.equal(written.written, true);
    await ahead.releaseLock(orders, owner);
    // The replica without it cannot serve it and the IdP is down: it fails, and leaves the
    // record to the replicas that can open it.
    store = behind;
    idp.fail = new IdpError('unavailable', 'identity provider timed out');
    const err = await brokerError(clock.run(get(replica())));
    assert.equal(err.reason, 'IDP_UNAVAILABLE');
    assert.equal((await ahead.getToken(orders))?.accessToken, 'orders-ahead');
    // With the IdP back, it exchanges and overwrites the record under the lock.
    idp.fail = undefined;
    const token = await clock.run(get(replica()));
    assert.equal(token.source, 'EXCHANGED');
    const now = await behind.getToken(orders);
    assert.equal(now?.accessToken, token.accessToken);
    assert.equal(now?.generation, 2, 'written over the record it could not open');
  });

  it('is removed by RevokeSubjectToken, for every configured downstream', async () => {
    const service = replica();
    await clock.run(get(service, 'orders'));
    await clock.run(get(service, 'billing'));
    const result = await service.tokens.revokeSubjectToken({ ...alice, revokeAtIdp: false }, ctx());
    assert.equal(result.deleted, true);
    assert.equal(await store.getToken({ ...alice, downstream: 'orders' }), undefined);
    assert.equal(await store.getToken({ ...alice, downstream: 'billing' }), undefined);
    const after = await brokerError(clock.run(get(service)));
    assert.equal(after.metadata.cause, 'NO_TOKEN');
  });

  it('revokes the cached downstream tokens at the IdP too when RevokeSubjectToken asks for revoke_at_idp', async () => {
    const service = replica();
    await clock.run(get(service, 'orders'));
    await clock.run(get(service, 'billing'));
    const result = await service.tokens.revokeSubjectToken({ ...alice, revokeAtIdp: true }, ctx());
    assert.deepEqual(result, { deleted: true, idpRevocation: 'REVOKED' });
    assert.deepEqual([...idp.revoked].sort(), [
      'billing-2 access_token',
      'orders-1 access_token',
      'rt-0 refresh_token',
    ]);
    assert.equal(await store.getToken({ ...alice, downstream: 'orders' }), undefined);
  });

  it('answers INVALID_REQUEST naming downstream for one the provider does not have', async () => {
    const err = await brokerError(clock.run(get(replica(), 'payroll')));
    assert.equal(err.reason, 'INVALID_REQUEST');
    assert.deepEqual(
      err.violations.map((v) => v.field),
      ['downstream'],
    );
  });

  it('gives a caller REFRESH_IN_PROGRESS at its own deadline while the exchange goes on', async () => {
    idp.delayMs = 1000;
    const service = replica();
    const patient = get(service, 'orders', ctx(5000));
    const hurried = await brokerError(clock.run(get(service, 'orders', ctx(100))));
    assert.equal(hurried.reason, 'REFRESH_IN_PROGRESS');
    assert.equal((await clock.run(patient)).accessToken, 'orders-1');
    assert.equal(idp.exchanged.length, 1);
  });

  it('seals a downstream record bound to its downstream id: it opens neither as another downstream nor as the subject', async () => {
    const ring = createKeyRing([{ id: 'k1', key: randomBytes(32) }]);
    const record = {
      ...subjectRecord(clock),
      accessToken: 'orders-1',
      obtainedVia: 'exchange' as const,
      generation: 1,
    };
    const sealed = sealRecord(ring.active, { ...alice, downstream: 'orders' }, record);
    assert.equal(openRecord(ring, { ...alice, downstream: 'orders' }, sealed).record.accessToken, 'orders-1');
    for (const other of [
      { ...alice, downstream: 'billing' },
      alice,
      { provider: 'corp', userId: 'bob', downstream: 'orders' },
    ]) {
      assert.throws(
        () => openRecord(ring, other, sealed),
        (err: unknown) => err instanceof BrokerError && err.metadata.cause === 'UNDECRYPTABLE',
      );
    }
    // Distinct keys in the same Cluster slot (one hash tag per user).
    const orders = tokenKey({ ...alice, downstream: 'orders' });
    assert.notEqual(orders, tokenKey(alice));
    assert.equal(orders.match(/\{[^}]*\}/)?.[0], tokenKey(alice).match(/\{[^}]*\}/)?.[0]);
  });
});
