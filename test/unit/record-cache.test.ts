import assert from 'node:assert/strict';
import { createRecordCache, type RecordCache } from '../../src/store/record-cache.js';

describe('record cache', () => {
  let now = 1_000;
  let cache: RecordCache<string>;
  const FAR = Number.POSITIVE_INFINITY;
  const put = (key: string, value: string, deadline = FAR) => cache.fill(cache.begin(key), value, deadline);

  beforeEach(() => {
    now = 1_000;
    cache = createRecordCache<string>({ maxEntries: 3, maxAgeMs: 30_000, now: () => now });
    cache.setActive(true);
  });

  it('serves what a read filled, and counts hits and misses', () => {
    assert.equal(cache.get('a'), undefined);
    put('a', 'A');
    assert.equal(cache.get('a'), 'A');
    assert.deepEqual(cache.stats(), {
      hits: 1,
      misses: 1,
      invalidations: 0,
      flushes: 1,
      entries: 1,
      readingKeys: 0,
    });
  });

  it('peek serves and counts a hit as get does, but leaves a miss to the get that follows it', () => {
    assert.equal(cache.peek('a'), undefined);
    assert.equal(cache.get('a'), undefined);
    put('a', 'A', 2_000);
    assert.equal(cache.peek('a'), 'A');
    assert.deepEqual([cache.stats().hits, cache.stats().misses], [1, 1]);
    now = 2_000; // past the deadline: peek neither serves nor drops it; get drops and counts it
    assert.equal(cache.peek('a'), undefined);
    assert.deepEqual([cache.stats().hits, cache.stats().misses, cache.stats().entries], [1, 1, 1]);
    assert.equal(cache.get('a'), undefined);
    assert.deepEqual([cache.stats().hits, cache.stats().misses, cache.stats().entries], [1, 2, 0]);
  });

  it('peek keeps a hit entry from eviction as get does', () => {
    put('a', 'A');
    put('b', 'B');
    put('c', 'C');
    assert.equal(cache.peek('a'), 'A');
    put('d', 'D');
    assert.equal(cache.peek('a'), 'A');
    assert.equal(cache.peek('b'), undefined);
  });

  it('evicts the least recently used entry beyond maxEntries', () => {
    put('a', 'A');
    put('b', 'B');
    put('c', 'C');
    assert.equal(cache.get('a'), 'A'); // a is now the most recently used
    put('d', 'D');
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.get('a'), 'A');
    assert.equal(cache.get('c'), 'C');
    assert.equal(cache.get('d'), 'D');
    assert.equal(cache.stats().entries, 3);
  });

  it('keeps a hit entry at least maxEntries - 1 - maxEntries/4 later insertions (hits move only older entries)', () => {
    cache = createRecordCache<string>({ maxEntries: 8, maxAgeMs: 30_000, now: () => now });
    cache.setActive(true);
    for (const k of 'abcdefgh') put(k, k.toUpperCase());
    assert.equal(cache.get('a'), 'A'); // the oldest: moved to the most recent end
    put('i', 'I');
    assert.equal(cache.get('h'), 'H'); // among the newest: not moved
    for (const k of 'jklmn') put(k, k.toUpperCase()); // 5 = 8 - 1 - 2 insertions after the hit
    assert.equal(cache.get('h'), 'H');
    assert.equal(cache.get('a'), 'A');
    assert.equal(cache.get('b'), undefined);
    assert.equal(cache.get('g'), undefined);
    assert.equal(cache.stats().entries, 8);
  });

  it('does not serve an entry past its deadline (the Redis TTL), nor fill one already past it', () => {
    put('a', 'A', 1_500);
    assert.equal(cache.get('a'), 'A');
    now = 1_500;
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.stats().entries, 0);
    put('b', 'B', 1_400);
    assert.equal(cache.get('b'), undefined);
  });

  it('serves an entry at most maxAgeMs after its fill, even when its Redis TTL is longer', () => {
    put('a', 'A'); // no deadline of its own (no TTL)
    put('b', 'B', now + 30 * 24 * 3_600_000); // a 30-day record
    now += 29_999;
    assert.equal(cache.get('a'), 'A');
    assert.equal(cache.get('b'), 'B');
    now += 1;
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.get('b'), undefined);
    // A hit does not extend the age: it counts from the read that filled the entry.
    put('c', 'C');
    now += 20_000;
    assert.equal(cache.get('c'), 'C');
    now += 10_000;
    assert.equal(cache.get('c'), undefined);
  });

  it('drops an entry on invalidation', () => {
    put('a', 'A');
    put('b', 'B');
    cache.invalidate('a');
    cache.invalidate('zzz'); // keys never cached (locks, tombstones) cost nothing
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.get('b'), 'B');
    assert.equal(cache.stats().invalidations, 1);
  });

  it('does not fill from a read that an invalidation of its key overtook', () => {
    const slow = cache.begin('a');
    const other = cache.begin('b');
    cache.invalidate('a'); // the key changed while the read was in flight
    cache.fill(slow, 'old A', FAR);
    cache.fill(other, 'B', FAR);
    assert.equal(cache.get('a'), undefined);
    assert.equal(cache.get('b'), 'B');
    // A read that starts after the invalidation fills as usual.
    put('a', 'new A');
    assert.equal(cache.get('a'), 'new A');
  });

  it('does not fill from any read a flush overtook', () => {
    const a = cache.begin('a');
    const b = cache.begin('b');
    cache.clear();
    cache.fill(a, 'A', FAR);
    cache.fill(b, 'B', FAR);
    assert.equal(cache.stats().entries, 0);
  });

  it('serves and fills nothing while inactive, and drops everything on every change of state', () => {
    put('a', 'A');
    const inFlight = cache.begin('b');
    cache.setActive(false);
    assert.equal(cache.stats().entries, 0);
    put('c', 'C');
    assert.equal(cache.stats().entries, 0);
    // A read begun while the link was up must not fill after it came back either.
    cache.setActive(true);
    cache.fill(inFlight, 'B', FAR);
    const begunInactive = (() => {
      cache.setActive(false);
      const t = cache.begin('d');
      cache.setActive(true);
      return t;
    })();
    cache.fill(begunInactive, 'D', FAR);
    assert.equal(cache.stats().entries, 0);
    put('e', 'E');
    assert.equal(cache.get('e'), 'E');
  });

  it('keeps no bookkeeping for reads that ended, whichever way', () => {
    for (let i = 0; i < 1000; i++) {
      const t = cache.begin(`k${i % 7}`);
      if (i % 2) cache.abandon(t);
      else cache.fill(t, 'v', FAR);
    }
    const open = cache.begin('k1');
    assert.equal(cache.stats().readingKeys, 1);
    cache.abandon(open);
    assert.equal(cache.stats().readingKeys, 0);
    assert.ok(cache.stats().entries <= 3);
  });

  it('rejects a non-positive size or age', () => {
    assert.throws(() => createRecordCache({ maxEntries: 0, maxAgeMs: 1_000 }), RangeError);
    assert.throws(() => createRecordCache({ maxEntries: 1, maxAgeMs: 0 }), RangeError);
  });
});
