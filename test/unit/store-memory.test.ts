import assert from 'node:assert/strict';
import { systemClock } from '../../src/core/clock.js';
import { createMemoryBackend, createMemoryStore } from '../../src/store/memory-store.js';
import type { TokenStore } from '../../src/core/token-store.js';
import { contractKeyRing, freshRef, sampleRecord, storeContract } from './store-contract.js';

let store: TokenStore | undefined;
storeContract('memory', {
  raw: false,
  setup: async () => {
    const backend = createMemoryBackend();
    const s = createMemoryStore({ keyRing: contractKeyRing, backend });
    store = s;
    return { store: s, reopen: async (keyRing) => createMemoryStore({ keyRing, backend }) };
  },
  teardown: async () => store?.close(),
});

describe('memory store', () => {
  it('evaluates TTLs and leases against the injected clock', async () => {
    let now = 1_000_000;
    const s = createMemoryStore({
      keyRing: contractKeyRing,
      clock: { now: () => now, setTimer: systemClock.setTimer },
    });
    const ref = freshRef();
    await s.putToken(ref, sampleRecord(), 1_000);
    const owner = await s.acquireLock(ref, 500);
    assert.ok(owner);
    now += 600;
    assert.ok(await s.getToken(ref));
    assert.ok(await s.acquireLock(ref, 500), 'the lease ran out on the clock');
    now += 500;
    assert.equal(await s.getToken(ref), undefined);
    await s.close();
  });

  it('resolves a wait on a closed store at once instead of throwing, as the Redis store does', async () => {
    const backend = createMemoryBackend();
    const holder = createMemoryStore({ keyRing: contractKeyRing, backend });
    const closed = createMemoryStore({ keyRing: contractKeyRing, backend });
    const ref = freshRef();
    assert.ok(await holder.acquireLock(ref, 60_000));
    await closed.close();
    const t = performance.now();
    await closed.waitForUnlock(ref, 5_000);
    assert.ok(performance.now() - t < 1_000);
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
