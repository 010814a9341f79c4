/**
 * The one TokenStore contract suite (docs/architecture.md §3, issue 3 "Done when"), run against the memory
 * store (test/unit/store-memory.test.ts), a real redis-server and a real three-node Redis
 * Cluster (test/integration/store-redis.test.ts). Backend-specific checks (raw key access, PTTL)
 * run only where the harness provides `raw`. Time goes through `ContractTime`: the memory store
 * runs on a virtual clock (exact, instant), Redis on real time with short leases and waits that
 * poll for the outcome instead of sleeping a fixed amount.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { FakeClock } from '../helpers/fake-clock.js';
import { waitUntil } from '../helpers/wait.js';
import { isBrokerError } from '../../src/core/errors.js';
import { createKeyRing, type KeyRing } from '../../src/store/key-ring.js';
import type { SubjectRef } from '../../src/core/errors.js';
import type { LoginState, NewTokenRecord, TokenStore } from '../../src/core/token-store.js';

/** Direct access to the backend, for checks the interface cannot express. */
export interface RawAccess {
  /**
   * Every key matching `pattern` (SCAN glob) on every master, with its PTTL (ms; -1 = none) and
   * its raw content (a string's bytes, or a hash's fields and values concatenated).
   */
  scan(pattern: string): Promise<{ key: string; pttl: number; content: Buffer }[]>;
  /** Copies a user's raw token record to another user's key (keeping its TTL). */
  copyToken(from: SubjectRef, to: SubjectRef): Promise<void>;
  /**
   * Sets a user's deletion cause beside whatever is stored, as a replica of an older version
   * leaves it (its login and revoke do not clear the cause).
   */
  setCause(ref: SubjectRef, cause: string, ttlMs: number): Promise<void>;
}

/** How time passes for the store under test. */
export interface ContractTime {
  /** Milliseconds, for measuring how long a wait took. */
  now(): number;
  /** Lets `ms` pass: only where the test checks that nothing happens in that time. */
  pass(ms: number): Promise<void>;
  /** Awaits `promise`, letting time pass for the timers it waits on. */
  run<T>(promise: Promise<T>): Promise<T>;
  /**
   * Resolves once `predicate` holds, which the contract says happens `ms` from now: checked at
   * once and then every few ms of (virtual) time; fails after `ms` (virtual) or a generous bound
   * above it (real time, where a loaded machine may be late).
   */
  until(ms: number, predicate: () => Promise<boolean>, what: string): Promise<void>;
}

/** Real time, for stores whose TTLs and leases run in a real backend. */
export const realTime: ContractTime = {
  now: () => performance.now(),
  pass: (ms) => sleep(ms),
  run: (promise) => promise,
  until: (ms, predicate, what) => waitUntil(predicate, { timeoutMs: 2 * ms + 2_000, what }),
};

/** Step of `until` on a virtual clock. */
const VIRTUAL_POLL_MS = 10;

/** Virtual time on `clock`: waits are exact and take no real time. */
export function virtualTime(clock: FakeClock): ContractTime {
  return {
    now: () => clock.now(),
    pass: (ms) => clock.advance(ms),
    run: (promise) => clock.run(promise),
    async until(ms, predicate, what) {
      const deadline = clock.now() + ms;
      while (!(await predicate())) {
        if (clock.now() >= deadline) throw new Error(`${what} did not happen within ${ms} ms`);
        await clock.advance(Math.min(VIRTUAL_POLL_MS, deadline - clock.now()));
      }
    },
  };
}

export interface StoreHarness {
  readonly store: TokenStore;
  /** Default real time. */
  readonly time?: ContractTime;
  /** Present when the suite is registered with `raw: true`. */
  readonly raw?: RawAccess;
  /** The same backend opened with another key ring (e.g. after rotation). */
  reopen(keyRing: KeyRing | undefined): Promise<TokenStore>;
}

export const TRICKY_USER_IDS: readonly string[] = [
  'alice',
  'Alice',
  'a:b',
  'a:b:token',
  '{alice}',
  'corp/alice',
  'a/b',
  'a%2Fb',
  '#hash',
  'a}:lock',
  '😀 emoji',
  'ünïcödé',
  '',
  ' ',
  'x'.repeat(256),
  'x'.repeat(255) + 'y',
  '🔑'.repeat(64),
];

export const contractKeyRing = createKeyRing([{ id: 'k1', key: randomBytes(32) }]);

let counter = 0;
/** A fresh subject per test, so suites sharing a backend never collide. */
export function freshRef(provider = 'corp'): SubjectRef {
  counter += 1;
  return { provider, userId: `user-${process.pid}-${Date.now()}-${counter}` };
}

export function sampleRecord(overrides: Partial<NewTokenRecord> = {}): NewTokenRecord {
  return {
    accessToken: `at-${randomBytes(8).toString('hex')}`,
    refreshToken: `rt-${randomBytes(8).toString('hex')}`,
    tokenType: 'Bearer',
    expiresAt: Date.now() + 3_600_000,
    refreshExpiresAt: undefined,
    scopes: ['openid', 'email'],
    idToken: undefined,
    obtainedVia: 'login',
    updatedAt: Date.now(),
    subject: 'sub-1',
    ...overrides,
  };
}

const loginState: LoginState = {
  provider: 'corp',
  redirectUri: 'https://app.example.com/cb',
  codeVerifier: 'verifier-0123456789-secret',
  nonce: 'nonce-1',
  scopes: ['openid'],
  createdAt: 1,
};

const HOUR = 3_600_000;

async function assertRejectsWith(promise: Promise<unknown>, reason: string, cause?: string): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(isBrokerError(err), String(err));
    assert.equal(err.reason, reason);
    if (cause !== undefined) assert.equal(err.metadata.cause, cause);
    return true;
  });
}

export interface ContractOptions {
  /** Called once before the suite. */
  setup(): Promise<StoreHarness>;
  /** Called once after it. */
  teardown(): Promise<void>;
  /** Whether the harness offers RawAccess (registers the raw backend checks). */
  readonly raw: boolean;
}

/** Registers the contract tests. */
export function storeContract(name: string, { setup, teardown, raw }: ContractOptions): void {
  describe(`TokenStore contract: ${name}`, function () {
    let h: StoreHarness;
    let store: TokenStore;
    let time: ContractTime;
    before(async function () {
      this.timeout(60_000);
      h = await setup();
      store = h.store;
      time = h.time ?? realTime;
    });
    after(async function () {
      this.timeout(30_000);
      await teardown();
    });

    describe('token records', () => {
      it('reads back what was written, and nothing for an unknown user', async () => {
        const ref = freshRef();
        const record = sampleRecord({ refreshExpiresAt: Date.now() + 2 * HOUR, idToken: 'idt' });
        const generation = await store.putToken(ref, record, HOUR);
        // A login starts a login epoch: its own generation.
        assert.deepEqual(await store.getToken(ref), { ...record, generation, loginEpoch: generation });
        assert.equal(await store.getToken(freshRef()), undefined);
      });

      it('returns a record object again only while the stored record is unchanged, and never changes one', async () => {
        const ref = freshRef();
        await store.putToken(ref, sampleRecord({ accessToken: 'first' }), HOUR);
        const first = await store.getToken(ref);
        const again = await store.getToken(ref);
        assert.deepEqual(again, first);
        const snapshot = structuredClone(first);
        await store.putToken(ref, sampleRecord({ accessToken: 'second' }), HOUR);
        const second = await store.getToken(ref);
        assert.equal(second?.accessToken, 'second');
        assert.notEqual(second, first, 'a changed record is a new object');
        assert.notEqual(second, again);
        assert.deepEqual(first, snapshot, 'a returned record is not changed by a later write');
      });

      it('peekToken answers the current record or undefined ("ask getToken"), never a replaced one', async () => {
        const { peekToken } = store;
        assert.ok(peekToken, 'every store offers peekToken');
        const peek = (r: SubjectRef) => peekToken.call(store, r);
        const ref = freshRef();
        assert.equal(peek(ref), undefined);
        await store.putToken(ref, sampleRecord({ accessToken: 'first' }), HOUR);
        const first = await store.getToken(ref);
        const peeked = peek(ref);
        if (peeked !== undefined) assert.deepEqual(peeked, first);
        await store.putToken(ref, sampleRecord({ accessToken: 'second' }), HOUR);
        assert.notEqual(peek(ref)?.accessToken, 'first', 'the replaced record is not peeked');
        const second = await store.getToken(ref);
        const peekedSecond = peek(ref);
        if (peekedSecond !== undefined) assert.deepEqual(peekedSecond, second);
        await store.deleteToken(ref);
        assert.equal(peek(ref), undefined, 'a deleted record is not peeked');
      });

      it('assigns increasing generations that survive delete and re-login', async () => {
        const ref = freshRef();
        assert.equal(await store.putToken(ref, sampleRecord(), HOUR), 1);
        assert.equal(await store.putToken(ref, sampleRecord(), HOUR), 2);
        assert.equal(await store.deleteToken(ref), true);
        assert.equal(await store.getToken(ref), undefined);
        assert.equal(await store.deleteToken(ref), false);
        assert.equal(await store.putToken(ref, sampleRecord(), HOUR), 3);
      });

      it('gives concurrent unconditional writes distinct generations, the last one winning', async () => {
        const ref = freshRef();
        const generations = await Promise.all(
          Array.from({ length: 10 }, () => store.putToken(ref, sampleRecord(), HOUR)),
        );
        assert.deepEqual(
          [...generations].sort((a, b) => a - b),
          Array.from({ length: 10 }, (_, i) => i + 1),
        );
        assert.equal((await store.getToken(ref))?.generation, 10);
      });

      it('expires a record after its TTL', async () => {
        const ref = freshRef();
        await store.putToken(ref, sampleRecord(), 300);
        assert.ok(await store.getToken(ref));
        await time.until(300, async () => (await store.getToken(ref)) === undefined, 'the record to expire');
      });

      it('deletes only the expected generation with deleteTokenIfGeneration', async () => {
        const ref = freshRef();
        const g = await store.putToken(ref, sampleRecord(), HOUR);
        assert.equal(await store.deleteTokenIfGeneration(ref, g + 1), false);
        assert.ok(await store.getToken(ref));
        assert.equal(await store.deleteTokenIfGeneration(ref, g), true);
        assert.equal(await store.getToken(ref), undefined);
      });

      it('remembers why a record was deleted for the cause’s TTL, and only for a real delete', async () => {
        const because = { cause: 'REFRESH_REJECTED', ttlMs: 400 } as const;
        const ref = freshRef();
        assert.equal(await store.deletedBecause?.(ref), undefined);
        const g = await store.putToken(ref, sampleRecord(), HOUR);
        // Not the expected generation: nothing deleted, nothing remembered.
        assert.equal(await store.deleteTokenIfGeneration(ref, g + 1, because), false);
        assert.equal(await store.deletedBecause?.(ref), undefined);
        assert.equal(await store.deleteTokenIfGeneration(ref, g, because), true);
        assert.equal(await store.getToken(ref), undefined);
        assert.equal(await store.deletedBecause?.(ref), 'REFRESH_REJECTED');
        // Another user's record, and this user's downstream record, know nothing of it.
        assert.equal(await store.deletedBecause?.(freshRef()), undefined);
        assert.equal(await store.deletedBecause?.({ ...ref, downstream: 'api' }), undefined);
        await time.until(
          400,
          async () => (await store.deletedBecause?.(ref)) === undefined,
          'the cause to expire',
        );
      });

      it('forgets why a record was deleted when it is written again or deleted without a cause', async () => {
        const because = { cause: 'REFRESH_REJECTED', ttlMs: HOUR } as const;
        const relogin = freshRef();
        await store.deleteTokenIfGeneration(
          relogin,
          await store.putToken(relogin, sampleRecord(), HOUR),
          because,
        );
        const g = await store.putToken(relogin, sampleRecord(), HOUR);
        assert.equal(await store.deletedBecause?.(relogin), undefined, 'a login clears it');
        // …and a revoke of that login leaves no cause behind either.
        await store.deleteTokenIfGeneration(relogin, g, because);
        await store.putToken(relogin, sampleRecord(), HOUR);
        assert.equal(await store.deleteToken(relogin), true);
        assert.equal(await store.deletedBecause?.(relogin), undefined, 'a revoke clears it');
        const revoked = freshRef();
        const g2 = await store.putToken(revoked, sampleRecord(), HOUR);
        assert.equal(await store.deleteTokenIfGeneration(revoked, g2), true);
        assert.equal(await store.deletedBecause?.(revoked), undefined, 'a delete without a cause sets none');
      });

      it('maps user ids with colons, braces, slashes, emoji and 256 bytes to distinct records', async () => {
        const provider = `p${counter++}`;
        const written = new Map<string, string>();
        for (const userId of TRICKY_USER_IDS) {
          const record = sampleRecord();
          await store.putToken({ provider, userId }, record, HOUR);
          written.set(userId, record.accessToken);
        }
        for (const userId of TRICKY_USER_IDS) {
          const got = await store.getToken({ provider, userId });
          assert.equal(
            got?.accessToken,
            written.get(userId),
            `user id ${JSON.stringify(userId).slice(0, 40)}`,
          );
        }
        assert.equal(await store.getToken({ provider: `${provider}x`, userId: 'alice' }), undefined);
      });

      it('fails as REAUTH_REQUIRED / UNDECRYPTABLE — never "absent" — when the key is gone', async () => {
        const ref = freshRef();
        await store.putToken(ref, sampleRecord(), HOUR);
        const other = await h.reopen(createKeyRing([{ id: 'k9', key: randomBytes(32) }]));
        try {
          assert.equal(other.peekToken?.(ref), undefined, 'peekToken leaves the error to getToken');
          await assertRejectsWith(other.getToken(ref), 'REAUTH_REQUIRED', 'UNDECRYPTABLE');
        } finally {
          if (other !== store) await other.close();
        }
      });

      it('reads records sealed under an old key and re-seals them under the new active key on write', async () => {
        const ref = freshRef();
        await store.putToken(ref, sampleRecord(), HOUR);
        const k2 = { id: 'k2', key: randomBytes(32) };
        const rotated = await h.reopen(createKeyRing([k2, contractKeyRing.active], 'k2'));
        try {
          const old = await rotated.getToken(ref);
          assert.ok(old);
          const g = await rotated.putToken(ref, sampleRecord(), HOUR);
          assert.equal((await rotated.getToken(ref))?.generation, g);
          // The old ring alone can no longer open it: it was re-sealed under k2.
          await assertRejectsWith(store.getToken(ref), 'REAUTH_REQUIRED', 'UNDECRYPTABLE');
        } finally {
          if (rotated !== store) await rotated.close();
        }
      });

      it('re-seals a record read under an old key in place, keeping its generation', async () => {
        const ref = freshRef();
        const g = await store.putToken(ref, sampleRecord(), HOUR);
        const k2 = { id: 'k2', key: randomBytes(32) };
        const rotated = await h.reopen(createKeyRing([k2, contractKeyRing.active], 'k2'));
        const onlyK2 = await h.reopen(createKeyRing([k2]));
        try {
          assert.equal((await rotated.getToken(ref))?.generation, g);
          // Re-sealed in the background: then only k2 opens it, and nothing else changed.
          await waitUntil(async () => (await onlyK2.getToken(ref).catch(() => undefined)) !== undefined, {
            what: 'the background re-seal',
          });
          assert.equal((await onlyK2.getToken(ref))?.generation, g);
          await assertRejectsWith(store.getToken(ref), 'REAUTH_REQUIRED', 'UNDECRYPTABLE');
        } finally {
          if (onlyK2 !== store) await onlyK2.close();
          if (rotated !== store) await rotated.close();
        }
      });

      it('answers STORE_DISABLED for token operations without a key ring, while login state still works', async () => {
        const disabled = await h.reopen(undefined);
        try {
          const ref = freshRef();
          assert.equal(disabled.peekToken?.(ref), undefined, 'peekToken leaves the error to getToken');
          await assertRejectsWith(disabled.getToken(ref), 'REAUTH_REQUIRED', 'STORE_DISABLED');
          await assertRejectsWith(
            disabled.putToken(ref, sampleRecord(), HOUR),
            'REAUTH_REQUIRED',
            'STORE_DISABLED',
          );
          const state = `state-${randomBytes(8).toString('hex')}`;
          await disabled.putLoginState(state, loginState, 60_000);
          assert.deepEqual(await disabled.consumeLoginState(state), loginState);
        } finally {
          if (disabled !== store) await disabled.close();
        }
      });
    });

    describe('fenced writes and tombstones', () => {
      it('writes generation + 1 while the writer owns the lock and the generation is unchanged', async () => {
        const ref = freshRef();
        const g = await store.putToken(ref, sampleRecord(), HOUR);
        const owner = await store.acquireLock(ref, 5_000);
        assert.ok(owner);
        const next = sampleRecord({ obtainedVia: 'refresh' });
        assert.equal(await store.putTokenFenced(ref, owner, g, next, HOUR), true);
        assert.deepEqual(await store.getToken(ref), { ...next, generation: g + 1 });
        await store.releaseLock(ref, owner);
      });

      it('rejects a fenced write after the writer lost the lock', async () => {
        const ref = freshRef();
        const g = await store.putToken(ref, sampleRecord(), HOUR);
        const owner = await store.acquireLock(ref, 100);
        assert.ok(owner);
        let thief: string | undefined;
        await time.until(
          100,
          async () => (thief = await store.acquireLock(ref, 5_000)) !== undefined,
          'the lease to run out',
        );
        assert.ok(thief);
        assert.equal(await store.putTokenFenced(ref, owner, g, sampleRecord(), HOUR), false);
        assert.equal((await store.getToken(ref))?.generation, g);
        assert.equal(await store.putTokenFenced(ref, 'not-an-owner', g, sampleRecord(), HOUR), false);
        await store.releaseLock(ref, thief);
      });

      it('rejects a fenced write over a newer generation', async () => {
        const ref = freshRef();
        const g = await store.putToken(ref, sampleRecord(), HOUR);
        const owner = await store.acquireLock(ref, 5_000);
        assert.ok(owner);
        await store.putToken(ref, sampleRecord(), HOUR);
        assert.equal(await store.putTokenFenced(ref, owner, g, sampleRecord(), HOUR), false);
        assert.equal((await store.getToken(ref))?.generation, g + 1);
        await store.releaseLock(ref, owner);
      });

      it('lets the tombstone beat a late fenced write, also after a re-login', async () => {
        const ref = freshRef();
        const g = await store.putToken(ref, sampleRecord(), HOUR);
        const owner = await store.acquireLock(ref, 5_000);
        assert.ok(owner);
        assert.equal(await store.deleteToken(ref), true);
        assert.equal(await store.putTokenFenced(ref, owner, g, sampleRecord(), HOUR), false);
        assert.equal(await store.getToken(ref), undefined);
        const relogin = sampleRecord();
        const g2 = await store.putToken(ref, relogin, HOUR);
        assert.ok(g2 > g);
        assert.equal(await store.putTokenFenced(ref, owner, g, sampleRecord(), HOUR), false);
        assert.equal((await store.getToken(ref))?.accessToken, relogin.accessToken);
        await store.releaseLock(ref, owner);
      });
    });

    describe('login state', () => {
      it('is single use: the first consume returns it, the second nothing', async () => {
        const state = `state-${randomBytes(8).toString('hex')}`;
        await store.putLoginState(state, loginState, 60_000);
        const both = await Promise.all([store.consumeLoginState(state), store.consumeLoginState(state)]);
        assert.equal(both.filter((v) => v !== undefined).length, 1);
        assert.deepEqual(
          both.find((v) => v !== undefined),
          loginState,
        );
        assert.equal(await store.consumeLoginState(state), undefined);
      });

      it('expires after its TTL and is unknown for another state', async () => {
        const state = `state-${randomBytes(8).toString('hex')}`;
        await store.putLoginState(state, loginState, 80);
        assert.equal(await store.consumeLoginState(`${state}x`), undefined);
        // Consuming is the only read, so wait a fixed time past the TTL (longer is still correct).
        await time.pass(100);
        assert.equal(await store.consumeLoginState(state), undefined);
      });
    });

    describe('refresh locks', () => {
      it('admits one owner at a time and lets only the owner renew or release', async () => {
        const ref = freshRef();
        const owner = await store.acquireLock(ref, 5_000);
        assert.ok(owner);
        assert.equal(await store.acquireLock(ref, 5_000), undefined);
        assert.equal(await store.renewLock(ref, 'intruder', 5_000), false);
        assert.equal(await store.releaseLock(ref, 'intruder'), false);
        assert.equal(await store.acquireLock(ref, 5_000), undefined);
        assert.equal(await store.renewLock(ref, owner, 5_000), true);
        assert.equal(await store.releaseLock(ref, owner), true);
        assert.equal(await store.releaseLock(ref, owner), false);
        const next = await store.acquireLock(ref, 5_000);
        assert.ok(next);
        assert.notEqual(next, owner);
        await store.releaseLock(ref, next);
      });

      it('lets a lease expire on its own, and a renewal keeps it', async () => {
        const ref = freshRef();
        const owner = await store.acquireLock(ref, 400);
        assert.ok(owner);
        await time.pass(50);
        assert.equal(await store.renewLock(ref, owner, 1_000), true);
        await time.pass(500); // past the first lease, well within the renewed one
        assert.equal(await store.acquireLock(ref, 5_000), undefined, 'the renewed lease still holds');
        let next: string | undefined;
        await time.until(
          500,
          async () => (next = await store.acquireLock(ref, 5_000)) !== undefined,
          'the renewed lease to run out',
        );
        assert.ok(next, 'the expired lease let a new owner in');
        assert.equal(await store.renewLock(ref, owner, 5_000), false);
        await store.releaseLock(ref, next);
      });

      it('wakes a waiter within 50 ms of the release', async () => {
        const ref = freshRef();
        const owner = await store.acquireLock(ref, 10_000);
        assert.ok(owner);
        let wokeAt = 0;
        const waiting = store.waitForUnlock(ref, 5_000).then(() => {
          wokeAt = time.now();
        });
        await time.pass(150);
        assert.equal(wokeAt, 0, 'woke before the release');
        const releasedAt = time.now();
        await store.releaseLock(ref, owner);
        await time.run(waiting);
        assert.ok(wokeAt - releasedAt < 50, `woke ${Math.round(wokeAt - releasedAt)} ms after the release`);
      });

      it('returns at once when the lock is free, at the timeout when never released, and on abort', async () => {
        const ref = freshRef();
        let t = time.now();
        await time.run(store.waitForUnlock(ref, 5_000));
        assert.ok(time.now() - t < 1_000);
        const owner = await store.acquireLock(ref, 10_000);
        assert.ok(owner);
        t = time.now();
        await time.run(store.waitForUnlock(ref, 100));
        assert.ok(time.now() - t >= 90);
        const ac = new AbortController();
        t = time.now();
        const aborted = store.waitForUnlock(ref, 5_000, ac.signal);
        await time.pass(50);
        ac.abort();
        await time.run(aborted);
        assert.ok(time.now() - t < 1_000);
        await store.releaseLock(ref, owner);
      });

      it('answers ping', async () => {
        await store.ping();
      });
    });

    if (raw) {
      describe('raw backend checks', () => {
        it('sets a TTL on every key it writes: record, tombstone, lock, deletion cause and login state', async () => {
          const ref = freshRef(`ttl${counter++}`);
          const other = { ...ref, userId: `${ref.userId}-b` };
          const rejected = { ...ref, userId: `${ref.userId}-c` };
          const g = await store.putToken(rejected, sampleRecord(), HOUR);
          await store.deleteTokenIfGeneration(rejected, g, { cause: 'REFRESH_REJECTED', ttlMs: 60_000 });
          await store.putToken(ref, sampleRecord(), HOUR);
          await store.putToken(other, sampleRecord(), HOUR);
          const owner = await store.acquireLock(other, 5_000);
          assert.ok(owner);
          assert.equal(await store.putTokenFenced(other, owner, 1, sampleRecord(), 2 * HOUR), true);
          await store.deleteToken(ref);
          const state = `state-${randomBytes(8).toString('hex')}`;
          await store.putLoginState(state, loginState, 60_000);
          const keys = await h.raw!.scan(`credbroker:v1:{${ref.provider}/*`);
          const login = await h.raw!.scan('credbroker:v1:login:*');
          const kinds = keys.map((k) => k.key.slice(k.key.lastIndexOf(':') + 1)).sort();
          assert.deepEqual(kinds, ['cause', 'lock', 'token', 'tomb', 'tomb']);
          for (const k of [...keys, ...login]) assert.ok(k.pttl > 0, `${k.key} has no TTL (${k.pttl})`);
          const token = keys.find((k) => k.key.endsWith(':token'))!;
          assert.ok(token.pttl > HOUR && token.pttl <= 2 * HOUR, `fenced write set PTTL ${token.pttl}`);
          await store.releaseLock(other, owner);
          await store.consumeLoginState(state);
        });

        it('clears a deletion cause left by an older replica when it deletes without one', async () => {
          for (const del of [
            (ref: SubjectRef, g: number) => store.deleteTokenIfGeneration(ref, g),
            (ref: SubjectRef) => store.deleteToken(ref),
          ]) {
            const ref = freshRef();
            const g = await store.putToken(ref, sampleRecord(), HOUR);
            await h.raw!.setCause(ref, 'REFRESH_REJECTED', HOUR);
            assert.equal(await store.deletedBecause?.(ref), 'REFRESH_REJECTED', 'planted');
            assert.equal(await del(ref, g), true);
            assert.equal(await store.deletedBecause?.(ref), undefined);
          }
        });

        it('reports no cause for a value it does not know', async () => {
          const ref = freshRef();
          await h.raw!.setCause(ref, 'SOMETHING_ELSE', HOUR);
          assert.equal(await store.deletedBecause?.(ref), undefined);
        });

        it("fails as UNDECRYPTABLE when a raw record is copied to another user's key", async () => {
          const alice = freshRef();
          const mallory = freshRef();
          await store.putToken(alice, sampleRecord(), HOUR);
          await h.raw!.copyToken(alice, mallory);
          await assertRejectsWith(store.getToken(mallory), 'REAUTH_REQUIRED', 'UNDECRYPTABLE');
        });

        it('never gives the backend a token or verifier in plaintext', async () => {
          const provider = `plain${counter++}`;
          const secrets: string[] = [];
          for (let i = 0; i < 5; i++) {
            const record = sampleRecord({ idToken: `idt-${randomBytes(8).toString('hex')}` });
            secrets.push(record.accessToken, record.refreshToken!, record.idToken!);
            await store.putToken({ provider, userId: `u${i}` }, record, HOUR);
          }
          const state = `state-${randomBytes(8).toString('hex')}`;
          await store.putLoginState(state, loginState, 60_000);
          secrets.push(state, loginState.codeVerifier);
          const all = await h.raw!.scan('*');
          assert.ok(all.length >= 6);
          for (const { key, content } of all) {
            const text = `${key} ${content.toString('latin1')}`;
            for (const secret of secrets)
              assert.ok(!text.includes(secret), `${key} holds a secret in plaintext`);
          }
          await store.consumeLoginState(state);
        });
      });
    }
  });
}
