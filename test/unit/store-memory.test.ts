import assert from 'node:assert/strict';
import { createMemoryBackend, createMemoryStore } from '../../src/store/memory-store.js';
import type { TokenStore } from '../../src/core/token-store.js';
import type { SubjectRef } from '../../src/core/errors.js';
import { causeKey } from '../../src/store/keys.js';
import { createFakeClock } from '../helpers/fake-clock.js';
import { contractKeyRing, freshRef, sampleRecord, storeContract, virtualTime } from './store-contract.js';

let store: TokenStore | undefined;
storeContract('memory', {
  raw: false,
  setup: async () => {
    const backend = createMemoryBackend();
    const clock = createFakeClock();
    const s = createMemoryStore({ keyRing: contractKeyRing, backend, clock });
    store = s;
    return {
      store: s,
      time: virtualTime(clock),
      reopen: async (keyRing) => createMemoryStore({ keyRing, backend, clock }),
    };
  },
  teardown: async () => store?.close(),
});

describe('memory store', () => {
  it('clears a deletion cause left beside a record when it deletes without one (as Redis DELETE)', async () => {
    const backend = createMemoryBackend();
    const s = createMemoryStore({ keyRing: contractKeyRing, backend });
    for (const del of [
      (ref: SubjectRef, g: number) => s.deleteTokenIfGeneration(ref, g),
      (ref: SubjectRef) => s.deleteToken(ref),
    ]) {
      const ref = freshRef();
      const g = await s.putToken(ref, sampleRecord(), 60_000);
      // As a replica of an older version leaves it (its login and revoke do not clear it).
      backend.causes.set(causeKey(ref), { value: 'REFRESH_REJECTED', expiresAt: Date.now() + 60_000 });
      assert.equal(await s.deletedBecause?.(ref), 'REFRESH_REJECTED', 'planted');
      assert.equal(await del(ref, g), true);
      assert.equal(await s.deletedBecause?.(ref), undefined);
    }
    await s.close();
  });

  it('evaluates TTLs and leases against the injected clock', async () => {
    const clock = createFakeClock(1_000_000);
    const s = createMemoryStore({ keyRing: contractKeyRing, clock });
    const ref = freshRef();
    await s.putToken(ref, sampleRecord(), 1_000);
    const owner = await s.acquireLock(ref, 500);
    assert.ok(owner);
    await clock.advance(600);
    assert.ok(await s.getToken(ref));
    assert.ok(await s.acquireLock(ref, 500), 'the lease ran out on the clock');
    await clock.advance(500);
    assert.equal(await s.getToken(ref), undefined);
    await s.close();
  });

  it('resolves a wait on a closed store at once instead of throwing, as the Redis store does', async () => {
    const backend = createMemoryBackend();
    const clock = createFakeClock();
    const holder = createMemoryStore({ keyRing: contractKeyRing, backend, clock });
    const closed = createMemoryStore({ keyRing: contractKeyRing, backend, clock });
    const ref = freshRef();
    assert.ok(await holder.acquireLock(ref, 60_000));
    await closed.close();
    const t = clock.now();
    await clock.run(closed.waitForUnlock(ref, 5_000));
    assert.equal(clock.now(), t, 'it did not wait for the timeout');
    await holder.close();
  });

  it('shares records, locks and release notifications between stores over one backend', async () => {
    const backend = createMemoryBackend();
    const a = createMemoryStore({ keyRing: contractKeyRing, backend });
    const b = createMemoryStore({ keyRing: contractKeyRing, backend });
    const ref = freshRef();
    await a.putToken(ref, sampleRecord(), 60_000);
    assert.ok(await b.getToken(ref));
    const owner = await a.acquireLock(ref, 10_000);
    assert.ok(owner);
    assert.equal(await b.acquireLock(ref, 10_000), undefined);
    const waiting = b.waitForUnlock(ref, 10_000);
    await a.releaseLock(ref, owner);
    await waiting;
    assert.ok(await b.acquireLock(ref, 10_000));
    await Promise.all([a.close(), b.close()]);
  });

  it('fails with STORE_UNAVAILABLE after close and wakes its waiters', async () => {
    const s = createMemoryStore({ keyRing: contractKeyRing });
    const ref = freshRef();
    assert.ok(await s.acquireLock(ref, 10_000));
    const waiting = s.waitForUnlock(ref, 10_000);
    await s.close();
    await waiting;
    await assert.rejects(s.getToken(ref), { reason: 'STORE_UNAVAILABLE' });
  });
});
